"""Segmenters registered only for tests (via RS_REASONER_SEGMENTER_MODULES).

Not a test module itself: ``tests/conftest.py`` names it in that variable.

They are deterministic colour rules, so tests know exactly which pixels must come back:
``bright`` = mean of RGB >= 128, ``red``/``green``/``blue`` = that channel >= 128 and the
other two < 128. ``test-slow`` sleeps per tile (for cancel tests); ``test-reasoning``
sees the whole extent and returns the largest bright blob plus a reasoning text.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters.base import SegmentationQuery, Segmenter, TileResult
from rs_reasoner.segmenters.registry import ModelSpec, register

RULES = ("bright", "red", "green", "blue")


def colour_mask(image: np.ndarray, rule: str) -> np.ndarray:
    """Pixels of ``image`` (H, W, 3 uint8) that match a colour rule."""
    high = image >= 128
    if rule == "bright":
        return image.astype(np.float32).mean(axis=2) >= 128
    idx = {"red": 0, "green": 1, "blue": 2}[rule]
    others = [i for i in range(3) if i != idx]
    return high[..., idx] & ~high[..., others[0]] & ~high[..., others[1]]


class ColourSegmenter(Segmenter):
    """Labels pixels by colour rules named in the query's classes."""

    def __init__(self, device: str = "cpu", delay: float = 0.0) -> None:
        self.device = device
        self.delay = delay
        self.calls = 0

    def segment(
        self, image: np.ndarray, valid: np.ndarray, query: SegmentationQuery
    ) -> TileResult:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        labels = np.zeros(image.shape[:2], np.int32)
        names: list[str] = []
        for k, synonyms in enumerate(query.classes, start=1):
            rule = next((s for s in synonyms if s in RULES), None)
            if rule is None:
                raise InvalidRequestError(
                    f"test segmenter knows only {', '.join(RULES)}; got {synonyms[0]!r}"
                )
            labels[(labels == 0) & colour_mask(image, rule) & valid] = k
            names.append(synonyms[0])
        scores = np.where(labels > 0, 0.9, 0.1).astype(np.float32)
        return TileResult(labels=labels, scores=scores, class_names=names)


