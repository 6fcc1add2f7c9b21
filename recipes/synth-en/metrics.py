"""Character and word error rates (Levenshtein, corpus level)."""

from __future__ import annotations

from collections.abc import Sequence


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two token sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus CER: total character edits / total reference characters (spaces count)."""
    num = sum(edit_distance(list(r), list(h)) for r, h in zip(refs, hyps))
    return num / max(1, sum(len(r) for r in refs))


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus WER: total word edits / total reference words."""
    num = sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps))
    return num / max(1, sum(len(r.split()) for r in refs))
