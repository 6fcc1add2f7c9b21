"""A small slice of the recipe's corpus that can travel to a lent GPU machine (which has no TTS engines).

    python bench/gpu_corpus.py [--work recipes/synth-en/work] [--files 100] [--repeats 140]

Writes .gpu_corpus/corpus/: `--files` training utterances drawn at random (seed 0) as FLAC, and a manifest
that lists each of them `--repeats` times under new ids, so that one epoch is long enough for the training
speed to settle (bench/device_check.sh times recipes/synth-en/train.py on it). Audio content does not change
the speed of a training step, only its lengths do; the slice keeps the corpus' length mix. The device tool
carries at most 64 MiB in all: 100 files are about 9 MB.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "recipes" / "synth-en" / "work")
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=140)
    ap.add_argument("--out", type=Path, default=ROOT / ".gpu_corpus")
    args = ap.parse_args()
    src = args.work / "corpus"
    rows = []
    for manifest in sorted(src.glob("manifest.*.jsonl")):
        rows += [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    train = sorted((r for r in rows if r["split"] == "train"), key=lambda r: r["id"])
    if not train:
        raise SystemExit(f"{src}: no training utterances (generate the corpus first)")
    random.Random(0).shuffle(train)
    dst = args.out / "corpus"
    shutil.rmtree(args.out, ignore_errors=True)
    (dst / "wav").mkdir(parents=True)
    picked = []
    for row in train[: args.files]:
        audio, sr = sf.read(src / row["path"], dtype="int16")
        name = Path(row["path"]).stem + ".flac"
        sf.write(dst / "wav" / name, audio, sr, format="FLAC")
        picked.append(dict(row, path=f"wav/{name}"))
    with open(dst / "manifest.0.jsonl", "w") as fh:
        for k in range(args.repeats):
            for row in picked:
                fh.write(json.dumps(dict(row, id=f"{row['id']}_{k:03d}")) + "\n")
    seconds = sum(r["samples"] for r in picked) / 16000
    print(f"{dst}: {len(picked)} files, {seconds:.0f} s of audio; one epoch {seconds * args.repeats:.0f} s")


if __name__ == "__main__":
    main()
