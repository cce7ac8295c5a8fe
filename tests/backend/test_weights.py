from pathlib import Path

import pytest
from huggingface_hub import constants

from rs_reasoner import weights
from rs_reasoner.errors import MissingWeightsError
from rs_reasoner.weights import WeightSpec

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, offline, used by this process only."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def add_to_cache(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """Lay out files the way huggingface_hub caches a snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snap = repo / "snapshots" / COMMIT
    for name, data in files.items():
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        (snap / name).write_bytes(data)
    return snap


def test_resolves_a_cached_file(hub_cache: Path) -> None:
    snap = add_to_cache(hub_cache, "facebook/sam2.1-hiera-small", {"model.pt": b"w"})
    spec = WeightSpec("facebook/sam2.1-hiera-small", filename="model.pt")
    assert weights.resolve(spec, "m") == snap / "model.pt"
    assert weights.is_available(spec)


def test_resolves_a_cached_snapshot(hub_cache: Path) -> None:
    snap = add_to_cache(hub_cache, "org/vlm", {"config.json": b"{}", "model.safetensors": b"w"})
    assert weights.resolve(WeightSpec("org/vlm"), "m") == snap


def test_missing_weights_error_names_weights_place_and_command(hub_cache: Path) -> None:
    spec = WeightSpec("RicardoString/Think2Seg-RS-3B")
    with pytest.raises(MissingWeightsError) as info:
        weights.resolve(spec, "think2seg-rs-3b")
    err = info.value
    assert "RicardoString/Think2Seg-RS-3B" in err.message
    assert str(hub_cache) in err.message
    assert spec.env_var in err.message
    assert "rs-reasoner models pull think2seg-rs-3b" in err.hint
    assert not weights.is_available(spec)


def test_download_failure_when_offline_is_the_same_clear_error(hub_cache: Path) -> None:
    with pytest.raises(MissingWeightsError, match="models pull x"):
        weights.resolve(WeightSpec("org/absent", filename="a.pt"), "x", allow_download=True)


def test_env_override_points_at_a_local_copy(
    hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = WeightSpec("org/local-model")
    assert spec.env_var == "RS_REASONER_WEIGHTS_ORG_LOCAL_MODEL"
    local = tmp_path / "copy"
    local.mkdir()
    monkeypatch.setenv(spec.env_var, str(local))
    assert weights.resolve(spec, "m") == local
    monkeypatch.setenv(spec.env_var, str(tmp_path / "nowhere"))
    with pytest.raises(MissingWeightsError, match="does not exist"):
        weights.resolve(spec, "m")
