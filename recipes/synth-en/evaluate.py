"""Greedy CER/WER of an exported model on the held-out test sets and on real recordings (alsa-utils sounds).

Usage: python evaluate.py MODEL_DIR [--work work] [--json out.json] [--lm DIR]
The model is loaded with the project's own loader (sewcli.model.load); each utterance is normalised on its own
and run unpadded, as `sew transcribe` does for short files. With a language model (--lm, else MODEL_DIR's own
language_model/ if it has one) the same posteriors are also decoded as `sew transcribe` does by default:
sewcli's beam search (width 32) with that LM; those numbers go under "lm" in each set's results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from data import colored_noise, greedy_decode, load_manifest, normalize, read_audio  # noqa: E402
from metrics import cer, wer  # noqa: E402

from sewcli.model.load import load_model  # noqa: E402

ALSA_DIR = Path("/usr/share/sounds/alsa")
ALSA_REFS = {"Front_Center": "FRONT CENTER", "Front_Left": "FRONT LEFT", "Front_Right": "FRONT RIGHT",
             "Rear_Center": "REAR CENTER", "Rear_Left": "REAR LEFT", "Rear_Right": "REAR RIGHT",
             "Side_Left": "SIDE LEFT", "Side_Right": "SIDE RIGHT"}
SET_NAMES = {"test_a": "(a) held-out sentences, training voices", "test_b": "(b) held-out voice: flite rms",
             "test_b2": "(b2) held-out voice: festival ked_diphone", "alsa": "(c) real human recordings (alsa-utils)",
             "dev_a": "dev set: held-out sentences no test uses, training voices",
             "dev_b": "dev set: dev_a's sentences, held-out voice flite rms",
             "dev_b2": "dev set: dev_a's sentences, held-out voice festival ked_diphone",
             "fresh_a": "(a') fresh test set (2026-12-06): held-out sentences no other set uses, training voices",
             "fresh_b": "(b') fresh test set: fresh_a's sentences, held-out voice flite rms",
             "fresh_b2": "(b2') fresh test set: fresh_a's sentences, held-out voice festival ked_diphone",
             "noise": "(d) non-speech: noise and digital silence (no words: every letter is an error)"}


@torch.no_grad()
def log_probs(model: torch.nn.Module, audio: np.ndarray) -> np.ndarray:
    """One utterance (16 kHz float) -> CTC log-probabilities (frames, vocab)."""
    x = torch.from_numpy(normalize(audio))[None]  # (1, samples)
    return torch.log_softmax(model(x)[0].float(), dim=-1).numpy()


class LMDecoder:
    """sewcli's beam search with a language model, exactly as `sew transcribe` builds it."""

    def __init__(self, model_dir: str, lm_dir: Path) -> None:
        from sewcli.checkpoint import read_vocabulary
        from sewcli.decoding import DecodeOptions, build_decoder

        self.lm_dir = lm_dir
        self.decoder = build_decoder(read_vocabulary(Path(model_dir)), DecodeOptions(kind="beam", lm_path=str(lm_dir)))

    def __call__(self, lp: np.ndarray) -> str:
        from sewcli.records import Emissions

        return self.decoder.decode([Emissions(lp, 0, 0.02)]).text


def load_alsa(alsa_dir: Path = ALSA_DIR) -> list[tuple[str, np.ndarray, str]]:
    """(name, 16 kHz mono audio, reference) for the alsa-utils speaker-test recordings that exist."""
    out = []
    for name, ref in ALSA_REFS.items():
        p = alsa_dir / f"{name}.wav"
        if p.exists():
            a, sr = sf.read(p, dtype="float32", always_2d=True)
            out.append((name, soxr.resample(a.mean(axis=1), sr, 16000).astype(np.float32), ref))
    return out


