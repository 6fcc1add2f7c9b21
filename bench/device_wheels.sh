#!/usr/bin/env bash
# Wheels for the lent GPU machine (`device` tool), downloaded here, where pip reaches the package index.
#
# That machine has Python 3.12 with a CUDA build of torch, and no network. What sew and its GPU tests need
# beyond what its image holds travels as wheels in .whl/ (git-ignored), pinned to the versions CI tests with
# (transformers as in pyproject's test extra, and the regex it asks for; typer and soundfile with what they
# import). Not numpy: CI pins numpy < 2 for pyctcdecode, but the image's scipy, which transformers' pipeline
# imports, needs the image's numpy 2 (seen on an H200 on 2026-12-04); sew's GPU tests pass with it.
# Then run bench/device_check.sh there, with `.whl` carried.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 soxr==1.1.0 pyctcdecode==0.5.0 \
  pygtrie==2.6.2 transformers==5.23.0 typer==0.29.2 pydantic==2.14.4 pydantic-core==2.50.5 \
  annotated-types==0.8.0 typing-inspection==0.4.5 regex==2026.11.19
du -sh .whl
