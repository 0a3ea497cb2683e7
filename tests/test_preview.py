"""Tests of breastai.preview: orientation of the panels, atomic write, grid checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from breastai.errors import ParameterError
from breastai.preview import write_preview


def _vol(arr: np.ndarray, direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetDirection(direction)
    return img


@pytest.mark.parametrize("flip_x", [False, True])
def test_patient_left_is_on_the_image_right(tmp_path: Path, flip_x: bool) -> None:
    shape = (8, 40, 40)
    post = np.zeros(shape, np.float32)
    tumor = np.zeros(shape, np.uint8)
    x = slice(30, 36) if not flip_x else slice(4, 10)  # always the patient's left (LPS +x)
    post[3:5, 10:16, x] = 100.0
    tumor[3:5, 10:16, x] = 1
    d = (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0) if flip_x else (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    out = write_preview(
        tmp_path / "preview.png",
        pre=_vol(np.zeros(shape, np.float32), d),
        post=_vol(post, d),
        tumor=_vol(tumor, d),
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preview.png"]  # no temp file left
    rgb = np.asarray(Image.open(out).convert("RGB")).astype(int)
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    cols = np.flatnonzero(red.any(axis=0))
    rows = np.flatnonzero(red.any(axis=1))
    assert cols.size and rows.size
    panel = 384  # the left (MIP) panel spans the first 8 + 384 pixels
    left_panel = cols[cols < 8 + panel]
    assert left_panel.mean() > 8 + panel / 2  # patient's left on the image's right
    assert rows.mean() < 8 + panel / 2  # anterior (small LPS y) at the top


def test_mask_on_another_grid_is_refused(tmp_path: Path) -> None:
    img = _vol(np.zeros((4, 6, 6), np.float32))
    with pytest.raises(ParameterError, match="grid"):
        write_preview(
            tmp_path / "p.png", pre=img, post=img, tumor=_vol(np.zeros((4, 6, 7), np.uint8))
        )
    assert list(tmp_path.iterdir()) == []