def noise_set(seconds: float = 5.0) -> list[tuple[str, np.ndarray]]:
    """(name, audio) of audio without speech: white/pink/brown noise at -60/-40/-20 dBFS, digital silence."""
    rng = np.random.default_rng(1234)
    out = []
    for kind, kind_name in enumerate(("white", "pink", "brown")):
        for dbfs in (-60, -40, -20):
            x = colored_noise(int(seconds * 16000), rng, kind)
            out.append((f"{kind_name} noise {dbfs} dBFS", x / np.sqrt((x**2).mean()) * 10 ** (dbfs / 20)))
    out.append(("digital silence", np.zeros(int(seconds * 16000), np.float32)))
    return [(name, a.astype(np.float32)) for name, a in out]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--work", default=str(HERE / "work"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lm", default=None, help="language_model/ directory (default: MODEL_DIR's own, if any)")
    ap.add_argument("--split", action="append", default=None, choices=list(SET_NAMES),
                    help="evaluate only these (repeatable); default: the three test sets and alsa")
    args = ap.parse_args()
    splits = args.split or ["test_a", "test_b", "test_b2", "alsa", "noise"]
    torch.set_num_threads(args.threads)
    model = load_model(args.model_dir).model
    lm_dir = Path(args.lm) if args.lm else Path(args.model_dir) / "language_model"
    lm = LMDecoder(args.model_dir, lm_dir) if lm_dir.is_dir() else None
    corpus = Path(args.work) / "corpus"
    results: dict[str, dict] = {}
    for split in [s for s in splits if s not in ("alsa", "noise")]:
        rows = load_manifest(corpus, split)[: args.limit]
        if not rows:
            continue
        t = time.time()
        lps = [log_probs(model, read_audio(corpus, r)) for r in rows]
        hyps = [greedy_decode(lp.argmax(-1)) for lp in lps]
        refs = [r["text"] for r in rows]
        secs = sum(r["samples"] for r in rows) / 16000
        results[split] = {"name": SET_NAMES[split], "n": len(rows), "hours": round(secs / 3600, 3),
                          "cer": round(cer(refs, hyps), 4), "wer": round(wer(refs, hyps), 4),
                          "rtf": round((time.time() - t) / secs, 4),
                          "examples": [[r, h] for r, h in zip(refs[:5], hyps[:5])]}
        if lm is not None:
            lm_hyps = [lm(lp) for lp in lps]
            results[split]["lm"] = {"path": str(lm.lm_dir), "cer": round(cer(refs, lm_hyps), 4),
                                    "wer": round(wer(refs, lm_hyps), 4),
                                    "examples": [[r, h] for r, h in zip(refs[:5], lm_hyps[:5])]}
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(r["engine"] + ":" + r["voice"].split("+")[0], []).append(i)
        results[split]["by_voice"] = {g: {"n": len(ix), "cer": round(cer([refs[i] for i in ix], [hyps[i] for i in ix]), 4)}
                                      for g, ix in sorted(groups.items())}
        print(split, {k: v for k, v in results[split].items() if k != "examples"}, flush=True)
    alsa = load_alsa() if "alsa" in splits else []
    if alsa:
        lps = [log_probs(model, a) for _, a, _ in alsa]
        hyps = [greedy_decode(lp.argmax(-1)) for lp in lps]
        refs = [r for _, _, r in alsa]
        results["alsa"] = {"name": SET_NAMES["alsa"], "n": len(alsa),
                           "hours": round(sum(len(a) for _, a, _ in alsa) / 16000 / 3600, 5),
                           "cer": round(cer(refs, hyps), 4),
                           "wer": round(wer(refs, hyps), 4),
                           "examples": [[n, r, h] for (n, _, r), h in zip(alsa, hyps)]}
        if lm is not None:
            lm_hyps = [lm(lp) for lp in lps]
            results["alsa"]["lm"] = {"path": str(lm.lm_dir), "cer": round(cer(refs, lm_hyps), 4),
                                     "wer": round(wer(refs, lm_hyps), 4),
                                     "examples": [[n, r, h] for (n, _, r), h in zip(alsa, lm_hyps)]}
        print("alsa", results["alsa"], flush=True)
    if "noise" in splits:
        clips = noise_set()
        lps = [log_probs(model, a) for _, a in clips]
        minutes = sum(len(a) for _, a in clips) / 16000 / 60
        hyps = [greedy_decode(lp.argmax(-1)) for lp in lps]
        results["noise"] = {"name": SET_NAMES["noise"], "n": len(clips), "minutes": round(minutes, 2),
                            "chars_per_minute": round(sum(len(h.replace(" ", "")) for h in hyps) / minutes, 1),
                            "examples": [[n, h] for (n, _), h in zip(clips, hyps)]}
        if lm is not None:
            lm_hyps = [lm(lp) for lp in lps]
            results["noise"]["lm"] = {
                "chars_per_minute": round(sum(len(h.replace(" ", "")) for h in lm_hyps) / minutes, 1),
                "words_per_minute": round(sum(len(h.split()) for h in lm_hyps) / minutes, 1),
                "examples": [[n, h] for (n, _), h in zip(clips, lm_hyps)]}
        print("noise", results["noise"], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
