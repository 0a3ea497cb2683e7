"""breastai.geometry.on_lattice: exact placement of an image that lies on a reference lattice."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from breastai.geometry import on_lattice


def _reference() -> sitk.Image:
    rng = np.random.default_rng(3)
    arr = rng.integers(1, 200, size=(10, 12, 14)).astype(np.uint16)  # (z, y, x), no zeros
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.9, 2.5))
    img.SetOrigin((-20.0, 13.0, 7.5))
    c, s = np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))
    img.SetDirection(tuple(np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).ravel()))  # oblique
    return img


def test_a_permuted_flipped_crop_lands_on_its_voxels() -> None:
    ref = _reference()
    # a block of the reference (x 3..10, y 2..8, z 4..8), axes permuted and flipped: the same
    # physical voxels on a relabelled grid (as a sagittal DICOM-SEG of an axial study)
    block = sitk.RegionOfInterest(ref, size=(8, 7, 5), index=(3, 2, 4))
    moved = sitk.Flip(sitk.PermuteAxes(block, (2, 0, 1)), (True, False, True))
    assert moved.GetSize() == (5, 8, 7)
    placed = on_lattice(moved, ref)
    assert placed is not None
    expected = np.zeros((10, 12, 14), np.uint16)
    expected[4:9, 2:9, 3:11] = sitk.GetArrayFromImage(ref)[4:9, 2:9, 3:11]
    np.testing.assert_array_equal(placed, expected)


def test_off_lattice_or_outside_is_refused() -> None:
    ref = _reference()
    half = sitk.Image(ref)
    half.SetOrigin(ref.TransformContinuousIndexToPhysicalPoint((0.5, 0.0, 0.0)))
    assert on_lattice(half, ref) is None
    outside = sitk.Image(ref)
    outside.SetOrigin(ref.TransformIndexToPhysicalPoint((3, 0, 0)))  # 3 columns past the edge
    assert on_lattice(outside, ref) is None
    empty = sitk.Image(outside)
    empty *= 0  # nothing non-zero outside: an all-zero placement
    placed = on_lattice(empty, ref)
    assert placed is not None and not placed.any()
