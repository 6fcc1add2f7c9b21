"""Inputs and outputs of a run: finding the inputs, naming the outputs, and writing them.

- `collect_jobs` expands the command line's inputs into `Job`s: files as given, directories walked recursively
  (sorted, filtered by `AUDIO_EXTENSIONS` or --ext), `-` for stdin; missing inputs and empty directories come
  back as problems, not exceptions.
- `output_paths` names each job's output under --output-dir: FILE.ext -> OUT/FILE.<fmt>, a directory input's
  tree mirrored; inputs that would get the same name keep their audio extension (a.wav.srt, a.mp3.srt), and
  a name that would still collide or escape the output directory is a problem for that input.
- `write_outputs` writes one input's outputs all or none: each format is rendered into a temporary file in the
  target directory (flushed to disk, final mode), then all are renamed into place with SIGINT/SIGTERM held,
  so no partial file is ever visible and an existing output is never half replaced. `write_atomic` is the
  one-file case; `check_output_dir` proves --output-dir is writable before any work is done.
- `write_stdout` prints a result; a reader that went away (`| head`) raises `StdoutClosed`, a stdout that
  cannot be written (full disk) an `OutputError` for that input.

Nothing here writes to stderr or decides exit codes (that is sewcli/batch.py and sewcli/cli.py), and nothing
imports torch.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from sewcli.errors import OutputError
from sewcli.signals import signals_held

if TYPE_CHECKING:
    from sewcli.records import Transcript

# Extensions picked up when walking a directory (files named explicitly are always tried).
AUDIO_EXTENSIONS = (
    "wav",
    "flac",
    "ogg",
    "oga",
    "opus",
    "mp3",
    "aif",
    "aiff",
    "aifc",
    "au",
    "caf",
    "w64",
    "rf64",
)
STDIN_STEM = "stdin"


@dataclass(frozen=True)
class OutputOptions:
    """Where and how transcripts are written."""

    formats: tuple[str, ...] = ("txt",)
    output_dir: Path | None = None
    skip_existing: bool = False
    overwrite: bool = False
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS
    live: bool = False  # print each segment as soon as it is final (one input, stdout, txt/srt/vtt/tsv)


@dataclass(frozen=True)
class Job:
    """One input file to transcribe, with its display name and its output stem relative to --output-dir."""

    source: str  # what we open ("-" for stdin)
    display: str  # what we print
    rel: Path  # output path relative to --output-dir, without the format extension
    alt: Path  # the collision-free alternative (keeps the audio extension)


class StdoutClosed(Exception):
    """stdout's reader went away (`| head`)."""


def collect_jobs(
    inputs: tuple[str, ...], extensions: tuple[str, ...]
) -> tuple[list[Job], list[tuple[str, str]], bool]:
    """Expand the inputs: files as given, directories walked recursively (sorted, extension filter).

    Returns:
        (jobs, problems as (display, message), whether any input was a directory).
    """
    exts = {e.lower().lstrip(".") for e in extensions}
    jobs: list[Job] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    had_dir = False

    def add(source: str, display: str, rel: Path) -> None:
        key = source if source == "-" else os.path.realpath(source)
        if key in seen:
            return
        seen.add(key)
        jobs.append(Job(source=source, display=display, rel=rel.with_suffix(""), alt=rel))

    for item in inputs:
        if item == "-":
            add("-", "<stdin>", Path(STDIN_STEM))
        elif os.path.isdir(item):
            had_dir = True
            found = 0
            for root, dirs, files in os.walk(item):
                dirs.sort()
                for name in sorted(files):
                    suffix = os.path.splitext(name)[1].lower().lstrip(".")
                    if name.startswith(".") or suffix not in exts:
                        continue
                    path = os.path.join(root, name)
                    found += 1
                    special = _special_file(path)
                    if special:  # opening a named pipe would wait for a writer for ever
                        problems.append(
                            (
                                path,
                                f"not a regular file ({special}); give it as an input of "
                                "its own to read it as a stream",
                            )
                        )
                        continue
                    add(path, path, Path(os.path.relpath(path, item)))
            if not found:
                problems.append((item, f"no audio files ({', '.join(sorted(exts))}) in this directory"))
        elif os.path.lexists(item):
            add(item, item, Path(os.path.basename(item)))
        else:
            problems.append((item, "no such file or directory"))
    return jobs, problems, had_dir


