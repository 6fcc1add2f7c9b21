"""Typed, frozen records passed between pipeline stages (numpy only, never torch).

Data flows one way:
    cli -> registry -> audio -> resample -> chunking -> model/inference -> decoding -> writers
and each arrow carries one of these records, so each stage can be built and tested alone.

Times are seconds (float) from the start of the input. Audio is mono float32 at the model's sample rate once
it has left `resample`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class AudioInfo:
    """What the decoder learned about one input before reading its samples."""

    source: str  # display name: the path as the user gave it, or "-" for stdin
    sample_rate: int  # native rate of the file
    channels: int
    frames: int | None  # header's frame count; None when unknown (stdin, some mp3/ogg); may be an estimate
    format: str  # libsndfile major format, e.g. "WAV", "FLAC", "OGG", "MP3"
    subtype: str  # e.g. "PCM_16", "FLOAT", "VORBIS"

    @property
    def duration(self) -> float | None:
        """Header duration in seconds, if the header knows the frame count."""
        return None if self.frames is None else self.frames / self.sample_rate


@dataclass(frozen=True)
class Window:
    """One fixed-size model input cut from the (resampled, mono) stream.

    `samples` has exactly `valid` real samples; the chunker never pads (padding changes group-norm models).
    `start` is the index of samples[0] in the whole stream at the model rate.
    `keep_start`/`keep_end` are the frame range (end exclusive, in this window's own logit frames) whose
    emissions survive stitching; the others overlap a neighbouring window.
    """

    index: int
    start: int
    samples: FloatArray
    keep_start: int
    keep_end: int
    is_last: bool

    @property
    def valid(self) -> int:
        return int(self.samples.shape[0])


@dataclass(frozen=True)
class Emissions:
    """CTC log-probabilities for consecutive frames of one input, already stitched (no overlap).

    `log_probs` has shape (frames, vocab), float32, log-softmax over the vocabulary.
    `first_frame` is the global index (from the start of the input) of row 0; frame i covers
    [(first_frame + i) * frame_seconds, (first_frame + i + 1) * frame_seconds).
    """

    log_probs: FloatArray
    first_frame: int
    frame_seconds: float


@dataclass(frozen=True)
class Word:
    """A decoded word with its time span and a confidence in [0, 1] from the CTC posteriors."""

    text: str
    start: float
    end: float
    confidence: float
    char_start: int  # offset of the word's first character in Transcript.text
    char_end: int  # offset one past its last character


@dataclass(frozen=True)
class Segment:
    """A run of words for subtitles and JSON: broken on pauses and at a maximum line length."""

    text: str
    start: float
    end: float
    words: tuple[Word, ...]


@dataclass(frozen=True)
class Transcript:
    """The result for one input: what every writer renders."""

    source: str
    text: str
    duration: float  # seconds of audio actually decoded
    model: str
    words: tuple[Word, ...] = ()
    segments: tuple[Segment, ...] = ()
    language: str | None = None
    # e.g. decoder settings, exit layer; JSON-serialisable
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Vocabulary:
    """A CTC output vocabulary with Wav2Vec2CTCTokenizer decoding semantics (see sew_spec.md section 7).

    `tokens[i]` is the token of logit column i. The blank is `tokens[blank_id]` (the tokenizer's pad token).
    `word_delimiter` ("|" for the English checkpoints; None if the vocabulary has none) becomes a space in
    text.
    Other special tokens (<s>, </s>, <unk>) are kept in the text when emitted, as HF keeps them.
    `do_lower_case` lower-cases the decoded text.
    """

    tokens: tuple[str, ...]
    blank_id: int
    word_delimiter: str | None = "|"
    unk_token: str = "<unk>"
    do_lower_case: bool = False
    special_tokens: frozenset[str] = frozenset({"<s>", "</s>", "<unk>", "<pad>"})

    def __len__(self) -> int:
        return len(self.tokens)
