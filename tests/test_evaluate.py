"""Tests of breastai.evaluate and `breastai evaluate` against SimpleITK and brute force."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.distance import cdist

from breastai.errors import InconsistentGeometryError, InputError, OutputExistsError
from breastai.evaluate import (
    CSV_COLUMNS,
    evaluate_case,
    evaluate_paths,
    mean_finite,
    metrics_csv,
    write_csv,
)

SPACING = (0.7, 0.9, 2.0)  # x, y, z


def _img(arr: np.ndarray, spacing=SPACING, origin=(0.0, 0.0, 0.0), direction=None) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr).astype(np.uint8))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


def _ball(shape, centre_zyx, radius_mm, spacing=SPACING) -> np.ndarray:
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    d2 = (
        ((z - centre_zyx[0]) * spacing[2]) ** 2
        + ((y - centre_zyx[1]) * spacing[1]) ** 2
        + ((x - centre_zyx[2]) * spacing[0]) ** 2
    )
    return d2 <= radius_mm**2


def _brute_surface_points(arr: np.ndarray, spacing=SPACING) -> np.ndarray:
    """Surface voxels by an explicit 6-neighbour loop, as (N, 3) mm coordinates (x, y, z)."""
    pts = []
    for z, y, x in np.argwhere(arr):
        for dz, dy, dx in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
            n = (z + dz, y + dy, x + dx)
            if not all(0 <= n[i] < arr.shape[i] for i in range(3)) or not arr[n]:
                pts.append((x * spacing[0], y * spacing[1], z * spacing[2]))
                break
    return np.asarray(pts)


def test_hausdorff_matches_simpleitk_for_offset_spheres() -> None:
    shape = (20, 50, 60)
    gt = _ball(shape, (10, 25, 28), 9.0)
    pred = _ball(shape, (9, 23, 33), 8.0)
    m = evaluate_case(_img(pred), _img(gt))
    f = sitk.HausdorffDistanceImageFilter()
    f.Execute(_img(gt), _img(pred))
    assert m.hausdorff_mm == pytest.approx(f.GetHausdorffDistance(), abs=1e-6)
    assert 0.5 < m.dice < 1.0


def test_distances_equal_brute_force_on_small_shapes() -> None:
    rng = np.random.default_rng(11)
    for _ in range(3):
        shape = (8, 12, 12)
        gt = rng.random(shape) > 0.6
        pred = rng.random(shape) > 0.6
        gt[4, 6, 6] = pred[2, 3, 3] = True
        m = evaluate_case(_img(pred), _img(gt))
        sp, sg = _brute_surface_points(pred), _brute_surface_points(gt)
        d = cdist(sp, sg)
        pooled = np.concatenate([d.min(axis=1), d.min(axis=0)])
        assert m.hausdorff_mm == pytest.approx(pooled.max(), abs=1e-9)
        assert m.hd95_mm == pytest.approx(np.percentile(pooled, 95), abs=1e-9)
        assert m.assd_mm == pytest.approx(pooled.mean(), abs=1e-9)
        inter = int((gt & pred).sum())
        assert m.dice == pytest.approx(2 * inter / (gt.sum() + pred.sum()))
        assert m.sensitivity == pytest.approx(inter / gt.sum())
        assert m.precision == pytest.approx(inter / pred.sum())


def test_overlap_values_and_lesion_detection() -> None:
    gt = np.zeros((10, 30, 30), dtype=bool)
    pred = np.zeros_like(gt)
    gt[2:6, 2:8, 2:8] = True  # lesion A: found
    gt[2:6, 20:26, 2:8] = True  # lesion B: found by a small overlap
    gt[2:6, 2:8, 20:26] = True  # lesion C: missed
    pred[2:6, 2:8, 5:11] = True  # half of A (4*6*3 voxels inside)
    pred[5:7, 25:28, 7:9] = True  # touches B in one corner
    pred[8:10, 20:25, 20:25] = True  # false positive
    m = evaluate_case(_img(pred), _img(gt))
    assert (m.gt_lesions, m.pred_lesions, m.tp, m.fn, m.fp) == (3, 3, 2, 1, 1)
    inter = int((gt & pred).sum())
    assert m.dice == pytest.approx(2 * inter / (gt.sum() + pred.sum()))
    voxel_ml = float(np.prod(SPACING)) / 1000
    assert m.gt_volume_ml == pytest.approx(gt.sum() * voxel_ml)
    # exact shift: pred = gt moved by 2 voxels along x -> Hausdorff is 2 x-spacings
    shifted = np.roll(gt, 2, axis=2)
    m = evaluate_case(_img(shifted), _img(gt))
    assert m.hausdorff_mm == pytest.approx(2 * SPACING[0])
    assert (m.tp, m.fn, m.fp) == (3, 0, 0)


def test_empty_masks() -> None:
    empty = np.zeros((4, 5, 6), dtype=bool)
    full = empty.copy()
    full[1:3, 1:3, 1:3] = True
    both = evaluate_case(_img(empty), _img(empty))
    assert both.dice == 1.0 and math.isnan(both.sensitivity) and math.isnan(both.hausdorff_mm)
    assert both.gt_empty and both.pred_empty
    no_pred = evaluate_case(_img(empty), _img(full))
    assert no_pred.dice == 0.0 and no_pred.sensitivity == 0.0 and math.isnan(no_pred.precision)
    assert math.isinf(no_pred.hausdorff_mm) and math.isinf(no_pred.hd95_mm)
    assert (no_pred.tp, no_pred.fn, no_pred.fp) == (0, 1, 0)
    no_gt = evaluate_case(_img(full), _img(empty))
    assert no_gt.dice == 0.0 and no_gt.precision == 0.0 and math.isnan(no_gt.sensitivity)
    assert (no_gt.tp, no_gt.fn, no_gt.fp) == (0, 0, 1)
    d = no_gt.to_dict()
    assert d["hausdorff_mm"] is None and d["gt_empty"] is True
    json.dumps(d, allow_nan=False)
    text = metrics_csv([both, no_pred])
    assert "nan" in text and "inf" in text


def test_pred_on_another_grid_is_resampled_and_disjoint_refused() -> None:
    gt_arr = _ball((20, 40, 40), (10, 20, 20), 8.0, spacing=(1.0, 1.0, 1.0))
    gt = _img(gt_arr, spacing=(1.0, 1.0, 1.0))
    fine = sitk.Resample(
        gt,
        [s * 2 for s in gt.GetSize()],
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        (-0.25, -0.25, -0.25),
        (0.5, 0.5, 0.5),
        gt.GetDirection(),
        0,
        gt.GetPixelID(),
    )
    m = evaluate_case(fine, gt)
    assert m.resampled and any("resampled" in w for w in m.warnings)
    assert m.dice == pytest.approx(1.0)
    far = _img(gt_arr, spacing=(1.0, 1.0, 1.0), origin=(1000.0, 0.0, 0.0))
    with pytest.raises(InconsistentGeometryError, match="do not overlap"):
        evaluate_case(far, gt)


def test_label_selection_and_oblique_grid() -> None:
    arr = np.zeros((10, 20, 20), dtype=np.uint8)
    arr[2:5, 2:8, 2:8] = 1
    arr[6:9, 10:16, 10:16] = 2
    direction = tuple(np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0].ravel())
    gt = _img(arr, direction=direction)
    pred_arr = arr.copy()
    pred_arr[pred_arr == 2] = 0
    pred = _img(pred_arr, direction=direction)
    assert evaluate_case(pred, gt, label=1).dice == 1.0
    assert evaluate_case(pred, gt, label=2).dice == 0.0
    m = evaluate_case(pred, gt)
    assert (m.tp, m.fn) == (1, 1)
    assert any("labels 1, 2" in w for w in m.warnings)


def _write(arr: np.ndarray, path: Path) -> Path:
    sitk.WriteImage(_img(arr), str(path))
    return path


def test_folders_paired_by_name_and_csv(tmp_path: Path) -> None:
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    a = _ball((10, 20, 20), (5, 10, 10), 5.0)
    b = _ball((10, 20, 20), (5, 9, 11), 5.0)
    _write(a, tmp_path / "gt" / "case1.nii.gz")
    _write(a, tmp_path / "pred" / "case1.nii.gz")
    _write(a, tmp_path / "gt" / "case2.nii.gz")
    _write(b, tmp_path / "pred" / "case2.nii.gz")
    _write(a, tmp_path / "gt" / "case3.nii.gz")  # no prediction
    rows, notes = evaluate_paths(tmp_path / "pred", tmp_path / "gt")
    assert [r.case for r in rows] == ["case1", "case2"]
    assert rows[0].dice == 1.0 and rows[0].hausdorff_mm == 0.0 and rows[1].dice < 1.0
    assert len(notes) == 1 and "case3" in notes[0]
    out = write_csv(rows, tmp_path / "m.csv")
    table = list(csv.DictReader(out.open()))
    assert tuple(table[0]) == CSV_COLUMNS and len(table) == 2
    assert float(table[1]["dice"]) == pytest.approx(rows[1].dice, rel=1e-5)
    with pytest.raises(OutputExistsError):
        write_csv(rows, out)
    with pytest.raises(InputError, match="two folders"):
        evaluate_paths(tmp_path / "pred", tmp_path / "gt" / "case1.nii.gz")
    (tmp_path / "other").mkdir()
    _write(a, tmp_path / "other" / "x.nii.gz")
    with pytest.raises(InputError, match="same name"):
        evaluate_paths(tmp_path / "other", tmp_path / "gt")


def test_cli_evaluate(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from breastai.cli import app

    a = _ball((10, 20, 20), (5, 10, 10), 5.0)
    b = _ball((10, 20, 20), (5, 9, 11), 5.0)
    gt = _write(a, tmp_path / "gt.nii.gz")
    pred = _write(b, tmp_path / "pred.nii.gz")
    runner = CliRunner()
    res = runner.invoke(
        app, ["evaluate", str(pred), str(gt), "--json", "--csv", str(tmp_path / "o.csv")]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    case = doc["cases"][0]
    for key in ("dice", "sensitivity", "precision", "hausdorff_mm", "hd95_mm", "tp", "fn", "fp"):
        assert key in case
    assert (tmp_path / "o.csv").is_file()
    res = runner.invoke(app, ["evaluate", str(pred), str(gt), "--csv", str(tmp_path / "o.csv")])
    assert res.exit_code == 1 and "--force" in res.stderr and "Traceback" not in res.output
    res = runner.invoke(app, ["evaluate", str(pred), str(gt)])
    assert res.exit_code == 0 and "dice" in res.stdout
    res = runner.invoke(app, ["evaluate", str(tmp_path / "nope.nii.gz"), str(gt)])
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.output



def test_mean_row_averages_only_the_finite_cases(tmp_path: Path) -> None:
    """An empty prediction has no Hausdorff distance (inf/NaN): the mean row of the table
    averages the cases where a metric is finite, and sums TP/FN/FP over all cases."""
    from typer.testing import CliRunner

    from breastai.cli import app

    gt_arr = _ball((10, 20, 20), (5, 10, 10), 5.0)
    shifted = _ball((10, 20, 20), (5, 9, 11), 5.0)
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    for name, pred_arr in (("a", gt_arr), ("b", shifted), ("c", np.zeros_like(gt_arr))):
        _write(gt_arr, tmp_path / "gt" / f"{name}.nii.gz")
        _write(pred_arr, tmp_path / "pred" / f"{name}.nii.gz")
    rows, _ = evaluate_paths(tmp_path / "pred", tmp_path / "gt")
    by_case = {r.case: r for r in rows}
    assert math.isfinite(by_case["b"].hausdorff_mm) and not math.isfinite(by_case["c"].hausdorff_mm)
    expected_hd = (by_case["a"].hausdorff_mm + by_case["b"].hausdorff_mm) / 2  # c left out
    assert mean_finite(rows, "hausdorff_mm") == pytest.approx(expected_hd)
    assert mean_finite(rows, "dice") == pytest.approx(sum(r.dice for r in rows) / 3)
    assert math.isnan(mean_finite([by_case["c"]], "hausdorff_mm"))  # finite in no case
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt")],
                             env={"COLUMNS": "200"})  # fmt: skip
    assert res.exit_code == 0, res.output
    mean_line = next(line for line in res.stdout.splitlines() if "mean (finite)" in line)
    cells = [c.strip() for c in mean_line.strip("│ ").split("│")]
    assert cells[1] == f"{sum(r.dice for r in rows) / 3:.3f}"
    assert cells[4] == f"{expected_hd:.3f}"
    tp, fn, fp = (sum(getattr(r, k) for r in rows) for k in ("tp", "fn", "fp"))
    assert cells[6] == f"{tp}/{fn}/{fp}"


def test_cropped_prediction_on_the_same_lattice_needs_no_warning() -> None:
    gt_arr = _ball((20, 40, 40), (10, 20, 20), 8.0)
    gt = _img(gt_arr, origin=(-3.0, 5.0, 7.0))
    cropped = gt[:, :, 3:17]  # SimpleITK slicing keeps the geometry: a sub-grid of gt
    m = evaluate_case(cropped, gt)
    assert m.resampled and m.warnings == []
    assert m.dice == 1.0 and m.hausdorff_mm == 0.0


def test_dicom_seg_prediction_with_pred_label(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import breastai.io as bio
    import breastai.io.seg as seg_mod
    import breastai.phantom.dicom as pdicom
    from breastai import phantom
    from breastai.cli import app

    for seed in range(8):
        case = phantom.generate_case(
            seed, shape_zyx=(24, 64, 64), spacing_zyx=(4.0, 2.6, 2.6), n_phases=2
        )
        if case.tumor.any():
            break
    else:  # fixed seeds: no lesion in any of them is a phantom regression
        raise AssertionError("no phantom case with a lesion in the reduced field of view")
    pdicom.write_dicom_study(case, tmp_path / "dicom", decoys=False)
    study = bio.load_study(tmp_path / "dicom")
    tumor, breast = case.mask_image("tumor"), case.mask_image("breast")
    weights = {t: {"name": t, "sha256": "0" * 64, "demo": True} for t in ("breast", "tumor")}
    seg = seg_mod.write_seg(
        tmp_path / "seg.dcm", study, breast=breast, tumor=tumor, weights=weights
    )
    gt = tmp_path / "tumor.nii.gz"
    sitk.WriteImage(tumor, str(gt))
    res = CliRunner().invoke(app, ["evaluate", str(seg), str(gt), "--pred-label", "2", "--json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)["cases"]
    assert row["dice"] == 1.0 and row["hausdorff_mm"] == 0.0 and row["tp"] >= 1
    # without a label the breast (1) and tumor (2) segments are merged, and a warning says so
    res = CliRunner().invoke(app, ["evaluate", str(seg), str(gt), "--json"])
    assert res.exit_code == 0 and "--pred-label" in res.stderr
    assert json.loads(res.stdout)["cases"][0]["dice"] < 0.5


def test_split_bilateral_predictions_are_scored_as_their_union(tmp_path: Path) -> None:
    """tumor_R + tumor_L (two stack grids with a gap) against one truth on the full grid."""
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    shape = (10, 20, 40)
    truth = np.zeros(shape, np.uint8)
    truth[3:7, 5:15, 4:12] = 1  # in the right stack (x 0..15)
    truth[3:7, 5:15, 28:34] = 1  # in the left stack (x 24..39)
    _write(truth, tmp_path / "gt" / "tumor.nii.gz")
    sx = SPACING[0]
    right = _img(truth[:, :, :16].copy())
    left = _img(truth[:, :, 24:].copy(), origin=(24 * sx, 0.0, 0.0))
    left_arr = sitk.GetArrayFromImage(left)
    left_arr[3:7, 5:15, 4:7] = 0  # the left prediction misses 3 of its 6 columns
    left_pred = sitk.GetImageFromArray(left_arr)
    left_pred.CopyInformation(left)
    sitk.WriteImage(right, str(tmp_path / "pred" / "tumor_R.nii.gz"))
    sitk.WriteImage(left_pred, str(tmp_path / "pred" / "tumor_L.nii.gz"))
    _write(truth, tmp_path / "pred" / "other.nii.gz")  # no truth of that name
    rows, notes = evaluate_paths(tmp_path / "pred", tmp_path / "gt")
    assert [r.case for r in rows] == ["tumor"]
    # truth: 4 x 10 x (8 + 6) voxels; prediction misses 4 x 10 x 3 of them
    assert rows[0].dice == pytest.approx(2 * 440 / (560 + 440))
    assert rows[0].precision == pytest.approx(1.0)
    assert any("union" in n and "tumor.nii.gz" in n for n in notes)
    assert any("other.nii.gz" in n for n in notes)
    assert not any("tumor_R" in n for n in notes)  # used, not unpaired
    (tmp_path / "pred" / "tumor_L.nii.gz").unlink()  # one stack alone is not a pair
    with pytest.raises(InputError, match="same name"):
        evaluate_paths(tmp_path / "pred", tmp_path / "gt")
