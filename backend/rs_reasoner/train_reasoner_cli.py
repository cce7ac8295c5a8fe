"""``rs-reasoner train-reasoner``: fine-tune the reasoning prompter on your own questions.

Examples are a polygon layer over a raster (``--query-field`` with a question per polygon,
or one ``--query``) or an EarthReason-style folder (no ``--raster``). GRPO options left
out take the trainer's defaults (the published Think2Seg-RS run where known). The run
resumes when the same command is given again (after Ctrl-C, a time budget or a kill).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: GRPO options with their own flag (help and bounds from the request schema; the
#: defaults live in the trainer).
_GRPO_FIELDS = ("group_size", "kl_coef", "lr", "max_new_tokens", "steps")


def add_train_reasoner_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``train-reasoner`` subcommand."""
    from rs_reasoner.arguments import add_field
    from rs_reasoner.schemas import ReasonerTrainRequest as R

    p = sub.add_parser(
        "train-reasoner",
        help="fine-tune the reasoning prompter on your questions (GRPO, mask IoU reward)",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    add_field(p, R, "examples", required=True)
    add_field(p, R, "raster")
    add_field(p, R, "layer")
    add_field(p, R, "query_field")
    add_field(p, R, "query")
    add_field(p, R, "name", required=False, default=None,
              help="model name (default: from --examples)")  # fmt: skip
    add_field(p, R, "base_prompter", "--base")
    add_field(p, R, "sam_variant", "--sam")
    add_field(p, R, "sam_checkpoint")
    add_field(p, R, "holdout_fraction")
    add_field(p, R, "negatives")
    for key in _GRPO_FIELDS:
        add_field(p, R, key)
    p.add_argument("--time-budget", type=float, metavar="MINUTES",
                   help="stop (and register the adapter) after this many minutes")
    p.add_argument("--device", default="auto", help="torch device (default: CUDA if present)")
    p.add_argument("--train-option", action="append", default=[], metavar="KEY=VALUE",
                   help="other GRPO option, repeatable (e.g. temperature=1.0, lora_r=16)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def run_train_reasoner_command(args: argparse.Namespace) -> int:
    """Run ``train-reasoner``; returns the exit status."""
    from rs_reasoner.device import resolve_device
    from rs_reasoner.errors import InvalidRequestError, JobCancelled
    from rs_reasoner.reasoner_run import run_reasoner_training
    from rs_reasoner.segmenters import registry
    from rs_reasoner.trained_models import check_name, sanitise_name

    name = args.name or sanitise_name(Path(args.examples).stem + "-reasoner")
    check_name(name, registry.registered_names())
    options: dict[str, Any] = {}
    for item in args.train_option:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidRequestError(f"--train-option {item!r} is not KEY=VALUE.")
        options[key.strip()] = _option_value(value)
    for key in _GRPO_FIELDS:
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.time_budget is not None:
        options["time_budget_s"] = 60.0 * args.time_budget
    for key in ("raster", "layer", "query_field", "query", "base_prompter", "sam_variant",
                "sam_checkpoint", "holdout_fraction", "negatives"):  # fmt: skip
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)

    def progress(stage: str, fraction: float, message: str | None) -> None:
        if message and not args.quiet:
            print(f"{stage}: {message}", flush=True)

    try:
        info = run_reasoner_training(
            name, args.examples, device=resolve_device(args.device), progress=progress,
            **options,
        )  # fmt: skip
    except (JobCancelled, KeyboardInterrupt):
        print(f"stopped; the adapter so far is registered as '{name}' if one was saved; "
              "run the same command to resume", file=sys.stderr)  # fmt: skip
        return 130
    before, after = info.get("heldout_iou_before"), info.get("heldout_iou_after")
    scores = ""
    if isinstance(before, int | float) and isinstance(after, int | float):
        scores = f"; held-out mean IoU {before:.3f} -> {after:.3f}"
    print(f"model '{name}' registered ({info['stopped']}, {info['steps']} steps{scores}); "
          f"use: rs-reasoner segment RASTER --mode reasoning --model {name} --query ...")
    return 0
