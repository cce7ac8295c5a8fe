"""The Qwen2.5-VL prompter on a tiny random model: prompt, vision input, generation, loading."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from rs_reasoner.errors import MissingWeightsError
from rs_reasoner.segmenters.hub_weights import PROMPTER_WEIGHTS
from rs_reasoner.segmenters.reasoning.prompter import QwenPrompter, prompter_weights
from rs_reasoner.segmenters.reasoning.template import (
    MAX_QUERY_CHARS,
    MODEL_SIZE,
    SYSTEM_PROMPT,
    build_messages,
    clean_query,
    user_prompt,
)
from rs_reasoner.segmenters.reasoning.tiny_qwen import tiny_processor
from tests.backend.reasoning.helpers import random_image

IMAGE_TOKENS = (MODEL_SIZE // 28) ** 2  # 30 x 30 merged patches


def test_messages_follow_the_training_layout() -> None:
    system, user = build_messages("the buildings most at risk from the river")
    assert system == {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}
    assert user["role"] == "user"
    assert user["content"][0] == {"type": "image"}  # image first, then the instruction
    text = user["content"][1]["text"]
    assert text.startswith('Please find "the buildings most at risk from the river", identify')
    assert "`bbox_2d`" in text and "`positive_points`: Exactly two points" in text
    assert "<think> </think>" in text and "<answer> </answer>" in text
    assert text.endswith(
        '"positive_points": [[50, 250], [90, 300]]}]```</answer>'
    )


def test_query_is_cleaned() -> None:
    assert clean_query("  ponds\n and\tlakes ") == "ponds and lakes"
    assert len(clean_query("x" * 5000)) == MAX_QUERY_CHARS
    assert '"a {b} c"' in user_prompt("a {b} c")  # braces in queries are not format fields


def test_chat_prompt_has_one_image_before_the_instruction(qwen_parts: tuple[Any, Any]) -> None:
    _, processor = qwen_parts
    prompt = processor.apply_chat_template(
        build_messages("ponds"), add_generation_prompt=True, tokenize=False
    )
    assert prompt.count("<|vision_start|><|image_pad|><|vision_end|>") == 1
    assert prompt.index("<|image_pad|>") < prompt.index('Please find "ponds"')
    assert prompt.endswith("<|im_start|>assistant\n")


def test_the_model_sees_exactly_840x840(qwen_parts: tuple[Any, Any]) -> None:
    model, _ = qwen_parts
    # A processor whose own pixel limit would shrink the image: the prompter overrides it.
    processor = tiny_processor()
    processor.image_processor.size = {"shortest_edge": 3136, "longest_edge": 200_000}
    prompter = QwenPrompter.from_components(model, processor)
    inputs = prompter.prepare(random_image(MODEL_SIZE, MODEL_SIZE), "ponds")
    assert inputs["image_grid_thw"].tolist() == [[1, 60, 60]]  # 14-px patches
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_id).sum()) == IMAGE_TOKENS


def test_generation_is_greedy_and_timed(qwen_parts: tuple[Any, Any]) -> None:
    model, processor = qwen_parts
    prompter = QwenPrompter.from_components(model, processor, max_new_tokens=6)
    assert prompter.fast_decode is False  # static cache is the CUDA default only
    image = random_image(MODEL_SIZE, MODEL_SIZE, seed=3)
    first = prompter.generate(image, "the largest pond")
    again = prompter.generate(image, "the largest pond")
    assert first.text == again.text and isinstance(first.text, str)
    s = first.stats
    assert 1 <= s.new_tokens <= 6
    assert s.prompt_tokens > IMAGE_TOKENS
    assert s.prefill_s > 0 and s.total_s >= s.prefill_s and s.decode_ms_per_token >= 0
    assert s.hit_budget == (s.new_tokens == 6)


def test_static_cache_decode_gives_the_same_answer(qwen_parts: tuple[Any, Any]) -> None:
    model, processor = qwen_parts
    image = random_image(MODEL_SIZE, MODEL_SIZE, seed=4)
    dynamic = QwenPrompter.from_components(model, processor, max_new_tokens=5)
    static = QwenPrompter.from_components(model, processor, max_new_tokens=5, fast_decode=True)
    assert static.generate(image, "ponds").text == dynamic.generate(image, "ponds").text
    assert static.fast_decode is True  # did not fall back


def test_snapshot_sampling_defaults_do_not_leak_into_greedy_decoding(
    qwen_parts: tuple[Any, Any],
) -> None:
    model, processor = qwen_parts
    image = random_image(MODEL_SIZE, MODEL_SIZE, seed=6)
    plain = QwenPrompter.from_components(model, processor, max_new_tokens=5)
    expected = plain.generate(image, "ponds").text
    saved = model.generation_config
    try:
        # Snapshot defaults like Qwen's (sampling, low temperature, a repetition penalty;
        # an extreme one here, which changes this model's greedy tokens if applied).
        model.generation_config = copy.deepcopy(saved)
        model.generation_config.update(do_sample=True, temperature=0.1, top_p=0.001,
                                       top_k=1, repetition_penalty=0.01)
        assert plain.generate(image, "ponds").text == expected
    finally:
        model.generation_config = saved


def test_loads_a_local_snapshot_through_the_weight_lookup(
    qwen_parts: tuple[Any, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    empty_hub_cache: Path,
) -> None:
    model, processor = qwen_parts
    snapshot = tmp_path / "snapshot"
    model.save_pretrained(snapshot)
    processor.save_pretrained(snapshot)
    monkeypatch.setenv(PROMPTER_WEIGHTS["think2seg-rs-3b"].env_var, str(snapshot))
    prompter = QwenPrompter.load("think2seg-rs-3b", max_new_tokens=3)
    assert prompter.model.config.model_type == "qwen2_5_vl"
    assert prompter.model.config._attn_implementation == "sdpa"
    image = random_image(MODEL_SIZE, MODEL_SIZE, seed=5)
    reference = QwenPrompter.from_components(model, processor, max_new_tokens=3)
    assert prompter.generate(image, "ponds").text == reference.generate(image, "ponds").text


@pytest.mark.parametrize(
    "name,repo",
    [
        ("think2seg-rs-3b", "RicardoString/Think2Seg-RS-3B"),
        ("think2seg-rs-7b", "RicardoString/Think2Seg-RS-7B"),
        ("qwen2.5-vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct"),
        ("qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct"),
    ],
)
def test_missing_snapshot_is_the_projects_error(
    name: str, repo: str, empty_hub_cache: Path
) -> None:
    spec = prompter_weights(name)
    assert spec.repo_id == repo and spec.filename is None  # a whole snapshot
    with pytest.raises(MissingWeightsError) as info:
        QwenPrompter.load(name, model_name="think2seg-rs")
    assert repo in str(info.value)
    assert "rs-reasoner models pull think2seg-rs" in str(info.value)
    assert spec.env_var in str(info.value)


def test_unknown_prompter_name() -> None:
    with pytest.raises(ValueError, match="think2seg-rs-3b"):
        prompter_weights("gpt-5")
