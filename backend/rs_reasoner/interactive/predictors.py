"""Where click-to-segment gets its SAM predictors: one SAM 2.1 model, loaded on the first
session, and a fresh ``SAM2ImagePredictor`` over it per session (a predictor holds one
image's embedding; the model's weights are shared).

``RS_REASONER_INTERACTIVE_PREDICTOR`` may name another source as ``module:callable``
(called with ``device=``, returning an object with ``new()``), e.g. a random-weight SAM
for tests and benchmarks.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from typing import Any, Protocol

from rs_reasoner.errors import MissingWeightsError, RsReasonerError
from rs_reasoner.segmenters.hub_weights import DEFAULT_SAM_VARIANT, sam_weights
from rs_reasoner.weights import resolve

ENV_PREDICTOR = "RS_REASONER_INTERACTIVE_PREDICTOR"
#: The name the model manager lists click-to-segment's weights under.
CLICK_MODEL = "sam2.1-click"


class PredictorSource(Protocol):
    """Gives each new session its predictor."""

    def new(self) -> Any: ...


class SamPredictors:
    """SAM 2.1 (``variant``) on ``device``, loaded once on the first :meth:`new`.

    Args:
        device: Torch device.
        variant: SAM 2.1 size (the reasoning models' default, so their weights serve).
        build: Builds the model (default: the cached checkpoint; tests give random
            weights).
    """

    def __init__(self, device: str = "cpu", variant: str = DEFAULT_SAM_VARIANT,
                 build: Callable[[], Any] | None = None) -> None:
        self.device = device
        self.variant = variant
        self._build = build or self._from_checkpoint
        self._model: Any = None
        self._lock = threading.Lock()

    def _from_checkpoint(self) -> Any:
        from rs_reasoner.segmenters.reasoning.sam import build_sam2_model

        spec = sam_weights(self.variant)
        try:
            path = resolve(spec, CLICK_MODEL)
        except MissingWeightsError:
            raise MissingWeightsError(
                f"Click-to-segment needs the SAM 2.1 weights {spec.repo_id}/{spec.filename}, "
                "which are not in the Hugging Face cache.",
                f"Download '{CLICK_MODEL}' in RS Reasoner ▸ Models, or set {spec.env_var} to "
                "a local copy of the file.",
            ) from None
        return build_sam2_model(self.variant, str(path), self.device)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def new(self) -> Any:
        """A predictor over the shared model (loading it first if needed)."""
        from rs_reasoner.segmenters.reasoning.sam import SamRefiner

        with self._lock:
            if self._model is None:
                self._model = self._build()
        return SamRefiner.from_model(self._model).predictor


def default_source(device: str) -> PredictorSource:
    """SAM 2.1 from the cache, or what ``RS_REASONER_INTERACTIVE_PREDICTOR`` names."""
    named = os.environ.get(ENV_PREDICTOR, "").strip()
    if not named:
        return SamPredictors(device)
    module, _, attr = named.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)(device=device)
    except Exception as exc:
        raise RsReasonerError(
            f"Cannot load the predictor source {named!r} named in {ENV_PREDICTOR}: "
            f"{type(exc).__name__}: {exc}",
            f"Fix {ENV_PREDICTOR} (module:callable) or unset it.",
        ) from None
