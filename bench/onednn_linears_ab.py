"""fp32 linears by oneDNN's matmul (GELU fused) against MKL's addmm: whole forwards, A/B in one process.

Usage: python bench/onednn_linears_ab.py WORKDIR [THREADS [CHECKPOINT]]
(WORKDIR as for `sew bench --workdir`: the random-weight checkpoints are created there if missing; THREADS
default 1; CHECKPOINT default sew-tiny.)

The same checkpoint loaded twice with sew's fp32 CPU kernels (`sewcli.inference.cpu_kernels`), once without
and once with `sewcli.model.fastpath.onednn_linears`, whatever `onednn_linears_pay_off` says on this CPU.
Batch 1, 10 and 20 s windows, 8 interleaved rounds, medians, and the largest logit difference. Results:
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
    mkl = load_model(directory, device="cpu", dtype=torch.float32).model
    fastpath.onednn_linears_pay_off = lambda: False  # type: ignore[assignment]
    mkl = inference.cpu_kernels(mkl, "fp32")
    onednn = inference.cpu_kernels(load_model(directory, device="cpu", dtype=torch.float32).model, "fp32")
    switched = fastpath.onednn_linears(onednn)
    print(f"{name} fp32, {threads} thread(s), {switched} linears switched; medians of 8 rounds")
    print("\n".join(bench.forward_ab({"MKL addmm": mkl, "oneDNN linears": onednn})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
