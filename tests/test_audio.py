"""Audio decoding: formats, rates, downmix, stdin/FIFO, odd names, ffmpeg fallback, and every bad input."""

from __future__ import annotations

import io
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from sewcli.audio import AudioOptions, open_audio, probe, read_blocks
from sewcli.errors import AudioError

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not on PATH")
NO_FFMPEG = AudioOptions(use_ffmpeg=False)
BOTH = [pytest.param(NO_FFMPEG, id="sndfile"), pytest.param(AudioOptions(), id="with-ffmpeg")]


def signal(rate: int, channels: int, seconds: float = 0.25, seed: int = 0) -> np.ndarray:
    """(frames, channels) float64 in [-0.9, 0.9]: a different tone and DC offset per channel, plus noise."""
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(seed)
    cols = [
        0.5 * np.sin(2 * np.pi * (220 + 110 * c) * t)
        + 0.1 * (c - channels / 2) / channels
        + 0.05 * rng.standard_normal(len(t))
        for c in range(channels)
    ]
    return np.clip(np.stack(cols, axis=1), -0.9, 0.9)


def expected_mono(x: np.ndarray) -> np.ndarray:
    """The reference downmix, computed independently: sum the channels in float64, divide by their count."""
    total = np.zeros(x.shape[0])
    for c in range(x.shape[1]):
        total += x[:, c]
    return total / x.shape[1]


def decode(
    path: str | os.PathLike[str], options: AudioOptions = NO_FFMPEG
) -> tuple[np.ndarray, object, list]:
    """All blocks of an input, concatenated, with its info and the block list."""
    with open_audio(path, options) as stream:
        blocks = list(stream.blocks())
        assert stream.frames_read == sum(len(b) for b in blocks)
        info = stream.info
    for b in blocks:
        assert b.dtype == np.float32 and b.ndim == 1 and 0 < len(b) <= options.block_frames
    return np.concatenate(blocks), info, blocks


# PCM quantisation step of each subtype bounds the error against the float64 reference.
LOSSLESS = [
    ("WAV", "PCM_16", 2e-4),
    ("WAV", "PCM_24", 1e-6),
    ("WAV", "PCM_U8", 1.6e-2),
    ("WAV", "FLOAT", 1e-7),
    ("WAV", "DOUBLE", 1e-7),
    ("FLAC", "PCM_16", 2e-4),
    ("FLAC", "PCM_24", 1e-6),
]


@pytest.mark.parametrize("fmt,subtype,atol", LOSSLESS)
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_lossless_formats_downmix_exactly(
    tmp_path: Path, fmt: str, subtype: str, atol: float, channels: int
) -> None:
    x = signal(16000, channels)
    path = tmp_path / f"in.{fmt.lower()}"
    sf.write(path, x, 16000, format=fmt, subtype=subtype)
    y, info, blocks = decode(path, AudioOptions(block_frames=1000, use_ffmpeg=False))
    assert (info.sample_rate, info.channels, info.frames, info.format, info.subtype) == (
        16000,
        channels,
        len(x),
        fmt,
        subtype,
    )
    assert len(blocks) == -(-len(x) // 1000)  # really read in blocks
    np.testing.assert_allclose(y, expected_mono(x), rtol=0, atol=atol)


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000, 96000])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_rates_and_channels(tmp_path: Path, rate: int, channels: int) -> None:
    x = signal(rate, channels, seconds=0.1)
    path = tmp_path / "in.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    y, info, _ = decode(path)
    assert (info.sample_rate, info.channels) == (rate, channels) and info.duration == pytest.approx(
        len(x) / rate
    )
    np.testing.assert_allclose(y, expected_mono(x), rtol=0, atol=1e-6)


def test_stereo_downmix_is_over_channels_not_time(tmp_path: Path) -> None:
    """Left = +0.5, right = -0.25: mono is 0.125 in every frame (averaging over time would give 2 values)."""
    x = np.stack([np.full(5000, 0.5), np.full(5000, -0.25)], axis=1)
    sf.write(tmp_path / "lr.wav", x, 16000, subtype="FLOAT")
    y, _, _ = decode(tmp_path / "lr.wav")
    assert y.shape == (5000,)
    np.testing.assert_allclose(y, 0.125, atol=1e-7)


