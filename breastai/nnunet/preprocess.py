"""nnU-Net v2's preprocessing and export arithmetic in numpy/scipy (no torch).

Each function reproduces one step of nnunetv2 2.8.1 (``DefaultPreprocessor.run_case_npy``,
``default_resampling``, ``cropping``, ``default_normalization_schemes``,
``export_prediction``) with the same library calls, so that the preprocessed arrays are
bit-identical: scikit-image's ``resize(mode="edge", anti_aliasing=False)`` is
``scipy.ndimage.zoom(grid_mode=True, mode="nearest")`` followed by clipping to the input's range,
and is written that way here so that inference needs no scikit-image.

Arrays are ``(C, z, y, x)`` in nnU-Net's transposed axis order (see :mod:`breastai.nnunet.card`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "ANISO_THRESHOLD",
    "compute_new_shape",
    "crop_to_nonzero",
    "normalise",
    "resample",
    "separate_z_axis",
    "skimage_resize",
]

#: nnunetv2.configuration.ANISO_THRESHOLD
ANISO_THRESHOLD = 3.0

BBox = list[list[int]]


def crop_to_nonzero(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, BBox]:
    """Crop ``(C, z, y, x)`` to the bounding box of the hole-filled nonzero mask.

    Returns
    -------
    (cropped data, mask seg ``(1, ...)`` int8 (0 inside the mask, -1 outside), half-open bbox)
    """
    mask = data[0] != 0
    for c in range(1, data.shape[0]):
        mask |= data[c] != 0
    mask = ndimage.binary_fill_holes(mask)
    idx = np.nonzero(mask)
    if len(idx[0]) == 0:
        bbox = [[0, int(s)] for s in mask.shape]
    else:
        bbox = [[int(i.min()), int(i.max()) + 1] for i in idx]
    sl = tuple(slice(a, b) for a, b in bbox)
    seg = np.where(mask[sl], np.int8(0), np.int8(-1))[None]
    return data[(slice(None), *sl)], seg, bbox


def compute_new_shape(
    old_shape: Sequence[int], old_spacing: Sequence[float], new_spacing: Sequence[float]
) -> tuple[int, ...]:
    """``int(round(old/new * n))`` per axis (Python's round: half to even)."""
    return tuple(
        round(o / n * s) for o, n, s in zip(old_spacing, new_spacing, old_shape, strict=True)
    )


def normalise(
    data: np.ndarray,
    seg: np.ndarray,
    schemes: Sequence[str],
    use_mask: Sequence[bool],
    properties: Mapping[str, Mapping[str, float]],
) -> np.ndarray:
    """Normalise each channel of float32 ``(C, z, y, x)`` in place (nnU-Net's schemes, eps 1e-8).

    ``seg`` is the crop's ``(1, ...)`` mask from :func:`crop_to_nonzero` (``>= 0`` inside).
    """
    eps = 1e-8
    for c, scheme in enumerate(schemes):
        image = data[c]
        if scheme == "ZScoreNormalization":
            if use_mask[c]:
                mask = seg[0] >= 0
                mean = image[mask].mean()
                std = image[mask].std()
                image[mask] = (image[mask] - mean) / (max(std, eps))
            else:
                mean = image.mean()
                std = image.std()
                image -= mean
                image /= max(std, eps)
        elif scheme == "CTNormalization":
            p = properties[str(c)]
            np.clip(image, p["percentile_00_5"], p["percentile_99_5"], out=image)
            image -= p["mean"]
            image /= max(p["std"], eps)
        elif scheme == "RescaleTo01Normalization":
            image -= image.min()
            image /= np.clip(image.max(), a_min=eps, a_max=None)
        elif scheme == "RGBTo01Normalization":
            image /= 255.0
        elif scheme == "NoNormalization":
            pass
        else:  # the card validation refuses other names; this is a bug guard
            raise ValueError(f"unknown normalisation scheme {scheme!r}")
        data[c] = image
    return data


def skimage_resize(image: np.ndarray, new_shape: Sequence[int], order: int) -> np.ndarray:
    """``skimage.transform.resize(image, new_shape, order, mode="edge", anti_aliasing=False)``
    for a float64 image: a grid-mode spline zoom, then clipping to the input's range."""
    factors = np.divide(image.shape, new_shape)
    zoom = [1 / f for f in factors]
    out = ndimage.zoom(image, zoom, order=order, mode="nearest", cval=0.0, grid_mode=True)
    np.clip(out, np.asarray(np.min(image)), np.asarray(np.max(image)), out=out)
    return np.asarray(out)


def separate_z_axis(
    current: Sequence[float], new: Sequence[float], force: bool | None
) -> int | None:
    """nnU-Net's ``determine_do_sep_z_and_axis``: the low-resolution axis, or None."""

    def lowres(sp: Sequence[float]) -> np.ndarray:
        arr = np.asarray(sp, dtype=float)
        return np.asarray(np.where(max(sp) / arr == 1)[0])

    if force is not None:
        axis = lowres(current) if force else None
    elif np.max(current) / np.min(current) > ANISO_THRESHOLD:
        axis = lowres(current)
    elif np.max(new) / np.min(new) > ANISO_THRESHOLD:
        axis = lowres(new)
    else:
        axis = None
    if axis is None or len(axis) != 1:
        return None
    return int(axis[0])


def resample(
    data: np.ndarray,
    new_shape: Sequence[int],
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    kwargs: Mapping[str, Any],
) -> np.ndarray:
    """nnU-Net's ``resample_data_or_seg_to_shape`` for images/logits (``is_seg=False``).

    The result has the input's dtype (float32 images, float16 logits); the arithmetic is float64.
    """
    order = int(kwargs.get("order", 3))
    order_z = int(kwargs.get("order_z", 0))
    axis = separate_z_axis(current_spacing, new_spacing, kwargs.get("force_separate_z"))
    shape = np.array(data.shape[1:])
    target = np.array(new_shape)
    if np.all(shape == target):
        return data
    out = np.zeros((data.shape[0], *target), dtype=data.dtype)
    src = data.astype(float, copy=False)
    for c in range(src.shape[0]):
        if axis is None:
            out[c] = skimage_resize(src[c], target.tolist(), order)
            continue
        others = [a for a in range(3) if a != axis]
        shape2d = target[others]
        tmp = target.copy()
        tmp[axis] = shape[axis]
        here = np.zeros(tmp)
        for s in range(shape[axis]):
            idx: list[Any] = [slice(None)] * 3
            idx[axis] = s
            here[tuple(idx)] = skimage_resize(src[c][tuple(idx)], shape2d.tolist(), order)
        if shape[axis] != target[axis]:
            grids = np.mgrid[: target[0], : target[1], : target[2]].astype(float)
            scales = [float(here.shape[i]) / target[i] for i in range(3)]
            coords = np.array([scales[i] * (grids[i] + 0.5) - 0.5 for i in range(3)])
            out[c] = ndimage.map_coordinates(here, coords, order=order_z, mode="nearest")
        else:
            out[c] = here
    return out
