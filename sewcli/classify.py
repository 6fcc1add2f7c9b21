"""The classify stage: one audio input -> the top-k labels of a sequence-classification checkpoint.

Supported checkpoints: transformers' `Wav2Vec2ForSequenceClassification` and `SEWForSequenceClassification`
(config.json `id2label` names the classes; no vocab.json). The input is decoded and resampled like
`transcribe`
(sewcli.audio, sewcli.resample) and cut into consecutive windows of `window_seconds` (default 30 s, no
overlap);
each window is normalised on its own as Wav2Vec2FeatureExtractor does and classified; the reported
probabilities
are the windows' softmax outputs averaged with weights proportional to their lengths. An input no longer than
one window is therefore exactly one transformers forward pass. A trailing piece shorter than the model's
minimum
input (400 samples wav2vec2, 720 SEW) is dropped unless it is the whole input (then it is zero-padded).

torch-free at import: the model is loaded through sewcli.model.classify only when `load` is called.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from sewcli import audio, resample
from sewcli.checkpoint import (
    FeatureConfig,
    find_weight_files,
    normalize_waveform,
    read_config,
    read_feature_config,
)
from sewcli.errors import AudioError, CheckpointError, UnsupportedConfigError, UsageError
from sewcli.records import FloatArray

# config.json architectures[0] -> engine family
CLASSIFIER_ARCHITECTURES = {
    "Wav2Vec2ForSequenceClassification": "wav2vec2",
    "SEWForSequenceClassification": "sew",
}


@dataclass(frozen=True)
class ClassifierInfo:
    """A classification checkpoint directory's metadata (no tensors)."""

    directory: Path
    family: str  # "wav2vec2" | "sew"
    architecture: str
    config: dict[str, Any]
    labels: tuple[str, ...]  # labels[i] = id2label[i]
    features: FeatureConfig
    weight_files: tuple[Path, ...]


@dataclass(frozen=True)
class ClassifyOptions:
    """How many labels to report and how long inputs are cut."""

    top_k: int = 5
    window_seconds: float = 30.0
    resample_quality: str = "HQ"

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise UsageError(f"--top-k must be >= 1, got {self.top_k}")
        if not self.window_seconds > 0:
            raise UsageError(f"--window must be > 0 seconds, got {self.window_seconds}")


@dataclass(frozen=True)
class Classification:
    """The result for one input: the top-k (label, probability) pairs, most probable first."""

    source: str
    model: str
    duration: float  # seconds of audio read
    windows: int  # model windows averaged
    labels: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class LoadedClassifier:
    """A classifier ready to run, with its labels and preprocessing."""

    name: str
    module: Any  # sewcli.model.classify.SequenceClassifier
    labels: tuple[str, ...]
    sample_rate: int
    do_normalize: bool
    min_samples: int
    device: str
    dtype: Any


def _labels(config: dict[str, Any], path: Path) -> tuple[str, ...]:
    """id2label as a tuple indexed by class id (LABEL_i where absent, as transformers names them)."""
    raw = config.get("id2label") or {}
    try:
        id2label = {int(k): str(v) for k, v in raw.items()}
    except (AttributeError, ValueError):
        raise CheckpointError(f"{path}: id2label must map class ids to names, got {raw!r}") from None
    n = int(config.get("num_labels") or (max(id2label) + 1 if id2label else 2))
    if id2label and (min(id2label) < 0 or max(id2label) >= n):
        raise CheckpointError(f"{path}: id2label ids {sorted(id2label)} do not fit num_labels={n}")
    return tuple(id2label.get(i, f"LABEL_{i}") for i in range(n))


def read_classifier_info(directory: Path | str) -> ClassifierInfo:
    """config.json (architecture, id2label), preprocessor config and weight files of a classifier."""
    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"{d}: not a checkpoint directory")
    config = read_config(d)
    archs = config.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs else str(archs or config.get("model_type"))
    if arch not in CLASSIFIER_ARCHITECTURES:
        raise UnsupportedConfigError(
            f"{d / 'config.json'}: architectures={archs!r} is not an audio classifier; "
            f"`sew classify` needs one of {', '.join(CLASSIFIER_ARCHITECTURES)}"
        )
    _, files = find_weight_files(d)
    return ClassifierInfo(
        d,
        CLASSIFIER_ARCHITECTURES[arch],
        arch,
        config,
        _labels(config, d / "config.json"),
        read_feature_config(d),
        files,
    )


