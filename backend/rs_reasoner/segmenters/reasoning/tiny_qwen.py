"""A tiny, randomly initialised but real Qwen2.5-VL, built offline (tests, benchmarks).

The real ``Qwen2_5_VLForConditionalGeneration`` from a small ``Qwen2_5_VLConfig`` (2 text
layers of width 64, a 2-block vision tower with the real patch 14 / merge 2 / window
attention), a byte-level ``Qwen2Tokenizer`` built from the 256 byte symbols plus Qwen's
chat and vision special tokens, the real Qwen2-VL image processor and a Qwen-style chat
template. No file or network is needed, so tests and ``bench/`` scripts run where no
weights exist (SAM 2.1's counterpart is ``SamRefiner.random_init``).
"""

from __future__ import annotations

import torch

#: Qwen's chat and vision special tokens, which the chat template and processor need.
SPECIAL_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: The parts of Qwen2.5-VL's chat template this prompt uses (system, user with an image
#: placeholder, generation prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_processor():  # noqa: ANN201 - transformers types
    """A Qwen2.5-VL processor with a byte-level tokenizer (no files, no network)."""
    from transformers import Qwen2_5_VLProcessor
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    vocab = {"<|endoftext|>": 0}
    for symbol in sorted(set(bytes_to_unicode().values())):
        vocab[symbol] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def tiny_qwen(processor, seed: int = 0, hidden: int = 64, layers: int = 2):  # noqa: ANN001, ANN201
    """The real Qwen2.5-VL architecture, small and randomly initialised."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok = processor.tokenizer
    ids = tok.convert_tokens_to_ids
    heads = 4
    half_head = hidden // heads // 2
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            # Multimodal RoPE: temporal/height/width sections sum to half the head dim.
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e6,
                "mrope_section": [half_head - 2 * (half_head // 3), half_head // 3,
                                  half_head // 3],
            },
            "bos_token_id": 0,
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": 0,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = 0
    return model
