"""Checkpoint metadata (torch-free reader) and the safe loader: formats, key rules, refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from _engine_helpers import (
    ENGLISH_VOCAB,
    PREPROCESSOR,
    SEW_TINY,
    SEW_TOKENIZER_CONFIG,
    hf_model,
    legacy_state_dict,
    one_thread,  # noqa: F401 (autouse fixture: one intra-op thread)
    save_both,
    waveform,
    write_metadata,
)
from safetensors.torch import save_file

from sewcli import checkpoint
from sewcli.errors import CheckpointError, UnsupportedConfigError
from sewcli.model.load import load_model

transformers = pytest.importorskip("transformers")

TINY = {"hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 64, "num_hidden_layers": 1}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small random transformers SEW (real CNN geometry, narrow encoder) saved in both formats."""
    hf = hf_model("sew", SEW_TINY, seed=21, **TINY)
    st_dir, bin_dir = save_both(hf, tmp_path_factory.mktemp("tiny"))
    return hf, st_dir, bin_dir


def _copy_meta(src, dst, config=None):
    """A checkpoint directory with src's metadata and config (optionally replaced), but no weights."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in (
        "vocab.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "preprocessor_config.json",
    ):
        (dst / name).write_text((src / name).read_text())
    (dst / "config.json").write_text(json.dumps(config) if config else (src / "config.json").read_text())
    return dst


def _hf_state(hf):
    return {k: v.clone().contiguous() for k, v in hf.state_dict().items()}


# ------------------------------------------------------------------------------------------------ metadata


def test_checkpoint_module_does_not_import_torch():
    code = "import sys, sewcli.checkpoint, sewcli.model; assert 'torch' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_english_vocabulary_matches_tokenizer(tmp_path):
    write_metadata(tmp_path)
    vocab = checkpoint.read_vocabulary(tmp_path)
    tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path)
    assert list(vocab.tokens) == tok.convert_ids_to_tokens(list(range(len(tok))))
    assert vocab.blank_id == tok.pad_token_id == 0
    assert vocab.tokens.index(vocab.word_delimiter) == tok.word_delimiter_token_id == 4
    assert vocab.unk_token == tok.unk_token and vocab.do_lower_case is False
    assert vocab.special_tokens == {"<s>", "</s>", "<unk>", "<pad>"}


def test_lower_case_and_added_token_dicts(tmp_path):
    cfg = {**SEW_TOKENIZER_CONFIG, "do_lower_case": True, "pad_token": {"content": "<pad>", "lstrip": False}}
    write_metadata(tmp_path, tokenizer_config={**cfg, "pad_token": "<pad>"})
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    (tmp_path / "special_tokens_map.json").unlink()
    vocab = checkpoint.read_vocabulary(tmp_path)
    assert vocab.do_lower_case is True and vocab.blank_id == 0


def test_missing_vocab_is_a_checkpoint_error(tiny, tmp_path):
    _, st_dir, _ = tiny
    d = _copy_meta(st_dir, tmp_path / "c")
    (d / "model.safetensors").write_bytes((st_dir / "model.safetensors").read_bytes())
    (d / "vocab.json").unlink()
    with pytest.raises(CheckpointError, match="vocab.json"):
        checkpoint.read_checkpoint(d)


def test_nested_vocabulary_refused(tmp_path):
    write_metadata(tmp_path, vocab={"eng": ENGLISH_VOCAB, "deu": ENGLISH_VOCAB})
    with pytest.raises(UnsupportedConfigError, match="target_lang"):
        checkpoint.read_vocabulary(tmp_path)


@pytest.mark.parametrize(
    ("config", "family"),
    [
        ({"architectures": ["SEWForCTC"]}, "sew"),
        ({"architectures": ["SEWDForCTC"]}, "sew-d"),
        ({"architectures": ["Wav2Vec2ForCTC"]}, "wav2vec2"),
        ({"model_type": "sew-d"}, "sew-d"),
    ],
)
def test_family_table(config, family):
    assert checkpoint.family_of(config)[0] == family


def test_unsupported_architecture_names_key_and_value():
    with pytest.raises(UnsupportedConfigError, match=r"architectures=\['HubertForCTC'\]"):
        checkpoint.family_of({"architectures": ["HubertForCTC"], "model_type": "hubert"})
    with pytest.raises(UnsupportedConfigError, match="model_type='whisper'"):
        checkpoint.family_of({"model_type": "whisper"})


def test_feature_config(tmp_path):
    assert checkpoint.read_feature_config(tmp_path) == checkpoint.FeatureConfig()
    write_metadata(
        tmp_path, preprocessor={**PREPROCESSOR, "return_attention_mask": True, "sampling_rate": 8000}
    )
    fc = checkpoint.read_feature_config(tmp_path)
    assert fc == checkpoint.FeatureConfig(sampling_rate=8000, do_normalize=True, return_attention_mask=True)


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("sampling_rate", 0, "sampling_rate must be a positive whole number of Hz, got 0"),
        ("sampling_rate", "16k", "sampling_rate must be a positive whole number of Hz, got '16k'"),
        ("sampling_rate", 16000.5, "sampling_rate must be a positive whole number"),
        ("sampling_rate", float("inf"), "sampling_rate must be a positive whole number"),
        ("sampling_rate", float("nan"), "sampling_rate must be a positive whole number"),
        ("padding_value", "zero", "padding_value must be a number"),
    ],
)
def test_bad_feature_config_names_the_file(tmp_path, key, value, needle):
    write_metadata(tmp_path, preprocessor={**PREPROCESSOR, key: value})
    with pytest.raises(CheckpointError) as err:
        checkpoint.read_feature_config(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'preprocessor_config.json'}: {needle}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_equals_feature_extractor(dtype):
    rng = np.random.default_rng(0)
    x = (0.2 * rng.standard_normal(12345) + 0.05).astype(dtype)
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
    ref = fe(x, sampling_rate=16000, return_tensors="np").input_values[0]
    got = checkpoint.normalize_waveform(x)
    assert got.dtype == np.float32
    assert np.array_equal(got, ref)


def test_weight_file_listing(tiny, tmp_path):
    hf, st_dir, bin_dir = tiny
    assert checkpoint.find_weight_files(st_dir) == ("safetensors", (st_dir / "model.safetensors",))
    assert checkpoint.find_weight_files(bin_dir) == ("pytorch", (bin_dir / "pytorch_model.bin",))
    with pytest.raises(CheckpointError, match="no weights"):
        checkpoint.find_weight_files(tmp_path)


# ---------------------------------------------------------------------------------------------------- loading


def _logits(model, x):
    with torch.no_grad():
        return model(x)


def test_sharded_safetensors_and_sharded_bin_load(tiny, tmp_path):
    hf, st_dir, _ = tiny
    x = waveform(8000, seed=1)
    ref = _logits(lambda v: hf(v).logits, x)
    sharded = tmp_path / "sharded"
    hf.save_pretrained(sharded, max_shard_size="300KB")
    _copy_meta(st_dir, sharded)
    fmt, files = checkpoint.find_weight_files(sharded)
    assert fmt == "safetensors" and len(files) > 1
    assert torch.allclose(_logits(load_model(sharded).model, x), ref, atol=1e-5)

    # sharded .bin with an index, in the legacy weight_g/weight_v naming
    bins = tmp_path / "bins"
    _copy_meta(st_dir, bins)
    state = legacy_state_dict(_hf_state(hf))
    keys = sorted(state)
    weight_map = {}
    for i, part in enumerate((keys[::2], keys[1::2])):
        name = f"pytorch_model-0000{i + 1}-of-00002.bin"
        torch.save({k: state[k] for k in part}, bins / name)
        weight_map.update(dict.fromkeys(part, name))
    (bins / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert torch.allclose(_logits(load_model(bins).model, x), ref, atol=1e-5)


def test_plain_folded_weight_and_ignored_training_keys(tiny, tmp_path):
    hf, st_dir, _ = tiny
    ours = load_model(st_dir).model
    state = {k: v.clone() for k, v in ours.state_dict().items()}  # plain pos_conv weight, no g/v
    state["quantizer.codevectors"] = torch.zeros(1, 4, 2)
    state["project_q.weight"] = torch.zeros(2, 2)
    state["sew.mask_time_emb_vector"] = torch.zeros(64)
    d = _copy_meta(st_dir, tmp_path / "plain")
    save_file(state, str(d / "model.safetensors"))
    x = waveform(8000, seed=2)
    assert torch.equal(_logits(load_model(d).model, x), _logits(ours, x))


def test_early_exit_heads_are_ignored_and_head_rebuilt(tiny, tmp_path):
    hf, st_dir, _ = tiny
    state = _hf_state(hf)
    head_w, head_b = state.pop("lm_head.weight"), state.pop("lm_head.bias")
    for i in range(3):  # safetensors de-duplicates the tied heads: only decoders.N remain
        state[f"decoders.{i}.weight"], state[f"decoders.{i}.bias"] = head_w, head_b
    d = _copy_meta(st_dir, tmp_path / "ee")
    save_file({k: v.clone() for k, v in state.items()}, str(d / "model.safetensors"))
    x = waveform(8000, seed=3)
    assert torch.allclose(_logits(load_model(d).model, x), hf(x).logits.detach(), atol=1e-5)


def _save_state(st_dir, d, state):
    _copy_meta(st_dir, d)
    save_file(state, str(d / "model.safetensors"))
    return d


def test_missing_and_unexpected_keys_are_listed(tiny, tmp_path):
    hf, st_dir, _ = tiny
    state = _hf_state(hf)
    del state["sew.encoder.layers.0.final_layer_norm.weight"]
    state["sew.encoder.layers.7.attention.q_proj.weight"] = torch.zeros(2, 2)
    d = _save_state(st_dir, tmp_path / "m", state)
    with pytest.raises(CheckpointError) as err:
        load_model(d)
    msg = str(err.value)
    assert "missing keys: sew.encoder.layers.0.final_layer_norm.weight" in msg
    assert "unexpected keys: sew.encoder.layers.7.attention.q_proj.weight" in msg
    assert "model.safetensors" in msg and "\n" not in msg


def test_mis_shaped_key_is_listed(tiny, tmp_path):
    hf, st_dir, _ = tiny
    state = _hf_state(hf)
    state["sew.encoder.layer_norm.weight"] = torch.ones(65)
    with pytest.raises(
        CheckpointError, match=r"mis-shaped keys: sew.encoder.layer_norm.weight \(65,\) != \(64,\)"
    ):
        load_model(_save_state(st_dir, tmp_path / "s", state))


def test_lm_head_rows_must_equal_vocab_size(tiny, tmp_path):
    hf, st_dir, _ = tiny
    state = _hf_state(hf)
    state["lm_head.weight"] = torch.zeros(40, 64)
    state["lm_head.bias"] = torch.zeros(40)
    with pytest.raises(CheckpointError, match="lm_head has 40 rows but config.json vocab_size=32"):
        load_model(_save_state(st_dir, tmp_path / "h", state))


def test_vocab_larger_than_model_is_refused(tiny, tmp_path):
    _, st_dir, _ = tiny
    d = _copy_meta(st_dir, tmp_path / "v")
    (d / "model.safetensors").write_bytes((st_dir / "model.safetensors").read_bytes())
    (d / "vocab.json").write_text(json.dumps({**ENGLISH_VOCAB, "Ä": 32, "Ö": 33}))
    with pytest.raises(CheckpointError, match="34 tokens but config.json vocab_size=32"):
        checkpoint.read_checkpoint(d)


class _Evil:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_without_running_code(tiny, tmp_path):
    hf, st_dir, _ = tiny
    marker = tmp_path / "pwned"
    d = _copy_meta(st_dir, tmp_path / "evil")
    state = legacy_state_dict(_hf_state(hf))
    state["lm_head.bias"] = _Evil(marker)
    torch.save(state, d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin: refused to load"):
        load_model(d)
    assert not marker.exists()
    # the file really is malicious: an unsafe load runs the payload
    torch.load(d / "pytorch_model.bin", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_safetensors_is_a_checkpoint_error(tiny, tmp_path, damage):
    _, st_dir, _ = tiny
    d = _copy_meta(st_dir, tmp_path / "c")
    data = (st_dir / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x07" * 1000)
    with pytest.raises(CheckpointError, match=r"model.safetensors: cannot read safetensors"):
        load_model(d)


def test_truncated_bin_is_a_checkpoint_error(tiny, tmp_path):
    _, _, bin_dir = tiny
    d = _copy_meta(bin_dir, tmp_path / "t")
    data = (bin_dir / "pytorch_model.bin").read_bytes()
    (d / "pytorch_model.bin").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin: cannot read PyTorch weights"):
        load_model(d)


def test_half_precision_weights_load(tiny, tmp_path):
    hf, st_dir, _ = tiny
    state = {k: v.half() for k, v in _hf_state(hf).items()}
    d = _save_state(st_dir, tmp_path / "fp16", state)
    model = load_model(d).model
    assert next(model.parameters()).dtype == torch.float32
    x = waveform(8000, seed=4)
    assert (model(x) - hf(x).logits).abs().max() < 0.05


@pytest.mark.parametrize("evil", [False, True])
def test_legacy_non_zip_pickle(tiny, tmp_path, evil):
    # pre-1.6 torch.save format cannot be memory-mapped: the loader retries without mmap, still weights_only
    hf, st_dir, _ = tiny
    marker = tmp_path / "pwned"
    d = _copy_meta(st_dir, tmp_path / "old")
    state = legacy_state_dict(_hf_state(hf))
    if evil:
        state["lm_head.bias"] = _Evil(marker)
    torch.save(state, d / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    if evil:
        with pytest.raises(CheckpointError, match="refused to load"):
            load_model(d)
        assert not marker.exists()
    else:
        x = waveform(8000, seed=5)
        assert torch.allclose(_logits(load_model(d).model, x), hf(x).logits.detach(), atol=1e-5)
