"""Decode one audio input into mono float32 blocks at its native rate, in bounded memory.

Why soundfile (libsndfile): it is a small wheel with its own libsndfile that reads WAV (every PCM/float
subtype), FLAC, OGG/Vorbis/Opus, MP3 (libsndfile >= 1.1) and a dozen older formats, and it can read a file
block by block, so memory does not grow with the file length (whisper and faster-whisper decode whole files
into RAM). What it cannot open (AAC/M4A, WMA, video containers, ...) or opens but cannot decode from the
first block (a truncated FLAC) is streamed through `ffmpeg` when that program is on PATH: it writes 32-bit
float WAV to a pipe that we read block by block too. Plain-text files are never handed to ffmpeg (its raw
demuxers "detect" text as AMR-NB). Both paths downmix the same way: the mean over the channel axis of
soundfile's (frames, channels) array (transformers once averaged the wrong axis, #47886).

Inputs:
- a path (str or os.PathLike; unicode, spaces, quotes and leading dashes are fine: ffmpeg gets `file:PATH`
  in an argument list, never a shell string);
- "-" for standard input, and any non-regular file (a FIFO such as `<(cat a.wav)`). A WAV stream (RIFF/WAVE,
  PCM 8/16/24/32-bit or float 32/64, plain or WAVE_FORMAT_EXTENSIBLE: what `arecord`, `sox ... -t wav -` and
  `ffmpeg ... -f wav -` write) is decoded as it arrives, in bounded memory, so transcription starts before
  the writer finishes and a stream may be endless; its header's data size is only an upper bound (streaming
  writers put a placeholder there). With `AudioOptions(stream_compressed=True)` (`--live`) and ffmpeg on PATH,
  MP3, AAC (ADTS), Ogg, FLAC and Matroska/WebM streams are decoded as they arrive too: a thread feeds them to
  ffmpeg's stdin. Anything else is spooled to a
  temporary file in 1 MiB chunks (libsndfile needs to seek) and the file is deleted on close. The format is
  always detected from the content, never from the name.

Errors are `AudioError` with one line "NAME: problem" (missing, a directory, empty, unreadable, not audio,
no samples, NaN/inf samples, a decode failure). A truncated WAV (header claims more data than present) is
not an error: the available prefix is decoded and a warning is logged. The stream is read until EOF; header
frame counts are only informative (MP3/OGG counts can be estimates, python-soundfile #379).

Public API (stable):
    AudioOptions(block_frames=65536, use_ffmpeg=True)            frozen options
    open_audio(source, options=AudioOptions()) -> context manager yielding an AudioStream:
        stream.info: records.AudioInfo; stream.blocks() -> Iterator[FloatArray] (1-D float32, native rate);
        stream.frames_read: samples decoded so far (the true length once blocks() is exhausted)
    probe(source, options) -> AudioInfo                 (opens and closes; not for "-": it consumes stdin)
    read_blocks(source, options) -> Iterator[FloatArray] (a generator that opens and closes the input)
    display_name(source) -> str                          "<stdin>" for "-", else the path as given
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import logging
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Protocol

import numpy as np
import soundfile as sf  # type: ignore[import-untyped]

from sewcli.errors import AudioError, UsageError
from sewcli.records import AudioInfo, FloatArray

logger = logging.getLogger(__name__)

_SPOOL_CHUNK = 1 << 20  # bytes per read when spooling stdin or a pipe
_SPOOL_CHECK_EVERY = 16 << 20  # look at the free space every 16 MiB written
_SPOOL_KEEP_FREE = 1 << 30  # leave 1 GiB (or a tenth of the file system) free in the temporary directory
_SF_COUNT_MAX = 2**62  # libsndfile reports SF_COUNT_MAX frames for some truncated OGGs (libsndfile#809)

# libsndfile error codes (sndfile.h) -> readable text; other codes use libsndfile's own string.
_SF_MESSAGES = {
    1: "not a recognised audio format",
    3: "malformed audio file",
    4: "audio format recognised but its encoding is not supported",
    7: "not a recognised audio format",  # the MP3 path reports "not a regular file" for garbage bytes
}


@dataclass(frozen=True)
class AudioOptions:
    """How inputs are read: frames per block and whether ffmpeg may decode what libsndfile cannot."""

    block_frames: int = 65536  # ~1.4 s at 48 kHz; memory is O(block_frames * channels)
    use_ffmpeg: bool = True
    # compressed streams on stdin/FIFOs through ffmpeg as they arrive (`--live`), rather than spooled and
    # read by libsndfile: ffmpeg's MP3/Ogg decoders differ from libsndfile's by a few samples at the ends
    stream_compressed: bool = False

    def __post_init__(self) -> None:
        if self.block_frames <= 0:
            raise UsageError(f"block_frames must be positive, got {self.block_frames}")


class AudioStream(Protocol):
    """An opened input: its header information and its mono float32 blocks at the native rate."""

    info: AudioInfo
    frames_read: int

    def blocks(self) -> Iterator[FloatArray]:
        """Yield 1-D float32 blocks until EOF; AudioError on NaN/inf, no samples, or a decode failure."""
        ...


def display_name(source: str | os.PathLike[str]) -> str:
    """The name used in messages: "<stdin>" for "-", else the path as the user gave it."""
    return "<stdin>" if str(source) == "-" else os.fspath(source)


def _downmix(frames: FloatArray) -> FloatArray:
    """(frames, channels) float32 -> (frames,) float32, the mean over channels (axis 1, not axis 0)."""
    if frames.shape[1] == 1:
        return frames[:, 0].copy()
    # Column sums instead of frames.mean(axis=1): a reduction over a 2-wide inner axis is ~18x slower.
    mono = frames[:, 0].copy()  # (frames,)
    for c in range(1, frames.shape[1]):
        mono += frames[:, c]
    mono /= frames.shape[1]
    return mono


def _check_finite(block: FloatArray, name: str, offset: int, rate: int) -> None:
    """Raise AudioError if a block holds NaN or infinite samples."""
    if not np.isfinite(block).all():
        bad = offset + int(np.flatnonzero(~np.isfinite(block))[0])
        raise AudioError(f"{name}: contains NaN or infinite samples (first at {bad / rate:.3f} s)")


@contextlib.contextmanager
def _c_stderr_to_debug_log(name: str) -> Iterator[None]:
    """Send what C code writes to fd 2 meanwhile to the debug log.

    libmpg123 inside libsndfile prints its own "Note: Illegal Audio-MPEG-Header ..." lines for damaged or
    non-MP3 input; sew's one error line already says it.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (a daemon): nothing to protect
        yield
        return
    sink = tempfile.TemporaryFile()
    try:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            sink.seek(0)
            chatter = sink.read().decode("utf-8", "replace").split()
            if chatter:
                logger.debug("%s: libsndfile said: %s", name, " ".join(chatter))
    finally:
        os.close(saved)
        sink.close()


