"""Hypothesis properties the stage tests do not already have (see test_chunking, test_decoding, test_writers).

- registry: any models.toml either loads or raises RegistryError (never another exception); valid entries
  round-trip field by field; any `--model` string resolves or raises ModelNotFoundError.
- decoding: on confident random paths the beam decoder (any width) finds the greedy transcript, and both
  decoders' words are ordered, inside the audio, and spell the text, chunked any way.
- audio: any damage to a valid WAV/FLAC (flipped bytes, truncation) gives finite float32 blocks or AudioError.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sewcli import audio, records, registry
from sewcli.decoding import DecodeOptions, build_decoder
from sewcli.errors import AudioError, ModelNotFoundError, RegistryError

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


# ------------------------------------------------------------------------------------------------------------
# registry


def _toml_value(v: object) -> str:
    """A TOML literal for a bool / int / float / str / list / dict (inline table)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def _toml_string(v: str) -> str:
    """A TOML basic string: JSON's escapes plus DEL, which TOML forbids raw (st.text() has no surrogates)."""
    return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_key(k: str) -> str:
    return _toml_string(k)


def _toml_document(doc: dict[str, dict[str, object]]) -> str:
    """[table] headers for the top level (dotted for models.NAME), inline values below."""
    lines: list[str] = []
    for table, body in doc.items():
        if table == "models" and isinstance(body, dict) and all(isinstance(x, dict) for x in body.values()):
            for name, entry in body.items():
                lines.append(f"[models.{_toml_key(name)}]")
                lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in entry.items()]  # type: ignore[union-attr]
        else:
            lines.append(f"[{_toml_key(table)}]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


scalars = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
ENTRY_KEYS = [
    "repo",
    "path",
    "revision",
    "arch",
    "language",
    "sample_rate",
    "params",
    "license",
    "description",
]
keys = st.sampled_from(ENTRY_KEYS) | st.text(max_size=8)
entry_values = st.sampled_from(["sew", "sew-d", "wav2vec2", "org/name", "a/b.c-d_e", "16000", ""]) | values
entries = st.dictionaries(keys, entry_values, max_size=5)
documents = st.fixed_dictionaries(
    {},
    optional={
        "models": st.dictionaries(st.text(min_size=1, max_size=10), entries, max_size=3),
        "defaults": st.dictionaries(
            st.sampled_from(["model", "x"]) | st.text(max_size=4), st.text(max_size=10) | values, max_size=2
        ),
    },
) | st.dictionaries(st.text(max_size=8), st.dictionaries(st.text(max_size=5), values, max_size=2), max_size=2)


@SETTINGS
@given(doc=documents)
def test_any_registry_file_loads_or_raises_registry_error(doc: dict, tmp_path: Path) -> None:
    path = tmp_path / "user.toml"
    path.write_text(_toml_document(doc), encoding="utf-8")
    try:
        reg = registry.load_registry(path)
    except RegistryError as e:
        message = str(e)
        assert "\n" not in message and message.strip(), message
        return
    assert reg.default_model in reg.models or (reg.default_problem and str(path) in reg.default_problem)
    for name, spec in reg.models.items():
        assert spec.name == name and (spec.repo is not None or spec.path is not None)
        assert spec.arch in (None, *registry.ARCHES) and spec.sample_rate > 0


@SETTINGS
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_registry_bytes_never_crash(raw: bytes, tmp_path: Path) -> None:
    path = tmp_path / "user.toml"
    path.write_bytes(raw)
    try:
        registry.load_registry(path)
    except RegistryError as e:
        assert str(path) in str(e) or "[defaults]" in str(e)


names = st.text(
    st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="-_."),
    min_size=1,
    max_size=12,
).filter(lambda s: not s.startswith("."))
valid_entries = st.fixed_dictionaries(
    {"repo": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,8}/[A-Za-z0-9_.-]{1,8}", fullmatch=True)},
    optional={
        "revision": st.text(min_size=1, max_size=10),
        "arch": st.sampled_from(registry.ARCHES),
        "language": st.text(max_size=5),
        "sample_rate": st.integers(1, 192000),
        "params": st.integers(0, 2000) | st.floats(0, 2000),
        "license": st.text(max_size=10),
        "description": st.text(max_size=30),
    },
)


