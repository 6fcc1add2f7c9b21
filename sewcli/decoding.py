"""CTC decoding: log-probabilities -> text, word timings and word confidences (numpy only, no torch).

Two decoders share one interface (`CTCDecoder.decode(iterator of Emissions) -> DecodeResult`):

* `GreedyDecoder` streams. It takes the argmax of every frame and reproduces
  `Wav2Vec2CTCTokenizer.decode(ids, skip_special_tokens=False)` (sew_spec.md section 7) exactly:
  collapse repeats, drop the blank, word delimiter -> " ", strip, lower-case if the vocabulary says so;
  other special tokens (<s>, </s>, <unk>) stay in the text. The previous frame's token is carried across
  chunk boundaries, so the result is identical to decoding the concatenated matrix. Memory is
  O(emitted tokens), never O(frames).
* `BeamDecoder` runs pyctcdecode's prefix beam search (optional KenLM, hotwords). pyctcdecode holds a
  whole matrix, so the stream is cut into pieces that are decoded independently (see `_BeamSplitter` for
  the rule; the LM context restarts at each piece); memory is bounded by `max_piece_seconds` of log-probs.
  With an LM, its words must be in the vocabulary's case (upper case for the English checkpoints).

Word timing: a word spans from the first frame of its first token's run to the end (exclusive) of its last
token's run, as HF's `_get_word_offsets`; seconds = global frame index * frame_seconds.

Word confidence (in [0, 1]): the geometric mean, over the word's emitted tokens, of each token's peak
posterior. Greedy: a token's peak posterior is max over the frames of its run of p(token). Beam: the runs
are not known, so it is max over the word's frames of p(token) (the word's text is split back into
vocabulary tokens by longest match).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import sys
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from sewcli import errors, records
from sewcli.signals import signals_held

log = logging.getLogger(__name__)

# "auto": beam search when there is a language model (the model's own, or lm_path) or hotwords, else greedy.
DecoderKind = Literal["auto", "greedy", "beam"]

# A frame counts as "confident blank" for splitting the beam stream when p(blank) >= 0.9.
_SPLIT_BLANK_LOGP = math.log(0.9)


@dataclass(frozen=True)
class DecodeOptions:
    """Settings of the CTC decoder stage (the beam fields are ignored by the greedy decoder)."""

    kind: DecoderKind = "auto"
    # Beam width 32: bench/decode_beam.py measured RTF 0.015 (32) vs 0.05 (100, pyctcdecode's default) on
    # synthetic peaky posteriors, 2 shared CPU cores; no accuracy difference without an LM on that data.
    beam_width: int = 32
    # Word n-gram LM: an .arpa / .arpa.gz file (read by sewcli.lm, or by KenLM when installed), a KenLM .bin
    # (needs `pip install 'sewcli[lm]'`), or a pyctcdecode/HF `language_model/` directory (attrs.json,
    # unigrams.txt and one of those files), such as the one shipped with the embedded model.
    lm_path: str | None = None
    alpha: float | None = None  # LM weight: attrs.json's, else 0.5 (pyctcdecode's default)
    beta: float | None = None  # word insertion bonus: attrs.json's, else 1.5 (pyctcdecode's default)
    bundled_lm: bool = True  # beam without lm_path: use the model directory's language_model/, if any
    hotwords: tuple[str, ...] = ()
    hotword_weight: float = 10.0
    beam_prune_logp: float = -10.0  # drop beams this far below the best one (pyctcdecode default)
    token_min_logp: float = -5.0  # skip tokens below this log-prob unless they are the frame's argmax
    split_blank_seconds: float = 0.5  # cut the beam stream inside confident-blank runs at least this long
    max_piece_seconds: float = 60.0  # force a cut once a piece is this long (bounds memory and latency)
    # Processes searching pieces while this one runs the model (0: search here, between windows). Each
    # worker holds its own decoder (and language model). They start (once per run, ~0.5 s of CPU each)
    # when an input goes on past `workers_after_seconds`: short inputs never pay for them.
    workers: int = 0
    workers_after_seconds: float = 30.0
    # Greedy only: a run of blanks at least this long ends the word before it, as if the model had written
    # the word delimiter there (0: never; the text is then exactly transformers'). For models that write no
    # delimiter into some pauses (the embedded model near the edges of its windows: bench/timestamps.py).
    pause_break_seconds: float = 0.0


@dataclass(frozen=True)
class DecodeResult:
    """What a decoder returns for one input: the text, its words, and how much audio it covered."""

    text: str
    words: tuple[records.Word, ...]
    frames: int  # number of frames consumed
    duration: float  # seconds covered by those frames


# (words now final, in order; `until` in seconds: no word handed over later starts before it)
WordsCallback = Callable[[tuple[records.Word, ...], float], None]


class CTCDecoder(Protocol):
    """Turns a stream of consecutive Emissions of one input into text and words."""

    kind: str  # "greedy" or "beam" (what "auto" became)
    lm_path: str | None  # the language model the beam search scores with, if any

    def decode(
        self, emissions: Iterable[records.Emissions], on_words: WordsCallback | None = None
    ) -> DecodeResult:
        """Decode all chunks of one input (log-probs (frames, vocab) each, consecutive, no overlap).

        `on_words`, if given, receives the words in order as soon as each is final (a later chunk can no
        longer change it), and a time before which no later word starts (so a caller can close a subtitle
        segment on a pause without waiting for the next word); all its calls together hand over exactly the
        result's words.
        """
        ...

    def close(self) -> None:
        """Release what the decoder holds across inputs (worker processes); it cannot decode afterwards."""
        ...


def build_decoder(vocab: records.Vocabulary, options: DecodeOptions = DecodeOptions()) -> CTCDecoder:
    """Build the decoder `options.kind` for `vocab`.

    Args:
        vocab: the model's output vocabulary (column i of the log-probs is vocab.tokens[i]).
        options: decoder settings.

    Returns:
        a CTCDecoder; raises DecoderError for bad options, a missing kenlm or an unreadable LM file.
    """
    _check_vocab(vocab)
    kind = options.kind
    if kind == "auto":
        kind = "beam" if options.lm_path is not None or options.hotwords else "greedy"
    if kind == "greedy":
        return GreedyDecoder(vocab, options.pause_break_seconds)
    if kind == "beam":
        return BeamDecoder(vocab, options)
    raise errors.DecoderError(f"decoder kind {options.kind!r} is not one of: auto, greedy, beam")


def _check_vocab(vocab: records.Vocabulary) -> None:
    """Reject vocabularies the decoders cannot interpret."""
    if len(vocab) == 0:
        raise errors.DecoderError("vocabulary is empty")
    if not 0 <= vocab.blank_id < len(vocab):
        raise errors.DecoderError(
            f"blank id {vocab.blank_id} is outside the vocabulary of {len(vocab)} tokens"
        )


def _check_pause_break(seconds: float) -> None:
    if not (math.isfinite(seconds) and seconds >= 0):
        raise errors.DecoderError(f"pause break must be a number of seconds >= 0, got {seconds!r}")


def token_strings(vocab: records.Vocabulary) -> tuple[str, ...]:
    """What each token contributes to the text: blank -> "", word delimiter -> " ", anything else verbatim."""
    out = []
    for i, tok in enumerate(vocab.tokens):
        if i == vocab.blank_id or tok == vocab.tokens[vocab.blank_id]:
            out.append("")  # HF removes every occurrence of the pad token string
        elif vocab.word_delimiter is not None and tok == vocab.word_delimiter:
            out.append(" ")
        else:
            out.append(tok)
    return tuple(out)


# ----------------------------------------------------------------------------------------------------
# Shared text assembly


@dataclass
class _Piece:
    """One emitted token run: its text, global frame span [start, end) and the log of its peak posterior."""

    text: str
    start: int
    end: int
    peak_logp: float


def _assemble(
    pieces: Sequence[_Piece], lower: bool, frame_seconds: float
) -> tuple[str, tuple[records.Word, ...]]:
    """Join token pieces into text and words exactly as HF's convert_tokens_to_string + _get_word_offsets."""
    raw = "".join(p.text for p in pieces)
    text = raw.strip()
    lead = len(raw) - len(raw.lstrip())
    spans: list[tuple[list[_Piece], int, int]] = []  # (token runs, char_start, char_end) per word
    pos = 0  # offset of the current piece in `raw`
    cur: list[_Piece] = []
    cur_start = 0

    def flush() -> None:
        s = min(max(cur_start - lead, 0), len(text))
        e = min(max(pos - lead, s), len(text))
        if lower:  # .lower() may change lengths ("İ" -> "i̇"); map offsets through the lowered prefix
            s, e = len(text[:s].lower()), len(text[:e].lower())
        spans.append((cur, s, e))

    for p in pieces:
        if p.text == " ":
            if cur:
                flush()
                cur = []
        else:
            if not cur:
                cur_start = pos
            cur.append(p)
        pos += len(p.text)
    if cur:
        flush()
    if lower:
        text = text.lower()
    words = tuple(_make_word(text, runs, s, e, frame_seconds) for runs, s, e in spans)
    return text, words


