"""Early-exit wav2vec 2.0 (Wright et al. 2024, augustgw/wav2vec2-ee): CTC heads after every second layer.

Checkpoint layout (sew_spec.md 10.4, P15): a Wav2Vec2ForCTC state dict plus `decoders.{i}.{weight,bias}`, exit
i
reading the output of encoder layer 2(i+1). In the published training code the six heads are the *same* module
as
`lm_head` (tied), so a safetensors file keeps only one copy (`lm_head.*` or `decoders.0.*`); untied
checkpoints
carry every head. `attach_exits` rebuilds whatever is missing from the tied copy.

Exit policies (`ExitPolicy`):
- fixed layer N: the encoder stops after layer N, so layers N+1.. are never computed, and `decoders.{N/2-1}`
  gives
  the logits. N = the last layer equals the plain Wav2Vec2ForCTC output.
- auto (threshold c): after each exit, a window's confidence is the geometric mean over its frames of the
  largest CTC posterior, `exp(mean_t max_v log_softmax(logits)[t, v])` (the score wav2vec2-ee's confidence
  training uses, `get_score` in its train_utils.py); the window leaves at the first exit whose confidence is
  >= c, and always at the last exit. Rows of a batch leave independently (windows never share padding, so rows
  do not interact). The rule needs no calibration data; its speed/agreement trade-off is in README.md.

Stable (pre-LN) encoders apply the final `encoder.layer_norm` before an exit head (the transformers 4.x
meaning
of `hidden_states[-1]`, spec P13), so the last exit equals the ordinary CTC output for both encoder flavours.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sewcli.errors import CheckpointError, UsageError
from sewcli.model.common import all_valid, conv_output_length, frame_mask, init_weights
from sewcli.model.wav2vec2 import Wav2Vec2Config, Wav2Vec2Encoder, Wav2Vec2ForCTC

log = logging.getLogger(__name__)

EXIT_EVERY = 2  # an exit head after layers 2, 4, ..., num_hidden_layers (wav2vec2-ee)
# The wav2vec2-ee training classes (train_utils.py); their checkpoints carry tied `decoders.N` heads.
EE_ARCHITECTURES = frozenset(
    {
        "EEWav2Vec2ForCTC",
        "KDEEWav2Vec2ForCTC",
        "DKDEEWav2Vec2ForCTC",
        "ConfidenceWav2Vec2ForCTC",
        "ManualExitActivationWav2Vec2ForCTC",
        "ManualExitActivationConfidenceWav2Vec2ForCTC",
    }
)
DEFAULT_THRESHOLD = 0.9
_HEAD_KEY = re.compile(r"^decoders\.(\d+)\.(weight|bias)$")


@dataclass(frozen=True)
class ExitPolicy:
    """Where the encoder stops: a fixed exit `layer`, or the first exit whose confidence >= `threshold`."""

    layer: int | None = None  # None with threshold None: the last exit
    threshold: float | None = None  # auto mode when set

    def __post_init__(self) -> None:
        if self.layer is not None and self.threshold is not None:
            raise UsageError(
                "an exit policy is either a fixed --exit-layer or auto with a threshold, not both"
            )
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise UsageError(f"--exit-threshold must be in [0, 1], got {self.threshold}")


def encoder_input(encoder: Wav2Vec2Encoder, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """What Wav2Vec2Encoder.forward does before its first layer: zero padded frames, pos conv, [LN], dropout.

    Args:
        encoder: the wav2vec2 encoder.
        x: (batch, frames, hidden) projected features.
        mask: bool (batch, frames) valid frames, or None.
    Returns:
        (input of layer 1 (batch, frames, hidden), key mask for the layers or None when every frame is valid).
    """
    if mask is not None:
        x = x.masked_fill(~mask[:, :, None], 0.0)
    key_mask = None if all_valid(mask) else mask
    x = x + encoder.pos_conv_embed(x.transpose(1, 2)).transpose(1, 2)  # conv over time: (B, H, T) and back
    if not encoder.stable:
        x = encoder.layer_norm(x)
    return encoder.dropout(x), key_mask


def window_confidence(logits: Tensor) -> Tensor:
    """Geometric mean over frames of the top posterior: (batch, frames, vocab) -> (batch,) in [1/vocab, 1].

    The geometric mean (exp of the mean max log-probability) is pulled down by a few unsure frames, where the
    arithmetic mean is dominated by the many easy blank frames of CTC output.
    """
    return torch.log_softmax(logits.float(), dim=-1).amax(dim=-1).mean(dim=-1).exp()


class EarlyExitWav2Vec2ForCTC(Wav2Vec2ForCTC):
    """Wav2Vec2ForCTC plus exit heads `decoders.{i}` after layers 2(i+1); `policy` picks the exit."""

    def __init__(self, config: Wav2Vec2Config, num_exits: int | None = None, tied: bool = True):
        super().__init__(config)
        n = config.num_hidden_layers // EXIT_EVERY if num_exits is None else num_exits
        if not 1 <= n <= config.num_hidden_layers // EXIT_EVERY:
            raise CheckpointError(
                f"{n} exit heads do not fit {config.num_hidden_layers} layers "
                f"(one head per {EXIT_EVERY} layers)"
            )
        if tied:
            self.decoders = nn.ModuleList([self.lm_head] * n)  # one module, as in wav2vec2-ee's training code
        else:
            self.decoders = nn.ModuleList(nn.Linear(config.hidden_size, config.vocab_size) for _ in range(n))
            init_weights(self.decoders, config.initializer_range)
        self.policy = ExitPolicy()
        self.last_exits: list[int] = []  # exit layer used by each row of the latest forward (for reports)
        self.exit_counts: Counter[int] = Counter()  # rows (windows) per exit layer since the last clear()
        self._counts_lock = threading.Lock()  # windows may run in several threads at once (inference.py)

    @property
    def exit_layers(self) -> tuple[int, ...]:
        """The encoder layers after which a head can read: (2, 4, ..., 2 * len(decoders))."""
        return tuple(EXIT_EVERY * (i + 1) for i in range(len(self.decoders)))

    def head_input(self, hidden: Tensor) -> Tensor:
        """Hidden states of an exit as its head sees them (final LN for stable encoders, then dropout)."""
        if self.config.do_stable_layer_norm:
            hidden = self.wav2vec2.encoder.layer_norm(hidden)
        out: Tensor = self.dropout(hidden)
        return out

    def exit_head(self, layer: int) -> nn.Module:
        """The CTC head of the exit after `layer`."""
        return self.decoders[self.exit_layers.index(layer)]

    def _features(self, input_values: Tensor, attention_mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Waveform -> projected features (batch, frames, hidden) and the frame mask, as Wav2Vec2Model."""
        if input_values.shape[-1] < self.min_input_samples:
            raise ValueError(
                f"wav2vec2 needs at least {self.min_input_samples} samples per input, "
                f"got {input_values.shape[-1]}"
            )
        w2v = self.wav2vec2
        x = w2v.feature_extractor(input_values).transpose(1, 2)  # (B, frames, C)
        mask = None
        if attention_mask is not None:
            lengths = conv_output_length(
                attention_mask.sum(-1).long(), self.config.conv_kernel, self.config.conv_stride
            )
            mask = frame_mask(x.shape[1], lengths)
        return w2v.feature_projection(x), mask

    def all_exits(self, input_values: Tensor, attention_mask: Tensor | None = None) -> dict[int, Tensor]:
        """Logits (batch, frames, vocab) at every exit, keyed by layer (one encoder pass)."""
        x, mask = self._features(input_values, attention_mask)
        x, key_mask = encoder_input(self.wav2vec2.encoder, x, mask)
        out: dict[int, Tensor] = {}
        for n, layer in enumerate(self.wav2vec2.encoder.layers, start=1):
            x = layer(x, key_mask)
            if n in self.exit_layers:
                out[n] = self.exit_head(n)(self.head_input(x))
        return out

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """CTC logits from the exit chosen by `self.policy`.

        Args:
            input_values: (batch, samples) float waveform.
            attention_mask: (batch, samples) 1 for real samples, 0 for right padding; None = all real.
        Returns:
            (batch, frames, vocab) logits; `self.last_exits[b]` is the layer row b left at.
        """
        x, mask = self._features(input_values, attention_mask)
        x, key_mask = encoder_input(self.wav2vec2.encoder, x, mask)
        layers = self.exit_layers
        if self.policy.threshold is not None:
            return self._auto(x, key_mask, self.policy.threshold)
        stop = layers[-1] if self.policy.layer is None else self.policy.layer
        if stop not in layers:
            raise UsageError(f"exit layer {stop} is not one of this model's exits {list(layers)}")
        for layer in self.wav2vec2.encoder.layers[:stop]:  # layers after `stop` are never run
            x = layer(x, key_mask)
        self._record_exits([stop] * x.shape[0])
        logits: Tensor = self.exit_head(stop)(self.head_input(x))
        return logits

    def _auto(self, x: Tensor, key_mask: Tensor | None, threshold: float) -> Tensor:
        """Confidence exits per row: confident rows leave, the others go on as a smaller batch."""
        b = x.shape[0]
        rows = torch.arange(b, device=x.device)  # original index of each row still running
        exits = [0] * b
        result: Tensor | None = None
        last = self.exit_layers[-1]
        for n, layer in enumerate(self.wav2vec2.encoder.layers[:last], start=1):
            x = layer(x, key_mask)
            if n not in self.exit_layers:
                continue
            logits = self.exit_head(n)(self.head_input(x))  # (rows, frames, vocab)
            if result is None:
                result = logits.new_empty((b, *logits.shape[1:]))  # (batch, frames, vocab)
            if n == last:
                done = torch.ones(rows.shape[0], dtype=torch.bool, device=x.device)
            else:
                done = window_confidence(logits) >= threshold
            result[rows[done]] = logits[done]
            for i in rows[done].tolist():
                exits[i] = n
            keep = ~done
            if not bool(keep.any()):
                break
            rows, x = rows[keep], x[keep]
            key_mask = None if key_mask is None else key_mask[keep]
        assert result is not None
        self._record_exits(exits)
        return result

    def _record_exits(self, exits: list[int]) -> None:
        """Remember each row's exit layer (`last_exits`) and add them to `exit_counts`."""
        with self._counts_lock:
            self.last_exits = exits
            self.exit_counts.update(exits)


