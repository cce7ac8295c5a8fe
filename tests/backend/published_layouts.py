"""Hugging Face caches holding tiny random models in the exact file layouts of the public
repositories the shipped models load (names, nesting, formats, config quirks).

The loaders under test are the production ones: a layout that the real repository has
and the loader does not read is a bug found here, not on a user's machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: A fixed fake commit; the cache layout is ``models--org--name/snapshots/<commit>/``.
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def snapshot_dir(cache: Path, repo_id: str) -> Path:
    """Create ``repo_id``'s cache entry (``refs/main`` → :data:`COMMIT`); its snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    folder = repo / "snapshots" / COMMIT
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- Think2Seg-RS (Qwen2.5-VL saved by transformers 4.49) ------------------------------------

#: Think2Seg-RS-3B's generation_config.json as published: saved from a gradient-
#: checkpointed GRPO run, so the cache is off and sampling is on at a near-zero
#: temperature (the ids are the tiny tokenizer's, not Qwen's).
THINK2SEG_GENERATION_CONFIG = {
    "bos_token_id": 0,
    "do_sample": True,
    "eos_token_id": [258, 0],
    "pad_token_id": 0,
    "repetition_penalty": 1.05,
    "temperature": 1e-06,
    "top_k": 1,
    "top_p": 0.001,
    "transformers_version": "4.49.0",
    "use_cache": False,
}


def qwen_config_4_49(model: Any) -> dict[str, Any]:
    """A Qwen2.5-VL config in transformers 4.49's flat layout (text fields at the top,
    ``rope_scaling`` of type ``mrope``, ``torch_dtype``) for a model built here."""
    cfg = model.config
    text = cfg.text_config
    vision = cfg.vision_config
    rope = text.rope_parameters
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "attention_dropout": 0.0,
        "bos_token_id": text.bos_token_id,
        "eos_token_id": text.eos_token_id,
        "vision_start_token_id": cfg.vision_start_token_id,
        "vision_end_token_id": cfg.vision_end_token_id,
        "image_token_id": cfg.image_token_id,
        "video_token_id": cfg.video_token_id,
        "hidden_act": text.hidden_act,
        "hidden_size": text.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": text.intermediate_size,
        "max_position_embeddings": text.max_position_embeddings,
        "max_window_layers": text.max_window_layers,
        "model_type": "qwen2_5_vl",
        "num_attention_heads": text.num_attention_heads,
        "num_hidden_layers": text.num_hidden_layers,
        "num_key_value_heads": text.num_key_value_heads,
        "rms_norm_eps": text.rms_norm_eps,
        "rope_theta": rope["rope_theta"],
        "rope_scaling": {"type": "mrope", "mrope_section": list(rope["mrope_section"])},
        "sliding_window": 32768,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "torch_dtype": "float32",
        "transformers_version": "4.49.0",
        "use_cache": False,
        "use_sliding_window": False,
        "vocab_size": text.vocab_size,
        "vision_config": {
            "depth": vision.depth,
            "hidden_act": vision.hidden_act,
            "hidden_size": vision.hidden_size,
            "intermediate_size": vision.intermediate_size,
            "num_heads": vision.num_heads,
            "in_chans": 3,
            "out_hidden_size": vision.out_hidden_size,
            "patch_size": vision.patch_size,
            "spatial_merge_size": vision.spatial_merge_size,
            "spatial_patch_size": vision.patch_size,
            "window_size": vision.window_size,
            "fullatt_block_indexes": list(vision.fullatt_block_indexes),
            "tokens_per_second": vision.tokens_per_second,
            "temporal_patch_size": vision.temporal_patch_size,
        },
    }


def qwen_state_dict_4_49(model: Any) -> dict[str, Any]:
    """The model's weights under transformers 4.49's names (``model.layers.*``,
    ``visual.*``; transformers 5 nests them under ``model.language_model`` and
    ``model.visual``)."""
    out = {}
    for key, value in model.state_dict().items():
        key = key.replace("model.language_model.", "model.", 1)
        key = key.replace("model.visual.", "visual.", 1)
        out[key] = value.contiguous().clone()
    return out


def write_think2seg(folder: Path, model: Any, processor: Any) -> Path:
    """Save a Qwen2.5-VL as Think2Seg-RS-3B is published (4.49 layout, its generation
    config); returns the folder."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(qwen_config_4_49(model), indent=2))
    (folder / "generation_config.json").write_text(
        json.dumps(THINK2SEG_GENERATION_CONFIG, indent=2)
    )
    save_file(qwen_state_dict_4_49(model), str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    return folder


# -- SAM 3 (facebook/sam3, transformers files) -----------------------------------------------


def tiny_sam3(image_size: int = 112, seed: int = 0) -> tuple[Any, Any]:
    """A tiny random ``Sam3Model`` and its ``Sam3Processor`` (byte-level CLIP tokenizer),
    built offline. Biases are set so every concept is present and every query is a
    confident instance (random weights would leave the outcome to chance); the masks
    themselves stay random."""
    import torch
    from transformers import CLIPTokenizer, Sam3Config, Sam3Model, Sam3Processor
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    symbols = sorted(set(bytes_to_unicode().values()))
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    grid = image_size // 14
    small = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    config = Sam3Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam3_vit_model", **small, "num_hidden_layers": 2,
                "image_size": image_size, "patch_size": 14, "window_size": 4,
                "global_attn_indexes": [1], "pretrain_image_size": 56,
            },
            "fpn_hidden_size": 32,
            "backbone_feature_sizes": [[4 * grid] * 2, [2 * grid] * 2, [grid] * 2],
        },
        text_config={
            "model_type": "clip_text_model", **small, "vocab_size": len(vocab),
            "projection_dim": 32, "num_hidden_layers": 1, "max_position_embeddings": 32,
            "bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        geometry_encoder_config={**small, "num_layers": 1},
        detr_encoder_config={**small, "num_layers": 1},
        detr_decoder_config={**small, "num_layers": 1, "num_queries": 6},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2},
    )
    torch.manual_seed(seed)
    model = Sam3Model(config).eval()
    with torch.no_grad():
        model.detr_decoder.presence_head.layer3.bias.fill_(6.0)
        scoring = model.dot_product_scoring
        for proj in (scoring.text_proj, scoring.query_proj):
            proj.weight.zero_()
            proj.bias.fill_(1.0)
        model.mask_decoder.semantic_projection.bias.fill_(-8.0)
    image_processor = Sam3ImageProcessor(size={"height": image_size, "width": image_size})
    return model, Sam3Processor(image_processor=image_processor, tokenizer=tokenizer)


def write_sam3(folder: Path, model: Any, processor: Any) -> Path:
    """Save as ``facebook/sam3`` publishes its transformers files (config.json,
    model.safetensors, processor and tokenizer files)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