class _SoundFileStream:
    """An input opened with libsndfile."""

    def __init__(self, f: sf.SoundFile, name: str, source: str, block_frames: int) -> None:
        self._f, self._name, self._block = f, name, block_frames
        frames = f.frames if 0 <= f.frames < _SF_COUNT_MAX else None
        self.info = AudioInfo(
            source=source,
            sample_rate=int(f.samplerate),
            channels=int(f.channels),
            frames=frames,
            format=str(f.format),
            subtype=str(f.subtype),
        )
        self.frames_read = 0
        self._buf = np.empty((block_frames, self.info.channels), dtype=np.float32)  # reused by every read
        self._pending: FloatArray | None = None  # the block decoded by prime(), not yet yielded
        self._primed_frames = 0
        self._warn_if_truncated()

    def _warn_if_truncated(self) -> None:
        """Log a warning when libsndfile's header log says the data chunk is shorter than declared."""
        try:
            log = self._f.extra_info
        except Exception:  # noqa: BLE001 - the log is informative only
            return
        m = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", log, re.MULTILINE)
        if m and int(m.group(2)) < int(m.group(1)) and self.info.frames:  # no frames: an error follows
            logger.warning(
                "%s: truncated file: header declares %s bytes of audio data but only %s are present; "
                "decoding the available %.2f s",
                self._name,
                m.group(1),
                m.group(2),
                (self.info.frames or 0) / self.info.sample_rate,
            )

    def _read(self) -> FloatArray | None:
        """Decode the next block as mono, or None at EOF; _DecodeError if libsndfile fails."""
        mp3 = self.info.format in ("MP3", "MPEG")
        quiet = _c_stderr_to_debug_log(self._name) if mp3 else contextlib.nullcontext()
        try:
            with quiet:
                n = self._f.read(self._block, dtype="float32", always_2d=True, out=self._buf).shape[0]
        except (sf.SoundFileError, RuntimeError) as e:
            done = (self.frames_read + self._primed_frames) / self.info.sample_rate
            raise _DecodeError(
                f"{self._name}: decoding failed after {done:.2f} s: {_sf_reason(e)} "
                "(truncated or damaged file?)"
            ) from e
        return None if n == 0 else _downmix(self._buf[:n])

    def prime(self) -> None:
        """Decode the first block now: some damaged files (a truncated FLAC) open fine but cannot be read."""
        self._pending = self._read()
        self._primed_frames = 0 if self._pending is None else len(self._pending)

    def blocks(self) -> Iterator[FloatArray]:
        """Yield mono blocks until EOF."""
        block, self._pending, self._primed_frames = self._pending, None, 0
        if block is None:
            block = self._read()
        while block is not None:
            _check_finite(block, self._name, self.frames_read, self.info.sample_rate)
            self.frames_read += len(block)
            yield block
            block = self._read()
        if self.frames_read == 0:
            raise AudioError(f"{self._name}: contains no audio samples")


