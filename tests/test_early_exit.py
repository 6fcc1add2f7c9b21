"""Early-exit wav2vec2: every exit's logits against transformers (hidden_states[N] -> head), tied and untied
checkpoints in both weight formats, layers after the exit never run, the auto rule, and clear errors.

The reference is transformers' Wav2Vec2ForCTC with output_hidden_states=True and exit head i applied to
hidden_states[2(i+1)], as augustgw/wav2vec2-ee's eval.py does (for stable encoders after the final LayerNorm).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _engine_helpers import W2V2_BASE, write_metadata
from safetensors.torch import save_file

from sewcli.errors import UsageError
from sewcli.model.early_exit import EarlyExitWav2Vec2ForCTC, ExitPolicy, configure_exit, window_confidence
from sewcli.model.load import load_model

SMALL = dict(
    W2V2_BASE,
    hidden_size=32,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=[32] * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    num_hidden_layers=12,
)
STABLE = dict(
    SMALL, do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True, num_hidden_layers=6
)
SHALLOW = dict(SMALL, num_hidden_layers=4)  # exits 2 and 4: enough for the checkpoint-format cases


def _hf(config: dict, seed: int = 0) -> torch.nn.Module:
    import transformers

    cfg = {k: v for k, v in config.items() if k not in ("architectures", "transformers_version")}
    torch.manual_seed(seed)
    return transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**cfg)).eval()


def _heads(hf: torch.nn.Module, n: int, tied: bool, seed: int = 1) -> list[torch.nn.Linear]:
    if tied:
        return [hf.lm_head] * n
    torch.manual_seed(seed)
    heads = []
    for _ in range(n):
        lin = torch.nn.Linear(hf.config.hidden_size, hf.config.vocab_size)
        torch.nn.init.normal_(lin.weight, std=0.5)
        heads.append(lin.eval())
    return heads


def _write(
    directory: Path, hf: torch.nn.Module, heads: list[torch.nn.Linear], fmt: str, keep: str = "all"
) -> Path:
    """An EE checkpoint: transformers state dict + decoders.i.*; `keep` drops de-duplicated tied copies."""
    directory.mkdir(parents=True)
    config = hf.config.to_dict()
    config["architectures"] = ["EEWav2Vec2ForCTC"]
    (directory / "config.json").write_text(json.dumps(config))
    write_metadata(directory)
    state = dict(hf.state_dict())
    for i, head in enumerate(heads):
        state[f"decoders.{i}.weight"], state[f"decoders.{i}.bias"] = head.weight, head.bias
    if keep == "lm_head":  # tied safetensors, the copy kept is lm_head
        state = {k: v for k, v in state.items() if not k.startswith("decoders.")}
    elif keep == "decoders.0":  # tied safetensors, the copy kept is decoders.0
        state = {
            k: v
            for k, v in state.items()
            if not (k.startswith("lm_head.") or k.startswith("decoders.")) or k.startswith("decoders.0.")
        }
    if fmt == "safetensors":
        save_file(
            {k: v.detach().clone().contiguous() for k, v in state.items()},
            str(directory / "model.safetensors"),
        )
    else:
        torch.save(
            state, directory / "pytorch_model.bin"
        )  # tied tensors stay one storage, as Trainer saved them
    return directory


def _wave(samples: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, samples)).astype(np.float32)
    x = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)
    return torch.from_numpy(x)


def _reference(hf: torch.nn.Module, heads: list[torch.nn.Linear], x: torch.Tensor) -> dict[int, torch.Tensor]:
    with torch.no_grad():
        out = hf(x, output_hidden_states=True)
        ref = {}
        for i, head in enumerate(heads):
            h = out.hidden_states[2 * (i + 1)]
            if hf.config.do_stable_layer_norm:
                h = hf.wav2vec2.encoder.layer_norm(h)
            ref[2 * (i + 1)] = head(h)
    return ref


CASES = [
    ("untied-safetensors", SMALL, False, "safetensors", "all"),
    ("tied-bin", SHALLOW, True, "bin", "all"),
    ("tied-safetensors-lm_head", SHALLOW, True, "safetensors", "lm_head"),
    ("tied-safetensors-decoders0", SHALLOW, True, "safetensors", "decoders.0"),
    ("stable-untied", STABLE, False, "safetensors", "all"),
]


@pytest.mark.parametrize(("case", "config", "tied", "fmt", "keep"), CASES, ids=[c[0] for c in CASES])
def test_each_exit_matches_transformers(
    tmp_path: Path, case: str, config: dict, tied: bool, fmt: str, keep: str
):
    hf = _hf(config)
    n = config["num_hidden_layers"] // 2
    heads = _heads(hf, n, tied)
    model = load_model(_write(tmp_path / case, hf, heads, fmt, keep)).model
    assert isinstance(model, EarlyExitWav2Vec2ForCTC)
    assert model.exit_layers == tuple(range(2, config["num_hidden_layers"] + 1, 2))
    assert (model.decoders[0] is model.decoders[-1]) == tied
    x = _wave(7999, seed=3)  # odd length, 24 frames
    ref = _reference(hf, heads, x)
    with torch.no_grad():
        ours = model.all_exits(x)
        for layer in model.exit_layers:
            model.policy = ExitPolicy(layer=layer)
            fixed = model(x)
            assert float((fixed - ref[layer]).abs().max()) <= 1e-4, (case, layer)
            assert float((ours[layer] - ref[layer]).abs().max()) <= 1e-4, (case, layer)
        model.policy = ExitPolicy()
        last = model(x)  # no policy: the last exit's head
        assert float((last - ref[model.exit_layers[-1]]).abs().max()) <= 1e-4
        if tied:  # ... which is the ordinary CTC output when the heads are lm_head
            assert float((last - hf(x).logits).abs().max()) <= 1e-4
    if not tied:  # distinct heads really give distinct logits (the test would notice a head mix-up)
        with torch.no_grad():
            plain2 = hf.lm_head(hf(x, output_hidden_states=True).hidden_states[2])
        assert float((ref[2] - plain2).abs().max()) > 1e-2


def test_kd_training_checkpoint(tmp_path: Path):
    """KDEEWav2Vec2ForCTC (wav2vec2-ee's distillation class) also saves its teacher as copy_model.*."""
    hf = _hf(SHALLOW)
    directory = _write(tmp_path / "kd", hf, _heads(hf, 2, True), "bin")
    config = json.loads((directory / "config.json").read_text())
    config["architectures"] = ["KDEEWav2Vec2ForCTC"]
    (directory / "config.json").write_text(json.dumps(config))
    state = torch.load(directory / "pytorch_model.bin", weights_only=True)
    state.update({f"copy_model.{k}": v.clone() for k, v in hf.state_dict().items()})
    torch.save(state, directory / "pytorch_model.bin")
    model = load_model(directory).model
    assert isinstance(model, EarlyExitWav2Vec2ForCTC) and model.exit_layers == (2, 4)
    x = _wave(4000, seed=7)
    with torch.no_grad():
        assert float((model(x) - hf(x).logits).abs().max()) <= 1e-4


def test_exit_skips_later_layers(tmp_path: Path):
    hf = _hf(SMALL)
    model = load_model(_write(tmp_path / "ck", hf, _heads(hf, 6, True), "bin")).model
    calls = [0] * len(model.wav2vec2.encoder.layers)
    for i, layer in enumerate(model.wav2vec2.encoder.layers):
        layer.register_forward_hook(lambda *a, i=i: calls.__setitem__(i, calls[i] + 1))
    model.policy = ExitPolicy(layer=4)
    with torch.no_grad():
        model(_wave(4000))
    assert calls == [1, 1, 1, 1] + [0] * 8
    assert model.last_exits == [4]


def test_auto_exit_per_row(tmp_path: Path):
    hf = _hf(SMALL)
    model = load_model(_write(tmp_path / "ck", hf, _heads(hf, 6, False), "safetensors")).model
    x = _wave(6400, seed=5, batch=4)
    with torch.no_grad():
        every = model.all_exits(x)
        conf = {n: window_confidence(v) for n, v in every.items()}
        # a threshold between the rows' exit-2 confidences makes some rows leave at 2 and the others later
        c2 = conf[2].sort().values
        threshold = float((c2[1] + c2[2]) / 2)
        model.policy = ExitPolicy(threshold=threshold)
        out = model(x)
    expected = []
    for b in range(4):
        layer = next((n for n in model.exit_layers if float(conf[n][b]) >= threshold), model.exit_layers[-1])
        expected.append(layer)
        assert float((out[b] - every[layer][b]).abs().max()) <= 1e-4
    assert model.last_exits == expected
    assert expected.count(2) == 2 and len(set(expected)) >= 2
    with torch.no_grad():
        model.policy = ExitPolicy(threshold=0.0)
        model(x)
        assert model.last_exits == [2] * 4
        model.policy = ExitPolicy(threshold=1.0)
        assert float((model(x) - every[12]).abs().max()) <= 1e-4
        assert model.last_exits == [12] * 4


def test_plain_models_refuse_exit_layer(tmp_path: Path, tiny_sew_dir: Path):
    sew = load_model(tiny_sew_dir).model
    with pytest.raises(UsageError, match="early-exit checkpoint"):
        configure_exit(sew, ExitPolicy(layer=2), "tiny-sew")
    hf = _hf(dict(SMALL, num_hidden_layers=2))
    plain = tmp_path / "plain"
    hf.save_pretrained(plain)
    write_metadata(plain)
    with pytest.raises(UsageError, match="decoders.N"):
        configure_exit(load_model(plain).model, ExitPolicy(layer=2), "plain")
    ee = load_model(_write(tmp_path / "ee", _hf(SMALL), _heads(_hf(SMALL), 6, True), "bin")).model
    with pytest.raises(UsageError, match="choose one of 2, 4, 6, 8, 10, 12"):
        configure_exit(ee, ExitPolicy(layer=3), "ee")
    with pytest.raises(UsageError):
        ExitPolicy(threshold=1.5)


def test_transcribe_cli_exit_layer(tmp_path: Path, tiny_sew_dir: Path):
    from conftest import write_audio
    from typer.testing import CliRunner

    from sewcli.cli import app

    wav = write_audio(tmp_path / "a.wav", 1.5)
    hf = _hf(SMALL)
    ee = _write(tmp_path / "ee", hf, _heads(hf, 6, False), "safetensors")
    runner = CliRunner()
    results = {}
    for value in ("2", "12", "auto"):
        r = runner.invoke(app, ["transcribe", str(wav), "-m", str(ee), "--exit-layer", value, "-q"])
        assert r.exit_code == 0, r.output
        results[value] = r.stdout
    out = tmp_path / "out"
    r = runner.invoke(
        app, ["transcribe", str(wav), "-m", str(ee), "--exit-layer", "4", "-f", "json", "-o", str(out), "-q"]
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "a.json").read_text(encoding="utf-8"))
    assert doc["extra"]["exit_layers"] == {"4": 1}  # one window, left at layer 4
    r = runner.invoke(app, ["transcribe", str(wav), "-m", str(tiny_sew_dir), "--exit-layer", "2", "-q"])
    assert r.exit_code == 2
    assert "early-exit" in r.stderr
    r = runner.invoke(app, ["transcribe", str(wav), "-m", str(ee), "--exit-layer", "5", "-q"])
    assert r.exit_code == 2 and "choose one of" in r.stderr
