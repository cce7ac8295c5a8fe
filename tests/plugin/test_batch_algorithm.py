"""The batch Processing algorithm, in real QGIS, on the NEON sample cut into 4 rasters."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from qgis.core import QgsRasterLayer, QgsVectorLayer

import rs_reasoner_plugin
from tests.plugin.conftest import BACKEND_PYTHON, backend_env

ALG = "rsreasoner:batch_segment"
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NEON = DATA / "neon_osbs_rgb_10cm_utm17n.tif"


@pytest.fixture
def provider(iface, plugin_settings) -> Any:
    plugin_settings.python_path = BACKEND_PYTHON
    plugin_settings.save()
    plugin = rs_reasoner_plugin.classFactory(iface)
    plugin.initProcessing()
    yield plugin.provider
    plugin.unload()


def _tiles(folder: Path) -> list[str]:
    """gdal_translate the sample into 4 tiles (QGIS's GDAL; edges inside work units)."""
    paths = []
    for name, (x, y, w, h) in {"a": (0, 0, 230, 170), "b": (230, 0, 170, 170),
                               "c": (0, 170, 230, 230), "d": (230, 170, 170, 230)}.items():
        out = folder / f"{name}.tif"
        subprocess.run(["gdal_translate", "-q", "-srcwin", str(x), str(y), str(w), str(h),
                        str(NEON), str(out)], check=True)  # fmt: skip
        paths.append(str(out))
    return paths


def test_batch_algorithm_loads_the_single_extent_result(provider, tmp_path: Path) -> None:
    import processing

    layers = [QgsRasterLayer(p, Path(p).stem) for p in _tiles(tmp_path)]
    assert all(layer.isValid() for layer in layers)
    folder, out = tmp_path / "batch", tmp_path / "trees.gpkg"
    result = processing.run(ALG, {
        "INPUTS": layers, "QUERY": "trees", "MODEL": "index-baseline", "WORKERS": 0,
        "FOLDER": str(folder), "OUTPUT": str(out),
    })  # fmt: skip
    layer = QgsVectorLayer(result["OUTPUT"], "merged", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32617"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {u["status"] for u in manifest["units"]} == {"done"} and manifest["merged"]
    # The same query on the original raster by the backend's own 'segment' command.
    single = tmp_path / "single.gpkg"
    subprocess.run([BACKEND_PYTHON, "-m", "rs_reasoner.cli", "segment", str(NEON),
                    "--query", "trees", "--model", "index-baseline", "--out", str(single),
                    "--device", "cpu", "--quiet"],
                   check=True, env=backend_env())  # fmt: skip
    want = QgsVectorLayer(str(single), "single", "ogr")
    assert layer.featureCount() == want.featureCount() > 0
    assert abs(sum(f["area"] for f in layer.getFeatures())
               - sum(f["area"] for f in want.getFeatures())) < 1e-6  # fmt: skip


def test_batch_without_backend_python_is_a_clear_error(iface, plugin_settings, tmp_path) -> None:
    import processing
    from qgis.core import QgsProcessingException

    plugin = rs_reasoner_plugin.classFactory(iface)
    plugin.initProcessing()
    try:
        with pytest.raises(QgsProcessingException, match="backend's Python"):
            processing.run(ALG, {"INPUTS": [str(NEON)], "QUERY": "trees",
                                 "FOLDER": str(tmp_path / "b"), "OUTPUT": str(tmp_path / "o.gpkg")})
    finally:
        plugin.unload()
