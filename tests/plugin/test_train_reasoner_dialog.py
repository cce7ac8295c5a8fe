"""The fine-tune dialog's "Teach the reasoner" mode in real QGIS: examples (polygons with a
question field, or one query) over the NEON sample; the request it builds; and against a
real backend process, a one-step GRPO run of a tiny prompter and SAM 2.1 made on disk by
the backend's interpreter."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from qgis.core import (
    QgsFeature,
    QgsField,
    QgsGeometry,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant

from rs_reasoner_plugin.errors import InputError
from rs_reasoner_plugin.train_dialog import TrainDialog
from tests.plugin.conftest import BACKEND_PYTHON, REPO, backend_env
from tests.plugin.helpers import message_texts, write_vector
from tests.plugin.test_train_dialog import run, stop, unique

NEON = "neon_osbs_rgb_10cm_utm17n.tif"
QUERY = "dark tree crowns"


@pytest.fixture
def neon(shared_data: Path, clean_project) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(shared_data / NEON), "NEON OSBS")
    assert layer.isValid()
    clean_project.addMapLayer(layer)
    return layer


@pytest.fixture
def examples(neon, tmp_path: Path, clean_project) -> QgsVectorLayer:
    """Three 4 m squares along the raster's bottom edge, each with the question in 'q'."""
    memory = QgsVectorLayer(f"Polygon?crs={neon.crs().authid()}", "trees", "memory")
    memory.dataProvider().addAttributes([QgsField("q", QVariant.String)])
    memory.updateFields()
    ext = neon.extent()
    step = ext.width() / 4
    for k in (1, 2, 3):
        x, y = ext.xMinimum() + k * step, ext.yMinimum() + 20
        feature = QgsFeature(memory.fields())
        feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(x, y, x + 4, y + 4)))
        feature.setAttribute("q", QUERY)
        memory.dataProvider().addFeature(feature)
    path = write_vector(memory, tmp_path / "trees.gpkg", "trees")
    layer = QgsVectorLayer(f"{path}|layername=trees", "trees", "ogr")
    assert layer.isValid() and layer.featureCount() == 3
    clean_project.addMapLayer(layer)
    return layer


@pytest.fixture
def dialog(iface, clean_project, plugin_settings) -> Any:
    d = TrainDialog(iface, None, iface.mainWindow())
    yield d
    stop(d)


def test_reasoner_mode_builds_a_reasoner_request(dialog, neon, examples) -> None:
    dialog.set_kind("reasoner")
    assert dialog.windowTitle() == "RS Reasoner — Teach the reasoner your questions"
    assert dialog.form.labelForField(dialog.parcels_combo).text() == "Examples"
    assert dialog.form.labelForField(dialog.field_combo).text() == "Query field"
    assert dialog.epochs_spin.isHidden() and dialog.advanced.isHidden()
    assert not dialog.query_edit.isHidden() and not dialog.reasoner_box.isHidden()
    dialog.set_layers(neon, examples, "q")
    assert dialog.classes_label.text() == f"1 question: {QUERY}"
    dialog.name_edit.setText("trees-tuned")

    spec, warnings = dialog.build_spec()
    request = spec.request()
    assert warnings == []
    assert request == {"kind": "reasoner", "examples": examples.source().split("|")[0],
                       "layer": "trees", "raster": neon.source(), "query_field": "q",
                       "name": "trees-tuned"}  # options left at 'default' are not sent

    # One query for the layer instead of the field; options set are sent.
    dialog.query_edit.setText("tall trees")
    dialog.steps_spin.setValue(3)
    dialog.group_spin.setValue(4)
    dialog.sam_combo.setCurrentIndex(dialog.sam_combo.findData("tiny"))
    request = dialog.build_spec()[0].request()
    assert request["query"] == "tall trees" and "query_field" not in request
    assert (request["steps"], request["group_size"], request["sam_variant"]) == (3, 4, "tiny")
    assert "epochs" not in request and "class_field" not in request

    # Back to the segmenter: its request as before.
    dialog.set_kind("segmenter")
    assert not dialog.epochs_spin.isHidden() and dialog.reasoner_box.isHidden()
    assert dialog.form.labelForField(dialog.field_combo).text() == "Class field"
    request = dialog.build_spec()[0].request()
    assert "kind" not in request and request["class_field"] == "q"


def test_reasoner_mode_needs_a_question(dialog, neon, examples, clean_project) -> None:
    blank = QgsVectorLayer(f"Polygon?crs={neon.crs().authid()}", "blank", "memory")
    blank.dataProvider().addAttributes([QgsField("q", QVariant.String)])
    blank.updateFields()
    for source in examples.getFeatures():
        feature = QgsFeature(blank.fields())
        feature.setGeometry(source.geometry())
        blank.dataProvider().addFeature(feature)  # no question
    clean_project.addMapLayer(blank)
    dialog.set_kind("reasoner")
    dialog.set_layers(neon, blank, "q")
    dialog.name_edit.setText("trees-tuned")
    assert dialog.classes_label.text() == "no questions in this field"
    with pytest.raises(InputError, match="No polygon has a value in field 'q'"):
        dialog.build_spec()
    dialog.query_edit.setText("tall trees")  # one query for all: the field is not read
    request = dialog.build_spec()[0].request()
    assert request["query"] == "tall trees" and "query_field" not in request


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A tiny base prompter snapshot and a SAM 2.1 hiera-tiny checkpoint, made by the
    backend's interpreter (the plugin's has no torch)."""
    folder = tmp_path_factory.mktemp("weights")
    script = ("import sys; from pathlib import Path; "
              "from tests.training.grpo.helpers import save_base_and_sam; "
              "print(*save_base_and_sam(Path(sys.argv[1])), sep='\\n')")
    proc = subprocess.run([BACKEND_PYTHON, "-c", script, str(folder)], cwd=REPO,
                          env=backend_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    base, sam = proc.stdout.strip().splitlines()[-2:]
    return base, sam


def test_teaching_the_reasoner_runs_on_the_backend(
    backend, dialog, neon, examples, tiny_weights, iface
) -> None:
    base, sam = tiny_weights
    dialog.set_kind("reasoner")
    dialog.set_layers(neon, examples, "q")
    name = unique("trees")
    dialog.name_edit.setText(name)
    dialog.steps_spin.setValue(1)
    dialog.group_spin.setValue(2)
    dialog.base_edit.setText(base)
    dialog.sam_combo.setCurrentIndex(dialog.sam_combo.findData("tiny"))
    dialog.sam_checkpoint_edit.setText(sam)
    outcome = run(dialog, timeout=600)
    assert outcome.status == "succeeded", (outcome.error, message_texts(iface))
    assert outcome.request["kind"] == "reasoner" and outcome.request["query_field"] == "q"
    result = outcome.result
    assert result["model"] == name and result["kind"] == "reasoner"
    assert result["classes"] == [QUERY] and result["steps"] == 1
    assert "step 1/1: reward" in outcome.last_epoch
    assert dialog.epoch_label.text().startswith(f"Reasoner '{name}' taught: 1 steps")
    assert any("with the reasoning mode" in t for t in message_texts(iface))


def test_a_backend_refusal_fails_before_any_job(backend, dialog, neon, examples,
                                                        iface) -> None:
    dialog.set_kind("reasoner")
    dialog.set_layers(neon, examples, "q")
    dialog.name_edit.setText(unique("trees"))
    dialog.base_edit.setText("/no/such/prompter")
    outcome = run(dialog, timeout=120)
    assert outcome.status == "failed" and outcome.job_id is None
    assert "Unknown base prompter '/no/such/prompter'" in str(outcome.error)
