"""The SEW-tiny feature encoder on one 20 s window: oneDNN convs vs GEMMs on strided views, fp32 and bf16.

Usage: python bench/gemm_convs.py [REPEATS [THREADS]]

The encoder of the real SEW-tiny config (13 conv layers, 64-512 channels, random weights), batch 1, as sew
builds it (`sewcli.model.common.FeatureEncoder`): its convs as convs (`as_gemm` False), and as matrix
products with the first layer in float32 (`sewcli.model.fastpath.convs_as_gemm`: what CPU inference runs in
fp32, and in bf16 and int8 on CPUs with AMX). Interleaved, median of REPEATS. Also the bf16 GEMM and fp32
GEMM peaks (2048^3) for context. Results: docs/benchmarks.md, "bf16 convs as GEMMs on an AMX CPU".
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sewcli import bench  # noqa: E402
from sewcli.model.common import FeatureEncoder  # noqa: E402
from sewcli.model.fastpath import convs_as_gemm  # noqa: E402
from sewcli.model.sew import SEWConfig  # noqa: E402


def encoder(dtype: torch.dtype, gemm: bool) -> torch.nn.Module:
    cfg = SEWConfig.from_hf(bench.MODEL_CONFIGS["sew-tiny"])  # transformers' defaults: SEW-tiny's conv stack
    torch.manual_seed(0)
    enc = FeatureEncoder(cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride, cfg.conv_bias, "group", "gelu")
    enc = enc.to(dtype).eval()
    if gemm:
        convs_as_gemm(enc)  # walks enc.modules(), enc itself included
    return enc


def main() -> int:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(threads)
    x = torch.from_numpy(bench._windows(1, 20.0)).float()
    runs = {
        (name, gemm): encoder(dtype, gemm)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
        for gemm in (False, True)
    }
    times: dict[tuple[str, bool], list[float]] = {key: [] for key in runs}
    with torch.inference_mode():
        ref = runs[("fp32", False)](x).float()
        diffs = {}
        for (name, gemm), enc in runs.items():
            xin = x.to(torch.bfloat16) if name == "bf16" else x
            out = enc(xin).float()
            diffs[(name, gemm)] = float((out - ref).abs().max() / ref.abs().max())
        for _ in range(repeats):
            for (name, gemm), enc in runs.items():
                xin = x.to(torch.bfloat16) if name == "bf16" else x
                t = time.perf_counter()
                enc(xin)
                times[(name, gemm)].append(time.perf_counter() - t)
    peaks = {d: round(bench.gemm_peak(threads, d)) for d in ("fp32", "bf16")}
    print(f"{threads} threads; load {bench.load_average()}; GEMM peak (GFLOP/s): {peaks}")
    print("| precision | convs as | ms per 20 s window (median) | max diff vs fp32 convs (relative) |")
    print("|---|---|---:|---:|")
    for (name, gemm), ts in times.items():
        median = statistics.median(ts) * 1e3
        print(f"| {name} | {'GEMMs' if gemm else 'convs'} | {median:.1f} | {diffs[(name, gemm)]:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
