"""CTC decoding: hand-built matrices, streaming == whole, parity with transformers' tokenizer, beam search."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyctcdecode.language_model  # noqa: F401  # imported before a test hides kenlm from it
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sewcli import errors, records
from sewcli.decoding import DecodeOptions, _BeamSplitter, beam_labels, build_decoder

EN = ("<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ")  # asapp/sew-*-ft vocab order
# An XLSR-style community vocab: lower-case letters with umlauts, "|" in the middle, [UNK]/[PAD] at the END.
# "İ" and "Σ" change length / context under str.lower(), "ABC" is a multi-character token.
DE = (*"abcdefghijklmnopqrstuvwxyz", "ä", "ö", "ü", "ß", "|", "'", "Ä", "İ", "Σ", "ABC", "[UNK]", "[PAD]")
FS = 0.02
EN_VOCAB = records.Vocabulary(EN, blank_id=0)
DE_VOCAB = records.Vocabulary(
    DE,
    blank_id=len(DE) - 1,
    unk_token="[UNK]",
    do_lower_case=True,
    special_tokens=frozenset({"[UNK]", "[PAD]"}),
)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def onehot(tokens: tuple[str, ...], seq: str | list[str], p: float = 1.0) -> np.ndarray:
    """Log-probs (frames, vocab) whose argmax spells `seq` (one token per frame, "_" = the blank)."""
    blank = tokens.index("[PAD]") if "[PAD]" in tokens else 0
    items = list(seq)
    lp = np.full(
        (len(items), len(tokens)), math.log((1 - p) / (len(tokens) - 1)) if p < 1 else -1e4, np.float32
    )
    for t, ch in enumerate(items):
        lp[t, blank if ch == "_" else tokens.index(ch)] = math.log(p) if p < 1 else 0.0
    return lp


def random_logprobs(rng: np.random.Generator, frames: int, vocab: int, blank: int) -> np.ndarray:
    """Random log-softmax rows with a blank bias, so runs and blanks both occur."""
    x = rng.normal(size=(frames, vocab)) * 2.0
    x[:, blank] += 1.5
    x -= np.log(np.exp(x).sum(axis=1, keepdims=True))
    return x.astype(np.float32)


def greedy(vocab: records.Vocabulary, lp: np.ndarray, first_frame: int = 0):
    return build_decoder(vocab).decode([records.Emissions(lp, first_frame, FS)])


def hf_tokenizer(tmp_path: Path, tokens: tuple[str, ...], **kw):
    transformers = pytest.importorskip("transformers")
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False), encoding="utf-8")
    return transformers.Wav2Vec2CTCTokenizer(str(path), **kw)


# ----------------------------------------------------------------------------------------------------
# greedy: hand-built matrices


def test_greedy_collapses_repeats_blank_splits_and_delimiter_is_space():
    res = greedy(EN_VOCAB, onehot(EN, "__HHE_LL_LO|||WOO_RLD__"))
    assert res.text == "HELLO WORLD"
    assert [w.text for w in res.words] == ["HELLO", "WORLD"]
    # HELLO: H at frame 2 .. O at frame 10 (end exclusive 11); WORLD: W at 14 .. D at 20 (end 21)
    assert [(w.start, w.end) for w in res.words] == [
        pytest.approx((2 * FS, 11 * FS)),
        pytest.approx((14 * FS, 21 * FS)),
    ]
    assert [(w.char_start, w.char_end) for w in res.words] == [(0, 5), (6, 11)]
    assert res.frames == 23 and res.duration == pytest.approx(23 * FS)


def test_greedy_keeps_special_tokens_and_double_spaces_like_hf():
    res = greedy(EN_VOCAB, onehot(EN, ["A", "<unk>", "B", "|", "_", "|", "<s>", "C", "|"]))
    assert (
        res.text == "A<unk>B  <s>C"
    )  # two delimiters separated by a blank give two spaces (HF does the same)
    assert [w.text for w in res.words] == ["A<unk>B", "<s>C"]
    assert [(w.char_start, w.char_end) for w in res.words] == [(0, 7), (9, 13)]


def test_greedy_blank_at_end_of_vocab_and_lower_case():
    res = greedy(DE_VOCAB, onehot(DE, ["_", "Ä", "Ä", "_", "ö", "|", "ß", "_", "ABC", "|", "ü", "_"]))
    assert res.text == "äö ßabc ü"
    assert [(w.text, w.start, w.end) for w in res.words] == [
        ("äö", pytest.approx(1 * FS), pytest.approx(5 * FS)),
        ("ßabc", pytest.approx(6 * FS), pytest.approx(9 * FS)),
        ("ü", pytest.approx(10 * FS), pytest.approx(11 * FS)),
    ]


def test_greedy_lower_case_that_changes_length_keeps_offsets_consistent():
    res = greedy(DE_VOCAB, onehot(DE, "İa|bΣ|Σc"))
    assert res.text == "İa bΣ Σc".lower()  # "i̇a bς σc": İ becomes two code points, final sigma rule applies
    for w in res.words:
        assert res.text[w.char_start : w.char_end] == w.text
    assert [w.text for w in res.words] == res.text.split(" ")


def test_greedy_times_use_first_frame():
    res = greedy(EN_VOCAB, onehot(EN, "_AB_"), first_frame=100)
    assert (res.words[0].start, res.words[0].end) == pytest.approx((101 * FS, 103 * FS))


def test_greedy_confidence_is_geometric_mean_of_token_peaks():
    v = len(EN)
    lp = np.full((5, v), math.log(0.01), np.float32)
    # frames: A(0.6) A(0.8) blank(0.9) B(0.5) |(0.9)
    for t, (tok, p) in enumerate([("A", 0.6), ("A", 0.8), ("<pad>", 0.9), ("B", 0.5), ("|", 0.9)]):
        lp[t, EN.index(tok)] = math.log(p)
    res = greedy(EN_VOCAB, lp)
    assert res.text == "AB"
    assert res.words[0].confidence == pytest.approx(math.sqrt(0.8 * 0.5), rel=1e-5)


def test_greedy_confidence_is_one_for_one_hot_and_low_for_flat():
    assert greedy(EN_VOCAB, onehot(EN, "AB")).words[0].confidence == pytest.approx(1.0)
    flat = onehot(EN, "AB", p=0.2)
    assert greedy(EN_VOCAB, flat).words[0].confidence == pytest.approx(0.2, rel=1e-5)


def test_empty_input_and_zero_frame_chunks():
    dec = build_decoder(EN_VOCAB)
    assert dec.decode([]).text == "" and dec.decode([]).words == ()
    empty = records.Emissions(np.zeros((0, len(EN)), np.float32), 0, FS)
    res = dec.decode([empty, records.Emissions(onehot(EN, "____"), 0, FS), empty])
    assert res.text == "" and res.words == () and res.frames == 4


def test_wrong_vocab_size_is_a_decoder_error():
    with pytest.raises(errors.DecoderError, match=r"shape \(3, 5\)"):
        build_decoder(EN_VOCAB).decode([records.Emissions(np.zeros((3, 5), np.float32), 0, FS)])


def test_bad_options_are_decoder_errors():
    with pytest.raises(errors.DecoderError, match="kind"):
        build_decoder(EN_VOCAB, DecodeOptions(kind="viterbi"))  # type: ignore[arg-type]
    with pytest.raises(errors.DecoderError, match="beam width"):
        build_decoder(EN_VOCAB, DecodeOptions(kind="beam", beam_width=0))
    with pytest.raises(errors.DecoderError, match="blank id"):
        build_decoder(records.Vocabulary(("a", "b"), blank_id=2))


# ----------------------------------------------------------------------------------------------------
# greedy: streaming and parity with transformers


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1), frames=st.integers(0, 80), cuts=st.lists(st.integers(0, 80), max_size=6)
)
def test_greedy_streaming_equals_whole_matrix(seed, frames, cuts):
    lp = random_logprobs(np.random.default_rng(seed), frames, len(EN), 0)
    # make long runs likely so they straddle chunk boundaries
    lp = np.repeat(lp, 3, axis=0)
    bounds = sorted({0, 3 * frames, *[min(c * 3 - (c % 2), 3 * frames) for c in cuts if c > 0]})
    chunks = [records.Emissions(lp[a:b], 7 + a, FS) for a, b in zip(bounds, bounds[1:], strict=False)]
    whole = greedy(EN_VOCAB, lp, first_frame=7)
    streamed = build_decoder(EN_VOCAB).decode(iter(chunks))
    assert streamed == whole


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    frames=st.integers(0, 80),
    cuts=st.lists(st.integers(0, 240), max_size=6),
    pause=st.sampled_from([0.06, 0.1, 0.5]),
)
def test_greedy_pause_break_streaming_equals_whole_and_live_words_equal_the_result(seed, frames, cuts, pause):
    rng = np.random.default_rng(seed)
    lp = np.repeat(random_logprobs(rng, frames, len(EN), 0), 3, axis=0)  # (3*frames, vocab): long runs
    bounds = sorted({0, 3 * frames, *[min(c, 3 * frames) for c in cuts]})
    chunks = [records.Emissions(lp[a:b], 5 + a, FS) for a, b in zip(bounds, bounds[1:], strict=False)]
    options = DecodeOptions(kind="greedy", pause_break_seconds=pause)
    whole = build_decoder(EN_VOCAB, options).decode([records.Emissions(lp, 5, FS)])
    live: list[records.Word] = []
    streamed = build_decoder(EN_VOCAB, options).decode(iter(chunks), lambda w, _until: live.extend(w))
    assert streamed == whole
    assert tuple(live) == whole.words
    assert "  " not in whole.text  # breaks in a row count once
    plain = greedy(EN_VOCAB, lp, first_frame=5)
    assert whole.text.replace(" ", "") == plain.text.replace(" ", "")  # only word breaks change
    for w in whole.words:
        assert whole.text[w.char_start : w.char_end] == w.text


def test_greedy_pause_break_ends_a_word_at_a_long_blank_run_only():
    # 0.5 s at 20 ms frames = 25 blank frames
    options = DecodeOptions(kind="greedy", pause_break_seconds=0.5)
    decode = build_decoder(EN_VOCAB, options).decode
    joined = onehot(EN, "_" * 30 + "HEL_LO" + "_" * 25 + "WORLD" + "_" * 30)
    assert greedy(EN_VOCAB, joined).text == "HELLOWORLD"  # off: the text transformers' tokenizer gives
    res = decode([records.Emissions(joined, 0, FS)])
    assert res.text == "HELLO WORLD"  # no break before the first word nor after the last
    assert [(w.start, w.end) for w in res.words] == [
        pytest.approx((30 * FS, 36 * FS)),
        pytest.approx((61 * FS, 66 * FS)),
    ]
    short = onehot(EN, "HEL_LO" + "_" * 24 + "WORLD")
    assert decode([records.Emissions(short, 0, FS)]).text == "HELLOWORLD"
    # a delimiter in or after the pause adds nothing; without a pause two delimiters count once too
    assert decode([records.Emissions(onehot(EN, "HI" + "_" * 30 + "|_|YOU"), 0, FS)]).text == "HI YOU"
    assert decode([records.Emissions(onehot(EN, "HI|_|YOU"), 0, FS)]).text == "HI YOU"
    assert greedy(EN_VOCAB, onehot(EN, "HI|_|YOU")).text == "HI  YOU"  # off: as transformers
    with pytest.raises(errors.DecoderError, match="pause break"):
        build_decoder(EN_VOCAB, DecodeOptions(kind="greedy", pause_break_seconds=-1.0))
    # a vocabulary without a word delimiter gets no spaces
    nodelim = records.Vocabulary(EN, blank_id=0, word_delimiter=None)
    res = build_decoder(nodelim, options).decode([records.Emissions(joined, 0, FS)])
    assert res.text == "HELLOWORLD"


def test_greedy_pause_break_hands_the_word_before_a_pause_over_before_the_pause_ends():
    """--live: the word before a pause in which the model wrote no delimiter is final once the pause is long
    enough, not only when the next word starts."""
    lp = onehot(EN, "HEL_LO" + "_" * 100 + "WORLD")
    handed: list[tuple[int, str]] = []
    consumed = 0

    def stream():
        nonlocal consumed
        for a in range(0, len(lp), 10):
            consumed = a + 10
            yield records.Emissions(lp[a : a + 10], a, FS)

    decoder = build_decoder(EN_VOCAB, DecodeOptions(kind="greedy", pause_break_seconds=0.5))
    res = decoder.decode(stream(), lambda words, _until: handed.extend((consumed, w.text) for w in words))
    assert res.text == "HELLO WORLD"
    assert handed[0] == (40, "HELLO")  # in the chunk where the blank run (from frame 6) reaches 25 frames


@pytest.mark.parametrize("which", ["en", "de"])
def test_greedy_matches_transformers_tokenizer(tmp_path, which):
    if which == "en":
        tokens, vocab, tok = EN, EN_VOCAB, hf_tokenizer(tmp_path, EN)
    else:
        tokens, vocab = DE, DE_VOCAB
        tok = hf_tokenizer(tmp_path, DE, pad_token="[PAD]", unk_token="[UNK]", do_lower_case=True)
        assert tok.pad_token_id == len(DE) - 1 != 0
    rng = np.random.default_rng(1234)
    for trial in range(150):
        lp = random_logprobs(rng, int(rng.integers(0, 70)), len(tokens), vocab.blank_id)
        ids = lp.argmax(axis=1).tolist()
        ref = tok.decode(ids, output_word_offsets=True)  # skip_special_tokens=False is the default
        res = greedy(vocab, lp)
        assert res.text == ref.text, trial
        ref_words = [w["word"].lower() if vocab.do_lower_case else w["word"] for w in ref.word_offsets]
        assert [w.text for w in res.words] == ref_words, trial
        assert [(w.start, w.end) for w in res.words] == [
            pytest.approx((w["start_offset"] * FS, w["end_offset"] * FS)) for w in ref.word_offsets
        ], trial
        for w in res.words:
            assert res.text[w.char_start : w.char_end] == w.text
            assert 0.0 <= w.confidence <= 1.0


def test_decoding_module_does_not_import_torch_or_pyctcdecode():
    code = (
        "import sys, numpy as np; from sewcli import records, decoding;"
        "v = records.Vocabulary(('<pad>', '|', 'A'), 0);"
        "decoding.build_decoder(v).decode([records.Emissions(np.zeros((2, 3), np.float32), 0, 0.02)]);"
        "assert 'torch' not in sys.modules and 'pyctcdecode' not in sys.modules, 'heavy import'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


# ----------------------------------------------------------------------------------------------------
# beam search


def beam(vocab: records.Vocabulary, lp: np.ndarray, **kw):
    return build_decoder(vocab, DecodeOptions(kind="beam", **kw)).decode([records.Emissions(lp, 0, FS)])


def test_beam_labels_are_explicit_and_not_rewritten():
    assert beam_labels(EN_VOCAB)[:5] == ["", "<s>", "</s>", "<unk>", " "]
    labels = beam_labels(DE_VOCAB)
    assert labels[-1] == "" and labels[-2] == "[UNK]" and labels[DE.index("|")] == " " and "ABC" in labels
    assert beam_labels(DE_VOCAB)[: len(DE) - 2] == [" " if t == "|" else t for t in DE[:-2]]


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), frames=st.integers(0, 60), which=st.sampled_from(["en", "de"]))
def test_beam_width_one_equals_greedy(seed, frames, which):
    vocab = EN_VOCAB if which == "en" else DE_VOCAB
    lp = random_logprobs(np.random.default_rng(seed), frames, len(vocab), vocab.blank_id)
    g, b = greedy(vocab, lp), beam(vocab, lp, beam_width=1)
    # pyctcdecode joins words with single spaces; HF keeps "a  b" when two delimiters are split by a blank
    assert b.text == " ".join(g.text.split())
    assert [(w.text, w.start, w.end) for w in b.words] == [(w.text, w.start, w.end) for w in g.words]
    for w in b.words:
        assert b.text[w.char_start : w.char_end] == w.text and 0.0 <= w.confidence <= 1.0


def ambiguous_cat() -> np.ndarray:
    """'KAT' by argmax, with 'C' a close second in the first frame."""
    lp = np.full((4, len(EN)), math.log(0.005), np.float32)
    for t, probs in enumerate([{"K": 0.5, "C": 0.4}, {"A": 0.9}, {"T": 0.9}, {"<pad>": 0.9}]):
        for tok, p in probs.items():
            lp[t, EN.index(tok)] = math.log(p)
    return lp


def test_hotword_moves_the_output_toward_the_hotword():
    lp = ambiguous_cat()
    assert beam(EN_VOCAB, lp).text == "KAT"
    assert beam(EN_VOCAB, lp, hotwords=("cat",)).text == "CAT"  # case follows the upper-case vocabulary
    assert beam(EN_VOCAB, lp, hotwords=("cat",), hotword_weight=0.01).text == "KAT"


def test_hotword_outside_vocab_is_a_usage_error():
    with pytest.raises(
        errors.UsageError, match="hotword 'caté' has characters not in the model vocabulary: 'é'$"
    ):
        build_decoder(
            EN_VOCAB, DecodeOptions(kind="beam", hotwords=("caté",))
        )  # only é: cat is there in upper case


def write_arpa(path: Path, good: str, bad: str) -> Path:
    path.write_text(
        "\\data\\\nngram 1=5\nngram 2=1\n\n\\1-grams:\n"
        f"-1.0\t<unk>\t0\n-99\t<s>\t0\n-1.0\t</s>\t0\n-0.3\t{good}\t0\n-3.0\t{bad}\t0\n\n"
        f"\\2-grams:\n-0.2\t{good} </s>\n\n\\end\\\n",
        encoding="utf-8",
    )
    return path


def test_kenlm_moves_the_output_toward_the_likely_word(tmp_path):
    pytest.importorskip("kenlm")
    lp = ambiguous_cat()
    cat_lm = write_arpa(tmp_path / "cat.arpa", "CAT", "KAT")
    kat_lm = write_arpa(tmp_path / "kat.arpa", "KAT", "CAT")
    assert beam(EN_VOCAB, lp, lm_path=str(cat_lm)).text == "CAT"
    assert beam(EN_VOCAB, lp, lm_path=str(kat_lm)).text == "KAT"
    assert beam(EN_VOCAB, lp, lm_path=str(cat_lm), alpha=0.0, beta=0.0).text == "KAT"


def test_kenlm_binary_without_kenlm_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kenlm", None)  # makes `import kenlm` raise ImportError
    (tmp_path / "x.bin").write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\0")
    with pytest.raises(errors.DecoderError, match=r"x.bin is a KenLM binary: .*pip install 'sewcli\[lm\]'"):
        build_decoder(EN_VOCAB, DecodeOptions(kind="beam", lm_path=str(tmp_path / "x.bin")))


def test_bad_lm_path_names_the_file(tmp_path):
    missing = tmp_path / "nope.arpa"
    with pytest.raises(errors.DecoderError, match="nope.arpa: no such file"):
        build_decoder(EN_VOCAB, DecodeOptions(kind="beam", lm_path=str(missing)))
    pytest.importorskip("kenlm")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00not a language model\n" * 10)
    with pytest.raises(errors.DecoderError, match="garbage.bin"):
        build_decoder(EN_VOCAB, DecodeOptions(kind="beam", lm_path=str(garbage)))


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    min_run=st.integers(1, 6),
    max_frames=st.integers(4, 50),
)
@example(seed=0, sizes=[7], min_run=4, max_frames=6)  # a pause that begins just before a forced cut
def test_beam_splitter_covers_every_frame_once_and_bounds_pieces(seed, sizes, min_run, max_frames):
    rng = np.random.default_rng(seed)
    total = sum(sizes)
    lp = np.full((total, 3), -5.0, np.float32)
    lp[np.arange(total), rng.integers(0, 3, size=total)] = 0.0  # blank (column 0) confident ~1/3 of frames
    chunks, start = [], 10
    for n in sizes:
        chunks.append((start, lp[start - 10 : start - 10 + n]))
        start += n
    pieces = list(_BeamSplitter(0, min_run, max_frames).split(c for c in chunks if len(c[1])))
    assert [g for g, _ in pieces] == list(np.cumsum([10] + [len(p) for _, p in pieces])[:-1])
    assert sum(len(p) for _, p in pieces) == total
    if pieces:
        np.testing.assert_array_equal(np.concatenate([p for _, p in pieces]), lp)
    assert all(0 < len(p) <= max(4, max_frames) for _, p in pieces)


def test_beam_splitter_forced_cut_lands_after_a_word_delimiter():
    """Speech with no pause: the piece is cut right after the last delimiter its last quarter holds (a word
    boundary), not inside a word; without a delimiter there, at its most confident blank frame."""
    blank, delim = 0, 1
    seq = "ab_a|ba_ab|a_b_a_|ab|ba_a"  # never min_run blanks in a row
    ids = {"_": blank, "|": delim, "a": 2, "b": 3}
    lp = np.full((len(seq), 4), -8.0, np.float32)
    lp[np.arange(len(seq)), [ids[c] for c in seq]] = -0.05
    lp[:, blank] = np.maximum(lp[:, blank], -3.0)  # blank never confident (< log 0.9) on letters
    max_frames = 20  # last quarter: frames 15..19 = "a_|ab", the delimiter at frame 17
    first, *_ = _BeamSplitter(blank, 4, max_frames, delimiter_id=delim).split([(0, lp)])
    assert first[0] == 0 and len(first[1]) == seq.index("|", 15) + 1
    plain, *_ = _BeamSplitter(blank, 4, max_frames).split([(0, lp)])
    assert seq[len(plain[1]) - 1] == "_"  # the old rule: the last most-confident blank of the quarter


def test_beam_splits_at_pauses_and_keeps_global_times():
    pause = "_" * 40  # 0.8 s of confident blank: longer than split_blank_seconds
    seq = "HEL_LO|" + pause + "WORLD|" + pause + "AGAIN"
    lp = onehot(EN, seq, p=0.95)
    chunks = [records.Emissions(lp[a : a + 7], a, FS) for a in range(0, len(lp), 7)]
    dec = build_decoder(EN_VOCAB, DecodeOptions(kind="beam", beam_width=8))
    res = dec.decode(iter(chunks))
    assert res.text == "HELLO WORLD AGAIN"
    g = greedy(EN_VOCAB, lp)
    assert [(w.text, w.start, w.end) for w in res.words] == [(w.text, w.start, w.end) for w in g.words]
    assert res.frames == len(lp)


# beam search in worker processes


def _paused_stream(seed: int, pieces: int, chunk: int = 150) -> list[records.Emissions]:
    """Random speech-like log-probs with a 1 s confident pause every 5 s: `pieces` beam pieces."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(pieces):
        parts.append(random_logprobs(rng, 250, len(EN), 0))
        parts.append(onehot(EN, "_" * 50, p=0.99))
    lp = np.concatenate(parts)
    return [records.Emissions(lp[a : a + chunk], a, FS) for a in range(0, len(lp), chunk)]