def configure_exit(module: nn.Module, policy: ExitPolicy, name: str) -> None:
    """Set the exit policy of a loaded model; a model without exit heads or a wrong layer is a UsageError."""
    if not isinstance(module, EarlyExitWav2Vec2ForCTC):
        raise UsageError(
            f"{name}: --exit-layer needs an early-exit checkpoint with per-exit CTC heads (decoders.N.*); "
            "this model has none"
        )
    if policy.layer is not None and policy.layer not in module.exit_layers:
        raise UsageError(
            f"{name}: --exit-layer {policy.layer} is not an exit of this model; choose one of "
            f"{', '.join(map(str, module.exit_layers))} or auto"
        )
    module.policy = policy


def head_tensors(raw: dict[str, Tensor]) -> dict[int, dict[str, Tensor]]:
    """The `decoders.{i}.{weight,bias}` tensors present in a raw state dict, by exit index."""
    heads: dict[int, dict[str, Tensor]] = {}
    for key, value in raw.items():
        m = _HEAD_KEY.match(key)
        if m:
            heads.setdefault(int(m.group(1)), {})[m.group(2)] = value
    return heads


def attach_exits(model: nn.Module, raw: dict[str, Tensor], architecture: str, where: str) -> nn.Module:
    """Turn a loaded Wav2Vec2ForCTC into an EarlyExitWav2Vec2ForCTC when the checkpoint has exit heads.

    Args:
        model: the Wav2Vec2ForCTC already loaded from `raw` (lm_head included).
        raw: the checkpoint's tensors before normalisation (with the `decoders.*` keys the loader ignores).
        architecture: config.json architectures[0].
        where: the weight file, for messages.
    Returns:
        `model` itself when there are no exits; otherwise an EarlyExitWav2Vec2ForCTC sharing its modules, with
        head i from `decoders.{i}` or, where a tied head was de-duplicated away, from `lm_head`.
    """
    heads = head_tensors(raw)
    if not isinstance(model, Wav2Vec2ForCTC) or (not heads and architecture not in EE_ARCHITECTURES):
        return model
    cfg = model.config
    n = cfg.num_hidden_layers // EXIT_EVERY
    if heads and max(heads) >= n:
        raise CheckpointError(
            f"{where}: decoders.{max(heads)} has no layer to read: "
            f"{cfg.num_hidden_layers} layers give {n} exits"
        )
    lm_w, lm_b = model.lm_head.weight, model.lm_head.bias
    tied = all(
        torch.equal(t.get("weight", lm_w).to(lm_w), lm_w) and torch.equal(t.get("bias", lm_b).to(lm_b), lm_b)
        for t in heads.values()
    )
    ee = EarlyExitWav2Vec2ForCTC.__new__(EarlyExitWav2Vec2ForCTC)
    nn.Module.__init__(ee)
    ee.config = cfg
    ee.wav2vec2, ee.dropout, ee.lm_head = model.wav2vec2, model.dropout, model.lm_head
    ee.inputs_to_logits_ratio = model.inputs_to_logits_ratio
    ee.min_input_samples = model.min_input_samples
    ee.policy, ee.last_exits, ee.exit_counts = ExitPolicy(), [], Counter()
    ee._counts_lock = threading.Lock()
    if tied:
        ee.decoders = nn.ModuleList([model.lm_head] * n)
    else:
        decoders = []
        for i in range(n):
            lin = nn.Linear(cfg.hidden_size, cfg.vocab_size).to(lm_w)
            t = heads.get(i, {})
            with torch.no_grad():
                for part, default in (("weight", lm_w), ("bias", lm_b)):
                    value = t.get(part, default)
                    if value.shape != default.shape:
                        raise CheckpointError(
                            f"{where}: decoders.{i}.{part} has shape {tuple(value.shape)}, expected "
                            f"{tuple(default.shape)}"
                        )
                    getattr(lin, part).copy_(value)
            decoders.append(lin)
        ee.decoders = nn.ModuleList(decoders)
    log.debug(
        "%s: %d exit heads after layers %s (%s)", where, n, ee.exit_layers, "tied" if tied else "untied"
    )
    return ee.eval()