@pytest.mark.parametrize("fmt,ext", [("OGG", "ogg"), ("MP3", "mp3")])
@pytest.mark.parametrize("channels", [1, 2])
def test_lossy_formats(tmp_path: Path, fmt: str, ext: str, channels: int) -> None:
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile cannot write {fmt}")
    x = signal(44100, channels, seconds=1.0)
    path = tmp_path / f"in.{ext}"
    sf.write(path, x, 44100, format=fmt)
    y, info, _ = decode(path)
    assert info.format == fmt and info.sample_rate == 44100 and info.channels == channels
    ref = expected_mono(x)
    assert abs(len(y) - len(ref)) <= 2000  # codec delay / padding
    n = min(len(y), len(ref))
    # Allow the codec's delay: the best-aligned correlation with the reference downmix is high.
    xc = np.correlate(y[:n], ref[: n - 2000], mode="valid")  # lags 0..2000
    lag = int(np.argmax(xc))
    assert np.corrcoef(y[lag : lag + n - 2000], ref[: n - 2000])[0, 1] > 0.95


def test_probe_and_read_blocks(tmp_path: Path) -> None:
    x = signal(22050, 2)
    sf.write(tmp_path / "a.flac", x, 22050)
    info = probe(tmp_path / "a.flac")
    assert (info.sample_rate, info.channels, info.frames, info.format) == (22050, 2, len(x), "FLAC")
    y = np.concatenate(list(read_blocks(tmp_path / "a.flac", AudioOptions(block_frames=512))))
    np.testing.assert_allclose(y, expected_mono(x), atol=2e-4)


def _fake_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("WAV", "ULAW")])
def test_stdin_is_spooled_detected_by_content_and_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, subtype: str
) -> None:
    x = signal(16000, 2)
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format=fmt, subtype=subtype)
    _fake_stdin(monkeypatch, buf.getvalue())
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    with open_audio("-", NO_FFMPEG) as stream:
        assert stream.info.source == "-" and stream.info.format == fmt
        assert len(list(spool.iterdir())) == 1
        y = np.concatenate(list(stream.blocks()))
    assert list(spool.iterdir()) == []  # the temporary copy is gone
    if fmt == "FLAC":
        np.testing.assert_allclose(y, expected_mono(x), atol=2e-4)
    elif fmt == "WAV":  # mu-law is not streamed (libsndfile decodes it from the spooled copy)
        np.testing.assert_allclose(y, expected_mono(x), atol=0.02)
    else:
        assert len(y) == len(x)


