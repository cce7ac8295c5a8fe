"""CPU settings of clip-openvocab compared back to back: speed and agreement with the first.

Random ViT-B/16 weights (none can be downloaded here), the NEON sample mirrored to
``--size`` pixels, five classes; each variant is a JSON object of ``OpenVocabSettings``
fields, run in turn in one process so machine load affects them alike. A variant that
does not set ``cpu_fast`` runs with ``cpu_fast: false`` (its fields as given); ``{}`` is
then the exact path and ``{"cpu_fast": true}`` the default CPU path.

    .venv/bin/python bench/bench_clip_settings.py --size 512 \\
        '{}' '{"cpu_precision": "bfloat16"}' '{"stride": 224}' '{"cpu_fast": true}'

Speed is reported as wall time and as CPU time (both threads), which the other jobs on a
shared machine disturb much less; the load average is printed with each line.

Agreement with the first variant, two ways, because random weights give meaningless
classes (the figures say how much a shortcut changes the output of the same model, not
how good either output is):

* ``prompts``: the five class names through the random text tower. A random CLIP gives
  every pixel the same top class, so besides plain label agreement it reports the
  agreement of relative labels (argmax of each class's log-probability minus its image
  mean) and the correlation of those centred values. Random text vectors separate the
  classes by tiny margins, so this is a worst case.
* ``clusters``: five "classes" whose text embeddings are the k-means centres of the
  first variant's own patch embeddings over the image, so the reference label map
  follows image structure with margins like a trained model's, and plain label
  agreement is meaningful.
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
    first: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    centres: torch.Tensor | None = None
    for settings in args.variants:
        torch.manual_seed(0)
        seg = ClipOpenVocabSegmenter.from_pretrained(
            pretrained=None, **{"cpu_fast": False, **settings}
        )
        if centres is None:
            centres = cluster_centres(seg, image, len(CLASSES))
        seg.text_embeddings(list(CLASSES))  # text encoding is not what is compared
        seg.predict_probabilities(image[:64, :64], valid[:64, :64], query.classes)  # warm-up
        start, cpu_start = time.perf_counter(), time.process_time()
        probs = seg.predict_probabilities(image, valid, query.classes)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        line = {
            "settings": settings, "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu_seconds, 2),
            "megapixels_per_s": round(args.size**2 / seconds / 1e6, 4),
        }
        line["prompts"] = agreement(probs, first.setdefault("prompts", centred_labels(probs)))
        seg.text_embeddings = lambda _classes, c=centres: c  # type: ignore[method-assign]
        probs = seg.predict_probabilities(image, valid, CLASSES)
        line["clusters"] = agreement(probs, first.setdefault("clusters", centred_labels(probs)))
        line |= {"load_average": round(os.getloadavg()[0], 1), "threads": torch.get_num_threads()}
        print(json.dumps(line), flush=True)


def centred_labels(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and log-probabilities minus each class's image mean."""
    logp = np.log(np.clip(probs, 1e-12, None))
    return probs.argmax(0), logp - logp.mean(axis=(1, 2), keepdims=True)


def agreement(probs: np.ndarray, reference: tuple[np.ndarray, np.ndarray]) -> dict:
    labels, centred = centred_labels(probs)
    return {
        "label_agreement": round(float((labels == reference[0]).mean()), 4),
        "relative_label_agreement": round(
            float((centred.argmax(0) == reference[1].argmax(0)).mean()), 4),
        "centred_logprob_correlation": round(
            float(np.corrcoef(centred.ravel(), reference[1].ravel())[0, 1]), 4),
    }


def cluster_centres(seg: ClipOpenVocabSegmenter, image: np.ndarray, k: int) -> torch.Tensor:
    """k-means centres of the float encoder's patch embeddings over side-by-side windows,
    plus as many far-off vectors as the segmenter has background names (so those never
    win and the k centres are the only classes)."""
    from sklearn.cluster import KMeans

    from rs_reasoner.segmenters.open_vocab.prompts import select_background
    from rs_reasoner.segmenters.sliding_windows import window_starts

    w = seg.settings.window
    norm = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - seg._mean) / seg._std
    crops = [
        norm[:, y : y + w, x : x + w]
        for y in window_starts(image.shape[0], w, w)
        for x in window_starts(image.shape[1], w, w)
    ]
    with torch.inference_mode():
        patches, _ = seg.encoder(torch.stack(crops))
    feats = torch.nn.functional.normalize(patches.reshape(-1, patches.shape[-1]), dim=-1)
    km = KMeans(k, n_init=4, random_state=0).fit(feats.numpy())
    centres = torch.from_numpy(km.cluster_centers_).float()
    n_background = len(select_background(CLASSES, seg.settings.background))
    return torch.cat([centres, -centres.mean(0, keepdim=True).expand(n_background, -1)])


if __name__ == "__main__":
    main()
