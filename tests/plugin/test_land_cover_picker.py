"""Land-cover maps in the fine-tune dialog, in real QGIS: products made from the NEON
sample's real pixels (block brightness at a 10x coarser grid, coded as ESA WorldCover),
their legends and mapping tables, the mapping files and ``weak_labels`` the dialog sends,
the refusals, and a training run against the real backend."""

from __future__ import annotations

import csv
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QEvent

from rs_reasoner_plugin.api_client import ApiClient
from rs_reasoner_plugin.errors import InputError
from rs_reasoner_plugin.land_cover_classes import MAPPING_HEADER, LandCoverError
from rs_reasoner_plugin.land_cover_export import write_sources
from rs_reasoner_plugin.land_cover_legends import BUILTIN_LEGENDS
from rs_reasoner_plugin.land_cover_picker import IGNORE_TEXT
from rs_reasoner_plugin.train_dialog import TrainDialog
from rs_reasoner_plugin.train_task import TrainOutcome
from tests.plugin.conftest import BACKEND_PYTHON, REPO, backend_env
from tests.plugin.helpers import message_texts, parcels_memory_layer, wait_until, write_vector

NEON = "neon_osbs_rgb_10cm_utm17n.tif"
SLOVENIA_NDVI = "slovenia/slovenia_ndvi_68dates_utm33n.tif"
#: WorldCover codes the NEON product uses: dark blocks are trees, bright ones bare ground.
TREE, BARE = 10, 60
WORLDCOVER_RGB = {TREE: (0, 100, 0), BARE: (180, 180, 180)}


def write_product(neon_path: Path, out: Path, factor: int = 10, shift_m: float = 0.0,
                  colours: bool = True, names: list[str] | None = None) -> Path:
    """A land-cover raster of the NEON scene: each ``factor`` x ``factor`` block of the
    real image is TREE where darker than the median block, else BARE (ESA WorldCover
    codes and palette, optionally its category names); ``shift_m`` moves it east."""
    src = gdal.Open(str(neon_path))
    x0, px, _, y0, _, py = src.GetGeoTransform()
    bright = src.ReadAsArray().astype(float).mean(axis=0)
    rows, cols = bright.shape[0] // factor, bright.shape[1] // factor
    blocks = bright[:rows * factor, :cols * factor].reshape(rows, factor, cols, factor)
    means = blocks.mean(axis=(1, 3))
    codes = np.where(means > np.median(means), BARE, TREE).astype(np.uint8)
    ds = gdal.GetDriverByName("GTiff").Create(str(out), cols, rows, 1, gdal.GDT_Byte)
    ds.SetGeoTransform((x0 + shift_m, px * factor, 0.0, y0, 0.0, py * factor))
    ds.SetProjection(src.GetProjection())
    band = ds.GetRasterBand(1)
    band.SetNoDataValue(0)
    if colours:
        table = gdal.ColorTable()
        for code, rgb in WORLDCOVER_RGB.items():
            table.SetColorEntry(code, (*rgb, 255))
        band.SetRasterColorTable(table)
    if names:
        band.SetCategoryNames(names)
    # Pixels after the colour table: GDAL 3.10+ cannot set a TIFF's photometric tag (palette)
    # once data is written.
    band.WriteArray(codes)
    band = ds = None  # closing writes the category names (GDAL keeps them in .aux.xml)
    return out


@pytest.fixture
def neon(shared_data: Path, clean_project) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(shared_data / NEON), "NEON OSBS")
    assert layer.isValid()
    clean_project.addMapLayer(layer)
    return layer


@pytest.fixture
def parcels(neon, clean_project) -> QgsVectorLayer:
    layer = parcels_memory_layer(Path(neon.source()))
    clean_project.addMapLayer(layer)
    return layer


@pytest.fixture
def product(neon, clean_project, tmp_path: Path) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(write_product(Path(neon.source()), tmp_path / "wc.tif")),
                           "worldcover 2021")
    assert layer.isValid()
    clean_project.addMapLayer(layer)
    return layer


@pytest.fixture
def dialog(iface, clean_project, plugin_settings) -> Any:
    d = TrainDialog(iface, None, iface.mainWindow())
    yield d
    if d.task is not None:
        d.task.cancel()
        wait_until(lambda: d.task is None, 60, "the training task to stop")
    d.shutdown()
    d.deleteLater()
    QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)


def table_rows(d: TrainDialog) -> list[tuple[str, str]]:
    """(product class, chosen user class) as the table shows them."""
    table = d.land_cover.table
    return [(table.item(r, 0).text(), table.cellWidget(r, 1).currentText())
            for r in range(table.rowCount())]


def csv_rows(path: str) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [tuple(r) for r in csv.reader(fh)]


