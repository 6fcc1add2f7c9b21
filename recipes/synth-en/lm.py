"""Word n-gram language model for the embedded model: interpolated modified Kneser-Ney, written as ARPA.

Usage: python lm.py work/text/train.txt --order 3 --out work/language_model
(writes the pyctcdecode/HF layout: lm.arpa.gz, unigrams.txt, attrs.json; `sew` reads it with sewcli.lm)

Only the training sentences go in: the held-out sentences of test sets (a), (b) and (b2) never do.
The estimate follows the recipe of KenLM's lmplz (Chen & Goodman's interpolated modified Kneser-Ney: three
discounts per order from the count-of-counts, continuation counts below the highest order except for n-grams
that start with <s>), without pruning; it was not compared with lmplz's output (lmplz is not installed here).
tests/test_lm.py checks that every context's distribution sums to one.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
from collections import Counter, defaultdict
from pathlib import Path

Gram = tuple[str, ...]


def discounts(counts: Counter[Gram]) -> tuple[float, float, float]:
    """Modified KN discounts D1, D2, D3+ from the count-of-counts of one order."""
    n = Counter(min(c, 4) for c in counts.values())
    n1, n2, n3, n4 = (max(n[k], 1) for k in (1, 2, 3, 4))
    y = n1 / (n1 + 2 * n2)
    return (max(1 - 2 * y * n2 / n1, 0.05), max(2 - 3 * y * n3 / n2, 0.05), max(3 - 4 * y * n4 / n3, 0.05))


def estimate(
    sentences: list[list[str]], order: int
) -> tuple[list[dict[Gram, float]], list[dict[Gram, float]]]:
    """Interpolated modified Kneser-Ney: per order (index n-1), log10 p of seen n-grams, log10 back-off."""
    raw: Counter[Gram] = Counter()
    for words in sentences:
        s = ["<s>", *words, "</s>"]
        for i in range(1, len(s)):
            raw[tuple(s[max(0, i - order + 1) : i + 1])] += 1  # the highest-order n-gram ending at s[i]
    # Adjusted counts: raw counts at the highest order and for n-grams that start with <s> (nothing precedes
    # them), else the number of distinct words seen just before the n-gram (continuation counts).
    adj: list[Counter[Gram]] = [Counter() for _ in range(order)]
    for g, c in raw.items():
        adj[len(g) - 1][g] += c  # highest order, or a sentence start shorter than it
    for n in range(order - 1, 0, -1):  # order n+1 -> continuation counts of order n
        for g in adj[n]:
            adj[n - 1][g[1:]] += 1
    vocab = {g[0] for g in adj[0]} | {"<unk>"}
    logp: list[dict[Gram, float]] = [{} for _ in range(order)]
    logbo: list[dict[Gram, float]] = [{} for _ in range(order)]
    lower: dict[Gram, float] = {}  # p of order n-1, for interpolation
    for n in range(1, order + 1):
        counts = {g: c for g, c in adj[n - 1].items() if c > 0}
        d = discounts(Counter(counts))
        total: dict[Gram, float] = defaultdict(float)
        kinds: dict[Gram, list[int]] = defaultdict(lambda: [0, 0, 0])
        for g, c in counts.items():
            total[g[:-1]] += c
            kinds[g[:-1]][min(c, 3) - 1] += 1
        gamma = {h: (d[0] * k[0] + d[1] * k[1] + d[2] * k[2]) / total[h] for h, k in kinds.items()}
        probs: dict[Gram, float] = {}
        for g, c in counts.items():
            h = g[:-1]
            p_low = (
                lower[g[1:]] if n > 1 else 1.0 / len(vocab)
            )  # uniform over the words (with <unk>, not <s>)
            probs[g] = (c - d[min(c, 3) - 1]) / total[h] + gamma[h] * p_low
        if n == 1:
            probs[("<unk>",)] = gamma[()] / len(vocab)
        else:  # n-grams seen only at lower orders are reached by backing off; nothing to add
            for h, gm in gamma.items():
                logbo[n - 2][h] = math.log10(gm)
        for g, p in probs.items():
            logp[n - 1][g] = math.log10(p)
        lower = probs
    logp[0][("<s>",)] = -99.0
    return logp, logbo


def write_arpa(
    path: Path, logp: list[dict[Gram, float]], logbo: list[dict[Gram, float]], digits: int = 6
) -> None:
    """ARPA back-off format (the same text KenLM's lmplz writes), log10 values to `digits` decimals."""
    order = len(logp)
    raw = gzip.GzipFile(path, "wb", mtime=0) if path.suffix == ".gz" else open(path, "wb")  # noqa: SIM115
    with io.TextIOWrapper(raw, encoding="utf-8") as f:
        f.write("\n\\data\\\n")
        for n in range(order):
            f.write(f"ngram {n + 1}={len(logp[n])}\n")
        for n in range(order):
            f.write(f"\n\\{n + 1}-grams:\n")
            for g in sorted(logp[n]):
                bo = logbo[n].get(g) if n < order - 1 else None
                line = f"{logp[n][g]:.{digits}f}\t{' '.join(g)}"
                f.write(line + (f"\t{bo:.{digits}f}\n" if bo is not None else "\n"))
        f.write("\n\\end\\\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("text", help="one normalised sentence per line")
    ap.add_argument("--order", type=int, default=3)
    ap.add_argument("--out", required=True, help="directory: lm.arpa, unigrams.txt, attrs.json")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--beta", type=float, default=1.5)
    ap.add_argument(
        "--digits",
        type=int,
        default=6,
        help="decimals of the log10 values (4: a sixth smaller gzipped; sew and KenLM read them as float32)",
    )
    args = ap.parse_args()
    sentences = [
        line.split() for line in Path(args.text).read_text(encoding="utf-8").splitlines() if line.split()
    ]
    logp, logbo = estimate(sentences, args.order)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_arpa(out / "lm.arpa.gz", logp, logbo, args.digits)
    words = sorted(g[0] for g in logp[0] if g[0] not in ("<s>", "</s>", "<unk>"))
    (out / "unigrams.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    attrs = {"alpha": args.alpha, "beta": args.beta, "unk_score_offset": -10.0, "score_boundary": True}
    (out / "attrs.json").write_text(json.dumps(attrs, indent=2) + "\n", encoding="utf-8")
    print(
        f"{out / 'lm.arpa.gz'}: order {args.order}, "
        + ", ".join(f"{len(x)} {n + 1}-grams" for n, x in enumerate(logp))
    )


if __name__ == "__main__":
    main()
