"""Test-only models whose weights live on the Hub stand-in (:mod:`tests.support.hub_server`
serving :func:`tests.support.hub_repos.hub_repos`).

Named in ``RS_REASONER_SEGMENTER_MODULES`` of a backend process whose ``HF_ENDPOINT`` is
that stand-in. ``test-hub-model`` needs one LFS-sized file and a snapshot of small JSON
files; ``test-gated-model`` needs a file from a gated repository (its token:
:data:`tests.support.hub_repos.GATED_TOKEN`), as SAM 3 does on the real Hub.
"""

from __future__ import annotations

from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters.registry import ModelSpec, register
from rs_reasoner.weights import WeightSpec
from tests.support.segmenters import ColourSegmenter

WEIGHTS_FILE = WeightSpec(repo_id="test-org/tiny-weights", filename="model.bin",
                          purpose="test weights (one file)")
CONFIG_SNAPSHOT = WeightSpec(repo_id="test-org/tiny-config", allow_patterns=("*.json",),
                             purpose="test config (snapshot)")
GATED_FILE = WeightSpec(repo_id="test-org/gated-weights", filename="weights.pt",
                        purpose="test gated weights")


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
