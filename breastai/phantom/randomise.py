"""Domain randomisation of the phantom: random anatomy, acquisition and appearance per study.

Models trained on one look of one generator learn that look. Following SynthSeg (Billot et al.
2023: train on label maps with random intensities), the demo-weights training draws, per study:

* **anatomy** (:func:`random_overrides`): breast volumes and asymmetry, breast shape (aspect,
  ptosis, a supine-like lateral fall), chest-wall width and depth, skin, fat and pectoralis
  thickness, heart size and position, implants, lymph nodes, vessels, FGT amount, background
  enhancement, 0-3 lesions of every shape and kinetics (benign ones too), one or both breasts;
* **acquisition**: orientation, voxel size and slice thickness, field strength, flip angle, TR,
  number of phases, phase timing, SNR, B1 fields, fat saturation, motion, ghosts, wrap-around;
* **field of view** (:func:`crop_case`): whole thorax, breasts only (the back of the thorax cut
  away), one breast, or a cut at the top/bottom;
* **appearance** (:func:`rerender`): the phases are re-rendered from the tissue label map with a
  random intensity per tissue (a mixture per label; any order of brightness, including contrasts
  no scanner makes), random enhancement amplitude, timing and wash-out per tissue (lesions above
  the glandular background, blood early and bright), a random bias field, gamma, blur and slice
  thickness, Gaussian or Rician noise and inter-phase motion.

Truth (breast, tumor and lesion masks) is the generator's, untouched: only what the images look
like changes. Everything is seeded: the same seed gives the same study. Nothing here changes
:func:`breastai.phantom.generate_case` itself; the default phantom (tests, demo) is as before.

Research use only, not a medical device.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from breastai.errors import ParameterError
from breastai.phantom.generator import PhantomCase, generate_case
from breastai.phantom.tissues import (
    AIR,
    BLOOD,
    BONE,
    BVESSEL,
    FAT,
    FGT,
    IMPLANT,
    LESION0,
    LIVER,
    LUNG,
    MUSCLE,
    MYO,
    NECROSIS,
    NIPPLE,
    NODE,
    SKIN,
    VESSEL,
)

__all__ = [
    "FOV_KINDS",
    "crop_case",
    "generate_randomised_case",
    "random_grid",
    "random_overrides",
    "rerender",
]

F32 = NDArray[np.float32]

#: Field-of-view variants of :func:`crop_case`.
FOV_KINDS = ("thorax", "breasts", "one_breast", "cut_si")

# Pre-contrast intensity (0..1) of each tissue in a T1-weighted, fat-suppressed look, and the
# look without fat suppression; the "any" mode ignores both (random order of brightness).
_T1_LOOK = {
    AIR: 0.01, SKIN: 0.35, FAT: 0.12, FGT: 0.3, MUSCLE: 0.25, BONE: 0.1, LUNG: 0.03,
    BLOOD: 0.2, MYO: 0.25, VESSEL: 0.2, BVESSEL: 0.2, NIPPLE: 0.35, NODE: 0.3, IMPLANT: 0.2,
    LIVER: 0.35, NECROSIS: 0.25,
}  # fmt: skip
_FAT_BRIGHT = {FAT: 0.9, BONE: 0.6}
# Peak enhancement (added signal, same 0..1 scale) ranges and timing classes per tissue.
_ENH = {
    AIR: (0.0, 0.0), SKIN: (0.0, 0.2), FAT: (0.0, 0.04), FGT: (0.0, 0.25), MUSCLE: (0.02, 0.3),
    BONE: (0.0, 0.05), LUNG: (0.0, 0.05), BLOOD: (0.5, 2.0), MYO: (0.3, 1.2), VESSEL: (0.5, 2.0),
    BVESSEL: (0.4, 1.8), NIPPLE: (0.0, 0.4), NODE: (0.2, 1.0), IMPLANT: (0.0, 0.0),
    LIVER: (0.2, 0.8), NECROSIS: (0.0, 0.1),
}  # fmt: skip
_EARLY = {BLOOD, VESSEL, BVESSEL, MYO}
_SLOW = {FGT, FAT, SKIN, MUSCLE, NIPPLE, BONE, LUNG, NECROSIS}


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def random_overrides(rng: np.random.Generator) -> dict[str, Any]:
    """Random anatomy and acquisition: keyword overrides for :func:`generate_case`.

    Parameters
    ----------
    rng:
        Random generator (all draws come from it).

    Returns
    -------
    dict
        Keyword arguments of :func:`breastai.phantom.generate_case` (``preset="default"``).
    """
    v = _loguniform(rng, 150.0, 1800.0)
    o: dict[str, Any] = {
        "breast_ml": (v, float(np.clip(v * rng.uniform(0.75, 1.25), 120.0, 2200.0))),
        "breasts": str(rng.choice(["both", "left", "right"], p=[0.86, 0.07, 0.07])),
        "chest_scale": (float(rng.uniform(0.82, 1.15)), float(rng.uniform(0.8, 1.2))),
        "skin_mm": float(rng.uniform(0.6, 3.0)),
        "fat_scale": float(rng.uniform(0.4, 2.0)),
        "pec_scale": float(rng.uniform(0.5, 1.6)),
        "breast_sep": float(rng.uniform(0.88, 1.12)),
        "breast_centre_w": float(rng.uniform(0.42, 0.66)),
        "heart_scale": float(rng.uniform(0.8, 1.3)),
        "heart_shift_mm": float(rng.uniform(-10.0, 30.0)),
        "vessels": int(rng.integers(1, 11)),
        "nodes": int(rng.choice([0, 0, 1, 2, 3, 4])),
        "fgt_category": str(rng.choice(["a", "b", "c", "d"])),
        "bpe": str(rng.choice(["minimal", "mild", "moderate", "marked"], p=[0.25, 0.3, 0.25, 0.2])),
        "bpe_left_factor": float(rng.choice([1.0, rng.uniform(0.5, 2.0)])),
        "fat_sat": bool(rng.random() < 0.7),
        "field_T": float(rng.choice([1.5, 3.0])),
        "flip_deg": float(rng.uniform(8.0, 25.0)),
        "tr_ms": float(rng.uniform(3.5, 6.5)),
        "snr": _loguniform(rng, 6.0, 45.0),
        "b1_left": float(rng.uniform(-0.2, 0.1)),
        "b1_right": float(rng.uniform(-0.1, 0.15)),
        "coil_bias": float(rng.uniform(0.05, 0.55)),
        "aif_scale": float(rng.uniform(0.6, 1.4)),
        "arrival_s": float(rng.uniform(5.0, 30.0)),
        "n_phases": int(rng.choice([2, 3, 4, 5, 6, 6, 6])),
        "dt_s": float(rng.uniform(30.0, 150.0)),
        "first_post_s": float(rng.uniform(30.0, 150.0)),
    }
    if rng.random() < 0.8:
        o["breast_aspect"] = (float(rng.uniform(0.7, 1.4)), float(rng.uniform(0.6, 1.5)))
    r = rng.random()
    if r < 0.3:  # supine-like: flattened, falling laterally
        o["breast_shear"] = (float(rng.uniform(-0.1, 0.15)), float(rng.uniform(0.15, 0.45)))
        o["breast_aspect"] = (float(rng.uniform(0.8, 1.2)), float(rng.uniform(0.5, 0.8)))
    elif r < 0.5:  # pendulous (prone, ptotic)
        o["breast_shear"] = (float(rng.uniform(-0.45, -0.1)), float(rng.uniform(-0.1, 0.1)))
    else:
        o["breast_shear"] = (float(rng.uniform(-0.1, 0.1)), float(rng.uniform(-0.1, 0.1)))
    if rng.random() < 0.12:
        o["implant"] = str(rng.choice(["prepec", "subpec"]))
        o["implant_ml"] = float(rng.uniform(150.0, 450.0))
    if rng.random() < 0.3:
        o["motion_mm"] = float(rng.uniform(0.5, 2.5))
        o["motion_spike_mm"] = float(rng.choice([0.0, rng.uniform(1.0, 4.0)]))
    if rng.random() < 0.3:
        o["ghosting"] = float(rng.uniform(0.01, 0.06))
    if rng.random() < 0.12:
        o["wrap"] = True
    o["lesions"] = _random_lesions(rng)
    return o


def _random_lesions(rng: np.random.Generator) -> list[dict[str, Any]]:
    n = int(rng.choice([0, 1, 1, 1, 1, 1, 2, 2, 3]))
    out: list[dict[str, Any]] = []
    for i in range(n):
        benign = (i > 0 and rng.random() < 0.25) or (n == 1 and rng.random() < 0.08)
        shape = str(
            rng.choice(
                ["round", "lobulated", "irregular", "spiculated", "rim", "non-mass"],
                p=[0.18, 0.22, 0.25, 0.17, 0.08, 0.10],
            )
        )
        if benign:
            shape = str(rng.choice(["round", "lobulated"]))
        ld = _loguniform(rng, 5.0, 55.0) if shape != "non-mass" else rng.uniform(20.0, 60.0)
        if shape == "rim":
            ld = max(ld, 15.0)
        spec: dict[str, Any] = {
            "kind": "benign" if benign else "malignant",
            "kinetics": "persistent"
            if benign
            else str(rng.choice(["washout", "plateau", "persistent"], p=[0.55, 0.35, 0.1])),
            "shape": shape,
            "ld_mm": float(ld),
        }
        if not benign:
            spec["ktrans"] = float(rng.uniform(0.12, 0.9))
        if i > 0 and rng.random() < 0.4:
            spec["near"] = 1
        out.append(spec)
    return out


def random_grid(rng: np.random.Generator) -> dict[str, Any]:
    """A random orientation and grid covering the whole thorax (crop later with crop_case).

    Parameters
    ----------
    rng:
        Random generator.

    Returns
    -------
    dict
        ``orientation``, ``shape_zyx`` and ``spacing_zyx`` for :func:`generate_case`.
    """
    orientation = str(rng.choice(["axial", "sagittal", "oblique"], p=[0.55, 0.25, 0.2]))
    inplane = float(rng.uniform(1.1, 2.0))
    thick = float(rng.uniform(1.2, 4.0))
    fov_lr, fov_ap, fov_si = rng.uniform(340, 400), rng.uniform(300, 340), rng.uniform(150, 230)
    if orientation == "sagittal":  # (LR, SI, AP): slices along L-R
        shape = (round(fov_lr / thick), round(fov_si / inplane), round(fov_ap / inplane))
        spacing = (thick, inplane, inplane)
    else:
        shape = (round(fov_si / thick), round(fov_ap / inplane), round(fov_lr / inplane))
        spacing = (thick, inplane, inplane)
    return {"orientation": orientation, "shape_zyx": shape, "spacing_zyx": spacing}


def crop_case(case: PhantomCase, box: tuple[slice, slice, slice]) -> PhantomCase:
    """A sub-volume of a case, geometry included (the origin moves with the first voxel).

    Parameters
    ----------
    case:
        The case.
    box:
        ``(z, y, x)`` slices with steps of 1.

    Returns
    -------
    PhantomCase
        Arrays cropped; origin moved; ``meta["crop_zyx"]`` records the box.
    """
    start = np.array([b.start or 0 for b in box], dtype=float)  # z, y, x
    offset = case.direction @ (start[::-1] * np.asarray(case.spacing_zyx[::-1]))
    origin = tuple(float(o) for o in np.asarray(case.origin_lps) + offset)
    meta = dict(case.meta)
    meta["crop_zyx"] = [[int(b.start or 0), int(b.stop)] for b in box]
    images = np.ascontiguousarray(case.images[(slice(None), *box)])
    meta["shape_zyx"] = list(images.shape[1:])
    return replace(
        case,
        images=images,
        breast=np.ascontiguousarray(case.breast[box]),
        tumor=np.ascontiguousarray(case.tumor[box]),
        lesion_labels=np.ascontiguousarray(case.lesion_labels[box]),
        tissue=np.ascontiguousarray(case.tissue[box]),
        origin_lps=(origin[0], origin[1], origin[2]),
        meta=meta,
    )


def _axis_of(case: PhantomCase, lps_axis: int) -> int:
    """Array axis (0 = z, 1 = y, 2 = x) closest to an LPS axis (0 = L-R, 1 = A-P, 2 = S-I)."""
    cols = np.abs(np.asarray(case.direction))  # columns: x, y, z array axes in LPS
    return 2 - int(np.argmax(cols[lps_axis]))


def random_fov(case: PhantomCase, rng: np.random.Generator, kind: str | None = None) -> PhantomCase:
    """Crop a case to a random field of view (one of ``FOV_KINDS``; random when None)."""
    if kind is None:
        kind = str(rng.choice(FOV_KINDS, p=[0.4, 0.3, 0.15, 0.15]))
    if kind not in FOV_KINDS:
        raise ParameterError(f"fov kind must be one of {FOV_KINDS}; got {kind!r}.")
    box = [slice(0, n) for n in case.breast.shape]
    ap, lr, si = _axis_of(case, 1), _axis_of(case, 0), _axis_of(case, 2)
    bre = np.argwhere(case.breast > 0)
    if kind == "thorax" or not bre.size:
        return case
    lo, hi = bre.min(0), bre.max(0) + 1
    n = case.breast.shape
    # anterior = small y (LPS y = posterior) in every orientation the phantom writes
    ant_first = float(np.asarray(case.direction)[1, 2 - ap]) > 0
    if kind == "breasts":  # from in front of the breasts to some way behind the chest wall
        keep = int(rng.uniform(40.0, 110.0) / case.spacing_zyx[ap])
        if ant_first:
            box[ap] = slice(0, min(n[ap], int(hi[ap]) + keep))
        else:
            box[ap] = slice(max(0, int(lo[ap]) - keep), n[ap])
    elif kind == "one_breast":  # half the L-R extent, the side with most breast
        mid = n[lr] // 2
        if (bre[:, lr] < mid).sum() >= (bre[:, lr] >= mid).sum():
            box[lr] = slice(0, mid + int(rng.uniform(0, 40.0) / case.spacing_zyx[lr]))
        else:
            box[lr] = slice(mid - int(rng.uniform(0, 40.0) / case.spacing_zyx[lr]), n[lr])
    else:  # cut_si: the top or bottom of the breasts outside the field of view
        cut = int(rng.uniform(0.0, 0.25) * (hi[si] - lo[si]))
        if rng.random() < 0.5:
            box[si] = slice(int(lo[si]) + cut, n[si])
        else:
            box[si] = slice(0, int(hi[si]) - cut)
    if any(b.stop - b.start < 16 for b in box):
        return case
    return crop_case(case, (box[0], box[1], box[2]))


def _smooth_field(
    shape: tuple[int, ...], rng: np.random.Generator, scale_vox: float, dtype: Any = np.float32
) -> F32:
    """Zero-mean unit-std smooth random field (low-resolution noise, linearly upsampled)."""
    from scipy import ndimage

    small = tuple(max(2, int(np.ceil(n / scale_vox)) + 1) for n in shape)
    coarse = rng.standard_normal(small).astype(np.float32)
    zoom = [n / s for n, s in zip(shape, small, strict=True)]
    out = ndimage.zoom(coarse, zoom, order=1, mode="nearest", grid_mode=True)
    out = out[tuple(slice(0, n) for n in shape)]
    if out.shape != shape:
        out = np.pad(out, [(0, n - m) for n, m in zip(shape, out.shape, strict=True)], "edge")
    out = out - out.mean()
    out /= max(float(out.std()), 1e-6)
    return np.asarray(out, dtype=dtype)


def _curve(rng: np.random.Generator, times: NDArray[Any], cls: str) -> NDArray[np.float64]:
    """A random enhancement shape (0 at P0, peak 1) sampled at the phase times."""
    t = np.maximum(np.asarray(times, dtype=float) - rng.uniform(0.0, 25.0), 0.0)
    if cls == "early":
        tau, wash = rng.uniform(5.0, 30.0), rng.uniform(0.002, 0.01)
    elif cls == "slow":
        tau, wash = rng.uniform(120.0, 500.0), 0.0
    elif cls == "washout":
        tau, wash = rng.uniform(20.0, 80.0), rng.uniform(0.0015, 0.005)
    elif cls == "plateau":
        tau, wash = rng.uniform(30.0, 110.0), rng.uniform(0.0, 0.0008)
    else:  # persistent
        tau, wash = rng.uniform(150.0, 400.0), 0.0
    g = (1.0 - np.exp(-t / tau)) * np.exp(-wash * t)
    g[np.asarray(times) < 0] = 0.0
    return g / max(float(g.max()), 1e-6)


def rerender(case: PhantomCase, rng: np.random.Generator) -> PhantomCase:
    """Re-render a case's phases from its tissue labels with a random appearance.

    Parameters
    ----------
    case:
        A generated (possibly cropped) case with its tissue label map.
    rng:
        Random generator.

    Returns
    -------
    PhantomCase
        The same truth and geometry; new ``images`` (float32, peak about 1), and
        ``meta["appearance"]`` describing the draw.
    """
    from scipy import ndimage

    tissue = case.tissue
    if tissue.shape != case.breast.shape:
        raise ParameterError("rerender needs the case's tissue label map (PhantomCase.tissue).")
    labels = np.unique(tissue)
    mode = str(rng.choice(["t1", "any"], p=[0.6, 0.4]))
    fat_bright = bool(rng.random() < 0.35)
    base = np.zeros(256, np.float32)
    spread = np.zeros(256, np.float32)
    for lab in labels:
        key = int(lab) if int(lab) < LESION0 or int(lab) == NECROSIS else -1
        if mode == "any":
            val = rng.uniform(0.0, 1.0)
        elif key == -1:  # lesions: near the glandular tissue's look
            val = _T1_LOOK[FGT] + rng.uniform(-0.1, 0.15)
        else:
            val = (_FAT_BRIGHT if fat_bright else {}).get(key, _T1_LOOK[key])
            val = val * rng.uniform(0.6, 1.5) + rng.uniform(-0.05, 0.05)
        if int(lab) == AIR:
            val = rng.uniform(0.0, 0.04) if rng.random() < 0.9 else rng.uniform(0.0, 0.3)
        base[int(lab)] = float(np.clip(val, 0.0, 1.0))
        spread[int(lab)] = rng.uniform(0.0, 0.25)
    # malignant vs benign lesion labels
    malignant = {int(m["label"]) for m in case.meta.get("lesions", []) if m.get("malignant")}
    kinetics = {int(m["label"]): str(m.get("curve_type")) for m in case.meta.get("lesions", [])}
    times = np.asarray(case.times_s, dtype=float)
    n_t = times.size
    amp = np.zeros(256, np.float32)
    curves = np.zeros((256, n_t), np.float32)
    bpe_amp = float(rng.choice([rng.uniform(0.0, 0.1), rng.uniform(0.05, 0.35)], p=[0.7, 0.3]))
    for lab in labels:
        lab_i = int(lab)
        if LESION0 <= lab_i < NECROSIS:
            # lesion i is tissue LESION0 + min(i, 19); lesions share a label beyond 19
            idx = lab_i - LESION0
            if idx in malignant or (idx not in kinetics):
                a = bpe_amp + rng.uniform(0.2, 1.3)
                cls = kinetics.get(idx, "washout")
            else:
                a = rng.uniform(0.1, 1.0)
                cls = "persistent"
        else:
            lo, hi = _ENH.get(lab_i, (0.0, 0.1))
            a = rng.uniform(lo, hi)
            if lab_i == FGT:
                a = bpe_amp
            cls = "early" if lab_i in _EARLY else "slow" if lab_i in _SLOW else "plateau"
        amp[lab_i] = a
        curves[lab_i] = _curve(rng, times, cls)
    shape = tissue.shape
    sp = np.asarray(case.spacing_zyx, dtype=float)
    tex = _smooth_field(shape, rng, float(rng.uniform(3.0, 12.0)))
    bpe_tex = np.clip(1.0 + 0.8 * _smooth_field(shape, rng, float(rng.uniform(3.0, 10.0))), 0, 3)
    s0 = np.take(base, tissue) * (1.0 + np.take(spread, tissue) * tex)
    fgt = tissue == FGT
    log_bias = _smooth_field(shape, rng, float(64.0 / sp.mean())) * float(rng.uniform(0.0, 0.5))
    bias = np.exp(log_bias).astype(np.float32)
    sigma_vox = [float(rng.uniform(0.0, 0.8)) for _ in range(3)]
    sigma_vox[0] += float(rng.uniform(0.0, 1.0))  # slice thickness beyond the spacing
    noise_sd = float(_loguniform(rng, 0.004, 0.06))
    rician = bool(rng.random() < 0.5)
    gamma = float(np.exp(rng.normal(0.0, 0.3)))
    moves = np.zeros((n_t, 3), int)
    if rng.random() < 0.2:  # inter-phase motion of about a millimetre (whole voxels)
        mm = rng.normal(0.0, 1.2, size=(n_t - 1, 3))
        moves[1:] = np.clip(np.round(mm / sp), -1, 1).astype(int)
    images = np.empty((n_t, *shape), np.float32)
    for k in range(n_t):
        img = s0 + np.take(amp * curves[:, k], tissue)
        if fgt.any():
            img[fgt] += (bpe_tex[fgt] - 1.0) * amp[FGT] * curves[FGT, k]
        img *= bias
        if any(s > 0.05 for s in sigma_vox):
            img = ndimage.gaussian_filter(img, sigma_vox, mode="nearest")
        if moves[k].any():
            img = np.roll(img, tuple(int(m) for m in moves[k]), axis=(0, 1, 2))
        if rician:
            n1 = rng.standard_normal(shape, dtype=np.float32) * noise_sd
            n2 = rng.standard_normal(shape, dtype=np.float32) * noise_sd
            img = np.sqrt((img + n1) ** 2 + n2**2)
        else:
            img = img + rng.standard_normal(shape, dtype=np.float32) * noise_sd
        images[k] = np.clip(img, 0.0, None)
    peak = float(np.percentile(images, 99.9)) or 1.0
    images = np.clip(images / peak, 0.0, 1.5) ** gamma
    meta = dict(case.meta)
    meta["appearance"] = {
        "mode": mode, "fat_bright": fat_bright, "gamma": round(gamma, 3),
        "noise_sd": round(noise_sd, 4), "rician": rician,
        "blur_vox": [round(s, 2) for s in sigma_vox],
        "bpe_amp": round(bpe_amp, 3), "motion": bool(moves.any()),
    }  # fmt: skip
    return replace(case, images=images.astype(np.float32), meta=meta)


def generate_randomised_case(
    seed: int,
    *,
    appearance: float = 0.7,
    fov: bool = True,
    grid: tuple[tuple[int, int, int], tuple[float, float, float]] | None = None,
) -> PhantomCase:
    """One domain-randomised phantom study (anatomy, acquisition, field of view, appearance).

    Parameters
    ----------
    seed:
        Random seed (the same seed gives the same study).
    appearance:
        Probability that the phases are re-rendered with a random appearance (:func:`rerender`);
        otherwise the generator's physical signal model (with its randomised parameters) stays.
    fov:
        Crop to a random field of view (:func:`random_fov`).
    grid:
        ``(shape_zyx, spacing_zyx)`` instead of the random grid (small grids for tests).

    Returns
    -------
    PhantomCase
        ``meta["randomised"]`` holds the drawn overrides.

    Raises
    ------
    ParameterError
        ``appearance`` outside [0, 1].
    """
    if not 0.0 <= appearance <= 1.0:
        raise ParameterError(f"appearance must be a probability in [0, 1]; got {appearance}.")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5244]))
    overrides = random_overrides(rng)
    drawn = random_grid(rng)
    if grid is not None:
        drawn["shape_zyx"], drawn["spacing_zyx"] = grid
    case = generate_case(seed, preset="default", **drawn, **overrides)
    if fov:
        case = random_fov(case, rng)
    if rng.random() < appearance:
        case = rerender(case, rng)
    meta = dict(case.meta)
    meta["randomised"] = {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items() if k != "lesions"
    }
    return replace(case, meta=meta)
