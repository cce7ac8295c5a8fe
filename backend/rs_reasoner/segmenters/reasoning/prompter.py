"""The LVLM prompter: Qwen2.5-VL reads the 840² overview and the query, writes the answer.

Weights are Hub snapshots resolved through :mod:`rs_reasoner.weights` (local files only
during a job). On CUDA the model runs in bf16 with SDPA (FlashAttention 2 when the
``flash_attn`` package is installed) and, by default, a static KV cache, which lets
transformers compile the one-token decode step with ``torch.compile`` so decode is not
bound by kernel-launch overhead; if that path fails, generation falls back to the dynamic
cache once and stays there. Decoding is greedy (the paper's evaluation setting).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from rs_reasoner.segmenters.hub_weights import DEFAULT_PROMPTER, PROMPTER_WEIGHTS
from rs_reasoner.segmenters.reasoning.template import MODEL_SIZE, build_messages
from rs_reasoner.weights import WeightSpec, resolve

log = logging.getLogger(__name__)

#: Generation budget; training used 1024 completion tokens, typical answers are 100-400.
DEFAULT_MAX_NEW_TOKENS = 1024


@dataclass
class GenerationStats:
    """Timings of one generation.

    Attributes:
        prompt_tokens: Tokens in the prompt (text + image tokens).
        new_tokens: Tokens generated.
        preprocess_s: Image and text preprocessing (CPU) and transfer.
        prefill_s: From ``generate`` start to the first new token (vision encoder,
            prompt prefill, first token).
        decode_ms_per_token: Mean time per token after the first.
        total_s: Whole call.
        hit_budget: Generation stopped at ``max_new_tokens`` (answer may be truncated).
    """

    prompt_tokens: int = 0
    new_tokens: int = 0
    preprocess_s: float = 0.0
    prefill_s: float = 0.0
    decode_ms_per_token: float = 0.0
    total_s: float = 0.0
    hit_budget: bool = False


@dataclass
class PrompterOutput:
    """The raw answer and how long it took."""

    text: str
    stats: GenerationStats


class Prompter(Protocol):
    """What the segmenter needs from a prompter (``QwenPrompter`` or a test stand-in)."""

    def generate(self, image: np.ndarray, query: str) -> PrompterOutput:
        """Answer the instruction for an 840² overview and a query."""
        ...

    def close(self) -> None:
        """Release the model."""
        ...


class _TokenClock:
    """A generate() streamer that timestamps the first and last new token.

    ``generate`` hands the streamer each token after moving it to the CPU, which waits
    for the GPU, so the timestamps are real completion times.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.first: float | None = None
        self.last: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            return  # the prompt
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now

    def end(self) -> None:
        pass


def _attn_implementation(device: str) -> str:
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


