"""int8 activations with 7 bits (torch's reduce_range) against 8 bits: whole forwards, A/B in one process.

Usage: python bench/int8_range_ab.py WORKDIR [THREADS [CHECKPOINT]]
(WORKDIR as for `sew bench --workdir`: the random-weight checkpoints are created there if missing; THREADS
default 1; CHECKPOINT default sew-tiny, or a checkpoint directory such as sewcli/assets/sew-synth-en.)

The same checkpoint loaded twice as `sew transcribe --precision int8` runs it
(`sewcli.inference.cpu_kernels`), once with every int8 linear quantising its activations to 7 bits and
once to 8 (`sewcli.model.fastpath.full_range_int8_activations` picks 8 where the CPU has AVX512-VNNI).
Batch 1, 10 and 20 s windows, 8 interleaved rounds, medians, and the largest logit difference between the
two. The accuracy side is `bench/cer_precision.py`. Results: docs/benchmarks.md, "The 2026-12-05 kernels
on the AMD EPYC".
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
    directory = Path(name) if Path(name).is_dir() else bench.checkpoint_for(name, work)
    models = {}
    for label, full in (("7-bit activations", False), ("8-bit activations", True)):
        fastpath.full_range_int8_activations = lambda full=full: full  # type: ignore[assignment]
        models[label] = inference.cpu_kernels(
            load_model(directory, device="cpu", dtype=torch.float32).model, "int8"
        )
    print(
        f"{directory.name} int8, {threads} thread(s), CPU has AVX512-VNNI: "
        f"{'avx512_vnni' in fastpath._cpu_vendor_and_flags()[1]}; medians of 8 rounds"
    )
    print("\n".join(bench.forward_ab(models)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
