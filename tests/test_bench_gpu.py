"""bench/gpu.py (the prepared GPU check) must keep running and keep its demo configurations true."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

ROOT = Path(__file__).resolve().parents[1]


def _load():  # bench/ is not a package
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "gpu.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_builtin_demo_configurations_match_the_training_plan() -> None:
    """The device machine cannot import demo_plan (no SimpleITK): its copy must not drift."""
    from breastai.training.demo_weights import demo_plan

    mod = _load()
    plan = demo_plan(0)
    assert dict(plan.tumor.network, patch_zyx=tuple(plan.tumor.patch_zyx)) == mod.DEMO_TUMOR
    assert dict(plan.breast.network, patch_zyx=tuple(plan.breast.patch_zyx)) == mod.DEMO_BREAST


def test_smoke_run_prints_the_table(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    table = (tmp_path / "gpu.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| smoke tumor"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 11 and float(cells[3]) > 0 and cells[-1].endswith("%")
