"""The prompter as a policy: the production prompt, sampled groups, token log-probabilities.

The prompt is built by the serving prompter's own :meth:`QwenPrompter.prepare` (the
Think2Seg-RS instruction, the chat template, the image pinned to the 840² frame), so the
policy is trained on exactly what it will be served.

Speed: the vision tower is frozen (LoRA adapts the language model's projections only, as
the published adapter config does), so each example's image features are computed once
(:meth:`Policy.encode`) and passed to every later forward through ``mm_encoder_outputs``;
a group is sampled from one prefill whose KV cache is copied to the group (the prompt is
the same for all members), with explicit multimodal RoPE positions. Decoding: temperature
sampling for rollouts, greedy (the serving setting) for evaluation; Qwen's vision tokens
are never sampled (a sampled image token would not match any image feature).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rs_reasoner.segmenters.reasoning.prompter import QwenPrompter

#: Special tokens a completion must never contain.
_VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")


@dataclass
class Prompt:
    """One example's prompt, ready for repeated use.

    Attributes:
        input_ids: (1, P) prompt tokens.
        mm_token_type_ids: (1, P) which tokens are image tokens.
        image_grid_thw: (1, 3) the image's patch grid.
        image: The frozen vision tower's output for the image (``mm_encoder_outputs``).
        positions: (3, 1, P) multimodal RoPE positions of the prompt.
        delta: Position offset of text tokens after the prompt (RoPE delta).
    """

    input_ids: torch.Tensor
    mm_token_type_ids: torch.Tensor
    image_grid_thw: torch.Tensor
    image: Any
    positions: torch.Tensor
    delta: torch.Tensor

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])


@dataclass
class Completions:
    """A group of completions of one prompt.

    Attributes:
        tokens: (G, T) generated tokens (padding after the end token).
        mask: (G, T) 1 for tokens that belong to the completion (end token included).
        texts: Decoded completions (special tokens removed).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    texts: list[str]

    @property
    def lengths(self) -> list[int]:
        return [int(n) for n in self.mask.sum(dim=1)]


