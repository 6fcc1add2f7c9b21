"""`sew bench`: speed and memory of the engine, transformers measured in the same run on the same machine.

Why a benchmark module and not timed tests: claims ("2x transformers") must be re-runnable by anyone, with the
reference measured in the same process run, interleaved (ours, theirs, ours, ...) so that load from other work
hits both sides alike, and reported as the median of several repeats. Four parts:

1. machine: CPU, cores, ISA flags, torch/transformers versions, load average, and a GEMM peak (fp32, bf16)
   measured here, so achieved GFLOP/s can be read as a fraction of what this machine can do.
2. forward: one model forward on identical windows (random weights in the real SEW-tiny, SEW-D-tiny and
   wav2vec2-base configs, plus the embedded model): our engine at each precision and batch size vs
   transformers eager fp32; FLOPs counted by torch's FlopCounterMode; logit parity.
3. process: whole `sew transcribe` processes (start-up included) vs transformers' own ASR pipeline
   (`pipeline("automatic-speech-recognition", chunk_length_s=20)`) on the same file and checkpoint, same
   threads; peak RSS from wait4; RSS at two durations (flat with length?); a directory of files; `sew --help`
   start time.
4. report: a markdown table (docs/benchmarks.md) and JSON.
With `--device cuda` every engine runs on the GPU instead (our fp32/fp16/bf16, transformers eager,
transformers' pipeline), timings wait for the GPU to finish (`_synchronize`), and each forward row adds the
GPU memory it allocates.

torch and transformers are imported inside the functions that need them (this module is reachable from cli.py,
which must start without torch). Library code: nothing here prints; progress goes to `logging`.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from sewcli.errors import UsageError
from sewcli.records import FloatArray

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000

# Real configs of the released checkpoints (sew_spec.md section 6); keys not given are transformers' defaults,
# which our config dataclasses share. Dropouts do not matter in eval mode.
MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "sew-tiny": {
        "model_type": "sew",
        "hidden_size": 512,
        "num_attention_heads": 8,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_conv_pos_embeddings": 31,
        "num_conv_pos_embedding_groups": 16,
        "squeeze_factor": 2,
        "hidden_act": "gelu",
        "feat_extract_norm": "group",
        "layer_norm_eps": 1e-5,
    },
    "sew-d-tiny": {
        "model_type": "sew-d",
        "hidden_size": 384,
        "num_attention_heads": 6,
        "intermediate_size": 1536,
        "num_hidden_layers": 12,
        "num_conv_pos_embeddings": 31,
        "num_conv_pos_embedding_groups": 16,
        "squeeze_factor": 2,
        "hidden_act": "gelu_python",
        "layer_norm_eps": 1e-7,
        "feature_layer_norm_eps": 1e-5,
        "max_position_embeddings": 512,
        "position_buckets": 256,
        "share_att_key": True,
        "relative_attention": True,
        "position_biased_input": False,
        "pos_att_type": ["p2c", "c2p"],
        "norm_rel_ebd": "layer_norm",
    },
    "wav2vec2-base": {
        "model_type": "wav2vec2",
        "hidden_size": 768,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "conv_dim": [512] * 7,
        "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_stride": [5, 2, 2, 2, 2, 2, 2],
        "num_conv_pos_embeddings": 128,
        "num_conv_pos_embedding_groups": 16,
        "feat_extract_norm": "group",
        "do_stable_layer_norm": False,
    },
}
EMBEDDED = "embedded"  # the registry's default model, shipped inside the package (real weights)
ENGLISH_VOCAB = {
    "<pad>": 0,
    "<s>": 1,
    "</s>": 2,
    "<unk>": 3,
    "|": 4,
    **{c: i + 5 for i, c in enumerate("ETAONIHSRDLUMWCFGYPBVK'XJQZ")},
}
TOKENIZER_CONFIG = {
    "unk_token": "<unk>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "pad_token": "<pad>",
    "do_lower_case": False,
    "word_delimiter_token": "|",
    "tokenizer_class": "Wav2Vec2CTCTokenizer",
}
PREPROCESSOR = {
    "do_normalize": True,
    "feature_size": 1,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": False,
    "sampling_rate": SAMPLE_RATE,
    "feature_extractor_type": "Wav2Vec2FeatureExtractor",
}
# the precisions each device runs, and the default ones of a run there: int8 on the CPU only, fp16 on CUDA
# only (the directory run compares fp32 with the device's fast path: int8, fp16)
DEVICE_PRECISIONS = {"cpu": ("fp32", "bf16", "int8"), "cuda": ("fp32", "fp16", "bf16")}
CUDA_BATCH_SIZES = (1, 16)  # `sew bench --device cuda`'s default: a GPU is far from busy at batch 1


@dataclass(frozen=True)
class BenchOptions:
    """What `sew bench` measures; the defaults are the documented run (docs/benchmarks.md)."""

    models: tuple[str, ...] = ("sew-tiny", "sew-d-tiny", "wav2vec2-base", EMBEDDED)
    device: str = "cpu"  # where the models run: "cpu" or "cuda" (every engine, ours and transformers)
    threads: int = 2
    window_seconds: float = 20.0  # one forward = one window of this length (the CLI's default chunk)
    batch_sizes: tuple[int, ...] = (1, 4)
    precisions: tuple[str, ...] = ()  # () = all of DEVICE_PRECISIONS[device]
    repeats: int = 5  # timed repeats per variant, interleaved; the median is reported
    reference: bool = True  # measure transformers too (needs `pip install transformers`)
    pipeline_model: str = "sew-tiny"  # checkpoint for the whole-process comparison
    pipeline_minutes: float = 10.0  # length of the whole-process file; 0 skips the process part
    pipeline_repeats: int = 3
    pipeline_precisions: tuple[str, ...] = ()  # () = all of DEVICE_PRECISIONS[device]
    rss_model: str = EMBEDDED  # model for the RSS-vs-duration check
    rss_minutes: tuple[float, ...] = (10.0, 120.0)  # empty skips it
    directory_files: int = 6  # whole-CLI throughput on a directory of this many files; 0 skips it
    directory_seconds: float = 30.0
    help_repeats: int = 5
    workdir: Path | None = None  # checkpoints and generated audio (default: a temporary directory)

    def __post_init__(self) -> None:
        unknown = [
            m for m in self.models + (self.pipeline_model,) if m not in MODEL_CONFIGS and m != EMBEDDED
        ]
        if unknown:
            known = ", ".join([*MODEL_CONFIGS, EMBEDDED])
            raise UsageError(f"sew bench: unknown model {unknown[0]!r}; known: {known}")
        if self.device not in DEVICE_PRECISIONS:
            raise UsageError(f"sew bench: --device must be cpu or cuda, got {self.device!r}")
        allowed = DEVICE_PRECISIONS[self.device]
        for name in ("precisions", "pipeline_precisions"):
            if not getattr(self, name):
                object.__setattr__(self, name, allowed)  # frozen: the default is the device's
        bad = [p for p in self.precisions + self.pipeline_precisions if p not in allowed]
        if bad:
            raise UsageError(
                f"sew bench: --precision {bad[0]!r} is not one of {', '.join(allowed)} on {self.device}"
            )
        if self.threads < 1 or self.repeats < 1 or self.pipeline_repeats < 1 or self.window_seconds <= 0:
            raise UsageError("sew bench: threads, repeats and window length must be positive")
        if any(b < 1 for b in self.batch_sizes):
            raise UsageError(f"sew bench: batch sizes must be >= 1, got {list(self.batch_sizes)}")


# `sew bench --quick`: every code path once, in a few minutes (not for the record).
QUICK = {
    "window_seconds": 4.0,
    "batch_sizes": (1, 2),
    "repeats": 1,
    "pipeline_minutes": 0.5,
    "pipeline_repeats": 1,
    "rss_minutes": (0.5, 1.0),
    "directory_files": 2,
    "directory_seconds": 5.0,
    "help_repeats": 1,
}


def options_from_cli(quick: bool, **given: Any) -> BenchOptions:
    """BenchOptions from `sew bench` flags: the defaults (or QUICK; larger batches with --device cuda), then
    each flag given (not None)."""
    values: dict[str, Any] = dict(QUICK) if quick else {}
    if given.get("device") == "cuda" and not quick:
        values["batch_sizes"] = CUDA_BATCH_SIZES
    for key, value in given.items():
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        values[key] = tuple(value) if isinstance(value, list) else value
    return BenchOptions(**values)


@dataclass(frozen=True)
class ForwardResult:
    """One (model, engine, precision, batch) forward timing; seconds are the median over repeats."""

    model: str
    engine: str  # "sew" | "transformers"
    precision: str
    batch: int
    seconds: float
    audio_seconds: float  # audio per forward (batch * window)
    gflop: float  # FLOPs of one forward (FlopCounterMode on the fp32 engine model), in GFLOP
    peak_fraction: float  # achieved GFLOP/s over the measured GEMM peak of the same dtype
    vs_transformers: float | None  # transformers' median time / ours (same batch), > 1 = we are faster
    max_abs_diff: float | None  # logits vs the reference (transformers for fp32; our fp32 for fast paths)
    argmax_agreement: float | None  # fraction of frames whose argmax token equals the reference's
    times: tuple[float, ...] = ()
    device_peak_mb: float | None = (
        None  # CUDA: peak memory one forward allocates above the weights; None: CPU
    )

    @property
    def throughput(self) -> float:
        """Audio seconds per wall second."""
        return self.audio_seconds / self.seconds

    @property
    def rtf(self) -> float:
        """Real-time factor: wall seconds per audio second."""
        return self.seconds / self.audio_seconds

    @property
    def gflops(self) -> float:
        """Achieved GFLOP/s."""
        return self.gflop / self.seconds


@dataclass(frozen=True)
class ProcessResult:
    """One whole-process measurement; wall and peak RSS are medians over repeats."""

    label: str
    command: str
    audio_seconds: float
    wall: float
    peak_rss_mb: float
    walls: tuple[float, ...] = ()
    returncode: int = 0

    @property
    def throughput(self) -> float:
        """Audio seconds per wall second (0 when no audio)."""
        return self.audio_seconds / self.wall if self.audio_seconds else 0.0


@dataclass
class BenchReport:
    """Everything one `sew bench` run measured."""

    options: BenchOptions
    machine: dict[str, Any] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)  # dtype -> GEMM GFLOP/s
    forward: list[ForwardResult] = field(default_factory=list)
    process: list[ProcessResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: str = ""
    finished: str = ""

    def to_json(self) -> str:
        """The report as JSON (paths as strings)."""
        data = asdict(self)
        data["options"]["workdir"] = str(self.options.workdir) if self.options.workdir else None
        return json.dumps(data, indent=1, default=str)


# ----------------------------------------------------------------------------------------------- machine


def load_average() -> str:
    """The 1/5/15-minute load averages as a string ('n/a' where unknown)."""
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:  # pragma: no cover - platforms without getloadavg
        return "n/a"


def machine_info(threads: int, device: str = "cpu") -> dict[str, Any]:
    """CPU model, cores, relevant ISA flags, memory, library versions and the load average (+ the GPU)."""
    import torch

    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine(), platform.processor()):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    try:
        import transformers

        tf_version = transformers.__version__
    except ImportError:
        tf_version = "not installed"
    from sewcli.model.fastpath import cpu_has_native_bf16

    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    gpu = {}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        gpu = {
            "gpu": f"{props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability "
            f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
        }
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "isa": " ".join(f for f in wanted if f in flags) or "n/a",
        "native_bf16": cpu_has_native_bf16(),
        "memory": mem,
        "threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "transformers": tf_version,
        "load_at_start": load_average(),
        **gpu,
    }


def gemm_peak(
    threads: int, dtype_name: str = "fp32", n: int | None = None, seconds: float = 1.5, device: str = "cpu"
) -> float:
    """Best GFLOP/s of an n x n x n matmul in `dtype_name` on `threads` threads or on the GPU (the machine's
    peak; n defaults to 2048 on the CPU, 8192 on a GPU, which a 2048 product leaves mostly idle).

    On the CPU the product is timed both by `torch.matmul` (MKL for fp32) and by oneDNN's matmul (the
    kernel sew's fp32 linears use on AMD CPUs, `sewcli.model.fastpath.onednn_linears`), and the faster
    counts: on an AMD EPYC Zen 5 MKL's fp32 GEMM ran at half oneDNN's rate (204 against 457 GFLOP/s on 2
    threads, 2026-12-06), so a peak taken from MKL alone put sew's forwards at 125 % of "peak".
    """
    import torch

    torch.set_num_threads(threads)
    n = n or (8192 if device == "cuda" else 2048)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    products = [lambda: a @ b]
    onednn = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    if device == "cpu" and onednn:
        products.append(lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], ""))  # a @ b.T
    best = 0.0
    for product in products:
        product()  # warm-up: thread pool, oneDNN or cuBLAS kernels
        _synchronize(device)
        deadline = time.perf_counter() + seconds / len(products)
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            product()
            _synchronize(device)
            best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def peak_dtypes(device: str) -> tuple[str, ...]:
    """The dtypes whose GEMM peak a run measures: those its precisions compute in."""
    return ("fp32", "fp16", "bf16") if device == "cuda" else ("fp32", "bf16")


def _synchronize(device: str) -> None:
    """Wait for the GPU's queued work (CUDA runs asynchronously: a timer would stop before it finished)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------------- checkpoints


