"""Chunker: windows reproduce the input, kept frames tile the global frames once, memory is bounded."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sewcli.chunking import ChunkOptions, Windower, check_length, kept_rows, stitch, windows
from sewcli.errors import AudioError, UsageError
from sewcli.records import Window

# Conv feature encoders from sew_spec.md section 1.2, written out here independently of sewcli.model.
SEW_KERNELS = (10, 3, 1, 3, 1, 3, 1, 3, 1, 2, 1, 2, 1)
SEW_STRIDES = (5, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1)
W2V_KERNELS = (10, 3, 3, 3, 3, 2, 2)
W2V_STRIDES = (5, 2, 2, 2, 2, 2, 2)


def conv_stack_frames(kernels: tuple[int, ...], strides: tuple[int, ...]) -> Callable[[int], int]:
    """frame_count(n) of unpadded Conv1d layers: L = (L - k) // s + 1 per layer, 0 when too short."""

    def frame_count(n: int) -> int:
        length = n
        for k, s in zip(kernels, strides, strict=True):
            if length < k:
                return 0
            length = (length - k) // s + 1
        return length

    return frame_count


def affine_frames(receptive: int, hop: int) -> Callable[[int], int]:
    """frame_count of an abstract model with the given receptive field and hop."""
    return lambda n: 0 if n < receptive else (n - receptive) // hop + 1


def split_into_blocks(x: np.ndarray, sizes: list[int]) -> Iterator[np.ndarray]:
    """Yield x cut at the given block sizes (cycled; zeros give empty blocks), then the rest."""
    i, k = 0, 0
    while i < len(x):
        size = sizes[k % len(sizes)] if sizes else len(x)
        yield x[i : i + size]
        i += size
        k += 1
        if k > 10 * len(x) + 10:  # only zero sizes: finish with the rest
            yield x[i:]
            return
    yield x[:0]  # a trailing empty block must be harmless


def check_windows(
    wins: list[Window], x: np.ndarray, *, window: int, hop: int, frame_count: Callable[[int], int]
) -> None:
    """Every invariant the module docstring promises, checked against the input x."""
    n = len(x)
    assert [w.index for w in wins] == list(range(len(wins)))
    assert [w.is_last for w in wins] == [False] * (len(wins) - 1) + [True]
    assert wins[0].start == 0 and wins[-1].start + wins[-1].valid == n
    expected_frame = 0
    for i, w in enumerate(wins):
        assert w.samples.dtype == np.float32 and w.samples.ndim == 1
        np.testing.assert_array_equal(w.samples, x[w.start : w.start + w.valid])  # exact reproduction
        assert w.start % hop == 0
        if i > 0:
            prev = wins[i - 1]
            assert w.start <= prev.start + prev.valid  # no sample gap between neighbours
        if len(wins) == 1:
            assert w.valid == n and n < window + hop
        elif w.is_last:
            assert window <= w.valid < window + hop  # full context, aligned start, ends at the input end
        else:
            assert w.valid == window
        assert 0 <= w.keep_start <= w.keep_end <= frame_count(w.valid)
        assert w.start // hop + w.keep_start == expected_frame  # no frame gap, no frame overlap
        expected_frame = w.start // hop + w.keep_end
    assert expected_frame == frame_count(n)


