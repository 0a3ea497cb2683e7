"""Grids of SimpleITK images: resampling, grid comparison and mask alignment.

The one place that decides whether two images share a voxel grid (:func:`same_grid`), how an
image is resampled onto a spacing or onto another image's grid, and how a label image is placed
on a reference grid (:func:`align_to_grid`: refused across frames of reference or without
overlap, exact on the same lattice, else nearest neighbour with a warning). Used by
:mod:`breastai.io` (phase alignment, DICOM-SEG), :mod:`breastai.preprocess`,
:mod:`breastai.report`, :mod:`breastai.evaluate` and :mod:`breastai.postprocess`. It depends on
nothing else of breastai but :mod:`breastai.errors`.

Axis contract: see :mod:`breastai.study` (images in LPS; numpy arrays ``(z, y, x)``).
"""

# SimpleITK's bindings are untyped (no stubs); calling them is fine here.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from breastai.errors import InconsistentGeometryError, ParameterError

__all__ = [
    "align_to_grid",
    "on_lattice",
    "resample_to_reference",
    "resample_to_spacing",
    "same_grid",
]

log = logging.getLogger(__name__)

_INTERPOLATORS: dict[str, int] = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
    "label": sitk.sitkLabelGaussian,
}


def _interpolator(value: str | int) -> int:
    if isinstance(value, str):
        try:
            return _INTERPOLATORS[value]
        except KeyError:
            raise ParameterError(
                f"interpolator must be one of {sorted(_INTERPOLATORS)}, got {value!r}."
            ) from None
    return int(value)


def resample_to_spacing(
    image: sitk.Image,
    spacing_zyx: Sequence[float],
    *,
    interpolator: str | int = "linear",
    canonical: bool = False,
) -> sitk.Image:
    """Resample a volume to a new voxel spacing, keeping origin, direction and physical extent.

    Parameters
    ----------
    image:
        The volume (any pixel type, LPS geometry).
    spacing_zyx:
        Target spacing in mm, ``(z, y, x)`` order (as in model cards).
    interpolator:
        ``"linear"`` (default, for intensities and probabilities), ``"nearest"`` (masks),
        ``"bspline"``, ``"label"``, or a SimpleITK interpolator constant.
    canonical:
        Relabel the axes (permutation and flips only, no rotation) so that array x, y, z run
        closest to patient left, posterior and superior, covering the same voxel centres: a
        sagittal or descending-slice acquisition reaches the model in the axial order it was
        trained on, and an oblique tilt is kept. Volumes already in that order are resampled as
        with ``canonical=False``. The pipeline and training use ``canonical=True``.

    Returns
    -------
    SimpleITK.Image
        Same pixel type, same origin (centre of voxel 0) and direction; size
        ``round(size * spacing / new_spacing)`` per axis (at least 1), so the physical extent
        ``size * spacing`` changes by at most half a new voxel. Output voxels beyond the last
        source voxel centre take the nearest source voxel (no zero fill at the edges).

    Raises
    ------
    ParameterError
        If a spacing is not positive or the interpolator is unknown.
    """
    new_xyz = [float(s) for s in reversed(tuple(spacing_zyx))]
    if len(new_xyz) != 3 or min(new_xyz) <= 0:
        raise ParameterError(f"spacing_zyx must be three positive numbers, got {spacing_zyx!r}.")
    interp = _interpolator(interpolator)
    old_xyz = image.GetSpacing()
    size = image.GetSize()
    if canonical:
        relabelled = _closest_canonical_axes(image)
        if relabelled is not None:
            direction, origin, extent = relabelled
            f = sitk.ResampleImageFilter()
            f.SetSize([max(1, round(e / s) + 1) for e, s in zip(extent, new_xyz, strict=True)])
            f.SetOutputOrigin([float(v) for v in origin])
            f.SetOutputSpacing(new_xyz)
            f.SetOutputDirection([float(v) for v in direction.ravel()])
            return _run_resample(f, image, interp, extrapolate=True)
    new_size = [max(1, round(n * o / s)) for n, o, s in zip(size, old_xyz, new_xyz, strict=True)]
    if tuple(new_size) == tuple(size) and np.allclose(old_xyz, new_xyz, rtol=0, atol=1e-6):
        return image
    f = sitk.ResampleImageFilter()
    f.SetSize([int(v) for v in new_size])
    f.SetOutputOrigin(image.GetOrigin())
    f.SetOutputSpacing(new_xyz)
    f.SetOutputDirection(image.GetDirection())
    return _run_resample(f, image, interp, extrapolate=True)