@pytest.mark.parametrize("chunk", [7, 50, 150])
def test_beam_live_until_moves_into_a_silence_and_no_later_word_starts_before_it(chunk):
    """--live: a silence after a pause's cut advances `until` at once (a segment can close), and no word
    handed over later starts before an `until` already reported."""
    rng = np.random.default_rng(chunk)
    speech = [random_logprobs(rng, 120, len(EN), 0) for _ in range(3)]
    lp = np.concatenate([speech[0], onehot(EN, "_" * 150, p=0.999), speech[1], speech[2]])  # (frames, vocab)
    stream = [records.Emissions(lp[a : a + chunk], a, FS) for a in range(0, len(lp), chunk)]
    calls: list[tuple[int, tuple[records.Word, ...], float]] = []
    consumed = 0

    def feed():
        nonlocal consumed
        for em in stream:
            consumed = em.first_frame + em.log_probs.shape[0]
            yield em

    dec = build_decoder(EN_VOCAB, DecodeOptions(kind="beam", beam_width=8))
    res = dec.decode(feed(), lambda words, until: calls.append((consumed, words, until)))
    assert tuple(w for _, words, _ in calls for w in words) == res.words
    for i, (_, _, until) in enumerate(calls):
        later = [w for _, words, _ in calls[i + 1 :] for w in words]
        assert all(w.start >= until - 1e-9 for w in later), (i, until)
    # the silence (frames 120-270) is cut at its 25th frame; before the stream ends, `until` has moved on
    # into it (before, it stayed at that cut until the next pause or the end)
    assert max(until for seen, _, until in calls if seen < len(lp)) >= 200 * FS


