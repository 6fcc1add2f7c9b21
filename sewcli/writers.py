"""Render a `records.Transcript` to a text stream: txt, srt, vtt, json, tsv (whisper's WriteSRT pattern).

Each writer is `Writer(name, extension, render)`; call it as `WRITERS["srt"](transcript, fp)`. Writers
never open files or pick names; the CLI does that (and should open with encoding="utf-8", newline="").

Subtitle-like formats (srt, vtt, tsv, and json's "segments") use `transcript.segments`; if those are empty
they fall back to `segment_words(transcript.words)`, and if there are no words either, to one segment
spanning the whole `duration` when there is text. Silence gives valid empty outputs (zero cues, empty lists).

Cues are made safe for every parser: line breaks in text become spaces, "-->" becomes "->" (srt) or is
HTML-escaped with the rest of the cue text (vtt: & < > become &amp; &lt; &gt;). Cue times are whole
milliseconds, never negative, start at or after the previous cue's end, and last at least 1 ms; empty cues
are dropped.
TSV escapes "\\" "\t" "\n" "\r" as two-character sequences "\\\\" "\\t" "\\n" "\\r".
Lone surrogates (undecodable bytes in file names) are written as backslash escapes, never as invalid UTF-8.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from sewcli import records
from sewcli.segmenting import SegmentOptions, segment_words

JSON_SCHEMA_VERSION = 1

_NUMBER = {"type": "number", "minimum": 0}
_WORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A decoded word: its time span in seconds and offsets into the top-level text.",
    "required": ["text", "start", "end", "confidence", "char_start", "char_end"],
    "additionalProperties": False,
    "properties": {
        "text": {"type": "string"},
        "start": _NUMBER,
        "end": _NUMBER,
        "confidence": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "Geometric mean of the word's tokens' peak CTC posteriors.",
        },
        "char_start": {
            "type": "integer",
            "minimum": 0,
            "description": "Offset of the first character in text.",
        },
        "char_end": {"type": "integer", "minimum": 0, "description": "Offset one past the last character."},
    },
}
JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "sew transcript",
    "description": "Output of `sew transcribe --format json`. Times are seconds from the start of the input, "
    "rounded to milliseconds.",
    "type": "object",
    "required": ["schema_version", "source", "text", "duration", "model", "language", "words", "segments"],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"const": JSON_SCHEMA_VERSION},
        "source": {"type": "string", "description": "The input as given on the command line; '-' for stdin."},
        "text": {"type": "string"},
        "duration": {**_NUMBER, "description": "Seconds of audio decoded."},
        "model": {"type": "string"},
        "language": {"type": ["string", "null"]},
        "words": {"type": "array", "items": {"$ref": "#/$defs/word"}},
        "segments": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["start", "end", "text", "words"],
                "additionalProperties": False,
                "properties": {
                    "start": _NUMBER,
                    "end": _NUMBER,
                    "text": {"type": "string"},
                    "words": {"type": "array", "items": {"$ref": "#/$defs/word"}},
                },
            },
        },
        "extra": {"type": "object", "description": "Decoder settings and other run details."},
    },
    "$defs": {"word": _WORD_SCHEMA},
}


@dataclass(frozen=True)
class Writer:
    """One output format: its name, the file extension it uses, and the function that renders it."""

    name: str
    extension: str
    render: Callable[[records.Transcript, TextIO], None]

    def __call__(self, transcript: records.Transcript, fp: TextIO) -> None:
        """Write `transcript` to `fp`."""
        self.render(transcript, fp)


# ----------------------------------------------------------------------------------------------------
# helpers


def _safe(s: str) -> str:
    """`s` with lone surrogates turned into backslash escapes, so it always encodes as UTF-8."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        try:  # surrogate-escaped bytes from os.fsdecode: show the original byte as \xNN
            return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _seconds(x: float) -> float:
    """A finite, non-negative time rounded to the millisecond."""
    return round(x, 3) if math.isfinite(x) and x > 0 else 0.0


def _ms(x: float) -> int:
    """Seconds -> whole non-negative milliseconds."""
    return int(round(x * 1000)) if math.isfinite(x) and x > 0 else 0


def format_timestamp(ms: int, decimal_marker: str = ",") -> str:
    """Milliseconds -> "HH:MM:SS,mmm" (hours grow past two digits if needed)."""
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{millis:03d}"


def one_line(text: str) -> str:
    """Text on a single line: every line break (\\n, \\r, U+2028, ...) becomes a space; ends stripped."""
    return " ".join(part.strip() for part in _safe(text).splitlines() if part.strip()).strip()


