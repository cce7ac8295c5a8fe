#!/usr/bin/env python3
"""Build the QGIS plugin zip that "Plugins ▸ Install from ZIP" accepts.

The zip holds one folder, ``rs_reasoner_plugin/``, with the plugin's code, icon, licence and
the top-level ``metadata.txt`` copied in (QGIS reads it from the plugin folder). Caches and
compiled files are left out. Standard library only.

    python3 scripts/build_plugin.py [--out dist]   # → dist/rs_reasoner_plugin-<version>.zip
"""

from __future__ import annotations

import argparse
import configparser
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "rs_reasoner_plugin"
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".swp"}
#: Fields the official plugin repository requires in metadata.txt.
REQUIRED = ("name", "qgisMinimumVersion", "description", "about", "version", "author",
            "email", "repository")


def read_metadata(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep qgisMinimumVersion's case
    parser.read(path, encoding="utf-8")
    if not parser.has_section("general"):
        raise SystemExit(f"error: {path} has no [general] section")
    meta = dict(parser["general"])
    missing = [k for k in REQUIRED if not meta.get(k, "").strip()]
    if missing:
        raise SystemExit(f"error: {path} lacks required fields: {', '.join(missing)}")
    return meta


def plugin_files(src: Path) -> list[Path]:
    out = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix not in SKIP_SUFFIXES:
            out.append(path)
    return out


def build(out_dir: Path) -> Path:
    src = REPO / PACKAGE
    metadata = REPO / "metadata.txt"
    meta = read_metadata(metadata)
    icon = meta.get("icon", "")
    if icon and not (src / icon).is_file():
        raise SystemExit(f"error: metadata icon {icon!r} is not in {src}")
    for needed in ("__init__.py", "LICENSE"):
        if not (src / needed).is_file():
            raise SystemExit(f"error: {src / needed} is missing")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{PACKAGE}-{meta['version']}.zip"
    tmp = target.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(metadata, f"{PACKAGE}/metadata.txt")
        for path in plugin_files(src):
            rel = path.relative_to(src).as_posix()
            if rel == "metadata.txt":
                continue
            zf.write(path, f"{PACKAGE}/{rel}")
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output folder")
    args = parser.parse_args(argv)
    target = build(args.out)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
