"""One request builder for the dock and the Processing algorithm: its rules, and the same
request from both for the same choices on a real raster (by path and uploaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QEvent

from rs_reasoner_plugin.dock import SegmentDock
from rs_reasoner_plugin.params import MODE_VALUES, Extent
from rs_reasoner_plugin.processing.segment_algorithm import SegmentByDescriptionAlgorithm
from rs_reasoner_plugin.raster_export import ExportJob
from rs_reasoner_plugin.run_request import ChoiceError, RunChoices, build_request
from rs_reasoner_plugin.settings import PluginSettings

MODELS = {"open_vocabulary": "index-baseline", "reasoning": ""}


# -- the rules ---------------------------------------------------------------------------


def test_export_resolution_is_the_chosen_then_the_native_then_the_view_s() -> None:
    def res(chosen: float, native: float | None, view: float | None) -> float | None:
        built = build_request(RunChoices("water", resolution=chosen), by_path=False,
                              native_resolution=native, view_resolution=view)
        return built.export_resolution

    assert res(2.0, 0.5, 3.0) == 2.0
    assert res(0.0, 0.5, 3.0) == 0.5
    assert res(0.0, None, 3.0) == 3.0
    assert res(0.0, None, None) is None  # the export then asks for a resolution


def test_by_path_the_backend_gets_extent_and_resolution_uploaded_the_export_applies_them(
) -> None:
    extent = Extent(1.0, 2.0, 3.0, 4.0)
    choices = RunChoices(" water ", resolution=2.0)
    by_path = build_request(choices, by_path=True, extent=extent, native_resolution=0.5)
    assert by_path.export_resolution is None
    body = by_path.params.to_request(raster="x.tif")
    assert body["query"] == "water"
    assert body["options"]["resolution"] == 2.0 and body["extent"]["xmin"] == 1.0
    uploaded = build_request(choices, by_path=False, extent=extent, native_resolution=0.5)
    body = uploaded.params.to_request(upload_id="u")
    assert "resolution" not in body["options"] and "extent" not in body
    assert uploaded.export_resolution == 2.0


def test_model_choice_and_the_settings_default_per_mode() -> None:
    def model(mode: str, typed: str = "") -> str | None:
        choices = RunChoices("water", mode=mode, model=typed)
        return build_request(choices, by_path=True, default_models=MODELS).params.model

    assert model("open_vocabulary") == "index-baseline"
    assert model("reasoning") is None and model("auto") is None
    assert model("open_vocabulary", " mine ") == "mine"


def test_a_tile_size_alone_leaves_the_overlap_to_the_backend() -> None:
    built = build_request(RunChoices("water", tile_size=128), by_path=True)
    options = built.params.to_request(raster="x.tif")["options"]
    assert options["tile_size"] == 128 and "overlap" not in options
    assert "tile_size" not in build_request(RunChoices("water"), by_path=True).params.options \
        .to_json()


@pytest.mark.parametrize(("choices", "message"), [
    (RunChoices("   "), "Type what to segment"),
    (RunChoices("water", bands="4 3"), "1 or 3 band numbers"),
    (RunChoices("water", bands="red"), "bands must be numbers"),
])
def test_unusable_choices_say_what_to_change(choices: RunChoices, message: str) -> None:
    with pytest.raises(ChoiceError, match=message):
        build_request(choices, by_path=True)


# -- the dock and Processing agree -------------------------------------------------------


@pytest.fixture
def raster(clean_project, shared_data: Path) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(shared_data / "neon_osbs_rgb_10cm_utm17n.tif"), "neon")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


@pytest.fixture
def dock(iface, clean_project, plugin_settings) -> Any:
    d = SegmentDock(iface, None, iface.mainWindow())
    yield d
    d.shutdown()
    d.deleteLater()
    QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)


def _export_grid(export: ExportJob | None) -> tuple | None:
    if export is None:
        return None
    e = export.extent
    return (export.width, export.height,
            tuple(round(v, 6) for v in (e.xMinimum(), e.yMinimum(), e.xMaximum(), e.yMaximum())))


@pytest.mark.parametrize("upload", [False, True], ids=["by-path", "uploaded"])
@pytest.mark.parametrize("resolution", [0.0, 0.25], ids=["native", "coarser"])
def test_dock_and_processing_send_the_same_request(
    dock, raster, plugin_settings, iface, upload: bool, resolution: float
) -> None:
    plugin_settings.always_upload = upload
    plugin_settings.model_open_vocabulary = MODELS["open_vocabulary"]
    plugin_settings.save()
    dock.reload_settings()
    ext = raster.extent()
    # An area over the raster's edge: the export clips it; by path, the backend does.
    area = QgsRectangle(ext.xMinimum() + 5.0, ext.yMinimum() - 3.0,
                        ext.xMinimum() + 25.0, ext.yMinimum() + 12.0)

    dock.layer_combo.setLayer(raster)
    dock.set_query("trees, grass")
    dock.set_mode("open_vocabulary")
    dock.bands_edit.setText("1 2 3")
    dock.resolution_spin.setValue(resolution)
    dock.score_spin.setValue(0.3)
    dock.min_area_spin.setValue(2.0)
    dock.simplify_spin.setValue(0.0)  # a number, as Processing has (not "by resolution")
    dock.set_drawn_extent(area, raster.crs())
    spec = dock.build_spec()

    algorithm = SegmentByDescriptionAlgorithm()
    algorithm.initAlgorithm()
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    parameters = {
        "INPUT": raster, "QUERY": "trees, grass", "MODE": MODE_VALUES.index("open_vocabulary"),
        "BANDS": "1 2 3", "RESOLUTION": resolution, "SCORE_THRESHOLD": 0.3, "MIN_AREA": 2.0,
        "SIMPLIFY": 0.0, "OUTPUT": "TEMPORARY_OUTPUT",
        "EXTENT": f"{area.xMinimum()},{area.xMaximum()},{area.yMinimum()},{area.yMaximum()} "
                  f"[{raster.crs().authid()}]",
    }
    assert algorithm.prepareAlgorithm(parameters, context, QgsProcessingFeedback())
    prepared = algorithm._prepared

    source = {"upload_id": "u"} if upload else {"raster": spec.raster_path}
    assert spec.params.to_request(**source) == prepared["params"].to_request(**source)
    assert spec.raster_path == prepared["path"]
    assert _export_grid(spec.export) == _export_grid(prepared["export"])
    body = spec.params.to_request(**source)
    assert body["model"] == "index-baseline" and body["options"]["bands"] == [1, 2, 3]
    if upload:
        native = raster.rasterUnitsPerPixelX()
        assert spec.export is not None
        assert spec.export.resolution == pytest.approx(resolution or native)
    else:
        assert spec.export is None and body["extent"]["xmin"] == pytest.approx(area.xMinimum())
    assert PluginSettings.load().always_upload is upload


def test_score_threshold_is_sent_only_when_changed_so_trained_models_label_every_pixel() -> None:
    # At its default the backend's rule applies (a closed-set trained model labels every
    # valid pixel, as 'segment --model NAME' without --score-threshold does); a value the
    # user chose is always sent.
    from rs_reasoner_plugin.params import SegmentOptions

    assert "score_threshold" not in SegmentOptions().to_json()
    assert SegmentOptions(score_threshold=0.3).to_json()["score_threshold"] == 0.3
