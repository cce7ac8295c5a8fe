"""What the Hub stand-in serves to the model-manager tests (numpy only: the QGIS tests
import it too). :mod:`tests.support.hub_models` registers the models that need it."""

from __future__ import annotations

import numpy as np

from tests.support.hub_server import FakeRepo

GATED_TOKEN = "hf_test_gated_token"


def hub_repos(delay: float = 0.0) -> dict[str, FakeRepo]:
    """The repositories the stand-in Hub serves (``delay``: seconds per file)."""
    rng = np.random.default_rng(7)
    return {
        "test-org/tiny-weights": FakeRepo(
            {"model.bin": rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes(),
             "unused.bin": b"not part of the weight set"},
            license="mit", delay=delay),
        "test-org/tiny-config": FakeRepo(
            {"config.json": b'{"hidden": 4}', "tokenizer.json": b'{"vocab": []}',
             "README.md": b"# not fetched"},
            license="apache-2.0", delay=delay),
        "test-org/gated-weights": FakeRepo(
            {"weights.pt": rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes()},
            license="sam-license", token=GATED_TOKEN, delay=delay),
    }
