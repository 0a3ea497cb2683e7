"""Segmentation metrics against a ground truth: overlap, surface distances, lesion detection.

Research use only, not a medical device.

Definitions (arrays follow the axis contract of :mod:`breastai.study`; distances in mm):

* Foreground is every non-zero voxel, or the voxels equal to ``label`` (both masks), or to
  ``pred_label`` / ``gt_label`` for one side (a breastai DICOM-SEG holds breast = 1 and
  tumor = 2; a tumor ground truth usually holds 1).
* **Dice** ``2|P∩G| / (|P| + |G|)``; **sensitivity** ``|P∩G| / |G|``; **precision**
  ``|P∩G| / |P|``.
* **Surface voxels** of a mask are its voxels with at least one 6-neighbour outside it (voxels
  on the image border count as surface). The **surface distances** are, for every surface
  voxel of P, the distance from its centre to the nearest surface-voxel centre of G, and the
  same from G to P; they are computed with Euclidean distance transforms that use the voxel
  spacing, so anisotropic voxels are exact.
* **Hausdorff** (``hausdorff_mm``) is the largest of all those distances (both directions);
  **HD95** (``hd95_mm``) is the 95th percentile (numpy's linear interpolation) of the pooled
  distances of both directions; **ASSD** (``assd_mm``) is their mean.
* **Lesion detection**: 26-connected components of G and P. A G component is detected (TP) when
  any P voxel overlaps it, otherwise it is a FN; a P component overlapping no G voxel is a FP.
* **Empty masks**: both empty -> Dice 1, sensitivity, precision and all distances NaN (no
  surface to measure). Only G empty -> Dice 0, sensitivity NaN, precision 0, distances
  +inf. Only P empty -> Dice 0, sensitivity 0, precision NaN, distances +inf. In JSON output
  NaN and inf become null; ``gt_empty``/``pred_empty`` say why.
* **Grids**: when P's grid differs from G's, P is resampled onto G with nearest neighbour (with
  a warning); masks that do not overlap in patient space are refused.
"""

# SimpleITK's methods carry no type annotations.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from scipy import ndimage

from breastai.errors import InputError
from breastai.geometry import align_to_grid
from breastai.io import read_image
from breastai.io.atomic import atomic_file

__all__ = [
    "CSV_COLUMNS",
    "CaseMetrics",
    "evaluate_case",
    "evaluate_paths",
    "mean_finite",
    "metrics_csv",
    "surface_distances",
    "union_on_grid",
    "write_csv",
]

log = logging.getLogger(__name__)

_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)
_STRUCTURE_6 = ndimage.generate_binary_structure(3, 1)
_MASK_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")

CSV_COLUMNS = (
    "case",
    "dice",
    "sensitivity",
    "precision",
    "hausdorff_mm",
    "hd95_mm",
    "assd_mm",
    "gt_volume_ml",
    "pred_volume_ml",
    "gt_lesions",
    "pred_lesions",
    "tp",
    "fn",
    "fp",
    "gt_empty",
    "pred_empty",
    "resampled",
)


@dataclass
class CaseMetrics:
    """Metrics of one predicted mask against its ground truth (see the module docstring)."""

    case: str
    dice: float
    sensitivity: float
    precision: float
    hausdorff_mm: float
    hd95_mm: float
    assd_mm: float
    gt_volume_ml: float
    pred_volume_ml: float
    gt_lesions: int
    pred_lesions: int
    tp: int
    fn: int
    fp: int
    gt_empty: bool
    pred_empty: bool
    resampled: bool = False
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; NaN and inf become None (``gt_empty``/``pred_empty`` explain them)."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            out[key] = value
        return out


