"""The ``rs-reasoner`` command: segment, train, serve, models."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from rs_reasoner import __version__
from rs_reasoner.arguments import add_field, add_serve_arguments, serve_options
from rs_reasoner.atomic import check_writable, exit_on_termination_signals
from rs_reasoner.batch.cli import add_batch_parser, run_batch_command
from rs_reasoner.errors import RsReasonerError
from rs_reasoner.schemas import RunOptions, SegmentOptions, SegmentRequest, TrainRequest
from rs_reasoner.schemas import defaults as field_defaults
from rs_reasoner.train_reasoner_cli import add_train_reasoner_parser, run_train_reasoner_command

EPILOG_SEGMENT = """examples:
  rs-reasoner segment scene.tif --query "buildings, roads, water" --out polygons.gpkg
  rs-reasoner segment scene.tif --query "trees" --model index-baseline \\
      --extent 368000 3285000 369000 3286000 --extent-crs EPSG:32617 \\
      --out trees.shp --preview trees.png
The output format follows the extension: .gpkg, .shp or .geojson."""

EPILOG_TRAIN = """examples:
  rs-reasoner train --raster scene.tif --labels parcels.gpkg --class-field crop
  rs-reasoner train --raster scene.tif --labels buildings.shp --class-field kind \\
      --background other --name buildings --epochs 50 --time-budget 30
  rs-reasoner train --images tiles/images --masks tiles/masks --classes classes.csv
Image + mask folders: each mask is named like its image (tile_01.jpg, tile_01.png) and
has its size; classes.csv has one line per mask value, 'VALUE,NAME' for class-id masks or
'#RRGGBB,NAME' for colour masks, NAME '-' for a value to ignore, e.g.:
  #3C1098,building
  #9B9B9B,-
