"""The inference stage alone: windows in, kept log-probs out (tiny random SEW checkpoint, CPU)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sewcli import chunking, inference
from sewcli.errors import UsageError
from sewcli.records import Window


@pytest.fixture(scope="module")
def model(tiny_sew_dir: Path) -> inference.LoadedModel:
    return inference.load(tiny_sew_dir, inference.InferenceOptions(device="cpu"), name="tiny", language="en")


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    return (0.2 * np.sin(np.arange(n) * 0.07) + 0.05 * rng.standard_normal(n)).astype(np.float32)


def _windows(x: np.ndarray, model: inference.LoadedModel, chunk: float, overlap: float) -> list[Window]:
    return list(
        chunking.windows(
            [x[:7000], x[7000:]],  # irregular blocks, as the resampler produces
            sample_rate=16000,
            options=chunking.ChunkOptions(chunk, overlap),
            hop_samples=model.hop_samples,
            frame_count=model.frame_count,
            min_samples=model.min_samples,
        )
    )


def _reference_log_probs(model: inference.LoadedModel, x: np.ndarray) -> np.ndarray:
    """Independent path: HF normalisation in float64, one direct forward, torch log_softmax."""
    xn = (x.astype(np.float64) - x.mean(dtype=np.float64)) / np.sqrt(x.var(dtype=np.float64) + 1e-7)
    with torch.no_grad():
        logits = model.module(torch.from_numpy(xn.astype(np.float32))[None])  # (1, frames, vocab)
    return torch.log_softmax(logits[0], dim=-1).numpy()


def test_loaded_model_metadata(model: inference.LoadedModel) -> None:
    assert (model.hop_samples, model.min_samples, model.sample_rate) == (320, 720, 16000)
    assert model.frame_seconds == pytest.approx(0.02)
    assert model.frame_count(16000) == 49 and model.frame_count(400) == 1 and model.frame_count(399) == 0
    assert len(model.vocab) == 32 and model.vocab.blank_id == 0
    assert model.language == "en" and model.name == "tiny" and model.device == "cpu"


def test_single_window_equals_direct_forward(model: inference.LoadedModel) -> None:
    x = _signal(3.3)
    ems = list(inference.emissions(_windows(x, model, 30.0, 3.0), model, inference.InferenceOptions()))
    assert len(ems) == 1 and ems[0].first_frame == 0
    ref = _reference_log_probs(model, x)
    assert ems[0].log_probs.shape == ref.shape == (model.frame_count(x.size), 32)
    assert ems[0].log_probs.dtype == np.float32
    np.testing.assert_allclose(ems[0].log_probs, ref, atol=2e-5)
    np.testing.assert_allclose(np.exp(ems[0].log_probs).sum(axis=1), 1.0, atol=1e-5)


def test_windows_are_normalised_alone_and_tile_the_frames(model: inference.LoadedModel) -> None:
    x = _signal(7.9, seed=1)
    x[: x.size // 2] *= (
        20  # a loud first half: a whole-file normalisation would change the second half's windows
    )
    windows = _windows(x, model, 2.0, 0.4)
    ems = list(inference.emissions(windows, model, inference.InferenceOptions()))
    assert len(ems) == len(windows) > 3
    expected_first = 0
    for w, em in zip(windows, ems, strict=True):
        assert em.first_frame == expected_first == w.start // 320 + w.keep_start
        ref = _reference_log_probs(model, w.samples)[w.keep_start : w.keep_end]
        np.testing.assert_allclose(em.log_probs, ref, atol=2e-5)
        expected_first += em.log_probs.shape[0]
    assert expected_first == model.frame_count(x.size)


def test_batched_equals_unbatched(model: inference.LoadedModel) -> None:
    """Only equal-length windows share a batch (no padding): batching changes nothing but float rounding."""
    windows = _windows(_signal(8.71, seed=2), model, 2.0, 0.4)
    lengths = [w.valid for w in windows]
    assert (
        len(set(lengths[:-1])) == 1 and lengths[-1] != lengths[0]
    )  # the last window is longer: its own batch
    one = list(inference.emissions(windows, model, inference.InferenceOptions(batch_size=1)))
    four = list(inference.emissions(windows, model, inference.InferenceOptions(batch_size=4)))
    assert [e.first_frame for e in one] == [e.first_frame for e in four]
    for a, b in zip(one, four, strict=True):
        # BLAS picks other kernels for other batch sizes: equal up to float32 rounding (measured <= 2.4e-7).
        np.testing.assert_allclose(a.log_probs, b.log_probs, atol=1e-5, rtol=0)
        assert np.array_equal(a.log_probs.argmax(1), b.log_probs.argmax(1))


def test_batches_group_equal_lengths_only() -> None:
    def w(i: int, n: int) -> Window:
        return Window(
            index=i, start=i * 320, samples=np.zeros(n, np.float32), keep_start=0, keep_end=1, is_last=False
        )

    groups = list(inference._batches([w(0, 800), w(1, 800), w(2, 800), w(3, 960), w(4, 800)], batch_size=2))
    assert [[x.index for x in g] for g in groups] == [[0, 1], [2], [3], [4]]


def test_input_shorter_than_the_conv_minimum(model: inference.LoadedModel) -> None:
    """500 samples: SEW's pooling needs 720, so the window is zero-padded and only its own frame is kept."""
    x = _signal(500 / 16000)
    w = Window(index=0, start=0, samples=x, keep_start=0, keep_end=1, is_last=True)
    (lp,) = inference.window_log_probs(model, [w])
    assert lp.shape == (1, 32)
    (em,) = inference.emissions([w], model, inference.InferenceOptions())
    assert em.log_probs.shape == (1, 32) and em.first_frame == 0


