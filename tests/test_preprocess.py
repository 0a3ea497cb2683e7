"""Tests of breastai.preprocess against hand computations and analytic geometry."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from breastai.errors import InputError, ParameterError
from breastai.preprocess import (
    assemble_slots,
    choose_phases,
    normalise_p1p99_minmax,
    normalise_seed,
    resample_to_reference,
    resample_to_spacing,
    seed_clip_bounds,
)


def _image(arr: np.ndarray, spacing_xyz, origin, direction) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing(spacing_xyz)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


OBLIQUE = tuple(
    sitk.VersorTransform((0.3, 0.2, 0.9), 0.4).GetMatrix()
)  # a proper rotation, neither axial nor sagittal


def _hand_seed(phases: list[np.ndarray]) -> list[np.ndarray]:
    """Independent re-statement of docs/seed-model.md using full sorts on the subsample."""
    res = []

    def clipped(p: np.ndarray) -> np.ndarray:
        p = np.where(p < 0, 0.0, p).astype(np.float64)
        flat = p.reshape(-1)
        sub = np.sort(flat[np.random.default_rng(0).integers(0, flat.size, flat.size // 64)])

        # linear-interpolated percentile, written out (numpy's default "linear" method)
        def pct(q: float) -> float:
            pos = q / 100 * (sub.size - 1)
            lo = int(np.floor(pos))
            hi = min(lo + 1, sub.size - 1)
            return float(sub[lo] + (sub[hi] - sub[lo]) * (pos - lo))

        p = np.minimum(np.maximum(p, pct(1)), pct(99))
        return np.where(p < 1, 1.0, p)

    p0 = clipped(phases[0])
    res.append((p0 - p0.min()) / (p0.max() - p0.min()))
    p1 = clipped(phases[1])
    res.append((p1 - p1.min()) / (p1.max() - p1.min()))
    for p in phases[2:]:
        q = np.where(p < 1, 1.0, p)
        res.append((q - p1.min()) / (p1.max() - p1.min()))
    return res


def test_normalise_seed_matches_hand_computation() -> None:
    rng = np.random.default_rng(1)
    shape = (12, 20, 24)
    phases = [rng.normal(100 * (k + 1), 60, shape).astype(np.float32) for k in range(4)]
    phases[2][0, 0, 0] = 10_000.0  # a bright outlier in a later phase: no upper clip there
    phases[0][1, 1, 1] = -50.0  # negatives go to 0 (then floor at 1)
    got = normalise_seed(phases)
    want = _hand_seed(phases)
    assert len(got) == 4
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert got[0].min() == 0 and got[0].max() == pytest.approx(1.0)
    assert got[1].min() == 0 and got[1].max() == pytest.approx(1.0)
    assert got[2].max() > 1.0  # later phases are not clipped


def test_normalise_seed_constant_volumes_give_zeros_not_nan() -> None:
    p0 = np.full((4, 4, 4), 5.0, np.float32)  # constant: min == max after clipping
    p1 = np.full((4, 4, 4), 0.5, np.float32)  # floored to 1 everywhere: constant
    p2 = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    n0, n1, n2 = normalise_seed([p0, p1, p2])
    assert np.all(n0 == 0) and np.all(n1 == 0)
    assert np.all(n2 == 0)  # P1's range is empty: no division by zero


def test_percentile_sample_does_not_alias_with_width() -> None:
    # 64-wide image: a stride-64 sample would see column 0 only (air here) and clip everything.
    a = np.zeros((8, 64, 64), np.float32)
    a[:, :, 16:48] = 100.0
    out = normalise_p1p99_minmax(a)
    assert out.max() == pytest.approx(1.0) and out[0, 0, 20] == pytest.approx(1.0)


def test_normalise_seed_rejects_single_phase() -> None:
    with pytest.raises(InputError):
        normalise_seed([np.zeros((2, 2, 2))])


def test_normalise_p1p99_minmax_hand() -> None:
    x = np.arange(64 * 100, dtype=np.float32).reshape(10, 10, 64)
    flat = x.reshape(-1)
    sub = flat[np.random.default_rng(0).integers(0, flat.size, flat.size // 64)]
    p1, p99 = np.percentile(sub, [1, 99])
    got = normalise_p1p99_minmax(x)
    want = (np.clip(x, p1, p99) - p1) / (p99 - p1)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert got.min() == 0.0 and got.max() == pytest.approx(1.0)


@pytest.mark.parametrize("direction", [tuple(np.eye(3).ravel()), OBLIQUE])
def test_resample_to_spacing_keeps_extent_origin_direction(direction) -> None:
    arr = np.random.default_rng(0).random((10, 30, 25)).astype(np.float32)
    img = _image(arr, (0.7, 0.8, 2.5), (10.0, -20.0, 30.0), direction)
    out = resample_to_spacing(img, (1.0, 1.0, 1.0))
    assert out.GetOrigin() == pytest.approx(img.GetOrigin())
    assert out.GetDirection() == pytest.approx(img.GetDirection())
    assert out.GetSpacing() == pytest.approx((1.0, 1.0, 1.0))
    ext_in = np.array(img.GetSize()) * np.array(img.GetSpacing())
    ext_out = np.array(out.GetSize()) * np.array(out.GetSpacing())
    assert np.all(np.abs(ext_out - ext_in) <= 0.5 + 1e-9)  # within half a new voxel (rounding)
    assert out.GetSize() == (18, 24, 25)  # round(25*.7), round(30*.8), round(10*2.5)


def test_resample_linear_reproduces_a_linear_ramp() -> None:
    # A ramp along z is reproduced exactly by linear interpolation, including the edges.
    z = np.arange(8, dtype=np.float32)[:, None, None] * np.ones((1, 4, 4), np.float32)
    img = _image(z * 2.0, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    out = sitk.GetArrayFromImage(resample_to_spacing(img, (1.0, 1.0, 1.0)))
    assert out.shape == (16, 4, 4)
    # voxel k of the output sits at z = k mm; the ramp value there is k (value = 2*index = z mm)
    np.testing.assert_allclose(out[:15, 0, 0], np.arange(15), atol=1e-5)
    assert out[15, 0, 0] > 0  # edge is not zero-filled


def test_resample_to_reference_round_trip_geometry() -> None:
    arr = np.random.default_rng(0).random((10, 12, 14)).astype(np.float32)
    native = _image(arr, (0.9, 0.9, 2.0), (5.0, 6.0, 7.0), OBLIQUE)
    model = resample_to_spacing(native, (1.0, 1.0, 1.0))
    back = resample_to_reference(model, native, interpolator="linear")
    assert back.GetSize() == native.GetSize()
    assert back.GetSpacing() == native.GetSpacing()
    assert back.GetOrigin() == native.GetOrigin()
    assert back.GetDirection() == native.GetDirection()
    mask = sitk.Cast(native > 0.5, sitk.sitkUInt8)
    m2 = resample_to_reference(
        resample_to_spacing(mask, (1.0, 1.0, 1.0), interpolator="nearest"),
        native,
        interpolator="nearest",
    )
    assert m2.GetPixelID() == sitk.sitkUInt8


def test_bad_interpolator_and_spacing() -> None:
    img = _image(np.zeros((2, 2, 2)), (1, 1, 1), (0, 0, 0), tuple(np.eye(3).ravel()))
    with pytest.raises(ParameterError):
        resample_to_spacing(img, (1, 1, 1), interpolator="cubic")
    with pytest.raises(ParameterError):
        resample_to_spacing(img, (0, 1, 1))


def test_assemble_slots_fills_absent_with_p1_masked() -> None:
    p = [np.full((2, 3, 4), float(k), np.float32) for k in range(3)]
    slots, mask = assemble_slots(p, 6)
    assert slots.shape == (6, 2, 3, 4) and slots.dtype == np.float32
    np.testing.assert_array_equal(mask, [1, 1, 1, 0, 0, 0])
    assert mask.dtype == np.float32
    for i in range(3):
        assert np.all(slots[i] == i)
    for i in range(3, 6):
        assert np.all(slots[i] == 1.0)  # a copy of P1
    with pytest.raises(ParameterError):
        assemble_slots(p, 2)
    with pytest.raises(InputError):
        assemble_slots(p[:1], 6)


def test_choose_phases() -> None:
    assert choose_phases([0, 60, 120], 6) == ([0, 1, 2], None)
    times = [0.0, 60, 120, 180, 240, 300, 360, 420, 480]
    picked, note = choose_phases(times, 6)
    assert picked[:2] == [0, 1] and len(picked) == 6 and picked[-1] == 8
    assert picked == [0, 1, 2, 4, 6, 8]
    assert note is not None and "9 phases" in note
    picked2, _ = choose_phases([None] * 9, 4)
    assert picked2 == [0, 1, 2, 8]


def test_same_grid_compares_every_geometry_field() -> None:
    from breastai.preprocess import same_grid

    a = sitk.Image(4, 5, 6, sitk.sitkUInt8)
    b = sitk.Image(4, 5, 6, sitk.sitkFloat32)  # pixel type is not geometry
    assert same_grid(a, b)
    for change in (
        lambda im: im.SetSpacing((1.0, 1.0, 2.0)),
        lambda im: im.SetOrigin((0.0, 0.0, 0.5)),
        lambda im: im.SetDirection((-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)),
    ):
        c = sitk.Image(4, 5, 6, sitk.sitkUInt8)
        change(c)
        assert not same_grid(a, c)
    assert not same_grid(a, sitk.Image(4, 5, 7, sitk.sitkUInt8))


@pytest.mark.parametrize("orientation", ["sagittal", "oblique"])
def test_canonical_grid_is_axis_aligned_and_keeps_voxels_in_place(orientation: str) -> None:
    """canonical=True relabels the axes to run closest to L, P, S (sagittal: a permutation with
    flips; the oblique tilt is kept); a bright voxel lands at the same patient position."""
    from breastai.phantom import generate_case

    case = generate_case(0, orientation=orientation, shape_zyx=(16, 32, 32))
    image = case.phase_image(1)
    arr = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.float32)
    arr[8, 10, 20] = 1.0
    marked = sitk.GetImageFromArray(arr)
    marked.CopyInformation(image)
    out = resample_to_spacing(marked, (1.0, 1.0, 1.0), interpolator="nearest", canonical=True)
    direction = np.reshape(out.GetDirection(), (3, 3))
    assert np.all(np.diag(direction) > 0.9)  # each array axis runs closest to L, P, S
    if orientation == "sagittal":
        assert np.allclose(direction, np.eye(3))
    else:  # the oblique tilt is kept: same axes as the input
        assert np.allclose(direction, np.reshape(image.GetDirection(), (3, 3)))
    point = np.array(marked.TransformIndexToPhysicalPoint((20, 10, 8)))
    hit = np.argwhere(sitk.GetArrayViewFromImage(out) > 0)
    assert len(hit) > 0
    hit_points = np.array(
        [out.TransformIndexToPhysicalPoint([int(v) for v in h[::-1]]) for h in hit]
    )
    assert np.min(np.linalg.norm(hit_points - point, axis=1)) <= np.sqrt(3) * 0.5 + 1e-6
    if orientation != "sagittal":
        return
    # the relabelled, axis-aligned grid covers every voxel centre of the input
    lo = np.array(out.GetOrigin())
    hi = np.array(out.TransformIndexToPhysicalPoint([s - 1 for s in out.GetSize()]))
    size = image.GetSize()
    for corner in np.ndindex(2, 2, 2):
        p = np.array(
            image.TransformIndexToPhysicalPoint(
                [c * (n - 1) for c, n in zip(corner, size, strict=True)]
            )
        )
        assert np.all(p >= lo - 1e-6) and np.all(p <= hi + 1.0)


def test_split_stacks_are_normalised_as_one_volume() -> None:
    """Two halves of one volume with joint clip bounds match the whole volume normalised."""
    rng = np.random.default_rng(3)
    shape = (16, 40, 80)
    p0 = rng.uniform(50, 400, shape).astype(np.float32)
    p1 = p0 * 1.2
    p1[4:10, 10:20, 50:60] = 2500.0  # a bright lesion in the second half only
    p2 = p1 * 0.9
    whole = normalise_seed([p0, p1, p2])
    halves = [[a[..., :40] for a in (p0, p1, p2)], [a[..., 40:] for a in (p0, p1, p2)]]
    bounds = seed_clip_bounds(halves)
    for k, half in enumerate(halves):
        got = normalise_seed(half, clip_bounds=bounds)
        for a, b in zip(got, whole, strict=True):
            part = b[..., :40] if k == 0 else b[..., 40:]
            np.testing.assert_allclose(a, part, atol=0.02)  # percentiles from subsamples
    # alone, the half without the lesion is stretched: its parenchyma looks brighter
    alone = normalise_seed(halves[0])
    assert alone[1].mean() > 1.5 * whole[1][..., :40].mean()
    # the bounds path is the default path when the bounds are a volume's own
    own = normalise_seed([p0, p1, p2], clip_bounds=seed_clip_bounds([[p0, p1, p2]]))
    for a, b in zip(own, whole, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(InputError):
        seed_clip_bounds([[p0]])
