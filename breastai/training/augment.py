"""Patch augmentation for training (numpy/scipy only): geometry and intensity.

Used by :func:`breastai.training.train.train` when ``TrainOptions.augment == "dr"`` (domain
randomisation; the phantom side is :mod:`breastai.phantom.randomise`):

* **geometry** (:func:`sample_affine_patch`): the patch is resampled from the whole case volume
  through a random rotation (up to ``max_rot_deg`` about each axis), an isotropic and per-axis
  scale, and a smooth elastic displacement; the image linearly, the mask linearly thresholded at
  0.5. Sampling from the whole volume (zeros outside, as the sliding window pads at inference)
  means no border artefacts inside the patch.
* **intensity** (:func:`augment_intensity`): one gamma, contrast, brightness and smooth
  multiplicative bias field for every phase of the patch (so subtraction images keep their
  meaning), Gaussian blur and independent Gaussian noise per phase. Channels whose time mask is 0
  (empty phase slots) stay zero.

Axis contract: see :mod:`breastai.study`; patches are ``(C, z, y, x)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

__all__ = ["AUGMENTS", "augment_intensity", "sample_affine_patch"]

#: Values of ``TrainOptions.augment``: "none" (left-right flips only) or "dr".
AUGMENTS = ("none", "dr")

F32 = NDArray[np.float32]


def _rotation(angles: Sequence[float]) -> NDArray[np.float64]:
    out = np.eye(3)
    for axis, a in enumerate(angles):
        c, s = math.cos(a), math.sin(a)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = out @ r
    return out


def _smooth(shape: Sequence[int], rng: np.random.Generator, cells: int) -> NDArray[np.float64]:
    """Smooth zero-mean field of about unit amplitude: ``cells``^3 noise, cubic upsampling."""
    coarse = rng.standard_normal((cells, cells, cells))
    zoom = [n / cells for n in shape]
    out = ndimage.zoom(coarse, zoom, order=3, mode="nearest", grid_mode=True)
    return np.asarray(out[: shape[0], : shape[1], : shape[2]])


def sample_affine_patch(
    image: F32,
    target: NDArray[np.uint8],
    start: Sequence[int],
    patch: Sequence[int],
    rng: np.random.Generator,
    *,
    max_rot_deg: tuple[float, float, float] = (8.0, 8.0, 15.0),
    scale: tuple[float, float] = (0.85, 1.2),
    axis_jitter: float = 0.05,
    elastic_vox: float = 2.0,
) -> tuple[F32, NDArray[np.uint8]]:
    """A patch resampled through a random rotation, scale and elastic deformation.

    Parameters
    ----------
    image:
        ``(C, z, y, x)`` float32 case volume.
    target:
        ``(z, y, x)`` 0/1 mask of the same grid.
    start:
        Corner of the unaugmented patch (voxels); the deformation is centred on the patch.
    patch:
        Patch size ``(pz, py, px)``.
    rng:
        Random generator.
    max_rot_deg:
        Largest rotation about the z, y and x axes (degrees; the in-plane one, about z, largest).
    scale:
        Range of the isotropic zoom.
    axis_jitter:
        Each axis' zoom also varies by up to this share.
    elastic_vox:
        Largest elastic displacement (voxels).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(C, pz, py, px)`` float32 and ``(pz, py, px)`` uint8.
    """
    p = np.asarray(patch, dtype=np.float64)
    centre = np.asarray(start, dtype=np.float64) + (p - 1) / 2.0
    angles = [math.radians(rng.uniform(-m, m)) for m in max_rot_deg]
    zoom = rng.uniform(*scale) * rng.uniform(1 - axis_jitter, 1 + axis_jitter, size=3)
    mat = _rotation(angles) @ np.diag(1.0 / zoom)
    grid = np.indices(tuple(int(v) for v in patch), dtype=np.float64).reshape(3, -1)
    grid -= ((p - 1) / 2.0)[:, None]
    coords = mat @ grid + centre[:, None]
    if elastic_vox > 0:
        amp = rng.uniform(0.0, elastic_vox)
        for d in range(3):
            coords[d] += amp * _smooth(patch, rng, 4).ravel()
    shape = tuple(int(v) for v in patch)
    out = np.empty((image.shape[0], *shape), np.float32)
    for c in range(image.shape[0]):
        out[c] = ndimage.map_coordinates(
            image[c], coords, order=1, mode="constant", cval=0.0
        ).reshape(shape)
    tgt = ndimage.map_coordinates(
        target.astype(np.float32), coords, order=1, mode="constant", cval=0.0
    ).reshape(shape)
    return out, (tgt >= 0.5).astype(np.uint8)


def augment_intensity(
    img: F32, time_mask: NDArray[np.float32] | None, rng: np.random.Generator
) -> F32:
    """Random gamma, contrast, brightness, bias field, blur and noise (see module docstring).

    Parameters
    ----------
    img:
        ``(C, z, y, x)`` normalised patch (breast: one channel in [0, 1]; tumor: phase slots).
    time_mask:
        ``(C,)`` 1 for real phases, 0 for empty slots (None: every channel is real).
    rng:
        Random generator.

    Returns
    -------
    numpy.ndarray
        Augmented float32 patch, non-negative (breast: clipped to [0, 1]).
    """
    out = np.array(img, dtype=np.float32, copy=True)
    real = np.ones(out.shape[0], bool) if time_mask is None else np.asarray(time_mask) > 0
    if rng.random() < 0.6:
        gamma = float(np.exp(rng.normal(0.0, 0.35)))
        np.power(np.clip(out, 0.0, None), gamma, out=out)
    if rng.random() < 0.6:
        bias = np.exp(rng.uniform(0.1, 0.45) * _smooth(out.shape[1:], rng, 3)).astype(np.float32)
        out *= bias[None]
    if rng.random() < 0.5:
        out *= np.float32(rng.uniform(0.75, 1.25))
        out += np.float32(rng.uniform(-0.08, 0.08)) * real[:, None, None, None]
    if rng.random() < 0.3:
        sigma = [float(rng.uniform(0.0, 1.2)), *(float(rng.uniform(0.0, 0.8)) for _ in range(2))]
        for c in np.flatnonzero(real):
            out[c] = ndimage.gaussian_filter(out[c], sigma, mode="nearest")
    if rng.random() < 0.5:
        sd = float(rng.uniform(0.0, 0.06))
        noise = rng.standard_normal(out.shape, dtype=np.float32) * np.float32(sd)
        out += noise * real[:, None, None, None]
    np.clip(out, 0.0, 1.0 if time_mask is None else None, out=out)
    out[~real] = 0.0
    return out