def test_beam_workers_give_the_in_process_result_and_are_reused_then_stopped():
    stream = _paused_stream(0, pieces=6)
    alone = build_decoder(EN_VOCAB, DecodeOptions(kind="beam", beam_width=8)).decode(iter(stream))
    dec = build_decoder(
        EN_VOCAB, DecodeOptions(kind="beam", beam_width=8, workers=2, workers_after_seconds=0)
    )
    try:
        live: list[records.Word] = []
        assert dec.decode(iter(stream), on_words=lambda words, until: live.extend(words)) == alone
        assert tuple(live) == alone.words  # --live: the same words, handed over in order
        pool = dec._workers._pool
        assert pool is not None
        assert dec.decode(iter(stream[:4])) == build_decoder(
            EN_VOCAB, DecodeOptions(kind="beam", beam_width=8)
        ).decode(iter(stream[:4]))
        assert dec._workers._pool is pool, "the worker processes are kept for the next input"
        procs = list(pool._processes.values())
        assert len(procs) >= 1 and all(p.is_alive() for p in procs)
    finally:
        dec.close()
    for p in procs:
        p.join(timeout=10)
    assert not any(p.is_alive() for p in procs)


def test_beam_worker_results_are_handed_over_while_the_stream_goes_on_without_a_pause():
    """--live: a piece searched by a worker gives its words at the next chunk, not at the next pause."""
    rng = np.random.default_rng(3)
    lp = np.concatenate(
        [
            random_logprobs(rng, 250, len(EN), 0),
            onehot(EN, "_" * 50, p=0.99),
            random_logprobs(rng, 600, len(EN), 0),
        ]
    )
    stream = [records.Emissions(lp[a : a + 50], a, FS) for a in range(0, len(lp), 50)]
    dec = build_decoder(
        EN_VOCAB, DecodeOptions(kind="beam", beam_width=8, workers=1, workers_after_seconds=0)
    )
    futures = []
    submit = dec._workers.submit

    def recording_submit(piece):
        futures.append(submit(piece))
        return futures[-1]

    dec._workers.submit = recording_submit
    consumed = 0
    searched_at = None
    first_words_at = []

    def feed():
        nonlocal consumed, searched_at
        for em in stream:
            if futures and searched_at is None:
                futures[0].result(timeout=120)  # the first piece is searched, while no pause comes
                searched_at = consumed
            consumed += 1
            yield em

    try:
        res = dec.decode(feed(), on_words=lambda words, until: words and first_words_at.append(consumed))
    finally:
        dec.close()
    assert len(futures) == 2 and searched_at is not None and searched_at < len(stream) - 5  # 2 pieces
    assert first_words_at and first_words_at[0] == searched_at + 1, (first_words_at, searched_at)
    assert res == build_decoder(EN_VOCAB, DecodeOptions(kind="beam", beam_width=8)).decode(iter(stream))


