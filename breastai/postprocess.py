"""Post-processing of model probabilities on the native grid: masks, breast masking, cleaning.

Axis contract: see :mod:`breastai.study`. Every function takes and returns ``SimpleITK.Image``
volumes (LPS geometry kept); numpy is used inside only.

Rules (documented in docs/outputs.md):

* Thresholding is strict, ``probability > threshold``: the seed model's released code thresholds
  its vote fraction with ``> 0.5`` (a tie is background); the same rule is used for every blend.
* Breast mask: threshold, then the largest 26-connected component on each side of the midline,
  each with its holes filled (in 3-D, then holes of up to :data:`MAX_SLICE_HOLE_MM2` slice by
  slice along the array's slice axis, so an implant is not filled into the breast). The
  midline is the middle of the thresholded foreground's extent along the patient's left-right (LPS
  x) axis; a component belongs to the side its centroid lies on. A side's component is kept only
  if it has at least :data:`MIN_SIDE_FRACTION` of the volume of the largest component, so that a
  unilateral study keeps one breast and not a noise blob on the empty side.
* Tumor mask: threshold, then multiplied by the breast mask exactly as the paper does (no dilation:
  a tumor reaching the chest wall beyond the breast mask is cut there), unless breast masking is
  turned off (``--no-breast-mask``); then 26-connected components smaller than
  ``min_volume_mm3`` (default :data:`DEFAULT_MIN_VOLUME_MM3`, the lesion report's own minimum) are
  removed.
* Enhancement rule (:func:`remove_non_enhancing`): a tumor component whose mean signal rises by
  less than ``min_enhancement_pct`` (default :data:`DEFAULT_MIN_ENHANCEMENT_PCT`) over the
  pre-contrast phase in every post-contrast phase is removed: a lesion of a DCE study enhances, and
  a component that does not is bright tissue read as enhancement (fat of a study without fat
  suppression, for one). 0 turns the rule off; a single-phase study is left as it is.
"""

# SimpleITK's bindings are untyped (no stubs); calling them is fine here.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from breastai.errors import ParameterError
from breastai.geometry import same_grid
from breastai.kinetics import label_voxel_signals

__all__ = [
    "DEFAULT_MIN_ENHANCEMENT_PCT",
    "DEFAULT_MIN_VOLUME_MM3",
    "MAX_SLICE_HOLE_MM2",
    "MIN_SIDE_FRACTION",
    "binarise",
    "bounding_box",
    "breast_mask",
    "fill_holes",
    "largest_component",
    "largest_component_per_side",
    "remove_non_enhancing",
    "remove_small_components",
    "tumor_mask",
]

log = logging.getLogger(__name__)

#: Smallest tumor component kept (mm³): the same default as the lesion report
#: (breastai.report.DEFAULT_MIN_VOLUME_MM3): a sphere of 2.7 mm diameter.
DEFAULT_MIN_VOLUME_MM3 = 10.0

#: A tumor component is kept only if its mean signal rises at least this much (percent of the
#: pre-contrast mean) in some post-contrast phase. Lesions of the held-out sets rise 20-350 %;
#: non-enhancing tissue read as a lesion rises 0-3 % (bench/RESULTS.md, issue 17).
DEFAULT_MIN_ENHANCEMENT_PCT = 10.0

#: A side's largest breast component is kept only if it has at least this fraction of the volume
#: of the largest component overall.
MIN_SIDE_FRACTION = 0.10

#: Holes enclosed within one slice (but open in 3-D) are filled up to this area (mm²): dark
#: vessels and ducts cut by the slice, not an implant (docs/outputs.md).
MAX_SLICE_HOLE_MM2 = 100.0

_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


def _array(image: sitk.Image) -> np.ndarray:
    # A copy, not GetArrayViewFromImage: a view does not keep a temporary image alive.
    return np.asarray(sitk.GetArrayFromImage(image))


