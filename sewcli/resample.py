"""Streaming sample-rate conversion of mono float32 blocks with libsoxr.

Why soxr: `soxr.ResampleStream` keeps the filter state between blocks, so a file of any length is resampled
in bounded memory and the result matches one-shot `soxr.resample` up to float rounding. Output blocks do not
have the input's sizes ("Output frame count may not be consistent", python-soxr README) and may be empty;
empty ones are not yielded. The stream is flushed with `last=True` after the input ends, which emits the
filter's tail, so the total output length is round(n * out_rate / in_rate) (see tests). Equal rates pass the
blocks through as 1-D float32 without copying.

Public API (stable):
    QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")
    resample_blocks(blocks, in_rate, out_rate, quality="HQ") -> Iterator[FloatArray]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import soxr  # type: ignore[import-untyped]

from sewcli.errors import UsageError
from sewcli.records import FloatArray

QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")


def resample_blocks(
    blocks: Iterable[FloatArray], in_rate: int, out_rate: int, quality: str = "HQ"
) -> Iterator[FloatArray]:
    """Resample a stream of mono blocks from `in_rate` to `out_rate`, flushing the tail at the end.

    Args:
        blocks: 1-D float32 arrays of any lengths (empty ones allowed).
        in_rate: input samples per second.
        out_rate: output samples per second.
        quality: soxr quality preset, one of QUALITIES.
    Returns:
        Non-empty 1-D float32 arrays at `out_rate` (sizes vary).
    """
    if quality not in QUALITIES:
        raise UsageError(f"unknown resampling quality {quality!r}; choose one of {', '.join(QUALITIES)}")
    if in_rate <= 0 or out_rate <= 0:
        raise UsageError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
    if in_rate == out_rate:
        for block in blocks:
            block = np.asarray(block, dtype=np.float32).reshape(-1)
            if block.shape[0]:
                yield block
        return
    stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
    for block in blocks:
        block = np.ascontiguousarray(block, dtype=np.float32).reshape(-1)
        if block.shape[0] == 0:
            continue
        out = stream.resample_chunk(block)
        if out.shape[0]:
            yield out
    tail = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
    if tail.shape[0]:
        yield tail