def test_the_built_in_legends_are_the_backend_s(qgis_app) -> None:
    import subprocess

    if not os.path.isfile(BACKEND_PYTHON):
        pytest.skip(f"backend interpreter {BACKEND_PYTHON} is missing (run 'make venv')")
    script = ("import json\ntry:\n    from rs_reasoner.landcover.legends import LEGENDS\n"
              "except ImportError:\n    from rs_reasoner_training.weak.legends import LEGENDS\n"
              "print(json.dumps({v.name: [v.title, {str(k): n for k, n in v.classes.items()}, "
              "{str(k): c for k, c in v.colours.items()}] for v in LEGENDS.values()}))")
    out = subprocess.run([BACKEND_PYTHON, "-c", script], capture_output=True, text=True,
                         cwd=REPO, env=backend_env(), timeout=120, check=True).stdout
    training = json.loads(out)
    plugin = {legend.name: [legend.title, {str(k): n for k, n in legend.classes.items()},
                            {str(k): c for k, c in legend.colours.items()}]
              for legend in BUILTIN_LEGENDS}
    assert plugin == training


def test_mapping_table_becomes_the_mapping_file_the_request_names(
    dialog, neon, parcels, product, tmp_path
) -> None:
    dialog.set_layers(neon, parcels, "kind")
    picker = dialog.land_cover
    assert picker.user_classes == ["bright", "dark"]
    # Drawn in WorldCover's palette: the legend is recognised when the layer is chosen.
    picker.layer_combo.setLayer(product)
    assert picker.legend_combo.currentData() == "worldcover"
    picker.add_button.click()
    assert [m.layer for m in picker.maps] == [product]
    assert picker.maps_list.item(0).text() == "worldcover 2021 — ESA WorldCover"
    rows = table_rows(dialog)
    assert [r[0] for r in rows][:3] == ["10 Tree cover", "20 Shrubland", "30 Grassland"]
    assert len(rows) == 11 and {r[1] for r in rows} == {IGNORE_TEXT}  # no equal names
    combo = picker.table.cellWidget(0, 1)
    assert [combo.itemText(i) for i in range(combo.count())] == [IGNORE_TEXT, "bright", "dark"]
    picker.set_mapping("Tree cover", "dark")
    picker.set_mapping("Bare / sparse vegetation", "bright")
    picker.set_mapping("Built-up", "bright")
    assert ("60 Bare / sparse vegetation", "bright") in table_rows(dialog)

    dialog.name_edit.setText("weak")
    spec, warnings = dialog.build_spec()
    assert warnings == []
    [source] = spec.land_cover
    assert source.raster_path == os.path.abspath(product.source())
    specs = write_sources(spec.land_cover, str(tmp_path))
    request = spec.request(weak_labels=specs)
    [entry] = request["weak_labels"]
    raster, legend, mapping = entry.split(":")
    assert (raster, legend) == (source.raster_path, "worldcover")
    # The file holds the table's choices, in table order, under a header.
    assert csv_rows(mapping) == [MAPPING_HEADER, ("Tree cover", "dark"),
                                 ("Built-up", "bright"),
                                 ("Bare / sparse vegetation", "bright")]

    # A class no longer in the class field is dropped from the mapping.
    parcels.selectByExpression("\"kind\" = 'dark'")
    dialog.selected_check.setChecked(True)
    assert picker.user_classes == ["dark"]
    assert picker.maps[0].rows() == [("Tree cover", "dark")]
    dialog.selected_check.setChecked(False)
    # Removing the map: nothing is sent.
    picker.remove_map(0)
    spec, _ = dialog.build_spec()
    assert spec.land_cover == [] and "weak_labels" not in spec.request()


def test_the_raster_s_own_classes_are_its_codes_named_by_its_categories(
    dialog, neon, parcels, clean_project, tmp_path
) -> None:
    names = [""] * 61
    names[TREE], names[BARE] = "dark", "open ground"  # one named like a user class
    path = write_product(Path(neon.source()), tmp_path / "own.tif", colours=False,
                         names=names)
    own = QgsRasterLayer(str(path), "national map")
    clean_project.addMapLayer(own)
    dialog.set_layers(neon, parcels, "kind")
    picker = dialog.land_cover
    picker.layer_combo.setLayer(own)
    assert picker.legend_combo.currentData() is None  # no known palette: its own classes
    picker.add_map(own, None)
    assert table_rows(dialog) == [("10 dark", "dark"), ("60 open ground", IGNORE_TEXT)]
    picker.set_mapping("60", "bright")
    dialog.name_edit.setText("own")
    spec, _ = dialog.build_spec()
    [entry] = write_sources(spec.land_cover, str(tmp_path))
    raster, mapping = entry.split(":")
    assert raster == str(path) and csv_rows(mapping)[1:] == [("10", "dark"), ("60", "bright")]


def test_a_layer_that_is_not_a_file_is_written_over_the_training_raster(
    dialog, neon, parcels, clean_project, tmp_path
) -> None:
    path = write_product(Path(neon.source()), tmp_path / "wc.tif")
    mem = f"/vsimem/land_cover_{uuid.uuid4().hex}.tif"
    gdal.Translate(mem, str(path))
    try:
        layer = QgsRasterLayer(mem, "in memory")
        assert layer.isValid()
        clean_project.addMapLayer(layer)
        dialog.set_layers(neon, parcels, "kind")
        dialog.land_cover.add_map(layer, "worldcover")
        dialog.land_cover.set_mapping("Tree cover", "dark")
        dialog.name_edit.setText("mem")
        spec, _ = dialog.build_spec()
        [source] = spec.land_cover
        assert source.raster_path is None and source.raster_export is not None
        (tmp_path / "out").mkdir()
        [entry] = write_sources(spec.land_cover, str(tmp_path / "out"))
    finally:
        gdal.Unlink(mem)
    raster, legend, _mapping = entry.split(":")
    assert Path(raster).parent == tmp_path / "out" and legend == "worldcover"
    written, original = gdal.Open(raster), gdal.Open(str(path))
    assert np.array_equal(written.ReadAsArray(), original.ReadAsArray())
    assert written.GetGeoTransform() == pytest.approx(original.GetGeoTransform())


