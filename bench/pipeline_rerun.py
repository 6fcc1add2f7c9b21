"""Whole processes: transformers ASR pipeline vs `sew transcribe` (fp32, int8, bf16; 30, 20, 10 s windows).

Usage: python bench/pipeline_rerun.py WORKDIR [REPEATS [RUNS]]   (WORKDIR as given to `sew bench --workdir`;
the SEW-tiny checkpoint and the 10-minute file are created there if missing; RUNS: comma-separated row names
to keep, e.g. "transformers pipeline,sew int8 10 s windows", default all). Prints a markdown table and writes
WORKDIR/pipeline_rerun.json.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

from sewcli import bench


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    work = Path(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    opts = bench.BenchOptions(threads=2, workdir=work)
    model, audio = bench.pipeline_inputs(work)
    out = work / "out"
    cmds = {"transformers pipeline": bench.hf_pipeline_command(model, audio, 2)}
    for precision in ("fp32", "int8", "bf16"):
        cmds[f"sew {precision}"] = bench.sew_command([audio], model, out, 2, precision)
    # the reference's window length (chunk_length_s=20), with our overlap rule's smallest tested overlap
    matched = ["--chunk-length", "20", "--chunk-overlap", "1"]
    for precision in ("fp32", "int8", "bf16"):
        cmds[f"sew {precision} 20 s windows"] = bench.sew_command([audio], model, out, 2, precision) + matched
    # shorter windows: less attention per audio second (the embedded model's registry window is 10 s)
    short = ["--chunk-length", "10", "--chunk-overlap", "0.5"]
    for precision in ("fp32", "int8", "bf16"):
        cmds[f"sew {precision} 10 s windows"] = bench.sew_command([audio], model, out, 2, precision) + short
    if len(sys.argv) > 3:
        keep = sys.argv[3].split(",")
        unknown = set(keep) - set(cmds)
        if unknown:
            sys.exit(f"unknown runs {sorted(unknown)}; the runs are {list(cmds)}")
        cmds = {k: v for k, v in cmds.items() if k in keep}
    load0 = bench.load_average()
    rows = bench.process_bench("sew-tiny 10 min", cmds, 600.0, opts, repeats)
    data = {
        "load_at_start": load0,
        "load_at_end": bench.load_average(),
        "rows": [dataclasses.asdict(r) for r in rows],
    }
    (work / "pipeline_rerun.json").write_text(json.dumps(data, indent=1))
    print(f"load {data['load_at_start']} -> {data['load_at_end']}\n")
    print(bench.process_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
