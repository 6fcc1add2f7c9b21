"""Helpers for the engine tests: build random transformers models and save them as HF checkpoint directories.

transformers is the independent reference here (test-only dependency); nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

ENGLISH_VOCAB = {
    "<pad>": 0,
    "<s>": 1,
    "</s>": 2,
    "<unk>": 3,
    "|": 4,
    **{c: i + 5 for i, c in enumerate("ETAONIHSRDLUMWCFGYPBVK'XJQZ")},
}
SEW_TOKENIZER_CONFIG = {
    "unk_token": "<unk>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "pad_token": "<pad>",
    "do_lower_case": False,
    "word_delimiter_token": "|",
    "tokenizer_class": "Wav2Vec2CTCTokenizer",
}
SPECIAL_TOKENS_MAP = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
PREPROCESSOR = {
    "do_normalize": True,
    "feature_size": 1,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": False,
    "sampling_rate": 16000,
}

# sew_spec.md section 6, asapp/sew-tiny-100k-ft-ls100h
SEW_TINY = {
    "activation_dropout": 0.1,
    "apply_spec_augment": True,
    "architectures": ["SEWForCTC"],
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "classifier_proj_size": 256,
    "conv_bias": False,
    "conv_dim": [64, 128, 128, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512],
    "conv_kernel": [10, 3, 1, 3, 1, 3, 1, 3, 1, 2, 1, 2, 1],
    "conv_stride": [5, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1],
    "ctc_loss_reduction": "mean",
    "ctc_zero_infinity": False,
    "eos_token_id": 2,
    "feat_extract_activation": "gelu",
    "feat_extract_norm": "group",
    "feat_proj_dropout": 0.0,
    "final_dropout": 0.0,
    "hidden_act": "gelu",
    "hidden_dropout": 0.0,
    "hidden_size": 512,
    "initializer_range": 0.02,
    "intermediate_size": 2048,
    "layer_norm_eps": 1e-05,
    "layerdrop": 0.1,
    "mask_feature_length": 64,
    "mask_feature_prob": 0.5,
    "mask_time_length": 10,
    "mask_time_prob": 0.65,
    "model_type": "sew",
    "num_attention_heads": 8,
    "num_conv_pos_embedding_groups": 16,
    "num_conv_pos_embeddings": 31,
    "num_feat_extract_layers": 13,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "squeeze_factor": 2,
    "torch_dtype": "float32",
    "transformers_version": "4.12.0.dev0",
    "use_weighted_layer_sum": False,
    "vocab_size": 32,
}

# facebook/wav2vec2-base-960h
W2V2_BASE = {
    "activation_dropout": 0.1,
    "apply_spec_augment": True,
    "architectures": ["Wav2Vec2ForCTC"],
    "attention_dropout": 0.1,
    "bos_token_id": 1,
    "codevector_dim": 256,
    "contrastive_logits_temperature": 0.1,
    "conv_bias": False,
    "conv_dim": [512] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "ctc_loss_reduction": "sum",
    "ctc_zero_infinity": False,
    "diversity_loss_weight": 0.1,
    "do_stable_layer_norm": False,
    "eos_token_id": 2,
    "feat_extract_activation": "gelu",
    "feat_extract_dropout": 0.0,
    "feat_extract_norm": "group",
    "feat_proj_dropout": 0.1,
    "feat_quantizer_dropout": 0.0,
    "final_dropout": 0.1,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout": 0.1,
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "layerdrop": 0.1,
    "mask_feature_length": 10,
    "mask_feature_prob": 0.0,
    "mask_time_length": 10,
    "mask_time_prob": 0.05,
    "model_type": "wav2vec2",
    "num_attention_heads": 12,
    "num_codevector_groups": 2,
    "num_codevectors_per_group": 320,
    "num_conv_pos_embedding_groups": 16,
    "num_conv_pos_embeddings": 128,
    "num_feat_extract_layers": 7,
    "num_hidden_layers": 12,
    "num_negatives": 100,
    "pad_token_id": 0,
    "proj_codevector_dim": 256,
    "transformers_version": "4.7.0.dev0",
    "vocab_size": 32,
}

# jonatasgrosman/wav2vec2-large-xlsr-53-german (stable layer norm, conv bias, vocab 36)
XLSR_LARGE = {
    "activation_dropout": 0.05,
    "apply_spec_augment": True,
    "architectures": ["Wav2Vec2ForCTC"],
    "attention_dropout": 0.1,
    "bos_token_id": 1,
    "conv_bias": True,
    "conv_dim": [512] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "ctc_loss_reduction": "mean",
    "ctc_zero_infinity": True,
    "do_stable_layer_norm": True,
    "eos_token_id": 2,
    "feat_extract_activation": "gelu",
    "feat_extract_dropout": 0.0,
    "feat_extract_norm": "layer",
    "feat_proj_dropout": 0.05,
    "final_dropout": 0.1,
    "gradient_checkpointing": True,
    "hidden_act": "gelu",
    "hidden_dropout": 0.05,
    "hidden_dropout_prob": 0.1,
    "hidden_size": 1024,
    "initializer_range": 0.02,
    "intermediate_size": 4096,
    "layer_norm_eps": 1e-05,
    "layerdrop": 0.05,
    "mask_feature_length": 10,
    "mask_feature_prob": 0.0,
    "mask_time_length": 10,
    "mask_time_prob": 0.05,
    "model_type": "wav2vec2",
    "num_attention_heads": 16,
    "num_conv_pos_embedding_groups": 16,
    "num_conv_pos_embeddings": 128,
    "num_feat_extract_layers": 7,
    "num_hidden_layers": 24,
    "pad_token_id": 0,
    "transformers_version": "4.5.0.dev0",
    "vocab_size": 36,
}

# A community XLSR-style vocabulary: [UNK]/[PAD] at the end, <s> and </s> appended by the tokenizer -> 36 ids.
XLSR_VOCAB = {
    **{c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyzäöüß'")},
    "|": 31,
    "[UNK]": 32,
    "[PAD]": 33,
}
XLSR_TOKENIZER_CONFIG = {
    "unk_token": "[UNK]",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "pad_token": "[PAD]",
    "do_lower_case": False,
    "word_delimiter_token": "|",
}


def hf_model(kind: str, config: dict[str, Any], seed: int = 0, **overrides: Any) -> torch.nn.Module:
    """A random-weight transformers CTC model in eval mode (`kind` = "sew" | "sew-d" | "wav2vec2")."""
    import transformers

    cfg_cls, model_cls = {
        "sew": (transformers.SEWConfig, transformers.SEWForCTC),
        "sew-d": (transformers.SEWDConfig, transformers.SEWDForCTC),
        "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2ForCTC),
    }[kind]
    cfg = {
        k: v
        for k, v in config.items()
        if k not in ("architectures", "transformers_version", "torch_dtype", "model_type")
    }
    cfg.update(overrides)
    torch.manual_seed(seed)
    model = model_cls(cfg_cls(**cfg))
    return model.eval()


def legacy_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename `parametrizations.weight.original0/1` to the 2021 `weight_g`/`weight_v` naming."""
    out = {}
    for k, v in state.items():
        k = k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        )
        out[k] = v.clone()
    return out


