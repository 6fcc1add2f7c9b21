"""How late `sew transcribe - --live` prints each segment, on audio streamed in real time.

Usage: python bench/live_latency.py WORKDIR [--seconds 60] [--windows 10,5] [--decoders greedy,auto]
       [--threads 2] [--model DIR]

Audio: the first --seconds of the 10-minute file of bench/long_form.py (held-out test utterances of the
synth-en recipe strung together with 0.3-1.2 s pauses). `ffmpeg -re` sends it to `sew transcribe - --live -f
tsv` at the speed of real time, as a microphone would; each printed line (a segment: start and end in ms) is
stamped when it arrives. Latency of a segment: its arrival time minus the moment its last sample was sent
(stream start + segment end). Prints a markdown table: median, 90th percentile and maximum latency per
window length and decoder, and how many segments came out.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from beam_workers import have_corpus, long_form_parser, sew_options, speech_file  # noqa: E402

from sewcli import bench  # noqa: E402


def latencies(audio: Path, seconds: float, options: list[str], threads: int) -> list[float]:
    """Seconds from the end of each segment's audio leaving ffmpeg to its line on sew's stdout."""
    feed = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-re", "-t", f"{seconds:g}", "-i", str(audio), "-f", "wav", "-"],
        stdout=subprocess.PIPE,
    )
    cmd = [sys.executable, "-m", "sewcli", "transcribe", "-", "--live", "-f", "tsv", "-q", *options]
    sew = subprocess.Popen(
        cmd, stdin=feed.stdout, stdout=subprocess.PIPE, text=True, env=bench.bench_env(threads)
    )
    assert feed.stdout is not None and sew.stdout is not None
    feed.stdout.close()  # sew holds the pipe now
    start = time.monotonic()  # ffmpeg -re sends the first sample now (its start-up is ~50 ms)
    out = []
    for line in sew.stdout:
        arrived = time.monotonic() - start
        fields = line.rstrip("\n").split("\t")
        if fields[0] == "start":
            continue
        out.append(arrived - int(fields[1]) / 1000)
    if sew.wait() or feed.wait():
        raise SystemExit(f"{' '.join(cmd)} exited {sew.returncode} (ffmpeg {feed.returncode})")
    return out


def main() -> int:
    ap = long_form_parser(__doc__, windows="10,5")
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    if not have_corpus():
        return 1
    audio = speech_file(args.workdir / "audio" / "speech-10min.wav")
    print(f"{args.seconds:g} s streamed in real time; seconds from a segment's last sample to its line\n")
    print("| window | decoder | segments | median | 90th pct | max |")
    print("|---|---|---:|---:|---:|---:|")
    for window in (float(w) for w in args.windows.split(",")):
        for decoder in args.decoders.split(","):
            lat = np.array(latencies(audio, args.seconds, sew_options(args, window, decoder), args.threads))
            print(
                f"| {window:g} s | {decoder} | {len(lat)} | {np.median(lat):.1f} | "
                f"{np.percentile(lat, 90):.1f} | {lat.max():.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
