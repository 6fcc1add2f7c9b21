"""Build an engine model from a transformers-format checkpoint directory, safely.

Tensors come from safetensors (`safe_open`) or from `torch.load(weights_only=True)`, which refuses pickles
that would run code. Key handling (sew_spec.md 5.2, P9, P14): weight-norm pairs (`weight_g`/`weight_v` or
`parametrizations.weight.original0/1`) are folded once into a plain `weight`; training-only keys on a
whitelist are dropped; anything else missing, unexpected or mis-shaped is a CheckpointError listing the keys.
"""

from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sewcli.checkpoint import CheckpointInfo, read_checkpoint
from sewcli.errors import CheckpointError, UnsupportedConfigError
from sewcli.model.common import skipped_init

log = logging.getLogger(__name__)

# Training-only or not-yet-modelled keys that may appear in released checkpoints (P14).
IGNORED_KEYS = re.compile(
    r"(^|\.)(masked_spec_embed|mask_time_emb_vector)$"
    r"|^(quantizer|project_q|project_hid|decoders|copy_model)\."  # copy_model: wav2vec2-ee KD teacher
)
_WN_SUFFIXES = {
    "weight_g": "g",
    "weight_v": "v",
    "parametrizations.weight.original0": "g",
    "parametrizations.weight.original1": "v",
}


@dataclass(frozen=True)
class LoadedModel:
    """A ready-to-run model (eval mode) and the checkpoint metadata it came from."""

    model: nn.Module
    info: CheckpointInfo

    @property
    def family(self) -> str:
        """ "sew" | "sew-d" | "wav2vec2"."""
        return self.info.family


def build_model(family: str, config: dict[str, Any]) -> nn.Module:
    """Instantiate the family's CTC model from a config.json dict (random weights)."""
    if family == "sew":
        from sewcli.model.sew import SEWConfig, SEWForCTC

        return SEWForCTC(SEWConfig.from_hf(config))
    if family == "wav2vec2":
        from sewcli.model.wav2vec2 import Wav2Vec2Config, Wav2Vec2ForCTC

        return Wav2Vec2ForCTC(Wav2Vec2Config.from_hf(config))
    if family == "sew-d":
        try:
            from sewcli.model import sew_d
        except ImportError as e:  # pragma: no cover - until sew_d.py lands
            raise UnsupportedConfigError(f"model family {family!r} is not available in this build") from e
        return sew_d.SEWDForCTC(sew_d.SEWDConfig.from_hf(config))
    raise UnsupportedConfigError(f"model family {family!r} is not supported; known: sew, sew-d, wav2vec2")


def read_tensors(path: Path) -> dict[str, Tensor]:
    """All tensors of one weight file; unsafe, corrupt or truncated files raise CheckpointError naming it."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                return {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: cannot read safetensors file ({e})") from e
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):  # legacy (non-zip) pickles cannot be memory-mapped; retry plainly
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: the pickle contains objects beyond plain tensors (it could run code); "
            f"convert it to safetensors from a trusted source ({str(e).splitlines()[0]})"
        ) from e
    except (RuntimeError, OSError, EOFError, ValueError, KeyError) as e:
        raise CheckpointError(
            f"{path}: cannot read PyTorch weights, the file is corrupt or truncated ({e})"
        ) from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a mapping of names to tensors")
    return dict(obj)


def normalize_state_dict(raw: dict[str, Tensor]) -> dict[str, Tensor]:
    """Fold weight norm, rename legacy LayerNorm gamma/beta, drop whitelisted training-only keys."""
    out: dict[str, Tensor] = {}
    pairs: dict[str, dict[str, Tensor]] = {}
    for key, value in raw.items():
        if IGNORED_KEYS.search(key):
            continue
        for suffix, role in _WN_SUFFIXES.items():
            if key.endswith("." + suffix):
                pairs.setdefault(key[: -len(suffix)] + "weight", {})[role] = value
                break
        else:
            key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
            key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
            out[key] = value
    for wkey, gv in pairs.items():
        if set(gv) != {"g", "v"}:
            raise CheckpointError(f"weight-norm pair for {wkey} is incomplete: only {sorted(gv)} present")
        # dim=2: norm over (out, in/groups) for each kernel tap, as transformers' weight_norm(dim=2) (P9).
        out[wkey] = torch._weight_norm(gv["v"].float(), gv["g"].float(), 2)
    return out


def _ee_head(raw: dict[str, Tensor]) -> dict[str, Tensor]:
    """Early-exit checkpoints saved as safetensors may keep the tied head only as `decoders.0` (spec 10.4)."""
    if "lm_head.weight" not in raw and "decoders.0.weight" in raw:
        return {"lm_head.weight": raw["decoders.0.weight"], "lm_head.bias": raw["decoders.0.bias"]}
    return {}


def load_state(model: nn.Module, state: dict[str, Tensor], where: str) -> None:
    """Copy `state` into `model`; missing, unexpected or mis-shaped keys -> CheckpointError listing them."""
    expected = model.state_dict()
    optional = {k for k in expected if IGNORED_KEYS.search(k)}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    head = getattr(model, "lm_head", None)
    if isinstance(head, nn.Linear) and "lm_head.weight" in state:
        rows = state["lm_head.weight"].shape[0]
        if rows != head.out_features:
            raise CheckpointError(
                f"{where}: lm_head has {rows} rows but config.json vocab_size={head.out_features}"
            )
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_few(unexpected)}")
    if shapes:
        problems.append(f"mis-shaped keys: {_few(shapes)}")
    if problems:
        raise CheckpointError(f"{where}: weights do not match config.json; " + "; ".join(problems))
    # Assign the checkpoint's tensors instead of copying them, so a model built on the meta device never
    # holds a second copy of the weights (peak RSS); optional keys the checkpoint lacks become zeros.
    full = dict(state)
    for k in optional - set(state):
        full[k] = torch.zeros(expected[k].shape, dtype=expected[k].dtype)
    model.load_state_dict(full, strict=True, assign=True)


def _few(items: list[str], n: int = 8) -> str:
    """First n items, comma-separated, with a count of the rest."""
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def load_model(
    directory: Path | str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> LoadedModel:
    """Load a SEW / SEW-D / wav2vec2 CTC checkpoint directory into an eval-mode model.

    Args:
        directory: transformers-format directory (config.json, vocab.json, weights).
        device: where the model should live.
        dtype: parameter dtype (weights are folded in float32 first).
    Returns:
        LoadedModel(model, info).
    """
    info = read_checkpoint(directory)
    with skipped_init():  # no random init and no resident memory until the checkpoint's tensors are assigned
        model = build_model(info.family, info.config)
    raw: dict[str, Tensor] = {}
    for path in info.weight_files:
        raw.update(read_tensors(path))
    raw.update(_ee_head(raw))
    where = str(info.weight_files[0]) if len(info.weight_files) == 1 else str(info.directory)
    load_state(model, normalize_state_dict(raw), where)
    if info.family == "wav2vec2":  # early-exit heads `decoders.N.*` (spec 10.4), left out of load_state
        from sewcli.model.early_exit import attach_exits

        model = attach_exits(model, raw, info.architecture, where)
    model.to(device=device, dtype=dtype)
    model.eval()
    log.debug("loaded %s (%s) from %s", info.architecture, info.family, where)
    return LoadedModel(model, info)
