"""Test-only models whose weights live on the Hub stand-in (:mod:`tests.support.hub_server`).

Named in ``RS_REASONER_SEGMENTER_MODULES`` of a backend process whose ``HF_ENDPOINT`` is a
:class:`~tests.support.hub_server.FakeHub` serving :func:`hub_repos`. ``test-hub-model``
needs one LFS-sized file and a snapshot of small JSON files; ``test-gated-model`` needs a
file from a gated repository (token :data:`GATED_TOKEN`), as SAM 3 does on the real Hub.
"""

from __future__ import annotations

import numpy as np

from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters.registry import ModelSpec, register
from rs_reasoner.weights import WeightSpec
from tests.support.hub_server import FakeRepo
from tests.support.segmenters import ColourSegmenter

GATED_TOKEN = "hf_test_gated_token"
WEIGHTS_FILE = WeightSpec(repo_id="test-org/tiny-weights", filename="model.bin",
                          purpose="test weights (one file)")
CONFIG_SNAPSHOT = WeightSpec(repo_id="test-org/tiny-config", allow_patterns=("*.json",),
                             purpose="test config (snapshot)")
GATED_FILE = WeightSpec(repo_id="test-org/gated-weights", filename="weights.pt",
                        purpose="test gated weights")


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


register(
    ModelSpec(
        name="test-hub-model",
        modes=(Mode.open_vocabulary,),
        description="Test only: colour rules, with weights on the Hub stand-in.",
        factory=ColourSegmenter,
        weights=(WEIGHTS_FILE, CONFIG_SNAPSHOT),
    )
)
register(
    ModelSpec(
        name="test-gated-model",
        modes=(Mode.open_vocabulary,),
        description="Test only: colour rules, with gated weights on the Hub stand-in.",
        factory=ColourSegmenter,
        weights=(GATED_FILE,),
    )
)
