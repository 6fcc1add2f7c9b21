"""recipes/synth-en: text normalisation, augmentation, frame targets, tiny generate -> train -> export."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "synth-en"
sys.path.insert(0, str(RECIPE))

import accent  # noqa: E402
import data  # noqa: E402
import mbrola_accent  # noqa: E402
import textnorm  # noqa: E402
from metrics import cer, wer  # noqa: E402


def test_numbers_are_spelled_out() -> None:
    assert textnorm.number_to_words(0) == "zero"
    assert textnorm.number_to_words(40) == "forty"
    assert textnorm.number_to_words(1234) == "one thousand two hundred thirty four"
    assert textnorm.number_to_words(2_000_017) == "two million seventeen"
    assert textnorm.normalize("In 1984, I had 3 cats & 21st-century $5.") == (
        "IN NINETEEN EIGHTY FOUR I HAD THREE CATS AND TWENTY FIRST CENTURY FIVE DOLLARS"
    )
    assert textnorm.normalize("Don't panic!") == "DON'T PANIC"
    assert textnorm.normalize("see http://x.org/~me") is None  # unspeakable symbols are dropped, not guessed
    assert textnorm.normalize("BRB, TTYL") is None  # vowel-less words would be spelled out by the TTS


def test_metrics_against_hand_counts() -> None:
    assert cer(["ABCD"], ["ABXD"]) == pytest.approx(0.25)
    assert cer(["AB CD"], ["AB"]) == pytest.approx(3 / 5)
    assert wer(["THE CAT SAT", "A B"], ["THE SAT", "A B C"]) == pytest.approx(2 / 5)


def test_vocab_is_the_hf_english_one() -> None:
    assert [t for t, _ in sorted(data.VOCAB.items(), key=lambda kv: kv[1])] == (
        ["<pad>", "<s>", "</s>", "<unk>", "|"] + list("ETAONIHSRDLUMWCFGYPBVK'XJQZ")
    )
    assert data.encode("HI YO") == [11, 10, 4, 22, 8]
    assert data.greedy_decode(np.array([0, 11, 11, 0, 10, 4, 4, 22, 0, 8, 8, 0])) == "HI YO"
    assert data.greedy_decode(np.array([15, 0, 15])) == "LL"  # a blank separates a double letter


def test_frame_targets_stay_inside_the_voiced_span() -> None:
    sr = 16000
    t = np.arange(sr, dtype=np.float32) / sr
    audio = np.zeros(2 * sr, dtype=np.float32)
    audio[sr // 2 : sr // 2 + sr] = 0.5 * np.sin(2 * np.pi * 220 * t)  # tone from 0.5 s to 1.5 s
    labels = data.encode("AB C")
    frames = data.n_frames(len(audio))
    tgt = data.frame_targets(audio, labels, frames)
    voiced = np.nonzero(tgt)[0]
    assert 0.45 <= voiced[0] * 0.02 <= 0.55 and 1.45 <= (voiced[-1] + 1) * 0.02 <= 1.55
    runs = [int(v) for i, v in enumerate(tgt[voiced]) if i == 0 or v != tgt[voiced][i - 1]]
    assert runs == labels  # every label, in order, each over a similar number of frames
    counts = [int((tgt == lab).sum()) for lab in set(labels)]
    assert max(counts) - min(counts) <= 2


def test_augmentation_keeps_length_and_level_sane() -> None:
    rng = np.random.default_rng(0)
    x = (0.3 * np.sin(np.arange(32000) / 7.0)).astype(np.float32)
    always = data.AugmentOptions(p_speed=1.0, p_noise=1.0, p_reverb=1.0, p_phone=1.0, p_gain=1.0)
    for _ in range(5):
        y = data.degrade(x, rng, always)
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
        z = data.speed(x, rng, always)
        assert 0.85 * len(x) < len(z) < 1.15 * len(x) and len(z) != len(x)
    n = data.normalize(y)
    assert abs(float(n.mean())) < 1e-4 and abs(float(n.std()) - 1) < 1e-3


def _tiny_text_dir(path: Path, n_train: int) -> None:
    """generate.make_jobs' text dir: "TRAIN SENTENCE i" (n_train) and 30 "HELD OUT SENTENCE i"."""
    (path / "train.txt").write_text("".join(f"TRAIN SENTENCE {i}\n" for i in range(n_train)))
    (path / "heldout.txt").write_text("".join(f"HELD OUT SENTENCE {i}\n" for i in range(30)))


def test_dev_set_is_held_out_text_in_training_voices_and_leaves_the_corpus_order_alone(
    tmp_path: Path,
) -> None:
    import generate

    _tiny_text_dir(tmp_path, 60)
    before = generate.make_jobs(tmp_path, 7, n_test=10, max_train=None, copies=2)
    after = generate.make_jobs(tmp_path, 7, n_test=10, max_train=None, copies=2, n_dev=15)
    assert after[: len(before)] == before  # the existing jobs are unchanged
    dev = after[len(before) :]
    assert len(dev) == 15 and {j.split for j in dev} == {"dev_a"}
    tested = {j.text for j in before if j.split.startswith("test")}
    assert len(tested) == 10 and not tested & {j.text for j in dev}
    assert {j.text for j in dev} <= {f"HELD OUT SENTENCE {i}" for i in range(30)}
    train_voices = {(e, v) for e, v, _ in generate.TRAIN_VOICES}
    for j in dev:
        assert (j.engine, "*" if j.engine == "espeak" else j.voice) in train_voices
    chunks = generate.chunk_jobs(after, 4, 7)
    assert chunks[: len(generate.chunk_jobs(before, 4, 7))] == generate.chunk_jobs(before, 4, 7)
    assert {j.split for c in chunks[len(generate.chunk_jobs(before, 4, 7)) :] for j in c} == {"dev_a"}


