"""The inference stage: model windows in, CTC log-probabilities (records.Emissions) out, in window order.

torch is imported here and in sewcli/model/* only. Each window is normalised on its own exactly like the HF
feature extractor does for one utterance, windows are batched only when they have the same length (group-norm
models must never see padding, sew_spec.md P7, so batched == unbatched), the logits become float32
log-softmax, and only each window's kept rows [keep_start:keep_end] leave this module, as a generator so
memory stays flat.

On the CPU, `workers` windows run at once, each in its own thread on threads/workers intra-op threads, while
the caller's thread reads audio and decodes: with 2 threads on an Intel Xeon, two windows on one thread each
beat one window on two threads by 4-53 % in whole runs (docs/benchmarks.md "Windows in parallel"; on the AMD
Zen 4 measured before, two intra-op threads already scaled 2x). The results still leave in window order, and
at most workers + 1 windows are in flight, so memory stays bounded. A last window that would run alone (an
input of one window, or the odd one of the last round) runs on all the threads instead: a directory of 30 s
files took 3.9 instead of 5.5 s with SEW-tiny (docs/benchmarks.md, "An AMD EPYC Zen 5").
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sewcli.checkpoint import normalize_waveform
from sewcli.errors import UsageError
from sewcli.inference_options import DEVICES, PRECISION_NAMES, InferenceOptions
from sewcli.records import Emissions, FloatArray, Vocabulary, Window

__all__ = ["DEVICES", "PRECISIONS", "InferenceOptions", "LoadedModel", "emissions", "load", "resolve_device"]

log = logging.getLogger(__name__)

# Activation dtype per --precision; int8 = fp32 activations with int8 dynamic linear layers (CPU only).
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}
assert tuple(PRECISIONS) == PRECISION_NAMES

# Windows run at once on the CPU when --model-workers is not given: one per thread, at most this many (each
# window in flight holds its activations: a second one raised SEW-tiny's fp32 peak RSS by 78 MB with 20 s
# windows, 145 MB with 30 s ones).
MAX_AUTO_WORKERS = 4
# Windows per forward on CUDA when --batch-size is not given. One window leaves an H200 idle between kernel
# launches (SEW-tiny: 7.6 ms for one 20 s window in fp16, 8.3 ms for 16), and cuDNN picks slow half-precision
# convs for a batch of one (wav2vec2-base fp16: 14.6 ms, slower than fp32's 10.0; 16 windows 2.3 ms each):
# docs/benchmarks.md, "CUDA on an NVIDIA H200". 4 keeps a forward's activations near 2.3 GB (wav2vec2-base,
# 30 s windows, fp32; 1.1 GB in fp16), which small GPUs also hold; 16 was no faster in whole processes.
CUDA_AUTO_BATCH = 4
# torch's own default thread count (one per core), taken before load() changes it: --threads' default.
_DEFAULT_THREADS = torch.get_num_threads()


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run, with everything the other stages need to know about it."""

    name: str  # what the user asked for (registry name, directory or hub id)
    directory: Path
    module: Any  # the torch nn.Module, in eval mode, on `device`
    vocab: Vocabulary
    sample_rate: int
    do_normalize: bool  # per-window zero-mean unit-variance normalisation (preprocessor_config.json)
    hop_samples: int  # samples per logit frame (320)
    align_samples: int  # window starts on multiples of this: hop * squeeze (640 SEW/SEW-D, 320 w2v2)
    min_samples: int  # shortest input the model accepts (720 SEW/SEW-D, 400 wav2vec2)
    device: str
    dtype: Any  # torch dtype
    language: str | None = None  # from the registry entry, for the transcript
    workers: int = 1  # windows run at once (threads of their own), each on torch.get_num_threads() threads

    @property
    def frame_seconds(self) -> float:
        return self.hop_samples / self.sample_rate

    def frame_count(self, n_samples: int) -> int:
        """Logit frames the model emits for `n_samples` input samples."""
        lengths = self.module.output_lengths(torch.tensor([n_samples], dtype=torch.long))
        return int(lengths[0])