class _DecodeError(AudioError):
    """libsndfile opened the input but failed to decode it."""


class _FfmpegError(AudioError):
    """ffmpeg failed; `detail` is its reason ("ffmpeg: ..."); `plain`: the message says all (no need for
    libsndfile's reason next to it)."""

    def __init__(self, message: str, detail: str, plain: bool = False) -> None:
        super().__init__(message)
        self.detail, self.plain = detail, plain


_WAVE_PCM, _WAVE_FLOAT, _WAVE_EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
# (format tag, bits per sample) -> (libsndfile's subtype name, numpy dtype of one sample, scale to [-1, 1)).
# The scales are libsndfile's, so a streamed WAV decodes to the same floats as the same file on disk.
_WAV_SAMPLES: dict[tuple[int, int], tuple[str, str, float]] = {
    (_WAVE_PCM, 8): ("PCM_U8", "u1", 1 / 0x80),
    (_WAVE_PCM, 16): ("PCM_16", "<i2", 1 / 0x8000),
    (_WAVE_PCM, 24): ("PCM_24", "i3", 1 / 0x800000),
    (_WAVE_PCM, 32): ("PCM_32", "<i4", 1 / 0x80000000),
    (_WAVE_FLOAT, 32): ("FLOAT", "<f4", 1.0),
    (_WAVE_FLOAT, 64): ("DOUBLE", "<f8", 1.0),
}


@dataclass(frozen=True)
class _WavLayout:
    """What the header of a WAV stream says, up to its data chunk."""

    rate: int
    channels: int
    subtype: str  # libsndfile's name: PCM_16, FLOAT, ...
    dtype: str  # numpy dtype of one sample ("i3": 24-bit little-endian, unpacked by hand)
    scale: float
    data_bytes: int | None  # the data chunk's declared size (an upper bound); None when it says 0

    @property
    def sample_bytes(self) -> int:
        return 3 if self.dtype == "i3" else np.dtype(self.dtype).itemsize

    def to_float(self, data: bytes, frames: int) -> FloatArray:
        """`frames` whole frames of sample bytes -> (frames, channels) float32, libsndfile's scaling."""
        if self.dtype == "i3":
            b = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3)  # (samples, 3 bytes, little-endian)
            high = b[:, 2].view(np.int8).astype(np.int32) << 16  # the sign comes with the top byte
            x = high | (b[:, 1].astype(np.int32) << 8) | b[:, 0].astype(np.int32)
        else:
            x = np.frombuffer(data, dtype=self.dtype)
        if self.dtype == "u1":
            x = x.astype(np.int32) - 128
        y = x.astype(np.float32)
        if self.scale != 1.0:
            y *= np.float32(self.scale)
        return y.reshape(frames, self.channels)  # (frames, channels)