@st.composite
def stream_case(draw: st.DrawFn) -> dict[str, object]:
    """A random geometry (hop, receptive field, window, overlap), input length and block sizes."""
    hop = draw(st.integers(1, 8))
    receptive = draw(st.integers(hop, 3 * hop))
    window_hops = draw(st.integers(max(2, -(-receptive // hop)), 12))
    overlap_hops = draw(st.integers(1, window_hops - 1))
    rate = 1000
    min_samples = draw(st.integers(receptive, window_hops * hop))
    n = draw(st.integers(min_samples, 40 * window_hops * hop))
    sizes = draw(st.lists(st.integers(0, 3 * window_hops * hop), min_size=1, max_size=8))
    return {
        "hop": hop,
        "receptive": receptive,
        "window_hops": window_hops,
        "overlap_hops": overlap_hops,
        "rate": rate,
        "min_samples": min_samples,
        "n": n,
        "sizes": sizes,
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=stream_case())
def test_windows_reproduce_input_and_tile_frames(case: dict) -> None:
    hop, rate = case["hop"], case["rate"]
    frame_count = affine_frames(case["receptive"], hop)
    window, overlap = case["window_hops"] * hop, case["overlap_hops"] * hop
    if frame_count(window) * hop < window - overlap:  # the chunker must refuse geometries that leave gaps
        with pytest.raises(UsageError, match="overlap"):
            Windower(
                sample_rate=rate,
                options=ChunkOptions(window / rate, overlap / rate),
                hop_samples=hop,
                frame_count=frame_count,
                min_samples=case["min_samples"],
            )
        return
    x = np.random.default_rng(case["n"]).standard_normal(case["n"]).astype(np.float32)
    wins = list(
        windows(
            split_into_blocks(x, case["sizes"]),
            sample_rate=rate,
            options=ChunkOptions(window / rate, overlap / rate),
            hop_samples=hop,
            frame_count=frame_count,
            min_samples=case["min_samples"],
        )
    )
    check_windows(wins, x, window=window, hop=hop, frame_count=frame_count)


@pytest.mark.parametrize(
    "kernels,strides,min_samples", [(SEW_KERNELS, SEW_STRIDES, 720), (W2V_KERNELS, W2V_STRIDES, 400)]
)
@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 60_000),
    block=st.integers(1, 9000),
    chunk_hops=st.integers(3, 40),
    overlap_hops=st.integers(1, 10),
)
def test_real_conv_stack_tiles_and_matches_whole_signal(
    kernels: tuple[int, ...],
    strides: tuple[int, ...],
    min_samples: int,
    n: int,
    block: int,
    chunk_hops: int,
    overlap_hops: int,
) -> None:
    """With the real SEW / wav2vec2 frame counts, stitched per-window 'frames' equal whole-signal frames."""
    frame_count = conv_stack_frames(kernels, strides)
    hop, rate = 320, 16000
    overlap_hops = min(overlap_hops, chunk_hops - 1)
    opts = ChunkOptions(chunk_hops * hop / rate, overlap_hops * hop / rate)
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    blocks = (x[i : i + block] for i in range(0, n, block))
    args = {
        "sample_rate": rate,
        "options": opts,
        "hop_samples": hop,
        "frame_count": frame_count,
        "min_samples": min_samples,
    }
    if n < min_samples:
        with pytest.raises(AudioError, match=r"^clip\.wav: audio too short"):
            list(windows(blocks, source="clip.wav", **args))
        return
    wins = list(windows(blocks, source="clip.wav", **args))
    check_windows(wins, x, window=chunk_hops * hop, hop=hop, frame_count=frame_count)

    # A stand-in "model": frame j = sum of its 400-sample receptive field [320 j, 320 j + 400).
    def fake_model(samples: np.ndarray) -> np.ndarray:
        f = frame_count(len(samples))
        csum = np.concatenate([[0.0], np.cumsum(samples, dtype=np.float64)])
        j = np.arange(f)
        return (csum[np.minimum(j * hop + 400, len(samples))] - csum[j * hop])[:, None].astype(np.float32)

    em = stitch(((w, fake_model(w.samples)) for w in wins), hop_samples=hop, frame_seconds=hop / rate)
    whole = fake_model(x)
    assert em.log_probs.shape == whole.shape == (frame_count(n), 1)
    np.testing.assert_allclose(em.log_probs, whole, rtol=0, atol=1e-3)
    assert em.first_frame == 0 and em.frame_seconds == pytest.approx(0.02)


def test_default_geometry() -> None:
    """Defaults at 16 kHz: 30 s = 480000-sample windows, a hop-aligned overlap, and a 10-minute input."""
    opts = ChunkOptions()
    g = opts.geometry(16000, 320)
    assert g.window == 480000 and g.overlap % 320 == 0 and 0 < g.overlap < g.window
    n = 600 * 16000 + 123
    x = np.zeros(n, dtype=np.float32)
    x[::7] = 1.0
    fc = conv_stack_frames(SEW_KERNELS, SEW_STRIDES)
    wins = list(
        windows(
            split_into_blocks(x, [65536, 4097]),
            sample_rate=16000,
            options=opts,
            hop_samples=320,
            frame_count=fc,
            min_samples=720,
        )
    )
    check_windows(wins, x, window=g.window, hop=320, frame_count=fc)


def test_short_input_is_one_window_of_its_own_length() -> None:
    fc = conv_stack_frames(SEW_KERNELS, SEW_STRIDES)
    x = np.arange(1000, dtype=np.float32)
    (w,) = windows(
        [x[:300], x[300:]],
        sample_rate=16000,
        options=ChunkOptions(),
        hop_samples=320,
        frame_count=fc,
        min_samples=720,
    )
    assert (w.start, w.valid, w.keep_start, w.keep_end, w.is_last) == (0, 1000, 0, fc(1000), True)
    assert fc(1000) == 2  # (1000 - 400) // 320 + 1, the closed form of the receptive field and hop


def test_exact_multiple_of_the_step() -> None:
    """N = W + k * step: regular windows, then a last window that is a full W ending at the end."""
    opts = ChunkOptions(1.0, 0.2)  # W = 16000, O = 3200, step = 12800 at 16 kHz
    n = 16000 + 3 * 12800
    wins = list(
        windows(
            [np.ones(n, np.float32)],
            sample_rate=16000,
            options=opts,
            hop_samples=320,
            frame_count=conv_stack_frames(SEW_KERNELS, SEW_STRIDES),
            min_samples=720,
        )
    )
    assert [w.start for w in wins] == [0, 12800, 25600, 38400]
    assert all(w.valid == 16000 for w in wins)


def test_too_short_input_names_file_duration_and_minimum() -> None:
    fc = conv_stack_frames(SEW_KERNELS, SEW_STRIDES)
    with pytest.raises(AudioError) as err:
        list(
            windows(
                [np.zeros(500, np.float32)],
                sample_rate=16000,
                options=ChunkOptions(),
                hop_samples=320,
                frame_count=fc,
                min_samples=720,
                source="tiny clip.wav",
            )
        )
    msg = str(err.value)
    assert msg.startswith("tiny clip.wav: audio too short") and "0.031 s" in msg and "0.045 s" in msg
    assert "\n" not in msg
    with pytest.raises(AudioError, match="0.000 s"):
        list(
            windows(
                [],
                sample_rate=16000,
                options=ChunkOptions(),
                hop_samples=320,
                frame_count=fc,
                min_samples=720,
            )
        )
    check_length(720, sample_rate=16000, min_samples=720, source="x")  # exactly the minimum is fine


@pytest.mark.parametrize(
    "chunk,overlap", [(0.0, 0.0), (-1.0, 0.0), (1.0, 1.0), (1.0, -0.5), (float("nan"), 0.0)]
)
def test_bad_options_are_usage_errors(chunk: float, overlap: float) -> None:
    with pytest.raises(UsageError):
        ChunkOptions(chunk, overlap)


def test_overlap_that_rounds_to_zero_is_refused() -> None:
    """Zero overlap loses the frame straddling each seam (receptive field 400 > hop 320), so it is refused."""
    with pytest.raises(UsageError, match="overlap"):
        Windower(
            sample_rate=16000,
            options=ChunkOptions(1.0, 0.0),
            hop_samples=320,
            frame_count=conv_stack_frames(SEW_KERNELS, SEW_STRIDES),
            min_samples=720,
        )


def test_windows_are_emitted_lazily_and_memory_is_bounded() -> None:
    """A long stream of irregular blocks: windows leave as data arrives; buffer stays < W + hop + block."""
    rate, hop = 16000, 320
    opts = ChunkOptions(1.0, 0.1)
    g = opts.geometry(rate, hop)
    rng = np.random.default_rng(7)
    sizes = rng.integers(0, 4096, size=3000)
    consumed = 0

    def stream() -> Iterator[np.ndarray]:
        nonlocal consumed
        for s in sizes:
            consumed += 1
            yield rng.standard_normal(int(s)).astype(np.float32)

    w = Windower(
        sample_rate=rate,
        options=opts,
        hop_samples=hop,
        frame_count=conv_stack_frames(SEW_KERNELS, SEW_STRIDES),
        min_samples=720,
    )
    tracemalloc.start()
    try:
        count, first_at = 0, None
        for block in stream():
            for _ in w.feed(block):
                count += 1
                first_at = first_at or consumed
            assert w.buffered < g.window + hop + min(int(sizes.max()), g.step)
        count += len(w.finish())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert w.peak_buffered <= g.window + hop + min(int(sizes.max()), g.step)
    assert first_at is not None and first_at < 20  # the first window left long before the stream ended
    assert count >= int(sizes.sum()) // g.step - 1
    # Peak Python/numpy allocations: the buffer, one window copy, one block: far below the 6M-sample stream.
    assert peak < 8 * 4 * (g.window + hop + g.step + 4096), peak
    assert int(sizes.sum()) > 5_000_000


def test_huge_single_block_is_fed_in_pieces() -> None:
    """A block of many windows does not make the buffer hold the whole block."""
    rate, hop = 16000, 320
    opts = ChunkOptions(0.5, 0.1)
    g = opts.geometry(rate, hop)
    x = np.random.default_rng(1).standard_normal(20 * rate).astype(np.float32)
    w = Windower(
        sample_rate=rate, options=opts, hop_samples=hop, frame_count=affine_frames(400, hop), min_samples=720
    )
    wins = w.feed(x) + w.finish()
    check_windows(wins, x, window=g.window, hop=hop, frame_count=affine_frames(400, hop))
    assert w.peak_buffered <= g.window + hop + g.step


def test_kept_rows_and_stitch_validate_their_input() -> None:
    win = Window(index=0, start=0, samples=np.zeros(960, np.float32), keep_start=1, keep_end=3, is_last=True)
    lp = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.testing.assert_array_equal(kept_rows(win, lp), lp[1:3])
    with pytest.raises(ValueError, match="fewer than its keep_end"):
        kept_rows(win, lp[:2])
    with pytest.raises(ValueError, match="expected 0"):
        stitch([(win, lp)], hop_samples=320, frame_seconds=0.02)
    with pytest.raises(ValueError, match="no windows"):
        stitch([], hop_samples=320, frame_seconds=0.02)
