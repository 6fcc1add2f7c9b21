"""Hub resolution against a fake Hugging Face cache directory (the real layout), with no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from sewcli import hub
from sewcli.errors import DownloadError
from sewcli.registry import ModelSpec

SHA = "0123456789abcdef0123456789abcdef01234567"


def make_fake_cache(
    root: Path, repo: str, files: dict[str, bytes], ref: str = "main", sha: str = SHA
) -> Path:
    """Lay out models--org--name/{blobs,refs/<ref>,snapshots/<sha>/...} like huggingface_hub does."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / ref).write_text(sha)
    snap = repo_dir / "snapshots" / sha
    snap.mkdir(parents=True, exist_ok=True)
    (repo_dir / "blobs").mkdir(exist_ok=True)
    for i, (name, data) in enumerate(files.items()):
        blob = repo_dir / "blobs" / f"blob{i:04d}"
        blob.write_bytes(data)
        link = snap / name  # a name like "Checkpoint/config.json" lies in a subfolder of the snapshot
        link.parent.mkdir(parents=True, exist_ok=True)
        ups = [".."] * (len(Path(name).parts) + 1)
        link.symlink_to(Path(*ups, "blobs", blob.name))
    return snap


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "hf-cache"
    root.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the download tests patch the hub's API; whether this machine resolves huggingface.co must not matter
    monkeypatch.setattr(hub, "_check_reachable", lambda spec: None)
    return root


def test_unresolvable_hub_fails_at_once_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: one line, no retries (huggingface_hub would retry for ~25 s), the hub API never called."""
    import socket

    import huggingface_hub

    def no_dns(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def never(*args: object, **kwargs: object) -> object:
        raise AssertionError("the hub was called")

    for proxy in hub._PROXY_VARIABLES:
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(huggingface_hub, "HfApi", never)
    with pytest.raises(DownloadError) as err:
        hub.download(ModelSpec(name="w", repo="facebook/wav2vec2-base-960h"))
    assert str(err.value).startswith("w: cannot reach huggingface.co to download facebook/wav2vec2-base-960h")
    assert "Name or service not known" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")  # the proxy resolves names: no check
    hub._check_reachable(ModelSpec(name="w", repo="facebook/wav2vec2-base-960h"))


def test_hub_retry_warnings_are_kept_for_verbose_runs() -> None:
    import logging

    hub_log, ours = logging.getLogger("huggingface_hub"), logging.getLogger("sewcli")
    level_before, hub_level = ours.level, hub_log.level
    try:
        hub_log.setLevel(logging.WARNING)  # huggingface_hub's own default
        for ours_level, expected in ((logging.WARNING, False), (logging.DEBUG, True)):
            ours.setLevel(ours_level)
            with hub._hub_logs_quiet():
                assert hub_log.isEnabledFor(logging.WARNING) is expected
            assert hub_log.level == logging.WARNING  # restored
    finally:
        ours.setLevel(level_before)
        hub_log.setLevel(hub_level)


def test_cached_model_is_found_offline(hf_cache: Path) -> None:
    snap = make_fake_cache(hf_cache, "org/tiny", {"config.json": b"{}", "model.safetensors": b"x" * 100})
    spec = ModelSpec(name="tiny", repo="org/tiny")
    assert hub.model_directory(spec) == snap
    status = hub.cache_status(spec)
    assert status.directory == snap and status.size_bytes == 102


def test_subfolder_model_is_found_offline_and_reported_cached(hf_cache: Path) -> None:
    files = {
        "README.md": b"card",
        "Checkpoint/config.json": b"{}",
        "Checkpoint/vocab.json": b"{}",
        "Checkpoint/model.safetensors": b"x" * 100,
    }
    snap = make_fake_cache(hf_cache, "SpeechTek/EE-Wav2Vec2", files)
    assert (snap / "Checkpoint" / "config.json").read_bytes() == b"{}"  # the fake layout itself is sound
    spec = ModelSpec(name="ee", repo="SpeechTek/EE-Wav2Vec2", subfolder="Checkpoint")
    assert hub.model_directory(spec) == snap / "Checkpoint"
    status = hub.cache_status(spec)
    assert status.directory == snap / "Checkpoint" and status.size_bytes == 104  # the subfolder's files only
    # Without the subfolder the same repo is not usable: config.json and the weights are not at its root.
    root_spec = ModelSpec(name="ee", repo="SpeechTek/EE-Wav2Vec2")
    assert hub.cache_status(root_spec).directory is None
    with pytest.raises(DownloadError, match="not in the Hugging Face cache"):
        hub.model_directory(root_spec)


def test_subfolder_is_not_satisfied_by_root_files(hf_cache: Path) -> None:
    make_fake_cache(hf_cache, "org/tiny", {"config.json": b"{}", "model.safetensors": b"x"})
    spec = ModelSpec(name="t", repo="org/tiny", subfolder="Checkpoint")
    assert hub.cached_snapshot("org/tiny", "main", "Checkpoint") is None
    assert hub.cache_status(spec).directory is None
    with pytest.raises(DownloadError) as err:
        hub.model_directory(spec)
    assert "org/tiny@main (Checkpoint/)" in str(err.value) and "\n" not in str(err.value)


def test_revision_by_ref_and_by_sha(hf_cache: Path) -> None:
    other = "f" * 40
    snap = make_fake_cache(
        hf_cache, "org/tiny", {"config.json": b"{}", "pytorch_model.bin": b"w"}, "v2", other
    )
    assert hub.model_directory(ModelSpec(name="t", repo="org/tiny", revision="v2")) == snap
    assert hub.model_directory(ModelSpec(name="t", repo="org/tiny", revision=other)) == snap
    with pytest.raises(DownloadError):
        hub.model_directory(ModelSpec(name="t", repo="org/tiny", revision="main"))


def test_not_cached_offline_is_one_clear_line(hf_cache: Path) -> None:
    spec = ModelSpec(name="sew-tiny", repo="asapp/sew-tiny-100k-ft-ls100h")
    with pytest.raises(DownloadError) as err:
        hub.model_directory(spec)
    msg = str(err.value)
    assert "\n" not in msg
    assert "asapp/sew-tiny-100k-ft-ls100h@main" in msg and "HF_HUB_OFFLINE" in msg
    assert "sew models download sew-tiny" in msg and str(hf_cache) in msg
    assert hub.cache_status(spec).directory is None


def test_snapshot_without_weights_is_not_cached(hf_cache: Path) -> None:
    make_fake_cache(hf_cache, "org/partial", {"config.json": b"{}", "vocab.json": b"{}"})
    assert hub.cached_snapshot("org/partial", "main") is None


def test_download_refused_offline(hf_cache: Path) -> None:
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE"):
        hub.download(ModelSpec(name="x", repo="org/x"))


def test_offline_flag_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not hub.offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "YES")
    assert hub.offline()


def test_local_directory_spec(tmp_path: Path) -> None:
    spec = ModelSpec(name="mine", path=tmp_path)
    assert hub.model_directory(spec) == tmp_path
    with pytest.raises(DownloadError, match="does not exist"):
        hub.model_directory(ModelSpec(name="gone", path=tmp_path / "gone"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(DownloadError, match="is a file, not a checkpoint directory"):
        hub.model_directory(ModelSpec(name="f", path=tmp_path / "file"))


def test_download_fetches_only_needed_files(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Online path, hub calls patched: safetensors preferred, only metadata + one weight file requested."""
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    calls: dict[str, object] = {}

    class FakeApi:
        def list_repo_files(self, repo: str, revision: str) -> list[str]:
            calls["listed"] = (repo, revision)
            return [
                "config.json",
                "vocab.json",
                "model.safetensors",
                "pytorch_model.bin",
                "tf_model.h5",
                "README.md",
            ]

    def fake_snapshot(repo: str, **kwargs: object) -> str:
        calls["snapshot"] = (repo, kwargs)
        return str(hf_cache / "snap")

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    path = hub.download(ModelSpec(name="w", repo="facebook/wav2vec2-base-960h", revision="r1"))
    assert path == hf_cache / "snap"
    assert calls["listed"] == ("facebook/wav2vec2-base-960h", "r1")
    repo, kwargs = calls["snapshot"]  # type: ignore[misc]
    assert repo == "facebook/wav2vec2-base-960h"
    assert kwargs == {
        "revision": "r1",
        "allow_patterns": ["config.json", "vocab.json", "model.safetensors"],
        "cache_dir": str(hf_cache),
    }


