"""Test-time vocal-tract-length normalisation probe: does warping an unseen voice's formants help the model?

(`--transform speed`: the same with speed perturbation, tempo, pitch and formants together.)

For every utterance of the given dev splits and every warp factor alpha, the audio goes through
data.warp_formants (the training augmentation's voice change), then the model; greedy and LM transcripts and a
few per-utterance confidence scores are stored. The summary compares: each fixed alpha, the oracle alpha per
utterance (an upper bound, not a method), and choosing alpha per utterance by each confidence score (a method:
it needs no reference). Dev splits only; the script refuses test splits.

Usage: python vtln_probe.py MODEL_DIR --split dev_b --split dev_b2 --split dev_a [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soxr
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from data import SR, greedy_decode, load_manifest, read_audio, warp_formants  # noqa: E402
from evaluate import LMDecoder, log_probs  # noqa: E402
from metrics import cer  # noqa: E402

from sewcli.model.load import load_model  # noqa: E402

ALPHAS = (0.8, 0.87, 0.93, 1.0, 1.07, 1.15, 1.25)


def speed(x: np.ndarray, alpha: float) -> np.ndarray:
    """Play `x` `alpha` times faster (tempo, pitch and formants together), as speed perturbation does."""
    return soxr.resample(x, SR * alpha, SR, quality="HQ")


def confidences(lp: np.ndarray) -> dict[str, float]:
    """Reference-free scores of one utterance's posteriors (frames, vocab); higher = more confident."""
    top = lp.max(-1)  # (frames,)
    speech = lp.argmax(-1) != 0
    ent = -(np.exp(lp) * lp).sum(-1)  # (frames,)
    return {"mean_max": float(top.mean()),
            "speech_max": float(top[speech].mean()) if speech.any() else float(top.mean()),
            "neg_entropy": float(-ent.mean())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--work", default=str(HERE / "work"))
    ap.add_argument("--split", action="append", required=True)
    ap.add_argument("--alpha", type=float, action="append", default=None)
    ap.add_argument("--transform", choices=("warp", "speed"), default="warp",
                    help="warp: data.warp_formants (formants only); speed: resampling, as speed perturbation "
                         "(tempo, pitch and formants together; alpha > 1 faster)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if any(not s.startswith("dev") for s in args.split):
        raise SystemExit("vtln_probe.py: dev splits only (the test sets are evaluated once, by evaluate.py)")
    alphas = tuple(args.alpha or ALPHAS)
    transform = warp_formants if args.transform == "warp" else speed
    torch.set_num_threads(args.threads)
    model = load_model(args.model_dir).model
    lm = LMDecoder(args.model_dir, Path(args.model_dir) / "language_model")
    corpus = Path(args.work) / "corpus"
    out: dict[str, dict] = {}
    for split in args.split:
        rows = load_manifest(corpus, split)[: args.limit]
        refs = [r["text"] for r in rows]
        t = time.time()
        per: list[dict] = []  # per utterance: alpha -> {greedy, lm, scores}
        for r in rows:
            audio = read_audio(corpus, r)
            u = {}
            for a in alphas:
                lp = log_probs(model, audio if a == 1.0 else transform(audio, a).astype(np.float32))
                u[str(a)] = {"greedy": greedy_decode(lp.argmax(-1)), "lm": lm(lp), **confidences(lp)}
            per.append(u)
        summary: dict[str, dict] = {}
        for kind in ("greedy", "lm"):
            s = {f"fixed {a}": round(cer(refs, [u[str(a)][kind] for u in per]), 4) for a in alphas}
            s["oracle"] = round(cer(refs, [min((u[str(a)][kind] for a in alphas),
                                              key=lambda h, r=r: cer([r], [h])) for u, r in zip(per, refs)]), 4)
            for score in ("mean_max", "speech_max", "neg_entropy"):
                pick = [max(alphas, key=lambda a, u=u: u[str(a)][score]) for u in per]
                s[f"by {score}"] = round(cer(refs, [u[str(a)][kind] for u, a in zip(per, pick)]), 4)
                s[f"by {score}: alphas"] = {str(a): pick.count(a) for a in alphas}
            summary[kind] = s
        out[split] = {"n": len(rows), "seconds": round(time.time() - t, 1), "summary": summary,
                      "utterances": [{"id": r["id"], "ref": ref, **u} for r, ref, u in zip(rows, refs, per)]}
        print(split, json.dumps(summary, indent=1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
