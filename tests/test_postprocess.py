"""Tests of breastai.postprocess on analytic masks."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from breastai.errors import ParameterError
from breastai.postprocess import (
    binarise,
    bounding_box,
    breast_mask,
    fill_holes,
    largest_component,
    largest_component_per_side,
    remove_non_enhancing,
    remove_small_components,
    tumor_mask,
)


def _img(arr: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


def _ball(shape, centre, r):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= r * r


def test_binarise_is_strict() -> None:
    p = _img(np.array([[[0.2, 0.5, 0.51]]], np.float32))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(binarise(p, 0.5)), [[[0, 0, 1]]])
    with pytest.raises(ParameterError):
        binarise(p, 1.5)


def _two_breasts(shape=(20, 30, 60)):
    left = _ball(shape, (10, 15, 15), 8)  # array x small -> LPS x small (identity direction)
    right = _ball(shape, (10, 15, 45), 7)
    noise_l = _ball(shape, (2, 2, 3), 1)
    noise_r = _ball(shape, (2, 2, 57), 1)
    return left, right, noise_l, noise_r


def test_largest_component_per_side_keeps_both_breasts() -> None:
    left, right, nl, nr = _two_breasts()
    m = (left | right | nl | nr).astype(np.uint8)
    out = sitk.GetArrayFromImage(largest_component_per_side(_img(m)))
    np.testing.assert_array_equal(out, (left | right).astype(np.uint8))


def test_sides_follow_patient_x_not_array_x() -> None:
    # Sagittal-like direction: array axis 0 (z) runs along patient x. Both balls lie at the same
    # array x, so only the direction tells the sides apart.
    shape = (60, 30, 20)
    a = _ball(shape, (15, 15, 10), 8)
    b = _ball(shape, (45, 15, 10), 6)
    noise = _ball(shape, (50, 2, 2), 1)  # the right side's small blob must go
    direction = (
        0,
        0,
        1,
        1,
        0,
        0,
        0,
        1,
        0,
    )  # columns: x_arr -> LPS y, y_arr -> LPS z, z_arr -> LPS x
    m = _img((a | b | noise).astype(np.uint8), direction=direction)
    out = sitk.GetArrayFromImage(largest_component_per_side(m))
    np.testing.assert_array_equal(out, (a | b).astype(np.uint8))


def test_unilateral_drops_tiny_other_side() -> None:
    shape = (20, 30, 60)
    one = _ball(shape, (10, 15, 20), 9)
    blob = _ball(shape, (10, 15, 55), 2)  # 33 voxels vs ~3000: < 10 %
    out = sitk.GetArrayFromImage(largest_component_per_side(_img((one | blob).astype(np.uint8))))
    # midline = middle of the extent: the blob is alone on its side but far too small
    np.testing.assert_array_equal(out, one.astype(np.uint8))


def test_breast_mask_fills_holes_but_not_the_gap() -> None:
    left, right, nl, _ = _two_breasts()
    hole = _ball(left.shape, (10, 15, 15), 3)
    prob = np.where(left & ~hole, 0.9, 0.0) + np.where(right | nl, 0.8, 0.0)
    out = sitk.GetArrayFromImage(breast_mask(_img(prob.astype(np.float32)), 0.5))
    np.testing.assert_array_equal(out, (left | right).astype(np.uint8))
    assert out[10, 15, 30] == 0  # the gap between the breasts stays empty


def test_fill_holes_slicewise() -> None:
    m = np.zeros((3, 9, 9), np.uint8)
    m[1, 2:7, 2:7] = 1
    m[1, 4, 4] = 0
    m[0, 4, 4] = 1  # a hole open in 3-D through slice 0? no: still enclosed in slice 1
    out = sitk.GetArrayFromImage(fill_holes(_img(m)))
    assert out[1, 4, 4] == 1


def test_large_slice_holes_open_in_3d_stay_open() -> None:
    """An implant-like cavity: enclosed in every slice, open in 3-D, larger than the limit."""
    m = np.zeros((8, 40, 40), np.uint8)
    m[1:7, 5:35, 5:35] = 1
    m[1:7, 10:30, 10:30] = 0  # 20 x 20 voxels of 1 x 1 mm = 400 mm2 per slice, open at z 1 and 6
    m[1:6, 33, 20] = 0  # a 1-voxel channel in the wall, enclosed in each slice, open via slice 0
    img = _img(m)
    out = sitk.GetArrayFromImage(fill_holes(img))
    assert not out[1:7, 10:30, 10:30].any()  # 400 mm2 > 100 mm2: not filled
    assert out[1:6, 33, 20].all()  # the small channel is filled slice by slice
    out_all = sitk.GetArrayFromImage(fill_holes(img, max_slice_hole_mm2=1e9))
    assert out_all[1:7, 10:30, 10:30].all()  # without the limit the cavity is filled
    coarse = sitk.GetArrayFromImage(fill_holes(_img(m, spacing=(0.4, 0.4, 1.0))))
    assert coarse[1:7, 10:30, 10:30].all()  # the same cavity at 0.4 mm: 64 mm2, filled
    with pytest.raises(ParameterError):
        fill_holes(img, max_slice_hole_mm2=-1.0)


def test_remove_small_components_uses_mm3() -> None:
    m = np.zeros((10, 10, 10), np.uint8)
    m[1:3, 1:3, 1:3] = 1  # 8 voxels
    m[5:9, 5:9, 5:9] = 1  # 64 voxels
    img = _img(m, spacing=(1.0, 1.0, 2.0))  # 2 mm3 per voxel: 16 and 128 mm3
    out, n = remove_small_components(img, 20.0)
    assert n == 1 and sitk.GetArrayFromImage(out).sum() == 64
    out, n = remove_small_components(img, 16.0)
    assert n == 0 and sitk.GetArrayFromImage(out).sum() == 72
    assert out.GetSpacing() == (1.0, 1.0, 2.0)


def test_tumor_mask_multiplies_by_breast_exactly() -> None:
    shape = (20, 30, 60)
    breast = _ball(shape, (10, 15, 15), 8).astype(np.uint8)
    prob = np.zeros(shape, np.float32)
    prob[8:13, 13:18, 20:27] = 0.9  # straddles the breast edge at x = 23
    prob[10, 15, 50] = 0.9  # outside the breast (a "heart" false positive)
    p, b = _img(prob), _img(breast)
    masked, _ = tumor_mask(p, 0.5, breast=b, min_volume_mm3=0)
    want = ((prob > 0.5) & (breast > 0)).astype(np.uint8)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(masked), want)
    free, _ = tumor_mask(p, 0.5, breast=None, min_volume_mm3=0)
    assert sitk.GetArrayFromImage(free)[10, 15, 50] == 1
    cleaned, n = tumor_mask(p, 0.5, breast=None, min_volume_mm3=10)
    assert n == 1 and sitk.GetArrayFromImage(cleaned)[10, 15, 50] == 0


def _dce(shape, regions, n_phases=4, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    """Phases where each (mask, pre, rises) region has signal ``pre * (1 + rise_k)``."""
    phases = []
    for k in range(n_phases):
        a = np.full(shape, 50.0, np.float32)
        for m, pre, rises in regions:
            a[m] = pre * (1.0 + (0.0 if k == 0 else rises[k - 1]))
        phases.append(_img(a, spacing=spacing, origin=origin))
    return phases


def test_remove_non_enhancing_keeps_lesions_that_enhance() -> None:
    shape = (16, 24, 40)
    lesion = _ball(shape, (8, 12, 8), 4)  # washes in to +60 %, then out
    slow = _ball(shape, (8, 12, 20), 3)  # +12 % only in the last phase
    fat = _ball(shape, (8, 12, 32), 4)  # bright, +2 % (noise-level drift)
    regions = [(lesion, 300.0, (0.6, 0.5, 0.3)), (slow, 200.0, (0.02, 0.05, 0.12)),
               (fat, 900.0, (0.01, 0.02, 0.02))]  # fmt: skip
    phases = _dce(shape, regions)
    mask = _img((lesion | slow | fat).astype(np.uint8))
    out, dropped = remove_non_enhancing(mask, phases, 10.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), (lesion | slow).astype(np.uint8))
    assert dropped == pytest.approx([2.0])
    # a higher threshold drops the slow one too; its peak is its last phase (+12 %)
    out, dropped = remove_non_enhancing(mask, phases, 15.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), lesion.astype(np.uint8))
    assert sorted(dropped) == pytest.approx([2.0, 12.0])
    # 0 turns the rule off; a single phase cannot show enhancement: nothing is removed
    for args in ((phases, 0.0), (phases[:1], 10.0)):
        out, dropped = remove_non_enhancing(mask, *args)
        assert dropped == [] and sitk.GetArrayFromImage(out).sum() == (lesion | slow | fat).sum()
    with pytest.raises(ParameterError, match="min_enhancement_pct"):
        remove_non_enhancing(mask, phases, -1.0)
    with pytest.raises(ParameterError, match="min_enhancement_pct"):
        remove_non_enhancing(mask, phases, float("nan"))


def test_remove_non_enhancing_reads_phases_on_another_grid() -> None:
    # the mask on a 1 mm grid, the phases on a 2 mm grid covering the same box: the phases are
    # resampled onto the mask's grid, so the same component is judged by the same tissue
    shape = (16, 24, 40)
    coarse = (8, 12, 20)
    lesion_c = _ball(coarse, (4, 6, 5), 3)
    fat_c = _ball(coarse, (4, 6, 15), 3)
    phases = _dce(coarse, [(lesion_c, 300.0, (0.8, 0.6)), (fat_c, 900.0, (0.0, 0.01))], 3,
                  spacing=(2.0, 2.0, 2.0), origin=(0.5, 0.5, 0.5))  # fmt: skip
    lesion = _ball(shape, (8, 12, 10), 3)
    fat = _ball(shape, (8, 12, 30), 3)
    out, dropped = remove_non_enhancing(_img((lesion | fat).astype(np.uint8)), phases, 10.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), lesion.astype(np.uint8))
    assert len(dropped) == 1 and dropped[0] < 2.0


def test_remove_non_enhancing_keeps_what_it_cannot_measure() -> None:
    # pre-contrast mean 0 (e.g. a subtraction-like input): no enhancement can be measured
    shape = (8, 8, 8)
    m = _ball(shape, (4, 4, 4), 2)
    phases = _dce(shape, [(m, 0.0, (0.0,))], 2)
    out, dropped = remove_non_enhancing(_img(m.astype(np.uint8)), phases, 10.0)
    assert dropped == [] and sitk.GetArrayFromImage(out).sum() == m.sum()


def test_bounding_box_on_another_grid() -> None:
    m = np.zeros((10, 20, 20), np.uint8)
    m[2:5, 4:9, 10:15] = 1
    native = _img(m, spacing=(0.5, 0.5, 2.0), origin=(10.0, 20.0, 30.0))
    grid = _img(
        np.zeros((20, 10, 10), np.float32), spacing=(1.0, 1.0, 1.0), origin=(10.0, 20.0, 30.0)
    )
    box = bounding_box(native, grid, margin_mm=0.0)
    # physical z 4..8 mm -> indices 4..8; y 2..4 mm -> 2..4; x 5..7 mm -> 5..7 (half-open + 1)
    assert box == ((4, 9), (2, 5), (5, 8))
    assert bounding_box(native, grid, margin_mm=100.0) == ((0, 20), (0, 10), (0, 10))
    assert bounding_box(_img(np.zeros((2, 2, 2), np.uint8)), grid) is None


def test_tumor_mask_rejects_breast_mask_on_another_grid() -> None:
    # Same size and origin but another spacing or direction is another grid: multiplying the
    # arrays voxel by voxel would silently mask the wrong tissue.
    shape = (4, 5, 6)
    p = _img(np.full(shape, 0.9, np.float32))
    other_spacing = _img(np.ones(shape, np.uint8), spacing=(2.0, 1.0, 1.0))
    flipped = _img(np.ones(shape, np.uint8), direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))
    for b in (other_spacing, flipped):
        with pytest.raises(ParameterError, match="grid"):
            tumor_mask(p, 0.5, breast=b, min_volume_mm3=0)
    with pytest.raises(ParameterError, match="threshold"):
        tumor_mask(p, -0.1)


def test_one_breast_keeps_only_the_largest_component() -> None:
    arr = np.zeros((10, 20, 40), np.float32)
    arr[2:8, 2:18, 2:12] = 1.0  # 960 voxels
    arr[2:8, 2:18, 28:36] = 1.0  # 768 voxels: kept per side, dropped for one breast
    arr[4, 4, 20] = 1.0  # a speck
    img = _img(arr)
    one = sitk.GetArrayFromImage(breast_mask(img, one_breast=True))
    np.testing.assert_array_equal(one, (arr > 0) & (np.arange(40) < 12)[None, None, :])
    both = sitk.GetArrayFromImage(breast_mask(img))
    assert both.sum() == 960 + 768
    lc = sitk.GetArrayFromImage(largest_component(_img((arr > 0).astype(np.uint8))))
    np.testing.assert_array_equal(lc, one)
    empty = sitk.GetArrayFromImage(largest_component(_img(np.zeros((3, 3, 3), np.uint8))))
    assert not empty.any()
