"""Tests of the phantom generator and its NIfTI writers against analytic/independent truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from breastai.errors import OutputExistsError, ParameterError
from breastai.phantom import (
    LAYOUTS,
    ORIENTATIONS,
    PRESETS,
    Layout,
    Preset,
    classify_curve,
    extended_tofts,
    generate_case,
    parker_aif,
    spgr_signal,
    write_nifti_phases,
    write_training_case,
    write_truth,
)

# Small grids that still hold the whole anatomy (FOV ~333 x 333 mm in-plane): fast and unscaled.
SMALL = {"shape_zyx": (24, 64, 64), "spacing_zyx": (6.0, 5.2, 5.2)}
MEDIUM = {"shape_zyx": (48, 128, 128), "spacing_zyx": (3.0, 2.6, 2.6)}


# ---- kinetics -----------------------------------------------------------------------------------
def test_parker_aif_peak_and_reference_values() -> None:
    t = np.arange(0.0, 600.0, 0.1)
    cb = parker_aif(t, arrival_s=15.0)
    assert cb.max() == pytest.approx(6.07, abs=0.01)  # osipi aif_parker / dcmri: 6.068 mM
    assert t[cb.argmax()] - 15.0 == pytest.approx(10.2, abs=0.3)
    assert np.interp([60.0, 180.0, 360.0], t, cb) == pytest.approx([0.94, 0.66, 0.40], abs=0.01)
    assert np.all(cb[t < 15.0] == 0)


def test_extended_tofts_equals_brute_force_convolution() -> None:
    t = np.arange(0.0, 400.0, 0.5)
    cp = parker_aif(t, arrival_s=15.0) / (1 - 0.42)
    kt, ve, vp = 0.4, 0.3, 0.05
    c = extended_tofts(t, cp, ktrans_per_min=kt, ve=ve, vp=vp)
    # independent: dense trapezoid convolution on a 0.05 s grid
    tf = np.arange(0.0, 400.0, 0.05)
    cpf = np.interp(tf, t, cp)
    kern = np.exp(-(kt / ve) * tf / 60.0)
    conv = np.convolve(cpf, kern)[: tf.size] * (0.05 / 60.0)
    ref = vp * cpf + kt * conv
    assert np.interp(t, tf, ref) == pytest.approx(c, abs=0.01)


def test_spgr_signal_limits() -> None:
    assert spgr_signal(1000.0, 90.0, 5.0) == pytest.approx(1 - np.exp(-5.0 / 1000.0))
    ernst = np.rad2deg(np.arccos(np.exp(-4.5 / 1266.0)))
    s = spgr_signal(1266.0, [ernst - 1, ernst, ernst + 1], 4.5)
    assert s[1] > s[0] and s[1] > s[2]


def test_classify_curve_rules() -> None:
    t = [-37.5, 60, 135, 210, 285, 360]
    assert classify_curve([100, 300, 280, 250, 230, 200], t) == ("fast", "washout")
    assert classify_curve([100, 180, 200, 205, 203, 201], t) == ("medium", "plateau")
    assert classify_curve([100, 130, 140, 150, 160, 170], t) == ("slow", "persistent")
    assert classify_curve([100, 150], [-60, 60])[1] == "unknown"


# ---- generator ----------------------------------------------------------------------------------
def test_same_seed_same_arrays_and_different_seed_differs() -> None:
    a = generate_case(7, **SMALL)
    b = generate_case(7, **SMALL)
    c = generate_case(8, **SMALL)
    for name in ("images", "breast", "tumor", "lesion_labels", "tissue"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert json.dumps(a.meta, sort_keys=True) == json.dumps(b.meta, sort_keys=True)
    assert not np.array_equal(a.images, c.images)


def test_case_contract() -> None:
    case = generate_case(1, **SMALL)
    t, z, y, x = case.images.shape
    assert (t, z, y, x) == (6, *SMALL["shape_zyx"])
    assert case.images.dtype == np.float32
    assert case.breast.dtype == np.uint8 and case.tumor.dtype == np.uint8
    assert case.lesion_labels.dtype == np.uint16
    assert np.all(np.diff(case.times_s) > 0) and case.times_s[0] < 0 < case.times_s[1]
    assert case.meta["times_s"] == pytest.approx(case.times_s.tolist())
    img = case.phase_image(1)
    assert img.GetSize() == (x, y, z)
    assert img.GetSpacing() == pytest.approx(SMALL["spacing_zyx"][::-1])
    assert case.mask_image("lesions").GetPixelIDTypeAsString() == "16-bit unsigned integer"
    json.dumps(case.meta)  # JSON-able
    with pytest.raises(ParameterError):
        case.mask_image("liver")


def test_default_case_anatomy_and_enhancement() -> None:
    case = generate_case(2, **MEDIUM)
    les = case.meta["lesions"]
    assert len(les) == 1 and les[0]["malignant"] and les[0]["curve_type"] == "washout"
    assert case.tumor.any() and np.array_equal(case.tumor > 0, case.lesion_labels == 1)
    # breasts are anterior (top rows): the breast mask centroid is in the anterior third
    rows = np.nonzero(case.breast)[1]
    assert rows.mean() < case.breast.shape[1] / 2.5
    # both breasts: mask voxels on both sides of the midline
    cols = np.nonzero(case.breast)[2]
    assert (cols < case.breast.shape[2] / 2).sum() > 100 and (
        cols > case.breast.shape[2] / 2
    ).sum() > 100
    # blood pool (heart) enhances strongly at the first post phase, ~300 % at 1.5 T
    blood = ndimage.binary_erosion(case.tissue == 8, iterations=1)
    s0, s1 = case.images[0][blood].mean(), case.images[1][blood].mean()
    assert 1.8 < s1 / s0 - 1 < 4.5
    # the tumour is inside the breast mask
    assert (case.breast[case.tumor > 0] > 0).mean() > 0.95
    # fat-sat: fat darker than FGT pre-contrast
    assert case.images[0][case.tissue == 2].mean() < case.images[0][case.tissue == 3].mean()


def test_round_lesion_volume_matches_analytic_sphere() -> None:
    case = generate_case(
        3,
        lesions=[
            {"shape": "round", "ld_mm": 22.0, "axes_ratio": (1.0, 1.0), "kinetics": "washout"}
        ],
        noise="none",
        **MEDIUM,
    )
    scale = case.meta["anatomy_scale"]
    r = 11.0 * scale
    analytic_ml = 4.0 / 3.0 * np.pi * r**3 / 1000.0
    vox_ml = float(np.prod(MEDIUM["spacing_zyx"])) / 1000.0
    gt_ml = float((case.lesion_labels == 1).sum()) * vox_ml
    assert gt_ml == pytest.approx(analytic_ml, rel=0.10)
    assert case.meta["lesions"][0]["longest_diameter_mm"] == pytest.approx(2 * r, rel=1e-3)


@pytest.mark.parametrize("shape", ["lobulated", "irregular", "spiculated", "rim"])
def test_lesion_ground_truth_volume_matches_continuous_shape(shape: str) -> None:
    case = generate_case(
        4,
        lesions=[{"shape": shape, "ld_mm": 30.0, "kinetics": "washout"}],
        noise="none",
        shape_zyx=(64, 160, 160),
        spacing_zyx=(2.0, 2.1, 2.1),
    )
    m = case.meta["lesions"][0]
    vox_ml = float(np.prod(case.spacing_zyx)) / 1000.0
    gt_ml = float((case.lesion_labels == 1).sum()) * vox_ml
    # spicules thinner than a voxel survive only by the 0.5 rule: allow 15 % there
    assert gt_ml == pytest.approx(m["volume_ml"], rel=0.15 if shape == "spiculated" else 0.10)
    if shape == "rim":
        assert (case.tissue == 40).any()  # necrotic core labelled, inside the tumor mask
        assert case.tumor[case.tissue == 40].all()


@pytest.mark.parametrize("target", [0.05, 0.2, 0.4, 0.65])
def test_fgt_fraction_hits_target(target: float) -> None:
    case = generate_case(5, fgt_fraction=target, lesions=[], noise="none", **MEDIUM)
    breast = case.breast > 0
    measured = float(((case.tissue == 3) & breast).sum()) / float(breast.sum())
    assert measured == pytest.approx(target, abs=0.05)
    assert case.meta["fgt_fraction"] == pytest.approx(measured, abs=1e-3)


def _birads(signal: np.ndarray, times: np.ndarray) -> str:
    """Independent BI-RADS delayed-phase rule: last phase vs the initial (<= 150 s) peak."""
    early = [k for k in range(1, len(times)) if times[k] <= 150.0]
    peak = max(signal[k] for k in early)
    change = (signal[-1] - peak) / peak
    return "persistent" if change > 0.1 else ("washout" if change < -0.1 else "plateau")


@pytest.mark.parametrize("kinetics", ["washout", "plateau", "persistent"])
def test_each_curve_type_comes_out(kinetics: str) -> None:
    case = generate_case(
        6,
        lesions=[{"shape": "round", "ld_mm": 24.0, "kinetics": kinetics}],
        bpe="minimal",
        **MEDIUM,
    )
    core = ndimage.binary_erosion(case.lesion_labels == 1, iterations=1)
    sig = np.array([case.images[k][core].mean() for k in range(case.n_phases)])
    assert _birads(sig, case.times_s) == kinetics
    initial_re = (sig[1] - sig[0]) / sig[0]
    assert initial_re > (1.0 if kinetics == "washout" else 0.3)
    assert case.meta["lesions"][0]["measured_curve"][1] == kinetics


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_generates(preset: str) -> None:
    case = generate_case(11, preset=preset, **SMALL)
    assert np.isfinite(case.images).all() and case.images.min() >= 0
    m = case.meta
    assert m["preset"] == preset
    if preset == "normal":
        assert not case.tumor.any() and not m["lesions"]
    if preset == "benign_fa":
        assert not case.tumor.any() and (case.lesion_labels > 0).any()
    if preset == "two_phase":
        assert case.n_phases == 2
    if preset == "single_breast":
        cols = np.nonzero(case.breast)[2]
        # LPS x grows to the patient's left, i.e. with the column index on axial images
        assert cols.min() > case.breast.shape[2] // 2 - 2
    if preset in ("multifocal", "bilateral"):
        assert len(m["lesions"]) >= 2
    if preset == "bilateral":
        assert {le["laterality"] for le in m["lesions"]} == {"L", "R"}
    if preset.startswith("implant"):
        assert (case.tissue == 14).any() and not case.breast[case.tissue == 14].any()
    if preset == "axillary_nodes":
        assert (case.tissue == 13).any()
    if preset == "motion":
        assert any(any(v != 0 for v in row) for row in m["motion_mm_per_phase"][1:])


def test_presets_enum_matches_presets_dict() -> None:
    assert {p.value for p in Preset} == set(PRESETS)
    assert {lay.value for lay in Layout} == set(LAYOUTS)
    assert ORIENTATIONS == ("axial", "sagittal", "oblique")


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_lesion_centre_in_world_coordinates(orientation: str) -> None:
    case = generate_case(
        9, orientation=orientation, lesions=[{"shape": "round", "ld_mm": 20.0}], **SMALL
    )
    idx_zyx = np.argwhere(case.lesion_labels == 1).mean(axis=0)
    ijk = idx_zyx[::-1] * np.asarray(case.spacing_zyx[::-1])
    world = np.asarray(case.origin_lps) + case.direction @ ijk
    assert world == pytest.approx(
        case.meta["lesions"][0]["centre_lps"], abs=max(SMALL["spacing_zyx"])
    )
    assert np.allclose(case.direction.T @ case.direction, np.eye(3))
    assert np.linalg.det(case.direction) == pytest.approx(1.0)


def test_sagittal_is_an_exact_transposition_of_axial() -> None:
    ax = generate_case(10, orientation="axial", shape_zyx=(24, 64, 48), spacing_zyx=(6.0, 5.2, 7.0))
    sag = generate_case(
        10, orientation="sagittal", shape_zyx=(48, 24, 64), spacing_zyx=(7.0, 6.0, 5.2)
    )
    # sagittal (z=LR towards right, y=SI downwards, x=AP) from axial (z=SI up, y=AP, x=LR to left)
    expect = ax.breast[::-1, :, ::-1].transpose(2, 0, 1)
    assert np.array_equal(sag.breast, expect)


def test_breast_volume_close_to_requested() -> None:
    case = generate_case(14, breast_ml=(400.0, 700.0), lesions=[], **MEDIUM)
    s3 = case.meta["anatomy_scale"] ** 3
    by_side = case.meta["breast_volume_ml_by_side"]
    assert by_side["R"] == pytest.approx(400.0 * s3, rel=0.15)
    assert by_side["L"] == pytest.approx(700.0 * s3, rel=0.15)
    vox_ml = float(np.prod(MEDIUM["spacing_zyx"])) / 1000.0
    assert case.meta["breast_volume_ml"] == pytest.approx(case.breast.sum() * vox_ml, rel=1e-6)


def test_parameter_errors() -> None:
    with pytest.raises(ParameterError, match="preset"):
        generate_case(0, preset="nope", **SMALL)
    with pytest.raises(ParameterError, match="n_phases"):
        generate_case(0, n_phases=9, **SMALL)
    with pytest.raises(ParameterError, match="unknown generate_case parameter"):
        generate_case(0, colour="red", **SMALL)
    with pytest.raises(ParameterError, match="orientation"):
        generate_case(0, orientation="coronal", **SMALL)
    with pytest.raises(ParameterError, match="shape"):
        generate_case(0, lesions=[{"shape": "star"}], **SMALL)


# ---- NIfTI writers ------------------------------------------------------------------------------
def test_training_case_layout_and_values(tmp_path: Path) -> None:
    import SimpleITK as sitk

    case = generate_case(12, **SMALL)
    folder = write_training_case(case, tmp_path)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [f"P{k}.nii.gz" for k in range(6)]
        + ["breast.nii.gz", "tumor.nii.gz", "lesions.nii.gz", "truth.json"]
    )
    p0 = sitk.ReadImage(str(folder / "P0.nii.gz"))
    p1 = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "P1.nii.gz"))).astype(float)
    assert p0.GetOrigin() == pytest.approx(case.origin_lps, abs=1e-4)
    truth = json.loads((folder / "truth.json").read_text())
    # one global scale: DN / signal is the same for every phase
    assert p1 == pytest.approx(np.rint(case.images[1] * truth["dn_scale"]), abs=1)
    assert (
        sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "tumor.nii.gz"))).sum()
        == case.tumor.sum()
    )
    with pytest.raises(OutputExistsError):
        write_training_case(case, tmp_path)
    other = write_training_case(case, tmp_path / "named", case_name="case_0001")
    assert other == tmp_path / "named" / "case_0001" and (other / "P5.nii.gz").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder.name, "named"])


def test_nifti_phase_naming(tmp_path: Path) -> None:
    case = generate_case(13, n_phases=3, **SMALL)
    seed = write_nifti_phases(case, tmp_path / "a")
    mm = write_nifti_phases(case, tmp_path / "b", naming="mamamia", case_name="duke_001")
    assert [p.name for p in seed] == ["P0.nii.gz", "P1.nii.gz", "P2.nii.gz"]
    assert [p.name for p in mm] == [
        "duke_001_0000.nii.gz",
        "duke_001_0001.nii.gz",
        "duke_001_0002.nii.gz",
    ]
    truth = write_truth(case, tmp_path / "t")
    assert [p.name for p in truth] == [
        "breast.nii.gz",
        "tumor.nii.gz",
        "lesions.nii.gz",
        "truth.json",
    ]
    with pytest.raises(ParameterError):
        write_nifti_phases(case, tmp_path / "c", naming="bids")


def test_hard_case_presets_change_what_they_claim() -> None:
    base = generate_case(15, preset="normal", **SMALL)
    fat, fgt = base.tissue == 2, base.tissue == 3
    # H14 no fat-sat: fat brighter than FGT before contrast (the reverse of the default)
    nofs = generate_case(15, preset="no_fatsat", lesions=[], **SMALL)
    assert nofs.images[0][fat].mean() > nofs.images[0][fgt].mean()
    assert base.images[0][fat].mean() < base.images[0][fgt].mean()
    # H15 low SNR: noise sigma relative to the FGT signal is ~25/8 times the default
    low = generate_case(15, preset="low_snr", lesions=[], **SMALL)
    rel = low.meta["noise_sigma"] / base.meta["noise_sigma"]
    assert rel == pytest.approx(25.0 / 8.0, rel=0.05)
    # H13 3 T with B1+ asymmetry: FGT pre-contrast signal differs between the breasts (x > 0 left)
    b1 = generate_case(15, preset="b1_asym_3T", lesions=[], **SMALL)
    half = b1.tissue.shape[2] // 2
    left = b1.images[0][:, :, half:][b1.tissue[:, :, half:] == 3].mean()
    right = b1.images[0][:, :, :half][b1.tissue[:, :, :half] == 3].mean()
    assert abs(left / right - 1) > 0.05
    # H16 wrap-around: signal folded into the air at the lateral edges of the field of view
    wrap = generate_case(15, preset="wraparound", lesions=[], noise="none", **SMALL)
    air = base.tissue == 0
    assert (
        wrap.images[0][air].mean()
        > 10 * generate_case(15, preset="normal", noise="none", **SMALL).images[0][air].mean()
    )
    # H8 motion: later phases are shifted copies; ground truth stays in the pre-contrast frame
    mot = generate_case(15, preset="motion", lesions=[], noise="none", **SMALL)
    still = generate_case(15, preset="normal", noise="none", **SMALL)
    assert np.array_equal(mot.breast, still.breast)
    assert np.abs(mot.images[0] - still.images[0]).max() < 1e-6
    assert np.abs(mot.images[-1] - still.images[-1]).mean() > 0.02 * still.images[-1].mean()
    # H7 two phases with 120 s spacing
    two = generate_case(15, preset="two_phase", **SMALL)
    assert two.n_phases == 2 and two.times_s[1] == pytest.approx(60.0)


def test_truth_longest_diameter_is_exact_on_flat_point_sets() -> None:
    # A flat (coplanar) set defeats a 3-D convex hull; the truth must still be exact, not an
    # estimate from a subsample (the two farthest points sit at odd indices of 5001 points).
    from breastai.phantom.generator import _longest_diameter

    rng = np.random.default_rng(3)
    r = 9.0 * np.sqrt(rng.random(5001))
    a = rng.random(5001) * 2 * np.pi
    pts = np.column_stack([r * np.cos(a), r * np.sin(a), np.zeros(5001)])
    pts[1] = (-10.0, 0.0, 0.0)
    pts[3] = (10.0, 0.0, 0.0)
    assert _longest_diameter(pts) == pytest.approx(20.0, abs=1e-9)


def test_clumped_background_enhancement() -> None:
    # bpe_fraction / bpe_scale_mm: a smaller share of the gland enhances, in smaller patches;
    # the defaults leave the phantom as it was (the stated meta keys appear only when set)
    from breastai.phantom.tissues import FGT

    grid = {"shape_zyx": (48, 128, 128), "spacing_zyx": (4.0, 2.6, 2.6), "noise": "none"}
    diffuse = generate_case(7, preset="bpe_marked", **grid)
    clumped = generate_case(7, preset="bpe_marked", bpe_fraction=0.3, bpe_scale_mm=8.0, **grid)
    assert "bpe_fraction" not in diffuse.meta and clumped.meta["bpe_scale_mm"] == 8.0

    def enhancing(case):  # type: ignore[no-untyped-def]
        im = case.images.astype(np.float64)
        rise = (im[1:].max(axis=0) - im[0]) / np.maximum(im[0], 1e-6)
        gland = (case.tissue == FGT) & (case.tumor == 0)
        return gland, gland & (rise > 0.5)

    g, e = enhancing(diffuse)
    assert e.sum() / g.sum() > 0.7  # marked: 85 % of the gland
    g, e = enhancing(clumped)
    assert 0.2 < e.sum() / g.sum() < 0.4
    patches = ndimage.label(e)[1]
    assert patches > ndimage.label(enhancing(diffuse)[1])[1]
    for bad in ({"bpe_fraction": 0.0}, {"bpe_fraction": 1.5}, {"bpe_scale_mm": 0.0}):
        with pytest.raises(ParameterError, match="bpe_"):
            generate_case(7, preset="bpe_marked", **grid, **bad)