class _ShortRead(Exception):
    """The stream ended inside a WAV header."""


def _wav_layout(read_exact: Callable[[int], bytes]) -> _WavLayout | str:
    """Parse a RIFF/WAVE header from a stream up to the data chunk.

    Returns the layout, or the reason it cannot be streamed (not RIFF/WAVE, a sample format not in
    _WAV_SAMPLES); `read_exact` raises when the stream ends early.
    """
    riff = read_exact(12)
    if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        return "not a RIFF/WAVE stream"
    fmt: tuple[int, int, int, int] | None = None  # (tag, channels, rate, bits)
    while True:
        cid, size = struct.unpack("<4sI", read_exact(8))
        if cid == b"data":
            break
        if size > 1 << 20:  # no header chunk before the data is this big: something else than we think
            return f"a {cid!r} chunk of {size} bytes before the audio data"
        body = read_exact(size + (size & 1))  # chunks are word-aligned
        if cid == b"fmt " and size >= 16:
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _WAVE_EXTENSIBLE and size >= 40:
                tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID starts with the format tag
            fmt = (tag, channels, rate, bits)
    if fmt is None:
        return "no format chunk before the audio data"
    tag, channels, rate, bits = fmt
    if (tag, bits) not in _WAV_SAMPLES or channels <= 0 or rate <= 0:
        return f"WAV format tag 0x{tag:04x} with {bits}-bit samples"
    subtype, dtype, scale = _WAV_SAMPLES[(tag, bits)]
    return _WavLayout(rate, channels, subtype, dtype, scale, size or None)


class _Recorder:
    """A binary reader that keeps what it has read, so that a stream that is not WAV can still be spooled."""

    def __init__(self, reader: IO[bytes]) -> None:
        self.reader = reader
        self.seen = bytearray()

    def read_exact(self, n: int) -> bytes:
        data = self.reader.read(n)
        self.seen += data
        if len(data) != n:
            raise _ShortRead
        return data

    def read(self, n: int = -1, *, available: bool = False) -> bytes:
        """Replay what was recorded, then read on (the interface `_spool` needs); `available`: return what
        the pipe has now (at least a byte, or b"" at EOF) instead of waiting for n bytes."""
        if self.seen:
            head = bytes(self.seen[:n] if n >= 0 else self.seen)
            del self.seen[: len(head)]
            return head
        read1 = getattr(self.reader, "read1", None) if available else None
        return read1(n) if read1 is not None else self.reader.read(n)


class _WavPipeStream:
    """A WAV stream read from a pipe as it arrives (its header already parsed)."""

    def __init__(self, reader: IO[bytes], layout: _WavLayout, name: str, source: str, block: int) -> None:
        self._in, self._layout, self._name, self._block = reader, layout, name, block
        self.info = AudioInfo(
            source=source,
            sample_rate=layout.rate,
            channels=layout.channels,
            frames=None,
            format="WAV",
            subtype=layout.subtype,
        )
        self.frames_read = 0

    def blocks(self) -> Iterator[FloatArray]:
        """Yield mono blocks until EOF (or the end of the declared data); AudioError if the pipe fails."""
        layout, rate = self._layout, self._layout.rate
        frame_bytes = layout.sample_bytes * layout.channels
        left = layout.data_bytes
        while left is None or left >= frame_bytes:
            want = self._block * frame_bytes if left is None else min(self._block * frame_bytes, left)
            try:
                data = self._in.read(want)  # a short read only at EOF
            except OSError as e:
                raise AudioError(
                    f"{self._name}: reading the input failed after {self.frames_read / rate:.2f} s: "
                    f"{e.strerror or e}"
                ) from e
            n = len(data) // frame_bytes
            if n == 0:
                if data:
                    logger.debug("%s: %d trailing bytes, less than one frame, ignored", self._name, len(data))
                break
            if left is not None:
                left -= len(data)
            mono = _downmix(layout.to_float(data[: n * frame_bytes], n))
            _check_finite(mono, self._name, self.frames_read, rate)
            self.frames_read += n
            yield mono
            if len(data) < want:
                break
        self._at_eof()
        if self.frames_read == 0:
            raise AudioError(f"{self._name}: contains no audio samples")

    def _at_eof(self) -> None:
        """Called once the stream has ended, before the check for no samples."""