def write_metadata(
    directory: Path,
    vocab: dict[str, int] = ENGLISH_VOCAB,
    tokenizer_config: dict[str, Any] = SEW_TOKENIZER_CONFIG,
    preprocessor: dict[str, Any] = PREPROCESSOR,
) -> None:
    """vocab.json, tokenizer_config.json, special_tokens_map.json, preprocessor_config.json."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    specials = {k: tokenizer_config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (directory / "special_tokens_map.json").write_text(json.dumps(specials))
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor))


def save_both(model: torch.nn.Module, root: Path, legacy: bool = True, **metadata: Any) -> tuple[Path, Path]:
    """Save as (safetensors via save_pretrained, pytorch_model.bin with weight_g/weight_v) directories."""
    st_dir, bin_dir = root / "st", root / "bin"
    model.save_pretrained(st_dir)
    write_metadata(st_dir, **metadata)
    if not legacy:
        return st_dir, bin_dir
    bin_dir.mkdir(parents=True)
    (bin_dir / "config.json").write_text((st_dir / "config.json").read_text())
    torch.save(legacy_state_dict(model.state_dict()), bin_dir / "pytorch_model.bin")
    write_metadata(bin_dir, **metadata)
    return st_dir, bin_dir


def waveform(samples: int, seed: int) -> torch.Tensor:
    """A deterministic test signal (batch 1): modulated tone plus noise, normalised like the extractor."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000.0
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.1 * rng.standard_normal(
        samples
    )
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    return torch.from_numpy(x.astype(np.float32))[None]


def max_diff_valid(a: torch.Tensor, b: torch.Tensor, frames: list[int] | None = None) -> float:
    """Max |a-b| over each row's first `frames[i]` frames (all frames when None)."""
    if frames is None:
        return float((a - b).abs().max())
    return max(float((a[i, :n] - b[i, :n]).abs().max()) for i, n in enumerate(frames))


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Run a test module with one intra-op thread (import this fixture into the module to activate it)."""
    # On the shared, oversubscribed 2-core box, OpenMP barriers between 2 threads cost more than they gain.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def with_cpu_kernels(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the model with the kernels that fp32 CPU inference runs (sewcli/inference.py): the waveform
    convs as GEMMs, q/k/v as one GEMM."""
    import copy

    from sewcli.inference import cpu_kernels

    fast: torch.nn.Module = cpu_kernels(copy.deepcopy(model), "fp32")
    return fast