@SETTINGS
@given(models=st.dictionaries(names, valid_entries, min_size=1, max_size=4), data=st.data())
def test_valid_entries_round_trip(models: dict[str, dict], data: st.DataObject, tmp_path: Path) -> None:
    default = data.draw(st.sampled_from(sorted(models)))
    path = tmp_path / "user.toml"
    path.write_text(_toml_document({"defaults": {"model": default}, "models": models}), encoding="utf-8")
    reg = registry.load_registry(path)
    assert reg.default_model == default
    for name, entry in models.items():
        spec = reg.models[name]
        assert spec.path is None  # a repo entry overrides a shipped local one of the same name
        for key, value in entry.items():
            got = getattr(spec, key)
            assert got == (float(value) if key == "params" else value), (key, got, value)


@SETTINGS
@given(name=st.text(max_size=30), revision=st.none() | st.text(max_size=8))
def test_any_model_name_resolves_or_raises_model_not_found(name: str, revision: str | None) -> None:
    reg = registry.load_registry()
    try:
        spec = registry.resolve(name, reg, revision)
    except ModelNotFoundError as e:
        assert str(e).startswith(f"{name}: ") and "\n" not in str(e).replace(name, "")
        return
    assert spec.is_local or spec.repo is not None
    if revision is not None:
        assert spec.revision == revision


# ------------------------------------------------------------------------------------------------------------
# decoding: greedy vs beam on random log-probs

EN = ("<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ")
EN_VOCAB = records.Vocabulary(EN, blank_id=0)
FS = 0.02
PLAIN = [0, 4, *range(5, len(EN))]  # blank, delimiter, letters (specials are never emitted here)


def confident_logprobs(path: list[int], p: float) -> np.ndarray:
    """(frames, vocab) log-probs whose argmax follows `path` with probability p, the rest spread evenly."""
    lp = np.full((len(path), len(EN)), math.log((1 - p) / (len(EN) - 1)), np.float32)
    lp[np.arange(len(path)), path] = math.log(p)
    return lp


def noisy_log_probs(seed: int, frames: int, vocab: int, boost: dict[int, float]) -> np.ndarray:
    """(frames, vocab) log-softmax of scaled Gaussian noise, with some tokens made likelier."""
    x = np.random.default_rng(seed).normal(size=(frames, vocab)) * 3.0
    for token, value in boost.items():
        x[:, token] += value
    return (x - np.log(np.exp(x).sum(axis=1, keepdims=True))).astype(np.float32)


def chunked(lp: np.ndarray, cuts: list[int], first: int = 0) -> list[records.Emissions]:
    bounds = sorted({0, len(lp), *[c for c in cuts if 0 < c < len(lp)]})
    return [records.Emissions(lp[a:b], first + a, FS) for a, b in zip(bounds, bounds[1:], strict=False)]


paths = st.lists(st.sampled_from(PLAIN), max_size=120)


@SETTINGS
@given(
    path=paths,
    p=st.floats(0.97, 0.999),
    width=st.sampled_from([2, 8, 32]),
    cuts=st.lists(st.integers(0, 120), max_size=4),
)
def test_beam_finds_the_greedy_transcript_on_confident_paths(
    path: list[int], p: float, width: int, cuts: list[int]
) -> None:
    lp = confident_logprobs(path, p)
    greedy = build_decoder(EN_VOCAB).decode(chunked(lp, cuts))
    beam = build_decoder(EN_VOCAB, DecodeOptions(kind="beam", beam_width=width)).decode(chunked(lp, cuts))
    assert beam.text.split() == greedy.text.split()
    assert [w.text for w in beam.words] == [w.text for w in greedy.words]


