"""Time the greedy and beam decoders on synthetic, CTC-like (peaky) log-probs to choose a default beam width.

Usage: python bench/decode_beam.py [--seconds 60] [--widths 1,8,16,32,64,100]

The emissions imitate a character CTC model at 20 ms frames: about 60% confident blank frames, one to
three frames per emitted letter, word delimiters between words, and one frame in eight ambiguous between
the true letter and a confusable one (p 0.55 / 0.35). Real model posteriors may be less peaky, which
makes beam search slower.
Besides time, it reports the character error rate of each decoder against the synthetic truth.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sewcli import records
from sewcli.decoding import DecodeOptions, build_decoder

TOKENS = ("<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ")


def synthetic(seconds: float, seed: int = 0) -> tuple[np.ndarray, str]:
    """Return log-probs (frames, vocab) and the text they were generated from."""
    rng = np.random.default_rng(seed)
    v = len(TOKENS)
    rows: list[np.ndarray] = []
    truth: list[str] = []
    n_frames = int(seconds / 0.02)

    def row(probs: dict[int, float]) -> np.ndarray:
        p = rng.dirichlet(np.full(v, 0.3)) * (1.0 - sum(probs.values()))
        for k, q in probs.items():
            p[k] += q
        return np.log(p).astype(np.float32)

    while len(rows) < n_frames:
        word = "".join(TOKENS[i] for i in rng.integers(5, v, size=rng.integers(2, 8)))
        for ch in word:
            tid = TOKENS.index(ch)
            for _ in range(rng.integers(1, 4)):
                if rng.random() < 0.125:
                    rows.append(row({tid: 0.55, int(rng.integers(5, v)): 0.35}))
                else:
                    rows.append(row({tid: 0.9}))
            for _ in range(rng.integers(1, 3)):
                rows.append(row({0: 0.95}))
        rows.append(row({4: 0.9}))
        for _ in range(rng.integers(0, 30) if rng.random() < 0.2 else 1):
            rows.append(row({0: 0.97}))
        truth.append(word)
    return np.stack(rows[:n_frames]), " ".join(truth)


def cer(hyp: str, ref: str) -> float:
    """Character error rate by Levenshtein distance."""
    prev = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        cur = [i]
        for j, r in enumerate(ref, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r)))
        prev = cur
    return prev[-1] / max(1, len(ref))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--widths", default="1,8,16,32,64,100")
    args = ap.parse_args()
    lp, truth = synthetic(args.seconds)
    vocab = records.Vocabulary(TOKENS, blank_id=0)
    em = [records.Emissions(lp, 0, 0.02)]
    configs = [DecodeOptions()] + [
        DecodeOptions(kind="beam", beam_width=int(w)) for w in args.widths.split(",")
    ]
    for opts in configs:
        dec = build_decoder(vocab, opts)
        t0 = time.perf_counter()
        res = dec.decode(iter(em))
        dt = time.perf_counter() - t0
        name = "greedy" if opts.kind == "greedy" else f"beam {opts.beam_width}"
        ref = truth[: len(res.text) + 20]
        print(
            f"{name:10s} {dt:7.3f} s for {args.seconds:.0f} s audio  RTF {dt / args.seconds:.4f}  "
            f"CER {cer(res.text[:400], ref[:400]):.3f} (first 400 chars)"
        )


if __name__ == "__main__":
    main()