class _FfmpegStream(_WavPipeStream):
    """An input decoded by an `ffmpeg` subprocess into float32 WAV on a pipe (all channels; we downmix)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        errlog: IO[bytes],
        name: str,
        source: str,
        block: int,
        declared_frames: int | None = None,
    ):
        self._proc, self._err, self._name = proc, errlog, name
        self._declared = declared_frames  # what the file's header says, when libsndfile read it
        assert proc.stdout is not None
        out = proc.stdout

        def read_exact(n: int) -> bytes:
            data = out.read(n)
            if len(data) != n:
                self._proc.wait()
                if "matches no streams" in _ffmpeg_log(self._err):  # our `-map 0:a:0`: no audio track
                    raise _FfmpegError(
                        f"{name}: has no audio stream (ffmpeg reads it, but it holds no sound)",
                        "",
                        plain=True,
                    )
                raise self._fail("not a recognised audio format")
            return data

        layout = _wav_layout(read_exact)
        if isinstance(layout, str):
            raise self._fail(f"unexpected ffmpeg output: {layout}")
        if layout.subtype != "FLOAT":
            raise self._fail(f"unexpected ffmpeg output: {layout.subtype} samples")
        super().__init__(out, layout, name, source, block)
        self.info = dataclasses.replace(self.info, format="FFMPEG")

    def _fail(self, problem: str) -> _FfmpegError:
        """An AudioError carrying ffmpeg's last stderr line."""
        self._proc.wait()
        detail = _ffmpeg_reason(self._err, self._proc.returncode)
        return _FfmpegError(f"{self._name}: {problem} ({detail})", detail)

    def _at_eof(self) -> None:
        if self._proc.wait() != 0:
            raise self._fail(f"decoding failed after {self.frames_read / self.info.sample_rate:.2f} s")
        declared, rate = self._declared, self.info.sample_rate
        if declared and self.frames_read and declared - self.frames_read > max(0.01 * declared, 0.1 * rate):
            logger.warning(
                "%s: truncated file: its header declares %.2f s of audio but only %.2f s could be decoded",
                self._name,
                declared / rate,
                self.frames_read / rate,
            )


def _open_pipe(
    reader: IO[bytes], name: str, source: str, options: AudioOptions, stack: contextlib.ExitStack
) -> AudioStream:
    """Stream a WAV from a pipe as it arrives; spool anything else to a temporary file and open that."""
    recorder = _Recorder(reader)
    try:
        layout: _WavLayout | str = _wav_layout(recorder.read_exact)
    except _ShortRead:
        layout = "shorter than a WAV header"
    except OSError as e:
        raise AudioError(f"{name}: cannot read input: {e.strerror or e}") from e
    if isinstance(layout, _WavLayout):
        logger.debug("%s: streaming %s WAV at %d Hz", name, layout.subtype, layout.rate)
        return _WavPipeStream(reader, layout, name, source, options.block_frames)
    streamable = options.stream_compressed and _ffmpeg_can_stream(bytes(recorder.seen))
    if streamable and options.use_ffmpeg and shutil.which("ffmpeg"):
        logger.debug("%s: streaming it through ffmpeg", name)
        return _open_ffmpeg(recorder, name, source, options.block_frames, stack)
    logger.debug("%s: %s; buffering it in a temporary file", name, layout)
    path = _spool(recorder, name)  # type: ignore[arg-type]  # has read()
    stack.callback(os.unlink, path)
    return _open_path(path, name, source, options, stack)


