"""The `sew` command line: commands and options, and the only module that turns errors into exit codes.

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
--skip-existing. The per-input loop, its error lines and its summary are in sewcli/batch.py; finding inputs,
naming and writing outputs in sewcli/outputs.py.

torch is imported only once a transcription starts, so `sew --help` and `sew models list` stay fast.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sewcli import registry as registry_mod
from sewcli.batch import (
    EXIT_FAILED,
    EXIT_OK,
    Render,
    error,
    one_line,
    plan_run,
    progress,
    run_inputs,
    say,
)
from sewcli.errors import (
    DownloadError,
    ModelNotFoundError,
    RegistryError,
    SewError,
    UsageError,
)
from sewcli.outputs import (
    AUDIO_EXTENSIONS,
    Job,
    OutputOptions,
    StdoutClosed,
    render_transcript,
    write_stdout,
)
from sewcli.signals import signal_handlers

if TYPE_CHECKING:  # these modules import torch: only for the annotations, never at run time here
    from sewcli.classify import LoadedClassifier
    from sewcli.decoding import CTCDecoder
    from sewcli.inference import LoadedModel
    from sewcli.pipeline import PipelineOptions
    from sewcli.records import Segment, Transcript

    Loaded = tuple[LoadedModel, CTCDecoder, PipelineOptions]

log = logging.getLogger("sewcli")

LIVE_BLOCK_FRAMES = 8192
# --live without --chunk-length: model windows of at most this many seconds. A segment waits for the window
# that holds its end, so the window is most of the delay (bench/live_latency.py, embedded model, 60 s: median
# 6.0 -> 3.6 s greedy and 8.1 -> 5.9 s with the default decoder for 10 -> 5 s windows; README), and on long
# input 5 s windows transcribe as well as 10 s ones (README, Chunking).
LIVE_CHUNK_SECONDS = 5.0
# --live with a beam search: a piece of speech with no 0.5 s pause in it is cut after this many seconds
# (60 s otherwise), at a word boundary the model wrote when there is one: without it, continuous speech
# printed nothing for a minute.
LIVE_MAX_PIECE_SECONDS = 8.0
EXIT_USAGE = 2  # EXIT_OK, EXIT_FAILED: sewcli/batch.py
EXIT_SIGPIPE, EXIT_SIGINT, EXIT_SIGTERM = 141, 130, 143

# rich_markup_mode=None: plain click help; typer's rich help formatter alone costs ~0.25 s of imports.
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings=HELP_OPTIONS,
    help="sew: offline speech-to-text with SEW, SEW-D and wav2vec2 CTC models.",
)
models_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=HELP_OPTIONS,
    help="List, inspect and download models.",
)
app.add_typer(models_app, name="models")


class Format(str, enum.Enum):
    txt = "txt"
    srt = "srt"
    vtt = "vtt"
    json = "json"
    jsonl = "jsonl"
    tsv = "tsv"


class Decoder(str, enum.Enum):
    auto = "auto"
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


def _output_dir(value: str) -> Path:
    """--output-dir as given: an empty value (`-o "$UNSET"`) is an error, not the current directory."""
    if not value.strip():
        raise typer.BadParameter("must not be empty (for the current directory, give -o .)")
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{value} is a file, not a directory")
    return path


OutputDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--output-dir",
        "-o",
        parser=_output_dir,
        metavar="DIR",
        help="Write files here (mirrors directory inputs).",
    ),
]
SkipExistingOpt = Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose outputs exist.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="auto = cuda when available (cpu for int8).")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for the model.")]


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
    # --chunk-length and --chunk-overlap as given (None: not given). Without a length, a registry entry's
    # chunk_length replaces the chunking stage's default window once the model is known (at most
    # LIVE_CHUNK_SECONDS with --live).
    chunk_given: tuple[float | None, float | None] = (None, None)
    # --pause-break as given (None: the registry entry's pause_break, else 0).
    pause_break_given: float | None = None


class _Terminated(BaseException):
    """Raised from the SIGTERM handler so that cleanup code runs (not an Exception: nothing swallows it)."""


# ----------------------------------------------------------------------------------------------------
# messages and logging


class _LineFormatter(logging.Formatter):
    """`warning: <message>` on one line, like the error lines (for logs and pipes, which rich would wrap)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {one_line(record.getMessage())}"


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
# the run


