"""Why half precision is no faster than fp32 for one window on a GPU, and what would make it so.

    python bench/cuda_batch1.py [--repeats 30] [--json OUT.json]

On an H200 (`sew bench --device cuda`, 2026-12-04) one 20 s window of wav2vec2-base took 10.0 ms in fp32 and
14.6 ms in fp16 or bf16, while 16 windows at once ran 2.8x faster in half precision. For SEW-tiny,
wav2vec2-base and the embedded model, at fp32 / fp16 / bf16, batch 1, this times one forward (median of
`--repeats`, CUDA-synchronised) with cuDNN's algorithm search off (PyTorch's default) and on
(`torch.backends.cudnn.benchmark`), and replayed as a CUDA graph (no per-kernel launch cost); and lists the
GPU kernels that take the time in wav2vec2-base's fp16 forward with the search off and on (torch.profiler).
Needs a CUDA device.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sewcli import bench, inference  # noqa: E402

MODELS = ("sew-tiny", "wav2vec2-base", "embedded")
PRECISIONS = ("fp32", "fp16", "bf16")


def timed(fn: Any, repeats: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def graphed(module: Any, x: Any) -> Any:
    """A replay function of `module(x)` captured as a CUDA graph (x's storage is the graph's input)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):
            module(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        module(x)
    return graph.replay


def kernels(module: Any, x: Any, top: int = 8) -> list[str]:
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        for _ in range(3):
            module(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                module(x)
            torch.cuda.synchronize()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_device_time_total, reverse=True)[:top]
    return [f"{e.self_device_time_total / 5 / 1000:8.3f} ms  x{e.count // 5:<4} {e.key[:90]}" for e in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/cuda_batch1.py needs a CUDA device")
    results: list[dict[str, Any]] = []
    profiles: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        loaded: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for name in MODELS:
            directory = bench.checkpoint_for(name, Path(tmp))
            models = {
                p: inference.load(directory, inference.InferenceOptions(device="cuda", precision=p)).module
                for p in PRECISIONS
            }
            x32 = torch.from_numpy(bench._windows(1, 20.0)).cuda()
            xs = {p: x32.to(inference.PRECISIONS[p]) for p in PRECISIONS}
            loaded[name] = (models, xs)
            for search in (False, True):
                torch.backends.cudnn.benchmark = search
                for p in PRECISIONS:

                    def fwd(m: Any = models[p], x: Any = xs[p]) -> None:
                        with torch.inference_mode():
                            m(x)

                    ms = timed(fwd, args.repeats) * 1000
                    results.append(
                        {"model": name, "precision": p, "mode": f"eager, search {search}", "ms": ms}
                    )
                    print(f"{name:14} {p} eager, cudnn.benchmark={search!s:5} {ms:7.2f} ms", flush=True)
            if name == "wav2vec2-base":
                for search in (False, True):
                    torch.backends.cudnn.benchmark = search
                    key = f"{name} fp16 cudnn.benchmark={search}"
                    profiles[key] = kernels(models["fp16"], xs["fp16"])
                    print(key, *profiles[key], sep="\n  ", flush=True)
        # graphs last: a capture that fails (host synchronisation inside the forward) may spoil what follows
        torch.backends.cudnn.benchmark = True
        for name, (models, xs) in loaded.items():
            for p in PRECISIONS:
                try:
                    replay = graphed(models[p], xs[p].clone())
                    ms = timed(replay, args.repeats) * 1000
                    results.append({"model": name, "precision": p, "mode": "graph, search True", "ms": ms})
                    print(f"{name:14} {p} graph, cudnn.benchmark=True  {ms:7.2f} ms", flush=True)
                except Exception as exc:
                    results.append({"model": name, "precision": p, "mode": "graph", "error": str(exc)[:300]})
                    print(
                        f"{name:14} {p} graph capture failed: {type(exc).__name__}: {str(exc)[:200]}",
                        flush=True,
                    )
    print("\n| model | precision | mode | ms per 20 s window |\n|---|---|---|---:|")
    for r in results:
        print(f"| {r['model']} | {r['precision']} | {r['mode']} | {r.get('ms', float('nan')):.2f} |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": torch.cuda.get_device_name(0),
                    "torch": torch.__version__,
                    "results": results,
                    "kernels": profiles,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
