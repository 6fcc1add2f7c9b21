"""Inference-only fast paths for the CPU: int8 dynamic quantisation of the linear layers, bf16 detection.

Where the time goes (docs/benchmarks.md): on SEW-tiny the nn.Linear GEMMs are about half of a forward, the
conv front end about a quarter, elementwise ops (GELU, LayerNorm, residual adds) the rest.
`quantize_linear_int8` replaces every nn.Linear by torch's dynamic int8 linear (weights int8 per output
channel, activations quantised per call: 8 bits with AVX512-VNNI, else 7; fbgemm kernels); the convs, norms
and attention stay fp32, so the gain is bounded by the linear share (Amdahl, reliability_perf.md B.2). bf16
needs no code here (the model is cast with `.to`), but it is only fast where the CPU has bf16 dot-product
instructions (AVX512-BF16 or AMX); elsewhere it is emulated.
"""

from __future__ import annotations

import functools
import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


def quantize_linear_int8(model: nn.Module) -> nn.Module:
    """Switch `model`'s nn.Linear layers to int8 dynamic quantisation, in place (no second fp32 copy in RAM).

    The weights equal those of `torch.ao.quantization.quantize_dynamic(model, {nn.Linear:
    per_channel_dynamic_qconfig}, dtype=torch.qint8)` bit for bit, and so does the whole model's output where
    the activations keep torch's 7 bits (tests/test_bench.py); on CPUs with AVX512-VNNI they get 8
    (`full_range_int8_activations`). 0.40 s instead of 0.53 s for SEW-tiny's 74 linears (1 thread): see
    `int8_linear`.

    Args:
        model: an fp32 model on the CPU (put in eval mode).
    Returns:
        the same module object (its class, `output_lengths` etc. kept) with quantized linear layers.
    """
    if torch.backends.quantized.engine == "none":  # pragma: no cover - builds without fbgemm/onednn/qnnpack
        raise RuntimeError("this torch build has no quantized engine for int8 inference")
    model.float().eval()
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Linear  # exact type, as quantize_dynamic's mapping
    ]
    with warnings.catch_warnings():
        # torch.ao.nn.quantized is deprecated in favour of torchao (pytorch PR #153892) but still the only
        # dependency-free int8 dynamic linear; silence the warning, keep the code path tested.
        warnings.simplefilter("ignore")
        # The layers are quantised and packed in parallel: torch's ops let go of the GIL, and the packing
        # is single-threaded (SEW-tiny, 2 threads: 0.16-0.21 s instead of 0.29-0.37 s).
        workers = min(max(torch.get_num_threads(), 1), 4, len(targets))
        full = full_range_int8_activations()
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                quantized = list(pool.map(lambda child: int8_linear(child, full), [c for _, _, c in targets]))
        else:
            quantized = [int8_linear(child, full) for _, _, child in targets]
    for (parent, name, _), q in zip(targets, quantized, strict=True):
        setattr(parent, name, q)
    return model


def int8_linear(linear: nn.Linear, full_range: bool = False) -> nn.Module:
    """One nn.Linear as torch's dynamic int8 linear, with per-output-channel symmetric int8 weights.

    full_range: quantise the activations to all 8 bits (`full_range_int8_activations` says where that is
    safe) instead of torch's 7.

    The weight scales are what `per_channel_dynamic_qconfig`'s observer computes (max |w| per row / 127.5, at
    least float32 eps; zero point 0), without the observer's slower `aminmax`. The int8 values are computed
    as `torch.quantize_per_channel` computes them (round half to even of w times the float32 reciprocal of
    the scale; bit-identical, tested) in vectorised ops, 3x faster than its per-element kernel. The module is
    constructed 1x1 and then given its weight: its constructor packs a zero weight of its own shape first,
    which for a full size layer costs as much as packing the real one.
    """
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    w = linear.weight.detach().float()  # (out, in)
    scale = torch.clamp(w.abs().amax(dim=1) / 127.5, min=torch.finfo(torch.float32).eps)  # (out,)
    ints = torch.round(w * (1.0 / scale)[:, None]).clamp_(-128, 127).to(torch.int8)  # (out, in)
    zero = torch.zeros(w.shape[0], dtype=torch.int64)
    qweight = torch._make_per_channel_quantized_tensor(ints, scale.double(), zero, 0)
    q = (_full_range_dynamic_linear() if full_range else DynamicLinear)(1, 1, dtype=torch.qint8)
    q.set_weight_bias(qweight, None if linear.bias is None else linear.bias.detach().float())
    q.in_features, q.out_features = linear.in_features, linear.out_features
    return q


