"""Streaming resampler: matches one-shot soxr, right length, flushes its tail, keeps a sine's pitch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import soxr

from sewcli.errors import UsageError
from sewcli.resample import resample_blocks


def irregular_blocks(x: np.ndarray, seed: int) -> Iterator[np.ndarray]:
    """x cut into random sizes, including empty blocks."""
    rng = np.random.default_rng(seed)
    i = 0
    while i < len(x):
        size = int(rng.integers(0, 7000))
        yield x[i : i + size]
        i += size


def run(x: np.ndarray, in_rate: int, out_rate: int, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    blocks = list(resample_blocks(irregular_blocks(x, seed), in_rate, out_rate))
    return (np.concatenate(blocks) if blocks else np.zeros(0, np.float32)), blocks


@pytest.mark.parametrize("in_rate", [8000, 22050, 44100, 48000, 96000])
def test_stream_matches_one_shot_and_length(in_rate: int) -> None:
    x = np.random.default_rng(in_rate).standard_normal(int(in_rate * 1.37)).astype(np.float32) * 0.3
    y, blocks = run(x, in_rate, 16000)
    ref = soxr.resample(x, in_rate, 16000, quality="HQ")
    assert all(b.dtype == np.float32 and b.ndim == 1 and b.size > 0 for b in blocks)
    assert abs(len(y) - len(x) * 16000 / in_rate) <= 1
    assert len(y) == len(ref)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-4)  # filter state carried across blocks


def test_flush_emits_the_tail() -> None:
    """Without the final flush the output is short by the filter delay; with it the tail is there."""
    x = np.random.default_rng(0).standard_normal(44100).astype(np.float32)
    stream = soxr.ResampleStream(44100, 16000, 1, dtype="float32", quality="HQ")
    unflushed = stream.resample_chunk(x)  # independent: what a stream gives without last=True
    y, blocks = run(x, 44100, 16000)
    assert len(unflushed) < len(y) == 16000
    np.testing.assert_allclose(y[-200:], soxr.resample(x, 44100, 16000)[-200:], atol=1e-4)


def test_sine_frequency_survives() -> None:
    f0, in_rate, out_rate = 440.0, 44100, 16000
    t = np.arange(int(in_rate * 2.0)) / in_rate
    x = (0.5 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)
    y, _ = run(x, in_rate, out_rate, seed=3)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak_hz = np.argmax(spectrum) * out_rate / len(y)
    assert abs(peak_hz - f0) < 1.0
    assert 0.45 < np.abs(y[1000:-1000]).max() < 0.55  # amplitude preserved


def test_upsampling_and_tiny_inputs() -> None:
    y, _ = run(np.ones(1, np.float32), 8000, 16000)
    assert len(y) == 2
    y, blocks = run(np.zeros(0, np.float32), 8000, 16000)
    assert len(y) == 0 and blocks == []


def test_equal_rates_pass_through_without_empty_blocks() -> None:
    x = np.random.default_rng(1).standard_normal(10000).astype(np.float32)
    y, blocks = run(x, 16000, 16000)
    np.testing.assert_array_equal(y, x)
    assert all(b.size > 0 for b in blocks)


def test_bad_arguments() -> None:
    with pytest.raises(UsageError, match="VHQ"):
        list(resample_blocks([np.zeros(10, np.float32)], 8000, 16000, quality="best"))
    with pytest.raises(UsageError, match="positive"):
        list(resample_blocks([np.zeros(10, np.float32)], 0, 16000))
