"""Training-free open-vocabulary segmentation with CLIP (SegEarth-OV style) and fusion."""

from rs_reasoner.segmenters.hub_weights import OPENAI_VIT_B16_WEIGHTS
from rs_reasoner.segmenters.open_vocab.clip_dense import (
    DenseClipEncoder,
    create_open_clip,
    global_bias_logits,
    self_correlation_attention,
    weight_spec_for,
)
from rs_reasoner.segmenters.open_vocab.fusion_rules import (
    class_confidences,
    fuse_probabilities,
    fusion_weights,
)
from rs_reasoner.segmenters.open_vocab.prompts import (
    DEFAULT_BACKGROUND,
    TEMPLATES,
    TextEmbeddingCache,
    ensemble_text_embeddings,
    select_background,
)
from rs_reasoner.segmenters.open_vocab.training_free import (
    ClipOpenVocabSegmenter,
    OpenVocabSettings,
    guided_filter,
)

__all__ = [
    "DEFAULT_BACKGROUND",
    "OPENAI_VIT_B16_WEIGHTS",
    "TEMPLATES",
    "ClipOpenVocabSegmenter",
    "DenseClipEncoder",
    "OpenVocabSettings",
    "TextEmbeddingCache",
    "class_confidences",
    "create_open_clip",
    "ensemble_text_embeddings",
    "fuse_probabilities",
    "fusion_weights",
    "global_bias_logits",
    "guided_filter",
    "select_background",
    "self_correlation_attention",
    "weight_spec_for",
]