With a raster, --classes names the class field's values instead (e.g. '3,forest').
Before training, the plan is printed: parcels (or images) and tiles per role, the tile
size (smaller on small rasters) and classes absent from validation.
The model is saved in the models folder ($RS_REASONER_MODELS_DIR, default
<user data dir>/rs-reasoner/models) under its name and listed by 'rs-reasoner models list';
the last lines print the command that segments with it. Running the same command again
resumes an interrupted run (Ctrl-C, time limit) from its last finished epoch; a run that
ended keeps only the model it serves, unless --keep-checkpoints."""

#: SegmentOptions fields that ``segment`` has flags for, in the order --help lists them.
_SEGMENT_FLAGS = (
    "bands", "resolution", "score_threshold", "min_area", "simplify", "tile_size", "overlap",
    "instance_mode", "fuse_land_cover", "exact",
)  # fmt: skip


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rs-reasoner",
        description="Segment remote-sensing rasters by description; get georeferenced polygons.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_segment_parser(sub)
    _add_train_parser(sub)
    srv = sub.add_parser(
        "serve",
        help="run the local backend service for the QGIS plugin",
        description="Serve the HTTP API on loopback. A random token is generated at every "
        "start and written, with the port and pid, to the state file the plugin reads.",
    )
    add_serve_arguments(srv)
    _add_models_parser(sub)
    add_batch_parser(sub)
    add_train_reasoner_parser(sub)
    return parser


def _add_segment_parser(sub: argparse._SubParsersAction) -> None:
    seg = sub.add_parser(
        "segment",
        help="segment a raster and write polygons",
        description="Segment a raster for a query and write the polygons to a vector file.",
        epilog=EPILOG_SEGMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    seg.add_argument("raster", help="raster file GDAL can open (GeoTIFF, COG, VRT, ...)")
    add_field(seg, SegmentRequest, "query", "--query", "-q", required=True)
    add_field(seg, SegmentRequest, "mode")
    add_field(seg, SegmentRequest, "model", extra_help="see 'rs-reasoner models list'")
    seg.add_argument(
        "--extent",
        nargs=4,
        type=float,
        metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
        help="area to segment (default: the whole raster)",
    )
    seg.add_argument("--extent-crs", help="CRS of --extent, e.g. EPSG:4326 (default: raster's)")
    for name in _SEGMENT_FLAGS:
        metavar = {"fuse_land_cover": "RASTER[:LEGEND][:MAPPING.csv]"}.get(name)
        add_field(seg, SegmentOptions, name, **({"metavar": metavar} if metavar else {}))
    add_field(seg, SegmentRequest, "output_crs")
    seg.add_argument("--out", "-o", required=True, type=Path, help=".gpkg, .shp or .geojson")
    seg.add_argument("--preview", type=Path, help="also write a PNG of polygons over the image")
    add_field(seg, RunOptions, "device")
    seg.add_argument("--quiet", action="store_true", help="no progress bar")
    seg.add_argument(
        "--verbose", "-v", action="store_true", help="print the job log (e.g. the raw model answer)"
    )


def _add_models_parser(sub: argparse._SubParsersAction) -> None:
    mdl = sub.add_parser("models", help="list, download or check model weights")
    msub = mdl.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    msub.add_parser(
        "list",
        help="list models (built-in and trained here), their modes and whether weights "
        "are present",
    )
    pull = msub.add_parser("pull", help="download a model's weights into the Hugging Face cache")
    pull.add_argument("name")
    ver = msub.add_parser("verify", help="check that a model's weights are present and load")
    ver.add_argument("name", nargs="?", help="default: every model")


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    trn = sub.add_parser(
        "train",
        help="train a model on labelled parcels of a raster, or on image + mask folders",
        description="Train a segmentation model on a raster and polygons labelled with a "
        "class field (--raster, --labels, --class-field), or on a folder of images and a "
        "folder of masks (--images, --masks, --classes); by default several candidates "
        "(a classical learner, U-Net variants) compete on the validation data and the "
        "best is registered under a name for 'rs-reasoner segment --model NAME'.",
        epilog=EPILOG_TRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_field(trn, TrainRequest, "raster")
    add_field(trn, TrainRequest, "labels")
    add_field(trn, TrainRequest, "layer")
    add_field(trn, TrainRequest, "class_field")
    add_field(trn, TrainRequest, "images")
    add_field(trn, TrainRequest, "masks")
    add_field(trn, TrainRequest, "classes", metavar="FILE")
    add_field(trn, TrainRequest, "aoi")
    add_field(trn, TrainRequest, "name", extra_help="default: from --labels or --images")
    add_field(trn, TrainRequest, "background")
    add_field(trn, TrainRequest, "model")
    add_field(trn, TrainRequest, "label_budget")
    add_field(trn, TrainRequest, "val_fraction")
    add_field(trn, TrainRequest, "epochs")
    add_field(
        trn, TrainRequest, "time_budget_s", "--time-budget",
        dest="time_budget", metavar="MINUTES", type=float,
        help="stop after this many minutes of training (counted over resumed runs)",
    )  # fmt: skip
    add_field(
        trn, TrainRequest, "semi_supervised", "--no-semi-supervised", action="store_false",
        help="train on the labelled tiles only (no teacher-student on unlabelled tiles)",
    )  # fmt: skip
    add_field(
        trn, TrainRequest, "verifier", "--no-verifier", action="store_false",
        help="no pseudo-label purification by a verifier model (default: CLIP when its "
        "weights are here, else a model first trained on the labelled tiles only)",
    )  # fmt: skip
    add_field(trn, TrainRequest, "tile_size")
    add_field(trn, TrainRequest, "bands")
    add_field(trn, TrainRequest, "resolution")
    add_field(trn, TrainRequest, "weak_labels", metavar="RASTER[:MAPPING.csv]")
    add_field(trn, RunOptions, "device")
    add_field(trn, TrainRequest, "threads")
    add_field(trn, TrainRequest, "seed")
    add_field(trn, TrainRequest, "keep_checkpoints")
    trn.add_argument(
        "--train-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="advanced training option, repeatable, e.g. base_channels=16, "
        "batch_size=4, lr=0.0005 (values are JSON, else text)",
    )
    trn.add_argument("--quiet", action="store_true", help="no progress bar")


def _parse_options(items: list[str]) -> dict[str, object]:
    import json

    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RsReasonerError(
                f"--train-option {item!r} is not KEY=VALUE.", "Write e.g. --train-option lr=0.0005."
            )
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rs_reasoner import trained_models
    from rs_reasoner.training_run import check_options, check_train_request, run_training

    name = args.name or _default_name(args)
    fields = {key: getattr(args, key) for key in TrainRequest.model_fields if hasattr(args, key)}
    minutes = args.time_budget
    request = TrainRequest(
        **{**fields, "name": name, "time_budget_s": None if minutes is None else minutes * 60}
    )
    source = request.images if request.from_folders else request.raster
    check_train_request(request, str(source))
    options = check_options(_parse_options(args.train_option))
    folder = trained_models.model_folder(name)
    print(f"training model '{name}' in {folder}")
    bar = tqdm(
        total=100, desc="preparing", disable=args.quiet, unit="%",
        bar_format="{desc:24}: {bar} {n:.0f}%",
    )  # fmt: skip
    shown = {"stage": ""}

    def progress(stage: str, fraction: float, message: str | None) -> None:
        # "epoch 3/30" while training; a stage name only when the stage changes.
        if message or stage != shown["stage"]:
            bar.set_description_str(message or stage)
        shown["stage"] = stage
        bar.n = round(100 * fraction)
        bar.refresh()

    try:
        outcome = run_training(
            request,
            str(source),
            device=args.device,
            progress=progress,
            note=tqdm.write,
            options=options,
        )
    except KeyboardInterrupt:
        bar.close()  # before printing, so the message is not drawn over
        if not any(folder.rglob(trained_models.LAST)):
            print("interrupted before the first epoch finished; nothing was saved.",
                  file=sys.stderr)  # fmt: skip
            return 130
        kept = "the best epoch so far is registered; " if trained_models.read_info(folder) else ""
        print(
            f"interrupted: checkpoints are kept in {folder}; {kept}run the same command "
            "again to resume.",
            file=sys.stderr,
        )
        return 130
    finally:
        bar.close()
    info = outcome.info
    classes = list(info["classes"])
    miou = info.get("best_miou")
    score = f"validation mIoU {miou:.3f}" if isinstance(miou, float) else "no validation"
    at = f" at epoch {info['best_epoch']}/{info['epochs']}" if info.get("best_epoch") else ""
    print(
        f"model '{name}' ({info.get('architecture')}): {score}{at} "
        f"({info['stopped']}), classes: {', '.join(classes)}"
    )
    for line in per_class_lines(classes, info.get("per_class_iou") or {}):
        print(line)
    print(f"saved: {folder / str(info.get('checkpoint') or trained_models.BEST)}")
    print(f"use it: {segment_command(name, info, args.bands, args.resolution)}")
    return 0


def _default_name(args: argparse.Namespace) -> str:
    """A model name from the labels file, or from the image folder (its parent's name
    when the folder is called 'images')."""
    from rs_reasoner import trained_models

    if args.images:
        folder = Path(args.images).resolve()
        stem = folder.parent.name if folder.name.lower() == "images" else folder.name
    else:
        stem = Path(args.labels or "model").stem
    return trained_models.sanitise_name(stem)


def per_class_lines(classes: Sequence[str], iou: dict[str, float | None]) -> list[str]:
    """Validation IoU per class, in the model's class order, one line each; a class
    without validation pixels (nor predicted there) has no IoU and says so."""
    if not any(v is not None for v in iou.values()):
        return []
    width = max(len(c) for c in classes)
    lines = ["  validation IoU per class:"]
    for name in classes:
        value = iou.get(name)
        shown = f"{value:.3f}" if value is not None else "not measured (no validation pixels)"
        lines.append(f"    {name:<{width}}  {shown}")
    return lines


def segment_command(
    name: str, info: dict[str, object], bands: Sequence[int] | None, resolution: float | None
) -> str:
    """The command that segments the training raster (or an image of the folders) with the
    model: its classes as the query; bands only for a model trained on a stretched RGB
    (others read their own), the resolution when one was chosen."""
    raster = info.get("raster") or info.get("example_image") or "IMAGE.tif"
    classes = [str(c) for c in info.get("classes") or []]  # type: ignore[union-attr]
    extra = ""
    if bands and not info.get("band_stats"):
        extra += f" --bands {' '.join(map(str, bands))}"
    if resolution:
        extra += f" --resolution {resolution:g}"
    query = _quoted(", ".join(classes))
    return (
        f"rs-reasoner segment {_quoted(str(raster))} --model {name}{extra} --query {query} "
        "--out polygons.gpkg"
    )


def _quoted(text: str) -> str:
    """``text`` as one shell word: as is when plain, in double quotes (which POSIX shells
    and Windows' cmd both read) when it has spaces or commas, else POSIX quoting."""
    if re.fullmatch(r"[\w@%+=:,./-]+", text):
        return text
    if not re.search(r'["$`!]', text) and not text.endswith("\\"):
        return f'"{text}"'
    return shlex.quote(text)


def _segment(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rs_reasoner.pipeline import SegmentationPipeline
    from rs_reasoner.schemas import Extent
    from rs_reasoner.vector.writers import check_output_path, write_vector

    extent = None
    if args.extent:
        xmin, ymin, xmax, ymax = args.extent
        extent = Extent(xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, crs=args.extent_crs)
    elif args.extent_crs:
        raise RsReasonerError("--extent-crs given without --extent.", "Add --extent.")
    # Values equal to the default are left to the schema, which adapts some of them (the
    # overlap to the tile size) when they are not given.
    schema_defaults = field_defaults(SegmentOptions)
    options = {
        key: value
        for key in _SEGMENT_FLAGS
        if (value := getattr(args, key)) != schema_defaults[key]
    }
    request = SegmentRequest(
        raster=str(args.raster),
        extent=extent,
        query=args.query,
        mode=args.mode,
        model=args.model,
        output_crs=args.output_crs,
        options=SegmentOptions(**options),
    )
    check_output_path(args.out)
    if args.preview:
        check_writable(args.preview)
    pipeline = SegmentationPipeline(device=args.device)
    pipeline.validate(request, request.raster)
    bar = tqdm(total=100, disable=args.quiet, unit="%", bar_format="{desc}: {bar} {n:.0f}%")

    def progress(stage: str, fraction: float, message: str | None) -> None:
        bar.set_description_str(stage if not message else f"{stage} ({message})")
        bar.n = round(100 * fraction)
        bar.refresh()

    try:
        result = pipeline.run(request, request.raster, progress=progress)
    finally:
        bar.close()
    write_vector(result.polygons, args.out)
    print(f"{len(result.polygons)} polygons ({result.model}, {result.mode.value}) → {args.out}")
    if result.reasoning:
        print(f"reasoning: {result.reasoning}")
    if args.verbose:
        for line in result.messages:
            print(f"log: {line}")
    if args.preview:
        from rs_reasoner.job_preview import write_job_preview

        write_job_preview(request, result, args.preview)
        print(f"preview → {args.preview}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from rs_reasoner.service.server import serve

    serve(**serve_options(args))
    return 0


def _models(args: argparse.Namespace) -> int:
    from rs_reasoner import weights
    from rs_reasoner.segmenters import registry
    from rs_reasoner.segmenters.hub_weights import TRAINING_WEIGHTS

    if args.models_command == "list":
        for spec in registry.specs():
            defaults = ",".join(m.value for m in spec.default_for) or "-"
            if "trained" in spec.tags:
                status = "trained here"
            elif spec.weights:
                present = all(weights.is_available(w) for w in spec.weights)
                status = "weights present" if present else "weights missing"
            else:
                status = "no weights needed"
            print(f"{spec.name:24} {','.join(m.value for m in spec.modes):28} "
                  f"default for: {defaults:28} {status}")
            print(f"{'':24} {spec.description}")
            if spec.classes is not None:
                print(f"{'':24}   classes: {', '.join(spec.classes)}")
            for w in spec.weights:
                print(f"{'':24}   {w.repo_id}{'/' + w.filename if w.filename else ''}"
                      f"  ({w.purpose or 'weights'})")
        return 0
    if args.models_command == "pull":
        needed = registry.weights_for(args.name)  # a model's, or training's backbones
        if not needed:
            print(f"{args.name} needs no weights.")
        for w in needed:
            path = weights.resolve(w, args.name, allow_download=True)
            print(f"{w.repo_id}: {path}")
        return 0
    names = [args.name] if args.name else [s.name for s in registry.specs()]
    failed = 0
    for name in names:
        # What `models pull NAME` fetched: a model's weights, or training's backbones
        # (rs-zeroseg), which are checked for presence only: no model of that name loads.
        needed = registry.weights_for(name)
        is_model = name not in TRAINING_WEIGHTS or name in registry.registered_names()
        try:
            for w in needed:
                weights.resolve(w, name)
            if args.name and is_model:  # loading every model at once could exhaust GPU memory
                registry.create(registry.get_spec(name), device="cpu").close()
            print(f"{name}: ok")
        except RsReasonerError as exc:
            failed += 1
            print(f"{name}: {exc}", file=sys.stderr)
    return 1 if failed else 0


def _format_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


#: Numbers argparse would take for flags ("-1e30", "-inf"; it knows only "-5" and "-.5").
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^-(inf|infinity|nan)$", re.I)


def _negative_numbers_as_values(argv: Sequence[str]) -> list[str]:
    """``--extent -1e30 0 1 2``: a leading space makes argparse read a negative number as
    a value, not a flag; ``float()`` and ``int()`` ignore the space."""
    return [f" {arg}" if _NEGATIVE_NUMBER.match(arg) else arg for arg in argv]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rs-reasoner`` console script.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        Exit status: 0 ok, 1 failure, 2 user error.
    """
    args = _build_parser().parse_args(
        _negative_numbers_as_values(sys.argv[1:] if argv is None else argv)
    )
    handlers = {
        "segment": _segment, "train": _train, "serve": _serve, "models": _models,
        "batch": run_batch_command, "train-reasoner": run_train_reasoner_command,
    }  # fmt: skip
    try:
        with exit_on_termination_signals():  # SIGTERM/SIGHUP clean up like Ctrl-C
            return handlers[args.command](args)
    except RsReasonerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"error: {_format_validation(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no output written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left early (``models list | head``): not an error worth a traceback.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