def test_beam_workers_are_not_started_for_a_one_piece_input_nor_a_short_one():
    lp = onehot(EN, "HEL_LO|WORLD", p=0.95)
    dec = build_decoder(
        EN_VOCAB, DecodeOptions(kind="beam", beam_width=8, workers=2, workers_after_seconds=0)
    )
    assert dec.decode([records.Emissions(lp, 0, FS)]).text == "HELLO WORLD"
    assert not dec._workers.started
    dec.close()
    stream = _paused_stream(2, pieces=6)  # 36 s in 6 pieces
    dec = build_decoder(
        EN_VOCAB, DecodeOptions(kind="beam", beam_width=8, workers=2, workers_after_seconds=40)
    )
    dec.decode(iter(stream))
    assert not dec._workers.started
    dec = build_decoder(
        EN_VOCAB, DecodeOptions(kind="beam", beam_width=8, workers=2, workers_after_seconds=20)
    )
    dec.decode(iter(stream))
    assert dec._workers.started
    dec.close()


def test_beam_worker_death_is_one_decoder_error_and_the_next_input_works():
    stream = _paused_stream(1, pieces=4)
    dec = build_decoder(
        EN_VOCAB, DecodeOptions(kind="beam", beam_width=8, workers=1, workers_after_seconds=0)
    )

    def kill_after_first_piece():
        for i, em in enumerate(stream):
            if i == 3:  # the first piece went to the worker: kill it
                for p in dec._workers._pool._processes.values():
                    p.kill()
                    p.join()
            yield em

    try:
        with pytest.raises(errors.DecoderError, match="beam-search worker process stopped unexpectedly"):
            dec.decode(kill_after_first_piece())
        expected = build_decoder(EN_VOCAB, DecodeOptions(kind="beam", beam_width=8)).decode(iter(stream))
        assert dec.decode(iter(stream)) == expected  # a new pool
    finally:
        dec.close()


