#!/usr/bin/env bash
# The GPU checks, as one short script for a session that is lent a GPU machine (the `device` tool).
#
# Here first:  bash bench/device_wheels.sh        (fills .whl/, ~19 MB)
#              python bench/gpu_corpus.py       (optional: fills .gpu_corpus/, ~9 MB, from the recipe's corpus)
# Then there:  device run, carry [".whl", ".gpu_corpus"], command "bash bench/device_check.sh", timeout_s 595
#
# 1. the tests marked `gpu` (tests/test_device.py: parity with transformers on the GPU, fp16/bf16, batched
#    windows, the CLI on CUDA; tests/test_recipe.py: training steps on CUDA);
# 2. `sew bench --device cuda`: forward rows of the four models at fp32/fp16/bf16, batch 1 and 16, against
#    transformers eager on the same GPU, and whole processes against transformers' pipeline on the GPU;
# 3. where .gpu_corpus/ travels too (bench/gpu_corpus.py makes it: 100 real corpus utterances as FLAC, listed
#    140 times), the recipe's training speed on the GPU (bf16, 12 loader processes), from the shipped model,
#    at the recipe's batch size and at 8 times it.
# Results land in $OUT (the device tool brings them back): versions.txt, pytest-gpu.log,
# bench-cuda.md/.json/.log, train-b50.log, train-b400.log.
# Each part has its own time limit (9.5 minutes in all), so one that hangs leaves the rest their time.
# On an H200 (2026-12-04): 277 s, 17 tests passed; results in docs/benchmarks.md.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/device_env.sh
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import sys, torch, numpy, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'numpy', numpy.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$OUT/versions.txt"
echo "== pytest -m gpu"
timeout 160 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_device.py tests/test_recipe.py 2>&1 \
  | tee "$OUT/pytest-gpu.log" | tail -25
echo "== sew bench --device cuda"
timeout 240 python3 -m sewcli bench --device cuda --repeats 5 --pipeline-minutes 10 --pipeline-repeats 2 \
  --rss-minutes 0 --directory-files 6 -o "$OUT/bench-cuda.md" --json "$OUT/bench-cuda.json" 2> "$OUT/bench-cuda.log"
echo "bench exit $?"
if [ -d .gpu_corpus/corpus ]; then
  echo "== recipe training on cuda"
  rm -rf /tmp/gw && mkdir -p /tmp/gw && cp -r .gpu_corpus/corpus /tmp/gw/
  for b in 50 400; do
    rm -rf /tmp/gw/train /tmp/gw/export
    (cd recipes/synth-en && timeout 70 python3 train.py --work /tmp/gw --init-from ../../sewcli/assets/sew-synth-en \
      --ce-steps 0 --ce-decay 0 --augment-from 0 --warmup 200 --lr 2e-4 --p-warp 0.4 --p-pad 0.3 --p-empty 0.02 \
      --p-join 0.3 --device cuda --workers 12 --batch-seconds $b --minutes 0.6 --eval-every 100000 \
      --save-every 100000 --threads 4) > "$OUT/train-b$b.log" 2>&1
    echo "batch-seconds $b exit $?: $(grep '^step' "$OUT/train-b$b.log" | tail -1)"
  done
fi
cat "$OUT/bench-cuda.md" 2>/dev/null || tail -20 "$OUT/bench-cuda.log"
