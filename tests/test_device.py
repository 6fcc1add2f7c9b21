"""The model on each device: the CUDA path where a GPU is, and the same checks on the CPU always.

CI has no GPU, so every test here is parametrised over devices: the "cpu" case runs everywhere (it keeps the
test itself honest: the same assertions, run and passing on the CPU), the "cuda" case runs only where
torch.cuda.is_available() (marker `gpu`; `bench/device_check.sh` runs them on a lent GPU). What they cover is
what differs on a GPU: weights and inputs moved to the device, half precision (fp16 exists on CUDA only in
the CLI; its model code is checked on the CPU here too), batched windows, and the usage errors that only a
real CUDA device reaches.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from _engine_helpers import SEW_TINY, W2V2_BASE, hf_model, save_both, waveform
from conftest import error_rate

from sewcli import bench, decoding, inference, pipeline
from sewcli.chunking import ChunkOptions
from sewcli.errors import UsageError
from sewcli.model.load import load_model

transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "sewcli" / "assets" / "sew-synth-en"
EXAMPLES = ROOT / "examples"
CUDA = pytest.param(
    "cuda",
    marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")],
)
DEVICES = ["cpu", CUDA]
HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}
# largest logit difference from fp32, as a fraction of the largest logit: measured on the CPU 0.0015-0.0025
# (fp16, 10 mantissa bits) and 0.013-0.019 (bf16, 7 bits) for the three families
HALF_TOLERANCE = {"fp16": 0.01, "bf16": 0.05}
# the three families in their real configs, cut to two transformer layers (parity does not need twelve)
FAMILIES = {
    "sew": ("sew", SEW_TINY),
    "sew-d": ("sew-d", bench.MODEL_CONFIGS["sew-d-tiny"]),
    "wav2vec2": ("wav2vec2", W2V2_BASE),
}


@pytest.fixture
def full_fp32() -> Iterator[None]:
    """fp32 means fp32 in the exact comparisons: no TF32 in cuDNN convs or cuBLAS matmuls. PyTorch's
    defaults, which sew keeps (as transformers does), let convs use it on a GPU: that moves logits by ~1e-3,
    on the reference and on us alike."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A checkpoint directory per family, written by transformers (save_pretrained, safetensors)."""
    out = {}
    for name, (kind, config) in FAMILIES.items():
        hf = hf_model(kind, config, seed=7, num_hidden_layers=2)
        out[name], _ = save_both(hf, tmp_path_factory.mktemp(name), legacy=False)
    return out


def _batch() -> torch.Tensor:
    """Two different 3 s windows, (2, 48000)."""
    return torch.cat([waveform(48_000, seed=1), waveform(48_000, seed=2)])


@pytest.mark.usefixtures("full_fp32")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_engine_matches_transformers_on_the_device(
    family: str, device: str, checkpoints: dict[str, Path]
) -> None:
    directory = checkpoints[family]
    ours = load_model(directory, device=device).model
    ref = transformers.AutoModelForCTC.from_pretrained(directory, attn_implementation="eager").eval()
    ref = ref.to(device)
    x = _batch().to(device)
    with torch.inference_mode():
        got, want = ours(x), ref(x).logits
    assert got.device.type == device and got.dtype == torch.float32
    diff = float((got - want).abs().max())
    assert diff <= 1e-4, f"{family} on {device}: max abs diff {diff:.3g}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", sorted(HALF))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_half_precision_model_stays_close_to_fp32(
    family: str, precision: str, device: str, checkpoints: dict[str, Path]
) -> None:
    """fp16 and bf16 weights and inputs: finite logits near the fp32 model's (the CLI allows fp16 on CUDA
    only, for speed; its model code runs on the CPU as well, so CI checks it there)."""
    directory, dtype = checkpoints[family], HALF[precision]
    x = _batch()
    with torch.inference_mode():
        ref = load_model(directory).model(x)
        half = load_model(directory, device=device, dtype=dtype).model
        got = half(x.to(device=device, dtype=dtype))
    assert got.dtype == dtype and bool(torch.isfinite(got).all())
    rel = float((got.float().cpu() - ref).abs().max() / ref.abs().max())
    assert rel < HALF_TOLERANCE[precision], (
        f"{family} {precision} on {device}: max diff {rel:.4f} of the largest"
    )


@pytest.fixture(scope="module")
def fp32_texts() -> dict[str, str]:
    """The shipped model's greedy text for each example, fp32 on the CPU: the reference of the cases below."""
    return _transcribe("cpu", "fp32", batch_size=1)


