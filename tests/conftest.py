"""Shared fixtures: a tiny random SEW checkpoint built with our own model code, generated audio, a clean env.

Nothing here touches the network or a GPU. The checkpoint is the HF layout (config.json, model.safetensors,
vocab.json, tokenizer_config.json, special_tokens_map.json, preprocessor_config.json), session-scoped so it is
built once per test run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

# The 32-token English CTC vocabulary of the asapp and facebook checkpoints (sew_spec.md section 5.3).
ENGLISH_VOCAB = {
    "<pad>": 0,
    "<s>": 1,
    "</s>": 2,
    "<unk>": 3,
    "|": 4,
    "E": 5,
    "T": 6,
    "A": 7,
    "O": 8,
    "N": 9,
    "I": 10,
    "H": 11,
    "S": 12,
    "R": 13,
    "D": 14,
    "L": 15,
    "U": 16,
    "M": 17,
    "W": 18,
    "C": 19,
    "F": 20,
    "G": 21,
    "Y": 22,
    "P": 23,
    "B": 24,
    "V": 25,
    "K": 26,
    "'": 27,
    "X": 28,
    "J": 29,
    "Q": 30,
    "Z": 31,
}
TOKENIZER_CONFIG = {
    "unk_token": "<unk>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "pad_token": "<pad>",
    "do_lower_case": False,
    "word_delimiter_token": "|",
    "tokenizer_class": "Wav2Vec2CTCTokenizer",
}
PREPROCESSOR = {
    "do_normalize": True,
    "feature_size": 1,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": False,
    "sampling_rate": 16000,
    "feature_extractor_type": "Wav2Vec2FeatureExtractor",
}
# Real SEW conv geometry (hop 320, receptive field 400) with few channels; 2 small transformer layers.
TINY_SEW = {
    "conv_dim": [16] * 12 + [32],
    "hidden_size": 24,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 48,
    "num_conv_pos_embeddings": 31,
    "num_conv_pos_embedding_groups": 4,
    "squeeze_factor": 2,
    "vocab_size": 32,
}


def write_sew_checkpoint(directory: Path, seed: int = 0, blank_bias: float = 0.0) -> Path:
    """Write a random-weight SEWForCTC checkpoint directory (our model code, safetensors + HF json files).

    `blank_bias` is added to the blank logit so that tests can make the model emit mostly blanks.
    """
    import torch
    from safetensors.torch import save_file

    from sewcli.model.sew import SEWConfig, SEWForCTC

    torch.manual_seed(seed)
    cfg = SEWConfig.from_hf(dict(TINY_SEW, model_type="sew"))
    model = SEWForCTC(cfg).eval()
    with torch.no_grad():
        model.lm_head.bias[0] += blank_bias
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(cfg.to_hf(), indent=1))
    (directory / "vocab.json").write_text(json.dumps(ENGLISH_VOCAB))
    (directory / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    specials = {k: TOKENIZER_CONFIG[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (directory / "special_tokens_map.json").write_text(json.dumps(specials))
    (directory / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    return directory


@pytest.fixture(scope="session")
def tiny_sew_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SEW checkpoint directory, built once per session."""
    return write_sew_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-sew")


def speechlike(seconds: float, rate: int = 16000, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Deterministic noise-modulated tones with pauses: (frames,) or (frames, channels) float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    envelope = (np.sin(2 * np.pi * 0.7 * t) > -0.3).astype(np.float32)  # ~0.5 s pauses
    tone = np.sin(2 * np.pi * (180 + 60 * np.sin(2 * np.pi * 3 * t)) * t)
    x = (0.3 * tone + 0.05 * rng.standard_normal(n)) * envelope
    if channels > 1:
        x = np.stack([x * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)
    return x.astype(np.float32)


def child_pids(pid: int) -> set[int]:
    """Direct children of `pid` (Linux /proc)."""
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids.update(int(k) for k in (task / "children").read_text().split())
        except OSError:
            pass
    return kids


def process_name(pid: int) -> str | None:
    """The command name of `pid` (Linux /proc), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def write_audio(
    path: Path, seconds: float, rate: int = 16000, seed: int = 0, channels: int = 1, **kw: object
) -> Path:
    """Write `speechlike` audio with soundfile (format from the extension unless given)."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), speechlike(seconds, rate, seed, channels), rate, **kw)
    return path


def error_rate(refs: list[str], hyps: list[str], unit: str = "word") -> float:
    """Word (or character) error rate by a plain Levenshtein (independent of the recipe's metrics module)."""
    edits = words = 0
    for r, h in zip(refs, hyps, strict=True):
        a, b = (r.split(), h.split()) if unit == "word" else (list(r), list(h))
        d = list(range(len(b) + 1))
        for i in range(1, len(a) + 1):
            prev, d[0] = d[0], i
            for j in range(1, len(b) + 1):
                prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
        edits += d[-1]
        words += len(a)
    return edits / words


@pytest.fixture(scope="session", autouse=True)
def _sew_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """sew's own cache (parsed language models) in a temporary directory, for subprocesses too."""
    import os

    os.environ["SEW_CACHE_DIR"] = str(tmp_path_factory.mktemp("sew-cache"))


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No user registry, an empty offline HF cache: what a fresh machine without network looks like."""
    env = {
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
        "HF_HUB_OFFLINE": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
