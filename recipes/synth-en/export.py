"""Export a trained SEWForCTC as a Hugging Face model directory (config, safetensors, tokenizer, preprocessor)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from data import VOCAB  # noqa: E402

POS_CONV = "sew.encoder.pos_conv_embed.conv.weight"

TOKENIZER_CONFIG = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
                    "do_lower_case": False, "word_delimiter_token": "|", "tokenizer_class": "Wav2Vec2CTCTokenizer"}
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
PREPROCESSOR = {"do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
                "padding_side": "right", "padding_value": 0, "return_attention_mask": False, "sampling_rate": 16000}


def hf_state_dict(model: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Our state dict under transformers' key names; the pos conv as a weight-norm pair (dim=2), like hub files."""
    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu", torch.float32)
        if k == POS_CONV:
            g = torch.linalg.vector_norm(v, dim=(0, 1), keepdim=True)  # (1, 1, k): norm over (out, in/groups)
            out[k[: -len("weight")] + "weight_g"] = g.to(dtype).contiguous()
            out[k[: -len("weight")] + "weight_v"] = v.to(dtype).contiguous()
        else:
            out[k] = v.to(dtype).contiguous()
    return out


def export_hf(model: Any, dest: Path, dtype: torch.dtype = torch.float16, extra: dict | None = None) -> None:
    """Write dest/{config.json, model.safetensors, vocab.json, tokenizer_config.json, ...} atomically."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cfg = model.config.to_hf()
    cfg.update({"torch_dtype": "float32", "dtype": "float32", "vocab_size": len(VOCAB),
                "feature_extractor_type": "Wav2Vec2FeatureExtractor", "tokenizer_class": "Wav2Vec2CTCTokenizer"})
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    save_file(hf_state_dict(model, dtype), str(tmp / "model.safetensors"),
              metadata={"format": "pt", **{k: str(v) for k, v in (extra or {}).items()}})
    (tmp / "vocab.json").write_text(json.dumps(VOCAB) + "\n")
    (tmp / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG) + "\n")
    (tmp / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS) + "\n")
    (tmp / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n")
    if dest.exists():
        old = dest.with_name(dest.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def main() -> None:
    """Export a training checkpoint (work/train/last.pt) without training: python export.py CKPT DEST."""
    import argparse

    sys.path.insert(0, str(HERE.parents[1]))
    from train import SMALL, TINY

    from sewcli.model.sew import SEWConfig, SEWForCTC

    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("dest")
    ap.add_argument("--size", choices=["small", "tiny"], default="small")
    args = ap.parse_args()
    state = torch.load(args.checkpoint, weights_only=True)
    model = SEWForCTC(SEWConfig(**(SMALL if args.size == "small" else TINY)))
    model.load_state_dict(state["model"])
    export_hf(model, Path(args.dest), extra={"step": state["step"]})
    print(f"exported step {state['step']} -> {args.dest}")


if __name__ == "__main__":
    main()
