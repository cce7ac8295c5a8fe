"""The dock's land-cover fusion in real QGIS against the real backend: a classical model
fine-tuned on the NEON sample (``rs-reasoner train`` into the backend's models folder), a
land-cover map made from the same scene, the ``fuse_land_cover`` the dock sends and what
fusion does to the result."""

from __future__ import annotations

import csv
import subprocess
import uuid
from pathlib import Path

import pytest
from qgis.core import QgsGeometry, QgsRasterLayer, QgsVectorLayer

from rs_reasoner_plugin.errors import InputError
from rs_reasoner_plugin.tasks import RunOutcome
from tests.plugin import test_dock_run
from tests.plugin.conftest import BACKEND_PYTHON, REPO, backend_env
from tests.plugin.helpers import message_texts, parcels_memory_layer, wait_until, write_vector
from tests.plugin.test_land_cover_picker import BARE, NEON, TREE, write_product

pytestmark = pytest.mark.usefixtures("backend")
#: The dock and its run, as the dock's own tests make them.
dock = test_dock_run.dock
run = test_dock_run.run


@pytest.fixture
def trained(backend, shared_data: Path, tmp_path_factory) -> str:
    """A classical model on the NEON parcels (bright/dark), trained by the CLI into the
    models folder the session's backend lists."""
    folder = tmp_path_factory.mktemp("fusion")
    gpkg = write_vector(parcels_memory_layer(shared_data / NEON), folder / "p.gpkg", "parcels")
    name = f"fuse-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [BACKEND_PYTHON, "-m", "rs_reasoner.cli", "train", "--raster", str(shared_data / NEON),
         "--labels", str(gpkg), "--layer", "parcels", "--class-field", "kind", "--name", name,
         "--tile-size", "64", "--no-semi-supervised", "--model", "classical",
         "--quiet"],
        cwd=REPO, env=backend_env(), capture_output=True, text=True, timeout=600, check=True)
    return name


def product_zones(path: Path) -> dict[int, QgsGeometry]:
    """The land-cover raster's regions per code (GDAL's polygonize)."""
    from osgeo import gdal, ogr

    ds = gdal.Open(str(path))
    out = ogr.GetDriverByName("Memory").CreateDataSource("zones")
    layer = out.CreateLayer("zones", srs=ds.GetSpatialRef())
    layer.CreateField(ogr.FieldDefn("code", ogr.OFTInteger))
    band = ds.GetRasterBand(1)
    gdal.Polygonize(band, band.GetMaskBand(), layer, 0)
    parts: dict[int, list[QgsGeometry]] = {}
    for f in layer:
        geom = QgsGeometry()
        geom.fromWkb(bytes(f.GetGeometryRef().ExportToWkb()))
        parts.setdefault(f.GetField("code"), []).append(geom)
    return {code: QgsGeometry.unaryUnion(g) for code, g in parts.items()}


def agreement(outcome: RunOutcome, zones: dict[str, QgsGeometry]) -> float:
    """Area (m²) where the result's class is the product's."""
    written = outcome.written
    assert written is not None, outcome.error
    layer = QgsVectorLayer(f"{written.path}|layername={written.table}", "result", "ogr")
    return sum(f.geometry().intersection(zones[f["label"]]).area()
               for f in layer.getFeatures())


def test_a_fine_tuned_model_is_fused_with_a_land_cover_map(
    trained, dock, shared_data, clean_project, tmp_path
) -> None:
    neon = QgsRasterLayer(str(shared_data / NEON), "NEON OSBS")
    product = QgsRasterLayer(str(write_product(shared_data / NEON, tmp_path / "wc.tif")),
                             "worldcover")
    clean_project.addMapLayers([neon, product])
    dock.layer_combo.setLayer(neon)
    dock.set_area("layer")
    dock.preview_check.setChecked(False)
    box = dock.fuse_box
    assert not dock.fusion_offered  # the mode's default model: nothing to fuse
    task = dock.refresh_status()
    assert task is not None
    wait_until(lambda: dock.status_task is None and dock.model_info(trained) is not None, 60,
               "the dock to list the trained model")
    assert dock.select_model(trained)
    assert dock.fusion_offered and box.user_classes == ["bright", "dark"]
    assert dock.query_combo.currentText() == "bright, dark"
    plain = run(dock, 180)
    assert plain.status == "succeeded", plain.error

    # The product's trees are the dark class, its bare ground the bright one.
    box.add_map(product, "worldcover")
    box.set_mapping("Tree cover", "dark")
    box.set_mapping("Bare / sparse vegetation", "bright")
    spec = dock.build_spec()
    [entry] = spec.params.to_request(raster=spec.raster_path)["options"]["fuse_land_cover"]
    raster, legend, mapping = entry.split(":")
    assert (raster, legend) == (str(tmp_path / "wc.tif"), "worldcover")
    with open(mapping, newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh))[1:] == [["Tree cover", "dark"],
                                            ["Bare / sparse vegetation", "bright"]]
    fused = run(dock, 180)
    assert fused.status == "succeeded", (fused.error, message_texts(dock.iface))
    # Fusion pulls the map towards the product where the model is unsure.
    codes = product_zones(tmp_path / "wc.tif")
    zones = {"dark": codes[TREE], "bright": codes[BARE]}
    assert agreement(fused, zones) > agreement(plain, zones)

    # A map that is not a file is refused (the backend reads maps by path).
    from osgeo import gdal

    mem = f"/vsimem/fuse_{uuid.uuid4().hex}.tif"
    gdal.Translate(mem, str(tmp_path / "wc.tif"))
    try:
        in_memory = QgsRasterLayer(mem, "in memory")
        clean_project.addMapLayer(in_memory)
        box.add_map(in_memory, "worldcover")
        box.set_mapping("Tree cover", "dark")
        with pytest.raises(InputError, match="'in memory' is not a file the backend can read"):
            dock.build_spec()
    finally:
        gdal.Unlink(mem)
    # Another model (not fine-tuned) hides the option and sends none.
    dock.model_combo.setCurrentIndex(0)
    assert not dock.fusion_offered and not box.isVisibleTo(dock.advanced)
    request = dock.build_spec().params.to_request(raster=str(shared_data / NEON))
    assert "fuse_land_cover" not in request["options"]
