"""The inference stage's options, without torch: the command line builds them before (or without) a model.

`sewcli.inference` re-exports them; this module exists so that option parsing and usage errors do not pay for
importing torch (~1.5 s).
"""

from __future__ import annotations

from dataclasses import dataclass

from sewcli.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")
PRECISION_NAMES = ("fp32", "bf16", "fp16", "int8")


@dataclass(frozen=True)
class InferenceOptions:
    """How the model runs: device, CPU threads, windows per batch, and weight/activation precision."""

    device: str = "auto"  # auto = cuda when available (cpu for int8), else cpu
    threads: int | None = None  # CPU threads for the model in all; None = torch's default (one per core)
    workers: int | None = None  # windows run at once on the CPU, each on threads/workers threads; None = auto
    batch_size: int | None = None  # equal-length windows per forward pass; None = 1 on the CPU, 4 on CUDA
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA) | int8 (CPU, model/fastpath.py)
    exit_layer: int | str | None = None  # early-exit models: a fixed exit layer, "auto", or None = last layer
    exit_threshold: float = 0.9  # "auto": a window exits once its mean max-posterior reaches this

    def __post_init__(self) -> None:
        if self.exit_layer is not None and self.exit_layer != "auto" and not isinstance(self.exit_layer, int):
            raise UsageError(f"--exit-layer must be a layer number or 'auto', got {self.exit_layer!r}")
        if not 0.0 <= self.exit_threshold <= 1.0:
            raise UsageError(f"--exit-threshold must be in [0, 1], got {self.exit_threshold}")
        if self.device not in DEVICES:
            raise UsageError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {self.threads}")
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--model-workers must be >= 1, got {self.workers}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.precision not in PRECISION_NAMES:
            raise UsageError(
                f"--precision {self.precision!r} is not supported; use one of {', '.join(PRECISION_NAMES)}"
            )
