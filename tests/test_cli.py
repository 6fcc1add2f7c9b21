"""The `sew` CLI end to end on a tiny random SEW checkpoint: options, outputs, exit codes, signals, pipes.

In-process (typer's CliRunner) where possible; subprocesses for stdin pipes, `| head`, SIGINT and SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from unittest import mock

import conftest
import pytest
import srt
from conftest import write_audio
from typer.testing import CliRunner

from sewcli import cli, decoding, outputs, pipeline

runner = CliRunner()


def sew(*args: str, input: bytes | None = None) -> object:
    return runner.invoke(cli.app, list(args), input=input)


@pytest.fixture
def audio_tree(tmp_path: Path) -> Path:
    """d/a.wav, d/a.mp3 (same stem), d/sub/b.flac (44.1 kHz stereo), d/sub/c.ogg, d/notes.txt (ignored)."""
    d = tmp_path / "d"
    write_audio(d / "a.wav", 2.0, seed=1)
    write_audio(d / "a.mp3", 1.5, seed=2)
    write_audio(d / "sub" / "b.flac", 2.5, rate=44100, channels=2, seed=3)
    write_audio(d / "sub" / "c.ogg", 1.8, rate=22050, seed=4)
    (d / "notes.txt").write_text("not audio")
    return d


def _env(clean_env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **clean_env, "PYTHONUNBUFFERED": "1"}


def _part_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part") or p.name.startswith(".sew-write-test")]


# ----------------------------------------------------------------------------------------------------
# option resolution (the heavy call patched, the resolved request asserted)


def test_options_resolve_into_stage_dataclasses(tmp_path: Path, clean_env: dict[str, str]) -> None:
    with mock.patch.object(cli, "run_transcribe", return_value=0) as run:
        result = sew(
            "transcribe",
            "x.wav",
            "-",
            "--model",
            "sew-tiny",
            "--revision",
            "v1",
            "-f",
            "srt",
            "-f",
            "json",
            "-f",
            "srt",
            "-o",
            str(tmp_path / "out"),
            "--decoder",
            "beam",
            "--beam-width",
            "8",
            "--hotword",
            "sew",
            "--hotword",
            "new york",
            "--hotword-weight",
            "5",
            "--alpha",
            "0.7",
            "--chunk-length",
            "10",
            "--chunk-overlap",
            "1.5",
            "--device",
            "cpu",
            "--threads",
            "2",
            "--batch-size",
            "4",
            "--precision",
            "bf16",
            "--skip-existing",
            "--ext",
            "wav",
            "-q",
        )
    assert result.exit_code == 0, result.output
    (request,), _ = run.call_args
    assert request.inputs == ("x.wav", "-")
    assert (request.model, request.revision, request.quiet, request.verbose) == (
        "sew-tiny",
        "v1",
        True,
        False,
    )
    assert request.output == outputs.OutputOptions(
        formats=("srt", "json"),
        output_dir=tmp_path / "out",
        skip_existing=True,
        overwrite=False,
        extensions=("wav",),
    )
    p = request.pipeline
    assert isinstance(p, pipeline.PipelineOptions)
    assert (p.decode.kind, p.decode.beam_width, p.decode.hotwords) == ("beam", 8, ("sew", "new york"))
    assert (p.decode.hotword_weight, p.decode.alpha, p.decode.beta) == (5.0, 0.7, None)  # None: the LM's own
    assert (p.chunk.chunk_seconds, p.chunk.overlap_seconds) == (10.0, 1.5)
    assert (p.inference.device, p.inference.threads, p.inference.batch_size, p.inference.precision) == (
        "cpu",
        2,
        4,
        "bf16",
    )


@pytest.mark.parametrize(
    ("cpus", "given", "workers"), [(1, None, 0), (2, None, 2), (16, None, 4), (2, "0", 0)]
)
def test_beam_workers_default_to_one_per_cpu(cpus: int, given: str | None, workers: int) -> None:
    args = ["transcribe", "x.wav", "--decoder", "beam"] + ([] if given is None else ["--beam-workers", given])
    with (
        mock.patch.object(cli, "run_transcribe", return_value=0) as run,
        mock.patch.object(cli.os, "sched_getaffinity", return_value=set(range(cpus)), create=True),
    ):
        assert sew(*args).exit_code == 0
    (request,), _ = run.call_args
    assert request.pipeline.decode.workers == workers


def test_live_searches_in_process_unless_workers_are_asked_for() -> None:
    for extra, workers in (([], 0), (["--beam-workers", "2"], 2)):
        with (
            mock.patch.object(cli, "run_transcribe", return_value=0) as run,
            mock.patch.object(cli.os, "sched_getaffinity", return_value={0, 1}, create=True),
        ):
            assert sew("transcribe", "-", "--live", *extra).exit_code == 0
        (request,), _ = run.call_args
        assert request.pipeline.decode.workers == workers


def test_model_workers_one_with_live_unless_asked_for() -> None:
    cases = (([], [], None), ([], ["--live"], 1), (["--model-workers", "3"], ["--live"], 3))
    for extra, live, workers in cases:
        with mock.patch.object(cli, "run_transcribe", return_value=0) as run:
            assert sew("transcribe", "-", *live, *extra).exit_code == 0
        (request,), _ = run.call_args
        assert request.pipeline.inference.workers == workers  # None: inference.cpu_workers decides


def test_batch_size_one_with_live_unless_asked_for() -> None:
    cases = (
        ([], [], None),
        ([], ["--live"], 1),
        (["--batch-size", "8"], ["--live"], 8),
        (["--batch-size", "2"], [], 2),
    )
    for extra, live, size in cases:
        with mock.patch.object(cli, "run_transcribe", return_value=0) as run:
            assert sew("transcribe", "-", *live, *extra).exit_code == 0
        (request,), _ = run.call_args
        assert request.pipeline.inference.batch_size == size  # None: by device (inference.default_batch_size)


def test_defaults(clean_env: dict[str, str]) -> None:
    with mock.patch.object(cli, "run_transcribe", return_value=0) as run:
        assert sew("transcribe", "x.wav").exit_code == 0
    (request,), _ = run.call_args
    assert request.model is None and request.output == outputs.OutputOptions()
    defaults = pipeline.PipelineOptions()
    # the one CLI-level default: beam-search worker processes, in case "auto" becomes a beam search
    workers = cli._beam_workers(None)
    assert request.pipeline == replace(defaults, decode=replace(defaults.decode, workers=workers))
    assert request.pipeline.decode.kind == "auto"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--decoder", "greedy", "--lm", "x.arpa"], "need --decoder beam"),
        (["--decoder", "greedy", "--hotword", "x"], "need --decoder beam"),
        (["--decoder", "greedy", "--beam-workers", "2"], "need --decoder beam"),
        (["--decoder", "greedy", "--no-lm"], "need --decoder beam"),
        (["--decoder", "beam", "--lm", "x.arpa", "--no-lm"], "contradict"),
        (["--chunk-length", "2", "--chunk-overlap", "3"], "overlap"),
        (["--chunk-length", "1e6"], "chunk length must be at most 600 seconds"),
        (["--chunk-length", "1e20"], "chunk length must be at most 600 seconds"),
        (["-o", ""], "must not be empty"),
        (["-o", " "], "must not be empty"),
        (["--ext", ""], "--ext needs extensions"),
        (["--ext", "wav,"], "--ext needs extensions"),
        (["-f", "srt", "-f", "txt"], "several formats need --output-dir: stdout takes one format"),
        (["--skip-existing", "--overwrite"], "cannot be combined"),
        (["--model", "no-such-model"], "known models: "),
        (["--device", "tpu"], "tpu"),
        (["--model-workers", "0"], "--model-workers"),
        (["--alpha", "nan"], "--alpha must be a finite number, got nan"),
        (["--beta", "inf"], "--beta must be a finite number, got inf"),
        (["--hotword-weight", "nan"], "--hotword-weight must be a finite number"),
        (["--pause-break", "nan"], "--pause-break must be a finite number, got nan"),
        (["--pause-break", "-1"], "--pause-break must be >= 0 seconds"),
        (["--exit-threshold", "nan"], "--exit-threshold must be a finite number, got nan"),
        (["--exit-threshold", "1.5"], "--exit-threshold must be in [0, 1]"),
        (["--hotword", "  "], "--hotword must not be empty"),
    ],
)
def test_usage_errors_exit_2(args: list[str], needle: str, tmp_path: Path, clean_env: dict[str, str]) -> None:
    wav = write_audio(tmp_path / "a.wav", 1.0)
    result = sew("transcribe", str(wav), *args)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_windows_too_short_for_the_model_are_one_usage_error_not_one_per_input(
    audio_tree: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    result = sew("transcribe", str(audio_tree), "-m", str(tiny_sew_dir), "--chunk-length", "0.01", "-q")
    assert result.exit_code == 2, result.output
    assert result.stderr.count("shorter than the model minimum") == 1 and result.stdout == ""


def test_several_inputs_need_output_dir_for_non_txt(audio_tree: Path, clean_env: dict[str, str]) -> None:
    result = sew("transcribe", str(audio_tree), "-f", "json")
    assert result.exit_code == 2 and "several inputs in json need --output-dir" in result.stderr


def test_several_inputs_as_json_lines_on_stdout(audio_tree: Path, tiny_sew_dir: Path, tmp_path: Path) -> None:
    """`sew transcribe DIR -f jsonl | jq`: one transcript document per line, no headers; a bad input is an
    error line on stderr and no line on stdout."""
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    result = sew("transcribe", str(audio_tree), str(bad), "-f", "jsonl", "-m", str(tiny_sew_dir), "-q")
    assert result.exit_code == 1 and "bad.wav" in result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(d["source"]).name for d in docs] == ["a.mp3", "a.wav", "b.flac", "c.ogg"]
    single = sew("transcribe", str(audio_tree / "a.wav"), "-f", "json", "-m", str(tiny_sew_dir), "-q")
    assert docs[1] == json.loads(single.stdout)


# ----------------------------------------------------------------------------------------------------
# end to end, in process


def test_single_file_to_stdout(tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]) -> None:
    wav = write_audio(tmp_path / "a.wav", 2.0)
    result = sew("transcribe", str(wav), "-m", str(tiny_sew_dir))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() and result.stdout.endswith("\n") and "==>" not in result.stdout
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("sew: 1 file transcribed, 0 failed;") and "real-time factor" in summary
    quiet = sew("transcribe", str(wav), "-m", str(tiny_sew_dir), "-q")
    assert quiet.stdout == result.stdout and quiet.stderr == ""


def test_directory_to_output_dir_mirrors_the_tree(
    audio_tree: Path, tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    result = sew(
        "transcribe", str(audio_tree), "-o", str(out), "-f", "srt", "-f", "json", "-m", str(tiny_sew_dir)
    )
    assert result.exit_code == 0, result.stderr
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "a.mp3.json",
        "a.mp3.srt",
        "a.wav.json",
        "a.wav.srt",  # same stem: both keep the extension
        "sub/b.json",
        "sub/b.srt",
        "sub/c.json",
        "sub/c.srt",
    ]
    doc = json.loads((out / "sub" / "b.json").read_text(encoding="utf-8"))
    assert doc["source"] == str(audio_tree / "sub" / "b.flac") and doc["duration"] == pytest.approx(2.5)
    cues = list(srt.parse((out / "sub" / "b.srt").read_text(encoding="utf-8")))
    assert " ".join(c.content.replace("\n", " ") for c in cues).split() == doc["text"].split()
    assert "4 files transcribed, 0 failed" in result.stderr


def test_a_line_break_in_a_file_name_keeps_its_header_on_one_line(tmp_path: Path, tiny_sew_dir: Path) -> None:
    odd = write_audio(tmp_path / "two\nlines.wav", 1.0)
    plain = write_audio(tmp_path / "plain.wav", 1.0)
    result = sew("transcribe", str(odd), str(plain), "-m", str(tiny_sew_dir), "-q")
    assert result.exit_code == 0, result.stderr
    headers = [line for line in result.stdout.splitlines() if line.startswith("==> ")]
    assert headers == [f"==> {tmp_path}/two\\nlines.wav <==", f"==> {plain} <=="]


def test_several_files_print_txt_with_headers(
    audio_tree: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    names = [str(audio_tree / "a.mp3"), str(audio_tree / "sub" / "b.flac"), str(audio_tree / "sub" / "c.ogg")]
    result = sew("transcribe", *names, "-m", str(tiny_sew_dir))
    assert result.exit_code == 0, result.stderr
    headers = [line for line in result.stdout.splitlines() if line.startswith("==> ")]
    assert headers == [f"==> {n} <==" for n in names]
    single = sew("transcribe", names[1], "-m", str(tiny_sew_dir), "-q").stdout
    assert f"==> {names[1]} <==\n{single}" in result.stdout


def test_bad_inputs_are_reported_and_the_rest_is_done(
    audio_tree: Path, tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    (audio_tree / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    (audio_tree / "sub" / "empty.flac").write_bytes(b"")
    out = tmp_path / "out"
    missing = str(tmp_path / "missing.wav")
    result = sew("transcribe", str(audio_tree), missing, "-o", str(out), "-m", str(tiny_sew_dir))
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert sorted(e.split(":")[1].strip() for e in errors) == sorted(
        [str(audio_tree / "broken.wav"), str(audio_tree / "sub" / "empty.flac"), missing]
    )
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in out.rglob("*.txt")) == ["a.mp3.txt", "a.wav.txt", "b.txt", "c.txt"]
    assert not _part_files(out)
    assert "4 files transcribed, 3 failed" in result.stderr
    verbose = sew("transcribe", str(audio_tree / "broken.wav"), "-m", str(tiny_sew_dir), "-v")
    assert verbose.exit_code == 1 and "Traceback" in verbose.stderr


def test_existing_outputs_skip_overwrite_or_fail(
    tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    wav = write_audio(tmp_path / "a.wav", 1.5)
    out = tmp_path / "out"
    target = out / "a.txt"
    assert sew("transcribe", str(wav), "-o", str(out), "-m", str(tiny_sew_dir)).exit_code == 0
    original = target.read_text()
    target.write_text("edited\n")
    refused = sew("transcribe", str(wav), "-o", str(out), "-m", str(tiny_sew_dir))
    assert (
        refused.exit_code == 1 and f"{target} exists" in refused.stderr and target.read_text() == "edited\n"
    )
    skipped = sew("transcribe", str(wav), "-o", str(out), "-m", str(tiny_sew_dir), "--skip-existing")
    assert skipped.exit_code == 0 and "1 skipped" in skipped.stderr and target.read_text() == "edited\n"
    # some formats there, some missing: the missing ones are written, the existing one is kept
    both = ("-f", "txt", "-f", "srt", "--skip-existing")
    filled = sew("transcribe", str(wav), "-o", str(out), "-m", str(tiny_sew_dir), *both)
    assert filled.exit_code == 0 and "1 file transcribed" in filled.stderr, filled.stderr
    assert target.read_text() == "edited\n" and (out / "a.srt").is_file()
    replaced = sew("transcribe", str(wav), "-o", str(out), "-m", str(tiny_sew_dir), "--overwrite")
    assert replaced.exit_code == 0 and target.read_text() == original
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_unwritable_output_dir(tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]) -> None:
    wav = write_audio(tmp_path / "a.wav", 1.0)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = sew("transcribe", str(wav), "-o", str(blocker / "out"), "-m", str(tiny_sew_dir))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {blocker / 'out'}: output directory is not writable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_dir(tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]) -> None:
    wav = write_audio(tmp_path / "a.wav", 1.0)
    out = tmp_path / "ro"
    out.mkdir(mode=0o555)
    result = sew("transcribe", str(wav), "-o", str(out), "-m", str(tiny_sew_dir))
    assert result.exit_code == 1 and "not writable" in result.stderr


def test_write_atomic_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    target.write_text("old")

    def boom(fh: object) -> None:
        fh.write("partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        outputs.write_atomic(target, boom, 0o644)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_output_names_never_collide_or_escape(tmp_path: Path) -> None:
    jobs = [
        outputs.Job("d1/x.wav", "d1/x.wav", Path("x"), Path("x.wav")),
        outputs.Job("d2/x.wav", "d2/x.wav", Path("x"), Path("x.wav")),
        outputs.Job("e/../../evil.wav", "e/../../evil.wav", Path("../../evil"), Path("../../evil.wav")),
    ]
    paths, problems = outputs.output_paths(jobs, tmp_path / "out", ("srt",))
    assert paths == {0: {"srt": tmp_path / "out" / "x.wav.srt"}}
    assert [i for i, _ in problems] == [1, 2]
    assert "would overwrite the output of d1/x.wav" in problems[0][1] and "outside" in problems[1][1]


def test_offline_model_not_cached_is_one_clear_line(tmp_path: Path, clean_env: dict[str, str]) -> None:
    wav = write_audio(tmp_path / "a.wav", 1.0)
    result = sew("transcribe", str(wav), "-m", "sew-d-tiny")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: sew-d-tiny: ")
    assert "sew models download sew-d-tiny" in result.stderr and "HF_HUB_OFFLINE" in result.stderr


def test_hub_id_from_a_fake_cache(tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]) -> None:
    from test_hub import make_fake_cache

    files = {p.name: p.read_bytes() for p in tiny_sew_dir.iterdir()}
    make_fake_cache(Path(clean_env["HF_HUB_CACHE"]), "someorg/tiny-sew", files)
    wav = write_audio(tmp_path / "a.wav", 1.0)
    via_hub = sew("transcribe", str(wav), "-m", "someorg/tiny-sew", "-q")
    via_dir = sew("transcribe", str(wav), "-m", str(tiny_sew_dir), "-q")
    assert via_hub.exit_code == 0, via_hub.stderr
    assert via_hub.stdout == via_dir.stdout


# ----------------------------------------------------------------------------------------------------
# models commands


def test_models_list_info_download(tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]) -> None:
    user = tmp_path / "extra.toml"
    user.write_text(f'[models.mine]\npath = "{tiny_sew_dir}"\narch = "sew"\nlanguage = "en"\n')
    listed = sew("models", "list", "--registry", str(user))
    assert listed.exit_code == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:] if line.strip()}
    assert rows["sew-tiny"][1:5] == ["sew", "40.7M", "en", "no"]
    assert rows["mine"][2] == "0.0232M"  # counted from the safetensors header (23,240 parameters)
    assert rows["wav2vec2-base-960h"][1] == "wav2vec2" and rows["sew-d-tiny"][1] == "sew-d"
    assert rows["mine"][4] == "local"
    assert "sew-synth-en" in rows
    local = sew("models", "info", str(tiny_sew_dir))
    assert (
        local.exit_code == 0
        and "SEWForCTC (sew), 32 output tokens, 16000 Hz, safetensors weights" in local.stdout
    )
    info = sew("models", "info", "sew-d-mid")
    assert info.exit_code == 0
    assert (
        "asapp/sew-d-mid-400k-ft-ls100h@main" in info.stdout
        and "sew models download sew-d-mid" in info.stdout
    )
    unknown = sew("models", "info", "nope")
    assert unknown.exit_code == 2 and "known models:" in unknown.stderr
    offline = sew("models", "download", "sew-tiny")
    assert offline.exit_code == 1 and "HF_HUB_OFFLINE" in offline.stderr


# ----------------------------------------------------------------------------------------------------
# subprocesses: stdin, pipes, signals


def test_stdin_equals_file(tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]) -> None:
    wav = write_audio(tmp_path / "a.wav", 2.0, seed=7)
    cmd = [sys.executable, "-m", "sewcli", "transcribe", "-m", str(tiny_sew_dir), "-q"]
    with open(wav, "rb") as fh:
        piped = subprocess.run([*cmd, "-"], stdin=fh, capture_output=True, env=_env(clean_env), timeout=120)
    direct = sew("transcribe", str(wav), "-m", str(tiny_sew_dir), "-q")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.decode() == direct.stdout and len(direct.stdout.split()) > 0


_SPY_EXIT = """
import atexit, os, sys
real_exit = os._exit
def spy(code):
    os.write(2, b"os._exit(%d)\\n" % code)
    real_exit(code)
