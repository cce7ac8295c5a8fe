"""SIGKILL a process that rewrites an output over and over; count what a reader finds.

For each format a forked child rewrites ``result.<ext>`` with a 40-feature layer and a
3-feature layer in turn; the parent kills it with SIGKILL after a random delay, reads the
output as a user would, then lets :func:`~rs_reasoner.atomic.sweep_litter` (what the next
write in that folder does first) finish any cut swap and reads it again. ``--slow-rename``
makes every rename take that long in the child (a slow network disk), so kills land inside
the shapefile swap far more often than on a local disk.

    .venv/bin/python bench/bench_sigkill_writes.py --kills 100
    .venv/bin/python bench/bench_sigkill_writes.py --kills 100 --slow-rename 0.03
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path

import geopandas as gpd
from shapely.geometry import box

from rs_reasoner.atomic import sweep_litter
from rs_reasoner.vector import write_vector

FORMATS = (".gpkg", ".shp", ".geojson", ".fgb")


def layer(n: int, label: str) -> gpd.GeoDataFrame:
    x0, y0 = 500_000, 4_000_000
    geoms = [box(x0 + 10 * i, y0, x0 + 10 * i + 5 + i % 3, y0 + 7) for i in range(n)]
    return gpd.GeoDataFrame({"label": [label] * n, "n": range(n)}, geometry=geoms,
                            crs="EPSG:32633")  # fmt: skip


def signature(path: Path) -> tuple | None:
    """What a reader sees: None when it cannot read the file or finds a broken layer."""
    try:
        gdf = gpd.read_file(path)
    except Exception:  # noqa: BLE001 - any read failure counts as corrupt
        return None
    if gdf.geometry.isna().any() or gdf.geometry.is_empty.any():
        return None
    return len(gdf), tuple(sorted(set(gdf["label"]))), round(float(gdf.geometry.area.sum()), 6)


def rewrite_forever(out: str, layers: list[gpd.GeoDataFrame], slow_rename: float) -> None:
    if slow_rename > 0:
        real = os.replace

        def slow(src, dst) -> None:  # noqa: ANN001 - os.replace's arguments
            time.sleep(slow_rename)
            real(src, dst)

        os.replace = slow
    while True:
        for item in layers:
            write_vector(item, out)


def run(ext: str, kills: int, slow_rename: float, seed: int) -> dict[str, int]:
    old, new = layer(3, "old"), layer(40, "new")
    counts = {"old": 0, "new": 0, "absent, finished by the next write": 0,
              "mixed or unreadable": 0, "litter left after the next write": 0}  # fmt: skip
    rng = random.Random(seed)
    fork = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"result{ext}"
        write_vector(new, out)
        sig_new = signature(out)
        write_vector(old, out)
        expected = {signature(out): "old", sig_new: "new"}
        for _ in range(kills):
            child = fork.Process(target=rewrite_forever, args=(str(out), [new, old], slow_rename))
            child.start()
            time.sleep(rng.uniform(0.01, 0.3))
            os.kill(child.pid, signal.SIGKILL)
            child.join()
            if out.exists():  # a reader right after the kill
                seen = expected.get(signature(out), "mixed or unreadable")
            else:
                seen = "absent, finished by the next write"
            sweep_litter(tmp)
            if seen != "mixed or unreadable" and expected.get(signature(out)) is None:
                seen = "mixed or unreadable"  # the sweep must leave one whole set
            counts[seen] += 1
            litter = list(Path(tmp).glob(".rs-reasoner-*"))
            counts["litter left after the next write"] += bool(litter)
            for path in litter:  # start the next kill from a clean folder
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            if seen == "mixed or unreadable":
                write_vector(old, out)  # start the next kill from a whole set
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs per format")
    parser.add_argument("--slow-rename", type=float, default=0.0, help="seconds per rename")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = {ext: run(ext, args.kills, args.slow_rename, args.seed) for ext in FORMATS}
    print(json.dumps({"kills_per_format": args.kills, "slow_rename_s": args.slow_rename,
                      "results": results}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