@contextmanager
def _signals() -> Iterator[None]:
    """SIGTERM raises _Terminated (so `finally` blocks clean up) for the duration of the run."""

    def on_term(signum: int, frame: object) -> None:
        raise _Terminated()

    with signal_handlers({signal.SIGTERM: on_term}):
        yield


def _load(request: TranscribeRequest) -> Loaded:
    """Resolve, fetch and load the model, build the decoder, and settle the options that depend on the model
    (its own language model, its preferred window). torch is imported here."""
    from sewcli import chunking, decoding, hub, inference

    reg = registry_mod.load_registry(request.registry)
    spec = registry_mod.resolve(request.model, reg, request.revision)
    directory = hub.model_directory(spec)
    log.info("model %s from %s", spec.name, directory)
    model = inference.load(directory, request.pipeline.inference, name=spec.name, language=spec.language)
    options = decoding.with_bundled_lm(request.pipeline.decode, directory)
    if options.lm_path is not None:
        log.info("language model %s", options.lm_path)
    if request.pause_break_given is None and spec.pause_break is not None:
        options = replace(options, pause_break_seconds=spec.pause_break)
    decoder = decoding.build_decoder(model.vocab, options)
    if request.pause_break_given is not None and decoder.kind == "beam":
        log.warning("--pause-break has no effect: %s is decoded by beam search (--decoder greedy)", spec.name)
    pipeline = replace(request.pipeline, decode=options)
    length, overlap = request.chunk_given
    if length is None:
        window, why = pipeline.chunk.chunk_seconds, "the default"
        if spec.chunk_length is not None:
            window, why = spec.chunk_length, f"the registry's chunk_length for {spec.name}"
        if request.output.live and window > LIVE_CHUNK_SECONDS:
            window, why = LIVE_CHUNK_SECONDS, "--live"
        if window != pipeline.chunk.chunk_seconds:
            pipeline = replace(
                pipeline,
                chunk=chunking.ChunkOptions(
                    chunk_seconds=window, overlap_seconds=window / 10 if overlap is None else overlap
                ),
            )
            log.info("windows of %g s (%s)", window, why)
    chunking.checked_geometry(  # windows this model cannot take: one usage error now, not one per input
        pipeline.chunk,
        sample_rate=model.sample_rate,
        hop_samples=model.hop_samples,
        frame_count=model.frame_count,
        min_samples=model.min_samples,
        align_samples=model.align_samples,
    )
    return model, decoder, pipeline


def run_transcribe(request: TranscribeRequest) -> int:
    """Transcribe every input of `request`; returns the exit status (see the module docstring)."""
    started = time.perf_counter()
    plan = plan_run(request.inputs, request.output)
    reading, stopping = threading.Event(), threading.Event()

    def on_interrupt(signum: int, frame: object) -> None:
        if stopping.is_set() or not reading.is_set():  # a second Ctrl-C, or one while the model loads
            raise KeyboardInterrupt
        stopping.set()
        say("sew: interrupted: finishing what was read (Ctrl-C again to stop at once)")

    # --live, or stdin as the one input: the first Ctrl-C ends the input (a microphone stream has no other
    # end) and the audio already read is still transcribed and printed or written; exit status 130 all the
    # same.
    stream = request.output.live or [job.source for job in plan.jobs] == ["-"]
    handlers: dict[int, Callable[[int, object], None]] = {signal.SIGINT: on_interrupt} if stream else {}
    with signal_handlers(handlers), progress(not request.quiet and sys.stderr.isatty()) as start:

        def work(job: Job, loaded: Loaded) -> tuple[dict[str, Render], float]:
            model, decoder, options = loaded
            live = None
            if request.output.live:
                from sewcli.writers import LiveWriter

                live = LiveWriter(request.output.formats[0], write_stdout)
            if stream:
                reading.set()
            transcript = _transcribe_one(
                job,
                model,
                decoder,
                options,
                start(job.display),
                None if live is None else live.segment,
                stopping.is_set if stream else None,
            )
            if live is not None:
                live.finish()
            if stopping.is_set():
                seconds = transcript.duration
                say(f"sew: {job.display}: input ended by Ctrl-C after {seconds:.4f} s of audio")
            formats = () if live is not None else request.output.formats  # --live printed it already
            return {fmt: render_transcript(transcript, fmt) for fmt in formats}, transcript.duration

        decoders: list[CTCDecoder] = []

        def load() -> Loaded:
            model, decoder, options = _load(request)
            decoders.append(decoder)
            return model, decoder, options

        try:
            status = run_inputs(
                plan,
                request.output,
                load=load,
                work=work,
                quiet=request.quiet,
                verbose=request.verbose,
                started=started,
            )
            return EXIT_SIGINT if stopping.is_set() else status
        finally:
            for decoder in decoders:
                decoder.close()  # beam-search worker processes


