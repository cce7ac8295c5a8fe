"""A tiny random SAM 3 in the layout of ``facebook/sam3``'s transformers files.

The repository holds one ``Sam3VideoModel``: ``config.json`` with a ``detector_config``
and a ``tracker_config`` (``model_type: sam3_video``), and one ``model.safetensors``
whose keys are ``detector_model.*`` (the concept detector, with the shared vision
backbone), ``tracker_model.*`` (prompt encoder, mask decoder and the video memory) and
``tracker_neck.*`` (the tracker's FPN over the shared backbone). ``Sam3Model`` and
``Sam3TrackerModel`` both load from it, the tracker through transformers' checkpoint
conversion (backbone and neck renamed into its own vision encoder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.backend.published_layouts import tiny_sam3


def tiny_sam3_video(image_size: int = 112, seed: int = 0) -> tuple[Any, Any]:
    """A tiny random ``Sam3VideoModel`` whose detector is :func:`tiny_sam3`'s, and its
    processor. The tracker's widths match the detector's FPN, as in the real model."""
    import torch
    from transformers import Sam3VideoConfig, Sam3VideoModel

    detector, processor = tiny_sam3(image_size=image_size, seed=seed)
    detector_config = detector.config.to_dict()
    width = detector_config["vision_config"]["fpn_hidden_size"]
    tracker_config = {
        "vision_config": detector_config["vision_config"],
        "image_size": image_size,
        "prompt_encoder_config": {"hidden_size": width, "image_size": image_size,
                                  "patch_size": 14},
        "mask_decoder_config": {"hidden_size": width, "num_attention_heads": 2,
                                "mlp_dim": 2 * width, "iou_head_hidden_dim": width},
        "memory_attention_hidden_size": width, "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 2 * width,
        "memory_encoder_hidden_size": width, "memory_encoder_output_channels": 16,
        "mask_downsampler_embed_dim": width, "memory_fuser_embed_dim": width,
        "memory_fuser_intermediate_dim": 2 * width, "memory_fuser_num_layers": 1,
    }
    config = Sam3VideoConfig(detector_config=detector_config, tracker_config=tracker_config)
    config.architectures = ["Sam3VideoModel"]
    torch.manual_seed(seed + 1)
    model = Sam3VideoModel(config).eval()
    model.detector_model.load_state_dict(detector.state_dict())
    return model, processor


def write_sam3_video(folder: Path, model: Any, processor: Any) -> Path:
    """Save as ``facebook/sam3`` publishes: the config, one ``model.safetensors`` with the
    model's own key names, and the processor and tokenizer files.

    The weights are written from the state dict: ``save_pretrained`` in transformers 5
    re-applies the tracker's load-time renaming in reverse and writes
    ``tracker_model.tracker_model.*``, a layout ``Sam3TrackerModel`` then silently
    ignores (prompt encoder and mask decoder left random).
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(folder / "config.json")
    state = {name: value.contiguous() for name, value in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    processor.save_pretrained(folder)
    return folder
