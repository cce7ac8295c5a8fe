import pytest

from rs_reasoner.errors import UnknownModelError
from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters import registry
from rs_reasoner.segmenters.base import Segmenter


def test_builtin_and_env_modules_are_registered() -> None:
    names = {s.name for s in registry.specs()}
    assert {"index-baseline", "test-colour", "test-slow", "test-reasoning"} <= names


def test_default_is_the_highest_priority_claimant() -> None:
    # test-colour (priority 100) outranks index-baseline (-100) for open vocabulary.
    assert registry.default_for(Mode.open_vocabulary).name == "test-colour"
    assert registry.default_for(Mode.reasoning).name == "test-reasoning"


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(UnknownModelError) as info:
        registry.get_spec("no-such-model")
    assert "index-baseline" in info.value.hint
    assert info.value.status_code == 404


def test_create_imports_string_factories_lazily() -> None:
    spec = registry.get_spec("index-baseline")
    assert isinstance(spec.factory, str)
    model = registry.create(spec, device="cpu")
    assert isinstance(model, Segmenter)
    assert not model.whole_extent
