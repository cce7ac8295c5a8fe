"""A compact GRPO loop for the prompter (LoRA), with the frozen mask stage as the judge.

Per step, for each of ``examples_per_step`` training examples: sample a group of
``group_size`` completions (temperature sampling, one prefill), score each with the
reward (:mod:`.reward`), normalise the rewards within the group
(``A = (r - mean) / (std + 1e-4)``; a group whose rewards are all equal carries no signal
and adds no gradient), and minimise the clipped policy-gradient loss plus
``kl_coef`` x the per-token KL to the base prompter (k3 estimator, the adapter disabled
gives the reference, so no second model is held in memory), averaged over each
completion's tokens, then over the group.

Why not TRL's ``GRPOTrainer``: TRL 1.16 does train Qwen2.5-VL with images, but its
trainer builds the prompt and runs the image processor itself (the 840² frame and the
serving prompt would have to be re-imposed from outside), checkpoints through the HF
Trainer's ``checkpoint-N`` folders (not atomic under kill -9), and brings accelerate,
datasets and pandas into the backend's environment; the loop here is ~200 lines on the
serving prompter's own ``prepare`` and parser.

State: ``resume.pt`` (adapter weights, optimizer, random states, history), written
atomically every ``save_every`` steps and when the run stops; the same call with the
same folder resumes from it (after a kill -9 too). ``history.json``: one entry per step.
Adapters are published (:func:`.adapter_io.publish_adapter`) when the run stops.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rs_reasoner.atomic import write_atomic, write_text_atomic
from rs_reasoner.errors import CheckpointError, JobCancelled
from rs_reasoner.segmenters.reasoning.geometry import make_overview
from rs_reasoner_training.grpo.adapter_io import publish_adapter
from rs_reasoner_training.grpo.examples import Example
from rs_reasoner_training.grpo.options import GrpoOptions
from rs_reasoner_training.grpo.policy import Completions, Policy, Prompt
from rs_reasoner_training.grpo.reward import MaskStage, Scored, score_completion

log = logging.getLogger(__name__)

RESUME = "resume.pt"
HISTORY = "history.json"
#: ``callback(stage, fraction, message)`` as the backend's trainers report.
StageFn = Callable[[str, float, "str | None"], None]


@dataclass
class GrpoResult:
    """How a run ended.

    Attributes:
        stopped: ``completed``, ``time_budget`` or ``cancelled``.
        steps: Optimizer steps done in all runs.
        adapter: The published adapter folder.
        heldout_before, heldout_after: Held-out mean IoU of the base and the adapter.
        history: One entry per step.
        extra: Notes for the user.
    """

    stopped: str
    steps: int
    adapter: Path
    heldout_before: float | None
    heldout_after: float | None
    history: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)


def add_lora(model: Any, options: GrpoOptions) -> Any:
    """The model wrapped with a fresh LoRA adapter (zero-initialised: = the base)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=list(options.lora_targets),
        bias="none",
    )
    torch.manual_seed(options.seed)
    return get_peft_model(model, config)


def examples_fingerprint(examples: Sequence[Example]) -> str:
    """A short hash of the examples (queries, sizes, targets, split): resume checks it."""
    h = hashlib.sha256()
    for e in examples:
        h.update(f"{e.query}|{e.image.shape}|{int(e.target.sum())}|{e.heldout}".encode())
    return h.hexdigest()[:16]


