"""Whole processes with and without the interpreter's teardown (sewcli/cli.py `_exit_without_teardown`).

Usage: python bench/teardown.py WORKDIR [REPEATS]   (WORKDIR as given to `sew bench --workdir`)

`sew transcribe` of the 10-minute file (SEW-tiny, real config, random weights; int8 with 10 s windows and fp32
with 20 s windows, 2 threads) as the console script runs it, which leaves with os._exit once the run is
over, against the same command entered through the Typer app directly, which skips that and so ends with
Python's normal interpreter teardown (what every run did before). Interleaved, median of REPEATS, whole
process timed by `sew bench`'s wrapper. Also `python -c "import torch"` both ways, to show the teardown on
its own. Prints a markdown table. Results: docs/benchmarks.md, "Interpreter teardown skipped".
"""

from __future__ import annotations

import sys
from pathlib import Path

from sewcli import bench

NORMAL_EXIT = "import sys; from sewcli.cli import app; sys.argv[0] = 'sew'; app()"


def main() -> int:
    work = Path(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    opts = bench.BenchOptions(threads=2, workdir=work)
    model, audio = bench.pipeline_inputs(work)
    runs = {
        "int8, 10 s windows": ("int8", ["--chunk-length", "10", "--chunk-overlap", "0.5"]),
        "fp32, 20 s windows": ("fp32", ["--chunk-length", "20", "--chunk-overlap", "1"]),
    }
    cmds: dict[str, list[str]] = {}
    for label, (precision, extra) in runs.items():
        cmd = bench.sew_command([audio], model, work / "out", 2, precision) + extra
        assert cmd[1:3] == ["-m", "sewcli"]
        cmds[f"sew {label}: os._exit"] = cmd
        cmds[f"sew {label}: normal exit"] = [cmd[0], "-c", NORMAL_EXIT, *cmd[3:]]
    print(f"load {bench.load_average()}")
    rows = bench.process_bench("sew-tiny 10 min", cmds, 600.0, opts, repeats)
    imports = {
        "import torch: normal exit": [sys.executable, "-c", "import torch"],
        "import torch: os._exit": [sys.executable, "-c", "import os, torch; os._exit(0)"],
    }
    rows += bench.process_bench("start-up", imports, 0.0, opts, repeats)
    print(f"load {bench.load_average()}\n")
    print(bench.process_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