def test_unusable_land_cover_maps_are_refused_with_what_to_fix(
    dialog, neon, parcels, product, shared_data, clean_project, tmp_path
) -> None:
    dialog.set_layers(neon, parcels, "kind")
    dialog.name_edit.setText("refused")
    picker = dialog.land_cover
    # A measurement (NDVI, float with fractions) is not a land-cover map.
    ndvi = QgsRasterLayer(str(shared_data / SLOVENIA_NDVI), "ndvi")
    assert ndvi.isValid()
    clean_project.addMapLayer(ndvi)
    picker.layer_combo.setLayer(ndvi)
    picker.add_button.click()
    assert picker.maps == [] and "is continuous" in picker.note_label.text()
    with pytest.raises(LandCoverError, match="not a land-cover map"):
        picker.add_map(ndvi, None)
    # Nothing mapped.
    picker.add_map(product, "worldcover")
    with pytest.raises(LandCoverError, match="already a land-cover map"):
        picker.add_map(product, "corine")
    with pytest.raises(InputError, match="No class of land-cover map 'worldcover 2021' is "
                                         "mapped to one of the classes of field 'kind'"):
        dialog.build_spec()
    picker.set_mapping("Tree cover", "dark")
    assert dialog.build_spec()[0].land_cover
    # A map of another place (moved 10 km east).
    away = QgsRasterLayer(str(write_product(Path(neon.source()), tmp_path / "away.tif",
                                            shift_m=10_000.0)), "elsewhere")
    clean_project.addMapLayer(away)
    picker.add_map(away, "worldcover")
    picker.set_mapping("Tree cover", "dark")
    with pytest.raises(InputError, match="'elsewhere' does not overlap raster 'NEON OSBS'"):
        dialog.build_spec()
    # The refusal reaches the user as one message-bar warning; no job starts.
    assert dialog.start_training() is None and dialog.task is None
    assert any("does not overlap" in t for t in message_texts(dialog.iface))


def test_the_backend_reads_the_land_cover_map_the_dialog_sends(
    backend, dialog, iface, neon, product, clean_project, tmp_path
) -> None:
    """The request carries the validation fraction and the weak labels; the backend reads
    the product with the mapping file and reports its agreement with the parcels (before
    any training, which this test does not wait for: it cancels)."""
    gpkg = write_vector(parcels_memory_layer(Path(neon.source())), tmp_path / "p.gpkg",
                        "parcels")
    parcels = QgsVectorLayer(f"{gpkg}|layername=parcels", "parcels", "ogr")
    clean_project.addMapLayer(parcels)
    dialog.set_layers(neon, parcels, "kind")
    dialog.name_edit.setText(f"weak-{uuid.uuid4().hex[:8]}")
    dialog.epochs_spin.setValue(1)
    dialog.tile_spin.setValue(64)
    dialog.semi_check.setChecked(False)
    dialog.val_spin.setValue(30)
    dialog.land_cover.add_map(product, "worldcover")
    dialog.land_cover.set_mapping("Tree cover", "dark")
    dialog.land_cover.set_mapping("Bare / sparse vegetation", "bright")
    client = ApiClient(backend.url, backend.token)
    outcomes: list[TrainOutcome] = []
    dialog.trainingFinished.connect(outcomes.append)
    task = dialog.start_training()
    assert task is not None, message_texts(iface)
    wait_until(lambda: bool(outcomes) or task.outcome.job_id is not None, 60,
               "the job to be submitted")
    assert not outcomes, outcomes[0].error
    request = task.outcome.request
    assert request["val_fraction"] == 0.3
    [entry] = request["weak_labels"]
    raster, legend, mapping = entry.split(":")
    assert (raster, legend) == (os.path.abspath(product.source()), "worldcover")
    assert csv_rows(mapping)[1:] == [("Tree cover", "dark"), ("Bare / sparse vegetation",
                                                              "bright")]

    def messages() -> list[str]:
        return [str(m) for m in client.job(task.outcome.job_id).get("messages") or []]

    wait_until(lambda: bool(outcomes) or any("wc: kappa" in m for m in messages()), 120,
               "the backend's agreement report of the land-cover map")
    assert not outcomes, outcomes[0].error
    lines = messages()
    assert any("weak labels: agreement with the training parcels" in m for m in lines), lines
    dialog.cancel_button.click()
    wait_until(lambda: bool(outcomes), 120, "the cancelled training to end")
    assert outcomes[0].status in ("cancelled", "succeeded"), outcomes[0].error