def test_held_out_voice_dev_sets_speak_dev_a_sentences_and_leave_every_other_job_alone(
    tmp_path: Path,
) -> None:
    import generate

    _tiny_text_dir(tmp_path, 60)
    before = generate.make_jobs(tmp_path, 7, n_test=10, max_train=None, copies=2, n_dev=15)
    after = generate.make_jobs(tmp_path, 7, n_test=10, max_train=None, copies=2, n_dev=15, held_out_dev=True)
    assert after[: len(before)] == before
    new = after[len(before) :]
    dev_a = [j for j in before if j.split == "dev_a"]
    for split, voice in generate.HELD_OUT.items():
        jobs = [j for j in new if j.split == f"dev_{split}"]
        assert [j.text for j in jobs] == [j.text for j in dev_a]
        assert {(j.engine, j.voice) for j in jobs} == {voice}
    assert len(new) == 2 * len(dev_a) and len({j.uid for j in after}) == len(after)
    chunks = generate.chunk_jobs(after, 4, 7)
    assert chunks[: len(generate.chunk_jobs(before, 4, 7))] == generate.chunk_jobs(before, 4, 7)


def test_fresh_test_sets_speak_the_held_out_sentences_no_other_set_uses(tmp_path: Path) -> None:
    import generate

    _tiny_text_dir(tmp_path, 60)
    kw = {"max_train": None, "copies": 2, "n_dev": 15, "held_out_dev": True}
    before = generate.make_jobs(tmp_path, 7, n_test=10, **kw)
    after = generate.make_jobs(tmp_path, 7, n_test=10, fresh_test=True, **kw)
    assert after[: len(before)] == before
    new = after[len(before) :]
    used = {j.text for j in before if j.split != "train"}
    fresh_a = [j for j in new if j.split == "fresh_a"]
    assert {j.text for j in fresh_a} == {f"HELD OUT SENTENCE {i}" for i in range(30)} - used
    assert len(fresh_a) == 5
    train_voices = {(e, v) for e, v, _ in generate.TRAIN_VOICES}
    assert all((j.engine, "*" if j.engine == "espeak" else j.voice) in train_voices for j in fresh_a)
    for split, voice in generate.HELD_OUT.items():
        jobs = [j for j in new if j.split == f"fresh_{split}"]
        assert [j.text for j in jobs] == [j.text for j in fresh_a]
        assert {(j.engine, j.voice) for j in jobs} == {voice}
    assert len(new) == 3 * len(fresh_a) and len({j.uid for j in after}) == len(after)
    chunks, old = generate.chunk_jobs(after, 4, 7), generate.chunk_jobs(before, 4, 7)
    assert chunks[: len(old)] == old
    assert {j.split for c in chunks[len(old) :] for j in c} == {"fresh_a", "fresh_b", "fresh_b2"}


def test_noise_margins_surround_the_speech_at_a_lower_level() -> None:
    speech = (0.3 * np.sin(np.arange(16000) / 5.0)).astype(np.float32)
    opt = data.AugmentOptions(p_pad=1.0)
    rng = np.random.default_rng(0)
    sides = set()
    for _ in range(30):
        y = data.pad_with_noise(speech, rng, opt)
        assert y.dtype == np.float32 and np.isfinite(y).all()
        at = next(
            i for i in range(len(y) - len(speech) + 1) if np.array_equal(y[i : i + len(speech)], speech)
        )
        before, after = y[:at], y[at + len(speech) :]
        assert 0.2 * 16000 - 1 <= len(before) + len(after) <= 2 * 1.5 * 16000
        for margin in (before, after):
            if len(margin):
                assert 0.2 * 16000 - 1 <= len(margin) <= 1.5 * 16000
                level = np.sqrt((margin**2).mean()) / np.sqrt((speech**2).mean())
                assert 10 ** (-60 / 20) * 0.99 <= level <= 10 ** (-20 / 20) * 1.01
        sides.add((len(before) > 0, len(after) > 0))
    assert sides == {(True, False), (False, True), (True, True)}
    assert data.pad_with_noise(speech, rng, data.AugmentOptions()) is speech  # off by default


def test_noise_only_utterances_have_the_empty_text_and_their_own_length(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "wav").mkdir(parents=True)
    rows = []
    for i, n in enumerate((16000, 24000, 20000)):
        sf.write(corpus / "wav" / f"u{i}.wav", (0.3 * np.sin(np.arange(n) / 5.0)).astype(np.float32), 16000)
        rows.append(
            {"id": f"u{i}", "path": f"wav/u{i}.wav", "text": "HI THERE", "samples": n, "split": "train"}
        )
    batches = [[0, 1, 2]]
    plain = data.BatchDataset(
        corpus,
        rows,
        batches,
        0,
        data.AugmentOptions(p_speed=0, p_noise=0, p_reverb=0, p_phone=0, p_lowpass=0, p_gain=0),
        False,
    )[0]
    assert list(plain["label_lengths"]) == [8, 8, 8]
    empty = data.BatchDataset(corpus, rows, batches, 0, data.AugmentOptions(p_empty=1.0, p_speed=0), False)[0]
    assert list(empty["label_lengths"]) == [0, 0, 0] and len(empty["labels"]) == 0
    assert list(empty["lengths"]) == [16000, 24000, 20000]  # the batch keeps its shape
    assert np.isfinite(empty["input_values"]).all()


