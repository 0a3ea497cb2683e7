"""Seeded synthetic bilateral breast DCE-MRI (numpy + scipy), following phantom-spec.md.

Anatomy is built in a body frame whose axes are LPS (u = x, left; v = y, posterior; w = z,
superior), centred on the field of view, with arrays ``(w, v, u)``. Axial output is that array as
it is; sagittal output is an exact transposition of it; oblique output is the same array with a
rotated direction matrix (the patient lies tilted in the scanner). No resampling is involved, so
ground truth and phases share one grid exactly.

Signal: two-compartment (fat/water) spoiled gradient echo, ``R1 = R10 + r1·C(t)``, Parker AIF and
extended Tofts kinetics per tissue class, spatially varying flip angle (B1+), receive bias (B1−),
fat-saturation efficiency, rigid inter-phase motion and Rician noise.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from breastai.errors import ParameterError
from breastai.phantom._kinetics import classify_curve, extended_tofts, parker_aif, spgr_signal
from breastai.phantom._shapes import LESION_SHAPES, LesionShape, make_shape
from breastai.phantom.presets import ORIENTATIONS, PRESETS

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = [
    "GENERATOR_VERSION",
    "LESION_SHAPES",
    "ORIENTATIONS",
    "TISSUE_LABELS",
    "PhantomCase",
    "generate_case",
]

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1"

F32 = NDArray[np.float32]
F64 = NDArray[Any]  # float arrays (float32 or float64)
U8 = NDArray[np.uint8]

# tissue label values (phantom-spec.md §7.1)
AIR, SKIN, FAT, FGT, MUSCLE, BONE, LUNG, BLOOD, MYO, VESSEL, BVESSEL, NIPPLE, NODE, IMPLANT = (
    0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14,
)  # fmt: skip
LIVER, LESION0, NECROSIS = 15, 20, 40
TISSUE_LABELS = {
    "air": AIR, "skin": SKIN, "fat": FAT, "fgt": FGT, "muscle": MUSCLE, "bone": BONE,
    "lung": LUNG, "blood_pool": BLOOD, "myocardium": MYO, "great_vessel": VESSEL,
    "breast_vessel": BVESSEL, "nipple": NIPPLE, "lymph_node": NODE, "implant": IMPLANT,
    "liver": LIVER, "lesion_1": LESION0 + 1, "necrosis": NECROSIS,
}  # fmt: skip

# T1 (ms) at 1.5 T / 3 T, relative proton density (phantom-spec.md §4.2)
_T1 = {
    "fat": (296.0, 367.0), "fgt": (1266.0, 1445.0), "malignant": (1200.0, 1500.0),
    "benign": (1150.0, 1400.0), "muscle": (1008.0, 1412.0), "myocardium": (1030.0, 1471.0),
    "blood": (1441.0, 1932.0), "skin": (850.0, 850.0), "liver": (602.0, 752.0),
    "necrosis": (1600.0, 1900.0), "node": (1100.0, 1400.0), "silicone": (1000.0, 1300.0),
    "lung": (1200.0, 1400.0),
}  # fmt: skip
_PD = {
    "fat": 1.0, "fgt": 0.85, "malignant": 0.85, "benign": 0.85, "muscle": 0.8, "myocardium": 0.8,
    "blood": 0.9, "skin": 0.7, "liver": 0.75, "necrosis": 0.9, "node": 0.8, "silicone": 0.9,
    "lung": 0.07,
}  # fmt: skip
# extended Tofts (Ktrans /min, ve, vp, delay s) per kinetic class (phantom-spec.md §4.7)
_KIN = {
    "washout": (0.5, 0.3, 0.05, 3.0), "plateau": (0.17, 0.55, 0.03, 5.0),
    "persistent": (0.05, 0.65, 0.01, 8.0), "muscle": (0.03, 0.10, 0.02, 5.0),
    "skin": (0.013, 0.3, 0.01, 5.0), "myocardium": (0.6, 0.25, 0.10, 0.0),
    "liver": (0.5, 0.25, 0.10, 10.0), "node": (0.3, 0.3, 0.05, 5.0),
    "fgt": (0.003, 0.3, 0.003, 15.0), "none": (0.0, 0.3, 0.0, 0.0),
}  # fmt: skip
_BPE = {"minimal": 0.005, "mild": 0.015, "moderate": 0.035, "marked": 0.08}
_BPE_FRACTION = {"minimal": 0.15, "mild": 0.35, "moderate": 0.6, "marked": 0.85}
_FGT_RANGE = {"a": (0.03, 0.09), "b": (0.12, 0.23), "c": (0.27, 0.45), "d": (0.52, 0.7)}
_FGT_PRIOR = {"a": 0.1, "b": 0.3, "c": 0.4, "d": 0.2}
_BPE_PRIOR = {"minimal": 0.3, "mild": 0.45, "moderate": 0.2, "marked": 0.05}
_NB = 32  # flip-angle bins of the signal look-up table


@dataclass
class _Params:
    n_phases: int = 6
    dt_s: float = 75.0
    first_post_s: float = 60.0
    arrival_s: float = 15.0
    field_T: float = 1.5
    tr_ms: float = 4.5
    te_ms: float = 2.0
    flip_deg: float = 12.0
    r1: float | None = None
    hct: float = 0.42
    fat_sat: bool = True
    fat_sat_centre: float = 0.95
    fat_sat_lateral: float = 0.8
    breasts: str = "both"  # both | left | right
    breast_ml: tuple[float, float] | None = None  # (right, left)
    fgt_category: str | None = None
    fgt_fraction: float | None = None
    bpe: str | None = None
    lesions: list[dict[str, Any]] | None = None
    label_policy: str = "malignant_only"
    implant: str | None = None  # None | prepec | subpec
    implant_ml: float = 300.0
    nodes: int = 0
    snr: float = 25.0
    noise: str = "exact"  # exact | pooled | none
    b1_left: float = -0.05
    b1_right: float = 0.03
    coil_bias: float = 0.25
    motion_mm: float = 0.0
    motion_spike_mm: float = 0.0
    wrap: bool = False
    ghosting: float = 0.0  # amplitude of cardiac ghosts along L-R (phase encoding)
    heart: bool = True
    heart_shift_mm: float = 0.0
    vessels: int = 4
    aif_scale: float | None = None
    bpe_left_factor: float = 1.0  # BPE Ktrans multiplier in the left breast (asymmetric BPE)
    # sagittal grids narrower than 250 mm left-right: full-size anatomy, FOV centred on this breast
    unilateral_fov: str | None = "left"
    # anatomy variation (breastai.phantom.randomise draws these; the defaults are the standard
    # anatomy and leave every other output unchanged)
    chest_scale: tuple[float, float] = (1.0, 1.0)  # thorax half-width, half-depth factors
    skin_mm: float = 1.5  # skin thickness (breast and thorax)
    fat_scale: float = 1.0  # subcutaneous / premammary fat thickness factor
    pec_scale: float = 1.0  # pectoralis thickness factor
    breast_sep: float = 1.0  # distance of the breast centres from the midline, factor
    breast_centre_w: float = 0.55  # breast centre along S-I, fraction of the field of view
    # (S-I over L-R aspect factor, depth factor); volume preserving; None: standard shape
    breast_aspect: tuple[float, float] | None = None
    # displacement of the breast tip as fractions of the breast's S-I and L-R semi-axes:
    # (ptosis, lateral fall); (0, 0.3) looks supine-like, (-0.3, 0) pendulous
    breast_shear: tuple[float, float] = (0.0, 0.0)
    heart_scale: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)


_PARAM_NAMES = {f.name for f in fields(_Params)} - {"extra"}


@dataclass
class PhantomCase:
    """One synthetic DCE-MRI case with exact ground truth (arrays follow the axis contract).

    Attributes
    ----------
    images:
        ``(t, z, y, x)`` float32 signal, phases in time order (0 = pre-contrast).
    times_s:
        ``(t,)`` k-space-centre time of each phase, seconds after injection start.
    breast, tumor:
        ``(z, y, x)`` uint8 0/1 masks (tumor: target lesions, necrosis included).
    lesion_labels:
        ``(z, y, x)`` uint16, 0 = none, i = lesion i (1-based, all lesions incl. benign).
    spacing_zyx, origin_lps, direction:
        Grid geometry (mm; LPS position of voxel (0,0,0); columns = x, y, z axes in LPS).
    meta:
        JSON-able truth (seed, preset, times, lesions, volumes, FGT fraction, parameters).
    tissue:
        ``(z, y, x)`` uint8 tissue labels (phantom-spec.md §7.1 table, ``TISSUE_LABELS``).
    """

    images: F32
    times_s: F64
    breast: U8
    tumor: U8
    lesion_labels: NDArray[np.uint16]
    spacing_zyx: tuple[float, float, float]
    origin_lps: tuple[float, float, float]
    direction: F64
    meta: dict[str, Any]
    tissue: U8 = field(default_factory=lambda: np.zeros((0, 0, 0), np.uint8))

    @property
    def n_phases(self) -> int:
        """Number of phases."""
        return int(self.images.shape[0])

    def _set_geometry(self, img: sitk.Image) -> sitk.Image:
        img.SetSpacing(tuple(float(s) for s in self.spacing_zyx[::-1]))  # type: ignore[no-untyped-call]
        img.SetOrigin(tuple(float(o) for o in self.origin_lps))  # type: ignore[no-untyped-call]
        img.SetDirection(tuple(float(d) for d in self.direction.ravel()))  # type: ignore[no-untyped-call]
        return img

    def phase_image(self, k: int) -> sitk.Image:
        """Phase ``k`` as a float32 ``SimpleITK.Image`` with the case geometry."""
        import SimpleITK as sitk

        if not -self.n_phases <= k < self.n_phases:
            raise ParameterError(
                f"phase index {k} is out of range: this case has {self.n_phases} phases (0.."
                f"{self.n_phases - 1}); pass one of those."
            )
        return self._set_geometry(sitk.GetImageFromArray(self.images[k], isVector=False))

    def mask_image(self, name: str) -> sitk.Image:
        """Ground truth ``"breast"`` / ``"tumor"`` (uint8) or ``"lesions"`` (uint16) as an image."""
        import SimpleITK as sitk

        arrays: dict[str, NDArray[Any]] = {
            "breast": self.breast,
            "tumor": self.tumor,
            "lesions": self.lesion_labels,
        }
        if name not in arrays:
            raise ParameterError(
                f"unknown mask {name!r}: expected one of {sorted(arrays)}; pass one of those."
            )
        return self._set_geometry(sitk.GetImageFromArray(arrays[name]))


# ------------------------------------------------------------------------------------------------
# helpers


def _ell_sdf(c0: F64, c1: F64, c2: F64, a0: float, a1: float, a2: float) -> F64:
    """Approximate SDF of an axis-aligned ellipsoid from broadcastable offset vectors (mm)."""
    q = (c0 / a0) ** 2 + (c1 / a1) ** 2 + (c2 / a2) ** 2
    rho = np.sqrt(q)
    g = np.sqrt((c0 / a0**2) ** 2 + (c1 / a1**2) ** 2 + (c2 / a2**2) ** 2)
    out: F64 = (rho - 1.0) * rho / np.maximum(g, 1e-9)
    return out


def _frac(d: F64, h: float) -> F32:
    return np.clip(0.5 - d / h, 0.0, 1.0).astype(np.float32)


def _bbox(lo: F64, hi: F64, axes: tuple[F64, F64, F64]) -> tuple[slice, slice, slice] | None:
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


def _powerlaw_field(
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


def _rot(axis: F64, angle_rad: float) -> F64:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    out: F64 = np.eye(3) + np.sin(angle_rad) * k + (1 - np.cos(angle_rad)) * (k @ k)
    return out


def _random_rotation(rng: np.random.Generator) -> F64:
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


def _longest_diameter(points: F64) -> float:
    """Exact longest distance within a point set (the report's convex-hull kernel)."""
    from breastai.report import farthest_pair

    return farthest_pair(np.asarray(points, dtype=np.float64))[0]


# ------------------------------------------------------------------------------------------------
# parameters


def _resolve(
    preset: str, n_phases: int, overrides: dict[str, Any], rng: np.random.Generator
) -> _Params:
    if preset not in PRESETS:
        raise ParameterError(
            f"unknown phantom preset {preset!r}: expected one of {', '.join(sorted(PRESETS))}."
        )
    unknown = sorted(set(overrides) - _PARAM_NAMES)
    if unknown:
        raise ParameterError(
            f"unknown generate_case parameter(s) {unknown}: expected some of "
            f"{', '.join(sorted(_PARAM_NAMES))}."
        )
    merged: dict[str, Any] = {"n_phases": n_phases, **PRESETS[preset], **overrides}
    if "n_phases" in PRESETS[preset] and "n_phases" not in overrides and n_phases == 6:
        merged["n_phases"] = PRESETS[preset]["n_phases"]
    p = replace(_Params(), **merged)
    if not 2 <= p.n_phases <= 8:
        raise ParameterError(f"n_phases must be 2..8 (phantom-spec §4.5); got {p.n_phases}.")
    if not 10.0 <= p.dt_s <= 300.0:
        raise ParameterError(f"dt_s must be 10..300 s; got {p.dt_s}.")
    if p.field_T not in (1.5, 3.0):
        raise ParameterError(f"field_T must be 1.5 or 3.0; got {p.field_T}.")
    if p.snr <= 0:
        raise ParameterError(f"snr must be > 0; got {p.snr}.")
    if p.breasts not in ("both", "left", "right"):
        raise ParameterError(f"breasts must be 'both', 'left' or 'right'; got {p.breasts!r}.")
    if p.implant not in (None, "prepec", "subpec"):
        raise ParameterError(f"implant must be None, 'prepec' or 'subpec'; got {p.implant!r}.")
    if p.noise not in ("exact", "pooled", "none"):
        raise ParameterError(f"noise must be 'exact', 'pooled' or 'none'; got {p.noise!r}.")
    if p.label_policy not in ("malignant_only", "all_lesions"):
        raise ParameterError(
            f"label_policy must be 'malignant_only' or 'all_lesions'; got {p.label_policy!r}."
        )
    if not (
        0.5 <= min(p.chest_scale) <= max(p.chest_scale) <= 1.6
        and 0.2 <= p.skin_mm <= 6.0
        and min(p.fat_scale, p.pec_scale, p.heart_scale) >= 0.2
        and max(p.fat_scale, p.pec_scale, p.heart_scale) <= 3.0
        and 0.6 <= p.breast_sep <= 1.4
        and 0.2 <= p.breast_centre_w <= 0.8
        and all(abs(x) <= 0.8 for x in p.breast_shear)
        and (p.breast_aspect is None or 0.3 <= min(p.breast_aspect) <= max(p.breast_aspect) <= 3)
    ):
        raise ParameterError(
            "anatomy knobs out of range: need chest_scale 0.5..1.6, skin_mm 0.2..6, fat/pec/heart "
            "scale 0.2..3, breast_sep 0.6..1.4, breast_centre_w 0.2..0.8, |breast_shear| <= 0.8 "
            f"and breast_aspect 0.3..3; got {p.chest_scale}, {p.skin_mm}, {p.fat_scale}/"
            f"{p.pec_scale}/{p.heart_scale}, {p.breast_sep}, {p.breast_centre_w}, "
            f"{p.breast_shear}, {p.breast_aspect}."
        )
    # random draws (always in the same order, so a seed fixes everything)
    draws = rng.random(8)
    if p.breast_ml is None:
        v = float(np.exp(np.log(350.0) + draws[0] * (np.log(900.0) - np.log(350.0))))
        p.breast_ml = (v, v * (0.9 + 0.2 * float(draws[1])))
    if p.fgt_category is None:
        cats = list(_FGT_PRIOR)
        p.fgt_category = cats[int(np.searchsorted(np.cumsum(list(_FGT_PRIOR.values())), draws[2]))]
    if p.fgt_category not in _FGT_RANGE:
        raise ParameterError(f"fgt_category must be a, b, c or d; got {p.fgt_category!r}.")
    if p.fgt_fraction is None:
        lo, hi = _FGT_RANGE[p.fgt_category]
        p.fgt_fraction = lo + (hi - lo) * float(draws[3])
    if not 0.0 <= p.fgt_fraction <= 0.85:
        raise ParameterError(f"fgt_fraction must be 0..0.85; got {p.fgt_fraction}.")
    if p.bpe is None:
        cats = list(_BPE_PRIOR)
        p.bpe = cats[int(np.searchsorted(np.cumsum(list(_BPE_PRIOR.values())), draws[4]))]
    if p.bpe not in _BPE:
        raise ParameterError(f"bpe must be one of {list(_BPE)}; got {p.bpe!r}.")
    if p.r1 is None:
        p.r1 = 4.5 if p.field_T == 1.5 else 4.2
    if p.aif_scale is None:
        p.aif_scale = 0.85 + 0.3 * float(draws[5])
    if p.lesions is None:
        p.lesions = [{"kind": "malignant", "kinetics": "washout"}]
    return p


# ------------------------------------------------------------------------------------------------
# the generator


class _Classes:
    """Kinetic/relaxation classes: row c of the signal LUT."""

    def __init__(self) -> None:
        self.names: list[str] = ["none"]
        self.t1: list[float] = [1000.0]
        self.pd: list[float] = [0.0]
        self.kin: list[tuple[str, tuple[float, float, float, float]]] = [("none", _KIN["none"])]

    def add(
        self,
        name: str,
        t1: float,
        pd: float,
        kind: str,
        kin: tuple[float, float, float, float] = _KIN["none"],
    ) -> int:
        self.names.append(name)
        self.t1.append(t1)
        self.pd.append(pd)
        self.kin.append((kind, kin))
        if len(self.names) > 250:
            raise ParameterError("too many tissue classes in one phantom (more than 250 lesions?)")
        return len(self.names) - 1


def generate_case(
    seed: int = 0,
    *,
    preset: str = "default",
    orientation: str = "axial",
    shape_zyx: tuple[int, int, int] = (96, 256, 256),
    spacing_zyx: tuple[float, float, float] = (2.0, 1.3, 1.3),
    n_phases: int = 6,
    **overrides: Any,
) -> PhantomCase:
    """Generate one seeded synthetic bilateral breast DCE-MRI case with ground truth.

    Parameters
    ----------
    seed:
        Random seed; the same seed and parameters give bit-identical output.
    preset:
        A name of ``PRESETS`` (the hard cases of phantom-spec.md §8, or ``"default"``).
    orientation:
        ``"axial"``, ``"sagittal"`` or ``"oblique"`` (see the module docstring).
    shape_zyx, spacing_zyx:
        Output grid (voxels, mm) of the arrays as written. Anatomy is scaled down when the field
        of view is smaller than about 335 × 300 mm (left-right × anterior-posterior).
    n_phases:
        Number of phases (2-8), phase 0 pre-contrast.
    **overrides:
        Generator parameters (e.g. ``fat_sat=False``, ``snr=10``, ``breast_ml=(500, 500)``,
        ``fgt_category="d"``, ``bpe="marked"``, ``lesions=[{"kind": "malignant", "ld_mm": 20,
        "shape": "spiculated", "kinetics": "washout", "laterality": "L"}]``, ``noise="none"``).

    Returns
    -------
    PhantomCase

    Raises
    ------
    ParameterError
        Unknown preset, orientation or parameter, or a value out of range.
    """
    if orientation not in ORIENTATIONS:
        raise ParameterError(
            f"unknown orientation {orientation!r}: expected one of {', '.join(ORIENTATIONS)}."
        )
    if len(shape_zyx) != 3 or min(shape_zyx) < 8 or max(shape_zyx) > 1024:
        raise ParameterError(f"shape_zyx must be 3 sizes of 8..1024 voxels; got {shape_zyx}.")
    if len(spacing_zyx) != 3 or min(spacing_zyx) <= 0.1 or max(spacing_zyx) > 20:
        raise ParameterError(f"spacing_zyx must be 3 values in (0.1, 20] mm; got {spacing_zyx}.")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6272]))
    p = _resolve(preset, n_phases, dict(overrides), rng)
    shape = (int(shape_zyx[0]), int(shape_zyx[1]), int(shape_zyx[2]))
    spacing = (float(spacing_zyx[0]), float(spacing_zyx[1]), float(spacing_zyx[2]))
    if orientation == "sagittal":  # output (LR, SI, AP) <- body (SI, AP, LR)
        bshape = (shape[1], shape[2], shape[0])
        bspacing = (spacing[1], spacing[2], spacing[0])
    else:
        bshape, bspacing = (shape[0], shape[1], shape[2]), (spacing[0], spacing[1], spacing[2])
    g = _Builder(p, bshape, bspacing, rng, sagittal=orientation == "sagittal")
    g.build()
    images, times = g.render()
    case = g.finish(images, times, orientation, shape, spacing)
    case.meta.update(seed=int(seed), preset=preset, orientation=orientation)
    return case


