"""The bad-input matrix of issue 5, run through the real `sew` command on a tiny random SEW model.

Every case asserts the three things a script depends on: the one stderr line naming the input and the problem
(and no traceback), the exit status, and the files on disk (every good input in the same run still written,
complete, never a partial or temporary file). Fixtures are generated; nothing is downloaded.

Cost: one `sew` run covers all the bad and odd audio inputs; model faults run in-process (torch is already
imported); the process tests (signals, pipes, disk full, two processes) use a few seconds of audio each. The
3-hour file is marked `slow` (about 40-60 s on a loaded 2-core machine); it still runs in CI unless
deselected. `--threads 1` everywhere: on an oversubscribed CPU, torch's default thread pool spins and is
several times slower.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import conftest
import numpy as np
import pytest
import soundfile as sf
from conftest import speechlike, write_audio, write_sew_checkpoint
from typer.testing import CliRunner

from sewcli import cli, outputs

SEW = [sys.executable, "-m", "sewcli"]
TIMEOUT = 240


def _env(clean_env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **clean_env, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def _sew(
    args: list[str], clean_env: dict[str, str], cwd: Path | None = None, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run `python -m sewcli ARGS` to completion; text stdout/stderr."""
    return subprocess.run(
        [*SEW, *args], capture_output=True, text=True, env=_env(clean_env), cwd=cwd, timeout=TIMEOUT, **kw
    )  # type: ignore[call-overload]


def _invoke(args: list[str], input: bytes | None = None) -> Any:
    """Run the CLI in this process (torch is already imported here; a subprocess pays ~5 s to import it)."""
    return CliRunner().invoke(cli.app, args, input=input)


def _leftovers(root: Path) -> list[Path]:
    """Temporary files sew must never leave behind."""
    return [p for p in root.rglob("*") if p.name.endswith(".part") or p.name.startswith(".sew-")]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def _errors_by_input(stderr: str) -> dict[str, list[str]]:
    """{input name: [problem, ...]} from the `error: NAME: problem` lines."""
    out: dict[str, list[str]] = {}
    for line in _error_lines(stderr):
        body = line[len("error: ") :]
        name, _, problem = body.partition(": ")
        out.setdefault(name, []).append(problem)
    return out


def _records(stderr: str) -> list[str]:
    """stderr as messages: a line starting with whitespace continues the previous one (a wrapped log line)."""
    out: list[str] = []
    for line in stderr.splitlines():
        if line[:1].isspace() and out:
            out[-1] += " " + line.strip()
        elif line.strip():
            out.append(" ".join(line.split()))
    return out


def _wav_header(rate: int, channels: int, bits: int, data_bytes: int) -> bytes:
    """A canonical 44-byte PCM WAV header declaring `data_bytes` of data."""
    block = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


# ------------------------------------------------------------------------------------------------------------
# the input matrix: one run, every bad input reported on one line, every good input written


# name -> expected duration in seconds (good inputs: a json output must exist with this duration)
GOOD: dict[str, float] = {
    "good.wav": 2.0,
    "truncated.wav": 1.0,  # header declares 2 s, 1 s present: the available prefix is decoded (and a warning)
    "silence.wav": 10.0,
    "rate-8k.wav": 1.5,
    "rate-44k1.wav": 1.5,
    "rate-96k.wav": 1.5,
    "six-channels.wav": 1.5,
    "mono-reference.wav": 1.5,
    "u8.wav": 1.5,
    "pcm24.wav": 1.5,
    "float64.wav": 1.5,
    "ünïcödé 名前 with spaces.flac": 1.0,
    "it's an apostrophe.ogg": 1.0,
    "-leading-dash.wav": 1.0,
    "long-"
    + "n" * 235
    + ".wav": 1.0,  # 244 bytes: its outputs (and their temporary files) must fit 255 bytes
}
if sys.platform.startswith("linux"):  # a valid Linux file name that is not UTF-8 (b"caf\xe9.wav", latin-1)
    GOOD[os.fsdecode(b"latin-1 caf\xe9.wav")] = 1.0
