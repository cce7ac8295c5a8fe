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


def test_a_partial_snapshot_is_not_present(hub_cache: Path) -> None:
    spec = WeightSpec("org/vlm", required=("config.json", "*.safetensors"))
    add_to_cache(hub_cache, "org/vlm", {"config.json": b"{}"})
    assert not weights.is_available(spec)
    with pytest.raises(MissingWeightsError, match=r"lacks \*\.safetensors"):
        weights.resolve(spec, "m")


def test_a_sharded_snapshot_needs_every_shard_its_index_names(hub_cache: Path) -> None:
    index = b'{"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}'
    snap = add_to_cache(hub_cache, "org/big", {
        "config.json": b"{}", "model.safetensors.index.json": index,
        "model-1.safetensors": b"w",
    })  # fmt: skip
    spec = WeightSpec("org/big", required=("config.json", "*.safetensors"))
    assert not weights.is_available(spec)
    (snap / "model-2.safetensors").write_bytes(b"w")
    assert weights.resolve(spec, "m") == snap


def test_a_folder_override_of_single_file_weights_gives_the_file(
    hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = WeightSpec("facebook/sam2.1-hiera-small", filename="sam2.1_hiera_small.pt")
    clone = tmp_path / "sam2.1-hiera-small"
    clone.mkdir()
    monkeypatch.setenv(spec.env_var, str(clone))
    with pytest.raises(MissingWeightsError, match="has no sam2.1_hiera_small.pt"):
        weights.resolve(spec, "m")
    (clone / "sam2.1_hiera_small.pt").write_bytes(b"w")
    assert weights.resolve(spec, "m") == clone / "sam2.1_hiera_small.pt"


def test_alternative_file_names_are_found_in_the_cache(hub_cache: Path) -> None:
    spec = WeightSpec("org/clip", filename="open_clip_model.safetensors",
                      alternatives=("open_clip_pytorch_model.bin",))
    snap = add_to_cache(hub_cache, "org/clip", {"open_clip_pytorch_model.bin": b"w"})
    assert weights.resolve(spec, "m") == snap / "open_clip_pytorch_model.bin"


def test_a_snapshot_override_must_be_a_complete_folder(
    hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = WeightSpec("org/vlm", required=("config.json", "model.safetensors"))
    local = tmp_path / "vlm"
    local.mkdir()
    (local / "config.json").write_text("{}")
    monkeypatch.setenv(spec.env_var, str(local))
    with pytest.raises(MissingWeightsError, match="lacks model.safetensors"):
        weights.resolve(spec, "m")
    monkeypatch.setenv(spec.env_var, str(local / "config.json"))
    with pytest.raises(MissingWeightsError, match="Point .* at the folder"):
        weights.resolve(spec, "m")


def test_pulling_a_gated_repo_without_access_explains_the_licence_and_login(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    import huggingface_hub

    class Refused(Exception):
        response = SimpleNamespace(status_code=403)  # what the Hub answers without access

    def refuse(*_args: object, **kwargs: object) -> None:
        if not kwargs.get("local_files_only"):
            raise Refused("403 Client Error: access to model facebook/sam3 is restricted")
        raise FileNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    spec = WeightSpec("facebook/sam3", required=("config.json",))
    with pytest.raises(MissingWeightsError) as info:
        weights.resolve(spec, "sam3-openvocab", allow_download=True)
    assert "licence" in info.value.message
    assert "https://huggingface.co/facebook/sam3" in info.value.hint
    assert "hf auth login" in info.value.hint


@pytest.mark.parametrize("processor_file", ["preprocessor_config.json", "processor_config.json"])
def test_qwen_snapshot_needs_an_image_processor_config_of_either_transformers_layout(
    tmp_path: Path, processor_file: str
) -> None:
    from rs_reasoner.segmenters.hub_weights import PROMPTER_WEIGHTS

    spec = PROMPTER_WEIGHTS["think2seg-rs-3b"]
    for name in ("config.json", "model.safetensors", "tokenizer_config.json"):
        (tmp_path / name).write_text("{}")
    assert weights.missing_files(spec, tmp_path) == ["*processor_config.json"]
    (tmp_path / processor_file).write_text("{}")  # 4.x name, or the 5.x merged one
    assert weights.missing_files(spec, tmp_path) == []
