"""XLSR-style multilingual CTC: unicode vocabularies (umlauts, kana/kanji without a word delimiter,
Devanagari with multi-code-point tokens), pad/blank at the end of vocab.json, do_lower_case, and UTF-8 on
stdout whatever the locale.

The reference for the text is transformers: Wav2Vec2ForCTC logits on the same window, decoded by
Wav2Vec2CTCTokenizer.batch_decode (the argmax ids), compared with what `sew transcribe` prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _engine_helpers import PREPROCESSOR, XLSR_LARGE
from conftest import speechlike, write_audio

ROOT = Path(__file__).resolve().parents[1]
STABLE_SMALL = dict(
    XLSR_LARGE,
    hidden_size=32,
    num_attention_heads=2,
    intermediate_size=64,
    num_hidden_layers=2,
    conv_dim=[32] * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
XLSR_PRE = dict(PREPROCESSOR, return_attention_mask=True)


def _vocab(chars: list[str], delimiter: bool = True) -> dict[str, int]:
    """chars, then "|" (optional), then [UNK] and [PAD] at the end, as community XLSR fine-tunes do."""
    tokens = chars + (["|"] if delimiter else []) + ["[UNK]", "[PAD]"]
    return {t: i for i, t in enumerate(tokens)}


LANGS = {
    # German: lower-case letters with umlauts and ß, [PAD] (the blank) at id 34
    "de": (_vocab(list("abcdefghijklmnopqrstuvwxyzäöüß'")), False),
    # upper-case vocabulary with do_lower_case: the text comes out lower-cased (Ä -> ä)
    "de-lower": (_vocab(list("ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÜ")), True),
    # Japanese: no word delimiter in the vocabulary, text without spaces
    "ja": (_vocab(list("あいうえおかきくけこさしすせそたちつてと日本語東京大阪"), delimiter=False), False),
    # Hindi: combining vowel signs and a three-code-point conjunct token
    "hi": (_vocab(["क", "ख", "ग", "त", "न", "म", "र", "ा", "ि", "ी", "ं", "्", "क्ष", "त्र"]), False),
}


def _write_model(
    directory: Path, vocab: dict[str, int], lower: bool, seed: int
) -> tuple[Path, torch.nn.Module]:
    import transformers

    directory.mkdir(parents=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tok_cfg = {
        "unk_token": "[UNK]",
        "pad_token": "[PAD]",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "word_delimiter_token": "|",
        "do_lower_case": lower,
        "tokenizer_class": "Wav2Vec2CTCTokenizer",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tok_cfg), encoding="utf-8")
    (directory / "preprocessor_config.json").write_text(json.dumps(XLSR_PRE))
    tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(directory)
    cfg = {k: v for k, v in STABLE_SMALL.items() if k not in ("architectures", "transformers_version")}
    cfg.update(vocab_size=len(tok), pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    hf = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**cfg)).eval()
    with torch.no_grad():
        hf.lm_head.weight.mul_(30)  # well separated logits: no near-ties for the argmax to disagree on
        hf.lm_head.bias[tok.pad_token_id] += 1.0  # some blanks, so repeats and collapses both occur
    hf.save_pretrained(directory)
    return directory, hf


def _reference_text(directory: Path, hf: torch.nn.Module, samples: np.ndarray) -> str:
    import transformers

    fe = transformers.Wav2Vec2FeatureExtractor(**XLSR_PRE)
    inputs = fe(samples, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        ids = hf(inputs.input_values, attention_mask=inputs.attention_mask).logits.argmax(-1)
    tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(directory)
    return tok.batch_decode(ids)[0]


@pytest.mark.parametrize("lang", list(LANGS))
def test_unicode_vocabulary_text_matches_transformers(tmp_path: Path, lang: str):
    from typer.testing import CliRunner

    from sewcli.checkpoint import read_vocabulary
    from sewcli.cli import app

    vocab, lower = LANGS[lang]
    directory, hf = _write_model(tmp_path / lang, vocab, lower, seed=len(lang))
    v = read_vocabulary(directory)
    assert v.tokens[v.blank_id] == "[PAD]" and v.blank_id == len(vocab) - 1
    assert (v.word_delimiter == "|") == ("|" in vocab)
    wav = write_audio(tmp_path / "a.wav", 3.0, seed=4, subtype="FLOAT")  # 16 kHz float: no resampling, exact
    expected = _reference_text(directory, hf, speechlike(3.0, seed=4))
    assert len(expected) >= 10  # a real string, not an empty decode
    r = CliRunner().invoke(app, ["transcribe", str(wav), "-m", str(directory), "-q"])
    assert r.exit_code == 0, r.output
    assert r.stdout.rstrip("\n") == expected
    if lang == "de":
        assert set(expected) & set("äöüß")
    if lang == "de-lower":
        assert expected == expected.lower() and set(expected) & set("äöü")
    if lang == "ja":
        assert " " not in expected
    if lang == "hi":
        assert set(expected) & set("ािीं्")
    out = tmp_path / "out"
    r = CliRunner().invoke(
        app, ["transcribe", str(wav), "-m", str(directory), "-f", "json", "-o", str(out), "-q"]
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "a.json").read_text(encoding="utf-8"))
    assert doc["text"] == expected
    words = doc["words"]
    assert [w["text"] for w in words] == expected.split()  # words are the text split at the delimiter
    if lang == "ja":  # no delimiter: the whole text is one word
        assert len(words) == 1
    for w in words:  # word texts index into the text by their character offsets
        assert expected[w["char_start"] : w["char_end"]] == w["text"]


def test_stdout_is_utf8_in_an_ascii_locale(tmp_path: Path):
    vocab, lower = LANGS["de"]
    directory, hf = _write_model(tmp_path / "de", vocab, lower, seed=2)
    wav = write_audio(tmp_path / "a.wav", 3.0, seed=4, subtype="FLOAT")
    expected = _reference_text(directory, hf, speechlike(3.0, seed=4))
    assert set(expected) & set("äöüß")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PYTHONIOENCODING", "PYTHONUTF8"))}
    env.update(LC_ALL="C", LANG="C", PYTHONCOERCECLOCALE="0", PYTHONUTF8="0")
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.stdout.encoding)"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip().lower() in (
        "ascii",
        "ansi_x3.4-1968",
        "us-ascii",
    )  # the locale really is ASCII
    r = subprocess.run(
        [sys.executable, "-m", "sewcli", "transcribe", str(wav), "-m", str(directory), "-q"],
        env=env,
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")
    assert r.stdout.decode("utf-8").rstrip("\n") == expected