class _Builder:
    def __init__(
        self,
        p: _Params,
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
        self.cls = _Classes()
        self.tissue = np.zeros(shape, np.uint8)
        self.cid = np.zeros(shape, np.uint8)
        self.ffat = np.zeros(shape, np.float32)
        self.body = np.zeros(shape, np.float32)
        self.breast = np.zeros(shape, np.uint8)
        self.lesion_labels = np.zeros(shape, np.uint16)
        self.lesion_meta: list[dict[str, Any]] = []
        self.breast_info: dict[str, dict[str, Any]] = {}
        self.t1j = {k: float(np.exp(rng.normal(0, 0.05))) for k in sorted(_T1)}

    # --------------------------------------------------------------------------------------
    def t1(self, name: str) -> float:
        return _T1[name][0 if self.p.field_T == 1.5 else 1] * self.t1j[name]

    def build(self) -> None:
        p, s = self.p, self.s
        c = self.cls
        self.c_muscle = c.add("muscle", self.t1("muscle"), _PD["muscle"], "tofts", _KIN["muscle"])
        self.c_skin = c.add("skin", self.t1("skin"), _PD["skin"], "tofts", _KIN["skin"])
        self.c_blood = c.add("blood", self.t1("blood"), _PD["blood"], "blood")
        self.c_myo = c.add(
            "myocardium", self.t1("myocardium"), _PD["myocardium"], "tofts", _KIN["myocardium"]
        )
        self.c_lung = c.add("lung", self.t1("lung"), _PD["lung"], "none")
        self.c_liver = c.add("liver", self.t1("liver"), _PD["liver"], "tofts", _KIN["liver"])
        self.c_fgt = c.add("fgt", self.t1("fgt"), _PD["fgt"], "tofts", _KIN["fgt"])
        lvl = _BPE[str(p.bpe)]
        self.c_bpe = [
            c.add(f"bpe{j}", self.t1("fgt"), _PD["fgt"], "tofts", (lvl * f, 0.3, 0.01, 15.0))
            for j, f in enumerate((0.8, 1.0, 1.2))
        ]
        self.c_node = c.add("node", self.t1("node"), _PD["node"], "tofts", _KIN["node"])
        self.c_sil = c.add(
            "silicone", self.t1("silicone"), _PD["silicone"] * (0.35 if p.fat_sat else 1.0), "none"
        )
        self.c_nec = c.add("necrosis", self.t1("necrosis"), _PD["necrosis"], "none")
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
        self._lesions()
        self._nodes()

    # --------------------------------------------------------------------------------------
    def _depth2d(self) -> F64:
        """Depth below the thorax skin surface (mm) on the (v, u) plane; negative outside."""
        uu = self.u[None, :]
        vv = (self.v - self.v_tc)[:, None]
        return -_ell_sdf(uu, vv, np.zeros((1, 1)), self.A, self.B, 1e9)

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
                _ell_sdf(
                    uu - sgn * 68.0 * s, vv - 10.0 * s, np.zeros((1, 1)), 58.0 * s, 78.0 * s, 1e9
                )
                < 0
            )
            lung &= core
            t2[lung], c2[lung], f2[lung] = LUNG, self.c_lung, 0.0
        spine = _ell_sdf(uu, vv - 70.0 * s, np.zeros((1, 1)), 20.0 * s, 20.0 * s, 1e9) < 0
        para = (_ell_sdf(uu, vv - 82.0 * s, np.zeros((1, 1)), 55.0 * s, 25.0 * s, 1e9) < 0) & core
        t2[para], c2[para], f2[para] = MUSCLE, self.c_muscle, 0.0
        t2[spine], c2[spine], f2[spine] = BONE, 0, 0.6
        self.body2d = _frac(-dep, self.h)
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
                _ell_sdf(
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

    def _put(
        self,
        sl: tuple[slice, slice, slice],
        m: NDArray[np.bool_],
        tissue: int,
        cid: int,
        ffat: float,
    ) -> None:
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
            sl = _bbox(hc - ha - 2, hc + ha + 2, (self.w, self.v, self.u))
            if sl is not None:
                cw = (self.w[sl[0]] - hc[0])[:, None, None]
                cv = (self.v[sl[1]] - hc[1])[None, :, None]
                cu = (self.u[sl[2]] - hc[2])[None, None, :]
                d = _ell_sdf(cw, cv, cu, ha[0], ha[1], ha[2])
                cage = (self.dep2d[sl[1], sl[2]] > self.wdepth_map[sl[1], sl[2]])[None]
                self._put(sl, (d < 0) & cage, MYO, self.c_myo, 0.0)
                self._put(sl, (d < -10.0 * s) & cage, BLOOD, self.c_blood, 0.0)
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
                    self._put(
                        sl2, np.broadcast_to(m2, self.tissue[sl2].shape), VESSEL, self.c_blood, 0.0
                    )
            # liver in the lowest slices on the right
            lc = np.array([w0 - 35.0 * s, self.v_tc + 10.0 * s, -55.0 * s])
            la = np.array([75.0, 75.0, 85.0]) * s
            sl = _bbox(lc - la, lc + la, (self.w, self.v, self.u))
            if sl is not None:
                cw = (self.w[sl[0]] - lc[0])[:, None, None]
                cv = (self.v[sl[1]] - lc[1])[None, :, None]
                cu = (self.u[sl[2]] - lc[2])[None, None, :]
                m = (_ell_sdf(cw, cv, cu, la[0], la[1], la[2]) < 0) & (
                    self.dep2d[sl[1], sl[2]] > self.wdepth_map[sl[1], sl[2]]
                )[None]
                self._put(sl, m, LIVER, self.c_liver, 0.0)

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
        sl = _bbox(lo, hi, (self.w, self.v, self.u))
        if sl is None:
            return
        cw = (self.w[sl[0]] - wc)[:, None, None]
        cv_ = (self.v[sl[1]] - vc)[None, :, None]
        cu = (self.u[sl[2]] - uc)[None, None, :]
        if shear.any():
            depth = np.clip(-cv_ / (cv + nip_len), 0.0, 1.0)
            cw = cw - shear[0] * depth
            cu = cu - shear[2] * depth
        d = _ell_sdf(cw, cv_, cu, aw, cv, au)
        dep = self.dep2d[sl[1], sl[2]][None]
        ant = dep < self.d_fat  # anterior to the pectoralis
        inside = (d < 0) & ant
        # body fraction / tissue: fat inside, skin shell, remove thorax skin inside the breast
        bfrac = np.where(ant, _frac(d, self.h), 0.0).astype(np.float32)
        self.body[sl] = np.maximum(self.body[sl], bfrac)
        new = (d < 0) & ant & (self.tissue[sl] == AIR)
        self._put(sl, new, FAT, 0, 1.0)
        outer = (bfrac > 0) & (self.tissue[sl] == AIR)
        self._put(sl, outer, SKIN, self.c_skin, 0.0)
        shell = inside & (d > -self.d_skin)
        self._put(sl, shell, SKIN, self.c_skin, 0.0)
        oldskin = inside & (d <= -self.d_skin) & (self.tissue[sl] == SKIN)
        self._put(sl, oldskin, FAT, 0, 1.0)
        # nipple: a short cylinder on the breast tip (skin-like, part of the breast)
        rad2 = cw**2 + cu**2
        tip = -cv
        nip = (rad2 < nip_r**2) & (cv_ >= tip - nip_len) & (cv_ <= tip + nip_len)
        nip = nip & (d > -self.d_skin - 1.0)
        nip = np.broadcast_to(nip, d.shape)
        self.body[sl] = np.maximum(self.body[sl], nip.astype(np.float32))
        self._put(sl, nip, NIPPLE, self.c_skin, 0.0)
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
            di = _ell_sdf(
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
                self._put(sl, musc, MUSCLE, self.c_muscle, 0.0)
                bm &= ~(musc | ((di < self.d_pec) & (self.v[sl[1]] > ic[1])[None, :, None]))
            self._put(sl, imp & (self.tissue[sl] != AIR), IMPLANT, self.c_sil, 0.0)
            bm &= ~imp
        # FGT: thresholded 1/f^3 field with a central / retro-areolar bias
        assert p.fgt_fraction is not None
        fld = _powerlaw_field(bm.shape, self.sp, 4.2, 1.0 / 60.0, rng)
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
        bpe_f = _powerlaw_field(bm.shape, self.sp, 4.0, 1.0 / 25.0, rng)
        q = np.quantile(bpe_f[fg], 1.0 - _BPE_FRACTION[str(p.bpe)]) if fg.any() else 0.0
        enh = bpe_f > q
        var = np.digitize(
            _powerlaw_field(bm.shape, self.sp, 2.0, 1.0 / 5.0, rng), [-0.5, 0.5]
        ).astype(np.uint8)
        c_bpe = self.c_bpe
        if side == "L" and p.bpe_left_factor != 1.0:
            lvl = _BPE[str(p.bpe)] * p.bpe_left_factor
            c_bpe = [
                self.cls.add(
                    f"bpeL{j}", self.t1("fgt"), _PD["fgt"], "tofts", (lvl * f, 0.3, 0.01, 15.0)
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
            sub = _bbox(lo, hi, (ww, vv, uu))
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
        self._put(sl, m, BVESSEL, self.c_blood, 0.0)

    # --------------------------------------------------------------------------------------
    def _lesions(self) -> None:
        p, rng = self.p, self.rng
        assert p.lesions is not None
        placed: list[F64] = []
        sides = [k for k in ("R", "L") if k in self.breast_info]
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
            ld = float(ld) * self.s if self.s < 1 else float(ld)
            lat = spec.get("laterality")
            near = spec.get("near")
            if near is not None and 1 <= int(near) < i:
                lat = self.lesion_meta[int(near) - 1]["laterality"]
            if lat is None:
                lat = str(rng.choice(sides)) if sides else "R"
            if lat not in ("L", "R"):
                raise ParameterError(f"lesion laterality must be 'L' or 'R'; got {lat!r}.")
            if lat not in self.breast_info:
                if not sides:
                    log.warning("no breast to place lesion %d in; skipped", i)
                    continue
                lat = sides[0]
            info = self.breast_info[lat]
            ctr, ax = np.asarray(info["centre"]), np.asarray(info["axes"])
            kin = _KIN[kinetics]
            kt = float(spec.get("ktrans", kin[0] * rng.uniform(0.85, 1.15)))
            ve = float(spec.get("ve", kin[1]))
            vp = float(spec.get("vp", kin[2]))
            t1 = self.t1("malignant" if kind == "malignant" else "benign")
            cid = self.cls.add(f"lesion{i}", t1, _PD["malignant"], "tofts", (kt, ve, vp, kin[3]))
            ratio = spec.get("axes_ratio")
            sh = make_shape(shape, ld, rng, None if ratio is None else tuple(ratio))
            rot = _random_rotation(rng)
            r_ext = sh.extent_mm
            # placement (body frame: w, v, u)
            if near is not None and 1 <= int(near) < i:
                prev = placed[int(near) - 1]
                dirn = rng.normal(size=3)
                dirn /= np.linalg.norm(dirn)
                pos = prev + dirn * rng.uniform(8.0, 20.0) * max(self.s, 0.5)
            else:
                r_place = min(r_ext, 0.55 * ld + 1.0)
                pos = self._place(ctr, ax, r_place, spec.get("position", "gland"), lat)
            # keep the lesion inside the field of view where the grid allows it
            lo_g = np.array([self.w[0], self.v[0], self.u[0]]) + r_ext
            hi_g = np.array([self.w[-1], self.v[-1], self.u[-1]]) - r_ext
            pos = np.where(lo_g <= hi_g, np.clip(pos, lo_g, hi_g), pos)
            placed.append(pos)
            if shape == "non-mass":
                self._nme(i, cid, pos, ctr, ld, kind, kinetics, lat, kt, ve, vp)
                continue
            self._mass(i, cid, sh, rot, pos, kind, kinetics, shape, lat, kt, ve, vp)

    def _place(self, ctr: F64, ax: F64, r: float, where: str, lat: str) -> F64:
        """A lesion centre inside the breast, at least ``r`` + 3 mm from skin and pectoralis."""
        rng = self.rng
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
        shear = np.asarray(self.breast_info[lat].get("shear", (0.0, 0.0, 0.0)))
        if shear.any():  # follow the displaced breast tip (see _breast)
            off = off + shear * float(np.clip(-off[1] / (cv + 6.0 * self.s), 0.0, 1.0))
        out: F64 = ctr + off
        return out

    def _sample_points(self, sl: tuple[slice, slice, slice]) -> tuple[F64, F64, F64]:
        return self.w[sl[0]], self.v[sl[1]], self.u[sl[2]]

    def _mass(
        self,
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
        pad = r_ext + max(self.sp)
        sl = _bbox(pos - pad, pos + pad, (self.w, self.v, self.u))
        if sl is None:
            log.warning("lesion %d is outside the field of view; skipped", i)
            return
        ww, vv, uu = self._sample_points(sl)
        gw, gv, gu = np.meshgrid(ww - pos[0], vv - pos[1], uu - pos[2], indexing="ij")
        pts = np.stack([gw.ravel(), gv.ravel(), gu.ravel()], axis=1) @ rot  # lesion frame
        d = sh.sdf(pts)
        half_diag = 0.5 * float(np.linalg.norm(self.sp))
        band = np.abs(d) < 1.6 * half_diag
        frac = (d < 0).astype(np.float64)
        nsub = int(np.clip(np.ceil(max(self.sp) / 0.7), 3, 6))
        off = (np.arange(nsub) + 0.5) / nsub - 0.5
        ow, ov, ou = np.meshgrid(
            off * self.sp[0], off * self.sp[1], off * self.sp[2], indexing="ij"
        )
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
        gt &= self.body[sl] > 0
        self._apply_lesion(sl, i, cid, frac3, nec3, gt)
        # truth: analytic/Monte-Carlo volume and longest diameter of the continuous shape
        mrng = np.random.default_rng([i, 77])
        mc = mrng.uniform(-r_ext, r_ext, size=(60_000, 3))
        ins = sh.sdf(mc) < 0
        if shape in ("round", "rim"):
            vol_mm3 = 4.0 / 3.0 * np.pi * float(np.prod(sh.axes))
            ld = 2.0 * float(sh.axes.max())
        else:
            vol_mm3 = float(ins.mean()) * (2 * r_ext) ** 3
            ld = _longest_diameter(mc[ins])
        self._record(
            i, kind, kinetics, shape, lat, pos, ld, vol_mm3, gt, kt, ve, vp, necrosis=sh.necrosis
        )

    def _nme(
        self,
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
        nip = ctr + np.array([0.0, -self.breast_info[lat]["axes"][1], 0.0])
        nip = nip + np.asarray(self.breast_info[lat].get("shear", (0.0, 0.0, 0.0)))
        apex = pos + (pos - nip) / max(float(np.linalg.norm(pos - nip)), 1e-6) * ld * 0.3
        axis = nip - apex
        axis /= np.linalg.norm(axis)
        r = ld / 2.0
        sl = _bbox(pos - r - 2, pos + r + 2, (self.w, self.v, self.u))
        if sl is None:
            return
        ww, vv, uu = self._sample_points(sl)
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
        clumps = _powerlaw_field(cone.shape, self.sp, 3.0, 1.0 / 4.0, self.rng) > 0.0
        gt = cone & clumps & (self.breast[sl] > 0) & (self.tissue[sl] != SKIN)
        frac3 = gt.astype(np.float64)
        self._apply_lesion(sl, i, cid, frac3, np.zeros_like(frac3), gt)
        vox = float(np.prod(self.sp))
        pts = np.argwhere(gt) * np.asarray(self.sp) if gt.any() else np.zeros((0, 3))
        self._record(
            i,
            kind,
            kinetics,
            "non-mass",
            lat,
            pos,
            _longest_diameter(pts),
            float(gt.sum()) * vox,
            gt,
            kt,
            ve,
            vp,
            necrosis=0.0,
        )

    def _apply_lesion(
        self,
        sl: tuple[slice, slice, slice],
        i: int,
        cid: int,
        frac3: F64,
        nec3: F64,
        gt: NDArray[np.bool_],
    ) -> None:
        touched = (frac3 > 0) & (self.body[sl] > 0)
        sub_t, sub_c, sub_f = self.tissue[sl], self.cid[sl], self.ffat[sl]
        old_f = sub_f[touched].astype(np.float64)
        fr = frac3[touched]
        water_old = (1 - fr) * (1 - old_f)
        new_f = ((1 - fr) * old_f).astype(np.float32)
        nec_share = nec3[touched]
        sub_f[touched] = new_f
        lesion_wins = fr >= water_old
        cls_new = np.where(nec_share > 0.5 * fr, self.c_nec, cid).astype(np.uint8)
        cur_c = sub_c[touched]
        sub_c[touched] = np.where(lesion_wins, cls_new, cur_c)
        lab = np.where(nec3 >= 0.5, NECROSIS, LESION0 + min(i, 19)).astype(np.uint8)
        sub_t[gt] = lab[gt]
        self.lesion_labels[sl][gt] = i

    def _record(
        self,
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
        self.lesion_meta.append({
            "label": i,
            "malignant": kind == "malignant",
            "kind": kind,
            "curve_type": kinetics,
            "shape": shape,
            "laterality": lat,
            "centre_body_mm": [float(x) for x in pos],
            "longest_diameter_mm": round(float(ld), 3),
            "volume_ml": round(vol_mm3 / 1000.0, 5),
            "gt_volume_ml": round(float(gt.sum()) * float(np.prod(self.sp)) / 1000.0, 5),
            "ktrans_per_min": round(kt, 5), "ve": ve, "vp": vp,
            "necrosis_fraction_of_radius": necrosis,
        })  # fmt: skip

    def _nodes(self) -> None:
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
            sl = _bbox(pos - a - 1, pos + a + 1, (self.w, self.v, self.u))
            if sl is None:
                continue
            d = _ell_sdf(
                (self.w[sl[0]] - pos[0])[:, None, None],
                (self.v[sl[1]] - pos[1])[None, :, None],
                (self.u[sl[2]] - pos[2])[None, None, :],
                a[0],
                a[1],
                a[2],
            )
            m = (d < 0) & (self.body[sl] > 0.5)
            self._put(sl, m, NODE, self.c_node, 0.0)
            hil = (d < -0.6 * a[1]) & m
            self._put(sl, hil, NODE, 0, 1.0)

    # --------------------------------------------------------------------------------------
    def _fields(self) -> tuple[F64, NDArray[np.intp], F64, F64]:
        """Flip-angle bins (2-D), fat-sat factor (2-D), receive bias (2-D, 1-D along w)."""
        p = self.p
        uu = self.u[None, :]
        vv = self.v[:, None]
        step = 0.5 + 0.5 * np.tanh(uu / (60.0 * self.s))
        b1 = 1.0 + p.b1_right + (p.b1_left - p.b1_right) * step + 0.03 * (vv - self.v_tc) / 100.0
        alpha = p.flip_deg * b1 * np.ones_like(vv)
        a_lo, a_hi = float(alpha.min()) - 1e-6, float(alpha.max()) + 1e-6
        edges = np.linspace(a_lo, a_hi, _NB + 1)
        abin = np.clip(np.digitize(alpha, edges) - 1, 0, _NB - 1)
        centres = 0.5 * (edges[:-1] + edges[1:])
        if p.fat_sat:
            lat = np.clip((np.abs(uu) - 95.0 * self.s) / (70.0 * self.s), 0, 1)
            eta = p.fat_sat_centre - (p.fat_sat_centre - p.fat_sat_lateral) * lat**2
            kfs = 0.106 + 0.894 * (1.0 - eta) * np.ones_like(vv)
        else:
            kfs = np.ones((self.v.size, self.u.size))
        g = p.coil_bias
        lobes = np.zeros((self.v.size, self.u.size))
        for side in ("L", "R"):
            uc = (1.0 if side == "L" else -1.0) * self.u_br
            vc = self.v_tc - self.B
            lobes += np.exp(-((uu - uc) ** 2 + (vv - vc) ** 2) / (2 * (70.0 * self.s) ** 2))
        b1m = (1.0 - g) + 2 * g * lobes / max(float(lobes.max()), 1e-9)
        wz = 1.0 - 0.25 * g * (self.w / max(abs(float(self.w[0])), 1.0)) ** 2
        return centres, abin, kfs * 1.0, np.asarray(b1m[None] * wz[:, None, None])

    def render(self) -> tuple[F32, F64]:
        p = self.p
        assert p.aif_scale is not None and p.r1 is not None
        nt = p.n_phases
        times = np.array(
            [-p.dt_s / 2.0] + [p.first_post_s + (k - 1) * p.dt_s for k in range(1, nt)]
        )
        self.times = times
        tg = np.arange(0.0, float(times.max()) + 30.0, 0.5)
        # AIF with between-subject amplitude variation
        cb = parker_aif(tg, arrival_s=p.arrival_s) * p.aif_scale
        cp = cb / (1.0 - p.hct)
        ncls = len(self.cls.names)
        conc = np.zeros((ncls, nt))
        for c, (kind, (kt, ve, vp, dl)) in enumerate(self.cls.kin):
            if kind == "blood":
                curve = cb
            elif kind == "tofts":
                curve = extended_tofts(tg, cp, ktrans_per_min=kt, ve=ve, vp=vp, delay_s=dl)
            else:
                continue
            conc[c] = np.interp(np.maximum(times, 0.0), tg, curve)
            conc[c, times < 0] = 0.0
        self.conc = conc
        self.aif_at_phases = np.interp(np.maximum(times, 0.0), tg, cb) * (times >= 0)
        centres, abin, kfs, b1m = self._fields()
        t10 = np.asarray(self.cls.t1)
        pd = np.asarray(self.cls.pd)
        r1t = 1000.0 / t10[:, None] + p.r1 * conc  # (ncls, nt) 1/s
        t1t = 1000.0 / r1t
        # LUT[k][c * NB + b]
        lut = spgr_signal(
            t1t.T[:, :, None], centres[None, None, :], p.tr_ms, pd=pd[None, :, None]
        ).astype(np.float32)
        lut = lut.reshape(nt, ncls * _NB)
        te_fac = float(np.exp(-p.te_ms / 30.0))
        lut *= te_fac
        sfat = spgr_signal(self.t1("fat"), centres, p.tr_ms) * float(np.exp(-p.te_ms / 40.0))
        idx = self.cid.astype(np.uint16)
        idx *= _NB
        idx += abin.astype(np.uint16)[None]
        a_map = self.body * (1.0 - self.ffat)
        a_map *= b1m.astype(np.float32)
        f_map = self.body * self.ffat
        f_map *= (sfat[abin] * kfs).astype(np.float32)[None]
        f_map *= b1m.astype(np.float32)
        s0 = np.take(lut[0], idx)
        s0 *= a_map
        s0 += f_map
        # post-contrast phases recompute only the voxels of enhancing classes
        enh_cls = (conc.max(axis=1) > 0).astype(np.uint8)
        enh = np.flatnonzero(np.take(enh_cls, self.cid))
        idx_e = idx.ravel()[enh]
        a_e = a_map.ravel()[enh]
        f_e = f_map.ravel()[enh]
        del a_map, f_map, idx
        # noise level from the noise-free pre-contrast FGT (or muscle) signal
        ref = s0[self.tissue == FGT]
        if ref.size < 50:
            ref = s0[self.tissue == MUSCLE]
        sigma = float(ref.mean()) / p.snr if ref.size else 0.01
        self.sigma = sigma
        # rigid motion per phase (body frame, mm)
        shifts = np.zeros((nt, 3))
        if p.motion_mm > 0:
            shifts[1:] = np.clip(
                self.rng.normal(0, p.motion_mm / 2, size=(nt - 1, 3)),
                -2.0 * p.motion_mm / 1.5,
                2.0 * p.motion_mm / 1.5,
            )
            if p.motion_spike_mm > 0 and nt > 2:
                k = int(self.rng.integers(2, nt))
                dirn = self.rng.normal(size=3)
                shifts[k] = dirn / np.linalg.norm(dirn) * p.motion_spike_mm
        self.shifts = shifts
        images = np.empty((nt, *self.shape), np.float32)
        pool: tuple[F32, F32] | None = None
        if p.noise == "pooled":
            pool = (
                self.rng.standard_normal(self.shape, dtype=np.float32),
                self.rng.standard_normal(self.shape, dtype=np.float32),
            )
        n2 = np.empty(self.shape, np.float32)
        for k in range(nt):
            img = images[k]
            img[...] = s0
            if k > 0:
                img.ravel()[enh] = np.take(lut[k], idx_e) * a_e + f_e
            if np.any(shifts[k]):
                img[...] = self._shift(img, shifts[k])
            if p.ghosting > 0:
                self._ghosts(img, p.ghosting)
            if p.wrap:
                img += self._wrap_signal(float(lut[0].mean()))
            if p.noise == "none":
                continue
            if pool is None:
                self.rng.standard_normal(self.shape, dtype=np.float32, out=n2)
                n2 *= sigma
                img += n2
                np.multiply(img, img, out=img)
                self.rng.standard_normal(self.shape, dtype=np.float32, out=n2)
                n2 *= sigma
            else:
                offs = self.rng.integers(0, self.shape, size=(2, 3))
                n2[...] = np.roll(pool[0], tuple(int(o) for o in offs[0]), axis=(0, 1, 2))
                n2 *= sigma
                img += n2
                np.multiply(img, img, out=img)
                n2[...] = np.roll(pool[1], tuple(int(o) for o in offs[1]), axis=(0, 1, 2))
                n2 *= sigma
            np.multiply(n2, n2, out=n2)
            img += n2
            np.sqrt(img, out=img)
        return images, times

    def _ghosts(self, img: F32, amplitude: float) -> None:
        """Cardiac/aortic ghosts: copies of the blood-pool signal at ±FOV/4 along L-R (PE)."""
        if not hasattr(self, "_ghost_slices"):
            blood = np.isin(self.tissue, (BLOOD, MYO, VESSEL))
            ks = np.flatnonzero(blood.any(axis=(1, 2)))
            self._ghost_slices = (ks, blood[ks])
        ks, mask = self._ghost_slices
        if not ks.size:
            return
        src = img[ks] * mask
        n = self.shape[2] // 4
        img[ks] += amplitude * (np.roll(src, n, axis=2) + np.roll(src, -n, axis=2))

    def _shift(self, img: F32, mm: F64) -> F32:
        out = img
        for ax in range(3):
            vox = float(mm[ax]) / self.sp[ax]
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

    def _wrap_signal(self, level: float) -> F32:
        """Arms outside the L-R field of view, folded back in (no enhancement)."""
        if not hasattr(self, "_wrap_cache"):
            s = self.s
            fov = self.shape[2] * self.sp[2]
            uext = np.concatenate([self.u - fov, self.u + fov])
            vv = (self.v - (self.v_tc + 20.0 * s))[:, None]
            arm = np.zeros((self.v.size, uext.size), np.float32)
            for sgn in (-1.0, 1.0):
                cu = uext[None, :] - sgn * (self.A + 55.0 * s)
                arm += _frac(_ell_sdf(cu, vv, np.zeros((1, 1)), 45.0 * s, 55.0 * s, 1e9), self.h)
            folded = arm[:, : self.u.size] + arm[:, self.u.size :]
            self._wrap_cache = (folded * 0.6 * self.sigma * self.p.snr).astype(np.float32)
        return np.broadcast_to(self._wrap_cache[None], self.shape)

    # --------------------------------------------------------------------------------------
    def finish(
        self,
        images: F32,
        times: F64,
        orientation: str,
        shape: tuple[int, int, int],
        spacing: tuple[float, float, float],
    ) -> PhantomCase:
        p = self.p
        nk, nj, ni = self.shape
        origin_body = np.array([self.u[0], self.v[0], self.w[0]])  # LPS (x, y, z) of [0,0,0]
        per_col = self.breast.sum(axis=(0, 1), dtype=np.int64)
        vml = float(np.prod(spacing)) / 1000.0
        self.side_volumes = {
            "L": round(float(per_col[self.u > 0].sum()) * vml, 3),
            "R": round(float(per_col[self.u <= 0].sum()) * vml, 3),
        }
        arrays: dict[str, NDArray[Any]] = {
            "breast": self.breast,
            "tissue": self.tissue,
            "lesions": self.lesion_labels,
        }
        rot = np.eye(3)
        if orientation == "sagittal":

            def tr(a: NDArray[Any]) -> NDArray[Any]:
                return np.ascontiguousarray(a[..., ::-1, :, ::-1].swapaxes(-1, -3).swapaxes(-1, -2))

            images = tr(images)
            arrays = {k: tr(v) for k, v in arrays.items()}
            direction = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
            origin = np.array([self.u[-1], self.v[0], self.w[-1]])
        else:
            direction = np.eye(3)
            origin = origin_body
            if orientation == "oblique":
                rot = _rot(np.array([1.0, 0.0, 0.0]), np.deg2rad(15.0)) @ _rot(
                    np.array([0.0, 0.0, 1.0]), np.deg2rad(10.0)
                )
                direction = rot @ direction
                origin = rot @ origin
        tumor_ids = [
            m["label"]
            for m in self.lesion_meta
            if m["malignant"] or p.label_policy == "all_lesions"
        ]
        lesions = arrays["lesions"]
        tumor = (
            np.isin(lesions, tumor_ids).astype(np.uint8)
            if tumor_ids
            else np.zeros(lesions.shape, np.uint8)
        )
        for m in self.lesion_meta:
            c = np.asarray(m.pop("centre_body_mm"))
            m["centre_lps"] = [round(float(x), 3) for x in rot @ c[[2, 1, 0]]]
            sig = self._lesion_curve(m["label"], images, arrays["lesions"], arrays["tissue"])
            m["measured_curve"] = list(classify_curve(sig, times))
            m["mean_signal"] = [round(float(x), 3) for x in sig]
        vox_ml = float(np.prod(spacing)) / 1000.0
        breast = arrays["breast"]
        tissue = arrays["tissue"]
        nb = int(breast.sum())
        fgt = int(((tissue == FGT) & (breast > 0)).sum())
        side_vol: dict[str, float] = {}
        for side, info in self.breast_info.items():
            side_vol[side] = info["axes"][0]  # placeholder replaced below
        # per-side breast volume: x (LPS) of the breast voxels
        meta: dict[str, Any] = {
            "generator": "breastai.phantom", "generator_version": GENERATOR_VERSION,
            "times_s": [round(float(t), 3) for t in times],
            "phase_interval_s": p.dt_s, "first_post_s": p.first_post_s,
            "bolus_arrival_s": p.arrival_s,
            "field_T": p.field_T, "tr_ms": p.tr_ms, "te_ms": p.te_ms, "flip_deg": p.flip_deg,
            "fat_sat": p.fat_sat, "r1": p.r1, "hct": p.hct, "aif_scale": round(p.aif_scale or 1, 4),
            "breasts": p.breasts, "breast_ml_requested": list(p.breast_ml or ()),
            "breast_volume_ml": round(nb * vox_ml, 3),
            "breast_volume_ml_by_side": self.side_volumes,
            "aif_cb_mM_at_phases": [round(float(x), 4) for x in self.aif_at_phases],
            "fgt_category": p.fgt_category, "fgt_fraction_target": round(p.fgt_fraction or 0, 4),
            "fgt_fraction": round(fgt / nb, 4) if nb else 0.0,
            "bpe": p.bpe, "bpe_left_factor": p.bpe_left_factor, "implant": p.implant,
            "nodes": p.nodes, "snr": p.snr,
            "noise": p.noise, "noise_sigma": self.sigma, "anatomy_scale": round(self.s, 4),
            "b1_left": p.b1_left, "b1_right": p.b1_right, "coil_bias": p.coil_bias,
            "motion_mm_per_phase": [[round(float(x), 3) for x in row[[2, 1, 0]]]
                                    for row in self.shifts],
            "wrap": p.wrap, "ghosting": p.ghosting, "label_policy": p.label_policy,
            "lesions": self.lesion_meta,
            "tumor_labels": tumor_ids,
            "shape_zyx": list(shape), "spacing_zyx": list(spacing),
            "tissue_labels": TISSUE_LABELS,
            "research_notice": "Research use only, not a medical device. Synthetic data.",
        }  # fmt: skip
        del side_vol, nk, nj, ni
        return PhantomCase(
            images=images, times_s=times, breast=breast, tumor=tumor,
            lesion_labels=lesions.astype(np.uint16), spacing_zyx=spacing,
            origin_lps=(float(origin[0]), float(origin[1]), float(origin[2])),
            direction=direction, meta=meta, tissue=tissue,
        )  # fmt: skip

    def _lesion_curve(
        self, label: int, images: F32, lesions: NDArray[Any], tissue: NDArray[Any]
    ) -> F64:
        m = (lesions == label) & (tissue != NECROSIS)
        if not m.any():
            return np.zeros(images.shape[0])
        from scipy import ndimage

        core = ndimage.binary_erosion(m, iterations=1)
        if core.sum() >= 4:
            m = core
        return np.array([float(images[k][m].mean()) for k in range(images.shape[0])])
