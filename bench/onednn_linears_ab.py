"""fp32 linears and convs by oneDNN's matmul (GELUs fused) against MKL's: whole forwards, A/B in one process.

Usage: python bench/onednn_linears_ab.py WORKDIR [THREADS [CHECKPOINT]]
(WORKDIR as for `sew bench --workdir`: the random-weight checkpoints are created there if missing; THREADS
default 1; CHECKPOINT default sew-tiny.)

The same checkpoint loaded three times with sew's fp32 CPU kernels (`sewcli.inference.cpu_kernels`): without
`sewcli.model.fastpath.onednn_linears`, with it, and with it and `onednn_convs`, whatever
`onednn_linears_pay_off` says on this CPU.
Batch 1, 10 and 20 s windows, 8 interleaved rounds, medians, and the largest logit difference; three
pairs: MKL against oneDNN linears, those against oneDNN linears and convs, MKL against both. Results:
docs/benchmarks.md, "fp32 linears by oneDNN on the AMD EPYC".
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
    torch.set_num_threads(threads)
    directory = bench.checkpoint_for(name, work)
    fastpath.onednn_linears_pay_off = lambda: False  # type: ignore[assignment]
    mkl, only_linears, onednn = (
        inference.cpu_kernels(load_model(directory, device="cpu", dtype=torch.float32).model, "fp32")
        for _ in range(3)
    )
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
