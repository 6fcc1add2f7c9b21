"""Model files from the Hugging Face hub: only the files we need, kept in huggingface_hub's own cache.

A cached model is used without any network call (even for a branch revision like "main");
`sew models download` refreshes it. `HF_HUB_OFFLINE=1` (read at call time) forbids downloads: a model that is
not cached then fails with one line that says how to get it. `HF_HUB_CACHE` / `HF_HOME` choose the cache
directory, as for every HF tool.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sewcli.errors import DownloadError
from sewcli.registry import ModelSpec

log = logging.getLogger(__name__)

# The small metadata files a checkpoint directory may carry (those that exist are fetched).
METADATA_FILES = (
    "config.json",
    "preprocessor_config.json",
    "feature_extractor_config.json",
    "vocab.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
# Weight files by preference: safetensors first (no pickle), the legacy .bin only when it is all there is.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class CacheStatus:
    """Where a hub model stands in the local cache."""

    directory: Path | None  # the snapshot directory, when config and weights are both cached
    size_bytes: int  # bytes of the cached files (0 when not cached)


def cache_dir() -> Path:
    """The hub cache directory, read from the environment at call time (HF_HUB_CACHE, then HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        return Path(os.path.expanduser(os.environ["HF_HOME"])) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set to a true value."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def cached_snapshot(repo: str, revision: str, subfolder: str | None = None) -> Path | None:
    """The cached directory holding config.json and a weight file for repo@revision[/subfolder], else None."""
    from huggingface_hub import try_to_load_from_cache

    filename = f"{subfolder}/config.json" if subfolder else "config.json"
    config = try_to_load_from_cache(repo, filename, cache_dir=str(cache_dir()), revision=revision)
    if not isinstance(config, str):
        return None
    snapshot = Path(config).parent  # the snapshot directory joined with the subfolder
    if not any((snapshot / w).is_file() for w in WEIGHT_FILES):
        return None
    return snapshot


def cache_status(spec: ModelSpec) -> CacheStatus:
    """Cache status of a hub model (a local model reports its own directory and size)."""
    directory = spec.path if spec.is_local else cached_snapshot(str(spec.repo), spec.revision, spec.subfolder)
    if directory is None or not directory.is_dir():
        return CacheStatus(directory=None, size_bytes=0)
    size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())  # follows snapshot symlinks
    return CacheStatus(directory=directory, size_bytes=size)


def safetensors_params(directory: Path) -> int | None:
    """Parameters in `directory`/model.safetensors, from its JSON header only (no tensor is read)."""
    path = directory / "model.safetensors"
    try:
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
    except (OSError, ValueError, struct.error):
        return None
    return sum(
        math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
    )


def _how_to_get(spec: ModelSpec) -> str:
    return (
        f"run `sew models download {spec.name}` with network access, "
        "or pass --model DIR (a checkpoint directory)"
    )


