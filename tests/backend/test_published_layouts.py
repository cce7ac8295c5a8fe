"""The production loaders on tiny random models saved in the public repositories' exact
layouts (see :mod:`tests.backend.published_layouts`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rs_reasoner.segmenters.hub_weights import PROMPTER_WEIGHTS
from rs_reasoner.segmenters.reasoning.prompter import QwenPrompter
from rs_reasoner.segmenters.reasoning.template import MODEL_SIZE
from rs_reasoner.segmenters.reasoning.tiny_qwen import tiny_processor, tiny_qwen
from tests.backend.published_layouts import snapshot_dir, write_think2seg
from tests.backend.reasoning.helpers import random_image


class _TokenCounter:
    """Counts the positions the text decoder computes, over all forward calls."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        self.calls = 0
        self.positions = 0
        self.handle = decoder.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, _module: Any, args: tuple, kwargs: dict) -> None:
        embeds = kwargs.get("inputs_embeds")
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.calls += 1
        self.positions += int((embeds if embeds is not None else ids).shape[1])


def test_think2seg_snapshot_decodes_with_the_cache_whatever_its_generation_config(
    empty_hub_cache: Path,
) -> None:
    processor = tiny_processor()
    reference = tiny_qwen(processor, seed=1)
    write_think2seg(snapshot_dir(empty_hub_cache, "RicardoString/Think2Seg-RS-3B"), reference,
                    processor)
    tokens = 8
    prompter = QwenPrompter.load("think2seg-rs-3b", max_new_tokens=tokens)
    # The 4.49 layout loaded: same weights as the model saved.
    loaded = dict(prompter.model.named_parameters())
    for name, value in reference.named_parameters():
        assert torch.equal(loaded[name], value), name
    assert prompter.model.generation_config.use_cache is False  # the snapshot's, kept

    image = random_image(MODEL_SIZE, MODEL_SIZE, seed=9)
    counter = _TokenCounter(prompter.model.model.language_model)
    out = prompter.generate(image, "ponds")
    counter.handle.remove()
    n, prompt = out.stats.new_tokens, out.stats.prompt_tokens
    assert n >= 2
    # Cached decoding: the prompt once, then one position per new token.
    assert counter.calls == n
    assert counter.positions == prompt + n - 1

    # The snapshot's own settings would recompute the whole sequence at every step.
    inputs = prompter.prepare(image, "ponds")
    uncached = _TokenCounter(prompter.model.model.language_model)
    with torch.inference_mode():
        prompter.model.generate(**inputs, max_new_tokens=n, min_new_tokens=n)
    uncached.handle.remove()
    assert uncached.positions == sum(prompt + i for i in range(n))
    assert uncached.positions > 2 * counter.positions


def test_think2seg_answer_is_greedy_not_the_snapshots_sampling(empty_hub_cache: Path) -> None:
    processor = tiny_processor()
    reference = tiny_qwen(processor, seed=2)
    write_think2seg(snapshot_dir(empty_hub_cache, "RicardoString/Think2Seg-RS-3B"), reference,
                    processor)
    image = random_image(MODEL_SIZE, MODEL_SIZE, seed=10)
    loaded = QwenPrompter.load("think2seg-rs-3b", max_new_tokens=6)
    plain = QwenPrompter.from_components(reference, processor, max_new_tokens=6)
    # repetition_penalty 1.05 and top_p 0.001 of the snapshot would change these tokens.
    assert loaded.generate(image, "ponds").text == plain.generate(image, "ponds").text
    assert PROMPTER_WEIGHTS["think2seg-rs-3b"].repo_id == "RicardoString/Think2Seg-RS-3B"
