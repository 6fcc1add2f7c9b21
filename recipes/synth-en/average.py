"""Average the weights of several exports of one run (checkpoint averaging), as a new export.

Usage: python average.py DEST EXPORT_DIR [EXPORT_DIR ...]
Each EXPORT_DIR is a model directory written by train.py (work/export/latest, kept at several steps). The
weights are averaged in float32 after loading with the project's loader (so the positional conv's weight-norm
pair is folded first and the average is taken over the conv weight itself), then exported like train.py
does; the safetensors metadata records the averaged steps (`step` is the last one, `averaged` all of them).
Decide whether an average is better on the dev set (`evaluate.py DEST --split dev_a`), not on a test set.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors import safe_open

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from export import export_hf  # noqa: E402

from sewcli.model.load import load_model  # noqa: E402


def average(sources: list[Path]) -> tuple[torch.nn.Module, list[str]]:
    """The first source's model with every float tensor replaced by the mean over all sources."""
    models = [load_model(src).model for src in sources]
    steps = []
    for src in sources:
        with safe_open(str(src / "model.safetensors"), "pt") as fh:
            steps.append(fh.metadata().get("step", "?"))
    states = [m.state_dict() for m in models]
    mean = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            mean[key] = torch.stack([s[key].float() for s in states]).mean(dim=0)
        else:
            mean[key] = value
    models[0].load_state_dict(mean)
    return models[0], steps


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    dest, sources = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    model, steps = average(sources)
    export_hf(model, dest, extra={"step": steps[-1], "averaged": ",".join(steps)})
    print(f"averaged steps {', '.join(steps)} -> {dest}")


if __name__ == "__main__":
    main()
