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


#: Files the Hub stores in Git LFS (their etag, so their blob's name, is the SHA-256).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def as_hub_blobs(cache: Path, repo_id: str) -> None:
    """Store ``repo_id``'s snapshot as ``huggingface_hub`` does: each file's bytes in
    ``blobs/<etag>`` (the SHA-256 for LFS files, the git blob SHA-1 for the others) and a
    relative symlink in the snapshot."""
    import hashlib
    import os

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    blobs = repo / "blobs"
    blobs.mkdir(exist_ok=True)
    for path in sorted((repo / "snapshots").rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix in LFS_SUFFIXES:
            etag = hashlib.sha256(data).hexdigest()
        else:
            etag = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()  # noqa: S324
        blob = blobs / etag
        if not blob.exists():
            path.rename(blob)
        else:
            path.unlink()
        path.symlink_to(os.path.relpath(blob, path.parent))


def write_state_dict(path: Path, state_dict: dict[str, Any]) -> Path:
    """Save tensors as the suffix says: safetensors (``format: pt`` metadata, as
    ``save_pretrained`` and open_clip write it) or a pickled ``torch.save`` object."""
    import torch
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous().clone() for k, v in state_dict.items()}, str(path),
                  metadata={"format": "pt"})
    else:
        torch.save(state_dict, path)
    return path


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


#: The image processor's pixel budget in the published Qwen2.5-VL / Think2Seg-RS
#: ``preprocessor_config.json`` (transformers 5's default allows fewer pixels).
QWEN_PIXEL_BUDGET = {"min_pixels": 3136, "max_pixels": 12845056}


def processor_files_4_49(folder: Path) -> None:
    """Rewrite the processor files transformers 5 saved in ``folder`` as transformers 4.49
    saved them: the image processor's ``preprocessor_config.json`` (``min_pixels`` /
    ``max_pixels``, not ``size``) instead of ``processor_config.json``, the chat template
    in ``chat_template.json``, the special tokens as ``additional_special_tokens``."""
    proc = json.loads((folder / "processor_config.json").read_text())
    image = proc["image_processor"]
    preprocessor = {
        **QWEN_PIXEL_BUDGET,
        **{k: image[k] for k in ("patch_size", "temporal_patch_size", "merge_size",
                                 "image_mean", "image_std")},
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    (folder / "processor_config.json").unlink()
    template = folder / "chat_template.jinja"
    (folder / "chat_template.json").write_text(
        json.dumps({"chat_template": template.read_text()}, indent=2)
    )
    template.unlink()
    tok_file = folder / "tokenizer_config.json"
    tok = json.loads(tok_file.read_text())
    tok.pop("backend", None)
    tok["additional_special_tokens"] = tok.pop("extra_special_tokens", [])
    tok |= {"extra_special_tokens": {}, "clean_up_tokenization_spaces": False,
            "errors": "replace", "split_special_tokens": False}
    tok_file.write_text(json.dumps(tok, indent=2))


def write_sharded(folder: Path, state_dict: dict[str, Any], shards: int = 2) -> None:
    """Safetensors shards and their index, named as ``save_pretrained`` names them
    (``model-00001-of-00002.safetensors``, ``model.safetensors.index.json``)."""
    names = list(state_dict)
    per = -(-len(names) // shards)
    weight_map: dict[str, str] = {}
    for i in range(shards):
        shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state_dict[k] for k in names[i * per:(i + 1) * per]}
        write_state_dict(folder / shard, part)
        weight_map |= dict.fromkeys(part, shard)
    total = sum(v.numel() * v.element_size() for v in state_dict.values())
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2
    ))


def write_think2seg(folder: Path, model: Any, processor: Any) -> Path:
    """Save a Qwen2.5-VL as Think2Seg-RS-3B is published (transformers 4.49: its config,
    processor files and tensor names, two safetensors shards; its generation config);
    returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(folder)
    processor_files_4_49(folder)
    (folder / "config.json").write_text(json.dumps(qwen_config_4_49(model), indent=2))
    (folder / "generation_config.json").write_text(
        json.dumps(THINK2SEG_GENERATION_CONFIG, indent=2)
    )
    write_sharded(folder, qwen_state_dict_4_49(model))
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


# -- open_clip CLIPs (timm/vit_base_patch16_clip_224.openai, chendelong/RemoteCLIP) ----------

#: The open_clip architectures the shipped CLIP models build, shrunk to a few narrow layers
#: with the same towers, patch sizes, input size and tokenizer, so their state dicts have
#: the published names. The loaders pick the architecture by name, so the test swaps these
#: in (:func:`shrink_open_clip`) instead of writing 0.6 and 1.7 GB of random weights.
TINY_OPEN_CLIP = {
    name: {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": patch,
                       "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 1},
    }
    for name, patch in (("ViT-B-16", 16), ("ViT-L-14", 14))
}


def shrink_open_clip(monkeypatch: Any) -> None:
    """Make open_clip build :data:`TINY_OPEN_CLIP`'s sizes under the real names."""
    from open_clip import factory

    for name, cfg in TINY_OPEN_CLIP.items():
        monkeypatch.setitem(factory._MODEL_CONFIGS, name, json.loads(json.dumps(cfg)))


