"""VLM-PP verifiers: who gives the second opinion on the teacher's unsure pixels.

A verifier implements :class:`~rs_reasoner_training.purify.Verifier`: ``probs(images,
class_names)`` -> (B, C, H, W) probabilities over the classes being trained. Choices
(:func:`plan_verifier`):

* ``"none"`` / ``False`` / ``None``: plain teacher-student.
* ``"clip-openvocab"`` or any registered open-vocabulary model name with class
  probabilities (``"remoteclip-openvocab"``...): the frozen segmenter prompted with
  the class names (:class:`SegmenterVerifier`). SemiEarth's verifier is a VLM; the
  training-free CLIP segmenter is the open-vocabulary VLM this product ships.
* ``"checkpoint:<path>"`` (or a path to a ``.pt``): a model trained here, frozen
  (:class:`~rs_reasoner_training.purify.ModelVerifier`).
* ``"supervised"``: two-stage training; stage 1 trains the same model on the labelled
  tiles only and its best checkpoint becomes the verifier of stage 2 (done by
  :func:`rs_reasoner_training.api.train_model`).
* ``True`` / ``"default"``: ``clip-openvocab`` when its weights are on this machine,
  otherwise ``"supervised"``.
* ``"auto"``: ``clip-openvocab`` when its weights are on this machine, otherwise none.
* Any object with a ``probs`` method.

Model weights are never downloaded here: a named model whose weights are missing is a
user error with the command that fetches them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from rs_reasoner.device import resolve_device
from rs_reasoner.errors import InvalidRequestError, MissingWeightsError
from rs_reasoner_training.purify import ModelVerifier, Verifier

#: The open-vocabulary model used as verifier by default (when its weights are local).
DEFAULT_VLM = "clip-openvocab"

VerifierChoice = bool | str | os.PathLike | Verifier | None
PlanKind = Literal["none", "segmenter", "checkpoint", "supervised", "custom"]


class ProbabilitySegmenter(Protocol):
    """An open-vocabulary segmenter with background-first class probabilities (the
    backend's ``ClipOpenVocabSegmenter``)."""

    def predict_probabilities(
        self, image: np.ndarray, valid: np.ndarray, classes: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """(1 + C, H, W) float32: background, then each class; sums to 1."""
        ...


class SegmenterVerifier:
    """An open-vocabulary segmenter, frozen and prompted with the class names, as verifier.

    The segmenter's background-first distribution (background, class 1..C) is reduced to
    the C trained classes and renormalised, i.e. the distribution over the user's classes
    given that the pixel is one of them (for the CLIP segmenter this equals its softmax
    over the class prompts alone). Where the classes together get no probability mass the
    result is 0 everywhere, which VLM-PP reads as "no opinion".

    Args:
        segmenter: Has ``predict_probabilities(image, valid, classes)``.
        prompts: Optional synonyms per class name (``{"Land": ["bare land", "sand"]}``);
            default each name alone.
        name: What to call it in logs and reports.
    """

    def __init__(
        self,
        segmenter: ProbabilitySegmenter,
        prompts: Mapping[str, Sequence[str]] | None = None,
        name: str = "open-vocabulary segmenter",
    ) -> None:
        if not hasattr(segmenter, "predict_probabilities"):
            raise InvalidRequestError(
                f"{name} gives no class probabilities and cannot verify pseudo-labels.",
                f"Use '{DEFAULT_VLM}', a checkpoint, or no verifier.",
            )
        self.segmenter = segmenter
        self.prompts = {str(k): [str(s) for s in v] for k, v in (prompts or {}).items()}
        self.name = name

    @torch.no_grad()
    def probs(self, images: torch.Tensor, class_names: Sequence[str]) -> torch.Tensor:
        """Class probabilities (B, C, H, W) on ``images``' device (see :class:`Verifier`).

        Args:
            images: (B, 3, H, W) float in [0, 1].
            class_names: The classes being trained.
        """
        classes = [self.prompts.get(c) or [c] for c in class_names]
        rgb = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        rgb = rgb.permute(0, 2, 3, 1).cpu().numpy()
        valid = np.ones(rgb.shape[1:3], dtype=bool)
        out = []
        for image in rgb:
            p = np.asarray(self.segmenter.predict_probabilities(image, valid, classes))
            if p.shape != (len(classes) + 1, *valid.shape):
                raise ValueError(f"{self.name} returned probabilities of shape {p.shape}")
            cls = torch.from_numpy(np.ascontiguousarray(p[1:], dtype=np.float32))
            out.append(cls / cls.sum(0, keepdim=True).clamp(min=1e-6))
        return torch.stack(out).to(images.device)


def weights_available(model_name: str) -> bool:
    """Whether a registered model's weights are all on this machine (no download)."""
    from rs_reasoner.segmenters.registry import get_spec
    from rs_reasoner.weights import is_available

    return all(is_available(w) for w in get_spec(model_name).weights)


def segmenter_verifier(
    model_name: str, device: str = "cpu", prompts: Mapping[str, Sequence[str]] | None = None
) -> SegmenterVerifier:
    """A registered open-vocabulary model as verifier.

    Args:
        model_name: Registry name (``rs-reasoner models list``), e.g. ``clip-openvocab``.
        device: Torch device of the segmenter.
        prompts: Synonyms per class name.

    Returns:
        The verifier.

    Raises:
        UnknownModelError: No such model.
        InvalidRequestError: Not an open-vocabulary model.
        MissingWeightsError: Its weights are not on this machine.
    """
    from rs_reasoner.schemas import Mode
    from rs_reasoner.segmenters.registry import create, get_spec

    spec = get_spec(model_name)
    if Mode.open_vocabulary not in spec.modes:
        raise InvalidRequestError(
            f"Model '{model_name}' is not an open-vocabulary model and cannot be prompted "
            "with class names.",
            f"Use '{DEFAULT_VLM}' or another open-vocabulary model as verifier.",
        )
    segmenter = create(spec, device=device)
    return SegmenterVerifier(segmenter, prompts, name=model_name)


@dataclass
class VerifierPlan:
    """What :func:`plan_verifier` decided.

    Attributes:
        kind: ``"none"``, ``"segmenter"``, ``"checkpoint"``, ``"supervised"`` (train
            stage 1 first) or ``"custom"``.
        description: One line for progress messages and reports.
        verifier: The ready verifier (None for ``"none"`` and ``"supervised"``).
    """

    kind: PlanKind
    description: str
    verifier: Verifier | None = None


def _checkpoint_plan(path: str | os.PathLike[str], device: str) -> VerifierPlan:
    from rs_reasoner.models.checkpoint import load_trained_model

    model, names, meta = load_trained_model(path, map_location=resolve_device(device))
    arch = (meta.get("model_spec") or {}).get("arch", "model")
    return VerifierPlan(
        "checkpoint", f"frozen {arch} from {path}", ModelVerifier(model, names)
    )


def plan_verifier(
    choice: VerifierChoice,
    device: str = "cpu",
    prompts: Mapping[str, Sequence[str]] | None = None,
) -> VerifierPlan:
    """Turn a verifier choice (see the module docstring) into a verifier.

    Args:
        choice: The choice.
        device: Torch device for the verifier (``"auto"``: CUDA when available).
        prompts: Synonyms per class name for open-vocabulary verifiers.

    Returns:
        The plan.

    Raises:
        InvalidRequestError: An unusable choice (says what is accepted).
        UnknownModelError: An unknown model name.
        MissingWeightsError: A named model whose weights are not on this machine.
        CheckpointError: An unreadable checkpoint.
    """
    device = resolve_device(device)
    if choice is None or choice is False:
        return VerifierPlan("none", "none (plain teacher-student)")
    if hasattr(choice, "probs"):
        return VerifierPlan("custom", type(choice).__name__, choice)  # type: ignore[arg-type]
    if isinstance(choice, os.PathLike):
        return _checkpoint_plan(choice, device)
    if choice is True:
        choice = "default"
    if not isinstance(choice, str):
        raise InvalidRequestError(
            f"Verifier {choice!r} is not understood.",
            "Give none, auto, default, supervised, checkpoint:<path> or a model name.",
        )
    text = choice.strip()
    key = text.lower()
    if key in ("", "none", "off", "false"):
        return VerifierPlan("none", "none (plain teacher-student)")
    if key in ("auto", "default", "true", "on"):
        if weights_available(DEFAULT_VLM):
            plan = plan_verifier(DEFAULT_VLM, device, prompts)
            plan.description += " (its weights are on this machine)"
            return plan
        missing = f"{DEFAULT_VLM} weights are not on this machine"
        if key == "auto":
            return VerifierPlan(
                "none",
                f"none: {missing} (verifier=True or 'supervised' trains a supervised-only "
                "verifier first)",
            )
        return VerifierPlan(
            "supervised",
            f"the same model trained supervised-only on the labelled tiles first ({missing})",
        )
    if key == "supervised":
        return VerifierPlan(
            "supervised", "the same model trained supervised-only on the labelled tiles first"
        )
    if key.startswith("checkpoint:"):
        return _checkpoint_plan(text.split(":", 1)[1].strip(), device)
    if key.endswith((".pt", ".pth")) or Path(text).is_file():
        return _checkpoint_plan(text, device)
    if not weights_available(text):
        from rs_reasoner.segmenters.registry import get_spec

        names = ", ".join(w.repo_id for w in get_spec(text).weights)
        raise MissingWeightsError(
            f"The verifier model '{text}' needs weights that are not on this machine ({names}).",
            f"Run 'rs-reasoner models pull {text}' where there is internet access, or choose "
            "verifier 'supervised' (a model trained on your labels) or none.",
        )
    verifier = segmenter_verifier(text, device, prompts)
    return VerifierPlan("segmenter", f"{text} prompted with the class names (frozen)", verifier)

