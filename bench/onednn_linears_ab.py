"""Linears and convs by oneDNN's matmul (GELUs fused) against the kernels before: whole forwards, A/B in one
process.

Usage: python bench/onednn_linears_ab.py WORKDIR [THREADS [CHECKPOINT [PRECISION]]]
(WORKDIR as for `sew bench --workdir`: the random-weight checkpoints are created there if missing; THREADS
default 1; CHECKPOINT default sew-tiny; PRECISION fp32 (default) or int8.)

fp32: the same checkpoint loaded three times with sew's fp32 CPU kernels (`sewcli.inference.cpu_kernels`):
without `sewcli.model.fastpath.onednn_linears`, with it, and with it and `onednn_convs`, whatever
`onednn_linears_pay_off` says on this CPU; three pairs: MKL against oneDNN linears, those against oneDNN
linears and convs, MKL against both. int8: `cpu_kernels(..., "int8")` with `onednn_linears_pay_off` off and
on (on a CPU where bf16 pays off and AMX is absent: oneDNN's bf16 convs against the fused bf16 GEMM convs).
Batch 1, 10 and 20 s windows, 8 interleaved rounds, medians, and the largest logit difference. Results:
docs/benchmarks.md, "fp32 linears and convs by oneDNN on the AMD EPYC".
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from sewcli import bench, inference
from sewcli.model import fastpath
from sewcli.model.load import load_model


def main() -> int:
    work = Path(sys.argv[1])
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    name = sys.argv[3] if len(sys.argv) > 3 else "sew-tiny"
    precision = sys.argv[4] if len(sys.argv) > 4 else "fp32"
    if precision not in ("fp32", "int8"):
        sys.exit("PRECISION: fp32 or int8")
    torch.set_num_threads(threads)
    directory = bench.checkpoint_for(name, work)

    def loaded(pays_off: bool) -> torch.nn.Module:
        fastpath.onednn_linears_pay_off = lambda: pays_off  # type: ignore[assignment]
        model = load_model(directory, device="cpu", dtype=torch.float32).model
        return inference.cpu_kernels(model, precision)

    if precision == "int8":
        before, after = loaded(False), loaded(True)
        print(f"{name} int8, {threads} thread(s); medians of 8 rounds")
        print("\n".join(bench.forward_ab({"int8 before": before, "int8 fused GEMM convs": after})))
        return 0
    mkl, only_linears, onednn = loaded(False), loaded(False), loaded(False)
    linears = fastpath.onednn_linears(only_linears)
    fastpath.onednn_linears(onednn)
    convs = fastpath.onednn_convs(onednn)
    print(f"{name} fp32, {threads} thread(s), {linears} linears, {convs} convs switched; medians of 8 rounds")
    print("\n".join(bench.forward_ab({"MKL": mkl, "oneDNN linears": only_linears})))
    print("\n".join(bench.forward_ab({"oneDNN linears": only_linears, "and convs": onednn})))
    print("\n".join(bench.forward_ab({"MKL": mkl, "oneDNN linears and convs": onednn})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