def test_joined_batches_pair_neighbours_across_a_pause_with_one_space(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "wav").mkdir(parents=True)
    rows = []
    for i, (n, text) in enumerate(((16000, "HI THERE"), (20000, "GOOD DAY"), (24000, "SO LONG"))):
        sf.write(corpus / "wav" / f"u{i}.wav", (0.3 * np.sin(np.arange(n) / 5.0)).astype(np.float32), 16000)
        rows.append({"id": f"u{i}", "path": f"wav/u{i}.wav", "text": text, "samples": n, "split": "train"})
    quiet = {"p_speed": 0, "p_noise": 0, "p_reverb": 0, "p_phone": 0, "p_lowpass": 0, "p_gain": 0}
    joined = data.BatchDataset(corpus, rows, [[0, 1, 2]], 0, data.AugmentOptions(p_join=1.0, **quiet), False)[
        0
    ]
    texts = []
    start = 0
    for n in joined["label_lengths"]:
        texts.append("".join(data.ID2CHAR[i] for i in joined["labels"][start : start + n]))
        start += n
    assert texts == ["HI|THERE|GOOD|DAY", "SO|LONG"]  # an odd one out stays alone
    gap = int(joined["lengths"][0]) - 16000 - 20000
    assert 0.15 * 16000 - 1 <= gap <= 1.5 * 16000 and joined["lengths"][1] == 24000
    plain = data.BatchDataset(corpus, rows, [[0, 1, 2]], 0, data.AugmentOptions(**quiet), False)[0]
    assert list(plain["lengths"]) == [16000, 20000, 24000]

    a = (0.3 * np.sin(np.arange(8000) / 5.0)).astype(np.float32)
    rng = np.random.default_rng(0)
    silent = 0
    for _ in range(40):
        y = data.join_pair(a, a, rng, data.AugmentOptions())
        pause = y[len(a) : len(y) - len(a)]
        assert np.array_equal(y[: len(a)], a) and np.array_equal(y[len(y) - len(a) :], a)
        level = np.sqrt((pause**2).mean()) / np.sqrt((a**2).mean())
        silent += level == 0
        assert level == 0 or 10 ** (-60 / 20) * 0.99 <= level <= 10 ** (-20 / 20) * 1.01
    assert 0 < silent < 40  # digital silence sometimes, noise without speech otherwise


def _vowel(sr: int = 16000, f0: float = 125.0, formant: float = 1000.0) -> np.ndarray:
    """1 s of a pulse train at f0 through one resonance (a crude vowel)."""
    src = np.zeros(sr)
    src[:: int(sr / f0)] = 1.0
    r, th = np.exp(-np.pi * 300 / sr), 2 * np.pi * formant / sr
    y = np.zeros(sr)
    for i in range(sr):
        y[i] = src[i] + 2 * r * np.cos(th) * (y[i - 1] if i else 0.0) - r * r * (y[i - 2] if i > 1 else 0.0)
    return (y / np.abs(y).max()).astype(np.float32)


def test_formant_warp_moves_the_envelope_and_keeps_pitch_and_length() -> None:
    x = _vowel()
    assert np.abs(data.warp_formants(x, 1.0) - x).max() < 1e-5  # identity at alpha 1
    harmonics = np.arange(125, 4000, 125)  # 1 s of audio: rfft bin k = k Hz

    def centroid(z: np.ndarray) -> float:
        power = np.abs(np.fft.rfft(z))[harmonics] ** 2
        return float((harmonics * power).sum() / power.sum())

    def pitch(z: np.ndarray) -> float:
        ac = np.correlate(z[:4000], z[:4000], "full")[3999:]
        return 16000 / (int(np.argmax(ac[60:400])) + 60)

    for alpha in (0.87, 1.15):
        y = data.warp_formants(x, alpha)
        assert y.shape == x.shape and y.dtype == np.float32
        assert 0.6 < np.log(centroid(y) / centroid(x)) / np.log(alpha) < 1.2  # the formant moved with alpha
        assert pitch(y) == pitch(x) == 125.0  # the harmonics did not
    rng = np.random.default_rng(0)
    warped = data.degrade(
        x, rng, data.AugmentOptions(p_warp=1.0, p_noise=0, p_reverb=0, p_phone=0, p_lowpass=0, p_gain=0)
    )
    assert warped.shape == x.shape and np.abs(warped - x).max() > 0.01


