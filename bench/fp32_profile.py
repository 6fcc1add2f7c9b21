"""Where one fp32 CPU forward spends its time, by operator, and attention as SDPA vs bmm-softmax-bmm.

Usage: python bench/fp32_profile.py WORKDIR [SECONDS [CHECKPOINT]]
(WORKDIR as for `sew bench --workdir`: the random-weight checkpoints are created there if missing; SECONDS of
audio per window, 10 by default; CHECKPOINT sew-tiny (default), sew-d-tiny or wav2vec2-base.)

One thread, batch 1, sew's CPU kernels as `sew transcribe` loads them. Prints the median forward time of 5,
then torch.profiler's self-CPU time per operator, per forward (3 profiled forwards; on a VM the profiler can
misattribute a little between neighbouring operators), the share of the GEMM operators, and the attention
of one layer's shape timed alone both ways with the largest difference between them. Results:
docs/benchmarks.md, "The 2026-12-05 kernels on the AMD EPYC, and 8-bit int8 activations".
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from sewcli import bench, inference
from sewcli.inference_options import InferenceOptions

GEMMS = ("aten::addmm", "aten::bmm", "aten::baddbmm_", "aten::baddbmm", "aten::mm")
PROFILED = 3


def _median_ms(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _attention_ab(heads: int, frames: int, head_dim: int) -> str:
    """SDPA vs the plain bmm-softmax-bmm form on (1, heads, frames, head_dim), one thread."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, heads, frames, head_dim, generator=gen) for _ in range(3))
    scale = head_dim**-0.5

    def plain() -> torch.Tensor:
        return torch.matmul(torch.matmul(q * scale, k.transpose(-1, -2)).softmax(-1), v)

    def sdpa() -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)

    for fn in (plain, sdpa):
        for _ in range(20):
            fn()
    diff = (plain() - sdpa()).abs().max().item()
    t_sdpa, t_plain = _median_ms(sdpa, 200), _median_ms(plain, 200)
    return (
        f"attention alone, {heads} heads x {frames} frames x {head_dim}: SDPA {t_sdpa:.2f} ms, "
        f"bmm-softmax-bmm {t_plain:.2f} ms, max |diff| {diff:.1e}"
    )


def main() -> int:
    work = Path(sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    name = sys.argv[3] if len(sys.argv) > 3 else "sew-tiny"
    model = inference.load(bench.checkpoint_for(name, work), InferenceOptions(device="cpu", threads=1))
    torch.set_num_threads(1)
    x = torch.randn(1, int(seconds * model.sample_rate), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for _ in range(3):
            model.module(x)
        total = _median_ms(lambda: model.module(x), 5)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(PROFILED):
                model.module(x)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    profiled = sum(e.self_cpu_time_total for e in rows) / 1e3 / PROFILED
    print(
        f"{name} fp32, {seconds:g} s window, one thread: forward {total:.1f} ms (median of 5); "
        f"profiled {profiled:.1f} ms per forward"
    )
    gemm = 0.0
    for e in rows[:12]:
        ms = e.self_cpu_time_total / 1e3 / PROFILED
        print(f"  {e.key:<50} {ms:8.1f} ms  {100 * ms / profiled:5.1f} %  {e.count // PROFILED} calls")
    gemm = sum(e.self_cpu_time_total for e in rows if e.key in GEMMS) / 1e3 / PROFILED
    print(f"  GEMM operators {gemm:.1f} ms, {100 * gemm / profiled:.1f} % of the profiled time")
    cfg = model.module.config
    frames = int(seconds * model.sample_rate) // model.align_samples
    print(_attention_ab(cfg.num_attention_heads, frames, cfg.hidden_size // cfg.num_attention_heads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
