"""Read a transformers-format checkpoint directory's metadata, without torch.

The CLI and the decoder need the family, the vocabulary and the preprocessing settings before (or
without) building a model, so this module only reads JSON and lists files. The rules follow transformers 5.23
(sew_spec.md sections 1.1, 5 and 7): the CTC blank is the tokenizer's pad token; special tokens missing
from vocab.json are appended as Wav2Vec2CTCTokenizer does (bos, eos, unk, pad order); waveform
normalisation is `(x - mean) / sqrt(var + 1e-7)` in float32.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sewcli.errors import CheckpointError, UnsupportedConfigError
from sewcli.records import FloatArray, Vocabulary

log = logging.getLogger(__name__)

# config.json "architectures"[0] (or model_type when absent) -> engine family.
ARCHITECTURES: dict[str, str] = {
    "SEWForCTC": "sew",
    "SEWDForCTC": "sew-d",
    "Wav2Vec2ForCTC": "wav2vec2",
    # augustgw/wav2vec2-ee training classes: `decoders.N` exit heads (sewcli/model/early_exit.py)
    "EEWav2Vec2ForCTC": "wav2vec2",
    "KDEEWav2Vec2ForCTC": "wav2vec2",
    "DKDEEWav2Vec2ForCTC": "wav2vec2",
    "ConfidenceWav2Vec2ForCTC": "wav2vec2",
    "ManualExitActivationWav2Vec2ForCTC": "wav2vec2",
    "ManualExitActivationConfidenceWav2Vec2ForCTC": "wav2vec2",
}
MODEL_TYPES: dict[str, str] = {"sew": "sew", "sew-d": "sew-d", "wav2vec2": "wav2vec2"}

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_FILE = "pytorch_model.bin"
PYTORCH_INDEX = "pytorch_model.bin.index.json"

NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm


@dataclass(frozen=True)
class FeatureConfig:
    """preprocessor_config.json (Wav2Vec2FeatureExtractor); defaults are the extractor's own."""

    sampling_rate: int = 16000
    do_normalize: bool = True
    return_attention_mask: bool = False
    padding_value: float = 0.0


@dataclass(frozen=True)
class CheckpointInfo:
    """Everything about a checkpoint directory except its tensors."""

    directory: Path
    family: str  # "sew" | "sew-d" | "wav2vec2"
    architecture: str
    config: dict[str, Any]  # the raw config.json (the family's Config.from_hf translates it)
    vocabulary: Vocabulary
    features: FeatureConfig
    weight_format: str  # "safetensors" | "pytorch"
    weight_files: tuple[Path, ...]


def _read_json(path: Path) -> Any:
    """Parse a JSON file or raise CheckpointError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read JSON ({e})") from e


def read_config(directory: Path) -> dict[str, Any]:
    """config.json as a dict."""
    path = Path(directory) / "config.json"
    cfg = _read_json(path)
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(cfg).__name__}")
    return cfg


def family_of(config: dict[str, Any], path: str = "config.json") -> tuple[str, str]:
    """(family, architecture) of a config dict; unsupported -> UnsupportedConfigError naming key+value."""
    archs = config.get("architectures")
    if archs:
        arch = archs[0] if isinstance(archs, list) else archs
        if arch not in ARCHITECTURES:
            raise UnsupportedConfigError(
                f"{path}: architectures={archs!r} is not supported; known: {', '.join(ARCHITECTURES)}"
            )
        return ARCHITECTURES[arch], str(arch)
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise UnsupportedConfigError(
            f"{path}: model_type={model_type!r} is not supported; known: {', '.join(MODEL_TYPES)}"
        )
    return MODEL_TYPES[str(model_type)], str(model_type)


def _token(value: Any) -> str | None:
    """A special-token entry: a string or an AddedToken dict {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def read_vocabulary(directory: Path) -> Vocabulary:
    """vocab.json + tokenizer_config.json (+ special_tokens_map.json, added_tokens.json) -> Vocabulary."""
    directory = Path(directory)
    vocab_path = directory / "vocab.json"
    if not vocab_path.exists():
        raise CheckpointError(f"{vocab_path}: vocabulary file is missing (needed for CTC decoding)")
    vocab = _read_json(vocab_path)
    if not isinstance(vocab, dict) or not vocab:
        raise CheckpointError(f"{vocab_path}: expected a non-empty JSON object token -> id")
    if all(isinstance(v, dict) for v in vocab.values()):
        raise UnsupportedConfigError(
            f"{vocab_path}: nested per-language vocabulary (target_lang) is not supported; languages: "
            f"{', '.join(sorted(vocab)[:8])}..."
        )
    tok_cfg: dict[str, Any] = {}
    if (directory / "tokenizer_config.json").exists():
        tok_cfg = _read_json(directory / "tokenizer_config.json") or {}
    special_map: dict[str, Any] = {}
    if (directory / "special_tokens_map.json").exists():
        special_map = _read_json(directory / "special_tokens_map.json") or {}

    def special(name: str, default: str) -> str:
        return _token(special_map.get(name)) or _token(tok_cfg.get(name)) or default

    bos, eos = special("bos_token", "<s>"), special("eos_token", "</s>")
    unk, pad = special("unk_token", "<unk>"), special("pad_token", "<pad>")
    delimiter = _token(tok_cfg.get("word_delimiter_token")) or "|"

    ids: dict[str, int] = {}
    for tok, idx in vocab.items():
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise CheckpointError(f"{vocab_path}: id of token {tok!r} is {idx!r}, expected an integer")
        ids[tok] = idx
    if (directory / "added_tokens.json").exists():
        for tok, idx in (_read_json(directory / "added_tokens.json") or {}).items():
            ids.setdefault(tok, int(idx))
    for idx, entry in (tok_cfg.get("added_tokens_decoder") or {}).items():
        tok = _token(entry)
        if tok is not None:
            ids.setdefault(tok, int(idx))
    for tok in (bos, eos, unk, pad):  # Wav2Vec2CTCTokenizer appends missing special tokens in this order
        if tok not in ids:
            ids[tok] = max(ids.values()) + 1
    by_id = {idx: tok for tok, idx in ids.items()}
    if len(by_id) != len(ids) or sorted(by_id) != list(range(len(by_id))):
        raise CheckpointError(f"{vocab_path}: token ids are not unique and contiguous from 0")
    tokens = tuple(by_id[i] for i in range(len(by_id)))
    return Vocabulary(
        tokens=tokens,
        blank_id=ids[pad],
        word_delimiter=delimiter if delimiter in ids else None,
        unk_token=unk,
        do_lower_case=bool(tok_cfg.get("do_lower_case", False)),
        special_tokens=frozenset({bos, eos, unk, pad}),
    )


def read_feature_config(directory: Path) -> FeatureConfig:
    """preprocessor_config.json -> FeatureConfig (defaults when the file is absent)."""
    path = Path(directory) / "preprocessor_config.json"
    if not path.exists():
        log.debug("%s missing; using Wav2Vec2FeatureExtractor defaults", path)
        return FeatureConfig()
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    rate = raw.get("sampling_rate", 16000)
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int | float)
        or not math.isfinite(rate)
        or rate != int(rate)
        or rate <= 0
    ):
        raise CheckpointError(f"{path}: sampling_rate must be a positive whole number of Hz, got {rate!r}")
    padding = raw.get("padding_value", 0.0)
    if isinstance(padding, bool) or not isinstance(padding, int | float):
        raise CheckpointError(f"{path}: padding_value must be a number, got {padding!r}")
    fc = FeatureConfig(
        sampling_rate=int(rate),
        do_normalize=bool(raw.get("do_normalize", True)),
        return_attention_mask=bool(raw.get("return_attention_mask", False)),
        padding_value=float(padding),
    )
    if raw.get("feature_size", 1) != 1:
        raise UnsupportedConfigError(
            f"{path}: feature_size={raw['feature_size']!r} is not supported; expected 1"
        )
    return fc