def _sf_reason(e: BaseException) -> str:
    """libsndfile's error as a short readable phrase."""
    code = getattr(e, "code", None)
    if code in _SF_MESSAGES:
        return _SF_MESSAGES[code]
    text = (getattr(e, "error_string", None) or str(e)).strip().rstrip(".")
    return text[:1].lower() + text[1:] if text else "unknown libsndfile error"


def _ffmpeg_log(errlog: IO[bytes]) -> str:
    """What ffmpeg wrote to stderr so far."""
    errlog.seek(0)
    return errlog.read().decode("utf-8", "replace")


def _ffmpeg_reason(errlog: IO[bytes], returncode: int | None) -> str:
    """The last non-empty line ffmpeg wrote to stderr, minus its `file:NAME: ` prefix."""
    lines = [ln.strip() for ln in _ffmpeg_log(errlog).splitlines() if ln.strip()]
    if not lines:
        return f"ffmpeg exited with status {returncode}"
    last = lines[-1]
    if last.startswith("file:") and ": " in last:
        last = last.rsplit(": ", 1)[1]  # "file:NAME: Invalid data found..." -> "Invalid data found..."
    return f"ffmpeg: {last}"


def _spool(reader: IO[bytes], name: str) -> str:
    """Copy a non-seekable byte stream to a temporary file in bounded chunks; return its path.

    The copy stops with an error rather than leave the temporary directory's file system with less than
    1 GiB (or a tenth of its size, if smaller) free: a stream without end (`sew transcribe - < /dev/zero`)
    must not fill the disk.
    """
    fd, path = tempfile.mkstemp(prefix="sew-input-", suffix=".audio")
    total = 0
    next_check = 0  # bytes written when the free space is looked at next
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := reader.read(_SPOOL_CHUNK):
                if total >= next_check:
                    next_check = total + _SPOOL_CHECK_EVERY
                    usage = shutil.disk_usage(os.path.dirname(path))
                    keep = min(_SPOOL_KEEP_FREE, usage.total // 10)
                    if usage.free < keep:
                        raise AudioError(
                            f"{name}: stopped buffering the input after {total / 2**20:.0f} MiB: "
                            f"{os.path.dirname(path)} is nearly full (set TMPDIR, or pass a file)"
                        )
                out.write(chunk)
                total += len(chunk)
    except OSError as e:
        os.unlink(path)
        raise AudioError(f"{name}: cannot read input: {e.strerror or e}") from e
    except BaseException:
        os.unlink(path)
        raise
    if total == 0:
        os.unlink(path)
        raise AudioError(f"{name}: input is empty (0 bytes)")
    return path


def _stdin_bytes(name: str) -> IO[bytes]:
    """The binary standard input, refusing a terminal."""
    stdin = sys.stdin
    if stdin is None:
        raise AudioError(f"{name}: standard input is closed")
    with contextlib.suppress(AttributeError, ValueError, OSError):
        if stdin.isatty():
            raise AudioError(
                f"{name}: standard input is a terminal; pipe audio into it, e.g. `sew ... - < a.wav`"
            )
    try:
        fd = stdin.fileno()
    except (AttributeError, OSError, ValueError):  # a stream without a descriptor (tests' CliRunner)
        fd = None
    if fd is not None and hasattr(stdin, "buffer"):
        # A reader of our own on the descriptor, not sys.stdin.buffer: the thread that feeds a live stream to
        # ffmpeg blocks in a read holding its reader's lock, and when Python closes sys.stdin at exit with
        # that lock held it aborts the process ("Fatal Python error: _enter_buffered_busy"; Ctrl-C or
        # SIGTERM on `... | sew transcribe - --live`). Nothing else reads sys.stdin.
        return open(fd, "rb", closefd=False)
    buffer: IO[bytes] = stdin.buffer if hasattr(stdin, "buffer") else stdin  # type: ignore[assignment]
    return buffer


def _preflight(path: str, name: str) -> bool:
    """Check a path is an existing non-empty readable file; True if it must be spooled (a named pipe)."""
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        raise AudioError(f"{name}: file not found") from e
    except OSError as e:
        raise AudioError(f"{name}: cannot access file: {e.strerror or e}") from e
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(f"{name}: is a directory, not an audio file")
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        # /dev/zero and the like never end: they would be spooled until the disk's reserve (stdin is the
        # way to stream: `some-recorder | sew transcribe -`)
        kind = "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
        raise AudioError(f"{name}: not a regular file ({kind}); pipe its audio into `sew transcribe -`")
    if not stat.S_ISREG(st.st_mode):
        return True  # a FIFO must be opened only once (by the spooler): a test open would eat its writer
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise AudioError(f"{name}: cannot open file: {e.strerror or e}") from e
    if st.st_size == 0:
        raise AudioError(f"{name}: file is empty (0 bytes)")
    return False


def _looks_like_text(path: str) -> bool:
    """True if the file starts with 8 KiB of valid UTF-8 and no NUL byte (compressed audio never does).

    ffmpeg's raw demuxers probe loosely: a plain text file can be "detected" as AMR-NB and decoded into noise.
    """
    with open(path, "rb") as f:
        head = f.read(8192)
    if not head or b"\0" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _open_ffmpeg(
    path: str | _Recorder,
    name: str,
    source: str,
    block: int,
    stack: contextlib.ExitStack,
    declared_frames: int | None = None,
) -> _FfmpegStream:
    """Start ffmpeg on `path` (argument list, `file:` prefix: names may start with '-'), or on a stream fed
    to its stdin by a thread (what was recorded, then the rest); parse its header."""
    exe = shutil.which("ffmpeg")
    assert exe is not None
    errlog = stack.enter_context(tempfile.TemporaryFile())
    fed = isinstance(path, _Recorder)
    source_arg = "pipe:0" if isinstance(path, _Recorder) else "file:" + os.path.abspath(path)
    cmd = [
        exe,
        *(() if fed else ("-nostdin",)),
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        source_arg,
        "-map",
        "0:a:0",
        "-vn",
        "-c:a",
        "pcm_f32le",
        "-f",
        "wav",
        "-bitexact",
        "pipe:1",
    ]
    stdin = subprocess.PIPE if fed else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=errlog)
    except OSError as e:
        raise AudioError(f"{name}: cannot run ffmpeg: {e.strerror or e}") from e

    def _stop() -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    stack.callback(_stop)
    if isinstance(path, _Recorder):
        feeder = threading.Thread(target=_feed, args=(path, proc), name="sew-ffmpeg-feeder", daemon=True)
        feeder.start()  # daemon: an endless input must not hold the process at exit
    return _FfmpegStream(proc, errlog, name, source, block, declared_frames)


