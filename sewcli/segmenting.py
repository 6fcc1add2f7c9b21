"""Group decoded words into subtitle segments (numpy-free, pure Python).

A new segment starts before a word when any of these holds:
  * the pause since the previous word's end is longer than `max_gap_seconds`;
  * adding the word (and one space) would make the segment text longer than `max_chars`;
  * the segment would then last longer than `max_duration_seconds`.
A word longer than `max_chars` on its own still gets a segment of its own (it is never cut).
Segment text is the words joined by single spaces (so "a  b" in the transcript becomes "a b" in a cue).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sewcli import errors, records


@dataclass(frozen=True)
class SegmentOptions:
    """Where subtitle segments break (defaults follow common subtitle guidelines: 42 chars, 7 s)."""

    max_chars: int = 42
    max_gap_seconds: float = 0.8
    max_duration_seconds: float = 7.0

    def __post_init__(self) -> None:
        if self.max_chars < 1:
            raise errors.UsageError(f"max_chars must be >= 1, got {self.max_chars}")
        if not self.max_gap_seconds >= 0 or not self.max_duration_seconds > 0:
            raise errors.UsageError(
                f"max_gap_seconds must be >= 0 and max_duration_seconds > 0, got "
                f"{self.max_gap_seconds} and {self.max_duration_seconds}"
            )


def segment_words(
    words: Iterable[records.Word], options: SegmentOptions = SegmentOptions()
) -> tuple[records.Segment, ...]:
    """Break a time-ordered word sequence into subtitle segments.

    Args:
        words: decoded words in order (start/end seconds).
        options: break rules.

    Returns:
        segments in order; every word is in exactly one segment.
    """
    segments: list[records.Segment] = []
    cur: list[records.Word] = []
    length = 0  # characters of " ".join(cur)
    for w in words:
        if cur:
            too_long = length + 1 + len(w.text) > options.max_chars
            too_far = w.start - cur[-1].end > options.max_gap_seconds
            too_slow = w.end - cur[0].start > options.max_duration_seconds
            if too_long or too_far or too_slow:
                segments.append(_segment(cur))
                cur, length = [], 0
        length += len(w.text) + (1 if cur else 0)
        cur.append(w)
    if cur:
        segments.append(_segment(cur))
    return tuple(segments)


class LiveSegmenter:
    """`segment_words` for words that arrive in batches: each segment goes to `emit` once it is closed.

    A segment is closed when a later word starts the next one, or when the time up to which every word is
    known shows that any next word would break it (a pause, the duration); the rules above look only at the
    open segment and the new word, so the segments emitted, then those of `finish()`, are exactly
    `segment_words` of all the words.
    """

    def __init__(self, emit: Callable[[records.Segment], None], options: SegmentOptions = SegmentOptions()):
        self.emit, self.options = emit, options
        self.open: list[records.Word] = []  # words of the segment that may still grow

    def add(self, words: Iterable[records.Word], until: float | None = None) -> None:
        """Take the next words (in order); emit the segments they close.

        `until` (seconds): no later word starts before it. If the pause or the duration rule then holds
        for any next word, the open segment is closed now instead of when that word comes (`--live` prints a
        sentence when the pause after it is heard).
        """
        *closed, last = segment_words([*self.open, *words], self.options) or (None,)
        for seg in closed:
            self.emit(seg)
        self.open = [] if last is None else list(last.words)
        if until is not None and self.open:
            gap = until - self.open[-1].end > self.options.max_gap_seconds
            if gap or until - self.open[0].start > self.options.max_duration_seconds:
                self.finish()

    def finish(self) -> None:
        """No more words: emit the open segment."""
        if self.open:
            self.emit(_segment(self.open))
            self.open = []


def _segment(words: list[records.Word]) -> records.Segment:
    """A segment spanning its words."""
    return records.Segment(
        text=" ".join(w.text for w in words),
        start=words[0].start,
        end=max(w.end for w in words),
        words=tuple(words),
    )
