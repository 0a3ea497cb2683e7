"""Phantom signal: contrast kinetics (Parker AIF, extended Tofts) through a two-compartment
spoiled gradient-echo look-up table, flip-angle (B1+) and receive (B1−) fields, fat saturation,
rigid inter-phase motion, cardiac ghosts, wrap-around and Rician noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from breastai.phantom._grid import ell_sdf, fraction
from breastai.phantom._kinetics import extended_tofts, parker_aif, spgr_signal
from breastai.phantom.anatomy import Anatomy
from breastai.phantom.tissues import BLOOD, FGT, MUSCLE, MYO, VESSEL

__all__ = ["Rendered", "render"]

F32 = NDArray[np.float32]
F64 = NDArray[Any]  # float arrays (float32 or float64)

N_FLIP_BINS = 32  # flip-angle bins of the signal look-up table


def _fields(a: Anatomy) -> tuple[F64, NDArray[np.intp], F64, F64]:
    """Flip-angle bins (2-D), fat-sat factor (2-D), receive bias (2-D, 1-D along w)."""
    p = a.p
    uu = a.u[None, :]
    vv = a.v[:, None]
    step = 0.5 + 0.5 * np.tanh(uu / (60.0 * a.s))
    b1 = 1.0 + p.b1_right + (p.b1_left - p.b1_right) * step + 0.03 * (vv - a.v_tc) / 100.0
    alpha = p.flip_deg * b1 * np.ones_like(vv)
    a_lo, a_hi = float(alpha.min()) - 1e-6, float(alpha.max()) + 1e-6
    edges = np.linspace(a_lo, a_hi, N_FLIP_BINS + 1)
    abin = np.clip(np.digitize(alpha, edges) - 1, 0, N_FLIP_BINS - 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    if p.fat_sat:
        lat = np.clip((np.abs(uu) - 95.0 * a.s) / (70.0 * a.s), 0, 1)
        eta = p.fat_sat_centre - (p.fat_sat_centre - p.fat_sat_lateral) * lat**2
        kfs = 0.106 + 0.894 * (1.0 - eta) * np.ones_like(vv)
    else:
        kfs = np.ones((a.v.size, a.u.size))
    g = p.coil_bias
    lobes = np.zeros((a.v.size, a.u.size))
    for side in ("L", "R"):
        uc = (1.0 if side == "L" else -1.0) * a.u_br
        vc = a.v_tc - a.B
        lobes += np.exp(-((uu - uc) ** 2 + (vv - vc) ** 2) / (2 * (70.0 * a.s) ** 2))
    b1m = (1.0 - g) + 2 * g * lobes / max(float(lobes.max()), 1e-9)
    wz = 1.0 - 0.25 * g * (a.w / max(abs(float(a.w[0])), 1.0)) ** 2
    return centres, abin, kfs * 1.0, np.asarray(b1m[None] * wz[:, None, None])


@dataclass
class Rendered:
    """The phases of one case on the body grid and what the truth record needs from rendering."""

    images: F32  # (t, w, v, u) float32, phases in time order
    times: F64  # (t,) seconds after injection start
    sigma: float  # Rician noise level (signal units)
    shifts: F64  # (t, 3) rigid motion per phase, body frame (w, v, u) mm
    aif_at_phases: F64  # (t,) blood concentration (mM) at the phase times


def render(a: Anatomy) -> Rendered:
    """Signal of every phase: kinetics → R1 → SPGR look-up table, B1±, fat-sat, motion, noise."""
    p = a.p
    assert p.aif_scale is not None and p.r1 is not None
    nt = p.n_phases
    times = np.array([-p.dt_s / 2.0] + [p.first_post_s + (k - 1) * p.dt_s for k in range(1, nt)])
    tg = np.arange(0.0, float(times.max()) + 30.0, 0.5)
    # AIF with between-subject amplitude variation
    cb = parker_aif(tg, arrival_s=p.arrival_s) * p.aif_scale
    cp = cb / (1.0 - p.hct)
    ncls = len(a.cls.names)
    conc = np.zeros((ncls, nt))
    for c, (kind, (kt, ve, vp, dl)) in enumerate(a.cls.kin):
        if kind == "blood":
            curve = cb
        elif kind == "tofts":
            curve = extended_tofts(tg, cp, ktrans_per_min=kt, ve=ve, vp=vp, delay_s=dl)
        else:
            continue
        conc[c] = np.interp(np.maximum(times, 0.0), tg, curve)
        conc[c, times < 0] = 0.0
    aif_at_phases = np.interp(np.maximum(times, 0.0), tg, cb) * (times >= 0)
    centres, abin, kfs, b1m = _fields(a)
    t10 = np.asarray(a.cls.t1)
    pd = np.asarray(a.cls.pd)
    r1t = 1000.0 / t10[:, None] + p.r1 * conc  # (ncls, nt) 1/s
    t1t = 1000.0 / r1t
    # LUT[k][c * NB + b]
    lut = spgr_signal(
        t1t.T[:, :, None], centres[None, None, :], p.tr_ms, pd=pd[None, :, None]
    ).astype(np.float32)
    lut = lut.reshape(nt, ncls * N_FLIP_BINS)
    te_fac = float(np.exp(-p.te_ms / 30.0))
    lut *= te_fac
    sfat = spgr_signal(a.t1("fat"), centres, p.tr_ms) * float(np.exp(-p.te_ms / 40.0))
    idx = a.cid.astype(np.uint16)
    idx *= N_FLIP_BINS
    idx += abin.astype(np.uint16)[None]
    a_map = a.body * (1.0 - a.ffat)
    a_map *= b1m.astype(np.float32)
    f_map = a.body * a.ffat
    f_map *= (sfat[abin] * kfs).astype(np.float32)[None]
    f_map *= b1m.astype(np.float32)
    s0 = np.take(lut[0], idx)
    s0 *= a_map
    s0 += f_map
    # post-contrast phases recompute only the voxels of enhancing classes
    enh_cls = (conc.max(axis=1) > 0).astype(np.uint8)
    enh = np.flatnonzero(np.take(enh_cls, a.cid))
    idx_e = idx.ravel()[enh]
    a_e = a_map.ravel()[enh]
    f_e = f_map.ravel()[enh]
    del a_map, f_map, idx
    # noise level from the noise-free pre-contrast FGT (or muscle) signal
    ref = s0[a.tissue == FGT]
    if ref.size < 50:
        ref = s0[a.tissue == MUSCLE]
    sigma = float(ref.mean()) / p.snr if ref.size else 0.01
    # rigid motion per phase (body frame, mm)
    shifts = np.zeros((nt, 3))
    if p.motion_mm > 0:
        shifts[1:] = np.clip(
            a.rng.normal(0, p.motion_mm / 2, size=(nt - 1, 3)),
            -2.0 * p.motion_mm / 1.5,
            2.0 * p.motion_mm / 1.5,
        )
        if p.motion_spike_mm > 0 and nt > 2:
            k = int(a.rng.integers(2, nt))
            dirn = a.rng.normal(size=3)
            shifts[k] = dirn / np.linalg.norm(dirn) * p.motion_spike_mm
    images = np.empty((nt, *a.shape), np.float32)
    pool: tuple[F32, F32] | None = None
    if p.noise == "pooled":
        pool = (
            a.rng.standard_normal(a.shape, dtype=np.float32),
            a.rng.standard_normal(a.shape, dtype=np.float32),
        )
    n2 = np.empty(a.shape, np.float32)
    ghost = _ghost_source(a) if p.ghosting > 0 else None
    wrap = _wrap_signal(a, sigma) if p.wrap else None
    for k in range(nt):
        img = images[k]
        img[...] = s0
        if k > 0:
            img.ravel()[enh] = np.take(lut[k], idx_e) * a_e + f_e
        if np.any(shifts[k]):
            img[...] = _shift(img, shifts[k], a.sp)
        if ghost is not None:
            _add_ghosts(img, ghost, p.ghosting)
        if wrap is not None:
            img += wrap
        if p.noise == "none":
            continue
        if pool is None:
            a.rng.standard_normal(a.shape, dtype=np.float32, out=n2)
            n2 *= sigma
            img += n2
            np.multiply(img, img, out=img)
            a.rng.standard_normal(a.shape, dtype=np.float32, out=n2)
            n2 *= sigma
        else:
            offs = a.rng.integers(0, a.shape, size=(2, 3))
            n2[...] = np.roll(pool[0], tuple(int(o) for o in offs[0]), axis=(0, 1, 2))
            n2 *= sigma
            img += n2
            np.multiply(img, img, out=img)
            n2[...] = np.roll(pool[1], tuple(int(o) for o in offs[1]), axis=(0, 1, 2))
            n2 *= sigma
        np.multiply(n2, n2, out=n2)
        img += n2
        np.sqrt(img, out=img)
    return Rendered(images, times, sigma, shifts, aif_at_phases)


def _ghost_source(a: Anatomy) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
    """Slices holding blood pool, myocardium or great vessels, and their masks."""
    blood = np.isin(a.tissue, (BLOOD, MYO, VESSEL))
    ks = np.flatnonzero(blood.any(axis=(1, 2)))
    return ks, blood[ks]


def _add_ghosts(
    img: F32, source: tuple[NDArray[np.intp], NDArray[np.bool_]], amplitude: float
) -> None:
    """Cardiac/aortic ghosts: copies of the blood-pool signal at ±FOV/4 along L-R (PE)."""
    ks, mask = source
    if not ks.size:
        return
    src = img[ks] * mask
    n = img.shape[2] // 4
    img[ks] += amplitude * (np.roll(src, n, axis=2) + np.roll(src, -n, axis=2))


def _shift(img: F32, mm: F64, sp: tuple[float, float, float]) -> F32:
    """Rigid shift by ``mm`` (w, v, u), periodic, linear interpolation between voxels."""
    out = img
    for ax in range(3):
        vox = float(mm[ax]) / sp[ax]
        if abs(vox) < 1e-6:
            continue
        n = int(np.floor(vox))
        f = vox - n
        a = np.roll(out, n, axis=ax)
        if f > 1e-6:
            b = np.roll(a, 1, axis=ax)
            out = ((1 - f) * a + f * b).astype(np.float32)
        else:
            out = a
    return out


def _wrap_signal(a: Anatomy, sigma: float) -> NDArray[np.float32]:
    """Arms outside the L-R field of view, folded back in (no enhancement)."""
    s = a.s
    fov = a.shape[2] * a.sp[2]
    uext = np.concatenate([a.u - fov, a.u + fov])
    vv = (a.v - (a.v_tc + 20.0 * s))[:, None]
    arm = np.zeros((a.v.size, uext.size), np.float32)
    for sgn in (-1.0, 1.0):
        cu = uext[None, :] - sgn * (a.A + 55.0 * s)
        arm += fraction(ell_sdf(cu, vv, np.zeros((1, 1)), 45.0 * s, 55.0 * s, 1e9), a.h)
    folded = arm[:, : a.u.size] + arm[:, a.u.size :]
    wrap = (folded * 0.6 * sigma * a.p.snr).astype(np.float32)
    return np.broadcast_to(wrap[None], a.shape)
