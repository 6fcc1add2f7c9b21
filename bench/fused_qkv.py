"""Experiment (not adopted): one q|k|v GEMM per attention layer instead of three; forward times.

Usage: python bench/fused_qkv.py WORKDIR [--threads 2] [--repeats 15] [--seconds 10 --seconds 20]

SEW-tiny (real config, random weights; WORKDIR as for `sew bench --workdir`), batch 1, one window per
length: the model as `--precision int8` loads it against the same model with the three projections of each
attention layer concatenated into one (`fuse_qkv` below; in int8 the activation is then quantised once, with
the scale all three calls computed), and the same pair in fp32; interleaved, median of --repeats. Also checks
whether the logits are bit-identical. Results: docs/benchmarks.md, "Whole-process profile of the fast path".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sewcli import bench, inference
from sewcli.model import fastpath
from sewcli.model.common import Attention


def fused_forward(self: Attention, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
    """Attention.forward with q, k and v from one projection (no key mask: one window per batch)."""
    b, t, h = x.shape
    qkv = self.qkv_proj(x).view(b, t, 3, self.num_heads, self.head_dim)  # (B, T, 3, nh, d)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, nh, T, d)
    y = F.scaled_dot_product_attention(q, k, v, scale=self.head_dim**-0.5)  # (B, nh, T, d)
    out: Tensor = self.out_proj(y.transpose(1, 2).reshape(b, t, h))
    return out


def fuse_qkv(model: nn.Module) -> None:
    """Concatenate each attention layer's q, k, v projections (rows q, then k, then v) into `qkv_proj`."""
    for module in model.modules():
        if isinstance(module, Attention):
            parts = (module.q_proj, module.k_proj, module.v_proj)
            fused = nn.Linear(parts[0].in_features, 3 * parts[0].out_features, device="meta")
            fused.weight = nn.Parameter(torch.cat([p.weight.detach() for p in parts]), requires_grad=False)
            fused.bias = nn.Parameter(torch.cat([p.bias.detach() for p in parts]), requires_grad=False)
            module.qkv_proj = fused
            module.forward = types.MethodType(fused_forward, module)  # type: ignore[method-assign]


def load(directory: Path, precision: str, threads: int, fused: bool) -> nn.Module:
    """The model as inference.load builds it for `precision`, with or without the fused projection."""
    original = fastpath.quantize_linear_int8

    def fuse_then_quantize(model: nn.Module) -> nn.Module:
        fuse_qkv(model)
        return original(model)

    opts = inference.InferenceOptions(threads=threads, precision=precision)
    if precision == "int8" and fused:
        fastpath.quantize_linear_int8 = fuse_then_quantize  # type: ignore[assignment]  # inference.load's call
    try:
        module = inference.load(directory, opts).module
    finally:
        fastpath.quantize_linear_int8 = original  # type: ignore[assignment]
    if fused and precision != "int8":
        fuse_qkv(module)
    return module


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--seconds", type=float, action="append")
    args = ap.parse_args()
    directory = bench.checkpoint_for("sew-tiny", args.workdir)
    print(f"load {bench.load_average()}, {args.threads} threads, SEW-tiny, batch 1, median of {args.repeats}")
    print("| precision | window s | three projections ms | fused ms | fused / three | logits |")
    print("|---|---:|---:|---:|---:|---|")
    for precision in ("int8", "fp32"):
        models = {fused: load(directory, precision, args.threads, fused) for fused in (False, True)}
        for seconds in args.seconds or [10.0, 20.0]:
            x = torch.from_numpy(bench._windows(1, seconds)).float()
            with torch.inference_mode():
                a, b = (models[f](x) for f in (False, True))
                same = "identical" if torch.equal(a, b) else f"max abs diff {float((a - b).abs().max()):.1e}"

                def run(model: torch.nn.Module = models[False], x: torch.Tensor = x) -> object:
                    return model(x)

                def run_fused(model: torch.nn.Module = models[True], x: torch.Tensor = x) -> object:
                    return model(x)

                times = bench.interleaved({"three": run, "fused": run_fused}, args.repeats)
            three, fused = (statistics.median(times[k]) * 1e3 for k in ("three", "fused"))
            print(f"| {precision} | {seconds:g} | {three:.1f} | {fused:.1f} | {fused / three:.3f} | {same} |")
    print(f"load {bench.load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
