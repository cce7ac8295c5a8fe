"""The classes the index baseline answers, and the submission check of a query against
them: no numpy work and no model, so the registry's spec can name the check without
importing the segmenter."""

from __future__ import annotations

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.segmenters.base import SegmentationQuery

#: Class → names the user may type for it.
SYNONYMS: dict[str, frozenset[str]] = {
    "vegetation": frozenset(
        "vegetation vegetated trees tree forest forests grass grassland plants canopy "
        "crops crop shrubs fields green".split()
    ),
    "water": frozenset("water river rivers lake lakes pond ponds sea ocean reservoir".split()),
}


def match_class(synonyms: tuple[str, ...]) -> str | None:
    """The baseline class a user's class (with synonyms) refers to, if any."""
    for name in synonyms:
        words = {name, name.rstrip("s"), *name.split()}
        for cls, known in SYNONYMS.items():
            if words & known:
                return cls
    return None


def check_query(query: SegmentationQuery) -> None:
    """Refuse classes the baseline cannot segment (the spec's ``check_query``: run when
    a job is submitted, so such a job is refused instead of failing later).

    Raises:
        InvalidRequestError: Naming the classes and what the baseline knows.
    """
    unknown = [syn[0] for syn in query.classes if match_class(syn) is None]
    if unknown:
        raise InvalidRequestError(
            f"The index baseline cannot segment {', '.join(map(repr, unknown))}.",
            "It knows vegetation (trees, grass, ...) and water (river, lake, ...); "
            "use a learned model (see 'rs-reasoner models list') for other classes.",
        )
