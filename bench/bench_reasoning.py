"""Latency of the reasoning segmenter (Think2Seg-RS) on one extent, random weights.

Builds the real architectures randomly initialised — Qwen2.5-VL (the 3B configuration on
CUDA, a small one on CPU so it runs anywhere) and SAM 2.1 — and runs the whole segmenter on
a ``--size``² extent: overview → prompter (prefill + greedy decode of ``--new-tokens``)
→ parse → SAM 2.1 → maps. Random weights never write a valid answer, so a fixed
three-object answer is appended to the generated text to give SAM its usual work; the
generation itself is real and runs to its token budget (EOS is disabled).

Reports prompter prefill time, decode ms/token, tokens generated, SAM 2 time, end-to-end
latency and peak GPU memory (peak RSS on CPU), the median of ``--repeat`` runs after one
warm-up (which also compiles the static-cache decode on CUDA).

    .venv/bin/python bench/bench_reasoning.py                      # CPU: small config
    .venv/bin/python bench/bench_reasoning.py --config 3b --sam small --device cuda
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import time
from typing import Any

import numpy as np
import torch

from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters.base import SegmentationQuery
from rs_reasoner.segmenters.reasoning.prompter import PrompterOutput, QwenPrompter
from rs_reasoner.segmenters.reasoning.sam import SamRefiner
from rs_reasoner.segmenters.reasoning.segmenter import ReasoningSegmenter
from rs_reasoner.segmenters.reasoning.tiny_qwen import tiny_processor

#: A typical answer: three objects (one SAM crop for a 1024² extent, three decodes).
ANSWER = (
    '<answer>```json[{"bbox_2d": [310,360,567,586], "positive_points": [[434, 474], '
    '[450, 460]]}, {"bbox_2d": [10,200,100,320], "positive_points": [[50, 250], [90, 300]]}, '
    '{"bbox_2d": [600,80,780,240], "positive_points": [[690, 160], [700, 150]]}]```</answer>'
)
QUERY = "the buildings most at risk from the river"

#: Qwen2.5-VL-3B-Instruct's architecture (config.json of the Hub release).
CONFIG_3B = {
    "text": {
        "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008,
        "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
        "max_position_embeddings": 128000, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                            "mrope_section": [16, 24, 24]},
    },
    "vision": {
        "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
        "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2,
        "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
    },
}
#: Same shape of model, small enough for a shared CPU (real vocabulary size kept).
CONFIG_SMALL = {
    "text": {
        **CONFIG_3B["text"], "hidden_size": 256, "intermediate_size": 1024,
        "num_hidden_layers": 4, "num_attention_heads": 4, "max_position_embeddings": 8192,
        "rope_parameters": {**CONFIG_3B["text"]["rope_parameters"], "mrope_section": [8, 12, 12]},
    },
    "vision": {
        **CONFIG_3B["vision"], "depth": 4, "hidden_size": 128, "intermediate_size": 512,
        "num_heads": 4, "out_hidden_size": 256, "fullatt_block_indexes": [1, 3],
    },
}  # fmt: skip


def build_model(config: dict[str, Any], processor: Any, device: str) -> Any:
    """Random-init Qwen2.5-VL in bf16 + SDPA on CUDA (fp32 on CPU), EOS disabled."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = processor.tokenizer.convert_tokens_to_ids
    cfg = Qwen2_5_VLConfig(
        text_config=dict(config["text"]), vision_config=dict(config["vision"]),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    with torch.device(device):  # initialise in place, in the final dtype
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            cfg, dtype=dtype, attn_implementation="sdpa"
        ).eval()
    # Random weights: keep generating to the budget, as a real ~N-token answer would.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


