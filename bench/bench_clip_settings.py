"""CPU settings of clip-openvocab compared back to back: speed and agreement with the first.

Random ViT-B/16 weights (none can be downloaded here), the NEON sample mirrored to
``--size`` pixels, five classes; each variant is a JSON object of ``OpenVocabSettings``
fields, run in turn in one process so machine load affects them alike.

    .venv/bin/python bench/bench_clip_settings.py --size 512 \\
        '{"quantize": false}' '{}' '{"quantize": false, "stride": 224}' \\
        '{"working_scale": 0.5, "window": 256, "stride": 256}'

Agreement: a random CLIP gives every pixel the same top class, so besides plain label
agreement it reports the agreement of relative labels (argmax of each class's
log-probability minus its image mean) and the correlation of those centred values.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch

from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters.base import SegmentationQuery
from rs_reasoner.segmenters.open_vocab.training_free import ClipOpenVocabSegmenter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import mosaic  # noqa: E402

CLASSES = (("buildings",), ("roads",), ("water",), ("trees",), ("grass",))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", type=json.loads)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, rasterio.open(
        mosaic(args.size, Path(tmp) / "m.tif")
    ) as src:
        image = np.moveaxis(src.read([1, 2, 3]), 0, -1).copy()
    valid = np.ones(image.shape[:2], bool)
    query = SegmentationQuery("bench", Mode.open_vocabulary, classes=CLASSES)
    first: tuple[np.ndarray, np.ndarray] | None = None
    for settings in args.variants:
        torch.manual_seed(0)
        seg = ClipOpenVocabSegmenter.from_pretrained(pretrained=None, **settings)
        seg.text_embeddings(list(CLASSES))  # text encoding is not what is compared
        start = time.perf_counter()
        probs = seg.predict_probabilities(image, valid, query.classes)
        seconds = time.perf_counter() - start
        logp = np.log(np.clip(probs, 1e-12, None))
        centred = logp - logp.mean(axis=(1, 2), keepdims=True)
        labels = probs.argmax(0)
        if first is None:
            first = (labels, centred)
        print(json.dumps({
            "settings": settings, "seconds": round(seconds, 2),
            "megapixels_per_s": round(args.size**2 / seconds / 1e6, 4),
            "label_agreement": round(float((labels == first[0]).mean()), 4),
            "relative_label_agreement": round(
                float((centred.argmax(0) == first[1].argmax(0)).mean()), 4),
            "centred_logprob_correlation": round(
                float(np.corrcoef(centred.ravel(), first[1].ravel())[0, 1]), 4),
            "load_average": round(os.getloadavg()[0], 1), "threads": torch.get_num_threads(),
        }), flush=True)


if __name__ == "__main__":
    main()