def _index_files(index_path: Path) -> tuple[Path, ...]:
    """Shard files of a *.index.json weight_map, in first-seen order; missing shards -> CheckpointError."""
    index = _read_json(index_path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_path}: no weight_map")
    names = list(dict.fromkeys(weight_map.values()))
    files = tuple(index_path.parent / n for n in names)
    missing = [str(f.name) for f in files if not f.exists()]
    if missing:
        raise CheckpointError(f"{index_path}: shard files missing: {', '.join(missing)}")
    return files


def find_weight_files(directory: Path) -> tuple[str, tuple[Path, ...]]:
    """(format, files): safetensors preferred, then pytorch pickles; single file or sharded via an index."""
    d = Path(directory)
    if (d / SAFETENSORS_FILE).exists():
        return "safetensors", (d / SAFETENSORS_FILE,)
    if (d / SAFETENSORS_INDEX).exists():
        return "safetensors", _index_files(d / SAFETENSORS_INDEX)
    if (d / PYTORCH_FILE).exists():
        return "pytorch", (d / PYTORCH_FILE,)
    if (d / PYTORCH_INDEX).exists():
        return "pytorch", _index_files(d / PYTORCH_INDEX)
    raise CheckpointError(
        f"{d}: no weights found (looked for {SAFETENSORS_FILE}, {SAFETENSORS_INDEX}, {PYTORCH_FILE}, "
        f"{PYTORCH_INDEX})"
    )


def read_checkpoint(directory: Path | str) -> CheckpointInfo:
    """Read config, vocabulary, preprocessor settings and the weight file list of a checkpoint directory."""
    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"{d}: not a checkpoint directory")
    config = read_config(d)
    family, arch = family_of(config, str(d / "config.json"))
    vocabulary = read_vocabulary(d)
    vocab_size = config.get("vocab_size")
    if isinstance(vocab_size, int):
        if len(vocabulary) > vocab_size:
            raise CheckpointError(
                f"{d / 'vocab.json'}: {len(vocabulary)} tokens but config.json vocab_size={vocab_size}"
            )
        if len(vocabulary) < vocab_size:  # ids the tokenizer does not know decode as the unk token
            pad = (vocabulary.unk_token,) * (vocab_size - len(vocabulary))
            vocabulary = Vocabulary(
                tokens=vocabulary.tokens + pad,
                blank_id=vocabulary.blank_id,
                word_delimiter=vocabulary.word_delimiter,
                unk_token=vocabulary.unk_token,
                do_lower_case=vocabulary.do_lower_case,
                special_tokens=vocabulary.special_tokens,
            )
    weight_format, files = find_weight_files(d)
    return CheckpointInfo(d, family, arch, config, vocabulary, read_feature_config(d), weight_format, files)


def normalize_waveform(x: FloatArray) -> FloatArray:
    """Zero-mean unit-variance normalisation of ONE utterance, as Wav2Vec2FeatureExtractor does (float32).

    Args:
        x: (samples,) waveform.
    Returns:
        (samples,) float32 `(x - mean) / sqrt(var + 1e-7)` (population variance).
    """
    x = np.asarray(x, dtype=np.float32)
    y: FloatArray = x - x.mean()  # the one new array: scaled in place (a window's worth less in flight)
    y /= np.sqrt(x.var() + NORM_EPS)
    return y
