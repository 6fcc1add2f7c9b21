"""Attention on contiguous q, k, v vs on views of the fused q|k|v output: whole CPU forwards, A/B in-process.

Usage: python bench/sdpa_layout.py WORKDIR [PRECISION [CHECKPOINT]]
(WORKDIR as for `sew bench --workdir`: the random-weight checkpoints are created there if missing; PRECISION
fp32 (default) or bf16; CHECKPOINT sew-tiny (default), sew-d-tiny or wav2vec2-base.)

One thread, batch 1, 10 / 20 / 30 s windows; `sewcli.model.common._SDPA_CONTIGUOUS_FROM` is switched between
"never" and its value before each forward, 8 interleaved rounds, medians. Also prints the largest logit
difference between the two layouts. Results: docs/benchmarks.md, "Contiguous q, k, v for long windows".
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import torch

from sewcli import bench, inference
from sewcli.inference_options import InferenceOptions
from sewcli.model import common

NEVER = 1 << 30


def main() -> int:
    work = Path(sys.argv[1])
    precision = sys.argv[2] if len(sys.argv) > 2 else "fp32"
    name = sys.argv[3] if len(sys.argv) > 3 else "sew-tiny"
    directory = bench.checkpoint_for(name, work)
    model = inference.load(directory, InferenceOptions(device="cpu", threads=1, precision=precision))
    torch.set_num_threads(1)
    shipped = common._SDPA_CONTIGUOUS_FROM
    thresholds = {"views": NEVER, "contiguous": shipped}
    print(
        f"{name} {precision}, contiguous from {shipped} frames; one thread, medians of 8 interleaved rounds"
    )
    for seconds in (10, 20, 30):
        x = torch.randn(1, seconds * model.sample_rate, generator=torch.Generator().manual_seed(0))

        def forward(threshold: int, x: torch.Tensor = x) -> torch.Tensor:
            common._SDPA_CONTIGUOUS_FROM = threshold
            return model.module(x)

        with torch.inference_mode():
            logits = {k: forward(t) for k, t in thresholds.items()}
            times = bench.interleaved({k: partial(forward, t) for k, t in thresholds.items()}, 8)
        common._SDPA_CONTIGUOUS_FROM = shipped
        print(f"{seconds:>3} s: {bench.ab_line(times, logits)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
