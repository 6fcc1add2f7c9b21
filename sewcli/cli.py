"""The `sew` command line: the only module that prints results or errors and turns them into exit codes.

Exit status of `sew transcribe`: 0 every input done (or skipped); 1 at least one input failed (each failure is
one `error: <input>: <problem>` line on stderr, every other input is still done) or the model could not be
set up; 2 usage error (bad option, unknown model, formats that cannot share stdout); 130 on Ctrl-C; 143 on
SIGTERM; 141 when stdout is closed early (`sew transcribe dir | head`: no traceback, no further work).

Outputs: one input without --output-dir prints to stdout. Several inputs (or a directory) without --output-dir
print txt only, each transcript after a header line `==> NAME <==` (like `head`); other formats need
--output-dir. With --output-dir, a file input FILE.ext becomes OUT/FILE.<fmt>, and a directory input DIR
mirrors its tree (DIR/sub/a.wav -> OUT/sub/a.<fmt>); when two inputs would get the same name, both keep their
audio extension (a.wav.srt, a.mp3.srt). Outputs are written to a temporary file in the same directory and
renamed into place, so no partial file is ever visible. An existing output is an error unless --overwrite or
--skip-existing.

torch is imported only once a transcription starts, so `sew --help` and `sew models list` stay fast.
"""

from __future__ import annotations

import contextlib
import enum
import io
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from sewcli import registry as registry_mod
from sewcli.errors import (
    DownloadError,
    ModelNotFoundError,
    OutputError,
    RegistryError,
    SewError,
    UsageError,
)

if TYPE_CHECKING:
    from sewcli.pipeline import PipelineOptions
    from sewcli.records import Transcript

log = logging.getLogger("sewcli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_SIGPIPE, EXIT_SIGINT, EXIT_SIGTERM = 141, 130, 143
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

# rich_markup_mode=None: plain click help; typer's rich help formatter alone costs ~0.25 s of imports.
app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    help="sew: offline speech-to-text with SEW, SEW-D and wav2vec2 CTC models.",
)
models_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="List, inspect and download models."
)
app.add_typer(models_app, name="models")


class Format(str, enum.Enum):
    txt = "txt"
    srt = "srt"
    vtt = "vtt"
    json = "json"
    tsv = "tsv"


class Decoder(str, enum.Enum):
    greedy = "greedy"
    beam = "beam"


class Device(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, enum.Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    int8 = "int8"


# Shared option declarations (one place; `transcribe`, `classify` and `models` reuse them).
RegistryOpt = Annotated[
    Path | None,
    typer.Option(
        "--registry", help="Extra models.toml to read after the shipped and user ones.", dir_okay=False
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Registry name, checkpoint directory or hub id org/name. [default: sew-synth-en]",
    ),
]
RevisionOpt = Annotated[
    str | None, typer.Option("--revision", help="Hub branch, tag or commit (hub models).")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="More logging; tracebacks for errors.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, summary or warnings.")]
# Shared by `transcribe` and `classify`.
InputsArg = Annotated[
    list[str],
    typer.Argument(
        help="Audio files, directories (recursive) or - for stdin.",
        metavar="INPUT...",
        show_default=False,
    ),
]
OutputDirOpt = Annotated[
    Path | None,
    typer.Option("--output-dir", "-o", file_okay=False, help="Write files here (mirrors directory inputs)."),
]
SkipExistingOpt = Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose outputs exist.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="auto = cuda when available.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for the model.")]


@dataclass(frozen=True)
class OutputOptions:
    """Where and how transcripts are written."""

    formats: tuple[str, ...] = ("txt",)
    output_dir: Path | None = None
    skip_existing: bool = False
    overwrite: bool = False
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS


@dataclass(frozen=True)
class TranscribeRequest:
    """Everything `sew transcribe` resolved from its command line."""

    inputs: tuple[str, ...]
    model: str | None
    revision: str | None
    registry: Path | None
    pipeline: PipelineOptions
    output: OutputOptions
    quiet: bool = False
    verbose: bool = False


@dataclass(frozen=True)
class Job:
    """One input file to transcribe, with its display name and its output stem relative to --output-dir."""

    source: str  # what we open ("-" for stdin)
    display: str  # what we print
    rel: Path  # output path relative to --output-dir, without the format extension
    alt: Path  # the collision-free alternative (keeps the audio extension)


