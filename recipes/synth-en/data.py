"""Corpus loading, cheap on-the-fly augmentation, length-bucketed batches and frame targets for the warm start."""

from __future__ import annotations

import glob
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 16000
HOP = 320  # samples per logit frame (product of the conv strides)

# HF English CTC vocabulary (sew_spec.md 5.3): id 0 = <pad> = CTC blank, 4 = "|" word delimiter.
VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "T": 6, "A": 7, "O": 8, "N": 9, "I": 10,
         "H": 11, "S": 12, "R": 13, "D": 14, "L": 15, "U": 16, "M": 17, "W": 18, "C": 19, "F": 20, "G": 21,
         "Y": 22, "P": 23, "B": 24, "V": 25, "K": 26, "'": 27, "X": 28, "J": 29, "Q": 30, "Z": 31}
ID2CHAR = {i: c for c, i in VOCAB.items()}


def encode(text: str) -> list[int]:
    """Upper-case text -> token ids (space -> "|")."""
    return [VOCAB.get(c, 3) for c in text.replace(" ", "|")]


def greedy_decode(ids: np.ndarray) -> str:
    """CTC greedy collapse of frame argmax ids (T,) -> text, as Wav2Vec2CTCTokenizer.decode does."""
    out, prev = [], -1
    for i in ids.tolist():
        if i != prev and i != 0:
            out.append(ID2CHAR[i])
        prev = i
    return "".join(out).replace("|", " ").strip()


def load_manifest(corpus: Path, split: str) -> list[dict]:
    """All manifest rows of one split, sorted by id for determinism."""
    rows = []
    for path in sorted(glob.glob(str(corpus / "manifest.*.jsonl"))):
        with open(path) as fh:
            for line in fh:
                if line.strip():
                    r = json.loads(line)
                    if r["split"] == split:
                        rows.append(r)
    rows.sort(key=lambda r: r["id"])
    return rows


def read_audio(corpus: Path, row: dict) -> np.ndarray:
    a, sr = sf.read(corpus / row["path"], dtype="float32")
    assert sr == SR, row["path"]
    return a


