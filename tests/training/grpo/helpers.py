"""The synthetic task of the GRPO tests and a prompter that can write its answers.

Task: an image split into four quadrants, each a coloured square. In a positive example
one is bright yellow and the other three are dull distractors (random dull colours); the
answer is the bright square's box. In a negative example all four are dull and the right
answer is "no target" (an empty list). Whether the target is there is learnable from the
image's content alone; which quadrant holds it needs positional attention, which a tiny
random model does not learn within a test's budget, so the measurable gain comes from
answering "no target" on negatives and a box on positives.

Prompter: the tiny random Qwen2.5-VL (real class) whose byte-level tokenizer gets a few
added tokens for the answer's pieces (the answer prefix, the four top-left and four
bottom-right corners of a quadrant in the 840 frame, the suffix), so an answer is six
tokens instead of ~30 bytes; the prompt itself is the project's template as served.
:func:`prime_format` teaches it the answer *format* with quadrants drawn at random
(independent of the image), as a real base model knows JSON before GRPO; which quadrant
is right is left for GRPO to learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rs_reasoner.segmenters.reasoning.template import MODEL_SIZE, SYSTEM_PROMPT, user_prompt
from rs_reasoner_training.grpo.examples import Example

QUERY = "the bright yellow square"
HALF = MODEL_SIZE // 2
PREFIX = '[{"bbox_2d": ['
SUFFIX = "]}]"
EMPTY = "[]"
#: Each quadrant's box in the 840 frame, as written in an answer (one token each).
BOXES = [f"{x}, {y}, {x + HALF}, {y + HALF}" for y in (0, HALF) for x in (0, HALF)]
BRIGHT = (255, 230, 0)


def answer(quadrant: int) -> str:
    """The right answer for the bright square in ``quadrant`` (0 TL, 1 TR, 2 BL, 3 BR)."""
    return PREFIX + BOXES[quadrant] + SUFFIX


def quadrant_example(quadrant: int, seed: int, side: int = 56, heldout: bool = False) -> Example:
    """One example: four squares, the bright one in ``quadrant`` (-1: none, a negative);
    target = its pixels."""
    rng = np.random.default_rng(seed)
    image = np.zeros((side, side, 3), np.uint8)
    target = np.zeros((side, side), bool)
    h = side // 2
    for q in range(4):
        rows = slice((q // 2) * h, (q // 2 + 1) * h)
        cols = slice((q % 2) * h, (q % 2 + 1) * h)
        if q == quadrant:  # never for a negative (-1)
            image[rows, cols] = BRIGHT
            target[rows, cols] = True
        else:
            image[rows, cols] = rng.integers(20, 110, 3)
    valid = np.ones((side, side), bool)
    return Example(f"q{quadrant}-{seed}", image, valid, QUERY, target, heldout=heldout)


def quadrant_examples(n_train: int, n_heldout: int, seed: int = 0) -> list[Example]:
    """Training and held-out examples, half negatives (positives cycle the quadrants)."""

    def quadrant(k: int) -> int:
        return (k // 2) % 4 if k % 2 == 0 else -1

    out = [quadrant_example(quadrant(k), seed * 1000 + k) for k in range(n_train)]
    out += [quadrant_example(quadrant(k), seed * 1000 + 500 + k, heldout=True)
            for k in range(n_heldout)]  # fmt: skip
    return out


def answer_processor() -> Any:
    """The tiny processor with the answer pieces as added tokens."""
    from rs_reasoner.segmenters.reasoning.tiny_qwen import tiny_processor

    processor = tiny_processor()
    # The template's fixed text as a few long tokens (a real BPE tokenizer writes it in
    # ~200 tokens, the byte-level one in ~800): the text the model reads is unchanged.
    before, after = user_prompt("\x00").split("\x00")
    processor.tokenizer.add_tokens([SYSTEM_PROMPT, before, after, PREFIX, SUFFIX, EMPTY, *BOXES])
    return processor


def answer_model(processor: Any, seed: int = 0) -> Any:
    """The tiny Qwen2.5-VL sized for ``processor``'s vocabulary, with two changes to its
    small config: RoPE base 100 (with 16-dim heads, base 1e6 leaves the height and width
    frequencies so low that 30 image rows differ by 0.03 rad: no position could be read)
    and window attention in both vision blocks (full attention over 3,600 patches
    dominates CPU time)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from rs_reasoner.segmenters.reasoning.tiny_qwen import tiny_qwen

    config = tiny_qwen(processor, seed=seed).config
    config.text_config.rope_parameters["rope_theta"] = 100.0
    config.vision_config.fullatt_block_indexes = []
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = 0
    return model


