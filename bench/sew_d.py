"""SEW-D forward time: this engine (position cache on and off) against transformers' SEWDForCTC.

    python bench/sew_d.py [--threads 1] [--seconds 5 10 20] [--repeats 5] [--layers 12] [--size tiny|mid]

The model is the real asapp/sew-d-tiny-100k-ft-ls100h (or sew-d-mid) configuration with random weights (speed
does not depend on the weights); both implementations get the same weights and the same input, and the script
reports their logit difference. The three variants run interleaved (one run of each per round, so load spikes
on a shared machine hit all three alike) and the minimum over `--repeats` rounds is reported
(torch.inference_mode, batch 1, fp32, CPU). "no cache" clears the eval-mode cache of the relative-position
projections before every run: what the forward costs without it (transformers recomputes query_proj/key_proj
of the 512 relative embeddings in every layer of every forward).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

from sewcli.model.sew_d import SEWDConfig, SEWDForCTC

TINY: dict[str, Any] = {
    "hidden_size": 384,
    "num_attention_heads": 6,
    "intermediate_size": 1536,
    "num_hidden_layers": 12,
    "hidden_act": "gelu_python",
    "layer_norm_eps": 1e-7,
    "feature_layer_norm_eps": 1e-5,
    "num_conv_pos_embeddings": 31,
    "position_buckets": 256,
    "max_position_embeddings": 512,
    "attention_dropout": 0.0,
    "final_dropout": 0.0,
    "vocab_size": 32,
}
MID = TINY | {
    "hidden_size": 512,
    "num_attention_heads": 8,
    "intermediate_size": 2048,
    "num_hidden_layers": 24,
}


def interleaved_best_ms(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Run the functions in turn `repeats` times; the minimum wall time of each, in milliseconds."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, acc in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - start)
    return [1e3 * min(acc) for acc in times]


def build(hf_config: dict[str, Any]) -> tuple[SEWDForCTC, Any]:
    """(ours, transformers) with identical random weights, both in eval mode."""
    import transformers  # test-only dependency: the reference implementation

    torch.manual_seed(0)
    ref = transformers.SEWDForCTC(transformers.SEWDConfig(**hf_config)).eval()
    ours = SEWDForCTC(SEWDConfig.from_hf(hf_config)).eval()
    state = dict(ref.state_dict())
    prefix = "sew_d.encoder.pos_conv_embed.conv."
    g = state.pop(prefix + "parametrizations.weight.original0")
    v = state.pop(prefix + "parametrizations.weight.original1")
    state[prefix + "weight"] = torch._weight_norm(v, g, 2)
    ours.load_state_dict(state)
    return ours, ref


def main() -> None:
    """Print one table row per input length."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", type=int, default=None, help="override num_hidden_layers")
    parser.add_argument("--size", choices=["tiny", "mid"], default="tiny")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TINY if args.size == "tiny" else MID
    if args.layers is not None:
        cfg = cfg | {"num_hidden_layers": args.layers}
    ours, ref = build(cfg)
    deberta = ours.sew_d.encoder.encoder
    layers = cfg["num_hidden_layers"]
    print(
        f"SEW-D-{args.size}, {layers} layers, threads={args.threads}, min of {args.repeats} interleaved runs"
    )
    print("| input | transformers | ours, cached | ours, no cache | cache saves | max abs logit diff |")
    print("|---|---|---|---|---|---|")
    for seconds in args.seconds:
        x = torch.randn(1, int(seconds * 16000), generator=torch.Generator().manual_seed(1))

        def run_ref(x: torch.Tensor = x) -> None:
            ref(x)

        def run_ours(x: torch.Tensor = x) -> None:
            ours(x)

        def run_uncached(x: torch.Tensor = x) -> None:
            deberta.clear_cache()
            ours(x)

        with torch.inference_mode():
            diff = float((ours(x) - ref(x).logits).abs().max())
            t_ref, t_ours, t_nocache = interleaved_best_ms([run_ref, run_ours, run_uncached], args.repeats)
        print(
            f"| {seconds:g} s | {t_ref:.0f} ms | {t_ours:.0f} ms | {t_nocache:.0f} ms | "
            f"{t_nocache - t_ours:.0f} ms | {diff:.2g} |"
        )


if __name__ == "__main__":
    main()
