"""bench/runtimes.py (CPU runtimes compared) must keep running: its smoke mode, as CI runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from breastai.inference import openvino_available

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(not openvino_available(), reason="OpenVINO (the [openvino] extra) is absent")
def test_smoke_run_prints_both_tables(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "runtimes.py"), "--smoke", "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [line for line in res.stdout.splitlines() if line.startswith("| ONNX Runtime fp32")]
    assert len(rows) == 2  # the per-window table and the pipeline table
    pipeline_row = rows[1].split("|")
    # ONNX Runtime fp32 against itself: every Dice is exactly 1
    assert pipeline_row[7].strip() == pipeline_row[8].strip() == "1.0000"
    assert "| OpenVINO fp32 |" in res.stdout
