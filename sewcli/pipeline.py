"""The stages composed for one input: audio -> resample -> chunking -> inference -> decoding -> segments.

Nothing here decides policy (that is cli.py) or does numerical work (that is each stage): every stage is a
generator over blocks, windows or emissions, so one input of any length is transcribed in bounded memory.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sewcli import audio, chunking, decoding, resample, segmenting
from sewcli.inference_options import InferenceOptions
from sewcli.records import Emissions, FloatArray, Segment, Transcript

if TYPE_CHECKING:
    from sewcli import inference

# Called with (seconds of audio done, the header's total seconds or None).
ProgressCallback = Callable[[float, "float | None"], None]


@dataclass(frozen=True)
class PipelineOptions:
    """The per-stage options of one `sew transcribe` run, grouped."""

    audio: audio.AudioOptions = field(default_factory=audio.AudioOptions)
    chunk: chunking.ChunkOptions = field(default_factory=chunking.ChunkOptions)
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    decode: decoding.DecodeOptions = field(default_factory=decoding.DecodeOptions)
    segment: segmenting.SegmentOptions = field(default_factory=segmenting.SegmentOptions)
    resample_quality: str = "HQ"


def _report(
    stream: Iterable[Emissions], progress: ProgressCallback | None, total: float | None
) -> Iterator[Emissions]:
    """Pass emissions through, telling `progress` how many seconds are done after each one."""
    for em in stream:
        if progress is not None:
            progress((em.first_frame + em.log_probs.shape[0]) * em.frame_seconds, total)
        yield em


def _until(blocks: Iterator[FloatArray], stop: Callable[[], bool]) -> Iterator[FloatArray]:
    """Pass blocks through until `stop()` says so (checked after each block, so none read is dropped)."""
    for block in blocks:
        yield block
        if stop():
            return


def transcribe_file(
    source: str | os.PathLike[str],
    model: inference.LoadedModel,
    decoder: decoding.CTCDecoder,
    options: PipelineOptions,
    progress: ProgressCallback | None = None,
    on_segment: Callable[[Segment], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Transcript:
    """Transcribe one input (a path, or "-" for stdin).

    Args:
        source: the input as the user gave it.
        model: the loaded model (its sample rate, hop, frame count and vocabulary drive the other stages).
        decoder: built once per run for model.vocab.
        options: the per-stage options.
        progress: optional callback receiving (seconds transcribed so far, header duration or None).
        on_segment: optional callback receiving each subtitle segment as soon as it is final, in order
            (`--live`); together they are the returned transcript's segments.
        stop: optional; once it returns True the input is treated as ended after the block just read, and
            what was read is transcribed as usual (Ctrl-C in `--live`: a stream is stopped, not lost).
    Returns:
        the Transcript (text, timed words, subtitle segments); raises a SewError subclass naming the input.
    """
    name = audio.display_name(source)
    exit_counts = getattr(model.module, "exit_counts", None)  # early-exit models: windows per exit layer
    if not isinstance(exit_counts, Counter):
        exit_counts = None
    else:
        exit_counts.clear()
    with audio.open_audio(source, options.audio) as stream:
        blocks = resample.resample_blocks(
            stream.blocks() if stop is None else _until(stream.blocks(), stop),
            stream.info.sample_rate,
            model.sample_rate,
            options.resample_quality,
        )
        windows = chunking.windows(
            blocks,
            sample_rate=model.sample_rate,
            options=options.chunk,
            hop_samples=model.hop_samples,
            frame_count=model.frame_count,
            min_samples=model.min_samples,
            source=name,
            align_samples=model.align_samples,
        )
        from sewcli import inference  # torch: only once there is audio to run

        emitted = inference.emissions(windows, model, options.inference)
        live_segments: list[Segment] = []
        live = None
        if on_segment is not None:
            hand_on = on_segment

            def emit(segment: Segment) -> None:
                live_segments.append(segment)
                hand_on(segment)

            live = segmenting.LiveSegmenter(emit, options.segment)
        result = decoder.decode(
            _report(emitted, progress, stream.info.duration), on_words=None if live is None else live.add
        )
        if live is not None:
            live.finish()
        native_seconds = stream.frames_read / stream.info.sample_rate
    words = result.words
    extra: dict[str, object] = {"decoder": decoder.kind}
    if decoder.lm_path is not None:
        extra["language_model"] = decoder.lm_path
    if exit_counts is not None:
        extra["exit_layers"] = {str(layer): n for layer, n in sorted(exit_counts.items())}
    return Transcript(
        source=name,
        text=result.text,
        duration=native_seconds,
        model=model.name,
        words=words,
        # --live already made them (equal to segment_words of the same words: tests/test_writers.py)
        segments=tuple(live_segments)
        if live is not None
        else segmenting.segment_words(words, options.segment),
        language=model.language,
        extra=extra,
    )
