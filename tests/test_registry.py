"""models.toml parsing, user overrides and `--model` resolution (no network, no torch)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sewcli import registry
from sewcli.errors import ModelNotFoundError, RegistryError
from sewcli.registry import load_registry, resolve

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_registry_has_the_required_entries() -> None:
    reg = load_registry()
    raw = tomllib.loads(registry.shipped_registry_path().read_text(encoding="utf-8"))
    assert set(reg.models) == set(raw["models"])  # every table parsed, none invented
    repos = {spec.repo for spec in reg.models.values()}
    for repo in (
        "asapp/sew-tiny-100k-ft-ls100h",
        "asapp/sew-d-tiny-100k-ft-ls100h",
        "facebook/wav2vec2-base-960h",
        "facebook/wav2vec2-large-960h-lv60-self",
        "jonatasgrosman/wav2vec2-large-xlsr-53-english",
        "SpeechTek/EE-Wav2Vec2",
    ):
        assert repo in repos
    assert {spec.arch for spec in reg.models.values()} == {"sew", "sew-d", "wav2vec2"}
    default = reg.models[reg.default_model]
    assert reg.default_model == "sew-synth-en"
    assert default.is_local and default.path == registry.PACKAGE_DIR / "assets" / "sew-synth-en"
    for spec in reg.models.values():
        assert spec.description and spec.language and spec.license and spec.sample_rate == 16000
    subfolders = {name: spec.subfolder for name, spec in reg.models.items() if spec.subfolder}
    assert subfolders == {"wav2vec2-ee": "Checkpoint"}  # its config.json and weights live in Checkpoint/
    assert reg.models["wav2vec2-ee"].source == "SpeechTek/EE-Wav2Vec2@main (Checkpoint/)"
    windows = {name: spec.chunk_length for name, spec in reg.models.items() if spec.chunk_length}
    assert windows == {"sew-synth-en": 10.0}  # trained on utterances of at most 10 s
    breaks = {name: spec.pause_break for name, spec in reg.models.items() if spec.pause_break is not None}
    assert breaks == {"sew-synth-en": 0.5}  # it writes no word delimiter into pauses near window edges


def test_resolve_registry_name_directory_and_hub_id(tmp_path: Path) -> None:
    reg = load_registry()
    assert resolve("sew-tiny", reg).repo == "asapp/sew-tiny-100k-ft-ls100h"
    assert resolve(None, reg).name == "sew-synth-en"
    ckpt = tmp_path / "my-ckpt"
    ckpt.mkdir()
    local = resolve(str(ckpt), reg)
    assert local.is_local and local.path == ckpt.resolve() and local.repo is None
    hub = resolve("someorg/some-model.v2", reg, revision="abc123")
    assert (hub.repo, hub.revision, hub.is_local) == ("someorg/some-model.v2", "abc123", False)
    assert resolve("sew-tiny", reg, revision="v1").revision == "v1"


def test_unknown_name_lists_known_names(tmp_path: Path) -> None:
    reg = load_registry()
    with pytest.raises(ModelNotFoundError) as err:
        resolve("sew-huge", reg)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("sew-huge: unknown model")
    for name in reg.names():
        assert name in msg
    with pytest.raises(ModelNotFoundError, match="no such model directory"):
        resolve(str(tmp_path / "missing" / "dir"), reg)
    with pytest.raises(ModelNotFoundError, match="local directory"):
        resolve(str(tmp_path), reg, revision="main")


def test_user_file_adds_and_overrides_per_key(tmp_path: Path) -> None:
    (tmp_path / "ckpts" / "mine").mkdir(parents=True)
    user = _write(
        tmp_path / "extra.toml",
        """
[defaults]
model = "mine"

[models.mine]
path = "ckpts/mine"
arch = "sew"
description = "my fine-tune"

[models.sew-tiny]
revision = "refs/pr/1"
""",
    )
    reg = load_registry(user)
    assert reg.default_model == "mine"
    assert reg.models["mine"].path == tmp_path / "ckpts" / "mine"  # relative to the user file
    tiny = reg.models["sew-tiny"]
    assert tiny.revision == "refs/pr/1" and tiny.repo == "asapp/sew-tiny-100k-ft-ls100h"  # other keys kept
    assert tiny.params == pytest.approx(40.7)
    assert reg.files[-1] == user


def test_subfolder_key_parsed_and_overridden(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    user = _write(
        tmp_path / "extra.toml",
        """
[models.nested]
repo = "org/nested"
subfolder = "exports/final/"

[models.sew-tiny]
subfolder = "Checkpoint"

