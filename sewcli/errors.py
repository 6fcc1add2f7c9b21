"""The one exception hierarchy of sew.

Every stage raises a `SewError` subclass whose message is one line that names the thing (file, model, key) and
the problem. Only `cli.py` turns these into exit codes and stderr lines; library code never prints or exits.
"""

from __future__ import annotations


class SewError(Exception):
    """Base class of every error a user may see. `str(err)` is the one-line message."""


class UsageError(SewError):
    """The command line or an option value is wrong (exit status 2)."""


class RegistryError(SewError):
    """models.toml (shipped or user-supplied) cannot be read or is malformed."""


class ModelNotFoundError(RegistryError):
    """A model name is neither in the registry, nor a local directory, nor a hub id in the cache."""


class DownloadError(SewError):
    """A hub download failed, or the model is not cached while offline."""


class CheckpointError(SewError):
    """A checkpoint directory is incomplete, corrupt, unsafe or of an unsupported configuration."""


class UnsupportedConfigError(CheckpointError):
    """config.json asks for something this engine does not implement (names the key and value)."""


class AudioError(SewError):
    """An input cannot be decoded as audio, or its samples are unusable (names the file)."""


class DecoderError(SewError):
    """The CTC decoder cannot be built (missing optional dependency, bad LM file, bad hotword option)."""


class OutputError(SewError):
    """An output file cannot be written (names the path)."""