def _like(arr: np.ndarray, reference: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(reference)
    return out


def _voxel_mm3(image: sitk.Image) -> float:
    sx, sy, sz = image.GetSpacing()
    return float(sx * sy * sz)


def binarise(probability: sitk.Image, threshold: float = 0.5) -> sitk.Image:
    """Threshold a probability map: ``probability > threshold`` -> uint8 0/1, same geometry.

    Parameters
    ----------
    probability:
        Probability (or vote fraction) volume.
    threshold:
        In [0, 1].

    Raises
    ------
    ParameterError
        A threshold outside [0, 1].
    """
    if not 0.0 <= threshold <= 1.0:
        raise ParameterError(f"threshold must be within [0, 1], got {threshold!r}.")
    return _like((_array(probability) > threshold).astype(np.uint8), probability)


def fill_holes(mask: sitk.Image, max_slice_hole_mm2: float = MAX_SLICE_HOLE_MM2) -> sitk.Image:
    """Fill enclosed holes of a binary mask in 3-D, then small holes slice by slice.

    Parameters
    ----------
    mask:
        Binary mask.
    max_slice_hole_mm2:
        After the 3-D fill, holes enclosed within one slice (array axis 0) are filled only up to
        this area: larger ones are open in 3-D, like an implant that breast tissue surrounds in
        each slice but not in the volume, and stay out of the mask.

    Returns
    -------
    SimpleITK.Image
        uint8 0/1 mask, same geometry.
    """
    if max_slice_hole_mm2 < 0:
        raise ParameterError(f"max_slice_hole_mm2 must be >= 0, got {max_slice_hole_mm2!r}.")
    arr = _array(mask) > 0
    arr = ndimage.binary_fill_holes(arr)
    sx, sy = mask.GetSpacing()[:2]
    max_pixels = max_slice_hole_mm2 / (sx * sy)
    for k in range(arr.shape[0]):
        if not arr[k].any():
            continue
        holes, n = ndimage.label(ndimage.binary_fill_holes(arr[k]) & ~arr[k])
        if n:
            area = np.bincount(holes.ravel())
            small = np.flatnonzero(area <= max_pixels)
            arr[k] |= np.isin(holes, small[small > 0])
    return _like(arr.astype(np.uint8), mask)


def _x_lps(image: sitk.Image, idx_zyx: np.ndarray) -> np.ndarray:
    """LPS x coordinate of voxel indices given as an (n, 3) (z, y, x) array."""
    d = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    sp = np.asarray(image.GetSpacing(), dtype=np.float64)
    o = np.asarray(image.GetOrigin(), dtype=np.float64)
    row = d[0] * sp  # x_lps = o_x + sum_c D[0, c] * sp[c] * index_xyz[c]
    x: np.ndarray = o[0] + idx_zyx[:, ::-1].astype(np.float64) @ row
    return x


def _components(mask: sitk.Image) -> tuple[np.ndarray, np.ndarray, int]:
    """The foreground, its 26-connected component labels (1..n) and n."""
    arr = _array(mask) > 0
    labels, n = ndimage.label(arr, structure=_STRUCTURE_26)
    return arr, labels, int(n)


def largest_component(mask: sitk.Image) -> sitk.Image:
    """Keep the largest 26-connected component (ties: the lowest label).

    Returns
    -------
    SimpleITK.Image
        uint8 0/1 mask with at most one component, same geometry.
    """
    arr, labels, n = _components(mask)
    if n <= 1:
        return _like(arr.astype(np.uint8), mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return _like((labels == int(np.argmax(sizes)) + 1).astype(np.uint8), mask)


def largest_component_per_side(
    mask: sitk.Image, *, min_fraction: float = MIN_SIDE_FRACTION
) -> sitk.Image:
    """Keep the largest 26-connected component on each side (left/right) of the body midline.

    Parameters
    ----------
    mask:
        Binary mask (LPS geometry).
    min_fraction:
        A side's component is kept only if its volume is at least this fraction of the largest
        component's (see the module docstring).

    Returns
    -------
    SimpleITK.Image
        uint8 0/1 mask with at most two components, same geometry.
    """
    arr, labels, n = _components(mask)
    if n <= 1:
        return _like(arr.astype(np.uint8), mask)
    idx = np.argwhere(arr)
    x = _x_lps(mask, idx)
    midline = 0.5 * (float(x.min()) + float(x.max()))
    lab = labels[arr]
    counts = np.bincount(lab, minlength=n + 1).astype(np.float64)
    xsum = np.bincount(lab, weights=x, minlength=n + 1)
    centroid_x = xsum[1:] / np.maximum(counts[1:], 1)
    sizes = counts[1:]
    keep: list[int] = []
    for side in (centroid_x < midline, centroid_x >= midline):
        if side.any():
            cand = np.flatnonzero(side)
            best = int(cand[np.argmax(sizes[cand])])
            if sizes[best] >= min_fraction * sizes.max():
                keep.append(best + 1)
    out = np.isin(labels, keep).astype(np.uint8)
    log.debug("breast components: %d found, kept %s (midline x = %.1f mm)", n, keep, midline)
    return _like(out, mask)


def breast_mask(
    probability: sitk.Image, threshold: float = 0.5, *, one_breast: bool = False
) -> sitk.Image:
    """Breast mask from the breast model's probability on the native grid.

    Threshold (``>``), largest component per side of the midline (or the largest component
    only, with ``one_breast``), holes filled.

    Parameters
    ----------
    probability:
        Breast probability resampled onto the reference phase's grid.
    threshold:
        From the breast model card.
    one_breast:
        The volume shows one breast (a split-bilateral stack): keep one component.

    Returns
    -------
    SimpleITK.Image
        uint8 0/1 mask, same geometry as ``probability``.
    """
    binary = binarise(probability, threshold)
    per_side = largest_component(binary) if one_breast else largest_component_per_side(binary)
    # fill each side separately so that the gap between the breasts is never filled
    arr = _array(per_side)
    labels, n = ndimage.label(arr, structure=_STRUCTURE_26)
    out = np.zeros(arr.shape, dtype=np.uint8)
    for k in range(1, n + 1):
        out |= _array(fill_holes(_like((labels == k).astype(np.uint8), per_side)))
    return _like(out, probability)


def remove_small_components(
    mask: sitk.Image, min_volume_mm3: float = DEFAULT_MIN_VOLUME_MM3
) -> tuple[sitk.Image, int]:
    """Drop 26-connected components smaller than ``min_volume_mm3``.

    Returns
    -------
    (SimpleITK.Image, int)
        The cleaned uint8 mask and the number of components removed.
    """
    if min_volume_mm3 < 0:
        raise ParameterError(f"min_volume_mm3 must be >= 0, got {min_volume_mm3!r}.")
    arr = _array(mask) > 0
    labels, n = ndimage.label(arr, structure=_STRUCTURE_26)
    if n == 0:
        return _like(arr.astype(np.uint8), mask), 0
    vol = np.bincount(labels.ravel(), minlength=n + 1)[1:] * _voxel_mm3(mask)
    small = np.flatnonzero(vol < min_volume_mm3) + 1
    if small.size:
        arr = arr & ~np.isin(labels, small)
    return _like(arr.astype(np.uint8), mask), int(small.size)


def remove_non_enhancing(
    mask: sitk.Image,
    phases: Sequence[sitk.Image],
    min_enhancement_pct: float = DEFAULT_MIN_ENHANCEMENT_PCT,
) -> tuple[sitk.Image, list[float]]:
    """Drop 26-connected components of ``mask`` that do not enhance.

    A component's enhancement is ``100 * (S_k - S_0) / S_0`` for the mean signal ``S_k`` of its
    voxels in phase ``k``; it is kept when the highest enhancement over the post-contrast phases
    (``k >= 1``) is at least ``min_enhancement_pct``, or when its pre-contrast mean is not
    positive (no enhancement can be measured).

    Parameters
    ----------
    mask:
        Tumor mask (0/1).
    phases:
        The study's phases in acquisition order, phase 0 pre-contrast. A phase on another grid
        than ``mask`` is resampled onto it (linear).
    min_enhancement_pct:
        Smallest peak enhancement kept (percent); 0 keeps every component.

    Returns
    -------
    (SimpleITK.Image, list[float])
        The cleaned uint8 mask, and the peak enhancement (percent) of each removed component.

    Raises
    ------
    ParameterError
        ``min_enhancement_pct`` is negative or not finite.
    """
    if not np.isfinite(min_enhancement_pct) or min_enhancement_pct < 0:
        raise ParameterError(
            f"min_enhancement_pct must be a number >= 0, got {min_enhancement_pct!r}."
        )
    arr = _array(mask) > 0
    if min_enhancement_pct == 0 or len(phases) < 2 or not arr.any():
        return _like(arr.astype(np.uint8), mask), []
    labels, n = ndimage.label(arr, structure=_STRUCTURE_26)
    lab, signals = label_voxel_signals(labels, mask, phases)
    counts = np.maximum(np.bincount(lab, minlength=n + 1), 1)
    means = [np.bincount(lab, weights=v, minlength=n + 1) / counts for v in signals]
    s0 = means[0]
    post = np.max(np.stack(means[1:]), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        peak = np.where(s0 > 0, 100.0 * (post - s0) / np.where(s0 > 0, s0, 1.0), np.inf)
    drop = np.flatnonzero(peak[1:] < min_enhancement_pct) + 1
    if drop.size:
        arr &= ~np.isin(labels, drop)
        log.info(
            "removed %d non-enhancing tumor component(s) (peak enhancement < %g %%)",
            drop.size,
            min_enhancement_pct,
        )
    return _like(arr.astype(np.uint8), mask), [float(peak[i]) for i in drop]


def tumor_mask(
    probability: sitk.Image,
    threshold: float = 0.5,
    *,
    breast: sitk.Image | None = None,
    min_volume_mm3: float = DEFAULT_MIN_VOLUME_MM3,
) -> tuple[sitk.Image, int]:
    """Tumor mask from the tumor probability on the native grid.

    Parameters
    ----------
    probability:
        Tumor probability (or vote fraction) on the reference phase's grid.
    threshold:
        From the tumor model card (``>``).
    breast:
        Breast mask on the same grid: the tumor mask is multiplied by it (the paper). ``None``
        turns breast masking off.
    min_volume_mm3:
        Smallest component kept.

    Returns
    -------
    (SimpleITK.Image, int)
        uint8 0/1 mask with the geometry of ``probability``; number of small components removed.

    Raises
    ------
    ParameterError
        ``breast`` is on another grid.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ParameterError(f"threshold must be within [0, 1], got {threshold!r}.")
    arr = _array(probability) > threshold
    if breast is not None:
        if not same_grid(breast, probability):
            raise ParameterError(
                "The breast mask must lie on the tumor probability's grid; got size "
                f"{breast.GetSize()}, spacing {breast.GetSpacing()}, origin {breast.GetOrigin()} "
                f"vs size {probability.GetSize()}, spacing {probability.GetSpacing()}, origin "
                f"{probability.GetOrigin()}; resample the breast mask onto that grid first."
            )
        arr &= _array(breast) > 0
    return remove_small_components(_like(arr.astype(np.uint8), probability), min_volume_mm3)


def bounding_box(
    mask: sitk.Image, grid: sitk.Image, *, margin_mm: float = 8.0
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None:
    """Bounding box of a mask in voxel indices of another grid (e.g. the tumor model's grid).

    Parameters
    ----------
    mask:
        Binary mask on any grid.
    grid:
        The grid whose indices are wanted.
    margin_mm:
        Added on every side (clipped to ``grid``).

    Returns
    -------
    tuple or None
        ``((z0, z1), (y0, y1), (x0, x1))`` half-open, or None when the mask is empty.
    """
    arr = _array(mask) > 0
    if not arr.any():
        return None
    # the mask's box corners in physical space, then their indices on ``grid``
    nz = np.argwhere(arr)
    lo, hi = nz.min(axis=0), nz.max(axis=0)
    corners = []
    for z in (lo[0], hi[0]):
        for y in (lo[1], hi[1]):
            for x in (lo[2], hi[2]):
                p = mask.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z)))
                corners.append(grid.TransformPhysicalPointToContinuousIndex(p))
    c = np.asarray(corners, dtype=np.float64)[:, ::-1]  # -> (z, y, x)
    sp = np.asarray(grid.GetSpacing(), dtype=np.float64)[::-1]
    m = margin_mm / sp
    size = np.asarray(grid.GetSize())[::-1]
    a = np.clip(np.floor(c.min(axis=0) - m), 0, size).astype(int)
    b = np.clip(np.ceil(c.max(axis=0) + m) + 1, 0, size).astype(int)
    return ((int(a[0]), int(b[0])), (int(a[1]), int(b[1])), (int(a[2]), int(b[2])))
