"""Choose the language model's weights (alpha, beta) on the dev set, never on a test set.

Usage: python tune_lm.py MODEL_DIR [--lm DIR] [--split dev_a [--split dev_b ...]] [--alpha 0.3 --alpha 0.5 ...] [--beta ...]
       [--beam-width 32 ...] [--unk-score-offset -10 ...]
The acoustic model runs once per utterance (as evaluate.py: normalised, unpadded); then sewcli's beam search
(width 32, what `sew transcribe` runs by default) decodes the same posteriors with each (alpha, beta) of the
grid. Prints CER/WER per setting, best first; `--write` puts the best pair into the LM directory's attrs.json.
The dev set (generate.py, split dev_a) is held-out text no test set uses, spoken by training voices; dev_b and
dev_b2 (`generate.py --held-out-dev`) are its sentences spoken by the held-out voices. With several splits,
settings are ranked by the mean of the splits' CERs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from data import load_manifest, read_audio  # noqa: E402
from evaluate import log_probs  # noqa: E402
from metrics import cer, wer  # noqa: E402

from sewcli.checkpoint import read_vocabulary  # noqa: E402
from sewcli.decoding import DecodeOptions, build_decoder  # noqa: E402
from sewcli.model.load import load_model  # noqa: E402
from sewcli.records import Emissions  # noqa: E402


def _per_split(per: dict[str, tuple[float, float]]) -> str:
    return "" if len(per) < 2 else "(" + ", ".join(f"{s} {100 * c:.2f}" for s, (c, _) in per.items()) + ")"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--lm", default=None, help="language_model/ directory (default: MODEL_DIR's own)")
    ap.add_argument("--work", default=str(HERE / "work"))
    ap.add_argument("--split", action="append", default=None, help="dev split(s), repeatable; default dev_a")
    ap.add_argument("--alpha", type=float, action="append", default=None)
    ap.add_argument("--beta", type=float, action="append", default=None)
    ap.add_argument("--beam-width", type=int, action="append", default=None, help="default: 32 (sew's)")
    ap.add_argument("--unk-score-offset", type=float, action="append", default=None,
                    help="pyctcdecode's out-of-vocabulary penalty (default: the LM's attrs.json, -10)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="store the best pair in the LM's attrs.json")
    args = ap.parse_args()
    splits = args.split or ["dev_a"]
    if any(not s.startswith("dev") for s in splits):
        raise SystemExit("tune on the dev sets, not on a test set")
    torch.set_num_threads(args.threads)
    lm_dir = Path(args.lm) if args.lm else Path(args.model_dir) / "language_model"
    corpus = Path(args.work) / "corpus"
    model = load_model(args.model_dir).model
    sets = {}  # split -> (posteriors, references)
    for split in splits:
        rows = load_manifest(corpus, split)
        if not rows:
            raise SystemExit(f"no {split} utterances in {corpus}: run generate.py --only {split}")
        sets[split] = ([log_probs(model, read_audio(corpus, r)) for r in rows], [r["text"] for r in rows])
    vocab = read_vocabulary(Path(args.model_dir))
    results = []
    attrs = json.loads((lm_dir / "attrs.json").read_text())
    grid = itertools.product(args.unk_score_offset or [attrs.get("unk_score_offset", -10.0)],
                             args.beam_width or [32], args.alpha or [0.3, 0.5, 0.7, 0.9],
                             args.beta or [0.5, 1.0, 1.5, 2.5])
    with tempfile.TemporaryDirectory() as tmp:
        for unk, width, alpha, beta in grid:
            lm_copy = Path(tmp) / f"lm{unk}"  # the penalty is read from attrs.json: a copy per value
            if not lm_copy.exists():
                shutil.copytree(lm_dir, lm_copy)
                (lm_copy / "attrs.json").write_text(json.dumps({**attrs, "unk_score_offset": unk}))
            options = DecodeOptions(kind="beam", beam_width=width, lm_path=str(lm_copy), alpha=alpha,
                                    beta=beta)
            decoder = build_decoder(vocab, options)
            per = {}
            for split, (lps, refs) in sets.items():
                hyps = [decoder.decode([Emissions(lp, 0, 0.02)]).text for lp in lps]
                per[split] = (cer(refs, hyps), wer(refs, hyps))
            c = sum(v[0] for v in per.values()) / len(per)
            w = sum(v[1] for v in per.values()) / len(per)
            results.append((c, w, alpha, beta, width, unk, per))
            print(f"unk {unk:g} width {width} alpha {alpha:.2f} beta {beta:.2f}: CER {100 * c:.2f} % "
                  f"WER {100 * w:.2f} % {_per_split(per)}", flush=True)
    sizes = ", ".join(f"{s} {len(v[1])}" for s, v in sets.items())
    print(f"\n{sizes} utterances; CER/WER {'mean over the splits' if len(sets) > 1 else ''}, best first:")
    for c, w, alpha, beta, width, unk, per in sorted(results, key=lambda r: r[:2]):
        print(f"  unk {unk:g} width {width} alpha {alpha:.2f} beta {beta:.2f}  CER {100 * c:.2f} %  "
              f"WER {100 * w:.2f} %  {_per_split(per)}")
    if args.write:
        _, _, alpha, beta, _, _, _ = min(results, key=lambda r: r[:2])
        attrs_path = lm_dir / "attrs.json"
        attrs.update(alpha=alpha, beta=beta)
        attrs_path.write_text(json.dumps(attrs, indent=2) + "\n")
        print(f"wrote alpha {alpha} beta {beta} to {attrs_path}")


if __name__ == "__main__":
    main()