def test_off_grid_window_is_refused(model: inference.LoadedModel) -> None:
    w = Window(index=0, start=100, samples=_signal(0.1), keep_start=0, keep_end=2, is_last=True)
    with pytest.raises(ValueError, match="frame grid"):
        list(inference.emissions([w], model, inference.InferenceOptions()))


def test_batch_size_by_device_unless_given(
    model: inference.LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --batch-size: one window per forward on the CPU (windows run in worker threads there), several on
    CUDA, where one window leaves the GPU idle between launches (docs/benchmarks.md); a given size wins."""
    assert inference.default_batch_size("cpu") == 1
    assert inference.default_batch_size("cuda") == inference.CUDA_AUTO_BATCH > 1
    seen: list[int] = []

    def tally(m: inference.LoadedModel, batch: list[Window]) -> list[np.ndarray]:  # no forward: no GPU here
        seen.append(len(batch))
        return [np.zeros((m.frame_count(w.valid), len(m.vocab)), np.float32) for w in batch]

    monkeypatch.setattr(inference, "window_log_probs", tally)
    windows = _windows(_signal(8.71, seed=2), model, 2.0, 0.4)  # equal windows, then a longer last one
    as_on_cuda = dataclasses.replace(model, device="cuda")
    for loaded, options, expected in (
        (model, inference.InferenceOptions(), 1),
        (as_on_cuda, inference.InferenceOptions(), inference.CUDA_AUTO_BATCH),
        (as_on_cuda, inference.InferenceOptions(batch_size=2), 2),
    ):
        seen.clear()
        assert len(list(inference.emissions(windows, loaded, options))) == len(windows)
        assert max(seen) == expected and sum(seen) == len(windows)


def test_out_of_gpu_memory_is_one_clear_error(
    model: inference.LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch too large for the GPU ends in a usage error that says what to lower, not a traceback."""

    def exhausted(x: torch.Tensor) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model.module, "forward", exhausted)
    windows = _windows(_signal(4.0, seed=3), model, 2.0, 0.4)
    with pytest.raises(UsageError, match=r"out of GPU memory running 2 window\(s\) of 2 s .*--batch-size"):
        list(inference.emissions(windows, model, inference.InferenceOptions(batch_size=2)))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"device": "tpu"}, "--device"),
        ({"precision": "int4"}, "--precision"),
        ({"batch_size": 0}, "--batch-size"),
        ({"threads": 0}, "--threads"),
    ],
)
def test_bad_options(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        inference.InferenceOptions(**kwargs)  # type: ignore[arg-type]


def test_device_resolution_and_fp16_on_cpu(tiny_sew_dir: Path) -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert inference.resolve_device("auto") == expected
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            inference.resolve_device("cuda")
        with pytest.raises(UsageError, match="fp16 needs --device cuda"):
            inference.load(tiny_sew_dir, inference.InferenceOptions(device="cpu", precision="fp16"))


def test_threads_and_bf16(tiny_sew_dir: Path) -> None:
    before = torch.get_num_threads()
    try:
        m = inference.load(
            tiny_sew_dir, inference.InferenceOptions(device="cpu", threads=1, precision="bf16")
        )
        assert torch.get_num_threads() == 1
        x = _signal(2.0)
        (em,) = inference.emissions(_windows(x, m, 30.0, 3.0), m, inference.InferenceOptions())
        assert em.log_probs.dtype == np.float32  # log-softmax is taken in float32 whatever the model dtype
        assert np.isfinite(em.log_probs).all()
    finally:
        torch.set_num_threads(before)


def test_windows_on_the_squeeze_grid_reproduce_whole_file_frames(model: inference.LoadedModel) -> None:
    """SEW pools frame pairs: windows must start on even frames (align 640) to see the whole file's pairing.

    Hop-aligned windows that start on an odd frame pair the frames the other way round: their frames differ
    from the whole-file frames by ~100x more (median per-frame max |diff| ~1e-2 vs ~1e-4 on this model).
    """
    assert model.align_samples == 640
    rng = np.random.default_rng(5)
    n = int(16000 * 9.37)
    x = (0.2 * np.sin(np.arange(n) * 0.05) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    (whole,) = inference.emissions(_windows(x, model, 30.0, 1.0), model, inference.InferenceOptions())

    def median_diffs(align: int) -> dict[int, float]:
        windows = list(
            chunking.windows(
                [x],
                sample_rate=16000,
                options=chunking.ChunkOptions(2.0, 0.3),
                hop_samples=320,
                frame_count=model.frame_count,
                min_samples=720,
                align_samples=align,
            )
        )
        out = {}
        for w, em in zip(
            windows, inference.emissions(windows, model, inference.InferenceOptions()), strict=True
        ):
            ref = whole.log_probs[em.first_frame : em.first_frame + em.log_probs.shape[0]]
            out[w.start // 320] = float(np.median(np.abs(em.log_probs - ref).max(axis=1)))
        return out

    aligned, hop_only = median_diffs(model.align_samples), median_diffs(320)
    assert all(start % 2 == 0 for start in aligned) and max(aligned.values()) < 1e-3
    odd = [d for start, d in hop_only.items() if start % 2]
    assert odd and min(odd) > 3e-3


@pytest.mark.parametrize(
    ("threads", "workers", "plan"),
    [
        (2, None, (2, 1)),
        (1, None, (1, 1)),
        (8, None, (4, 2)),
        (6, 3, (3, 2)),
        (2, 4, (4, 1)),
        (16, 1, (1, 16)),
    ],
)
def test_cpu_workers_share_the_threads(threads: int, workers: int | None, plan: tuple[int, int]) -> None:
    assert inference.cpu_workers(threads, workers) == plan


@pytest.fixture()
def two_workers(tiny_sew_dir: Path) -> Iterator[inference.LoadedModel]:
    before = torch.get_num_threads()
    try:
        yield inference.load(tiny_sew_dir, inference.InferenceOptions(device="cpu", threads=2, workers=2))
    finally:
        torch.set_num_threads(before)


def test_windows_in_parallel_equal_one_at_a_time(
    model: inference.LoadedModel, two_workers: inference.LoadedModel
) -> None:
    """Two windows at once, on one thread each: the same emissions, in window order, as one at a time."""
    assert (two_workers.workers, torch.get_num_threads()) == (2, 1)
    windows = _windows(_signal(12.3, seed=3), model, 2.0, 0.4)
    assert len(windows) > 5
    one = list(inference.emissions(windows, model, inference.InferenceOptions()))
    two = list(inference.emissions(windows, two_workers, inference.InferenceOptions()))
    assert [e.first_frame for e in one] == [e.first_frame for e in two]
    for a, b in zip(one, two, strict=True):
        # another thread count sums in another order: equal up to float32 rounding
        np.testing.assert_allclose(a.log_probs, b.log_probs, atol=1e-5, rtol=0)
    batched = list(inference.emissions(windows, two_workers, inference.InferenceOptions(batch_size=3)))
    assert [e.first_frame for e in batched] == [e.first_frame for e in one]


def test_windows_in_parallel_stop_cleanly(
    model: inference.LoadedModel, two_workers: inference.LoadedModel
) -> None:
    """An error in a later window reaches the caller after the earlier windows' results, and an abandoned
    stream leaves no worker thread behind."""
    windows = _windows(_signal(12.3, seed=4), model, 2.0, 0.4)
    bad = Window(index=3, start=windows[3].start + 100, samples=windows[3].samples,
                 keep_start=windows[3].keep_start, keep_end=windows[3].keep_end, is_last=False)  # fmt: skip
    stream = inference.emissions([*windows[:3], bad, *windows[4:]], two_workers, inference.InferenceOptions())
    got = []
    with pytest.raises(ValueError, match="frame grid"):
        for em in stream:
            got.append(em)
    assert [e.first_frame for e in got] == [w.start // 320 + w.keep_start for w in windows[:3]]
    stream = inference.emissions(windows, two_workers, inference.InferenceOptions())
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("sew-model")]


@pytest.mark.parametrize(("n_windows", "alone"), [(1, True), (2, False), (3, True), (4, False), (5, True)])
def test_a_last_window_alone_in_its_round_runs_on_all_threads(
    model: inference.LoadedModel,
    two_workers: inference.LoadedModel,
    monkeypatch: pytest.MonkeyPatch,
    n_windows: int,
    alone: bool,
) -> None:
    """Two workers take windows in rounds of two. A last window that opens a round of its own (one window in
    all, or the third or fifth) runs in the caller's thread on both threads instead of one worker's one
    thread; the others run on the workers' threads. The caller's own thread count is restored after it."""
    windows = _windows(_signal(12.3, seed=5), model, 2.0, 0.4)[-n_windows:] if n_windows > 1 else None
    if windows is None:
        windows = _windows(_signal(1.5, seed=5), model, 2.0, 0.4)
    assert len(windows) == n_windows and windows[-1].is_last and not any(w.is_last for w in windows[:-1])
    seen: dict[int, tuple[str, int]] = {}
    real = inference.window_log_probs

    def spy(loaded: inference.LoadedModel, batch: list[Window]) -> list[np.ndarray]:
        seen[batch[0].index] = (threading.current_thread().name, torch.get_num_threads())
        return real(loaded, batch)

    monkeypatch.setattr(inference, "window_log_probs", spy)
    got = list(inference.emissions(windows, two_workers, inference.InferenceOptions()))
    assert len(got) == n_windows
    last = seen[windows[-1].index]
    if alone:
        assert last == (threading.current_thread().name, 2)
    else:
        assert last[0].startswith("sew-model") and last[1] == 1
    assert all(seen[w.index][0].startswith("sew-model") and seen[w.index][1] == 1 for w in windows[:-1])
    assert torch.get_num_threads() == 1  # the caller's share, as load() left it


def test_loading_uses_every_thread_and_windows_get_their_share(
    tiny_sew_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """int8 packing (threads of its own, one per torch thread) runs before the threads are split."""
    from sewcli.model import fastpath

    seen = []
    real = fastpath.quantize_linear_int8

    def spy(module: torch.nn.Module) -> torch.nn.Module:
        seen.append(torch.get_num_threads())
        return real(module)

    monkeypatch.setattr(fastpath, "quantize_linear_int8", spy)
    before = torch.get_num_threads()
    try:
        options = inference.InferenceOptions(device="cpu", threads=4, workers=2, precision="int8")
        model = inference.load(tiny_sew_dir, options)
        assert (seen, model.workers, torch.get_num_threads()) == ([4], 2, 2)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_on_a_cpu_where_it_is_slow_gets_a_warning(
    tiny_sew_dir: Path, monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    from sewcli.model import fastpath

    monkeypatch.setattr(fastpath, "bf16_pays_off", lambda: fast)
    warnings: list[str] = []
    monkeypatch.setattr(inference.log, "warning", lambda msg, *args: warnings.append(msg % args))
    before = torch.get_num_threads()
    try:
        inference.load(tiny_sew_dir, inference.InferenceOptions(device="cpu", threads=1, precision="bf16"))
        inference.load(tiny_sew_dir, inference.InferenceOptions(device="cpu", threads=1, precision="fp32"))
    finally:
        torch.set_num_threads(before)
    if fast:
        assert warnings == []
    else:  # once, for bf16 only
        assert len(warnings) == 1 and "--precision bf16 is slower than fp32 on this CPU" in warnings[0]
