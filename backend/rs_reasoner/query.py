"""Query parsing: class lists with synonyms, and choosing a mode for ``auto``."""

from __future__ import annotations

import re

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.schemas import Mode

# Words that only occur in sentences, not in lists of class names. A query containing any
# of them (or a question mark, or a long item) is a description for the reasoning model.
_SENTENCE_WORDS = frozenset(
    """a an the that which who whose where what when why how is are was were be been being
    has have had do does did can could should would will may might must of to from in on at
    by for with without near nearest closest far farthest largest smallest biggest most least
    than between along across inside outside within around next beside behind above below
    under over into onto adjacent surrounding risk likely suitable find show segment identify
    highlight select mark locate all any every each those these this it its them they""".split()
)
_MAX_CLASS_WORDS = 4


def split_classes(text: str) -> tuple[tuple[str, ...], ...]:
    """Split a class list into classes, each a tuple of synonyms.

    Classes are separated by commas or new lines; synonyms of one class by ``;`` or ``|``
    (``"building; roof, road"`` → ``(("building", "roof"), ("road",))``). Names are
    lower-cased and stripped; duplicates are dropped, order is kept.

    Args:
        text: The query.

    Returns:
        The classes; each tuple's first name is the label written to the output.

    Raises:
        InvalidRequestError: When no class name remains.
    """
    classes: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for item in re.split(r"[,\n]+", text):
        names: list[str] = []
        for name in re.split(r"[;|]+", item):
            name = " ".join(name.strip().lower().split()).strip(".")
            if name and name not in seen:
                seen.add(name)
                names.append(name)
        if names:
            classes.append(tuple(names))
    if not classes:
        raise InvalidRequestError(
            f"No class names found in {text!r}.",
            "Give class names separated by commas, e.g. 'buildings, roads, water'.",
        )
    return tuple(classes)


def looks_like_class_list(text: str) -> bool:
    """True when ``text`` reads as a list of class names rather than a sentence.

    Args:
        text: The query.

    Returns:
        Whether every item is a short noun phrase with no sentence words.
    """
    if "?" in text:
        return False
    for item in re.split(r"[,;|\n]+", text):
        words = re.findall(r"[\w'-]+", item.lower())
        if len(words) > _MAX_CLASS_WORDS or any(w in _SENTENCE_WORDS for w in words):
            return False
    return True


def resolve_mode(text: str, mode: Mode) -> Mode:
    """The mode a query runs in: ``auto`` sends noun lists to open-vocabulary
    segmentation and sentences to the reasoning segmenter.

    Args:
        text: The query.
        mode: The requested mode.

    Returns:
        ``Mode.reasoning`` or ``Mode.open_vocabulary``.
    """
    if mode is not Mode.auto:
        return mode
    return Mode.open_vocabulary if looks_like_class_list(text) else Mode.reasoning
