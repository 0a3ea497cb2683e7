"""`breastai info`: the series table, the phase manifest, --json, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dicom_factory import make_study
from typer.testing import CliRunner

from breastai.cli import app

runner = CliRunner()


def test_info_json(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=3, orientation="oblique")
    make_study(
        tmp_path / "sub", n_phases=3, tag="sub", description="SUB", study_uid=truth.study_uid
    )
    result = runner.invoke(app, ["info", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "breastai.info/1"
    assert [p["index"] for p in doc["phases"]] == [0, 1, 2]
    phase = doc["phases"][1]
    assert phase["size"] == [16, 16, 8] and phase["n_slices"] == 8
    np.testing.assert_allclose(phase["spacing"], truth.spacing_xyz, atol=1e-6)
    np.testing.assert_allclose(phase["origin"], truth.origin, atol=1e-3)
    np.testing.assert_allclose(np.reshape(phase["direction"], (3, 3)), truth.direction, atol=1e-6)
    assert [p["time_s"] for p in doc["phases"]] == [0.0, 60.0, 120.0]
    assert phase["series_uid"] == truth.series_uids[0]
    roles = sorted(s["role"] for s in doc["series"])
    assert roles[0].startswith("DCE phases 0-2") and roles[1].startswith("excluded: derived")
    assert doc["decisions"]["grouping_key"] == "TemporalPositionIdentifier"


def test_info_table(tmp_path: Path) -> None:
    make_study(tmp_path, n_phases=3, description="ax dyn")
    result = runner.invoke(app, ["info", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "DCE phases 0-2" in result.stdout and "DCE phases (3)" in result.stdout
    assert "Research use only" in result.stdout


def test_info_ambiguous_exit_1_with_hint(tmp_path: Path) -> None:
    a = make_study(tmp_path / "a", n_phases=3, tag="a")
    make_study(tmp_path / "b", n_phases=3, tag="b", study_uid=a.study_uid, origin=(0, 0, 0))
    result = runner.invoke(app, ["info", str(tmp_path)], terminal_width=300)
    assert result.exit_code == 1
    assert "--dce-series" in result.stderr and "#1 score" in result.stderr
    assert "Traceback" not in result.output
    ok = runner.invoke(app, ["info", str(tmp_path), "--json", "--dce-series", a.series_uids[0]])
    assert ok.exit_code == 0 and len(json.loads(ok.stdout)["phases"]) == 3


def test_info_ambiguous_reads_the_headers_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an ambiguous study, the series table reuses the header index of the failed read."""
    from breastai.io import dicom, dicom_index

    a = make_study(tmp_path / "a", n_phases=3, tag="a")
    make_study(tmp_path / "b", n_phases=3, tag="b", study_uid=a.study_uid, origin=(0, 0, 0))
    calls: list[Path] = []
    real = dicom_index.index_folder

    def counting(path: Path, **kwargs: Any) -> Any:
        calls.append(Path(path))
        return real(path, **kwargs)

    monkeypatch.setattr(dicom_index, "index_folder", counting)
    monkeypatch.setattr(dicom, "index_folder", counting)
    result = runner.invoke(app, ["info", str(tmp_path)], terminal_width=300)
    assert result.exit_code == 1
    assert "candidate #1" in result.stdout  # the series table was printed
    assert calls == [tmp_path]


def test_info_bad_input_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["info", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "empty" in result.stderr
    bad = runner.invoke(app, ["info", str(tmp_path), "--times", "0,x"])
    assert bad.exit_code == 2 and "--times" in bad.stderr