def _feed(reader: _Recorder, proc: subprocess.Popen[bytes]) -> None:
    """Copy the input into ffmpeg's stdin until EOF, or until ffmpeg stops taking it."""
    assert proc.stdin is not None
    try:
        while chunk := reader.read(1 << 16, available=True):  # a live stream goes on as it comes
            proc.stdin.write(chunk)
            proc.stdin.flush()
    except (OSError, ValueError):  # ffmpeg gone (it reports why), or our input failed: ffmpeg sees EOF
        pass
    finally:
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()


def _ffmpeg_can_stream(head: bytes) -> bool:
    """True for the start of a format ffmpeg decodes from a pipe without seeking: MP3 (an ID3 tag or an MPEG
    audio frame sync; ADTS AAC has the same sync), Ogg, FLAC, Matroska/WebM. Not MP4/M4A (its index may be at
    the end) and nothing unknown: those are spooled to a file first."""
    return head.startswith((b"ID3", b"OggS", b"fLaC", b"\x1a\x45\xdf\xa3")) or (
        len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
    )


def _open_path(
    path: str, name: str, source: str, options: AudioOptions, stack: contextlib.ExitStack
) -> AudioStream:
    """Open a regular file with libsndfile, else with ffmpeg if allowed and present."""
    try:
        with _c_stderr_to_debug_log(name):
            # bytes on POSIX: soundfile encodes a str path strictly, so a valid non-UTF-8 name would fail
            f = sf.SoundFile(path if sys.platform == "win32" else os.fsencode(path))
    except (sf.SoundFileError, RuntimeError, TypeError) as e:
        reason = _sf_reason(e)
        if _looks_like_text(path):
            raise AudioError(f"{name}: {reason} (it looks like a text file)") from e
        if options.use_ffmpeg and shutil.which("ffmpeg"):
            logger.debug("%s: libsndfile failed (%s); trying ffmpeg", name, reason)
            try:
                return _open_ffmpeg(path, name, source, options.block_frames, stack)
            except _FfmpegError as fe:
                raise AudioError(str(fe) if fe.plain else f"{name}: {reason} ({fe.detail})") from e
        raise AudioError(f"{name}: {reason}") from e
    if f.frames == 0 and f.format == "WAV":
        streamed = _wav_written_as_a_stream(path, name, source, options, stack)
        if streamed is not None:
            f.close()
            return streamed
    stack.enter_context(f)
    stream = _SoundFileStream(f, name, source, options.block_frames)
    try:
        stream.prime()
    except _DecodeError as e:
        if not (options.use_ffmpeg and shutil.which("ffmpeg")):
            raise
        # said at debug level: if ffmpeg decodes less than the header declares, it warns about that at the end
        logger.debug("%s; trying ffmpeg", e)
        declared = int(f.frames) if f.frames > 0 else None
        f.close()
        try:
            return _open_ffmpeg(path, name, source, options.block_frames, stack, declared)
        except _FfmpegError as fe:
            raise AudioError(str(fe) if fe.plain else f"{e} ({fe.detail})") from e
    return stream


