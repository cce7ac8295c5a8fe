"""GRPO options, each default in one place (the published Think2Seg-RS run where known).

Published (github Ricardo-XZ/Think2Seg-RS, 3B run script and its GRPO config): group size
(``num_generations``) 16, KL coefficient (``beta``) 0.001, 1024 completion tokens,
sampling temperature 0.9, clip range 0.2, one policy update per batch, LoRA r 8 /
alpha 16 / dropout 0.05 on ``q_proj, k_proj, v_proj, o_proj`` (its PEFT config).

Not published for LoRA: the run trained all weights at the GRPO default learning rate
1e-6; a LoRA adapter starts at zero and has ~1000x fewer parameters, so it needs a larger
step: 1e-5 here (the usual LoRA range is 1e-5..2e-4). A user's run of a few dozen
examples is far shorter than the paper's 5 epochs of EarthReason, so ``steps`` bounds it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rs_reasoner.errors import InvalidRequestError


@dataclass(frozen=True)
class GrpoOptions:
    """Options of a GRPO run (see the module docstring for where the defaults come from).

    Attributes:
        group_size: Completions sampled per example (the group that normalises rewards).
        kl_coef: Weight of the KL penalty towards the base prompter (adapter disabled).
        lr: AdamW learning rate of the LoRA weights.
        max_new_tokens: Completion budget while training and evaluating.
        temperature: Sampling temperature of the rollouts.
        clip: PPO clip range of the probability ratio.
        iterations: Policy updates per sampled batch (1: the ratio is 1, no clipping).
        examples_per_step: Examples (groups) per optimizer step.
        steps: Optimizer steps of the whole run.
        lora_r, lora_alpha, lora_dropout: LoRA shape.
        lora_targets: Module names LoRA adapts (the language model's projections).
        eval_every: Held-out evaluation every this many steps (0: only before and after).
        save_every: Resume checkpoint every this many steps.
        seed: Seed of sampling, order and the adapter's initialisation.
        time_budget_s: Stop (and save) after this many seconds; None: no limit.
        grad_clip: Gradient norm clip.
    """

    group_size: int = 16
    kl_coef: float = 0.001
    lr: float = 1e-5
    max_new_tokens: int = 1024
    temperature: float = 0.9
    clip: float = 0.2
    iterations: int = 1
    examples_per_step: int = 1
    steps: int = 200
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    eval_every: int = 0
    save_every: int = 10
    seed: int = 0
    time_budget_s: float | None = None
    grad_clip: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        positive = ("group_size", "max_new_tokens", "iterations", "examples_per_step", "steps",
                    "lora_r", "lora_alpha", "save_every")  # fmt: skip
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise InvalidRequestError(f"GRPO option {name} must be at least 1.")
        if self.group_size < 2:
            raise InvalidRequestError(
                "GRPO needs a group of at least 2 completions per example.",
                "Set group_size to 2 or more (the published run used 16).",
            )
        if not (self.lr > 0 and self.temperature > 0 and self.kl_coef >= 0 and self.clip > 0):
            raise InvalidRequestError(
                "GRPO options lr, temperature and clip must be positive, kl_coef >= 0."
            )
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise InvalidRequestError("The time budget must be positive (seconds).")

    def settings(self) -> dict[str, Any]:
        """The options as JSON-ready values (saved with the adapter)."""
        out = dataclasses.asdict(self)
        out.pop("extra")
        out["lora_targets"] = list(self.lora_targets)
        return out

    @classmethod
    def names(cls) -> frozenset[str]:
        """Option names a request may set."""
        return frozenset(f.name for f in dataclasses.fields(cls) if f.name != "extra")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> GrpoOptions:
        """Options from a mapping (unknown names are a user error)."""
        unknown = set(values) - cls.names()
        if unknown:
            raise InvalidRequestError(
                f"Unknown GRPO option(s): {', '.join(sorted(unknown))}.",
                f"Known: {', '.join(sorted(cls.names()))}.",
            )
        kwargs = dict(values)
        if "lora_targets" in kwargs:
            kwargs["lora_targets"] = tuple(kwargs["lora_targets"])
        return cls(**kwargs)
