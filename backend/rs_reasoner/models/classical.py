"""The classical learner as a model: gradient-boosted trees over per-pixel features.

A :class:`ClassicalModel` holds a LightGBM booster, the model's classes, the bands it
reads with their normalisation (:class:`~rs_reasoner.raster.band_stats.BandStats`) and
its feature recipe (:class:`~rs_reasoner.models.pixel_features.FeatureSpec`). It maps raw
band values to class probabilities; fitting lives in the training package.

**File.** One JSON document (:data:`FILE_NAME`): format tag, classes, bands and
normalisation, features, and the booster in LightGBM's own text format. Nothing is
pickled, so loading a model file runs no code from it; it is written atomically.

**Memory.** Features are computed for blocks of rows (with the context the
neighbourhood statistics need around them), so a large tile never holds every feature
of every pixel at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rs_reasoner.atomic import write_text_atomic
from rs_reasoner.models.pixel_features import FeatureSpec, feature_names, pixel_features
from rs_reasoner.raster.band_stats import BandStats
from rs_reasoner.trained_models import CLASSICAL_FILE

FILE_NAME = CLASSICAL_FILE
FORMAT = "rs-reasoner-classical/1"

#: Features of about this many pixels are held at once.
_BLOCK_PIXELS = 1 << 18


class ClassicalModel:
    """Per-pixel class probabilities from raw bands (see the module docstring).

    Args:
        booster: A trained ``lightgbm.Booster`` (binary for two classes, else multiclass).
        class_names: Class of each output channel.
        stats: Bands read and their normalisation.
        spec: Feature recipe.
        threads: LightGBM threads at prediction (None: LightGBM's default).
        info: Free-form facts kept in the file (training sizes, validation scores).
        class_bias: Log-probability added per class before renormalising (a prior shift
            chosen on validation pixels), or None.
    """

    def __init__(
        self,
        booster: Any,
        class_names: Sequence[str],
        stats: BandStats,
        spec: FeatureSpec,
        threads: int | None = None,
        info: Mapping[str, Any] | None = None,
        class_bias: Sequence[float] | None = None,
    ) -> None:
        if len(class_names) < 2:
            raise ValueError("a classifier needs at least two classes")
        if class_bias is not None and len(class_bias) != len(class_names):
            raise ValueError(f"{len(class_bias)} class biases for {len(class_names)} classes")
        self.class_bias = None if class_bias is None else np.asarray(class_bias, np.float64)
        self.booster = booster
        self.class_names = list(class_names)
        self.stats = stats
        self.spec = spec
        self.threads = threads
        self.info = dict(info or {})
        expected = len(feature_names(stats, spec))
        if booster.num_feature() != expected:
            raise ValueError(
                f"the booster reads {booster.num_feature()} features, the recipe makes {expected}"
            )

    @property
    def feature_names(self) -> list[str]:
        """Names of the feature channels."""
        return feature_names(self.stats, self.spec)

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities of (N, F) feature rows, as (N, K) float32."""
        if len(features) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        params = {} if self.threads is None else {"num_threads": int(self.threads)}
        p = np.asarray(self.booster.predict(features, **params), dtype=np.float32)
        if p.ndim == 1:  # binary objective: probability of class 1
            p = np.stack([1.0 - p, p], axis=1)
        if self.class_bias is not None:
            p = p * np.exp(self.class_bias).astype(np.float32)
            p /= np.maximum(p.sum(axis=1, keepdims=True), np.finfo(np.float32).tiny)
        return p

    def predict_proba(self, raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Class probabilities of every pixel.

        Args:
            raw: (B, H, W) raw values of the model's bands (``stats.bands`` order), NaN
                where a band has no data.
            valid: (H, W) bool, pixels with data.

        Returns:
            (K, H, W) float32; 0 at invalid pixels.
        """
        if raw.shape[0] != self.stats.count:
            raise ValueError(f"{raw.shape[0]} bands given; the model reads {self.stats.count}")
        k = len(self.class_names)
        h, w = valid.shape
        out = np.zeros((k, h, w), np.float32)
        halo = self.spec.halo
        rows = max(1, _BLOCK_PIXELS // max(w, 1))
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            if not valid[r0:r1].any():
                continue
            a0, a1 = max(0, r0 - halo), min(h, r1 + halo)
            feats = pixel_features(raw[:, a0:a1], valid[a0:a1], self.stats, self.spec)
            feats = feats[:, r0 - a0 : r1 - a0]
            keep = valid[r0:r1]
            probs = self.predict_features(feats[:, keep].T)
            block = out[:, r0:r1]
            block[:, keep] = probs.T
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of the model file."""
        return {
            "format": FORMAT,
            "learner": "lightgbm",
            "class_names": self.class_names,
            "bands": self.stats.to_dict(),
            "features": self.spec.to_dict(),
            "feature_names": self.feature_names,
            "info": self.info,
            "class_bias": None if self.class_bias is None else self.class_bias.tolist(),
            "booster": self.booster.model_to_string(),
        }

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write :data:`FILE_NAME` into ``folder`` atomically; its path."""
        return write_text_atomic(Path(folder) / FILE_NAME, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike[str], threads: int | None = None) -> ClassicalModel:
        """Read a model file (or the :data:`FILE_NAME` in a folder).

        Raises:
            ValueError: Not a classical model file, or an inconsistent one.
        """
        import lightgbm

        path = Path(path)
        if path.is_dir():
            path = path / FILE_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not a readable classical model: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a classical model file ({FORMAT})")
        booster = lightgbm.Booster(model_str=data["booster"])
        return cls(
            booster,
            data["class_names"],
            BandStats.from_dict(data["bands"]),
            FeatureSpec.from_dict(data["features"]),
            threads=threads,
            info=data.get("info"),
            class_bias=data.get("class_bias"),
        )


__all__ = ["FILE_NAME", "FORMAT", "ClassicalModel"]