def _transcribe_one(
    job: Job,
    model: LoadedModel,
    decoder: CTCDecoder,
    options: PipelineOptions,
    update: Callable[[float, float | None], None],
    on_segment: Callable[[Segment], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Transcript:
    from sewcli import pipeline

    return pipeline.transcribe_file(
        job.source,
        model,  # type: ignore[arg-type]
        decoder,  # type: ignore[arg-type]
        options,
        progress=update,
        on_segment=on_segment,
        stop=stop,
    )


# ----------------------------------------------------------------------------------------------------
# commands


def _version(value: bool) -> None:
    if value:
        from sewcli import __version__

        write_stdout(f"sew {__version__}\n")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print sew's version and exit."),
    ] = False,
) -> None:
    """sew: offline speech-to-text with SEW, SEW-D and wav2vec2 CTC models."""


def _extension_list(given: list[str] | None) -> tuple[str, ...]:
    """--ext values, repeated or comma-separated (as its default is shown): wav,flac -> (wav, flac)."""
    if not given:
        return AUDIO_EXTENSIONS
    exts = tuple(e.strip().lstrip(".") for value in given for e in value.split(","))
    if not all(exts):
        raise UsageError(f"--ext needs extensions such as wav or wav,flac, got {','.join(given)!r}")
    return exts


