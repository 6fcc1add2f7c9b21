"""Utterance classification heads for SEW and wav2vec2, equal to transformers' *ForSequenceClassification.

Order of operations (sew_spec.md 3.6; transformers 5.23 Wav2Vec2ForSequenceClassification.forward):
base model -> [softmax(layer_weights)-weighted sum of the hidden states, when `use_weighted_layer_sum`] ->
`projector` Linear(hidden -> classifier_proj_size) -> mean over frames (masked: padded frames zeroed, sum /
valid
frames) -> `classifier` Linear(-> num_labels). Keys: `{wav2vec2|sew}.*`, `projector.*`, `classifier.*`,
`layer_weights`.

The weighted sum uses transformers 5.23's `hidden_states`: index 0 is the input of the first layer and index i
the output of layer i (for stable wav2vec2 the last one is taken before the final LayerNorm). SEW's hidden
states
are at the squeezed rate (T/2), and a padding mask there is built from the un-squeezed valid lengths; that
quirk
is kept so the probabilities equal transformers' (spec 3.6).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sewcli.errors import UnsupportedConfigError
from sewcli.model.common import (
    all_valid,
    conv_output_length,
    frame_mask,
    init_weights,
    min_input_length,
    skipped_init,
)
from sewcli.model.early_exit import encoder_input
from sewcli.model.load import load_state, normalize_state_dict, read_tensors
from sewcli.model.sew import SEWConfig, SEWModel
from sewcli.model.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadConfig:
    """The classification-head fields of config.json (transformers names and defaults)."""

    classifier_proj_size: int = 256
    num_labels: int = 2
    use_weighted_layer_sum: bool = False

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> HeadConfig:
        """Read the head fields; num_labels defaults to len(id2label) as in PretrainedConfig."""
        id2label = hf.get("id2label") or {}
        num_labels = int(hf.get("num_labels") or len(id2label) or 2)
        return cls(
            classifier_proj_size=int(hf.get("classifier_proj_size", 256)),
            num_labels=num_labels,
            use_weighted_layer_sum=bool(hf.get("use_weighted_layer_sum", False)),
        )


class SequenceClassifier(nn.Module):
    """`{wav2vec2|sew}` base model + optional `layer_weights` + `projector` + `classifier`."""

    def __init__(self, family: str, hf_config: dict[str, Any]):
        super().__init__()
        self.family = family
        self.head = HeadConfig.from_hf(hf_config)
        base_cfg: Wav2Vec2Config | SEWConfig
        if family == "wav2vec2":
            if hf_config.get("add_adapter"):
                raise UnsupportedConfigError(
                    "config.json add_adapter=true is not supported for classification"
                )
            base_cfg = Wav2Vec2Config.from_hf(hf_config)
            self.wav2vec2 = Wav2Vec2Model(base_cfg)
        elif family == "sew":
            base_cfg = SEWConfig.from_hf(hf_config)
            self.sew = SEWModel(base_cfg)
        else:
            raise UnsupportedConfigError(f"classification for model family {family!r} is not supported")
        self.config = base_cfg
        if self.head.use_weighted_layer_sum:
            n = base_cfg.num_hidden_layers + 1
            self.layer_weights = nn.Parameter(torch.ones(n) / n)
        self.projector = nn.Linear(base_cfg.hidden_size, self.head.classifier_proj_size)
        self.classifier = nn.Linear(self.head.classifier_proj_size, self.head.num_labels)
        init_weights(self, base_cfg.initializer_range)
        # 400 samples for wav2vec2, 720 for SEW (AvgPool1d needs squeeze_factor frames, spec P10)
        frames = 1 if family == "wav2vec2" else base_cfg.squeeze_factor  # type: ignore[union-attr]
        self.min_input_samples = min_input_length(frames, base_cfg.conv_kernel, base_cfg.conv_stride)

    def _layer_states(
        self, input_values: Tensor, attention_mask: Tensor | None
    ) -> tuple[list[Tensor], Tensor | None]:
        """Every hidden state transformers returns as `hidden_states`, and the frame mask at their rate."""
        cfg = self.config
        base = self.wav2vec2 if self.family == "wav2vec2" else self.sew
        x = base.feature_extractor(input_values).transpose(1, 2)  # (B, frames, C)
        lengths = None
        if attention_mask is not None:
            lengths = conv_output_length(attention_mask.sum(-1).long(), cfg.conv_kernel, cfg.conv_stride)
        mask = None if lengths is None else frame_mask(x.shape[1], lengths)
        if self.family == "wav2vec2":
            x = self.wav2vec2.feature_projection(x)
            x, key_mask = encoder_input(self.wav2vec2.encoder, x, mask)
        else:
            x = self.sew.layer_norm(x)
            if self.sew.project_features:
                x = self.sew.feature_projection(x)  # (B, frames, H)
            x = self.sew.feature_dropout(x)
            enc = self.sew.encoder
            x, key_mask = enc.squeeze(x, mask)  # (B, frames/2, H)
            key_mask = None if all_valid(key_mask) else key_mask
            x = enc.dropout(enc.layer_norm(x))
            # transformers builds the pooling mask at the squeezed length from the CNN-rate lengths (spec 3.6)
            mask = None if lengths is None else frame_mask(x.shape[1], lengths)
        states = [x]
        layers = self.wav2vec2.encoder.layers if self.family == "wav2vec2" else self.sew.encoder.layers
        for layer in layers:
            x = layer(x, key_mask)
            states.append(x)
        return states, mask

    def _last_hidden(
        self, input_values: Tensor, attention_mask: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """last_hidden_state (batch, frames, hidden) at the CNN rate, and its frame mask."""
        cfg = self.config
        base = self.wav2vec2 if self.family == "wav2vec2" else self.sew
        h = base(input_values, attention_mask)
        mask = None
        if attention_mask is not None:
            lengths = conv_output_length(attention_mask.sum(-1).long(), cfg.conv_kernel, cfg.conv_stride)
            mask = frame_mask(h.shape[1], lengths)
        return h, mask

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Class logits.

        Args:
            input_values: (batch, samples) float waveform, normalised as the preprocessor says.
            attention_mask: (batch, samples) 1 for real samples, 0 for right padding; None = all real.
        Returns:
            (batch, num_labels) logits.
        """
        if input_values.shape[-1] < self.min_input_samples:
            raise ValueError(
                f"needs at least {self.min_input_samples} samples per input, got {input_values.shape[-1]}"
            )
        if self.head.use_weighted_layer_sum:
            states, mask = self._layer_states(input_values, attention_mask)
            stacked = torch.stack(states, dim=1)  # (B, layers+1, frames, H)
            weights = torch.softmax(self.layer_weights, dim=-1)
            h = (stacked * weights.view(-1, 1, 1)).sum(dim=1)  # (B, frames, H)
        else:
            h, mask = self._last_hidden(input_values, attention_mask)
        h = self.projector(h)  # (B, frames, proj)
        if mask is None:
            pooled = h.mean(dim=1)  # (B, proj)
        else:
            h = h.masked_fill(~mask[:, :, None], 0.0)
            pooled = h.sum(dim=1) / mask.sum(dim=1, keepdim=True).to(h.dtype)  # (B, proj)
        logits: Tensor = self.classifier(pooled)
        return logits


def load_classifier(
    family: str,
    config: dict[str, Any],
    weight_files: tuple[Path, ...],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> SequenceClassifier:
    """Build a SequenceClassifier from config.json and load its weights safely (see load.py); eval mode."""
    with skipped_init():  # no random init; the checkpoint tensors are assigned (load_state)
        model = SequenceClassifier(family, config)
    raw: dict[str, Tensor] = {}
    for path in weight_files:
        raw.update(read_tensors(path))
    where = str(weight_files[0]) if len(weight_files) == 1 else str(weight_files[0].parent)
    load_state(model, normalize_state_dict(raw), where)
    model.to(device=device, dtype=dtype)
    return model.eval()


def class_probabilities(model: SequenceClassifier, batch: Any, device: str, dtype: torch.dtype) -> Any:
    """(batch, samples) float32 numpy -> (batch, num_labels) float32 numpy softmax probabilities."""
    with torch.inference_mode():
        x = torch.as_tensor(batch).to(device=device, dtype=dtype)
        logits = model(x)  # (B, num_labels)
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()