# name -> a phrase its one error line must contain
BAD: dict[str, str] = {
    "empty.wav": "file is empty (0 bytes)",
    "random.wav": "not a recognised audio format",
    "random.mp3": "not a recognised audio format",
    "header-only.wav": "contains no audio samples",
    "notes.wav": "looks like a text file",
    "line\nbreak.wav": "looks like a text file",  # reported as `error: line\nbreak.wav: ...`, one line
    "nan.wav": "contains NaN or infinite samples (first at 0.250 s)",
    "inf.wav": "contains NaN or infinite samples (first at 0.500 s)",
    "one-sample.wav": "audio too short: 0.000 s (1 samples at 16000 Hz); the model needs at least 0.045 s",
    "719-samples.wav": "audio too short: 0.045 s (719 samples at 16000 Hz)",
    "damaged-at-90%.flac": "decoding failed after ",  # libsndfile fails mid-file; the input fails whole
    "missing.wav": "no such file or directory",
    "no-audio-dir": "no audio files",
    "tree/loop-a.wav": "Too many levels of symbolic links",
    "tree/loop-b.wav": "Too many levels of symbolic links",
    "tree/dangling.wav": "file not found",
    "zero-device.wav": "not a regular file (a device)",  # a link to /dev/zero: endless, never spooled
    "tree/pipe.wav": "not a regular file (a named pipe)",  # opening it would wait for a writer for ever
    "tree/sock.wav": "not a regular file (a socket)",
    "tree/to-pipe.wav": "not a regular file (a named pipe)",  # a link to one
}


def _make_inputs(d: Path) -> None:
    """Write every GOOD and BAD input of the matrix into `d` (deterministic)."""
    rng = np.random.default_rng(5)
    write_audio(d / "good.wav", 2.0, seed=1)
    tone = (0.3 * speechlike(2.0, seed=2) * 32767).astype("<i2")  # 2 s of int16
    (d / "truncated.wav").write_bytes(_wav_header(16000, 1, 16, 2 * tone.size) + tone[:16000].tobytes())
    sf.write(str(d / "silence.wav"), np.zeros(160_000, np.float32), 16000)
    for name, rate in (("rate-8k.wav", 8000), ("rate-44k1.wav", 44100), ("rate-96k.wav", 96000)):
        write_audio(d / name, 1.5, rate=rate, seed=3)
    mono = speechlike(1.5, seed=4)
    sf.write(str(d / "mono-reference.wav"), mono, 16000, subtype="FLOAT")
    sf.write(str(d / "six-channels.wav"), np.repeat(mono[:, None], 6, axis=1), 16000, subtype="FLOAT")
    write_audio(d / "u8.wav", 1.5, seed=6, subtype="PCM_U8")
    write_audio(d / "pcm24.wav", 1.5, seed=6, subtype="PCM_24")
    write_audio(d / "float64.wav", 1.5, seed=6, subtype="DOUBLE")
    write_audio(d / "ünïcödé 名前 with spaces.flac", 1.0, seed=7)
    write_audio(d / "it's an apostrophe.ogg", 1.0, seed=8)
    write_audio(d / "-leading-dash.wav", 1.0, seed=9)
    for name in GOOD:
        if not (d / name).exists():  # the non-UTF-8 name: written under a plain name, then renamed
            os.rename(write_audio(d / "plain.wav", GOOD[name], seed=14), d / name)

    (d / "empty.wav").write_bytes(b"")
    (d / "random.wav").write_bytes(rng.integers(0, 256, 6000, dtype=np.uint8).tobytes())
    (d / "random.mp3").write_bytes(rng.integers(0, 256, 6000, dtype=np.uint8).tobytes())
    (d / "header-only.wav").write_bytes(_wav_header(16000, 1, 16, 32000))
    (d / "notes.wav").write_text("these are meeting notes, not audio\n" * 40, encoding="utf-8")
    (d / "line\nbreak.wav").write_text("a name with a line break\n", encoding="utf-8")
    for name, value, at in (("nan.wav", np.nan, 4000), ("inf.wav", np.inf, 8000)):
        x = speechlike(1.0, seed=10)
        x[at] = value
        sf.write(str(d / name), x, 16000, subtype="FLOAT")
    sf.write(str(d / "one-sample.wav"), np.array([0.1], np.float32), 16000)
    sf.write(str(d / "719-samples.wav"), speechlike(1.0, seed=11)[:719], 16000)
    flac = write_audio(d / "damaged-at-90%.flac", 10.0, seed=13)
    raw = bytearray(flac.read_bytes())
    at = len(raw) * 9 // 10
    raw[at : at + 2000] = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    flac.write_bytes(bytes(raw))
    (d / "no-audio-dir").mkdir()
    (d / "no-audio-dir" / "readme.txt").write_text("nothing to see")
    tree = d / "tree"
    write_audio(tree / "sub" / "deep.wav", 1.0, seed=12)
    (tree / "sub" / "up").symlink_to("..")  # directory loops: tree/sub/up/sub/up/...
    (tree / "sub" / "self").symlink_to(".")
    (tree / "loop-a.wav").symlink_to("loop-b.wav")  # file symlink loop
    (tree / "loop-b.wav").symlink_to("loop-a.wav")
    (tree / "dangling.wav").symlink_to("nowhere.wav")
    (d / "zero-device.wav").symlink_to("/dev/zero")
    os.mkfifo(tree / "pipe.wav")
    (tree / "to-pipe.wav").symlink_to("pipe.wav")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tree / "sock.wav"))