def _examples() -> list[Path]:
    return sorted(p for p in EXAMPLES.iterdir() if p.suffix != ".txt")


def _transcribe(device: str, precision: str, batch_size: int, chunk: float | None = None) -> dict[str, str]:
    model = inference.load(SHIPPED, inference.InferenceOptions(device=device, precision=precision, threads=1))
    assert model.device == device
    greedy = decoding.build_decoder(model.vocab, decoding.DecodeOptions())
    windows = (
        ChunkOptions() if chunk is None else ChunkOptions(chunk_seconds=chunk, overlap_seconds=chunk / 10)
    )
    opts = pipeline.PipelineOptions(
        chunk=windows, inference=inference.InferenceOptions(batch_size=batch_size)
    )
    return {p.name: pipeline.transcribe_file(str(p), model, greedy, opts).text for p in _examples()}


@pytest.mark.parametrize(
    ("device", "precision"),
    [("cpu", "bf16"), pytest.param(*CUDA.values, "fp32", marks=CUDA.marks)]
    + [pytest.param(*CUDA.values, p, marks=CUDA.marks) for p in sorted(HALF)],
)
def test_examples_on_the_device(device: str, precision: str, fp32_texts: dict[str, str]) -> None:
    """The shipped model on the examples, as the CLI runs it there (TF32 convs in fp32 on a GPU, PyTorch's
    default), writes the CPU's fp32 text or one within a letter or two."""
    got = _transcribe(device, precision, batch_size=1)
    worst = max(error_rate([fp32_texts[name]], [got[name]], unit="char") for name in got)
    assert worst <= 0.05, {n: (fp32_texts[n], got[n]) for n in got}


@pytest.mark.usefixtures("full_fp32")
@pytest.mark.parametrize("device", DEVICES)
def test_batched_windows_write_what_single_windows_write(device: str) -> None:
    """Windows of 1 s (the examples are 2-4 s): 3 per forward on the device, or one at a time."""
    single = _transcribe(device, "fp32", batch_size=1, chunk=1.0)
    batched = _transcribe(device, "fp32", batch_size=3, chunk=1.0)
    assert batched == single and any(single.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_usage_errors_and_auto() -> None:
    assert inference.resolve_device("auto") == "cuda"
    with pytest.raises(UsageError, match="int8 runs on the CPU only"):
        inference.load(SHIPPED, inference.InferenceOptions(device="cuda", precision="int8"))
    model = inference.load(SHIPPED, inference.InferenceOptions(device="cuda", workers=4))
    assert model.workers == 1  # one stream: windows in parallel would only contend for it


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cli_on_cuda_json(tmp_path: Path, fp32_texts: dict[str, str]) -> None:
    """The command a GPU user runs: fp16, batched windows, JSON files; same words as the CPU's fp32."""
    res = subprocess.run(
        [sys.executable, "-m", "sewcli", "transcribe", str(EXAMPLES), "--device", "cuda", "--precision",
         "fp16", "--batch-size", "4", "--decoder", "greedy", "-f", "json", "-o", str(tmp_path), "-q"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    written: dict[str, Any] = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert len(written) == len(_examples())
    for path in _examples():
        text = written[path.with_suffix(".json").name]["text"]
        assert error_rate([fp32_texts[path.name]], [text], unit="char") <= 0.05, (path.name, text)


@pytest.mark.usefixtures("full_fp32")
@pytest.mark.parametrize("device", DEVICES)
def test_forward_bench_on_the_device(device: str, tmp_path: Path) -> None:
    """`sew bench --device cuda`'s forward rows: every GPU precision, parity, memory; no CPU-only rows."""
    directory = bench.write_random_checkpoint("sew-tiny", tmp_path / "sew-tiny")
    opts = bench.options_from_cli(
        True, device=device, models=["sew-tiny"], precisions=["fp32", "bf16"], threads=1, batch_sizes=[2]
    )
    rows = bench.forward_bench("sew-tiny", directory, opts, {"fp32": 1e3, "bf16": 1e3})
    assert [(r.engine, r.precision) for r in rows] == [
        ("sew", "fp32"),
        ("sew", "bf16"),
        ("transformers", "fp32"),
    ]
    fp32, bf16, _ = rows
    assert fp32.max_abs_diff is not None and fp32.max_abs_diff <= 1e-4 and fp32.argmax_agreement == 1.0
    assert bf16.argmax_agreement is not None and bf16.argmax_agreement > 0.9
    assert all(r.seconds > 0 and r.batch == 2 for r in rows)
    assert all((r.device_peak_mb is not None and r.device_peak_mb > 0) == (device == "cuda") for r in rows)
