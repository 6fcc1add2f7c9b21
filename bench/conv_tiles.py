"""Experiment (not adopted): the conv waveform encoder run over time tiles instead of the whole window.

Usage: python bench/conv_tiles.py MODEL SECONDS TILES [--repeats 21] [--threads 1] [--workdir DIR]
       e.g. python bench/conv_tiles.py sew-tiny 20 250,500

MODEL is one of sew bench's configs (sew-tiny, sew-d-tiny, wav2vec2-base; random weights) or "embedded".
Layer 0 runs on the whole window (its group norm needs the whole window's statistics); every later layer runs
on tiles of TILES output frames, each with its receptive-field margin, and the tiles are concatenated. The
output is checked against the whole-window stack (max abs diff printed), then both are timed, interleaved,
median and minimum of --repeats. The idea: the first layers' activations (tens of MB per 20 s window)
would stay in cache. Results: docs/benchmarks.md, "What does not hold yet" (the conv front end).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from sewcli import bench
from sewcli.model.load import load_model


def geometry(layers: list[nn.Module]) -> tuple[int, int]:
    """(total stride, receptive field) of a stack of unpadded convs, in input frames."""
    stride, field = 1, 1
    for layer in reversed(layers):
        k, s = layer.conv.kernel_size[0], layer.conv.stride[0]
        field = (field - 1) * s + k
        stride *= s
    return stride, field


def tiled(layers: list[nn.Module], h: torch.Tensor, tile: int) -> torch.Tensor:
    """`layers` over (batch, channels, time) `h`, `tile` output frames at a time (= running them whole)."""
    stride, field = geometry(layers)
    frames = (h.shape[-1] - field) // stride + 1
    outs = []
    for a in range(0, frames, tile):
        b = min(frames, a + tile)
        seg = h[..., stride * a : stride * (b - 1) + field]  # (batch, channels, the tile's receptive span)
        for layer in layers:
            seg = layer(seg)
        outs.append(seg)
    return torch.cat(outs, -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("seconds", type=float)
    ap.add_argument("tiles", help="comma-separated tile lengths in output frames")
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/sew-bench"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(bench.checkpoint_for(args.model, args.workdir)).model
    body = next(m for name, m in model.named_children() if hasattr(m, "feature_extractor"))
    layers = list(body.feature_extractor.conv_layers)
    x = torch.randn(1, 1, int(16000 * args.seconds))  # (batch, 1, samples)

    def whole() -> torch.Tensor:
        h = x
        for layer in layers:
            h = layer(h)
        return h

    def in_tiles(tile: int) -> torch.Tensor:
        return tiled(layers[1:], layers[0](x), tile)

    tiles = [int(t) for t in args.tiles.split(",")]
    with torch.inference_mode():
        ref = whole()
        for tile in tiles:
            got = in_tiles(tile)
            assert got.shape == ref.shape
            print(f"tiles of {tile}: max abs diff {float((got - ref).abs().max()):.3g}")
        fns = {"whole": whole, **{f"tiles of {t}": (lambda t=t: in_tiles(t)) for t in tiles}}
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.repeats):
            for key, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t0)
    for key, ts in times.items():
        print(f"{args.model} {args.seconds:g} s, {key}: median {1e3 * statistics.median(ts):.1f} ms, "
              f"min {1e3 * min(ts):.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