class GrpoRun:
    """One GRPO run in ``folder`` (see the module docstring).

    Args:
        model: The base prompter, a ``Qwen2_5_VLForConditionalGeneration`` (wrapped here).
        processor: Its processor.
        examples: Training and held-out examples.
        stage: The frozen mask stage (SAM 2.1 in real runs).
        folder: The run's folder (resume state, history, adapters).
        options: GRPO options.
        meta: Saved with every adapter (base prompter, SAM, queries...).
        callback: Progress reports.
        cancel: Stop event.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        examples: Sequence[Example],
        stage: MaskStage,
        folder: Path,
        options: GrpoOptions,
        meta: dict[str, Any],
        callback: StageFn | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.options = options
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.train = [e for e in examples if not e.heldout]
        self.heldout = [e for e in examples if e.heldout]
        self.stage = stage
        self.meta = dict(meta)
        self.callback = callback or (lambda stage, fraction, message: None)
        self.cancel = cancel
        self.fingerprint = examples_fingerprint(examples)
        self.model = add_lora(model, options)
        if next(self.model.parameters()).device.type == "cuda":
            # Activations of long prompts (900 image tokens + completion) dominate memory.
            self.model.gradient_checkpointing_enable()
            self.model.enable_input_require_grads()
        self.policy = Policy(self.model, processor)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=0.0)
        self.generator = torch.Generator().manual_seed(options.seed)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.heldout_before: float | None = None
        self._prompts: dict[int, Prompt] = {}

    # -- state ------------------------------------------------------------------------------

    def _resume(self) -> bool:
        path = self.folder / RESUME
        if not path.is_file():
            return False
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable file: say so
            raise CheckpointError(f"The resume state {path} cannot be read ({exc}).") from None
        if state.get("base_prompter") != self.meta.get("base_prompter"):
            raise CheckpointError(
                f"{self.folder} holds a run on another base prompter "
                f"({state.get('base_prompter')})."
            )
        if state.get("fingerprint") != self.fingerprint:
            raise CheckpointError(f"{self.folder} holds a run on other examples.")
        saved = {k: state["options"][k] for k in ("lora_r", "lora_alpha", "lora_targets")}
        mine = {k: self.options.settings()[k] for k in saved}
        if saved != mine:
            raise CheckpointError(f"{self.folder} holds a run with another LoRA shape {saved}.")
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.model, state["adapter"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.heldout_before = state.get("heldout_before")
        return True

    def _save(self) -> None:
        from peft import get_peft_model_state_dict

        state = {
            "step": self.step,
            "adapter": {k: v.detach().cpu() for k, v in
                        get_peft_model_state_dict(self.model).items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
            "heldout_before": self.heldout_before,
            "options": self.options.settings(),
            "base_prompter": self.meta.get("base_prompter"),
            "fingerprint": self.fingerprint,
        }  # fmt: skip
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_atomic(self.folder / RESUME, lambda f: f.write(buffer.getvalue()))
        text = json.dumps({"history": self.history}, indent=1)
        write_text_atomic(self.folder / HISTORY, text + "\n")

    # -- pieces -----------------------------------------------------------------------------

    def prompt(self, example: Example) -> Prompt:
        """The example's encoded prompt (the 840² overview), cached."""
        key = id(example)
        if key not in self._prompts:
            overview = make_overview(example.image, example.valid)
            self._prompts[key] = self.policy.encode(overview, example.query)
        return self._prompts[key]

    def score(self, example: Example, texts: Sequence[str]) -> list[Scored]:
        return [
            score_completion(t, example.image, example.valid, example.target, self.stage)
            for t in texts
        ]

    def evaluate(self, examples: Sequence[Example]) -> dict[str, float] | None:
        """Greedy answers (the serving setting) on ``examples``: mean IoU, parse failures."""
        if not examples:
            return None
        self.model.eval()
        scores = []
        for e in examples:
            done = self.policy.generate(self.prompt(e), 1, self.options.max_new_tokens, greedy=True)
            scores.extend(self.score(e, done.texts))
        return {
            "mean_iou": float(np.mean([s.reward for s in scores])),
            "parse_failure_rate": float(np.mean([s.parse_failed for s in scores])),
        }

    def _group_loss(
        self, prompt: Prompt, done: Completions, advantages: torch.Tensor
    ) -> tuple[torch.Tensor, float]:
        opts = self.options
        mask = done.mask.to(self.policy.device).float()
        ref = None
        if opts.kl_coef > 0:
            with torch.no_grad(), self.model.disable_adapter():
                self.model.eval()
                ref = self.policy.token_logprobs(prompt, done)
        self.model.train()
        logp = self.policy.token_logprobs(prompt, done)
        old = logp.detach() if self._old is None else self._old
        ratio = torch.exp(logp - old)
        adv = advantages.to(logp.device)[:, None]
        pg = -torch.minimum(ratio * adv, ratio.clamp(1 - opts.clip, 1 + opts.clip) * adv)
        kl_mean = 0.0
        if ref is not None:
            diff = ref - logp
            kl = torch.exp(diff) - diff - 1
            pg = pg + opts.kl_coef * kl
            kl_mean = float(((kl * mask).sum() / mask.sum().clamp(min=1)).detach())
        per_seq = (pg * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return per_seq.mean(), kl_mean

    _old: torch.Tensor | None = None

    def train_step(self, batch: Sequence[Example]) -> dict[str, Any]:
        """One optimizer step on ``batch`` (one group per example); returns its metrics."""
        opts = self.options
        rewards, spreads, failures, lengths, kls, losses = [], [], [], [], [], []
        groups = []
        for e in batch:
            prompt = self.prompt(e)
            self.model.eval()  # sample without LoRA dropout
            done = self.policy.generate(
                prompt, opts.group_size, opts.max_new_tokens, opts.temperature,
                generator=self.generator,
            )  # fmt: skip
            scored = self.score(e, done.texts)
            r = torch.tensor([s.reward for s in scored], dtype=torch.float32)
            rewards.extend(r.tolist())
            spreads.append(float(r.std(unbiased=False)))
            failures.extend(s.parse_failed for s in scored)
            lengths.extend(done.lengths)
            groups.append((prompt, done, (r - r.mean()) / (r.std(unbiased=False) + 1e-4)))
        for it in range(opts.iterations):
            self.optimizer.zero_grad(set_to_none=True)
            for prompt, done, adv in groups:
                if not adv.abs().max() > 0:
                    continue  # equal rewards: no preference to learn from
                if opts.iterations > 1 and it == 0:
                    with torch.no_grad():
                        self.model.eval()
                        self._old = self.policy.token_logprobs(prompt, done)
                loss, kl = self._group_loss(prompt, done, adv)
                (loss / len(groups)).backward()
                losses.append(float(loss.detach()))
                kls.append(kl)
                self._old = None
            params = [p for p in self.model.parameters() if p.requires_grad]
            if any(p.grad is not None for p in params):
                torch.nn.utils.clip_grad_norm_(params, opts.grad_clip)
                self.optimizer.step()
        return {
            "step": self.step + 1,
            "mean_reward": float(np.mean(rewards)),
            "group_spread": float(np.mean(spreads)),
            "parse_failure_rate": float(np.mean(failures)),
            "answer_tokens": float(np.mean(lengths)),
            "kl": float(np.mean(kls)) if kls else 0.0,
            "loss": float(np.mean(losses)) if losses else 0.0,
        }

    def _batch(self) -> list[Example]:
        """The examples of the current step: a seeded permutation per pass (so a resumed
        run continues the same order)."""
        n, k = len(self.train), self.options.examples_per_step
        out = []
        for j in range(self.step * k, self.step * k + k):
            order = np.random.default_rng([self.options.seed, j // n]).permutation(n)
            out.append(self.train[int(order[j % n])])
        return out

    def _publish(self, after: dict[str, float] | None, stopped: str) -> Path:
        meta = {
            **self.meta,
            "step": self.step,
            "options": self.options.settings(),
            "heldout_iou_before": self.heldout_before,
            "heldout_iou_after": after["mean_iou"] if after else None,
            "stopped": stopped,
            "train_examples": len(self.train),
            "heldout_examples": len(self.heldout),
        }
        return publish_adapter(self.model, self.folder, self.step, meta)

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> GrpoResult:
        """Train (or resume) until ``steps``, the time budget or a cancel.

        Raises:
            JobCancelled: ``cancel`` was set (state saved and adapter published first).
            CheckpointError: The folder holds a run that does not match.
        """
        opts = self.options
        start = time.monotonic()
        resumed = self._resume()
        if resumed:
            self.callback("resuming", self.step / opts.steps, f"resuming after step {self.step}")
        else:
            self.callback("evaluating", 0.0, "held-out examples before training")
            before = self.evaluate(self.heldout)
            self.heldout_before = before["mean_iou"] if before else None
        stopped = "completed"
        while self.step < opts.steps:
            if self.cancel is not None and self.cancel.is_set():
                stopped = "cancelled"
                break
            if opts.time_budget_s is not None and time.monotonic() - start > opts.time_budget_s:
                stopped = "time_budget"
                break
            metrics = self.train_step(self._batch())
            self.step += 1
            if opts.eval_every and self.step % opts.eval_every == 0 and self.step < opts.steps:
                ev = self.evaluate(self.heldout)
                metrics["heldout_iou"] = ev["mean_iou"] if ev else None
            self.history.append(metrics)
            self.callback("training", self.step / opts.steps, step_line(metrics, opts.steps))
            if self.step % opts.save_every == 0:
                self._save()
        self.callback("evaluating", self.step / opts.steps, "held-out examples after training")
        after = self.evaluate(self.heldout)
        self._save()
        adapter = self._publish(after, stopped)
        result = GrpoResult(
            stopped, self.step, adapter, self.heldout_before,
            after["mean_iou"] if after else None, self.history,
        )  # fmt: skip
        self.callback("done", 1.0, None)
        if stopped == "cancelled":
            raise JobCancelled("GRPO training was cancelled; the adapter so far was saved.")
        return result


def step_line(m: dict[str, Any], steps: int) -> str:
    """``step 3/200: reward 0.412 (spread 0.120), parse failures 6%, 212 tokens``."""
    line = (
        f"step {m['step']}/{steps}: reward {m['mean_reward']:.3f} "
        f"(spread {m['group_spread']:.3f}), parse failures {100 * m['parse_failure_rate']:.0f}%, "
        f"{m['answer_tokens']:.0f} tokens"
    )
    if m.get("heldout_iou") is not None:
        line += f", held-out IoU {m['heldout_iou']:.3f}"
    return line
