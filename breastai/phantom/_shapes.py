"""Lesion shapes as approximate signed distance functions (mm, negative inside).

Each shape is evaluated on point arrays ``(N, 3)`` given in the lesion's own frame (mm, centred on
the lesion). The ground truth is the zero level set, sampled at sub-voxel points by the generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["LESION_SHAPES", "LesionShape", "make_shape"]

LESION_SHAPES = ("round", "lobulated", "irregular", "spiculated", "rim", "non-mass")

F64 = NDArray[np.float64]


def _ellipsoid_sdf(p: F64, axes: F64) -> F64:
    q = p / axes
    rho = np.sqrt(np.einsum("ij,ij->i", q, q))
    g = p / (axes * axes)
    grad = np.sqrt(np.einsum("ij,ij->i", g, g)) / np.maximum(rho, 1e-9)
    out: F64 = (rho - 1.0) / np.maximum(grad, 1e-9)
    return out


@dataclass
class LesionShape:
    """One lesion shape: an ellipsoidal body with radial bumps, plus optional spicules and core.

    Attributes
    ----------
    kind:
        One of ``LESION_SHAPES``.
    axes:
        Semi-axes of the body (mm), in the lesion frame.
    bump_dirs, bump_amp, bump_width:
        Gaussian radial bumps ``r = 1 + sum(a_k exp((d·c_k − 1)/w_k²))`` on the body.
    spicules:
        Rows ``(x0, y0, z0, x1, y1, z1, r0, r1)``: tapered capsules (mm).
    necrosis:
        Fraction of the body radius that is necrotic core (0 = none).
    """

    kind: str
    axes: F64
    bump_dirs: F64 = field(default_factory=lambda: np.zeros((0, 3)))
    bump_amp: F64 = field(default_factory=lambda: np.zeros(0))
    bump_width: F64 = field(default_factory=lambda: np.zeros(0))
    spicules: F64 = field(default_factory=lambda: np.zeros((0, 8)))
    necrosis: float = 0.0

    @property
    def extent_mm(self) -> float:
        """Radius of a sphere that surely contains the shape."""
        r = float(self.axes.max()) * (1.0 + float(self.bump_amp.clip(0).sum()))
        if self.spicules.size:
            ends = np.linalg.norm(self.spicules[:, 3:6], axis=1) + self.spicules[:, 7]
            r = max(r, float(ends.max()))
        return r + 1.0

    def _body_sdf(self, p: F64, scale: float = 1.0) -> F64:
        axes = self.axes * scale
        if not self.bump_amp.size:
            return _ellipsoid_sdf(p, axes)
        q = p / axes
        rho = np.sqrt(np.einsum("ij,ij->i", q, q))
        d = q / np.maximum(rho, 1e-9)[:, None]
        dots = d @ self.bump_dirs.T
        r = 1.0 + (self.bump_amp * np.exp((dots - 1.0) / self.bump_width**2)).sum(axis=1)
        # radial distance in mm along the ray, scaled by the mean semi-axis
        out: F64 = (rho - r) * float(axes.mean())
        return out

    def sdf(self, p: F64) -> F64:
        """Signed distance (approximate, mm) of points ``p`` (N, 3) to the lesion surface."""
        d = self._body_sdf(p)
        for s in self.spicules:
            a, b, r0, r1 = s[0:3], s[3:6], s[6], s[7]
            lo = np.minimum(a, b) - max(r0, r1)
            hi = np.maximum(a, b) + max(r0, r1)
            near = np.flatnonzero(np.all((p >= lo) & (p <= hi), axis=1))
            if not near.size:
                continue
            q = p[near] - a
            ab = b - a
            t = np.clip((q @ ab) / float(ab @ ab), 0.0, 1.0)
            e = q - t[:, None] * ab
            dist = np.sqrt(np.einsum("ij,ij->i", e, e)) - (r0 + (r1 - r0) * t)
            d[near] = np.minimum(d[near], dist)
        return d

    def necrosis_sdf(self, p: F64) -> F64:
        """Signed distance to the necrotic core (positive everywhere when there is none)."""
        if self.necrosis <= 0:
            return np.full(p.shape[0], np.inf)
        return self._body_sdf(p, self.necrosis)


def make_shape(
    kind: str,
    ld_mm: float,
    rng: np.random.Generator,
    axes_ratio: tuple[float, float] | None = None,
) -> LesionShape:
    """Draw a lesion shape of the given kind whose body spans about ``ld_mm``.

    Parameters
    ----------
    kind:
        One of ``LESION_SHAPES`` (``non-mass`` is handled by the generator; here it gives a
        flat ellipsoid placeholder).
    ld_mm:
        Target longest diameter in mm (the true longest diameter is measured afterwards).
    rng:
        Random generator.
    axes_ratio:
        For ``round``/``rim``: the two minor/major axis ratios (default: drawn in 0.8-1.0).

    Returns
    -------
    LesionShape
    """
    r = ld_mm / 2.0
    if kind in ("round", "rim"):
        q = rng.uniform(0.8, 1.0, size=2)
        if axes_ratio is not None:
            q = np.asarray(axes_ratio, dtype=np.float64)
        axes = r * np.array([1.0, q[0], q[1]])
        return LesionShape(kind, axes, necrosis=0.6 if kind == "rim" else 0.0)
    if kind == "non-mass":
        return LesionShape(kind, r * np.array([1.0, 0.5, 0.35]))
    n, amp, width = {
        "lobulated": (rng.integers(3, 7), (0.15, 0.3), (0.45, 0.6)),
        "irregular": (rng.integers(10, 21), (0.08, 0.2), (0.25, 0.35)),
        "spiculated": (rng.integers(8, 14), (0.05, 0.12), (0.25, 0.35)),
    }[kind]
    dirs = rng.normal(size=(int(n), 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    amps = rng.uniform(*amp, size=int(n))
    widths = rng.uniform(*width, size=int(n))
    # shrink the base so that the bumped body keeps roughly the requested diameter
    base = r / (1.0 + 0.6 * float(amps.max()))
    q = rng.uniform(0.8, 1.0, size=2)
    shape = LesionShape(kind, base * np.array([1.0, q[0], q[1]]), dirs, amps, widths)
    if kind == "spiculated":
        base = base * 0.8
        shape.axes = shape.axes * 0.8
        m = int(rng.integers(8, 20))
        rows = []
        for _ in range(m):
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            start = d * base * 0.7
            length = base * rng.uniform(0.5, 1.1)
            r0 = max(base / 4.0, 0.8)
            rows.append([*start, *(start + d * (base * 0.3 + length)), r0, 0.3])
        shape.spicules = np.asarray(rows, dtype=np.float64)
    return shape
