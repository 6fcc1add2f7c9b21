#!/usr/bin/env bash
# The second GPU run of 2026-12-04, after bench/device_check.sh: why half precision did not speed up one
# window (bench/cuda_batch1.py), and whether the recipe's training on the GPU is held back by its loader
# processes' augmentation (15 loader processes, with and without augmentation, 8x the recipe's batch).
# Same set-up as bench/device_check.sh: carry [".whl", ".gpu_corpus"]; about 3-4 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/device_env.sh
timeout 170 python3 bench/cuda_batch1.py --json "$OUT/cuda_batch1.json" > "$OUT/cuda_batch1.log" 2>&1
echo "cuda_batch1 exit $?"
if [ -d .gpu_corpus/corpus ]; then
  rm -rf /tmp/gw && mkdir -p /tmp/gw && cp -r .gpu_corpus/corpus /tmp/gw/
  for aug in augment no-augment; do
    rm -rf /tmp/gw/train /tmp/gw/export
    flag=""; [ "$aug" = no-augment ] && flag="--no-augment"
    (cd recipes/synth-en && timeout 65 python3 train.py --work /tmp/gw --init-from ../../sewcli/assets/sew-synth-en \
      --ce-steps 0 --ce-decay 0 --augment-from 0 --warmup 200 --lr 2e-4 --p-warp 0.4 --p-pad 0.3 --p-empty 0.02 \
      --p-join 0.3 --device cuda --workers 15 --batch-seconds 400 --minutes 0.6 --eval-every 100000 \
      --save-every 100000 --threads 4 $flag) > "$OUT/train-w15-$aug.log" 2>&1
    echo "workers 15 $aug exit $?: $(grep '^step' "$OUT/train-w15-$aug.log" | tail -1)"
  done
fi
grep -v "^|" "$OUT/cuda_batch1.log" | grep -i "failed\|error\|Traceback" | head -5
sed -n '/^| model/,$p' "$OUT/cuda_batch1.log"
sed -n '/^wav2vec2-base fp16/,/^  /p' "$OUT/cuda_batch1.log"
grep -A8 "^wav2vec2-base fp16" "$OUT/cuda_batch1.log"
