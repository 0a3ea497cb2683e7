"""Phantom anatomy: thorax (skin, fat, pectoralis, ribs, lungs, spine), heart and great vessels,
liver, breasts (skin, nipple, FGT with background enhancement, vessels, implants) and axillary
lymph nodes, in the body frame of :mod:`breastai.phantom.generator` (u = x left, v = y posterior,
w = z superior; arrays ``(w, v, u)``).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from numpy.typing import NDArray

from breastai.errors import ParameterError
from breastai.phantom._grid import bbox, ell_sdf, fraction, powerlaw_field
from breastai.phantom.params import Params
from breastai.phantom.tissues import (
    AIR,
    BLOOD,
    BONE,
    BPE_FRACTION,
    BPE_KTRANS,
    BVESSEL,
    FAT,
    FGT,
    IMPLANT,
    KINETICS,
    LIVER,
    LUNG,
    MUSCLE,
    MYO,
    NIPPLE,
    NODE,
    PD,
    SKIN,
    T1_MS,
    VESSEL,
    TissueClasses,
)

__all__ = ["Anatomy"]

F64 = NDArray[Any]  # float arrays (float32 or float64)


class Anatomy:
    """The labelled anatomy of one case on the body grid (arrays ``(w, v, u)``, mm axes LPS).

    Holds the tissue labels, signal classes (``cid``), fat fraction, body partial volume, breast
    mask and lesion labels that :mod:`breastai.phantom.lesions` adds to and
    :mod:`breastai.phantom.signal` renders. ``build`` makes the thorax, heart, vessels and
    breasts; ``add_nodes`` the axillary lymph nodes (after the lesions, for the draw order).
    """

    def __init__(
        self,
        p: Params,
        shape: tuple[int, int, int],
        sp: tuple[float, float, float],
        rng: np.random.Generator,
        *,
        sagittal: bool = False,
    ) -> None:
        self.p, self.shape, self.sp, self.rng = p, shape, sp, rng
        nk, nj, ni = shape
        sk, sj, si = sp
        self.w = (np.arange(nk) - (nk - 1) / 2.0) * sk
        self.v = (np.arange(nj) - (nj - 1) / 2.0) * sj
        self.u = (np.arange(ni) - (ni - 1) / 2.0) * si
        fov_u, fov_v = ni * si, nj * sj
        if fov_u < 250.0 and p.unilateral_fov and sagittal:
            # unilateral field of view (e.g. a sagittal single-breast acquisition): anatomy at
            # full size, the field of view centred on one breast
            self.s = float(min(1.0, fov_v / 300.0))
            side = 1.0 if p.unilateral_fov == "left" else -1.0
            self.u = self.u + side * 85.0 * self.s
        else:
            self.s = float(min(1.0, fov_u / 335.0, fov_v / 300.0))
        self.h = float(min(sp))
        self.cls = TissueClasses()
        self.tissue = np.zeros(shape, np.uint8)
        self.cid = np.zeros(shape, np.uint8)
        self.ffat = np.zeros(shape, np.float32)
        self.body = np.zeros(shape, np.float32)
        self.breast = np.zeros(shape, np.uint8)
        self.lesion_labels = np.zeros(shape, np.uint16)
        self.lesion_meta: list[dict[str, Any]] = []
        self.breast_info: dict[str, dict[str, Any]] = {}
        self.t1j = {k: float(np.exp(rng.normal(0, 0.05))) for k in sorted(T1_MS)}

    # --------------------------------------------------------------------------------------
    def t1(self, name: str) -> float:
        """T1 (ms) of a tissue at the case's field strength, with this case's jitter."""
        return T1_MS[name][0 if self.p.field_T == 1.5 else 1] * self.t1j[name]

    def build(self) -> None:
        """Signal classes, thorax, heart and great vessels, then the breast(s)."""
        p, s = self.p, self.s
        c = self.cls
        self.c_muscle = c.add(
            "muscle", self.t1("muscle"), PD["muscle"], "tofts", KINETICS["muscle"]
        )
        self.c_skin = c.add("skin", self.t1("skin"), PD["skin"], "tofts", KINETICS["skin"])
        self.c_blood = c.add("blood", self.t1("blood"), PD["blood"], "blood")
        self.c_myo = c.add(
            "myocardium", self.t1("myocardium"), PD["myocardium"], "tofts", KINETICS["myocardium"]
        )
        self.c_lung = c.add("lung", self.t1("lung"), PD["lung"], "none")
        self.c_liver = c.add("liver", self.t1("liver"), PD["liver"], "tofts", KINETICS["liver"])
        self.c_fgt = c.add("fgt", self.t1("fgt"), PD["fgt"], "tofts", KINETICS["fgt"])
        lvl = BPE_KTRANS[str(p.bpe)]
        self.c_bpe = [
            c.add(f"bpe{j}", self.t1("fgt"), PD["fgt"], "tofts", (lvl * f, 0.3, 0.01, 15.0))
            for j, f in enumerate((0.8, 1.0, 1.2))
        ]
        self.c_node = c.add("node", self.t1("node"), PD["node"], "tofts", KINETICS["node"])
        self.c_sil = c.add(
            "silicone", self.t1("silicone"), PD["silicone"] * (0.35 if p.fat_sat else 1.0), "none"
        )
        self.c_nec = c.add("necrosis", self.t1("necrosis"), PD["necrosis"], "none")
        # thorax geometry (mm, scaled)
        self.A, self.B = 155.0 * s * p.chest_scale[0], 105.0 * s * p.chest_scale[1]
        self.d_skin, self.d_fat = float(p.skin_mm), 9.0 * s * p.fat_scale
        self.d_pec = 12.0 * s * p.pec_scale
        self.u_br = 85.0 * s * p.breast_sep
        v_min = self.v[0] - self.sp[1] / 2
        surf_ref = self.B * np.sqrt(1 - (self.u_br / self.A) ** 2)
        self.v_tc = v_min + 15.0 * s + 85.0 * s + surf_ref - self.d_fat
        self._thorax()
        self._heart_vessels()
        for side in ("R", "L"):
            if p.breasts == "both" or (p.breasts == "left") == (side == "L"):
                self._breast(side)

    # --------------------------------------------------------------------------------------
    def _depth2d(self) -> F64:
        """Depth below the thorax skin surface (mm) on the (v, u) plane; negative outside."""
        uu = self.u[None, :]
        vv = (self.v - self.v_tc)[:, None]
        return -ell_sdf(uu, vv, np.zeros((1, 1)), self.A, self.B, 1e9)

    def _thorax(self) -> None:
        s, nk = self.s, self.shape[0]
        uu = self.u[None, :]
        vv = (self.v - self.v_tc)[:, None]
        dep = self._depth2d()
        self.dep2d = dep
        t2 = np.zeros(dep.shape, np.uint8)
        c2 = np.zeros(dep.shape, np.uint8)
        f2 = np.zeros(dep.shape, np.float32)
        inside = dep > 0
        t2[inside] = FAT
        f2[inside] = 1.0
        m = inside & (dep < self.d_skin)
        t2[m], c2[m], f2[m] = SKIN, self.c_skin, 0.0
        # subcutaneous fat thicker at the back; pectoralis full thickness anteriorly only
        ant = np.clip(-vv / self.B, 0.0, 1.0) * np.ones_like(uu)
        d_m0 = self.d_fat * (1.0 + 0.8 * (1.0 - ant))
        d_m1 = d_m0 + self.d_pec * (0.35 + 0.65 * ant)
        m = (dep >= d_m0) & (dep < d_m1)
        t2[m], c2[m], f2[m] = MUSCLE, self.c_muscle, 0.0
        # rib band: intercostal muscle; ribs added per slice below
        d_r1 = d_m1 + 11.0 * s
        m = (dep >= d_m1) & (dep < d_r1)
        t2[m], c2[m], f2[m] = MUSCLE, self.c_muscle, 0.0
        self.rib_band = m & (dep > d_m1 + 1.0 * s) & (dep < d_r1 - 1.0 * s)
        # interior: mediastinal fat, lungs, spine with paraspinal muscles
        core = dep >= d_r1
        t2[core], c2[core], f2[core] = FAT, 0, 1.0
        for sgn in (-1.0, 1.0):
            lung = (
                ell_sdf(
                    uu - sgn * 68.0 * s, vv - 10.0 * s, np.zeros((1, 1)), 58.0 * s, 78.0 * s, 1e9
                )
                < 0
            )
            lung &= core
            t2[lung], c2[lung], f2[lung] = LUNG, self.c_lung, 0.0
        spine = ell_sdf(uu, vv - 70.0 * s, np.zeros((1, 1)), 20.0 * s, 20.0 * s, 1e9) < 0
        para = (ell_sdf(uu, vv - 82.0 * s, np.zeros((1, 1)), 55.0 * s, 25.0 * s, 1e9) < 0) & core
        t2[para], c2[para], f2[para] = MUSCLE, self.c_muscle, 0.0
        t2[spine], c2[spine], f2[spine] = BONE, 0, 0.6
        self.body2d = fraction(-dep, self.h)
        self.tissue[:] = t2[None]
        self.cid[:] = c2[None]
        self.ffat[:] = f2[None]
        self.body[:] = self.body2d[None]
        # ribs every ~24 mm, radius 5 mm, sloping down anteriorly (cortex dark, marrow fat-like)
        jb, ib = np.nonzero(self.rib_band)
        vb = self.v[jb] - self.v_tc
        period = 24.0 * s
        for k in range(nk):
            ph = (self.w[k] + 0.45 * vb) / period
            hit = np.abs((ph % 1.0) - 0.5) * period < 5.0 * s
            hit &= np.abs(self.u[ib]) > 12.0 * s  # no ribs over the sternum
            if hit.any():
                self.tissue[k, jb[hit], ib[hit]] = BONE
                self.cid[k, jb[hit], ib[hit]] = 0
                self.ffat[k, jb[hit], ib[hit]] = 0.5
        # internal mammary vessels (parasternal, along z)
        for sgn in (-1.0, 1.0):
            vim = (
                ell_sdf(
                    uu - sgn * 25.0 * s,
                    vv + self.B - (self.d_fat + self.d_pec) - 6.0 * s,
                    np.zeros((1, 1)),
                    2.0,
                    2.0,
                    1e9,
                )
                < 0
            )
            vim &= inside
            self.tissue[:, vim] = BVESSEL
            self.cid[:, vim] = self.c_blood
            self.ffat[:, vim] = 0.0
        self.wdepth = float(self.d_fat + self.d_pec + 11.0 * s)  # anterior chest wall depth
        self.wdepth_map = d_r1

    def put(
        self,
        sl: tuple[slice, slice, slice],
        m: NDArray[np.bool_],
        tissue: int,
        cid: int,
        ffat: float,
    ) -> None:
        """Set tissue label, signal class and fat fraction of the voxels ``m`` of box ``sl``."""
        self.tissue[sl][m] = tissue
        self.cid[sl][m] = cid
        self.ffat[sl][m] = ffat

    def _heart_vessels(self) -> None:
        p, s = self.p, self.s
        w0 = self.w[0] - self.sp[0] / 2
        fov_w = self.shape[0] * self.sp[0]
        v_ant = self.v_tc - self.B + self.wdepth
        if p.heart:
            hc = np.array(
                [
                    w0 + 0.22 * fov_w,
                    v_ant + 48.0 * s - p.heart_shift_mm * s,
                    22.0 * s + p.heart_shift_mm * s,
                ]
            )
            ha = np.array([55.0, 45.0, 60.0]) * s * p.heart_scale
            sl = bbox(hc - ha - 2, hc + ha + 2, (self.w, self.v, self.u))
            if sl is not None:
                cw = (self.w[sl[0]] - hc[0])[:, None, None]
                cv = (self.v[sl[1]] - hc[1])[None, :, None]
                cu = (self.u[sl[2]] - hc[2])[None, None, :]
                d = ell_sdf(cw, cv, cu, ha[0], ha[1], ha[2])
                cage = (self.dep2d[sl[1], sl[2]] > self.wdepth_map[sl[1], sl[2]])[None]
                self.put(sl, (d < 0) & cage, MYO, self.c_myo, 0.0)
                self.put(sl, (d < -10.0 * s) & cage, BLOOD, self.c_blood, 0.0)
            self.heart_centre = hc
            # ascending aorta from the heart upwards, descending aorta along the spine
            tubes = [
                (v_ant + 40.0 * s, 5.0 * s, 14.0 * s, hc[0] + 20.0 * s),
                (self.v_tc + 48.0 * s, 25.0 * s, 12.0 * s, -np.inf),
            ]
            for tv, tu, r, wmin in tubes:
                cv2 = (self.v - tv)[:, None]
                cu2 = (self.u - tu)[None, :]
                m2 = cv2**2 + cu2**2 < r**2
                ks = np.flatnonzero(self.w >= wmin)
                if ks.size:
                    sl2 = (slice(int(ks[0]), self.shape[0]), slice(None), slice(None))
                    self.put(
                        sl2, np.broadcast_to(m2, self.tissue[sl2].shape), VESSEL, self.c_blood, 0.0
                    )
            # liver in the lowest slices on the right
            lc = np.array([w0 - 35.0 * s, self.v_tc + 10.0 * s, -55.0 * s])
            la = np.array([75.0, 75.0, 85.0]) * s
            sl = bbox(lc - la, lc + la, (self.w, self.v, self.u))
            if sl is not None:
                cw = (self.w[sl[0]] - lc[0])[:, None, None]
                cv = (self.v[sl[1]] - lc[1])[None, :, None]
                cu = (self.u[sl[2]] - lc[2])[None, None, :]
                m = (ell_sdf(cw, cv, cu, la[0], la[1], la[2]) < 0) & (
                    self.dep2d[sl[1], sl[2]] > self.wdepth_map[sl[1], sl[2]]
                )[None]
                self.put(sl, m, LIVER, self.c_liver, 0.0)

    # --------------------------------------------------------------------------------------

    def _breast(self, side: str) -> None:
        p, s, rng = self.p, self.s, self.rng
        assert p.breast_ml is not None
        vol_ml = float(p.breast_ml[1 if side == "L" else 0])
        if not 50.0 <= vol_ml <= 3000.0:
            raise ParameterError(f"breast_ml values must be 50..3000 mL; got {vol_ml}.")
        # half-ellipsoid V = 2/3 pi a_u a_w c_v; aspect (1, 0.92, 1) in (u, w, v)
        # half-ellipsoid anterior to the chest wall plus the slab between the skin surface and
        # the pectoralis (about pi*a*b*d_fat) make up the requested volume
        vol_mm3 = vol_ml * 1000.0 * s**3
        a = (vol_mm3 / (2.0 / 3.0 * np.pi * 0.92)) ** (1.0 / 3.0)
        for _ in range(3):
            half = max(vol_mm3 - 0.8 * np.pi * 0.92 * a * a * self.d_fat, 0.3 * vol_mm3)
            a = (half / (2.0 / 3.0 * np.pi * 0.92)) ** (1.0 / 3.0)
        f = 1.0 + 0.1 * rng.uniform(-1, 1)  # volume-preserving aspect jitter
        au, aw, cv = a / np.sqrt(f), 0.92 * a / np.sqrt(f), a * f
        if p.breast_aspect is not None:
            wu, dv = (float(x) for x in p.breast_aspect)
            au, aw, cv = au / np.sqrt(wu * dv), aw * np.sqrt(wu / dv), cv * dv
        sgn = 1.0 if side == "L" else -1.0
        uc = sgn * self.u_br
        vs = self.v_tc - self.B * np.sqrt(max(1 - (uc / self.A) ** 2, 0.0))
        vc = vs + self.d_fat  # base on the pectoralis surface
        wc = (self.w[0] - self.sp[0] / 2) + p.breast_centre_w * self.shape[0] * self.sp[0]
        ctr = np.array([wc, vc, uc])
        ax = np.array([aw, cv, au])
        # tip displacement (ptosis along w, lateral fall along u), growing with depth
        shear = np.array([p.breast_shear[0] * aw, 0.0, sgn * p.breast_shear[1] * au])
        nip_r, nip_len = 5.0 * s, 6.0 * s
        lo = ctr - ax - np.array([3.0, 3.0 + nip_len, 3.0]) + np.minimum(shear, 0.0)
        hi = ctr + ax + 3.0 + np.maximum(shear, 0.0)
        sl = bbox(lo, hi, (self.w, self.v, self.u))
        if sl is None:
            return
        cw = (self.w[sl[0]] - wc)[:, None, None]
        cv_ = (self.v[sl[1]] - vc)[None, :, None]
        cu = (self.u[sl[2]] - uc)[None, None, :]
        if shear.any():
            depth = np.clip(-cv_ / (cv + nip_len), 0.0, 1.0)
            cw = cw - shear[0] * depth
            cu = cu - shear[2] * depth
        d = ell_sdf(cw, cv_, cu, aw, cv, au)
        dep = self.dep2d[sl[1], sl[2]][None]
        ant = dep < self.d_fat  # anterior to the pectoralis
        inside = (d < 0) & ant
        # body fraction / tissue: fat inside, skin shell, remove thorax skin inside the breast
        bfrac = np.where(ant, fraction(d, self.h), 0.0).astype(np.float32)
        self.body[sl] = np.maximum(self.body[sl], bfrac)
        new = (d < 0) & ant & (self.tissue[sl] == AIR)
        self.put(sl, new, FAT, 0, 1.0)
        outer = (bfrac > 0) & (self.tissue[sl] == AIR)
        self.put(sl, outer, SKIN, self.c_skin, 0.0)
        shell = inside & (d > -self.d_skin)
        self.put(sl, shell, SKIN, self.c_skin, 0.0)
        oldskin = inside & (d <= -self.d_skin) & (self.tissue[sl] == SKIN)
        self.put(sl, oldskin, FAT, 0, 1.0)
        # nipple: a short cylinder on the breast tip (skin-like, part of the breast)
        rad2 = cw**2 + cu**2
        tip = -cv
        nip = (rad2 < nip_r**2) & (cv_ >= tip - nip_len) & (cv_ <= tip + nip_len)
        nip = nip & (d > -self.d_skin - 1.0)
        nip = np.broadcast_to(nip, d.shape)
        self.body[sl] = np.maximum(self.body[sl], nip.astype(np.float32))
        self.put(sl, nip, NIPPLE, self.c_skin, 0.0)
        bm = ((d <= 0) & ant) | nip
        # implant (excluded from the breast mask)
        imp = np.zeros(bm.shape, bool)
        if p.implant is not None:
            r = (p.implant_ml * 1000.0 / (4.0 / 3.0 * np.pi * 0.45)) ** (1 / 3) * s
            ia = np.array([0.8 * r, 0.45 * r, r])
            if p.implant == "prepec":
                ic = np.array([wc, vc - ia[1] - 1.0, uc])
            else:  # subpectoral: behind the muscle, which bulges forward over it
                ic = np.array([wc, vc + self.d_pec * 0.5, uc])
            di = ell_sdf(
                (self.w[sl[0]] - ic[0])[:, None, None],
                (self.v[sl[1]] - ic[1])[None, :, None],
                (self.u[sl[2]] - ic[2])[None, None, :],
                ia[0],
                ia[1],
                ia[2],
            )
            imp = di < 0
            if p.implant == "subpec":
                musc = (di >= 0) & (di < self.d_pec) & ((self.v[sl[1]] < ic[1])[None, :, None])
                musc &= (self.tissue[sl] != AIR) & (d < -self.d_skin - 2.0)
                self.put(sl, musc, MUSCLE, self.c_muscle, 0.0)
                bm &= ~(musc | ((di < self.d_pec) & (self.v[sl[1]] > ic[1])[None, :, None]))
            self.put(sl, imp & (self.tissue[sl] != AIR), IMPLANT, self.c_sil, 0.0)
            bm &= ~imp
        # FGT: thresholded 1/f^3 field with a central / retro-areolar bias
        assert p.fgt_fraction is not None
        fld = powerlaw_field(bm.shape, self.sp, 4.2, 1.0 / 60.0, rng)
        r_axis = np.sqrt((cw / aw) ** 2 + (cu / au) ** 2)
        fld = fld + (1.2 - 1.6 * r_axis**2).astype(np.float32)
        fld = fld - (0.8 * np.clip(-cv_ / cv - 0.75, 0, None)).astype(np.float32)
        elig = bm & (d < -(self.d_skin + 3.0 * s)) & (dep < self.d_fat - 3.0 * s) & ~imp
        n_target = round(p.fgt_fraction * int(bm.sum()))
        vals = fld[elig]
        thr = np.inf
        if n_target > 0 and vals.size:
            n_target = min(n_target, vals.size)
            thr = float(np.partition(vals, vals.size - n_target)[vals.size - n_target])
        width = 0.15
        gfrac = np.clip((fld - thr) / width + 0.5, 0.0, 1.0)
        gfrac[~elig] = 0.0
        fg = gfrac >= 0.5
        part = (gfrac > 0) & ~fg & elig
        bpe_f = powerlaw_field(bm.shape, self.sp, 4.0, 1.0 / p.bpe_scale_mm, rng)
        share = BPE_FRACTION[str(p.bpe)] if p.bpe_fraction is None else p.bpe_fraction
        q = np.quantile(bpe_f[fg], 1.0 - share) if fg.any() else 0.0
        enh = bpe_f > q
        var = np.digitize(
            powerlaw_field(bm.shape, self.sp, 2.0, 1.0 / 5.0, rng), [-0.5, 0.5]
        ).astype(np.uint8)
        c_bpe = self.c_bpe
        if side == "L" and p.bpe_left_factor != 1.0:
            lvl = BPE_KTRANS[str(p.bpe)] * p.bpe_left_factor
            c_bpe = [
                self.cls.add(
                    f"bpeL{j}", self.t1("fgt"), PD["fgt"], "tofts", (lvl * f, 0.3, 0.01, 15.0)
                )
                for j, f in enumerate((0.8, 1.0, 1.2))
            ]
        cls_fgt = np.where(enh, np.asarray(c_bpe, np.uint8)[var], np.uint8(self.c_fgt))
        sub_t, sub_c, sub_f = self.tissue[sl], self.cid[sl], self.ffat[sl]
        sub_t[fg] = FGT
        sub_c[fg] = cls_fgt[fg]
        sub_f[fg | part] = (1.0 - gfrac[fg | part]).astype(np.float32)
        sub_c[part] = cls_fgt[part]
        # breast vessels: a few tortuous tubes from the chest wall towards the nipple
        for _ in range(self.p.vessels):
            self._breast_vessel(sl, ctr, ax, bm, side)
        self.breast[sl][bm] = 1
        self.breast_info[side] = {
            "centre": ctr.tolist(), "axes": ax.tolist(), "fgt_thr": float(thr),
            "shear": shear.tolist(),
        }  # fmt: skip

    def _breast_vessel(
        self, sl: tuple[slice, slice, slice], ctr: F64, ax: F64, bm: NDArray[np.bool_], side: str
    ) -> None:
        rng = self.rng
        start = ctr + np.array(
            [rng.uniform(-0.6, 0.6) * ax[0], -2.0, rng.uniform(-0.7, 0.7) * ax[2]]
        )
        end = ctr + np.array(
            [rng.uniform(-0.15, 0.15) * ax[0], -0.85 * ax[1], rng.uniform(-0.15, 0.15) * ax[2]]
        )
        n = 6
        tt = np.linspace(0, 1, n)[:, None]
        pts = start * (1 - tt) + end * tt
        pts[1:-1] += rng.normal(0, 0.08, size=(n - 2, 3)) * ax
        r = rng.uniform(0.6, 1.3)
        ww, vv, uu = self.w[sl[0]], self.v[sl[1]], self.u[sl[2]]
        dmin = np.full(bm.shape, np.inf, np.float32)
        for a, b in itertools.pairwise(pts):
            lo, hi = np.minimum(a, b) - r - 2, np.maximum(a, b) + r + 2
            sub = bbox(lo, hi, (ww, vv, uu))
            if sub is None:
                continue
            pw = (ww[sub[0]] - a[0])[:, None, None]
            pv = (vv[sub[1]] - a[1])[None, :, None]
            pu = (uu[sub[2]] - a[2])[None, None, :]
            ab = b - a
            t = np.clip((pw * ab[0] + pv * ab[1] + pu * ab[2]) / float(ab @ ab), 0, 1)
            dist = np.sqrt((pw - t * ab[0]) ** 2 + (pv - t * ab[1]) ** 2 + (pu - t * ab[2]) ** 2)
            dmin[sub] = np.minimum(dmin[sub], dist.astype(np.float32))
        m = (dmin < r) & bm & (self.tissue[sl] != SKIN)
        self.put(sl, m, BVESSEL, self.c_blood, 0.0)

    # --------------------------------------------------------------------------------------

    def add_nodes(self) -> None:
        """Axillary lymph nodes (``p.nodes``), alternating sides when both breasts exist."""
        p, rng = self.p, self.rng
        for n in range(p.nodes):
            side = (
                ("L", "R")[n % 2]
                if "L" in self.breast_info and "R" in self.breast_info
                else (next(iter(self.breast_info), "R"))
            )
            info = self.breast_info.get(side)
            if info is None:
                return
            ctr, ax = np.asarray(info["centre"]), np.asarray(info["axes"])
            sgn = 1.0 if side == "L" else -1.0
            size = rng.uniform(8.0, 15.0) * self.s
            u_n = float(np.clip(ctr[2] + sgn * ax[2] * 0.9, -0.92 * self.A, 0.92 * self.A))
            v_surf = self.v_tc - self.B * np.sqrt(max(1 - (u_n / self.A) ** 2, 0.0))
            pos = np.array(
                [
                    ctr[0] + 0.45 * ax[0] + rng.uniform(-8, 8) * self.s,
                    v_surf + size / 2 + 3.0 * self.s,
                    u_n,
                ]
            )
            a = np.array([size / 2, size / 3, size / 3])
            sl = bbox(pos - a - 1, pos + a + 1, (self.w, self.v, self.u))
            if sl is None:
                continue
            d = ell_sdf(
                (self.w[sl[0]] - pos[0])[:, None, None],
                (self.v[sl[1]] - pos[1])[None, :, None],
                (self.u[sl[2]] - pos[2])[None, None, :],
                a[0],
                a[1],
                a[2],
            )
            m = (d < 0) & (self.body[sl] > 0.5)
            self.put(sl, m, NODE, self.c_node, 0.0)
            hil = (d < -0.6 * a[1]) & m
            self.put(sl, hil, NODE, 0, 1.0)
