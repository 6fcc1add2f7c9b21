"""Early-exit wav2vec2: time per window at each exit; the `auto` rule's speed vs agreement with the last exit.

    python bench/early_exit.py [--threads 2] [--window 10] [--repeats 3] [--windows 8] [--fit-heads]

The model is wav2vec2-base's real configuration (768 hidden, 12 layers, 7-layer CNN) with an exit head after
every second layer, random weights (speed does not depend on the weights). Each window is the same 16 kHz
signal
(speech-like tones + noise), normalised as the feature extractor does.

Agreement: the fraction of frames whose argmax at the chosen exit equals the last exit's argmax, and the
fraction
of windows whose greedy token sequence (collapse repeats, drop blanks) equals the last exit's. On random
weights
this is NOT a measure of accuracy. `--fit-heads` makes it a little more meaningful: each earlier exit head is
fitted by least squares to reproduce the last exit's logits from its own layer (a linear probe distilled on
other
windows), so the exits genuinely approximate the final output, better with depth, as trained exits do; the
last
head is first made peaky (weights x10, blank bias +4) so that confidences resemble a trained CTC model's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from sewcli.model.early_exit import EarlyExitWav2Vec2ForCTC, ExitPolicy
from sewcli.model.wav2vec2 import Wav2Vec2Config


def signal(seconds: float, seed: int) -> np.ndarray:
    """A normalised speech-like test signal at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = np.sin(2 * np.pi * (150 + 80 * np.sin(2 * np.pi * 2.5 * t)) * t) * (
        np.sin(2 * np.pi * 0.7 * t) > -0.3
    )
    x = 0.3 * x + 0.05 * rng.standard_normal(t.shape[0])
    return ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)


def collapse(ids: torch.Tensor, blank: int = 0) -> list[int]:
    """Greedy CTC token sequence of one row of argmax ids."""
    out, prev = [], None
    for i in ids.tolist():
        if i != prev and i != blank:
            out.append(i)
        prev = i
    return out


