"""Seeded synthetic bilateral breast DCE-MRI (numpy + scipy), following phantom-spec.md.

Anatomy is built in a body frame whose axes are LPS (u = x, left; v = y, posterior; w = z,
superior), centred on the field of view, with arrays ``(w, v, u)``. Axial output is that array as
it is; sagittal output is an exact transposition of it; oblique output is the same array with a
rotated direction matrix (the patient lies tilted in the scanner). No resampling is involved, so
ground truth and phases share one grid exactly.

Signal: two-compartment (fat/water) spoiled gradient echo, ``R1 = R10 + r1·C(t)``, Parker AIF and
extended Tofts kinetics per tissue class, spatially varying flip angle (B1+), receive bias (B1−),
fat-saturation efficiency, rigid inter-phase motion and Rician noise.

This module holds the entry point and the output grid; the parts live in ``params`` (parameters
and their first random draws), ``anatomy`` (thorax, heart, breasts, FGT, implants, nodes),
``lesions`` (masses and non-mass enhancement), ``signal`` (kinetics, fields, motion, noise) and
``tissues`` (label values, relaxation and kinetic tables). The random draws happen in that
order, so a seed fixes the case bit for bit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from breastai.errors import ParameterError
from breastai.phantom._grid import rotation
from breastai.phantom._kinetics import classify_curve
from breastai.phantom._shapes import LESION_SHAPES
from breastai.phantom.anatomy import Anatomy
from breastai.phantom.lesions import add_lesions
from breastai.phantom.lesions import longest_diameter as _longest_diameter  # noqa: F401 (tests)
from breastai.phantom.params import DEFAULT_BPE_SCALE_MM, resolve_params
from breastai.phantom.presets import ORIENTATIONS
from breastai.phantom.signal import Rendered, render
from breastai.phantom.tissues import FGT, LESION0, NECROSIS, SKIN, TISSUE_LABELS

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = [  # FGT, LESION0, SKIN: label values re-exported from tissues
    "FGT",
    "GENERATOR_VERSION",
    "LESION0",
    "LESION_SHAPES",
    "ORIENTATIONS",
    "SKIN",
    "TISSUE_LABELS",
    "PhantomCase",
    "generate_case",
]

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1"

F32 = NDArray[np.float32]
F64 = NDArray[Any]  # float arrays (float32 or float64)
U8 = NDArray[np.uint8]


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
    p = resolve_params(preset, n_phases, dict(overrides), rng)
    shape = (int(shape_zyx[0]), int(shape_zyx[1]), int(shape_zyx[2]))
    spacing = (float(spacing_zyx[0]), float(spacing_zyx[1]), float(spacing_zyx[2]))
    if orientation == "sagittal":  # output (LR, SI, AP) <- body (SI, AP, LR)
        bshape = (shape[1], shape[2], shape[0])
        bspacing = (spacing[1], spacing[2], spacing[0])
    else:
        bshape, bspacing = (shape[0], shape[1], shape[2]), (spacing[0], spacing[1], spacing[2])
    anatomy = Anatomy(p, bshape, bspacing, rng, sagittal=orientation == "sagittal")
    anatomy.build()
    add_lesions(anatomy)
    anatomy.add_nodes()
    case = _finish(anatomy, render(anatomy), orientation, shape, spacing)
    case.meta.update(seed=int(seed), preset=preset, orientation=orientation)
    return case


def _finish(
    a: Anatomy,
    r: Rendered,
    orientation: str,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
) -> PhantomCase:
    """Output grid (axial, sagittal transposition or oblique direction), truth and metadata."""
    p = a.p
    images, times = r.images, r.times
    origin_body = np.array([a.u[0], a.v[0], a.w[0]])  # LPS (x, y, z) of [0,0,0]
    per_col = a.breast.sum(axis=(0, 1), dtype=np.int64)
    vml = float(np.prod(spacing)) / 1000.0
    side_volumes = {
        "L": round(float(per_col[a.u > 0].sum()) * vml, 3),
        "R": round(float(per_col[a.u <= 0].sum()) * vml, 3),
    }
    arrays: dict[str, NDArray[Any]] = {
        "breast": a.breast,
        "tissue": a.tissue,
        "lesions": a.lesion_labels,
    }
    rot = np.eye(3)
    if orientation == "sagittal":

        def tr(x: NDArray[Any]) -> NDArray[Any]:
            return np.ascontiguousarray(x[..., ::-1, :, ::-1].swapaxes(-1, -3).swapaxes(-1, -2))

        images = tr(images)
        arrays = {k: tr(v) for k, v in arrays.items()}
        direction = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
        origin = np.array([a.u[-1], a.v[0], a.w[-1]])
    else:
        direction = np.eye(3)
        origin = origin_body
        if orientation == "oblique":
            rot = rotation(np.array([1.0, 0.0, 0.0]), np.deg2rad(15.0)) @ rotation(
                np.array([0.0, 0.0, 1.0]), np.deg2rad(10.0)
            )
            direction = rot @ direction
            origin = rot @ origin
    tumor_ids = [
        m["label"] for m in a.lesion_meta if m["malignant"] or p.label_policy == "all_lesions"
    ]
    lesions = arrays["lesions"]
    tumor = (
        np.isin(lesions, tumor_ids).astype(np.uint8)
        if tumor_ids
        else np.zeros(lesions.shape, np.uint8)
    )
    for m in a.lesion_meta:
        c = np.asarray(m.pop("centre_body_mm"))
        m["centre_lps"] = [round(float(x), 3) for x in rot @ c[[2, 1, 0]]]
        sig = _lesion_curve(m["label"], images, arrays["lesions"], arrays["tissue"])
        m["measured_curve"] = list(classify_curve(sig, times))
        m["mean_signal"] = [round(float(x), 3) for x in sig]
    vox_ml = float(np.prod(spacing)) / 1000.0
    breast = arrays["breast"]
    tissue = arrays["tissue"]
    nb = int(breast.sum())
    fgt = int(((tissue == FGT) & (breast > 0)).sum())
    meta: dict[str, Any] = {
        "generator": "breastai.phantom", "generator_version": GENERATOR_VERSION,
        "times_s": [round(float(t), 3) for t in times],
        "phase_interval_s": p.dt_s, "first_post_s": p.first_post_s,
        "bolus_arrival_s": p.arrival_s,
        "field_T": p.field_T, "tr_ms": p.tr_ms, "te_ms": p.te_ms, "flip_deg": p.flip_deg,
        "fat_sat": p.fat_sat, "r1": p.r1, "hct": p.hct, "aif_scale": round(p.aif_scale or 1, 4),
        "breasts": p.breasts, "breast_ml_requested": list(p.breast_ml or ()),
        "breast_volume_ml": round(nb * vox_ml, 3),
        "breast_volume_ml_by_side": side_volumes,
        "aif_cb_mM_at_phases": [round(float(x), 4) for x in r.aif_at_phases],
        "fgt_category": p.fgt_category, "fgt_fraction_target": round(p.fgt_fraction or 0, 4),
        "fgt_fraction": round(fgt / nb, 4) if nb else 0.0,
        "bpe": p.bpe, "bpe_left_factor": p.bpe_left_factor, "implant": p.implant,
        "nodes": p.nodes, "snr": p.snr,
        "noise": p.noise, "noise_sigma": r.sigma, "anatomy_scale": round(a.s, 4),
        "b1_left": p.b1_left, "b1_right": p.b1_right, "coil_bias": p.coil_bias,
        "motion_mm_per_phase": [[round(float(x), 3) for x in row[[2, 1, 0]]]
                                for row in r.shifts],
        "wrap": p.wrap, "ghosting": p.ghosting, "label_policy": p.label_policy,
        "lesions": a.lesion_meta,
        "tumor_labels": tumor_ids,
        "shape_zyx": list(shape), "spacing_zyx": list(spacing),
        "tissue_labels": TISSUE_LABELS,
        "research_notice": "Research use only, not a medical device. Synthetic data.",
    }  # fmt: skip
    # stated only where not the default, so default phantoms keep their truth.json
    if p.bpe_fraction is not None or p.bpe_scale_mm != DEFAULT_BPE_SCALE_MM:
        meta["bpe_fraction"], meta["bpe_scale_mm"] = p.bpe_fraction, p.bpe_scale_mm
    return PhantomCase(
        images=images, times_s=times, breast=breast, tumor=tumor,
        lesion_labels=lesions.astype(np.uint16), spacing_zyx=spacing,
        origin_lps=(float(origin[0]), float(origin[1]), float(origin[2])),
        direction=direction, meta=meta, tissue=tissue,
    )  # fmt: skip


def _lesion_curve(label: int, images: F32, lesions: NDArray[Any], tissue: NDArray[Any]) -> F64:
    m = (lesions == label) & (tissue != NECROSIS)
    if not m.any():
        return np.zeros(images.shape[0])
    from scipy import ndimage

    core = ndimage.binary_erosion(m, iterations=1)
    if core.sum() >= 4:
        m = core
    return np.array([float(images[k][m].mean()) for k in range(images.shape[0])])
