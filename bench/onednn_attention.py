"""Attention by blocks of oneDNN matmuls (`fastpath.blocked_attention`) against torch's SDPA, on this CPU.

Usage: python bench/onednn_attention.py WORKDIR [THREADS [ROUNDS]]
(WORKDIR as given to `sew bench --workdir`; the SEW-tiny checkpoint is created there if missing)

1. One attention (8 heads of 64, as SEW-tiny's) over 250, 500 and 750 frames (10, 20 and 30 s windows after
   the squeeze): SDPA, and blocked attention with 64, 128, 256 and all query rows per block; fresh inputs for
   every call, medians of 31.
2. Whole SEW-tiny forwards with this CPU's kernels (`inference.cpu_kernels`), attention by SDPA or blocked,
   over 10, 20 and 30 s windows, fp32 and int8; bf16 with the Zen 5 rule (blocked attention and fused GEMM
   convs) or without: interleaved rounds, medians, and the largest logit difference.
Results: docs/benchmarks.md, "An AMD EPYC Zen 5".
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sewcli import bench, inference  # noqa: E402
from sewcli.model import fastpath  # noqa: E402
from sewcli.model.common import Attention  # noqa: E402


def attention_alone(heads: int = 8, dim: int = 64) -> None:
    for t in (250, 500, 750):
        q, k, v = (torch.randn(1, heads, t, dim) for _ in range(3))
        runs = {"sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v)}
        for rows in (64, 128, 256, t):
            runs[f"blocks of {rows}"] = lambda q, k, v, rows=rows: _blocked(q, k, v, rows)
        for name, run in runs.items():
            times = []
            with torch.inference_mode():
                for _ in range(31):
                    q, k, v = q + 0, k + 0, v + 0  # fresh tensors: no cached operand
                    t0 = time.perf_counter()
                    run(q, k, v)
                    times.append(time.perf_counter() - t0)
            print(f"attention {t} frames, {name}: {statistics.median(times) * 1e3:.2f} ms", flush=True)


def _blocked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: int) -> torch.Tensor:
    saved = fastpath.ATTENTION_ROWS
    fastpath.ATTENTION_ROWS = rows
    try:
        return fastpath.blocked_attention(q, k, v, q.shape[-1] ** -0.5)
    finally:
        fastpath.ATTENTION_ROWS = saved


def forwards(work: Path, threads: int, rounds: int, precision: str) -> None:
    """`precision` fp32 or int8: one model, attention switched between SDPA and blocked. bf16: the kernels
    without the Zen 5 rule (SDPA, channels-first bf16 convs) against those with it (blocked attention, the
    GELU convs as fused oneDNN GEMMs), two models."""
    model_dir, _ = bench.pipeline_inputs(work)
    options = inference.InferenceOptions(device="cpu", threads=threads, workers=1, precision=precision)
    new = inference.load(model_dir, options)
    if precision == "bf16":
        rule = fastpath.blocked_attention_pays_off
        fastpath.blocked_attention_pays_off = lambda: False  # type: ignore[assignment]
        try:
            old = inference.load(model_dir, options)
        finally:
            fastpath.blocked_attention_pays_off = rule  # type: ignore[assignment]
    else:
        old = new
    for seconds in (10, 20, 30):
        x = torch.randn(1, seconds * 16000).to(new.dtype)
        times: dict[str, list[float]] = {"sdpa": [], "blocked": []}
        logits = {}
        with torch.inference_mode():
            for _ in range(rounds + 1):  # the first round warms up
                for name in times:
                    model = new if name == "blocked" else old
                    if precision != "bf16":
                        for m in model.module.modules():
                            if isinstance(m, Attention):
                                m.attend = fastpath.blocked_attention if name == "blocked" else None
                    t0 = time.perf_counter()
                    logits[name] = model.module(x).float()
                    times[name].append(time.perf_counter() - t0)
        diff = (logits["sdpa"] - logits["blocked"]).abs().max().item()
        sdpa, blocked = (statistics.median(times[n][1:]) for n in ("sdpa", "blocked"))
        print(
            f"SEW-tiny {precision} forward, {seconds} s window, {threads} thread(s): "
            f"SDPA {sdpa * 1e3:.1f} ms, blocked {blocked * 1e3:.1f} ms ({sdpa / blocked - 1:+.1%}), "
            f"max logit difference {diff:.1e}",
            flush=True,
        )


def main() -> int:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    work = Path(sys.argv[1])
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    torch.set_num_threads(threads)
    print(f"blocked attention pays off here (sewcli's rule): {fastpath.blocked_attention_pays_off()}")
    attention_alone()
    for precision in ("fp32", "int8", "bf16"):
        forwards(work, threads, rounds, precision)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
