"""Experiment (not adopted): the conv waveform encoder as int8 dynamic GEMMs instead of bf16 convs.

Usage: python bench/int8_convs.py [--limit 100] [--threads 2]

Every conv layer after the first becomes torch's dynamic int8 linear on (batch, time, channels) features: a
kernel-1 conv is a linear over channels, kernel == stride is a reshape, kernel 3 stride 2 an unfold. Prints:
1. the encoder's time on one 20 s window of SEW-tiny (random weights, real config): fp32, bf16 (what
   `--precision int8` runs now) and int8 GEMMs, median of 9, interleaved;
2. the relative RMS error of the embedded model's conv features on examples/meeting.flac;
3. the embedded model's greedy CER on the held-out sets with `--precision int8` as shipped and with int8 convs
   (bench/cer_precision.py with the encoder swapped).
Results: docs/benchmarks.md, "int8 convs measured".
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import soundfile as sf
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import cer_precision  # noqa: E402

from sewcli import bench  # noqa: E402
from sewcli.model import fastpath  # noqa: E402
from sewcli.model.common import FeatureEncoder  # noqa: E402
from sewcli.model.load import load_model  # noqa: E402


def conv_as_int8_linear(conv: nn.Conv1d) -> nn.Module:
    """Conv1d weight (out, in, k) as an int8 linear over k-major (k, in) inputs."""
    w = conv.weight.detach().float()
    lin = nn.Linear(w.shape[1] * w.shape[2], w.shape[0], bias=conv.bias is not None)
    lin.weight.data = w.permute(0, 2, 1).reshape(w.shape[0], -1).contiguous()  # (out, k*in)
    if conv.bias is not None:
        lin.bias.data = conv.bias.detach().float()
    return fastpath.int8_linear(lin)


def int8_encoder(encoder: FeatureEncoder) -> FeatureEncoder:
    """Swap `encoder`'s forward for layer 0 as is, then int8 GEMMs in (batch, time, channels)."""
    rest = [
        (layer.conv.kernel_size[0], layer.conv.stride[0], conv_as_int8_linear(layer.conv))
        for layer in encoder.conv_layers[1:]
    ]

    def forward(self: FeatureEncoder, wav: torch.Tensor) -> torch.Tensor:
        h = self.conv_layers[0](wav[:, None]).transpose(1, 2).contiguous()  # (B, T, C)
        for k, s, lin in rest:
            b, t, c = h.shape
            if k != 1:
                tn = (t - k) // s + 1
                if k == s:
                    h = h[:, : tn * s].reshape(b, tn, k * c)  # (B, T', k*C), k-major
                else:
                    h = h.unfold(1, k, s).transpose(2, 3).reshape(b, tn, k * c)  # (B,T',C,k) -> (B,T',k*C)
            h = torch.ops.aten.gelu_(lin(h))
        return h.transpose(1, 2)  # (B, C, T')

    encoder.forward = types.MethodType(forward, encoder)  # type: ignore[method-assign]
    return encoder


def encoder_timings(threads: int) -> None:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(bench.write_random_checkpoint("sew-tiny", Path(tmp))).model
    model.eval()
    fp32 = model.sew.feature_extractor
    bf16_model = copy.deepcopy(model)
    fastpath.convs_in_bf16(bf16_model)
    int8 = int8_encoder(copy.deepcopy(fp32))
    x = torch.randn(1, 20 * 16000)
    runs: dict[str, list[float]] = {"fp32": [], "bf16 (shipped int8 path)": [], "int8 GEMMs": []}
    fns = [fp32, bf16_model.sew.feature_extractor, int8]
    with torch.inference_mode():
        for fn in fns:
            fn(x)
        for _ in range(9):
            for name, fn in zip(runs, fns, strict=True):
                t0 = time.perf_counter()
                fn(x)
                runs[name].append(1e3 * (time.perf_counter() - t0))
    for name, ts in runs.items():
        print(f"SEW-tiny encoder, one 20 s window, {threads} threads: {name} {statistics.median(ts):.1f} ms")


def feature_error() -> None:
    model = load_model(bench.embedded_checkpoint()).model.eval()
    wav = torch.from_numpy(sf.read(ROOT / "examples/meeting.flac", dtype="float32")[0])[None]
    with torch.inference_mode():
        ref = model.sew.feature_extractor(wav)
        out = int8_encoder(copy.deepcopy(model.sew.feature_extractor))(wav)
    rel = ((ref - out).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()).item()
    print(f"embedded model, conv features on examples/meeting.flac: relative RMS error {rel:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # torch.ao's deprecation warnings
    encoder_timings(args.threads)
    feature_error()
    model_dir, corpus = bench.embedded_checkpoint(), ROOT / "recipes/synth-en/work/corpus"
    runs = {
        p: cer_precision.evaluate(model_dir, corpus, p, args.limit, args.threads) for p in ("fp32", "int8")
    }

    def convs_in_int8(model: nn.Module) -> int:
        for module in model.modules():
            if isinstance(module, FeatureEncoder):
                int8_encoder(module)
        return 1

    fastpath.convs_in_bf16 = convs_in_int8  # type: ignore[assignment]  # what inference.load calls for int8
    runs["int8, int8 convs"] = cer_precision.evaluate(model_dir, corpus, "int8", args.limit, args.threads)
    for name, res in runs.items():
        cers = ", ".join(
            f"{split} {r['cer']:.2f} ({r['cer'] - runs['fp32'][split]['cer']:+.2f})"  # type: ignore[index]
            for split, r in res.items()
        )
        print(f"greedy CER % (change vs fp32), {args.limit} utterances per split: {name}: {cers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