def _short_openmp_spin() -> None:
    """Bound how long torch's idle OpenMP threads spin before sleeping, unless the user chose (read at load).

    Called by the commands that run a model in this process (transcribe, classify), before torch is imported;
    not by `sew bench`, whose reference (transformers) processes run with the user's own settings.

    libgomp's default spin (300,000 iterations) burns a core that another process may need. Measured on 2
    cores (docs/benchmarks.md): with one core busy, a 10-minute file took 39.7 s with the default, 10.0 s with
    GOMP_SPINCOUNT=10000, 9.4 s with OMP_WAIT_POLICY=PASSIVE; idle, 10000 costs 0-5 % and passive 7-21 %.
    """
    if not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & os.environ.keys() and "torch" not in sys.modules:
        os.environ["GOMP_SPINCOUNT"] = "10000"


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
            help="Extensions taken from directories; comma-separated or repeatable.",
            show_default=",".join(AUDIO_EXTENSIONS),
        ),
    ] = None,
    decoder: Annotated[
        Decoder,
        typer.Option(
            "--decoder",
            help="CTC decoder. auto: beam search with the model's language model if it ships one "
            "(or with --lm / --hotword), else greedy.",
        ),
    ] = Decoder.auto,
    beam_width: Annotated[
        int | None, typer.Option("--beam-width", min=1, help="Beams kept (beam decoder).", show_default="32")
    ] = None,
    lm: Annotated[
        Path | None,
        typer.Option(
            "--lm",
            help="Word n-gram LM for beam: .arpa[.gz], KenLM .bin, or a language_model/ directory.",
            show_default="the model's own, if it ships one",
        ),
    ] = None,
    no_lm: Annotated[
        bool, typer.Option("--no-lm", help="Beam search without the LM that ships with the model.")
    ] = False,
    alpha: Annotated[
        float | None, typer.Option("--alpha", help="LM weight.", show_default="the LM's attrs.json, else 0.5")
    ] = None,
    beta: Annotated[
        float | None,
        typer.Option("--beta", help="Word insertion bonus.", show_default="the LM's attrs.json, else 1.5"),
    ] = None,
    hotword: Annotated[
        list[str] | None, typer.Option("--hotword", help="Boost this word or phrase; repeatable.")
    ] = None,
    hotword_weight: Annotated[float | None, typer.Option("--hotword-weight", show_default="10")] = None,
    pause_break: Annotated[
        float | None,
        typer.Option(
            "--pause-break",
            help="Greedy decoder: end a word at a silence this long even where the model wrote no word "
            "break (0: off, transformers' greedy text).",
            show_default="the model's (registry), else 0",
        ),
    ] = None,
    beam_workers: Annotated[
        int | None,
        typer.Option(
            "--beam-workers",
            min=0,
            help="Processes searching beams while the model runs (0: none).",
            show_default="one per CPU, at most 4; 0 with --live",
        ),
    ] = None,
    chunk_length: Annotated[
        float | None,
        typer.Option(
            "--chunk-length",
            help="Seconds per model window.",
            show_default="the model's (registry), else 30; at most 5 with --live",
        ),
    ] = None,
    chunk_overlap: Annotated[
        float | None,
        typer.Option(
            "--chunk-overlap", help="Seconds shared by neighbouring windows.", show_default="chunk/10"
        ),
    ] = None,
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    model_workers: Annotated[
        int | None,
        typer.Option(
            "--model-workers",
            min=1,
            help="Windows the model runs at once on the CPU, sharing --threads.",
            show_default="one per thread, at most 4; 1 with --live",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help="Equal-length windows per forward.",
            show_default="1 on the CPU, 4 on CUDA; 1 with --live",
        ),
    ] = None,
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
            help="--exit-layer auto: a window exits once its mean max posterior reaches this.",
            show_default="0.9",
        ),
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Print each segment as soon as it is final (one input to stdout; txt: a line per "
            "segment), e.g. from a microphone: `arecord -f S16_LE -r 16000 | sew transcribe - --live`.",
        ),
    ] = False,
    revision: RevisionOpt = None,
    registry: RegistryOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Transcribe audio files, directories or stdin to txt, srt, vtt, json, jsonl or tsv."""
    _setup_logging(verbose, quiet)
    _short_openmp_spin()
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
                no_lm=no_lm,
                alpha=alpha,
                beta=beta,
                hotwords=tuple(hotword or ()),
                hotword_weight=hotword_weight,
                beam_workers=beam_workers,
                pause_break=pause_break,
                chunk_length=chunk_length,
                chunk_overlap=chunk_overlap,
                device=device,
                threads=threads,
                model_workers=model_workers,
                batch_size=batch_size,
                precision=precision,
                exit_layer=exit_layer,
                exit_threshold=exit_threshold,
                live=live,
            ),
            output=OutputOptions(
                formats=tuple(dict.fromkeys(f.value for f in (fmt or [Format.txt]))),
                output_dir=output_dir,
                skip_existing=skip_existing,
                overwrite=overwrite,
                extensions=_extension_list(ext),
                live=live,
            ),
            quiet=quiet,
            verbose=verbose,
            chunk_given=(chunk_length, chunk_overlap),
            pause_break_given=pause_break,
        )
    except SewError as e:
        error(None, str(e))
        raise typer.Exit(EXIT_USAGE) from None
    raise typer.Exit(_guarded(lambda: run_transcribe(request), verbose))


def _pipeline_options(**kw: object) -> PipelineOptions:
    """Build the per-stage option dataclasses from the command line (None = the stage's own default)."""
    from sewcli import chunking, decoding
    from sewcli.audio import AudioOptions
    from sewcli.inference_options import InferenceOptions
    from sewcli.pipeline import PipelineOptions

    def given(**values: Any) -> dict[str, Any]:
        return {k: v for k, v in values.items() if v is not None}

    beam_settings = (
        kw["lm"] is not None
        or kw["hotwords"]
        or kw["beam_width"] is not None
        or kw["beam_workers"] is not None
    )
    beam = kw["decoder"] is not Decoder.greedy  # auto may become beam once the model is known
    if not beam and (beam_settings or kw["no_lm"]):
        raise UsageError(
            "--lm, --no-lm, --hotword, --beam-width and --beam-workers need --decoder beam or auto"
        )
    if kw["lm"] is not None and kw["no_lm"]:
        raise UsageError("--lm and --no-lm contradict each other")
    if kw.get("pause_break") is not None and kw["decoder"] is Decoder.beam:
        raise UsageError("--pause-break applies to the greedy decoder, not to --decoder beam")
    for option in ("alpha", "beta", "hotword_weight", "pause_break", "exit_threshold"):
        if kw[option] is not None and not math.isfinite(kw[option]):  # type: ignore[arg-type]
            raise UsageError(f"--{option.replace('_', '-')} must be a finite number, got {kw[option]}")
    if kw["pause_break"] is not None and kw["pause_break"] < 0:  # type: ignore[operator]
        raise UsageError(f"--pause-break must be >= 0 seconds, got {kw['pause_break']}")
    if kw["exit_threshold"] is not None and not 0 <= kw["exit_threshold"] <= 1:  # type: ignore[operator]
        raise UsageError(f"--exit-threshold must be in [0, 1], got {kw['exit_threshold']}")
    if any(not str(word).strip() for word in kw["hotwords"]):  # type: ignore[attr-defined]
        raise UsageError("--hotword must not be empty")
    kind = kw["decoder"].value  # type: ignore[attr-defined]
    if kind == "auto" and beam_settings:
        kind = "beam"  # beam settings given: the user wants a beam search, LM or not
    decode = decoding.DecodeOptions(
        kind=kind,
        **given(
            beam_width=kw["beam_width"],
            lm_path=None if kw["lm"] is None else str(kw["lm"]),
            alpha=kw["alpha"],
            beta=kw["beta"],
            hotword_weight=kw["hotword_weight"],
            pause_break_seconds=kw.get("pause_break"),
            max_piece_seconds=LIVE_MAX_PIECE_SECONDS if kw.get("live") else None,
        ),
        hotwords=kw["hotwords"],  # type: ignore[arg-type]
        bundled_lm=not kw["no_lm"],
        workers=_beam_workers(kw["beam_workers"], bool(kw.get("live"))) if beam else 0,  # type: ignore[arg-type]
    )
    overlap = kw["chunk_overlap"]
    if overlap is None and kw["chunk_length"] is not None:
        # the default ratio: 30 s windows, 3 s overlap
        overlap = kw["chunk_length"] / 10  # type: ignore[operator]
    chunk = chunking.ChunkOptions(**given(chunk_seconds=kw["chunk_length"], overlap_seconds=overlap))
    infer = InferenceOptions(
        device=kw["device"].value,  # type: ignore[attr-defined]
        threads=kw["threads"],  # type: ignore[arg-type]
        # --live: one window at a time (a second worker would wait for the next window's audio)
        workers=1 if kw.get("live") and kw.get("model_workers") is None else kw.get("model_workers"),  # type: ignore[arg-type]
        # --live: each window as soon as it is read (a batch would wait for the next windows' audio)
        batch_size=1 if kw.get("live") and kw["batch_size"] is None else kw["batch_size"],  # type: ignore[arg-type]
        precision=kw["precision"].value,  # type: ignore[attr-defined]
        **given(exit_layer=_exit_layer(kw["exit_layer"]), exit_threshold=kw["exit_threshold"]),  # type: ignore[arg-type]
    )
    # --live: smaller reads (0.5 s at 16 kHz instead of 4 s), so a stream's audio reaches the model sooner
    live = AudioOptions(block_frames=LIVE_BLOCK_FRAMES, stream_compressed=True)
    audio = live if kw.get("live") else AudioOptions()
    return PipelineOptions(audio=audio, chunk=chunk, decode=decode, inference=infer)


def _beam_workers(given: int | None, live: bool = False) -> int:
    """--beam-workers, or by default one per CPU (at most 4) when there are at least two, none with --live.

    Measured on 2 cores (docs/benchmarks.md): the search costs about as much CPU as the model or (on flat
    posteriors) far more, and two workers beside the model's two threads beat one worker, or one thread + one.
    A live stream comes no faster than real time, so throughput does not matter there, but a worker's words
    can only be taken when the model hands over its next window (bench/live_latency.py, default decoder:
    from a segment's end to its line, median 10.3 s and max 20.5 s with workers, 8.1 and 13.6 s without).
    """
    if given is not None:
        return given
    if live:
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return min(cpus, 4) if cpus >= 2 else 0


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
        error(None, str(e), verbose)
        return EXIT_USAGE
    except SewError as e:
        error(None, str(e), verbose)
        return EXIT_FAILED
    except KeyboardInterrupt:
        say("sew: interrupted")
        return EXIT_SIGINT
    except _Terminated:
        say("sew: terminated")
        return EXIT_SIGTERM
    except (StdoutClosed, BrokenPipeError):
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
        write_stdout("\n".join(lines) + "\n* default model; size: parameters in millions\n")
        if reg.default_problem:  # listed all the same: this is the command that helps fix it
            say(f"warning: {reg.default_problem}")
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
                "window",
                f"{spec.chunk_length:g} s, overlap {spec.chunk_length / 10:g} s (registry)"
                if spec.chunk_length
                else "30 s, overlap 3 s (default)",
            ),
            (
                "pause break",
                f"{spec.pause_break:g} s (registry; greedy decoder)" if spec.pause_break else "off (default)",
            ),
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
            rows.append(("language model", _lm_summary(status.directory)))
        width = max(len(k) for k, _ in rows)
        write_stdout("".join(f"{k:<{width}}  {v}\n" for k, v in rows))
        return EXIT_OK

    raise typer.Exit(_guarded(body, False))


