"""Lesion measurements, AJCC T category, kinetics and the lesion report (``report.json``/``.md``).

Research use only, not a medical device.

Conventions (the numbers in every report depend on them; arrays follow the axis contract of
:mod:`breastai.study`: numpy ``(z, y, x)``, geometry in LPS millimetres):

* **Lesions** are the 26-connected components of the foreground whose volume (voxel count times
  voxel volume) is at least ``min_volume_mm3`` (default :data:`DEFAULT_MIN_VOLUME_MM3`), ordered
  largest first and numbered from 1.
* **Surface points.** Diameters and extents are measured between the centres of the lesion's
  exposed voxel faces (every face between a lesion voxel and a non-lesion voxel), mapped to
  patient space through origin, spacing and direction matrix. This is the point set a
  marching-cubes surface at iso-level 0.5 has (the convention of pyradiomics' Maximum 3D
  diameter) and what a caliper placed on the displayed voxel edges measures: a run of *n*
  voxels along a grid axis measures exactly ``n * spacing``, and a single voxel measures its
  largest spacing. Voxel-centre points would under-measure every lesion by about one voxel;
  voxel corners would over-measure along diagonals.
* **Longest 3-D diameter**: the farthest pair of surface points, found exactly as the farthest
  pair among the vertices of their convex hull (``scipy.spatial.ConvexHull``). Exact for any
  spacing and any (oblique) direction matrix.
* **Longest in-plane diameter**: the same on each slice of the mask's grid (the acquisition
  plane; third image axis = slice axis), using the in-plane exposed edges; the longest over
  all slices and its 0-based slice index are reported (what a radiologist measures in 2-D).
* **Principal extents**: the lengths of the surface points projected on the three principal
  axes (eigenvectors of the covariance of the voxel centres), longest first.
* **Breast contact** (when a breast mask is given): a lesion voxel inside the breast mask
  whose face neighbour is outside it touches the mask's edge; mostly-posterior contacts are
  reported as "chest wall", all others as "skin" (a lesion wholly outside the mask: "outside
  breast mask"). It flags possible T4 for review and never sets T4.
* **Laterality**: LPS ``x > midline`` is the patient's left. The midline is ``x = 0`` (patients
  are centred left-right on the scanner isocentre), unless a breast mask with two breasts
  is given: then it is halfway between the centroids of its two largest components (each at
  least 20 % of the mask volume).
* **T category** (AJCC 8th edition, size only) from the greatest longest diameter among the
  lesions (the largest tumor by dimension, which may not be lesion 1, the largest by volume),
  rounded half-up to whole millimetres, except that any value above 1.0 mm and below 2.0 mm
  is rounded up to 2 mm (the AJCC rule, so such tumors are T1a, never T1mi). T1mi <= 1,
  T1a > 1-5, T1b > 5-10, T1c > 10-20, T2 > 20-50, T3 > 50 mm; "(m)" is appended when there
  are several lesions. T4 is never assigned from size; contact with the skin or chest-wall
  side of the breast mask is flagged for review instead. A mask without lesions gets the
  category ``"none"`` (not "T0": a segmentation cannot exclude a tumor).
* **Kinetics** (when a study is given): per-lesion enhancement curve, initial phase, delayed
  curve type and functional tumor volume; conventions in :mod:`breastai.kinetics`.

Masks on another grid are placed with :func:`breastai.geometry.align_to_grid`; the DICOM SR of a
report is written by :func:`breastai.io.sr.write_sr`. The report document (``Lesion``,
``LesionReport``, T category) is :mod:`breastai.lesion_report`. All are re-exported here.
"""

# SimpleITK's methods carry no type annotations.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from breastai.errors import (
    InputError,
    OutputError,
    OutputExistsError,
    ParameterError,
)
from breastai.geometry import align_to_grid
from breastai.io.atomic import atomic_write_text
from breastai.io.sr import write_sr
from breastai.kinetics import (
    CURVE_TOLERANCE_PCT,
    EARLY_WINDOW_S,
    FTV_THRESHOLD,
    Kinetics,
    add_kinetics,
    rounded_list,
)
from breastai.lesion_report import (
    SCHEMA,
    Lesion,
    LesionReport,
    round_diameter_mm,
    t_category,
    weights_entries,
)
from breastai.study import Study