def _special_file(path: str) -> str | None:
    """What `path` (links followed) is when neither a regular file nor missing: "a named pipe", ..."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # a broken link or an unreadable entry: reported when it is opened
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"  # os.walk lists links to directories as directories


def output_paths(
    jobs: list[Job], out_dir: Path, formats: tuple[str, ...]
) -> tuple[dict[int, dict[str, Path]], list[tuple[int, str]]]:
    """Output path per job and format under `out_dir`; inputs that would collide keep their audio extension.

    Returns:
        ({job index: {format: path}}, [(job index, problem)] for jobs that collide or would escape out_dir).
    """
    by_rel: dict[Path, list[int]] = {}
    for i, job in enumerate(jobs):
        by_rel.setdefault(job.rel, []).append(i)
    root = out_dir.resolve()
    paths: dict[int, dict[str, Path]] = {}
    problems: list[tuple[int, str]] = []
    used: dict[Path, int] = {}
    for i, job in enumerate(jobs):
        rel = job.alt if len(by_rel[job.rel]) > 1 else job.rel
        exts = _extensions(formats)
        per_format = {fmt: out_dir / f"{rel}.{ext}" for fmt, ext in zip(formats, exts, strict=True)}
        first = next(iter(per_format.values()))
        resolved = first.parent.resolve() / first.name
        if root not in resolved.parents:
            problems.append((i, f"{first} would be outside the output directory {out_dir}"))
        elif rel in used:
            problems.append((i, f"{first} would overwrite the output of {jobs[used[rel]].display}"))
        else:
            used[rel] = i
            paths[i] = per_format
    return paths, problems


def file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def stage_output(path: Path, render: Callable[[TextIO], None], mode: int) -> str:
    """Render into a temporary file next to `path` (flushed to disk, final mode); return its path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The name is cut (40 characters <= 160 bytes) so that the temporary name of a long but valid output
        # name does not exceed the 255-byte limit of most file systems.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:40]}.", suffix=".part")
    except OSError as e:
        raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None
    try:
        with open(fd, "w", encoding="utf-8", newline="") as fh:
            render(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
    except BaseException as e:
        _unlink_quietly(tmp)
        if isinstance(e, OSError):
            raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None
        raise
    return tmp


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_outputs(items: list[tuple[Path, Callable[[TextIO], None]]], mode: int) -> None:
    """Write one input's outputs all or none: render each to a temporary file, then rename them all.

    Staging and renames run with SIGINT/SIGTERM held (a few milliseconds), so Ctrl-C never leaves an input
    with some of its formats, nor a temporary file created between `mkstemp` returning and its name being
    recorded; a failure before the renames removes the temporary files and leaves existing outputs untouched.
    """
    staged: list[tuple[Path, str]] = []
    try:
        with signals_held():
            for path, render in items:
                staged.append((path, stage_output(path, render, mode)))
            for path, tmp in staged:
                os.replace(tmp, path)
    except BaseException as e:
        for _, tmp in staged:
            _unlink_quietly(tmp)  # already renamed ones are gone from their temporary name
        if isinstance(e, OSError):
            raise OutputError(f"{items[0][0]}: cannot write: {e.strerror or e}") from None
        raise


def write_atomic(path: Path, render: Callable[[TextIO], None], mode: int) -> None:
    """Write one file atomically (temporary file in the same directory + rename)."""
    write_outputs([(path, render)], mode)


def check_output_dir(out_dir: Path) -> None:
    """Create --output-dir and prove it is writable before any work is done."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".sew-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{out_dir}: output directory is not writable: {e.strerror or e}") from None


def write_stdout(text: str) -> None:
    """Print `text`, every byte of it, or raise: StdoutClosed for a closed pipe, OutputError otherwise.

    The bytes go to file descriptor 1 in a loop of `os.write`: under `PYTHONUNBUFFERED=1` (common in
    containers) sys.stdout's raw file object ignores a short write's count, so an output cut off by a full
    disk or a file size limit would pass as written. Nothing is left in sys.stdout's buffer to fail again at
    exit.
    """
    out = sys.stdout
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):  # a stream without a descriptor (captured in tests)
        fd = None
    try:
        if fd is None:
            out.write(text)
            out.flush()
            return
        out.flush()  # whatever went through sys.stdout before goes first
        data = memoryview(text.encode(out.encoding or "utf-8", out.errors or "strict"))
        while data:
            written = os.write(fd, data)
            if written <= 0:  # pragma: no cover - os.write raises rather than write nothing
                raise OSError("nothing was written")
            data = data[written:]
    except BrokenPipeError:
        raise StdoutClosed() from None
    except OSError as e:  # `> file` on a full disk: this input fails like a file output would
        raise OutputError(f"<stdout>: cannot write: {e.strerror or e}") from None


def render_transcript(transcript: Transcript, fmt: str) -> Callable[[TextIO], None]:
    """A function that writes `transcript` in format `fmt` to a text stream."""
    from sewcli.writers import WRITERS

    writer = WRITERS[fmt]
    return lambda fh: writer(transcript, fh)


def _extensions(formats: tuple[str, ...]) -> tuple[str, ...]:
    from sewcli.writers import WRITERS

    return tuple(WRITERS[fmt].extension for fmt in formats)
