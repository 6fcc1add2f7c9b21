"""Train a small SEW-CTC from scratch on the synthetic corpus (frame-CE warm start, then CTC); resumable.

Usage: python train.py --work work [--minutes 90] [--threads 2] [--device cuda]
Re-running continues from work/train/last.pt with the run's own recipe: options not given take the values it
was started with (work/train/args.json), and a given one that differs is refused unless --change-recipe
(a warm restart on purpose); every start is logged in work/train/args_history.jsonl. Every --eval-every
steps: greedy CER on held-out sets, a line in work/train/curve.jsonl, and an HF export of the latest model to
work/export/latest (best CER on test_a + test_b -> best).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from data import VOCAB, AugmentOptions, BatchDataset, greedy_decode, load_manifest, make_batches, normalize, read_audio  # noqa: E402
from export import export_hf  # noqa: E402
from metrics import cer, wer  # noqa: E402

from sewcli.model.sew import SEWConfig, SEWForCTC  # noqa: E402

SMALL = dict(
    vocab_size=len(VOCAB), hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024,
    squeeze_factor=2, conv_dim=(32, 64, 64, 64, 64, 128, 128, 128, 128, 256, 256, 256, 256),
    num_conv_pos_embeddings=31, num_conv_pos_embedding_groups=16, hidden_dropout=0.05, activation_dropout=0.05,
    attention_dropout=0.05, feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.05,
    mask_time_length=5, mask_time_min_masks=1, pad_token_id=0, bos_token_id=1, eos_token_id=2,
)
TINY = dict(SMALL, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            conv_dim=(8, 16, 16, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32))


def lr_at(step: int, peak: float, warmup: int, total: int, floor: float = 0.05) -> float:
    """Linear warm-up then cosine decay to floor*peak at `total` (constant floor afterwards)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def init_weights(model: SEWForCTC, directory: Path, cfg: SEWConfig) -> None:
    """Copy an exported model's weights into `model` (float32); its config must be `cfg` (same --size)."""
    from sewcli.model.load import load_model

    source = load_model(directory).model
    if source.config != cfg:
        diff = [f.name for f in fields(cfg) if getattr(cfg, f.name) != getattr(source.config, f.name)]
        raise SystemExit(f"--init-from {directory}: its config differs from --size's in {', '.join(diff)}")
    with torch.no_grad():
        model.load_state_dict({k: v.float() for k, v in source.state_dict().items()})


# Options that shape only this run (how long, on what, how often it reports); every other option is the
# training recipe, which a resumed run keeps (`resumed_args`).
RUN_OPTIONS = frozenset({"work", "minutes", "max_steps", "threads", "device", "workers", "eval_every", "eval_n",
                         "save_every", "eval_split", "init_from", "change_recipe"})