__all__ = [
    "CURVE_TOLERANCE_PCT",
    "DEFAULT_MIN_VOLUME_MM3",
    "EARLY_WINDOW_S",
    "FTV_THRESHOLD",
    "SCHEMA",
    "Kinetics",
    "Lesion",
    "LesionReport",
    "align_to_grid",
    "binary_mask",
    "farthest_pair",
    "measure_lesions",
    "measure_mask_file",
    "merge_reports",
    "read_mask",
    "round_diameter_mm",
    "t_category",
    "weights_entries",
    "write_report",
    "write_sr",
]

log = logging.getLogger(__name__)

DEFAULT_MIN_VOLUME_MM3 = 10.0
"""Components smaller than this are dropped: a sphere of 2.7 mm diameter, about 3 voxels of
1.3 x 1.3 x 2 mm. It removes isolated-voxel noise and keeps every lesion of 3 mm or more."""

_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)

FloatArray = NDArray[np.float64]


# ------------------------------------------------------------------------------------------------
# Reading and validating masks
# ------------------------------------------------------------------------------------------------


def read_mask(path: Path) -> sitk.Image:
    """Read a mask or label map: NIfTI/NRRD/MHA, or a DICOM-SEG (as a label image).

    Parameters
    ----------
    path:
        The file.

    Returns
    -------
    SimpleITK.Image
        Label image in LPS (DICOM-SEG segments become their segment numbers).

    Raises
    ------
    InputError
        When the file is missing or cannot be read (see :func:`breastai.io.read_image`).
    """
    from breastai.io import read_image

    return read_image(Path(path))


def binary_mask(
    mask: sitk.Image, *, label: int | None = None, name: str = "mask"
) -> NDArray[np.bool_]:
    """The foreground of a mask as a bool ``(z, y, x)`` array, checking that it is binary.

    Parameters
    ----------
    mask:
        Integer mask or label map.
    label:
        Foreground label to select in a label map; None requires a binary mask (0 plus one
        foreground value).
    name:
        How to call the mask in error messages.

    Returns
    -------
    numpy.ndarray
        bool ``(z, y, x)``.

    Raises
    ------
    InputError
        A non-integer image, a label map without ``label``, or a label that is not present.
    """
    if mask.GetNumberOfComponentsPerPixel() != 1 or mask.GetDimension() != 3:
        raise InputError(
            f"The {name} must be a 3-D single-channel image; found {mask.GetDimension()}-D with "
            f"{mask.GetNumberOfComponentsPerPixel()} component(s) per voxel."
        )
    arr = sitk.GetArrayViewFromImage(mask)
    if arr.dtype.kind == "f" and (
        not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr))
    ):
        raise InputError(
            f"The {name} holds non-integer values (a probability map?); expected a binary mask "
            "or an integer label map. Threshold it first."
        )
    labels = np.unique(arr[arr != 0])  # only the (few) foreground voxels are sorted
    if label is not None:
        if labels.size and label not in labels:
            raise InputError(
                f"Label {label} is not in the {name}; it holds labels {_fmt_labels(labels)}. "
                "Pass one of them with --label."
            )
        return np.asarray(arr == label)
    if labels.size > 1:
        raise InputError(
            f"The {name} is a label map with labels {_fmt_labels(labels)}; expected a binary mask. "
            "Choose the lesion label with --label N."
        )
    return np.asarray(arr != 0)


def _fmt_labels(labels: NDArray[Any]) -> str:
    vals = [int(v) if float(v).is_integer() else float(v) for v in labels[:20]]
    more = f" and {labels.size - 20} more" if labels.size > 20 else ""
    return ", ".join(str(v) for v in vals) + more


def _geometry(image: sitk.Image) -> tuple[FloatArray, FloatArray, FloatArray]:
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    return origin, spacing, direction


# ------------------------------------------------------------------------------------------------
# Geometry kernels
# ------------------------------------------------------------------------------------------------


