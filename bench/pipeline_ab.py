"""Whole processes, two source trees against each other and against the transformers ASR pipeline.

Usage: python bench/pipeline_ab.py WORKDIR REPEATS OTHER_TREE VARIANT[,VARIANT...]

OTHER_TREE is a checkout of another revision (`git worktree add /tmp/old REV`); a VARIANT is
TREE-PRECISION-WINDOWS with TREE `old` (OTHER_TREE) or `new` (this tree) and WINDOWS `10` (10 s windows, 0.5 s
overlap), `20` (20 s, 1 s) or `def` (the defaults), e.g. `old-fp32-10,new-fp32-10`. Each `sew transcribe`
runs with PYTHONPATH set to its tree, from a neutral directory, on WORKDIR's SEW-tiny checkpoint and
10-minute file (created if missing, as `sew bench --workdir` does); interleaved rounds, medians, as
`sew bench` measures them (sewcli/bench.py `process_bench`). Prints one line per run.
"""

from __future__ import annotations

import compileall
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sewcli import bench  # noqa: E402

WINDOWS = {
    "10": ["--chunk-length", "10", "--chunk-overlap", "0.5"],
    "20": ["--chunk-length", "20", "--chunk-overlap", "1"],
    "def": [],
}


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    work, repeats, other, variants = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    model, audio = bench.pipeline_inputs(work)
    compileall.compile_dir(str(other / "sewcli"), quiet=1)
    cmds = {"transformers pipeline": bench.hf_pipeline_command(model, audio, 2)}
    for variant in variants.split(","):
        tree, precision, windows = variant.split("-")
        root = other if tree == "old" else ROOT
        sew = bench.sew_command([audio], model, work / "out", 2, precision) + WINDOWS[windows]
        cmds[variant] = ["env", f"PYTHONPATH={root}", *sew]
    os.chdir(work)  # not a source tree: `python -m sewcli` must import the tree PYTHONPATH names
    load0 = bench.load_average()
    opts = bench.BenchOptions(threads=2, workdir=work)
    rows = bench.process_bench("sew-tiny 10 min", cmds, 600.0, opts, repeats)
    print(f"load {load0} -> {bench.load_average()}")
    base = rows[0].wall
    for r in rows:
        runs = " ".join(f"{w:.2f}" for w in r.walls)
        ratio = base / r.wall
        rss, rc = r.peak_rss_mb, r.returncode
        print(f"{r.label}: {r.wall:.2f} s ({runs}), {ratio:.2f}x, RSS {rss:.0f} MB, rc {rc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