def test_empty_stdin_and_bad_stdin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _fake_stdin(monkeypatch, b"")
    with pytest.raises(AudioError, match=r"^<stdin>: input is empty"):
        with open_audio("-"):
            pass
    _fake_stdin(monkeypatch, b"just some text\n" * 50)
    with pytest.raises(AudioError, match=r"^<stdin>: not a recognised audio format"):
        with open_audio("-"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_endless_stdin_stops_before_the_disk_is_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sew transcribe - < /dev/zero`: the spool stops (one error line, no temporary file left) while the
    temporary directory's file system still has its reserve; a small input on the same disk is fine."""
    from sewcli import audio

    class Endless(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            b[:] = bytes(len(b))
            return len(b)

    written: list[int] = []
    real_usage = shutil.disk_usage

    def usage(path: str) -> Any:  # a 1 GiB disk (reserve: a tenth) with 200 MiB free before sew writes
        assert Path(path) == tmp_path
        spooled = sum(f.stat().st_size for f in tmp_path.iterdir())
        written.append(spooled)
        return real_usage(path)._replace(total=1 << 30, free=(200 << 20) - spooled)

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(audio.shutil, "disk_usage", usage)
    monkeypatch.setattr(audio, "_SPOOL_CHECK_EVERY", 8 << 20)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(Endless())))
    with pytest.raises(AudioError) as err:
        with open_audio("-"):
            pass
    _one_line_naming(err, "<stdin>", "stopped buffering the input after ")
    assert "is nearly full" in str(err.value)
    assert list(tmp_path.iterdir()) == []
    reserve = (1 << 30) // 10
    assert (200 << 20) - reserve <= written[-1] <= (200 << 20) - reserve + (8 << 20)  # at the reserve
    buf = io.BytesIO()
    sf.write(buf, signal(16000, 1, seconds=1.0), 16000, format="FLAC")
    _fake_stdin(monkeypatch, buf.getvalue())
    with open_audio("-") as stream:  # spooled (FLAC is streamed only with stream_compressed)
        assert stream.info.frames == 16000


WAV_SUBTYPES = ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"]


@pytest.mark.parametrize("subtype", WAV_SUBTYPES)
@pytest.mark.parametrize("extensible", [False, True])
def test_wav_on_stdin_streams_to_the_same_samples_as_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, subtype: str, extensible: bool
) -> None:
    """A piped WAV is decoded as it arrives (no temporary file), to exactly libsndfile's floats."""
    x = signal(22050, 2, seconds=1.0)
    path = tmp_path / "a.wav"
    sf.write(path, x, 22050, subtype=subtype, format="WAVEX" if extensible else "WAV")
    assert (path.read_bytes()[20:22] == b"\xfe\xff") == extensible  # WAVE_FORMAT_EXTENSIBLE
    from_file = np.concatenate(list(read_blocks(path, NO_FFMPEG)))
    _fake_stdin(monkeypatch, path.read_bytes())
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    with open_audio("-", AudioOptions(block_frames=1000, use_ffmpeg=False)) as stream:
        assert (stream.info.format, stream.info.subtype) == ("WAV", subtype)
        assert (stream.info.sample_rate, stream.info.channels, stream.info.frames) == (
            22050,
            x.shape[1],
            None,
        )
        blocks = list(stream.blocks())
        assert list(spool.iterdir()) == []  # nothing buffered on disk
        assert stream.frames_read == len(x)
    assert [len(b) for b in blocks[:-1]] == [1000] * (len(blocks) - 1)
    np.testing.assert_array_equal(np.concatenate(blocks), from_file)


class Trickle(io.RawIOBase):
    """A pipe that delivers a WAV header and then `frames` frames of 16-bit silence, 4 KiB at a time, and
    records how far it was read (an endless stream when `frames` is None)."""

    def __init__(self, header: bytes, frames: int | None) -> None:
        self.header, self.left, self.read_bytes = header, None if frames is None else 2 * frames, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.header:
            n = min(len(b), len(self.header))
            b[:n], self.header = self.header[:n], self.header[n:]
        else:
            n = min(len(b), 4096, *(() if self.left is None else (self.left,)))
            b[:n] = bytes(n)
            if self.left is not None:
                self.left -= n
        self.read_bytes += n
        return n


def wav_header(data_bytes: int, rate: int = 16000) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, rate, 2 * rate, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + (struct.pack("<I", data_bytes))
    )


def test_an_endless_wav_stream_is_read_in_bounded_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """`arecord | sew transcribe -`: blocks come while the writer goes on; nothing waits for its end."""
    pipe = Trickle(wav_header(0xFFFFFFFF), frames=None)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(pipe)))
    gen = read_blocks("-", AudioOptions(block_frames=16000))
    for _ in range(3):
        assert next(gen).shape == (16000,)
    assert pipe.read_bytes <= 44 + 3 * 32000 + 8192  # read as far as needed, not to the end
    gen.close()


@pytest.mark.parametrize(
    ("declared", "sent", "expected"), [(0, 5000, 5000), (2 * 3000, 5000, 3000), (2 * 8000, 5000, 5000)]
)
def test_the_declared_data_size_is_an_upper_bound(
    monkeypatch: pytest.MonkeyPatch, declared: int, sent: int, expected: int
) -> None:
    """0 (unknown) and a placeholder larger than the stream read to EOF; a real size stops there (a LIST
    chunk may follow the data); a half frame at the end is dropped."""
    pipe = Trickle(wav_header(declared), frames=sent)
    data = b"".join(iter(lambda: pipe.read(65536), b"")) + b"\x01"  # + half a frame
    _fake_stdin(monkeypatch, data)
    with open_audio("-", NO_FFMPEG) as stream:
        assert sum(len(b) for b in stream.blocks()) == expected


def test_a_wav_file_declaring_no_data_is_read_to_its_end(tmp_path: Path) -> None:
    """A WAV file whose writer could not seek back to fill in the sizes (`... -t wav - > a.wav`): read as
    the stream it was written as, to the same samples as from stdin; with nothing after the header it has
    no audio samples."""
    x = signal(16000, 1, seconds=1.0)
    ref = tmp_path / "ref.wav"
    sf.write(ref, x, 16000, subtype="PCM_16")
    body = ref.read_bytes()[44:]
    path = tmp_path / "zero.wav"
    path.write_bytes(wav_header(0) + body)
    with open_audio(path, NO_FFMPEG) as stream:
        got = np.concatenate(list(stream.blocks()))
    np.testing.assert_array_equal(got, np.concatenate(list(read_blocks(ref, NO_FFMPEG))))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(wav_header(0))
    with pytest.raises(AudioError) as err:
        decode(empty, NO_FFMPEG)
    _one_line_naming(err, str(empty), "no audio samples")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (wav_header(100)[:30], "error in WAV file"),  # ends in the header: spooled, libsndfile refuses it
        (wav_header(0), "contains no audio samples"),
    ],
)
def test_broken_wav_streams_are_one_line(monkeypatch: pytest.MonkeyPatch, data: bytes, message: str) -> None:
    _fake_stdin(monkeypatch, data)
    with pytest.raises(AudioError, match=f"^<stdin>: {message}"):
        with open_audio("-", NO_FFMPEG) as stream:
            list(stream.blocks())


def test_nan_in_a_wav_stream_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = signal(16000, 1, seconds=1.0)
    x[8000] = np.nan
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="WAV", subtype="FLOAT")
    _fake_stdin(monkeypatch, buf.getvalue())
    with pytest.raises(AudioError, match=r"^<stdin>: contains NaN or infinite samples \(first at 0.500 s\)"):
        with open_audio("-", NO_FFMPEG) as stream:
            list(stream.blocks())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize(("fmt", "subtype", "streamed"), [("WAV", "FLOAT", True), ("FLAC", "PCM_16", False)])
def test_fifo_path_wav_is_streamed_others_spooled(
    tmp_path: Path, fmt: str, subtype: str, streamed: bool
) -> None:
    x = signal(16000, 1)
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format=fmt, subtype=subtype)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(buf.getvalue()), daemon=True)
    writer.start()
    y, info, _ = decode(fifo)
    writer.join(timeout=10)
    np.testing.assert_allclose(y, x[:, 0], atol=1e-7 if fmt == "WAV" else 2e-4)
    assert (info.format, info.frames) == (fmt, None if streamed else len(x))


ODD_NAMES = ["-leading dash.wav", 'it\'s "quoted".wav', "tëst ☃ 音声.wav", "--.wav", "a b\tc.wav"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_file_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    x = signal(16000, 1)
    sf.write(tmp_path / name, x, 16000, subtype="FLOAT")
    monkeypatch.chdir(tmp_path)
    y, info, _ = decode(name)  # relative, so a leading dash is the first character handed to libsndfile
    assert info.source == name
    np.testing.assert_allclose(y, x[:, 0], atol=1e-7)


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@needs_ffmpeg
@pytest.mark.parametrize("name", ["-it's a tëst ☃.mka", "plain.mka"])
def test_ffmpeg_fallback_is_exact_for_pcm_in_matroska(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Matroska/PCM is not a libsndfile format: ffmpeg streams it; our downmix of its 6 channels is exact."""
    x = signal(48000, 6).astype(np.float32)
    sf.write(tmp_path / "src.wav", x, 48000, subtype="FLOAT")
    _ffmpeg("-i", str(tmp_path / "src.wav"), "-c:a", "pcm_f32le", str(tmp_path / "out.mka"))
    os.replace(tmp_path / "out.mka", tmp_path / name)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AudioError, match="not a recognised audio format"):
        decode(name, NO_FFMPEG)
    y, info, blocks = decode(name, AudioOptions(block_frames=700))
    assert (info.format, info.sample_rate, info.channels, info.frames) == ("FFMPEG", 48000, 6, None)
    assert len(blocks) > 10
    np.testing.assert_allclose(y, expected_mono(x.astype(np.float64)), rtol=0, atol=1e-6)


@needs_ffmpeg
def test_ffmpeg_fallback_for_aac(tmp_path: Path) -> None:
    x = signal(16000, 2, seconds=1.0)
    sf.write(tmp_path / "src.wav", x, 16000)
    try:
        _ffmpeg("-i", str(tmp_path / "src.wav"), "-c:a", "aac", str(tmp_path / "a.m4a"))
    except subprocess.CalledProcessError:
        pytest.skip("this ffmpeg has no AAC encoder")
    y, info, _ = decode(tmp_path / "a.m4a", AudioOptions())
    assert info.sample_rate == 16000 and info.channels == 2
    assert abs(len(y) - len(x)) <= 2048  # AAC priming/padding
    assert 0.2 < np.sqrt(np.mean(y**2)) < 0.5  # the tones came through


@needs_ffmpeg
def test_ffmpeg_without_audio_stream(tmp_path: Path) -> None:
    """A container ffmpeg understands but with no audio (a still image) is an AudioError naming the file."""
    try:
        _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=16x16:d=0.2", "-frames:v", "1", str(tmp_path / "red.png"))
    except subprocess.CalledProcessError:
        pytest.skip("this ffmpeg cannot make a PNG")
    with pytest.raises(
        AudioError, match=r"red\.png: has no audio stream \(ffmpeg reads it, but it holds no sound\)$"
    ):
        decode(tmp_path / "red.png", AudioOptions())


def _one_line_naming(err: pytest.ExceptionInfo[AudioError], name: str, *phrases: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{name}: "), msg
    assert any(p in msg for p in phrases), msg


@pytest.mark.parametrize("options", BOTH)
def test_missing_directory_and_empty(tmp_path: Path, options: AudioOptions) -> None:
    with pytest.raises(AudioError) as err:
        decode(tmp_path / "nope.wav", options)
    _one_line_naming(err, str(tmp_path / "nope.wav"), "file not found")
    with pytest.raises(AudioError) as err:
        decode(tmp_path, options)
    _one_line_naming(err, str(tmp_path), "is a directory")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError) as err:
        decode(tmp_path / "empty.wav", options)
    _one_line_naming(err, str(tmp_path / "empty.wav"), "empty (0 bytes)")


@pytest.mark.parametrize("options", BOTH)
@pytest.mark.parametrize("name", ["noise.wav", "noise.mp3", "noise.flac", "noise"])
def test_random_bytes_are_not_audio(tmp_path: Path, options: AudioOptions, name: str) -> None:
    (tmp_path / name).write_bytes(np.random.default_rng(42).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError) as err:
        decode(tmp_path / name, options)
    _one_line_naming(err, str(tmp_path / name), "not a recognised audio format")


@pytest.mark.parametrize("options", BOTH)
def test_text_file_is_not_audio(tmp_path: Path, options: AudioOptions) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("RIFF? no, just a text file\n" * 100)
    with pytest.raises(AudioError) as err:
        decode(path, options)
    _one_line_naming(err, str(path), "not a recognised audio format")
    assert "text file" in str(err.value)  # and ffmpeg did not "detect" it as raw AMR-NB


@pytest.mark.parametrize("options", BOTH)
def test_header_only_wav_has_no_samples(tmp_path: Path, options: AudioOptions) -> None:
    path = tmp_path / "header.wav"
    sf.write(path, np.zeros((0, 2)), 16000)
    assert path.stat().st_size > 0
    with pytest.raises(AudioError) as err:
        decode(path, options)
    _one_line_naming(err, str(path), "no audio samples")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_rejected_in_the_block_that_has_them(tmp_path: Path, bad: float) -> None:
    x = signal(16000, 2, seconds=1.0)
    x[12345, 1] = bad
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    got = []
    with pytest.raises(AudioError) as err:
        with open_audio(path, AudioOptions(block_frames=4000)) as stream:
            for block in stream.blocks():
                got.append(block)
    _one_line_naming(err, str(path), "NaN or infinite")
    assert "0.772 s" in str(err.value)  # 12345 / 16000
    assert len(got) == 3  # streamed: the first three clean blocks were delivered


def test_truncated_wav_decodes_prefix_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    x = signal(16000, 1, seconds=1.0)
    full = tmp_path / "full.wav"
    sf.write(full, x, 16000, subtype="PCM_16")
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: 44 + 2 * 6000 + 1])  # 6000 whole samples and half of the next
    with caplog.at_level(logging.WARNING, logger="sewcli.audio"):
        y, info, _ = decode(cut)
    assert len(y) == 6000
    np.testing.assert_allclose(y, x[:6000, 0], atol=2e-4)
    assert any("cut.wav: truncated" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sewcli.audio"):
        decode(full)
    assert not caplog.records


def test_truncated_flac_without_ffmpeg_is_a_decode_error(tmp_path: Path) -> None:
    """libsndfile opens a FLAC cut in half but cannot decode it (psf_fseek fails)."""
    path = tmp_path / "half.flac"
    x = signal(44100, 2, seconds=3.0)
    sf.write(tmp_path / "full.flac", x, 44100)
    data = (tmp_path / "full.flac").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    try:
        y, _, _ = decode(path)
    except AudioError as err:
        assert str(err).startswith(f"{path}: decoding failed after 0.00 s") and "\n" not in str(err)
    else:  # a libsndfile that decodes the prefix is fine too
        np.testing.assert_allclose(y, expected_mono(x)[: len(y)], atol=2e-4)


@needs_ffmpeg
def test_truncated_flac_falls_back_to_ffmpeg_and_decodes_the_prefix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    x = signal(44100, 2, seconds=3.0)
    sf.write(tmp_path / "full.flac", x, 44100)
    data = (tmp_path / "full.flac").read_bytes()
    path = tmp_path / "half.flac"
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.DEBUG, logger="sewcli.audio"):
        y, info, _ = decode(path, AudioOptions())
    assert 0.3 * len(x) < len(y) < 0.7 * len(x)
    np.testing.assert_allclose(y, expected_mono(x)[: len(y)], atol=2e-4)
    # one warning, that the audio is shorter than the header says (libsndfile's failure is a debug line)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"{path}: truncated file: its header declares 3.00 s of audio but only "
        f"{len(y) / 44100:.2f} s could be decoded"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sewcli.audio"):
        decode(tmp_path / "full.flac", AudioOptions())  # whole: no warning
    assert not caplog.records


def test_stdin_terminal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.TextIOWrapper):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Tty(io.BytesIO(b"")))
    with pytest.raises(AudioError, match=r"^<stdin>: standard input is a terminal"):
        with open_audio("-"):
            pass


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.wav"
    sf.write(path, signal(16000, 1), 16000)
    path.chmod(0)
    try:
        with pytest.raises(AudioError) as err:
            decode(path)
        _one_line_naming(err, str(path), "ermission denied")
    finally:
        path.chmod(0o644)


def test_permission_error_is_reported_even_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The open() that libsndfile would hit fails like an unreadable file does for a normal user."""
    path = tmp_path / "secret.wav"
    sf.write(path, signal(16000, 1), 16000)

    def deny(file: object, *args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr("sewcli.audio.open", deny, raising=False)
    with pytest.raises(AudioError) as err:
        decode(path)
    _one_line_naming(err, str(path), "cannot open file: Permission denied")


def test_early_close_deletes_the_stdin_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping after one block still deletes the temporary copy of stdin."""
    buf = io.BytesIO()
    sf.write(buf, signal(16000, 1, seconds=1.0), 16000, format="FLAC")
    _fake_stdin(monkeypatch, buf.getvalue())
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gen = read_blocks("-", AudioOptions(block_frames=1000))
    next(gen)
    assert len(list(tmp_path.iterdir())) == 1
    gen.close()
    assert list(tmp_path.iterdir()) == []


@needs_ffmpeg
def test_early_close_stops_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping after one block kills and reaps the ffmpeg subprocess."""
    sf.write(tmp_path / "src.wav", signal(16000, 1, seconds=5.0), 16000, subtype="FLOAT")
    _ffmpeg("-i", str(tmp_path / "src.wav"), "-c:a", "pcm_f32le", str(tmp_path / "a.mka"))
    procs: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def spy(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        proc = real_popen(*args, **kwargs)  # type: ignore[call-overload]
        procs.append(proc)
        return proc

    monkeypatch.setattr(subprocess, "Popen", spy)
    gen = read_blocks(tmp_path / "a.mka", AudioOptions(block_frames=100))
    next(gen)
    assert len(procs) == 1 and procs[0].poll() is None  # still streaming
    gen.close()
    assert procs[0].returncode is not None


@needs_ffmpeg
@pytest.mark.parametrize(
    ("ext", "args"), [("mp3", ()), ("ogg", ()), ("flac", ()), ("aac", ("-f", "adts")), ("webm", ())]
)
def test_compressed_stdin_streams_through_ffmpeg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ext: str, args: tuple[str, ...]
) -> None:
    """MP3/AAC/Ogg/FLAC/WebM on stdin: decoded by ffmpeg as they arrive (no temporary copy), the same samples
    as ffmpeg gives for the file."""
    sf.write(tmp_path / "src.wav", signal(16000, 1, seconds=3.0), 16000, subtype="FLOAT")
    path = tmp_path / f"a.{ext}"
    _ffmpeg("-i", str(tmp_path / "src.wav"), *args, str(path))
    from_file = np.concatenate(list(read_blocks(path, AudioOptions(use_ffmpeg=True))))
    _fake_stdin(monkeypatch, path.read_bytes())
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    with open_audio("-", AudioOptions(stream_compressed=True)) as stream:
        assert stream.info.format == "FFMPEG"
        y = np.concatenate(list(stream.blocks()))
        assert [p for p in spool.iterdir() if not p.name.startswith("tmp")] == []  # no spooled copy
    assert abs(len(y) - len(from_file)) <= 2048  # decoders may differ in priming/padding at the ends
    n = min(len(y), len(from_file))
    assert np.corrcoef(y[:n], from_file[:n])[0, 1] > 0.99


@needs_ffmpeg
def test_an_endless_mp3_stream_is_decoded_as_it_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`curl radio.mp3 | sew transcribe - --live`: blocks come while the stream goes on."""
    sf.write(tmp_path / "src.wav", signal(16000, 1, seconds=20.0), 16000, subtype="FLOAT")
    _ffmpeg("-i", str(tmp_path / "src.wav"), str(tmp_path / "a.mp3"))
    data = (tmp_path / "a.mp3").read_bytes()
    r, w = os.pipe()
    writer = os.fdopen(w, "wb")
    writer.write(data[: len(data) // 2])  # 10 s, and the pipe stays open
    writer.flush()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(os.fdopen(r, "rb")))
    got = 0
    try:
        with open_audio("-", AudioOptions(block_frames=16000, stream_compressed=True)) as stream:
            for block in stream.blocks():
                got += len(block)
                if got >= 5 * 16000:
                    break  # 5 s decoded while the writer has not finished
    finally:
        writer.close()
    assert got >= 5 * 16000


def test_which_streams_ffmpeg_may_decode_as_they_arrive() -> None:
    from sewcli.audio import _ffmpeg_can_stream

    assert (
        _ffmpeg_can_stream(b"ID3\x04") and _ffmpeg_can_stream(b"\xff\xfb\x90") and _ffmpeg_can_stream(b"OggS")
    )
    assert not _ffmpeg_can_stream(b"\x00\x00\x00\x20ftypM4A ") and not _ffmpeg_can_stream(b"hello world")


@needs_ffmpeg
def test_a_video_without_sound_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = tmp_path / "silent film.mp4"
    subprocess.run(
        [FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x64", str(video)],
        check=True,
    )
    with pytest.raises(
        AudioError,
        match=r"^.*silent film\.mp4: has no audio stream \(ffmpeg reads it, but it holds no sound\)$",
    ):
        with open_audio(video):
            pass
    _fake_stdin(monkeypatch, video.read_bytes())
    with pytest.raises(AudioError, match=r"^<stdin>: has no audio stream"):
        with open_audio("-"):
            pass
