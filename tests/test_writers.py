"""Writers through real parsers (srt, webvtt-py, jsonschema) and subtitle segmentation."""

from __future__ import annotations

import html
import io
import json
import math
import re
from pathlib import Path

import jsonschema
import pytest
import srt
import webvtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sewcli import errors, records
from sewcli.segmenting import LiveSegmenter, SegmentOptions, segment_words
from sewcli.writers import JSON_SCHEMA, WRITERS, LiveWriter, cues, format_timestamp, one_line

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REPO = Path(__file__).resolve().parents[1]


def render(fmt: str, t: records.Transcript) -> str:
    buf = io.StringIO()
    WRITERS[fmt](t, buf)
    return buf.getvalue()


def word(text: str, start: float, end: float, conf: float = 0.9, at: int = 0) -> records.Word:
    return records.Word(text, start, end, conf, at, at + len(text))


def spoken(spec: list[tuple[str, float]]) -> list[records.Word]:
    """Words of 0.3 s, each after its pause: [(text, pause seconds), ...]."""
    t, ws = 0.0, []
    for text, pause in spec:
        ws.append(word(text, t + pause, t + pause + 0.3))
        t += pause + 0.3
    return ws


def transcript(
    segments: tuple[records.Segment, ...] = (), text: str | None = None, **kw
) -> records.Transcript:
    words = tuple(w for s in segments for w in s.words)
    return records.Transcript(
        source=kw.pop("source", "a.wav"),
        text=" ".join(s.text for s in segments) if text is None else text,
        duration=kw.pop("duration", 10.0),
        model="sew-tiny",
        words=words,
        segments=segments,
        **kw,
    )


def parse_vtt(text: str) -> list:
    read = getattr(webvtt, "from_buffer", None) or webvtt.read_buffer  # 0.6 name, 0.5 name
    return list(read(io.StringIO(text)))


def validate_json(text: str) -> dict:
    doc = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(JSON_SCHEMA)
    jsonschema.Draft202012Validator(JSON_SCHEMA).validate(doc)
    return doc


TWO = (
    records.Segment("HELLO WORLD", 0.5, 1.25, (word("HELLO", 0.5, 0.8), word("WORLD", 0.9, 1.25, at=6))),
    records.Segment("AGAIN", 3661.0, 3662.5, (word("AGAIN", 3661.0, 3662.5, at=12),)),
)


# ----------------------------------------------------------------------------------------------------
# golden outputs (written by hand from the formats' specs)


def test_format_timestamp():
    assert format_timestamp(0) == "00:00:00,000"
    assert format_timestamp(59_999) == "00:00:59,999"
    assert format_timestamp(3_723_004, ".") == "01:02:03.004"
    assert format_timestamp(360_000_000) == "100:00:00,000"


def test_golden_srt_vtt_tsv_txt():
    t = transcript(TWO)
    assert render("srt", t) == (
        "1\n00:00:00,500 --> 00:00:01,250\nHELLO WORLD\n\n2\n01:01:01,000 --> 01:01:02,500\nAGAIN\n\n"
    )
    assert render("vtt", t) == (
        "WEBVTT\n\n00:00:00.500 --> 00:00:01.250\nHELLO WORLD\n\n01:01:01.000 --> 01:01:02.500\nAGAIN\n\n"
    )
    assert render("tsv", t) == "start\tend\ttext\n500\t1250\tHELLO WORLD\n3661000\t3662500\tAGAIN\n"
    assert render("txt", t) == "HELLO WORLD AGAIN\n"


def test_json_has_documented_fields_and_validates():
    t = transcript(TWO, language="en", extra={"decoder": "beam", "beam_width": 32, "nan": float("nan")})
    doc = validate_json(render("json", t))
    assert doc["text"] == "HELLO WORLD AGAIN" and doc["model"] == "sew-tiny" and doc["language"] == "en"
    assert doc["words"][1] == {
        "text": "WORLD",
        "start": 0.9,
        "end": 1.25,
        "confidence": 0.9,
        "char_start": 6,
        "char_end": 11,
    }
    assert [s["text"] for s in doc["segments"]] == ["HELLO WORLD", "AGAIN"]
    assert doc["segments"][0]["words"][0]["text"] == "HELLO"
    assert doc["extra"] == {"decoder": "beam", "beam_width": 32, "nan": None}


def test_docs_schema_file_matches_the_code():
    assert json.loads((REPO / "docs" / "json-schema.json").read_text(encoding="utf-8")) == JSON_SCHEMA


def test_writers_registry_names_and_extensions():
    assert set(WRITERS) == {"txt", "srt", "vtt", "json", "jsonl", "tsv"}
    assert all(w.name == name and w.extension == name for name, w in WRITERS.items())


