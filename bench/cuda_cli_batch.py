"""`sew transcribe --device cuda` with several windows per forward (the CUDA default) against one.

    python bench/cuda_cli_batch.py [--minutes 10 60] [--json OUT.json]

Whole processes, as `sew bench` times them (`sewcli.bench.run_process`, 2 threads), on speech-like files of
each length, for SEW-tiny in fp16 and wav2vec2-base in fp32 and fp16 (random weights in the real configs):
`--batch-size 1`, the default (`sewcli.inference.CUDA_AUTO_BATCH`) and 16, interleaved. Each run's
transcript is compared with the batch-1 run's (same windows, no padding: only rounding can differ). Needs a
CUDA device.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sewcli import bench  # noqa: E402

CASES = (("sew-tiny", "fp16"), ("wav2vec2-base", "fp32"), ("wav2vec2-base", "fp16"))
BATCHES = ("1", "default", "16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    env = bench.bench_env(2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for minutes in args.minutes:
            audio = bench.write_long_audio(work / f"speech-{minutes:g}min.wav", minutes * 60)
            for name, precision in CASES:
                model = bench.checkpoint_for(name, work)
                texts: dict[str, str] = {}
                for batch in BATCHES:
                    out = work / f"out-{batch}"
                    command = bench.sew_command([audio], model, out, 2, precision, "cuda")
                    if batch != "default":
                        command += ["--batch-size", batch]
                    wall, rss, status = bench.run_process(command, env)
                    texts[batch] = (out / f"{audio.stem}.txt").read_text() if status == 0 else ""
                    same = difflib.SequenceMatcher(None, texts["1"], texts[batch], autojunk=False).ratio()
                    row = {
                        "minutes": minutes,
                        "model": name,
                        "precision": precision,
                        "batch": batch,
                        "wall": round(wall, 2),
                        "peak_rss_mb": round(rss),
                        "status": status,
                        "text_chars": len(texts[batch]),
                        "same_as_batch_1": round(same, 4),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print("\n| audio | model | precision | --batch-size | wall s | audio-s / s | transcript vs batch 1 |")
    print("|---|---|---|---|---:|---:|---:|")
    for r in rows:
        speed = r["minutes"] * 60 / r["wall"]
        print(
            f"| {r['minutes']:g} min | {r['model']} | {r['precision']} | {r['batch']} | {r['wall']:.2f} | "
            f"{speed:.0f} | {r['same_as_batch_1']:.4f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
