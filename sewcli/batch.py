"""The per-input loop shared by `sew transcribe` and `sew classify`, and its messages on stderr.

`plan_run` expands the inputs (sewcli/outputs.py), applies the stdout policy (several inputs or formats need
--output-dir, except txt and jsonl for several inputs) and assigns the output paths. `run_inputs` then does
each input in turn: outputs that exist are skipped or reported (checked just before the input, not up
front), the model is loaded once when the first input needs it, and the result is printed or written
all-or-nothing.
One input's failure is one `error: <input>: <problem>` line and does not stop the others; the run ends
with a summary line and returns exit status 0 (all done or skipped) or 1 (some input failed).

Exceptions that concern the whole run (UsageError, a model that cannot be loaded, KeyboardInterrupt, a
closed stdout) propagate to sewcli/cli.py, which turns them into exit codes. torch is never imported here:
the callers pass `load` and `work` functions that import it when they run.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from sewcli.errors import SewError, UsageError
from sewcli.outputs import (
    Job,
    OutputOptions,
    StdoutClosed,
    check_output_dir,
    collect_jobs,
    file_mode,
    output_paths,
    write_outputs,
    write_stdout,
)

log = logging.getLogger("sewcli")

EXIT_OK, EXIT_FAILED = 0, 1
STREAMABLE = ("txt", "jsonl")  # formats whose outputs for several inputs can follow each other on stdout


@dataclass
class Tally:
    """Counters for the summary line."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    audio_seconds: float = 0.0


# ----------------------------------------------------------------------------------------------------
# messages


def error(display: str | None, message: str, verbose: bool = False) -> None:
    """One `error: <input>: <problem>` line on stderr (plus the traceback with --verbose)."""
    if display and not message.startswith(f"{display}:"):
        message = f"{display}: {message}"
    if verbose and sys.exc_info()[0] is not None:
        with contextlib.suppress(OSError, ValueError):
            traceback.print_exc(file=sys.stderr)
    say(f"error: {one_line(message)}")


def say(line: str) -> None:
    """One line on stderr; a stderr that cannot be written (`2>>log` on a full disk) must not stop the run."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def one_line(text: str) -> str:
    """Escape line breaks (a file name may contain one) so that one message stays one line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


# ----------------------------------------------------------------------------------------------------
# the loop


@contextmanager
def progress(enabled: bool) -> Iterator[Callable[[str], Callable[[float, float | None], None]]]:
    """A rich progress bar on stderr; yields `start(name) -> update(seconds_done, total_seconds_or_None)`."""
    if not enabled:
        yield lambda name: lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f} s"),
        TimeRemainingColumn(),
    )
    # rich's default redirects stdout into its console, i.e. to stderr: `sew ... > out.txt` would print the
    # transcript on the terminal and leave out.txt empty. Only when stdout is the terminal too is it
    # redirected, so that the transcript prints above the bar instead of through it.
    redirect = _isatty(sys.stdout)
    with Progress(*columns, console=Console(stderr=True), transient=True, redirect_stdout=redirect) as bar:
        current: list[TaskID] = []

        def start(name: str) -> Callable[[float, float | None], None]:
            for task in current:
                bar.remove_task(task)
            current[:] = [bar.add_task(name, total=None)]
            return lambda done, total: bar.update(current[0], completed=done, total=total)

        yield start


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


def summary(tally: Tally, wall: float, verb: str = "transcribed") -> str:
    """The one-line end-of-run summary: files, skips, failures, audio hours, wall time, real-time factor."""
    parts = [f"{tally.done} file{'s' if tally.done != 1 else ''} {verb}"]
    if tally.skipped:
        parts.append(f"{tally.skipped} skipped")
    parts.append(f"{tally.failed} failed")
    line = f"sew: {', '.join(parts)}; {tally.audio_seconds / 3600:.3f} h audio in {wall:.1f} s"
    if tally.audio_seconds > 0:
        line += f" (real-time factor {wall / tally.audio_seconds:.3f})"
    return line


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
    if out.live:
        from sewcli.writers import LiveWriter  # what --live can print segment by segment

        if out.output_dir is not None or len(out.formats) > 1 or out.formats[0] not in LiveWriter.FORMATS:
            raise UsageError("--live prints one format to stdout: txt, srt, vtt or tsv, without --output-dir")
        if several:
            raise UsageError("--live takes one input (a file, or - for stdin)")
    if out.output_dir is None and len(out.formats) > 1:
        raise UsageError("several formats need --output-dir: stdout takes one format")
    if out.output_dir is None and several and out.formats[0] not in STREAMABLE:
        raise UsageError(
            f"several inputs in {out.formats[0]} need --output-dir: only txt and jsonl can be printed to "
            "stdout for several inputs"
        )
    if out.skip_existing and out.overwrite:
        raise UsageError("--skip-existing and --overwrite cannot be combined")
    paths: dict[int, dict[str, Path]] = {}
    if out.output_dir is not None and jobs:
        paths, clashes = output_paths(jobs, out.output_dir, out.formats)
        problems += [(jobs[i].display, message) for i, message in clashes]
        jobs = [job for i, job in enumerate(jobs) if i in paths]
        paths = {new: paths[old] for new, old in enumerate(sorted(paths))}
        check_output_dir(out.output_dir)
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
M = TypeVar("M")  # whatever `load` builds: the model (and decoder) that `work` uses


def run_inputs(
    plan: Plan,
    out: OutputOptions,
    *,
    load: Callable[[], M],
    work: Callable[[Job, M], tuple[dict[str, Render], float]],
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
        error(display, message)
        tally.failed += 1
    loaded: M | None = None
    mode = file_mode()
    for i, job in enumerate(plan.jobs):
        # Checked now, not up front: another `sew --skip-existing` may have done this input meanwhile.
        policy = _existing_policy(plan.paths.get(i, {}), out)
        if policy == "skip":
            log.info("%s: skipped, outputs exist", job.display)
            tally.skipped += 1
            continue
        if policy is not None:
            error(job.display, policy)
            tally.failed += 1
            continue
        if loaded is None:
            loaded = load()  # a model that cannot be had fails the run (exit 1), not each input
        try:
            renders, seconds = work(job, loaded)
            _emit(renders, job, plan, i, out, mode)
        except StdoutClosed:
            raise
        except SewError as e:
            error(job.display, str(e), verbose)
            tally.failed += 1
            continue
        except Exception as e:  # a bug or a resource problem with one input must not stop the others
            error(job.display, f"internal error: {type(e).__name__}: {e}", verbose)
            tally.failed += 1
            continue
        tally.done += 1
        tally.audio_seconds += seconds
    if not quiet:
        say(summary(tally, time.perf_counter() - started, verb))
    return EXIT_FAILED if tally.failed else EXIT_OK


def _emit(renders: dict[str, Render], job: Job, plan: Plan, i: int, out: OutputOptions, mode: int) -> None:
    """Print one input's result (stdout, first format) or write each format's file atomically."""
    if out.live:  # printed while it was transcribed
        return
    if out.output_dir is None:
        buf = io.StringIO()
        if plan.several and out.formats[0] == "txt":  # a jsonl line names its input itself
            buf.write(f"==> {one_line(job.display)} <==\n")  # a name with a line break stays one line
        renders[out.formats[0]](buf)
        write_stdout(buf.getvalue())
        return
    items = [(path, renders[fmt]) for fmt, path in plan.paths[i].items()]
    if out.skip_existing:  # an output already there is kept: only the missing formats are written
        items = [(path, render) for path, render in items if not path.exists()]
    if items:
        write_outputs(items, mode)
