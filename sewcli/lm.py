"""Word n-gram language models in ARPA format, in pure Python, for pyctcdecode's beam search.

KenLM (`pip install 'sewcli[lm]'`, a C++ build) reads ARPA and its own binary format fast; this module reads
ARPA files (plain or gzipped) with nothing to build, so that the embedded model's small LM works on a fresh
install, and an `.arpa` given with `--lm` works where kenlm is not installed. Scores are KenLM's: log10
probabilities with back-off, <unk> for words the model does not know, <s> and </s> at the sentence boundaries.

`NgramLanguageModel` is pyctcdecode's LanguageModel with this reader in place of kenlm.Model: the same
shallow-fusion score (alpha * ln p + beta per word), the same penalty for partial and whole words outside the
unigram list, so results match pyctcdecode + KenLM on the same ARPA file.

Parsing ARPA text in Python takes ~1.7 s for the embedded model's 7.7 MB LM (~0.8 s for the 2.5 MB one it
shipped until 2026-12-07), on every run and in every beam worker; so the parsed arrays are kept in a cache
(`$SEW_CACHE_DIR`, else `$XDG_CACHE_HOME/sew`, else `~/.cache/sew`; `SEW_CACHE_DIR=` empty turns it off) under
a key made of the file's real path, size and modification time, and read back in milliseconds; writing an
entry removes the file's older ones, so an edited model does not leave one behind. The cache holds plain
arrays (`.npz`, read with allow_pickle=False); a cache that cannot be written or read is skipped, never an
error.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import json
import logging
import math
import os
import tempfile
import zipfile
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sewcli import errors

log = logging.getLogger(__name__)

LOG10_TO_LN = math.log(10.0)  # pyctcdecode's LOG_BASE_CHANGE_FACTOR
AVG_TOKEN_LEN = 6  # pyctcdecode's constant: partial words longer than this are penalised proportionally
State = tuple[int, ...]  # ids of the last (order - 1) words
CACHE_FORMAT = 1  # bump when the arrays' meaning changes: old cache files are then ignored


def cache_root() -> Path | None:
    """Where sew keeps derived files (parsed language models); None when caching is turned off."""
    env = os.environ.get("SEW_CACHE_DIR")
    if env is not None:
        return Path(env).expanduser() if env else None
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "sew"


class ArpaModel:
    """A back-off n-gram model read from an ARPA file: `score(state, word)` -> (log10 p, next state).

    Stored compactly (a few bytes per n-gram, ~10 MB for the embedded model's 280k n-grams instead of ~50 MB
    of Python dicts): per order, a sorted int64 array of n-gram keys with float32 log-probabilities and
    back-offs. A key packs the word ids exactly when they fit in 63 bits, else it is a 64-bit hash of them
    (as KenLM's probing tables are); a state is the tuple of the last (order - 1) word ids.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.order = 0
        self._ids: dict[str, int] = {}
        self._bits = 0
        self._keys: list[np.ndarray] = []  # per order n-1: sorted keys
        self._logp: list[np.ndarray] = []
        self._logbo: list[np.ndarray] = []
        self._read()
        self._unk = self._ids.get("<unk>", -1)
        unk_logp = self.logp_of((self._unk,)) if self._unk >= 0 else None
        self._unk_logp = -100.0 if unk_logp is None else unk_logp  # -100: KenLM's, when the file has no <unk>
        self.unigrams = frozenset(self._ids) - {"<s>", "</s>", "<unk>"}

    def __contains__(self, word: str) -> bool:
        return word in self.unigrams

    def start(self, sentence: bool) -> tuple[int, ...]:
        """The state before the first word: <s> if scoring a sentence start, else no context."""
        return (self._ids["<s>"],) if sentence and "<s>" in self._ids else ()

    def score(self, state: tuple[int, ...], word: str) -> tuple[float, tuple[int, ...]]:
        """log10 p(word | state) with back-off, and the state after `word`."""
        wid = self._ids.get(word, self._unk)
        nxt = (*state, wid)[-(self.order - 1) :] if self.order > 1 else ()
        if wid < 0:
            return self._unk_logp, nxt
        acc = 0.0
        for k in range(len(state), 0, -1):
            ctx = state[len(state) - k :]
            p = self.logp_of((*ctx, wid))
            if p is not None:
                return acc + p, nxt
            acc += self.logbo_of(ctx)
        p = self.logp_of((wid,))
        return acc + (p if p is not None else self._unk_logp), nxt

    def logp_of(self, ids: tuple[int, ...]) -> float | None:
        """log10 p stored for this n-gram (word ids), or None when the file does not list it."""
        i = self._find(ids)
        return None if i < 0 else float(self._logp[len(ids) - 1][i])

    def logbo_of(self, ids: tuple[int, ...]) -> float:
        """log10 back-off weight of this context (0 when the file does not list it)."""
        if len(ids) >= self.order:
            return 0.0
        i = self._find(ids)
        return 0.0 if i < 0 else float(self._logbo[len(ids) - 1][i])

    def _find(self, ids: tuple[int, ...]) -> int:
        if any(i < 0 for i in ids) or len(ids) > self.order:
            return -1
        keys = self._keys[len(ids) - 1]
        key = self._key(ids)
        i = int(keys.searchsorted(key))
        return i if i < len(keys) and keys[i] == key else -1

    def _key(self, ids: tuple[int, ...] | list[int]) -> int:
        if self._bits:
            key = 0
            for i in ids:
                key = (key << self._bits) | i
            return key
        h = 0xCBF29CE484222325  # FNV-1a over the ids, folded into int64
        for i in ids:
            h = ((h ^ i) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
        return h - (1 << 64) if h >= 1 << 63 else h

    def _read(self) -> None:
        try:
            cached = self._cache_file()
            if cached is not None and self._load_cache(cached):
                return
            opener: Any = gzip.open if self.path.suffix == ".gz" else open
            with opener(self.path, "rt", encoding="utf-8") as f:
                self._parse(f)
        except FileNotFoundError as e:
            raise errors.DecoderError(f"language model {self.path}: no such file") from e
        except (OSError, UnicodeDecodeError, EOFError) as e:
            raise errors.DecoderError(f"language model {self.path}: cannot read it ({e})") from e
        if cached is not None:
            self._save_cache(cached)

    def _cache_file(self) -> Path | None:
        """The cache entry for this file as it is now (path, size, mtime), or None when caching is off."""
        root = cache_root()
        if root is None:
            return None
        st = self.path.stat()  # FileNotFoundError: reported by _read
        where = hashlib.sha256(f"{CACHE_FORMAT}\0{os.path.realpath(self.path)}".encode()).hexdigest()[:16]
        version = hashlib.sha256(f"{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
        return root / "lm" / f"{where}-{version}.npz"  # one file's entries share the prefix: see _save_cache

    def _load_cache(self, cached: Path) -> bool:
        try:
            with np.load(cached, allow_pickle=False) as z:
                self.order, self._bits = int(z["order"]), int(z["bits"])
                words = bytes(z["words"]).decode("utf-8").split("\n")
                self._keys = [z[f"keys{n}"] for n in range(1, self.order + 1)]
                self._logp = [z[f"logp{n}"] for n in range(1, self.order + 1)]
                self._logbo = [z[f"logbo{n}"] for n in range(1, self.order + 1)]
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # damaged: parse again
            log.debug("language model cache %s unreadable (%s): reading %s", cached, e, self.path)
            self.order, self._bits, self._keys, self._logp, self._logbo = 0, 0, [], [], []
            return False
        self._ids = {w: i for i, w in enumerate(words)}
        return True

    def _save_cache(self, cached: Path) -> None:
        """Write the parsed arrays next to other cache entries (temp file + rename: never a partial entry)."""
        arrays: dict[str, np.ndarray] = {
            "order": np.array(self.order),
            "bits": np.array(self._bits),
            "words": np.frombuffer("\n".join(self._ids).encode("utf-8"), dtype=np.uint8),
        }
        for n in range(1, self.order + 1):
            arrays[f"keys{n}"] = self._keys[n - 1]
            arrays[f"logp{n}"] = self._logp[n - 1]
            arrays[f"logbo{n}"] = self._logbo[n - 1]
        tmp = None
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".tmp-", suffix=".npz")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, cached)
            tmp = None
            where = cached.name.split("-")[0]
            for stale in cached.parent.glob(f"{where}-*.npz"):  # the same file before it changed
                if stale != cached:
                    stale.unlink(missing_ok=True)
        except OSError as e:  # read-only home, full disk: the next run parses again
            log.debug("language model cache %s not written: %s", cached, e)
        finally:  # also on Ctrl-C or SIGTERM while writing: no temporary file is left in the cache
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    def _parse(self, lines: Any) -> None:
        declared: dict[int, int] = {}
        section = -1  # -1: before \data\, 0: in \data\, n: in \n-grams:
        # typed arrays, not lists: 16 bytes per n-gram while parsing instead of ~70 (this is the peak memory)
        rows: dict[int, tuple[array, array, array]] = {}
        for lineno, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line:
                continue
            if line == "\\data\\":
                section = 0
            elif line == "\\end\\":
                break
            elif line.startswith("\\") and line.endswith("-grams:"):
                try:
                    section = int(line[1 : -len("-grams:")])
                except ValueError:
                    raise self._bad(lineno, "bad section header") from None
                if section not in declared:
                    raise self._bad(lineno, f"section {section}-grams is not declared in \\data\\")
                if not self._ids and section == 1:
                    self._choose_keys(declared)
                rows[section] = (array("q"), array("f"), array("f"))
            elif section == 0 and line.startswith("ngram "):
                n, _, count = line[len("ngram ") :].partition("=")
                try:
                    declared[int(n)] = int(count)
                except ValueError:
                    raise self._bad(lineno, "bad ngram count line") from None
            elif section > 0:
                parts = line.split()
                if len(parts) not in (section + 1, section + 2):
                    raise self._bad(lineno, f"expected a log-probability and {section} word(s)")
                try:
                    logp = float(parts[0])
                    logbo = float(parts[section + 1]) if len(parts) == section + 2 else 0.0
                except ValueError:
                    raise self._bad(lineno, "log-probability is not a number") from None
                words = parts[1 : section + 1]
                if section == 1:
                    self._ids.setdefault(words[0], len(self._ids))
                    if self._bits and len(self._ids) >= 1 << self._bits:
                        raise self._bad(lineno, "more 1-grams than \\data\\ declares")
                ids = [self._ids.get(w, -1) for w in words]
                if min(ids) < 0:
                    raise self._bad(lineno, "word missing from the 1-grams")
                keys, lps, bos = rows[section]
                keys.append(self._key(ids))
                lps.append(logp)
                bos.append(logbo)
        if not declared or 1 not in rows:
            raise errors.DecoderError(
                f"language model {self.path}: not an ARPA file (no \\data\\ and 1-grams)"
            )
        self.order = max(declared)
        for n in range(1, self.order + 1):
            keys, lps, bos = rows.pop(n, (array("q"), array("f"), array("f")))
            k = np.array(keys, dtype=np.int64)
            order = np.argsort(k, kind="stable")
            self._keys.append(k[order])
            self._logp.append(np.array(lps, dtype=np.float32)[order])
            self._logbo.append(np.array(bos, dtype=np.float32)[order])

    def _choose_keys(self, declared: dict[int, int]) -> None:
        bits = max(declared.get(1, 1) + 1, 2).bit_length()
        self._bits = bits if bits * max(declared) <= 63 else 0

    def _bad(self, lineno: int, what: str) -> errors.DecoderError:
        return errors.DecoderError(f"language model {self.path}: line {lineno}: {what}")


@dataclass(frozen=True)
class LMParams:
    """pyctcdecode's fusion settings (its attrs.json in the HF `language_model/` layout)."""

    alpha: float = 0.5
    beta: float = 1.5
    unk_score_offset: float = -10.0
    score_boundary: bool = True


def read_attrs(path: Path) -> dict[str, Any]:
    """attrs.json of an HF/pyctcdecode `language_model/` directory -> LMParams fields found in it."""
    try:
        attrs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise errors.DecoderError(f"language model settings {path}: cannot read them ({e})") from e
    if not isinstance(attrs, dict):
        raise errors.DecoderError(f"language model settings {path}: not a JSON object")
    out: dict[str, Any] = {}
    for key, kind in (
        ("alpha", float),
        ("beta", float),
        ("unk_score_offset", float),
        ("score_boundary", bool),
    ):
        if key in attrs:
            value = attrs[key]
            if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = float(value)
            elif kind is bool and isinstance(value, bool):
                out[key] = value
            else:
                raise errors.DecoderError(f"language model settings {path}: {key} must be a {kind.__name__}")
    return out


def ngram_language_model(model: ArpaModel, params: LMParams, unigrams: frozenset[str] | None = None) -> Any:
    """pyctcdecode AbstractLanguageModel scoring with `model` (imports pyctcdecode: decoding stage only)."""
    from pyctcdecode.language_model import AbstractLanguageModel

    class NgramLanguageModel(AbstractLanguageModel):  # type: ignore[misc]
        """pyctcdecode's LanguageModel (v0.5) with ArpaModel for kenlm.Model."""

        def __init__(self) -> None:
            self.alpha = params.alpha
            self.beta = params.beta
            self.unk_score_offset = params.unk_score_offset
            self.score_boundary = params.score_boundary
            self._unigrams = unigrams if unigrams is not None else model.unigrams
            # sorted words answer "is this a prefix of a known word?" by bisection (a set of every prefix
            # would take ~7 MB for the embedded model's 18k words, in each process that decodes)
            self._sorted = sorted(self._unigrams)

        @property
        def order(self) -> int:
            return model.order

        def get_start_state(self) -> State:  # type: ignore[override]  # an opaque state for pyctcdecode
            return model.start(self.score_boundary)

        def score_partial_token(self, partial_token: str) -> float:
            i = bisect.bisect_left(self._sorted, partial_token)
            known = i < len(self._sorted) and self._sorted[i].startswith(partial_token)
            unk = self.unk_score_offset * (not known)
            if len(partial_token) > AVG_TOKEN_LEN:
                unk = unk * len(partial_token) / AVG_TOKEN_LEN
            return unk

        def score(self, prev_state: State, word: str, is_last_word: bool = False) -> tuple[float, State]:
            lm_score, end_state = model.score(prev_state, word)
            if word not in self._unigrams or word not in model:
                lm_score += self.unk_score_offset
            if is_last_word and self.score_boundary:
                lm_score += model.score(end_state, "</s>")[0]
            return self.alpha * lm_score * LOG10_TO_LN + self.beta, end_state

        def reset_params(self, **kw: Any) -> None:
            for key in ("alpha", "beta", "unk_score_offset", "score_boundary"):
                if kw.get(key) is not None:
                    setattr(self, key, kw[key])

    return NgramLanguageModel()