def _median_f0(path: Path) -> float:
    """Median pitch (Hz) of the voiced 64 ms frames of a wav, by autocorrelation (60-400 Hz)."""
    audio, sr = sf.read(path, dtype="float32")
    f0 = []
    for i in range(0, len(audio) - 1024, 512):
        x = audio[i : i + 1024] - audio[i : i + 1024].mean()
        if np.sqrt((x**2).mean()) < 0.02:
            continue
        ac = np.correlate(x, x, "full")[1023:]  # (1024,) lags 0..1023
        lo, hi = sr // 400, sr // 60
        f0.append(sr / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(f0))


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")
def test_cg_pitch_moves_the_training_clustergen_voices_only(tmp_path: Path) -> None:
    import generate

    text = "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG"
    jobs = [
        generate.Job("lo", "train", "flite", "slt", 1.0, 25, text),
        generate.Job("hi", "train", "flite", "awb", 1.0, 75, text),
        generate.Job("dv", "dev_a", "flite", "slt", 1.0, 25, text),
        generate.Job("kl", "train", "flite", "kal16", 1.0, 25, text),
    ]
    rows = {r["id"]: r for r in generate.run_chunk(jobs, tmp_path, cg_pitch=True)}
    assert (rows["lo"]["f0"], rows["hi"]["f0"]) == (85, 215)
    assert "f0" not in rows["dv"] and "f0" not in rows["kl"]  # dev/test sets and other voices as they were
    pitch = {uid: _median_f0(tmp_path / f"{uid}.wav") for uid in rows}
    assert 75 < pitch["lo"] < 95 and 195 < pitch["hi"] < 235  # awb's own is ~130 Hz, slt's ~170 Hz
    assert 150 < pitch["dv"] < 195
    (tmp_path / "plain").mkdir()
    [plain] = generate.run_chunk(jobs[:1], tmp_path / "plain")  # without --cg-pitch: slt's own pitch
    assert "f0" not in plain and 150 < _median_f0(tmp_path / "plain" / "lo.wav") < 195


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_generate_train_resume_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import generate

    work = tmp_path / "work"
    corpus = work / "corpus"
    (corpus / "wav").mkdir(parents=True)
    texts = ["HELLO THERE", "THE CAT SAT ON THE MAT", "GOOD MORNING TO YOU", "ONE TWO THREE"]
    jobs = [generate.Job(f"tr{i}", "train", "espeak", "en-us", 1.0, 50, t) for i, t in enumerate(texts)]
    jobs.append(generate.Job("ta0", "test_a", "espeak", "en-gb+m3", 1.1, 40, "SEE YOU LATER"))
    rows = generate.run_chunk(jobs, corpus / "wav")
    assert [r["id"] for r in rows] == [j.uid for j in jobs]
    for r in rows:
        assert 0.3 * 16000 < r["samples"] < 4 * 16000
    (corpus / "manifest.0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["text"] for r in data.load_manifest(corpus, "train")] == texts
    _train_resume_export(work, "cpu", monkeypatch)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_train_resume_export_on_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe's training on a GPU (bf16 autocast there too), on a corpus of generated tones: a lent GPU
    machine has no TTS engines."""
    from conftest import write_audio

    work = tmp_path / "work"
    texts = {"tr0": "HELLO THERE", "tr1": "THE CAT SAT ON THE MAT", "tr2": "ONE TWO THREE", "ta0": "SEE YOU"}
    rows = []
    for i, (uid, text) in enumerate(texts.items()):
        seconds = 1.0 + 0.4 * i
        audio = write_audio(work / "corpus" / "wav" / f"{uid}.wav", seconds, seed=i)
        split = "test_a" if uid.startswith("ta") else "train"
        samples = round(seconds * 16000)
        rows.append(
            {"id": uid, "path": f"wav/{audio.name}", "text": text, "samples": samples, "split": split}
        )
    (work / "corpus" / "manifest.0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _train_resume_export(work, "cuda", monkeypatch)


def _train_resume_export(work: Path, device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two training steps on `work`'s corpus, one more resumed from the checkpoint, and the export."""
    import train

    from sewcli.model.load import load_model

    base = [
        "train.py",
        "--work",
        str(work),
        "--size",
        "tiny",
        "--ce-steps",
        "1",
        "--eval-every",
        "2",
        "--eval-n",
        "1",
        "--batch-seconds",
        "6",
        "--warmup",
        "1",
        "--save-every",
        "1",
        "--device",
        device,
    ]
    monkeypatch.setattr(sys, "argv", base + ["--max-steps", "2", "--p-warp", "0.4"])
    train.main()
    state = torch.load(work / "train" / "last.pt", weights_only=True)
    assert state["step"] == 2
    curve = [json.loads(x) for x in (work / "train" / "curve.jsonl").read_text().splitlines()]
    assert curve[-1]["step"] == 2 and 0 <= curve[-1]["cer_test_a"]
    monkeypatch.setattr(sys, "argv", base + ["--max-steps", "3"])
    train.main()  # continues from last.pt, with the run's --p-warp although this command leaves it out
    assert torch.load(work / "train" / "last.pt", weights_only=True)["step"] == 3
    assert json.loads((work / "train" / "args.json").read_text())["p_warp"] == 0.4
    history = [json.loads(x) for x in (work / "train" / "args_history.jsonl").read_text().splitlines()]
    assert [(h["step"], h["args"]["p_warp"], h["args"]["max_steps"]) for h in history] == [
        (0, 0.4, 2),
        (2, 0.4, 3),
    ]
    monkeypatch.setattr(sys, "argv", base + ["--max-steps", "4", "--lr", "0.5"])
    with pytest.raises(SystemExit, match=r"--lr 0.5 \(the run's: 0.0015\)"):
        train.main()  # a different recipe is refused without --change-recipe
    assert torch.load(work / "train" / "last.pt", weights_only=True)["step"] == 3

    export = work / "export" / "latest"
    assert {
        "config.json",
        "model.safetensors",
        "vocab.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
    } <= {p.name for p in export.iterdir()}
    assert json.loads((export / "config.json").read_text())["model_type"] == "sew"
    loaded = load_model(export)
    with torch.no_grad():
        logits = loaded.model(torch.randn(1, 16000))
    assert logits.shape == (1, 49, 32) and torch.isfinite(logits).all()

    # a new work directory (the training state of a finished run is gone) starts from the exported weights
    fresh = work.parent / "fresh"
    fresh.mkdir()
    (fresh / "corpus").symlink_to(work / "corpus")
    again = [*base, "--init-from", str(export), "--lr", "0", "--max-steps", "1"]
    again[again.index("--work") + 1] = str(fresh)
    monkeypatch.setattr(sys, "argv", again)
    train.main()
    state = torch.load(fresh / "train" / "last.pt", weights_only=True)
    assert state["step"] == 1  # a fresh optimizer and step count
    exported = loaded.model.state_dict()
    trained = {k: v.cpu() for k, v in state["model"].items() if "masked_spec_embed" not in k}
    assert trained.keys() == {k for k in exported if "masked_spec_embed" not in k}
    assert all(torch.equal(v, exported[k]) for k, v in trained.items())  # lr 0: still the exported weights
    other = work.parent / "other"
    other.mkdir()
    (other / "corpus").symlink_to(work / "corpus")
    again[again.index("--work") + 1] = str(other)
    monkeypatch.setattr(sys, "argv", [*again, "--size", "small"])
    with pytest.raises(SystemExit, match="config differs from --size's in hidden_size"):
        train.main()


def test_a_resumed_run_keeps_its_recipe_and_refuses_a_silent_change() -> None:
    """train.py on resume: recipe options left out take the run's values, run options are free, and a
    differing recipe option needs --change-recipe (the sixteenth sitting lost four augmentations this way)."""
    import train

    ap_args = ["--work", "w", "--minutes", "5", "--speed", "0.8", "1.12"]
    saved = {
        "work": "elsewhere",
        "minutes": 50.0,
        "lr": 1e-4,
        "p_warp": 0.4,
        "speed": [0.8, 1.12],
        "eval_split": ["dev_a"],
        "p_speed": 0.6,
    }
    parser = train.build_parser()
    args = parser.parse_args(ap_args)
    resolved, notes = train.resumed_args(args, train.given_options(parser, ap_args), saved)
    assert (resolved.lr, resolved.p_warp, resolved.p_speed) == (1e-4, 0.4, 0.6)  # the run's recipe
    assert (resolved.work, resolved.minutes, resolved.eval_split) == ("w", 5.0, None)  # this run's own
    assert list(resolved.speed) == [0.8, 1.12]
    assert any(n.startswith("--p-warp 0.4") for n in notes)

    changed = ["--p-warp", "0.0", "--lr", "1e-4"]
    with pytest.raises(SystemExit, match=r"--p-warp 0.0 \(the run's: 0.4\)") as refused:
        train.resumed_args(parser.parse_args(changed), train.given_options(parser, changed), saved)
    assert "--lr" not in str(refused.value)  # given, but the same as the run's
    forced = [*changed, "--change-recipe"]
    resolved, notes = train.resumed_args(
        parser.parse_args(forced), train.given_options(parser, forced), saved
    )
    assert resolved.p_warp == 0.0 and resolved.p_speed == 0.6
    assert any("--change-recipe" in n for n in notes)


def test_random_eq_applies_its_curve_and_is_off_by_default() -> None:
    f = np.array([250.0, 500.0, 1000.0, 2000.0, 4000.0])
    assert np.allclose(data.eq_curve(f, 3.0, []), [-6.0, -3.0, 0.0, 3.0, 6.0])  # dB per octave through 1 kHz
    peak = data.eq_curve(np.array([1000.0, 2000.0, 8000.0]), 0.0, [(2000.0, 9.0, 1.0)])
    # full width at half gain 1 octave: 9 dB at the centre, 9/16 one octave away, 9/2**16 two octaves away
    assert abs(peak[1] - 9.0) < 1e-9 and abs(peak[0] - 9.0 / 16) < 1e-9 and abs(peak[2] - 9.0 / 2**16) < 1e-9
    assert data.eq_curve(np.array([8000.0]), 10.0, [])[0] == 18.0  # clipped

    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000).astype(np.float32)  # 1 s of white noise: rfft bin k = k Hz
    opt = data.AugmentOptions(
        p_eq=1.0,
        eq_tilt_db=(6.0, 6.0),
        eq_bands=0,
        p_noise=0,
        p_reverb=0,
        p_phone=0,
        p_lowpass=0,
        p_gain=0,
        p_speed=0,
    )
    y = data.degrade(x, np.random.default_rng(1), opt)
    assert y.shape == x.shape and y.dtype == np.float32

    def band_db(z: np.ndarray, lo: int, hi: int) -> float:
        return 10 * np.log10((np.abs(np.fft.rfft(z))[lo:hi] ** 2).mean())

    # +6 dB per octave: the 2 kHz octave gains ~6 dB against the 1 kHz one, relative to the input
    lift = band_db(y, 2000, 4000) - band_db(x, 2000, 4000) - (band_db(y, 1000, 2000) - band_db(x, 1000, 2000))
    assert 5.0 < lift < 7.0
    # p_eq 0 (the default) draws nothing, so the other augmentations see the random stream they saw before the
    # equaliser existed: the generator's next draw after `degrade` is the one commit 5e93a30's `degrade` left
    base = data.AugmentOptions(p_noise=1.0, p_gain=1.0, p_reverb=0.5, p_phone=0.3, p_lowpass=0.5)
    for seed, next_draw in ((7, 937970869), (8, 464471356), (9, 982881920)):
        rng = np.random.default_rng(seed)
        data.degrade(x, rng, base)
        assert rng.integers(1 << 30) == next_draw
    a = data.degrade(x, np.random.default_rng(7), base)
    c = data.degrade(x, np.random.default_rng(7), dataclasses.replace(base, p_eq=1.0))
    assert not np.allclose(a, c)


