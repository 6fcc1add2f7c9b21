"""When a `sew transcribe` run starts its forwards, and how busy its window workers are.

Usage: python bench/timeline.py SEW-TRANSCRIBE-ARGS...   e.g.
    python bench/timeline.py /tmp/pb/audio/pipeline-10min.wav --model /tmp/pb/checkpoints/sew-tiny --threads 2
        --output-dir /tmp/pb/out --overwrite --chunk-length 10 --chunk-overlap 0.5 --quiet

Runs the CLI in this process with `sewcli.inference.window_log_probs` wrapped to record when each forward
starts and ends (seconds from this script's start, which is ~0.02 s after the interpreter's), and prints on
stderr: when torch was imported, when the first forwards started, when the last ended, when the CLI finished,
and the forwards' durations. Results: docs/benchmarks.md, "What does not hold yet".
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import atexit  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from typing import Any  # noqa: E402

import sewcli.inference as inference  # noqa: E402  (imports torch)

T_TORCH = time.perf_counter() - T0
spans: list[tuple[str, float, float]] = []
_forward = inference.window_log_probs


def _timed(model: Any, batch: Any) -> Any:
    start = time.perf_counter() - T0
    out = _forward(model, batch)
    spans.append((threading.current_thread().name, start, time.perf_counter() - T0))
    return out


def _report() -> None:
    end = time.perf_counter() - T0
    if not spans:
        print(f"torch imported at {T_TORCH:.2f} s; no forward ran; CLI done at {end:.2f} s", file=sys.stderr)
        return
    starts = sorted(s for _, s, _ in spans)
    last = max(e for _, _, e in spans)
    durations = [e - s for _, s, e in spans]
    busy = sum(durations) / max(1, len({name for name, _, _ in spans}))
    first = ", ".join(f"{s:.2f}" for s in starts[:2])
    print(
        f"torch imported at {T_TORCH:.2f} s; first forwards started at {first} s;"
        f" last ended at {last:.2f} s; CLI done at {end:.2f} s\n"
        f"{len(spans)} forwards: median {statistics.median(durations) * 1e3:.0f} ms, min "
        f"{min(durations) * 1e3:.0f}, max {max(durations) * 1e3:.0f}; each worker busy {busy:.2f} s",
        file=sys.stderr,
    )


inference.window_log_probs = _timed
atexit.register(_report)  # the CLI ends with os._exit after the atexit handlers

from sewcli.cli import main  # noqa: E402

sys.argv = ["sew", "transcribe", *sys.argv[1:]]
main()
