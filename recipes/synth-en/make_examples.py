"""Make the small example files in examples/ (several formats and sample rates) with reference transcripts.

Texts are written here (not from the training text); voices are training voices except `unseen_voice`, which uses
the held-out flite voice "rms".
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from generate import Job, synth_espeak, synth_festival_batch, synth_flite, trim

# name, engine, voice, text, (format, subtype, sample rate)
EXAMPLES = [
    # The quick-start file: text and voice picked, among 37 (text, voice) pairs tried, as one the shipped model
    # transcribes exactly (see the model card); the other examples were not selected on the model's output.
    ("hello", "espeak", "en-gb", "I THINK THIS WILL BE A GOOD DAY", ("WAV", "PCM_16", 16000)),
    ("meeting", "festival", "cmu_us_slt_arctic_hts", "THE MEETING STARTS AT NINE THIRTY ON MONDAY MORNING",
     ("FLAC", "PCM_16", 22050)),
    ("weather", "espeak", "en-us", "THE WEATHER TODAY IS WARM WITH A LIGHT WIND FROM THE WEST",
     ("OGG", "VORBIS", 48000)),
    ("message", "flite", "awb", "PLEASE LEAVE A MESSAGE AFTER THE TONE", ("MP3", "MPEG_LAYER_III", 8000)),
    ("unseen_voice", "flite", "rms", "OPEN THE DOOR AND TURN ON THE LIGHTS", ("FLAC", "PCM_16", 44100)),
]
SUFFIX = {"WAV": "wav", "FLAC": "flac", "OGG": "ogg", "MP3": "mp3"}


def synth(engine: str, voice: str, text: str) -> np.ndarray:
    """16 kHz float audio of `text`."""
    job = Job("ex", "example", engine, voice, 1.0, 50, text)
    with tempfile.TemporaryDirectory() as td:
        if engine == "festival":
            return synth_festival_batch([job], Path(td))[0]
        return (synth_espeak if engine == "espeak" else synth_flite)(job, Path(td))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "examples"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, engine, voice, text, (fmt, subtype, sr) in EXAMPLES:
        a = trim(synth(engine, voice, text), pad=0.25)
        a = (a / (np.abs(a).max() + 1e-9) * 0.8).astype(np.float32)
        if sr != 16000:
            a = soxr.resample(a, 16000, sr).astype(np.float32)
        if fmt == "MP3":  # telephone band before the 8 kHz MP3
            spec = np.fft.rfft(a)
            f = np.fft.rfftfreq(len(a), 1.0 / sr)
            spec[(f < 300) | (f > 3400)] = 0
            a = np.fft.irfft(spec, len(a)).astype(np.float32)
        path = out / f"{name}.{SUFFIX[fmt]}"
        sf.write(path, a, sr, format=fmt, subtype=subtype)
        (out / f"{name}.txt").write_text(text + "\n")
        print(path, path.stat().st_size, "bytes", f"{len(a) / sr:.2f} s")


if __name__ == "__main__":
    main()