class _Stop(BaseException):
    pass


def test_a_signal_taken_by_another_thread_during_a_worker_spawn_does_not_cut_the_spawn(monkeypatch, capfd):
    """The race seen under load: SIGTERM came while submit() was spawning a worker; its Python handler ran
    in the middle of the spawn and left the new process reading a cut pipe (EOFError traceback)."""
    import multiprocessing.popen_spawn_posix as popen_spawn
    import threading

    launch = popen_spawn.Popen._launch

    def launch_with_a_signal(self, process_obj):
        # a process-directed signal taken by a thread that does not block it, as the kernel may choose
        t = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGTERM))
        t.start()
        t.join()
        return launch(self, process_obj)

    monkeypatch.setattr(popen_spawn.Popen, "_launch", launch_with_a_signal)

    def on_term(signum, frame):
        raise _Stop

    previous = signal.signal(signal.SIGTERM, on_term)
    dec = build_decoder(
        EN_VOCAB, DecodeOptions(kind="beam", beam_width=8, workers=1, workers_after_seconds=0)
    )
    try:
        with pytest.raises(_Stop):
            dec._workers.submit(onehot(EN, "HEL_LO|WORLD", p=0.95))
        procs = list(dec._workers._pool._processes.values())
        assert len(procs) == 1, "the spawned worker is known, so it can be stopped"
    finally:
        signal.signal(signal.SIGTERM, previous)
        dec._workers.close(kill=True)
    for p in procs:
        p.join(timeout=30)
    assert not any(p.is_alive() for p in procs)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "EOFError" not in err, err