def normalize(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance (Wav2Vec2FeatureExtractor do_normalize, eps 1e-7)."""
    return ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)


@dataclass(frozen=True)
class AugmentOptions:
    """Probabilities/ranges of the on-the-fly augmentations."""

    p_speed: float = 0.5
    speed: tuple[float, float] = (0.9, 1.1)
    p_noise: float = 0.35
    snr_db: tuple[float, float] = (8.0, 35.0)
    p_reverb: float = 0.2
    rt60: tuple[float, float] = (0.1, 0.5)
    p_phone: float = 0.1
    p_lowpass: float = 0.1
    p_gain: float = 0.5
    p_warp: float = 0.0  # formant (vocal-tract length) warp; 0 = off, as in the first five sittings
    warp: tuple[float, float] = (0.85, 1.18)
    p_pad: float = 0.0  # non-speech margins (noise only) before and/or after the speech; 0 = off, as before
    pad_seconds: tuple[float, float] = (0.2, 1.5)
    pad_level_db: tuple[float, float] = (-60.0, -20.0)  # margin noise RMS relative to the speech RMS
    p_empty: float = 0.0  # an utterance replaced by noise alone, with the empty text; 0 = off, as before
    p_join: float = 0.0  # a batch whose utterances are joined in pairs across a pause; 0 = off, as before
    join_gap_seconds: tuple[float, float] = (0.15, 1.5)
    p_eq: float = 0.0  # a random equaliser (spectral tilt + peaking bands); 0 = off, as in sittings 1-17
    eq_tilt_db: tuple[float, float] = (-4.0, 4.0)  # dB per octave, around 1 kHz
    eq_gain_db: tuple[float, float] = (-10.0, 10.0)  # per peaking band
    eq_bands: int = 3  # at most this many peaking bands (0-eq_bands drawn)


def colored_noise(n: int, rng: np.random.Generator, kind: int | None = None) -> np.ndarray:
    """White (kind 0), pink (1) or brown (2; random when None) noise (n,)."""
    kind = rng.integers(3) if kind is None else kind
    w = rng.standard_normal(n).astype(np.float32)
    if kind == 0:
        return w
    spec = np.fft.rfft(w)
    f = np.arange(len(spec), dtype=np.float32)
    f[0] = 1.0
    spec = spec / (np.sqrt(f) if kind == 1 else f)
    return np.fft.irfft(spec, n).astype(np.float32)


def _fft_conv(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = len(x) + len(h) - 1
    nfft = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(h, nfft), nfft)[: len(x)]
    return y.astype(np.float32)


def _bandlimit(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / SR)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def pad_with_noise(x: np.ndarray, rng: np.random.Generator, opt: AugmentOptions) -> np.ndarray:
    """Sometimes add stretches of noise without speech before and/or after the utterance (same labels).

    The recipe trims every utterance to 0.15 s around its speech, so without this the model never sees
    seconds of room noise between sentences, and it spells letters into them (white noise at -40 dBFS came
    out as "IEEEEEEEEEENEEEA" with the step-24,250 model).
    """
    if not opt.p_pad or rng.random() >= opt.p_pad:
        return x
    side = rng.integers(3)  # 0 before, 1 after, 2 both
    rms = float(np.sqrt((x**2).mean())) + 1e-8

    def margin() -> np.ndarray:
        n = int(rng.uniform(*opt.pad_seconds) * SR)
        level = rms * 10 ** (rng.uniform(*opt.pad_level_db) / 20)
        noise = colored_noise(n, rng)
        return (noise / (np.sqrt((noise**2).mean()) + 1e-8) * level).astype(np.float32)

    before = margin() if side != 1 else x[:0]
    after = margin() if side != 0 else x[:0]
    return np.concatenate([before, x, after]).astype(np.float32)


def join_pair(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, opt: AugmentOptions) -> np.ndarray:
    """Two utterances as one, with a pause between them: noise without speech, or (1 in 5) digital silence.

    Their texts are joined by one space. Without this the model only ever sees speech-to-speech word breaks
    inside a sentence and noise-only margins whose labels have no word delimiter, and the step-31,943 model
    learned to write nothing into a pause: greedy decoding joined the words on either side of every one.
    """
    n = int(rng.uniform(*opt.join_gap_seconds) * SR)
    if rng.random() < 0.2:
        gap = np.zeros(n, dtype=np.float32)
    else:
        rms = float(np.sqrt((np.concatenate([a, b]) ** 2).mean())) + 1e-8
        level = rms * 10 ** (rng.uniform(*opt.pad_level_db) / 20)
        noise = colored_noise(n, rng)
        gap = noise / (np.sqrt((noise**2).mean()) + 1e-8) * level
    return np.concatenate([a, gap, b]).astype(np.float32)


def speed(x: np.ndarray, rng: np.random.Generator, opt: AugmentOptions) -> np.ndarray:
    """Random speed perturbation (tempo and pitch together) by resampling."""
    if rng.random() < opt.p_speed:
        factor = rng.uniform(*opt.speed)  # >1 = faster (shorter)
        x = soxr.resample(x, SR * factor, SR, quality="LQ").astype(np.float32)
    return x


def _warp_map(n_bins: int, alpha: float) -> np.ndarray:
    """VTLP frequency map (Jaitly & Hinton 2013) as fractional source bins: new bin k reads old bin src[k].

    Forward map f -> alpha * f up to a knee, then linear to Nyquist (so the band stays full).
    """
    nyq = n_bins - 1
    knee = 0.8 * nyq * min(alpha, 1.0) / alpha
    f = np.arange(n_bins, dtype=np.float64)
    fwd = np.where(f <= knee, alpha * f, nyq - (nyq - alpha * knee) / (nyq - knee) * (nyq - f))
    return np.interp(f, fwd, f)


def warp_formants(x: np.ndarray, alpha: float, n_fft: int = 512, hop: int = 128, n_cep: int = 30
                  ) -> np.ndarray:
    """Move the spectral envelope (formants) by `alpha`, keep the pitch and the timing: a cheap voice change.

    STFT; each frame's log-magnitude envelope is the low quefrency part of its cepstrum (``n_cep`` < the
    shortest pitch period, 40 samples at 400 Hz); the frame is multiplied by warped envelope / envelope, so
    the harmonics stay where they are and only their weights follow the moved formants; overlap-add. alpha 1
    gives x back (to float rounding). Output length = input length.
    """
    if len(x) < n_fft:
        return x
    win = np.hanning(n_fft + 1)[:-1]
    pad = n_fft // 2
    xp = np.pad(x.astype(np.float64), (pad, pad + n_fft))
    n = 1 + (len(xp) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(xp, n_fft)[::hop][:n] * win  # (n, n_fft)
    spec = np.fft.rfft(frames, axis=1)  # (n, n_fft // 2 + 1)
    cep = np.fft.irfft(np.log(np.abs(spec) + 1e-8), n=n_fft, axis=1)  # (n, n_fft) real cepstrum
    cep[:, n_cep : n_fft - n_cep + 1] = 0.0
    env = np.fft.rfft(cep, axis=1).real  # (n, bins) smoothed log envelope
    src = _warp_map(env.shape[1], alpha)
    i0 = np.minimum(src.astype(np.int64), env.shape[1] - 2)
    frac = src - i0
    warped = env[:, i0] * (1 - frac) + env[:, i0 + 1] * frac  # (n, bins)
    spec = spec * np.exp(np.clip(warped - env, -4.0, 4.0))
    out = np.fft.irfft(spec, n=n_fft, axis=1) * win  # (n, n_fft)
    y = np.zeros(len(xp))
    norm = np.zeros(len(xp))
    for i in range(n):
        y[i * hop : i * hop + n_fft] += out[i]
        norm[i * hop : i * hop + n_fft] += win**2
    return (y / np.maximum(norm, 1e-3))[pad : pad + len(x)].astype(np.float32)


FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # a Gaussian's full width at half maximum / its sigma


def eq_curve(freqs: np.ndarray, tilt_db: float, bands: list[tuple[float, float, float]]) -> np.ndarray:
    """Gain in dB at `freqs` (Hz): a tilt of `tilt_db` per octave through 0 dB at 1 kHz, plus peaking bands
    (centre Hz, gain dB, full width at half gain in octaves) as Gaussians over log frequency; clipped to
    +-18 dB."""
    octaves = np.log2(np.maximum(freqs, 50.0) / 1000.0)
    db = tilt_db * octaves
    for centre, gain, width in bands:
        db = db + gain * np.exp(-0.5 * ((octaves - np.log2(centre / 1000.0)) / (width / FWHM_PER_SIGMA)) ** 2)
    return np.clip(db, -18.0, 18.0)


def random_eq(x: np.ndarray, rng: np.random.Generator, opt: AugmentOptions) -> np.ndarray:
    """A random smooth equaliser (zero phase, by FFT over the whole utterance): a spectral tilt and up to
    `eq_bands` peaks or notches, so that a voice's timbre (its long-term spectrum) is not a cue the model can
    lean on: each TTS voice has one fixed timbre, so a held-out voice may differ in it too (the eighteenth
    sitting's hypothesis, not measured). Length kept; the overall level is left to the normalisation."""
    n_bands = int(rng.integers(opt.eq_bands + 1))
    bands = [(float(np.exp(rng.uniform(np.log(150.0), np.log(6000.0)))), float(rng.uniform(*opt.eq_gain_db)),
              float(rng.uniform(0.5, 2.0))) for _ in range(n_bands)]
    tilt = float(rng.uniform(*opt.eq_tilt_db))
    spec = np.fft.rfft(x.astype(np.float64))
    gain = 10 ** (eq_curve(np.fft.rfftfreq(len(x), 1.0 / SR), tilt, bands) / 20)
    return np.fft.irfft(spec * gain, len(x)).astype(np.float32)


def degrade(x: np.ndarray, rng: np.random.Generator, opt: AugmentOptions) -> np.ndarray:
    """Random formant warp, equaliser, reverberation, telephone/low-pass band limits, noise and gain (length
    kept)."""
    if opt.p_warp and rng.random() < opt.p_warp:
        x = warp_formants(x, float(np.exp(rng.uniform(*np.log(opt.warp)))))
    if opt.p_eq and rng.random() < opt.p_eq:
        x = random_eq(x, rng, opt)
    if rng.random() < opt.p_reverb:
        rt60 = rng.uniform(*opt.rt60)
        n = int(rt60 * SR)
        t = np.arange(n, dtype=np.float32) / SR
        h = rng.standard_normal(n).astype(np.float32) * np.exp(-6.9 * t / rt60)
        h[0] = 1.0 / rng.uniform(0.2, 1.0)  # direct path, random direct-to-reverberant ratio
        x = _fft_conv(x, h)
    if rng.random() < opt.p_phone:
        x = _bandlimit(x, 300.0, 3400.0)
        if rng.random() < 0.5:  # 8-bit mu-law coding noise
            m = x / (np.abs(x).max() + 1e-9)
            q = np.sign(m) * np.log1p(255 * np.abs(m)) / np.log1p(255)
            q = np.round(q * 127) / 127
            x = np.sign(q) * ((1 + 255) ** np.abs(q) - 1) / 255
            x = x.astype(np.float32)
    elif rng.random() < opt.p_lowpass:
        x = _bandlimit(x, 0.0, rng.uniform(2500.0, 6000.0))
    if rng.random() < opt.p_noise:
        snr = rng.uniform(*opt.snr_db)
        noise = colored_noise(len(x), rng)
        p_sig = float((x**2).mean()) + 1e-10
        p_n = float((noise**2).mean()) + 1e-10
        x = x + noise * math.sqrt(p_sig / (p_n * 10 ** (snr / 10)))
    if rng.random() < opt.p_gain:
        x = x * 10 ** (rng.uniform(-20, 6) / 20)
    return x.astype(np.float32)


def n_frames(samples: int) -> int:
    """Logit frames for `samples` input samples with the standard SEW/wav2vec2 conv geometry (k 400, hop 320)."""
    return max(0, (samples - 400) // HOP + 1)


def frame_targets(audio: np.ndarray, labels: list[int], frames: int) -> np.ndarray:
    """Crude frame alignment: spread the label sequence evenly over the voiced span, blank (0) elsewhere.

    Returns (frames,) int64 targets. The voiced span is where the 20 ms frame energy exceeds 3% of the max.
    """
    e = np.array([float(np.sqrt((audio[i * HOP : i * HOP + 400] ** 2).mean() + 1e-12)) for i in range(frames)])
    on = np.nonzero(e > e.max() * 0.03)[0]
    tgt = np.zeros(frames, dtype=np.int64)
    if len(on) == 0 or not labels:
        return tgt
    s, t = int(on[0]), int(on[-1]) + 1
    pos = np.linspace(s, t, len(labels) + 1)
    for k, lab in enumerate(labels):
        a, b = int(round(pos[k])), max(int(round(pos[k + 1])), int(round(pos[k])) + 1)
        tgt[a:min(b, frames)] = lab
    return tgt


def make_batches(rows: list[dict], max_batch_seconds: float, rng: random.Random, max_utts: int = 48) -> list[list[int]]:
    """Length-bucketed batches (indices into rows) of at most `max_batch_seconds` padded audio, shuffled."""
    order = sorted(range(len(rows)), key=lambda i: rows[i]["samples"] + rng.random() * SR * 0.3)
    batches, cur, cur_max = [], [], 0
    for i in order:
        n = rows[i]["samples"]
        m = max(cur_max, n)
        if cur and (m * (len(cur) + 1) > max_batch_seconds * SR or len(cur) >= max_utts):
            batches.append(cur)
            cur, m = [], n
        cur.append(i)
        cur_max = m
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


class BatchDataset:
    """torch-free map-style dataset: item k = collated numpy batch k (audio augmented, normalised, padded)."""

    def __init__(self, corpus: Path, rows: list[dict], batches: list[list[int]], seed: int, augment_opt:
                 AugmentOptions | None, with_frame_targets: bool):
        self.corpus, self.rows, self.batches = corpus, rows, batches
        self.seed, self.opt, self.with_ft = seed, augment_opt, with_frame_targets

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng((self.seed, k))
        # a separate stream, so that batches that are not joined draw exactly what they drew before
        join_rng = np.random.default_rng((self.seed, k, 1))
        join = bool(self.opt and self.opt.p_join and join_rng.random() < self.opt.p_join)
        audios, labels, ftargets = [], [], []
        pending: tuple[np.ndarray, str] | None = None
        members = self.batches[k]
        for pos, i in enumerate(members):
            row = self.rows[i]
            clean = read_audio(self.corpus, row)
            text = row["text"]
            if self.opt and self.opt.p_empty and rng.random() < self.opt.p_empty:
                # no speech at all, as long as the utterance (so its batch keeps its size): after the
                # per-utterance normalisation this is loud noise, as a window of a long recording with no
                # speech in it is; the target is the empty text
                clean, text = colored_noise(len(clean), rng).astype(np.float32), ""
            if join and self.opt:
                # pairs of neighbours (similar lengths: the batch's padded size stays about the same)
                if pending is None and pos + 1 < len(members):
                    pending = (clean, text)
                    continue
                if pending is not None:
                    clean = join_pair(pending[0], clean, join_rng, self.opt)
                    text = " ".join(t for t in (pending[1], text) if t)
                    pending = None
            if self.opt:
                clean = speed(pad_with_noise(clean, rng, self.opt), rng, self.opt)
            x = degrade(clean, rng, self.opt) if self.opt else clean
            audios.append(normalize(x))
            labels.append(encode(text))
            if self.with_ft:
                ftargets.append(frame_targets(clean, labels[-1], n_frames(len(clean))))
        lens = np.array([len(a) for a in audios], dtype=np.int64)
        T = int(lens.max())
        wav = np.zeros((len(audios), T), dtype=np.float32)
        mask = np.zeros((len(audios), T), dtype=np.int64)
        for j, a in enumerate(audios):
            wav[j, : len(a)] = a
            mask[j, : len(a)] = 1
        flat = np.array([t for lab in labels for t in lab], dtype=np.int64)
        out = {"input_values": wav, "attention_mask": mask, "lengths": lens, "labels": flat,
               "label_lengths": np.array([len(lab) for lab in labels], dtype=np.int64)}
        if self.with_ft:
            F = n_frames(T)
            ft = np.full((len(audios), F), -100, dtype=np.int64)
            for j, t in enumerate(ftargets):
                ft[j, : len(t)] = t
            out["frame_targets"] = ft
        return out
