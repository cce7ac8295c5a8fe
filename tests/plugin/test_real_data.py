"""Real sample rasters (../shared/data) through the Processing algorithm: a custom-WKT int16
raster (by path and through the upload path), a uint16 panchromatic chip, and a photo
without georeferencing. The results must be in the layer's CRS and on the layer."""

from __future__ import annotations

from pathlib import Path

import pytest
from qgis.core import QgsGeometry, QgsRasterLayer, QgsVectorLayer

import rs_reasoner_plugin

ALG = "rsreasoner:segment_by_description"
pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def provider(iface, plugin_settings):  # noqa: ANN201
    plugin = rs_reasoner_plugin.classFactory(iface)
    plugin.initProcessing()
    yield plugin.provider
    plugin.unload()


def segment(raster: QgsRasterLayer, query: str = "bright") -> QgsVectorLayer:
    import processing

    out = processing.run(ALG, {"INPUT": raster, "QUERY": query, "MODE": 2,
                               "OUTPUT": "TEMPORARY_OUTPUT"})["OUTPUT"]
    assert isinstance(out, QgsVectorLayer) and out.isValid()
    return out


def assert_on_layer(result: QgsVectorLayer, raster: QgsRasterLayer) -> None:
    assert result.featureCount() > 0
    if raster.crs().isValid():  # (QGIS gives CRS-less temporary layers EPSG:4326)
        assert result.crs() == raster.crs()
    frame = QgsGeometry.fromRect(raster.extent()).buffer(1e-6 * raster.extent().width(), 1)
    for f in result.getFeatures():
        assert frame.contains(f.geometry()), f.geometry().boundingBox().toString()


def test_custom_wkt_int16_by_path_and_by_upload_agree(provider, plugin_settings,
                                                      shared_data: Path) -> None:
    path = shared_data / "custom_albers_int16.tif"
    raster = QgsRasterLayer(str(path), "albers")
    assert raster.isValid() and not raster.crs().authid().startswith("EPSG")
    by_path = segment(raster)
    assert_on_layer(by_path, raster)

    plugin_settings.always_upload = True
    plugin_settings.save()
    by_upload = segment(raster)
    assert_on_layer(by_upload, raster)
    area = sum(f.geometry().area() for f in by_path.getFeatures())
    area_up = sum(f.geometry().area() for f in by_upload.getFeatures())
    assert by_upload.featureCount() == by_path.featureCount()
    assert abs(area_up - area) <= 1e-6 * area


def test_uint16_panchromatic_chip(provider, shared_data: Path) -> None:
    raster = QgsRasterLayer(str(shared_data / "spacenet_atlanta_pan_utm16n.tif"), "pan")
    assert raster.isValid() and raster.crs().authid() == "EPSG:32616"
    assert_on_layer(segment(raster), raster)


def test_photo_without_georeferencing_lines_up(provider, shared_data: Path) -> None:
    photo = shared_data / "dubai" / "tile1" / "images" / "image_part_001.jpg"
    raster = QgsRasterLayer(str(photo), "photo")
    assert raster.isValid() and not raster.crs().isValid()
    assert raster.extent().yMaximum() == 0  # QGIS pixel space: y = -row
    assert_on_layer(segment(raster), raster)
