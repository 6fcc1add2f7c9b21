"""Build train/held-out sentence lists from Debian's fortunes (offline English text)."""

from __future__ import annotations

import argparse
import glob
import hashlib
import re
from pathlib import Path

from textnorm import normalize

SKIP = {"art", "ascii-art", "perl", "linux", "linuxcookie", "debian", "computers", "translate-me", "off"}
MIN_WORDS, MAX_WORDS = 3, 22  # a spoken sentence's length in words (also generate.py --extra-text's)


def sentences(text: str) -> list[str]:
    """Split one fortune into sentence-like pieces."""
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"--\s*[A-Z][^.]*$", "", text)  # attribution lines
    parts = re.split(r"(?<=[.!?])\s+", text)
    return [p.strip() for p in parts if p.strip()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fortunes", default="/usr/share/games/fortunes")
    ap.add_argument("--out", default="work/text")
    ap.add_argument("--min-words", type=int, default=MIN_WORDS)
    ap.add_argument("--max-words", type=int, default=MAX_WORDS)
    ap.add_argument("--heldout-percent", type=int, default=4)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    train, held = [], []
    for path in sorted(glob.glob(f"{args.fortunes}/*")):
        name = Path(path).name
        if "." in name or name in SKIP:
            continue
        raw = Path(path).read_text(encoding="utf-8", errors="replace")
        for fortune in raw.split("\n%\n"):
            for s in sentences(fortune):
                t = normalize(s)
                if t is None or t in seen:
                    continue
                n = len(t.split(" "))
                if not args.min_words <= n <= args.max_words:
                    continue
                seen.add(t)
                h = int(hashlib.sha1(t.encode()).hexdigest(), 16) % 100
                (held if h < args.heldout_percent else train).append(t)
    (out / "train.txt").write_text("\n".join(train) + "\n")
    (out / "heldout.txt").write_text("\n".join(held) + "\n")
    print(f"train {len(train)} heldout {len(held)} sentences")


if __name__ == "__main__":
    main()
