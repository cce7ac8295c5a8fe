from pathlib import Path

import geopandas as gpd

from rs_reasoner.cli import main
from tests.backend.batch.conftest import NEON


def test_batch_command_then_status(tmp_path: Path, capsys) -> None:
    out, merged = tmp_path / "out", tmp_path / "all.gpkg"
    args = ["batch", str(NEON), "-q", "trees", "--model", "index-baseline", "--tile-size",
            "128", "--overlap", "16", "--out", str(out), "--merged", str(merged),
            "--workers", "0", "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "4 units done" in text and "units/s" in text and "Mpx/s" in text
    assert len(gpd.read_file(merged)) > 0
    assert main(["batch", "--status", "--out", str(out)]) == 0
    assert "4/4 units done (100.0 % of pixels)" in capsys.readouterr().out


def test_status_of_a_folder_without_a_batch_is_a_user_error(tmp_path: Path, capsys) -> None:
    assert main(["batch", "--status", "--out", str(tmp_path)]) == 2
    assert "No batch in" in capsys.readouterr().err


def test_batch_without_query_is_a_user_error(tmp_path: Path, capsys) -> None:
    assert main(["batch", str(NEON), "--out", str(tmp_path)]) == 2
    assert "--query" in capsys.readouterr().err