def _index_to_lps(
    idx_zyx: FloatArray, origin: FloatArray, spacing: FloatArray, direction: FloatArray
) -> FloatArray:
    """Continuous (z, y, x) indices (N, 3) -> LPS points (N, 3)."""
    xyz = idx_zyx[:, ::-1] * spacing
    return origin + xyz @ direction.T


def _face_centres(crop: NDArray[np.bool_], axes: Sequence[int] = (0, 1, 2)) -> FloatArray:
    """Continuous (z, y, x) indices of the centres of exposed faces (normal along ``axes``)."""
    padded = np.pad(crop, 1)
    parts = []
    for ax in axes:
        change = np.diff(padded.view(np.int8), axis=ax) != 0
        idx = np.argwhere(change).astype(np.float64)
        idx[:, ax] += 0.5
        parts.append(idx - 1.0)
    return np.concatenate(parts, axis=0) if parts else np.zeros((0, 3))


def farthest_pair(points: FloatArray) -> tuple[float, int, int]:
    """Exact farthest pair of a point set (N, d) via its convex hull.

    Parameters
    ----------
    points:
        (N, d) float coordinates, d = 2 or 3.

    Returns
    -------
    tuple
        (distance, i, j) with ``points[i]``, ``points[j]`` the farthest pair (0, 0, 0 for N < 2).
    """
    n = len(points)
    if n < 2:
        return 0.0, 0, 0
    cand = np.arange(n)
    if n > 64:
        try:
            cand = ConvexHull(points).vertices
        except (QhullError, ValueError):  # flat or degenerate: fall back to every point
            cand = np.arange(n)
    pts = points[cand]
    best, bi, bj = -1.0, 0, 0
    chunk = max(1, 4_000_000 // max(len(pts), 1))
    for start in range(0, len(pts), chunk):
        block = pts[start : start + chunk]
        d2 = ((block[:, None, :] - pts[None, :, :]) ** 2).sum(axis=-1)
        k = int(np.argmax(d2))
        r, c = divmod(k, len(pts))
        if d2[r, c] > best:
            best, bi, bj = float(d2[r, c]), int(cand[start + r]), int(cand[c])
    return math.sqrt(best), bi, bj


def _in_plane(
    crop: NDArray[np.bool_],
    start: NDArray[np.int64],
    origin: FloatArray,
    spacing: FloatArray,
    direction: FloatArray,
) -> tuple[float, FloatArray, FloatArray, int]:
    """Longest in-plane diameter over the slices of ``crop`` (slice axis = array axis 0).

    ``start`` is the (z, y, x) index of ``crop[0, 0, 0]`` in the image.
    """
    z0 = int(start[0])
    best = (-1.0, np.zeros(3), np.zeros(3), z0)
    for k in range(crop.shape[0]):
        sl = crop[k]
        if not sl.any():
            continue
        zyx = _face_centres(crop[k : k + 1], axes=(1, 2))  # in-plane faces only, z = 0
        zyx[:, 0] = float(k)
        pts2 = np.column_stack([zyx[:, 2] * spacing[0], zyx[:, 1] * spacing[1]])
        d, i, j = farthest_pair(pts2)
        if d > best[0]:
            ends = zyx[[i, j]] + start.astype(np.float64)
            p = _index_to_lps(ends, origin, spacing, direction)
            best = (float(np.linalg.norm(p[0] - p[1])), p[0], p[1], z0 + k)
    return best


def _breast_midline(breast: NDArray[np.bool_], image: sitk.Image) -> tuple[float, str] | None:
    labels, n = ndimage.label(breast, structure=_STRUCTURE_26)
    if n < 2:
        return None
    counts = np.bincount(labels.ravel())[1:]
    order = np.argsort(counts)[::-1]
    if counts[order[1]] < 0.2 * counts.sum():
        return None
    origin, spacing, direction = _geometry(image)
    centres = ndimage.center_of_mass(breast, labels, [int(order[0]) + 1, int(order[1]) + 1])
    xs = [
        float(_index_to_lps(np.asarray([c], dtype=np.float64), origin, spacing, direction)[0, 0])
        for c in centres
    ]
    return (
        0.5 * (xs[0] + xs[1]),
        "LPS x greater than the midline halfway between the two breasts of the breast mask "
        "= patient left",
    )


def _breast_contact(
    lesion: NDArray[np.bool_], breast: NDArray[np.bool_], direction: FloatArray
) -> list[str]:
    """Which side(s) of the breast mask a lesion reaches: 'chest wall' and/or 'skin'.

    A contact is a lesion voxel inside the breast mask whose face neighbour is outside it. It
    counts as 'chest wall' when that neighbour lies mostly posterior (the step's LPS y component
    > 0.5), else as 'skin' (anterior, lateral, cranial or caudal edge of the mask). A lesion
    with no voxel in the breast mask gets 'outside breast mask'. A heuristic for review, never
    a T4 call.
    """
    if not (lesion & breast).any():
        return ["outside breast mask"]
    sides: set[str] = set()
    outside = ~breast
    for ax in (0, 1, 2):
        vec = direction[:, 2 - ax]  # array axis (z, y, x) -> image axis (x, y, z) column
        for sign in (-1, 1):
            shifted = np.zeros_like(outside)
            src = [slice(None)] * 3
            dst = [slice(None)] * 3
            if sign > 0:
                src[ax], dst[ax] = slice(1, None), slice(None, -1)
            else:
                src[ax], dst[ax] = slice(None, -1), slice(1, None)
            shifted[tuple(dst)] = outside[tuple(src)]
            if (lesion & breast & shifted).any():
                posterior = sign * vec[1]  # LPS y grows towards posterior
                sides.add("chest wall" if posterior > 0.5 else "skin")
    return sorted(sides)


# ------------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------------


def measure_lesions(
    mask: sitk.Image,
    *,
    study: Study | None = None,
    breast_mask: sitk.Image | None = None,
    min_volume_mm3: float = DEFAULT_MIN_VOLUME_MM3,
    label: int | None = None,
    side: str | None = None,
    side_labels: sitk.Image | None = None,
) -> LesionReport:
    """Find and measure the lesions of a tumor mask.

    Parameters
    ----------
    mask:
        Tumor mask in LPS (binary, or a label map with ``label``); array axes per the contract
        in :mod:`breastai.study`.
    study:
        When given, per-lesion kinetics are computed on the reference phase's grid (the mask is
        resampled there with nearest neighbour, with a warning, when its grid differs).
    breast_mask:
        Whole-breast mask; enables the midline for laterality and the skin / chest-wall contact
        flag. Resampled onto the mask's grid when needed.
    min_volume_mm3:
        Smallest component volume kept as a lesion (mm³, >= 0).
    label:
        Foreground label of a label-map mask.
    side:
        ``"right"`` or ``"left"`` when the mask shows one breast only (a split-bilateral
        stack): every lesion gets this laterality instead of one found from the midline.
    side_labels:
        A breast model's sides on the mask's grid (0 none, 1 right, 2 left): each lesion takes
        the side it overlaps most (the midline where it overlaps neither).

    Returns
    -------
    LesionReport
        Lesions largest first; an empty mask gives a valid report with no lesion.

    Raises
    ------
    InputError
        For a non-binary mask without ``label``, or a mask/study/breast mask that do not overlap.
    ParameterError
        For a negative ``min_volume_mm3``.
    """
    if not math.isfinite(min_volume_mm3) or min_volume_mm3 < 0:
        raise ParameterError(f"min_volume_mm3 must be >= 0; got {min_volume_mm3!r}.")
    if side not in (None, "right", "left"):
        raise ParameterError(f"side must be 'right' or 'left'; got {side!r}.")
    warnings: list[str] = []
    fg = binary_mask(mask, label=label)
    origin, spacing, direction = _geometry(mask)
    voxel_mm3 = float(np.prod(spacing) * abs(np.linalg.det(direction)))
    size_zyx = fg.shape

    breast: NDArray[np.bool_] | None = None
    midline, rule = (
        0.0,
        "LPS x > 0 (scanner left-right isocentre taken as the body midline) = patient left",
    )
    if breast_mask is not None:
        aligned = align_to_grid(
            breast_mask, mask, what="breast mask", onto="tumor mask", warnings=warnings
        )
        breast = np.asarray(sitk.GetArrayViewFromImage(aligned) != 0)
        found = _breast_midline(breast, aligned)
        if found is not None:
            midline, rule = found
    source = "midline"
    sides: NDArray[np.uint8] | None = None
    if side is not None:
        rule = f"the mask shows one breast (a split-bilateral stack): every lesion is {side}"
        source = "split-bilateral stack"
    elif side_labels is not None:
        aligned_sides = align_to_grid(
            side_labels, mask, what="breast side labels", onto="tumor mask", warnings=warnings
        )
        sides = np.asarray(sitk.GetArrayViewFromImage(aligned_sides), dtype=np.uint8)
        rule = (
            "the breast model's left/right labels: each lesion is on the side it overlaps most "
            f"(where it overlaps neither: {rule})"
        )
        source = "breast model labels"

    # Label components inside the foreground's bounding box only (fast on large, sparse masks).
    labels_full = np.zeros(size_zyx, dtype=np.int32) if study is not None else None
    # beyond the image, the breast is unknown: pad with True so the border is no skin contact
    breast_pad = None if breast is None else np.pad(breast, 1, constant_values=True)
    lesions: list[Lesion] = []
    dropped = 0
    if fg.any():
        nz = [np.flatnonzero(fg.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
        box = tuple(slice(int(n[0]), int(n[-1]) + 1) for n in nz)
        sub_labels, n = ndimage.label(fg[box], structure=_STRUCTURE_26)
        counts = np.bincount(sub_labels.ravel(), minlength=n + 1)
        objects = ndimage.find_objects(sub_labels)
        keep = [lab for lab in range(1, n + 1) if counts[lab] * voxel_mm3 >= min_volume_mm3]
        dropped = n - len(keep)
        keep.sort(key=lambda lab: (-counts[lab], lab))
        offset = np.array([s.start for s in box])
        for new_index, lab in enumerate(keep, start=1):
            sl = objects[lab - 1]
            if sl is None:  # pragma: no cover - every kept label has voxels
                continue
            crop = sub_labels[sl] == lab
            start = offset + np.array([s.start for s in sl])
            glob = tuple(slice(int(a), int(a) + d) for a, d in zip(start, crop.shape, strict=True))
            if labels_full is not None:
                labels_full[glob][crop] = new_index
            # breast window one voxel larger than the lesion box (padded coordinates = index + 1)
            window = None
            if breast_pad is not None:
                window = breast_pad[
                    tuple(
                        slice(int(a), int(a) + d + 2)
                        for a, d in zip(start, crop.shape, strict=True)
                    )
                ]
            lesions.append(
                _measure_one(
                    crop,
                    start,
                    new_index,
                    int(counts[lab]),
                    voxel_mm3,
                    origin,
                    spacing,
                    direction,
                    size_zyx,
                    midline,
                    window,
                )
            )
            if sides is not None:
                over = sides[glob][crop]
                n_right, n_left = int((over == 1).sum()), int((over == 2).sum())
                if n_right or n_left:
                    lesions[-1].laterality = "left" if n_left > n_right else "right"
    if dropped:
        log.info("dropped %d component(s) smaller than %g mm3", dropped, min_volume_mm3)
    if study is not None and lesions and labels_full is not None:
        add_kinetics(lesions, labels_full, mask, study, warnings)
    if side is not None:
        for les in lesions:
            les.laterality = side
    top = max((les.longest_diameter_mm for les in lesions), default=None)
    return LesionReport(
        lesions=lesions,
        t_category=t_category(top, len(lesions)),
        min_volume_mm3=float(min_volume_mm3),
        spacing_mm=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        size_xyz=(int(size_zyx[2]), int(size_zyx[1]), int(size_zyx[0])),
        midline_x_mm=midline,
        midline_rule=rule,
        laterality_source=source,
        dropped_components=dropped,
        label=label,
        warnings=warnings,
    )


def merge_reports(parts: Mapping[str, LesionReport]) -> LesionReport:
    """One report for a split-bilateral study from the reports of its stacks.

    Parameters
    ----------
    parts:
        Stack name (``"R"``, ``"L"``) -> the report measured on that stack's own grid.

    Returns
    -------
    LesionReport
        All lesions, largest volume first and numbered again from 1, each with ``stack`` set
        (its ``bbox_zyx`` and ``in_plane_slice`` index that stack's grid); the T category from
        the longest diameter over all stacks; per-stack grids in ``stacks``.

    Raises
    ------
    ParameterError
        Without parts, or when the parts were measured with different minimum volumes.
    """
    if not parts:
        raise ParameterError("merge_reports needs at least one stack report.")
    reports = list(parts.values())
    if len({r.min_volume_mm3 for r in reports}) != 1:
        raise ParameterError("the stack reports were measured with different min_volume_mm3.")
    lesions = [
        dataclasses.replace(les, stack=name) for name, r in parts.items() for les in r.lesions
    ]
    lesions.sort(key=lambda les: (-les.volume_ml, les.stack or ""))
    for k, les in enumerate(lesions, start=1):
        les.index = k
    top = max((les.longest_diameter_mm for les in lesions), default=None)
    first = reports[0]
    return LesionReport(
        lesions=lesions,
        t_category=t_category(top, len(lesions)),
        min_volume_mm3=first.min_volume_mm3,
        spacing_mm=first.spacing_mm,
        size_xyz=first.size_xyz,
        midline_x_mm=None,
        midline_rule="split-bilateral stacks: each lesion is on its stack's side",
        laterality_source="split-bilateral stack",
        dropped_components=sum(r.dropped_components for r in reports),
        label=first.label,
        source=first.source,
        warnings=[f"stack {name}: {w}" for name, r in parts.items() for w in r.warnings],
        stacks={
            name: {
                "spacing_mm": rounded_list(r.spacing_mm, 4),
                "size_xyz": list(r.size_xyz),
                "laterality_rule": r.midline_rule,
                "lesions": [les.index for les in lesions if les.stack == name],
            }
            for name, r in parts.items()
        },
    )


def _pt(p: FloatArray) -> tuple[float, float, float]:
    return (float(p[0]), float(p[1]), float(p[2]))


def _measure_one(
    crop: NDArray[np.bool_],
    start: NDArray[np.int64],
    index: int,
    count: int,
    voxel_mm3: float,
    origin: FloatArray,
    spacing: FloatArray,
    direction: FloatArray,
    size_zyx: tuple[int, ...],
    midline: float,
    breast: NDArray[np.bool_] | None,
) -> Lesion:
    faces = _face_centres(crop) + start
    pts = _index_to_lps(faces, origin, spacing, direction)
    d, i, j = farthest_pair(pts)
    centres = np.argwhere(crop).astype(np.float64) + start
    centres_lps = _index_to_lps(centres, origin, spacing, direction)
    centroid = centres_lps.mean(axis=0)
    if len(centres_lps) >= 2:
        _, vecs = np.linalg.eigh(np.cov(centres_lps.T))
    else:
        vecs = direction
    proj = pts @ vecs
    extents = sorted((float(v) for v in proj.max(axis=0) - proj.min(axis=0)), reverse=True)
    ip_d, ip_a, ip_b, ip_slice = _in_plane(crop, start, origin, spacing, direction)
    stop = start + np.array(crop.shape) - 1
    border = bool(np.any(start == 0) or np.any(stop == np.array(size_zyx) - 1))
    contact = None
    if breast is not None:  # breast window is the lesion box plus one voxel on every side
        contact = _breast_contact(np.pad(crop, 1), breast, direction)
    return Lesion(
        index=index,
        voxel_count=count,
        volume_ml=count * voxel_mm3 / 1000.0,
        longest_diameter_mm=d,
        endpoints_lps=(_pt(pts[i]), _pt(pts[j])),
        longest_in_plane_diameter_mm=ip_d,
        in_plane_endpoints_lps=(_pt(ip_a), _pt(ip_b)),
        in_plane_slice=ip_slice,
        principal_extents_mm=(extents[0], extents[1], extents[2]),
        centroid_lps=_pt(centroid),
        laterality="left" if centroid[0] > midline else "right",
        bbox_zyx=(
            (int(start[0]), int(start[1]), int(start[2])),
            (int(stop[0]), int(stop[1]), int(stop[2])),
        ),
        touches_image_border=border,
        breast_contact=contact,
    )


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------


def write_report(
    report: LesionReport,
    out_dir: Path,
    *,
    weights: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    force: bool = False,
) -> list[Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir`` (created when missing), atomically.

    Parameters
    ----------
    report:
        The measurements.
    out_dir:
        Output folder.
    weights:
        The weights used: one ``{"name", "sha256", "demo"}`` dict, or a mapping of task ->
        such dicts (``{"breast": {...}, "tumor": {...}}``).
    extra:
        More top-level keys for report.json (e.g. the pipeline's run information).
    force:
        Replace existing report files.

    Returns
    -------
    list of Path
        The written files (json, md).

    Raises
    ------
    OutputExistsError
        When a report file exists and ``force`` is False.
    OutputError
        When the folder cannot be written.
    """
    out_dir = Path(out_dir)
    targets = [out_dir / "report.json", out_dir / "report.md"]
    if not force:
        for t in targets:
            if t.exists():
                raise OutputExistsError(f"{str(t)!r} already exists; pass --force to replace it.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        doc = report.to_dict(weights=weights, extra=extra)
        atomic_write_text(targets[0], json.dumps(doc, indent=2, allow_nan=False) + "\n")
        atomic_write_text(targets[1], report.to_markdown(weights=weights))
    except OSError as exc:
        raise OutputError(
            f"Could not write the report to {str(out_dir)!r}: {exc.strerror or exc}."
        ) from None
    return targets


def measure_mask_file(
    mask: Path,
    *,
    study: Path | None = None,
    breast_mask: Path | None = None,
    min_volume_mm3: float | None = None,
    label: int | None = None,
    out_dir: Path | None = None,
    sr: bool = False,
    force: bool = False,
) -> tuple[LesionReport, list[Path]]:
    """``breastai tstage``: read a tumor mask (and optionally its study and breast mask), measure
    its lesions and optionally write ``report.json``/``report.md`` (and ``report-sr.dcm``).

    Parameters
    ----------
    mask:
        Tumor mask file (NIfTI/NRRD/MHA or DICOM-SEG).
    study:
        DCE study folder, for per-lesion kinetics (and the SR's references).
    breast_mask:
        Breast mask file: laterality midline, skin/chest-wall flag.
    min_volume_mm3:
        Smallest lesion kept (default :data:`DEFAULT_MIN_VOLUME_MM3`).
    label:
        Lesion label of a label-map mask.
    out_dir:
        Write the report files here (nothing is written when None).
    sr:
        Also write ``report-sr.dcm``; needs ``out_dir`` and a DICOM ``study``.
    force:
        Replace existing report files.

    Returns
    -------
    (LesionReport, list of Path)
        The measurements (``source`` = ``mask``) and the files written.

    Raises
    ------
    ParameterError
        ``sr`` without ``out_dir`` or without a DICOM study.
    InputError, OutputError
        From reading the inputs and writing the files.
    """
    if sr and (out_dir is None or study is None):
        raise ParameterError("--sr needs --out DIR and a DICOM --study STUDY_DIR.")
    mask_img = read_mask(mask)
    breast_img = read_mask(breast_mask) if breast_mask is not None else None
    study_obj = None
    if study is not None:
        from breastai.io import load_study

        study_obj = load_study(study)
        if sr and study_obj.kind != "dicom":
            raise ParameterError("--sr needs a DICOM study; this study was read from NIfTI files.")
    result = measure_lesions(
        mask_img,
        study=study_obj,
        breast_mask=breast_img,
        min_volume_mm3=DEFAULT_MIN_VOLUME_MM3 if min_volume_mm3 is None else min_volume_mm3,
        label=label,
    )
    result.source = str(mask)
    written = write_report(result, out_dir, force=force) if out_dir is not None else []
    if sr and out_dir is not None and study_obj is not None:
        written.append(write_sr(result, study_obj, out_dir / "report-sr.dcm", force=force))
    return result, written
