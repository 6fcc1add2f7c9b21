"""SEW (Squeezed and Efficient Wav2vec) for CTC in plain PyTorch, equal to transformers' SEWForCTC.

Order of operations (sew_spec.md section 3): conv feature encoder -> LayerNorm -> [projection if
conv_dim[-1] != hidden] -> squeeze (strided pos conv + AvgPool1d, trimmed to the shorter) -> encoder
LayerNorm -> post-LN layers -> upsample (Linear to hidden*s, reshape back to the CNN rate, zero-pad odd
lengths) -> lm_head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sewcli.errors import UnsupportedConfigError
from sewcli.model import hfconfig
from sewcli.model.common import (
    EncoderLayer,
    PositionalConvEmbedding,
    SqueezedBody,
    activation,
    all_valid,
    conv_output_length,
    init_weights,
    min_input_length,
)


@dataclass(frozen=True)
class SEWConfig:
    """SEW hyper-parameters; field names and defaults are transformers' SEWConfig ones."""

    vocab_size: int = 32
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    squeeze_factor: int = 2
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
    ctc_loss_reduction: str = "mean"
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
        if self.squeeze_factor < 1:
            raise UnsupportedConfigError(f"config.json squeeze_factor={self.squeeze_factor} must be >= 1")
        if self.vocab_size < 1:
            raise UnsupportedConfigError(f"config.json vocab_size={self.vocab_size} must be >= 1")

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> SEWConfig:
        """Translate a transformers config.json dict (model_type "sew")."""
        if hf.get("add_adapter"):
            raise UnsupportedConfigError(
                f"config.json add_adapter={hf['add_adapter']!r} is not supported for SEW"
            )
        return hfconfig.from_hf(cls, _HF_TABLE, hf, "sew")

    def to_hf(self) -> dict[str, Any]:
        """A config.json dict that transformers loads as SEWForCTC."""
        out = hfconfig.to_hf(self, _HF_TABLE)
        out.update(
            model_type="sew",
            architectures=["SEWForCTC"],
            num_feat_extract_layers=len(self.conv_dim),
        )
        return out

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Samples per logit frame: product of the conv strides (320 for every released model)."""
        return math.prod(self.conv_stride)


# field -> config.json key, for renamed fields only: every SEW field currently keeps its transformers name.
_HF_TABLE: dict[str, str] = {}


class SEWUpsampling(nn.Module):
    """`encoder.upsample`: Linear(H -> H*s) + activation, then channels to time ('b t (s c) -> b (t s) c')."""

    def __init__(self, hidden: int, squeeze: int, act: str):
        super().__init__()
        self.projection = nn.Linear(hidden, hidden * squeeze)
        self.activation = activation(act, "feat_extract_activation")
        self.squeeze_factor = squeeze

    def forward(self, x: Tensor) -> Tensor:
        """(batch, t, hidden) -> (batch, t*s, hidden)."""
        x = self.activation(self.projection(x))  # (B, t, s*H)
        if self.squeeze_factor > 1:
            b, t, sc = x.shape
            s = self.squeeze_factor
            x = x.reshape(b, t, s, sc // s).reshape(b, t * s, sc // s)  # (B, t, s, H) -> (B, t*s, H)
        return x


class SEWEncoder(nn.Module):
    """`sew.encoder`: squeeze -> LayerNorm -> post-LN layers -> upsample -> zero-pad to the CNN rate."""

    def __init__(self, cfg: SEWConfig):
        super().__init__()
        self.squeeze_factor = cfg.squeeze_factor
        self.layerdrop = cfg.layerdrop
        self.pos_conv_embed = PositionalConvEmbedding(
            cfg.hidden_size,
            cfg.num_conv_pos_embeddings,
            cfg.num_conv_pos_embedding_groups,
            cfg.feat_extract_activation,
            stride=cfg.squeeze_factor,
        )
        self.pool = nn.AvgPool1d(cfg.squeeze_factor, cfg.squeeze_factor)
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
            )
            for _ in range(cfg.num_hidden_layers)
        )
        self.upsample = SEWUpsampling(cfg.hidden_size, cfg.squeeze_factor, cfg.feat_extract_activation)

    def squeeze(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """(batch, T, H) + mask (batch, T) -> (batch, T', H) + pooled mask (batch, T'); T' = floor(T/s)."""
        s = self.squeeze_factor
        if mask is not None:
            x = x.masked_fill(~mask[:, :, None], 0.0)
            # transformers 5.x pools the mask with max_pool1d: ceil(len/s) valid slots (spec P6).
            mask = F.max_pool1d(mask[:, None].float(), kernel_size=s, stride=s)[:, 0] > 0  # (B, floor(T/s))
        xt = x.transpose(1, 2)  # (B, H, T)
        pos = self.pos_conv_embed(xt)  # (B, H, ceil(T/s))
        pooled = self.pool(xt)  # (B, H, floor(T/s))
        n = min(pos.shape[-1], pooled.shape[-1])
        x = (pooled[..., :n] + pos[..., :n]).transpose(1, 2)  # (B, n, H)
        if mask is not None:
            mask = mask[:, :n]
        return x, mask

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (batch, T, hidden), mask bool (batch, T) or None -> (batch, T, hidden)."""
        n_frames = x.shape[1]
        x, key_mask = self.squeeze(x, mask)
        if all_valid(key_mask):
            key_mask = None
        x = self.dropout(self.layer_norm(x))
        for layer in self.layers:
            if self.training and self.layerdrop > 0.0 and float(torch.rand(())) < self.layerdrop:
                continue
            x = layer(x, key_mask)
        x = self.upsample(x)
        if x.shape[1] < n_frames:
            x = F.pad(x, (0, 0, 0, n_frames - x.shape[1]))  # odd T: the last frame is all zeros
        return x


class SEWModel(SqueezedBody):
    """`sew.*`: the shared squeezed body with the SEW encoder (feature LayerNorm eps = layer_norm_eps)."""

    encoder: SEWEncoder

    def __init__(self, cfg: SEWConfig):
        super().__init__(cfg, cfg.layer_norm_eps, SEWEncoder(cfg))


class SEWForCTC(nn.Module):
    """SEW with a CTC head: `sew.*` + `lm_head`. The trainer computes the CTC loss from the logits."""

    def __init__(self, config: SEWConfig):
        super().__init__()
        self.config = config
        self.sew = SEWModel(config)
        self.dropout = nn.Dropout(config.final_dropout)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.inputs_to_logits_ratio = config.inputs_to_logits_ratio
        # AvgPool1d needs >= `squeeze_factor` CNN frames (720 samples for the released models, spec P10).
        self.min_input_samples = min_input_length(
            config.squeeze_factor, config.conv_kernel, config.conv_stride
        )
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
                f"SEW needs at least {self.min_input_samples} samples per input, got {input_values.shape[-1]}"
            )
        h = self.sew(input_values, attention_mask)
        logits: Tensor = self.lm_head(self.dropout(h))
        return logits

    def output_lengths(self, sample_lengths: Tensor) -> Tensor:
        """Logit frames for each input length in samples (long tensor (batch,) -> (batch,))."""
        return conv_output_length(sample_lengths.long(), self.config.conv_kernel, self.config.conv_stride)
