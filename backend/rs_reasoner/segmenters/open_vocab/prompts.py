"""Text side of the open-vocabulary segmenter: prompts, ensembling, caching, background.

**Prompt ensembling.** A class is embedded as the mean of the L2-normalised CLIP text
embeddings of every template (:data:`TEMPLATES`) filled with every synonym of the class,
renormalised to unit length: ``t_c = normalise(mean_{template, synonym} normalise(
encode(template.format(synonym))))``. Synonyms therefore merge into one class embedding.

**Background.** Pixels that belong to none of the user's classes need somewhere to go,
otherwise a softmax over the user's classes alone forces every pixel into one of them.
The segmenter scores a few generic background names next to the user's classes and maps
them to label 0; each is its own entry in the softmax and their probabilities are summed
into the background probability. :data:`DEFAULT_BACKGROUND` holds deliberately generic
"stuff" words that users rarely ask for as targets (the SegEarth-OV class lists use
"background" and "clutter" the same way); land-cover words such as "road", "tree" or
"water" are not included because they are common queries and would steal pixels from
them. A background name that shares a word with any of the user's synonyms is dropped
(:func:`select_background`), so asking for "bare soil" removes "bare ground" and
"building shadow" removes "shadow".

**Cache.** Text embeddings depend only on the model and the class's synonyms, so
:class:`TextEmbeddingCache` keeps them (LRU) keyed by ``(model id, synonyms)``; repeated
queries and tiles of one job never run the text encoder twice for the same class.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Tokenizer = Callable[[list[str]], torch.Tensor]
ClassKey = tuple[str, ...]

#: Remote-sensing prompt templates ("{}" is the class name).
TEMPLATES: tuple[str, ...] = (
    "a satellite photo of a {}.",
    "an aerial photo of a {}.",
    "a satellite image showing {}.",
    "an aerial image of the {}.",
    "a remote sensing image of {}.",
    "a top-down view of {}.",
    "an overhead photo of a {}.",
    "a high-resolution satellite image of the {}.",
    "{} seen from above.",
    "a bird's-eye view of {}.",
    "an orthophoto containing {}.",
    "a drone photo looking down on {}.",
)

#: Generic background names scored beside the user's classes and mapped to label 0.
DEFAULT_BACKGROUND: tuple[str, ...] = ("background", "clutter", "bare ground", "shadow")


def class_key(synonyms: Iterable[str]) -> ClassKey:
    """Canonical form of a class's synonyms (lower-case, trimmed, unique, sorted).

    The embedding is a mean over synonyms, so their order does not matter.
    """
    names = {" ".join(s.lower().split()) for s in synonyms}
    names.discard("")
    if not names:
        raise ValueError("a class needs at least one non-empty name")
    return tuple(sorted(names))


def _words(text: str) -> set[str]:
    # Crude singular form so "shadows" matches "shadow"; "ss" endings ("grass") stay.
    return {
        w[:-1] if w.endswith("s") and not w.endswith("ss") and len(w) > 3 else w
        for w in re.findall(r"[a-z]+", text.lower())
    }


def select_background(
    classes: Sequence[Sequence[str]], background: Sequence[str] = DEFAULT_BACKGROUND
) -> tuple[str, ...]:
    """Background names that do not overlap the user's classes.

    Args:
        classes: The user's classes, each a sequence of synonyms.
        background: Candidate background names.

    Returns:
        The candidates sharing no word with any user synonym, in their given order.
    """
    user_words = set().union(*(_words(name) for syn in classes for name in syn))
    return tuple(b for b in dict.fromkeys(background) if not (_words(b) & user_words))


def ensemble_text_embeddings(
    model: nn.Module,
    tokenizer: Tokenizer,
    classes: Sequence[Sequence[str]],
    templates: Sequence[str] = TEMPLATES,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
) -> torch.Tensor:
    """Prompt-ensembled, unit-length text embeddings, one per class.

    Args:
        model: An open_clip model (``encode_text``).
        tokenizer: Its tokenizer.
        classes: Classes, each a sequence of synonyms.
        templates: Prompt templates with one ``{}``.
        device: Where to run the text encoder.
        batch_size: Prompts per text-encoder call.

    Returns:
        (len(classes), D) float32 tensor on ``device``.
    """
    prompts: list[str] = []
    owner: list[int] = []
    for i, synonyms in enumerate(classes):
        for name in synonyms:
            for template in templates:
                prompts.append(template.format(name))
                owner.append(i)
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            tokens = tokenizer(prompts[start : start + batch_size]).to(device)
            chunks.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
        emb = torch.cat(chunks)
        index = torch.tensor(owner, device=emb.device)
        sums = torch.zeros(len(classes), emb.shape[1], device=emb.device)
        sums.index_add_(0, index, emb)
        return F.normalize(sums, dim=-1)


class TextEmbeddingCache:
    """LRU cache of class text embeddings keyed by ``(model id, class key)``.

    Args:
        maxsize: Most classes kept.
    """

    def __init__(self, maxsize: int = 512) -> None:
        self.maxsize = maxsize
        self._store: OrderedDict[tuple[str, ClassKey], torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        """Drop every entry."""
        self._store.clear()

    def embed(
        self,
        model_id: str,
        classes: Sequence[Sequence[str]],
        encode: Callable[[list[ClassKey]], torch.Tensor],
    ) -> torch.Tensor:
        """Embeddings of ``classes``, encoding only those not cached (in one call).

        Args:
            model_id: Identifies the text encoder and templates.
            classes: Classes, each a sequence of synonyms.
            encode: Maps a list of class keys to their (n, D) embeddings.

        Returns:
            (len(classes), D) tensor, rows in the order of ``classes``.
        """
        keys = [class_key(c) for c in classes]
        missing = [k for k in dict.fromkeys(keys) if (model_id, k) not in self._store]
        self.misses += len(missing)
        self.hits += len(set(keys)) - len(missing)
        if missing:
            for key, emb in zip(missing, encode(missing), strict=True):
                self._store[(model_id, key)] = emb
        rows = []
        for key in keys:
            self._store.move_to_end((model_id, key))
            rows.append(self._store[(model_id, key)])
        while len(self._store) > self.maxsize:
            self._store.popitem(last=False)
        return torch.stack(rows)
