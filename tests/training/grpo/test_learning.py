"""A GRPO run on the synthetic task (tests/training/grpo/helpers.py) learns from the image.

Prompter: the tiny Qwen2.5-VL (real class), primed on the answer format only. Mask stage:
:class:`BoxMaskStage` (each object's box as its mask) — SAM 2.1 with random weights draws
masks that ignore the prompt, so the reward would carry no signal; the real SAM's
plumbing is tested in test_reward.py and the CLI tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rs_reasoner.segmenters.reasoning.geometry import make_overview
from rs_reasoner_training.grpo.loop import GrpoRun
from rs_reasoner_training.grpo.options import GrpoOptions
from rs_reasoner_training.grpo.policy import Completions, Policy
from rs_reasoner_training.grpo.reward import BoxMaskStage
from tests.training.grpo.helpers import (
    EMPTY,
    answer_model,
    answer_processor,
    prime_format,
    quadrant_examples,
)


def _p_no_target(run: GrpoRun, examples) -> float:  # noqa: ANN001
    """Mean probability that the answer starts with "[]" (no target)."""
    tok = run.policy.processor.tokenizer
    empty = tok.convert_tokens_to_ids(EMPTY)
    probs = []
    with torch.no_grad():
        run.model.eval()
        for e in examples:
            prompt = run.prompt(e)
            one = torch.tensor([[empty]])
            lp = run.policy.token_logprobs(prompt, Completions(one, torch.ones_like(one), [""]))
            probs.append(float(lp.exp()[0, 0]))
    return float(np.mean(probs))


def test_grpo_raises_reward_and_heldout_iou(tmp_path: Path) -> None:
    processor = answer_processor()
    model = answer_model(processor)
    examples = quadrant_examples(n_train=8, n_heldout=8)
    policy = Policy(model, processor)
    prompts = [policy.encode(make_overview(e.image, e.valid), e.query) for e in examples[:8]]
    prime_format(policy, prompts, steps=40)

    options = GrpoOptions(
        group_size=8, examples_per_step=2, steps=16, lr=3e-3, max_new_tokens=6,
        temperature=1.0, kl_coef=0.0, lora_dropout=0.0, save_every=100, seed=0,
    )  # fmt: skip
    run = GrpoRun(model, processor, examples, BoxMaskStage(), tmp_path, options,
                  {"base_prompter": "tiny"})  # fmt: skip
    held_pos = [e for e in run.heldout if not e.negative]
    held_neg = [e for e in run.heldout if e.negative]
    gap_before = _p_no_target(run, held_neg) - _p_no_target(run, held_pos)
    result = run.run()
    gap_after = _p_no_target(run, held_neg) - _p_no_target(run, held_pos)

    rewards = [m["mean_reward"] for m in result.history]
    first, last = np.mean(rewards[:5]), np.mean(rewards[-5:])
    print(f"reward {first:.3f} -> {last:.3f}; held-out IoU {result.heldout_before:.3f} -> "
          f"{result.heldout_after:.3f}; P(no target | neg) - P(no target | pos) "
          f"{gap_before:.3f} -> {gap_after:.3f}")  # fmt: skip
    assert last > first + 0.1
    assert result.heldout_after > result.heldout_before
    # Learnt from the image: on held-out images the policy now says "no target" far more
    # often where there is none than where there is one (priming, blind to the image,
    # left the two close).
    assert gap_after > gap_before + 0.3
    for m in result.history:
        assert {"mean_reward", "group_spread", "parse_failure_rate", "answer_tokens"} <= set(m)