def load(directory: Path | str, options: Any = None, name: str | None = None) -> LoadedClassifier:
    """Load a classifier for inference.

    Args:
        directory: a transformers-format *ForSequenceClassification directory.
        options: sewcli.inference.InferenceOptions (device, threads, precision); None = defaults.
        name: display name (default: the directory).
    Returns:
        the LoadedClassifier; CheckpointError / UnsupportedConfigError for bad checkpoints.
    """
    from sewcli import inference
    from sewcli.model.classify import load_classifier

    info = read_classifier_info(directory)
    options = options or inference.InferenceOptions()
    if options.threads is not None:
        import torch

        torch.set_num_threads(options.threads)
    device = inference.resolve_device(options.device, options.precision)
    dtype = inference.PRECISIONS[options.precision]
    module = load_classifier(info.family, info.config, info.weight_files, device=device, dtype=dtype)
    if module.head.num_labels != len(info.labels):
        raise CheckpointError(
            f"{info.directory / 'config.json'}: {len(info.labels)} labels but the classifier has "
            f"{module.head.num_labels} outputs"
        )
    return LoadedClassifier(
        name=name or str(directory),
        module=module,
        labels=info.labels,
        sample_rate=info.features.sampling_rate,
        do_normalize=info.features.do_normalize,
        min_samples=int(module.min_input_samples),
        device=device,
        dtype=dtype,
    )


def _windows(blocks: Iterable[FloatArray], size: int) -> Iterator[FloatArray]:
    """Re-buffer blocks into consecutive windows of `size` samples (the last one may be shorter)."""
    pending: list[FloatArray] = []
    have = 0
    for block in blocks:
        pending.append(block)
        have += block.shape[0]
        while have >= size:
            buf = np.concatenate(pending)
            yield buf[:size]
            rest = buf[size:]
            pending, have = [rest], rest.shape[0]
    if have:
        yield np.concatenate(pending)


def _probabilities(model: LoadedClassifier, window: FloatArray) -> FloatArray:
    """(num_labels,) softmax probabilities for one window (normalised; zero-padded if too short)."""
    from sewcli.model.classify import class_probabilities

    x = normalize_waveform(window) if model.do_normalize else np.asarray(window, np.float32)
    if x.shape[0] < model.min_samples:
        x = np.pad(x, (0, model.min_samples - x.shape[0]))
    probs: FloatArray = class_probabilities(model.module, x[None], model.device, model.dtype)[0]
    return probs


def classify_file(
    source: str | os.PathLike[str], model: LoadedClassifier, options: ClassifyOptions
) -> Classification:
    """Classify one input (a path, or "-" for stdin).

    Args:
        source: the input as the user gave it.
        model: the loaded classifier.
        options: top-k and window length.
    Returns:
        the Classification; AudioError (naming the input) for unreadable or empty audio.
    """
    name = audio.display_name(source)
    size = max(int(round(options.window_seconds * model.sample_rate)), model.min_samples)
    total = np.zeros(len(model.labels), dtype=np.float64)
    weight = 0
    count = 0
    with audio.open_audio(source, audio.AudioOptions()) as stream:
        blocks = resample.resample_blocks(
            stream.blocks(), stream.info.sample_rate, model.sample_rate, options.resample_quality
        )
        for window in _windows(blocks, size):
            if window.shape[0] < model.min_samples and count:
                continue  # a few-ms tail after full windows carries no information
            total += _probabilities(model, window) * window.shape[0]
            weight += window.shape[0]
            count += 1
        duration = stream.frames_read / stream.info.sample_rate
    if not count:
        raise AudioError(f"{name}: no audio samples to classify")
    probs = total / weight
    order = np.argsort(-probs, kind="stable")[: options.top_k]
    labels = tuple((model.labels[i], float(probs[i])) for i in order)
    return Classification(source=name, model=model.name, duration=duration, windows=count, labels=labels)


def write_txt(result: Classification, fh: TextIO) -> None:
    """One `label<TAB>probability` line per label, most probable first."""
    for label, prob in result.labels:
        fh.write(f"{label}\t{prob:.4f}\n")


def write_json(result: Classification, fh: TextIO) -> None:
    """A JSON object: source, model, duration, windows, labels [{label, probability}] (UTF-8, not escaped)."""
    doc = {
        "source": result.source,
        "model": result.model,
        "duration": round(result.duration, 3),
        "windows": result.windows,
        "labels": [{"label": label, "probability": round(prob, 6)} for label, prob in result.labels],
    }
    fh.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")


WRITERS = {"txt": write_txt, "json": write_json}
