"""The default model of a mode is one that can run: a higher-priority claimant whose weights
are not on disk gives way to one whose weights are (else nothing would answer a first run)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from rs_reasoner.pipeline import SegmentationPipeline
from rs_reasoner.schemas import Mode, SegmentRequest
from rs_reasoner.segmenters import registry
from rs_reasoner.segmenters.spec import ModelSpec
from rs_reasoner.weights import WeightSpec, is_available
from tests.support.rasters import neon_crop

#: Weights no cache holds (the repository does not exist).
_ABSENT = WeightSpec(repo_id="rs-reasoner-tests/absent-weights", filename="model.bin")


@pytest.fixture
def weightless_top_model() -> Iterator[ModelSpec]:
    spec = registry.register(ModelSpec(
        name="test-top-no-weights", modes=(Mode.open_vocabulary,), description="test",
        factory="rs_reasoner.segmenters.index_baseline:IndexBaselineSegmenter",
        weights=(_ABSENT,), default_for=(Mode.open_vocabulary,), priority=10_000,
    ))
    yield spec
    with registry._LOCK:
        registry._SPECS.pop(spec.name, None)


def test_a_claimant_without_weights_gives_way(weightless_top_model: ModelSpec) -> None:
    assert not is_available(_ABSENT)
    chosen = registry.default_for(Mode.open_vocabulary)
    assert chosen.name != weightless_top_model.name
    assert all(map(is_available, chosen.weights))
    # Among the runnable claimants, priority still decides (test-colour outranks the baseline).
    assert chosen.name == "test-colour"


def test_without_any_runnable_claimant_the_highest_priority_is_chosen(
    weightless_top_model: ModelSpec, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # When no claimant can run, the default is the best one, whose missing weights the run
    # then reports (with the command that fetches them).
    lower = ModelSpec(
        name="test-lower-no-weights", modes=(Mode.open_vocabulary,), description="test",
        factory=weightless_top_model.factory, weights=(_ABSENT,),
        default_for=(Mode.open_vocabulary,), priority=1,
    )
    monkeypatch.setattr(registry, "specs", lambda: [lower, weightless_top_model])
    assert registry.default_for(Mode.open_vocabulary).name == weightless_top_model.name


def test_weights_on_disk_let_the_higher_priority_win(
    weightless_top_model: ModelSpec, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry, "is_available", lambda _w: True)
    assert registry.default_for(Mode.open_vocabulary).name == weightless_top_model.name


@pytest.fixture
def cuda_only_top_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelSpec]:
    """A weight-free open-vocabulary claimant that is the default only on CUDA, on a machine
    where ``auto`` means CUDA (as it does on a GPU machine)."""
    from rs_reasoner import device

    monkeypatch.setattr(device, "resolve_device", lambda d: "cuda" if d == "auto" else d)
    spec = registry.register(ModelSpec(
        name="test-cuda-only-default", modes=(Mode.open_vocabulary,), description="test",
        factory="tests.support.segmenters:ColourSegmenter",
        default_for=(Mode.open_vocabulary,), priority=10_000, default_devices=("cuda",),
    ))
    yield spec
    with registry._LOCK:
        registry._SPECS.pop(spec.name, None)


def test_a_cpu_run_never_gets_a_cuda_only_default(
    cuda_only_top_model: ModelSpec, shared_data: Path, tmp_path: Path
) -> None:
    # On this (simulated) GPU machine the CUDA-only model is the default of a plain lookup...
    assert registry.default_for(Mode.open_vocabulary).name == cuda_only_top_model.name
    assert registry.default_for(Mode.open_vocabulary, "cpu").name == "test-colour"
    # ...but a job asked to run on the CPU plans with that device, so it gets a CPU model.
    raster = neon_crop(shared_data, tmp_path / "crop.tif", 64, 48)
    request = SegmentRequest(raster=str(raster), query="bright")
    pipeline = SegmentationPipeline(device="cpu")
    pipeline.validate(request, str(raster))
    assert pipeline.run(request, str(raster)).model == "test-colour"
