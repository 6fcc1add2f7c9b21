"""Synthesize the corpus: many TTS engines/voices/rates/pitches, 16 kHz int16 wav + jsonl manifests (resumable)."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import accent
import mbrola_accent
import numpy as np
import soundfile as sf
import soxr
from prepare_text import MAX_WORDS, MIN_WORDS

SR = 16000
MAX_SECONDS = 10.0

ESPEAK_BASES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
                "en-us-nyc"]
ESPEAK_VARIANTS = ["", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt",
                   "klatt2", "klatt3", "klatt4", "klatt6", "Alex", "Andy", "Annie", "david", "ed", "john", "linda",
                   "max", "michel", "paul", "robert", "steph", "travis", "victor", "shelby", "norbert", "grandpa",
                   "grandma", "Lee", "Michael", "aunty"]

# (engine, voice, weight) used for training; HELD_OUT voices never appear in training data.
TRAIN_VOICES = [("espeak", "*", 0.40), ("flite", "kal16", 0.08), ("flite", "kal", 0.07), ("flite", "awb", 0.10),
                ("flite", "slt", 0.10), ("festival", "kal_diphone", 0.10),
                ("festival", "cmu_us_slt_arctic_hts", 0.15)]
HELD_OUT = {"b": ("flite", "rms"), "b2": ("festival", "ked_diphone")}

# Three more engines (2026-12-07, `--new-engines N`), in Debian's main and non-free: MBROLA's English diphone
# voices through espeak-ng's front end, SVOX Pico (its own front end and HMM synthesis) and RHVoice (HTS voices
# of CMU ARCTIC speakers and two more). Recorded speakers and synthesis methods none of the other engines has;
# none is a held-out voice (flite rms, festival ked).
NEW_ENGINE_VOICES = [("mbrola", "mb-us1"), ("mbrola", "mb-us2"), ("mbrola", "mb-us3"), ("mbrola", "mb-en1"),
                     ("pico", "en-US"), ("pico", "en-GB"), ("rhvoice", "alan"), ("rhvoice", "bdl"),
                     ("rhvoice", "clb"), ("rhvoice", "slt"), ("rhvoice", "evgeniy-eng"), ("rhvoice", "lyubov")]
NEW_ENGINE_PACKAGES = ("mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 libttspico-utils rhvoice rhvoice-english"
                       " (pico and mbrola are in Debian's non-free component)")


def missing_new_engines(mbrola_dir: Path = Path("/usr/share/mbrola"),
                        rhvoice_dir: Path = Path("/usr/share/RHVoice/voices")) -> list[str]:
    """The programs and voices of NEW_ENGINE_VOICES that are not installed here."""
    missing = [prog for prog in ("espeak-ng", "mbrola", "pico2wave", "RHVoice-test") if shutil.which(prog) is None]
    for engine, voice in NEW_ENGINE_VOICES:
        if engine == "mbrola" and not (mbrola_dir / voice[3:]).is_dir():
            missing.append(voice)
        elif engine == "rhvoice" and not (rhvoice_dir / voice).is_dir():
            missing.append(f"rhvoice:{voice}")
    return missing


@dataclass(frozen=True)
class Job:
    """One utterance to synthesize."""

    uid: str
    split: str
    engine: str
    voice: str
    rate: float  # relative speaking rate (1 = engine default)
    pitch: int  # espeak pitch 0-99 (ignored elsewhere)
    text: str


def _pick_train_voice(rng: random.Random) -> tuple[str, str]:
    r, acc = rng.random(), 0.0
    for engine, voice, w in TRAIN_VOICES:
        acc += w
        if r < acc:
            break
    if engine == "espeak":
        var = rng.choice(ESPEAK_VARIANTS)
        voice = rng.choice(ESPEAK_BASES) + (f"+{var}" if var else "")
    return engine, voice


def _spoken_like_tests(sentences: list[str], rng: random.Random, uid: str, split: str) -> list[Job]:
    """Each sentence spoken by a drawn training voice (split "<split>_a", uid "<uid>a00000") and by each held-out
    voice (split "<split>_b", "<split>_b2"): the recipe of the test sets, drawn from `rng` in this order."""
    jobs = []
    for i, t in enumerate(sentences):
        e, v = _pick_train_voice(rng)
        jobs.append(Job(f"{uid}a{i:05d}", f"{split}_a", e, v, rng.uniform(0.85, 1.15), rng.randint(35, 65), t))
        for held_out, (e2, v2) in HELD_OUT.items():
            jobs.append(Job(f"{uid}{held_out}{i:05d}", f"{split}_{held_out}", e2, v2, rng.uniform(0.9, 1.1), 50, t))
    return jobs


def _spoken_again(items: Iterable[tuple[int, str]], uid: str, voices: list[tuple[str, str]],
                  rng: random.Random) -> list[Job]:
    """Training sentences (index, text) spoken once more, each in an (engine, voice) drawn from `voices` at a
    drawn rate (0.85-1.15) and pitch (25-75): "<uid><index>" ids, from a generator of their own so that every
    other job stays as it was."""
    jobs = []
    for i, t in items:
        e, v = rng.choice(voices)
        jobs.append(Job(f"{uid}{i:06d}", "train", e, v, rng.uniform(0.85, 1.15), rng.randint(25, 75), t))
    return jobs


def make_jobs(text_dir: Path, seed: int, n_test: int, max_train: int | None, copies: int = 1,
              n_dev: int = 0, held_out_dev: bool = False, fresh_test: bool = False,
              extra_text: Path | None = None, accented: int = 0, accented_rest: bool = False,
              new_engines: int = 0, mbrola_accented: int = 0) -> list[Job]:
    """Deterministic job list: every train sentence `copies` times (different voices), plus the test sets.

    With n_dev, also a development set "dev_a": held-out sentences that no test set uses, spoken by training
    voices, for tuning decoding settings (the LM weights) without looking at the test sets. With held_out_dev
    also "dev_b" and "dev_b2": dev_a's sentences spoken by the held-out voices (never used for training).
    With fresh_test, "fresh_a", "fresh_b" and "fresh_b2": the held-out sentences that neither the test sets nor
    dev_a use, spoken by training voices and by each held-out voice: test sets made on 2026-12-06, after the
    first ones had been looked at for many decisions (the model card says how they are used).
    With extra_text (lm_text.py's output, 2026-12-06), its sentences of 3-22 words become training
    utterances too ("tx" ids, split "train"), each spoken once by a drawn training voice: new text for the
    acoustic model, which has heard each fortune sentence many times. lm_text.py drops any sentence sharing a
    6-word sequence with a held-out sentence; this checks again that none equals one.
    With accented=N (2026-12-07), every N-th training sentence is spoken once more by one of festival's
    non-English voices (engine "festx", `accent.py`: English phones mapped to the voice's language; "xa" ids,
    as test_a's are "ta" + 5 digits): recorded human speakers no English engine has, as accented English.
    With accented_rest too (2026-12-07), the training sentences that accented=N skipped are spoken once by a
    drawn non-English voice as well ("xb" + the sentence's index in train.txt; own generator), so that every
    training sentence has one accented reading and the "xa" jobs stay as they were.
    With new_engines=N (2026-12-07), every N-th training sentence is spoken once more by a voice of
    NEW_ENGINE_VOICES (MBROLA, Pico, RHVoice; "xe" ids, own generator, every other job unchanged).
    With mbrola_accented=N (2026-12-07), every N-th training sentence is spoken once more by one of MBROLA's
    German, French, Spanish, Italian or Dutch voices (engine "mbx", `mbrola_accent.py`; "xm" ids, own generator).
    """
    rng = random.Random(seed)
    train = [t for t in (text_dir / "train.txt").read_text().splitlines() if t]
    held = [t for t in (text_dir / "heldout.txt").read_text().splitlines() if t]
    if max_train is not None:
        train = train[:max_train]
    jobs: list[Job] = []
    for c in range(copies):
        for i, t in enumerate(train):
            e, v = _pick_train_voice(rng)
            jobs.append(Job(f"tr{c}{i:06d}", "train", e, v, rng.uniform(0.8, 1.25), rng.randint(25, 75), t))
    rng_t = random.Random(seed + 1)
    tests = rng_t.sample(held, min(n_test, len(held)))
    jobs += _spoken_like_tests(tests, rng_t, "t", "test")
    rng_d = random.Random(seed + 2)
    unused = sorted(set(held) - set(tests))
    for i, t in enumerate(rng_d.sample(unused, min(n_dev, len(unused)))):
        e, v = _pick_train_voice(rng_d)
        jobs.append(Job(f"da{i:05d}", "dev_a", e, v, rng_d.uniform(0.85, 1.15), rng_d.randint(35, 65), t))
    if held_out_dev:
        # dev_a's sentences once more, spoken by the held-out voices: for decisions about those voices (the
        # test sets b and b2 stay untouched). Drawn from their own generator, so every other job is unchanged.
        rng_h = random.Random(seed + 3)
        for job in [j for j in jobs if j.split == "dev_a"]:
            for split, (e2, v2) in HELD_OUT.items():
                jobs.append(Job(f"d{split}{job.uid[2:]}", f"dev_{split}", e2, v2, rng_h.uniform(0.9, 1.1), 50,
                                job.text))
    if fresh_test:
        # Own generator and sentences: every other job is unchanged. Same recipe as test_a/b/b2.
        used = set(tests) | {j.text for j in jobs if j.split == "dev_a"}
        jobs += _spoken_like_tests(sorted(set(held) - used), random.Random(seed + 4), "f", "fresh")
    if extra_text is not None:
        # Own generator: every other job is unchanged.
        rng_x = random.Random(seed + 5)
        held_set = set(held)
        extra = [t for t in extra_text.read_text().splitlines()
                 if t and MIN_WORDS <= len(t.split()) <= MAX_WORDS and t not in held_set]
        for i, t in enumerate(extra):
            e, v = _pick_train_voice(rng_x)
            jobs.append(Job(f"tx{i:06d}", "train", e, v, rng_x.uniform(0.8, 1.25), rng_x.randint(25, 75), t))
    if accented:
        festx = [("festx", v) for v in sorted(accent.VOICES)]
        jobs += _spoken_again(enumerate(train[::accented]), "xa", festx, random.Random(seed + 6))
        if accented_rest:  # own generator: the "xa" jobs and every other job are unchanged
            rest = ((i, t) for i, t in enumerate(train) if i % accented)
            jobs += _spoken_again(rest, "xb", festx, random.Random(seed + 7))
    if new_engines:
        jobs += _spoken_again(enumerate(train[::new_engines]), "xe", NEW_ENGINE_VOICES, random.Random(seed + 8))
    if mbrola_accented:
        mbx = [("mbx", v) for v in sorted(mbrola_accent.VOICES)]
        jobs += _spoken_again(enumerate(train[::mbrola_accented]), "xm", mbx, random.Random(seed + 9))
    return jobs


def _to16k(audio: np.ndarray, sr: int) -> np.ndarray:
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    if sr != SR:
        audio = soxr.resample(audio, sr, SR, quality="HQ")
    return audio.astype(np.float32)


def _read16k(path: Path) -> np.ndarray:
    """An engine's wav, as float32 at 16 kHz."""
    a, sr = sf.read(path, dtype="float32")
    return _to16k(a, sr)


def synth_espeak(job: Job, tmp: Path) -> np.ndarray:
    out = tmp / "e.wav"
    wpm = int(round(165 * job.rate))
    subprocess.run(["espeak-ng", "-v", job.voice, "-s", str(wpm), "-p", str(job.pitch), "-w", str(out),
                    job.text.lower()], check=True, capture_output=True)
    return _read16k(out)


def _pitch_percent(job: Job) -> int:
    """The job's pitch (25-75) as 80-120 % of the voice's own (Pico's and RHVoice's pitch settings)."""
    return round(80 + (job.pitch - 25) * 0.8)


def synth_pico(job: Job, tmp: Path) -> np.ndarray:
    """SVOX Pico (voice "en-US"/"en-GB"): rate and pitch through its markup (100 = its default); pitch 25-75 is
    0.8-1.2x its own."""
    out = tmp / "p.wav"  # pico2wave wants the .wav suffix
    speed, pitch = round(100 * job.rate), _pitch_percent(job)
    text = f'<speed level="{speed}"><pitch level="{pitch}">{job.text.lower()}</pitch></speed>'
    subprocess.run(["pico2wave", "-l", job.voice, "-w", str(out), text], check=True, capture_output=True)
    return _read16k(out)


def synth_rhvoice(job: Job, tmp: Path) -> np.ndarray:
    """RHVoice (text on stdin; rate and pitch in percent, 100 = the voice's default); pitch 25-75 is 0.8-1.2x."""
    out = tmp / "r.wav"
    rate, pitch = round(100 * job.rate), _pitch_percent(job)
    subprocess.run(["RHVoice-test", "-p", job.voice, "-r", str(rate), "-t", str(pitch), "-o", str(out)],
                   input=job.text.lower().encode(), check=True, capture_output=True)
    return _read16k(out)


# One process per utterance. MBROLA's voices ("mb-us1" ...) are espeak-ng voices: espeak's rate and pitch 25-75.
SYNTH_ONE = {"espeak": synth_espeak, "mbrola": synth_espeak, "pico": synth_pico, "rhvoice": synth_rhvoice}


def cg_f0(job: Job) -> int | None:
    """With --cg-pitch, the mean f0 (Hz) a training utterance of flite's clustergen voices (awb, slt) is made at.

    Their own means are about 130 (awb) and 170 Hz (slt); drawn from the job's pitch (25-75), 85-215 Hz gives
    low male to high female voices. Only training utterances: the dev and test sets stay as they were made.
    """
    if job.engine != "flite" or job.voice not in ("awb", "slt") or job.split != "train":
        return None
    return round(85 + (job.pitch - 25) * 2.6)


def synth_flite(job: Job, tmp: Path, cg_pitch: bool = False) -> np.ndarray:
    out = tmp / "f.wav"
    cmd = ["flite", "-voice", job.voice, "--setf", f"duration_stretch={1.0 / job.rate:.3f}"]
    if job.voice.startswith("kal"):
        cmd += ["--setf", f"int_f0_target_mean={70 + job.pitch * 1.4:.0f}"]
    elif cg_pitch and (f0 := cg_f0(job)) is not None:
        cmd += ["--setf", f"int_f0_target_mean={f0}"]
    subprocess.run(cmd + ["-t", job.text.lower(), "-o", str(out)], check=True, capture_output=True)
    return _read16k(out)


def synth_festival_batch(jobs: list[Job], tmp: Path) -> list[np.ndarray]:
    """Synthesize many utterances of one festival voice in a single festival process."""
    lines = [f"(voice_{jobs[0].voice})"]
    for k, job in enumerate(jobs):
        txt = job.text.lower().replace('"', "")
        lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / job.rate:.3f})")
        lines.append(f'(set! u (utt.synth (Utterance Text "{txt}")))')
        lines.append(f'(utt.save.wave u "{tmp}/fe{k}.wav" \'riff)')
    script = tmp / "batch.scm"
    script.write_text("\n".join(lines) + "\n")
    subprocess.run(["festival", "-b", str(script)], check=True, capture_output=True, timeout=3600)
    return [_read16k(tmp / f"fe{k}.wav") for k in range(len(jobs))]


def synth_festx_batch(jobs: list[Job], tmp: Path) -> list[np.ndarray]:
    """Accented English in one non-English festival voice (`accent.py`); pitch 25-75: 0.8-1.2x its mean f0."""
    f0s = [accent.VOICES[j.voice][2] * (0.8 + (j.pitch - 25) / 125) for j in jobs]
    paths = accent.synth_batch([j.text for j in jobs], jobs[0].voice, [j.rate for j in jobs], f0s, tmp)
    return [_read16k(p) for p in paths]


def synth_mbx_batch(jobs: list[Job], tmp: Path) -> list[np.ndarray]:
    """Accented English in one non-English MBROLA voice (`mbrola_accent.py`); pitch as synth_festx_batch."""
    f0s = [mbrola_accent.VOICES[j.voice] * (0.8 + (j.pitch - 25) / 125) for j in jobs]
    paths = mbrola_accent.synth_batch([j.text for j in jobs], jobs[0].voice, [j.rate for j in jobs], f0s, tmp)
    return [_read16k(p) for p in paths]


def trim(audio: np.ndarray, pad: float = 0.15) -> np.ndarray:
    """Trim leading/trailing silence, keeping `pad` seconds of margin."""
    frame = 160
    n = len(audio) // frame
    if n == 0:
        return audio
    e = np.sqrt((audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-12)  # (n,) rms per 10 ms
    on = np.nonzero(e > max(e.max() * 0.02, 1e-4))[0]
    if len(on) == 0:
        return audio
    s = max(0, on[0] * frame - int(pad * SR))
    t = min(len(audio), (on[-1] + 1) * frame + int(pad * SR))
    return audio[s:t]


def run_chunk(jobs: list[Job], wav_dir: Path, cg_pitch: bool = False) -> list[dict]:
    """Synthesize one chunk of same-engine jobs; returns manifest rows."""
    rows = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        if jobs[0].engine == "festival":
            audios = synth_festival_batch(jobs, tmp)
        elif jobs[0].engine == "festx":
            audios = synth_festx_batch(jobs, tmp)
        elif jobs[0].engine == "mbx":
            audios = synth_mbx_batch(jobs, tmp)
        elif jobs[0].engine in SYNTH_ONE:
            audios = [SYNTH_ONE[j.engine](j, tmp) for j in jobs]
        else:
            audios = [synth_flite(j, tmp, cg_pitch) for j in jobs]
    for job, a in zip(jobs, audios):
        a = trim(a)
        if len(a) > MAX_SECONDS * SR or len(a) < 0.3 * SR:
            continue
        peak = float(np.abs(a).max()) or 1.0
        a = a / peak * 0.9
        path = wav_dir / f"{job.uid}.wav"
        sf.write(path, a, SR, subtype="PCM_16")
        rows.append({"id": job.uid, "path": str(path.relative_to(wav_dir.parent)), "text": job.text,
                     "engine": job.engine, "voice": job.voice, "rate": round(job.rate, 3), "pitch": job.pitch,
                     "samples": len(a), "split": job.split}
                    | ({"f0": f0} if cg_pitch and (f0 := cg_f0(job)) is not None else {}))
    return rows


def chunk_jobs(jobs: list[Job], size: int, seed: int) -> list[list[Job]]:
    """Group jobs into same-engine(-voice for festival) chunks, then shuffle chunks so a partial corpus is mixed.

    Order: the test sets (small), copy 0 of the training text, copy 1, ..., then the dev sets, then the fresh
    test sets. Those were added after the first corpus was made; they are chunked apart and appended, so the
    other chunks keep the order (and the split between workers) they had.
    """
    def group(js: list[Job]) -> list[list[Job]]:
        groups: dict[tuple[str, str, bool, str], list[Job]] = {}
        for j in js:
            voice = j.voice if j.engine in ("festival", "festx", "mbx") else ""  # one voice per batch
            key = (j.engine, voice, j.split.startswith("test"), j.uid[:3])
            groups.setdefault(key, []).append(j)
        return [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]

    later = ("dev", "fresh")
    chunks = group([j for j in jobs if not j.split.startswith(later)])
    random.Random(seed).shuffle(chunks)
    chunks.sort(key=lambda c: -1 if c[0].split.startswith("test") else int(c[0].uid[2]))
    return chunks + group([j for j in jobs if j.split.startswith("dev")]) + group(
        [j for j in jobs if j.split.startswith("fresh")]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="work")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker", type=int, default=None, help="run only this worker index (internal)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--n-test", type=int, default=250)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--chunk", type=int, default=40)
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--n-dev", type=int, default=250, help="dev_a utterances (held-out text, training voices)")
    ap.add_argument("--held-out-dev", action="store_true",
                    help="also dev_b/dev_b2: dev_a's sentences spoken by the held-out voices")
    ap.add_argument("--fresh-test", action="store_true",
                    help="also fresh_a/fresh_b/fresh_b2: the held-out sentences no other set uses (2026-12-06)")
    ap.add_argument("--only", action="append", default=None, help="make only this split (repeatable)")
    ap.add_argument("--cg-pitch", action="store_true",
                    help="training utterances of flite awb/slt at a drawn mean f0 of 85-215 Hz (14th sitting on)")
    ap.add_argument("--accented", type=int, default=0, metavar="N",
                    help="also every N-th training sentence in a non-English festival voice (accent.py)")
    ap.add_argument("--accented-rest", action="store_true",
                    help="with --accented N: also the training sentences it skips, once each (\"xb\" ids)")
    ap.add_argument("--new-engines", type=int, default=0, metavar="N",
                    help="also every N-th training sentence in an MBROLA, Pico or RHVoice voice (\"xe\" ids)")
    ap.add_argument("--mbrola-accented", type=int, default=0, metavar="N",
                    help="also every N-th training sentence in a non-English MBROLA voice (\"xm\" ids)")
    ap.add_argument("--extra-text", default=None,
                    help="also speak these sentences (lm_text.py's output) once each as training utterances")
    args = ap.parse_args()
    work = Path(args.work)
    corpus = work / "corpus"
    wav_dir = corpus / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    if args.accented_rest and not args.accented:
        raise SystemExit("--accented-rest needs --accented N (it speaks the sentences that one skips)")
    if args.accented and (missing := accent.missing_voices()):
        raise SystemExit(f"--accented: festival voices not installed: {' '.join(missing)} "
                         f"(apt-get install {accent.PACKAGES})")
    if args.new_engines and (missing := missing_new_engines()):
        raise SystemExit(f"--new-engines: not installed: {' '.join(missing)} (apt-get install {NEW_ENGINE_PACKAGES})")
    if args.mbrola_accented and (missing := mbrola_accent.missing_voices()):
        raise SystemExit(f"--mbrola-accented: MBROLA voices not installed: {' '.join(missing)} "
                         f"(apt-get install {mbrola_accent.PACKAGES})")
    if args.worker is None:
        procs = [subprocess.Popen([sys.executable, __file__, "--work", args.work, "--workers", str(args.workers),
                                   "--worker", str(w), "--seed", str(args.seed), "--n-test", str(args.n_test),
                                   "--chunk", str(args.chunk), "--copies", str(args.copies),
                                   "--n-dev", str(args.n_dev)]
                                  + (["--max-train", str(args.max_train)] if args.max_train else [])
                                  + [a for split in args.only or [] for a in ("--only", split)]
                                  + (["--cg-pitch"] if args.cg_pitch else [])
                                  + (["--held-out-dev"] if args.held_out_dev else [])
                                  + (["--fresh-test"] if args.fresh_test else [])
                                  + (["--extra-text", args.extra_text] if args.extra_text else [])
                                  + (["--accented", str(args.accented)] if args.accented else [])
                                  + (["--accented-rest"] if args.accented_rest else [])
                                  + (["--new-engines", str(args.new_engines)] if args.new_engines else [])
                                  + (["--mbrola-accented", str(args.mbrola_accented)] if args.mbrola_accented
                                     else []))
                 for w in range(args.workers)]
        codes = [p.wait() for p in procs]
        if any(codes):
            raise SystemExit(f"generation worker failed: {codes}")
        return
    jobs = make_jobs(work / "text", args.seed, args.n_test, args.max_train, args.copies, args.n_dev,
                     args.held_out_dev, args.fresh_test, Path(args.extra_text) if args.extra_text else None,
                     args.accented, args.accented_rest, args.new_engines, args.mbrola_accented)
    if args.only:
        jobs = [j for j in jobs if j.split in args.only]
    chunks = chunk_jobs(jobs, args.chunk, args.seed)[args.worker :: args.workers]
    manifest = corpus / f"manifest.{args.worker}.jsonl"
    done_ids: set[str] = set()  # every worker's: a run with other --only/--workers must not redo a job
    for path in corpus.glob("manifest.*.jsonl"):
        done_ids |= {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}
    for path in corpus.glob("skipped.*.txt"):
        done_ids |= {line.strip() for line in path.read_text().splitlines()}
    for c in chunks:
        todo = [j for j in c if j.uid not in done_ids]
        if not todo:
            continue
        try:
            rows = run_chunk(todo, wav_dir, args.cg_pitch)
        except (subprocess.SubprocessError, OSError, RuntimeError) as exc:  # one bad chunk must not stop the run
            print(f"chunk {todo[0].uid} failed: {exc}", flush=True)
            rows = []
        kept = {r["id"] for r in rows}
        with open(corpus / f"skipped.{args.worker}.txt", "a") as fh:
            for j in todo:
                if j.uid not in kept:
                    fh.write(j.uid + "\n")
        with open(manifest, "a") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


if __name__ == "__main__":
    main()