def _wav_written_as_a_stream(
    path: str, name: str, source: str, options: AudioOptions, stack: contextlib.ExitStack
) -> AudioStream | None:
    """A WAV file whose data chunk declares 0 bytes but has audio after it (a writer that could not seek
    back, `... -t wav - > a.wav`), read to its end as the stream it was written as; else None."""
    fh = open(path, "rb")  # noqa: SIM115 - handed to the stack below when used
    try:
        layout = _wav_layout(_Recorder(fh).read_exact)
        has_audio = os.fstat(fh.fileno()).st_size > fh.tell()
    except (_ShortRead, OSError):
        layout, has_audio = "unreadable", False
    if not isinstance(layout, _WavLayout) or layout.data_bytes is not None or not has_audio:
        fh.close()
        return None
    stack.enter_context(fh)
    logger.debug("%s: the WAV header declares no data; reading to the end of the file", name)
    return _WavPipeStream(fh, layout, name, source, options.block_frames)


@contextlib.contextmanager
def open_audio(source: str | os.PathLike[str], options: AudioOptions | None = None) -> Iterator[AudioStream]:
    """Open a path or "-" (stdin) for block reading; temporary files and subprocesses are cleaned up on exit.

    Args:
        source: a file path, or "-" for standard input.
        options: block size and ffmpeg fallback.
    Returns:
        (context manager of) an AudioStream: .info (AudioInfo at the native rate), .blocks() yielding
        (frames,) float32 mono arrays, .frames_read.
    """
    options = options or AudioOptions()
    name = display_name(source)
    src = "-" if name == "<stdin>" else os.fspath(source)
    with contextlib.ExitStack() as stack:
        if src == "-":
            yield _open_pipe(_stdin_bytes(name), name, src, options, stack)
        elif _preflight(src, name):
            try:
                pipe = stack.enter_context(open(src, "rb"))  # a FIFO or a device: read it once, in order
            except OSError as e:
                raise AudioError(f"{name}: cannot open file: {e.strerror or e}") from e
            yield _open_pipe(pipe, name, src, options, stack)
        else:
            yield _open_path(src, name, src, options, stack)


def probe(source: str | os.PathLike[str], options: AudioOptions | None = None) -> AudioInfo:
    """Header information of an input without decoding it (for "-" this consumes stdin: use open_audio)."""
    with open_audio(source, options) as stream:
        return stream.info


def read_blocks(source: str | os.PathLike[str], options: AudioOptions | None = None) -> Iterator[FloatArray]:
    """Yield mono float32 blocks of an input at its native rate; the input closes when the generator ends."""
    with open_audio(source, options) as stream:
        yield from stream.blocks()
