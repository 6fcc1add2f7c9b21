"""CER of a model at each --precision on the embedded model's held-out sets (the fast-path accuracy check).

Usage: python bench/cer_precision.py [MODEL_DIR] [--corpus recipes/synth-en/work/corpus] [--limit 150]
       [--precision fp32 --precision int8 ...] [--split dev_a ...] [--threads 2] [--json out.json]

Every utterance goes through the same stages as `sew transcribe` (audio -> chunking -> inference -> greedy
decoding, pipeline.transcribe_file), once per precision, with the same loaded decoder. The held-out splits are
the recipe's (recipes/synth-en/generate.py): test_a (held-out sentences, training voices), test_b and test_b2
(held-out voices/engines); `--split` picks others, e.g. the dev sets dev_a, dev_b, dev_b2 for a decision
that should not look at the test sets. Reported: corpus CER/WER per split and precision, the change against
fp32 in CER points, and the wall time of each pass. The issue's bound: CER may change by at most 0.3 points.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sewcli import decoding, inference, pipeline  # noqa: E402
from sewcli.bench import embedded_checkpoint  # noqa: E402

SPLITS = ("test_a", "test_b", "test_b2")


def edit_distance(a: str | list[str], b: str | list[str]) -> int:
    """Levenshtein distance between two sequences (characters or words)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def rows_of(corpus: Path, split: str, limit: int) -> list[dict[str, object]]:
    """The first `limit` manifest rows of `split`, sorted by id (deterministic)."""
    rows = []
    for manifest in sorted(corpus.glob("manifest.*.jsonl")):
        for line in manifest.read_text().splitlines():
            row = json.loads(line)
            if row["split"] == split:
                rows.append(row)
    return sorted(rows, key=lambda r: str(r["id"]))[:limit]


def evaluate(
    model_dir: Path, corpus: Path, precision: str, limit: int, threads: int, splits: tuple[str, ...] = SPLITS
) -> dict[str, object]:
    """CER/WER per split for one precision through pipeline.transcribe_file."""
    opts = pipeline.PipelineOptions(
        inference=inference.InferenceOptions(device="cpu", threads=threads, precision=precision)
    )
    model = inference.load(model_dir, opts.inference)
    decoder = decoding.build_decoder(model.vocab, opts.decode)
    out: dict[str, object] = {}
    for split in splits:
        rows = rows_of(corpus, split, limit)
        if not rows:
            continue
        t0 = time.perf_counter()
        hyps = [pipeline.transcribe_file(corpus / str(r["path"]), model, decoder, opts).text for r in rows]
        wall = time.perf_counter() - t0
        refs = [str(r["text"]) for r in rows]
        chars = sum(edit_distance(r, h) for r, h in zip(refs, hyps, strict=True))
        words = sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps, strict=True))
        out[split] = {
            "n": len(rows),
            "cer": 100 * chars / sum(len(r) for r in refs),
            "wer": 100 * words / sum(len(r.split()) for r in refs),
            "seconds": wall,
            "hyps": hyps,
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", nargs="?", type=Path, default=None)
    ap.add_argument("--corpus", type=Path, default=ROOT / "recipes/synth-en/work/corpus")
    ap.add_argument("--limit", type=int, default=150)
    ap.add_argument("--precision", action="append", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--split",
        action="append",
        default=None,
        help="evaluate these splits (repeatable; e.g. dev_a, dev_b, dev_b2); default: the test sets",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    model_dir = args.model_dir or embedded_checkpoint()
    precisions = args.precision or ["fp32", "bf16", "int8"]
    results = {
        p: evaluate(model_dir, args.corpus, p, args.limit, args.threads, tuple(args.split or SPLITS))
        for p in precisions
    }
    base = results.get("fp32", {})
    print(f"model {model_dir}, {args.limit} utterances per split at most")
    print("| precision | split | n | CER % | change vs fp32 (points) | WER % | same text as fp32 | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for p, res in results.items():
        for split, r in res.items():
            assert isinstance(r, dict)
            ref = base.get(split)
            delta = f"{r['cer'] - ref['cer']:+.2f}" if isinstance(ref, dict) else "-"
            same = "-"
            if isinstance(ref, dict):
                same = f"{sum(a == b for a, b in zip(r['hyps'], ref['hyps'], strict=True))}/{r['n']}"
            print(
                f"| {p} | {split} | {r['n']} | {r['cer']:.2f} | {delta} | {r['wer']:.2f} | {same} "
                f"| {r['seconds']:.1f} |"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