# a decoder's input: noise seed, length, first global frame, decoder kind, where the stream is cut
STREAMS = {
    "seed": st.integers(0, 2**32 - 1),
    "frames": st.integers(0, 150),
    "first": st.integers(0, 10_000),
    "kind": st.sampled_from(["greedy", "beam"]),
    "cuts": st.lists(st.integers(0, 150), max_size=6),
}


@SETTINGS
@given(**STREAMS)
def test_words_are_ordered_inside_the_audio_and_spell_the_text(
    seed: int, frames: int, first: int, kind: str, cuts: list[int]
) -> None:
    lp = noisy_log_probs(seed, frames, len(EN), {0: 2.0})
    result = build_decoder(EN_VOCAB, DecodeOptions(kind=kind, beam_width=8)).decode(chunked(lp, cuts, first))
    assert result.frames == frames and result.duration == pytest.approx(frames * FS)
    assert [w.text for w in result.words] == result.text.split()
    lo, hi = first * FS, (first + frames) * FS
    for w in result.words:
        assert lo - 1e-9 <= w.start <= w.end <= hi + 1e-9, (w, lo, hi)
    for a, b in zip(result.words, result.words[1:], strict=False):
        assert a.end <= b.start + 1e-9


LOWER_VOCAB = records.Vocabulary(
    ("[PAD]", "|", "[UNK]", *"aİΣbc"),
    blank_id=0,
    unk_token="[UNK]",
    do_lower_case=True,
    special_tokens=frozenset({"[UNK]", "[PAD]"}),
)


@SETTINGS
@given(**STREAMS, lower=st.booleans())
def test_live_words_are_the_result_words_handed_over_in_order(
    seed: int, frames: int, first: int, kind: str, lower: bool, cuts: list[int]
) -> None:
    """`--live`: what on_words receives, batch by batch, is exactly the final words (text, times, confidence,
    offsets into the final text), whatever the chunking; with lower-casing that changes lengths, special
    tokens and double spaces (greedy keeps them, as the HF tokenizer does); and no word comes before the
    time that an earlier call said no word would start before."""
    vocab = LOWER_VOCAB if lower else EN_VOCAB
    lp = noisy_log_probs(
        seed, frames, len(vocab.tokens), {0: 1.0, 1: 1.0}
    )  # 1: word breaks, often two in a row
    got: list[records.Word] = []
    promised = [-1.0]  # the latest `until`: no word handed over later may start before it

    def take(words: tuple[records.Word, ...], until: float) -> None:
        assert until >= promised[0]
        for w in words:
            assert w.start >= promised[0] - 1e-9, (w, promised[0])
        promised[0] = until
        got.extend(words)

    decoder = build_decoder(vocab, DecodeOptions(kind=kind, beam_width=8, split_blank_seconds=0.04))
    result = decoder.decode(chunked(lp, cuts, first), on_words=take)
    assert tuple(got) == result.words
    for w in got:
        assert result.text[w.char_start : w.char_end] == w.text


# ------------------------------------------------------------------------------------------------------------
# audio: damaged files


def _valid(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal((4000, 2))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, 8000, format=fmt, subtype="PCM_16")
    return buf.getvalue()


VALID = {"WAV": _valid("WAV"), "FLAC": _valid("FLAC")}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(sorted(VALID)), data=st.data())
def test_damaged_audio_decodes_or_raises_audio_error(fmt: str, data: st.DataObject, tmp_path: Path) -> None:
    raw = bytearray(VALID[fmt])
    cut = data.draw(st.integers(0, len(raw)), label="truncate at")
    raw = raw[:cut]
    for _ in range(data.draw(st.integers(0, 8), label="flips")):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path / f"damaged.{fmt.lower()}"
    path.write_bytes(bytes(raw))
    try:
        with audio.open_audio(path, audio.AudioOptions(block_frames=1024, use_ffmpeg=False)) as stream:
            blocks = list(stream.blocks())
    except AudioError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
        return
    assert blocks and stream.frames_read == sum(len(b) for b in blocks) > 0
    for b in blocks:
        assert b.dtype == np.float32 and b.ndim == 1 and np.isfinite(b).all()