class _LiveWords:
    """Hands a decoder's words to a callback as soon as they are final, with their offsets in the final text.

    Words are final once a word break (a " " piece) follows them: pieces after the last break may still grow.
    Each batch is assembled alone (_assemble) and its character offsets are moved by the length of the final
    text before it, so the words equal those of assembling every piece at the end (a test checks it).
    """

    def __init__(self, callback: WordsCallback | None, lower: bool) -> None:
        self.callback, self.lower = callback, lower
        self.done = 0  # pieces handed over
        self.text_len = -1  # length of the final text up to the pieces handed over; -1: no word yet
        self.until = -1  # frame last reported: no later word starts before it

    def feed(self, pieces: Sequence[_Piece], frame_seconds: float, until: int, final: bool = False) -> None:
        """Hand over the words now final; `final`: all pieces are (the end; a searched beam piece).

        `until`: a frame before which no word that is not final yet can start.
        """
        if self.callback is None:
            return
        cut = len(pieces)
        if not final:
            while cut > self.done and pieces[cut - 1].text != " ":
                cut -= 1
            cut -= 1  # up to the break, not including it
        words: tuple[records.Word, ...] = ()
        if cut > self.done:
            batch = pieces[self.done : cut]
            self.done = cut
            raw = "".join(p.text for p in batch)
            body = raw.lstrip()
            if not body:  # only breaks: they count once a word follows
                if self.text_len >= 0:
                    self.text_len += len(raw)
            else:
                lead = raw[: len(raw) - len(body)]
                base = 0 if self.text_len < 0 else self.text_len + len(lead)  # breaks are spaces: no case
                _, found = _assemble(batch, self.lower, frame_seconds)
                self.text_len = base + len(body.lower() if self.lower else body)
                words = tuple(
                    replace(w, char_start=w.char_start + base, char_end=w.char_end + base) for w in found
                )
        if words or until > self.until:
            self.until = max(self.until, until)
            self.callback(words, self.until * frame_seconds)


