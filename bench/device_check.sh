#!/usr/bin/env bash
# The GPU checks, as one short script for a session that is lent a GPU machine (the `device` tool).
#
# Here first:  bash bench/device_wheels.sh        (fills .whl/, ~35 MB)
# Then there:  device run, carry [".whl"], command "bash bench/device_check.sh", timeout_s 540
#
# 1. the tests marked `gpu` (tests/test_device.py: parity with transformers on the GPU, fp16/bf16, batched
#    windows, the CLI on CUDA; tests/test_recipe.py: training steps on CUDA);
# 2. `sew bench --device cuda`: forward rows of the four models at fp32/fp16/bf16, batch 1 and 16, against
#    transformers eager on the same GPU, and whole processes against transformers' pipeline on the GPU.
# Results land in $OUT (the device tool brings them back): versions.txt, pytest-gpu.log,
# bench-cuda.md/.json/.log.
# An estimated 5-7 minutes on an H200 (not yet run on one: no GPU was lent); each part has its own time
# limit, so one that hangs leaves the rest their time.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/sew-device-check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "installing .whl/ failed: run bench/device_wheels.sh here first" >&2; exit 1; }
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import sys, torch, numpy, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'numpy', numpy.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$OUT/versions.txt"
echo "== pytest -m gpu"
timeout 200 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_device.py tests/test_recipe.py 2>&1 \
  | tee "$OUT/pytest-gpu.log" | tail -25
echo "== sew bench --device cuda"
timeout 300 python3 -m sewcli bench --device cuda --repeats 5 --pipeline-minutes 10 --pipeline-repeats 2 \
  --rss-minutes 0 --directory-files 6 -o "$OUT/bench-cuda.md" --json "$OUT/bench-cuda.json" 2> "$OUT/bench-cuda.log"
echo "bench exit $?"
cat "$OUT/bench-cuda.md" 2>/dev/null || tail -20 "$OUT/bench-cuda.log"
