"""Whole processes: `sew transcribe --decoder beam` with the search in this process vs in worker processes.

Usage: python bench/beam_workers.py WORKDIR [REPEATS]

Audio: 10 minutes of the synth-en recipe's held-out test utterances with 0.3-1.2 s pauses between them
(recipes/synth-en/work/corpus, when it exists; otherwise bench's synthetic speech-like signal). Models: the
embedded model (real posteriors) and SEW-tiny with random weights (flat posteriors: the search's worst
case). Prints a markdown table and writes WORKDIR/beam_workers.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np

from sewcli import bench

CORPUS = Path(__file__).resolve().parents[1] / "recipes" / "synth-en" / "work" / "corpus"


def have_corpus() -> bool:
    """True when the recipe's corpus is there; else say on stderr how to make it."""
    if any(CORPUS.glob("manifest.*.jsonl")):
        return True
    print(f"needs the recipe's corpus in {CORPUS} (bash recipes/synth-en/run.sh)", file=sys.stderr)
    return False


def long_form_parser(doc: str, windows: str) -> argparse.ArgumentParser:
    """The command line shared by the scripts that run `sew transcribe` on speech_file()'s audio."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--windows", default=windows, help="window lengths in seconds, comma-separated")
    ap.add_argument("--decoders", default="greedy,auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None, help="model directory or name (default: the embedded model)")
    return ap


def sew_options(args: argparse.Namespace, window: float, decoder: str) -> list[str]:
    """The `sew transcribe` options of one run of a long_form_parser() script."""
    opts = ["--threads", str(args.threads), "--decoder", decoder]
    opts += ["--chunk-length", f"{window:g}", "--chunk-overlap", f"{window / 10:g}"]
    return opts + (["--model", args.model] if args.model else [])


def whole_utterances(seconds: float = 600.0) -> list[tuple[dict, int]]:
    """(manifest row, start sample) of each utterance speech_file() puts whole into its first `seconds`.

    The same rows in the same order, and the same pause draws, as speech_file(): what a benchmark needs to
    know where each utterance is in that file (its text, its edges).
    """
    import soundfile as sf

    rows = [
        json.loads(line)
        for m in sorted(CORPUS.glob("manifest.*.jsonl"))
        for line in m.read_text().splitlines()
        if line.strip()
    ]
    rng = np.random.default_rng(0)
    placed, total, limit = [], 0, int(seconds * 16000)
    for row in (r for r in rows if r["split"].startswith("test")):
        n = sf.info(str(CORPUS / row["path"])).frames
        pause = int(16000 * rng.uniform(0.3, 1.2))
        if total + n <= limit:
            placed.append((row, total))
        total += n + pause
        if total >= limit:
            break
    return placed


def speech_file(path: Path, seconds: float = 600.0) -> Path:
    """Held-out TTS utterances strung together (or bench's synthetic signal without the recipe's corpus)."""
    if path.exists():
        return path
    manifests = sorted(CORPUS.glob("manifest.*.jsonl"))
    if not manifests:
        return bench.write_long_audio(path, seconds)
    import soundfile as sf

    rows = [json.loads(line) for m in manifests for line in m.read_text().splitlines() if line.strip()]
    rng = np.random.default_rng(0)
    parts: list[np.ndarray] = []
    total = 0
    for row in (r for r in rows if r["split"].startswith("test")):
        audio, rate = sf.read(str(CORPUS / row["path"]), dtype="float32")
        assert rate == 16000
        pause = np.zeros(int(rate * rng.uniform(0.3, 1.2)), np.float32)
        parts += [audio, pause]
        total += len(audio) + len(pause)
        if total >= seconds * rate:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.concatenate(parts)[: int(seconds * 16000)], 16000)
    return path


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    work = Path(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    opts = bench.BenchOptions(threads=2, workdir=work)
    audio = speech_file(work / "audio" / "speech-10min.wav")
    rows = []
    for name, model in (
        ("embedded", bench.embedded_checkpoint()),
        ("sew-tiny", bench.checkpoint_for("sew-tiny", work)),
    ):
        out = work / "out-beam"
        base = bench.sew_command([audio], model, out, 2, "fp32")
        one_thread = bench.sew_command([audio], model, out, 1, "fp32")
        cmds = {
            "greedy": base,
            "beam, search in-process (--beam-workers 0)": [*base, "--decoder", "beam", "--beam-workers", "0"],
            "beam, 1 model thread + 1 worker": [*one_thread, "--decoder", "beam", "--beam-workers", "1"],
            "beam, 2 model threads + 1 worker": [*base, "--decoder", "beam", "--beam-workers", "1"],
            "beam, default (2 model threads + 2 workers)": [*base, "--decoder", "beam"],
        }
        if name == "sew-tiny":  # minutes per run: only the two that matter
            cmds = {k: v for k, v in cmds.items() if "1 worker" not in k}
        rows += bench.process_bench(f"{name} 10 min", cmds, 600.0, opts, repeats)
    data = {"load": bench.load_average(), "rows": [dataclasses.asdict(r) for r in rows]}
    (work / "beam_workers.json").write_text(json.dumps(data, indent=1))
    print(bench.process_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
