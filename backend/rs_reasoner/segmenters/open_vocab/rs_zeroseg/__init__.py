"""RS-ZeroSeg: trained open-vocabulary segmentation (dual-stream CLIP + DINOv2, MS-CAM, CARH).

Modules: :mod:`.config` (architecture/freezing config), :mod:`.model` (the network and
backbone builders), :mod:`.loss` (BCE + alignment), :mod:`.checkpoint` (atomic,
versioned checkpoints), :mod:`.segmenter` (the Segmenter), :mod:`.data` (Dubai sample).
"""

from rs_reasoner.segmenters.open_vocab.rs_zeroseg.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    load_checkpoint,
    save_checkpoint,
)
from rs_reasoner.segmenters.open_vocab.rs_zeroseg.config import RSZeroSegConfig
from rs_reasoner.segmenters.open_vocab.rs_zeroseg.loss import IGNORE_INDEX, RSZeroSegLoss
from rs_reasoner.segmenters.open_vocab.rs_zeroseg.model import RSZeroSeg, weight_specs
from rs_reasoner.segmenters.open_vocab.rs_zeroseg.segmenter import (
    ENV_CHECKPOINT,
    RSZeroSegSegmenter,
)

__all__ = [
    "ENV_CHECKPOINT",
    "IGNORE_INDEX",
    "CheckpointError",
    "LoadedCheckpoint",
    "RSZeroSeg",
    "RSZeroSegConfig",
    "RSZeroSegLoss",
    "RSZeroSegSegmenter",
    "load_checkpoint",
    "save_checkpoint",
    "weight_specs",
]