def _closest_canonical_axes(
    image: sitk.Image,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Relabel the image axes so that array x, y, z run closest to patient L, P, S.

    Only a permutation and flips of the acquisition axes (like nibabel's
    ``as_closest_canonical``): a sagittal or descending-slice acquisition is put in the axial
    order the models were trained on, while an oblique tilt is kept (no rotation, no extra
    interpolation). Returns None when the axes already run that way; else the new direction
    (3 x 3, columns = axes), the origin (centre of the new voxel 0) and the extent (mm along each
    new axis between the first and last voxel centres).
    """
    d = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    perm = [int(np.argmax(np.abs(d[row]))) for row in range(3)]
    if sorted(perm) != [0, 1, 2]:  # no unique axis per patient direction (45-degree tilt)
        return None
    signs = np.array([np.sign(d[row, perm[row]]) or 1.0 for row in range(3)])
    if perm == [0, 1, 2] and bool(np.all(signs > 0)):
        return None
    new_dir = d[:, perm] * signs
    size = image.GetSize()
    corners = np.array(
        [
            image.TransformIndexToPhysicalPoint(
                [c * (n - 1) for c, n in zip(corner, size, strict=True)]
            )
            for corner in np.ndindex(2, 2, 2)
        ]
    )
    coords = corners @ np.linalg.inv(new_dir).T  # coordinates along the new axes
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    return new_dir, new_dir @ lo, hi - lo


def _run_resample(
    f: sitk.ResampleImageFilter, image: sitk.Image, interp: int, *, extrapolate: bool
) -> sitk.Image:
    f.SetTransform(sitk.Transform())
    f.SetInterpolator(interp)
    f.SetDefaultPixelValue(0.0)
    f.SetOutputPixelType(image.GetPixelID())
    # ITK treats points beyond the last voxel centre (the outer half voxel) as outside the
    # image; nearest-neighbour extrapolation fills that rim instead of zeros.
    f.SetUseNearestNeighborExtrapolator(extrapolate)
    out: sitk.Image = f.Execute(image)
    return out


def resample_to_reference(
    image: sitk.Image,
    reference: sitk.Image,
    *,
    interpolator: str | int = "linear",
    extrapolate: bool = True,
) -> sitk.Image:
    """Resample ``image`` onto the grid of ``reference`` (e.g. model grid -> native grid).

    Parameters
    ----------
    image:
        Volume to resample (its own geometry is used; no registration).
    reference:
        Volume whose size, spacing, origin and direction the result takes.
    interpolator:
        As in :func:`resample_to_spacing`; probabilities go back with ``"linear"``.
    extrapolate:
        Points of ``reference`` outside ``image`` take the nearest voxel of ``image`` (True,
        the default: going back from a model grid of the same extent only touches the outer
        half-voxel rim) or 0 (False).

    Returns
    -------
    SimpleITK.Image
        The pixel type of ``image`` on exactly the grid of ``reference``.
    """
    f = sitk.ResampleImageFilter()
    f.SetReferenceImage(reference)
    return _run_resample(f, image, _interpolator(interpolator), extrapolate=extrapolate)


def same_grid(a: sitk.Image, b: sitk.Image, *, tol: float = 1e-4) -> bool:
    """True when two images share size, spacing, origin and direction (within ``tol``).

    Parameters
    ----------
    a, b:
        The images.
    tol:
        Absolute tolerance for spacing (mm) and direction cosines; origins may differ by up to
        ``100 * tol`` mm (header round-off of positions).

    Returns
    -------
    bool
        Whether voxel ``(z, y, x)`` of one is voxel ``(z, y, x)`` of the other.
    """
    return bool(
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=0, atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=tol * 100)
        and np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=tol)
    )


def _same_lattice(a: sitk.Image, b: sitk.Image) -> bool:
    """Same spacing and direction, and a's voxel centres fall on b's (a crop or pad of b)."""
    if not (
        np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-4, atol=1e-5)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4)
    ):
        return False
    idx = np.asarray(b.TransformPhysicalPointToContinuousIndex(a.GetOrigin()))
    return bool(np.allclose(idx, np.round(idx), atol=1e-3))


def on_lattice(image: sitk.Image, reference: sitk.Image) -> NDArray[Any] | None:
    """The voxels of ``image`` on ``reference``'s grid, ``(z, y, x)``, without interpolation.

    ``image`` must lie on ``reference``'s voxel lattice up to axis permutations and flips and a
    whole-voxel offset (e.g. a DICOM-SEG that stores only its non-empty frames); voxels of
    ``reference`` it does not cover are 0. None when it does not lie on the lattice or has
    non-zero voxels outside ``reference``.
    """

    def index_frame(img: sitk.Image) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        d = np.reshape(np.asarray(img.GetDirection(), dtype=np.float64), (3, 3))
        spacing = np.asarray(img.GetSpacing(), dtype=np.float64)
        return d * spacing, np.asarray(img.GetOrigin(), dtype=np.float64)

    own, own_origin = index_frame(image)
    ref, ref_origin = index_frame(reference)
    axes = np.linalg.solve(ref, own)  # image index (x, y, z) -> reference index, per axis
    offset = np.linalg.solve(ref, own_origin - ref_origin)
    perm, shift = np.rint(axes), np.rint(offset)
    if not (
        np.allclose(axes, perm, atol=1e-2)
        and np.allclose(offset, shift, atol=5e-2)
        and np.array_equal(np.abs(perm).sum(axis=0), np.ones(3))
        and np.array_equal(np.abs(perm).sum(axis=1), np.ones(3))
    ):
        return None
    size = np.asarray(reference.GetSize())
    array = sitk.GetArrayViewFromImage(image)
    zyx = np.nonzero(array)
    index = perm.astype(np.int64) @ np.stack(zyx[::-1]) + shift.astype(np.int64)[:, None]
    if index.size and ((index < 0).any() or (index >= size[:, None]).any()):
        return None
    out = np.zeros(tuple(size[::-1]), dtype=array.dtype)
    out[index[2], index[1], index[0]] = array[zyx]
    return out


def _extent_lps(image: sitk.Image) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Axis-aligned LPS bounding box of the image's voxels (outer faces)."""
    size = image.GetSize()
    corners = []
    for cx in (-0.5, size[0] - 0.5):
        for cy in (-0.5, size[1] - 0.5):
            for cz in (-0.5, size[2] - 0.5):
                corners.append(image.TransformContinuousIndexToPhysicalPoint((cx, cy, cz)))
    pts = np.asarray(corners)
    return pts.min(axis=0), pts.max(axis=0)


def _overlap_fraction(a: sitk.Image, b: sitk.Image) -> float:
    """Fraction of a's LPS bounding box that lies inside b's."""
    lo_a, hi_a = _extent_lps(a)
    lo_b, hi_b = _extent_lps(b)
    inter = np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0, None)
    vol_a = float(np.prod(hi_a - lo_a))
    return float(np.prod(inter)) / vol_a if vol_a > 0 else 0.0