def test_download_of_a_subfolder_model(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Online path, hub calls patched: only the subfolder's files are requested, its directory returned."""
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    calls: dict[str, object] = {}

    class FakeApi:
        def list_repo_files(self, repo: str, revision: str) -> list[str]:
            return [
                "README.md",
                "config.json",  # a root config.json that is not the checkpoint's: must not be fetched
                "Checkpoint/config.json",
                "Checkpoint/vocab.json",
                "Checkpoint/pytorch_model.bin",
                "Other/model.safetensors",
            ]

    def fake_snapshot(repo: str, **kwargs: object) -> str:
        calls["snapshot"] = kwargs
        return str(hf_cache / "snap")

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    spec = ModelSpec(name="ee", repo="SpeechTek/EE-Wav2Vec2", subfolder="Checkpoint")
    assert hub.download(spec) == hf_cache / "snap" / "Checkpoint"
    kwargs = calls["snapshot"]
    assert kwargs["allow_patterns"] == [  # type: ignore[index]
        "Checkpoint/config.json",
        "Checkpoint/vocab.json",
        "Checkpoint/pytorch_model.bin",
    ]


@pytest.mark.parametrize("has_lm", [True, False])
def test_download_with_lm_adds_the_language_model_folder(
    hf_cache: Path, monkeypatch: pytest.MonkeyPatch, has_lm: bool
) -> None:
    """--with-lm: the repository's language_model/ files come too (pyctcdecode/HF layout), or one error."""
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    calls: dict[str, object] = {}
    lm_files = ["language_model/5gram.bin", "language_model/attrs.json", "language_model/unigrams.txt"]

    class FakeApi:
        def list_repo_files(self, repo: str, revision: str) -> list[str]:
            return ["config.json", "vocab.json", "model.safetensors", *(lm_files if has_lm else [])]

    def fake_snapshot(repo: str, **kwargs: object) -> str:
        calls["snapshot"] = kwargs
        return str(hf_cache / "snap")

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    spec = ModelSpec(name="lm", repo="org/wav2vec2-with-lm")
    if not has_lm:
        with pytest.raises(DownloadError, match="org/wav2vec2-with-lm@main has no language_model/"):
            hub.download(spec, with_lm=True)
        return
    hub.download(spec, with_lm=True)
    assert calls["snapshot"]["allow_patterns"] == [  # type: ignore[index]
        "config.json",
        "vocab.json",
        "model.safetensors",
        *lm_files,
    ]
    warnings: list[str] = []
    monkeypatch.setattr(hub.log, "warning", lambda msg, *args: warnings.append(msg % args))
    hub.download(spec)  # without the flag: the model files only, and a hint on stderr
    assert "language_model/5gram.bin" not in calls["snapshot"]["allow_patterns"]  # type: ignore[index]
    assert any("`sew models download lm --with-lm` fetches it" in w for w in warnings), warnings