class AnswerAppended:
    """Runs the real prompter, then appends a fixed answer so SAM has objects to do."""

    def __init__(self, prompter: QwenPrompter) -> None:
        self.prompter = prompter

    def generate(self, image: np.ndarray, query: str) -> PrompterOutput:
        out = self.prompter.generate(image, query)
        return PrompterOutput(text=out.text + ANSWER, stats=out.stats)

    def close(self) -> None:
        self.prompter.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--config", choices=["auto", "3b", "small"], default="auto",
                        help="Qwen2.5-VL size (auto: 3b on CUDA, small on CPU)")
    parser.add_argument("--sam", default="auto", help="SAM 2.1 variant (auto: small on CUDA, "
                        "tiny on CPU)")
    parser.add_argument("--size", type=int, default=1024, help="extent side in pixels")
    parser.add_argument("--new-tokens", type=int, default=None,
                        help="tokens to generate (default 150 on CUDA, 24 on CPU)")
    parser.add_argument("--fast-decode", choices=["auto", "on", "off"], default="auto",
                        help="static KV cache + compiled decode (auto: on for CUDA)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    cuda = args.device.startswith("cuda")
    # Random weights always run to the token budget; the segmenter would warn each time.
    logging.getLogger("rs_reasoner").setLevel(logging.ERROR)
    name = args.config if args.config != "auto" else ("3b" if cuda else "small")
    sam_variant = args.sam if args.sam != "auto" else ("small" if cuda else "tiny")
    new_tokens = args.new_tokens or (150 if cuda else 24)
    fast = {"auto": None, "on": True, "off": False}[args.fast_decode]

    start = time.perf_counter()
    processor = tiny_processor()  # byte-level tokenizer: prompts ~1.2x Qwen's BPE length
    model = build_model(CONFIG_3B if name == "3b" else CONFIG_SMALL, processor, args.device)
    prompter = QwenPrompter.from_components(model, processor, max_new_tokens=new_tokens,
                                            fast_decode=fast)
    sam = SamRefiner.random_init(sam_variant, device=args.device)
    segmenter = ReasoningSegmenter(AnswerAppended(prompter), sam, device=args.device)
    build_s = time.perf_counter() - start

    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), np.uint8)
    valid = np.ones((args.size, args.size), bool)
    query = SegmentationQuery(text=QUERY, mode=Mode.reasoning)
    segmenter.segment(image, valid, query)  # warm-up (and compile, on CUDA)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    runs = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        result = segmenter.segment(image, valid, query)
        if cuda:
            torch.cuda.synchronize()
        e2e = time.perf_counter() - t
        r = segmenter.last_run
        runs.append({
            "prompt_tokens": r.prompter.prompt_tokens,
            "tokens_generated": r.prompter.new_tokens,
            "preprocess_s": r.prompter.preprocess_s,
            "prefill_s": r.prompter.prefill_s,
            "decode_ms_per_token": r.prompter.decode_ms_per_token,
            "prompter_s": r.prompter.total_s,
            "sam_s": r.sam_s,
            "sam_encode_s": r.sam.encode_s,
            "sam_decode_s": r.sam.decode_s,
            "sam_crops": r.sam.crops,
            "objects": r.objects,
            "overview_s": r.overview_s,
            "compose_s": r.compose_s,
            "end_to_end_s": e2e,
        })
    assert result.labels.shape == (args.size, args.size)
    # Report the run with the median end-to-end time, so its figures add up.
    runs.sort(key=lambda run: run["end_to_end_s"])
    median_run = runs[len(runs) // 2]

    report = {
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "prompter_config": name,
        "prompter_params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "dtype": str(next(model.parameters()).dtype),
        "fast_decode": prompter.fast_decode,
        "sam": f"sam2.1-hiera-{sam_variant}",
        "extent": f"{args.size}x{args.size}",
        "repeat": args.repeat,
        "build_s": round(build_s, 2),
        **{key: round(value, 4) for key, value in median_run.items()},
        "end_to_end_s_all": [round(run["end_to_end_s"], 3) for run in runs],
        "peak_gpu_mem_gib": (round(torch.cuda.max_memory_allocated() / 2**30, 2)
                             if cuda else None),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
