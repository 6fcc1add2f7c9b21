"""Render a `records.Transcript` to a text stream: txt, srt, vtt, json, jsonl, tsv (as whisper's WriteSRT).

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

from sewcli import errors, records
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


Cue = tuple[int, int, str]  # start ms, end ms, one-line text


def cue(seg: records.Segment, prev_end: int) -> Cue | None:
    """One segment as a cue that starts at or after `prev_end` (ms) and lasts >= 1 ms; None when empty."""
    text = one_line(seg.text)
    if not text:
        return None
    start = max(_ms(seg.start), prev_end)
    return start, max(_ms(seg.end), start + 1), text


def cues(transcript: records.Transcript) -> list[Cue]:
    """(start ms, end ms, one-line text) per non-empty segment; monotonic and at least 1 ms long."""
    out: list[Cue] = []
    prev_end = 0
    for seg in segments_of(transcript):
        c = cue(seg, prev_end)
        if c is not None:
            out.append(c)
            prev_end = c[1]
    return out


def _srt_cue(i: int, c: Cue) -> str:
    start, end, text = c
    return f"{i}\n{format_timestamp(start)} --> {format_timestamp(end)}\n{text.replace('-->', '->')}\n\n"


def _vtt_cue(c: Cue) -> str:
    start, end, text = c
    text = html.escape(text, quote=False)
    return f"{format_timestamp(start, '.')} --> {format_timestamp(end, '.')}\n{text}\n\n"


def _tsv_row(c: Cue) -> str:
    start, end, text = c
    return f"{start}\t{end}\t{_tsv_escape(text)}\n"


VTT_HEADER, TSV_HEADER = "WEBVTT\n\n", "start\tend\ttext\n"


# ----------------------------------------------------------------------------------------------------
# writers


def write_txt(transcript: records.Transcript, fp: TextIO) -> None:
    """The transcript text and a newline."""
    fp.write(_safe(transcript.text) + "\n")


def write_srt(transcript: records.Transcript, fp: TextIO) -> None:
    """SubRip: numbered cues, "HH:MM:SS,mmm --> HH:MM:SS,mmm", a blank line after each."""
    for i, c in enumerate(cues(transcript), 1):
        fp.write(_srt_cue(i, c))


def write_vtt(transcript: records.Transcript, fp: TextIO) -> None:
    """WebVTT: "WEBVTT" header, then "HH:MM:SS.mmm --> HH:MM:SS.mmm" cues with HTML-escaped text."""
    fp.write(VTT_HEADER)
    for c in cues(transcript):
        fp.write(_vtt_cue(c))


def _tsv_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def write_tsv(transcript: records.Transcript, fp: TextIO) -> None:
    """Tab-separated "start\\tend\\ttext" with integer milliseconds, one segment a line (as whisper)."""
    fp.write(TSV_HEADER)
    for c in cues(transcript):
        fp.write(_tsv_row(c))


class LiveWriter:
    """Writes segments as they are decoded (`sew transcribe --live`), each as soon as it is closed.

    srt, vtt and tsv come out as the same cues their batch writers make from the same segments; txt gives
    one line per segment (the batch txt is the whole text on one line). `finish()` writes the header of an
    input without any segment, so that the output is still a valid (empty) file.
    """

    FORMATS = ("txt", "srt", "vtt", "tsv")

    def __init__(self, fmt: str, write: Callable[[str], None]) -> None:
        if fmt not in self.FORMATS:
            raise errors.UsageError(f"--live writes {', '.join(self.FORMATS)}, not {fmt}")
        self.fmt, self.write = fmt, write
        self.count = 0  # cues written
        self.prev_end = 0  # ms
        self.started = False

    def _start(self) -> None:
        if not self.started:
            self.started = True
            header = {"vtt": VTT_HEADER, "tsv": TSV_HEADER}.get(self.fmt, "")
            if header:
                self.write(header)

    def segment(self, seg: records.Segment) -> None:
        """Write one closed segment."""
        self._start()
        c = cue(seg, self.prev_end)
        if c is None:
            return
        self.count += 1
        self.prev_end = c[1]
        if self.fmt == "txt":
            self.write(c[2] + "\n")
        elif self.fmt == "srt":
            self.write(_srt_cue(self.count, c))
        elif self.fmt == "vtt":
            self.write(_vtt_cue(c))
        else:
            self.write(_tsv_row(c))

    def finish(self) -> None:
        """The input is done: write the header if nothing was written yet."""
        self._start()


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


def write_jsonl(transcript: records.Transcript, fp: TextIO) -> None:
    """The JSON document on one line (JSON Lines): several inputs on stdout make one line each.

    U+2028/U+2029 are escaped too: some line readers (Python's str.splitlines) break lines there.
    """
    line = json.dumps(transcript_json(transcript), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    fp.write(line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n")


WRITERS: dict[str, Writer] = {
    w.name: w
    for w in (
        Writer("txt", "txt", write_txt),
        Writer("srt", "srt", write_srt),
        Writer("vtt", "vtt", write_vtt),
        Writer("json", "json", write_json),
        Writer("jsonl", "jsonl", write_jsonl),
        Writer("tsv", "tsv", write_tsv),
    )
}
