"""Out-of-family breast DCE-MRI studies: a second generator that training never samples.

The demo models are trained on ``breastai.phantom`` (and its domain randomisation,
``breastai.phantom.randomise``). To see whether they learned breast anatomy and enhancement rather
than that generator's look, this module builds studies with its own code path throughout; it shares
nothing with ``breastai.phantom.generator`` except the ``PhantomCase`` container and the DICOM /
NIfTI writers used to store the result:

* **anatomy**: a super-elliptic torso (boxier than an ellipse, tapering along S-I), layers by a
  2-D distance transform from the torso surface; breasts are mounds of revolution with a
  ``(1 - (t/D)^p)^(1/2)`` radius profile on a tilted axis (prone, pendulous or supine-like
  lateral fall) instead of half-ellipsoids; skin from a 3-D distance transform of the body;
  fibroglandular tissue from a cloud of Gaussian lobules plus ducts running from the nipple
  (not a thresholded power-law field); heart as two ventricles with a myocardial wall, aorta,
  sternum, rib stripes and lungs; enhancing axillary lymph nodes and lateral thoracic vessels;
* **lesions**: 12-35 mm, star-shaped bodies whose radius is a sum of von Mises lobes over
  directions (some with a non-enhancing necrotic core, labelled tumor), one or two per study;
* **signal**: an empirical intensity table per tissue (three contrasts: fat-suppressed, no fat
  suppression, Dixon-water-like), partial volume by mixing glandular and fat intensities;
  enhancement is *relative* (``S0 * (1 + RE(t))``) with a piecewise rise / late-slope model per
  tissue (no AIF, no Tofts, no SPGR); a quadratic receive-coil bias, Gibbs ringing from k-space
  truncation along the phase-encoding axis and complex Gaussian noise (magnitude image).

Truth: the breast (the mound in front of the pectoralis, skin and nipple included), the tumor
(malignant lesions, necrotic core included) and a lesion label map, written like the phantom's
(``truth/breast.nii.gz``, ``tumor.nii.gz``, ``lesions.nii.gz``, ``truth.json``).

The studies are written with breastai's phantom DICOM writer (``--layout`` ge / siemens / philips),
so this tests anatomy, contrast and kinetics out of family, not a foreign DICOM writer.

Usage::

    python bench/oof_phantom.py OUT_DIR --seed 0 [--layout ge]

Research use only, not a medical device. Synthetic data.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from breastai.phantom.generator import TISSUE_LABELS, PhantomCase

__all__ = ["OOF_SEED_BASE", "generate_oof_case", "make_oof_study"]

#: Seeds of the out-of-family held-out set start here (any seed works; training never calls this).
OOF_SEED_BASE = 700_000

F32 = NDArray[np.float32]
_T = TISSUE_LABELS  # label values shared with the phantom only for the DICOM decoy series

# Pre-contrast intensity per tissue for the three contrasts (arbitrary units).
_CONTRASTS: dict[str, dict[str, float]] = {
    "fatsat": {
        "fat": 0.22, "fgt": 0.48, "muscle": 0.42, "skin": 0.55, "blood": 0.32, "myo": 0.45,
        "lung": 0.04, "bone": 0.12, "lesion": 0.5, "necrosis": 0.4, "node": 0.46, "marrow": 0.2,
    },
    "nofatsat": {
        "fat": 1.0, "fgt": 0.38, "muscle": 0.3, "skin": 0.62, "blood": 0.22, "myo": 0.34,
        "lung": 0.03, "bone": 0.1, "lesion": 0.4, "necrosis": 0.3, "node": 0.36, "marrow": 0.85,
    },
    "water": {
        "fat": 0.07, "fgt": 0.62, "muscle": 0.58, "skin": 0.5, "blood": 0.45, "myo": 0.55,
        "lung": 0.05, "bone": 0.08, "lesion": 0.64, "necrosis": 0.55, "node": 0.6, "marrow": 0.1,
    },
}  # fmt: skip


def _superellipse_depth(
    x: F32, y: F32, a: float, b: float, n: float, sp: tuple[float, float]
) -> NDArray[Any]:
    """2-D depth (mm) below the surface of ``|x/a|^n + |y/b|^n <= 1``; negative outside."""
    inside = (np.abs(x / a) ** n + np.abs(y / b) ** n) <= 1.0
    d_in = ndimage.distance_transform_edt(inside, sampling=sp)
    d_out = ndimage.distance_transform_edt(~inside, sampling=sp)
    out: NDArray[Any] = np.where(inside, d_in, -d_out)
    return out


def _re_curve(
    times: NDArray[Any], peak: float, t_peak: float, late_slope: float, onset: float
) -> NDArray[np.float64]:
    """Relative enhancement: smooth rise to ``peak`` at ``t_peak`` s, then ``late_slope``/min."""
    t = np.asarray(times, dtype=float) - onset
    out = np.zeros(t.shape)
    rise = (t > 0) & (t <= t_peak)
    x = t[rise] / t_peak
    out[rise] = peak * x * x * (3.0 - 2.0 * x)
    late = t > t_peak
    out[late] = peak * (1.0 + late_slope * (t[late] - t_peak) / 60.0)
    return np.maximum(out, 0.0)


def _star_lesion(
    rng: np.random.Generator, radius: float, pts: NDArray[Any]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Star-shaped lesion: radius = R (1 + sum of von Mises lobes over direction); core mask."""
    k = int(rng.integers(2, 9))
    dirs = rng.normal(size=(k, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    amps = rng.uniform(-0.25, 0.35, size=k)
    kappa = rng.uniform(2.0, 8.0, size=k)
    stretch = rng.uniform(0.7, 1.3, size=3)
    q = pts / stretch
    r = np.linalg.norm(q, axis=-1)
    u = q / np.maximum(r, 1e-6)[..., None]
    f = np.zeros(r.shape)
    for j in range(k):
        f += amps[j] * np.exp(kappa[j] * (u @ dirs[j] - 1.0))
    rad = radius * np.clip(1.0 + f, 0.5, 1.6)
    body = r <= rad
    core = np.zeros_like(body)
    if rng.random() < 0.2:
        core = r <= rad * rng.uniform(0.35, 0.6)
    return body, core


def generate_oof_case(seed: int, *, coarse: float = 1.0) -> PhantomCase:
    """Generate one out-of-family study (see the module docstring).

    Parameters
    ----------
    seed:
        Random seed; the same seed gives the same study.
    coarse:
        Factor on the voxel size (> 1: fewer voxels, for quick tests; the draws are the same).

    Returns
    -------
    PhantomCase
        Axial (or slightly oblique) study with truth; ``meta["generator"] = "bench.oof_phantom"``.
    """
    rng = np.random.default_rng([int(seed), 0x0F0F])
    inplane = float(rng.uniform(0.95, 1.45)) * coarse
    thick = float(rng.choice([1.5, 2.0, 2.5, 3.0])) * coarse
    fov = (float(rng.uniform(150, 200)), float(rng.uniform(230, 320)), float(rng.uniform(320, 380)))
    shape = (round(fov[0] / thick), round(fov[1] / inplane), round(fov[2] / inplane))
    sp = (thick, inplane, inplane)
    nz, ny, nx = shape
    z = ((np.arange(nz) - (nz - 1) / 2) * thick).astype(np.float32)
    y = (np.arange(ny) * inplane).astype(np.float32)  # 0 = anterior edge of the field of view
    x = ((np.arange(nx) - (nx - 1) / 2) * inplane).astype(np.float32)
    yy, xx = np.meshgrid(y, x, indexing="ij")

    # ---- torso: super-ellipse per slice, tapering along S-I ----------------------------------
    a0 = float(rng.uniform(140, 170))
    b0 = float(rng.uniform(95, 125))
    n_exp = float(rng.uniform(2.2, 3.4))
    mound_depth = float(rng.uniform(45, 100))
    y_front = mound_depth + float(rng.uniform(8, 25))  # torso anterior surface (mm from edge)
    taper = float(rng.uniform(-0.12, 0.12))
    skin = float(rng.uniform(1.0, 2.5))
    sub_fat = float(rng.uniform(4, 18))
    pec = float(rng.uniform(6, 16))
    contrast = str(rng.choice(["fatsat", "nofatsat", "water"], p=[0.45, 0.3, 0.25]))
    tiss = np.zeros(shape, np.uint8)  # phantom label codes (for the decoy series only)
    kind = np.zeros(shape, np.uint8)  # our own tissue codes, see _NAMES
    names = ["air", "fat", "fgt", "muscle", "skin", "blood", "myo", "lung", "bone", "lesion",
             "necrosis", "node", "marrow"]  # fmt: skip
    code = {n: i for i, n in enumerate(names)}
    tdep = np.zeros(shape, np.float32)
    for k in range(nz):
        f = 1.0 + taper * z[k] / 100.0
        a, b = a0 * f, b0 * f
        yc = y_front + b
        dep = _superellipse_depth(xx, yy - yc, a, b, n_exp, (inplane, inplane))
        tdep[k] = dep
    inside = tdep > 0
    kind[inside] = code["fat"]
    ant = np.clip((y_front + b0 - yy) / b0, 0.0, 1.0)[None]  # 1 at the front, 0 mid-torso
    pec_in = sub_fat + pec * (0.3 + 0.7 * ant)
    muscle = inside & (tdep >= sub_fat) & (tdep < pec_in)
    kind[muscle] = code["muscle"]
    ribs_band = inside & (tdep >= pec_in) & (tdep < pec_in + 9.0)
    period = float(rng.uniform(20, 28))
    phase = float(rng.uniform(0, period))
    rib_on = np.abs(((z[:, None, None] + 0.4 * yy[None] + phase) % period) - period / 2) < 4.5
    kind[ribs_band] = code["muscle"]
    kind[ribs_band & rib_on & (np.abs(xx) > 15)[None]] = code["bone"]
    core = inside & (tdep >= pec_in + 9.0)
    for sgn in (-1.0, 1.0):
        lung = (
            ((xx - sgn * 0.45 * a0) / (0.38 * a0)) ** 2
            + ((yy - y_front - b0 * 1.05) / (0.8 * b0)) ** 2
        ) < 1.0
        kind[core & lung[None]] = code["lung"]
    # sternum, spine
    stern = (np.abs(xx) < 14) & (yy > y_front + sub_fat) & (yy < y_front + sub_fat + 12)
    kind[inside & stern[None]] = code["marrow"]
    spine = ((xx / 18) ** 2 + ((yy - y_front - 1.7 * b0) / 18) ** 2) < 1
    kind[inside & spine[None]] = code["bone"]
    # heart: two ventricles + wall, left-anterior, low in the field of view; aorta
    hz = float(z[0] + rng.uniform(0.0, 0.5) * fov[0])
    hx = float(rng.uniform(5, 35))
    hy = float(y_front + sub_fat + pec + rng.uniform(12, 30))
    zz3 = z[:, None, None]
    for dx, dy, ra in ((-18.0, 10.0, 38.0), (20.0, 22.0, 45.0)):
        e = (
            ((xx[None] - hx - dx) / ra) ** 2
            + ((yy[None] - hy - dy - ra * 0.8) / (ra * 0.85)) ** 2
            + ((zz3 - hz) / (ra * 1.1)) ** 2
        )
        wall = float(rng.uniform(7, 12)) / ra
        kind[core & (e < 1.0)] = code["myo"]
        kind[core & (e < (1.0 - wall) ** 2)] = code["blood"]
    ao = (((xx + 12) / 13) ** 2 + ((yy - hy - 40) / 13) ** 2) < 1
    kind[core & ao[None] & (zz3 > hz + 20)] = code["blood"]
    dao = (((xx + 25) / 11) ** 2 + ((yy - y_front - 1.45 * b0) / 11) ** 2) < 1
    kind[core & dao[None]] = code["blood"]

    # ---- breasts: mounds of revolution on a tilted axis --------------------------------------
    breast = np.zeros(shape, bool)
    mound_all = np.zeros(shape, bool)
    nipples = []
    sides = ["L", "R"] if rng.random() > 0.1 else [str(rng.choice(["L", "R"]))]
    posture = str(rng.choice(["prone", "pendulous", "supine"], p=[0.45, 0.25, 0.3]))
    zc = float(rng.uniform(-0.15, 0.15) * fov[0])
    side_info: dict[str, dict[str, Any]] = {}
    for side in sides:
        sgn = 1.0 if side == "L" else -1.0
        xc = sgn * float(rng.uniform(0.42, 0.6)) * a0
        radius = float(rng.uniform(42, 68))
        depth = mound_depth * float(rng.uniform(0.85, 1.1))
        if posture == "supine":
            depth *= 0.6
            radius *= 1.15
        p_exp = float(rng.uniform(1.6, 3.5))
        ecc = float(rng.uniform(0.75, 1.1))
        tilt_x = sgn * {"prone": 0.1, "pendulous": 0.05, "supine": 0.45}[posture]
        tilt_z = {"prone": 0.0, "pendulous": -0.35, "supine": 0.1}[posture]
        tilt_x += float(rng.uniform(-0.08, 0.08))
        # base point on the torso surface at (xc, zc)
        kz = int(np.clip(np.searchsorted(z, zc), 0, nz - 1))
        col = int(np.argmin(np.abs(x - xc)))
        front = np.flatnonzero(tdep[kz, :, col] > 0)
        if not front.size:
            continue
        yb = float(y[front[0]]) + sub_fat  # base: the pectoralis surface under the breast
        axis = np.array([tilt_z, -1.0, tilt_x])  # (z, y, x): towards anterior (y decreasing)
        axis /= np.linalg.norm(axis)
        e1 = np.array([1.0, 0.0, 0.0]) - axis * axis[0]
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(axis, e1)
        lo = (
            max(0, int((zc - radius * 1.3 - z[0]) / thick)),
            0,
            max(0, int((xc - radius * 1.5 - x[0]) / inplane)),
        )
        hi = (
            min(nz, int((zc + radius * 1.3 - z[0]) / thick) + 2),
            min(ny, int((yb + 10) / inplane) + 2),
            min(nx, int((xc + radius * 1.5 - x[0]) / inplane) + 2),
        )
        sl = tuple(slice(a_, b_) for a_, b_ in zip(lo, hi, strict=True))
        pz = z[sl[0]][:, None, None] - zc
        py = y[sl[1]][None, :, None] - yb
        px = x[sl[2]][None, None, :] - xc
        t = pz * axis[0] + py * axis[1] + px * axis[2]  # height along the axis (mm)
        s1 = pz * e1[0] + py * e1[1] + px * e1[2]
        s2 = pz * e2[0] + py * e2[1] + px * e2[2]
        tn = np.clip(t / depth, 0.0, 1.0)
        prof = radius * np.sqrt(np.clip(1.0 - tn**p_exp, 0.0, 1.0))
        mound = (
            (t > -sub_fat - pec)
            & (t <= depth)
            & ((s1 / (ecc * prof + 1e-3)) ** 2 + (s2 / (prof + 1e-3)) ** 2 <= 1.0)
        )
        tip = np.array([zc, yb, xc]) + axis * depth
        nip = (np.abs(t - depth) < 6.0) & (s1**2 + s2**2 < 5.5**2)
        m = np.zeros(shape, bool)
        m[sl] = mound | nip
        mound_all |= m
        br = m & (tdep < sub_fat)  # in front of the pectoralis
        breast |= br
        nipples.append(tip)
        side_info[side] = {"tip": tip, "base": np.array([zc, yb, xc]), "axis": axis,
                           "radius": radius, "depth": depth}  # fmt: skip
    body = inside | mound_all
    body = ndimage.binary_fill_holes(body)
    dep3 = ndimage.distance_transform_edt(body, sampling=sp).astype(np.float32)
    kind[mound_all & (kind == 0)] = code["fat"]
    # muscle/rib/lung stay where the torso put them; everything in the breast is fat + FGT
    kind[breast] = code["fat"]
    kind[body & (dep3 < skin)] = code["skin"]
    for tip in nipples:
        d2 = sum(
            ((g - c) ** 2)
            for g, c in zip(np.ogrid[:nz, :ny, :nx], tip / np.asarray(sp), strict=True)
        )
        kind[(d2 < (5.0 / inplane) ** 2) & body] = code["skin"]
    # ---- fibroglandular tissue: lobule cloud + ducts -----------------------------------------
    fgt_target = float(rng.uniform(0.06, 0.55))
    gl = np.zeros(shape, np.float32)
    for info in side_info.values():
        n_lob = int(rng.integers(80, 260))
        for _ in range(n_lob):
            hgt = float(rng.beta(2.0, 2.0)) * info["depth"] * 0.9
            ang = float(rng.uniform(0, 2 * math.pi))
            rr = (
                float(rng.uniform(0, 0.75))
                * info["radius"]
                * math.sqrt(max(1 - hgt / info["depth"], 0.05))
            )
            off = np.array([math.cos(ang) * rr, 0.0, math.sin(ang) * rr])
            c = info["base"] + info["axis"] * hgt + off - info["axis"] * (off @ info["axis"])
            s = float(rng.uniform(3.0, 10.0))
            ci = c / np.asarray(sp)
            r_i = np.ceil(3 * s / np.asarray(sp)).astype(int)
            lo_i = np.maximum(np.floor(ci).astype(int) - r_i, 0)
            hi_i = np.minimum(np.floor(ci).astype(int) + r_i + 1, shape)
            if np.any(hi_i <= lo_i):
                continue
            g = np.ogrid[lo_i[0] : hi_i[0], lo_i[1] : hi_i[1], lo_i[2] : hi_i[2]]
            d2 = sum(((gi - cc) * spc) ** 2 for gi, cc, spc in zip(g, ci, sp, strict=True))
            gl[lo_i[0] : hi_i[0], lo_i[1] : hi_i[1], lo_i[2] : hi_i[2]] += np.exp(-d2 / (2 * s * s))
        for _ in range(int(rng.integers(5, 14))):  # ducts from the nipple back towards the base
            end = info["base"] + rng.normal(0, 0.35, 3) * info["radius"]
            for tt in np.linspace(0, 1, 40):
                c = info["tip"] * (1 - tt) + end * tt
                ci = np.round(c / np.asarray(sp)).astype(int)
                rad = np.ceil(1.8 / np.asarray(sp)).astype(int)
                lo_i = np.maximum(ci - rad, 0)
                hi_i = np.minimum(ci + rad + 1, shape)
                if np.all(hi_i > lo_i):
                    gl[lo_i[0] : hi_i[0], lo_i[1] : hi_i[1], lo_i[2] : hi_i[2]] += 0.6
    elig = breast & (dep3 > skin + float(rng.uniform(2, 9)))
    frac = np.zeros(shape, np.float32)
    if elig.any():
        vals = gl[elig]
        thr = float(np.quantile(vals, 1.0 - fgt_target))
        frac = np.clip((gl - thr) / max(0.15 * thr, 1e-3) + 0.5, 0.0, 1.0).astype(np.float32)
        frac[~elig] = 0.0
        frac = ndimage.gaussian_filter(frac, 0.6)
        frac[~breast] = 0.0
    kind[(frac >= 0.5) & breast] = code["fgt"]
    # ---- distractors: axillary nodes, lateral thoracic vessels -------------------------------
    node_mask = np.zeros(shape, bool)
    for info in side_info.values():
        for _ in range(int(rng.integers(0, 4))):
            sgn = 1.0 if info["base"][2] > 0 else -1.0
            c = np.array(
                [
                    info["base"][0] + rng.uniform(10, 50),
                    info["base"][1] + rng.uniform(-10, 25),
                    info["base"][2] + sgn * (info["radius"] + rng.uniform(5, 30)),
                ]
            )
            ax3 = rng.uniform(3.0, 7.5, 3)
            g = np.ogrid[:nz, :ny, :nx]
            e = sum(
                ((gi * spc - cc) / aa) ** 2 for gi, spc, cc, aa in zip(g, sp, c, ax3, strict=True)
            )
            nd = (e < 1.0) & body & ~breast
            node_mask |= nd
    kind[node_mask] = code["node"]
    vessel = np.zeros(shape, bool)
    for info in side_info.values():
        for _ in range(int(rng.integers(1, 5))):
            start = info["base"] + np.array([rng.uniform(-30, 30), 0.0, rng.uniform(-40, 40)])
            end = info["tip"] + rng.normal(0, 10, 3)
            r_v = float(rng.uniform(0.8, 1.6))
            for tt in np.linspace(0, 1, 50):
                c = start * (1 - tt) + end * tt + np.sin(tt * math.pi * 2) * rng.normal(0, 1.5, 3)
                ci = np.round(c / np.asarray(sp)).astype(int)
                rad = np.ceil(r_v / np.asarray(sp)).astype(int)
                lo_i, hi_i = np.maximum(ci - rad, 0), np.minimum(ci + rad + 1, shape)
                if np.all(hi_i > lo_i):
                    vessel[lo_i[0] : hi_i[0], lo_i[1] : hi_i[1], lo_i[2] : hi_i[2]] = True
    vessel &= breast & (dep3 > skin)
    kind[vessel] = code["blood"]
    # ---- lesions ------------------------------------------------------------------------------
    labels = np.zeros(shape, np.uint16)
    necrosis = np.zeros(shape, bool)
    lesions: list[dict[str, Any]] = []
    bdist = ndimage.distance_transform_edt(breast, sampling=sp)
    n_les = int(rng.choice([1, 1, 1, 2]))
    kin_types = []
    for i in range(1, n_les + 1):
        ld = float(rng.uniform(12.0, 35.0))
        cand = np.argwhere(bdist > ld / 2 * 0.8 + 3.0)
        if not cand.size:
            cand = np.argwhere(bdist >= bdist.max() * 0.8)
        if not cand.size:
            break
        centre = cand[int(rng.integers(len(cand)))] * np.asarray(sp)
        half = ld / 2 * 1.7
        lo_i = np.maximum(np.floor((centre - half) / sp).astype(int), 0)
        hi_i = np.minimum(np.ceil((centre + half) / sp).astype(int) + 1, shape)
        g = np.meshgrid(
            *[
                np.arange(a_, b_) * spc - c
                for a_, b_, spc, c in zip(lo_i, hi_i, sp, centre, strict=True)
            ],
            indexing="ij",
        )
        pts = np.stack(g, axis=-1)
        body_l, core_l = _star_lesion(rng, ld / 2, pts)
        box = tuple(slice(a_, b_) for a_, b_ in zip(lo_i, hi_i, strict=True))
        body_l &= breast[box] & (labels[box] == 0)
        if body_l.sum() < 10:
            continue
        labels[box][body_l] = i
        necrosis[box] |= core_l & body_l
        kind[box][body_l] = code["lesion"]
        kind[box][core_l & body_l] = code["necrosis"]
        from breastai.report import farthest_pair

        surf = np.argwhere(body_l) * np.asarray(sp)
        longest = farthest_pair(surf.astype(np.float64))[0] if len(surf) > 1 else ld
        ktype = str(rng.choice(["washout", "plateau", "persistent"], p=[0.55, 0.35, 0.1]))
        kin_types.append(ktype)
        lesions.append(
            {
                "label": i, "malignant": True, "kind": "malignant", "curve_type": ktype,
                "shape": "star", "laterality": "L" if centre[2] + x[0] > 0 else "R",
                "longest_diameter_mm": round(float(longest), 3),
                "volume_ml": round(float(body_l.sum()) * float(np.prod(sp)) / 1000.0, 5),
            }
        )  # fmt: skip

    # ---- signal ---------------------------------------------------------------------------------
    n_phases = int(rng.choice([4, 5, 6]))
    first = float(rng.uniform(60, 110))
    dt = float(rng.uniform(60, 100))
    times = np.array([-dt / 2] + [first + (j - 1) * dt for j in range(1, n_phases)])
    base = {n: v * float(rng.uniform(0.9, 1.1)) for n, v in _CONTRASTS[contrast].items()}
    base["air"] = 0.0
    onset = float(rng.uniform(10, 25))
    bpe_level = float(rng.choice([0.05, 0.15, 0.35, 0.7], p=[0.3, 0.35, 0.2, 0.15]))
    re = {
        "air": _re_curve(times, 0.0, 60, 0, onset),
        "fat": _re_curve(times, float(rng.uniform(0.0, 0.06)), 240, 0.0, onset),
        "fgt": _re_curve(
            times, bpe_level, float(rng.uniform(90, 420 if bpe_level < 0.5 else 200)), 0.02, onset
        ),
        "muscle": _re_curve(times, float(rng.uniform(0.1, 0.3)), 240, 0.02, onset),
        "skin": _re_curve(times, float(rng.uniform(0.1, 0.4)), 240, 0.02, onset),
        "blood": _re_curve(times, float(rng.uniform(2.0, 5.0)), 30, -0.08, onset - 5),
        "myo": _re_curve(times, float(rng.uniform(1.0, 2.0)), 45, -0.06, onset),
        "lung": _re_curve(times, 0.0, 60, 0, onset),
        "bone": _re_curve(times, 0.0, 60, 0, onset),
        "marrow": _re_curve(times, float(rng.uniform(0.0, 0.2)), 200, 0, onset),
        "node": _re_curve(times, float(rng.uniform(0.8, 2.0)), 90, -0.03, onset),
        "necrosis": _re_curve(times, float(rng.uniform(0.0, 0.1)), 300, 0, onset),
    }
    les_re = {}
    for i, ktype in enumerate(kin_types, start=1):
        slope = {"washout": rng.uniform(-0.15, -0.05), "plateau": rng.uniform(-0.03, 0.03),
                 "persistent": rng.uniform(0.06, 0.15)}[ktype]  # fmt: skip
        peak = float(rng.uniform(0.6, 2.5))
        les_re[i] = _re_curve(times, peak, float(rng.uniform(60, 150)), float(slope), onset)
    # partial volume of glandular tissue and fat in the breast; texture
    tex = (
        1.0
        + 0.06 * ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.5) / 0.1
    )
    bpe_patch = np.clip(
        ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 4.0) * 8 + 1, 0, 3
    )
    s0 = np.zeros(shape, np.float32)
    lut0 = np.array([base[n] for n in names], np.float32)
    s0[...] = lut0[kind]
    in_br = breast & (kind == code["fat"]) | (breast & (kind == code["fgt"]))
    mix = np.where(in_br, frac, 0.0).astype(np.float32)
    s0 = np.where(in_br, mix * base["fgt"] + (1 - mix) * base["fat"], s0).astype(np.float32)
    s0 *= tex
    # receive bias: quadratic, brighter anteriorly (breast coil) and laterally
    ycoef, xcoef = float(rng.uniform(0.3, 1.0)), float(rng.uniform(-0.3, 0.3))
    yn = (y / y.max())[None, :, None]
    xn = (x / np.abs(x).max())[None, None, :]
    bias = np.clip(1.0 + ycoef * (1 - yn) ** 2 - 0.5 * ycoef + xcoef * xn**2, 0.3, 3.0)
    trunc = float(rng.uniform(0.55, 0.85))  # kept share of k-space along L-R (phase encoding)
    sigma = float(rng.uniform(0.01, 0.04))
    images = np.empty((n_phases, *shape), np.float32)
    for j in range(n_phases):
        rel = np.zeros(shape, np.float32)
        lut = np.array([re[n][j] if n in re else 0.0 for n in names], np.float32)
        rel[...] = lut[kind]
        rel = np.where(in_br, mix * re["fgt"][j] * bpe_patch + (1 - mix) * re["fat"][j], rel)
        for i, curve in les_re.items():
            m = (labels == i) & ~necrosis
            rel[m] = curve[j]
        img = s0 * (1.0 + rel) * bias
        spec = np.fft.fft(img, axis=2)
        keep = int(nx * trunc / 2)
        spec[:, :, keep : nx - keep] = 0.0
        img = np.fft.ifft(spec, axis=2)
        noise = rng.normal(0, sigma, (2, *shape)).astype(np.float32)
        images[j] = np.abs(img + noise[0] + 1j * noise[1]).astype(np.float32)
    # ---- case -----------------------------------------------------------------------------------
    tmap = {
        "air": 0, "fat": _T["fat"], "fgt": _T["fgt"], "muscle": _T["muscle"], "skin": _T["skin"],
        "blood": _T["blood_pool"], "myo": _T["myocardium"], "lung": _T["lung"],
        "bone": _T["bone"], "lesion": _T["lesion_1"], "necrosis": _T["necrosis"],
        "node": _T["lymph_node"], "marrow": _T["bone"],
    }  # fmt: skip
    tiss = np.array([tmap[n] for n in names], np.uint8)[kind]
    tumor = (labels > 0).astype(np.uint8)
    origin = (float(x[0]), float(y[0] - 150.0), float(z[0]))
    direction = np.eye(3)
    orientation = "axial"
    if rng.random() < 0.25:  # the patient a little tilted in the scanner
        ang = math.radians(float(rng.uniform(-12, 12)))
        direction = np.array(
            [[math.cos(ang), -math.sin(ang), 0.0], [math.sin(ang), math.cos(ang), 0.0], [0, 0, 1]]
        )
        orientation = "oblique"
    meta: dict[str, Any] = {
        "generator": "bench.oof_phantom", "seed": int(seed), "preset": "oof",
        "orientation": orientation, "contrast": contrast, "posture": posture,
        "fat_sat": contrast != "nofatsat", "field_T": 3.0 if rng.random() < 0.5 else 1.5,
        "times_s": [round(float(t), 3) for t in times], "lesions": lesions,
        "tumor_labels": [m["label"] for m in lesions], "bpe_level": bpe_level,
        "sides": sides, "fgt_fraction_target": round(fgt_target, 3),
        "shape_zyx": list(shape), "spacing_zyx": list(sp),
        "research_notice": "Research use only, not a medical device. Synthetic data.",
    }  # fmt: skip
    return PhantomCase(
        images=images, times_s=times, breast=breast.astype(np.uint8), tumor=tumor,
        lesion_labels=labels, spacing_zyx=sp, origin_lps=origin, direction=direction,
        meta=meta, tissue=tiss,
    )  # fmt: skip


def make_oof_study(out_dir: Path, seed: int, *, layout: str = "ge") -> Path:
    """Write one out-of-family study as ``out_dir/dicom`` + ``out_dir/truth`` (phantom layout).

    Parameters
    ----------
    out_dir:
        Folder to create.
    seed:
        Random seed of the study.
    layout:
        DICOM layout of ``breastai.phantom.write_dicom_study`` (ge, siemens, philips, ...).

    Returns
    -------
    Path
        ``out_dir``.
    """
    from breastai.io.atomic import atomic_dir
    from breastai.phantom import write_dicom_study, write_truth

    case = generate_oof_case(seed)
    with atomic_dir(Path(out_dir), force_hint=False) as tmp:
        write_dicom_study(case, tmp / "dicom", layout=layout, decoys=True, seed=seed)
        write_truth(case, tmp / "truth")
    return Path(out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=OOF_SEED_BASE)
    parser.add_argument("--layout", default="ge")
    args = parser.parse_args()
    make_oof_study(args.out, args.seed, layout=args.layout)
    print(args.out)


if __name__ == "__main__":
    main()
