"""The embedded sew-synth-en model: transformers parity on the examples, a recognition bound, quick start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from conftest import error_rate

from sewcli import decoding, inference, pipeline

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "sewcli" / "assets" / "sew-synth-en"
EXAMPLES = ROOT / "examples"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
# Bounds from the shipped model's measured numbers (model card), with a small margin for float differences.
MAX_EXAMPLES_WER = 0.4  # greedy (the acoustic model alone): measured 0.227 (10 of 44 words) at step 31,943
MAX_EXAMPLES_WER_LM = 0.15  # the default, beam search with the shipped LM: measured 0.068 (3 of 44 words)
MAX_HELLO_CER = 0.0


def _examples() -> list[tuple[Path, str]]:
    out = []
    for txt in sorted(EXAMPLES.glob("*.txt")):
        audio = [p for p in (txt.with_suffix(s) for s in AUDIO_SUFFIXES) if p.exists()]
        assert len(audio) == 1, f"{txt} needs exactly one audio file next to it"
        out.append((audio[0], txt.read_text().strip()))
    return out


@pytest.fixture(scope="module")
def ours() -> dict[Path, str]:
    model = inference.load(SHIPPED, inference.InferenceOptions(device="cpu", threads=1), name="sew-synth-en")
    greedy = decoding.build_decoder(model.vocab, decoding.DecodeOptions())
    opts = pipeline.PipelineOptions()
    return {p: pipeline.transcribe_file(str(p), model, greedy, opts).text for p, _ in _examples()}


@pytest.fixture(scope="module")
def ours_default() -> dict[Path, str]:
    """What `sew transcribe` prints by default: "auto" = beam search with the model's own language model."""
    model = inference.load(SHIPPED, inference.InferenceOptions(device="cpu", threads=1), name="sew-synth-en")
    options = decoding.with_bundled_lm(decoding.DecodeOptions(), SHIPPED)
    assert (options.kind, options.lm_path) == ("beam", str(SHIPPED / "language_model"))
    decoder = decoding.build_decoder(model.vocab, options)
    opts = pipeline.PipelineOptions()
    try:
        return {p: pipeline.transcribe_file(str(p), model, decoder, opts).text for p, _ in _examples()}
    finally:
        decoder.close()


def test_shipped_files_and_sizes() -> None:
    names = {p.name for p in SHIPPED.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "vocab.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "README.md",
    } <= names
    assert (SHIPPED / "language_model" / "lm.arpa.gz").is_file()
    shipped_bytes = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert shipped_bytes <= 20 * 1024 * 1024  # model, language model and card together
    ex = _examples()
    assert len(ex) >= 4 and {p.suffix for p, _ in ex} >= {".wav", ".flac", ".ogg", ".mp3"}
    assert (EXAMPLES / "hello.wav").exists()
    assert sum(p.stat().st_size for p in EXAMPLES.iterdir()) <= 400 * 1024
    rates = {sf.info(str(p)).samplerate for p, _ in ex}
    assert len(rates) >= 3


def test_transformers_greedy_text_equals_ours(ours: dict[Path, str]) -> None:
    from transformers import SEWForCTC, Wav2Vec2Processor

    hf = SEWForCTC.from_pretrained(SHIPPED, dtype=torch.float32).eval()
    proc = Wav2Vec2Processor.from_pretrained(SHIPPED)
    assert hf.config.model_type == "sew" and hf.config.squeeze_factor == 2
    for path, _ in _examples():
        x, rate = sf.read(str(path), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        if rate != 16000:
            x = soxr.resample(x, rate, 16000, quality="HQ").astype(np.float32)
        feats = proc(x, sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            ids = hf(feats.input_values).logits.argmax(-1)
        text = proc.batch_decode(ids)[0]
        assert text == ours[path], path.name
        assert text, f"{path.name}: transformers decoded nothing"
    # and the command itself, greedy (its default adds the shipped language model: not transformers' decoding)
    paths = [p for p, _ in _examples()]
    res = subprocess.run(
        [sys.executable, "-m", "sewcli", "transcribe", *map(str, paths), "--decoder", "greedy", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    printed = [line for line in res.stdout.splitlines() if not line.startswith("==> ")]
    assert printed == [ours[p] for p in paths]


def test_examples_are_recognised(ours: dict[Path, str], ours_default: dict[Path, str]) -> None:
    ex = _examples()
    refs = [r for _, r in ex]
    hyps = [ours[p].upper() for p, _ in ex]
    greedy_wer = error_rate(refs, hyps)
    assert greedy_wer <= MAX_EXAMPLES_WER, list(zip(refs, hyps, strict=True))
    with_lm = [ours_default[p].upper() for p, _ in ex]
    assert error_rate(refs, with_lm) <= MAX_EXAMPLES_WER_LM, list(zip(refs, with_lm, strict=True))
    assert error_rate(refs, with_lm) < greedy_wer
    hello = (EXAMPLES / "hello.txt").read_text().strip()
    assert error_rate([hello], [ours[EXAMPLES / "hello.wav"].upper()], unit="char") <= MAX_HELLO_CER


def test_quick_start_command_offline(tmp_path: Path, ours_default: dict[Path, str]) -> None:
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), XDG_CONFIG_HOME=str(tmp_path / "cfg")
    )
    res = subprocess.run(
        [sys.executable, "-m", "sewcli", "transcribe", str(EXAMPLES / "hello.wav")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ours_default[EXAMPLES / "hello.wav"] != ""  # the default model, no download


def test_no_words_in_noise_or_between_sentences(tmp_path: Path) -> None:
    """Audio without speech gives no words (the model was trained on noise-only clips with the empty text),
    and noise around a sentence adds none to it. (The step-24,250 model spelled 131 letters a minute into
    noise.)"""
    model = inference.load(SHIPPED, inference.InferenceOptions(device="cpu", threads=1), name="sew-synth-en")
    greedy = decoding.build_decoder(model.vocab, decoding.DecodeOptions())
    opts = pipeline.PipelineOptions()
    rng = np.random.default_rng(7)

    def noise(seconds: float, dbfs: float, kind: str) -> np.ndarray:
        x = rng.standard_normal(int(seconds * 16000))
        if kind != "white":  # pink: 1/sqrt(f) amplitude, brown: 1/f
            spec = np.fft.rfft(x)
            f = np.maximum(np.arange(len(spec)), 1.0)
            x = np.fft.irfft(spec / (np.sqrt(f) if kind == "pink" else f), len(x))
        return (x / np.sqrt((x**2).mean()) * 10 ** (dbfs / 20)).astype(np.float32)

    clips = {f"{kind}{db}": noise(5.0, db, kind) for kind in ("white", "pink", "brown") for db in (-50, -30)}
    hello, rate = sf.read(str(EXAMPLES / "hello.wav"), dtype="float32")
    hello = soxr.resample(hello, rate, 16000).astype(np.float32) if rate != 16000 else hello
    clips["hello in noise"] = np.concatenate([noise(3.0, -45, "pink"), hello, noise(3.0, -45, "white")])
    texts = {}
    for name, audio in clips.items():
        path = tmp_path / f"{name}.wav"
        sf.write(str(path), audio, 16000, subtype="FLOAT")
        texts[name] = pipeline.transcribe_file(str(path), model, greedy, opts).text
    expected = dict.fromkeys(clips, "")
    expected["hello in noise"] = (EXAMPLES / "hello.txt").read_text().strip()
    assert texts == expected