def _lm_summary(directory: Path) -> str:
    """The model's own language_model/ (used by the default decoder), or that there is none."""
    lm_dir = directory / "language_model"
    if not lm_dir.is_dir():
        return "none (the default decoder is greedy)"
    from sewcli.decoding import LM_FILE_SUFFIXES

    lm_files = sorted(p for p in lm_dir.iterdir() if p.name.lower().endswith(LM_FILE_SUFFIXES))
    listed = ", ".join(f"{p.name} ({_mb(p.stat().st_size)})" for p in lm_files) or "no LM file"
    return f"language_model/{' ' if lm_files else ': '}{listed}; the default decoder is beam search with it"


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
    with_lm: Annotated[
        bool,
        typer.Option("--with-lm", help="Also fetch the repository's language_model/ (used by beam search)."),
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Download (or refresh) a hub model into the Hugging Face cache; prints its directory."""
    _setup_logging(verbose, False)

    def body() -> int:
        from sewcli import hub

        spec = registry_mod.resolve(name, registry_mod.load_registry(registry), revision)
        if spec.is_local:
            raise DownloadError(f"{spec.name}: is a local model ({spec.path}); nothing to download")
        write_stdout(f"{hub.download(spec, with_lm=with_lm)}\n")
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

    def work(job: Job, model: LoadedClassifier) -> tuple[dict[str, Render], float]:
        result = stage.classify_file(job.source, model, options)
        renders: dict[str, Render] = {
            fmt: functools.partial(stage.WRITERS[fmt], result) for fmt in request.output.formats
        }
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


def _load_classifier(request: ClassifyRequest) -> LoadedClassifier:
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
    _short_openmp_spin()
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
    device: Annotated[
        str,
        typer.Option(
            "--device", help="cpu, or cuda: every engine on the GPU (transformers too).", show_default="cpu"
        ),
    ] = "cpu",
    precision: Annotated[
        list[str] | None,
        typer.Option(
            "--precision",
            help="Repeatable: fp32, bf16, int8 on the CPU; fp32, fp16, bf16 on cuda.",
            show_default="all three",
        ),
    ] = None,
    batch_size: Annotated[
        list[int] | None,
        typer.Option("--batch-size", help="Repeatable.", show_default="1, 4; 1, 16 on cuda"),
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
            device=device,
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
            write_stdout(text)
        else:
            output.write_text(text, encoding="utf-8")
        return EXIT_OK

    raise typer.Exit(_guarded(body, verbose))


def _exit_without_teardown(done: SystemExit) -> None:
    """Once torch is loaded, end the process with os._exit after doing what a normal exit does for sew.

    Python's normal exit frees torch's modules object by object, which takes 0.3-0.4 s on this idle 2-core
    machine (up to 1 s on a loaded one), 4-10 % of a 10-minute file with `--precision int8`
    (docs/benchmarks.md, "Interpreter teardown skipped"). Everything the teardown would still do for sew
    is done here first: stdout and stderr flushed, the atexit handlers run (logging's flush,
    multiprocessing's and tempfile's clean-ups). Results are written and renamed in place before this
    point. Where anything else could still be running (a non-daemon thread, a child process) or a flush
    fails, it returns and the normal exit runs.
    """
    if "torch" not in sys.modules:  # no torch: the teardown is quick
        return
    code = 0 if done.code is None else done.code
    if not isinstance(code, int):  # a message: Python prints it at exit
        return
    current = threading.current_thread()
    if any(t is not current and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return  # the normal exit waits for it
    mp = sys.modules.get("multiprocessing")
    if mp is not None and mp.active_children():
        return
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):  # a closed pipe or stream: the normal exit deals with it
        return
    import atexit

    atexit._run_exitfuncs()  # what Py_FinalizeEx runs before freeing modules
    os._exit(code)


def main() -> None:
    """Console-script entry point."""
    _open_std_fds()
    _utf8_stdout()
    try:
        app()
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_SIGPIPE)
    except SystemExit as done:
        _exit_without_teardown(done)
        raise
