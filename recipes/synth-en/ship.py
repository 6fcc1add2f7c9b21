"""Copy the better export (by eval json) into the package and write its model card (README.md).

Usage: python ship.py --work work --dest ../../sewcli/assets/sew-synth-en
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from safetensors import safe_open

FILES = ["config.json", "model.safetensors", "vocab.json", "tokenizer_config.json", "special_tokens_map.json",
         "preprocessor_config.json"]


def score(ev: dict) -> float:
    """Selection score: CER on (a) + CER on (b) (the synthetic held-out sets; never the real recordings)."""
    return ev["test_a"]["cer"] + ev["test_b"]["cer"]


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_card(template: str, ev: dict, curve: list[dict], meta: dict) -> str:
    """Fill the card template's {placeholders} with measured numbers."""
    rows = []
    for key in ("test_a", "test_b", "test_b2", "alsa"):
        if key in ev:
            e = ev[key]
            secs = e.get("hours", 0.0) * 3600
            hours = f"{secs / 60:.1f} min" if secs >= 60 else f"{secs:.0f} s"
            lm = e.get("lm", {})
            with_lm = f"{pct(lm['cer'])} | {pct(lm['wer'])}" if lm else "- | -"
            rows.append(f"| {e['name']} | {e['n']} | {hours} | {pct(e['cer'])} | {pct(e['wer'])} | {with_lm} |")
    alsa_ev = ev.get("alsa", {})
    alsa_lm = {n: h for n, _, h in alsa_ev.get("lm", {}).get("examples", [])}
    alsa = "\n".join(f"| {n} | {r} | {h} | {alsa_lm.get(n, '-')} |" for n, r, h in alsa_ev.get("examples", []))
    cur = ["| step | minutes | CER (a) | CER (b) | CER (b2) |", "|---|---|---|---|---|"]
    for c in curve:
        cur.append(f"| {c['step']} | {c['minutes']:.0f} | {pct(c.get('cer_test_a', float('nan')))} | "
                   f"{pct(c.get('cer_test_b', float('nan')))} | {pct(c.get('cer_test_b2', float('nan')))} |")
    return template.format(results="\n".join(rows), alsa=alsa, curve="\n".join(cur), noise=noise_line(ev), **meta)


def noise_line(ev: dict) -> str:
    """The card's sentence on (d), audio without speech (evaluate.py's noise set), if it was measured."""
    d = ev.get("noise")
    if d is None:
        return "(d) Audio without speech was not measured for this checkpoint."
    lm = d.get("lm", {})
    with_lm = f"; with the LM, {lm['words_per_minute']:g} words a minute" if lm else ""
    return (
        f"(d) Audio without speech ({d['n']} clips of {60 * d['minutes'] / d['n']:.0f} s: white, pink and brown "
        f"noise at -60, -40 and -20 dBFS, and digital silence), where every letter is an error: greedy "
        f"decoding writes {d['chars_per_minute']:g} letters a minute{with_lm}."
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="work")
    ap.add_argument("--dest", required=True)
    ap.add_argument("--pick", default="auto",
                    help="export to ship (work/export/NAME, e.g. best, latest, or an average.py output put "
                         "there); auto: the lower CER(a)+CER(b) of best and latest (work/eval_NAME.json)")
    ap.add_argument("--limits", default=str(Path(__file__).resolve().parent / "limits.md"),
                    help="markdown for the card's Limits section (written after looking at the results)")
    args = ap.parse_args()
    work, dest = Path(args.work), Path(args.dest)
    names = ("best", "latest") if args.pick == "auto" else (args.pick,)
    evals = {k: json.loads((work / f"eval_{k}.json").read_text()) for k in names
             if (work / f"eval_{k}.json").exists()}
    if not evals:
        raise SystemExit(f"no evaluation of {' or '.join(names)}: run evaluate.py --json work/eval_NAME.json")
    pick = min(evals, key=lambda k: score(evals[k]))
    src = work / "export" / pick
    dest.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        shutil.copyfile(src / f, dest / f)
        (dest / f).chmod(0o644)
    if (work / "language_model").is_dir():  # lm.py's output: the default decoder's language model
        shutil.rmtree(dest / "language_model", ignore_errors=True)
        shutil.copytree(work / "language_model", dest / "language_model")
    with safe_open(str(src / "model.safetensors"), "pt") as fh:
        step = fh.metadata().get("step", "?")
        n_params = sum(_prod(fh.get_slice(k).get_shape()) for k in fh.keys()
                       if not k.endswith("masked_spec_embed") and not k.endswith("weight_g"))
    curve = [json.loads(x) for x in (work / "train" / "curve.jsonl").read_text().splitlines() if x.strip()]
    train_args = json.loads((work / "train" / "args.json").read_text())
    minutes = next((c["minutes"] for c in curve if str(c["step"]) == str(step)), None)
    if minutes is None:  # a checkpoint taken between evaluations (the last one): its own elapsed time
        import torch

        state = torch.load(work / "train" / "last.pt", weights_only=True, map_location="cpu")
        minutes = state["elapsed"] / 60 if str(state["step"]) == str(step) else curve[-1]["minutes"]
    n_train = sum(1 for p in (work / "corpus").glob("manifest.*.jsonl") for line in p.read_text().splitlines()
                  if '"split": "train"' in line)
    hours = sum(json.loads(line)["samples"] for p in (work / "corpus").glob("manifest.*.jsonl")
                for line in p.read_text().splitlines() if '"split": "train"' in line) / 16000 / 3600
    meta = {"step": step, "minutes": f"{minutes:.0f}", "params": f"{n_params / 1e6:.2f}", "n_train": n_train,
            "hours": f"{hours:.1f}", "size_mb": f"{(dest / 'model.safetensors').stat().st_size / 1e6:.1f}",
            "lr": train_args["lr"], "batch_seconds": train_args["batch_seconds"],
            "ce_steps": train_args["ce_steps"], "pick": pick,
            "limits": Path(args.limits).read_text().strip() if Path(args.limits).exists() else "(not written)"}
    template = (Path(__file__).resolve().parent / "MODEL_CARD.md.in").read_text()
    (dest / "README.md").write_text(render_card(template, evals[pick], curve, meta))
    print(f"shipped {src} (step {step}) -> {dest}")


def _prod(shape: list[int]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


if __name__ == "__main__":
    main()
