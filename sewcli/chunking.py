"""Cut a stream of mono sample blocks into fixed, overlapping model windows whose kept frames tile exactly.

Why our own chunker: the stream resampler returns blocks of varying size (python-soxr README: "Output frame
count may not be consistent"), and `soundfile.blocks(overlap=...)` had edge-case bugs on short files
(bastibe/python-soundfile #446, #457). This module is numpy only and knows nothing about the model except
two numbers and one callable that the caller passes in:

- `hop_samples`: the model's frame hop (prod(conv_stride) = 320 for SEW, SEW-D and wav2vec2);
- `frame_count(n)`: the number of logit frames the model emits for n input samples;
- `min_samples`: the shortest input the model accepts (720 for SEW/SEW-D, 400 for wav2vec2).

Geometry (all in samples at the model rate; W and O are rounded to whole hops):

- W = round(chunk_seconds * rate / hop) * hop, O = round(overlap_seconds * rate / hop) * hop, step = W - O.
- Regular windows start at k * step and hold exactly W samples.
- The LAST window ends at the end of the input and starts on the hop grid at f = floor((N - W) / hop) * hop,
  so it holds W + ((N - W) mod hop) samples: between W and W + hop - 1. It never holds fewer than W samples
  (less context than the others) and is never zero-padded (padding changes group-norm models). Only this one
  window can differ from W, so the regular windows batch perfectly; run the last one as its own batch.
- An input shorter than W + hop is a single window of its own length (shorter than W if N < W).
- Frame k of a window starting at sample s is global frame s / hop + k, because s is a multiple of the hop
  and the conv stack is shift-equivariant by whole hops: frame_count(s + n) == s / hop + frame_count(n).
- `align_samples` (optional, a multiple of the hop; replaces the hop as the grid of W, O and every window
  start). SEW and SEW-D need 2 * hop = 640: they pool pairs of frames, so a window starting on an odd frame
  pairs them differently from the whole file (measured on the embedded model: 0.72 instead of 0.98 argmax
  agreement with the whole-file frames on such windows). The last window then holds W to W + align - 1
  samples.
- Each window keeps the frames [keep_start, keep_end) of its own logits. Neighbours are cut at the middle of
  their nominal overlap, so every window keeps at least ~O/2 samples of context on each inner side, and the
  kept ranges tile the global frames [0, frame_count(N)) exactly once.

Streaming and memory: a regular window is emitted as soon as W + hop samples past its start have arrived
(then it is certainly not the last one); the buffer keeps at most the samples still needed by the next
regular window or by a possible last window, i.e. fewer than W + hop samples, plus one input block (blocks
longer than `step` are fed in pieces, so the bound is W + hop + min(block, step)).

Short inputs: `windows()` raises `AudioError` for inputs shorter than `min_samples`, naming `source` (pass
the file name; the default says "input"). `check_length()` does the same check for a known length.

Public API (stable):
    ChunkOptions(chunk_seconds=30.0, overlap_seconds=3.0)  frozen options; .geometry(rate, hop) -> Geometry
    windows(blocks, *, sample_rate, options, hop_samples, frame_count, min_samples, source="input",
            align_samples=None) -> Iterator[records.Window]
    Windower(...)                                           the same as a push object: feed(block) / finish()
    check_length(n_samples, *, sample_rate, min_samples, source) raises AudioError when too short
    kept_rows(window, log_probs) -> log_probs[keep_start:keep_end]
    stitch(pairs, *, hop_samples, frame_seconds) -> records.Emissions
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from sewcli.errors import AudioError, UsageError
from sewcli.records import Emissions, FloatArray, Window

# The one place for the chunking defaults, chosen by measurement (bench/chunk_defaults.py on the embedded
# model, 182 s of speech, README "Chunking"): the argmax agreement of the stitched frames with one whole-file
# window was 0.92 / 0.95 / 0.974 / 0.970 / 0.979 for 5 / 10 / 15 / 20 / 30 s windows, nearly independent of
# the overlap.
DEFAULT_CHUNK_SECONDS = 30.0
DEFAULT_OVERLAP_SECONDS = 3.0
MAX_CHUNK_SECONDS = 600  # the registry's chunk_length has the same bound (sewcli/registry.py)

FrameCount = Callable[[int], int]


@dataclass(frozen=True)
class Geometry:
    """Window geometry in samples at the model rate, already aligned to the hop."""

    window: int  # W: samples in every regular window
    overlap: int  # O: samples shared by two neighbouring regular windows
    hop: int  # model frame hop in samples
    align: int = 0  # window starts, W and O are multiples of this (a multiple of hop; 0 = hop)

    @property
    def grid(self) -> int:
        """The start grid: `align`, or the hop when no alignment was asked for."""
        return self.align or self.hop

    @property
    def step(self) -> int:
        """Distance between the starts of two regular windows."""
        return self.window - self.overlap


@dataclass(frozen=True)
class ChunkOptions:
    """How long the model windows are and how much neighbouring windows overlap, in seconds."""

    chunk_seconds: float = DEFAULT_CHUNK_SECONDS
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS

    def __post_init__(self) -> None:
        if not (self.chunk_seconds > 0 and np.isfinite(self.chunk_seconds)):
            raise UsageError(f"chunk length must be a positive number of seconds, got {self.chunk_seconds!r}")
        if self.chunk_seconds > MAX_CHUNK_SECONDS:  # a window's samples and activations are held whole
            raise UsageError(
                f"chunk length must be at most {MAX_CHUNK_SECONDS} seconds, got {self.chunk_seconds!r}"
            )
        if not (self.overlap_seconds >= 0 and np.isfinite(self.overlap_seconds)):
            raise UsageError(f"chunk overlap must be >= 0 seconds, got {self.overlap_seconds!r}")
        if self.overlap_seconds >= self.chunk_seconds:
            raise UsageError(
                f"chunk overlap ({self.overlap_seconds} s) must be shorter than the chunk "
                f"({self.chunk_seconds} s)"
            )

    def geometry(self, sample_rate: int, hop_samples: int, align_samples: int | None = None) -> Geometry:
        """Window and overlap in samples, rounded to whole hops (window > overlap by at least one hop).

        `align_samples` (a multiple of the hop) puts every window start on a coarser grid: SEW and SEW-D pool
        pairs of frames (squeeze factor 2), so their windows must start on an even frame (640 samples) for the
        window's frames to equal the whole-file frames away from the edges.
        """
        if sample_rate <= 0 or hop_samples <= 0:
            raise UsageError(f"sample rate and hop must be positive, got {sample_rate} and {hop_samples}")
        grid = hop_samples if align_samples is None else align_samples
        if grid <= 0 or grid % hop_samples:
            raise UsageError(f"alignment {grid} must be a positive multiple of the hop {hop_samples}")
        window = max(1, round(self.chunk_seconds * sample_rate / grid)) * grid
        overlap = round(self.overlap_seconds * sample_rate / grid) * grid
        if overlap >= window:
            raise UsageError(
                f"chunk overlap {self.overlap_seconds} s rounds to {overlap} samples, not less than the "
                f"{window}-sample chunk ({self.chunk_seconds} s at {sample_rate} Hz, hop {hop_samples})"
            )
        return Geometry(window=window, overlap=overlap, hop=hop_samples, align=grid)


def check_length(n_samples: int, *, sample_rate: int, min_samples: int, source: str) -> None:
    """Raise AudioError naming `source`, the duration and the minimum when an input is too short."""
    if n_samples < min_samples:
        raise AudioError(
            f"{source}: audio too short: {n_samples / sample_rate:.3f} s "
            f"({n_samples} samples at {sample_rate} Hz); "
            f"the model needs at least {min_samples / sample_rate:.3f} s ({min_samples} samples)"
        )


class _Buffer:
    """A growable sample buffer over a sliding range [start, start + size) of the global stream."""

    def __init__(self, capacity: int) -> None:
        self.data = np.empty(capacity, dtype=np.float32)
        self.start = 0  # global index of data[self.offset]
        self.offset = 0
        self.size = 0

    @property
    def end(self) -> int:
        """Global index one past the last buffered sample."""
        return self.start + self.size

    def append(self, block: FloatArray) -> None:
        """Append samples, compacting (and if needed growing) the storage."""
        n = block.shape[0]
        if self.offset + self.size + n > self.data.shape[0]:
            live = self.data[self.offset : self.offset + self.size]
            if self.size + n > self.data.shape[0]:
                grown = np.empty(self.size + n, dtype=np.float32)
                grown[: self.size] = live
                self.data = grown
            else:
                self.data[: self.size] = live  # numpy handles the overlapping move
            self.offset = 0
        self.data[self.offset + self.size : self.offset + self.size + n] = block
        self.size += n

    def drop_before(self, index: int) -> None:
        """Forget every sample before global `index`."""
        k = min(max(0, index - self.start), self.size)
        self.offset += k
        self.start += k
        self.size -= k

    def copy(self, first: int, last: int) -> FloatArray:
        """A fresh array of the global samples [first, last)."""
        assert self.start <= first <= last <= self.end, (first, last, self.start, self.end)
        a = self.offset + first - self.start
        return self.data[a : a + last - first].copy()


def checked_geometry(
    options: ChunkOptions,
    *,
    sample_rate: int,
    hop_samples: int,
    frame_count: FrameCount,
    min_samples: int,
    align_samples: int | None = None,
) -> Geometry:
    """The windows' geometry for a model, or UsageError when the model cannot take such windows."""
    g = options.geometry(sample_rate, hop_samples, align_samples)
    if g.window < min_samples:
        raise UsageError(
            f"chunk of {g.window} samples is shorter than the model minimum of {min_samples} samples"
        )
    # Neighbouring windows must share at least one frame, or a frame straddling the seam is lost.
    frames = frame_count(g.window)
    if frames * g.hop < g.step:
        raise UsageError(
            f"chunk overlap {g.overlap} samples is too small: windows of {g.window} samples give "
            f"{frames} frames, which leaves a gap at every seam "
            "(use at least one hop more)"
        )
    return g