@dataclass
class Tally:
    """Counters for the summary line."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    audio_seconds: float = 0.0


class _Terminated(BaseException):
    """Raised from the SIGTERM handler so that cleanup code runs (not an Exception: nothing swallows it)."""


class _StdoutClosed(Exception):
    """stdout's reader went away (`| head`)."""


# ----------------------------------------------------------------------------------------------------
# messages and logging


def _error(display: str | None, message: str, verbose: bool = False) -> None:
    """One `error: <input>: <problem>` line on stderr (plus the traceback with --verbose)."""
    if display and not message.startswith(f"{display}:"):
        message = f"{display}: {message}"
    if verbose and sys.exc_info()[0] is not None:
        with contextlib.suppress(OSError, ValueError):
            traceback.print_exc(file=sys.stderr)
    _say(f"error: {_one_line(message)}")


def _say(line: str) -> None:
    """One line on stderr; a stderr that cannot be written (`2>>log` on a full disk) must not stop the run."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _one_line(text: str) -> str:
    """Escape line breaks (a file name may contain one) so that one message stays one line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class _LineFormatter(logging.Formatter):
    """`warning: <message>` on one line, like the error lines (for logs and pipes, which rich would wrap)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {_one_line(record.getMessage())}"


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LineFormatter())
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    if verbose:
        log.debug("verbose logging on")


# ----------------------------------------------------------------------------------------------------
# inputs and outputs


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
                    add(path, path, Path(os.path.relpath(path, item)))
                    found += 1
            if not found:
                problems.append((item, f"no audio files ({', '.join(sorted(exts))}) in this directory"))
        elif os.path.lexists(item):
            add(item, item, Path(os.path.basename(item)))
        else:
            problems.append((item, "no such file or directory"))
    return jobs, problems, had_dir


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


def _file_mode() -> int:
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


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM (re-raised on exit) so a few renames happen together; a no-op off the main thread.

    Python-level handlers, not pthread_sigmask: a mask only covers the calling thread, and the kernel hands a
    process signal to any thread that does not block it (torch's worker threads), which then interrupts the
    main thread anyway.
    """
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        held.append(signum)

    try:
        previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if held:
            signal.raise_signal(held[0])  # now the usual handler runs: KeyboardInterrupt / _Terminated


def write_outputs(items: list[tuple[Path, Callable[[TextIO], None]]], mode: int) -> None:
    """Write one input's outputs all or none: render each to a temporary file, then rename them all.

    The renames run with SIGINT/SIGTERM held, so Ctrl-C never leaves an input with some of its formats; a
    failure before the renames removes the temporary files and leaves existing outputs untouched.
    """
    staged: list[tuple[Path, str]] = []
    try:
        for path, render in items:
            staged.append((path, stage_output(path, render, mode)))
        with _signals_held():
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


