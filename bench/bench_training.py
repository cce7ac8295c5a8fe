"""How many labels are needed: supervised vs teacher-student vs + VLM-PP on the Dubai sample.

The 45 Dubai images are split once (``--split-seed``) into held-out images (``--val-fraction``,
never trained on) and training images. For each label budget (default 5 %, 10 %, 25 % of
the training images, at least one image) the first images of a fixed order keep their
masks (so the budgets are nested) and the rest are unlabelled. Three methods train the
same model for the same number of steps:

(a) supervised only, on the labelled images;
(b) teacher-student (EMA teacher, weak/strong views, CutMix) on labelled + unlabelled;
(c) (b) + VLM-PP purification of the teacher's pseudo-labels by a verifier.

**Verifier.** No pretrained vision-language weights exist on this machine, so the
verifier of (c) is the final model of (a): the same architecture trained supervised-only
on the same labelled images, frozen. It is not an independent VLM; with ``--verifier
clip-openvocab`` (weights installed) the real open-vocabulary verifier is used instead.

**Score.** mIoU over the 5 classes on all pixels of the held-out images, of the model
after the last epoch (no checkpoint selection on the held-out images; the EMA teacher's
score is reported alongside). Mean and standard deviation over ``--seeds``.

    .venv/bin/python bench/bench_training.py --out bench_training.json     # CPU defaults
    .venv/bin/python bench/bench_training.py --device cuda --downscale 2 --tile-size 256 \\
        --crop-size 192 --epochs 30 --seeds 0 1 2 --out gpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rs_reasoner.atomic import write_text_atomic
from rs_reasoner_training.api import train_model
from rs_reasoner_training.data.folder import dubai_training_data

REPO = Path(__file__).resolve().parents[1]
METHODS = {
    "supervised": "(a) supervised only",
    "teacher_student": "(b) teacher-student",
    "purified": "(c) teacher-student + VLM-PP",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (defaults: the full 3 x 3 grid in well under 25 min on 2 CPU
    cores)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "dubai")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.05, 0.10, 0.25])
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    p.add_argument("--split-seed", type=int, default=0, help="held-out split and label order")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--downscale", type=int, default=4, help="shrink images by this factor")
    p.add_argument("--tile-size", type=int, default=96)
    p.add_argument("--crop-size", type=int, default=64, help="random training crop")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--steps-per-epoch", type=int, default=30)
    p.add_argument("--time-budget", type=float, default=240.0, help="cap per run, seconds")
    p.add_argument(
        "--ema-max-decay",
        type=float,
        default=0.99,
        help="teacher EMA decay cap; 0.99 (~100-step horizon) suits the short CPU schedule, "
        "the training default 0.996 suits long runs",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--unlabelled-batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--model", default="unet", choices=["unet", "rs-zeroseg"])
    p.add_argument("--base-channels", type=int, default=16, help="U-Net width")
    p.add_argument("--depth", type=int, default=3, help="U-Net downsamplings")
    p.add_argument("--selection", default="weighted", choices=["weighted", "threshold", "learned"])
    p.add_argument(
        "--verifier",
        default="supervised-a",
        help="'supervised-a' (the final model of (a)), or a verifier choice such as "
        "clip-openvocab or checkpoint:<path>",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: no stalls on busy cores)"
    )
    p.add_argument("--workdir", type=Path, default=None, help="checkpoints (default: temp)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return p.parse_args(argv)


def _final(history: list[dict[str, Any]], key: str) -> float:
    value = history[-1].get(key) if history else None
    return math.nan if value is None else float(value)


def run_budget(args: argparse.Namespace, budget: float, seed: int, work: Path) -> dict[str, Any]:
    """Train (a), (b), (c) for one label budget and seed; their held-out scores."""
    data = dubai_training_data(
        args.root,
        tile_size=args.tile_size,
        downscale=args.downscale,
        val_fraction=args.val_fraction,
        label_budget=budget,
        seed=args.split_seed,
    )
    common = dict(
        model=args.model,
        pretrained=False,
        base_channels=args.base_channels,
        depth=args.depth,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        time_budget_s=args.time_budget,
        batch_size=args.batch_size,
        unlabelled_batch_size=args.unlabelled_batch_size,
        crop_size=args.crop_size,
        lr=args.lr,
        ema_max_decay=args.ema_max_decay,
        selection=args.selection,
        device=args.device,
        seed=seed,
        resume=False,
        progress_bar=False,
    )
    out: dict[str, Any] = {"images": data.summary["images"], "methods": {}}
    runs = {
        "supervised": dict(semi_supervised=False, verifier="none"),
        "teacher_student": dict(verifier="none"),
        "purified": None,  # after (a): its final model may be the verifier
    }
    for name in runs:
        if name == "purified":
            if args.verifier == "supervised-a":
                last = out["methods"]["supervised"]["last_path"]
                runs[name] = dict(verifier=f"checkpoint:{last}")
            else:
                runs[name] = dict(verifier=args.verifier)
        folder = work / f"b{budget:g}-s{seed}-{name}"
        started = time.monotonic()
        result = train_model(data, folder, **common, **runs[name])
        h = result.history
        out["methods"][name] = {
            "miou": _final(h, "miou"),
            "miou_teacher": _final(h, "miou_teacher"),
            "best_miou_on_heldout": result.best_miou,
            "iou": h[-1].get("iou") if h else None,
            "purified_fraction": [x["purified_fraction"] for x in h],
            "rectified_fraction": [x["rectified_fraction"] for x in h],
            "epochs": len(h),
            "steps": sum(x["steps"] for x in h),
            "stopped": result.stopped,
            "seconds": round(time.monotonic() - started, 1),
            "verifier": result.extra.get("verifier"),
            "last_path": str(result.last_path),
        }
        m = out["methods"][name]
        print(
            f"  budget {budget:.0%} seed {seed} {METHODS[name]:<30} mIoU {m['miou']:.4f} "
            f"(teacher {m['miou_teacher']:.4f}) {m['seconds']:.0f}s {result.stopped}",
            flush=True,
        )
    return out


def _cell(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f}±{statistics.stdev(values):.4f}"


def table(results: dict[str, Any], seeds: list[int], key: str) -> str:
    """A text table: one row per budget, one column per method."""
    head = f"{'labelled':<22}" + "".join(f"{METHODS[m]:>32}" for m in METHODS)
    lines = [head, "-" * len(head)]
    for budget, per_seed in results.items():
        images = per_seed[str(seeds[0])]["images"]
        label = f"{budget} ({images['train']}/{images['train'] + images['unlabelled']} img)"
        cells = [
            _cell([per_seed[str(s)]["methods"][m][key] for s in seeds]) for m in METHODS
        ]
        lines.append(f"{label:<22}" + "".join(f"{c:>32}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the grid, print the tables, write JSON."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.root.is_dir():
        print(f"Dubai sample not found at {args.root}; pass --root.", file=sys.stderr)
        return 2
    if args.verifier == "supervised-a":
        verifier_text = (
            "the final model of (a) (same architecture, trained supervised-only on the same "
            "labelled images), frozen; no pretrained VLM weights exist on this machine"
        )
    else:
        verifier_text = args.verifier
    print(f"verifier of (c): {verifier_text}", flush=True)
    started = time.monotonic()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        work = args.workdir or Path(tmp)
        for budget in args.budgets:
            key = f"{budget:.0%}"
            results[key] = {str(s): run_budget(args, budget, s, work) for s in args.seeds}
    elapsed = time.monotonic() - started
    held_out = next(iter(next(iter(results.values())).values()))["images"]["val"]
    print(f"\nheld-out mIoU, final student ({held_out} held-out images, seeds {args.seeds}):")
    print(table(results, args.seeds, "miou"))
    print("\nheld-out mIoU, final EMA teacher:")
    print(table(results, args.seeds, "miou_teacher"))
    print(f"\nverifier of (c): {verifier_text}")
    print(f"total {elapsed / 60:.1f} min on {platform.processor() or platform.machine()}")
    if args.out:
        options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        summary = {
            "options": options,
            "verifier": verifier_text,
            "held_out_images": held_out,
            "results": results,
            "seconds": round(elapsed, 1),
            "torch": torch.__version__,
            "device": args.device,
        }
        write_text_atomic(args.out, json.dumps(summary, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