def given_options(ap: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The options `argv` sets explicitly (parsed once more with every default suppressed)."""
    defaults = {a.dest: a.default for a in ap._actions}
    try:
        for a in ap._actions:
            a.default = argparse.SUPPRESS
        return set(vars(ap.parse_args(argv)))
    finally:
        for a in ap._actions:
            a.default = defaults[a.dest]


def resumed_args(args: argparse.Namespace, given: set[str], saved: dict) -> tuple[argparse.Namespace, list[str]]:
    """The arguments of a resumed run: recipe options not given take the saved run's values (a resumption
    that leaves out a flag must not silently train differently); a given one that differs from the saved
    value is an error unless --change-recipe.

    Returns:
        the resolved arguments and one line per recipe option whose value differs from the parser's default
        or from the saved run (for the log).
    """
    out, changed, notes = vars(args).copy(), [], []
    for key, value in saved.items():
        if key in RUN_OPTIONS or key not in out:
            continue
        value = tuple(value) if isinstance(out[key], tuple) and isinstance(value, list) else value
        if key not in given:
            if out[key] != value:
                notes.append(f"--{key.replace('_', '-')} {value} (the run's)")
            out[key] = value
        elif out[key] != value:
            changed.append(f"--{key.replace('_', '-')} {out[key]} (the run's: {value})")
    if changed and not args.change_recipe:
        raise SystemExit(
            "train.py: the checkpoint's run was started with other options: " + "; ".join(changed)
            + ". Leave them out to continue the run as it was, or add --change-recipe for a warm restart "
            "with the new ones."
        )
    return argparse.Namespace(**out), notes + [f"{c}: changed (--change-recipe)" for c in changed]


@torch.no_grad()
def evaluate(model: SEWForCTC, corpus: Path, rows: list[dict], max_batch_seconds: float = 60.0) -> dict:
    """Greedy CER/WER over rows (each utterance normalised on its own, padded batches with a mask)."""
    device = next(model.parameters()).device
    model.eval()
    refs, hyps = [], []
    order = sorted(range(len(rows)), key=lambda i: rows[i]["samples"])
    batches = make_batches([rows[i] for i in order], max_batch_seconds, random.Random(0))
    for b in batches:
        audios = [normalize(read_audio(corpus, rows[order[i]])) for i in b]
        T = max(len(a) for a in audios)
        x = torch.zeros(len(audios), T)
        m = torch.zeros(len(audios), T, dtype=torch.long)
        for j, a in enumerate(audios):
            x[j, : len(a)] = torch.from_numpy(a)
            m[j, : len(a)] = 1
        logits = model(x.to(device), m.to(device))
        flen = model.output_lengths(m.sum(-1))
        ids = logits.argmax(-1).cpu().numpy()
        for j, i in enumerate(b):
            hyps.append(greedy_decode(ids[j, : int(flen[j])]))
            refs.append(rows[order[i]]["text"])
    model.train()
    return {"cer": cer(refs, hyps), "wer": wer(refs, hyps), "n": len(refs), "example": (refs[0], hyps[0])}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=str(HERE / "work"))
    ap.add_argument("--size", choices=["small", "tiny"], default="small")
    ap.add_argument("--minutes", type=float, default=100.0, help="stop after this much wall time in this run")
    ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--total-steps", type=int, default=6000, help="LR schedule length")
    ap.add_argument("--threads", type=int, default=1, help="1 is ~6x faster than 2 on a busy 2-core machine")
    ap.add_argument("--fp32", action="store_true", help="disable bf16 autocast (bf16 is ~1.6x faster here)")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda when available")
    ap.add_argument("--workers", type=int, default=1,
                    help="data-loading processes (decoding, augmentation); 1 suits 2 cores, a GPU needs more")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--schedule-start", type=int, default=0,
                    help="warm restart: the LR schedule (warm-up, cosine over --total-steps) starts at this step")
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--ce-steps", type=int, default=600, help="frame cross-entropy warm start steps")
    ap.add_argument("--ce-decay", type=int, default=400, help="then CTC + CE, the CE weight falling 1 -> 0 over these steps")
    ap.add_argument("--batch-seconds", type=float, default=50.0)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-n", type=int, default=120)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--p-warp", type=float, default=0.0,
                    help="probability of a formant warp (voice change) per utterance; 0.4 in the 6th sitting")
    ap.add_argument("--p-pad", type=float, default=0.0,
                    help="probability of noise-only margins (0.2-1.5 s) around an utterance; 0.3 from step 29,300")
    ap.add_argument("--p-empty", type=float, default=0.0,
                    help="probability that an utterance is replaced by noise alone with the empty text")
    ap.add_argument("--p-join", type=float, default=0.0,
                    help="probability that a batch's utterances are joined in pairs across a pause (sitting 7)")
    ap.add_argument("--p-eq", type=float, default=0.0,
                    help="probability of a random equaliser (tilt, peaks) per utterance (sitting 18)")
    ap.add_argument("--augment-from", type=int, default=1500, help="clean audio before this step (curriculum)")
    ap.add_argument("--p-speed", type=float, default=0.5, help="probability of a speed change per utterance")
    ap.add_argument("--speed", type=float, nargs=2, default=(0.9, 1.1), metavar=("LO", "HI"),
                    help="speed factor range (resampling: tempo, pitch and formants); 0.8 1.12 in the 15th sitting")
    ap.add_argument("--eval-split", action="append", default=None,
                    help="splits of the periodic evaluation (repeatable; default the test sets; dev_a, dev_b, "
                         "dev_b2 keep the test sets out of the run)")
    ap.add_argument("--init-from", default=None,
                    help="an exported model directory (e.g. sewcli/assets/sew-synth-en): start from its weights, "
                         "with a fresh optimizer and step 0, when work/train holds no checkpoint yet")
    ap.add_argument("--change-recipe", action="store_true",
                    help="resuming: accept recipe options (LR, schedule, augmentations, ...) that differ from the "
                         "ones the run was started with; without it they are refused, and options not given "
                         "take the run's values")
    return ap


def main() -> None:
    ap = build_parser()
    args = ap.parse_args()
    if args.workers < 1:
        ap.error("--workers must be at least 1 (the loader prefetches in its own processes)")

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    work = Path(args.work)
    corpus, out = work / "corpus", work / "train"
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "last.pt"
    if ckpt.exists() and (out / "args.json").exists():
        args, notes = resumed_args(args, given_options(ap, sys.argv[1:]),
                                   json.loads((out / "args.json").read_text()))
        for line in notes:
            print(f"resuming with {line}", flush=True)
    cfg = SEWConfig(**(SMALL if args.size == "small" else TINY))
    torch.manual_seed(args.seed)
    model = SEWForCTC(cfg).to(device)  # before the optimizer, so that its state lives there too
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98), eps=1e-8)
    step, epoch, batch_in_epoch, elapsed_prev, best = 0, 0, 0, 0.0, float("inf")
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        elapsed_prev, best = state["elapsed"], state["best"]
        print(f"resumed at step {step} (epoch {epoch}, batch {batch_in_epoch})", flush=True)
    elif args.init_from:
        init_weights(model, Path(args.init_from), cfg)
        print(f"initialised from {args.init_from} (fresh optimizer)", flush=True)
    print(f"params {n_params} ({n_params / 1e6:.2f} M), device {device}", flush=True)
    (out / "args.json").write_text(json.dumps(vars(args), indent=1))
    with open(out / "args_history.jsonl", "a") as history:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        history.write(json.dumps({"started": started, "step": step, "args": vars(args)}) + "\n")

    tests = {s: load_manifest(corpus, s) for s in (args.eval_split or ("test_a", "test_b", "test_b2"))}
    tests = {s: r[: args.eval_n] for s, r in tests.items() if r}
    aug = None if args.no_augment else AugmentOptions(
        p_warp=args.p_warp, p_pad=args.p_pad, p_empty=args.p_empty, p_join=args.p_join, p_eq=args.p_eq,
        p_speed=args.p_speed, speed=tuple(args.speed))
    t0 = time.time()
    audio_seconds = 0.0
    model.train()
    while step < args.max_steps:
        rows = load_manifest(corpus, "train")  # re-read: the corpus may still be growing
        batches = make_batches(rows, args.batch_seconds, random.Random(args.seed * 1000 + epoch))
        ds = BatchDataset(corpus, rows, batches, seed=args.seed * 1000 + epoch,
                          augment_opt=aug if step >= args.augment_from else None,
                          with_frame_targets=step < args.ce_steps + args.ce_decay)
        idx = list(range(batch_in_epoch, len(ds)))
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(ds, idx), batch_size=None, shuffle=False, num_workers=args.workers, prefetch_factor=4,
            persistent_workers=False, collate_fn=None, pin_memory=device.type == "cuda")
        print(f"epoch {epoch}: {len(rows)} utterances, {len(batches)} batches, from batch {batch_in_epoch}, "
              f"augment {ds.opt is not None}, frame targets {ds.with_ft}", flush=True)
        for batch in loader:
            x = torch.as_tensor(batch["input_values"]).to(device, non_blocking=True)
            mask = torch.as_tensor(batch["attention_mask"]).to(device, non_blocking=True)
            for g in opt.param_groups:
                g["lr"] = lr_at(step - args.schedule_start, args.lr, args.warmup, args.total_steps)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=not args.fp32):
                logits = model(x, mask)  # (B, frames, vocab)
            logits = logits.float()
            flen = model.output_lengths(mask.sum(-1))
            ce_w = 1.0 if step < args.ce_steps else max(0.0, 1 - (step - args.ce_steps) / max(1, args.ce_decay))
            loss = torch.zeros((), device=device)
            kind = []
            if step >= args.ce_steps:
                lp = logits.log_softmax(-1).transpose(0, 1)  # (frames, B, vocab)
                loss = loss + F.ctc_loss(lp, torch.as_tensor(batch["labels"]).to(device), flen,
                                         torch.as_tensor(batch["label_lengths"]).to(device), blank=0,
                                         reduction="mean", zero_infinity=True)
                kind.append("ctc")
            if ce_w > 0 and "frame_targets" in batch:
                ft = torch.as_tensor(batch["frame_targets"]).to(device)[:, : logits.shape[1]]
                ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ft.reshape(-1), ignore_index=-100)
                loss = loss + ce_w * ce
                kind.append(f"{ce_w:.2f}ce")
            kind = "+".join(kind)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            if torch.isfinite(gn):
                opt.step()
            step += 1
            batch_in_epoch += 1
            audio_seconds += float(batch["lengths"].sum()) / 16000
            el = time.time() - t0
            if step % 10 == 0:
                print(f"step {step} {kind} loss {loss.item():.3f} gn {gn:.2f} lr {opt.param_groups[0]['lr']:.2e} "
                      f"audio/s {audio_seconds / el:.1f} t {(elapsed_prev + el) / 60:.1f}m", flush=True)
            if step % args.save_every == 0 or step % args.eval_every == 0:
                state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "epoch": epoch,
                         "batch_in_epoch": batch_in_epoch, "elapsed": elapsed_prev + el, "best": best}
                torch.save(state, out / "last.tmp")
                os.replace(out / "last.tmp", ckpt)
            if step % args.eval_every == 0:
                res = {s: evaluate(model, corpus, r) for s, r in tests.items()}
                line = {"step": step, "minutes": round((elapsed_prev + time.time() - t0) / 60, 2),
                        **{f"cer_{s}": round(v["cer"], 4) for s, v in res.items()},
                        **{f"wer_{s}": round(v["wer"], 4) for s, v in res.items()}}
                print("EVAL", json.dumps(line), {s: v["example"] for s, v in res.items()}, flush=True)
                with open(out / "curve.jsonl", "a") as fh:
                    fh.write(json.dumps(line) + "\n")
                export_hf(model, work / "export" / "latest", extra={"step": step})
                score = res.get("test_a", {"cer": 1.0})["cer"] + res.get("test_b", {"cer": 1.0})["cer"]
                if score < best:
                    best = score
                    export_hf(model, work / "export" / "best", extra={"step": step})
                    state["best"] = best
                    torch.save(state, out / "last.tmp")
                    os.replace(out / "last.tmp", ckpt)
            if el > args.minutes * 60 or step >= args.max_steps:
                state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "epoch": epoch,
                         "batch_in_epoch": batch_in_epoch, "elapsed": elapsed_prev + el, "best": best}
                torch.save(state, out / "last.tmp")
                os.replace(out / "last.tmp", ckpt)
                print(f"stopping at step {step} after {el / 60:.1f} min", flush=True)
                return
            if step in (args.ce_steps + args.ce_decay, args.augment_from):
                break  # rebuild the dataset without frame targets / with augmentation
        else:
            epoch += 1
            batch_in_epoch = 0


if __name__ == "__main__":
    main()
