"""Long-form accuracy of the embedded model: window length x decoder on 10 minutes of held-out speech.

Usage: python bench/long_form.py WORKDIR [--windows 30,20,15,10] [--decoders greedy,auto] [--threads 2]
       [--model DIR]

Audio: the synth-en recipe's held-out test utterances strung together with 0.3-1.2 s pauses (the file
of bench/beam_workers.py; needs recipes/synth-en/work/corpus). Reference: the text of the utterances that
fit whole in the 10 minutes, in order. Each row is one whole `sew transcribe` process (`--chunk-length W
--chunk-overlap W/10`), timed, with its peak RSS; WER and CER over the whole text by the recipe's
metrics.py. Prints a markdown table.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "synth-en"))
from beam_workers import have_corpus, long_form_parser, sew_options, speech_file, whole_utterances  # noqa: E402
from metrics import cer, wer  # noqa: E402  # the recipe's corpus-level Levenshtein rates

from sewcli import bench  # noqa: E402


def reference(seconds: float = 600.0) -> str:
    """The text of the utterances speech_file() puts whole into its first `seconds` (same order, pauses)."""
    return " ".join(row["text"] for row, _ in whole_utterances(seconds))


def run(audio: Path, options: list[str], threads: int, out: Path) -> tuple[str, float, float]:
    """(transcript, wall seconds, peak RSS MB) of one `sew transcribe` (sew bench's measuring wrapper)."""
    cmd = [sys.executable, "-m", "sewcli", "transcribe", str(audio), "--quiet", *options]
    cmd += ["--output-dir", str(out), "--overwrite"]
    wall, rss, status = bench.run_process(cmd, env=bench.bench_env(threads))
    if status:
        raise SystemExit(f"{' '.join(cmd)} exited {status}")
    return (out / f"{audio.stem}.txt").read_text(encoding="utf-8"), wall, rss


def main() -> int:
    ap = long_form_parser(__doc__, windows="30,20,15,10")
    args = ap.parse_args()
    if not have_corpus():
        return 1
    audio = speech_file(args.workdir / "audio" / "speech-10min.wav")
    ref = reference()
    windows = [float(w) for w in args.windows.split(",")]
    print("| decoder | window | WER | CER | wall s | peak RSS MB |\n|---|---|---|---|---|---|")
    for decoder in args.decoders.split(","):
        for window in windows:
            text, wall, rss = run(
                audio, sew_options(args, window, decoder), args.threads, args.workdir / "out"
            )
            hyp = " ".join(text.split())
            rates = f"{100 * wer([ref], [hyp]):.1f} % | {100 * cer([ref], [hyp]):.1f} %"
            print(f"| {decoder} | {window:g} s | {rates} | {wall:.1f} | {rss:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