def prime_format(
    policy: Any, prompts: list[Any], steps: int, seed: int = 0, no_target: bool = True
) -> None:
    """Teach the answer format: cross-entropy on answers drawn at random, independent of
    the image: "no target" (``[]``) half the time, else a random quadrant's
    ``[{"bbox_2d": [box]}]``.

    Only the output head and the answer tokens' embeddings learn (the prompt's tokens
    never occur in answers), so each prompt's KV cache is computed once and stays exact.
    """
    import copy

    from transformers import DynamicCache

    tok = policy.processor.tokenizer
    eos = min(policy.eos_ids)
    rng = np.random.default_rng(seed)
    model = policy.model
    head = model.lm_head.weight
    embed = model.get_input_embeddings().weight
    for p in model.parameters():
        p.requires_grad_(False)
    head.requires_grad_(True)
    embed.requires_grad_(True)
    caches = []
    with torch.no_grad():
        for prompt in prompts:
            cache = DynamicCache()
            out = model.model(
                input_ids=prompt.input_ids, mm_token_type_ids=prompt.mm_token_type_ids,
                image_grid_thw=prompt.image_grid_thw,
                mm_encoder_outputs=policy._image_batch(prompt, 1),
                position_ids=prompt.positions, past_key_values=cache, use_cache=True,
            )  # fmt: skip
            caches.append((cache, out.last_hidden_state[:, -1:]))
    opt = torch.optim.Adam([head, embed], lr=3e-2)
    n = 8
    for _ in range(steps):
        k = int(rng.integers(len(prompts)))
        prompt, (cache, first) = prompts[k], caches[k]
        quads = rng.integers(-4 if no_target else 0, 4, n)  # negative: "no target"
        pieces = [[EMPTY, eos, eos, eos] if q < 0 else [PREFIX, BOXES[q], SUFFIX, eos]
                  for q in quads]  # fmt: skip
        rows = torch.tensor([tok.convert_tokens_to_ids(p[:1]) + [
            t if isinstance(t, int) else tok.convert_tokens_to_ids(t) for t in p[1:]]
            for p in pieces])  # fmt: skip
        # Targets after the end token of a short answer are ignored.
        targets = rows.clone()
        targets[(rows == eos).cumsum(dim=1) > 1] = -100
        cache = copy.deepcopy(cache)
        cache.batch_repeat_interleave(n)
        start = prompt.length + int(prompt.delta.reshape(-1)[0])
        pos = (start + torch.arange(rows.shape[1] - 1)).view(1, 1, -1).expand(3, n, -1)
        hidden = model.model(input_ids=rows[:, :-1], position_ids=pos, past_key_values=cache,
                             use_cache=True).last_hidden_state  # fmt: skip
        # The first answer token is predicted at the prompt's last position.
        hidden = torch.cat([first.expand(n, -1, -1), hidden], dim=1)
        logits = model.lm_head(hidden)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()


def save_base_and_sam(folder: Any) -> tuple[Any, Any]:
    """A base prompter snapshot (the tiny model primed to write boxes, with its processor)
    and a SAM 2.1 hiera-tiny checkpoint with random weights, as files the production
    loaders read. Returns (snapshot folder, checkpoint path)."""
    from rs_reasoner.segmenters.reasoning.sam import build_sam2_model
    from rs_reasoner_training.grpo.policy import Policy

    processor = answer_processor()
    model = answer_model(processor)
    policy = Policy(model, processor)
    example = quadrant_example(0, 0)
    from rs_reasoner.segmenters.reasoning.geometry import make_overview

    prompt = policy.encode(make_overview(example.image, example.valid), QUERY)
    prime_format(policy, [prompt], steps=25, no_target=False)
    base = folder / "base"
    model.save_pretrained(base)
    processor.save_pretrained(base)
    torch.manual_seed(0)
    sam = build_sam2_model("tiny", None, "cpu")
    checkpoint = folder / "sam_tiny_random.pt"
    torch.save({"model": sam.state_dict()}, checkpoint)
    return base, checkpoint