def test_extra_text_adds_training_utterances_only_and_never_a_held_out_sentence(tmp_path: Path) -> None:
    import generate

    _tiny_text_dir(tmp_path, 60)
    extra = [f"EXTRA SENTENCE NUMBER {i}" for i in range(20)]
    extra += ["TOO SHORT", " ".join(["WORD"] * 23), "HELD OUT SENTENCE 3", ""]
    (tmp_path / "extra.txt").write_text("\n".join(extra) + "\n")
    kw = {"max_train": None, "copies": 2, "n_dev": 15, "held_out_dev": True, "fresh_test": True}
    before = generate.make_jobs(tmp_path, 7, n_test=10, **kw)
    after = generate.make_jobs(tmp_path, 7, n_test=10, extra_text=tmp_path / "extra.txt", **kw)
    assert after[: len(before)] == before
    new = after[len(before) :]
    assert [j.text for j in new] == extra[:20]  # 3-22 words, and no held-out sentence
    assert {j.split for j in new} == {"train"} and all(j.uid.startswith("tx") for j in new)
    assert len({j.uid for j in after}) == len(after)
    train_voices = {(e, v) for e, v, _ in generate.TRAIN_VOICES}
    assert all((j.engine, "*" if j.engine == "espeak" else j.voice) in train_voices for j in new)
    assert len({j.voice for j in new}) > 3  # drawn voices, not one