def _make_word(
    text: str, pieces: Sequence[_Piece], char_start: int, char_end: int, frame_seconds: float
) -> records.Word:
    """A Word from its token runs; confidence = exp(mean of the tokens' peak log-posteriors)."""
    conf = math.exp(sum(p.peak_logp for p in pieces) / len(pieces))
    conf = min(max(conf, 0.0), 1.0)
    return records.Word(
        text=text[char_start:char_end],
        start=pieces[0].start * frame_seconds,
        end=pieces[-1].end * frame_seconds,
        confidence=conf,
        char_start=char_start,
        char_end=char_end,
    )


# ----------------------------------------------------------------------------------------------------
# Greedy


class GreedyDecoder:
    """Streaming argmax decoder with Wav2Vec2CTCTokenizer semantics.

    With `pause_break_seconds` > 0 (and a vocabulary with a word delimiter), a blank run at least that long
    after a word ends the word, as if the delimiter had been written there, and delimiters that follow such a
    break add nothing; with 0 the text is exactly transformers' greedy text.
    """

    kind = "greedy"
    lm_path: str | None = None

    def __init__(self, vocab: records.Vocabulary, pause_break_seconds: float = 0.0) -> None:
        """Precompute the per-token strings once."""
        _check_vocab(vocab)
        _check_pause_break(pause_break_seconds)
        self.vocab = vocab
        self._strings = token_strings(vocab)
        self.pause_break_seconds = pause_break_seconds if vocab.word_delimiter is not None else 0.0

    def close(self) -> None:
        """Nothing to release."""

    def decode(
        self, emissions: Iterable[records.Emissions], on_words: WordsCallback | None = None
    ) -> DecodeResult:
        """Decode a stream of chunks; the result equals decoding their concatenation.

        Args:
            emissions: consecutive Emissions of one input, log_probs (frames, vocab) float32.
            on_words: receives the words as they become final (see CTCDecoder.decode).

        Returns:
            DecodeResult with HF-identical text and word offsets converted to seconds.
        """
        pieces: list[_Piece] = []
        run_id = -1  # token of the open run, carried across chunks (-1: none yet)
        run_start = 0  # global frame where the open run began
        run_peak = -math.inf  # max log-posterior of run_id over the open run
        frames = 0
        next_frame = 0  # global index one past the last frame seen
        frame_seconds = 0.0
        pause = 0  # blank frames that make a word break (0: never)
        live = _LiveWords(on_words, self.vocab.do_lower_case)
        for em in emissions:
            lp = _check_emissions(em, len(self.vocab))
            frame_seconds = em.frame_seconds
            if self.pause_break_seconds and frame_seconds > 0:
                pause = max(1, math.ceil(self.pause_break_seconds / frame_seconds - 1e-6))
            n = lp.shape[0]
            frames += n
            if n:
                g0, next_frame = em.first_frame, em.first_frame + n
                ids = lp.argmax(axis=1)  # (frames,)
                peaks = lp[np.arange(n), ids]  # (frames,) log-posterior of each frame's argmax token
                starts = np.flatnonzero(np.diff(ids)) + 1  # chunk rows where a new run begins
                if ids[0] != run_id:
                    starts = np.concatenate(([0], starts))
                first = int(starts[0]) if len(starts) else n
                if first > 0:  # the carried run goes on into this chunk
                    run_peak = max(run_peak, float(peaks[:first].max()))
                if len(starts):
                    run_max = np.maximum.reduceat(peaks, starts)  # (runs,) peak log-posterior of each run
                    for a, tok, peak in zip(
                        starts.tolist(), ids[starts].tolist(), run_max.tolist(), strict=True
                    ):
                        if run_id >= 0:
                            self._close(pieces, run_id, run_start, g0 + a, run_peak, pause)
                        run_id, run_start, run_peak = tok, g0 + a, peak
            if pause and run_id >= 0 and not self._strings[run_id]:
                # a pause long enough already: break now, so that live words need not wait for its end
                self._close(pieces, run_id, run_start, next_frame, run_peak, pause)
            if on_words is not None and frame_seconds:  # now, not when the next chunk comes
                undecided = self._undecided(pieces, live.done, run_id, run_start, next_frame)
                live.feed(pieces, frame_seconds, undecided)
        if run_id >= 0:
            self._close(pieces, run_id, run_start, next_frame, run_peak, pause)
        live.feed(pieces, frame_seconds, next_frame, final=True)
        text, words = _assemble(pieces, self.vocab.do_lower_case, frame_seconds)
        return DecodeResult(text=text, words=words, frames=frames, duration=frames * frame_seconds)

    def _undecided(
        self, pieces: list[_Piece], done: int, run_id: int, run_start: int, next_frame: int
    ) -> int:
        """The first frame where a word that is not final yet may start: its first piece after the last
        break, else the open run if it spells part of a word, else the next frame."""
        for p in pieces[done:]:
            if p.text != " ":
                return p.start
        open_text = self._strings[run_id] if run_id >= 0 else ""
        return run_start if open_text not in ("", " ") else next_frame

    def _close(
        self, pieces: list[_Piece], token: int, start: int, end: int, peak: float, pause: int = 0
    ) -> None:
        """Record a finished run unless it is the blank. With `pause` > 0, a blank run of at least `pause`
        frames after a word is a word break, and a delimiter right after a break adds nothing."""
        s = self._strings[token]
        if not pause:
            if s:
                pieces.append(_Piece(s, start, end, peak))
            return
        last = pieces[-1].text if pieces else " "  # nothing yet: as after a break (no leading break)
        if s and not (s == " " and last == " "):
            pieces.append(_Piece(s, start, end, peak))
        elif not s and end - start >= pause and last != " ":
            pieces.append(_Piece(" ", start, end, peak))


