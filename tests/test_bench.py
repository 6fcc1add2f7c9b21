"""Smoke tests of the `sew bench` code paths and of the fast paths (--precision int8 / bf16) on tiny models.

No timing assertions (the machine is shared); what is asserted is what a benchmark must get right to be
trusted: FLOP counts equal a hand count, peak RSS belongs to the measured process and not to its parent, the
transformers reference sees the same checkpoint (logits within 1e-4), the ratio column divides the right way,
and the fast paths stay close to fp32.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sewcli import bench, inference
from sewcli.errors import UsageError

# Real SEW conv geometry (hop 320) with few channels and 2 small layers: fast, and every code path runs.
TINY = {
    "model_type": "sew",
    "conv_dim": [16] * 12 + [32],
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "num_conv_pos_embeddings": 31,
    "num_conv_pos_embedding_groups": 4,
    "squeeze_factor": 2,
}


_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight checkpoint written by bench.write_random_checkpoint for the TINY config."""
    saved = dict(bench.MODEL_CONFIGS)
    bench.MODEL_CONFIGS["tiny"] = TINY
    try:
        return bench.write_random_checkpoint("tiny", tmp_path_factory.mktemp("bench") / "tiny", seed=3)
    finally:
        bench.MODEL_CONFIGS.clear()
        bench.MODEL_CONFIGS.update(saved)


def test_options_from_cli_quick_and_overrides() -> None:
    opts = bench.options_from_cli(True, models=["sew-tiny"], threads=1, precisions=None, batch_sizes=[])
    assert opts.models == ("sew-tiny",)
    assert opts.threads == 1
    assert opts.repeats == bench.QUICK["repeats"] and opts.window_seconds == bench.QUICK["window_seconds"]
    assert opts.precisions == bench.DEVICE_PRECISIONS["cpu"]  # None and empty lists keep the default
    full = bench.options_from_cli(False)
    assert full.pipeline_minutes == 10.0 and full.rss_minutes == (10.0, 120.0)


