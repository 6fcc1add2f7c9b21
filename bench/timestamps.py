"""Word-time accuracy of `sew transcribe -f json` against where speech really starts and ends.

Usage: python bench/timestamps.py WORKDIR [--decoders greedy,auto] [--threads 2] [--model DIR]

Audio: the 10-minute file of bench/long_form.py (the synth-en recipe's held-out test utterances strung
together with 0.3-1.2 s pauses). For every utterance the truth is where its speech starts and ends in the
file: its first and last 10 ms frame whose RMS exceeds 2 % of the utterance's peak frame (the recipe
trimmed each utterance to 0.15 s around those frames). Each recognised word belongs to the utterance whose
span holds the word's midpoint; per utterance, the error of the first word's start against the speech onset
and of the last word's end against the speech offset (positive: late). Only the utterances' edges are
known (no word-level alignment of TTS audio is kept), so this measures how well words and subtitle cues
begin and end at the edges of speech, which is what a subtitle user sees. Also counts the pauses between
utterances that fall inside one word (the words on either side written as one). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from beam_workers import CORPUS, have_corpus, speech_file, whole_utterances  # noqa: E402

from sewcli import bench  # noqa: E402

RATE = 16000


def utterance_edges(seconds: float = 600.0) -> list[tuple[float, float]]:
    """(speech onset, speech offset) in seconds of each utterance speech_file() puts whole in the file."""
    edges = []
    for row, start in whole_utterances(seconds):
        audio, _ = sf.read(str(CORPUS / row["path"]), dtype="float32")
        n = len(audio) // 160
        rms = np.sqrt((audio[: n * 160].reshape(n, 160) ** 2).mean(axis=1))  # (n,) per 10 ms
        voiced = np.nonzero(rms > 0.02 * rms.max())[0]
        edges.append(((start + voiced[0] * 160) / RATE, (start + (voiced[-1] + 1) * 160) / RATE))
    return edges


def errors(words: list[dict], edges: list[tuple[float, float]]) -> tuple[list[float], list[float], int]:
    """(start errors, end errors, utterances without a word) in seconds, positive = the word is late."""
    spans = [(on - 0.15, off + 0.15) for on, off in edges]
    by_utt: dict[int, list[dict]] = {}
    for w in words:
        mid = (w["start"] + w["end"]) / 2
        for i, (a, b) in enumerate(spans):
            if a <= mid <= b:
                by_utt.setdefault(i, []).append(w)
                break
    starts = [by_utt[i][0]["start"] - on for i, (on, _) in enumerate(edges) if i in by_utt]
    ends = [by_utt[i][-1]["end"] - off for i, (_, off) in enumerate(edges) if i in by_utt]
    return starts, ends, len(edges) - len(by_utt)


def bridged(words: list[dict], edges: list[tuple[float, float]]) -> int:
    """Pauses between consecutive utterances that fall inside one recognised word (two written as one)."""
    mids = [(off + on) / 2 for (_, off), (on, _) in zip(edges, edges[1:], strict=False)]
    return sum(any(w["start"] < m < w["end"] for w in words) for m in mids)


def row(name: str, errs: list[float]) -> str:
    e = np.array(errs) * 1000  # ms
    a = np.abs(e)
    return (
        f"| {name} | {len(e)} | {np.median(e):+.0f} | {np.median(a):.0f} | {np.percentile(a, 90):.0f} | "
        f"{100 * (a <= 100).mean():.0f} % | {100 * (a <= 200).mean():.0f} % |"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--decoders", default="greedy,auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None, help="model directory or name (default: the embedded model)")
    args = ap.parse_args()
    if not have_corpus():
        return 1
    audio = speech_file(args.workdir / "audio" / "speech-10min.wav")
    edges = utterance_edges()
    print(f"{len(edges)} utterances; errors in ms (positive: the word is late)\n")
    print(
        "| decoder: edge | utterances | median error | median abs | 90th pct abs | within 100 ms "
        "| within 200 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for decoder in args.decoders.split(","):
        out = args.workdir / f"out-ts-{decoder}"
        cmd = [sys.executable, "-m", "sewcli", "transcribe", str(audio), "--quiet", "-f", "json"]
        cmd += ["--threads", str(args.threads), "--decoder", decoder, "--output-dir", str(out), "--overwrite"]
        if args.model:
            cmd += ["--model", args.model]
        _, _, status = bench.run_process(cmd, env=bench.bench_env(args.threads))
        if status:
            raise SystemExit(f"{' '.join(cmd)} exited {status}")
        words = json.loads((out / f"{audio.stem}.json").read_text(encoding="utf-8"))["words"]
        starts, ends, missed = errors(words, edges)
        print(row(f"{decoder}: first word start", starts))
        print(row(f"{decoder}: last word end", ends))
        if missed:
            print(f"| {decoder}: utterances with no word | {missed} | | | | | |")
        print(
            f"| {decoder}: pauses inside one word | {bridged(words, edges)} of {len(edges) - 1} | | | | | |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
