"""The model manager against a real backend whose Hugging Face Hub is a local stand-in:
sizes and licences listed, download with progress, verify, delete, cancel, and a gated
repository that needs the token typed in the dialog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.plugin import conftest
from tests.plugin.helpers import wait_until
from tests.support.hub_repos import GATED_TOKEN, hub_repos
from tests.support.hub_server import FakeHub


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub(hub_repos()) as server:
        yield server


@pytest.fixture(scope="module")
def hub_backend(qgis_app: Any, hub: FakeHub, session_dir: Path) -> Iterator[Any]:
    """A backend downloading from the stand-in Hub into its own cache."""
    folder = session_dir / "models_backend"
    plain_env = conftest.backend_env

    def env() -> dict[str, str]:
        out = plain_env()
        out.update(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(folder / "hub"), HF_HUB_OFFLINE="0",
                   HF_TOKEN="", NO_PROXY="127.0.0.1,localhost",
                   RS_REASONER_SEGMENTER_MODULES="tests.support.segmenters,"
                                                 "tests.support.hub_models")
        return out

    conftest.backend_env = env
    try:
        backend = conftest.start_backend(folder / "backend.json", folder / "backend.log")
    finally:
        conftest.backend_env = plain_env
    yield backend
    backend.stop()


@pytest.fixture
def dialog(hub_backend: Any, plugin_settings: Any) -> Iterator[Any]:
    from rs_reasoner_plugin.backend_process import BackendProcess
    from rs_reasoner_plugin.model_manager import ModelManagerDialog

    plugin_settings.state_file = str(hub_backend.state_file)
    plugin_settings.save()
    d = ModelManagerDialog(BackendProcess())
    run(d, d.refresh)
    yield d
    d.shutdown()


def run(dialog: Any, action: Any, *args: Any) -> None:
    action(*args)
    wait_until(lambda: dialog.task is None, 60, "the model manager's task")


def row(dialog: Any, name: str) -> list[str]:
    k = [r["name"] for r in dialog.rows].index(name)
    return [dialog.table.item(k, c).text() for c in range(dialog.table.columnCount())]


def test_list_download_verify_delete(dialog: Any) -> None:
    from rs_reasoner_plugin.model_manager import CLICK_MODEL

    name, size, licence, status, _ = row(dialog, "test-hub-model")
    assert (size, licence, status) == ("200.0 kB", "apache-2.0, mit", "missing")
    assert row(dialog, "test-colour")[3] == "none needed"
    assert CLICK_MODEL in [r["name"] for r in dialog.rows]

    dialog.select("test-hub-model")
    assert dialog.download_button.isEnabled() and not dialog.delete_button.isEnabled()
    run(dialog, dialog.download_selected)
    assert dialog.last_pull["status"] == "succeeded"
    wait_until(lambda: dialog.task is None, 60, "the refreshed list")
    assert "Downloaded test-hub-model (200.0 kB)" in dialog.status_label.text()
    assert row(dialog, "test-hub-model")[3] == "present"
    assert dialog.progress.value() == 100

    dialog.select("test-hub-model")
    run(dialog, dialog.verify_selected)
    assert dialog.status_label.text() == "test-hub-model: all 3 files match the Hub."

    run(dialog, dialog.delete_selected, False)
    wait_until(lambda: dialog.task is None, 60, "the refreshed list")
    assert "Deleted the weights of test-hub-model" in dialog.status_label.text()
    assert row(dialog, "test-hub-model")[3] == "missing"


def test_cancel_a_download(dialog: Any, hub: FakeHub) -> None:
    hub.repos["test-org/tiny-config"].delay = 2.0
    try:
        dialog.select("test-hub-model")
        dialog.download_selected()
        wait_until(lambda: dialog.progress.value() > 0, 30, "the first bytes")
        dialog.cancel()
        wait_until(lambda: dialog.task is None, 60, "the cancelled download")
    finally:
        hub.repos["test-org/tiny-config"].delay = 0.0
    assert dialog.last_pull["status"] == "cancelled"
    wait_until(lambda: dialog.task is None, 60, "the refreshed list")
    assert "cancelled; nothing of it was kept" in dialog.status_label.text()
    assert row(dialog, "test-hub-model")[3] == "missing"


def test_gated_model_needs_the_token(dialog: Any) -> None:
    dialog.select("test-gated-model")
    run(dialog, dialog.download_selected)
    wait_until(lambda: dialog.task is None, 60, "the refreshed list")
    assert "gated" in dialog.status_label.text() and "token" in dialog.status_label.text()
    assert row(dialog, "test-gated-model")[3] == "missing"
    dialog.token_edit.setText(GATED_TOKEN)
    dialog.select("test-gated-model")
    run(dialog, dialog.download_selected)
    wait_until(lambda: dialog.task is None, 60, "the refreshed list")
    assert row(dialog, "test-gated-model")[3] == "present"


def test_cancel_at_once(dialog: Any, hub: FakeHub) -> None:
    """Cancelled before or just after it started: the dialog ends idle, nothing kept."""
    hub.repos["test-org/tiny-weights"].delay = 1.0
    try:
        dialog.select("test-hub-model")
        dialog.download_selected()
        dialog.cancel()
        wait_until(lambda: dialog.task is None, 60, "the cancelled download")
        wait_until(lambda: dialog.task is None, 60, "the refreshed list")
    finally:
        hub.repos["test-org/tiny-weights"].delay = 0.0
    assert dialog.refresh_button.isEnabled()
    assert "Cancelled" in dialog.status_label.text() or "cancelled" in dialog.status_label.text()
