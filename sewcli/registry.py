"""The model registry: `models.toml` (shipped) plus an optional user file, and `--model` resolution.

`--model` accepts, in this order: a registry name, a local checkpoint directory, or a bare `org/name` hub id.
Anything else is an error that lists the known names. This module is torch-free and never touches the network.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from sewcli.errors import ModelNotFoundError, RegistryError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

PACKAGE_DIR = Path(__file__).resolve().parent
ARCHES = ("sew", "sew-d", "wav2vec2")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_KEYS = {
    "repo",
    "subfolder",
    "path",
    "revision",
    "arch",
    "language",
    "sample_rate",
    "params",
    "license",
    "description",
    "chunk_length",
    "pause_break",
}


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry (or an ad-hoc one for a directory or hub id given to `--model`)."""

    name: str
    repo: str | None = None  # hub id, when the model comes from the hub
    subfolder: str | None = None  # hub repo folder holding config.json and the weights (None: the root)
    path: Path | None = None  # checkpoint directory, when it is local
    revision: str = "main"
    arch: str | None = None  # None: read from config.json when loaded
    language: str | None = None
    sample_rate: int = 16000
    params: float | None = None  # millions
    license: str | None = None
    description: str = ""
    # Seconds per model window when the command line gives none (overlap: a tenth of it); None: the
    # chunking stage's default. For models trained on short utterances, which do better on short windows.
    chunk_length: float | None = None
    # Greedy decoding: seconds of blank after which a word ends even where the model wrote no word delimiter
    # (--pause-break); None: 0, transformers' greedy text exactly.
    pause_break: float | None = None

    @property
    def is_local(self) -> bool:
        return self.path is not None

    @property
    def source(self) -> str:
        """Where the checkpoint comes from, for messages: a directory or `org/name@revision`."""
        if self.path is not None:
            return str(self.path)
        where = f" ({self.subfolder}/)" if self.subfolder else ""
        return f"{self.repo}@{self.revision}{where}"


@dataclass(frozen=True)
class Registry:
    """All known models by name, and the default model's name."""

    models: Mapping[str, ModelSpec]
    default_model: str
    files: tuple[Path, ...] = field(default=())  # the files read, shipped one first
    # why default_model cannot be used (a user's [defaults] naming no entry); raised only when the default
    # is asked for, so `-m NAME` and `sew models list` still work
    default_problem: str | None = None

    def names(self) -> list[str]:
        return sorted(self.models)


def shipped_registry_path() -> Path:
    """The models.toml shipped with the package (wheel: sewcli/models.toml; source checkout: repo root)."""
    inside = PACKAGE_DIR / "models.toml"
    return inside if inside.is_file() else PACKAGE_DIR.parent / "models.toml"


