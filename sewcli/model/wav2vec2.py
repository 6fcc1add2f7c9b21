"""wav2vec 2.0 for CTC in plain PyTorch, numerically equal to transformers' Wav2Vec2ForCTC.

Two encoder flavours (sew_spec.md section 2, pitfall P5):
- base (`do_stable_layer_norm=false`, group-norm CNN): pos conv -> LayerNorm -> post-LN layers;
- stable (`do_stable_layer_norm=true`, layer-norm CNN, large/XLSR): pos conv -> pre-LN layers -> final LN.
Early-exit heads (`decoders.N.*`) are not modelled yet; the loader ignores those keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from sewcli.errors import UnsupportedConfigError
from sewcli.model import hfconfig
from sewcli.model.common import (
    EncoderLayer,
    FeatureEncoder,
    PositionalConvEmbedding,
    all_valid,
    conv_output_length,
    frame_mask,
    init_weights,
    min_input_length,
    spec_augment,
)


@dataclass(frozen=True)
class Wav2Vec2Config:
    """wav2vec2 CTC hyper-parameters; names and defaults are transformers' Wav2Vec2Config ones."""

    vocab_size: int = 32
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    feat_proj_dropout: float = 0.0
    final_dropout: float = 0.1
    layerdrop: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    ctc_loss_reduction: str = "sum"
    ctc_zero_infinity: bool = False
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2

    def __post_init__(self) -> None:
        hfconfig.check_conv(self.conv_dim, self.conv_kernel, self.conv_stride, self.feat_extract_norm)
        hfconfig.check_activation("hidden_act", self.hidden_act)
        hfconfig.check_activation("feat_extract_activation", self.feat_extract_activation)
        hfconfig.check_divisible(
            self.hidden_size, self.num_attention_heads, self.num_conv_pos_embedding_groups
        )
        if self.vocab_size < 1:
            raise UnsupportedConfigError(f"config.json vocab_size={self.vocab_size} must be >= 1")

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> Wav2Vec2Config:
        """Translate a transformers config.json dict (model_type "wav2vec2")."""
        for key in ("add_adapter", "adapter_attn_dim"):
            if hf.get(key):
                raise UnsupportedConfigError(f"config.json {key}={hf[key]!r} is not supported (adapters)")
        return hfconfig.from_hf(cls, _HF_TABLE, hf, "wav2vec2")

    def to_hf(self) -> dict[str, Any]:
        """A config.json dict that transformers loads as Wav2Vec2ForCTC."""
        out = hfconfig.to_hf(self, _HF_TABLE)
        out.update(
            model_type="wav2vec2",
            architectures=["Wav2Vec2ForCTC"],
            num_feat_extract_layers=len(self.conv_dim),
        )
        return out

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Samples per logit frame: product of the conv strides (320)."""
        return math.prod(self.conv_stride)


# field -> config.json key; every field keeps its transformers name (the table lists only renamings).
_HF_TABLE: dict[str, str] = {}


class Wav2Vec2FeatureProjection(nn.Module):
    """`wav2vec2.feature_projection`: LayerNorm(conv_dim[-1]) -> Linear(-> hidden) -> dropout (always)."""

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.layer_norm = nn.LayerNorm(cfg.conv_dim[-1], eps=cfg.layer_norm_eps)
        self.projection = nn.Linear(cfg.conv_dim[-1], cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.feat_proj_dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, frames, conv_dim[-1]) -> (batch, frames, hidden)."""
        y: Tensor = self.dropout(self.projection(self.layer_norm(x)))
        return y


