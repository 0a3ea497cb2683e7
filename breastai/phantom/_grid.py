"""Grid helpers of the phantom: ellipsoid distances, partial volumes, boxes, fields, rotations."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "bbox", "ell_sdf", "fraction", "powerlaw_field", "random_rotation", "rotation",
]  # fmt: skip

F32 = NDArray[np.float32]
F64 = NDArray[Any]  # float arrays (float32 or float64)


def ell_sdf(c0: F64, c1: F64, c2: F64, a0: float, a1: float, a2: float) -> F64:
    """Approximate SDF of an axis-aligned ellipsoid from broadcastable offset vectors (mm)."""
    q = (c0 / a0) ** 2 + (c1 / a1) ** 2 + (c2 / a2) ** 2
    rho = np.sqrt(q)
    g = np.sqrt((c0 / a0**2) ** 2 + (c1 / a1**2) ** 2 + (c2 / a2**2) ** 2)
    out: F64 = (rho - 1.0) * rho / np.maximum(g, 1e-9)
    return out


def fraction(d: F64, h: float) -> F32:
    """Partial-volume fraction inside a surface from its signed distance ``d`` (voxel size h)."""
    return np.clip(0.5 - d / h, 0.0, 1.0).astype(np.float32)


def bbox(lo: F64, hi: F64, axes: tuple[F64, F64, F64]) -> tuple[slice, slice, slice] | None:
    """Index slices of the box ``lo``..``hi`` (mm) on the grid ``axes``; None when empty."""
    out = []
    for dim in range(3):
        c = axes[dim]
        i0 = int(np.searchsorted(c, lo[dim], side="left"))
        i1 = int(np.searchsorted(c, hi[dim], side="right"))
        i0, i1 = max(i0, 0), min(i1, c.size)
        if i1 <= i0:
            return None
        out.append(slice(i0, i1))
    return out[0], out[1], out[2]


def powerlaw_field(
    shape: tuple[int, ...],
    spacing: tuple[float, ...],
    beta: float,
    f0: float,
    rng: np.random.Generator,
) -> F32:
    """Zero-mean unit-variance Gaussian random field with power spectrum 1/(f²+f0²)^(β/2)."""
    from scipy import fft

    noise = rng.standard_normal(shape, dtype=np.float32)
    spec = fft.rfftn(noise, workers=1)
    f2 = np.zeros(spec.shape, dtype=np.float32)
    for dim, (n, sp) in enumerate(zip(shape, spacing, strict=True)):
        f = (fft.rfftfreq(n, sp) if dim == len(shape) - 1 else fft.fftfreq(n, sp)).astype(
            np.float32
        )
        sh = [1] * len(shape)
        sh[dim] = f.size
        f2 = f2 + (f**2).reshape(sh)
    spec *= (f2 + f0**2) ** (-beta / 4.0)
    out: F32 = np.asarray(fft.irfftn(spec, s=shape, workers=1), dtype=np.float32)
    out -= out.mean()
    out /= max(float(out.std()), 1e-12)
    return out


def rotation(axis: F64, angle_rad: float) -> F64:
    """Rotation matrix about ``axis`` (Rodrigues)."""
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    out: F64 = np.eye(3) + np.sin(angle_rad) * k + (1 - np.cos(angle_rad)) * (k @ k)
    return out


def random_rotation(rng: np.random.Generator) -> F64:
    """A uniformly random rotation matrix (from a random unit quaternion)."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
