import pytest

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.query import looks_like_class_list, resolve_mode, split_classes
from rs_reasoner.schemas import Mode


def test_split_classes_with_synonyms_and_duplicates() -> None:
    assert split_classes("Buildings; roof | house, roads,\nwater, buildings") == (
        ("buildings", "roof", "house"),
        ("roads",),
        ("water",),
    )


def test_split_classes_collapses_whitespace_and_trailing_dots() -> None:
    assert split_classes("  bare   soil. ,  ") == (("bare soil",),)


@pytest.mark.parametrize("text", [",", " ; ,\n", "..."])
def test_split_classes_rejects_lists_without_names(text: str) -> None:
    with pytest.raises(InvalidRequestError, match="No class names"):
        split_classes(text)


@pytest.mark.parametrize(
    "text",
    ["buildings", "buildings, roads, water", "solar panels; pv arrays, swimming pools"],
)
def test_noun_lists_are_class_lists(text: str) -> None:
    assert looks_like_class_list(text)
    assert resolve_mode(text, Mode.auto) is Mode.open_vocabulary


@pytest.mark.parametrize(
    "text",
    [
        "the buildings most at risk from the river",
        "which fields are irrigated?",
        "find all ponds near the highway",
        "large warehouses with flat grey roofs beside rail yards",
    ],
)
def test_sentences_go_to_reasoning(text: str) -> None:
    assert not looks_like_class_list(text)
    assert resolve_mode(text, Mode.auto) is Mode.reasoning


def test_explicit_mode_is_kept() -> None:
    assert resolve_mode("buildings", Mode.reasoning) is Mode.reasoning
    assert resolve_mode("the largest pond", Mode.open_vocabulary) is Mode.open_vocabulary
