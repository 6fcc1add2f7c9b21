"""Whole processes with windows run one at a time on both threads, or two at once on one thread each.

Usage: python bench/model_workers.py WORKDIR [REPEATS]   (WORKDIR as given to `sew bench --workdir`)

`sew transcribe` of the 10-minute file (SEW-tiny, real config, random weights, 2 threads), fp32 and int8 with
the default, 20 s and 10 s windows, each with `--model-workers 1` (what every run did before) and with the
default (one worker per thread: 2 here). Interleaved, median of REPEATS, whole process timed by `sew bench`'s
wrapper, peak RSS of the process. Also the default model with its defaults (beam search with its language
model, 10 s windows), where the search's worker processes share the cores with the model. Prints a markdown
table. Results: docs/benchmarks.md, "Windows in parallel".
"""

from __future__ import annotations

import sys
from pathlib import Path

from sewcli import bench

WINDOWS = {
    "default windows": [],
    "20 s windows": ["--chunk-length", "20", "--chunk-overlap", "1"],
    "10 s windows": ["--chunk-length", "10", "--chunk-overlap", "0.5"],
}


def main() -> int:
    work = Path(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    opts = bench.BenchOptions(threads=2, workdir=work)
    model, audio = bench.pipeline_inputs(work)
    cmds: dict[str, list[str]] = {}
    for precision in ("fp32", "int8"):
        for window, extra in WINDOWS.items():
            cmd = bench.sew_command([audio], model, work / "out", 2, precision) + extra
            cmds[f"sew {precision}, {window}, 1 worker"] = [*cmd, "--model-workers", "1"]
            cmds[f"sew {precision}, {window}, 2 workers"] = cmd
    cmd = bench.sew_command([audio], Path("-"), work / "out", 2, "fp32")
    i = cmd.index("--model")
    del cmd[i : i + 2]  # the registry's default model, with its registry settings
    cmds["embedded model, its defaults, 1 worker"] = [*cmd, "--model-workers", "1"]
    cmds["embedded model, its defaults, 2 workers"] = cmd
    print(f"load {bench.load_average()}")
    rows = bench.process_bench("10 min", cmds, 600.0, opts, repeats)
    print(f"load {bench.load_average()}\n")
    print(bench.process_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
