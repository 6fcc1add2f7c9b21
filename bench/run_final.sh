#!/bin/sh
# The runs behind docs/benchmarks.md (2 shared CPU cores; see the load averages recorded in each report).
# Usage: sh bench/run_final.sh [OUTDIR]   (default /tmp/sew-bench); expect ~30-60 min on a busy 2-core machine.
set -eu
OUT=${1:-/tmp/sew-bench}
mkdir -p "$OUT"
# 1. model forward, the two big configs, batch 1 only (time budget)
sew bench -m wav2vec2-base -m sew-d-tiny --batch-size 1 --repeats 3 --pipeline-minutes 0 --rss-minutes 0 \
    --directory-files 0 --workdir "$OUT/work" -o "$OUT/forward_big.md" --json "$OUT/forward_big.json"
# 2. SEW-tiny + embedded forward (batch 1 and 4), whole process vs the transformers ASR pipeline on a 10-minute
#    file, a directory of 6 x 30 s files, RSS at 10 min and 2 h with the default (embedded) model, --help
sew bench -m sew-tiny -m embedded --repeats 3 --pipeline-minutes 10 --pipeline-repeats 3 --rss-minutes 10 \
    --rss-minutes 120 --workdir "$OUT/work" -o "$OUT/main.md" --json "$OUT/main.json"
# 3. accuracy of the fast paths on the embedded model's held-out sets
python bench/cer_precision.py --limit 60 --json "$OUT/cer.json" | tee "$OUT/cer.md"
# 4. the whole-process comparison alone, 3 rounds
python bench/pipeline_rerun.py "$OUT/work" 3 | tee "$OUT/pipeline_rerun.md"
