"""bench/nnunet.py (breastai predict vs nnUNetv2_predict) must keep running: its smoke mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs torch (the [train] extra)")
pytest.importorskip("nnunetv2", reason="needs nnunetv2 (the [nnunet] extra)")

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.train]


def test_smoke_run_prints_the_table_with_identical_masks(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "nnunet.py"), "--smoke", "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {
        line.split("|")[1].strip(): line.split("|")
        for line in res.stdout.splitlines()
        if line.startswith("| nnUNetv2_predict") or line.startswith("| breastai predict")
    }
    assert "nnUNetv2_predict -device cpu (torch)" in rows
    ort = rows["breastai predict, ONNX Runtime fp32"]
    assert ort[5].strip() == "1.000000"  # the same mask as nnU-Net's, voxel for voxel
    assert float(ort[4].strip().rstrip("x")) > 0
