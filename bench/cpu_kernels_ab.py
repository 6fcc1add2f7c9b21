"""The CPU inference kernels against the reference kernels: whole forwards, A/B in one process.

Usage: python bench/cpu_kernels_ab.py WORKDIR [PRECISION [THREADS [CHECKPOINT]]]
(WORKDIR as for `sew bench --workdir`: the random-weight checkpoints are created there if missing; PRECISION
fp32 (default) or int8; THREADS default 1; CHECKPOINT default sew-tiny.)

The same checkpoint loaded twice: as `sew transcribe` runs it (`sewcli.inference.cpu_kernels`: convs as GEMMs,
q/k/v as one GEMM, int8 linears) and with the model code's reference kernels (oneDNN convs, three projections;
int8 linears too, so that only the kernels differ). Batch 1, 10 and 20 s windows, 8 interleaved rounds,
medians, and the largest logit difference. To see what a CPU without AVX-512 would run, restrict every kernel
library: `ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 python ...`.
Results: docs/benchmarks.md, "The CPU kernels with AVX2 only".
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from sewcli import bench, inference
from sewcli.model.fastpath import quantize_linear_int8
from sewcli.model.load import load_model


def main() -> int:
    work = Path(sys.argv[1])
    precision = sys.argv[2] if len(sys.argv) > 2 else "fp32"
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    name = sys.argv[4] if len(sys.argv) > 4 else "sew-tiny"
    if precision not in ("fp32", "int8"):
        sys.exit("PRECISION: fp32 or int8")
    torch.set_num_threads(threads)
    directory = bench.checkpoint_for(name, work)
    reference = load_model(directory, device="cpu", dtype=torch.float32).model
    if precision == "int8":
        reference = quantize_linear_int8(reference)
    ours = inference.cpu_kernels(load_model(directory, device="cpu", dtype=torch.float32).model, precision)
    models = {"reference kernels": reference, "cpu_kernels": ours}
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"{name} {precision}, {threads} thread(s), ATen capability {capability}; medians of 8 rounds")
    print("\n".join(bench.forward_ab(models)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
