"""A random forest on the bands: the analyst's usual baseline, as an ``auto`` candidate.

What dzetsaka, the Semi-Automatic Classification Plugin or a scikit-learn script give an
analyst: many deep trees, each on a bootstrap of the labelled pixels, the bands as
features, the classes at their true proportions. It is fitted in seconds and scored on the
same validation labels as the other candidates, so ``train`` measures the bar in the
user's own run and serves the forest where it scores best.

It is LightGBM in random-forest mode, so it is served by the classical learner's
:class:`~rs_reasoner.models.classical.ClassicalModel` (one file format, one predictor):
features are the normalised bands alone (:func:`forest_spec`; with more than three bands
the per-pixel band summary comes with them), which for trees is the same as raw values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rs_reasoner.models.classical import ClassicalModel
from rs_reasoner.models.pixel_features import FeatureSpec
from rs_reasoner.raster.band_stats import BandStats
from rs_reasoner_training.classical import (
    ChainedImages,
    LabelledImage,
    check_every_class,
    run_params,
    sample_pixels,
)


@dataclass(frozen=True)
class ForestConfig:
    """Random-forest settings (scikit-learn's usual ones where LightGBM has them).

    Attributes:
        trees: Trees in the forest.
        num_leaves: Leaves per tree (deep trees, as a random forest grows them).
        min_child_samples: Fewest pixels in a leaf.
        bagging_fraction: Pixels drawn for each tree (a bootstrap's distinct share).
        max_pixels_per_class: Sample cap per class (the sample is weighted back to the
            classes' true proportions).
        threads: LightGBM threads (None: all cores).
        seed: Sampling seed.
    """

    trees: int = 100
    num_leaves: int = 255
    min_child_samples: int = 5
    bagging_fraction: float = 0.632
    max_pixels_per_class: int = 20_000
    threads: int | None = None
    seed: int = 0


def forest_spec() -> FeatureSpec:
    """Features of the forest: the bands, no indices, no neighbourhood statistics."""
    return FeatureSpec(roles={}, scales=())


def _params(config: ForestConfig, num_classes: int, num_features: int) -> dict[str, Any]:
    # A random forest tries about sqrt(F) features at each split.
    per_split = max(1, round(math.sqrt(num_features))) / num_features
    params: dict[str, Any] = {
        "boosting": "rf",
        "num_leaves": config.num_leaves,
        "min_child_samples": config.min_child_samples,
        "bagging_fraction": config.bagging_fraction,
        "bagging_freq": 1,
        "feature_fraction_bynode": min(1.0, per_split),
    }
    return params | run_params(num_classes, config.threads, config.seed)


def fit_forest(
    train: Sequence[LabelledImage],
    class_names: Sequence[str],
    stats: BandStats,
    config: ForestConfig | None = None,
) -> ClassicalModel:
    """Fit the random forest on the labelled pixels of ``train``.

    Raises:
        LabelLayerError: No labelled pixel with data, or a class without a training pixel.
    """
    import lightgbm

    config = config or ForestConfig()
    k = len(class_names)
    started = time.monotonic()
    spec = forest_spec()
    sample = sample_pixels(train, stats, spec, k, config.max_pixels_per_class, config.seed)
    check_every_class(sample.totals, class_names)
    # Weights undo the per-class cap: the classes count at their true proportions.
    data = lightgbm.Dataset(sample.x, sample.y, weight=sample.weights(0.0))
    params = _params(config, k, sample.x.shape[1])
    booster = lightgbm.train(params, data, num_boost_round=config.trees)
    info: dict[str, Any] = {
        "learner": "lightgbm random forest",
        "config": asdict(config),
        "train_pixels": {class_names[c]: int(sample.totals[c]) for c in range(k)},
        "rounds": int(booster.current_iteration()),
    }
    model = ClassicalModel(booster, class_names, stats, spec, threads=config.threads, info=info)
    model.info["seconds"] = round(time.monotonic() - started, 2)
    return model


def fit_forest_to_serve(
    train: Sequence[LabelledImage],
    class_names: Sequence[str],
    stats: BandStats,
    config: ForestConfig | None = None,
    val: Sequence[LabelledImage] = (),
) -> tuple[ClassicalModel, ClassicalModel]:
    """(model to serve, model to score on validation): a forest has nothing for
    validation labels to steer, so the model served learns from training and validation
    labels together, and the one fitted on the training labels alone is scored."""
    scored = fit_forest(train, class_names, stats, config)
    if not val:
        return scored, scored
    served = fit_forest(ChainedImages(train, val), class_names, stats, config)
    served.info["validation"] = "refitted on training + validation labels"
    return served, scored


__all__ = ["ForestConfig", "fit_forest", "fit_forest_to_serve", "forest_spec"]
