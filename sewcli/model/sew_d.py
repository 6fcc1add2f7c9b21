"""SEW-D (Squeezed and Efficient Wav2vec with Disentangled attention) CTC model in plain PyTorch.

SEW-D is SEW's front end (conv feature encoder, strided positional conv + average pool "squeeze", upsample
back to the CNN frame rate) around a DeBERTa-v2 encoder: post-LN layers whose attention adds content->position
(c2p) and position->content (p2c) terms built from log-bucketed relative positions (sew_spec.md section 4,
pitfalls P1, P2, P6, P8). Module attribute names equal the transformers checkpoint keys
(`sew_d.encoder.encoder.layer.N...`), so a state dict loads without renaming. The numerics follow transformers
5.23 `modeling_sew_d.py` operation by operation (scale applied to the keys before the matmul, float32 bucket
arithmetic, XSoftmax zeroing masked probabilities), and the logits come out bit-identical to
the reference in the tested cases.

Inference speed: the relative-position projections `query_proj(LN(rel_embeddings))` and
`key_proj(LN(rel_embeddings))` do not depend on the input (2 x 512 x H^2 MACs per layer), so in eval mode
without autograd they are computed once and cached; the cache is keyed on the parameters' storage and version
counters, so `train()`, `load_state_dict`, `.to()` and in-place edits all invalidate it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sewcli.errors import UnsupportedConfigError
from sewcli.model.common import (
    PositionalConvEmbedding,
    SqueezedBody,
    activation,
    conv_output_length,
    init_weights,
    min_input_length,
)
from sewcli.model.hfconfig import check_activation, check_conv, check_divisible
from sewcli.model.sew import SEWUpsampling

_POS_ATT_TYPES = frozenset({"p2c", "c2p"})
_REL_NORMS = frozenset({"layer_norm", "none"})


def _ints(value: Any) -> tuple[int, ...]:
    """Convert a JSON list of ints to a tuple (rejecting scalars and strings)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError("expected a list of integers")
    return tuple(_int(v) for v in value)


def _int(value: Any) -> int:
    """Convert a JSON integer (bools and non-integral floats rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise TypeError("expected an integer")
    return int(value)


def _float(value: Any) -> float:
    """Convert a JSON number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("expected a number")
    return float(value)


def _bool(value: Any) -> bool:
    """Convert a JSON boolean."""
    if not isinstance(value, bool):
        raise TypeError("expected true or false")
    return value


def _str(value: Any) -> str:
    """Convert a JSON string."""
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _split_bar(value: Any) -> tuple[str, ...]:
    """A DeBERTa option given as a list or as a "a|b" string -> tuple of lower-case names."""
    if value is None:
        return ()
    items = value.split("|") if isinstance(value, str) else list(value)
    if not all(isinstance(x, str) for x in items):
        raise TypeError("expected a list of strings")
    return tuple(x.strip().lower() for x in items if x.strip())


def _opt_int(value: Any) -> int | None:
    """Convert an optional JSON integer."""
    return None if value is None else _int(value)


# The ONE translation table between transformers' SEWDConfig (config.json) and SEWDConfig below: field name
# (equal to the HF key) -> converter. Keys absent from config.json take the dataclass default, which equals
# the default of transformers 5.23 `SEWDConfig` (tests/test_engine_sew_d.py checks this against transformers).
_HF_FIELDS: dict[str, Callable[[Any], Any]] = {
    "vocab_size": _int,
    "hidden_size": _int,
    "num_hidden_layers": _int,
    "num_attention_heads": _int,
    "attention_head_size": _opt_int,
    "intermediate_size": _int,
    "squeeze_factor": _int,
    "max_position_embeddings": _int,
    "max_relative_positions": _int,
    "position_buckets": _int,
    "share_att_key": _bool,
    "relative_attention": _bool,
    "pos_att_type": _split_bar,
    "norm_rel_ebd": _split_bar,
    "hidden_act": _str,
    "activation_dropout": _float,
    "attention_dropout": _float,
    "feat_proj_dropout": _float,
    "final_dropout": _float,
    "initializer_range": _float,
    "layer_norm_eps": _float,
    "feature_layer_norm_eps": _float,
    "feat_extract_norm": _str,
    "feat_extract_activation": _str,
    "conv_dim": _ints,
    "conv_stride": _ints,
    "conv_kernel": _ints,
    "conv_bias": _bool,
    "num_conv_pos_embeddings": _int,
    "num_conv_pos_embedding_groups": _int,
    "apply_spec_augment": _bool,
    "mask_time_prob": _float,
    "mask_time_length": _int,
    "mask_time_min_masks": _int,
    "mask_feature_prob": _float,
    "mask_feature_length": _int,
    "mask_feature_min_masks": _int,
    "pad_token_id": _opt_int,
}