def test_jsonl_is_the_json_document_on_one_line_even_with_line_separators_in_the_text():
    t = transcript(TWO, text="HELLO\u2028WORLD\u2029 AGAIN", source="a\nb.wav")
    line = render("jsonl", t)
    assert line.endswith("\n") and len(line.splitlines()) == 1  # str.splitlines splits at U+2028 too
    assert json.loads(line) == validate_json(render("json", t))


# ----------------------------------------------------------------------------------------------------
# silence and hostile text


def test_empty_transcript_gives_valid_empty_outputs():
    t = records.Transcript(source="-", text="", duration=3.0, model="m")
    assert render("txt", t) == "\n"
    assert render("srt", t) == "" and list(srt.parse(render("srt", t))) == []
    assert render("vtt", t) == "WEBVTT\n\n" and parse_vtt(render("vtt", t)) == []
    assert render("tsv", t) == "start\tend\ttext\n"
    doc = validate_json(render("json", t))
    assert doc["words"] == [] and doc["segments"] == [] and doc["text"] == ""


def test_hostile_text_still_parses():
    nasty = "line1\nline2 --> 00:00:01,000\r\n\n<b>&amp;</b>\tטקסט עברי 😀 \u2028end"
    seg = records.Segment(nasty, 1.0, 2.0, ())
    t = transcript((seg,), text=nasty)
    (sub,) = srt.parse(render("srt", t))
    assert sub.content == one_line(nasty).replace("-->", "->") and "\n" not in sub.content
    (cap,) = parse_vtt(render("vtt", t))
    assert html.unescape(cap.text) == one_line(nasty)
    lines = render("tsv", t).splitlines()
    assert len(lines) == 2 and lines[1].count("\t") == 2
    assert validate_json(render("json", t))["text"] == nasty


def test_zero_length_overlapping_and_negative_cues_are_fixed():
    segs = tuple(
        records.Segment(txt, s, e, ()) for txt, s, e in [("a", 1.0, 1.0), ("b", 0.5, 0.7), ("c", -3.0, -1.0)]
    )
    out = list(srt.parse(render("srt", transcript(segs))))
    assert [s.content for s in out] == ["a", "b", "c"]
    for prev, cur in zip(out, out[1:], strict=False):
        assert cur.start >= prev.end
    assert all(s.end > s.start for s in out)


def test_surrogate_escaped_source_is_written_as_valid_utf8(tmp_path):
    t = records.Transcript(source="caf\udce9.wav", text="x", duration=1.0, model="m")
    path = tmp_path / "out.json"
    with open(path, "w", encoding="utf-8") as fp:
        WRITERS["json"](t, fp)
    assert validate_json(path.read_text(encoding="utf-8"))["source"] == "caf\\xe9.wav"


def test_words_without_segments_are_segmented_for_subtitles():
    words = (word("ONE", 0.0, 0.3), word("TWO", 5.0, 5.4, at=4))
    t = records.Transcript(source="a", text="ONE TWO", duration=6.0, model="m", words=words)
    assert [s.content for s in srt.parse(render("srt", t))] == ["ONE", "TWO"]


times = st.floats(min_value=-10, max_value=400_000) | st.sampled_from([math.nan, math.inf, -math.inf])


@SETTINGS
@given(st.lists(st.tuples(st.text(), times, times), max_size=6), st.text())
def test_round_trip_any_text_any_times(items, source):
    segs = tuple(records.Segment(txt, s, e, ()) for txt, s, e in items)
    t = transcript(segs, source=source)
    expected = [one_line(txt) for txt, _, _ in items if one_line(txt)]
    assert [c[2] for c in cues(t)] == expected

    subs = list(srt.parse(render("srt", t)))
    assert [s.content for s in subs] == [x.replace("-->", "->") for x in expected]
    for prev, cur in zip(subs, subs[1:], strict=False):
        assert cur.start >= prev.end
    assert all(s.end > s.start for s in subs)

    caps = parse_vtt(render("vtt", t))
    assert [html.unescape(c.text) for c in caps] == expected
    assert all(c.end_in_seconds >= c.start_in_seconds for c in caps)

    rows = render("tsv", t).split("\n")
    assert rows[0] == "start\tend\ttext" and rows[-1] == "" and len(rows) == len(expected) + 2
    for row, exp in zip(rows[1:-1], expected, strict=True):
        start, end, text = row.split("\t")
        assert int(end) > int(start) >= 0
        assert re.sub(r"\\(.)", lambda m: {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}[m[1]], text) == exp

    doc = validate_json(render("json", t))
    assert len(doc["segments"]) == len(items)
    json.dumps(doc, ensure_ascii=False).encode("utf-8")  # no lone surrogates survive