def resolve_device(name: str, precision: str = "fp32") -> str:
    """'auto' -> 'cuda' when a CUDA device is usable and `precision` runs there (not int8, CPU only), else
    'cpu'; 'cuda' without CUDA is a usage error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() and precision != "int8" else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    return name


def default_batch_size(device: str) -> int:
    """Windows per forward when --batch-size is not given: CUDA_AUTO_BATCH on CUDA, 1 on the CPU (where
    windows run at once in worker threads instead, `cpu_workers`)."""
    return CUDA_AUTO_BATCH if device == "cuda" else 1


def cpu_kernels(module: Any, precision: str) -> Any:
    """The CPU's kernels for a precision (sewcli/model/fastpath.py; measurements in docs/benchmarks.md).

    fp32 and bf16: q, k and v as one GEMM (`fuse_qkv`). fp32: the waveform encoder's convs as GEMMs
    (`convs_as_gemm`), which run at the GEMM peak where oneDNN's fp32 convs do not; on AMD CPUs the linears
    and those convs by oneDNN's matmul, the GELUs fused in (`onednn_linears`, `onednn_convs`). Every
    precision on AMD Zen 5 CPUs: attention by blocks of oneDNN matmuls (`blocked_attentions`). int8: linears
    quantized; convs in bf16 where bf16 pays off, as GEMMs where bf16 GEMMs run on AMX, as fused oneDNN
    GEMMs on AMD (or float32 GEMMs where bf16 does not pay off). bf16: convs as GEMMs on AMX CPUs, as fused
    oneDNN GEMMs on AMD Zen 5 CPUs.
    """
    from sewcli.model.fastpath import (
        bf16_pays_off,
        blocked_attention_pays_off,
        blocked_attentions,
        convs_as_gemm,
        convs_in_bf16,
        fuse_qkv,
        gemm_convs_pay_off,
        onednn_convs,
        onednn_linears,
        onednn_linears_pay_off,
        quantize_linear_int8,
    )

    if precision in ("fp32", "bf16"):
        fuse_qkv(module)
    zen5 = blocked_attention_pays_off()  # AMD Zen 5 and later
    if zen5:
        blocked_attentions(module)  # fp32, int8 (float32 attention) and bf16
    if precision == "fp32":
        convs_as_gemm(module)
        if onednn_linears_pay_off():
            onednn_linears(module)
            onednn_convs(module)
    elif precision == "int8":
        module = quantize_linear_int8(module)
        if not bf16_pays_off():
            convs_as_gemm(module)  # float32 convs
        else:
            convs_in_bf16(module)
            if gemm_convs_pay_off():
                convs_as_gemm(module)
            elif onednn_linears_pay_off():  # AMD: bf16 convs as one oneDNN GEMM each, GELU fused
                convs_as_gemm(module)
                onednn_convs(module)
    elif precision == "bf16":
        if gemm_convs_pay_off():
            convs_as_gemm(module)
        elif zen5:  # the GELU convs as fused bf16 oneDNN GEMMs (+2 % / -0.6 % on a Zen 4: not there)
            convs_as_gemm(module)
            onednn_convs(module)
        if not bf16_pays_off():
            log.warning(
                "--precision bf16 is slower than fp32 on this CPU (no AMX, or no native bf16); "
                "fp32 or int8 are faster here"
            )
    return module


def cpu_workers(threads: int, workers: int | None) -> tuple[int, int]:
    """(windows at once, intra-op threads per window) for `threads` CPU threads in all.

    Auto (`workers` None): one window per thread, at most MAX_AUTO_WORKERS, sharing the threads evenly.
    """
    n = workers if workers is not None else max(1, min(threads, MAX_AUTO_WORKERS))
    return n, max(1, threads // n)


def load(
    directory: Path, options: InferenceOptions, name: str | None = None, language: str | None = None
) -> LoadedModel:
    """Load a checkpoint directory for inference.

    Args:
        directory: a HF-format checkpoint directory (config.json, weights, vocab, preprocessor config).
        options: device, threads and precision.
        name: display name for messages and the transcript's `model` field (default: the directory).
        language: the transcripts' language code, when the registry knows it.
    Returns:
        the LoadedModel; raises CheckpointError / UnsupportedConfigError for bad checkpoints.
    """
    from sewcli.model.load import load_model

    device = resolve_device(options.device, options.precision)
    # CUDA: one window at a time (one stream: windows in parallel would only contend for it)
    workers, threads, per_worker = 1, options.threads, options.threads
    if device == "cpu":
        threads = options.threads or _DEFAULT_THREADS
        workers, per_worker = cpu_workers(threads, options.workers)
    if threads is not None:
        torch.set_num_threads(threads)  # loading and int8 packing use them all; each window gets its share
    dtype = PRECISIONS[options.precision]
    if dtype is torch.float16 and device == "cpu":
        raise UsageError("--precision fp16 needs --device cuda; use bf16 or fp32 on the CPU")
    if options.precision == "int8" and device != "cpu":
        raise UsageError("--precision int8 runs on the CPU only; use bf16 or fp16 with --device cuda")
    loaded = load_model(directory, device=device, dtype=dtype)
    module, info = loaded.model, loaded.info
    if device == "cpu":
        module = cpu_kernels(module, options.precision)
    if options.exit_layer is not None:  # early exit (sewcli/model/early_exit.py); no exit heads -> UsageError
        from sewcli.model.early_exit import ExitPolicy, configure_exit

        auto = options.exit_layer == "auto"
        policy = (
            ExitPolicy(threshold=options.exit_threshold)
            if auto
            else ExitPolicy(layer=int(options.exit_layer))
        )
        configure_exit(module, policy, name or str(directory))
    if per_worker is not None and per_worker != threads:
        torch.set_num_threads(per_worker)
    ctc: Any = module  # the CTC families' own attributes, which nn.Module's typing does not know
    return LoadedModel(
        name=name or str(directory),
        directory=Path(directory),
        module=module,
        vocab=info.vocabulary,
        sample_rate=info.features.sampling_rate,
        do_normalize=info.features.do_normalize,
        hop_samples=int(ctc.inputs_to_logits_ratio),
        align_samples=int(ctc.inputs_to_logits_ratio) * int(getattr(ctc.config, "squeeze_factor", 1)),
        min_samples=int(ctc.min_input_samples),
        device=device,
        dtype=dtype,
        language=language,
        workers=workers,
    )


def _batches(windows: Iterable[Window], batch_size: int) -> Iterator[list[Window]]:
    """Group consecutive windows of equal length, at most `batch_size` per group, keeping their order."""
    group: list[Window] = []
    for window in windows:
        if group and window.valid != group[0].valid:
            yield group
            group = []
        group.append(window)
        if len(group) == batch_size:  # at once, not when the next window comes: a live stream waits for it
            yield group
            group = []
    if group:
        yield group


def window_log_probs(model: LoadedModel, batch: list[Window]) -> list[FloatArray]:
    """Run one batch of equal-length windows; return each window's full (frames, vocab) float32 log-probs.

    Args:
        model: the loaded model.
        batch: windows that all have the same number of samples.
    Returns:
        one (frames, vocab) array per window, frames = model.frame_count(window.valid).
    """
    valid = batch[0].valid
    assert all(w.valid == valid for w in batch), "only equal-length windows may share a batch"
    rows = [
        normalize_waveform(w.samples) if model.do_normalize else np.asarray(w.samples, np.float32)
        for w in batch
    ]
    x = rows[0][None] if len(rows) == 1 else np.stack(rows)  # (B, valid); one window is not copied
    frames = model.frame_count(valid)
    if valid < model.min_samples:
        # Shorter than the conv stack accepts (only a whole input this short reaches here): zero-pad to the
        # minimum and keep only the frames the unpadded input would have had.
        x = np.pad(x, ((0, 0), (0, model.min_samples - valid)))  # (B, min_samples)
    with torch.inference_mode():
        inputs = torch.from_numpy(x).to(device=model.device, dtype=model.dtype)
        try:
            logits = model.module(inputs)  # (B, frames', vocab)
        except torch.cuda.OutOfMemoryError as exc:
            half = ", or --precision fp16" if model.dtype == torch.float32 else ""  # not when already half
            raise UsageError(
                f"out of GPU memory running {len(batch)} window(s) of {valid / model.sample_rate:.0f} s "
                f"at once; use a smaller --batch-size or --chunk-length{half}"
            ) from exc
        log_probs = torch.log_softmax(logits.float(), dim=-1)[:, :frames]  # (B, frames, vocab)
        out = log_probs.cpu().numpy()
    return [out[i] for i in range(out.shape[0])]


def emissions(
    windows: Iterable[Window], model: LoadedModel, options: InferenceOptions
) -> Iterator[Emissions]:
    """Run the model over consecutive windows of one input and yield each window's kept log-probs, in order.

    With model.workers > 1, windows run at once in worker threads while this generator's caller reads the
    next windows and decodes the previous ones; a window's forward starts as soon as it is read, so a live
    stream should run with one worker (its results would otherwise wait for the next window's audio).

    Args:
        windows: windows in order (records.Window), aligned to model.hop_samples.
        model: the loaded model.
        options: batch size, None = by the model's device (device, precision and workers were fixed at load
            time).
    Returns:
        an iterator of Emissions, one per window, log_probs (kept frames, vocab) float32, consecutive.
    """
    batches = _batches(windows, options.batch_size or default_batch_size(model.device))
    if model.workers <= 1:
        for batch in batches:
            yield from _kept(model, batch, window_log_probs(model, batch))
        return
    threads = torch.get_num_threads()
    pending: deque[tuple[list[Window], Future[list[FloatArray]]]] = deque()
    # Worker threads take the per-window thread count once, at their first op (torch's OpenMP setting is
    # per thread), so they are told it explicitly.
    with ThreadPoolExecutor(
        model.workers, "sew-model", initializer=torch.set_num_threads, initargs=(threads,)
    ) as pool:
        try:
            for k, batch in enumerate(batches):
                if batch[-1].is_last and k % model.workers == 0:
                    # Equal windows run in rounds of `workers` batches that start together. A last batch that
                    # opens a round of its own (an input of one window, i.e. any file shorter than the window,
                    # or the odd window of the last round) would run on one worker's share of the threads
                    # while the others idle: it waits for the running ones instead and runs on all threads.
                    while pending:
                        done, future = pending.popleft()
                        yield from _kept(model, done, future.result())
                    yield from _kept(model, batch, _on_threads(threads * model.workers, model, batch))
                    return
                pending.append((batch, pool.submit(window_log_probs, model, batch)))
                if len(pending) > model.workers:  # every worker busy and one batch queued: hand on the oldest
                    done, future = pending.popleft()
                    yield from _kept(model, done, future.result())
            while pending:
                done, future = pending.popleft()
                yield from _kept(model, done, future.result())
        finally:  # an error or an abandoned generator: drop the queued windows, wait for the running ones
            for _, future in pending:
                future.cancel()


def _on_threads(threads: int, model: LoadedModel, batch: list[Window]) -> list[FloatArray]:
    """`window_log_probs` in this thread on `threads` intra-op threads, then back to this thread's own count
    (call it only while no worker runs: the setting is not only per thread for every backend)."""
    own = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return window_log_probs(model, batch)
    finally:
        torch.set_num_threads(own)


def _kept(model: LoadedModel, batch: list[Window], log_probs: list[FloatArray]) -> Iterator[Emissions]:
    """Each window's kept rows [keep_start:keep_end] as Emissions on the global frame grid."""
    for window, lp in zip(batch, log_probs, strict=True):
        if window.start % model.hop_samples:
            raise ValueError(f"window {window.index} starts at sample {window.start}, not on the frame grid")
        kept = lp[window.keep_start : window.keep_end]  # (kept frames, vocab)
        yield Emissions(
            log_probs=np.ascontiguousarray(kept),
            first_frame=window.start // model.hop_samples + window.keep_start,
            frame_seconds=model.frame_seconds,
        )