def test_bad_input_matrix_in_one_run(tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    _make_inputs(inp)
    files = [n for n in [*GOOD, *BAD] if "/" not in n and n != "no-audio-dir"]
    args = [
        "transcribe",
        "-m",
        str(tiny_sew_dir),
        "-o",
        str(out),
        "-f",
        "json",
        "-f",
        "txt",
        "--threads",
        "1",
        "--",
        *files,
        "no-audio-dir",
        "tree",
    ]
    result = _sew(args, clean_env, cwd=inp)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "Exception" not in result.stderr
    errors = _errors_by_input(result.stderr)
    shown = {name: name.replace("\n", "\\n") for name in BAD}  # a line break in a name is escaped
    assert set(errors) == set(shown.values()), result.stderr  # every bad input named, no good one
    for name, phrase in BAD.items():
        assert len(errors[shown[name]]) == 1 and phrase in errors[shown[name]][0], (name, errors[shown[name]])
    assert f"{len(GOOD) + 1} files transcribed, {len(BAD)} failed" in result.stderr.splitlines()[-1]

    # every good input is complete on disk: json (its duration) and txt (the same text)
    docs = {}
    for name, seconds in GOOD.items():
        stem = name.rsplit(".", 1)[0]
        doc = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
        assert doc["duration"] == pytest.approx(seconds, abs=1e-3), name
        assert (out / f"{stem}.txt").read_text(encoding="utf-8").split() == doc["text"].split()
        docs[name] = doc
    assert json.loads((out / "sub" / "deep.json").read_text(encoding="utf-8"))["duration"] == pytest.approx(
        1.0
    )
    # 6 identical channels downmix to the mono signal (a wrong-axis mean, transformers #47886, would not)
    assert docs["mono-reference.wav"]["text"].strip()
    assert docs["six-channels.wav"]["text"] == docs["mono-reference.wav"]["text"]
    assert docs["six-channels.wav"]["words"] == docs["mono-reference.wav"]["words"]
    # nothing for the bad inputs, no temporary files
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    expected = {f"{n.rsplit('.', 1)[0]}.{x}" for n in GOOD for x in ("json", "txt")} | {
        "sub/deep.json",
        "sub/deep.txt",
    }
    assert written == expected
    assert not _leftovers(out)
    # Nothing else on stderr: the error lines, the summary, and warnings that name their file (the truncated
    # one; the header-only one gets its error line alone). No C library chatter (libmpg123 prints "Note:
    # Illegal Audio-MPEG-Header" for random.mp3 itself).
    assert not [line for line in result.stderr.splitlines() if not line.strip() or line[:1].isspace()]
    others = [r for r in _records(result.stderr) if not r.startswith(("error: ", "sew: "))]
    assert all(r.split()[0].lower().rstrip(":") == "warning" for r in others), others
    assert sorted(r.split()[1] for r in others) == ["truncated.wav:"], others
    assert any("truncated.wav: truncated file" in r for r in others)


def test_traceback_only_with_verbose(tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00garbage")
    good = write_audio(tmp_path / "good.wav", 1.0)
    base = ["transcribe", "-m", str(tiny_sew_dir), "--threads", "1", str(bad), str(good)]
    quiet, verbose = _invoke(base), _invoke([*base, "--verbose"])
    for result in (quiet, verbose):
        assert result.exit_code == 1
        assert [e.split(": ")[1] for e in _error_lines(result.stderr)] == [str(bad)]
        assert f"==> {good} <==" in result.stdout  # the good file is still transcribed
    assert "Traceback" not in quiet.stderr
    assert "Traceback (most recent call last)" in verbose.stderr and "AudioError" in verbose.stderr


def test_stdin_faults(tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]) -> None:
    """Empty and non-audio standard input: one line naming <stdin>, exit 1, nothing on stdout."""
    base = ["transcribe", "-m", str(tiny_sew_dir), "--threads", "1", "-"]
    empty = _invoke(base, input=b"")
    text = _invoke(base, input=b"just some text\n" * 50)
    for result, phrase in ((empty, "input is empty (0 bytes)"), (text, "looks like a text file")):
        assert result.exit_code == 1 and result.stdout == ""
        line, summary = result.stderr.strip().splitlines()
        assert line.startswith("error: <stdin>: ") and phrase in line, line
        assert summary.startswith("sew: 0 files transcribed, 1 failed")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--registry", "{dir}"], "'--registry'"),
        (["-o", "{file}"], "'--output-dir'"),
    ],
)
def test_directory_where_a_file_is_expected_and_back(
    args: list[str], needle: str, tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    wav = write_audio(tmp_path / "a.wav", 1.0)
    args = [a.format(dir=tmp_path, file=wav) for a in args]
    result = _invoke(["transcribe", str(wav), "-m", str(tiny_sew_dir), *args])
    assert result.exit_code == 2
    assert needle in result.stderr and ("is a directory" in result.stderr or "is a file" in result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("name", ["a.wav", "clips/a.wav"])  # the second one is shaped like a hub id org/name
def test_audio_file_given_as_model(
    name: str, tmp_path: Path, clean_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-m a.wav` (a file where a checkpoint directory is expected) must say so, not look for a hub repo."""
    wav = write_audio(tmp_path / name, 1.0)
    monkeypatch.chdir(tmp_path)
    result = _invoke(["transcribe", "-m", name, name])
    assert result.exit_code == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert (
        line
        == f"error: {name}: is a file, not a checkpoint directory (give the directory holding config.json)"
    )
    assert wav.exists() and result.stdout == ""


# ------------------------------------------------------------------------------------------------------------
# model faults: one clear line, nothing executed, nothing written


def _break_model(case: str, src: Path, dst: Path, marker: Path) -> Path:
    """A copy of the tiny checkpoint with one fault; returns the file or directory the message must name."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    if case == "corrupt-safetensors":
        weights.write_bytes(weights.read_bytes()[:3000])
        return weights
    if case == "garbage-safetensors":
        weights.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return weights
    if case in ("truncated-bin", "pickle-payload-bin"):
        state = load_file(str(weights))
        weights.unlink()
        path = dst / "pytorch_model.bin"
        if case == "truncated-bin":
            torch.save(state, str(path))
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        else:
            torch.save({"lm_head.weight": _Payload(marker)}, str(path))
        return path
    config = json.loads((dst / "config.json").read_text())
    if case == "unsupported-architecture":
        config.update(architectures=["HubertForCTC"], model_type="hubert")
        (dst / "config.json").write_text(json.dumps(config))
        return dst / "config.json"
    if case == "vocab-larger-than-head":
        vocab = json.loads((dst / "vocab.json").read_text())
        vocab.update({"Ä": len(vocab), "Ö": len(vocab) + 1})
        (dst / "vocab.json").write_text(json.dumps(vocab))
        return dst / "vocab.json"
    if case == "head-not-matching-config":
        config["vocab_size"] = 40  # the head in the weights has 32 rows
        (dst / "config.json").write_text(json.dumps(config))
        return dst
    if case == "missing-vocab":
        (dst / "vocab.json").unlink()
        return dst / "vocab.json"
    raise AssertionError(case)


class _Payload:
    """Unpickling this would create `marker` (a harmless stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, ...]]:
        return (os.system, (f"touch '{self.marker}'",))


MODEL_FAULTS = {
    "corrupt-safetensors": "cannot read safetensors file",
    "garbage-safetensors": "cannot read safetensors file",
    "truncated-bin": "corrupt or truncated",
    "pickle-payload-bin": "refused to load",
    "unsupported-architecture": "architectures=['HubertForCTC'] is not supported",
    "vocab-larger-than-head": "34 tokens but config.json vocab_size=32",
    "head-not-matching-config": "lm_head has 32 rows but config.json vocab_size=40",
    "missing-vocab": "vocabulary file is missing",
}


@pytest.mark.parametrize("case", list(MODEL_FAULTS))
def test_model_faults(case: str, tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]) -> None:
    marker = tmp_path / "payload-ran"
    named = _break_model(case, tiny_sew_dir, tmp_path / "model", marker)
    wavs = [write_audio(tmp_path / f"{i}.wav", 1.0, seed=i) for i in range(2)]
    out = tmp_path / "out"
    result = _invoke(
        ["transcribe", "-m", str(tmp_path / "model"), "-o", str(out), "--threads", "1", *map(str, wavs)]
    )
    assert result.exit_code == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {named}") and MODEL_FAULTS[case] in line, line
    assert not marker.exists(), "the pickle payload was executed"
    assert not out.exists() or not list(out.rglob("*"))
    assert result.stdout == ""


# ------------------------------------------------------------------------------------------------------------
# process faults: signals, closed pipes, full disk, unwritable outputs, concurrent runs


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_batch_with_several_formats(
    sig: int, code: int, tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(16):
        write_audio(src / f"f{i:02d}.wav", 6.0, seed=i)
    cmd = [
        *SEW,
        "transcribe",
        str(src),
        "-o",
        str(out),
        "-f",
        "json",
        "-f",
        "srt",
        "-f",
        "txt",
        "-m",
        str(tiny_sew_dir),
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(clean_env))
    deadline = time.monotonic() + TIMEOUT
    while not list(out.glob("*.txt")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == code, stderr.decode()
    assert stdout == b"" and b"Traceback" not in stderr
    assert stderr.decode().strip().splitlines()[-1] == (
        "sew: interrupted" if code == 130 else "sew: terminated"
    )
    done = sorted(p.stem for p in out.glob("*.txt"))
    assert 1 <= len(done) < 16, "the signal must arrive mid-batch for this test to mean anything"
    for stem in done:  # every finished input is complete, in every format
        doc = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
        assert doc["duration"] == pytest.approx(6.0)
        assert (out / f"{stem}.txt").read_text(encoding="utf-8").split() == doc["text"].split()
        assert (out / f"{stem}.srt").stat().st_size > 0
    assert {p.stem for p in out.iterdir()} == set(done), "an unfinished input left some of its outputs"
    assert not _leftovers(out)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # exited, waiting to be reaped by init


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_beam_search_in_workers_stops_them_quietly(
    sig: int, code: int, tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    wav = write_audio(tmp_path / "long.wav", 300.0)
    cmd = [*SEW, "transcribe", str(wav), "-m", str(tiny_sew_dir), "--decoder", "beam", "--threads", "1"]
    proc = subprocess.Popen(
        [*cmd, "--beam-workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(clean_env)
    )
    deadline = time.monotonic() + TIMEOUT
    kids: set[int] = set()
    while len(kids) < 2 and time.monotonic() < deadline and proc.poll() is None:
        kids |= conftest.child_pids(proc.pid)
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before its beam-search workers were seen"
    if sig == signal.SIGINT:  # a terminal's Ctrl-C reaches the whole process group: sew and its workers
        for pid in kids:
            os.kill(pid, sig)
        time.sleep(0.5)  # the workers' turn first: they must neither die noisily nor stop the run
        assert proc.poll() is None
        proc.send_signal(sig)
    else:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == code, stderr.decode()
    assert stdout == b"" and b"Traceback" not in stderr, stderr.decode()
    assert stderr.decode().strip().splitlines()[-1] == (
        "sew: interrupted" if code == 130 else "sew: terminated"
    )
    end = time.monotonic() + 30
    while not all(_gone(k) for k in kids) and time.monotonic() < end:
        time.sleep(0.05)
    assert all(_gone(k) for k in kids), "beam-search workers outlived sew"


WRITE_INTERRUPTS = {  # where Ctrl-C lands while one input's outputs are written -> what is left on disk
    "exception-while-rendering": [],  # a KeyboardInterrupt raised inside a writer: nothing of that input
    "signal-while-rendering": ["a.json", "a.txt"],  # a real SIGINT is held until the input is complete
    "signal-after-mkstemp": ["a.json", "a.txt"],  # the temporary file exists but is not yet recorded
    "signal-between-renames": ["a.json", "a.txt"],
    "second-signal-while-rendering": [],  # asked twice: let through at once, temporary files removed
}


@pytest.mark.parametrize("when", list(WRITE_INTERRUPTS))
def test_interrupt_while_writing_leaves_all_formats_or_none(
    when: str, tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    """Ctrl-C may land while one input's json and txt are being written: it gets all of them or none."""
    wav = write_audio(tmp_path / "a.wav", 1.0)
    out = tmp_path / "out"
    real_render, real_replace, real_mkstemp = cli.render_transcript, os.replace, outputs.tempfile.mkstemp
    renders: list[str] = []
    renames: list[object] = []
    made: list[str] = []

    def sigint() -> None:
        os.kill(os.getpid(), signal.SIGINT)  # a real signal, handled wherever sew lets it be

    def render_then_interrupt(transcript: Any, fmt: str) -> Any:
        inner = real_render(transcript, fmt)

        def render(fh: Any) -> None:
            renders.append(fmt)
            inner(fh)
            if len(renders) == 2:
                if when == "exception-while-rendering":
                    raise KeyboardInterrupt  # what SIGINT does at this point when nothing holds it
                if when == "signal-while-rendering":
                    sigint()
                if when == "second-signal-while-rendering":
                    sigint()
                    sigint()

        return render

    def mkstemp_then_interrupt(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, path = real_mkstemp(*args, **kwargs)
        made.append(path)
        if when == "signal-after-mkstemp" and len(made) == 2:
            sigint()
        return fd, path

    def replace_then_interrupt(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        renames.append(dst)
        if when == "signal-between-renames" and len(renames) == 1:
            sigint()

    with (
        mock.patch.object(cli, "render_transcript", render_then_interrupt),
        mock.patch.object(outputs.tempfile, "mkstemp", mkstemp_then_interrupt),
        mock.patch.object(outputs.os, "replace", replace_then_interrupt),
    ):
        result = _invoke(
            [
                "transcribe",
                "-m",
                str(tiny_sew_dir),
                "-o",
                str(out),
                "-f",
                "json",
                "-f",
                "txt",
                "--threads",
                "1",
                str(wav),
            ]
        )
    assert result.exit_code == 130, result.stderr
    assert renders == ["json", "txt"]
    assert sorted(p.name for p in out.iterdir()) == WRITE_INTERRUPTS[when], "all outputs or none"
    assert not _leftovers(out)


def test_pipe_into_head_ends_without_traceback(
    tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    src = tmp_path / "src"
    for i in range(6):
        write_audio(src / f"f{i}.wav", 2.0, seed=i)
    script = (
        f"{subprocess.list2cmdline(SEW)} transcribe {src} -m {tiny_sew_dir} --threads 1 | head -1; "
        'echo "status=${PIPESTATUS[0]}" >&2'
    )
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=_env(clean_env), timeout=TIMEOUT
    )
    assert result.stdout == f"==> {src / 'f0.wav'} <==\n"
    assert "status=141" in result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
    assert "Exception ignored" not in result.stderr


@pytest.mark.parametrize("stderr", ["closed", "full"])
def test_closed_or_full_stderr_does_not_stop_the_batch(
    stderr: str, tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    """`sew ... 2>&-` (cron) or `2>>log` on a full disk: the messages are lost, not the work or the status."""
    if stderr == "full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    good = write_audio(tmp_path / "good.wav", 1.0)
    args = [*SEW, "transcribe", "-m", str(tiny_sew_dir), "--threads", "1", str(empty), str(good)]
    expected = _invoke(args[3:])  # the same run with a working stderr, in this process
    assert expected.exit_code == 1 and f"==> {good} <==" in expected.stdout
    with open("/dev/full" if stderr == "full" else os.devnull, "w") as err:
        result = subprocess.run(
            args,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=_env(clean_env),
            timeout=TIMEOUT,
            preexec_fn=(lambda: os.close(2)) if stderr == "closed" else None,
        )
    assert result.returncode == 1
    assert result.stdout == expected.stdout


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_stdout_on_a_full_disk(tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]) -> None:
    good = write_audio(tmp_path / "good.wav", 1.0)
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [*SEW, "transcribe", "-m", str(tiny_sew_dir), "--threads", "1", str(good)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(clean_env),
            timeout=TIMEOUT,
        )
    assert result.returncode == 1
    assert _error_lines(result.stderr) == [f"error: {good}: <stdout>: cannot write: No space left on device"]
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


def _no_space(after: int) -> object:
    """An os.fsync that fails with ENOSPC from call number `after` on (a disk that fills up mid-run)."""
    calls = {"n": 0}
    real = os.fsync

    def fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    return fsync


def test_disk_full_mid_run(tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]) -> None:
    wavs = [write_audio(tmp_path / f"{n}.wav", 1.0, seed=i) for i, n in enumerate("abc")]
    out = tmp_path / "out"
    # a.json, a.txt fit; then the disk is full
    with mock.patch.object(outputs.os, "fsync", _no_space(after=2)):
        result = _invoke(
            [
                "transcribe",
                "-m",
                str(tiny_sew_dir),
                "-o",
                str(out),
                "-f",
                "json",
                "-f",
                "txt",
                "--threads",
                "1",
                *map(str, wavs),
            ]
        )
    assert result.exit_code == 1
    errors = _error_lines(result.stderr)
    assert errors == [
        f"error: {tmp_path / n}.wav: {out / n}.json: cannot write: No space left on device" for n in "bc"
    ]
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.txt"]
    assert json.loads((out / "a.json").read_text(encoding="utf-8"))["duration"] == pytest.approx(1.0)


def test_file_size_limit_is_a_real_write_failure(
    tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    """RLIMIT_FSIZE makes the kernel refuse big writes (EFBIG): the big output fails cleanly, the small one is
    written, and no partial file survives."""
    small = write_audio(tmp_path / "small.wav", 0.5, seed=1)
    big = write_audio(tmp_path / "big.wav", 8.0, seed=2)
    out, ref = tmp_path / "out", tmp_path / "ref"
    reference = _invoke(
        [
            "transcribe",
            "-m",
            str(tiny_sew_dir),
            "-o",
            str(ref),
            "-f",
            "json",
            "--threads",
            "1",
            str(big),
            str(small),
        ]
    )
    assert reference.exit_code == 0, reference.stderr
    sizes = {p.stem: p.stat().st_size for p in ref.iterdir()}
    assert sizes["small"] < sizes["big"] // 2
    cap = (sizes["small"] + sizes["big"]) // 2  # the small output fits, the big one does not

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))

    result = _sew(
        [
            "transcribe",
            "-m",
            str(tiny_sew_dir),
            "-o",
            str(out),
            "-f",
            "json",
            "--threads",
            "1",
            str(big),
            str(small),
        ],
        clean_env,
        preexec_fn=limit,
    )
    assert result.returncode == 1, result.stderr
    assert _error_lines(result.stderr) == [f"error: {big}: {out / 'big.json'}: cannot write: File too large"]
    assert sorted(p.name for p in out.iterdir()) == ["small.json"]
    assert (out / "small.json").read_bytes() == (ref / "small.json").read_bytes()
    assert json.loads((out / "small.json").read_text(encoding="utf-8"))["duration"] == pytest.approx(0.5)


@pytest.mark.parametrize("unbuffered", [True, False])
def test_stdout_cut_by_file_size_limit_is_an_error(
    unbuffered: bool, tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    """`sew ... > file` that the kernel cuts short (EFBIG) fails that input with one error line, also under
    PYTHONUNBUFFERED=1, where Python's unbuffered stdout drops a short write's count; no interpreter message
    and no exit status 120 from bytes left in stdout's buffer."""
    big = write_audio(tmp_path / "big.wav", 8.0, seed=2)
    small = write_audio(tmp_path / "small.wav", 0.5, seed=1)
    args = ["transcribe", "-m", str(tiny_sew_dir), "-f", "jsonl", "--threads", "1", str(big), str(small)]
    reference = _invoke(args)
    assert reference.exit_code == 0, reference.stderr
    first_line = reference.stdout.splitlines(keepends=True)[0]
    cap = len(first_line.encode("utf-8")) // 2  # the first input's line is cut in the middle

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))

    env = {k: v for k, v in _env(clean_env).items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    target = tmp_path / "out.jsonl"
    with target.open("wb") as fh:
        result = subprocess.run(
            [*SEW, *args],
            stdout=fh,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=TIMEOUT,
            preexec_fn=limit,
        )
    assert result.returncode == 1, result.stderr
    assert _error_lines(result.stderr) == [
        f"error: {name}: <stdout>: cannot write: File too large" for name in (big, small)
    ]
    assert "Exception ignored" not in result.stderr and "Traceback" not in result.stderr
    assert target.read_bytes() == first_line.encode("utf-8")[:cap]


@pytest.mark.parametrize("kind", ["under-a-file", "read-only"])
def test_unwritable_output_dir(
    kind: str, tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    wav = write_audio(tmp_path / "a.wav", 1.0)
    if kind == "under-a-file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
        context = mock.patch.object(outputs.tempfile, "mkstemp", wraps=outputs.tempfile.mkstemp)
    else:  # root ignores permissions, so the refusal is simulated at the one call that creates files
        out = tmp_path / "ro"
        out.mkdir()
        context = mock.patch.object(
            outputs.tempfile, "mkstemp", side_effect=PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        )
    with context:
        result = _invoke(["transcribe", "-m", str(tiny_sew_dir), "-o", str(out), "--threads", "1", str(wav)])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {out}: output directory is not writable: "), line
    assert not list(tmp_path.rglob("*.txt")) and not _leftovers(tmp_path)


def test_two_processes_skip_existing_never_corrupt(
    tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    src, out, ref = tmp_path / "src", tmp_path / "out", tmp_path / "ref"
    for i in range(8):
        write_audio(src / f"f{i}.wav", 2.0, seed=i)
    base = [
        "transcribe",
        str(src),
        "-m",
        str(tiny_sew_dir),
        "-f",
        "json",
        "-f",
        "vtt",
        "--threads",
        "1",
        "-q",
    ]
    procs = [
        subprocess.Popen(
            [*SEW, *base, "-o", str(out), "--skip-existing"], stderr=subprocess.PIPE, env=_env(clean_env)
        )
        for _ in range(2)
    ]
    reference = _invoke([*base, "-o", str(ref)])  # meanwhile, in this process
    assert reference.exit_code == 0, reference.stderr
    for proc in procs:
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0 and not err, err.decode()
    names = sorted(p.name for p in ref.iterdir())
    assert len(names) == 16 and sorted(p.name for p in out.iterdir()) == names
    for name in names:  # byte-identical to a run that had the directory to itself
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name


# ------------------------------------------------------------------------------------------------------------
# a 3-hour input: peak memory of the process stays flat


def _tone_file(path: Path, minutes: int, rate: int = 8000) -> Path:
    """FLAC (16-bit, 8 kHz) of tone bursts and silence, written one minute at a time (small on disk)."""
    t = np.arange(60 * rate) / rate
    minute = (0.3 * np.sin(2 * np.pi * 300 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)).astype(np.float32)
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        for _ in range(minutes):
            f.write(minute)
    return path


def _peak_rss_mb(args: list[str], clean_env: dict[str, str], log: Path) -> tuple[int, float]:
    """(exit status, peak RSS in MB) of one `sew` child: the largest VmHWM seen in /proc/PID/status.

    Not wait4's ru_maxrss: Linux carries the parent's high-water mark across fork + exec, so once this pytest
    process has grown (transformers tests earlier in a full session), ru_maxrss reports ~2.4 GB for any
    child. VmHWM belongs to the child's own address space (fresh at exec) and only grows, so the last reading
    before exit (sampled every 20 ms) is its peak.
    """
    peak_kb = 0
    with open(log, "w") as fh:
        proc = subprocess.Popen([*SEW, *args], stdout=fh, stderr=subprocess.STDOUT, env=_env(clean_env))
        try:
            while proc.poll() is None:
                try:
                    with open(f"/proc/{proc.pid}/status", encoding="ascii") as status:
                        for line in status:
                            if line.startswith("VmHWM:"):
                                peak_kb = max(peak_kb, int(line.split()[1]))
                except (OSError, ValueError):
                    pass  # the child exited between poll() and open()
                time.sleep(0.02)
        except BaseException:
            proc.kill()
            raise
    return proc.returncode, peak_kb / 1024  # VmHWM is in kB


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units differ outside Linux")
def test_three_hour_file_memory_stays_flat(
    tmp_path: Path, clean_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """3 h vs 10 min of 8 kHz audio through the whole CLI: the peak RSS grows by less than 40 MB.

    Holding the 3-h input would cost >= 345 MB (8 kHz float32), 691 MB after resampling to 16 kHz. The model
    is biased towards the blank so that the transcript, which grows with the speech in it (the greedy decoder
    keeps ~200 B per emitted character until the end), stays empty: this measures the audio path.
    """
    # The real SEW conv geometry with 2-8 channels: the 3 h run costs seconds of CPU instead of a minute.
    micro = {
        "conv_dim": [2] * 12 + [8],
        "hidden_size": 8,
        "num_attention_heads": 1,
        "intermediate_size": 16,
        "num_conv_pos_embeddings": 15,
        "num_conv_pos_embedding_groups": 2,
    }
    for key, value in micro.items():
        monkeypatch.setitem(conftest.TINY_SEW, key, value)
    model = write_sew_checkpoint(tmp_path / "quiet", blank_bias=30.0)
    results = {}
    for minutes in (10, 180):
        audio = _tone_file(tmp_path / f"{minutes}min.flac", minutes)
        out = tmp_path / f"out{minutes}"
        args = ["transcribe", "-m", str(model), "-o", str(out), "-f", "json", "--threads", "1", str(audio)]
        status, peak = _peak_rss_mb(args, clean_env, tmp_path / f"{minutes}.log")
        assert status == 0, (tmp_path / f"{minutes}.log").read_text()
        doc = json.loads((out / f"{minutes}min.json").read_text(encoding="utf-8"))
        assert doc["duration"] == pytest.approx(minutes * 60)
        results[minutes] = peak
        audio.unlink()
    print(f"peak RSS: {results[10]:.1f} MB (10 min), {results[180]:.1f} MB (3 h)")
    assert results[180] - results[10] < 40, (
        f"peak RSS {results[10]:.0f} MB (10 min) -> {results[180]:.0f} MB (3 h)"
    )
    assert results[180] < 1000, f"peak RSS {results[180]:.0f} MB"