def align_to_grid(
    image: sitk.Image, reference: sitk.Image, *, what: str, onto: str, warnings: list[str]
) -> sitk.Image:
    """Resample a label image onto ``reference`` with nearest neighbour, refusing disjoint grids."""
    if same_grid(image, reference):
        return image
    for key in ("0020|0052",):  # FrameOfReferenceUID, when both images carry it
        if (
            image.HasMetaDataKey(key)
            and reference.HasMetaDataKey(key)
            and image.GetMetaData(key).strip() != reference.GetMetaData(key).strip()
        ):
            raise InconsistentGeometryError(
                f"The {what} and the {onto} have different frames of reference; they cannot be "
                "compared. Use a mask made on this study."
            )
    if _overlap_fraction(image, reference) <= 0.0:
        raise InconsistentGeometryError(
            f"The {what} and the {onto} do not overlap in patient space (LPS); they belong to "
            "different studies or frames of reference. Use a mask made on this study."
        )
    if _same_lattice(image, reference):
        # e.g. a DICOM-SEG that stores only the slices with content: an exact re-placement
        log.info("the %s lies on the %s's voxel lattice; placed without interpolation", what, onto)
    else:
        msg = (
            f"The {what}'s grid differs from the {onto}'s; it was resampled onto the {onto} "
            "grid with nearest neighbour."
        )
        log.warning(msg)
        warnings.append(msg)
    return sitk.Resample(
        image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, image.GetPixelID()
    )