class WholeExtentSegmenter(Segmenter):
    """Reasoning stand-in: picks the largest bright component of the whole extent."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def segment(
        self, image: np.ndarray, valid: np.ndarray, query: SegmentationQuery
    ) -> TileResult:
        comp, n = ndimage.label(colour_mask(image, "bright") & valid)
        labels = np.zeros(image.shape[:2], np.int32)
        if n:
            sizes = np.bincount(comp.ravel())[1:]
            labels[comp == int(np.argmax(sizes)) + 1] = 1
        scores = np.where(labels > 0, 0.8, 0.2).astype(np.float32)
        text = f"The largest bright object answers '{query.text}'."
        return TileResult(labels=labels, scores=scores, class_names=[query.text], text=text)


register(
    ModelSpec(
        name="test-colour",
        modes=(Mode.open_vocabulary,),
        description="Test only: colour rules (bright, red, green, blue).",
        factory=ColourSegmenter,
        default_for=(Mode.open_vocabulary,),
        priority=100,
    )
)
register(
    ModelSpec(
        name="test-slow",
        modes=(Mode.open_vocabulary,),
        description="Test only: colour rules, 0.5 s per tile.",
        factory=lambda device="cpu": ColourSegmenter(device=device, delay=0.5),
    )
)
register(
    ModelSpec(
        name="test-reasoning",
        modes=(Mode.reasoning,),
        description="Test only: whole-extent stand-in for a reasoning model.",
        factory=WholeExtentSegmenter,
        default_for=(Mode.reasoning,),
        priority=100,
        whole_extent=True,
    )
)


class GreedySegmenter(ColourSegmenter):
    """Ignores ``valid``: proves the pipeline itself keeps polygons off NoData."""

    def segment(
        self, image: np.ndarray, valid: np.ndarray, query: SegmentationQuery
    ) -> TileResult:
        return super().segment(image, np.ones_like(valid), query)


register(
    ModelSpec(
        name="test-greedy",
        modes=(Mode.open_vocabulary,),
        description="Test only: colour rules that ignore the NoData mask.",
        factory=GreedySegmenter,
    )
)

class UnsureClosedSetSegmenter(ColourSegmenter):
    """A closed-set model (like one trained here) that is never sure: every label scores 0.3,
    so only the closed-set rule (label every valid pixel unless a threshold is asked for)
    keeps its labels."""

    def segment(
        self, image: np.ndarray, valid: np.ndarray, query: SegmentationQuery
    ) -> TileResult:
        result = super().segment(image, valid, query)
        result.scores[result.labels > 0] = 0.3
        return result


register(
    ModelSpec(
        name="test-closed-set",
        modes=(Mode.open_vocabulary,),
        description="Test only: a closed-set model (classes bright, green) scoring 0.3.",
        factory=UnsureClosedSetSegmenter,
        classes=("bright", "green"),
    )
)

# -- a real open-vocabulary segmenter on a tiny, randomly initialised open_clip CLIP --------
#: Same shape as tests/backend/open_vocab/conftest.py: 2 vision layers of width 64.
TINY_CLIP = "rsr-test-tiny-vit"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny_clip_segmenter(device: str = "cpu") -> Segmenter:
    """The production ClipOpenVocabSegmenter around a random tiny CLIP (no weights exist here).

    No background names, so every valid pixel gets one of the user's classes.
    """
    import json
    import tempfile
    from pathlib import Path

    import open_clip
    import torch

    from rs_reasoner.segmenters.open_vocab.training_free import ClipOpenVocabSegmenter

    cfg = Path(tempfile.mkdtemp(prefix="rsr-clip-cfg-")) / f"{TINY_CLIP}.json"
    cfg.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP, pretrained=None).eval()
    return ClipOpenVocabSegmenter(
        model, open_clip.get_tokenizer(TINY_CLIP), device=device, model_id="test-clip-tiny",
        background=(),
    )


register(
    ModelSpec(
        name="test-clip-tiny",
        modes=(Mode.open_vocabulary,),
        description="Test only: the CLIP open-vocabulary segmenter on a random tiny CLIP.",
        factory=tiny_clip_segmenter,
    )
)


# -- the real reasoning segmenter on a tiny random Qwen2.5-VL and a random SAM 2.1 ------------
#: What the canned answer says; the random model's own text comes first.
TINY_REASONING_THINK = "The bright patch in the upper left is the target."
#: An answer in the Think2Seg-RS format (840 x 840 model frame) appended to the random text,
#: so the parse → SAM → polygons path has a prompt (random weights never write one).
TINY_REASONING_ANSWER = (
    f"<think> {TINY_REASONING_THINK} </think>\n<answer>```json["
    '{"bbox_2d": [60, 80, 420, 400], "positive_points": [[200, 200], [300, 260]]}'
    "]```</answer>"
)


class CannedAnswerPrompter:
    """Runs the real prompter (tokens really generated) and appends a fixed answer."""

    def __init__(self, prompter: Segmenter | object) -> None:
        self.inner = prompter

    def generate(self, image: np.ndarray, query: str):  # noqa: ANN201 - PrompterOutput
        from dataclasses import replace

        out = self.inner.generate(image, query)  # type: ignore[attr-defined]
        return replace(out, text=out.text + TINY_REASONING_ANSWER)

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


def tiny_reasoning_segmenter(device: str = "cpu") -> Segmenter:
    """The production ReasoningSegmenter around random tiny models (no weights exist here)."""
    import torch

    from rs_reasoner.segmenters.reasoning.prompter import QwenPrompter
    from rs_reasoner.segmenters.reasoning.sam import SamRefiner
    from rs_reasoner.segmenters.reasoning.segmenter import ReasoningSegmenter
    from rs_reasoner.segmenters.reasoning.tiny_qwen import tiny_processor, tiny_qwen

    processor = tiny_processor()
    torch.manual_seed(0)
    prompter = QwenPrompter.from_components(tiny_qwen(processor), processor, max_new_tokens=4)
    sam = SamRefiner.random_init("tiny", device=device, image_size=256)
    return ReasoningSegmenter(
        CannedAnswerPrompter(prompter), sam, device=device,  # type: ignore[arg-type]
    )


register(
    ModelSpec(
        name="test-think2seg-tiny",
        modes=(Mode.reasoning,),
        description="Test only: the reasoning segmenter on random tiny Qwen2.5-VL and SAM 2.1.",
        factory=tiny_reasoning_segmenter,
        whole_extent=True,
    )
)