os._exit = spy
atexit.register(lambda: os.write(2, b"atexit handler ran\\n"))
sys.argv = ["sew", *sys.argv[1:]]
from sewcli.cli import main
main()
"""


def test_a_finished_run_skips_the_interpreter_teardown_after_the_exit_handlers(
    tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    """Once torch is loaded, sew leaves with os._exit (the teardown costs 0.3-1 s): the exit status, the
    transcript on stdout, the output files and the atexit handlers must be what a normal exit gives."""
    good = write_audio(tmp_path / "a.wav", 2.0, seed=7)
    bad = tmp_path / "b.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    expected = sew("transcribe", str(good), "-m", str(tiny_sew_dir), "-q").stdout
    cmd = [sys.executable, "-c", _SPY_EXIT, "transcribe", "-m", str(tiny_sew_dir), "-f", "txt", "-f", "json"]
    ok = subprocess.run(
        [*cmd, str(good), "-o", str(tmp_path / "out")], capture_output=True, env=_env(clean_env), timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr.decode().endswith("atexit handler ran\nos._exit(0)\n")  # handlers first, then exit
    assert json.loads((tmp_path / "out" / "a.json").read_text())["text"] == expected.strip()
    mixed = subprocess.run(
        [*cmd[:-4], str(good), str(bad)], capture_output=True, env=_env(clean_env), timeout=120
    )
    # one input failed: status 1, the other's transcript kept
    assert mixed.returncode == 1 and mixed.stdout.decode().endswith(expected)
    assert b"b.wav" in mixed.stderr and mixed.stderr.endswith(b"os._exit(1)\n")


def test_the_teardown_is_kept_while_anything_could_still_be_running(monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing

    exits: list[int] = []
    monkeypatch.setattr(os, "_exit", exits.append)
    monkeypatch.setattr("atexit._run_exitfuncs", lambda: None)
    # this test process's own threads and children (other tests may leave some) are not the point here
    monkeypatch.setattr(multiprocessing, "active_children", list)
    stop = threading.Event()
    daemon = threading.Thread(target=stop.wait, daemon=True)  # daemon threads do not hold up an exit
    worker = threading.Thread(target=stop.wait)
    monkeypatch.setattr(threading, "enumerate", lambda: [threading.current_thread(), daemon])
    daemon.start()
    worker.start()
    try:
        cli._exit_without_teardown(SystemExit(None))
        cli._exit_without_teardown(SystemExit(3))
        assert exits == [0, 3]
        cli._exit_without_teardown(SystemExit("a message for stderr"))  # Python prints it: normal exit
        monkeypatch.setattr(threading, "enumerate", lambda: [threading.current_thread(), daemon, worker])
        cli._exit_without_teardown(SystemExit(0))  # a non-daemon thread: the interpreter waits for it
        monkeypatch.setattr(threading, "enumerate", lambda: [threading.current_thread()])
        monkeypatch.setattr(multiprocessing, "active_children", lambda: [object()])
        cli._exit_without_teardown(SystemExit(0))  # a child process still running
    finally:
        stop.set()
        daemon.join()
        worker.join()
    assert exits == [0, 3]


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="no pseudo-terminals here")
def test_redirected_stdout_gets_the_transcript_while_the_progress_bar_is_on_the_terminal(
    tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    """`sew transcribe a.wav > out.txt` in a terminal: the progress bar (stderr is a tty) must not take
    stdout with it (rich redirects stdout into its stderr console by default)."""
    wav = write_audio(tmp_path / "a.wav", 2.0, seed=7)
    expected = sew("transcribe", str(wav), "-m", str(tiny_sew_dir), "-q").stdout
    term, tty = os.openpty()
    try:
        with open(tmp_path / "out.txt", "wb") as out:
            cmd = [sys.executable, "-m", "sewcli", "transcribe", str(wav), "-m", str(tiny_sew_dir)]
            proc = subprocess.run(cmd, stdout=out, stderr=tty, env=_env(clean_env), timeout=120)
    finally:
        os.close(tty)
    shown = b""
    with contextlib.suppress(OSError):  # EIO once the terminal's other end is closed and drained
        while chunk := os.read(term, 65536):
            shown += chunk
    os.close(term)
    assert proc.returncode == 0, shown
    assert (tmp_path / "out.txt").read_text() == expected and expected.strip()
    assert expected.strip().encode() not in shown and b"1 file transcribed" in shown


def test_closed_stdout_ends_quietly(tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]) -> None:
    src = tmp_path / "src"
    for i in range(8):  # enough work left after the first transcript that the reader leaves mid-run
        write_audio(src / f"f{i}.wav", 20.0, seed=i)
    cmd = [sys.executable, "-m", "sewcli", "transcribe", str(src), "-m", str(tiny_sew_dir), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(clean_env))
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # like `| head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == cli.EXIT_SIGPIPE, err
    assert first == f"==> {src / 'f0.wav'} <==\n".encode()
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_batch(
    sig: int, code: int, tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    src = tmp_path / "many"
    for i in range(24):
        write_audio(src / f"f{i:02d}.wav", 25.0, seed=i)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "sewcli",
        "transcribe",
        str(src),
        "-o",
        str(out),
        "-f",
        "json",
        "-m",
        str(tiny_sew_dir),
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(clean_env))
    deadline = time.monotonic() + 120
    while not list(out.glob("*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err.decode()
    done = sorted(out.glob("*.json"))
    assert 1 <= len(done) < 24, "the signal must arrive mid-batch for this test to mean anything"
    for path in done:  # every finished file is complete
        assert json.loads(path.read_text(encoding="utf-8"))["duration"] == pytest.approx(25.0)
    assert not _part_files(out)
    assert b"Traceback" not in err


def test_two_processes_share_an_output_dir(
    tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    src = tmp_path / "src"
    for i in range(6):
        write_audio(src / f"f{i}.wav", 3.0, seed=i)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "sewcli",
        "transcribe",
        str(src),
        "-o",
        str(out),
        "-f",
        "json",
        "-f",
        "srt",
        "-m",
        str(tiny_sew_dir),
        "--skip-existing",
        "--threads",
        "1",
        "-q",
    ]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, env=_env(clean_env)) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"f{i}.{x}" for i in range(6) for x in ("json", "srt")
    )
    for i in range(6):
        doc = json.loads((out / f"f{i}.json").read_text(encoding="utf-8"))
        assert doc["duration"] == pytest.approx(3.0)
        assert (
            " ".join(c.content for c in srt.parse((out / f"f{i}.srt").read_text(encoding="utf-8"))).split()
            == doc["text"].split()
        )


def test_readme_quick_start_is_two_commands_and_ci_runs_its_test_command() -> None:
    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", quick, re.S)
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    install_run, install_test = commands
    assert install_run.endswith("&& sew transcribe examples/hello.wav")
    assert (root / "examples" / "hello.wav").is_file()
    test_command = install_test.rsplit("&& ", 1)[1]
    assert test_command == "python -m pytest -q"
    assert test_command in (root / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("env", "torch_loaded", "expected"),
    [
        ({}, False, "10000"),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, False, None),  # the user's choice stands
        ({"GOMP_SPINCOUNT": "300000"}, False, "300000"),
        ({}, True, None),  # too late: libgomp read its environment when torch was loaded
    ],
)
def test_openmp_threads_spin_briefly_unless_the_user_chose(
    env: dict[str, str], torch_loaded: bool, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    modules = dict(sys.modules)
    if not torch_loaded:
        modules.pop("torch", None)
    else:
        modules.setdefault("torch", object())
    monkeypatch.setattr(cli.sys, "modules", modules)
    cli._short_openmp_spin()
    assert os.environ.get("GOMP_SPINCOUNT") == expected


def test_models_info_shows_the_language_model(clean_env: dict[str, str]) -> None:
    result = sew("models", "info", "sew-synth-en")
    assert result.exit_code == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("language model"))
    arpa = Path(cli.__file__).parent / "assets" / "sew-synth-en" / "language_model" / "lm.arpa.gz"
    assert f"lm.arpa.gz ({arpa.stat().st_size / 1e6:.1f} MB)" in line and "beam search" in line


def test_version_and_short_help() -> None:
    from sewcli import __version__

    version = sew("--version")
    assert version.exit_code == 0 and version.stdout == f"sew {__version__}\n"
    for args in (["-h"], ["transcribe", "-h"], ["models", "-h"]):
        shown = sew(*args)
        assert shown.exit_code == 0 and shown.stdout.startswith("Usage: "), (args, shown.stdout[:80])


def test_ext_takes_comma_separated_extensions(
    tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    tree = tmp_path / "in"
    for name in ("a.wav", "b.flac", "c.ogg"):
        write_audio(tree / name, 1.0)
    result = sew("transcribe", str(tree), "-m", str(tiny_sew_dir), "--ext", "wav, .flac", "-f", "jsonl")
    assert result.exit_code == 0, result.stderr
    assert [Path(json.loads(line)["source"]).name for line in result.stdout.splitlines()] == [
        "a.wav",
        "b.flac",
    ]


def test_a_stale_default_model_does_not_lock_out_other_models(
    tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    config = tmp_path / "sew" / "models.toml"
    config.parent.mkdir()
    config.write_text('[defaults]\nmodel = "old-model"\n', encoding="utf-8")
    wav = write_audio(tmp_path / "a.wav", 1.0)
    with mock.patch.dict(os.environ, {"XDG_CONFIG_HOME": str(tmp_path)}):
        listed = sew("models", "list")
        explicit = sew("transcribe", str(wav), "-m", str(tiny_sew_dir), "-q")
        default = sew("transcribe", str(wav), "-q")
    assert listed.exit_code == 0 and "sew-synth-en" in listed.stdout
    assert listed.stderr.startswith(
        f"warning: {config}: [defaults] model 'old-model' is not a registry entry"
    )
    assert explicit.exit_code == 0, explicit.stderr
    assert default.exit_code == 2 and default.stderr.startswith(
        f"error: {config}: [defaults] model 'old-model'"
    )


def test_models_info_without_a_language_model(tiny_sew_dir: Path, clean_env: dict[str, str]) -> None:
    result = sew("models", "info", str(tiny_sew_dir))
    assert result.exit_code == 0, result.stderr
    assert "language model  none (the default decoder is greedy)" in result.stdout


@pytest.mark.parametrize(
    ("args", "window"),
    [
        ([], (10.0, 1.0)),  # the registry's chunk_length for sew-synth-en, overlap a tenth of it
        (["--chunk-overlap", "2"], (10.0, 2.0)),  # the user's overlap is kept
        (["--chunk-length", "20"], (20.0, 2.0)),  # the user's window wins
        (["--live"], (5.0, 0.5)),  # --live: shorter windows, for less delay
        (["--live", "--chunk-length", "10"], (10.0, 1.0)),
    ],
)
def test_the_registry_window_applies_unless_the_command_line_sets_one(
    args: list[str], window: tuple[float, float], clean_env: dict[str, str]
) -> None:
    with mock.patch.object(cli, "run_transcribe", return_value=0) as run:
        assert sew("transcribe", "x.wav", *args).exit_code == 0
    (request,), _ = run.call_args
    _, decoder, options = cli._load(request)
    decoder.close()
    assert (options.chunk.chunk_seconds, options.chunk.overlap_seconds) == window
    assert options.decode.kind == "beam" and options.decode.lm_path.endswith("language_model")


@pytest.mark.parametrize(("live", "window"), [([], (30.0, 3.0)), (["--live"], (5.0, 0.5))])
def test_live_caps_the_default_window_of_a_model_without_a_registry_window(
    live: list[str], window: tuple[float, float], tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    with mock.patch.object(cli, "run_transcribe", return_value=0) as run:
        assert sew("transcribe", "x.wav", "-m", str(tiny_sew_dir), *live).exit_code == 0
    (request,), _ = run.call_args
    _, decoder, options = cli._load(request)
    decoder.close()
    assert (options.chunk.chunk_seconds, options.chunk.overlap_seconds) == window
    # a beam piece without a pause ends after 8 s with --live (60 s otherwise)
    assert options.decode.max_piece_seconds == (cli.LIVE_MAX_PIECE_SECONDS if live else 60.0)


@pytest.mark.parametrize(
    ("args", "seconds"),
    [
        ([], 0.5),  # the registry's pause_break for sew-synth-en
        (["--pause-break", "0"], 0.0),  # off: transformers' greedy text
        (["--pause-break", "1.5"], 1.5),
    ],
)
def test_the_registry_pause_break_applies_unless_the_command_line_sets_one(
    args: list[str], seconds: float, clean_env: dict[str, str]
) -> None:
    with mock.patch.object(cli, "run_transcribe", return_value=0) as run:
        assert sew("transcribe", "x.wav", "--decoder", "greedy", *args).exit_code == 0
    (request,), _ = run.call_args
    _, decoder, options = cli._load(request)
    assert options.decode.pause_break_seconds == seconds
    assert decoder.pause_break_seconds == seconds  # type: ignore[attr-defined]


def test_pause_break_is_for_the_greedy_decoder(clean_env: dict[str, str]) -> None:
    result = sew("transcribe", "x.wav", "--pause-break", "1", "--decoder", "beam")
    assert result.exit_code == 2 and "--pause-break applies to the greedy decoder" in result.stderr
    with mock.patch.object(cli, "run_transcribe", return_value=0) as run:
        assert sew("transcribe", "x.wav", "--pause-break", "1").exit_code == 0
    (request,), _ = run.call_args
    with mock.patch.object(cli.log, "warning") as warning:
        _, decoder, _ = cli._load(request)  # auto: the embedded model ships an LM, so beam search
    decoder.close()
    assert decoder.kind == "beam"
    warning.assert_called_once()
    assert "--pause-break has no effect" in warning.call_args.args[0]


def test_pause_break_must_be_a_finite_number_of_seconds(clean_env: dict[str, str]) -> None:
    for value in ("-1", "nan", "inf"):
        result = sew("transcribe", "x.wav", "--pause-break", value)
        assert result.exit_code == 2, value
        assert "pause-break" in result.stderr and "Traceback" not in result.stderr, result.stderr


# ----------------------------------------------------------------------------------------------------
# --live


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_live_output_equals_the_batch_output(tmp_path: Path, tiny_sew_dir: Path, decoder: str) -> None:
    """Segment by segment, --live prints the same cues as the batch writers; its txt is the same words,
    a line per segment. (Same windows and the same beam piece limit: --live's own limit, 8 s instead of
    60 s, may cut a long stretch of speech with no pause where the batch search does not.)"""
    wav = write_audio(tmp_path / "a.wav", 25.0 if decoder == "greedy" else 12.0, seed=3)
    common = (str(wav), "-m", str(tiny_sew_dir), "-q", "--decoder", decoder, "--chunk-length", "5")
    with mock.patch.object(cli, "LIVE_MAX_PIECE_SECONDS", decoding.DecodeOptions.max_piece_seconds):
        for fmt in ("srt", "vtt", "tsv") if decoder == "greedy" else ("srt",):
            batch = sew("transcribe", *common, "-f", fmt)
            live = sew("transcribe", *common, "-f", fmt, "--live")
            assert live.exit_code == batch.exit_code == 0, live.stderr
            assert live.stdout == batch.stdout and batch.stdout.count("\n") > 4  # several cues
        batch = sew("transcribe", *common)
        live = sew("transcribe", *common, "--live")
    assert live.stdout.split() == batch.stdout.split() and live.stdout.count("\n") > 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("-f", "json"), "--live prints one format"),
        (("-f", "srt", "-f", "vtt"), "--live prints one format"),
        (("--output-dir", "out"), "--live prints one format"),
        (("SECOND",), "--live takes one input"),
    ],
)
def test_live_usage_errors(tmp_path: Path, tiny_sew_dir: Path, extra: tuple[str, ...], message: str) -> None:
    wav = write_audio(tmp_path / "a.wav", 1.0)
    second = str(write_audio(tmp_path / "b.wav", 1.0))
    extra = tuple(second if e == "SECOND" else str(tmp_path / e) if e == "out" else e for e in extra)
    result = sew("transcribe", str(wav), "-m", str(tiny_sew_dir), "--live", *extra)
    assert result.exit_code == 2 and message in result.stderr and result.stdout == ""


def test_live_prints_while_stdin_is_still_open(tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]):
    """`arecord | sew transcribe - --live`: the first segments come out while the writer is still writing
    (a piped WAV is read as it arrives); closing stdin then ends the run normally."""
    import soundfile as sf

    wav = write_audio(tmp_path / "a.wav", 60.0, seed=5, subtype="PCM_16")
    data = wav.read_bytes()
    header, body = data[:44], data[44:]
    assert sf.info(str(wav)).frames * 2 == len(body)
    cmd = [sys.executable, "-m", "sewcli", "transcribe", "-", "--live", "-m", str(tiny_sew_dir), "-q"]
    cmd += ["--decoder", "greedy", "--chunk-length", "5", "--threads", "1"]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(clean_env)
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(header + body[: len(body) // 2])  # the first 30 s
        proc.stdin.flush()
        # sew must print before stdin ends (a hang here would be the bug: wait 60 s at most)
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "nothing printed while stdin was open"
        first = proc.stdout.readline()
        assert first.strip()
        proc.stdin.write(body[len(body) // 2 :])
        proc.stdin.close()
        rest = proc.stdout.read()
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        proc.wait()
    whole = sew(
        "transcribe", str(wav), "-m", str(tiny_sew_dir), "-q", "--decoder", "greedy", "--chunk-length", "5"
    )
    assert (first + rest).decode().split() == whole.stdout.split()


def _ffmpeg_children(pid: int) -> list[int]:
    return [k for k in conftest.child_pids(pid) if conftest.process_name(k) == "ffmpeg"]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (compressed streams on stdin)")
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_live_compressed_stream_interrupted_while_the_producer_writes(
    sig: int, code: int, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    """An mp3 stream on stdin is fed to ffmpeg by a thread that waits in a read while the producer is quiet;
    a signal to sew alone then ends it with its exit status (it aborted: "Fatal Python error:
    _enter_buffered_busy", status -6, when Python closed sys.stdin under that thread's lock)."""
    mp3 = Path(__file__).resolve().parents[1] / "examples" / "message.mp3"
    cmd = [sys.executable, "-m", "sewcli", "transcribe", "-", "--live", "-m", str(tiny_sew_dir)]
    proc = subprocess.Popen(
        [*cmd, "-q", "--decoder", "greedy", "--threads", "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(clean_env),
    )
    assert proc.stdin is not None and proc.stderr is not None
    try:
        proc.stdin.write(mp3.read_bytes())  # and stdin stays open: the producer is still "recording"
        proc.stdin.flush()
        deadline = time.monotonic() + 120
        while not _ffmpeg_children(proc.pid) and time.monotonic() < deadline:  # the feeder runs
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
        assert _ffmpeg_children(proc.pid), "ffmpeg never started"
        time.sleep(2.0)  # the feeder has passed the mp3 on and waits for more
        proc.send_signal(sig)
        if sig == signal.SIGINT:  # the first Ctrl-C ends the input once the block being read is complete
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(mp3.read_bytes())
                proc.stdin.flush()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == code, err
    finally:
        proc.kill()
        proc.wait()
    assert "Fatal Python error" not in err and "Traceback" not in err


@pytest.mark.parametrize("to_file", [False, True])
def test_stdin_ctrl_c_without_live_keeps_what_was_read(
    to_file: bool, tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    """`arecord | sew transcribe - -o out`: the first Ctrl-C ends the stream, and the transcript of the audio
    read so far is written (stdout or --output-dir), not thrown away; exit status 130."""
    out = tmp_path / "out"
    where = ["-o", str(out)] if to_file else []
    # 20 s through a 64 kB pipe: the write returns once sew is reading (the model is loaded); then 10 s more
    # to end the 4 s block being read
    printed, frames, expected = _ctrl_c_mid_stream(
        tmp_path, tiny_sew_dir, clean_env, where, cut=20 * 32000, more=10 * 32000, wait_for_output=False
    )
    assert 20 * 16000 // 2 - 32000 < frames
    assert expected.count("\n") > 1  # some words
    if to_file:
        assert printed == "" and (out / "stdin.tsv").read_text(encoding="utf-8") == expected
    else:
        assert printed == expected


def _ctrl_c_mid_stream(
    tmp_path: Path,
    model: Path,
    clean_env: dict[str, str],
    args: list[str],
    *,
    cut: int,
    more: int,
    wait_for_output: bool,
) -> tuple[str, int, str]:
    """`sew transcribe - -f tsv ARGS` on a 40 s WAV stream whose writer keeps stdin open: `cut` bytes, Ctrl-C
    (once something was printed, with `wait_for_output`), `more` bytes. Checks exit status 130 and the
    messages; returns (stdout, frames sew says it read, the batch tsv of exactly those frames)."""
    wav = write_audio(tmp_path / "a.wav", 40.0, seed=6, subtype="PCM_16")
    data = wav.read_bytes()
    header, body = data[:44], data[44:]
    cmd = [sys.executable, "-m", "sewcli", "transcribe", "-", "-f", "tsv", "-m", str(model), *args]
    cmd += ["-q", "--decoder", "greedy", "--chunk-length", "5", "--threads", "1"]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(clean_env)
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(header + body[:cut])  # stdin stays open to the end
        proc.stdin.flush()
        if wait_for_output:
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, "nothing printed while stdin was open"
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(BrokenPipeError):  # sew may have stopped reading already
            proc.stdin.write(body[cut : cut + more])
            proc.stdin.flush()
        out = proc.stdout.read().decode()  # to EOF: sew ends although stdin is still open
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 130, err
    finally:
        proc.kill()
        proc.wait()
    assert "Traceback" not in err and "finishing what was read" in err
    # sew says how much it read; the output is the transcript of exactly that audio
    match = re.search(r"input ended by Ctrl-C after ([0-9.]+) s of audio", err)
    assert match, err
    frames = round(float(match.group(1)) * 16000)
    assert 2 * frames <= cut + more
    part = tmp_path / "part.wav"
    part.write_bytes(header + body[: 2 * frames])  # the header's sizes are too big: read to the end
    batch = ("transcribe", str(part), "-m", str(model), "-q", "-f", "tsv", "--decoder", "greedy")
    return out, frames, sew(*batch, "--chunk-length", "5").stdout


def test_live_ctrl_c_ends_the_stream_and_keeps_what_was_read(
    tmp_path: Path, tiny_sew_dir: Path, clean_env: dict[str, str]
) -> None:
    """The first Ctrl-C in --live ends the input after the block being read: the audio read so far is still
    transcribed and printed (its open segment too) while the writer keeps stdin open; exit status 130."""
    cut = 30 * 32000  # bytes of 30 s (the tiny random model's first segments close after ~15-25 s)
    more = 6 * 32000  # then 6 s more, enough to end the block read in progress
    out, frames, expected = _ctrl_c_mid_stream(
        tmp_path, tiny_sew_dir, clean_env, ["--live"], cut=cut, more=more, wait_for_output=True
    )
    assert frames % cli.LIVE_BLOCK_FRAMES == 0 and cut // 2 < 2 * frames  # whole blocks, more than printed
    assert out == expected
