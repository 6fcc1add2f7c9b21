"""`sew classify`: SEW / wav2vec2 sequence-classification heads against transformers (random weights), the
classify stage (windows, top-k, writers) and the CLI command (txt/json, directories, errors).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _engine_helpers import PREPROCESSOR, SEW_TINY, W2V2_BASE
from conftest import write_audio

from sewcli.classify import ClassifyOptions, classify_file, load, read_classifier_info
from sewcli.errors import CheckpointError, UnsupportedConfigError
from sewcli.model.classify import load_classifier

LABELS = {0: "yes", 1: "no", 2: "up", 3: "down", 4: "left", 5: "ünknown"}
SMALL = {
    "hidden_size": 32,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_conv_pos_embedding_groups": 4,
    "classifier_proj_size": 16,
    "id2label": LABELS,
    "label2id": {v: k for k, v in LABELS.items()},
}
W2V2 = dict(W2V2_BASE, **SMALL, conv_dim=[32] * 7, num_conv_pos_embeddings=16)
W2V2_STABLE = dict(W2V2, do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True)
SEW = dict(SEW_TINY, **SMALL, conv_dim=[16] * 12 + [24], num_conv_pos_embeddings=31)


def _hf(kind: str, config: dict, seed: int = 0, **overrides: object) -> torch.nn.Module:
    import transformers

    cfg_cls, model_cls = {
        "sew": (transformers.SEWConfig, transformers.SEWForSequenceClassification),
        "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2ForSequenceClassification),
    }[kind]
    cfg = {
        k: v for k, v in config.items() if k not in ("architectures", "transformers_version", "torch_dtype")
    }
    cfg.update(overrides)
    torch.manual_seed(seed)
    model = model_cls(cfg_cls(**cfg)).eval()
    with torch.no_grad():  # make the layer weights non-uniform so the weighted sum is really exercised
        if getattr(model, "layer_weights", None) is not None:
            model.layer_weights.copy_(torch.randn_like(model.layer_weights))
        model.classifier.weight.mul_(50)  # spread the probabilities
        model.classifier.bias.copy_(torch.linspace(-2.0, 3.0, model.classifier.bias.shape[0]))
    return model


def _save(model: torch.nn.Module, directory: Path, preprocessor: dict | None = None) -> Path:
    model.save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor or PREPROCESSOR))
    return directory


def _wave(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, samples)).astype(np.float32)
    return torch.from_numpy((x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True))


CASES = [
    ("w2v2-base", "wav2vec2", W2V2, False),
    ("w2v2-base-weighted", "wav2vec2", W2V2, True),
    ("w2v2-stable-weighted", "wav2vec2", W2V2_STABLE, True),
    ("w2v2-stable", "wav2vec2", W2V2_STABLE, False),
    ("sew", "sew", SEW, False),
    ("sew-weighted", "sew", SEW, True),
]


@pytest.mark.parametrize(("case", "kind", "config", "weighted"), CASES, ids=[c[0] for c in CASES])
def test_probabilities_match_transformers(tmp_path: Path, case: str, kind: str, config: dict, weighted: bool):
    hf = _hf(kind, config, use_weighted_layer_sum=weighted)
    info = read_classifier_info(_save(hf, tmp_path / case))
    assert info.labels == tuple(LABELS[i] for i in range(6))
    ours = load_classifier(info.family, info.config, info.weight_files)
    x = _wave(2, 8321, seed=1)  # odd number of CNN frames (SEW pads one)
    with torch.no_grad():
        ref = torch.softmax(hf(x).logits, -1)
        got = torch.softmax(ours(x), -1)
    assert float((got - ref).abs().max()) <= 1e-4, case
    assert float(ref.max()) > 0.5  # a peaked distribution: a label mix-up would show
    if kind == "wav2vec2" and config is W2V2_STABLE or (kind == "sew" and weighted):
        # padded batch with an attention mask (masked mean pooling; SEW's squeezed-rate mask quirk)
        mask = torch.ones_like(x, dtype=torch.long)
        mask[1, 5000:] = 0
        xp = x.clone()
        xp[1, 5000:] = 0.0
        with torch.no_grad():
            ref = torch.softmax(hf(xp, attention_mask=mask).logits, -1)
            got = torch.softmax(ours(xp, attention_mask=mask), -1)
        assert float((got - ref).abs().max()) <= 1e-4, case


@pytest.fixture(scope="module")
def kws_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(_hf("wav2vec2", W2V2, use_weighted_layer_sum=True), tmp_path_factory.mktemp("cls") / "kws")


def test_classify_file_top_k_and_windows(tmp_path: Path, kws_dir: Path):
    wav = write_audio(tmp_path / "a.wav", 1.2, rate=8000)  # resampled to 16 kHz by the stage
    model = load(kws_dir)
    result = classify_file(wav, model, ClassifyOptions(top_k=3))
    assert [lab for lab, _ in result.labels] and len(result.labels) == 3
    probs = [p for _, p in result.labels]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert result.windows == 1 and result.duration == pytest.approx(1.2, abs=1e-3)
    # reference: the same 16 kHz samples through transformers' feature extractor normalisation and model
    import soundfile as sf
    import soxr
    import transformers

    x, sr = sf.read(str(wav), dtype="float32")
    x16 = soxr.resample(x, sr, 16000, quality="HQ").astype(np.float32)
    fe = transformers.Wav2Vec2FeatureExtractor(**PREPROCESSOR)
    inputs = fe(x16, sampling_rate=16000, return_tensors="pt")
    hf = _hf("wav2vec2", W2V2, use_weighted_layer_sum=True)
    with torch.no_grad():
        ref = torch.softmax(hf(inputs.input_values).logits, -1)[0].numpy()
    top = np.argsort(-ref)[:3]
    assert [lab for lab, _ in result.labels] == [LABELS[int(i)] for i in top]
    assert np.allclose(probs, ref[top], atol=1e-3)  # streaming resampler vs one-shot: tiny edge differences
    # a long input is split into windows whose probabilities are averaged by length
    long = write_audio(tmp_path / "long.wav", 5.0)
    r = classify_file(long, model, ClassifyOptions(top_k=6, window_seconds=2.0))
    assert r.windows == 3 and sum(p for _, p in r.labels) == pytest.approx(1.0, abs=1e-5)


def test_not_a_classifier(tiny_sew_dir: Path, tmp_path: Path):
    with pytest.raises(UnsupportedConfigError, match="SEWForCTC"):
        read_classifier_info(tiny_sew_dir)
    with pytest.raises(CheckpointError):
        read_classifier_info(tmp_path)


def test_cli_classify(tmp_path: Path, kws_dir: Path, tiny_sew_dir: Path):
    from typer.testing import CliRunner

    from sewcli.cli import app

    d = tmp_path / "in"
    write_audio(d / "a.wav", 1.0)
    write_audio(d / "sub" / "b.flac", 0.8, seed=2)
    runner = CliRunner()
    r = runner.invoke(app, ["classify", str(d / "a.wav"), "-m", str(kws_dir), "-k", "2", "-q"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0] in LABELS.values() for line in lines)
    out = tmp_path / "out"
    r = runner.invoke(app, ["classify", str(d), "-m", str(kws_dir), "-f", "json", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "sub" / "b.json").read_text(encoding="utf-8"))
    assert doc["source"].endswith("b.flac") and len(doc["labels"]) == 5
    assert {e["label"] for e in doc["labels"]} <= set(LABELS.values())
    r = runner.invoke(app, ["classify", str(d / "a.wav"), "-m", str(tiny_sew_dir), "-q"])
    assert r.exit_code == 1 and "SequenceClassification" in r.stderr
    r = runner.invoke(
        app, ["classify", str(d / "a.wav"), str(tmp_path / "missing.wav"), "-m", str(kws_dir), "-q"]
    )
    assert r.exit_code == 1 and "missing.wav" in r.stderr and "==> " in r.stdout


def test_classify_stage_is_torch_free():
    import subprocess
    import sys

    code = "import sys, sewcli.classify; assert 'torch' not in sys.modules, 'torch imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
