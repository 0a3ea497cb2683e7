"""Phantom lesions: masses (shape library, partial volume, necrosis) and non-mass enhancement,
placed inside a breast of :class:`breastai.phantom.anatomy.Anatomy`, with their truth record
(volume and longest diameter of the continuous shape, kinetics, laterality).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from numpy.typing import NDArray

from breastai.errors import ParameterError
from breastai.phantom._grid import bbox, powerlaw_field, random_rotation
from breastai.phantom._shapes import LESION_SHAPES, LesionShape, make_shape
from breastai.phantom.anatomy import Anatomy
from breastai.phantom.tissues import KINETICS, LESION0, NECROSIS, PD, SKIN

__all__ = ["add_lesions", "longest_diameter"]

log = logging.getLogger(__name__)

F64 = NDArray[Any]  # float arrays (float32 or float64)


def longest_diameter(points: F64) -> float:
    """Exact longest distance within a point set (the report's convex-hull kernel)."""
    from breastai.report import farthest_pair

    return farthest_pair(np.asarray(points, dtype=np.float64))[0]


def add_lesions(a: Anatomy) -> None:
    """Place, draw and record the lesions of ``a.p.lesions`` (masses and non-mass enhancement)."""
    p, rng = a.p, a.rng
    assert p.lesions is not None
    placed: list[F64] = []
    sides = [k for k in ("R", "L") if k in a.breast_info]
    for i, spec in enumerate(p.lesions, start=1):
        spec = dict(spec)
        kind = spec.get("kind", "malignant")
        kinetics = spec.get("kinetics", "washout" if kind == "malignant" else "persistent")
        shape = spec.get("shape")
        if shape is None:
            shape = str(rng.choice(["round", "lobulated", "irregular", "spiculated"]))
        ld = spec.get("ld_mm")
        if ld is None:
            ld = float(np.exp(rng.uniform(np.log(8.0), np.log(35.0))))
        if kind not in ("malignant", "benign"):
            raise ParameterError(f"lesion kind must be 'malignant' or 'benign'; got {kind!r}.")
        if kinetics not in ("washout", "plateau", "persistent"):
            raise ParameterError(
                f"lesion kinetics must be washout, plateau or persistent; got {kinetics!r}."
            )
        if shape not in LESION_SHAPES:
            raise ParameterError(
                f"lesion shape must be one of {', '.join(LESION_SHAPES)}; got {shape!r}."
            )
        if not 2.0 <= float(ld) <= 100.0:
            raise ParameterError(f"lesion ld_mm must be 2..100 mm; got {ld}.")
        ld = float(ld) * a.s if a.s < 1 else float(ld)
        lat = spec.get("laterality")
        near = spec.get("near")
        if near is not None and 1 <= int(near) < i:
            lat = a.lesion_meta[int(near) - 1]["laterality"]
        if lat is None:
            lat = str(rng.choice(sides)) if sides else "R"
        if lat not in ("L", "R"):
            raise ParameterError(f"lesion laterality must be 'L' or 'R'; got {lat!r}.")
        if lat not in a.breast_info:
            if not sides:
                log.warning("no breast to place lesion %d in; skipped", i)
                continue
            lat = sides[0]
        info = a.breast_info[lat]
        ctr, ax = np.asarray(info["centre"]), np.asarray(info["axes"])
        kin = KINETICS[kinetics]
        kt = float(spec.get("ktrans", kin[0] * rng.uniform(0.85, 1.15)))
        ve = float(spec.get("ve", kin[1]))
        vp = float(spec.get("vp", kin[2]))
        t1 = a.t1("malignant" if kind == "malignant" else "benign")
        cid = a.cls.add(f"lesion{i}", t1, PD["malignant"], "tofts", (kt, ve, vp, kin[3]))
        ratio = spec.get("axes_ratio")
        sh = make_shape(shape, ld, rng, None if ratio is None else tuple(ratio))
        rot = random_rotation(rng)
        r_ext = sh.extent_mm
        # placement (body frame: w, v, u)
        if near is not None and 1 <= int(near) < i:
            prev = placed[int(near) - 1]
            dirn = rng.normal(size=3)
            dirn /= np.linalg.norm(dirn)
            pos = prev + dirn * rng.uniform(8.0, 20.0) * max(a.s, 0.5)
        else:
            r_place = min(r_ext, 0.55 * ld + 1.0)
            pos = _place(a, ctr, ax, r_place, spec.get("position", "gland"), lat)
        # keep the lesion inside the field of view where the grid allows it
        lo_g = np.array([a.w[0], a.v[0], a.u[0]]) + r_ext
        hi_g = np.array([a.w[-1], a.v[-1], a.u[-1]]) - r_ext
        pos = np.where(lo_g <= hi_g, np.clip(pos, lo_g, hi_g), pos)
        placed.append(pos)
        if shape == "non-mass":
            _nme(a, i, cid, pos, ctr, ld, kind, kinetics, lat, kt, ve, vp)
            continue
        _mass(a, i, cid, sh, rot, pos, kind, kinetics, shape, lat, kt, ve, vp)


def _place(a: Anatomy, ctr: F64, ax: F64, r: float, where: str, lat: str) -> F64:
    """A lesion centre inside the breast, at least ``r`` + 3 mm from skin and pectoralis."""
    rng = a.rng
    aw, cv, au = (float(x) for x in ax)
    margin = r + 3.0
    sgn = 1.0 if lat == "L" else -1.0
    shrunk = np.maximum(np.array([aw, cv, au]) - margin, 1e-3)

    def inside(off: F64) -> bool:
        return bool(((off / shrunk) ** 2).sum() <= 1.0) and off[1] <= -margin

    if where == "nipple":
        off = np.array([0.0, -max(cv - margin - 2.0, min(margin, cv / 2)), 0.0])
    elif where == "posterior":
        off = np.array(
            [
                rng.uniform(-0.2, 0.2) * shrunk[0],
                -min(margin + 1.0, cv / 2),
                rng.uniform(-0.2, 0.2) * shrunk[2],
            ]
        )
    else:
        off = np.array([0.0, -max(min(margin + 0.3 * (cv - 2 * margin), cv), cv / 2), 0.0])
        for _ in range(200):
            cand = np.array(
                [
                    rng.uniform(-0.8, 0.8) * shrunk[0],
                    -rng.uniform(margin, max(cv - margin, margin)),
                    rng.uniform(-0.8, 0.8) * shrunk[2],
                ]
            )
            if not inside(cand):
                continue
            # upper-outer quadrant weighted x2
            if (cand[0] > 0 and cand[2] * sgn > 0) or rng.random() < 0.5:
                off = cand
                break
    shear = np.asarray(a.breast_info[lat].get("shear", (0.0, 0.0, 0.0)))
    if shear.any():  # follow the displaced breast tip (see _breast)
        off = off + shear * float(np.clip(-off[1] / (cv + 6.0 * a.s), 0.0, 1.0))
    out: F64 = ctr + off
    return out


def _sample_points(a: Anatomy, sl: tuple[slice, slice, slice]) -> tuple[F64, F64, F64]:
    """Body-frame coordinates (mm) of the box ``sl`` along w, v, u."""
    return a.w[sl[0]], a.v[sl[1]], a.u[sl[2]]


def _mass(
    a: Anatomy,
    i: int,
    cid: int,
    sh: LesionShape,
    rot: F64,
    pos: F64,
    kind: str,
    kinetics: str,
    shape: str,
    lat: str,
    kt: float,
    ve: float,
    vp: float,
) -> None:
    r_ext = sh.extent_mm
    pad = r_ext + max(a.sp)
    sl = bbox(pos - pad, pos + pad, (a.w, a.v, a.u))
    if sl is None:
        log.warning("lesion %d is outside the field of view; skipped", i)
        return
    ww, vv, uu = _sample_points(a, sl)
    gw, gv, gu = np.meshgrid(ww - pos[0], vv - pos[1], uu - pos[2], indexing="ij")
    pts = np.stack([gw.ravel(), gv.ravel(), gu.ravel()], axis=1) @ rot  # lesion frame
    d = sh.sdf(pts)
    half_diag = 0.5 * float(np.linalg.norm(a.sp))
    band = np.abs(d) < 1.6 * half_diag
    frac = (d < 0).astype(np.float64)
    nsub = int(np.clip(np.ceil(max(a.sp) / 0.7), 3, 6))
    off = (np.arange(nsub) + 0.5) / nsub - 0.5
    ow, ov, ou = np.meshgrid(off * a.sp[0], off * a.sp[1], off * a.sp[2], indexing="ij")
    subs = np.stack([ow.ravel(), ov.ravel(), ou.ravel()], axis=1) @ rot
    bidx = np.flatnonzero(band)
    nec = np.zeros(frac.shape, np.float64)
    for chunk in np.array_split(bidx, max(1, bidx.size // 4000)):
        if not chunk.size:
            continue
        q = (pts[chunk][:, None, :] + subs[None, :, :]).reshape(-1, 3)
        frac[chunk] = (sh.sdf(q) < 0).reshape(chunk.size, -1).mean(axis=1)
    if sh.necrosis > 0:
        dn = sh.necrosis_sdf(pts)
        nband = np.abs(dn) < 1.6 * half_diag
        nec = (dn < 0).astype(np.float64)
        nidx = np.flatnonzero(nband)
        for chunk in np.array_split(nidx, max(1, nidx.size // 4000)):
            if not chunk.size:
                continue
            q = (pts[chunk][:, None, :] + subs[None, :, :]).reshape(-1, 3)
            nec[chunk] = (sh.necrosis_sdf(q) < 0).reshape(chunk.size, -1).mean(axis=1)
    bshape = gw.shape
    frac3 = frac.reshape(bshape)
    nec3 = np.minimum(nec.reshape(bshape), frac3)
    gt = frac3 >= 0.5
    gt &= a.body[sl] > 0
    _apply_lesion(a, sl, i, cid, frac3, nec3, gt)
    # truth: analytic/Monte-Carlo volume and longest diameter of the continuous shape
    mrng = np.random.default_rng([i, 77])
    mc = mrng.uniform(-r_ext, r_ext, size=(60_000, 3))
    ins = sh.sdf(mc) < 0
    if shape in ("round", "rim"):
        vol_mm3 = 4.0 / 3.0 * np.pi * float(np.prod(sh.axes))
        ld = 2.0 * float(sh.axes.max())
    else:
        vol_mm3 = float(ins.mean()) * (2 * r_ext) ** 3
        ld = longest_diameter(mc[ins])
    _record(
        a, i, kind, kinetics, shape, lat, pos, ld, vol_mm3, gt, kt, ve, vp, necrosis=sh.necrosis
    )


def _nme(
    a: Anatomy,
    i: int,
    cid: int,
    pos: F64,
    ctr: F64,
    ld: float,
    kind: str,
    kinetics: str,
    lat: str,
    kt: float,
    ve: float,
    vp: float,
) -> None:
    # cone (segment) pointing from the chest-wall side towards the nipple, clumped
    nip = ctr + np.array([0.0, -a.breast_info[lat]["axes"][1], 0.0])
    nip = nip + np.asarray(a.breast_info[lat].get("shear", (0.0, 0.0, 0.0)))
    apex = pos + (pos - nip) / max(float(np.linalg.norm(pos - nip)), 1e-6) * ld * 0.3
    axis = nip - apex
    axis /= np.linalg.norm(axis)
    r = ld / 2.0
    sl = bbox(pos - r - 2, pos + r + 2, (a.w, a.v, a.u))
    if sl is None:
        return
    ww, vv, uu = _sample_points(a, sl)
    pw = (ww - apex[0])[:, None, None]
    pv = (vv - apex[1])[None, :, None]
    pu = (uu - apex[2])[None, None, :]
    along = pw * axis[0] + pv * axis[1] + pu * axis[2]
    rad2 = pw**2 + pv**2 + pu**2 - along**2
    cone = (along > 0) & (along < ld) & (rad2 < (np.tan(np.deg2rad(20)) * along) ** 2)
    dist_c = np.sqrt(
        (ww[:, None, None] - pos[0]) ** 2
        + (vv[None, :, None] - pos[1]) ** 2
        + (uu[None, None, :] - pos[2]) ** 2
    )
    cone &= dist_c < r
    clumps = powerlaw_field(cone.shape, a.sp, 3.0, 1.0 / 4.0, a.rng) > 0.0
    gt = cone & clumps & (a.breast[sl] > 0) & (a.tissue[sl] != SKIN)
    frac3 = gt.astype(np.float64)
    _apply_lesion(a, sl, i, cid, frac3, np.zeros_like(frac3), gt)
    vox = float(np.prod(a.sp))
    pts = np.argwhere(gt) * np.asarray(a.sp) if gt.any() else np.zeros((0, 3))
    _record(
        a,
        i,
        kind,
        kinetics,
        "non-mass",
        lat,
        pos,
        longest_diameter(pts),
        float(gt.sum()) * vox,
        gt,
        kt,
        ve,
        vp,
        necrosis=0.0,
    )


def _apply_lesion(
    a: Anatomy,
    sl: tuple[slice, slice, slice],
    i: int,
    cid: int,
    frac3: F64,
    nec3: F64,
    gt: NDArray[np.bool_],
) -> None:
    touched = (frac3 > 0) & (a.body[sl] > 0)
    sub_t, sub_c, sub_f = a.tissue[sl], a.cid[sl], a.ffat[sl]
    old_f = sub_f[touched].astype(np.float64)
    fr = frac3[touched]
    water_old = (1 - fr) * (1 - old_f)
    new_f = ((1 - fr) * old_f).astype(np.float32)
    nec_share = nec3[touched]
    sub_f[touched] = new_f
    lesion_wins = fr >= water_old
    cls_new = np.where(nec_share > 0.5 * fr, a.c_nec, cid).astype(np.uint8)
    cur_c = sub_c[touched]
    sub_c[touched] = np.where(lesion_wins, cls_new, cur_c)
    lab = np.where(nec3 >= 0.5, NECROSIS, LESION0 + min(i, 19)).astype(np.uint8)
    sub_t[gt] = lab[gt]
    a.lesion_labels[sl][gt] = i


def _record(
    a: Anatomy,
    i: int,
    kind: str,
    kinetics: str,
    shape: str,
    lat: str,
    pos: F64,
    ld: float,
    vol_mm3: float,
    gt: NDArray[np.bool_],
    kt: float,
    ve: float,
    vp: float,
    *,
    necrosis: float,
) -> None:
    a.lesion_meta.append({
        "label": i,
        "malignant": kind == "malignant",
        "kind": kind,
        "curve_type": kinetics,
        "shape": shape,
        "laterality": lat,
        "centre_body_mm": [float(x) for x in pos],
        "longest_diameter_mm": round(float(ld), 3),
        "volume_ml": round(vol_mm3 / 1000.0, 5),
        "gt_volume_ml": round(float(gt.sum()) * float(np.prod(a.sp)) / 1000.0, 5),
        "ktrans_per_min": round(kt, 5), "ve": ve, "vp": vp,
        "necrosis_fraction_of_radius": necrosis,
    })  # fmt: skip