def write_random_checkpoint(name: str, directory: Path, seed: int = 0) -> Path:
    """Write a random-weight HF-format checkpoint of one of MODEL_CONFIGS with our model code.

    The positional conv is saved as the weight-norm pair (`parametrizations.weight.original0/1`) that
    transformers' save_pretrained writes, so both engines load the very same file.
    """
    import torch
    from safetensors.torch import save_file

    from sewcli.model.load import build_model

    config = MODEL_CONFIGS[name]
    family = config["model_type"]
    torch.manual_seed(seed)
    model = build_model(family, config).eval()
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("pos_conv_embed.conv.weight"):  # (out, in/groups, k): norm per kernel tap (dim=2)
            base = key[: -len("weight")] + "parametrizations.weight."
            state[base + "original0"] = torch.norm_except_dim(value, 2, 2).contiguous()
            state[base + "original1"] = value.contiguous()
        elif "masked_spec_embed" not in key:
            state[key] = value.contiguous()
    cfg: Any = model.config
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(cfg.to_hf(), indent=1))
    (directory / "vocab.json").write_text(json.dumps(ENGLISH_VOCAB))
    (directory / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    specials = {k: TOKENIZER_CONFIG[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (directory / "special_tokens_map.json").write_text(json.dumps(specials))
    (directory / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    return directory


def embedded_checkpoint() -> Path:
    """The directory of the registry's default (shipped) model; UsageError when the package has none."""
    from sewcli import registry

    reg = registry.load_registry(None, include_user_config=False)
    spec = registry.resolve(None, reg)
    if spec.path is None or not (spec.path / "config.json").is_file():
        raise UsageError(f"sew bench: the default model {spec.name!r} has no checkpoint inside the package")
    return spec.path


def pipeline_inputs(workdir: Path, minutes: float = 10.0) -> tuple[Path, Path]:
    """(SEW-tiny checkpoint, speech-like file of `minutes`): what the whole-process comparisons run on."""
    audio = write_long_audio(workdir / "audio" / f"pipeline-{minutes:g}min.wav", minutes * 60)
    return checkpoint_for("sew-tiny", workdir), audio


def checkpoint_for(name: str, workdir: Path) -> Path:
    """The checkpoint directory bench uses for `name` (written once per workdir)."""
    if name == EMBEDDED:
        return embedded_checkpoint()
    directory = workdir / "checkpoints" / name
    if not (directory / "model.safetensors").is_file():
        write_random_checkpoint(name, directory)
    return directory


# ----------------------------------------------------------------------------------------------- audio


def speechlike(seconds: float, seed: int = 0) -> FloatArray:
    """Deterministic noise-modulated voiced tones with pauses at 16 kHz, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    envelope = (np.sin(2 * np.pi * 0.7 * t) > -0.3).astype(np.float32)  # ~0.5 s pauses
    tone = np.sin(2 * np.pi * (180 + 60 * np.sin(2 * np.pi * 3 * t)) * t)
    out: FloatArray = ((0.3 * tone + 0.05 * rng.standard_normal(n)) * envelope).astype(np.float32)
    return out


def write_long_audio(path: Path, seconds: float, seed: int = 0) -> Path:
    """Write a 16 kHz PCM-16 WAV of `seconds` by tiling a 60 s speech-like block (streamed, bounded RAM)."""
    import soundfile as sf  # type: ignore[import-untyped]

    if path.is_file() and sf.info(str(path)).frames == int(round(seconds * SAMPLE_RATE)):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    block = speechlike(60.0, seed)
    left = int(round(seconds * SAMPLE_RATE))
    with sf.SoundFile(str(path), "w", SAMPLE_RATE, 1, "PCM_16") as f:
        while left > 0:
            take = min(left, block.shape[0])
            f.write(block[:take])
            left -= take
    return path


# ----------------------------------------------------------------------------------------------- forward


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Time each function `repeats` times, round-robin (a, b, c, a, b, c, ...), after one warm-up each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    return times


def ab_line(times: dict[str, list[float]], outputs: dict[str, Any]) -> str:
    """One line for an A/B of two forwards: each one's median time, B's speed-up over A, and the largest
    difference between their outputs (`times` from `interleaved`; `outputs` the forwards' tensors under the
    same two keys, A first)."""
    (a, a_times), (b, b_times) = times.items()
    ta, tb = statistics.median(a_times), statistics.median(b_times)
    diff = float((outputs[a] - outputs[b]).abs().max())
    speedup = (ta / tb - 1) * 100
    return f"{a} {ta * 1e3:7.1f} ms, {b} {tb * 1e3:7.1f} ms ({speedup:+.1f} %), max difference {diff:.1e}"


def forward_ab(
    models: dict[str, Callable[[Any], Any]], seconds: tuple[int, ...] = (10, 20), rounds: int = 8
) -> list[str]:
    """A/B of two forwards (A first) on random windows of each length: `ab_line` per length, `rounds`
    interleaved rounds each, under inference mode. The in-process comparisons of bench/*_ab.py."""
    import torch

    lines = []
    for secs in seconds:
        x = torch.randn(1, secs * 16000, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            outputs = {k: m(x) for k, m in models.items()}
            times = interleaved({k: partial(m, x) for k, m in models.items()}, rounds)
        lines.append(f"{secs:>3} s: {ab_line(times, outputs)}")
    return lines


@functools.cache
def _teach_flop_counter() -> None:
    """Teach torch's FlopCounterMode the CPU kernels it does not count by itself: oneDNN's fused linear
    (sewcli.model.fastpath.onednn_linear), 2 x rows x in x out like aten.addmm, and torch's CPU flash
    attention (what F.scaled_dot_product_attention runs on the CPU), counted like the GPU's flash attention.
    Without the latter the attention of every CPU forward counted zero (12 % of a 20 s SEW-tiny forward's
    FLOPs) until 2026-12-06, while `fastpath.blocked_attention`'s matmuls count as linears."""
    import torch
    from torch.utils.flop_counter import register_flop_formula, sdpa_flop_count

    cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None:

        @register_flop_formula(cpu_flash)
        def _cpu_flash_flop(q_shape: Any, k_shape: Any, v_shape: Any, *args: Any, **kw: Any) -> int:
            return int(sdpa_flop_count(q_shape, k_shape, v_shape))

    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if op is None:  # torch without oneDNN: nothing to count
        return

    @register_flop_formula(op)
    def _linear_pointwise_flop(
        x_shape: Any, second: Any, *args: Any, out_shape: Any = None, **kw: Any
    ) -> int:
        # .default(x, weight, bias, ...); .binary(x, other, weight, bias, ...)
        weight = second if len(second) == 2 and second[1] == x_shape[-1] else args[0]
        return 2 * math.prod(x_shape[:-1]) * int(weight[0]) * int(weight[1])


def count_gflop(module: Any, x: Any) -> float:
    """GFLOP of one forward of `module` on `x`, counted by torch.utils.flop_counter (matmul, conv, SDPA on the
    GPU and the CPU, and oneDNN's fused linears)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    _teach_flop_counter()
    for param in module.parameters():  # FlopCounterMode's module tracker trips over grad-requiring inputs
        param.requires_grad_(False)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return float(counter.get_total_flops()) / 1e9


def _windows(batch: int, seconds: float) -> FloatArray:
    """(batch, samples) normalised speech-like windows, one seed per row."""
    from sewcli.checkpoint import normalize_waveform

    return np.stack([normalize_waveform(speechlike(seconds, seed=i)) for i in range(batch)])


def _reference_model(directory: Path, device: str = "cpu") -> Any:
    """transformers' own CTC model for the checkpoint, eager attention, fp32, eval mode, on `device`."""
    import transformers

    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # no load report (masked_spec_embed is training-only)
    model = transformers.AutoModelForCTC.from_pretrained(str(directory), attn_implementation="eager")
    return model.to(device).eval()


def _engines(directory: Path, opts: BenchOptions) -> dict[str, Any]:
    """Our model at every requested precision (+ "transformers" when the reference is on), keyed by label."""
    from sewcli import inference

    models: dict[str, Any] = {}
    for precision in dict.fromkeys(("fp32", *opts.precisions)):
        # one window at a time on all the threads: the latency of one forward (windows in parallel, as the
        # CLI runs them, are timed apart: `_in_parallel`)
        options = inference.InferenceOptions(
            device=opts.device, threads=opts.threads, workers=1, precision=precision
        )
        models[precision] = inference.load(directory, options).module
    if opts.reference:
        models["transformers"] = _reference_model(directory, opts.device)
    return models


def _logits(label: str, module: Any, x: Any) -> Any:
    """fp32 logits (batch, frames, vocab) of `module`, on x's device, computed to the end (synchronized);
    handles half-precision inputs and HF output objects."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(label)
    with torch.inference_mode():
        out = module(x if dtype is None else x.to(dtype))
        logits = (out.logits if hasattr(out, "logits") else out).float()
    _synchronize(logits.device.type)
    return logits


def _device_peak_mb(label: str, module: Any, x: Any) -> float | None:
    """CUDA: the peak memory one forward allocates on top of what is resident before it (activations and
    workspaces; the weights of every engine loaded stay resident), in MB; None on the CPU."""
    if x.device.type != "cuda":
        return None
    import torch

    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    _logits(label, module, x)
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def _parity(a: Any, b: Any) -> tuple[float, float]:
    """(max |a - b|, fraction of frames with equal argmax) on the frames both (B, frames, vocab) have"""
    n = min(a.shape[1], b.shape[1])
    diff = float((a[:, :n] - b[:, :n]).abs().max())
    agree = float((a[:, :n].argmax(-1) == b[:, :n].argmax(-1)).float().mean())
    return diff, agree


def _in_parallel(label: str, module: Any, x: Any, pool: Any, threads: int) -> None:
    """`threads` forwards of x at once, one thread each (the CLI's default on the CPU, inference.py)."""
    import torch

    torch.set_num_threads(1)  # the pool's threads were started on one thread each
    try:
        list(pool.map(lambda _: _logits(label, module, x), range(threads)))
    finally:
        torch.set_num_threads(threads)


def forward_bench(
    name: str, directory: Path, opts: BenchOptions, peaks: dict[str, float]
) -> list[ForwardResult]:
    """Time one forward of each engine/precision on identical windows, interleaved; parity vs the reference.

    Args:
        name: the model's label in the report.
        directory: its checkpoint.
        opts: threads, window length, batch sizes, precisions, repeats, reference on/off.
        peaks: GEMM GFLOP/s per dtype from `gemm_peak`.
    Returns:
        one ForwardResult per (engine/precision, batch size).
    """
    import torch

    torch.set_num_threads(opts.threads)
    models = _engines(directory, opts)  # loaded with one worker: torch keeps opts.threads threads
    results: list[ForwardResult] = []
    with ThreadPoolExecutor(
        opts.threads, "bench-fwd", initializer=torch.set_num_threads, initargs=(1,)
    ) as pool:
        for batch in opts.batch_sizes:
            results += _forward_batch(name, models, batch, opts, peaks, pool)
    del models
    return results


def _forward_batch(
    name: str, models: dict[str, Any], batch: int, opts: BenchOptions, peaks: dict[str, float], pool: Any
) -> list[ForwardResult]:
    """forward_bench for one batch size: each engine once per repeat, interleaved, and each of ours also as
    `threads` windows at once on one thread each (the CLI's default on the CPU, inference.py)."""
    import torch

    results: list[ForwardResult] = []
    x = torch.from_numpy(_windows(batch, opts.window_seconds)).to(opts.device)  # (batch, samples)
    gflop = count_gflop(models["fp32"], x)
    logits = {label: _logits(label, m, x) for label, m in models.items()}
    memory = {label: _device_peak_mb(label, m, x) for label, m in models.items()}
    fns: dict[str, Callable[[], object]] = {lab: partial(_logits, lab, m, x) for lab, m in models.items()}
    parallel = {  # the CPU only: on a GPU the CLI runs one window at a time (inference.py)
        f"{lab} x{opts.threads}": partial(_in_parallel, lab, m, x, pool, opts.threads)
        for lab, m in models.items()
        if lab != "transformers" and opts.threads > 1 and opts.device == "cpu"
    }
    times = interleaved({**fns, **parallel}, opts.repeats)
    for label in parallel:  # `threads` forwards per timing: seconds per forward
        times[label] = [t / opts.threads for t in times[label]]
    ref_time = statistics.median(times["transformers"]) if "transformers" in times else None
    for label, ts in times.items():
        engine = "transformers" if label == "transformers" else "sew"
        precision = "fp32" if engine == "transformers" else label
        # transformers and our fp32 are compared with each other; fast paths with our fp32; windows in
        # parallel run the same modules (no parity of their own)
        other = "transformers" if label == "fp32" else "fp32"
        parity = label in logits and other in logits
        diff, agree = _parity(logits[label], logits[other]) if parity else (None, None)
        median = statistics.median(ts)
        peak = peaks.get(_peak_dtype(precision), 0.0)
        results.append(
            ForwardResult(
                model=name,
                engine=engine,
                precision=precision,
                batch=batch,
                seconds=median,
                audio_seconds=batch * opts.window_seconds,
                gflop=gflop,
                peak_fraction=(gflop / median) / peak if peak else 0.0,
                vs_transformers=None if ref_time is None or engine == "transformers" else ref_time / median,
                max_abs_diff=diff,
                argmax_agreement=agree,
                times=tuple(ts),
                device_peak_mb=memory.get(label),
            )
        )
    log.info(
        "forward %s batch %d: %s",
        name,
        batch,
        {k: round(statistics.median(v), 3) for k, v in times.items()},
    )
    return results


# ----------------------------------------------------------------------------------------------- processes


# Runs the measured command as its child and reports that child's own wall time and peak RSS. A separate small
# process is needed because Linux keeps ru_maxrss across fork+exec: a child forked straight from this (large)
# bench process would report this process's RSS as its own peak.
_MEASURE = """
import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write("\\nSEW_BENCH %.6f %d\\n" % (time.perf_counter() - t0, usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_process(
    command: Sequence[str], env: dict[str, str] | None = None, timeout: float = 4 * 3600
) -> tuple[float, float, int]:
    """Run `command` to completion; returns (wall seconds, peak RSS in MB of that process, exit status)."""
    wrapped = [sys.executable, "-S", "-c", _MEASURE, *command]
    proc = subprocess.run(
        wrapped, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout
    )
    err = proc.stderr.decode(errors="replace")
    marker = err.rfind("SEW_BENCH ")
    if marker < 0:
        raise RuntimeError(f"sew bench: the measuring wrapper failed: {err[-500:]}")
    wall, rss_kib = err[marker:].split()[1:3]
    if proc.returncode:
        log.warning("%s exited %d: %s", " ".join(command[:5]), proc.returncode, err[:marker][-800:])
    return float(wall), int(rss_kib) / 1024, proc.returncode


def bench_env(threads: int) -> dict[str, str]:
    """The environment of every timed process: same thread count for OpenMP/MKL, offline, no progress bars."""
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONWARNINGS="ignore",
    )
    return env


def sew_command(
    inputs: Sequence[Path], model: Path, out_dir: Path, threads: int, precision: str, device: str = "cpu"
) -> list[str]:
    """The `sew transcribe` command line a user would run (python -m sewcli == the `sew` script)."""
    return [
        sys.executable,
        "-m",
        "sewcli",
        "transcribe",
        *map(str, inputs),
        "--model",
        str(model),
        "--threads",
        str(threads),
        "--precision",
        precision,
        "--device",
        device,
        "--output-dir",
        str(out_dir),
        "--overwrite",
        "--quiet",
    ]


def hf_pipeline_command(model: Path, audio: Path, threads: int, device: str = "cpu") -> list[str]:
    """The transformers ASR-pipeline baseline as its own process (see `hf_pipeline_main`)."""
    command = [sys.executable, "-m", "sewcli.bench", "hf-pipeline", str(model), str(audio), str(threads)]
    return command if device == "cpu" else [*command, device]


def hf_pipeline_main(model: str, audio: str, threads: str, device: str = "cpu") -> int:
    """Baseline: what a user would otherwise run: transformers' ASR pipeline, chunk_length_s=20, fp32, on
    the CPU or the GPU."""
    import soundfile as sf
    import torch
    import transformers

    torch.set_num_threads(int(threads))
    asr = transformers.pipeline("automatic-speech-recognition", model=model, chunk_length_s=20, device=device)
    samples, rate = sf.read(audio, dtype="float32")
    result: Any = asr({"raw": samples, "sampling_rate": rate})
    text = str(result["text"])
    Path(audio).with_suffix(".hf.txt").write_text(text)
    return 0


def compile_sew_bytecode() -> bool:
    """Write sewcli's bytecode (__pycache__), as pip does when it installs a package; True when it could.

    transformers, like every package pip installs, starts from compiled bytecode. An editable install of sew
    has none until a run writes it, and with PYTHONDONTWRITEBYTECODE=1 (set on the machines these
    benchmarks ran on) no run ever does: each `sew` process then compiled its ~10k lines again, 0.3-0.4 s
    per process (`sew transcribe` of a 1 s file: 2.1-2.4 s against 1.8-2.0 s). py_compile writes the files
    whatever that variable says; where the package directory is read-only, nothing changes.
    """
    import compileall

    return bool(compileall.compile_dir(str(Path(__file__).resolve().parent), quiet=1))


def process_bench(
    label: str, commands: dict[str, list[str]], audio_seconds: float, opts: BenchOptions, repeats: int
) -> list[ProcessResult]:
    """Run each command `repeats` times interleaved; short runs get an untimed warm-up (page cache, .pyc).

    Runs over a minute of audio skip the warm-up: start-up is a few percent of them and the time is better
    spent on repeats. sew's bytecode is compiled first (`compile_sew_bytecode`), so that both sides start
    from bytecode.
    """
    compile_sew_bytecode()
    env = bench_env(opts.threads)
    if audio_seconds < 60:
        for command in commands.values():
            run_process(command, env)
    walls: dict[str, list[float]] = {k: [] for k in commands}
    rss: dict[str, list[float]] = {k: [] for k in commands}
    codes: dict[str, int] = dict.fromkeys(commands, 0)
    for _ in range(repeats):
        for key, command in commands.items():
            wall, peak, code = run_process(command, env)
            walls[key].append(wall)
            rss[key].append(peak)
            codes[key] = codes[key] or code
    results = [
        ProcessResult(
            label=f"{label}: {key}",
            command=" ".join(commands[key]).replace(sys.executable, "python"),
            audio_seconds=audio_seconds,
            wall=statistics.median(walls[key]),
            peak_rss_mb=statistics.median(rss[key]),
            walls=tuple(walls[key]),
            returncode=codes[key],
        )
        for key in commands
    ]
    log.info("process %s: %s", label, {r.label: round(r.wall, 2) for r in results})
    return results


def help_bench(opts: BenchOptions) -> list[ProcessResult]:
    """`sew --help` wall time (the console script when installed, and `python -m sewcli --help`)."""
    commands = {"python -m sewcli --help": [sys.executable, "-m", "sewcli", "--help"]}
    script = Path(sys.executable).with_name("sew")
    if script.is_file():
        commands = {"sew --help": [str(script), "--help"], **commands}
    return process_bench("start-up", commands, 0.0, opts, opts.help_repeats)


def pipeline_bench(opts: BenchOptions, workdir: Path) -> list[ProcessResult]:
    """Whole `sew transcribe` processes vs the transformers ASR pipeline on one long file, same checkpoint."""
    model = checkpoint_for(opts.pipeline_model, workdir)
    seconds = opts.pipeline_minutes * 60
    audio = write_long_audio(workdir / "audio" / f"pipeline-{opts.pipeline_minutes:g}min.wav", seconds)
    out = workdir / "out"
    commands = {
        f"sew {p}": sew_command([audio], model, out, opts.threads, p, opts.device)
        for p in opts.pipeline_precisions
    }
    if opts.reference:
        baseline = hf_pipeline_command(model, audio, opts.threads, opts.device)
        commands = {"transformers pipeline": baseline, **commands}
    return process_bench(
        f"{opts.pipeline_model} {opts.pipeline_minutes:g} min", commands, seconds, opts, opts.pipeline_repeats
    )


def rss_bench(opts: BenchOptions, workdir: Path) -> list[ProcessResult]:
    """Peak RSS of `sew transcribe` (default settings) at each duration in opts.rss_minutes: flat or not."""
    model = checkpoint_for(opts.rss_model, workdir)
    results = []
    for minutes in [m for m in opts.rss_minutes if m > 0]:  # 0 skips (`--rss-minutes 0`)
        audio = write_long_audio(workdir / "audio" / f"rss-{minutes:g}min.wav", minutes * 60, seed=1)
        command = sew_command([audio], model, workdir / "out", opts.threads, "fp32", opts.device)
        wall, peak, code = run_process(command, bench_env(opts.threads), timeout=4 * 3600)
        label = f"RSS {opts.rss_model} {minutes:g} min"
        results.append(
            ProcessResult(
                label,
                " ".join(command).replace(sys.executable, "python"),
                minutes * 60,
                wall,
                peak,
                (wall,),
                code,
            )
        )
        log.info("%s: %.1f s, %.0f MB", label, wall, peak)
    return results


def directory_bench(opts: BenchOptions, workdir: Path) -> list[ProcessResult]:
    """Whole-CLI throughput on a directory of `directory_files` files of `directory_seconds` each."""
    folder = workdir / "audio" / f"dir-{opts.directory_files}x{opts.directory_seconds:g}s"
    for i in range(opts.directory_files):
        write_long_audio(folder / f"f{i:02d}.wav", opts.directory_seconds, seed=10 + i)
    model = checkpoint_for(opts.pipeline_model, workdir)
    fast = "fp16"
    if opts.device == "cpu":  # the CPU's fast path: bf16 where its convs run as AMX GEMMs, else int8
        from sewcli.model.fastpath import gemm_convs_pay_off

        fast = "bf16" if gemm_convs_pay_off() else "int8"
    commands = {
        p: sew_command([folder], model, workdir / "out-dir", opts.threads, p, opts.device)
        for p in ("fp32", fast)
    }
    seconds = opts.directory_files * opts.directory_seconds
    return process_bench(
        f"directory {opts.directory_files} x {opts.directory_seconds:g} s {opts.pipeline_model}",
        commands,
        seconds,
        opts,
        1,
    )


# ----------------------------------------------------------------------------------------------- run + report


def _peak_dtype(precision: str) -> str:
    """The GEMM peak a precision is measured against: its own dtype; int8 the fp32 one (its FLOPs are the
    fp32 model's)."""
    dtype = precision.split()[0]  # "bf16 x2": the rows of windows in parallel
    return dtype if dtype in ("bf16", "fp16") else "fp32"


def _rescale_peak(result: ForwardResult, peaks: dict[str, float]) -> ForwardResult:
    """Express achieved GFLOP/s against the best GEMM peak of the run (before or after the forwards)."""
    dtype = _peak_dtype(result.precision)
    best = max((v for k, v in peaks.items() if k.split()[0] == dtype), default=0.0)
    return replace(result, peak_fraction=result.gflops / best if best else 0.0)


@contextmanager
def _workdir(opts: BenchOptions) -> Iterator[Path]:
    """opts.workdir, or a temporary directory removed afterwards."""
    if opts.workdir is not None:
        opts.workdir.mkdir(parents=True, exist_ok=True)
        yield opts.workdir
    else:
        with tempfile.TemporaryDirectory(prefix="sew-bench-") as tmp:
            yield Path(tmp)


def run(opts: BenchOptions) -> BenchReport:
    """Run every part of the benchmark that `opts` enables and return the report (nothing is printed)."""
    report = BenchReport(options=opts, started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    if opts.reference:
        try:
            import transformers  # noqa: F401
        except ImportError:
            raise UsageError(
                "sew bench: the transformers reference needs `pip install transformers`; "
                "or pass --no-reference"
            ) from None
    if opts.device == "cuda":
        from sewcli.inference import resolve_device

        resolve_device("cuda")  # UsageError where there is none
    report.machine = machine_info(opts.threads, opts.device)
    dtypes = peak_dtypes(opts.device)
    report.peaks = {d: gemm_peak(opts.threads, d, device=opts.device) for d in dtypes}
    with _workdir(opts) as workdir:
        for name in opts.models:
            try:
                directory = checkpoint_for(name, workdir)
            except UsageError as e:
                report.notes.append(str(e))
                continue
            report.forward += forward_bench(name, directory, opts, report.peaks)
        report.peaks.update(
            {f"{d} after forward": gemm_peak(opts.threads, d, device=opts.device) for d in dtypes}
        )
        report.forward = [_rescale_peak(r, report.peaks) for r in report.forward]
        report.process += help_bench(opts)
        if opts.pipeline_minutes > 0:
            report.process += pipeline_bench(opts, workdir)
        if opts.directory_files > 0:
            report.process += directory_bench(opts, workdir)
        if any(m > 0 for m in opts.rss_minutes):
            try:
                report.process += rss_bench(opts, workdir)
            except UsageError as e:
                report.notes.append(str(e))
    report.machine["load_at_end"] = load_average()
    report.finished = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return report


def _fmt(value: float | None, spec: str = ".2f") -> str:
    """A number for a table cell, '-' for None."""
    return "-" if value is None else format(value, spec)


def forward_table(results: Sequence[ForwardResult]) -> str:
    """Markdown table of the forward timings (with the GPU memory column where a row has it)."""
    memory = any(r.device_peak_mb is not None for r in results)
    head = (
        "| model | engine | precision | batch | s / forward | audio-s / s | RTF | GFLOP / forward | GFLOP/s "
        "| % of GEMM peak | speed-up vs transformers | max abs diff | argmax agree |"
        + (" GPU MB per forward |" if memory else "")
        + "\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        + ("---:|" if memory else "")
        + "\n"
    )
    rows = [
        f"| {r.model} | {r.engine} | {r.precision} | {r.batch} | {r.seconds:.4f} | {r.throughput:.1f} | "
        f"{r.rtf:.5f} | {r.gflop:.1f} | {r.gflops:.1f} | {100 * r.peak_fraction:.0f}% | "
        f"{_fmt(r.vs_transformers)}{'x' if r.vs_transformers else ''} | {_fmt(r.max_abs_diff, '.1e')} | "
        f"{_fmt(None if r.argmax_agreement is None else 100 * r.argmax_agreement, '.1f')}"
        f"{'%' if r.argmax_agreement is not None else ''} |"
        + (f" {_fmt(r.device_peak_mb, '.0f')} |" if memory else "")
        for r in results
    ]
    return head + "\n".join(rows) + "\n"


def process_table(results: Sequence[ProcessResult]) -> str:
    """Markdown table of the whole-process runs; pipeline rows get their ratio to the transformers one."""
    baseline = {
        r.label.split(": ")[0]: r.wall for r in results if r.label.endswith(": transformers pipeline")
    }
    head = (
        "| run | audio s | wall s (median) | audio-s / s | RTF | peak RSS MB | vs transformers pipeline "
        "| runs (s) |\n|---|---:|---:|---:|---:|---:|---:|---|\n"
    )
    rows = []
    for r in results:
        base = baseline.get(r.label.split(": ")[0])
        ratio = f"{base / r.wall:.2f}x" if base and not r.label.endswith("transformers pipeline") else "-"
        rtf = f"{r.wall / r.audio_seconds:.4f}" if r.audio_seconds else "-"
        tput = f"{r.throughput:.1f}" if r.audio_seconds else "-"
        failed = f" (exit {r.returncode})" if r.returncode else ""
        rows.append(
            f"| {r.label}{failed} | {r.audio_seconds:.0f} | {r.wall:.2f} | {tput} | {rtf} "
            f"| {r.peak_rss_mb:.0f} "
            f"| {ratio} | {', '.join(f'{w:.2f}' for w in r.walls)} |"
        )
    commands = "\n".join(f"- `{r.label}`: `{r.command}`" for r in results)
    return head + "\n".join(rows) + "\n\nCommands:\n\n" + commands + "\n"


def render_markdown(report: BenchReport) -> str:
    """The whole report as markdown: machine, GEMM peak, forward table, process table, notes."""
    m = report.machine
    lines = [
        f"Run {report.started} - {report.finished}; `{m.get('cpu')}`, {m.get('logical_cpus')} logical CPUs, "
        f"{m.get('memory')}, ISA: {m.get('isa')} (native bf16: {m.get('native_bf16')}); "
        f"Python {m.get('python')}, "
        f"torch {m.get('torch')} ({m.get('torch_capability')}), transformers {m.get('transformers')}; "
        f"{m.get('threads')} threads; load average (1/5/15 min) at start {m.get('load_at_start')}, "
        f"at end {m.get('load_at_end')}."
        + (f" Models on the GPU: {m['gpu']}, CUDA {m.get('cuda')}." if "gpu" in m else ""),
        "",
        f"GEMM peak measured in this run ({'8192' if 'gpu' in m else '2048'}^3 matmul, best of 1.5 s"
        + ("" if "gpu" in m else " and of MKL's and oneDNN's kernels")
        + "; "
        "'% of GEMM peak' uses the higher): "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in report.peaks.items())
        + ".",
        "",
    ]
    if report.forward:
        lines += [
            f"Model forward on identical {report.options.window_seconds:g} s windows (median of "
            f"{report.options.repeats} interleaved repeats):",
            "",
            forward_table(report.forward),
        ]
    if report.process:
        lines += [
            "Whole processes (start-up, model load, audio decoding and writing included):",
            "",
            process_table(report.process),
        ]
    lines += [f"Note: {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sewcli.bench hf-pipeline MODEL AUDIO THREADS [DEVICE]` (the baseline process)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) in (4, 5) and args[0] == "hf-pipeline":
        return hf_pipeline_main(*args[1:])
    sys.stderr.write(
        "usage: python -m sewcli.bench hf-pipeline MODEL_DIR AUDIO THREADS [DEVICE] (use `sew bench`)\n"
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