[models.wav2vec2-ee]
path = "ckpt"
""",
    )
    reg = load_registry(user)
    assert reg.models["nested"].subfolder == "exports/final"  # trailing slash dropped
    assert reg.models["sew-tiny"].subfolder == "Checkpoint"
    assert reg.models["sew-tiny"].repo == "asapp/sew-tiny-100k-ft-ls100h"
    ee = reg.models["wav2vec2-ee"]  # a local path over the hub entry: no repo, no subfolder
    assert ee.path == tmp_path / "ckpt" and ee.repo is None and ee.subfolder is None
    assert resolve("nested", reg, revision="v2").subfolder == "exports/final"  # kept by --revision
    cleared = _write(tmp_path / "root.toml", '[models.wav2vec2-ee]\nsubfolder = ""\n')
    assert load_registry(cleared).models["wav2vec2-ee"].subfolder is None  # "": the repo root


def test_user_config_dir_is_read(tmp_path: Path) -> None:
    cfg = tmp_path / "xdg" / "sew"
    cfg.mkdir(parents=True)
    _write(cfg / "models.toml", '[models.extra]\nrepo = "a/b"\n')
    assert load_registry().models["extra"].repo == "a/b"
    assert "extra" not in load_registry(include_user_config=False).models


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[models.x\n", "invalid TOML"),
        ('[models.x]\nrepo = "a/b"\ncolour = "red"\n', "unknown key 'colour'"),
        ('[models.x]\narch = "sew"\n', "needs 'repo'"),
        ('[models.x]\nrepo = "a/b"\narch = "conformer"\n', "arch must be one of"),
        ('[models.x]\nrepo = "a/b"\nsample_rate = "16k"\n', "sample_rate must be a positive integer"),
        ('[models.x]\nrepo = "not a hub id"\n', "repo must be a hub id"),
        ('[models.x]\nrepo = "a/b"\nparams = true\n', "params must be a number"),
        ('[models.x]\nrepo = "a/b"\nchunk_length = "10s"\n', "chunk_length must be a number of seconds"),
        ('[models.x]\nrepo = "a/b"\nchunk_length = 0.5\n', "chunk_length must be a number of seconds"),
        ('[models.x]\nrepo = "a/b"\nchunk_length = true\n', "chunk_length must be a number of seconds"),
        ('[models.x]\nrepo = "a/b"\npause_break = -1\n', "pause_break must be a number of seconds"),
        ('[models.x]\nrepo = "a/b"\npause_break = "1s"\n', "pause_break must be a number of seconds"),
        ('[models.x]\nrepo = "a/b"\nsubfolder = 1\n', "subfolder must be a string"),
        ('[models.x]\nrepo = "a/b"\nsubfolder = "a/../b"\n', "subfolder must be a relative folder"),
        ('[models.x]\nrepo = "a/b"\nsubfolder = "a\\\\b"\n', "subfolder must be a relative folder"),
        ('[models.x]\npath = "d"\nsubfolder = "c"\n', "subfolder applies to hub models"),
        ('[default]\nmodel = "x"\n', "unknown table 'default'"),
    ],
)
def test_malformed_user_file_is_one_line_naming_the_file(tmp_path: Path, text: str, needle: str) -> None:
    bad = _write(tmp_path / "bad.toml", text)
    with pytest.raises(RegistryError) as err:
        load_registry(bad)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg
    assert str(bad) in msg


def test_a_default_naming_no_entry_fails_only_when_the_default_is_used(tmp_path: Path) -> None:
    """A stale `[defaults] model` in the user's file must not lock the user out of `-m NAME` (and of
    `sew models list`, to fix it); using the default names the file."""
    bad = _write(tmp_path / "bad.toml", '[defaults]\nmodel = "nope"\n')
    reg = load_registry(bad)
    assert resolve("sew-synth-en", reg).name == "sew-synth-en"
    with pytest.raises(RegistryError) as err:
        resolve(None, reg)
    msg = str(err.value)
    assert (
        msg.startswith(f"{bad}: [defaults] model 'nope' is not a registry entry (known: ") and "\n" not in msg
    )


def test_missing_explicit_registry_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="registry file not found"):
        load_registry(tmp_path / "absent.toml")


def test_a_registry_entrys_directory_keeps_its_settings(tmp_path: Path) -> None:
    reg = load_registry(include_user_config=False)
    embedded = reg.models["sew-synth-en"]
    by_dir = resolve(str(embedded.path), reg)
    assert by_dir.path == embedded.path and by_dir.name == str(embedded.path)
    assert (by_dir.chunk_length, by_dir.language, by_dir.arch) == (10.0, "en", "sew")
    other = tmp_path / "ckpt"
    other.mkdir()
    assert resolve(str(other), reg).chunk_length is None  # any other directory: no registry settings