def tiny_open_clip(model_name: str, quick_gelu: bool, seed: int = 0) -> Any:
    """A random CLIP of the (shrunk) open_clip architecture ``model_name``."""
    import open_clip
    import torch

    torch.manual_seed(seed)
    return open_clip.create_model(model_name, pretrained=None, force_quick_gelu=quick_gelu).eval()


def write_openai_clip_hub(folder: Path, model: Any) -> Path:
    """``timm/vit_base_patch16_clip_224.openai`` as published: open_clip's files
    (``open_clip_config.json``, the same weights as ``open_clip_model.safetensors`` and
    ``open_clip_pytorch_model.bin``) beside timm's (``config.json``, ``model.safetensors``
    with timm's tensor names, which an open_clip loader must not pick)."""
    import torch
    from open_clip import get_model_config

    state = model.state_dict()
    cfg = {"model_cfg": {**get_model_config("ViT-B-16"), "quick_gelu": True},
           "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                              "std": [0.26862954, 0.26130258, 0.27577711]}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(cfg, indent=2))
    write_state_dict(folder / "open_clip_model.safetensors", state)
    write_state_dict(folder / "open_clip_pytorch_model.bin", state)
    (folder / "config.json").write_text(json.dumps({
        "architecture": "vit_base_patch16_clip_224", "num_classes": 512, "num_features": 768,
        "global_pool": "token", "pretrained_cfg": {"tag": "openai", "hf_hub_id": "timm/"},
    }, indent=2))
    timm_names = {"cls_token": torch.zeros(1, 1, 8), "pos_embed": torch.zeros(1, 197, 8),
                  "patch_embed.proj.weight": torch.zeros(8, 3, 16, 16)}
    write_state_dict(folder / "model.safetensors", timm_names)
    return folder


def write_remoteclip(folder: Path, model: Any) -> Path:
    """``chendelong/RemoteCLIP``'s ViT-L/14 checkpoint as published: a plain open_clip
    state dict (no ``state_dict`` wrapper, no ``module.`` prefix) pickled by torch."""
    folder.mkdir(parents=True, exist_ok=True)
    write_state_dict(folder / "RemoteCLIP-ViT-L-14.pt", model.state_dict())
    (folder / "README.md").write_text("# RemoteCLIP\n")
    return folder


# -- SAM 2.1 (facebook/sam2.1-hiera-*) -------------------------------------------------------


def sam21_checkpoint(path: Path, variant: str = "small", seed: int = 0) -> Path:
    """A randomly initialised SAM 2.1 of the ``sam2`` package's real config for
    ``variant``, saved as Meta publishes it: ``{"model": state_dict}`` (hiera-small: 46 M
    parameters, 184 MB; build it once and :func:`link_file` it into each cache)."""
    import torch

    from rs_reasoner.segmenters.reasoning.sam import build_sam2_model

    torch.manual_seed(seed)
    model = build_sam2_model(variant, None, "cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, path)
    return path


def link_file(source: Path, target: Path) -> Path:
    """``target`` holding ``source``'s bytes (a hard link where the file system allows)."""
    import os
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


def write_sam21(folder: Path, checkpoint: Path, variant: str = "small") -> Path:
    """``facebook/sam2.1-hiera-<variant>`` as published: the ``.pt`` checkpoint and the
    Hydra config it was trained with."""
    import sam2

    from rs_reasoner.segmenters.hub_weights import sam_variant

    config, _, filename = sam_variant(variant)
    link_file(checkpoint, folder / filename)
    yaml = Path(sam2.__file__).parent / config
    (folder / yaml.name).write_text(yaml.read_text())
    return folder


# -- DINOv2 (facebook/dinov2-small, transformers 4.31) ---------------------------------------

#: facebook/dinov2-small's config.json as published (transformers 4.31: ``torch_dtype``, no
#: backbone fields), with the sizes shrunk.
DINOV2_SMALL_CONFIG = {
    "architectures": ["Dinov2Model"],
    "attention_probs_dropout_prob": 0.0,
    "drop_path_rate": 0.0,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "hidden_size": 48,
    "image_size": 518,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-06,
    "layerscale_value": 1.0,
    "mlp_ratio": 4,
    "model_type": "dinov2",
    "num_attention_heads": 2,
    "num_channels": 3,
    "num_hidden_layers": 2,
    "patch_size": 14,
    "qkv_bias": True,
    "torch_dtype": "float32",
    "transformers_version": "4.31.0.dev0",
    "use_swiglu_ffn": False,
}

#: Attention tensors under transformers 4.31's names (published) ← transformers 5's.
_DINOV2_4_31_NAMES = {
    ".attention.q_proj.": ".attention.attention.query.",
    ".attention.k_proj.": ".attention.attention.key.",
    ".attention.v_proj.": ".attention.attention.value.",
    ".attention.o_proj.": ".attention.output.dense.",
}


def tiny_dinov2(seed: int = 0) -> Any:
    """A random ``Dinov2Model`` of :data:`DINOV2_SMALL_CONFIG`."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    cfg = {k: v for k, v in DINOV2_SMALL_CONFIG.items()
           if k not in ("architectures", "torch_dtype", "transformers_version")}
    return Dinov2Model(Dinov2Config(**cfg)).eval()


def dinov2_state_dict_4_31(model: Any) -> dict[str, Any]:
    """The model's tensors under the published (transformers 4.31) names."""
    out = {}
    for key, value in model.state_dict().items():
        for new, old in _DINOV2_4_31_NAMES.items():
            key = key.replace(new, old)
        out[key] = value
    return out


def write_dinov2(folder: Path, model: Any) -> Path:
    """``facebook/dinov2-small`` as published: config.json, model.safetensors (4.31 names),
    preprocessor_config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(DINOV2_SMALL_CONFIG, indent=2))
    write_state_dict(folder / "model.safetensors", dinov2_state_dict_4_31(model))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": 224, "width": 224}, "do_center_crop": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.485, 0.456, 0.406], "image_processor_type": "BitImageProcessor",
        "image_std": [0.229, 0.224, 0.225], "resample": 3, "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": 256},
    }, indent=2))
    return folder


# -- every shipped repository ----------------------------------------------------------------


def _think2seg(folder: Path, seed: int, _sam: Path) -> Path:
    """A tiny Think2Seg-RS whose greedy answer ends at once: the final norm is zeroed, so
    every logit is 0 and the first id, ``<|endoftext|>`` (an end id of the published
    generation config), wins; a random model would write the whole 1,024-token budget, a
    CPU minute and a half."""
    import torch

    from rs_reasoner.segmenters.reasoning.tiny_qwen import tiny_processor, tiny_qwen

    processor = tiny_processor()
    model = tiny_qwen(processor, seed=seed)
    with torch.no_grad():
        model.model.language_model.norm.weight.zero_()
    assert processor.tokenizer.convert_ids_to_tokens(0) == "<|endoftext|>"
    return write_think2seg(folder, model, processor)


#: How each repository the shipped models (and training) load is fabricated:
#: ``writer(snapshot folder, seed, hiera-small checkpoint)``.
PUBLISHED: dict[str, Any] = {
    "timm/vit_base_patch16_clip_224.openai":
        lambda f, seed, _s: write_openai_clip_hub(f, tiny_open_clip("ViT-B-16", True, seed)),
    "chendelong/RemoteCLIP":
        lambda f, seed, _s: write_remoteclip(f, tiny_open_clip("ViT-L-14", True, seed)),
    "facebook/sam3": lambda f, seed, _s: write_sam3(f, *tiny_sam3(seed=seed)),
    "facebook/sam2.1-hiera-small": lambda f, _seed, sam: write_sam21(f, sam),
    "facebook/dinov2-small": lambda f, seed, _s: write_dinov2(f, tiny_dinov2(seed)),
    "RicardoString/Think2Seg-RS-3B": _think2seg,
    "RicardoString/Think2Seg-RS-7B": _think2seg,
}


def write_published(cache: Path, repo_id: str, sam21_small: Path, seed: int = 0) -> Path:
    """Fabricate ``repo_id`` in ``cache`` in its published layout; its snapshot folder.

    Args:
        cache: A Hugging Face hub cache.
        repo_id: A key of :data:`PUBLISHED`.
        sam21_small: A :func:`sam21_checkpoint` of hiera-small (built once, linked here).
        seed: Seed of the random weights.

    Raises:
        KeyError: No layout is known for ``repo_id`` (a new model needs one here).
    """
    if repo_id not in PUBLISHED:
        raise KeyError(f"no published layout is fabricated for {repo_id}; add one to PUBLISHED")
    return PUBLISHED[repo_id](snapshot_dir(cache, repo_id), seed, sam21_small)
