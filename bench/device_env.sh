# Sourced by the scripts that run on a lent GPU machine (bench/device_check.sh, bench/cuda_followup.sh), from
# the repository root: installs the carried wheels of .whl/ (bench/device_wheels.sh) into /tmp/site, keeps the
# image's numpy 2 (its scipy, which transformers' pipeline imports, needs it; older .whl/ folders carried
# numpy 1.26), and sets OUT, PYTHONPATH and an offline, unbuffered Python.
OUT=${OUT:-/tmp/sew-device-check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "installing .whl/ failed: run bench/device_wheels.sh here first" >&2; exit 1; }
rm -rf /tmp/site/numpy /tmp/site/numpy-*
export OUT PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
