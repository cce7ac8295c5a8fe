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
    assert not spec.whole_extent


def test_dotted_loaders_resolve_to_classmethods() -> None:
    from rs_reasoner.segmenters.open_vocab.training_free import ClipOpenVocabSegmenter

    spec = registry.get_spec("clip-openvocab")
    assert registry.resolve_factory(spec) == ClipOpenVocabSegmenter.from_pretrained


def test_static_facts_match_the_model_code() -> None:
    """The specs' literals (kept so planning a job imports no model) equal the code's."""
    from rs_reasoner.segmenters.open_vocab.training_free import OpenVocabSettings
    from rs_reasoner.segmenters.reasoning.template import MODEL_SIZE

    facts = {s.name: (s.whole_extent, s.input_size, s.input_bands) for s in registry.specs()}
    clip = (False, OpenVocabSettings().window, 3)
    reasoning = (True, MODEL_SIZE, 3)
    assert facts["clip-openvocab"] == facts["remoteclip-openvocab"] == clip
    assert facts["think2seg-rs"] == facts["think2seg-rs-7b"] == reasoning
    assert facts["index-baseline"] == (False, None, 3)
    assert facts["test-reasoning"][0] and not facts["test-colour"][0]


def test_registry_module_imports_no_model_code() -> None:
    """Listing models and planning jobs read specs only: no segmenter implementation (and
    no torch) is imported by the registry's own imports."""
    import subprocess
    import sys

    code = (
        "import sys; from rs_reasoner.segmenters import registry; registry.specs(); "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.endswith(("
        "'training_free', 'reasoning.segmenter', 'index_baseline'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_pull_names_cover_models_and_the_training_backbones() -> None:
    """``models pull rs-zeroseg`` fetches what training RS-ZeroSeg on pretrained backbones
    resolves, though no model of that name is served."""
    from rs_reasoner.segmenters.open_vocab.rs_zeroseg.config import RSZeroSegConfig
    from rs_reasoner.segmenters.open_vocab.rs_zeroseg.model import weight_specs

    def keys(specs: object) -> set[tuple]:
        return {(w.repo_id, w.filename, w.revision, w.allow_patterns) for w in specs}  # type: ignore[attr-defined]

    assert keys(registry.weights_for("rs-zeroseg")) == keys(weight_specs(RSZeroSegConfig()))
    assert registry.weights_for("clip-openvocab") == registry.get_spec("clip-openvocab").weights
    with pytest.raises(UnknownModelError):
        registry.weights_for("no-such-model")