def test_accented_jobs_speak_every_nth_training_sentence_in_non_english_voices_only(tmp_path: Path) -> None:
    import generate

    _tiny_text_dir(tmp_path, 60)
    kw = {"max_train": None, "copies": 2, "n_dev": 15, "held_out_dev": True, "fresh_test": True}
    before = generate.make_jobs(tmp_path, 7, n_test=10, **kw)
    after = generate.make_jobs(tmp_path, 7, n_test=10, accented=2, **kw)
    assert after[: len(before)] == before
    new = after[len(before) :]
    assert [j.text for j in new] == [f"TRAIN SENTENCE {i}" for i in range(0, 60, 2)]
    assert {j.split for j in new} == {"train"} and {j.engine for j in new} == {"festx"}
    assert all(j.uid.startswith("xa") for j in new) and len({j.uid for j in after}) == len(after)
    assert {j.voice for j in new} <= set(accent.VOICES) and len({j.voice for j in new}) > 3
    held_out_voices = {v for _, v in generate.HELD_OUT.values()}
    assert not held_out_voices & set(accent.VOICES)
    chunks = generate.chunk_jobs(after, 4, 7)
    festx = [c for c in chunks if c[0].engine == "festx"]
    assert festx and all(len({j.voice for j in c}) == 1 for c in festx)  # one festival voice per chunk

    rest = generate.make_jobs(tmp_path, 7, n_test=10, accented=2, accented_rest=True, **kw)
    assert rest[: len(after)] == after  # the "xa" jobs and every other job unchanged
    more = rest[len(after) :]
    assert [j.uid for j in more] == [f"xb{i:06d}" for i in range(1, 60, 2)]
    assert [j.text for j in more] == [f"TRAIN SENTENCE {i}" for i in range(1, 60, 2)]
    assert {j.engine for j in more} == {"festx"} and {j.voice for j in more} <= set(accent.VOICES)
    accented_texts = sorted(j.text for j in rest if j.engine == "festx")
    assert accented_texts == sorted(f"TRAIN SENTENCE {i}" for i in range(60))  # each exactly once