@functools.cache
def _full_range_dynamic_linear() -> Any:  # a subclass of torch.ao.nn.quantized.dynamic.Linear
    """torch's dynamic int8 linear with 8-bit activations (torch's own passes reduce_range=True: 7 bits)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    class FullRangeDynamicLinear(DynamicLinear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params, reduce_range=False)
            return y.to(x.dtype)

    return FullRangeDynamicLinear


def full_range_int8_activations() -> bool:
    """Whether the int8 linears may quantise their activations to 8 bits (0..255) rather than torch's 7.

    torch's dynamic linear keeps activations to 7 bits (`reduce_range`) because fbgemm's kernels for CPUs
    without VNNI sum pairs of u8 x s8 products in saturating int16 (vpmaddubsw: 2 x 255 x 128 overflows, 2 x
    127 x 128 does not). With AVX512-VNNI (vpdpbusd) the products accumulate in int32, so the eighth bit
    costs nothing and halves the activations' rounding step. Measured on an AMD Zen 4 (2026-12-05, the
    embedded model, greedy, 250 utterances of each dev set; docs/benchmarks.md): CER change against fp32
    +0.02 / -0.06 / +0.32 points (dev_a / dev_b / dev_b2) with 7 bits, -0.05 / -0.17 / +0.08 with 8.
    """
    if torch.backends.quantized.engine not in ("x86", "fbgemm"):
        return False
    return "avx512_vnni" in _cpu_vendor_and_flags()[1]


def convs_in_bf16(model: nn.Module) -> int:
    """Run the model's conv stages (waveform feature encoder, positional conv) in bf16, in place.

    On SEW-tiny the convs are ~40 % of an int8 forward (the linears are int8 by then) and oneDNN's bf16
    convs are ~2x faster than fp32 ones on some CPUs with native bf16 (`bf16_pays_off` says which;
    docs/benchmarks.md). Each conv stage gets
    a bf16 copy of its weights and casts its input to bf16 and its output back to float32, so the rest of
    the model (int8 linears, LayerNorm, attention) is unchanged.

    Returns:
        the number of stages switched (0 when there are none).
    """
    from sewcli.model.common import FeatureEncoder, PositionalConvEmbedding

    def to_bf16(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (args[0].to(torch.bfloat16), *args[1:])

    def to_fp32(_module: nn.Module, _args: object, out: torch.Tensor) -> torch.Tensor:
        return out.float()

    def norm_in_fp32(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (args[0].float(), *args[1:])

    def norm_out_bf16(_module: nn.Module, _args: object, out: torch.Tensor) -> torch.Tensor:
        return out.to(torch.bfloat16)

    n = 0
    for module in model.modules():
        if isinstance(module, FeatureEncoder | PositionalConvEmbedding):
            module.to(torch.bfloat16)
            module.register_forward_pre_hook(to_bf16)
            module.register_forward_hook(to_fp32)
            for norm in module.modules():
                if isinstance(norm, nn.GroupNorm | nn.LayerNorm):  # bf16 norms are slower (and less exact)
                    norm.float()
                    norm.register_forward_pre_hook(norm_in_fp32)
                    norm.register_forward_hook(norm_out_bf16)
            n += 1
    return n


def convs_as_gemm(model: nn.Module) -> int:
    """Compute the feature encoders' convs as matrix products, channels-last (`ConvLayer.forward_gemm`).

    Each conv is ceil(k/s) GEMMs over strided views of its input, no copy of it. On the CPU every precision
    uses them (sewcli/inference.py): in fp32 they run at the GEMM peak where oneDNN's convs reach ~60 % of
    it (SEW-tiny's encoder over a 20 s window, one thread: 125 ms against 145 ms as convs; the embedded
    model's whole forward over 10 s 46.5 against 53.9 ms); in bf16 on CPUs with AMX, oneDNN runs bf16 GEMMs on
    the AMX tiles but its bf16 convs are slower than its fp32 ones (58 ms against 216 ms as bf16 convs;
    `bench/gemm_convs.py`, docs/benchmarks.md). The first layer (one input channel, the GroupNorm) stays
    float32 in every precision. Same weights, same results up to rounding.

    Returns:
        the number of feature encoders switched.
    """
    from sewcli.model.common import FeatureEncoder

    n = 0
    for module in model.modules():
        if isinstance(module, FeatureEncoder):
            module.conv_layers[0].float()
            module.as_gemm = True
            n += 1
    return n


def onednn_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gelu: bool = False
) -> torch.Tensor:
    """x @ weight.T + bias, then the exact (erf) GELU where `gelu`, by oneDNN's matmul.

    For contiguous CPU inputs without gradients: float32 (`_onednn_applies`; the caller falls back
    otherwise), or bf16 for `onednn_convs`' layers after `convs_in_bf16`.
    The GELU runs in the matmul's epilogue, on the tile still in cache, instead of a second pass over memory.
    """
    if gelu:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def _onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    return (
        not grad
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.device.type == "cpu"
        and x.dim() >= 2
        and x.is_contiguous()
    )


def _guarded_onednn_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gelu: bool = False
) -> torch.Tensor:
    """`onednn_linear` where it applies, else torch's F.linear (and F.gelu where `gelu`)."""
    if _onednn_applies(x, weight):
        return onednn_linear(x, weight, bias, gelu)
    y = torch.nn.functional.linear(x, weight, bias)
    return torch.nn.functional.gelu(y) if gelu else y


class OneDNNLinear(nn.Linear):
    """nn.Linear whose float32 inference forward is `onednn_linear`; same parameters, same state-dict keys.

    `gelu` (set per instance by `onednn_linears`): the exact GELU that followed this layer runs fused into it.
    Anything else (gradients, other dtypes, non-contiguous inputs) takes nn.Linear's own path.
    """

    gelu = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _guarded_onednn_linear(x, self.weight, self.bias, self.gelu)


def onednn_linears(model: nn.Module) -> int:
    """Run the float32 linears by oneDNN's matmul (`OneDNNLinear`), the feed-forward GELU fused in the first.

    Where it pays off (`onednn_linears_pay_off`): on an AMD Zen 4, one thread, oneDNN's fp32 matmul runs a
    SEW-tiny feed-forward GEMM (250 x 512 -> 2048) in 5.2 ms with the GELU against 5.7 + 0.4 ms for MKL's
    addmm and a separate GELU, and the whole fp32 forward over a 10 s window 7.6 % faster (11.5 % with
    `onednn_convs`; docs/benchmarks.md, `bench/onednn_linears_ab.py`). Call after `fuse_qkv`: the fused
    q|k|v product runs here too (`Attention.qkv_linear`). Same weights; results equal up to the GEMMs'
    summation order.

    Returns:
        the number of linears switched.
    """
    from sewcli.model.common import Attention, FeedForward

    n = 0
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = OneDNNLinear
            n += 1
        elif isinstance(module, Attention):
            module.qkv_linear = _guarded_onednn_linear
    for module in model.modules():
        act = getattr(module, "intermediate_act_fn", None)
        if (
            isinstance(module, FeedForward)
            and isinstance(module.intermediate_dense, OneDNNLinear)
            and type(act) is nn.GELU
            and act.approximate == "none"
        ):
            module.intermediate_dense.gelu = True
            module.intermediate_act_fn = nn.Identity()
    return n


# Query rows per block in `blocked_attention`: one block's (rows, T) scores stay in a core's L2 cache (256 x
# 750 x 4 bytes = 750 kB over a 30 s SEW window; an AMD Zen 5 core has 1 MB). On that CPU, one thread, 8 heads
# of 64 (`python bench/onednn_attention.py WORKDIR`): 750 frames 8.5 ms in blocks of 256 rows, 9.5 ms of 128,
# 11.0 ms of 64, and 14.2 ms for a whole head's scores at once, as slow as SDPA (13.7 ms); 250 frames 1.17
# against 1.60 ms.
ATTENTION_ROWS = 256


def blocked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v for each batch row and head, without a mask: q, k, v (B, nh, T, d) float32 or
    bf16 -> (B, T, nh * d), same dtype.

    Blocks of `ATTENTION_ROWS` query rows: their scores by one oneDNN matmul against all the keys, an exact
    softmax over each whole row (no running maximum as in flash attention: the row is all there), then one
    matmul with the values. torch's CPU flash attention computes the same with MKL's small GEMMs, which on
    AMD CPUs run its AVX2 kernels (on a Zen 5 MKL's fp32 GEMM reaches half oneDNN's rate: 204 against 457
    GFLOP/s on 2 threads). For inference (no gradients); the caller checks the dtype and the mask.
    """
    b, nh, t, d = q.shape
    q, k = (q * scale).contiguous(), k.contiguous()  # (B, nh, T, d); the scale on the T x d queries
    out = q.new_empty(b, t, nh, d)
    for i in range(b):
        for h in range(nh):
            keys = k[i, h]  # (T, d)
            values_t = v[i, h].t().contiguous()  # (d, T): oneDNN takes the weight as (out, in)
            for r in range(0, t, ATTENTION_ROWS):
                scores = onednn_linear(q[i, h, r : r + ATTENTION_ROWS], keys, None)  # (rows, T) = q k^T
                out[i, r : r + ATTENTION_ROWS, h] = onednn_linear(torch.softmax(scores, -1), values_t, None)
    return out.view(b, t, nh * d)  # (B, T, nh * d)


def blocked_attentions(model: nn.Module) -> int:
    """Compute every unmasked float32 or bf16 inference self-attention by `blocked_attention`
    (`Attention.attend`); the caller decides where (`blocked_attention_pays_off`). Same weights; results
    equal up to rounding (4e-7 on random inputs in float32).

    Returns:
        the number of attention modules switched.
    """
    from sewcli.model.common import Attention

    n = 0
    for module in model.modules():
        if isinstance(module, Attention):
            module.attend = blocked_attention
            n += 1
    return n


_ONEDNN_DTYPES = (torch.float32, torch.bfloat16)  # `onednn_convs`: float32, or bf16 after `convs_in_bf16`


def onednn_convs(model: nn.Module) -> int:
    """The feature encoders' GELU-only conv layers (no norm) as one oneDNN GEMM each, the GELU fused in.

    For layers that already run as GEMMs (`convs_as_gemm`): all k taps copied into (T', k * c_in) rows and
    multiplied once (`ConvLayer.fused_gemm`), instead of ceil(k/s) GEMMs on strided views and a GELU pass.
    The layers with a norm (SEW's first, wav2vec2-large's LayerNorm ones) keep `forward_gemm`'s own path.
    Float32 layers, or bf16 ones after `convs_in_bf16`. The copy costs memory traffic and ~37 MB per 30 s
    window in SEW-tiny's first such layer, and saves more: on an AMD Zen 4, one thread, a SEW-tiny fp32
    forward with `onednn_linears` 309.6 -> 304.3 ms over 10 s and 668.5 -> 641.1 ms over 20 s
    (`bench/onednn_linears_ab.py`); an int8 one with bf16 convs 140.1 -> 133.5 ms over 10 s, its CER within
    0.3 points of fp32 (docs/benchmarks.md).

    Returns:
        the number of conv layers switched.
    """
    from sewcli.model.common import ConvLayer, FeatureEncoder

    n = 0
    for encoder in model.modules():
        if not (isinstance(encoder, FeatureEncoder) and encoder.as_gemm):
            continue
        for layer in encoder.modules():
            if isinstance(layer, ConvLayer) and layer.norm_kind is None and type(layer.activation) is nn.GELU:
                if layer.activation.approximate == "none" and layer.conv.weight.dtype in _ONEDNN_DTYPES:
                    layer.fused_gemm = onednn_linear
                    n += 1
    return n


def onednn_linears_pay_off() -> bool:
    """Whether fp32 linears run by oneDNN (`onednn_linears`): on AMD CPUs with AVX-512, where they were
    measured faster than MKL's (an AMD EPYC Zen 4, 2026-12-06; docs/benchmarks.md). On an Intel Xeon with AMX
    the fused linear+GELU measured no faster (2026-12-04), so Intel CPUs keep MKL. A fixed rule, not a timing
    at start-up: the same machine always gets the same numbers.
    """
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    vendor, flags = _cpu_vendor_and_flags()
    return vendor == "AuthenticAMD" and "avx512f" in flags


def blocked_attention_pays_off() -> bool:
    """Whether attention runs as `blocked_attention` (and, in bf16, the GELU convs as fused oneDNN GEMMs): on
    AMD CPUs with AVX-512 from the Zen 5 family on (cpu family 26), where MKL's small GEMMs inside torch's
    flash attention run at half oneDNN's rate (an AMD EPYC Zen 5, 2026-12-06, one thread: a SEW-tiny fp32
    forward over a 30 s window +10.8 %, over 10 s +1.8 %; bf16 with the fused convs too +38 % and +14 %;
    docs/benchmarks.md). Not measured on a Zen 4 (family 25) or on Intel CPUs, whose MKL runs its
    AVX-512 kernels; they keep SDPA.
    """
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    vendor, flags = _cpu_vendor_and_flags()
    family = _cpu_family()
    return vendor == "AuthenticAMD" and "avx512f" in flags and (family or 0) >= 26


def fuse_qkv(model: nn.Module) -> int:
    """Run every self-attention's q, k and v projections as one GEMM (`Attention.fuse_qkv`): one (T, 3H)
    product instead of three (T, H) ones, 0.3 ms of 5.4 ms per SEW-tiny layer over a 10 s window on one
    thread; the weights are shared, not copied.

    Returns:
        the number of attention modules fused.
    """
    from sewcli.model.common import Attention

    return sum(m.fuse_qkv() for m in model.modules() if isinstance(m, Attention))


def gemm_convs_pay_off() -> bool:
    """Whether bf16 convs run as GEMMs (`convs_as_gemm`) here: on CPUs with AMX, where that was measured 3.2x
    faster (an Intel Xeon with amx_bf16, docs/benchmarks.md 2026-12-04). Not measured on AMD's AVX512-BF16
    CPUs (where oneDNN's bf16 convs were already 2x faster than fp32 ones), so they keep the convs.
    """
    return cpu_has_native_bf16() and "amx_bf16" in _cpu_vendor_and_flags()[1]


def bf16_pays_off() -> bool:
    """Whether bf16 runs faster than fp32 on this CPU: the int8 path's convs (`convs_in_bf16`) and
    `--precision bf16` (sewcli/inference.py warns where it does not).

    Measured (SEW-tiny, docs/benchmarks.md):
    - AMD Zen 4 (AVX512-BF16): oneDNN's bf16 convs ~2x faster than fp32 ones, a bf16 forward 1.69x faster
      than transformers' fp32 one;
    - Intel Xeon (Emerald Rapids, AVX512-BF16 but no AMX exposed to the VM): bf16 convs 1.4x slower (its
      avx512_core_bf16 conv kernel 10.6 ms against 7.6 ms for avx512_core fp32 on a 128->128, k3 layer;
      the stack 99 against 70 ms per 10 s window on one thread), the bf16 GEMM peak about half the fp32
      one (145-151 against 267-276 GFLOP/s), a bf16 forward 0.507 s against 0.356 s in fp32: that CPU's
      two 512-bit FMA units already run fp32 at full width.
    So bf16 on AMD CPUs with native bf16 and on CPUs with AMX (oneDNN's bf16 tile kernels), fp32 elsewhere.
    A fixed rule rather than a timing at start-up: the same machine always gets the same numbers.
    """
    if not cpu_has_native_bf16():  # emulated bf16 is slower than fp32 everywhere
        return False
    vendor, flags = _cpu_vendor_and_flags()
    if vendor is None:  # no /proc/cpuinfo (not Linux): the native-bf16 check alone
        return True
    return vendor == "AuthenticAMD" or "amx_bf16" in flags


CPUINFO = "/proc/cpuinfo"


def _cpu_fields() -> dict[str, str]:
    """The first CPU's "key: value" lines in /proc/cpuinfo (to its first blank line); {} if there are none."""
    fields: dict[str, str] = {}
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return {}
    return fields


def _cpu_vendor_and_flags() -> tuple[str | None, frozenset[str]]:
    """The first CPU's vendor_id and flags from /proc/cpuinfo; (None, {}) where there is none."""
    fields = _cpu_fields()
    return fields.get("vendor_id"), frozenset(fields.get("flags", "").split())


def _cpu_family() -> int | None:
    """The first CPU's "cpu family" in /proc/cpuinfo (AMD: 25 for Zen 3 and 4, 26 for Zen 5), or None."""
    family = _cpu_fields().get("cpu family", "")
    return int(family) if family.isdigit() else None


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 GEMMs natively on this CPU (AVX512-BF16 or AMX); else bf16 is emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - torch without oneDNN
        return False