class Wav2Vec2Encoder(nn.Module):
    """`wav2vec2.encoder`: masked zeroing, pos conv, post-LN (base) or pre-LN + final LN (stable) layers."""

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.stable = cfg.do_stable_layer_norm
        self.layerdrop = cfg.layerdrop
        self.pos_conv_embed = PositionalConvEmbedding(
            cfg.hidden_size,
            cfg.num_conv_pos_embeddings,
            cfg.num_conv_pos_embedding_groups,
            cfg.feat_extract_activation,
        )
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout)
        dropouts = (cfg.attention_dropout, cfg.activation_dropout, cfg.hidden_dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(
                cfg.hidden_size,
                cfg.num_attention_heads,
                cfg.intermediate_size,
                cfg.hidden_act,
                cfg.layer_norm_eps,
                dropouts,
                pre_ln=cfg.do_stable_layer_norm,
            )
            for _ in range(cfg.num_hidden_layers)
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (batch, frames, hidden), mask bool (batch, frames) or None -> (batch, frames, hidden)."""
        if mask is not None:
            x = x.masked_fill(~mask[:, :, None], 0.0)
        key_mask = None if all_valid(mask) else mask
        x = x + self.pos_conv_embed(x.transpose(1, 2)).transpose(1, 2)  # conv over time: (B, H, T) and back
        if not self.stable:
            x = self.layer_norm(x)
        x = self.dropout(x)
        for layer in self.layers:
            if self.training and self.layerdrop > 0.0 and float(torch.rand(())) < self.layerdrop:
                continue
            x = layer(x, key_mask)
        if self.stable:
            x = self.layer_norm(x)
        return x


class Wav2Vec2Model(nn.Module):
    """`wav2vec2.*`: feature encoder, feature projection, SpecAugment (train only), encoder."""

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.config = cfg
        self.feature_extractor = FeatureEncoder(
            cfg.conv_dim,
            cfg.conv_kernel,
            cfg.conv_stride,
            cfg.conv_bias,
            cfg.feat_extract_norm,
            cfg.feat_extract_activation,
        )
        self.feature_projection = Wav2Vec2FeatureProjection(cfg)
        if cfg.mask_time_prob > 0.0 or cfg.mask_feature_prob > 0.0:
            self.masked_spec_embed = nn.Parameter(torch.empty(cfg.hidden_size).uniform_())
        self.encoder = Wav2Vec2Encoder(cfg)

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Waveform (batch, samples) [+ sample mask (batch, samples)] -> hidden (batch, frames, hidden)."""
        x = self.feature_extractor(input_values).transpose(1, 2)  # (B, frames, C)
        mask = None
        if attention_mask is not None:
            lengths = conv_output_length(
                attention_mask.sum(-1).long(), self.config.conv_kernel, self.config.conv_stride
            )
            mask = frame_mask(x.shape[1], lengths)
        x = self.feature_projection(x)
        if self.training:
            x = spec_augment(x, self.config, getattr(self, "masked_spec_embed", None))
        h: Tensor = self.encoder(x, mask)
        return h


class Wav2Vec2ForCTC(nn.Module):
    """wav2vec2 with a CTC head: `wav2vec2.*` + `lm_head`; same API as SEWForCTC."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.config = config
        self.wav2vec2 = Wav2Vec2Model(config)
        self.dropout = nn.Dropout(config.final_dropout)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.inputs_to_logits_ratio = config.inputs_to_logits_ratio
        self.min_input_samples = min_input_length(1, config.conv_kernel, config.conv_stride)  # 400 (spec P10)
        init_weights(self, config.initializer_range)

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """CTC logits.

        Args:
            input_values: (batch, samples) float waveform, normalised as the checkpoint's preprocessor says.
            attention_mask: (batch, samples) 1 for real samples, 0 for right padding; None = all real.
        Returns:
            (batch, frames, vocab) logits; frames = output_lengths(samples). Frames past a row's valid
            length are garbage.
        """
        if input_values.shape[-1] < self.min_input_samples:
            raise ValueError(
                f"wav2vec2 needs at least {self.min_input_samples} samples per input, "
                f"got {input_values.shape[-1]}"
            )
        logits: Tensor = self.lm_head(self.dropout(self.wav2vec2(input_values, attention_mask)))
        return logits

    def output_lengths(self, sample_lengths: Tensor) -> Tensor:
        """Logit frames for each input length in samples (long tensor (batch,) -> (batch,))."""
        return conv_output_length(sample_lengths.long(), self.config.conv_kernel, self.config.conv_stride)