def _check_emissions(em: records.Emissions, vocab_size: int) -> records.FloatArray:
    """Validate one chunk's shape against the vocabulary and return its log-probs as float32."""
    lp = np.asarray(em.log_probs, dtype=np.float32)
    if lp.ndim != 2 or lp.shape[1] != vocab_size:
        raise errors.DecoderError(
            f"emissions have shape {tuple(lp.shape)}, expected (frames, {vocab_size}) for this vocabulary"
        )
    return lp


# ----------------------------------------------------------------------------------------------------
# Beam


class _BeamSplitter:
    """Cuts a stream of log-prob chunks into independently decodable pieces.

    Rule: a piece ends in the middle of the first run of at least `min_run` consecutive frames whose blank
    posterior is >= 0.9 (a pause; one cut per run). If no such run appears, a piece is cut once it reaches
    `max_frames`: right after the last frame of its last quarter whose best token is the word delimiter
    (`delimiter_id`; a word boundary the model wrote), else at the frame with the highest blank log-prob in
    that quarter. Pieces are yielded as (global first frame, log-probs (frames, vocab)).
    """

    def __init__(self, blank_id: int, min_run: int, max_frames: int, delimiter_id: int | None = None) -> None:
        self.blank_id = blank_id
        self.delimiter_id = delimiter_id
        self.min_run = max(1, min_run)
        self.max_frames = max(4, max_frames)
        self._buf: list[records.FloatArray] = []  # the frames not yet yielded, in order
        self._buf_start: int | None = None  # global frame of the first of them

    def quiet_until(self, min_logp: float) -> int | None:
        """The global frame of the first frame not yet yielded where a token other than the blank is the
        argmax or has a log-prob >= `min_logp`, else the end of what was read (None before any input).

        pyctcdecode adds a character only at such frames (`token_min_logp`), so no word of the pieces still
        to come starts before this frame.
        """
        if self._buf_start is None:
            return None
        frame = self._buf_start
        for lp in self._buf:
            others = np.delete(lp, self.blank_id, axis=1)  # (frames, vocab - 1)
            live = (others.max(axis=1) >= min_logp) | (lp.argmax(axis=1) != self.blank_id)  # (frames,)
            if live.any():
                return frame + int(np.argmax(live))
            frame += lp.shape[0]
        return frame

    def split(
        self, emissions: Iterable[tuple[int, records.FloatArray]]
    ) -> Iterator[tuple[int, records.FloatArray]]:
        """Yield pieces covering every input frame exactly once, in order."""
        self._buf, self._buf_start = [], None
        buf_len = 0
        run = 0  # length of the confident-blank run ending at the last frame seen
        cut_in_run = False
        for g0, lp in emissions:
            if self._buf_start is None:
                self._buf_start = g0
            confident = lp[:, self.blank_id] >= _SPLIT_BLANK_LOGP  # (frames,)
            offset = 0  # rows of lp already moved into the buffer
            for i in range(lp.shape[0]):
                if confident[i]:
                    run += 1
                else:
                    run, cut_in_run = 0, False
                local = buf_len + (i - offset) + 1  # frames in the current piece including frame i
                if run >= self.min_run and not cut_in_run:
                    cut = max(local - self.min_run // 2, 0)  # the middle of the run so far (0: it began
                    # before this piece, which then already starts inside the pause)
                    self._buf.append(lp[offset : i + 1])
                    offset = i + 1
                    piece = np.concatenate(self._buf)
                    start = self._buf_start
                    self._buf, self._buf_start, buf_len = [piece[cut:]], start + cut, len(piece) - cut
                    if cut > 0:
                        yield start, piece[:cut]
                    cut_in_run = True
                elif local >= self.max_frames:
                    self._buf.append(lp[offset : i + 1])
                    offset = i + 1
                    piece = np.concatenate(self._buf)
                    cut = self._forced_cut(piece)
                    start = self._buf_start
                    self._buf, self._buf_start, buf_len = [piece[cut:]], start + cut, len(piece) - cut
                    yield start, piece[:cut]
            if offset < lp.shape[0]:
                self._buf.append(lp[offset:])
                buf_len += lp.shape[0] - offset
        if self._buf_start is not None and buf_len > 0:
            piece, start = np.concatenate(self._buf), self._buf_start
            self._buf, self._buf_start = [], start + len(piece)
            yield start, piece

    def _forced_cut(self, piece: records.FloatArray) -> int:
        """Where a piece of `max_frames` frames without a pause ends (frames kept in it, >= 1)."""
        first = len(piece) - len(piece) // 4  # the last quarter: piece[first:]
        if self.delimiter_id is not None:
            marks = np.flatnonzero(piece[first:].argmax(axis=1) == self.delimiter_id)
            if marks.size:
                return first + int(marks[-1]) + 1
        tail = piece[first:, self.blank_id]
        return first + int(len(tail) - 1 - np.argmax(tail[::-1])) + 1


class _PieceSearch:
    """pyctcdecode on one piece: log-probs (frames, vocab) -> [(word, start, end, confidence log-prob)].

    Frames are piece-local. Built once in the main process and once in each worker process.
    """

    def __init__(self, labels: list[str], hotwords: tuple[str, ...], options: DecodeOptions) -> None:
        self.options = options
        self.hotwords = hotwords
        self._decoder = _build_pyctcdecode(labels, options)
        self._blank = labels.index("")
        # tokens (longest first) to split a decoded word back into vocabulary ids for the confidence
        self._by_text = sorted(
            ((s, i) for i, s in enumerate(labels) if s not in ("", " ")), key=lambda t: -len(t[0])
        )

    def __call__(self, lp: records.FloatArray) -> list[tuple[str, int, int, float]]:
        opts = self.options
        if not (lp.argmax(axis=-1) != self._blank).any():
            # Not one frame whose best token is a letter: no words. The search would find some all the same
            # when a language model is on (an empty text ends the sentence at once, which the LM scores
            # low): digital silence came out as "A" (p 0.035) with the embedded model's LM.
            return []
        beams = self._decoder.decode_beams(
            lp,
            beam_width=opts.beam_width,
            beam_prune_logp=opts.beam_prune_logp,
            token_min_logp=opts.token_min_logp,
            hotwords=list(self.hotwords) or None,
            hotword_weight=opts.hotword_weight,
        )
        if not beams:
            return []
        found = []
        for word, (s, e) in beams[0][2]:
            if s < 0 or e <= s:  # pyctcdecode's NULL_FRAMES; should not happen for a real word
                s, e = 0, max(e, 1)
            found.append((word, s, e, self._word_logp(word, lp[s:e])))
        return found

    def cleanup(self) -> None:
        """pyctcdecode keeps the LM in a class-level dict: drop our entry."""
        self._decoder.cleanup()

    def _word_logp(self, word: str, lp: records.FloatArray) -> float:
        """Mean over the word's tokens of the log of max over the word's frames of p(token)."""
        ids = []
        i = 0
        while i < len(word):
            for s, tid in self._by_text:
                if word.startswith(s, i):
                    ids.append(tid)
                    i += len(s)
                    break
            else:
                i += 1  # cannot happen: every character of the word came from a label
        if not ids or lp.shape[0] == 0:
            return float(lp.max(axis=1).mean()) if lp.shape[0] else 0.0
        return float(np.mean([lp[:, t].max() for t in ids]))


_worker_search: _PieceSearch | None = None  # in a worker process: its own search, built by _worker_start


def _worker_start(labels: list[str], hotwords: tuple[str, ...], options: DecodeOptions) -> None:
    """Worker process set-up: Ctrl-C is the main process's business (it stops the workers), then build."""
    global _worker_search
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # started with both blocked (see _BeamWorkers.submit)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    quiet = logging.getLogger("sewcli")  # the main process already said what loading the LM had to say
    quiet.handlers[:] = [logging.NullHandler()]
    quiet.propagate = False
    _worker_search = _PieceSearch(labels, hotwords, options)


def _worker_run(lp: records.FloatArray) -> list[tuple[str, int, int, float]]:
    assert _worker_search is not None
    return _worker_search(lp)


class _BeamWorkers:
    """A pool of spawned processes running `_PieceSearch`, started on first use, kept across inputs."""

    def __init__(self, n: int, labels: list[str], hotwords: tuple[str, ...], options: DecodeOptions) -> None:
        self.n = n
        self._args = (labels, hotwords, options)
        self._pool: Any = None

    @property
    def started(self) -> bool:
        return self._pool is not None

    def submit(self, lp: records.FloatArray) -> Future[list[tuple[str, int, int, float]]]:
        if self._pool is None:
            _quiet_resource_tracker()
            self._pool = ProcessPoolExecutor(
                self.n,
                mp_context=multiprocessing.get_context("spawn"),  # no fork of a process running torch threads
                initializer=_worker_start,
                initargs=self._args,
            )
        # A worker is spawned inside submit(); blocking the signals here makes it start with them blocked,
        # so a Ctrl-C while it imports cannot print a traceback from it. The mask is this thread's only,
        # and another thread can take the signal, whose Python handler then runs here all the same: in the
        # middle of the spawn, between writing the new process's start-up data and knowing its pid, where
        # the exception would leave it reading a cut pipe (EOFError traceback on stderr, seen after a
        # SIGTERM under load). So the handlers also wait until submit() has returned.
        with signals_held():
            blocked = hasattr(signal, "pthread_sigmask")
            if blocked:
                old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            try:
                return self._pool.submit(_worker_run, lp)
            except BrokenProcessPool as e:
                raise self._broken(e) from None
            finally:
                if blocked:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def result(self, future: Future[list[tuple[str, int, int, float]]]) -> list[tuple[str, int, int, float]]:
        try:
            return future.result()
        except BrokenProcessPool as e:
            raise self._broken(e) from None

    def _broken(self, e: BrokenProcessPool) -> errors.DecoderError:
        self.close(kill=True)  # the next input starts a new pool
        return errors.DecoderError(f"a beam-search worker process stopped unexpectedly ({e})")

    def close(self, kill: bool = False) -> None:
        """Stop the workers: let them finish (kill=False) or terminate them now (interrupt, error)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        manager = getattr(pool, "_executor_manager_thread", None)  # private; shutdown() drops it
        if kill:
            for proc in list(getattr(pool, "_processes", {}).values()):  # no public API before 3.14
                proc.terminate()
            _unblock_call_queue(pool)
        pool.shutdown(wait=not kill, cancel_futures=True)
        if kill and manager is not None:
            # Once it sees the dead workers, CPython's manager thread closes the pool's wake-up pipe and ends.
            # Still running at exit, it races with the interpreter's own wake-up of it on 3.11 (check, then
            # write: "Exception ignored in threading._shutdown ... EBADF", seen in CI). Bounded: a kill
            # must not hang.
            manager.join(timeout=2.0)


# The pool's locks start multiprocessing's resource tracker, a process of its own that shares our stderr.
# After a Ctrl-C that kills the workers, it printed a "resource_tracker: <lock>: <error>" warning (a lock it
# could not remove at its shutdown) after sew's "interrupted" line, once in CI. Its warnings are filtered
# through the environment it starts with; it still removes whatever locks are left.
_TRACKER_FILTER = "ignore:resource_tracker:UserWarning"


def _quiet_resource_tracker() -> None:
    """Add the filter for the resource tracker's shutdown warnings to PYTHONWARNINGS (before it starts)."""
    current = os.environ.get("PYTHONWARNINGS", "")
    if _TRACKER_FILTER not in current.split(","):
        os.environ["PYTHONWARNINGS"] = f"{current},{_TRACKER_FILTER}" if current else _TRACKER_FILTER


def _unblock_call_queue(pool: ProcessPoolExecutor) -> None:
    """After the workers are killed, nothing reads the pool's call queue any more: a feeder thread in the
    middle of writing a piece to it would block for ever, and the interpreter's exit joins that thread (seen:
    `sew` hung after Ctrl-C with `Queue._finalize_join` waiting on `QueueFeederThread` in `send_bytes`).
    So the feeder is not joined at exit (it is a daemon thread). The queue's reading end is left to CPython:
    its executor manager closes it when it sees the dead workers (gh-94777), which ends the feeder's write;
    closing it here as well raced with that (EBADF in the manager thread, or the close of an fd number
    already reused). Private attribute: guarded, best effort."""
    queue = getattr(pool, "_call_queue", None)
    if queue is None:
        return
    with suppress(Exception):
        queue.cancel_join_thread()


class BeamDecoder:
    """pyctcdecode prefix beam search with an explicit label list, optional n-gram LM and hotwords."""

    kind = "beam"

    def __init__(self, vocab: records.Vocabulary, options: DecodeOptions) -> None:
        """Build the pyctcdecode decoder once (imports pyctcdecode, and kenlm if an LM is given)."""
        _check_vocab(vocab)
        if options.beam_width < 1:
            raise errors.DecoderError(f"beam width must be >= 1, got {options.beam_width}")
        if options.workers < 0:
            raise errors.DecoderError(f"beam workers must be >= 0, got {options.workers}")
        self.vocab = vocab
        self.options = options
        self.lm_path = options.lm_path
        self.labels = beam_labels(vocab)
        self.hotwords = _normalize_hotwords(options.hotwords, vocab, self.labels)
        self._search = _PieceSearch(self.labels, self.hotwords, options)  # also proves the LM loads
        self._workers = _BeamWorkers(options.workers, self.labels, self.hotwords, options)
        weakref.finalize(self, _close_all, self._search, self._workers)

    def close(self) -> None:
        """Stop the worker processes (if any were started)."""
        self._workers.close()

    def decode(
        self, emissions: Iterable[records.Emissions], on_words: WordsCallback | None = None
    ) -> DecodeResult:
        """Decode a stream of chunks piece by piece (pieces cut at pauses, see _BeamSplitter).

        With `options.workers`, the pieces of a long input are searched in worker processes while this
        process goes on with the model; results are put back in order.

        Args:
            emissions: consecutive Emissions of one input, log_probs (frames, vocab) float32.
            on_words: receives the words as they become final (see CTCDecoder.decode).

        Returns:
            DecodeResult; words are the beam's words, text is the words joined by one space.
        """
        state: dict[str, Any] = {"frames": 0, "end": 0, "frame_seconds": 0.0, "done": False}

        def chunks() -> Iterator[tuple[int, records.FloatArray]]:
            for em in emissions:
                if pending:  # hand over the words of pieces searched meanwhile (--live: no waiting for
                    take_results(keep=len(pending))  # the next pause to submit another piece)
                lp = _check_emissions(em, len(self.vocab))
                state["frames"] += lp.shape[0]
                state["end"] = em.first_frame + lp.shape[0]  # global frame one past the last seen
                state["frame_seconds"] = em.frame_seconds
                if lp.shape[0]:
                    yield em.first_frame, lp
                    # The splitter has taken this chunk in. With every piece before its buffer searched, no
                    # word starts before the buffer's first frame that can hold a character: a segment
                    # that ends before a pause closes now, not when the pause after the next words is cut.
                    quiet = splitter.quiet_until(opts.token_min_logp) if on_words and not pending else None
                    if quiet is not None:
                        live.feed(pieces, state["frame_seconds"], quiet, final=True)
            state["done"] = True

        opts = self.options
        pieces: list[_Piece] = []
        live = _LiveWords(on_words, self.vocab.do_lower_case)
        Search = Future[list[tuple[str, int, int, float]]]
        pending: deque[tuple[int, int, Search]] = deque()  # (first frame, frames, search) per piece
        it = chunks()  # resumed after its first chunk only by the splitter made below, which it then asks
        first = next(it, None)

        def take_results(keep: int) -> None:  # in order, until at most `keep` pieces are in flight
            while len(pending) > keep or (pending and pending[0][2].done()):  # and those already searched
                g, n, fut = pending.popleft()
                _add_words(pieces, g, self._workers.result(fut))
                # a searched piece's words are final, and no later word starts before its end
                live.feed(pieces, state["frame_seconds"], g + n, final=True)

        try:
            if first is not None:
                fs = state["frame_seconds"] or 0.02
                splitter = _BeamSplitter(
                    self.vocab.blank_id,
                    min_run=int(round(opts.split_blank_seconds / fs)),
                    max_frames=int(round(opts.max_piece_seconds / fs)),
                    delimiter_id=_delimiter_id(self.vocab),
                )
                for g0, lp in splitter.split(_prepend(first, it)):
                    long_input = not state["done"] and state["frames"] * fs >= opts.workers_after_seconds
                    if opts.workers and (self._workers.started or long_input):
                        pending.append((g0, lp.shape[0], self._workers.submit(lp)))
                        take_results(keep=2 * opts.workers)  # bounded memory
                    else:
                        _add_words(pieces, g0, self._search(lp))
                        live.feed(pieces, state["frame_seconds"], g0 + lp.shape[0], final=True)
                take_results(keep=0)
        except BaseException as e:
            if isinstance(e, Exception):
                for _, _, fut in pending:
                    fut.cancel()
            else:
                # Ctrl-C, SIGTERM: no more inputs are coming. No cancel() first: the killed pool fails
                # its pending futures itself, and failing one already cancelled raises InvalidStateError
                # in the pool's manager thread: a traceback on stderr (seen once in a full test run).
                self._workers.close(kill=True)
            raise
        fs = state["frame_seconds"]
        live.feed(pieces, fs, state["end"], final=True)
        text, words = _assemble(pieces, self.vocab.do_lower_case, fs)
        return DecodeResult(text=text, words=words, frames=state["frames"], duration=state["frames"] * fs)


def _delimiter_id(vocab: records.Vocabulary) -> int | None:
    """The logit column of the word delimiter, if the vocabulary has one (the first, if written twice)."""
    if vocab.word_delimiter is None or vocab.word_delimiter not in vocab.tokens:
        return None
    return vocab.tokens.index(vocab.word_delimiter)


def _add_words(pieces: list[_Piece], g0: int, found: list[tuple[str, int, int, float]]) -> None:
    """Append one piece's words (global frames), with a " " piece between words."""
    for word, s, e, conf_logp in found:
        if pieces:
            pieces.append(_Piece(" ", g0 + s, g0 + s, 0.0))
        pieces.append(_Piece(word, g0 + s, g0 + e, conf_logp))


def _close_all(search: _PieceSearch, workers: _BeamWorkers) -> None:
    workers.close()
    search.cleanup()


def _prepend(
    first: tuple[int, records.FloatArray], rest: Iterator[tuple[int, records.FloatArray]]
) -> Iterator[tuple[int, records.FloatArray]]:
    """Yield `first` then the rest of the iterator."""
    yield first
    yield from rest


def beam_labels(vocab: records.Vocabulary) -> list[str]:
    """The label list handed to pyctcdecode, built once and explicitly (no pyctcdecode label rewriting).

    blank -> "" (pyctcdecode's blank), word delimiter -> " " (its word boundary), every other token
    verbatim, so "<unk>", "<s>" and "</s>" come out as text exactly as the greedy decoder (and HF) emit them.
    """
    return list(token_strings(vocab))


def _normalize_hotwords(
    hotwords: Sequence[str], vocab: records.Vocabulary, labels: Sequence[str]
) -> tuple[str, ...]:
    """Put hotwords in the vocabulary's case (e.g. upper case with do_lower_case) or raise UsageError (the
    hotwords are the user's, so the command line is what needs changing)."""
    chars = {c for lab in labels if len(lab) == 1 and lab != "" for c in lab} | {" "}
    out = []
    for hw in hotwords:
        hw = " ".join(hw.split())
        if not hw:
            raise errors.UsageError("hotword is empty")
        for cand in (hw, hw.upper(), hw.lower()):
            if set(cand) <= chars:
                out.append(cand)
                break
        else:
            missing = "".join(sorted(c for c in set(hw) if not {c, c.upper(), c.lower()} & chars))
            raise errors.UsageError(f"hotword {hw!r} has characters not in the model vocabulary: {missing!r}")
    return tuple(out)


def _build_pyctcdecode(labels: list[str], options: DecodeOptions) -> Any:
    """Instantiate pyctcdecode's BeamSearchDecoderCTC directly from our labels (imports are lazy)."""
    # Importing pyctcdecode without kenlm logs "kenlm python bindings are not installed ..." twice, which
    # reached stderr as two bare lines on every default run of a plain `pip install` (no handler is set for
    # other libraries' loggers). kenlm is optional for sew (sewcli/lm.py reads ARPA files, and a KenLM binary
    # without it is a DecoderError naming the pip command), so the import runs with pyctcdecode's loggers at
    # ERROR, except with `sew -v`.
    pyctc_log = logging.getLogger("pyctcdecode")
    before = pyctc_log.level
    if not logging.getLogger("sewcli").isEnabledFor(logging.DEBUG):
        pyctc_log.setLevel(logging.ERROR)
    try:
        from pyctcdecode.alphabet import Alphabet
        from pyctcdecode.decoder import BeamSearchDecoderCTC
    except ImportError as e:
        raise errors.DecoderError("beam search needs pyctcdecode: pip install pyctcdecode") from e
    finally:
        pyctc_log.setLevel(before)
    language_model = None
    if options.lm_path is not None:
        language_model = _load_lm(options)
    # Alphabet(...), not Alphabet.build_alphabet(...): the latter rewrites "<unk>", "[PAD]", "_" and "|".
    return BeamSearchDecoderCTC(Alphabet(list(labels), is_bpe=False), language_model)


LM_FILE_SUFFIXES = (".arpa", ".arpa.gz", ".bin", ".binary")
LARGE_ARPA_BYTES = 100_000_000  # above this (on disk), reading it without KenLM earns a warning


def bundled_lm(model_dir: Path) -> Path | None:
    """The `language_model/` directory shipped next to a checkpoint (pyctcdecode/HF layout), if any."""
    lm_dir = model_dir / "language_model"
    return lm_dir if lm_dir.is_dir() else None


def with_bundled_lm(options: DecodeOptions, model_dir: Path) -> DecodeOptions:
    """`options` for a model in `model_dir`: its own LM for a beam search given none, and "auto" resolved.

    "auto" becomes beam search with the model's LM when it ships one (or with lm_path / hotwords when given),
    else greedy decoding.
    """
    lm_dir = bundled_lm(model_dir) if options.lm_path is None and options.bundled_lm else None
    kind = options.kind
    if kind == "auto":
        kind = "beam" if options.lm_path is not None or options.hotwords or lm_dir is not None else "greedy"
    if kind == "beam" and lm_dir is not None:
        return replace(options, kind=kind, lm_path=str(lm_dir))
    return replace(options, kind=kind)


def _lm_files(path: Path) -> tuple[Path, Path | None, Path | None]:
    """(LM file, attrs.json or None, unigrams.txt or None) of an LM file or a `language_model/` dir."""
    if not path.exists():
        raise errors.DecoderError(f"language model {path}: no such file or directory")
    if not path.is_dir():
        return path, None, None
    found = sorted(p for p in path.iterdir() if p.name.lower().endswith(LM_FILE_SUFFIXES))
    if len(found) != 1:
        what = "no" if not found else "more than one"
        raise errors.DecoderError(
            f"language model {path}: {what} LM file ({', '.join(LM_FILE_SUFFIXES)}) in the directory"
        )
    attrs, unigrams = path / "attrs.json", path / "unigrams.txt"
    return found[0], attrs if attrs.is_file() else None, unigrams if unigrams.is_file() else None


def _read_unigrams(path: Path) -> frozenset[str]:
    try:
        return frozenset(w for w in path.read_text(encoding="utf-8").split())
    except (OSError, UnicodeDecodeError) as e:
        raise errors.DecoderError(f"language model unigrams {path}: cannot read them ({e})") from e


def _load_lm(options: DecodeOptions) -> Any:
    """pyctcdecode's language model for `options.lm_path` (sewcli.lm for ARPA text, KenLM for binaries)."""
    from sewcli import lm

    model_file, attrs_file, unigrams_file = _lm_files(Path(options.lm_path or ""))
    attrs = lm.read_attrs(attrs_file) if attrs_file else {}
    for key in ("alpha", "beta"):
        if getattr(options, key) is not None:  # the command line wins over attrs.json
            attrs[key] = getattr(options, key)
    params = lm.LMParams(**attrs)
    unigrams = _read_unigrams(unigrams_file) if unigrams_file else None
    name = model_file.name.lower()
    kenlm_mod: Any = None
    if not name.endswith(".gz"):  # KenLM reads gzip only when built with zlib: ours always can
        try:
            import kenlm as kenlm_mod  # type: ignore[import-not-found,no-redef]  # optional, fast on big LMs
        except ImportError:
            if not name.endswith(".arpa"):
                raise errors.DecoderError(
                    f"language model {model_file} is a KenLM binary: it needs the kenlm module "
                    "(pip install 'sewcli[lm]'), or give the .arpa file"
                ) from None
    if kenlm_mod is None:
        size = model_file.stat().st_size
        if size > LARGE_ARPA_BYTES:
            log.warning(
                "language model %s: %.0f MB of ARPA read in Python is slow and takes much memory; "
                "pip install 'sewcli[lm]' (KenLM) reads it faster",
                model_file,
                size / 1e6,
            )
        return lm.ngram_language_model(lm.ArpaModel(model_file), params, unigrams)
    return _kenlm_language_model(kenlm_mod, model_file, params, unigrams)


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the duration (C++ libraries write there directly)."""
    saved = devnull = -1
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):  # no usable stderr (or no /dev/null): leave it be
        if saved >= 0:
            os.close(saved)
        yield
        return
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _kenlm_language_model(kenlm: Any, path: Path, params: Any, unigrams: frozenset[str] | None) -> Any:
    from pyctcdecode.language_model import LanguageModel, load_unigram_set_from_arpa

    try:
        with _stderr_silenced():  # KenLM prints a progress bar and advice on file descriptor 2
            model = kenlm.Model(str(path))
    except (OSError, RuntimeError, ValueError) as e:
        detail = " ".join(str(e).split())[-160:]  # kenlm's messages are long and multi-line
        raise errors.DecoderError(
            f"language model {path}: not a readable KenLM .arpa/.bin file ({detail})"
        ) from e
    if unigrams is None and path.suffix.lower() == ".arpa":
        try:
            unigrams = frozenset(load_unigram_set_from_arpa(str(path)))
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise errors.DecoderError(f"language model {path}: cannot read its unigrams ({e})") from e
    return LanguageModel(
        model,
        unigrams,
        alpha=params.alpha,
        beta=params.beta,
        unk_score_offset=params.unk_score_offset,
        score_boundary=params.score_boundary,
    )
