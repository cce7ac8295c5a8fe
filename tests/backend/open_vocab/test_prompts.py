"""Prompt templates, ensembling, the text-embedding cache and background selection."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rs_reasoner.segmenters.open_vocab.prompts import (
    DEFAULT_BACKGROUND,
    TEMPLATES,
    TextEmbeddingCache,
    class_key,
    ensemble_text_embeddings,
    select_background,
)


def test_templates_are_remote_sensing_prompts_with_one_slot() -> None:
    assert 8 <= len(TEMPLATES) <= 15
    assert len(set(TEMPLATES)) == len(TEMPLATES)
    assert all(t.count("{}") == 1 for t in TEMPLATES)
    assert "a satellite photo of a {}." in TEMPLATES


def test_ensemble_is_the_renormalised_mean_over_templates_and_synonyms(make_tiny) -> None:
    model, tokenizer = make_tiny(0)
    templates = TEMPLATES[:3]
    classes = [("building", "roof"), ("water",)]
    got = ensemble_text_embeddings(model, tokenizer, classes, templates, batch_size=4)
    assert got.shape == (2, 32) and got.dtype == torch.float32
    with torch.inference_mode():
        for row, synonyms in zip(got, classes, strict=True):
            prompts = [t.format(s) for s in synonyms for t in templates]
            each = F.normalize(model.encode_text(tokenizer(prompts)), dim=-1)
            torch.testing.assert_close(row, F.normalize(each.mean(0), dim=0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(2))


def test_synonyms_merge_into_one_embedding_that_differs_from_each_alone(make_tiny) -> None:
    model, tokenizer = make_tiny(0)
    merged, building, roof = ensemble_text_embeddings(
        model, tokenizer, [("building", "roof"), ("building",), ("roof",)]
    )
    assert not torch.allclose(merged, building) and not torch.allclose(merged, roof)
    # Equal template counts per synonym: the merged class lies between the two.
    assert (merged @ building).item() > (roof @ building).item()
    assert (merged @ roof).item() > (roof @ building).item()


def test_class_key_ignores_case_spacing_order_and_duplicates() -> None:
    assert class_key(["Roof ", "building", "roof"]) == class_key(["building", "roof"])
    assert class_key(["bare  Soil"]) == ("bare soil",)
    with pytest.raises(ValueError):
        class_key(["  "])


def counting_encoder(calls: list[list[tuple[str, ...]]], dim: int = 4):
    def encode(keys: list[tuple[str, ...]]) -> torch.Tensor:
        calls.append(list(keys))
        return torch.stack([torch.full((dim,), float(len(" ".join(k)))) for k in keys])

    return encode


def test_cache_encodes_each_class_once_and_only_the_missing_ones() -> None:
    cache, calls = TextEmbeddingCache(), []
    encode = counting_encoder(calls)
    first = cache.embed("m", [("building", "roof"), ("water",)], encode)
    again = cache.embed("m", [("water",), ("roof", "building")], encode)
    assert calls == [[("building", "roof"), ("water",)]]
    torch.testing.assert_close(again, first.flip(0))
    cache.embed("m", [("water",), ("road",)], encode)
    assert calls[-1] == [("road",)]
    cache.embed("other-model", [("water",)], encode)  # the model id is part of the key
    assert calls[-1] == [("water",)]
    assert cache.hits == 3 and cache.misses == 4


def test_cache_is_lru_bounded() -> None:
    cache, calls = TextEmbeddingCache(maxsize=2), []
    encode = counting_encoder(calls)
    cache.embed("m", [("a",)], encode)
    cache.embed("m", [("b",)], encode)
    cache.embed("m", [("a",)], encode)  # a is now the most recent
    cache.embed("m", [("c",)], encode)  # evicts b
    assert len(cache) == 2
    cache.embed("m", [("a",)], encode)
    assert calls[-1] == [("c",)]
    cache.embed("m", [("b",)], encode)
    assert calls[-1] == [("b",)]


def test_background_names_overlapping_the_query_are_dropped() -> None:
    assert select_background([("car",)]) == DEFAULT_BACKGROUND
    assert "bare ground" not in select_background([("bare soil",)])
    assert "shadow" not in select_background([("building shadows",)])
    assert select_background([("Clutter", "tree")], ["background", "clutter"]) == ("background",)
    assert select_background([("water",)], []) == ()