# Keys that would change the network but that this engine does not implement: HF key -> "is unsupported".
_UNSUPPORTED: dict[str, Callable[[Any], bool]] = {
    "conv_kernel_size": lambda v: bool(v) and v > 0,  # DeBERTa ConvLayer after layer 0 (never used by SEW-D)
    "add_adapter": lambda v: bool(v),
}


@dataclass(frozen=True)
class SEWDConfig:
    """The architecture of a SEW-D CTC model; defaults equal transformers 5.23 `SEWDConfig` defaults."""

    vocab_size: int = 32
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    attention_head_size: int | None = None  # None -> hidden_size // num_attention_heads (all released models)
    intermediate_size: int = 3072
    squeeze_factor: int = 2
    max_position_embeddings: int = 512
    max_relative_positions: int = -1  # < 1 -> max_position_embeddings
    position_buckets: int = 256
    share_att_key: bool = True
    relative_attention: bool = True
    pos_att_type: tuple[str, ...] = ("p2c", "c2p")
    norm_rel_ebd: tuple[str, ...] = ("layer_norm",)
    hidden_act: str = "gelu_python"
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    feat_proj_dropout: float = 0.0
    final_dropout: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-7  # DeBERTa LNs (attention/output/rel-embedding); 1e-5 in pre-2022 hub copies
    feature_layer_norm_eps: float = 1e-5  # the post-CNN LayerNorm `sew_d.layer_norm`
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    conv_dim: tuple[int, ...] = (64, 128, 128, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512)
    conv_stride: tuple[int, ...] = (5, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1)
    conv_kernel: tuple[int, ...] = (10, 3, 1, 3, 1, 3, 1, 3, 1, 2, 1, 2, 1)
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    pad_token_id: int | None = 0

    def __post_init__(self) -> None:
        """Reject what this engine does not implement (UnsupportedConfigError names key and value)."""
        if not self.relative_attention:
            _unsupported("relative_attention", self.relative_attention, "only true is implemented")
        bad = [t for t in self.pos_att_type if t not in _POS_ATT_TYPES]
        if bad:
            _unsupported("pos_att_type", list(self.pos_att_type), "allowed entries are 'p2c' and 'c2p'")
        if any(n not in _REL_NORMS for n in self.norm_rel_ebd):
            _unsupported("norm_rel_ebd", "|".join(self.norm_rel_ebd), "allowed: 'layer_norm' or 'none'")
        check_conv(self.conv_dim, self.conv_kernel, self.conv_stride, self.feat_extract_norm)
        check_activation("hidden_act", self.hidden_act)
        check_activation("feat_extract_activation", self.feat_extract_activation)
        check_divisible(self.hidden_size, self.num_attention_heads, self.num_conv_pos_embedding_groups)
        if self.attention_head_size not in (None, self.hidden_size // self.num_attention_heads):
            # transformers builds attention.output.dense as Linear(hidden, hidden): other head sizes fail
            _unsupported("attention_head_size", self.attention_head_size, "must be hidden_size / heads")
        if self.squeeze_factor < 1:
            _unsupported("squeeze_factor", self.squeeze_factor, "must be >= 1")
        if self.vocab_size < 1:
            _unsupported("vocab_size", self.vocab_size, "must be >= 1")
        if self.position_buckets <= 0 and self.max_position <= 0:
            _unsupported("max_position_embeddings", self.max_position_embeddings, "must be >= 1")

    @property
    def head_size(self) -> int:
        """Per-head width d of the attention."""
        return self.attention_head_size or self.hidden_size // self.num_attention_heads

    @property
    def max_position(self) -> int:
        """Largest relative position of the log buckets: max_relative_positions or max_position_embeddings."""
        return (
            self.max_relative_positions if self.max_relative_positions >= 1 else self.max_position_embeddings
        )

    @property
    def att_span(self) -> int:
        """Half the number of relative-embedding rows in use: position_buckets, else max_position."""
        return self.position_buckets if self.position_buckets > 0 else self.max_position

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Input samples per output logit frame (product of the conv strides; 320 for released models)."""
        return math.prod(self.conv_stride)

    @classmethod
    def from_hf(cls, hf: Mapping[str, Any]) -> SEWDConfig:
        """Translate a transformers config.json dict (model_type "sew-d") through the one field table."""
        model_type = hf.get("model_type", "sew-d")
        if model_type != "sew-d":
            _unsupported("model_type", model_type, "expected 'sew-d'")
        for key, is_unsupported in _UNSUPPORTED.items():
            if key in hf and hf[key] is not None and is_unsupported(hf[key]):
                _unsupported(key, hf[key], "not implemented by this engine")
        values: dict[str, Any] = {}
        for key, convert in _HF_FIELDS.items():
            if key not in hf:
                continue
            try:
                values[key] = convert(hf[key])
            except (TypeError, ValueError) as e:
                _unsupported(key, hf[key], str(e))
        return cls(**values)

    def to_hf(self) -> dict[str, Any]:
        """A config.json dict that transformers 5.23 loads as the same SEWDForCTC (every field written)."""
        out: dict[str, Any] = {"model_type": "sew-d", "architectures": ["SEWDForCTC"]}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "attention_head_size" and value is None:
                continue  # HF uses getattr(config, "attention_head_size", default): absent means default
            if f.name == "norm_rel_ebd":
                value = "|".join(value) or "none"
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["num_feat_extract_layers"] = len(self.conv_dim)
        return out


def _unsupported(key: str, value: Any, why: str) -> None:
    """Raise the one-line UnsupportedConfigError for config.json key `key`."""
    raise UnsupportedConfigError(f"config.json: unsupported SEW-D setting {key}={value!r} ({why})")


# ------------------------------------------------------------------------------------------------------------
# DeBERTa-v2 relative positions and disentangled attention


def make_log_bucket_position(relative_pos: Tensor, bucket_size: int, max_position: int) -> Tensor:
    """Map signed relative distances to log-spaced buckets exactly as DeBERTa-v2 (float32 math).

    Args:
        relative_pos: integer tensor of query-minus-key distances, any shape.
        bucket_size: number of buckets (position_buckets, 256); |r| < bucket_size // 2 is kept as is.
        max_position: the distance mapped to the last bucket (512).
    Returns:
        float32 tensor of the same shape holding integral bucket values, within +-(bucket_size-1) for
        |r| < max_position (larger distances grow logarithmically; the caller clamps the index).
    """
    sign = torch.sign(relative_pos)
    mid = bucket_size // 2
    abs_pos = torch.where(
        (relative_pos < mid) & (relative_pos > -mid),
        torch.tensor(mid - 1).type_as(relative_pos),
        torch.abs(relative_pos),
    )
    log_pos = (
        torch.ceil(
            torch.log(abs_pos.to(torch.float32) / mid)
            / torch.log(torch.tensor((max_position - 1) / mid, dtype=torch.float32))
            * (mid - 1)
        )
        + mid
    )
    return torch.where(abs_pos <= mid, relative_pos.to(torch.float32), log_pos * sign)


def build_relative_position(length: int, bucket_size: int, max_position: int, device: torch.device) -> Tensor:
    """Relative position ids rel[i, j] = bucket(i - j) for a square self-attention of `length` frames.

    Returns:
        int64 tensor (length, length).
    """
    ids = torch.arange(length, device=device)
    rel = ids[:, None] - ids[None, :]  # (T, T): query i minus key j
    if bucket_size > 0 and max_position > 0:
        rel = make_log_bucket_position(rel, bucket_size, max_position)
    return rel.to(torch.long)


@dataclass(frozen=True)
class RelativeIndex:
    """Where each (query, key) pair of T frames reads the relative embeddings, shared by all layers.

    `c2p[i, j]` = clamp(bucket(i - j) + S, 0, 2S - 1) and `p2c[i, j]` = clamp(-bucket(i - j) + S, 0, 2S - 1)
    (S = att_span), both shifted by -lo: only embedding rows lo..hi-1 are reachable from T frames (for T
    below the bucket range, a band around S), so the position projections are multiplied for those rows only.
    """

    c2p: Tensor  # int64 (T, T)
    p2c: Tensor  # int64 (T, T)
    lo: int
    hi: int

    @classmethod
    def build(cls, frames: int, config: SEWDConfig, device: torch.device) -> RelativeIndex:
        """Indices for self-attention over `frames` frames."""
        span = config.att_span
        rel = build_relative_position(frames, config.position_buckets, config.max_position, device)  # (T, T)
        c2p = torch.clamp(rel + span, 0, 2 * span - 1)  # (T, T)
        p2c = torch.clamp(-rel + span, 0, 2 * span - 1)  # (T, T)
        lo = int(torch.minimum(c2p.min(), p2c.min()))
        hi = int(torch.maximum(c2p.max(), p2c.max())) + 1
        return cls(c2p - lo, p2c - lo, lo, hi)


class DisentangledSelfAttention(nn.Module):
    """DeBERTa-v2 self-attention with c2p/p2c relative terms (keys `attention.self.*`)."""

    def __init__(self, config: SEWDConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        all_head = self.num_heads * self.head_size
        hidden = config.hidden_size
        self.query_proj = nn.Linear(hidden, all_head, bias=True)
        self.key_proj = nn.Linear(hidden, all_head, bias=True)
        self.value_proj = nn.Linear(hidden, all_head, bias=True)
        self.share_att_key = config.share_att_key
        self.pos_att_type = config.pos_att_type
        self.att_span = config.att_span
        if not self.share_att_key:
            if "c2p" in self.pos_att_type:
                self.pos_key_proj = nn.Linear(hidden, all_head, bias=True)
            if "p2c" in self.pos_att_type:
                self.pos_query_proj = nn.Linear(hidden, all_head, bias=True)
        self.scale_factor = 1 + len(set(self.pos_att_type))
        self.pos_dropout = nn.Dropout(config.activation_dropout)
        self.dropout = nn.Dropout(config.attention_dropout)

    def _heads(self, x: Tensor) -> Tensor:
        """(B, T, nh*d) -> (B, nh, T, d)."""
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_size).transpose(1, 2)  # (B, T, nh, d) -> (B, nh, T, d)

    def project_positions(self, rel_embeddings: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Project the (normalised) relative embeddings into per-head position keys (c2p) and queries (p2c).

        Args:
            rel_embeddings: (2*att_span, H), already LayerNormed if the config says so.
        Returns:
            (pos_key, pos_query), each (nh, 2*att_span, d) or None when its term is not in pos_att_type.
        """
        rel = self.pos_dropout(rel_embeddings[: 2 * self.att_span]).unsqueeze(0)  # (1, 2S, H)
        pos_key = pos_query = None
        if "c2p" in self.pos_att_type:
            proj = self.key_proj if self.share_att_key else self.pos_key_proj
            pos_key = self._heads(proj(rel))[0]  # (nh, 2S, d)
        if "p2c" in self.pos_att_type:
            proj = self.query_proj if self.share_att_key else self.pos_query_proj
            pos_query = self._heads(proj(rel))[0]  # (nh, 2S, d)
        return pos_key, pos_query

    def forward(
        self,
        hidden: Tensor,
        key_mask: Tensor | None,
        index: RelativeIndex,
        positions: tuple[Tensor | None, Tensor | None],
    ) -> Tensor:
        """Disentangled attention.

        Args:
            hidden: (batch, frames, hidden).
            key_mask: bool (batch, frames), True for valid keys; None when every key is valid.
            index: gather indices of the relative embeddings for these frames (`RelativeIndex.build`).
            positions: `project_positions` output for this layer.
        Returns:
            context (batch, frames, nh*d), before `attention.output`.
        """
        q = self._heads(self.query_proj(hidden))  # (B, nh, T, d)
        k = self._heads(self.key_proj(hidden))  # (B, nh, T, d)
        v = self._heads(self.value_proj(hidden))  # (B, nh, T, d)
        scale = torch.sqrt(torch.tensor(self.head_size, dtype=torch.float) * self.scale_factor).to(q.dtype)
        scores = torch.matmul(q, k.transpose(-1, -2) / scale)  # (B, nh, T, T); HF scales k before the matmul
        rel_att = self._relative_scores(q, k, index, positions, scale)
        if rel_att is not None:
            scores = scores + rel_att
        if key_mask is not None:
            masked = ~key_mask[
                :, None, None, :
            ]  # (B, 1, 1, T) broadcast over heads and queries (5.23: keys only)
            scores = scores.masked_fill(masked, torch.finfo(scores.dtype).min)
            probs = torch.softmax(scores, dim=-1).masked_fill(masked, 0.0)  # XSoftmax: masked probs exactly 0
        else:
            probs = torch.softmax(scores, dim=-1)
        probs = self.dropout(probs)
        ctx = torch.matmul(probs, v)  # (B, nh, T, d)
        b, _, t, _ = ctx.shape
        return ctx.transpose(1, 2).reshape(b, t, self.num_heads * self.head_size)  # (B, T, nh*d)

    def _relative_scores(
        self,
        q: Tensor,
        k: Tensor,
        index: RelativeIndex,
        positions: tuple[Tensor | None, Tensor | None],
        scale: Tensor,
    ) -> Tensor | None:
        """c2p + p2c score terms (B, nh, T, T), each divided by the same sqrt(d * scale_factor)."""
        pos_key, pos_query = positions
        b, nh, t, _ = q.shape
        score: Tensor | None = None
        if pos_key is not None:
            band = pos_key[:, index.lo : index.hi]  # (nh, R, d): only the embedding rows T frames can reach
            c2p = torch.matmul(q, band.transpose(-1, -2))  # (B, nh, T, R)
            c2p = torch.gather(c2p, -1, index.c2p.expand(b, nh, t, t))  # (B, nh, T, T): q_i . Kr[delta(i, j)]
            score = c2p / scale
        if pos_query is not None:
            band = pos_query[:, index.lo : index.hi]  # (nh, R, d)
            p2c = torch.matmul(k, band.transpose(-1, -2))  # (B, nh, T, R)
            p2c = torch.gather(p2c, -1, index.p2c.expand(b, nh, t, t)).transpose(-1, -2)  # (B, nh, Tq, Tk)
            score = p2c / scale if score is None else score + p2c / scale
        return score


class SelfOutput(nn.Module):
    """`attention.output`: dense, dropout, residual, LayerNorm (eps layer_norm_eps)."""

    def __init__(self, config: SEWDConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.activation_dropout)

    def forward(self, hidden: Tensor, residual: Tensor) -> Tensor:
        """(B, T, nh*d), (B, T, H) -> (B, T, H)."""
        out: Tensor = self.LayerNorm(self.dropout(self.dense(hidden)) + residual)
        return out


class Attention(nn.Module):
    """`attention`: disentangled self-attention followed by its output block."""

    def __init__(self, config: SEWDConfig) -> None:
        super().__init__()
        self.self = DisentangledSelfAttention(config)
        self.output = SelfOutput(config)

    def forward(
        self,
        hidden: Tensor,
        key_mask: Tensor | None,
        index: RelativeIndex,
        positions: tuple[Tensor | None, Tensor | None],
    ) -> Tensor:
        """(B, T, H) -> (B, T, H)."""
        out: Tensor = self.output(self.self(hidden, key_mask, index, positions), hidden)
        return out


class Intermediate(nn.Module):
    """`intermediate`: dense H -> I and hidden_act."""

    def __init__(self, config: SEWDConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = activation(config.hidden_act, "hidden_act")

    def forward(self, hidden: Tensor) -> Tensor:
        """(B, T, H) -> (B, T, I)."""
        out: Tensor = self.intermediate_act_fn(self.dense(hidden))
        return out


class Output(nn.Module):
    """`output`: dense I -> H, dropout, residual, LayerNorm (eps layer_norm_eps)."""

    def __init__(self, config: SEWDConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.activation_dropout)

    def forward(self, hidden: Tensor, residual: Tensor) -> Tensor:
        """(B, T, I), (B, T, H) -> (B, T, H)."""
        out: Tensor = self.LayerNorm(self.dropout(self.dense(hidden)) + residual)
        return out


class Layer(nn.Module):
    """One post-LN DeBERTa layer (`encoder.encoder.layer.N`)."""

    def __init__(self, config: SEWDConfig) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = Output(config)

    def forward(
        self,
        hidden: Tensor,
        key_mask: Tensor | None,
        index: RelativeIndex,
        positions: tuple[Tensor | None, Tensor | None],
    ) -> Tensor:
        """(B, T, H) -> (B, T, H)."""
        attn = self.attention(hidden, key_mask, index, positions)
        out: Tensor = self.output(self.intermediate(attn), attn)
        return out


class TransformerEncoder(nn.Module):
    """The DeBERTa-v2 encoder (`encoder.encoder`): layers, rel_embeddings and their LayerNorm."""

    def __init__(self, config: SEWDConfig) -> None:
        super().__init__()
        self.config = config
        self.layer = nn.ModuleList([Layer(config) for _ in range(config.num_hidden_layers)])
        self.rel_embeddings = nn.Embedding(2 * config.att_span, config.hidden_size)
        self.norm_rel = "layer_norm" in config.norm_rel_ebd
        if self.norm_rel:
            self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self._cache_key: tuple[object, ...] | None = None
        self._cache: list[tuple[Tensor | None, Tensor | None]] = []
        self.register_load_state_dict_post_hook(lambda module, keys: module.clear_cache())  # type: ignore[no-untyped-call]

    def layers(self) -> list[Layer]:
        """The layers, typed."""
        return [cast(Layer, m) for m in self.layer]

    def rel_embedding(self) -> Tensor:
        """The relative embedding table (2*att_span, H), LayerNormed when norm_rel_ebd says so."""
        rel = self.rel_embeddings.weight
        return self.LayerNorm(rel) if self.norm_rel else rel

    def position_projections(self) -> list[tuple[Tensor | None, Tensor | None]]:
        """Per-layer (pos_key, pos_query); cached in eval mode when autograd is off (input-independent)."""
        key = None if self.training or torch.is_grad_enabled() else self._parameter_key()
        if key is None:
            rel = self.rel_embedding()
            return [layer.attention.self.project_positions(rel) for layer in self.layers()]
        if key != self._cache_key:
            with torch.no_grad():
                rel = self.rel_embedding()
                self._cache = [layer.attention.self.project_positions(rel) for layer in self.layers()]
            self._cache_key = key
        return self._cache

    def _parameter_key(self) -> tuple[object, ...] | None:
        """Identity of every parameter: storage, version counter, dtype, device; None = do not cache.

        Parameters created under torch.inference_mode have no version counter, so an in-place update of them
        could not be detected: such models recompute the projections on every forward.
        """
        parts: list[object] = [torch.is_inference_mode_enabled()]
        for p in self.parameters():
            if p.is_inference():
                return None
            parts.append((p.data_ptr(), p._version, p.dtype, p.device))
        return tuple(parts)

    def clear_cache(self) -> None:
        """Drop the cached position projections (done automatically when parameters change)."""
        self._cache_key = None
        self._cache = []

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> TransformerEncoder:
        """`.to()`, `.half()`, `.cuda()`...: drop the cache (a freed storage address may be reused)."""
        self.clear_cache()
        return cast(TransformerEncoder, super()._apply(fn, recurse))  # type: ignore[no-untyped-call]

    def train(self, mode: bool = True) -> TransformerEncoder:
        """Switch mode and drop the eval-mode cache."""
        self.clear_cache()
        return super().train(mode)

    def forward(self, hidden: Tensor, key_mask: Tensor | None) -> Tensor:
        """Run every layer.

        Args:
            hidden: (batch, frames, hidden) squeezed-rate features.
            key_mask: bool (batch, frames), True for valid frames; None when all are valid.
        Returns:
            (batch, frames, hidden).
        """
        index = RelativeIndex.build(hidden.shape[1], self.config, hidden.device)
        positions = self.position_projections()
        for layer, pos in zip(self.layer, positions, strict=True):
            hidden = layer(hidden, key_mask, index, pos)
        return hidden


# ------------------------------------------------------------------------------------------------------------
# SEW front end around the DeBERTa encoder


class SEWDEncoder(nn.Module):
    """`encoder`: squeeze (strided positional conv + average pool), DeBERTa layers, upsample."""

    def __init__(self, config: SEWDConfig) -> None:
        super().__init__()
        self.config = config
        self.pos_conv_embed = PositionalConvEmbedding(
            config.hidden_size,
            config.num_conv_pos_embeddings,
            config.num_conv_pos_embedding_groups,
            config.feat_extract_activation,
            stride=config.squeeze_factor,
        )
        self.pool = nn.AvgPool1d(config.squeeze_factor, config.squeeze_factor)
        self.encoder = TransformerEncoder(config)
        self.upsample = SEWUpsampling(
            config.hidden_size, config.squeeze_factor, config.feat_extract_activation
        )

    def forward(self, hidden: Tensor, mask: Tensor | None) -> Tensor:
        """Squeeze, encode and unsqueeze.

        Args:
            hidden: (batch, frames, hidden) projected CNN features.
            mask: bool (batch, frames), True for valid frames; None when all are valid.
        Returns:
            (batch, frames, hidden); when frames is not a multiple of squeeze_factor, the tail frames are 0.
        """
        s = self.config.squeeze_factor
        frames = hidden.shape[1]
        key_mask = None
        if mask is not None:
            hidden = hidden.masked_fill(~mask[:, :, None], 0.0)  # padded frames feed zeros to conv and pool
            # transformers 5.23 pools the mask with max_pool1d: ceil(len/s) valid of floor(T/s) (spec P6)
            key_mask = F.max_pool1d(mask[:, None, :].float(), s, s)[:, 0, :].bool()  # (B, T//s)
        x = hidden.transpose(1, 2)  # (B, H, T)
        pooled = self.pool(x)  # (B, H, T//s)
        pos = self.pos_conv_embed(x)  # (B, H, >= T//s)
        x = (pooled + pos[..., : pooled.shape[-1]]).transpose(1, 2)  # (B, T//s, H)
        x = self.encoder(x, key_mask)
        x = self.upsample(x)  # (B, (T//s)*s, H)
        if x.shape[1] < frames:
            x = F.pad(x, (0, 0, 0, frames - x.shape[1]))  # zero frames at the end, as transformers does
        return x


class SEWDModel(SqueezedBody):
    """The SEW-D body (`sew_d.*`): the shared squeezed body with the DeBERTa encoder."""

    drop_full_mask = True
    encoder: SEWDEncoder

    def __init__(self, config: SEWDConfig) -> None:
        super().__init__(config, config.feature_layer_norm_eps, SEWDEncoder(config))


class SEWDForCTC(nn.Module):
    """SEW-D with a CTC head: keys `sew_d.*` and `lm_head.*`, logits at the CNN frame rate (20 ms)."""

    def __init__(self, config: SEWDConfig) -> None:
        super().__init__()
        self.config = config
        self.sew_d = SEWDModel(config)
        self.dropout = nn.Dropout(config.final_dropout)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.reset_parameters()

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Input samples per logit frame (320)."""
        return self.config.inputs_to_logits_ratio

    @property
    def min_input_samples(self) -> int:
        """Fewest samples accepted: the squeeze needs squeeze_factor CNN frames (720 for released models)."""
        return min_input_length(self.config.squeeze_factor, self.config.conv_kernel, self.config.conv_stride)

    def output_lengths(self, sample_lengths: Tensor) -> Tensor:
        """Logit frames for each input length (long tensor in, long tensor out)."""
        return conv_output_length(sample_lengths.long(), self.config.conv_kernel, self.config.conv_stride)

    def reset_parameters(self) -> None:
        """transformers-like random initialisation (for training from scratch; loading overwrites it)."""
        init_weights(self, self.config.initializer_range)
        nn.init.normal_(
            self.sew_d.encoder.encoder.rel_embeddings.weight, mean=0.0, std=self.config.initializer_range
        )
        self.sew_d.encoder.encoder.clear_cache()

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """CTC logits.

        Args:
            input_values: (batch, samples) float waveform (>= min_input_samples samples).
            attention_mask: optional (batch, samples), 1 for real samples, 0 for right padding.
        Returns:
            logits (batch, frames, vocab), frames = output_lengths(samples); frames past a row's valid
            length are garbage and must be ignored.
        """
        if input_values.shape[-1] < self.min_input_samples:
            raise ValueError(
                f"SEW-D needs at least {self.min_input_samples} samples per input, "
                f"got {input_values.shape[-1]}"
            )
        out: Tensor = self.lm_head(self.dropout(self.sew_d(input_values, attention_mask)))
        return out