def segments_of(transcript: records.Transcript) -> tuple[records.Segment, ...]:
    """The transcript's segments, or segments made from its words, or one segment for its text."""
    if transcript.segments:
        return transcript.segments
    if transcript.words:
        return segment_words(transcript.words, SegmentOptions())
    if transcript.text.strip():
        return (records.Segment(transcript.text, 0.0, transcript.duration, ()),)
    return ()


def cues(transcript: records.Transcript) -> list[tuple[int, int, str]]:
    """(start ms, end ms, one-line text) per non-empty segment; monotonic and at least 1 ms long."""
    out: list[tuple[int, int, str]] = []
    prev_end = 0
    for seg in segments_of(transcript):
        text = one_line(seg.text)
        if not text:
            continue
        start = max(_ms(seg.start), prev_end)
        end = max(_ms(seg.end), start + 1)
        out.append((start, end, text))
        prev_end = end
    return out


# ----------------------------------------------------------------------------------------------------
# writers


def write_txt(transcript: records.Transcript, fp: TextIO) -> None:
    """The transcript text and a newline."""
    fp.write(_safe(transcript.text) + "\n")


def write_srt(transcript: records.Transcript, fp: TextIO) -> None:
    """SubRip: numbered cues, "HH:MM:SS,mmm --> HH:MM:SS,mmm", a blank line after each."""
    for i, (start, end, text) in enumerate(cues(transcript), 1):
        text = text.replace("-->", "->")
        fp.write(f"{i}\n{format_timestamp(start)} --> {format_timestamp(end)}\n{text}\n\n")


def write_vtt(transcript: records.Transcript, fp: TextIO) -> None:
    """WebVTT: "WEBVTT" header, then "HH:MM:SS.mmm --> HH:MM:SS.mmm" cues with HTML-escaped text."""
    fp.write("WEBVTT\n\n")
    for start, end, text in cues(transcript):
        text = html.escape(text, quote=False)
        fp.write(f"{format_timestamp(start, '.')} --> {format_timestamp(end, '.')}\n{text}\n\n")


def _tsv_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def write_tsv(transcript: records.Transcript, fp: TextIO) -> None:
    """Tab-separated "start\\tend\\ttext" with integer milliseconds, one segment a line (as whisper)."""
    fp.write("start\tend\ttext\n")
    for start, end, text in cues(transcript):
        fp.write(f"{start}\t{end}\t{_tsv_escape(text)}\n")


def _word_json(w: records.Word) -> dict[str, Any]:
    conf = w.confidence if math.isfinite(w.confidence) else 0.0
    return {
        "text": _safe(w.text),
        "start": _seconds(w.start),
        "end": _seconds(w.end),
        "confidence": round(min(max(conf, 0.0), 1.0), 4),
        "char_start": max(int(w.char_start), 0),
        "char_end": max(int(w.char_end), 0),
    }


def _jsonable(obj: object) -> Any:
    """`obj` as plain JSON values: str keys, lists for sequences, None for NaN/inf, str otherwise."""
    if isinstance(obj, dict):
        return {_safe(str(k)): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str):
        return _safe(obj)
    return _safe(str(obj))


def transcript_json(transcript: records.Transcript) -> dict[str, Any]:
    """The JSON document (a dict that validates against JSON_SCHEMA)."""
    doc: dict[str, Any] = {
        "schema_version": JSON_SCHEMA_VERSION,
        "source": _safe(transcript.source),
        "text": _safe(transcript.text),
        "duration": _seconds(transcript.duration),
        "model": _safe(transcript.model),
        "language": None if transcript.language is None else _safe(transcript.language),
        "words": [_word_json(w) for w in transcript.words],
        "segments": [
            {
                "start": _seconds(s.start),
                "end": _seconds(s.end),
                "text": _safe(s.text),
                "words": [_word_json(w) for w in s.words],
            }
            for s in segments_of(transcript)
        ],
    }
    if transcript.extra:
        doc["extra"] = _jsonable(transcript.extra)
    return doc


def write_json(transcript: records.Transcript, fp: TextIO) -> None:
    """One UTF-8 JSON object (not ASCII-escaped) and a newline; see JSON_SCHEMA and docs/json-schema.json."""
    json.dump(transcript_json(transcript), fp, ensure_ascii=False, allow_nan=False, indent=2)
    fp.write("\n")


WRITERS: dict[str, Writer] = {
    w.name: w
    for w in (
        Writer("txt", "txt", write_txt),
        Writer("srt", "srt", write_srt),
        Writer("vtt", "vtt", write_vtt),
        Writer("json", "json", write_json),
        Writer("tsv", "tsv", write_tsv),
    )
}