def test_an_interrupt_during_worker_search_leaves_the_futures_to_the_killed_pool(monkeypatch):
    """Ctrl-C with pieces in flight: the decoder used to cancel their futures before killing the pool, whose
    manager thread then failed them again (InvalidStateError: a traceback from "Thread-1" on stderr)."""
    import concurrent.futures
    import threading

    cancel = concurrent.futures.Future.cancel
    cancelled_here = []

    def recording_cancel(self):
        if threading.current_thread() is threading.main_thread():
            cancelled_here.append(self)
        return cancel(self)

    monkeypatch.setattr(concurrent.futures.Future, "cancel", recording_cancel)
    thread_errors = []
    monkeypatch.setattr(threading, "excepthook", lambda args: thread_errors.append(args.exc_value))
    stream = _paused_stream(5, pieces=6)
    dec = build_decoder(
        EN_VOCAB, DecodeOptions(kind="beam", beam_width=8, workers=1, workers_after_seconds=0)
    )
    managers = []

    def stop_once_pieces_are_in_flight():
        for em in stream:
            yield em
            if dec._workers.started:
                managers.append(dec._workers._pool._executor_manager_thread)
                raise _Stop

    with pytest.raises(_Stop):
        dec.decode(stop_once_pieces_are_in_flight())
    assert not dec._workers.started  # killed, so the next input starts a new pool
    # the kill waited for the manager thread: left running, it raced at exit with CPython's own wake-up of it
    assert managers and not any(thread.is_alive() for thread in managers if thread is not None)
    assert cancelled_here == [] and thread_errors == []