def test_new_engine_jobs_speak_every_nth_training_sentence_in_new_voices_and_change_nothing_else(
    tmp_path: Path,
) -> None:
    import generate

    _tiny_text_dir(tmp_path, 90)
    kw = {"max_train": None, "copies": 2, "n_dev": 15, "held_out_dev": True, "fresh_test": True}
    kw |= {"accented": 2, "accented_rest": True}
    before = generate.make_jobs(tmp_path, 7, n_test=10, **kw)
    after = generate.make_jobs(tmp_path, 7, n_test=10, new_engines=1, **kw)
    assert after[: len(before)] == before  # every earlier job unchanged
    new = after[len(before) :]
    assert [j.uid for j in new] == [f"xe{i:06d}" for i in range(90)]
    assert [j.text for j in new] == [f"TRAIN SENTENCE {i}" for i in range(90)]
    assert {j.split for j in new} == {"train"}
    assert {(j.engine, j.voice) for j in new} <= set(generate.NEW_ENGINE_VOICES)
    assert {j.engine for j in new} == {"mbrola", "pico", "rhvoice"} and len({j.voice for j in new}) > 8
    assert not set(generate.HELD_OUT.values()) & set(generate.NEW_ENGINE_VOICES)
    assert not {v for _, v in generate.HELD_OUT.values()} & {v for _, v in generate.NEW_ENGINE_VOICES}
    half = generate.make_jobs(tmp_path, 7, n_test=10, new_engines=2, **kw)[len(before) :]
    assert [j.text for j in half] == [f"TRAIN SENTENCE {i}" for i in range(0, 90, 2)]
    chunks = generate.chunk_jobs(after, 4, 7)
    assert sorted(j.uid for c in chunks for j in c) == sorted(j.uid for j in after)
    assert all(len({j.engine for j in c}) == 1 for c in chunks)


def test_new_engines_refuse_to_start_without_their_voices(tmp_path: Path) -> None:
    import generate

    (tmp_path / "mbrola" / "us1").mkdir(parents=True)
    (tmp_path / "rh" / "bdl").mkdir(parents=True)
    missing = generate.missing_new_engines(tmp_path / "mbrola", tmp_path / "rh")
    assert "mb-us1" not in missing and "mb-us2" in missing and "mb-en1" in missing
    assert "rhvoice:bdl" not in missing and "rhvoice:clb" in missing


@pytest.mark.skipif(
    not shutil.which("pico2wave")
    or not shutil.which("RHVoice-test")
    or not Path("/usr/share/mbrola/us2").is_dir(),
    reason="pico2wave, RHVoice or MBROLA's us2 voice is not installed",
)
def test_new_engines_speak_at_the_drawn_rate(tmp_path: Path) -> None:
    import generate

    fox = "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG"
    for engine, voice in (("mbrola", "mb-us2"), ("pico", "en-GB"), ("rhvoice", "bdl")):
        jobs = [generate.Job("xe000000", "train", engine, voice, rate, 50, fox) for rate in (1.0, 0.8)]
        base, slow = (generate.SYNTH_ONE[engine](job, tmp_path) for job in jobs)
        assert base.dtype == np.float32 and np.abs(base).max() > 0.05
        assert 1.5 < len(base) / generate.SR < 5.0, engine
        assert len(slow) / len(base) == pytest.approx(1 / 0.8, rel=0.15), engine


def test_accent_mapping_covers_every_english_phone_and_keeps_timing() -> None:
    english = (
        "aa ae ah ao aw ax axr ay b ch d dh dx eh el em en er ey f g hh hv ih iy jh k l m n nx ng ow oy "
        "p r s sh t th uh uw v w y z zh"
    ).split()
    for voice, (table, _, _) in accent.VOICES.items():
        assert set(table) == set(english), voice
    segs = [
        ("pau", 0.2, []),
        ("hh", 0.05, [(0.0, 100.0)]),
        ("ay", 0.2, [(0.05, 110.0), (0.15, 120.0)]),
        ("pau", 0.2, []),
    ]
    it = accent.to_voice(segs, "lp_diphone", 2.0)  # Italian drops h: its time goes to the pause before it
    assert [p for p, _, _ in it] == ["#", "a", "i", "#"]
    assert sum(d for _, d, _ in it) == pytest.approx(0.65)
    assert it[0][1] == pytest.approx(0.25) and it[1][1] == pytest.approx(0.1)
    assert it[1][2] == [(pytest.approx(0.05), 220.0)] and it[2][2] == [(pytest.approx(0.05), 240.0)]
    assert accent.segments_scheme(it[:2]) == "((# 0.2500) (a 0.1000 (0.0500 220.0)))"


def test_accented_generation_refuses_to_start_without_its_voices(tmp_path: Path) -> None:
    (tmp_path / "italian" / "pc_diphone").mkdir(parents=True)
    missing = accent.missing_voices(tmp_path)
    assert "pc_diphone" not in missing and "lp_diphone" in missing and len(missing) == len(accent.VOICES) - 1
    assert all(p.startswith(("festvox-", "festival-")) for p in accent.PACKAGES.split())


def _follows_timing_and_pitch(synth_batch: Callable[..., list[Path]], voice: str, tmp_path: Path) -> None:
    """An accent back end's synth_batch: more text is longer, rate 0.7 is 1/0.7 as long, f0 as drawn."""
    fox = "the quick brown fox jumps over the lazy dog"
    texts = [fox, fox + " today", fox]
    paths = synth_batch(texts, voice, [1.0, 1.0, 0.7], [90.0, 90.0, 180.0], tmp_path)
    base, longer, slow_high = (sf.info(p).duration for p in paths)
    assert 1.5 < base < longer < slow_high  # more text is longer; a slower rate is slower
    assert slow_high / base == pytest.approx(1 / 0.7, rel=0.15)
    assert 75 < _median_f0(paths[0]) < 110 and 150 < _median_f0(paths[2]) < 215  # the drawn pitch