class QwenPrompter:
    """Qwen2.5-VL answering the Think2Seg-RS instruction for one image and query.

    Args:
        model: A ``Qwen2_5_VLForConditionalGeneration`` in eval mode.
        processor: Its ``AutoProcessor`` (tokenizer with a chat template + image processor).
        max_new_tokens: Generation budget.
        fast_decode: Static KV cache (compiled decode) — default on for CUDA.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        fast_decode: bool | None = None,
    ) -> None:
        self.model = model
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        self.fast_decode = self.device.type == "cuda" if fast_decode is None else fast_decode

    @classmethod
    def from_components(cls, model: Any, processor: Any, **kwargs: Any) -> QwenPrompter:
        """Wrap an already built model and processor (tests, custom loading).

        Args:
            model: A ``Qwen2_5_VLForConditionalGeneration``.
            processor: Its processor.
            **kwargs: Constructor options.
        """
        return cls(model.eval(), processor, **kwargs)

    @classmethod
    def load(
        cls,
        weights: str | WeightSpec = DEFAULT_PROMPTER,
        device: str = "cpu",
        model_name: str = "think2seg-rs",
        allow_download: bool = False,
        **kwargs: Any,
    ) -> QwenPrompter:
        """Load a prompter from its Hub snapshot in the local cache.

        Args:
            weights: A key of ``PROMPTER_WEIGHTS`` or a weight spec.
            device: Torch device.
            model_name: Segmenter name, for the missing-weights message.
            allow_download: Fetch from the Hub if not cached.
            **kwargs: Constructor options.

        Raises:
            MissingWeightsError: The snapshot is not available.
        """
        path = resolve(prompter_weights(weights), model_name, allow_download=allow_download)
        return cls.from_path(path, device=device, **kwargs)

    @classmethod
    def from_path(cls, path: str | Path, device: str = "cpu", **kwargs: Any) -> QwenPrompter:
        """Load a prompter from a local snapshot folder.

        Args:
            path: Folder with config, safetensors, tokenizer and processor files.
            device: Torch device.
            **kwargs: Constructor options.
        """
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        cuda = device.startswith("cuda")
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            str(path),
            dtype=torch.bfloat16 if cuda else torch.float32,  # bf16 matmuls are slow on CPU
            attn_implementation=_attn_implementation(device),
            local_files_only=True,
        )
        processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
        return cls(model.to(device).eval(), processor, **kwargs)

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return next(self.model.parameters()).device

    def prepare(self, image: np.ndarray, query: str) -> Any:
        """Model inputs for one overview image and query.

        Args:
            image: (840, 840, 3) uint8 overview.
            query: The user's query.

        Returns:
            The processor's batch, on the model's device.
        """
        prompt = self.processor.apply_chat_template(
            build_messages(query), add_generation_prompt=True, tokenize=False
        )
        pixels = MODEL_SIZE * MODEL_SIZE
        inputs = self.processor(
            text=[prompt],
            images=[Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))],
            # Pin the vision input to 840x840 whatever the snapshot's pixel limits are:
            # the answer's coordinates are in the pixel space the model saw.
            images_kwargs={"size": {"shortest_edge": pixels, "longest_edge": pixels}},
            return_tensors="pt",
        )
        grid = inputs.get("image_grid_thw")
        patch = getattr(getattr(self.processor, "image_processor", None), "patch_size", 14)
        if grid is not None and tuple(int(v) * patch for v in grid[0][1:]) != image.shape[:2]:
            log.warning("prompter saw a %s image, not %s", grid[0].tolist(), image.shape[:2])
        return inputs.to(self.device)

    def generate(self, image: np.ndarray, query: str) -> PrompterOutput:
        """Answer the instruction for an overview image.

        Args:
            image: (840, 840, 3) uint8 overview.
            query: The user's query.

        Returns:
            The decoded answer (special tokens removed) and timings.
        """
        start = time.perf_counter()
        inputs = self.prepare(image, query)
        stats = GenerationStats(prompt_tokens=int(inputs["input_ids"].shape[1]))
        stats.preprocess_s = time.perf_counter() - start
        output, clock, gen_start = self._generate(inputs)
        new = output[0, stats.prompt_tokens :]
        stats.new_tokens = int(new.shape[0])
        end = time.perf_counter()
        first = clock.first if clock.first is not None else end
        stats.prefill_s = first - gen_start
        if stats.new_tokens > 1 and clock.last is not None:
            stats.decode_ms_per_token = 1000 * (clock.last - first) / (stats.new_tokens - 1)
        stats.total_s = end - start
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        stats.hit_budget = stats.new_tokens >= self.max_new_tokens and (
            int(new[-1]) not in eos_ids
        )
        text = self.processor.batch_decode(
            new[None], skip_special_tokens=True, clean_up_tokenization_spaces=False
        )[0]
        return PrompterOutput(text=text, stats=stats)

    def generation_config(self) -> Any:
        """The project's generation settings, independent of the snapshot's.

        Only the token ids come from the snapshot. Everything else is set here: a
        snapshot's ``generation_config.json`` may say anything (Think2Seg-RS-3B's, saved
        from a gradient-checkpointed GRPO run, has ``use_cache: false``, which re-runs the
        whole ~1,700-token prompt for every new token, and ``do_sample: true``), and
        transformers fills every unset generate() argument from it.
        """
        from transformers import GenerationConfig

        snapshot = self.model.generation_config
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id
        # Plain greedy decoding with the KV cache, as the reference evaluated.
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            num_beams=1,
            repetition_penalty=1.0,
            temperature=1.0,
            top_p=1.0,
            top_k=50,
            use_cache=True,
            pad_token_id=pad,
            bos_token_id=snapshot.bos_token_id,
            eos_token_id=snapshot.eos_token_id,
        )

    def _generate(self, inputs: Any) -> tuple[torch.Tensor, _TokenClock, float]:
        config = self.generation_config()
        if self.fast_decode:
            try:
                static = copy.deepcopy(config)
                static.cache_implementation = "static"
                return self._run(inputs, static)
            except Exception as exc:  # noqa: BLE001 - any compile/cache failure: fall back
                log.warning("static-cache decode failed (%s); using the dynamic cache", exc)
                self.fast_decode = False
        return self._run(inputs, config)

    def _run(self, inputs: Any, config: Any) -> tuple[torch.Tensor, _TokenClock, float]:
        clock = _TokenClock()
        gen_start = time.perf_counter()
        # The snapshot's config is swapped out for the call: generate() fills unset fields
        # of the passed config from the model's own, which must not be the snapshot's.
        snapshot, self.model.generation_config = self.model.generation_config, config
        try:
            with torch.inference_mode():
                output = self.model.generate(**inputs, streamer=clock, generation_config=config)
        finally:
            self.model.generation_config = snapshot
        return output, clock, gen_start

    def close(self) -> None:
        """Drop the model (frees GPU memory once nothing else holds it)."""
        self.model = None


def prompter_weights(weights: str | WeightSpec) -> WeightSpec:
    """The weight spec for a prompter name (or the spec itself).

    Raises:
        ValueError: Unknown name, with the known ones.
    """
    if isinstance(weights, WeightSpec):
        return weights
    try:
        return PROMPTER_WEIGHTS[weights]
    except KeyError:
        raise ValueError(
            f"unknown prompter {weights!r}; choose one of {', '.join(PROMPTER_WEIGHTS)}"
        ) from None