def fit_heads(model: EarlyExitWav2Vec2ForCTC, train: torch.Tensor) -> None:
    """Least-squares exit heads that map each exit's hidden states to the last exit's logits."""
    with torch.no_grad():
        last_head = model.exit_head(model.exit_layers[-1])
        last_head.weight.mul_(10.0)  # peaky final posteriors with a dominant blank, like a trained CTC model
        last_head.bias[0] += 4.0
        x, mask = model._features(train, None)
        from sewcli.model.early_exit import encoder_input

        h, key_mask = encoder_input(model.wav2vec2.encoder, x, mask)
        states = {}
        for n, layer in enumerate(model.wav2vec2.encoder.layers, start=1):
            h = layer(h, key_mask)
            if n in model.exit_layers:
                states[n] = model.head_input(h).reshape(-1, h.shape[-1])  # (B*T, H)
        last = model.exit_layers[-1]
        target = model.exit_head(last)(states[last])  # (B*T, V)
        heads = []
        for n in model.exit_layers[:-1]:
            a = torch.cat([states[n], torch.ones(states[n].shape[0], 1)], dim=1)  # (B*T, H+1)
            sol = torch.linalg.lstsq(a, target, driver="gelsd").solution  # (H+1, V)
            lin = torch.nn.Linear(a.shape[1] - 1, target.shape[1])
            lin.weight.copy_(sol[:-1].T)
            lin.bias.copy_(sol[-1])
            heads.append(lin)
        heads.append(model.exit_head(last))
        model.decoders = torch.nn.ModuleList(heads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--window", type=float, default=10.0, help="seconds per window")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--windows", type=int, default=8, help="windows for the auto-rule measurement")
    ap.add_argument("--thresholds", default="0.3,0.5,0.7,0.9")
    ap.add_argument("--fit-heads", action="store_true")
    ap.add_argument("--no-auto", action="store_true", help="only the per-exit timing table")
    ap.add_argument("--no-timing", action="store_true", help="only the auto-rule table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(vocab_size=32)
    model = EarlyExitWav2Vec2ForCTC(cfg, tied=False).eval()
    if args.fit_heads:
        fit_heads(model, torch.from_numpy(np.stack([signal(args.window, 100 + i) for i in range(4)])))
    x = torch.from_numpy(signal(args.window, 0))[None]
    print(
        f"# wav2vec2-base config, random weights, {args.window:g} s window, {args.threads} threads, "
        f"torch {torch.__version__}; median (min) of {args.repeats} runs"
    )
    if not args.no_timing:
        print(
            "| exit layer | GFLOP / window | wall s / window: median (min) | CPU s / window | "
            "speed-up vs layer 12: FLOPs / wall / CPU |"
        )
        print("|---|---|---|---|---|")
        times = {}
        flops = {}
        from torch.utils.flop_counter import FlopCounterMode

        with torch.inference_mode():
            for layer in model.exit_layers:
                model.policy = ExitPolicy(layer=layer)
                with FlopCounterMode(display=False) as counter:
                    model(x)
                flops[layer] = counter.get_total_flops() / 1e9
            model.policy = ExitPolicy(layer=2)
            model(x)  # warm-up
            runs: dict[int, list[float]] = {n: [] for n in model.exit_layers}
            cpu: dict[int, list[float]] = {n: [] for n in model.exit_layers}
            for _ in range(args.repeats):  # interleaved, so a change in machine load hits every exit alike
                for layer in model.exit_layers:
                    model.policy = ExitPolicy(layer=layer)
                    t0, c0 = time.perf_counter(), time.process_time()
                    model(x)
                    runs[layer].append(time.perf_counter() - t0)
                    cpu[layer].append(time.process_time() - c0)
            for layer in model.exit_layers:
                times[layer] = (
                    statistics.median(runs[layer]),
                    min(runs[layer]),
                    statistics.median(cpu[layer]),
                )
        for layer, (med, low, c) in times.items():
            print(
                f"| {layer} | {flops[layer]:.1f} | {med:.3f} ({low:.3f}) | {c:.3f} | "
                f"{flops[12] / flops[layer]:.2f}x / {times[12][0] / med:.2f}x / {times[12][2] / c:.2f}x |"
            )

    if args.no_auto:
        return
    windows = torch.from_numpy(np.stack([signal(args.window, 10 + i) for i in range(args.windows)]))
    with torch.inference_mode():
        model.policy = ExitPolicy()
        t0 = time.perf_counter()
        final = torch.cat([model(windows[i : i + 1]) for i in range(args.windows)])  # (W, T, V)
        t_last = time.perf_counter() - t0
        ref_ids = final.argmax(-1)
        from sewcli.model.early_exit import window_confidence

        every = {n: window_confidence(v) for n, v in model.all_exits(windows).items()}
        print()
        print(
            "# mean window confidence (geometric mean over frames of the max posterior) per exit: "
            + ", ".join(f"L{n} {float(c.mean()):.3f}" for n, c in every.items())
        )
        print()
        print(
            f"# auto rule over {args.windows} windows (batch 1); agreement with the last exit"
            + (" (exit heads fitted to the last exit)" if args.fit_heads else " (random heads: meaningless)")
        )
        print(
            "| threshold | mean exit layer | s total | speed-up | frame agreement | window text agreement |"
        )
        print("|---|---|---|---|---|---|")
        print(f"| last exit | 12.0 | {t_last:.2f} | 1.00x | 1.000 | 1.000 |")
        for thr in [float(v) for v in args.thresholds.split(",")]:
            model.policy = ExitPolicy(threshold=thr)
            exits = []
            t0 = time.perf_counter()
            outs = []
            for i in range(args.windows):
                outs.append(model(windows[i : i + 1]))
                exits += model.last_exits
            dt = time.perf_counter() - t0
            ids = torch.cat(outs).argmax(-1)
            frame = float((ids == ref_ids).float().mean())
            text = np.mean([collapse(ids[i]) == collapse(ref_ids[i]) for i in range(args.windows)])
            print(
                f"| {thr:g} | {np.mean(exits):.1f} | {dt:.2f} | {t_last / dt:.2f}x | "
                f"{frame:.3f} | {text:.3f} |"
            )


if __name__ == "__main__":
    main()