@pytest.mark.skipif(
    shutil.which("festival") is None
    or not all((accent.VOICE_DIR / v).is_dir() for v in ("italian/pc_diphone", "english/kal_diphone")),
    reason="festival, its English front end voice or its Italian voice is not installed",
)
def test_accented_synthesis_follows_the_english_timing_at_the_drawn_pitch(tmp_path: Path) -> None:
    _follows_timing_and_pitch(accent.synth_batch, "pc_diphone", tmp_path)


def test_mbrola_accented_jobs_speak_every_nth_training_sentence_and_change_nothing_else(
    tmp_path: Path,
) -> None:
    import generate

    _tiny_text_dir(tmp_path, 90)
    kw = {"max_train": None, "copies": 2, "n_dev": 15, "held_out_dev": True, "fresh_test": True}
    kw |= {"accented": 2, "accented_rest": True, "new_engines": 1}
    before = generate.make_jobs(tmp_path, 7, n_test=10, **kw)
    after = generate.make_jobs(tmp_path, 7, n_test=10, mbrola_accented=1, **kw)
    assert after[: len(before)] == before  # every earlier job unchanged
    new = after[len(before) :]
    assert [j.uid for j in new] == [f"xm{i:06d}" for i in range(90)]
    assert [j.text for j in new] == [f"TRAIN SENTENCE {i}" for i in range(90)]
    assert {j.split for j in new} == {"train"} and {j.engine for j in new} == {"mbx"}
    assert {j.voice for j in new} <= set(mbrola_accent.VOICES) and len({j.voice for j in new}) > 12
    third = generate.make_jobs(tmp_path, 7, n_test=10, mbrola_accented=3, **kw)[len(before) :]
    assert [j.text for j in third] == [f"TRAIN SENTENCE {i}" for i in range(0, 90, 3)]
    chunks = generate.chunk_jobs(after, 4, 7)
    assert sorted(j.uid for c in chunks for j in c) == sorted(j.uid for j in after)
    assert all(len({(j.engine, j.voice) for j in c}) == 1 for c in chunks if c[0].engine == "mbx")


def test_mbrola_renderings_cover_every_english_phone_and_missing_diphones_are_repaired() -> None:
    english = set(next(iter(accent.VOICES.values()))[0])  # festival's English phones (accent's tables' keys)
    assert set(mbrola_accent.CANDIDATES) == english
    assert all(specs for specs in mbrola_accent.CANDIDATES.values())
    assert mbrola_accent.pho([("a", 0.1, [(0.05, 220.0)]), ("_", 0.2, [])]) == "a 100 50 220\n_ 200\n"
    segs = [("_", 0.05, []), ("h", 0.06, []), ("I", 0.08, [(0.04, 120.0)]), ("z", 0.09, []), ("_", 0.05, [])]
    # German never ends a word on z and has no h before a pause here: z devoices, h gives its time away
    fixed = mbrola_accent._repaired(segs, {("z", "_"), ("_", "h")})
    assert fixed == [
        ("_", pytest.approx(0.11), []),
        ("I", 0.08, [(0.04, 120.0)]),
        ("s", 0.09, []),
        ("_", 0.05, []),
    ]
    assert mbrola_accent._repaired(segs, {("I", "m")}) is None  # not a pair of these segments
    assert mbrola_accent._repaired([("m", 0.1, []), ("n", 0.1, [])], {("m", "n")}) is None  # no fallback


def test_mbrola_accent_refuses_to_start_without_its_voices(tmp_path: Path) -> None:
    (tmp_path / "de2").mkdir()
    (tmp_path / "de2" / "de2").write_bytes(b"db")
    missing = mbrola_accent.missing_voices(tmp_path)
    assert "de2" not in missing and "fr1" in missing and len(missing) == len(mbrola_accent.VOICES) - 1
    assert all(p.startswith("mbrola-") for p in mbrola_accent.PACKAGES.split())


@pytest.mark.skipif(
    shutil.which("festival") is None
    or shutil.which("mbrola") is None
    or not (accent.VOICE_DIR / "english" / "kal_diphone").is_dir()
    or bool(set(mbrola_accent.missing_voices()) & {"de2", "es1"}),
    reason="festival, its English front end voice, mbrola or its de2 and es1 voices are not installed",
)
def test_mbrola_accented_synthesis_follows_the_english_timing_at_the_drawn_pitch(tmp_path: Path) -> None:
    assert mbrola_accent.table("de2")["th"] == "s" and mbrola_accent.table("es1")["th"] == "T"  # by the probe
    assert mbrola_accent.table("de2")["w"] == "v" and mbrola_accent.table("es1")["v"] == "b"
    _follows_timing_and_pitch(mbrola_accent.synth_batch, "de2", tmp_path)
    # de2 has no z before d or a pause (German devoices it there): said as s, no gap of silence left
    segs = accent.map_segments(
        accent.english_segments(["his dogs"], [1.0], tmp_path)[0], mbrola_accent.table("de2"), "_", 1.0
    )
    raw = tmp_path / "raw.pho"
    raw.write_text(mbrola_accent.pho([("_", 0.05, []), *segs, ("_", 0.05, [])]))
    assert {("z", "d"), ("z", "_")} <= mbrola_accent._missing("de2", raw, tmp_path / "raw.wav")
    assert mbrola_accent.say("de2", segs, tmp_path, "his")[1] == 0
