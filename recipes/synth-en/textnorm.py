"""Text normalisation to the model alphabet (A-Z, apostrophe, space) with numbers spelled out."""

from __future__ import annotations

import re

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")]
_ORD = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
        "twelve": "twelfth"}

ALPHABET = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")


def number_to_words(n: int) -> str:
    """Spell a non-negative integer in English words ("one hundred twenty three")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for value, name in _SCALES:
        if n >= value:
            head = number_to_words(n // value) + " " + name
            rest = n % value
            return head if rest == 0 else head + " " + number_to_words(rest)
    raise AssertionError(n)


def _ordinal(words: str) -> str:
    last = words.split(" ")[-1]
    if last in _ORD:
        new = _ORD[last]
    elif last.endswith("y"):
        new = last[:-1] + "ieth"
    else:
        new = last + "th"
    return " ".join(words.split(" ")[:-1] + [new])


def _year(n: int) -> str:
    if 1100 <= n <= 1999 and n % 100 != 0:
        return number_to_words(n // 100) + " " + (("oh " + _ONES[n % 100]) if n % 100 < 10
                                                    else number_to_words(n % 100))
    return number_to_words(n)


_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "=": " equals ", "@": " at "}


def _expand_numbers(text: str) -> str:
    text = re.sub(r"\$(\d+)", lambda m: m.group(1) + " dollars", text)
    text = re.sub(r"(\d+)(st|nd|rd|th)\b", lambda m: _ordinal(number_to_words(int(m.group(1)))), text)
    text = re.sub(r"(\d+)\.(\d+)", lambda m: number_to_words(int(m.group(1))) + " point "
                  + " ".join(_ONES[int(d)] for d in m.group(2)), text)
    text = re.sub(r"(\d),(\d\d\d)", r"\1\2", text)

    def whole(m: re.Match[str]) -> str:
        s = m.group(0)
        if len(s) > 9:
            return " ".join(_ONES[int(d)] for d in s)
        n = int(s)
        if len(s) == 4 and 1100 <= n <= 2099:
            return _year(n)
        return number_to_words(n)

    return re.sub(r"\d+", whole, text)


def normalize(text: str) -> str | None:
    """Normalise one sentence to upper-case A-Z/'/space; None when it cannot be spoken reliably."""
    t = text.replace("\u2019", "'").replace("`", "'")
    for k, v in _SYMBOLS.items():
        t = t.replace(k, v)
    t = _expand_numbers(t)
    t = re.sub(r"[-/]", " ", t)
    t = re.sub(r"[\"(),.;:!?\[\]{}*_]", " ", t)
    t = re.sub(r"\s'|'\s|^'|'$", " ", t)  # quotes, not apostrophes
    t = re.sub(r"\s+", " ", t).strip().upper()
    if not t or set(t) - ALPHABET:
        return None
    for w in t.split(" "):
        core = w.replace("'", "")
        if not core or not re.search(r"[AEIOUY]", core) or len(core) > 18:
            return None
        if w.count("'") > 1:
            return None
    return t