def _surface(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    eroded = ndimage.binary_erosion(mask, structure=_STRUCTURE_6, border_value=0)
    return np.asarray(mask & ~eroded)


def surface_distances(
    pred: NDArray[np.bool_], gt: NDArray[np.bool_], spacing_zyx: Sequence[float]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Directed surface distances between two non-empty masks.

    Parameters
    ----------
    pred, gt:
        bool ``(z, y, x)`` masks on the same grid, both non-empty.
    spacing_zyx:
        Voxel spacing in mm, in array order.

    Returns
    -------
    tuple of numpy.ndarray
        (distances from each surface voxel of ``pred`` to the surface of ``gt``, and from
        ``gt`` to ``pred``), in mm.
    """
    both = pred | gt
    nz = [np.flatnonzero(both.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    box = tuple(slice(int(n[0]), int(n[-1]) + 1) for n in nz)
    p, g = pred[box], gt[box]
    sp, sg = _surface(p), _surface(g)
    # the crop holds every surface voxel of both masks, so nearest-surface distances are exact
    dt_g = ndimage.distance_transform_edt(~sg, sampling=spacing_zyx)
    dt_p = ndimage.distance_transform_edt(~sp, sampling=spacing_zyx)
    return np.asarray(dt_g[sp], dtype=np.float64), np.asarray(dt_p[sg], dtype=np.float64)


def _fg(image: sitk.Image, label: int | None) -> NDArray[np.bool_]:
    arr = sitk.GetArrayViewFromImage(image)
    return np.asarray(arr == label) if label is not None else np.asarray(arr != 0)


def evaluate_case(
    pred: sitk.Image,
    gt: sitk.Image,
    *,
    case: str = "",
    label: int | None = None,
    pred_label: int | None = None,
    gt_label: int | None = None,
) -> CaseMetrics:
    """Compare a predicted mask with the ground truth.

    Parameters
    ----------
    pred, gt:
        Masks in LPS (binary or label maps). ``pred`` is resampled onto ``gt``'s grid with
        nearest neighbour when the grids differ.
    case:
        Name of the case (for the CSV).
    label:
        Compare only this label (default: every non-zero voxel is foreground).
    pred_label, gt_label:
        The label to use in one of the masks (overrides ``label`` for that mask).

    Returns
    -------
    CaseMetrics

    Raises
    ------
    InputError
        When the masks do not overlap in patient space or are not 3-D.
    """
    warnings: list[str] = []
    for name, img in (("prediction", pred), ("ground truth", gt)):
        if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"The {name} of case {case!r} must be a 3-D single-channel mask.")
    aligned = align_to_grid(pred, gt, what="prediction", onto="ground truth", warnings=warnings)
    resampled = aligned is not pred
    p_label = label if pred_label is None else pred_label
    g_label = label if gt_label is None else gt_label
    for name, img, chosen in (("prediction", aligned, p_label), ("ground truth", gt, g_label)):
        if chosen is None:
            arr = sitk.GetArrayViewFromImage(img)
            found = np.unique(arr[arr != 0])
            if found.size > 1:
                msg = (
                    f"The {name} of case {case!r} holds labels "
                    f"{', '.join(str(v) for v in found[:10].tolist())}; all non-zero voxels are "
                    "compared as one foreground. Pass --label N (or --pred-label/--gt-label) "
                    "to compare one label."
                )
                log.warning(msg)
                warnings.append(msg)
    p = _fg(aligned, p_label)
    g = _fg(gt, g_label)
    spacing_zyx = tuple(float(s) for s in gt.GetSpacing()[::-1])
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    np_, ng = int(p.sum()), int(g.sum())
    inter = int(np.count_nonzero(p & g))
    nan, inf = float("nan"), float("inf")
    dice = 1.0 if np_ + ng == 0 else 2.0 * inter / (np_ + ng)
    sens = inter / ng if ng else nan
    prec = inter / np_ if np_ else nan
    if np_ and ng:
        d_pg, d_gp = surface_distances(p, g, spacing_zyx)
        pooled = np.concatenate([d_pg, d_gp])
        hd, hd95, assd = float(pooled.max()), float(np.percentile(pooled, 95)), float(pooled.mean())
    elif np_ or ng:
        hd = hd95 = assd = inf
    else:
        hd = hd95 = assd = nan
    g_lab, n_g = ndimage.label(g, structure=_STRUCTURE_26)
    p_lab, n_p = ndimage.label(p, structure=_STRUCTURE_26)
    hit_g = np.unique(g_lab[p & g])
    hit_p = np.unique(p_lab[p & g])
    tp = int(np.count_nonzero(hit_g))
    fp = n_p - int(np.count_nonzero(hit_p))
    return CaseMetrics(
        case=case,
        dice=dice,
        sensitivity=sens,
        precision=prec,
        hausdorff_mm=hd,
        hd95_mm=hd95,
        assd_mm=assd,
        gt_volume_ml=ng * voxel_ml,
        pred_volume_ml=np_ * voxel_ml,
        gt_lesions=int(n_g),
        pred_lesions=int(n_p),
        tp=tp,
        fn=int(n_g) - tp,
        fp=int(fp),
        gt_empty=ng == 0,
        pred_empty=np_ == 0,
        resampled=resampled,
        warnings=warnings,
    )


def _case_name(path: Path) -> str:
    name = path.name
    for suffix in _MASK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _mask_files(folder: Path) -> dict[str, Path]:
    files = {}
    for p in sorted(folder.iterdir()):
        wanted = p.name.lower().endswith(_MASK_SUFFIXES) or "." not in p.name
        if p.is_file() and not p.name.startswith(".") and wanted:
            files[p.name] = p
    return files


def _split_pair(name: str, pf: dict[str, Path]) -> list[Path]:
    """The ``<case>_R`` / ``<case>_L`` predictions of a split-bilateral study for truth ``name``."""
    stem = _case_name(Path(name))
    suffix = name[len(stem) :]
    parts = [pf.get(f"{stem}_{side}{suffix}") for side in ("R", "L")]
    return [q for q in parts if q is not None] if all(parts) else []


def union_on_grid(parts: Sequence[Path], gt: sitk.Image, label: int | None = None) -> sitk.Image:
    """Mask files (e.g. the per-stack masks of a split-bilateral study) on one grid, combined.

    Parameters
    ----------
    parts:
        Mask files (any grids).
    gt:
        The grid to resample onto (nearest neighbour), usually the ground truth.
    label:
        Foreground label in the files (None: any non-zero value).

    Returns
    -------
    SimpleITK.Image
        uint8 0/1 union on ``gt``'s grid.
    """
    union = np.zeros(sitk.GetArrayViewFromImage(gt).shape, dtype=np.uint8)
    for path in parts:
        mask = read_image(path)
        fg = sitk.GetImageFromArray(_fg(mask, label).astype(np.uint8))
        fg.CopyInformation(mask)
        on_gt = sitk.Resample(fg, gt, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        union |= sitk.GetArrayViewFromImage(on_gt).astype(np.uint8)
    out = sitk.GetImageFromArray(union)
    out.CopyInformation(gt)
    return out


def evaluate_paths(
    pred: Path,
    gt: Path,
    *,
    label: int | None = None,
    pred_label: int | None = None,
    gt_label: int | None = None,
) -> tuple[list[CaseMetrics], list[str]]:
    """Evaluate one pair of mask files, or two folders whose masks are paired by file name.

    In folder mode a truth file ``<name>.nii.gz`` without a prediction of that name is scored
    against ``<name>_R.nii.gz`` + ``<name>_L.nii.gz`` when both exist (the per-stack outputs of a
    split-bilateral study): each is resampled onto the truth grid (nearest neighbour) and their
    union is compared.

    Parameters
    ----------
    pred, gt:
        Two mask files (NIfTI/NRRD/MHA or DICOM-SEG), or two folders of them.
    label, pred_label, gt_label:
        As for :func:`evaluate_case`.

    Returns
    -------
    tuple
        (one CaseMetrics per pair, sorted by case name; warnings such as unpaired files).

    Raises
    ------
    InputError
        When a path is missing, one is a file and the other a folder, or no file pairs up.
    """
    pred, gt = Path(pred), Path(gt)
    labels = {"label": label, "pred_label": pred_label, "gt_label": gt_label}
    for name, p in (("prediction", pred), ("ground truth", gt)):
        if not p.exists():
            raise InputError(f"The {name} path {str(p)!r} does not exist.")
    if pred.is_dir() != gt.is_dir():
        raise InputError(
            f"Give two mask files or two folders; got {str(pred)!r} and {str(gt)!r} "
            "(one file, one folder)."
        )
    if not gt.is_dir():
        return [evaluate_case(read_image(pred), read_image(gt), case=_case_name(gt), **labels)], []
    pf, gf = _mask_files(pred), _mask_files(gt)
    common = sorted(set(pf) & set(gf))
    # split-bilateral outputs: truth tumor.nii.gz <- prediction tumor_R.nii.gz + tumor_L.nii.gz
    split = {n: _split_pair(n, pf) for n in sorted(set(gf) - set(pf))}
    split = {n: parts for n, parts in split.items() if parts}
    used = set(common) | {q.name for parts in split.values() for q in parts}
    notes = []
    if split:
        notes.append(
            f"{len(split)} ground-truth file(s) scored against the union of the split-bilateral "
            "stacks' predictions (<name>_R and <name>_L, resampled onto the truth grid): "
            + ", ".join(sorted(split)[:5])
        )
    missing = set(gf) - set(pf) - set(split)
    if missing:
        notes.append(
            f"{len(missing)} ground-truth file(s) have no prediction of the same name: "
            + ", ".join(sorted(missing)[:5])
        )
    if set(pf) - used:
        notes.append(
            f"{len(set(pf) - used)} prediction file(s) have no ground truth of the same name: "
            + ", ".join(sorted(set(pf) - used)[:5])
        )
    if not common and not split:
        raise InputError(
            f"No file in {str(pred)!r} has the same name as a file in {str(gt)!r}; predictions "
            "and ground truths are paired by file name."
        )
    for note in notes:
        log.warning(note)
    rows = []
    for name in common:
        rows.append(
            evaluate_case(
                read_image(pf[name]), read_image(gf[name]), case=_case_name(gf[name]), **labels
            )
        )
    for name, parts in split.items():
        truth = read_image(gf[name])
        union = union_on_grid(parts, truth, pred_label if pred_label is not None else label)
        gt_only = {"gt_label": gt_label if gt_label is not None else label}
        rows.append(evaluate_case(union, truth, case=_case_name(gf[name]), **gt_only))
    rows.sort(key=lambda r: r.case)
    return rows, notes


def mean_finite(rows: Sequence[CaseMetrics], metric: str) -> float:
    """The mean of ``metric`` (a :class:`CaseMetrics` field) over the cases where it is finite;
    NaN when it is finite in none (an empty mask has no Hausdorff distance)."""
    finite = [v for v in (float(getattr(r, metric)) for r in rows) if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def metrics_csv(rows: Sequence[CaseMetrics]) -> str:
    """The rows as CSV text (columns :data:`CSV_COLUMNS`; NaN and inf written as nan/inf)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        d = asdict(row)
        writer.writerow([_fmt(d[c]) for c in CSV_COLUMNS])
    return buf.getvalue()


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return repr(value) if not math.isfinite(value) else f"{value:.6g}"
    return str(value)


def write_csv(rows: Sequence[CaseMetrics], path: Path, *, force: bool = False) -> Path:
    """Write the metrics CSV atomically.

    Parameters
    ----------
    rows:
        The metrics.
    path:
        Output file.
    force:
        Replace an existing file.

    Returns
    -------
    Path

    Raises
    ------
    OutputExistsError
        When ``path`` exists and ``force`` is False.
    OutputError
        When the file cannot be written.
    """
    path = Path(path)
    text = metrics_csv(rows)
    with atomic_file(path, force=force) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    return path