def _check_output_dir(out_dir: Path) -> None:
    """Create --output-dir and prove it is writable before any work is done."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".sew-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{out_dir}: output directory is not writable: {e.strerror or e}") from None


def _write_stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise _StdoutClosed() from None
    except OSError as e:  # `> file` on a full disk: this input fails like a file output would
        raise OutputError(f"<stdout>: cannot write: {e.strerror or e}") from None


def _render(transcript: Transcript, fmt: str) -> Callable[[TextIO], None]:
    """A function that writes `transcript` in format `fmt` to a text stream."""
    from sewcli.writers import WRITERS

    writer = WRITERS[fmt]
    return lambda fh: writer(transcript, fh)


def _extensions(formats: tuple[str, ...]) -> tuple[str, ...]:
    from sewcli.writers import WRITERS

    return tuple(WRITERS[fmt].extension for fmt in formats)


# ----------------------------------------------------------------------------------------------------
# the run


@contextmanager
def _signals() -> Iterator[None]:
    """SIGTERM raises _Terminated (so `finally` blocks clean up) for the duration of the run."""

    def on_term(signum: int, frame: object) -> None:
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str], Callable[[float, float | None], None]]]:
    """A rich progress bar on stderr; yields `start(name) -> update(seconds_done, total_seconds_or_None)`."""
    if not enabled:
        yield lambda name: lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f} s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        current: list[int] = []

        def start(name: str) -> Callable[[float, float | None], None]:
            for task in current:
                bar.remove_task(task)
            current[:] = [bar.add_task(name, total=None)]
            return lambda done, total: bar.update(current[0], completed=done, total=total)

        yield start


def _summary(tally: Tally, wall: float, verb: str = "transcribed") -> str:
    """The one-line end-of-run summary: files, skips, failures, audio hours, wall time, real-time factor."""
    parts = [f"{tally.done} file{'s' if tally.done != 1 else ''} {verb}"]
    if tally.skipped:
        parts.append(f"{tally.skipped} skipped")
    parts.append(f"{tally.failed} failed")
    line = f"sew: {', '.join(parts)}; {tally.audio_seconds / 3600:.3f} h audio in {wall:.1f} s"
    if tally.audio_seconds > 0:
        line += f" (real-time factor {wall / tally.audio_seconds:.3f})"
    return line


def _load(request: TranscribeRequest) -> tuple[object, object]:
    """Resolve, fetch and load the model and build the decoder (torch is imported here)."""
    from sewcli import decoding, hub, inference

    reg = registry_mod.load_registry(request.registry)
    spec = registry_mod.resolve(request.model, reg, request.revision)
    directory = hub.model_directory(spec)
    log.info("model %s from %s", spec.name, directory)
    model = inference.load(directory, request.pipeline.inference, name=spec.name, language=spec.language)
    decoder = decoding.build_decoder(model.vocab, request.pipeline.decode)
    return model, decoder


@dataclass(frozen=True)
class Plan:
    """The inputs of one run and where their outputs go (empty `paths` when printing to stdout)."""

    jobs: list[Job]
    paths: dict[int, dict[str, Path]]
    problems: list[tuple[str, str]]  # (display, message) for inputs that cannot be done at all
    several: bool  # headers on stdout


def plan_run(inputs: tuple[str, ...], out: OutputOptions) -> Plan:
    """Expand the inputs, check the stdout/format policy, and assign output paths."""
    jobs, problems, had_dir = collect_jobs(inputs, out.extensions)
    several = len(jobs) + len(problems) > 1 or had_dir
    if out.output_dir is None and (len(out.formats) > 1 or (several and out.formats != ("txt",))):
        raise UsageError(
            "several inputs or formats need --output-dir; "
            "only txt can be printed to stdout for several inputs"
        )
    if out.skip_existing and out.overwrite:
        raise UsageError("--skip-existing and --overwrite cannot be combined")
    paths: dict[int, dict[str, Path]] = {}
    if out.output_dir is not None and jobs:
        paths, clashes = output_paths(jobs, out.output_dir, out.formats)
        problems += [(jobs[i].display, message) for i, message in clashes]
        jobs = [job for i, job in enumerate(jobs) if i in paths]
        paths = {new: paths[old] for new, old in enumerate(sorted(paths))}
        _check_output_dir(out.output_dir)
    return Plan(jobs=jobs, paths=paths, problems=problems, several=several)


def _existing_policy(paths: dict[str, Path], out: OutputOptions) -> str | None:
    """None to go ahead, "skip", or an error message, from the outputs that exist right now."""
    existing = [p for p in paths.values() if p.exists()]
    if not existing or out.overwrite:
        return None
    if out.skip_existing:
        return "skip" if len(existing) == len(paths) else None
    return f"{existing[0]} exists (use --overwrite or --skip-existing)"


Render = Callable[[TextIO], None]  # writes one result in one format
Work = Callable[[Job, object], tuple[dict[str, Render], float]]  # (job, model) -> ({format: render}, seconds)


def run_inputs(
    plan: Plan,
    out: OutputOptions,
    *,
    load: Callable[[], object],
    work: Work,
    quiet: bool = False,
    verbose: bool = False,
    verb: str = "transcribed",
    started: float | None = None,
) -> int:
    """The per-input loop of transcribe and classify; returns the exit status.

    Args:
        plan: the inputs and their output paths.
        out: output options (formats, stdout or --output-dir, existing-output policy).
        load: builds the model once, when the first input needs it (its errors fail the whole run).
        work: (job, loaded model) -> ({format: render}, seconds of audio); raises SewError for a bad input.
        quiet, verbose: no summary line / tracebacks with error lines.
        verb: the summary's verb ("transcribed", "classified").
        started: perf_counter() at the start of the command (for the summary's wall time).
    """
    started = time.perf_counter() if started is None else started
    tally = Tally()
    for display, message in plan.problems:
        _error(display, message)
        tally.failed += 1
    loaded: object = None
    mode = _file_mode()
    for i, job in enumerate(plan.jobs):
        # Checked now, not up front: another `sew --skip-existing` may have done this input meanwhile.
        policy = _existing_policy(plan.paths.get(i, {}), out)
        if policy == "skip":
            log.info("%s: skipped, outputs exist", job.display)
            tally.skipped += 1
            continue
        if policy is not None:
            _error(job.display, policy)
            tally.failed += 1
            continue
        if loaded is None:
            loaded = load()  # a model that cannot be had fails the run (exit 1), not each input
        try:
            renders, seconds = work(job, loaded)
            _emit(renders, job, plan, i, out, mode)
        except _StdoutClosed:
            raise
        except SewError as e:
            _error(job.display, str(e), verbose)
            tally.failed += 1
            continue
        except Exception as e:  # a bug or a resource problem with one input must not stop the others
            _error(job.display, f"internal error: {type(e).__name__}: {e}", verbose)
            tally.failed += 1
            continue
        tally.done += 1
        tally.audio_seconds += seconds
    if not quiet:
        _say(_summary(tally, time.perf_counter() - started, verb))
    return EXIT_FAILED if tally.failed else EXIT_OK


def _emit(renders: dict[str, Render], job: Job, plan: Plan, i: int, out: OutputOptions, mode: int) -> None:
    """Print one input's result (stdout, first format) or write each format's file atomically."""
    if out.output_dir is None:
        buf = io.StringIO()
        if plan.several:
            buf.write(f"==> {job.display} <==\n")
        renders[out.formats[0]](buf)
        _write_stdout(buf.getvalue())
        return
    write_outputs([(path, renders[fmt]) for fmt, path in plan.paths[i].items()], mode)


def run_transcribe(request: TranscribeRequest) -> int:
    """Transcribe every input of `request`; returns the exit status (see the module docstring)."""
    started = time.perf_counter()
    plan = plan_run(request.inputs, request.output)
    with _progress(not request.quiet and sys.stderr.isatty()) as start:

        def work(job: Job, loaded: object) -> tuple[dict[str, Render], float]:
            model, decoder = loaded  # type: ignore[misc]
            transcript = _transcribe_one(job, model, decoder, request.pipeline, start(job.display))
            return {fmt: _render(transcript, fmt) for fmt in request.output.formats}, transcript.duration

        return run_inputs(
            plan,
            request.output,
            load=lambda: _load(request),
            work=work,
            quiet=request.quiet,
            verbose=request.verbose,
            started=started,
        )


def _transcribe_one(
    job: Job,
    model: object,
    decoder: object,
    options: PipelineOptions,
    update: Callable[[float, float | None], None],
) -> Transcript:
    from sewcli import pipeline

    return pipeline.transcribe_file(
        job.source,
        model,  # type: ignore[arg-type]
        decoder,  # type: ignore[arg-type]
        options,
        progress=update,
    )


# ----------------------------------------------------------------------------------------------------
# commands


@app.callback()
def _root() -> None:
    """sew: offline speech-to-text with SEW, SEW-D and wav2vec2 CTC models."""


@app.command()
def transcribe(
    inputs: InputsArg,
    model: ModelOpt = None,
    fmt: Annotated[
        list[Format] | None,
        typer.Option("--format", "-f", help="Output format; repeatable.", show_default="txt"),
    ] = None,
    output_dir: OutputDirOpt = None,
    skip_existing: SkipExistingOpt = False,
    overwrite: OverwriteOpt = False,
    ext: Annotated[
        list[str] | None,
        typer.Option(
            "--ext",
            help="Extensions taken from directories; repeatable.",
            show_default=",".join(AUDIO_EXTENSIONS),
        ),
    ] = None,
    decoder: Annotated[Decoder, typer.Option("--decoder", help="CTC decoder.")] = Decoder.greedy,
    beam_width: Annotated[
        int | None, typer.Option("--beam-width", min=1, help="Beams kept (beam decoder).", show_default="32")
    ] = None,
    lm: Annotated[
        Path | None, typer.Option("--lm", dir_okay=False, help="KenLM model (.arpa/.bin) for beam.")
    ] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", help="LM weight.", show_default="0.5")] = None,
    beta: Annotated[
        float | None, typer.Option("--beta", help="Word insertion bonus.", show_default="1.5")
    ] = None,
    hotword: Annotated[
        list[str] | None, typer.Option("--hotword", help="Boost this word or phrase; repeatable.")
    ] = None,
    hotword_weight: Annotated[float | None, typer.Option("--hotword-weight", show_default="10")] = None,
    chunk_length: Annotated[
        float | None, typer.Option("--chunk-length", help="Seconds per model window.", show_default="30")
    ] = None,
    chunk_overlap: Annotated[
        float | None,
        typer.Option(
            "--chunk-overlap", help="Seconds shared by neighbouring windows.", show_default="chunk/10"
        ),
    ] = None,
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Equal-length windows per forward.")
    ] = 1,
    precision: Annotated[Precision, typer.Option("--precision", help="Model precision.")] = Precision.fp32,
    exit_layer: Annotated[
        str | None,
        typer.Option(
            "--exit-layer",
            help="Early-exit models: stop after layer N (2, 4, ...) or 'auto' (confidence).",
            show_default="last",
        ),
    ] = None,
    exit_threshold: Annotated[
        float | None,
        typer.Option(
            "--exit-threshold",
            min=0.0,
            max=1.0,
            help="--exit-layer auto: a window exits once its mean max posterior reaches this.",
            show_default="0.9",
        ),
    ] = None,
    revision: RevisionOpt = None,
    registry: RegistryOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Transcribe audio files, directories or stdin to txt, srt, vtt, json or tsv."""
    _setup_logging(verbose, quiet)
    try:
        request = TranscribeRequest(
            inputs=tuple(inputs),
            model=model,
            revision=revision,
            registry=registry,
            pipeline=_pipeline_options(
                decoder=decoder,
                beam_width=beam_width,
                lm=lm,
                alpha=alpha,
                beta=beta,
                hotwords=tuple(hotword or ()),
                hotword_weight=hotword_weight,
                chunk_length=chunk_length,
                chunk_overlap=chunk_overlap,
                device=device,
                threads=threads,
                batch_size=batch_size,
                precision=precision,
                exit_layer=exit_layer,
                exit_threshold=exit_threshold,
            ),
            output=OutputOptions(
                formats=tuple(dict.fromkeys(f.value for f in (fmt or [Format.txt]))),
                output_dir=output_dir,
                skip_existing=skip_existing,
                overwrite=overwrite,
                extensions=tuple(ext) if ext else AUDIO_EXTENSIONS,
            ),
            quiet=quiet,
            verbose=verbose,
        )
    except SewError as e:
        _error(None, str(e))
        raise typer.Exit(EXIT_USAGE) from None
    raise typer.Exit(_guarded(lambda: run_transcribe(request), verbose))


def _pipeline_options(**kw: object) -> PipelineOptions:
    """Build the per-stage option dataclasses from the command line (None = the stage's own default)."""
    from sewcli import chunking, decoding, inference
    from sewcli.pipeline import PipelineOptions

    def given(**values: object) -> dict[str, object]:
        return {k: v for k, v in values.items() if v is not None}

    if kw["decoder"] is Decoder.greedy and (
        kw["lm"] is not None or kw["hotwords"] or kw["beam_width"] is not None
    ):
        raise UsageError("--lm, --hotword and --beam-width need --decoder beam")
    decode = decoding.DecodeOptions(
        kind=kw["decoder"].value,  # type: ignore[attr-defined]
        **given(
            beam_width=kw["beam_width"],
            lm_path=None if kw["lm"] is None else str(kw["lm"]),
            alpha=kw["alpha"],
            beta=kw["beta"],
            hotword_weight=kw["hotword_weight"],
        ),
        hotwords=kw["hotwords"],  # type: ignore[arg-type]
    )
    overlap = kw["chunk_overlap"]
    if overlap is None and kw["chunk_length"] is not None:
        # the default ratio: 30 s windows, 3 s overlap
        overlap = kw["chunk_length"] / 10  # type: ignore[operator]
    chunk = chunking.ChunkOptions(**given(chunk_seconds=kw["chunk_length"], overlap_seconds=overlap))
    infer = inference.InferenceOptions(
        device=kw["device"].value,  # type: ignore[attr-defined]
        threads=kw["threads"],  # type: ignore[arg-type]
        batch_size=kw["batch_size"],  # type: ignore[arg-type]
        precision=kw["precision"].value,  # type: ignore[attr-defined]
        **given(exit_layer=_exit_layer(kw["exit_layer"]), exit_threshold=kw["exit_threshold"]),  # type: ignore[arg-type]
    )
    return PipelineOptions(chunk=chunk, decode=decode, inference=infer)


def _exit_layer(value: object) -> int | str | None:
    """--exit-layer: None, 'auto' or a layer number."""
    if value is None or value == "auto":
        return value  # type: ignore[return-value]
    try:
        return int(str(value))
    except ValueError:
        raise UsageError(
            f"--exit-layer must be a layer number (2, 4, ...) or 'auto', got {value!r}"
        ) from None


def _guarded(run: Callable[[], int], verbose: bool) -> int:
    """Run a command body under the exit-status policy: SewError, Ctrl-C, SIGTERM and a closed stdout."""
    try:
        with _signals():
            return run()
    except (UsageError, ModelNotFoundError, RegistryError) as e:
        _error(None, str(e), verbose)
        return EXIT_USAGE
    except SewError as e:
        _error(None, str(e), verbose)
        return EXIT_FAILED
    except KeyboardInterrupt:
        _say("sew: interrupted")
        return EXIT_SIGINT
    except _Terminated:
        _say("sew: terminated")
        return EXIT_SIGTERM
    except (_StdoutClosed, BrokenPipeError):
        _silence_stdout()
        return EXIT_SIGPIPE


def _silence_stdout() -> None:
    """After EPIPE: point fd 1 at /dev/null so the final flush cannot complain (Python `signal` docs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


@models_app.command("list")
def models_list(registry: RegistryOpt = None) -> None:
    """Table of known models: name, architecture, size, language, and whether it is available offline."""

    def body() -> int:
        reg = registry_mod.load_registry(registry)
        rows = [("name", "arch", "size", "language", "cached", "source")]
        for name in reg.names():
            spec = reg.models[name]
            size, cached = _availability(spec)
            marker = " *" if name == reg.default_model else ""
            rows.append((name + marker, spec.arch or "?", size, spec.language or "?", cached, spec.source))
        widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        sys.stdout.write("\n".join(lines) + "\n* default model; size: parameters in millions\n")
        return EXIT_OK

    raise typer.Exit(_guarded(body, False))


def _availability(spec: registry_mod.ModelSpec) -> tuple[str, str]:
    """(size, cached) columns: registry params or the checkpoint's count; embedded/local/missing/yes/no."""
    from sewcli import hub

    status = hub.cache_status(spec)
    params = spec.params
    if params is None and status.directory is not None:
        count = hub.safetensors_params(status.directory)
        params = None if count is None else count / 1e6
    size = f"{params:.3g}M" if params else "-"
    if spec.is_local:
        embedded = spec.path is not None and registry_mod.PACKAGE_DIR in spec.path.parents
        cached = "missing" if status.directory is None else "embedded" if embedded else "local"
    else:
        cached = "yes" if status.directory else "no"
    return size, cached


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@models_app.command("info")
def models_info(
    name: Annotated[str, typer.Argument(help="Registry name, checkpoint directory or hub id.")],
    revision: RevisionOpt = None,
    registry: RegistryOpt = None,
) -> None:
    """Everything the registry and the cache know about one model."""

    def body() -> int:
        from sewcli import hub

        spec = registry_mod.resolve(name, registry_mod.load_registry(registry), revision)
        status = hub.cache_status(spec)
        size, _ = _availability(spec)
        rows = [
            ("name", spec.name),
            ("source", spec.source),
            *([("subfolder", spec.subfolder)] if spec.subfolder else []),
            ("arch", spec.arch or "from config.json"),
            ("language", spec.language or "unknown"),
            ("sample rate", f"{spec.sample_rate} Hz"),
            ("parameters", size if size != "-" else "unknown"),
            ("license", spec.license or "unknown"),
            ("description", spec.description or "-"),
            (
                "available",
                f"{status.directory} ({_mb(status.size_bytes)})"
                if status.directory
                else "no: the directory does not exist"
                if spec.is_local
                else "no (run `sew models download " + spec.name + "`)",
            ),
        ]
        if status.directory is not None:
            rows.append(("checkpoint", _checkpoint_summary(status.directory)))
        width = max(len(k) for k, _ in rows)
        sys.stdout.write("".join(f"{k:<{width}}  {v}\n" for k, v in rows))
        return EXIT_OK

    raise typer.Exit(_guarded(body, False))


def _checkpoint_summary(directory: Path) -> str:
    """What config.json and the tokenizer files say (torch-free), or why they cannot be read."""
    from sewcli import checkpoint

    try:
        info = checkpoint.read_checkpoint(directory)
    except SewError as e:
        return f"unreadable: {e}"
    return (
        f"{info.architecture} ({info.family}), {len(info.vocabulary)} output tokens, "
        f"{info.features.sampling_rate} Hz, {info.weight_format} weights"
    )


@models_app.command("download")
def models_download(
    name: Annotated[str, typer.Argument(help="Registry name or hub id.")],
    revision: RevisionOpt = None,
    registry: RegistryOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Download (or refresh) a hub model into the Hugging Face cache; prints its directory."""
    _setup_logging(verbose, False)

    def body() -> int:
        from sewcli import hub

        spec = registry_mod.resolve(name, registry_mod.load_registry(registry), revision)
        if spec.is_local:
            raise DownloadError(f"{spec.name}: is a local model ({spec.path}); nothing to download")
        sys.stdout.write(f"{hub.download(spec)}\n")
        return EXIT_OK

    raise typer.Exit(_guarded(body, verbose))


# ----------------------------------------------------------------------------------------------------
# sew classify (sequence-classification checkpoints; stage in sewcli/classify.py)


class ClassifyFormat(str, enum.Enum):
    txt = "txt"
    json = "json"


@dataclass(frozen=True)
class ClassifyRequest:
    """Everything `sew classify` resolved from its command line (same input/output rules as transcribe)."""

    inputs: tuple[str, ...]
    model: str | None
    revision: str | None
    registry: Path | None
    output: OutputOptions
    top_k: int
    window_seconds: float
    device: str
    threads: int | None
    quiet: bool = False
    verbose: bool = False


def run_classify(request: ClassifyRequest) -> int:
    """Classify every input; exit status as for transcribe (0 all done, 1 some input or the model failed)."""
    from sewcli import classify as stage

    started = time.perf_counter()
    plan = plan_run(request.inputs, request.output)
    options = stage.ClassifyOptions(top_k=request.top_k, window_seconds=request.window_seconds)

    def work(job: Job, model: object) -> tuple[dict[str, Render], float]:
        result = stage.classify_file(job.source, model, options)
        renders = {fmt: (lambda fh, f=fmt: stage.WRITERS[f](result, fh)) for fmt in request.output.formats}
        return renders, result.duration

    return run_inputs(
        plan,
        request.output,
        load=lambda: _load_classifier(request),
        work=work,
        quiet=request.quiet,
        verbose=request.verbose,
        verb="classified",
        started=started,
    )


def _load_classifier(request: ClassifyRequest) -> object:
    """Resolve, fetch and load the classifier (torch is imported here)."""
    from sewcli import classify as stage
    from sewcli import hub, inference

    spec = registry_mod.resolve(request.model, registry_mod.load_registry(request.registry), request.revision)
    options = inference.InferenceOptions(device=request.device, threads=request.threads)
    return stage.load(hub.model_directory(spec), options, name=spec.name)


@app.command()
def classify(
    inputs: InputsArg,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="A *ForSequenceClassification checkpoint: registry name, directory or hub id.",
            show_default=False,
        ),
    ],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Labels reported per input.")] = 5,
    fmt: Annotated[
        list[ClassifyFormat] | None,
        typer.Option("--format", "-f", help="txt or json; repeatable.", show_default="txt"),
    ] = None,
    output_dir: OutputDirOpt = None,
    skip_existing: SkipExistingOpt = False,
    overwrite: OverwriteOpt = False,
    window: Annotated[
        float,
        typer.Option(
            "--window",
            min=0.1,
            help="Seconds per model window; longer inputs average the windows' probabilities.",
        ),
    ] = 30.0,
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    revision: RevisionOpt = None,
    registry: RegistryOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Classify audio (keyword spotting, emotion, language, ...) with a sequence-classification checkpoint."""
    _setup_logging(verbose, quiet)
    request = ClassifyRequest(
        inputs=tuple(inputs),
        model=model,
        revision=revision,
        registry=registry,
        output=OutputOptions(
            formats=tuple(dict.fromkeys(f.value for f in (fmt or [ClassifyFormat.txt]))),
            output_dir=output_dir,
            skip_existing=skip_existing,
            overwrite=overwrite,
        ),
        top_k=top_k,
        window_seconds=window,
        device=device.value,
        threads=threads,
        quiet=quiet,
        verbose=verbose,
    )
    raise typer.Exit(_guarded(lambda: run_classify(request), verbose))


def _open_std_fds() -> None:
    """Put /dev/null on a closed fd 0, 1 or 2 (`sew ... 2>&-`): Python leaves sys.stderr None then, and the
    next file sew opens would get fd 2 and collect what C libraries print to stderr."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", encoding="utf-8", closefd=False))


def _utf8_stdout() -> None:
    """Print transcripts as UTF-8 whatever the locale (files are UTF-8 too); PYTHONIOENCODING overrides."""
    if os.environ.get("PYTHONIOENCODING"):
        return
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    if encoding != "utf8" and hasattr(sys.stdout, "reconfigure"):
        try:
            sys.stdout.reconfigure(encoding="utf-8")
        except (ValueError, OSError):  # pragma: no cover - a stream that cannot change encoding
            pass


@app.command()
def bench(
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="sew-tiny, sew-d-tiny, wav2vec2-base, embedded; repeatable.",
            show_default="all four",
        ),
    ] = None,
    precision: Annotated[
        list[str] | None,
        typer.Option("--precision", help="fp32, bf16, int8; repeatable.", show_default="all"),
    ] = None,
    batch_size: Annotated[
        list[int] | None, typer.Option("--batch-size", help="Repeatable.", show_default="1, 4")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Threads for every engine.", show_default="2")
    ] = None,
    repeats: Annotated[
        int | None, typer.Option("--repeats", min=1, help="Timed repeats (median).", show_default="5")
    ] = None,
    pipeline_minutes: Annotated[
        float | None,
        typer.Option(
            "--pipeline-minutes",
            min=0,
            show_default="10",
            help="File length for sew vs the HF pipeline; 0 skips.",
        ),
    ] = None,
    rss_minutes: Annotated[
        list[float] | None,
        typer.Option("--rss-minutes", help="Durations for the RSS check; 0 skips.", show_default="10, 120"),
    ] = None,
    pipeline_repeats: Annotated[
        int | None, typer.Option("--pipeline-repeats", min=1, help="Whole-process repeats.", show_default="3")
    ] = None,
    directory_files: Annotated[
        int | None,
        typer.Option(
            "--directory-files", min=0, help="Files in the directory run; 0 skips.", show_default="6"
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Smoke run: short windows and files, one repeat.")
    ] = False,
    reference: Annotated[
        bool, typer.Option("--reference/--no-reference", help="Also time transformers.")
    ] = True,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir",
            file_okay=False,
            help="Keep checkpoints and audio here.",
            show_default="a temporary directory",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", dir_okay=False, help="Markdown report file.", show_default="stdout"),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", dir_okay=False, help="Also write JSON here.")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Measure speed and memory on this machine, transformers in the same run (docs/benchmarks.md)."""
    _setup_logging(verbose, False)
    logging.getLogger("sewcli.bench").setLevel(logging.DEBUG if verbose else logging.INFO)
    from sewcli import bench as bench_mod

    def body() -> int:
        opts = bench_mod.options_from_cli(
            quick,
            models=model,
            precisions=precision,
            batch_sizes=batch_size,
            threads=threads,
            repeats=repeats,
            pipeline_minutes=pipeline_minutes,
            rss_minutes=rss_minutes,
            pipeline_repeats=pipeline_repeats,
            directory_files=directory_files,
            reference=reference,
            workdir=workdir,
        )
        report = bench_mod.run(opts)
        text = bench_mod.render_markdown(report)
        if json_path is not None:
            json_path.write_text(report.to_json(), encoding="utf-8")
        if output is None:
            sys.stdout.write(text)
        else:
            output.write_text(text, encoding="utf-8")
        return EXIT_OK

    raise typer.Exit(_guarded(body, verbose))


def main() -> None:
    """Console-script entry point."""
    _open_std_fds()
    _utf8_stdout()
    try:
        app()
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_SIGPIPE)
