"""Translate between transformers config.json dicts and our frozen config dataclasses (torch-free).

Each family (sew.py, sew_d.py, wav2vec2.py) declares ONE table `field -> config.json key`; the dataclass
field defaults equal transformers' own defaults, so a key missing from config.json means what it means to
transformers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sewcli.errors import UnsupportedConfigError

C = TypeVar("C")

KNOWN_ACTIVATIONS = frozenset(
    {
        "gelu",
        "gelu_python",
        "gelu_new",
        "gelu_pytorch_tanh",
        "relu",
        "silu",
        "swish",
        "tanh",
        "sigmoid",
        "linear",
    }
)


def from_hf(cls: type[C], table: Mapping[str, str], hf: Mapping[str, Any], model_type: str) -> C:
    """Build `cls` from an HF config dict through `table`; lists become tuples; wrong model_type refused."""
    found = hf.get("model_type", model_type)
    if found != model_type:
        raise UnsupportedConfigError(f"config.json model_type={found!r}, expected {model_type!r}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = table.get(f.name, f.name)
        if key in hf and hf[key] is not None:
            value = hf[key]
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise UnsupportedConfigError(f"config.json has a value of the wrong type: {e}") from e


def to_hf(cfg: Any, table: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of `from_hf`: our fields under their config.json keys (tuples become lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        out[table.get(f.name, f.name)] = list(value) if isinstance(value, tuple) else value
    return out


def check_activation(key: str, name: str) -> None:
    """Raise UnsupportedConfigError naming `key` if activation `name` is not implemented."""
    if name not in KNOWN_ACTIVATIONS:
        raise UnsupportedConfigError(
            f"config.json {key}={name!r} is not supported; known: {', '.join(sorted(KNOWN_ACTIVATIONS))}"
        )


def check_conv(
    conv_dim: Sequence[int], conv_kernel: Sequence[int], conv_stride: Sequence[int], norm: str
) -> None:
    """Validate the feature-encoder geometry and norm kind."""
    if not (len(conv_dim) == len(conv_kernel) == len(conv_stride)) or not conv_dim:
        raise UnsupportedConfigError(
            f"config.json conv_dim/conv_kernel/conv_stride lengths differ: "
            f"{len(conv_dim)}/{len(conv_kernel)}/{len(conv_stride)}"
        )
    if norm not in ("group", "layer"):
        raise UnsupportedConfigError(
            f"config.json feat_extract_norm={norm!r} is not supported; use 'group' or 'layer'"
        )


def check_divisible(hidden: int, heads: int, groups: int) -> None:
    """hidden_size must split into heads and into positional-conv groups."""
    if heads < 1 or hidden % heads:
        raise UnsupportedConfigError(
            f"config.json hidden_size={hidden} is not divisible by num_attention_heads={heads}"
        )
    if groups < 1 or hidden % groups:
        raise UnsupportedConfigError(
            f"config.json hidden_size={hidden} is not divisible by num_conv_pos_embedding_groups={groups}"
        )