def download(spec: ModelSpec, with_lm: bool = False) -> Path:
    """Download (or refresh) the files of a hub model into the cache and return the snapshot directory.

    with_lm: also fetch the repository's `language_model/` (pyctcdecode/HF layout; often hundreds of MB),
    which `sew transcribe` then uses for its default beam search.
    """
    if spec.repo is None:
        raise DownloadError(f"{spec.name}: is a local model ({spec.path}); nothing to download")
    if offline():
        raise DownloadError(f"{spec.name}: cannot download {spec.source} while HF_HUB_OFFLINE is set")
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    _check_reachable(spec)
    prefix = f"{spec.subfolder}/" if spec.subfolder else ""  # repo paths are relative to the repo root
    try:
        with _hub_logs_quiet():
            listed = HfApi().list_repo_files(spec.repo, revision=spec.revision)
        files = {f[len(prefix) :] for f in listed if f.startswith(prefix)}
        weights = next((w for w in WEIGHT_FILES if w in files), None)
        if weights is None:
            raise DownloadError(f"{spec.name}: {spec.source} has none of {', '.join(WEIGHT_FILES)}")
        if "config.json" not in files:
            raise DownloadError(f"{spec.name}: {spec.source} has no config.json")
        wanted = [prefix + f for f in METADATA_FILES if f in files] + [prefix + weights]
        lm_files = sorted(f for f in files if f.startswith("language_model/"))
        if with_lm:
            if not lm_files:
                raise DownloadError(f"{spec.name}: {spec.source} has no language_model/ folder")
            wanted += [prefix + f for f in lm_files]
        elif lm_files:
            log.warning(
                "%s: %s also has a language model (language_model/, not fetched); "
                "`sew models download %s --with-lm` fetches it for the default beam search",
                spec.name,
                spec.source,
                spec.name,
            )
        log.info("downloading %s (%s) into %s", spec.source, ", ".join(wanted), cache_dir())
        with _hub_logs_quiet():
            path = snapshot_download(
                spec.repo, revision=spec.revision, allow_patterns=wanted, cache_dir=str(cache_dir())
            )
    except DownloadError:
        raise
    except RevisionNotFoundError:
        raise DownloadError(f"{spec.name}: revision {spec.revision!r} not found in {spec.repo}") from None
    except GatedRepoError:
        raise DownloadError(
            f"{spec.name}: {spec.repo} is gated; accept its terms on the hub and log in"
        ) from None
    except RepositoryNotFoundError:
        raise DownloadError(f"{spec.name}: no such hub repository {spec.repo!r} (or it is private)") from None
    except HfHubHTTPError as e:
        raise DownloadError(f"{spec.name}: hub error for {spec.source}: {str(e).splitlines()[0]}") from None
    except OSError as e:  # includes connection errors and a full disk
        raise DownloadError(f"{spec.name}: download of {spec.source} failed: {e}") from None
    except Exception as e:  # httpx/httpx2 transport errors are not OSErrors
        raise DownloadError(
            f"{spec.name}: download of {spec.source} failed: {type(e).__name__}: {e}"
        ) from None
    return Path(path) / spec.subfolder if spec.subfolder else Path(path)


_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")


def _check_reachable(spec: ModelSpec) -> None:
    """Fail at once, in one line, when the hub's host name does not resolve (no network).

    huggingface_hub retries a failed connection five times with back-off (~25 s, a warning per try). With a
    proxy the proxy resolves names, so nothing is checked then.
    """
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if any(os.environ.get(v) for v in _PROXY_VARIABLES):
        return
    host = urlsplit(constants.ENDPOINT).hostname
    if not host:
        return
    try:
        socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        reason = getattr(e, "strerror", None) or e
        raise DownloadError(
            f"{spec.name}: cannot reach {host} to download {spec.source} ({reason}); without network, "
            "pass --model DIR (a checkpoint directory) or use a model already in the cache"
        ) from None


@contextlib.contextmanager
def _hub_logs_quiet() -> Iterator[None]:
    """huggingface_hub's own warnings (one per retry) only with `sew -v`: sew reports the outcome itself."""
    hub_log = logging.getLogger("huggingface_hub")
    before = hub_log.level
    if not log.isEnabledFor(logging.DEBUG):
        hub_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_log.setLevel(before)


def model_directory(spec: ModelSpec, *, allow_download: bool = True) -> Path:
    """The local checkpoint directory for `spec`: its path, its cached snapshot, or a fresh download.

    Args:
        spec: a resolved registry entry.
        allow_download: download a hub model that is not cached (unless HF_HUB_OFFLINE is set).
    Returns:
        a directory holding config.json and the weights; raises DownloadError when it cannot be had.
    """
    if spec.path is not None:
        if spec.path.exists() and not spec.path.is_dir():
            raise DownloadError(f"{spec.name}: model path {spec.path} is a file, not a checkpoint directory")
        if not spec.path.is_dir():
            raise DownloadError(f"{spec.name}: model directory {spec.path} does not exist")
        return spec.path
    cached = cached_snapshot(str(spec.repo), spec.revision, spec.subfolder)
    if cached is not None:
        return cached
    if offline() or not allow_download:
        reason = "HF_HUB_OFFLINE is set" if offline() else "downloads are disabled"
        raise DownloadError(
            f"{spec.name}: {spec.source} is not in the Hugging Face cache ({cache_dir()}) and {reason}; "
            + _how_to_get(spec)
        )
    return download(spec)
