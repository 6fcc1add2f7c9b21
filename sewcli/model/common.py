"""Blocks shared by SEW, SEW-D and wav2vec2: conv feature encoder, positional conv, transformer layer, masks.

Submodule attribute names equal the transformers checkpoint keys (`conv_layers.{i}.conv`, `attention.q_proj`,
`feed_forward.intermediate_dense`, ...) so a state dict loads without renaming. See
/work/shared/reference/sew_spec.md sections 1-3 for the exact order of operations and eps values (P1, P2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sewcli.errors import UnsupportedConfigError

# GroupNorm/LayerNorm inside the CNN use torch's default eps; transformers never passes layer_norm_eps (P1).
CNN_NORM_EPS = 1e-5


class GeluPython(nn.Module):
    """transformers' "gelu_python": x*0.5*(1+erf(x/sqrt 2)), not bit-identical to F.gelu (spec P2)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


class GeluNew(nn.Module):
    """transformers' "gelu_new": the tanh approximation written out as HF computes it."""

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,  # exact erf form, = F.gelu
    "gelu_python": GeluPython,
    "gelu_new": GeluNew,
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
}


def activation(name: str, key: str = "hidden_act") -> nn.Module:
    """A fresh activation module for an HF activation name; unknown -> UnsupportedConfigError naming `key`."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise UnsupportedConfigError(
            f"config.json {key}={name!r} is not supported; known: {', '.join(sorted(_ACTIVATIONS))}"
        ) from None


def conv_output_length(length: Tensor, kernels: Sequence[int], strides: Sequence[int]) -> Tensor:
    """Frames after a stack of unpadded convs: L -> (L - k)//s + 1 per layer, clamped at 0 (long tensors)."""
    for k, s in zip(kernels, strides, strict=True):
        length = torch.div(length - k, s, rounding_mode="floor") + 1
    return torch.clamp(length, min=0)