def user_registry_path() -> Path:
    """`$XDG_CONFIG_HOME/sew/models.toml`, else `~/.config/sew/models.toml` (it need not exist)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "sew" / "models.toml"


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise RegistryError(f"{path}: registry file not found") from None
    except OSError as e:
        raise RegistryError(f"{path}: cannot read registry: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise RegistryError(f"{path}: invalid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise RegistryError(f"{path}: invalid TOML: not UTF-8 text (byte {e.start})") from None


def _entry(path: Path, name: str, table: object, base: ModelSpec | None) -> ModelSpec:
    """Validate one [models.NAME] table and merge it over `base` (an earlier entry of the same name)."""
    # Quoted as in TOML when the name is not a bare key, so a name with a newline cannot split the message.
    key = name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name, ensure_ascii=False)
    where = f"{path}: [models.{key}]"
    if not isinstance(table, dict):
        raise RegistryError(f"{where} must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise RegistryError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    for key in ("repo", "subfolder", "path", "revision", "arch", "language", "license", "description"):
        if key in table and not isinstance(table[key], str):
            raise RegistryError(f"{where}: {key} must be a string, got {table[key]!r}")
    if "sample_rate" in table and (type(table["sample_rate"]) is not int or table["sample_rate"] <= 0):
        raise RegistryError(f"{where}: sample_rate must be a positive integer, got {table['sample_rate']!r}")
    if "params" in table and (
        not isinstance(table["params"], (int, float)) or isinstance(table["params"], bool)
    ):
        raise RegistryError(f"{where}: params must be a number (millions), got {table['params']!r}")
    for key, low, high in (("chunk_length", 1, 600), ("pause_break", 0, 60)):  # seconds
        value = table.get(key)
        if key in table and (
            not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high
        ):
            raise RegistryError(
                f"{where}: {key} must be a number of seconds in [{low}, {high}], got {value!r}"
            )
    if "arch" in table and table["arch"] not in ARCHES:
        raise RegistryError(f"{where}: arch must be one of {', '.join(ARCHES)}, got {table['arch']!r}")
    if "repo" in table and not _HUB_ID.match(str(table["repo"])):
        raise RegistryError(f"{where}: repo must be a hub id like 'org/name', got {table['repo']!r}")
    if "subfolder" in table:
        sub = str(table["subfolder"]).strip("/")
        if "\\" in sub or (sub and any(part in ("", ".", "..") for part in sub.split("/"))):
            raise RegistryError(
                f"{where}: subfolder must be a relative folder of the hub repo like 'Checkpoint', "
                f"got {table['subfolder']!r}"
            )
        if "path" in table and sub:
            raise RegistryError(f"{where}: subfolder applies to hub models ('repo'), not to 'path'")
    values: dict[str, object] = dict(table)
    if "subfolder" in values:
        values["subfolder"] = str(values["subfolder"]).strip("/") or None  # "": the repo root
    if "path" in values:
        p = Path(os.path.expanduser(str(values["path"])))
        # A relative path is relative to the package (shipped file) or to the file that names it (user file).
        anchor = PACKAGE_DIR if path == shipped_registry_path() else path.parent
        values["path"] = p if p.is_absolute() else anchor / p
        values.setdefault("repo", None)
        values.setdefault("subfolder", None)  # a path entry over a hub entry drops its subfolder
    elif "repo" in values:
        values["path"] = None  # a user entry that names a repo turns a local entry into a hub one
    for number in ("params", "chunk_length", "pause_break"):
        if number in values:
            values[number] = float(values[number])  # type: ignore[arg-type]
    spec = replace(base, **values) if base is not None else ModelSpec(name=name, **values)  # type: ignore[arg-type]
    if spec.repo is None and spec.path is None:
        raise RegistryError(f"{where}: needs 'repo' (a hub id) or 'path' (a checkpoint directory)")
    return spec


def _merge_file(path: Path, models: dict[str, ModelSpec], default: str | None) -> str | None:
    data = _read_toml(path)
    unknown = sorted(set(data) - {"models", "defaults"})
    if unknown:
        raise RegistryError(f"{path}: unknown table {unknown[0]!r} (expected [defaults] and [models.NAME])")
    tables = data.get("models", {})
    if not isinstance(tables, dict):
        raise RegistryError(f"{path}: 'models' must be a table of [models.NAME] tables")
    for name, table in tables.items():
        models[name] = _entry(path, name, table, models.get(name))
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict) or set(defaults) - {"model"}:
        raise RegistryError(f"{path}: [defaults] accepts only 'model'")
    model = defaults.get("model", default)
    if model is not None and not isinstance(model, str):
        raise RegistryError(f"{path}: [defaults] model must be a string")
    return model


def load_registry(user_file: Path | None = None, *, include_user_config: bool = True) -> Registry:
    """Read the shipped registry, then the user config file (if present), then `user_file` (must exist).

    Args:
        user_file: an explicit registry (`--registry FILE`); later files override earlier ones per key.
        include_user_config: also read `user_registry_path()` when it exists.
    Returns:
        the merged Registry.
    """
    files = [shipped_registry_path()]
    if include_user_config and user_registry_path().is_file():
        files.append(user_registry_path())
    if user_file is not None:
        files.append(Path(user_file))
    models: dict[str, ModelSpec] = {}
    default: str | None = None
    default_file = files[0]
    for path in files:
        default, before = _merge_file(path, models, default), default
        if default != before:
            default_file = path
    if default is None:
        raise RegistryError(f"{files[0]}: [defaults] model is not set")
    problem = None
    if default not in models:
        problem = (
            f"{default_file}: [defaults] model {default!r} is not a registry entry "
            f"(known: {', '.join(sorted(models))})"
        )
    return Registry(models=models, default_model=default, files=tuple(files), default_problem=problem)


def resolve(name: str | None, registry: Registry, revision: str | None = None) -> ModelSpec:
    """Turn a `--model` value into a ModelSpec: registry name, then local directory, then `org/name` hub id.

    Args:
        name: the `--model` value; None means the registry default.
        registry: the merged registry.
        revision: `--revision`, overriding the entry's revision (hub models only).
    Returns:
        the ModelSpec; raises ModelNotFoundError listing the known names when nothing matches.
    """
    if name is None and registry.default_problem:
        raise RegistryError(registry.default_problem)
    name = registry.default_model if name is None else name
    spec: ModelSpec | None = registry.models.get(name)
    if spec is None:
        local = Path(os.path.expanduser(name))
        if local.is_dir():
            path = local.resolve()
            # the directory of a registry entry (e.g. the embedded model's) keeps that entry's settings
            known = [m for m in registry.models.values() if m.path is not None and m.path.resolve() == path]
            spec = replace(known[0], name=name, path=path) if known else ModelSpec(name=name, path=path)
        elif local.is_file():  # e.g. `-m clip.wav`: say so instead of looking for a hub repo `clips/clip.wav`
            raise ModelNotFoundError(
                f"{name}: is a file, not a checkpoint directory (give the directory holding config.json)"
            )
        elif _HUB_ID.match(name) and not name.startswith((".", "/")):
            spec = ModelSpec(name=name, repo=name)
        else:
            looks_like_path = os.sep in name or name.startswith((".", "~"))
            what = "no such model directory" if looks_like_path else "unknown model"
            raise ModelNotFoundError(
                f"{name}: {what}; known models: {', '.join(registry.names())} "
                "(or give a checkpoint directory or a hub id 'org/name')"
            )
    if revision is not None:
        if spec.is_local:
            raise ModelNotFoundError(
                f"{name}: --revision applies to hub models, but this is a local directory"
            )
        spec = replace(spec, revision=revision)
    return spec
