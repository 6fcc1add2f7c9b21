"""Measure chunked vs whole-file transcripts to pick the default --chunk-length / --chunk-overlap.

For one long input (the examples concatenated, repeated to LENGTH seconds) this runs the model once over the
whole signal (a single window: the reference) and then with every (chunk, overlap) pair, and reports:
  agree   fraction of frames whose argmax equals the whole-file argmax
  wer_w   word error rate of the chunked transcript against the whole-file transcript
  wer_r   word error rate against the reference text (examples/*.txt), when there is one
  rtf     wall time / audio time of inference + greedy decoding (the process's torch threads)

Usage: python bench/chunk_defaults.py [--model DIR] [--seconds 180] [--threads 2]
"""

from __future__ import annotations

import argparse
import glob
import os
import time

import numpy as np
import soundfile as sf
import soxr
import torch

from sewcli import chunking, decoding, hub, inference, registry


def wer(ref: list[str], hyp: list[str]) -> float:
    """Word error rate (Levenshtein over words / reference length)."""
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d[0] = d.copy(), i
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return float(d[-1]) / max(1, len(ref))


def long_input(seconds: float, rate: int) -> tuple[np.ndarray, list[str]]:
    """The examples resampled, joined with 0.4 s gaps, repeated to at least `seconds`; and their words."""
    pieces, words = [], []
    files = sorted(f for f in glob.glob("examples/*") if not f.endswith((".txt", ".md")))
    gap = np.zeros(int(0.4 * rate), np.float32)
    while sum(p.size for p in pieces) < seconds * rate:
        for f in files:
            x, r = sf.read(f, dtype="float32", always_2d=True)
            pieces += [soxr.resample(x.mean(axis=1), r, rate).astype(np.float32), gap]
            ref = os.path.splitext(f)[0] + ".txt"
            if os.path.exists(ref):
                words += open(ref, encoding="utf-8").read().lower().split()
    return np.concatenate(pieces), words


def run(
    model: inference.LoadedModel, x: np.ndarray, chunk: float, overlap: float
) -> tuple[np.ndarray, str, float]:
    opts = chunking.ChunkOptions(chunk, overlap)
    t0 = time.perf_counter()
    wins = chunking.windows(
        [x],
        sample_rate=model.sample_rate,
        options=opts,
        hop_samples=model.hop_samples,
        frame_count=model.frame_count,
        min_samples=model.min_samples,
        align_samples=model.align_samples,
    )
    ems = list(inference.emissions(wins, model, inference.InferenceOptions()))
    text = decoding.build_decoder(model.vocab, decoding.DecodeOptions()).decode(ems).text
    elapsed = time.perf_counter() - t0
    lp = np.concatenate([e.log_probs for e in ems])
    return lp, text, elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = registry.resolve(args.model, registry.load_registry())
    model = inference.load(
        hub.model_directory(spec), inference.InferenceOptions(device="cpu"), name=spec.name
    )
    x, ref_words = long_input(args.seconds, model.sample_rate)
    whole_lp, whole_text, whole_t = run(model, x, x.size / model.sample_rate + 1, 0.5)
    dur = x.size / model.sample_rate
    ref = ref_words
    print(
        f"model {spec.name}; input {dur:.0f} s; whole-file rtf {whole_t / dur:.4f}; "
        f"whole-file wer_r {wer(ref, whole_text.lower().split()):.3f}"
    )
    print(f"{'chunk':>6} {'overlap':>7} {'agree':>7} {'wer_w':>6} {'wer_r':>6} {'rtf':>7}")
    for chunk in (5.0, 10.0, 15.0, 20.0, 30.0):
        for ratio in (0.05, 0.1, 0.2):
            lp, text, t = run(model, x, chunk, chunk * ratio)
            agree = float((lp.argmax(1) == whole_lp.argmax(1)).mean())
            w_w = wer(whole_text.split(), text.split())
            w_r = wer(ref, text.lower().split()) if ref else float("nan")
            print(f"{chunk:6.1f} {chunk * ratio:7.2f} {agree:7.4f} {w_w:6.3f} {w_r:6.3f} {t / dur:7.4f}")


if __name__ == "__main__":
    main()