class Policy:
    """A Qwen2.5-VL (usually a PEFT model) with its processor, as the GRPO loop uses it.

    Args:
        model: ``Qwen2_5_VLForConditionalGeneration``, possibly wrapped by PEFT.
        processor: Its processor (the serving prompter's).
    """

    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model
        self.processor = processor
        self._prompter = QwenPrompter(model, processor, fast_decode=False)
        tok = processor.tokenizer
        self.eos_ids = _eos_ids(model)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else min(self.eos_ids)
        ids = [tok.convert_tokens_to_ids(t) for t in _VISION_TOKENS]
        self.banned = torch.tensor([i for i in ids if isinstance(i, int) and i >= 0])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def _vlm(self) -> Any:
        """The inner ``Qwen2_5_VLModel`` (under the PEFT wrapper, if any)."""
        model = self.model
        while not hasattr(model, "get_rope_index"):
            model = model.get_base_model() if hasattr(model, "get_base_model") else model.model
        return model

    @torch.no_grad()
    def encode(self, image: np.ndarray, query: str) -> Prompt:
        """The prompt of one example: tokens, image features (computed once), positions.

        Args:
            image: (840, 840, 3) uint8 overview.
            query: The query.
        """
        inputs = self._prompter.prepare(image, query)
        vlm = self._vlm
        features = vlm.get_image_features(
            inputs["pixel_values"], inputs["image_grid_thw"], return_dict=True
        )
        positions, delta = vlm.get_rope_index(
            inputs["input_ids"],
            mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs["image_grid_thw"],
            attention_mask=inputs["attention_mask"],
        )
        return Prompt(
            input_ids=inputs["input_ids"],
            mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs["image_grid_thw"],
            image=features,
            positions=positions,
            delta=delta,
        )

    def _image_batch(self, prompt: Prompt, n: int) -> dict[str, Any]:
        features = type(prompt.image)(pooler_output=tuple(prompt.image.pooler_output) * n)
        return {"image": features}

    @torch.no_grad()
    def generate(
        self,
        prompt: Prompt,
        n: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        greedy: bool = False,
        generator: torch.Generator | None = None,
    ) -> Completions:
        """``n`` completions of a prompt from one prefill.

        Args:
            prompt: From :meth:`encode`.
            n: Group size.
            max_new_tokens: Completion budget.
            temperature: Sampling temperature (ignored when greedy).
            greedy: Arg-max decoding (the serving setting).
            generator: Random source of the sampling (CPU).
        """
        from transformers import DynamicCache

        model, dev = self.model, self.device
        cache = DynamicCache()
        out = model(
            input_ids=prompt.input_ids.to(dev),
            mm_token_type_ids=prompt.mm_token_type_ids.to(dev),
            image_grid_thw=prompt.image_grid_thw.to(dev),
            mm_encoder_outputs=self._image_batch(prompt, 1),
            position_ids=prompt.positions.to(dev),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1].float().expand(n, -1)
        tokens = torch.full((n, max_new_tokens), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, max_new_tokens), dtype=torch.long)
        alive = torch.ones(n, dtype=torch.bool)
        eos = torch.tensor(sorted(self.eos_ids))
        start = prompt.length + int(prompt.delta.reshape(-1)[0])
        for t in range(max_new_tokens):
            logits = logits.clone()
            if len(self.banned):
                logits[:, self.banned.to(logits.device)] = -float("inf")
            if greedy:
                nxt = logits.argmax(dim=-1).cpu()
            else:
                probs = torch.softmax(logits / max(temperature, 1e-5), dim=-1).cpu()
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            nxt = torch.where(alive, nxt, torch.full_like(nxt, self.pad_id))
            tokens[:, t] = nxt
            mask[:, t] = alive.long()
            alive &= ~torch.isin(nxt, eos)
            if not alive.any() or t == max_new_tokens - 1:
                break
            pos = torch.full((3, n, 1), start + t, dtype=torch.long, device=dev)
            out = model(
                input_ids=nxt[:, None].to(dev),
                position_ids=pos,
                past_key_values=cache,
                use_cache=True,
            )
            logits = out.logits[:, -1].float()
        width = max(1, int(mask.sum(dim=1).max()))
        tokens, mask = tokens[:, :width], mask[:, :width]
        texts = self.processor.batch_decode(
            [row[m.bool()] for row, m in zip(tokens, mask, strict=True)],
            skip_special_tokens=True,
            clean_up_tokenization_spaces=False,
        )
        return Completions(tokens=tokens, mask=mask, texts=list(texts))

    def token_logprobs(self, prompt: Prompt, completions: Completions) -> torch.Tensor:
        """Log-probability of each completion token under the current model (with grad).

        The prompt (the same for the whole group) is run once and its KV cache, still
        part of the autograd graph, is shared by the group's completions: exact
        gradients at 1/G of the prompt's cost. With gradient checkpointing (CUDA) the
        model keeps no cache, so the prompt is run with each completion
        (``use_cache=False``).

        Returns:
            (G, T) log-probabilities (meaningless where ``completions.mask`` is 0).
        """
        if getattr(self.model, "is_gradient_checkpointing", False) and self.model.training:
            return self._token_logprobs_full(prompt, completions)
        from transformers import DynamicCache

        dev = self.device
        n, width = completions.tokens.shape
        cache = DynamicCache()
        head = self.model(
            input_ids=prompt.input_ids.to(dev),
            mm_token_type_ids=prompt.mm_token_type_ids.to(dev),
            image_grid_thw=prompt.image_grid_thw.to(dev),
            mm_encoder_outputs=self._image_batch(prompt, 1),
            position_ids=prompt.positions.to(dev),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache.batch_repeat_interleave(n)
        start = prompt.length + int(prompt.delta.reshape(-1)[0])
        pos = (start + torch.arange(width - 1)).view(1, 1, -1).expand(3, n, -1).to(dev)
        logits = head.logits.float().expand(n, -1, -1)
        if width > 1:
            tail = self.model(
                input_ids=completions.tokens[:, :-1].to(dev),
                position_ids=pos,
                past_key_values=cache,
                use_cache=True,
            )
            logits = torch.cat([logits, tail.logits.float()], dim=1)
        logp = torch.log_softmax(logits, dim=-1)
        return logp.gather(2, completions.tokens.to(dev)[..., None]).squeeze(2)

    def _token_logprobs_full(self, prompt: Prompt, completions: Completions) -> torch.Tensor:
        dev = self.device
        n, width = completions.tokens.shape
        ids = torch.cat([prompt.input_ids.expand(n, -1), completions.tokens], dim=1).to(dev)
        types = torch.cat(
            [prompt.mm_token_type_ids.expand(n, -1), torch.zeros_like(completions.tokens)], dim=1
        ).to(dev)
        text_pos = prompt.length + int(prompt.delta.reshape(-1)[0]) + torch.arange(width)
        positions = torch.cat(
            [prompt.positions.expand(-1, n, -1), text_pos.view(1, 1, -1).expand(3, n, -1)],
            dim=2,
        ).to(dev)
        out = self.model(
            input_ids=ids,
            mm_token_type_ids=types,
            image_grid_thw=prompt.image_grid_thw.expand(n, -1).to(dev),
            mm_encoder_outputs=self._image_batch(prompt, n),
            position_ids=positions,
            use_cache=False,
            logits_to_keep=width + 1,
        )
        logits = out.logits[:, :-1].float()  # position i predicts token i + 1
        logp = torch.log_softmax(logits, dim=-1)
        return logp.gather(2, completions.tokens.to(dev)[..., None]).squeeze(2)


def _eos_ids(model: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [eos])