class Windower:
    """Push interface of the chunker: `feed(block)` returns the windows it completes, `finish()` the rest."""

    def __init__(
        self,
        *,
        sample_rate: int,
        options: ChunkOptions,
        hop_samples: int,
        frame_count: FrameCount,
        min_samples: int,
        source: str = "input",
        align_samples: int | None = None,
    ) -> None:
        self.geometry = g = checked_geometry(
            options,
            sample_rate=sample_rate,
            hop_samples=hop_samples,
            frame_count=frame_count,
            min_samples=min_samples,
            align_samples=align_samples,
        )
        self.sample_rate = sample_rate
        self.frame_count = frame_count
        self.min_samples = min_samples
        self.source = source
        self.frames_per_window = frame_count(g.window)
        self._piece = g.step  # feed long blocks in pieces of at most one step
        self._buf = _Buffer(g.window + g.grid + self._piece)
        self._next_index = 0  # index (and k) of the next regular window
        self._keep_from = 0  # global frame where the next window's kept range begins
        self._finished = False
        self.peak_buffered = 0  # largest number of samples ever held (for memory tests)

    @property
    def buffered(self) -> int:
        """Samples currently held."""
        return self._buf.size

    @property
    def samples_seen(self) -> int:
        """Samples fed so far."""
        return self._buf.end

    def feed(self, block: FloatArray) -> list[Window]:
        """Append one block of any length (including 0) and return the regular windows it completes."""
        assert not self._finished, "feed() after finish()"
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        out: list[Window] = []
        for i in range(0, block.shape[0], self._piece):
            self._buf.append(block[i : i + self._piece])
            self.peak_buffered = max(self.peak_buffered, self._buf.size)
            out.extend(self._emit_ready())
        return out

    def _emit_ready(self) -> Iterator[Window]:
        """Emit every regular window certainly followed by another window, then drop unneeded samples."""
        g = self.geometry
        n = self._buf.end
        while (s := self._next_index * g.step) + g.window + g.grid <= n:
            # The next nominal start bounds this window's kept range: cut mid-way in the nominal overlap.
            first, last_excl = s // g.hop, s // g.hop + self.frames_per_window
            cut = ((s + g.step) // g.hop + last_excl) // 2
            yield Window(
                index=self._next_index,
                start=s,
                samples=self._buf.copy(s, s + g.window),
                keep_start=self._keep_from - first,
                keep_end=cut - first,
                is_last=False,
            )
            self._keep_from = cut
            self._next_index += 1
        # Keep what the next regular window needs and what a last window ending here would need.
        last_start = max(0, (n - g.window) // g.grid * g.grid)
        self._buf.drop_before(min(self._next_index * g.step, last_start))

    def finish(self) -> list[Window]:
        """Close the stream and return the last (or only) window; AudioError if the input is too short."""
        assert not self._finished, "finish() called twice"
        self._finished = True
        g, n = self.geometry, self._buf.end
        if self._next_index == 0:
            check_length(n, sample_rate=self.sample_rate, min_samples=self.min_samples, source=self.source)
            start = 0
        else:
            start = (n - g.window) // g.grid * g.grid
        assert start >= self._buf.start, (start, self._buf.start)
        frames = self.frame_count(n - start)
        window = Window(
            index=self._next_index,
            start=start,
            samples=self._buf.copy(start, n),
            keep_start=self._keep_from - start // g.hop,
            keep_end=frames,
            is_last=True,
        )
        assert 0 <= window.keep_start < window.keep_end, (window.keep_start, window.keep_end)
        self._buf.drop_before(n)
        return [window]


def windows(
    blocks: Iterable[FloatArray],
    *,
    sample_rate: int,
    options: ChunkOptions,
    hop_samples: int,
    frame_count: FrameCount,
    min_samples: int,
    source: str = "input",
    align_samples: int | None = None,
) -> Iterator[Window]:
    """Re-buffer mono blocks of any sizes into overlapping model windows (see the module docstring).

    Args:
        blocks: mono float32 sample arrays at `sample_rate`, any lengths (empty ones allowed).
        sample_rate: samples per second of the blocks (the model rate).
        options: chunk and overlap lengths in seconds.
        hop_samples: the model's frame hop in samples (320 for our models).
        frame_count: number of logit frames the model emits for n samples.
        min_samples: shortest input the model accepts; shorter inputs raise AudioError naming `source`.
        source: display name of the input for error messages.
        align_samples: window starts on multiples of this (a multiple of the hop; default the hop).
    Returns:
        Windows in order; window.samples is (valid,) float32, a fresh array the caller may keep.
    """
    w = Windower(
        sample_rate=sample_rate,
        options=options,
        hop_samples=hop_samples,
        frame_count=frame_count,
        min_samples=min_samples,
        source=source,
        align_samples=align_samples,
    )
    for block in blocks:
        yield from w.feed(block)
    yield from w.finish()


def kept_rows(window: Window, log_probs: FloatArray) -> FloatArray:
    """The rows of one window's (frames, vocab) log-probs that survive stitching: (kept frames, vocab)."""
    if log_probs.shape[0] < window.keep_end:
        raise ValueError(
            f"window {window.index} has {log_probs.shape[0]} logit frames, "
            f"fewer than its keep_end {window.keep_end}"
        )
    return log_probs[window.keep_start : window.keep_end]


def stitch(
    pairs: Iterable[tuple[Window, FloatArray]], *, hop_samples: int, frame_seconds: float
) -> Emissions:
    """Concatenate the kept rows of consecutive windows into one Emissions, checking they tile without gaps.

    Args:
        pairs: (window, log_probs) in window order; log_probs is (frames, vocab) for that window's samples.
        hop_samples: the model's frame hop in samples (the same value given to `windows`).
        frame_seconds: seconds per logit frame (hop_samples / sample_rate).
    Returns:
        Emissions with log_probs (total_frames, vocab) and first_frame 0.
    """
    rows: list[FloatArray] = []
    expected = 0
    for window, log_probs in pairs:
        first = window.start // hop_samples + window.keep_start
        if first != expected:
            raise ValueError(f"window {window.index} keeps frames from {first}, expected {expected}")
        kept = kept_rows(window, log_probs)
        rows.append(kept)
        expected = first + kept.shape[0]
    if not rows:
        raise ValueError("stitch() got no windows")
    return Emissions(
        log_probs=np.ascontiguousarray(np.concatenate(rows, axis=0), dtype=np.float32),
        first_frame=0,
        frame_seconds=frame_seconds,
    )
