"""bench/oof_phantom.py: the out-of-family generator of the accuracy benchmark."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _oof():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "oof_phantom_t", ROOT / "bench" / "oof_phantom.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_oof_case_truth_and_enhancement() -> None:
    oof = _oof()
    case = oof.generate_oof_case(700_000, coarse=2.5)
    again = oof.generate_oof_case(700_000, coarse=2.5)
    assert np.array_equal(case.images, again.images)
    assert case.images.ndim == 4 and case.images.shape[1:] == case.breast.shape
    assert case.breast.sum() > 0 and case.tumor.sum() > 0
    assert np.all(case.breast[case.tumor > 0] > 0)  # lesions lie in the breast
    assert np.array_equal(case.tumor > 0, case.lesion_labels > 0)
    for lesion in case.meta["lesions"]:
        m = case.lesion_labels == lesion["label"]
        pre, post = case.images[0][m].mean(), case.images[1][m].mean()
        assert post > 1.3 * pre  # malignant lesions enhance clearly
    assert case.meta["generator"] == "bench.oof_phantom"


def test_training_never_imports_the_oof_generator() -> None:
    # the held-out generator must stay outside everything training can reach
    for path in (ROOT / "breastai").rglob("*.py"):
        assert "oof_phantom" not in path.read_text(encoding="utf-8"), path