def conv_output_length_int(length: int, kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Same arithmetic as `conv_output_length` on a Python int (for sizing; no torch dispatch)."""
    for k, s in zip(kernels, strides, strict=True):
        length = (length - k) // s + 1
    return max(length, 0)


def min_input_length(frames: int, kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Smallest number of samples for which the conv stack yields at least `frames` frames."""
    need = frames
    for k, s in zip(reversed(kernels), reversed(strides), strict=True):
        need = (need - 1) * s + k
    return need


class ConvLayer(nn.Module):
    """One feature-encoder layer: Conv1d -> [GroupNorm | LayerNorm over channels | nothing] -> activation."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool, norm: str | None, act: str
    ):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size=kernel, stride=stride, bias=bias)
        self.norm_kind = norm
        self._gelu_in_place = act == "gelu"  # exact GELU: the same kernel in place, bit-identical
        if norm == "group":
            # num_groups == channels: per-channel statistics over time (spec 1.2).
            self.layer_norm: nn.Module | None = nn.GroupNorm(c_out, c_out, eps=CNN_NORM_EPS, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(c_out, eps=CNN_NORM_EPS)
        else:
            self.layer_norm = None
        self.activation = activation(act, "feat_extract_activation")
        self._tap_cache: tuple[tuple[object, ...], list[Tensor]] | None = None  # `_tap_weights`
        # inference (float32, or bf16 after convs_in_bf16): all k taps in one row, one GEMM with the GELU
        # fused (fastpath.onednn_convs)
        self.fused_gemm: Callable[..., Tensor] | None = None
        self._row_weight: tuple[tuple[object, ...], Tensor] | None = None  # `_tap_major_weight`

    def forward(self, x: Tensor) -> Tensor:
        """(batch, c_in, time) -> (batch, c_out, time')."""
        x = self.conv(x)
        if self.norm_kind == "layer":
            assert self.layer_norm is not None
            x = self.layer_norm(x.transpose(-2, -1)).transpose(-2, -1)  # LN over channels: (B, T, C) and back
        elif self.layer_norm is not None:
            x = self.layer_norm(x)
        if self._gelu_in_place and not (torch.is_grad_enabled() and x.requires_grad):
            # x is this layer's own fresh output: overwrite it instead of allocating another tensor as large
            # (the first layers' outputs are 12 MB per 30 s; this is most of the forward's peak memory)
            return torch.ops.aten.gelu_(x)
        y: Tensor = self.activation(x)
        return y

    def forward_gemm(self, x: Tensor) -> Tensor:
        """This layer channels-last, its conv as matrix products: (B, time, c_in) -> (B, time', c_out).

        Output frame t reads input frames s*t .. s*t+k-1, and (B, time, c_in) holds frames s*t .. s*t+s-1 in
        one contiguous run of s*c_in values: so each group of s taps is a strided *view* of x, rows s*c_in
        apart, times that group's weights, and the conv is ceil(k/s) GEMMs with no copy of x (one for k <= s).
        Where a row is too short to feed a GEMM well (the one-channel first layer: k*c_in = 10) the k taps
        are copied into rows once instead (`_GEMM_MIN_ROW`). FLOP for FLOP these run at the GEMM peak where
        oneDNN's fp32 convs run at ~60 % of it, and oneDNN's bf16 convs slower still on AMX CPUs
        (`sewcli.model.fastpath.convs_as_gemm`; docs/benchmarks.md). Norms in float32: GroupNorm (one group
        per channel: statistics over time) and LayerNorm (over channels: the last axis here).
        """
        conv = self.conv
        k, s = conv.kernel_size[0], conv.stride[0]
        b, t, c = x.shape
        frames = (t - k) // s + 1
        x = x.contiguous()
        base = x.storage_offset()
        if self.fused_gemm is not None and x.dtype == conv.weight.dtype and not torch.is_grad_enabled():
            rows = x.as_strided((b, frames, k * c), (t * c, s * c, 1), base).contiguous()  # (B, T', k*c_in)
            fused: Tensor = self.fused_gemm(rows, self._tap_major_weight(), conv.bias, gelu=True)
            return fused  # (B, T', c_out)
        products = []  # (rows, weight) per tap group
        for first_tap, taps, weight in self._tap_weights(c):
            if taps > s:  # overlapping rows: copied, (B, time', k * c_in)
                rows = x.as_strided((b, frames, taps * c), (t * c, s * c, 1), base).contiguous()
            else:  # (B, time', taps * c_in), a view: row r starts at frame s*r + first_tap
                rows = x.as_strided((b, frames, taps * c), (t * c, s * c, 1), base + first_tap * c)
            products.append((rows, weight.expand(b, *weight.shape)))  # (K, c_out) shared by the batch
        grad = torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad)
        if self.norm_kind == "group" and len(products) == 1 and not grad:
            y = self._gemm_group_normed(*products[0])
        else:
            y = torch.bmm(*products[0]) if conv.bias is None else torch.baddbmm(conv.bias, *products[0])
            for rows, w in products[1:]:
                y = y.baddbmm_(rows, w)  # the next tap group accumulates in place (autograd allows it)
            if self.norm_kind == "group":  # GroupNorm, one group per channel: over time, float32
                norm = self.layer_norm
                assert isinstance(norm, nn.GroupNorm)
                gamma, beta = norm.weight.float(), norm.bias.float()
                z = F.group_norm(y.float().transpose(1, 2), norm.num_groups, gamma, beta, norm.eps)
                y = z.transpose(1, 2).to(y.dtype)  # (B, C, T') -> (B, T', C)
        if self.norm_kind == "layer":
            norm = self.layer_norm
            assert isinstance(norm, nn.LayerNorm)
            gamma, beta = norm.weight.float(), norm.bias.float()
            y = F.layer_norm(y.float(), norm.normalized_shape, gamma, beta, norm.eps).to(y.dtype)
        if self._gelu_in_place and not (torch.is_grad_enabled() and y.requires_grad):
            return torch.ops.aten.gelu_(y)
        out: Tensor = self.activation(y)
        return out

    def _tap_major_weight(self) -> Tensor:
        """The conv weight as (c_out, k * c_in), tap-major like `fused_gemm`'s rows; built once per weight."""
        weight = self.conv.weight  # (c_out, c_in, k)
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
        if self._row_weight is None or self._row_weight[0] != key:
            w = weight.detach().permute(0, 2, 1).reshape(weight.shape[0], -1).contiguous()  # (c_out, k*c_in)
            self._row_weight = (key, w)
        return self._row_weight[1]

    def _tap_weights(self, c_in: int) -> list[tuple[int, int, Tensor]]:
        """(first tap, taps, weight) per GEMM of `forward_gemm`: each weight (taps * c_in, c_out), tap-major
        like the rows it multiplies."""
        weight = self.conv.weight  # (c_out, c_in, k)
        k, s = self.conv.kernel_size[0], self.conv.stride[0]
        step = k if k * c_in < _GEMM_MIN_ROW else s  # all taps in one copied row, or s taps per view
        firsts = range(0, k, step)

        def build() -> list[Tensor]:
            if k == 1:  # a 1x1 conv: the weight itself, transposed, a view
                return [weight[:, :, 0].t()]  # (c_in, c_out)
            taps = (weight[:, :, f : f + step].permute(2, 1, 0) for f in firsts)  # (taps, c_in, c_out) each
            return [w.reshape(-1, weight.shape[0]).contiguous() for w in taps]  # (taps * c_in, c_out)

        if torch.is_grad_enabled() and weight.requires_grad:  # training: built afresh, through autograd
            weights = build()
        else:  # built once, kept while the weight is unchanged (load_state_dict, .to(), in-place updates)
            key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
            if self._tap_cache is None or self._tap_cache[0] != key:
                self._tap_cache = (key, build())
            weights = self._tap_cache[1]
        return [(f, min(step, k - f), w) for f, w in zip(firsts, weights, strict=True)]

    def _gemm_group_normed(self, rows: Tensor, weight: Tensor) -> Tensor:
        """The conv and its GroupNorm (one group per channel) as one GEMM: (B, T', K) x (B, K, C).

        y = rows @ W + b is linear in the rows, so each channel's mean over time is mean(rows) @ W and its
        variance w_c' S w_c, S the rows' own (K, K) covariance: the norm folds into the GEMM's weights and
        bias, and the (B, T', C) output is written once instead of read and rewritten by the statistics and
        the normalisation (5 passes over 8 MB per 10 s for SEW's first layer). The conv bias cancels. All in
        float32; the rows are the first layer's copied taps (K = 10), so the covariance costs next to nothing.
        """
        norm = self.layer_norm
        assert isinstance(norm, nn.GroupNorm) and norm.num_groups == norm.num_channels
        gamma, beta = norm.weight.float(), norm.bias.float()  # (C,)
        r, w = rows.float(), weight.float()  # (B, T', K), (B, K, C)
        mean_rows = r.mean(1, keepdim=True)  # (B, 1, K)
        centred = r - mean_rows  # (B, T', K)
        cov = torch.bmm(centred.transpose(1, 2), centred) / r.shape[1]  # (B, K, K), biased like GroupNorm
        var = (torch.bmm(cov, w) * w).sum(1, keepdim=True)  # (B, 1, C): w_c' S w_c
        scale = gamma * torch.rsqrt(var + norm.eps)  # (B, 1, C)
        shift = beta - torch.bmm(mean_rows, w) * scale  # (B, 1, C)
        # the shift as one more weight row against a column of ones: no (B, T', C) broadcast copy of it
        ones = r.new_ones(r.shape[0], r.shape[1], 1)
        w_folded = torch.cat([w * scale, shift], dim=1)  # (B, K + 1, C)
        return torch.bmm(torch.cat([r, ones], dim=2), w_folded).to(rows.dtype)  # (B, T', C), normalised


# A GEMM whose rows are shorter than this (k * c_in values) runs far below peak: forward_gemm copies the
# taps into longer rows instead (the first layer: 1 channel, k = 10).
_GEMM_MIN_ROW = 64


class FeatureEncoder(nn.Module):
    """The conv waveform encoder (`feature_extractor.conv_layers.{i}`); `norm` is HF's feat_extract_norm."""

    def __init__(
        self,
        conv_dim: Sequence[int],
        conv_kernel: Sequence[int],
        conv_stride: Sequence[int],
        conv_bias: bool,
        norm: str,
        act: str,
    ):
        super().__init__()
        if norm not in ("group", "layer"):
            raise UnsupportedConfigError(
                f"config.json feat_extract_norm={norm!r} is not supported; use group|layer"
            )
        layers = []
        for i, (c, k, s) in enumerate(zip(conv_dim, conv_kernel, conv_stride, strict=True)):
            c_in = 1 if i == 0 else conv_dim[i - 1]
            layer_norm = norm if (norm == "layer" or i == 0) else None  # group norm only on layer 0
            layers.append(ConvLayer(c_in, c, k, s, conv_bias, layer_norm, act))
        self.conv_layers = nn.ModuleList(layers)
        self.as_gemm = False  # convs as matrix products, channels-last (`ConvLayer.forward_gemm`)

    def forward(self, input_values: Tensor) -> Tensor:
        """Waveform (batch, samples) -> features (batch, conv_dim[-1], frames)."""
        if self.as_gemm:  # channels-last throughout (`ConvLayer.forward_gemm`)
            first, *rest = cast(list[ConvLayer], list(self.conv_layers))
            x = input_values[:, :, None].to(first.conv.weight.dtype)  # (B, T) -> (B, T, 1)
            x = first.forward_gemm(x)  # (B, T', C)
            if rest:  # the first layer may stay float32 under bf16 (`convs_as_gemm`)
                x = x.to(rest[0].conv.weight.dtype)
            for channels_last in rest:
                x = channels_last.forward_gemm(x)
            return x.transpose(1, 2)  # (B, frames, C) -> (B, C, frames), a view
        x = input_values[:, None]  # (B, 1, T)
        for layer in self.conv_layers:
            x = layer(x)
        return x


class PositionalConvEmbedding(nn.Module):
    """Grouped conv positional embedding (`pos_conv_embed.conv`), weight norm folded into `conv.weight`.

    Loaders fold `weight_g`/`weight_v` (or parametrizations original0/1) once: `torch._weight_norm(v, g, 2)`.
    With `stride` > 1 (SEW squeeze) the output has ceil(T/stride) frames. SamePad drops the last frame for
    even k.
    """

    def __init__(self, hidden: int, kernel: int, groups: int, act: str, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(
            hidden, hidden, kernel_size=kernel, padding=kernel // 2, groups=groups, stride=stride
        )
        self.num_pad_remove = 1 if kernel % 2 == 0 else 0
        self.activation = activation(act, "feat_extract_activation")

    def forward(self, x: Tensor) -> Tensor:
        """(batch, hidden, time) -> (batch, hidden, time')."""
        x = self.conv(x)
        if self.num_pad_remove:
            x = x[:, :, : -self.num_pad_remove]
        y: Tensor = self.activation(x)
        return y


# From this many frames on, torch's CPU flash attention runs faster on contiguous q, k, v than on views of the
# fused projection's output (rows 3H apart), copy included (8 heads of 64, one thread of an Intel Xeon: 5.3 ->
# 4.7 ms at 450 frames, 15.1 -> 13.0 ms at 750); below it the copy costs more than it saves. Views of the
# separate projections (rows H apart; int8, training) run as fast as contiguous ones, so they are left as
# they are. Whole fp32 forwards (`python bench/sdpa_layout.py WORKDIR`, three runs): SEW-tiny 1.6-2.6 % faster
# in 20 s windows, 3.2-3.9 % in 30 s ones, wav2vec2-base 2.3 % in 30 s ones; bf16 unchanged within 1 %.
_SDPA_CONTIGUOUS_FROM = 384
_ATTEND_DTYPES = (torch.float32, torch.bfloat16)  # what `Attention.attend` takes


class Attention(nn.Module):
    """Multi-head self-attention with q/k/v/out projections, computed by F.scaled_dot_product_attention, or
    by `attend` where a CPU kernel set it (unmasked float32 or bf16 inference only)."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        if hidden % heads:
            raise UnsupportedConfigError(
                f"config.json hidden_size={hidden} is not divisible by num_attention_heads={heads}"
            )
        self.num_heads = heads
        self.head_dim = hidden // heads
        self.dropout = dropout
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)
        self._qkv: tuple[Tensor, Tensor] | None = None  # `fuse_qkv`
        self.qkv_linear: Callable[..., Tensor] = F.linear  # fused q|k|v kernel (fastpath.onednn_linears)
        # unmasked fp32/bf16 inference attention, (q, k, v, scale) -> (B, T, nh*d) (blocked_attentions)
        self.attend: Callable[[Tensor, Tensor, Tensor, float], Tensor] | None = None

    def fuse_qkv(self) -> bool:
        """For inference: the q, k and v projections as one GEMM, without a second copy of their weights.

        Their weights and biases become views of one (3H, H) weight and one (3H,) bias; updates through the
        views (`load_state_dict`) reach the fused tensors, and a later `.to()` or a replaced projection
        (int8) ends the fusion (`_fused_qkv` checks). Where gradients are wanted forward runs the three
        projections.

        Returns:
            whether it fused: not for projections that are not float nn.Linear layers with a bias.
        """
        projections = (self.q_proj, self.k_proj, self.v_proj)
        if not all(type(p) is nn.Linear and p.bias is not None for p in projections):
            return False
        with torch.no_grad():
            weight = torch.cat([p.weight for p in projections])  # (3H, H)
            bias = torch.cat([p.bias for p in projections])  # (3H,)
        h = self.q_proj.out_features
        for i, p in enumerate(projections):
            rows = slice(i * h, (i + 1) * h)
            p.weight = nn.Parameter(weight[rows], requires_grad=p.weight.requires_grad)
            p.bias = nn.Parameter(bias[rows], requires_grad=p.bias.requires_grad)
        self._qkv = (weight, bias)
        return True

    def _fused_qkv(self) -> tuple[Tensor, Tensor] | None:
        """The fused (weight, bias) while the projections are still views of them, else None."""
        if self._qkv is None:
            return None
        weight, bias = self._qkv
        for i, p in enumerate((self.q_proj, self.k_proj, self.v_proj)):
            if not isinstance(p, nn.Linear) or p.weight.dtype != weight.dtype:
                return None
            w_at = weight.data_ptr() + i * p.weight.numel() * weight.element_size()
            b_at = bias.data_ptr() + i * p.bias.numel() * bias.element_size()
            if p.weight.data_ptr() != w_at or p.bias.data_ptr() != b_at:
                return None
        return weight, bias

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """x (batch, time, hidden), key_mask bool (batch, time) True = valid key -> (batch, time, hidden)."""
        b, t, h = x.shape
        fused = self._fused_qkv()
        grad = torch.is_grad_enabled() and (self.training or self.q_proj.weight.requires_grad)
        if fused is not None and not grad:  # the fused weight carries no gradient to the projections
            qkv = self.qkv_linear(x, *fused).view(b, t, 3, self.num_heads, self.head_dim)  # (B, T, 3, nh, d)
            qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, B, nh, T, d), a view
            if t >= _SDPA_CONTIGUOUS_FROM or self.attend is not None:
                qkv = qkv.contiguous()
            q, k, v = qkv.unbind(0)  # 3 x (B, nh, T, d)
        else:
            shape = (b, t, self.num_heads, self.head_dim)
            q = self.q_proj(x).view(shape).transpose(1, 2)  # (B, nh, T, d)
            k = self.k_proj(x).view(shape).transpose(1, 2)  # (B, nh, T, d)
            v = self.v_proj(x).view(shape).transpose(1, 2)  # (B, nh, T, d)
        if self.attend is not None and key_mask is None and not grad and q.dtype in _ATTEND_DTYPES:
            return self.out_proj(self.attend(q, k, v, self.head_dim**-0.5))  # (B, T, H)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, T) broadcast over queries
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self.head_dim**-0.5,
        )
        y = y.transpose(1, 2).reshape(b, t, h)  # (B, T, nh*d)
        out: Tensor = self.out_proj(y)
        return out


class FeedForward(nn.Module):
    """Position-wise FFN: intermediate_dense -> act -> dropout -> output_dense -> dropout."""

    def __init__(
        self, hidden: int, intermediate: int, act: str, activation_dropout: float, hidden_dropout: float
    ):
        super().__init__()
        self.intermediate_dense = nn.Linear(hidden, intermediate)
        self.intermediate_act_fn = activation(act, "hidden_act")
        self.intermediate_dropout = nn.Dropout(activation_dropout)
        self.output_dense = nn.Linear(intermediate, hidden)
        self.output_dropout = nn.Dropout(hidden_dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, time, hidden) -> (batch, time, hidden)."""
        x = self.intermediate_dropout(self.intermediate_act_fn(self.intermediate_dense(x)))
        y: Tensor = self.output_dropout(self.output_dense(x))
        return y


class EncoderLayer(nn.Module):
    """Transformer layer; post-LN (wav2vec2 base, SEW) or pre-LN (`pre_ln=True`, wav2vec2 stable)."""

    def __init__(
        self,
        hidden: int,
        heads: int,
        intermediate: int,
        act: str,
        eps: float,
        dropouts: tuple[float, float, float],  # (attention, activation, hidden)
        pre_ln: bool = False,
    ):
        super().__init__()
        attention_dropout, activation_dropout, hidden_dropout = dropouts
        self.pre_ln = pre_ln
        self.attention = Attention(hidden, heads, attention_dropout)
        self.dropout = nn.Dropout(hidden_dropout)
        self.layer_norm = nn.LayerNorm(hidden, eps=eps)
        self.feed_forward = FeedForward(hidden, intermediate, act, activation_dropout, hidden_dropout)
        self.final_layer_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """(batch, time, hidden) -> (batch, time, hidden); key_mask bool (batch, time), True = valid."""
        if self.pre_ln:
            x = x + self.dropout(self.attention(self.layer_norm(x), key_mask))
            y: Tensor = x + self.feed_forward(self.final_layer_norm(x))
            return y
        x = self.layer_norm(x + self.dropout(self.attention(x, key_mask)))
        out: Tensor = self.final_layer_norm(x + self.feed_forward(x))
        return out


def frame_mask(frames: int, lengths: Tensor) -> Tensor:
    """Bool (batch, frames): True for t < lengths[b] (right padding)."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def all_valid(mask: Tensor | None) -> bool:
    """True when there is no mask or it marks every position valid (then attention can skip it)."""
    return mask is None or bool(mask.all())


def span_mask(
    batch: int, frames: int, prob: float, span: int, min_masks: int, device: torch.device | None = None
) -> Tensor:
    """SpecAugment spans (bool (batch, frames)), same counting rule as transformers' _compute_mask_indices.

    Uses torch's RNG so `torch.manual_seed` makes training runs reproducible.
    """
    mask = torch.zeros(batch, frames, dtype=torch.bool, device=device)
    if prob <= 0 or span < 1 or frames < span:
        return mask
    eps = float(torch.rand(()))
    n = max(int(prob * frames / span + eps), min_masks)
    n = min(n, frames // span, frames - span + 1)
    if n <= 0:
        return mask
    offsets = torch.arange(span, device=device)
    for b in range(batch):
        starts = torch.randperm(frames - span + 1, device=device)[:n]
        mask[b, (starts[:, None] + offsets[None, :]).reshape(-1)] = True
    return mask


_INIT_FUNCTIONS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
)  # fmt: skip


@contextmanager
def skipped_init() -> Iterator[None]:
    """Build modules without random initialisation, for weights that are loaded right after.

    Every `torch.nn.init` function (what nn.Linear/Conv1d/LayerNorm and `init_weights` call) returns its
    tensor untouched inside the block, so parameters are bare `torch.empty` memory: no init time (0.35 s
    for SEW-tiny) and no resident pages until the checkpoint's tensors are assigned (load.py). Cheaper than
    the meta device, whose first use imports ~0.7 s of torch's meta registrations.
    """
    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}

    def keep(tensor: Tensor, *_args: object, **_kwargs: object) -> Tensor:
        return tensor

    try:
        for name in saved:
            setattr(nn.init, name, keep)
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


def init_weights(module: nn.Module, std: float) -> None:
    """transformers-like init for training from scratch (Linear normal(std), norms 1/0, convs kaiming)."""
    pos_convs = {id(m.conv) for m in module.modules() if isinstance(m, PositionalConvEmbedding)}
    for m in module.modules():
        if isinstance(m, PositionalConvEmbedding):
            conv = m.conv
            nn.init.normal_(
                conv.weight, mean=0.0, std=2 * math.sqrt(1 / (conv.kernel_size[0] * conv.in_channels))
            )
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv1d) and id(m) not in pos_convs:
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                k = math.sqrt(m.groups / (m.in_channels * m.kernel_size[0]))
                nn.init.uniform_(m.bias, a=-k, b=k)


class SpecAugmentConfig(Protocol):
    """The config fields SpecAugment reads (every family's config has them, named as in transformers)."""

    @property
    def apply_spec_augment(self) -> bool: ...
    @property
    def mask_time_prob(self) -> float: ...
    @property
    def mask_time_length(self) -> int: ...
    @property
    def mask_time_min_masks(self) -> int: ...
    @property
    def mask_feature_prob(self) -> float: ...
    @property
    def mask_feature_length(self) -> int: ...
    @property
    def mask_feature_min_masks(self) -> int: ...


def spec_augment(x: Tensor, cfg: SpecAugmentConfig, masked_spec_embed: Tensor | None) -> Tensor:
    """Training-time masking: time spans -> `masked_spec_embed`, feature spans -> 0 (as transformers).

    Args:
        x: (batch, frames, hidden) features after the projection.
    Returns:
        (batch, frames, hidden), a new tensor (x is not modified in place).
    """
    if not cfg.apply_spec_augment:
        return x
    b, t, h = x.shape
    if cfg.mask_time_prob > 0 and masked_spec_embed is not None:
        tm = span_mask(b, t, cfg.mask_time_prob, cfg.mask_time_length, cfg.mask_time_min_masks, x.device)
        x = torch.where(tm[:, :, None], masked_spec_embed.to(x.dtype), x)
    if cfg.mask_feature_prob > 0:
        fm = span_mask(
            b, h, cfg.mask_feature_prob, cfg.mask_feature_length, cfg.mask_feature_min_masks, x.device
        )
        x = x.masked_fill(fm[:, None, :], 0.0)
    return x


class SqueezedBody(nn.Module):
    """The body shared by SEW (`sew.*`) and SEW-D (`sew_d.*`): conv features -> LayerNorm -> [projection] ->
    dropout -> SpecAugment (train only) -> the family's squeezing encoder.

    Attribute names equal the checkpoint keys of both families. `feature_layer_norm_eps` differs by family
    (SEW: layer_norm_eps; SEW-D: feature_layer_norm_eps, spec P1). With `drop_full_mask`, a sample mask in
    which every frame is valid is passed to the encoder as None (SEW-D's shortcut).
    """

    drop_full_mask = False

    def __init__(self, config: Any, feature_layer_norm_eps: float, encoder: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.feature_extractor = FeatureEncoder(
            config.conv_dim,
            config.conv_kernel,
            config.conv_stride,
            config.conv_bias,
            config.feat_extract_norm,
            config.feat_extract_activation,
        )
        self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=feature_layer_norm_eps)
        self.project_features = config.conv_dim[-1] != config.hidden_size
        if self.project_features:
            self.feature_projection = nn.Linear(config.conv_dim[-1], config.hidden_size)
        self.feature_dropout = nn.Dropout(config.feat_proj_dropout)
        if config.mask_time_prob > 0.0 or config.mask_feature_prob > 0.0:
            self.masked_spec_embed = nn.Parameter(torch.empty(config.hidden_size).uniform_())
        self.encoder = encoder

    def feature_mask(self, frames: int, attention_mask: Tensor | None) -> Tensor | None:
        """Sample mask (B, samples) -> frame mask (B, frames), or None when there is no mask."""
        if attention_mask is None:
            return None
        lengths = conv_output_length(
            attention_mask.sum(-1).long(), self.config.conv_kernel, self.config.conv_stride
        )
        mask = frame_mask(frames, lengths)
        return None if self.drop_full_mask and all_valid(mask) else mask

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Waveform to frame-rate hidden states.

        Args:
            input_values: (batch, samples) float waveform, normalised as the checkpoint's preprocessor says.
            attention_mask: optional (batch, samples), 1 for real samples, 0 for right padding.
        Returns:
            (batch, frames, hidden) with frames = output_lengths(samples).
        """
        x = self.feature_extractor(input_values).transpose(1, 2)  # (B, C, frames) -> (B, frames, C)
        x = self.layer_norm(x)
        if self.project_features:
            x = self.feature_projection(x)  # (B, frames, H)
        x = self.feature_dropout(x)
        mask = self.feature_mask(x.shape[1], attention_mask)
        if self.training:
            x = spec_augment(x, self.config, getattr(self, "masked_spec_embed", None))
        h: Tensor = self.encoder(x, mask)
        return h