# ----------------------------------------------------------------------------------------------------
# segmenting


def test_segments_break_on_pause_length_and_duration():
    ws = [word("A", 0.0, 0.2), word("B", 0.3, 0.5), word("C", 2.0, 2.2), word("D", 2.3, 9.9)]
    segs = segment_words(ws, SegmentOptions(max_chars=42, max_gap_seconds=1.0, max_duration_seconds=7.0))
    assert [s.text for s in segs] == ["A B", "C", "D"]  # pause before C; C..D would last 7.9 s
    assert (segs[0].start, segs[0].end) == (0.0, 0.5)
    segs = segment_words(
        [word(x, i, i + 0.5) for i, x in enumerate(["AAAA", "BBBB", "CCCC"])], SegmentOptions(9)
    )
    assert [s.text for s in segs] == ["AAAA BBBB", "CCCC"]


def test_word_longer_than_max_chars_gets_its_own_segment():
    ws = [word("HI", 0, 0.1), word("SUPERCALIFRAGILISTIC", 0.2, 0.9), word("YO", 1.0, 1.1)]
    assert [s.text for s in segment_words(ws, SegmentOptions(max_chars=5))] == [
        "HI",
        "SUPERCALIFRAGILISTIC",
        "YO",
    ]


def test_bad_segment_options_raise():
    with pytest.raises(errors.UsageError, match="max_chars"):
        SegmentOptions(max_chars=0)


@SETTINGS
@given(
    st.lists(st.tuples(st.text(min_size=1, max_size=15), st.floats(0, 3)), max_size=40),
    st.integers(1, 50),
    st.floats(0, 2),
)
def test_segments_partition_words_and_respect_limits(spec, max_chars, gap):
    ws = spoken(spec)
    opts = SegmentOptions(max_chars=max_chars, max_gap_seconds=gap, max_duration_seconds=5.0)
    segs = segment_words(ws, opts)
    assert [w for s in segs for w in s.words] == ws
    for s in segs:
        assert s.text == " ".join(w.text for w in s.words)
        if len(s.words) > 1:
            assert len(s.text) <= max_chars and s.end - s.start <= 5.0
            assert all(b.start - a.end <= gap for a, b in zip(s.words, s.words[1:], strict=False))


# ----------------------------------------------------------------------------------------------------
# --live: segments as they close, cues as they come


@SETTINGS
@given(
    st.lists(st.tuples(st.text(min_size=1, max_size=15), st.floats(0, 3)), max_size=40),
    st.lists(st.integers(0, 40), max_size=6),
    st.integers(1, 50),
)
def test_live_segmenter_equals_segment_words_however_the_words_arrive(spec, cuts, max_chars):
    ws = spoken(spec)
    opts = SegmentOptions(max_chars=max_chars, max_gap_seconds=1.0, max_duration_seconds=5.0)
    got: list[records.Segment] = []
    live = LiveSegmenter(got.append, opts)
    bounds = sorted({0, len(ws), *[c for c in cuts if c < len(ws)]})
    for a, b in zip(bounds, bounds[1:], strict=False):
        live.add(ws[a:b], until=ws[b].start if b < len(ws) else None)  # the next word starts no earlier
    live.finish()
    assert tuple(got) == segment_words(ws, opts)


@pytest.mark.parametrize("fmt", ["srt", "vtt", "tsv"])
def test_live_writer_writes_the_batch_writers_cues(fmt):
    segs = (*TWO, records.Segment("", 5.0, 6.0, ()), records.Segment("A --> <B> & C", 3000.0, 3000.5, ()))
    out: list[str] = []
    live = LiveWriter(fmt, out.append)
    for seg in segs:
        live.segment(seg)
    live.finish()
    assert "".join(out) == render(fmt, transcript(segs))


def test_live_writer_txt_is_a_line_per_segment_and_empty_inputs_stay_valid():
    out: list[str] = []
    live = LiveWriter("txt", out.append)
    for seg in TWO:
        live.segment(seg)
    live.finish()
    assert out == ["HELLO WORLD\n", "AGAIN\n"]
    for fmt in ("vtt", "tsv", "srt"):
        out = []
        live = LiveWriter(fmt, out.append)
        live.finish()
        assert "".join(out) == render(fmt, transcript(()))
    out = []
    LiveWriter("txt", out.append).finish()
    assert out == []  # a line per segment: none for silence
    with pytest.raises(errors.UsageError, match="not json"):
        LiveWriter("json", out.append)