def test_beam_workers_must_not_be_negative():
    with pytest.raises(errors.DecoderError, match="beam workers"):
        build_decoder(EN_VOCAB, DecodeOptions(kind="beam", workers=-1))


UNBLOCK_SCRIPT = """
import multiprocessing, sys, time
from types import SimpleNamespace
from sewcli.decoding import _unblock_call_queue
if __name__ == "__main__":
    q = multiprocessing.get_context("spawn").Queue()
    q.put(b"x" * 10_000_000)  # more than a pipe holds and no reader: the feeder thread blocks in send
    time.sleep(0.5)
    if sys.argv[1] == "unblock":
        _unblock_call_queue(SimpleNamespace(_call_queue=q))
    print("exiting", flush=True)
"""


def test_killed_workers_call_queue_does_not_hang_the_exit(tmp_path):
    """Once the workers are killed nothing reads the call queue; a feeder stuck writing a piece to it made
    the interpreter's exit hang (seen in CI after Ctrl-C). `_unblock_call_queue` lets the process exit.
    (Run with "leave" instead of "unblock", the same script hangs at exit on CPython 3.11.)"""
    script = tmp_path / "q.py"
    script.write_text(UNBLOCK_SCRIPT, encoding="utf-8")
    out = subprocess.run([sys.executable, str(script), "unblock"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "exiting", out.stderr


def test_beam_search_without_kenlm_writes_nothing_to_stderr() -> None:
    """pyctcdecode logs a kenlm hint at import; sew reads ARPA files itself, so a user must not see it."""
    code = (
        "import sys; sys.modules['kenlm'] = None\n"  # as after a plain `pip install sewcli`: no kenlm
        "from sewcli import decoding, records\n"
        "vocab = records.Vocabulary(('<pad>', '<s>', '</s>', '<unk>', '|', 'A', 'B'), blank_id=0)\n"
        "decoding.build_decoder(vocab, decoding.DecodeOptions(kind='beam', workers=0))\n"
        "import pyctcdecode.decoder\n"  # imported for real, not skipped
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")


@pytest.mark.parametrize("quiet", [False, True])
def test_resource_tracker_of_the_beam_workers_stays_off_stderr(quiet: bool) -> None:
    """A lock left behind (here: a process that ends with os._exit) makes multiprocessing's resource tracker
    warn on the stderr it shares with sew, after sew's last line; the filter sew sets first keeps it quiet."""
    code = (
        "import multiprocessing, os\n"
        "from sewcli import decoding\n"
        f"if {quiet}: decoding._quiet_resource_tracker()\n"
        "lock = multiprocessing.get_context('spawn').Lock()\n"
        "os._exit(0)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0
    assert ("resource_tracker" in res.stderr) is not quiet, res.stderr