@pytest.mark.parametrize(
    "given", [{"models": ["sew-huge"]}, {"precisions": ["fp8"]}, {"batch_sizes": [0]}, {"threads": 0}]
)
def test_options_reject_bad_values(given: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        bench.options_from_cli(False, **given)


def test_cuda_options_default_to_the_gpu_precisions() -> None:
    opts = bench.options_from_cli(False, device="cuda")
    assert opts.precisions == opts.pipeline_precisions == ("fp32", "fp16", "bf16")
    assert opts.batch_sizes == (1, 16)
    quick = bench.options_from_cli(True, device="cuda", batch_sizes=None)
    assert quick.batch_sizes == bench.QUICK["batch_sizes"] and quick.precisions == ("fp32", "fp16", "bf16")
    assert bench.options_from_cli(False, device="cuda", precisions=["bf16"]).precisions == ("bf16",)
    with pytest.raises(UsageError, match="'int8' is not one of fp32, fp16, bf16 on cuda"):
        bench.options_from_cli(False, device="cuda", precisions=["int8"])
    with pytest.raises(UsageError, match="'fp16' is not one of fp32, bf16, int8 on cpu"):
        bench.options_from_cli(False, precisions=["fp16"])
    with pytest.raises(UsageError, match="--device must be cpu or cuda"):
        bench.options_from_cli(False, device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_cuda_bench_without_a_gpu_is_a_usage_error() -> None:
    opts = bench.BenchOptions(models=(), device="cuda", reference=False, rss_minutes=(), pipeline_minutes=0)
    with pytest.raises(UsageError, match="no CUDA device"):
        bench.run(opts)


def test_cuda_baseline_command_and_table() -> None:
    model, audio = Path("m"), Path("a.wav")
    assert bench.hf_pipeline_command(model, audio, 2)[-3:] == ["m", "a.wav", "2"]
    assert bench.hf_pipeline_command(model, audio, 2, "cuda")[-4:] == ["m", "a.wav", "2", "cuda"]
    assert "--device cuda" in " ".join(bench.sew_command([audio], model, Path("o"), 2, "fp16", "cuda"))
    row = bench.ForwardResult(
        "m", "sew", "fp16", 1, 0.01, 20.0, 2.0, 0.5, 3.0, 1e-3, 0.99, device_peak_mb=312.4
    )
    table = bench.forward_table([row])
    assert table.splitlines()[0].endswith("| GPU MB per forward |") and table.splitlines()[2].endswith(
        "| 312 |"
    )
    cpu_row = bench.ForwardResult("m", "sew", "fp32", 1, 0.2, 20.0, 2.0, 0.5, 1.2, 1e-6, 1.0)
    assert "GPU" not in bench.forward_table([cpu_row])
    assert bench._peak_dtype("fp16") == "fp16" and bench._peak_dtype("bf16 x2") == "bf16"
    assert bench._peak_dtype("int8") == "fp32"


def test_count_gflop_matches_hand_count() -> None:
    layer = torch.nn.Linear(64, 32)
    # (10, 64) @ (64, 32): 10 * 64 * 32 multiply-adds = 2 * that FLOPs
    assert bench.count_gflop(layer, torch.randn(10, 64)) == pytest.approx(2 * 10 * 64 * 32 / 1e9)
    conv = torch.nn.Conv1d(1, 8, kernel_size=10, stride=5, bias=False)
    frames = (1000 - 10) // 5 + 1
    assert bench.count_gflop(conv, torch.randn(1, 1, 1000)) == pytest.approx(2 * frames * 8 * 10 / 1e9)


def test_run_process_reports_the_child_not_the_parent() -> None:
    ballast = np.ones(300 * 2**20 // 8)  # 300 MB in this process: a plain fork+exec child would "inherit" it
    wall, rss, code = bench.run_process([sys.executable, "-S", "-c", "pass"])
    assert code == 0 and wall > 0
    assert rss < 100, f"child peak RSS {rss:.0f} MB includes the parent's {ballast.nbytes / 2**20:.0f} MB"
    wall, rss, code = bench.run_process([sys.executable, "-c", "import numpy as np; a = np.ones(25_000_000)"])
    assert code == 0 and rss > 190  # 200 MB array
    assert bench.run_process([sys.executable, "-c", "raise SystemExit(3)"])[2] == 3


def test_process_table_ratio_is_baseline_over_ours() -> None:
    rows = [
        bench.ProcessResult("f: transformers pipeline", "hf", 60.0, 10.0, 500.0, (10.0,)),
        bench.ProcessResult("f: sew fp32", "sew", 60.0, 4.0, 200.0, (4.0,)),
    ]
    table = bench.process_table(rows)
    assert "| f: sew fp32 | 60 | 4.00 | 15.0 | 0.0667 | 200 | 2.50x |" in table


def test_forward_bench_parity_with_transformers(tiny_dir: Path) -> None:
    pytest.importorskip("transformers")
    opts = bench.BenchOptions(models=(), window_seconds=1.0, batch_sizes=(1, 2), repeats=1, threads=1)
    rows = bench.forward_bench("tiny", tiny_dir, opts, {"fp32": 100.0, "bf16": 200.0})
    assert {(r.engine, r.precision, r.batch) for r in rows} == {
        (e, p, b)
        for b in (1, 2)
        for e, p in [("sew", "fp32"), ("sew", "bf16"), ("sew", "int8"), ("transformers", "fp32")]
    }
    for r in rows:
        assert r.seconds > 0 and r.gflop > 0 and r.audio_seconds == r.batch * 1.0
        assert r.max_abs_diff is not None and r.argmax_agreement is not None
        if r.precision == "fp32":  # our fp32 vs transformers on the very same file and windows
            assert r.max_abs_diff <= 1e-4, r
            assert r.argmax_agreement == 1.0
        if r.engine == "sew":
            assert r.vs_transformers is not None and r.vs_transformers > 0
    markdown = bench.forward_table(rows)
    assert markdown.count("\n| tiny |") == len(rows)


def test_forward_bench_times_windows_in_parallel_too(tiny_dir: Path) -> None:
    """With 2 threads, each of our precisions is also timed as 2 windows at once on one thread each (the
    CLI's default), and the one-window rows still run on both threads."""
    before = torch.get_num_threads()
    try:
        opts = bench.BenchOptions(
            models=(), window_seconds=1.0, batch_sizes=(1,), precisions=("fp32",), repeats=1, threads=2,
            reference=False,
        )  # fmt: skip
        rows = bench.forward_bench("tiny", tiny_dir, opts, {"fp32": 100.0})
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert [(r.engine, r.precision) for r in rows] == [("sew", "fp32"), ("sew", "fp32 x2")]
    assert all(r.seconds > 0 and r.vs_transformers is None for r in rows)
    assert rows[1].max_abs_diff is None  # the same module as the fp32 row


def _log_probs(directory: Path, precision: str, x: np.ndarray) -> np.ndarray:
    options = inference.InferenceOptions(device="cpu", threads=1, precision=precision)
    model = inference.load(directory, options)
    with torch.inference_mode():
        logits = model.module(torch.from_numpy(x).to(model.dtype))
    return torch.log_softmax(logits.float(), -1).numpy()


def test_int8_and_bf16_stay_close_to_fp32(tiny_dir: Path) -> None:
    x = bench._windows(2, 3.0)  # (2, 48000) normalised speech-like windows
    ref = _log_probs(tiny_dir, "fp32", x)
    spread = float(ref.max() - ref.min())
    for precision, tol in (("int8", 0.05), ("bf16", 0.05)):  # documented in docs/benchmarks.md
        out = _log_probs(tiny_dir, precision, x)
        assert out.shape == ref.shape
        diff = float(np.abs(out - ref).max())
        assert 0 < diff <= tol * spread, (precision, diff, spread)  # 0 would mean the fast path did not run


def test_int8_model_has_quantized_linears(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = inference.load(tiny_dir, inference.InferenceOptions(device="cpu", precision="int8"))
    modules = list(model.module.modules())
    assert not any(type(m) is torch.nn.Linear for m in modules)
    quantized = sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in modules)
    assert quantized == 2 * 6 + 2  # + upsample, lm_head
    assert model.frame_count(32000) == 99  # the wrapper keeps the engine's API
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # reach the check on CPU-only CI too
    with pytest.raises(UsageError, match="int8 runs on the CPU only"):
        inference.load(tiny_dir, inference.InferenceOptions(device="cuda", precision="int8"))
    # --device auto (the default) on a machine with a GPU: int8 runs where it can, on the CPU
    assert inference.load(tiny_dir, inference.InferenceOptions(precision="int8", threads=1)).device == "cpu"


def test_int8_linears_equal_quantize_dynamic(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    from sewcli.model import fastpath
    from sewcli.model.fastpath import quantize_linear_int8

    monkeypatch.setattr(fastpath, "full_range_int8_activations", lambda: False)  # torch's 7-bit activations
    monkeypatch.setattr(fastpath, "onednn_linears_pay_off", lambda: False)  # plain nn.Linear

    x = torch.from_numpy(bench._windows(2, 3.0)).float()
    ours = quantize_linear_int8(inference.load(tiny_dir, inference.InferenceOptions(device="cpu")).module)
    theirs = inference.load(tiny_dir, inference.InferenceOptions(device="cpu")).module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = {torch.nn.Linear: per_channel_dynamic_qconfig}
        quantize_dynamic(theirs, spec, dtype=torch.qint8, inplace=True)
    pairs = [
        (a, b)
        for a, b in zip(ours.modules(), theirs.modules(), strict=True)
        if isinstance(b, torch.ao.nn.quantized.dynamic.Linear)
    ]
    assert pairs and all(type(a) is type(b) for a, b in pairs)
    for a, b in pairs:
        (wa, ba), (wb, bb) = a._weight_bias(), b._weight_bias()
        assert torch.equal(wa.int_repr(), wb.int_repr())
        assert torch.equal(wa.q_per_channel_scales(), wb.q_per_channel_scales())
        assert torch.equal(ba, bb) and (a.in_features, a.out_features) == (b.in_features, b.out_features)
    with torch.inference_mode():
        assert torch.equal(ours(x), theirs(x))


def test_int8_full_range_activations_are_the_8_bit_op_and_closer_to_fp32(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sewcli.model import fastpath

    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 1024)
    x = torch.randn(400, 256) * torch.linspace(0.2, 3.0, 256)  # (frames, features), uneven like activations
    seven, eight = fastpath.int8_linear(linear), fastpath.int8_linear(linear, full_range=True)
    assert seven._weight_bias()[0].int_repr().equal(eight._weight_bias()[0].int_repr())  # same weights
    packed = eight._packed_params._packed_params
    with torch.inference_mode():
        ref = linear(x)
        y7, y8 = seven(x), eight(x)
        assert torch.equal(y7, torch.ops.quantized.linear_dynamic(x, packed, reduce_range=True))
        assert torch.equal(y8, torch.ops.quantized.linear_dynamic(x, packed, reduce_range=False))
    # with VNNI (no int16 saturation) the eighth bit halves the activations' rounding error
    if fastpath.full_range_int8_activations():
        assert (y8 - ref).abs().mean() < 0.75 * (y7 - ref).abs().mean()
    # the whole-model switch follows the CPU check
    model = torch.nn.Sequential(torch.nn.Linear(8, 8))
    monkeypatch.setattr(fastpath, "full_range_int8_activations", lambda: True)
    assert type(fastpath.quantize_linear_int8(model)[0]).__name__ == "FullRangeDynamicLinear"
    model = torch.nn.Sequential(torch.nn.Linear(8, 8))
    monkeypatch.setattr(fastpath, "full_range_int8_activations", lambda: False)
    assert type(fastpath.quantize_linear_int8(model)[0]) is torch.ao.nn.quantized.dynamic.Linear


def test_int8_full_range_only_on_avx512_vnni_with_fbgemm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sewcli.model import fastpath

    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(fastpath, "CPUINFO", str(cpuinfo))
    monkeypatch.setattr(torch.backends.quantized, "engine", "x86")
    cpuinfo.write_text("vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n")
    assert fastpath.full_range_int8_activations()
    # no VNNI: fbgemm's int16 sums would saturate
    cpuinfo.write_text("vendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 avx512f\n")
    assert not fastpath.full_range_int8_activations()
    cpuinfo.unlink()  # no /proc/cpuinfo: the safe 7 bits
    assert not fastpath.full_range_int8_activations()


def test_int8_weights_equal_quantize_per_channel_on_ties_zeros_and_extremes() -> None:
    import warnings

    from sewcli.model.fastpath import int8_linear

    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 96)).astype(np.float32) * rng.uniform(1e-4, 10, size=(64, 1)).astype(np.float32)
    w[1] = 0.0  # a zero row: the scale is clamped to float32 eps
    w[2] = (np.arange(96) - 48 + 0.5).astype(np.float32) * np.float32(0.01)  # exact half steps: ties
    w[3, :] = 1e30
    w[3, ::2] = -1e30
    linear = torch.nn.Linear(96, 64)
    linear.weight.data = torch.from_numpy(w)
    scale = torch.clamp(linear.weight.abs().amax(dim=1) / 127.5, min=torch.finfo(torch.float32).eps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torch.quantize_per_channel(
            linear.weight.detach(), scale.double(), torch.zeros(64, dtype=torch.int64), 0, torch.qint8
        )
        ours, _ = int8_linear(linear)._weight_bias()
    assert torch.equal(ours.int_repr(), ref.int_repr())
    assert torch.equal(ours.q_per_channel_scales(), ref.q_per_channel_scales())


def test_convs_in_bf16_keeps_float32_between_stages(tiny_dir: Path) -> None:
    from sewcli.model.common import FeatureEncoder, PositionalConvEmbedding
    from sewcli.model.fastpath import bf16_pays_off, convs_in_bf16

    x = torch.from_numpy(bench._windows(2, 3.0)).float()
    ref = inference.load(tiny_dir, inference.InferenceOptions(device="cpu", threads=1)).module
    fast = inference.load(tiny_dir, inference.InferenceOptions(device="cpu", threads=1)).module
    assert convs_in_bf16(fast) == 2  # the waveform encoder and the positional conv
    convs = [m for m in fast.modules() if isinstance(m, FeatureEncoder | PositionalConvEmbedding)]
    conv_weights = [c.weight for m in convs for c in m.modules() if isinstance(c, torch.nn.Conv1d)]
    norm_weights = [n.weight for m in convs for n in m.modules() if isinstance(n, torch.nn.GroupNorm)]
    assert conv_weights and all(w.dtype == torch.bfloat16 for w in conv_weights)
    assert norm_weights and all(w.dtype == torch.float32 for w in norm_weights)  # norms stay fp32
    assert fast.lm_head.weight.dtype == torch.float32
    with torch.inference_mode():
        a, b = ref(x), fast(x)
    assert b.dtype == torch.float32 and b.shape == a.shape
    diff = float((a - b).abs().max())
    assert 0 < diff <= 0.05 * float(a.max() - a.min()), diff
    int8 = inference.load(tiny_dir, inference.InferenceOptions(device="cpu", precision="int8")).module
    conv_dtype = int8.sew.feature_extractor.conv_layers[1].conv.weight.dtype  # [0] is fp32 as a GEMM conv
    assert conv_dtype == (torch.bfloat16 if bf16_pays_off() else torch.float32)


@pytest.mark.parametrize(
    ("native", "cpuinfo", "expected"),
    [
        (True, "vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx512f avx512_bf16\n", True),
        (True, "vendor_id\t: GenuineIntel\nflags\t\t: fpu avx512f avx512_bf16\n", False),
        (True, "vendor_id\t: GenuineIntel\nflags\t\t: fpu avx512_bf16 amx_bf16 amx_tile\n", True),
        (False, "vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2\n", False),
        (True, None, True),  # no /proc/cpuinfo: the native-bf16 check alone
    ],
)
def test_bf16_convs_only_where_they_were_measured_faster(
    native: bool, cpuinfo: str | None, expected: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sewcli.model import fastpath

    path = tmp_path / "cpuinfo"  # missing when cpuinfo is None
    if cpuinfo is not None:
        path.write_text(cpuinfo + "processor\t: 1\nvendor_id\t: Other\n")  # only the first CPU counts
    monkeypatch.setattr(fastpath, "CPUINFO", str(path))
    monkeypatch.setattr(fastpath, "cpu_has_native_bf16", lambda: native)
    assert fastpath.bf16_pays_off() is expected


@pytest.mark.parametrize(
    ("norm", "bias", "kernels", "strides"),
    [
        ("group", False, (10, 3, 1, 3, 2), (5, 2, 1, 2, 2)),  # SEW: GroupNorm on the first layer only
        ("layer", True, (10, 3, 3, 2), (5, 2, 2, 2)),  # wav2vec2 large / XLSR: LayerNorm on every layer
        ("group", False, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)),  # wav2vec2 base
        ("group", True, (4, 5, 1, 2), (4, 2, 1, 3)),  # k == s, k > 2s (three tap groups), k < s
    ],
)
@pytest.mark.parametrize("samples", [8000, 8003])  # odd: the last frames' windows end short of the input
@pytest.mark.parametrize("onednn", [False, True])  # fastpath.onednn_convs: one GEMM per layer, GELU fused
def test_convs_as_gemm_compute_the_same_features(
    norm: str, bias: bool, kernels: tuple[int, ...], strides: tuple[int, ...], samples: int, onednn: bool
) -> None:
    from sewcli.model.common import FeatureEncoder
    from sewcli.model.fastpath import onednn_convs

    if onednn and not _ONEDNN:
        pytest.skip("torch built without oneDNN")

    torch.manual_seed(0)
    dims = [24, 32, 32, 48, 40, 40, 32][: len(kernels)]
    encoder = FeatureEncoder(dims, kernels, strides, bias, norm, "gelu").eval()
    for p in encoder.parameters():
        if p.dim() == 1:  # non-trivial norm affines and biases
            torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(2, samples)
    with torch.inference_mode():
        ref = encoder(x)
        encoder.as_gemm = True
        if onednn:  # every layer without a norm: all but GroupNorm's first, none with LayerNorm
            assert onednn_convs(encoder) == (len(kernels) - 1 if norm == "group" else 0)
        gemm = encoder(x)
        one = encoder(x[1:])  # batch of one: the same rows
    assert gemm.shape == ref.shape and ref.shape[1] == dims[-1]
    assert float((gemm - ref).abs().max()) <= 1e-5 * float(ref.abs().max()), float((gemm - ref).abs().max())
    assert float((one[0] - ref[1]).abs().max()) <= 1e-5 * float(ref.abs().max())
    with torch.no_grad():  # the cached GEMM weights follow an update (load_state_dict copies in place)
        state = {k: v + 0.1 * torch.randn_like(v) for k, v in encoder.state_dict().items()}
        encoder.load_state_dict(state)
        gemm = encoder(x)
        encoder.as_gemm = False
        ref = encoder(x)
        encoder.as_gemm = True
    assert float((gemm - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    with torch.enable_grad():  # and it trains: gradients flow through the strided views into the weights
        encoder.train()
        encoder(x).square().mean().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in encoder.parameters())


def test_bf16_and_int8_with_gemm_convs_keep_the_first_layer_float32(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sewcli.model import fastpath

    monkeypatch.setattr(fastpath, "gemm_convs_pay_off", lambda: True)
    monkeypatch.setattr(fastpath, "bf16_pays_off", lambda: True)
    monkeypatch.setattr(fastpath, "blocked_attention_pays_off", lambda: False)  # not a Zen 5
    x = torch.from_numpy(bench._windows(2, 3.0)).float()
    ref = inference.load(tiny_dir, inference.InferenceOptions(device="cpu", threads=1)).module
    bf16 = inference.InferenceOptions(device="cpu", threads=1, precision="bf16")
    fast = inference.load(tiny_dir, bf16).module
    encoder = fast.sew.feature_extractor
    assert encoder.as_gemm and encoder.conv_layers[0].conv.weight.dtype == torch.float32
    assert encoder.conv_layers[1].conv.weight.dtype == torch.bfloat16
    with torch.inference_mode():
        a, b = ref(x), fast(x.to(torch.bfloat16)).float()
    assert b.shape == a.shape
    assert float((a - b).abs().max()) <= 0.05 * float(a.max() - a.min())
    int8 = inference.InferenceOptions(device="cpu", threads=1, precision="int8")
    quantized = inference.load(tiny_dir, int8).module  # int8 linears, bf16 GEMM convs, fp32 in and out
    assert quantized.sew.feature_extractor.as_gemm
    with torch.inference_mode():
        c = quantized(x)
    assert c.dtype == torch.float32 and float((a - c).abs().max()) <= 0.05 * float(a.max() - a.min())
    monkeypatch.setattr(fastpath, "gemm_convs_pay_off", lambda: False)
    plain = inference.load(tiny_dir, bf16).module
    assert not plain.sew.feature_extractor.as_gemm


@pytest.mark.parametrize(
    ("native", "flags", "expected"),
    [(True, "avx512_bf16 amx_bf16 amx_tile", True), (True, "avx512_bf16", False), (False, "amx_bf16", False)],
)
def test_gemm_convs_only_with_amx(
    native: bool, flags: str, expected: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sewcli.model import fastpath

    path = tmp_path / "cpuinfo"
    path.write_text(f"vendor_id\t: GenuineIntel\nflags\t\t: fpu {flags}\n")
    monkeypatch.setattr(fastpath, "CPUINFO", str(path))
    monkeypatch.setattr(fastpath, "cpu_has_native_bf16", lambda: native)
    assert fastpath.gemm_convs_pay_off() is expected


def test_whole_process_and_hf_pipeline_baseline(tiny_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    opts = bench.BenchOptions(models=(), threads=1, pipeline_repeats=1)
    audio = bench.write_long_audio(tmp_path / "a.wav", 3.0)
    assert bench.main(["hf-pipeline", str(tiny_dir), str(audio), "1"]) == 0
    assert audio.with_suffix(".hf.txt").is_file()
    commands = {"int8": bench.sew_command([audio], tiny_dir, tmp_path / "out", 1, "int8")}
    (row,) = bench.process_bench("tiny", commands, 3.0, opts, repeats=1)
    assert row.returncode == 0 and row.peak_rss_mb > 20 and row.wall > 0
    assert (tmp_path / "out" / "a.txt").is_file()


def test_cli_bench_passes_options_and_writes_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sewcli import cli

    seen: list[bench.BenchOptions] = []

    def fake_run(opts: bench.BenchOptions) -> bench.BenchReport:
        seen.append(opts)
        return bench.BenchReport(options=opts, machine={"cpu": "test-cpu"}, peaks={"fp32": 1.0})

    monkeypatch.setattr(bench, "run", fake_run)
    out, js = tmp_path / "r.md", tmp_path / "r.json"
    args = ["bench", "--quick", "-m", "sew-tiny", "--precision", "int8", "--threads", "1", "--no-reference"]
    result = CliRunner().invoke(cli.app, [*args, "-o", str(out), "--json", str(js)])
    assert result.exit_code == 0, result.output
    (opts,) = seen
    assert (opts.models, opts.precisions) == (("sew-tiny",), ("int8",))
    assert (opts.threads, opts.reference) == (1, False)
    assert "test-cpu" in out.read_text()
    assert json.loads(js.read_text())["options"]["models"] == ["sew-tiny"]
    bad = CliRunner().invoke(cli.app, ["bench", "-m", "nope", "-o", str(out)])
    assert bad.exit_code == 2


def test_timestamp_bench_matches_words_to_utterances_by_midpoint() -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "timestamps.py"
    spec = importlib.util.spec_from_file_location("bench_timestamps", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(path.parent))
    edges = [(1.0, 2.0), (3.0, 4.5), (6.0, 7.0)]
    words = [
        {"start": 0.2, "end": 0.5},  # before every utterance (noise): ignored
        {"start": 1.03, "end": 1.3},
        {"start": 1.5, "end": 1.98},
        {"start": 2.9, "end": 3.2},  # starts before the onset: early, a negative error
        {"start": 3.6, "end": 4.6},
    ]
    starts, ends, missed = mod.errors(words, edges)
    assert starts == pytest.approx([0.03, -0.1]) and ends == pytest.approx([-0.02, 0.1])
    assert missed == 1  # the third utterance got no word


def test_sew_bytecode_is_compiled_before_processes_are_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even with PYTHONDONTWRITEBYTECODE=1 (no run writes .pyc), the timed `sew` processes read bytecode."""
    import importlib.util

    source = Path(bench.__file__).resolve().parent / "records.py"
    cached = Path(importlib.util.cache_from_source(str(source)))
    cached.unlink(missing_ok=True)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert bench.compile_sew_bytecode()
    assert cached.is_file() and cached.stat().st_mtime >= source.stat().st_mtime


def test_fused_qkv_shares_the_weights_and_follows_updates() -> None:
    from sewcli.model.common import Attention
    from sewcli.model.fastpath import fuse_qkv, quantize_linear_int8

    torch.manual_seed(0)
    attn = Attention(32, 4, dropout=0.0).eval()
    x = torch.randn(2, 7, 32)
    with torch.inference_mode():
        ref = attn(x)
    assert fuse_qkv(attn) == 1
    fused = attn._fused_qkv()
    assert fused is not None
    weight, bias = fused  # (3H, H), (3H,): the projections' own storage, not a copy
    assert weight.shape == (96, 32) and attn.k_proj.weight.data_ptr() == weight[32:].data_ptr()
    with torch.inference_mode():
        assert float((attn(x) - ref).abs().max()) <= 1e-6
    with torch.no_grad():  # load_state_dict copies into the views: the fused weight follows
        attn.load_state_dict({k: v + 0.1 * torch.randn_like(v) for k, v in attn.state_dict().items()})
    separate = Attention(32, 4, dropout=0.0).eval()
    separate.load_state_dict(attn.state_dict())
    with torch.inference_mode():
        assert float((attn(x) - separate(x)).abs().max()) <= 1e-6
    attn.double()  # new storage: no longer fused, still correct
    assert attn._fused_qkv() is None
    with torch.inference_mode():
        assert float((attn(x.double()).float() - separate(x)).abs().max()) <= 1e-5
    attn.train()  # training runs the three projections: gradients reach each
    attn.float()
    attn(x).square().mean().backward()
    assert all(p.grad is not None for p in (attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight))
    assert fuse_qkv(quantize_linear_int8(Attention(32, 4, dropout=0.0).eval())) == 0  # int8 stays apart


@pytest.mark.parametrize(
    "contiguous_from", [0, 1 << 30]
)  # q, k, v copied / left as views of the fused output
def test_fused_attention_layouts_match_the_separate_projections(
    monkeypatch: pytest.MonkeyPatch, contiguous_from: int
) -> None:
    from sewcli.model import common
    from sewcli.model.fastpath import fuse_qkv

    monkeypatch.setattr(common, "_SDPA_CONTIGUOUS_FROM", contiguous_from)
    torch.manual_seed(0)
    separate = common.Attention(32, 4, dropout=0.0).eval()
    fused = common.Attention(32, 4, dropout=0.0).eval()
    fused.load_state_dict(separate.state_dict())
    assert fuse_qkv(fused) == 1
    x = torch.randn(2, 9, 32)
    key_mask = torch.arange(9)[None, :] < torch.tensor([[9], [6]])  # (2, 9): the second row's last 3 padded
    with torch.inference_mode():
        for mask in (None, key_mask):
            assert float((fused(x, mask) - separate(x, mask)).abs().max()) <= 1e-6


def test_ab_line_reports_medians_speedup_and_largest_difference() -> None:
    times = {"old": [0.30, 0.20, 0.90], "new": [0.10, 0.15, 0.05]}  # medians 0.30 and 0.10
    outputs = {"old": torch.zeros(2, 3), "new": torch.tensor([[0.0, -0.25, 0.0], [0.0, 0.0, 0.125]])}
    line = bench.ab_line(times, outputs)
    assert line == "old   300.0 ms, new   100.0 ms (+200.0 %), max difference 2.5e-01"


@pytest.mark.skipif(not _ONEDNN, reason="torch built without oneDNN")
def test_onednn_linears_match_torch_and_fuse_the_feed_forward_gelu(tiny_dir: Path) -> None:
    from sewcli.model import common
    from sewcli.model.fastpath import OneDNNLinear, fuse_qkv, onednn_linear, onednn_linears
    from sewcli.model.load import load_model

    torch.manual_seed(0)
    x, w, b = torch.randn(2, 7, 32), torch.randn(48, 32), torch.randn(48)
    with torch.inference_mode():  # the op itself: a linear, and the exact (erf) GELU after it
        assert float((onednn_linear(x, w, b) - torch.nn.functional.linear(x, w, b)).abs().max()) <= 1e-5
        fused = onednn_linear(x, w, b, gelu=True)
        assert (
            float((fused - torch.nn.functional.gelu(torch.nn.functional.linear(x, w, b))).abs().max()) <= 1e-5
        )

    reference = load_model(tiny_dir, device="cpu", dtype=torch.float32).model.eval()
    model = load_model(tiny_dir, device="cpu", dtype=torch.float32).model.eval()
    keys = list(model.state_dict())
    fuse_qkv(model)
    linears = sum(type(m) is torch.nn.Linear for m in model.modules())
    assert onednn_linears(model) == linears > 0
    assert list(model.state_dict()) == keys  # same parameters under the same checkpoint keys
    ffns = [m for m in model.modules() if isinstance(m, common.FeedForward)]
    assert ffns and all(isinstance(f.intermediate_act_fn, torch.nn.Identity) for f in ffns)
    assert all(isinstance(f.intermediate_dense, OneDNNLinear) and f.intermediate_dense.gelu for f in ffns)
    audio = torch.from_numpy(bench._windows(2, 1.5))
    with torch.inference_mode():
        ref, out = reference(audio), model(audio)
    assert float((out - ref).abs().max()) <= 1e-4
    plain = common.FeedForward(32, 64, "gelu", 0.0, 0.0).eval()
    plain.load_state_dict(ffns[0].state_dict())
    h = torch.randn(1, 5, 32)
    # a non-contiguous input and float64 take nn.Linear's path, GELU still applied
    with torch.inference_mode():
        strided = torch.randn(1, 32, 5).transpose(1, 2)
        assert float((ffns[0](strided) - plain(strided)).abs().max()) <= 1e-6
    with torch.no_grad():
        doubled, plain_doubled = copy.deepcopy(ffns[0]).double(), copy.deepcopy(plain).double()
        assert float((doubled(h.double()) - plain_doubled(h.double())).abs().max()) <= 1e-12
    model.train()  # with gradients: torch's path, and they reach every weight
    model(audio).square().mean().backward()
    assert all(p.grad is not None for f in ffns for p in f.parameters())


def test_onednn_linears_only_on_amd_avx512(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sewcli.model import fastpath

    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(fastpath, "CPUINFO", str(cpuinfo))
    cpuinfo.write_text("vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n")
    assert fastpath.onednn_linears_pay_off() is _ONEDNN
    cpuinfo.write_text("vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2\n")  # Zen 2/3: not measured
    assert not fastpath.onednn_linears_pay_off()
    cpuinfo.write_text("vendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 avx512f amx_bf16\n")  # MKL's ground
    assert not fastpath.onednn_linears_pay_off()
    cpuinfo.unlink()
    assert not fastpath.onednn_linears_pay_off()


@pytest.mark.parametrize("blocked", [False, True])
def test_count_gflop_counts_the_attention_on_the_cpu(blocked: bool) -> None:
    """torch's CPU flash attention (SDPA) counted none of its FLOPs by itself; blocked attention counts the
    same."""
    from sewcli.model import fastpath
    from sewcli.model.common import Attention

    if blocked and not _ONEDNN:
        pytest.skip("torch built without oneDNN")
    attention = Attention(32, 4, 0.0).eval()
    attention.attend = fastpath.blocked_attention if blocked else None
    x = torch.randn(1, 10, 32)
    hand = 4 * (2 * 10 * 32 * 32) + 4 * 2 * (2 * 10 * 10 * 8)  # q, k, v, out; q k^T and p v for 4 heads of 8
    assert bench.count_gflop(attention, x) * 1e9 == pytest.approx(hand)


def test_blocked_attention_only_from_amd_zen_5_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sewcli.model import fastpath

    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(fastpath, "CPUINFO", str(cpuinfo))
    zen = "vendor_id\t: AuthenticAMD\ncpu family\t: {}\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
    cpuinfo.write_text(zen.format(26))  # Zen 5: measured
    assert fastpath.blocked_attention_pays_off() is _ONEDNN
    cpuinfo.write_text(zen.format(25))  # Zen 4: not measured
    assert not fastpath.blocked_attention_pays_off()
    cpuinfo.write_text("vendor_id\t: GenuineIntel\ncpu family\t: 6\nflags\t\t: fpu avx2 avx512f amx_bf16\n")
    assert not fastpath.blocked_attention_pays_off()
    cpuinfo.write_text("vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f\n")  # no family line
    assert not fastpath.blocked_attention_pays_off()
    cpuinfo.unlink()
    assert not fastpath.blocked_attention_pays_off()


@pytest.mark.skipif(not _ONEDNN, reason="torch built without oneDNN")
@pytest.mark.parametrize(("batch", "heads", "frames"), [(1, 4, 9), (2, 3, 256), (1, 2, 601)])
def test_blocked_attention_equals_sdpa(batch: int, heads: int, frames: int) -> None:
    """One block, exactly one block of ATTENTION_ROWS, and three with a short last one; contiguous or not."""
    from sewcli.model.fastpath import ATTENTION_ROWS, blocked_attention

    assert ATTENTION_ROWS == 256
    torch.manual_seed(frames)
    q, k, v = (3 * torch.randn(batch, heads, frames, 16) for _ in range(3))
    with torch.inference_mode():
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.25)  # (B, nh, T, d)
        ref = ref.transpose(1, 2).reshape(batch, frames, heads * 16)
        got = blocked_attention(q, k, v, 0.25)
        assert got.shape == ref.shape and float((got - ref).abs().max()) <= 1e-5

        def strided(x: torch.Tensor) -> torch.Tensor:  # (B, nh, T, d) as a view of (B, T, nh, d), as int8's
            return x.transpose(1, 2).contiguous().transpose(1, 2)

        assert torch.equal(blocked_attention(strided(q), strided(k), strided(v), 0.25), got)
        # bf16 in, bf16 out, close to the float32 attention of the same (rounded) inputs
        qb, kb, vb = (x.to(torch.bfloat16) / 3 for x in (q, k, v))
        ref = torch.nn.functional.scaled_dot_product_attention(qb.float(), kb.float(), vb.float(), scale=0.25)
        ref = ref.transpose(1, 2).reshape(batch, frames, heads * 16)
        got = blocked_attention(qb, kb, vb, 0.25)
        assert got.dtype == torch.bfloat16 and float((got.float() - ref).abs().max()) <= 0.03


@pytest.mark.skipif(not _ONEDNN, reason="torch built without oneDNN")
def test_blocked_attention_in_the_model(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where it pays off, every precision gets it (int8's attention is float32); the fp32 logits equal SDPA's
    up to rounding, it really runs, and an attention with a key mask keeps SDPA."""
    from sewcli.model import fastpath
    from sewcli.model.common import Attention

    x = bench._windows(2, 3.0)
    for pays in (False, True):
        monkeypatch.setattr(fastpath, "blocked_attention_pays_off", lambda pays=pays: pays)
        for precision in ("fp32", "int8", "bf16"):
            options = inference.InferenceOptions(device="cpu", threads=1, precision=precision)
            model = inference.load(tiny_dir, options)
            attentions = [m for m in model.module.modules() if isinstance(m, Attention)]
            assert attentions
            assert all((m.attend is not None) == pays for m in attentions)
            if precision == "bf16":  # on AMD Zen 5 its GELU convs also run as fused oneDNN GEMMs
                fused = [m for m in model.module.modules() if getattr(m, "fused_gemm", None) is not None]
                assert bool(fused) == (pays and not fastpath.gemm_convs_pay_off())
    monkeypatch.setattr(fastpath, "blocked_attention_pays_off", lambda: False)
    ref = _log_probs(tiny_dir, "fp32", x)
    monkeypatch.setattr(fastpath, "blocked_attention_pays_off", lambda: True)
    calls = []

    def counted(*args: object) -> torch.Tensor:
        calls.append(1)
        return fastpath.blocked_attention(*args)  # type: ignore[arg-type]

    model = inference.load(tiny_dir, inference.InferenceOptions(device="cpu", threads=1, precision="fp32"))
    attentions = [m for m in model.module.modules() if isinstance(m, Attention)]
    for m in attentions:
        m.attend = counted
    with torch.inference_mode():
        got = torch.log_softmax(model.module(torch.from_numpy(x)), -1).numpy()
        assert len(calls) == len(attentions)
        assert float(np.abs(got - ref).max()) <= 1e-5
        hidden = torch.randn(2, 7, attentions[0].q_proj.in_features)
        mask = torch.ones(2, 7, dtype=torch.bool)
        mask[1, 5:] = False
        masked = attentions[0](hidden, mask)
        assert len(calls) == len(attentions)  # not called with a mask
        attentions[0].attend = None
        assert torch.equal(attentions[0](hidden, mask), masked)


@pytest.mark.skipif(not _ONEDNN, reason="torch built without oneDNN")
def test_count_gflop_counts_onednn_linears_and_convs(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sewcli.model import fastpath
    from sewcli.model.load import load_model

    monkeypatch.setattr(fastpath, "onednn_linears_pay_off", lambda: False)
    x = torch.from_numpy(bench._windows(1, 2.0))
    mkl, onednn = (
        inference.cpu_kernels(load_model(tiny_dir, device="cpu", dtype=torch.float32).model.eval(), "fp32")
        for _ in range(2)
    )
    assert fastpath.onednn_linears(onednn) > 0 and fastpath.onednn_convs(onednn) > 0
    assert bench.count_gflop(onednn, x) == pytest.approx(bench.count_gflop(mkl, x), rel=1e-6)


@pytest.mark.skipif(not _ONEDNN, reason="torch built without oneDNN")
def test_int8_on_amd_runs_the_bf16_gelu_convs_as_fused_gemms(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sewcli.model import fastpath
    from sewcli.model.common import ConvLayer

    monkeypatch.setattr(fastpath, "bf16_pays_off", lambda: True)  # the AMD rules, whatever CPU runs this
    monkeypatch.setattr(fastpath, "gemm_convs_pay_off", lambda: False)
    monkeypatch.setattr(fastpath, "onednn_linears_pay_off", lambda: True)
    x = bench._windows(2, 3.0)
    ref = _log_probs(tiny_dir, "fp32", x)
    model = inference.load(tiny_dir, inference.InferenceOptions(device="cpu", threads=1, precision="int8"))
    layers = [m for m in model.module.modules() if isinstance(m, ConvLayer)]
    fused = [m for m in layers if m.fused_gemm is not None]
    assert len(fused) == len(layers) - 1  # all but the GroupNorm layer
    assert all(m.conv.weight.dtype == torch.bfloat16 for m in fused)
    calls: list[torch.dtype] = []

    def counted(rows: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        calls.append(rows.dtype)
        return fastpath.onednn_linear(rows, *args, **kwargs)  # type: ignore[arg-type]

    for layer in fused:  # count the fused GEMMs that really run
        layer.fused_gemm = counted
    with torch.inference_mode():
        out = torch.log_softmax(model.module(torch.from_numpy(x)).float(), -1).numpy()
    assert calls == [torch.bfloat16] * len(fused)
    diff, spread = float(np.abs(out - ref).max()), float(ref.max() - ref.min())
    assert 0 < diff <= 0.05 * spread, (diff, spread)
