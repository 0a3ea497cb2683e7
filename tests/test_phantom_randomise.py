"""Domain randomisation of the phantom (breastai.phantom.randomise) and the anatomy knobs."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from breastai.errors import ParameterError
from breastai.phantom import generate_case
from breastai.phantom.generator import FGT, LESION0, SKIN
from breastai.phantom.randomise import (
    crop_case,
    generate_randomised_case,
    random_fov,
    random_overrides,
    rerender,
)

SMALL = {"shape_zyx": (24, 64, 64), "spacing_zyx": (6.0, 5.2, 5.2)}
MEDIUM = {"shape_zyx": (40, 112, 112), "spacing_zyx": (4.0, 3.0, 3.0)}
# a small grid for randomised cases (anatomy scaled down, fast)
TINY_GRID = ((24, 72, 72), (6.0, 4.6, 4.6))


def test_neutral_knobs_give_the_default_phantom() -> None:
    plain = generate_case(3, preset="multifocal", **SMALL)
    explicit = generate_case(
        3,
        preset="multifocal",
        chest_scale=(1.0, 1.0),
        skin_mm=1.5,
        fat_scale=1.0,
        pec_scale=1.0,
        breast_sep=1.0,
        breast_centre_w=0.55,
        breast_aspect=None,
        breast_shear=(0.0, 0.0),
        heart_scale=1.0,
        **SMALL,
    )
    assert np.array_equal(plain.images, explicit.images)
    assert np.array_equal(plain.tissue, explicit.tissue)


def _centroid_x_mm(case: object, side_sign: float) -> float:
    breast = case.breast  # type: ignore[attr-defined]
    x = (np.arange(breast.shape[2]) - (breast.shape[2] - 1) / 2) * case.spacing_zyx[2]  # type: ignore[attr-defined]
    cols = breast.sum(axis=(0, 1)) * (np.sign(x) == side_sign)
    return float((cols * x).sum() / cols.sum())


def test_anatomy_knobs_change_what_they_claim() -> None:
    base = generate_case(5, preset="normal", noise="none", **MEDIUM)
    thick = generate_case(5, preset="normal", noise="none", skin_mm=3.5, **MEDIUM)
    skin_in_breast = ((base.tissue == SKIN) & (base.breast > 0)).sum()
    assert ((thick.tissue == SKIN) & (thick.breast > 0)).sum() > 1.5 * skin_in_breast
    # lateral fall (supine-like): the left breast's centre moves further left (+x in LPS)
    fall = generate_case(5, preset="normal", noise="none", breast_shear=(0.0, 0.4), **MEDIUM)
    assert _centroid_x_mm(fall, 1.0) > _centroid_x_mm(base, 1.0) + 3.0
    assert _centroid_x_mm(fall, -1.0) < _centroid_x_mm(base, -1.0) - 3.0
    # a wider thorax puts body signal further out to the sides
    wide = generate_case(5, preset="normal", noise="none", chest_scale=(1.15, 1.0), **MEDIUM)
    mid = MEDIUM["shape_zyx"][0] // 2
    width = (base.images[0, mid] > 0).any(axis=0).sum()
    assert (wide.images[0, mid] > 0).any(axis=0).sum() > width
    # deeper breasts for the same volume: the breast reaches further anterior
    deep = generate_case(5, preset="normal", noise="none", breast_aspect=(1.0, 1.4), **MEDIUM)
    first_row = np.argmax(base.breast.any(axis=(0, 2)))
    assert np.argmax(deep.breast.any(axis=(0, 2))) < first_row


def test_lesions_follow_a_sheared_breast() -> None:
    for seed in range(3):
        case = generate_case(seed, breast_shear=(-0.4, 0.4), **MEDIUM)
        assert case.tumor.any()
        inside = (case.tumor > 0) & (case.breast > 0)
        assert inside.sum() >= 0.95 * case.tumor.sum()


def test_randomised_case_is_seeded_and_varied() -> None:
    a = generate_randomised_case(11, grid=TINY_GRID)
    b = generate_randomised_case(11, grid=TINY_GRID)
    c = generate_randomised_case(12, grid=TINY_GRID)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.breast, b.breast)
    assert a.meta["randomised"] != c.meta["randomised"]
    draws = [random_overrides(np.random.default_rng(s)) for s in range(20)]
    assert len({round(d["skin_mm"], 3) for d in draws}) == 20
    assert {d["fat_sat"] for d in draws} == {True, False}
    assert len({d["n_phases"] for d in draws}) >= 3


def test_rerender_keeps_truth_and_lesions_enhance_above_gland() -> None:
    lesion_spec = [{"kind": "malignant", "kinetics": "washout", "ld_mm": 25.0, "shape": "round"}]
    case = generate_case(4, preset="default", fgt_category="c", lesions=lesion_spec, **MEDIUM)
    for seed in range(4):
        out = rerender(case, np.random.default_rng(seed))
        assert np.array_equal(out.breast, case.breast)
        assert np.array_equal(out.tumor, case.tumor)
        assert out.images.shape == case.images.shape
        assert not np.allclose(out.images, case.images)
        lesion = case.tissue == LESION0 + 1
        fgt = case.tissue == FGT
        sub = out.images[1] - out.images[0]
        assert sub[lesion].mean() > sub[fgt].mean()


@pytest.mark.parametrize("orientation", ["axial", "sagittal", "oblique"])
def test_crop_keeps_world_positions(orientation: str) -> None:
    case = generate_case(2, orientation=orientation, **SMALL)
    box = (slice(3, 20), slice(10, 50), slice(5, 60))
    out = crop_case(case, box)
    full, part = case.phase_image(1), out.phase_image(1)
    for idx in ((0, 0, 0), (5, 7, 9), (54, 39, 16)):  # (x, y, z) in the crop
        src = (idx[0] + 5, idx[1] + 10, idx[2] + 3)
        assert np.allclose(
            part.TransformIndexToPhysicalPoint(idx), full.TransformIndexToPhysicalPoint(src)
        )
        assert part[idx] == full[src]
    assert np.array_equal(sitk.GetArrayFromImage(out.mask_image("breast")), case.breast[box])


def test_random_fov_breasts_only_keeps_the_breasts() -> None:
    case = generate_case(6, **MEDIUM)
    out = random_fov(case, np.random.default_rng(0), "breasts")
    assert out.breast.shape[1] < case.breast.shape[1]
    assert out.breast.sum() == case.breast.sum()
    one = random_fov(case, np.random.default_rng(0), "one_breast")
    assert one.breast.shape[2] < case.breast.shape[2] and one.breast.sum() < case.breast.sum()
    with pytest.raises(ParameterError, match="fov kind"):
        random_fov(case, np.random.default_rng(0), "moon")
    with pytest.raises(ParameterError, match="anatomy knobs"):
        generate_case(1, skin_mm=20.0, **SMALL)
    with pytest.raises(ParameterError, match="appearance"):
        generate_randomised_case(1, appearance=2.0)
