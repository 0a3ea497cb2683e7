"""Phantom generator parameters: defaults, presets merged with overrides, range checks.

``resolve_params`` makes the generator's first random draws (always in the same order, so a seed
fixes everything downstream).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from breastai.errors import ParameterError
from breastai.phantom.presets import PRESETS
from breastai.phantom.tissues import BPE_KTRANS

__all__ = ["DEFAULT_BPE_SCALE_MM", "PARAM_NAMES", "Params", "resolve_params"]

# FGT fraction range per ACR category, and priors of the category and of the BPE level
_FGT_RANGE = {"a": (0.03, 0.09), "b": (0.12, 0.23), "c": (0.27, 0.45), "d": (0.52, 0.7)}
_FGT_PRIOR = {"a": 0.1, "b": 0.3, "c": 0.4, "d": 0.2}
_BPE_PRIOR = {"minimal": 0.3, "mild": 0.45, "moderate": 0.2, "marked": 0.05}
#: Size (mm) of the patches of enhancing gland: the scale of the random field that picks them.
DEFAULT_BPE_SCALE_MM = 25.0


@dataclass
class Params:
    """Generator parameters: a preset merged with ``generate_case`` overrides (see there)."""

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
    # share of the FGT that enhances (None: the BPE level's, tissues.BPE_FRACTION) and the size of
    # its patches (mm, the scale of the random field that picks them): small patches at a low
    # share give clumped, nodular background enhancement
    bpe_fraction: float | None = None
    bpe_scale_mm: float = DEFAULT_BPE_SCALE_MM
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


PARAM_NAMES = {f.name for f in fields(Params)} - {"extra"}


def _draw(prior: dict[str, float], u: float) -> str:
    """The category of ``prior`` (name -> probability) that the uniform draw ``u`` falls in."""
    return list(prior)[int(np.searchsorted(np.cumsum(list(prior.values())), u))]


def resolve_params(
    preset: str, n_phases: int, overrides: dict[str, Any], rng: np.random.Generator
) -> Params:
    """Merge preset and overrides, check the ranges, and draw the unset values from ``rng``."""
    if preset not in PRESETS:
        raise ParameterError(
            f"unknown phantom preset {preset!r}: expected one of {', '.join(sorted(PRESETS))}."
        )
    unknown = sorted(set(overrides) - PARAM_NAMES)
    if unknown:
        raise ParameterError(
            f"unknown generate_case parameter(s) {unknown}: expected some of "
            f"{', '.join(sorted(PARAM_NAMES))}."
        )
    merged: dict[str, Any] = {"n_phases": n_phases, **PRESETS[preset], **overrides}
    if "n_phases" in PRESETS[preset] and "n_phases" not in overrides and n_phases == 6:
        merged["n_phases"] = PRESETS[preset]["n_phases"]
    p = replace(Params(), **merged)
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
        p.fgt_category = _draw(_FGT_PRIOR, float(draws[2]))
    if p.fgt_category not in _FGT_RANGE:
        raise ParameterError(f"fgt_category must be a, b, c or d; got {p.fgt_category!r}.")
    if p.fgt_fraction is None:
        lo, hi = _FGT_RANGE[p.fgt_category]
        p.fgt_fraction = lo + (hi - lo) * float(draws[3])
    if not 0.0 <= p.fgt_fraction <= 0.85:
        raise ParameterError(f"fgt_fraction must be 0..0.85; got {p.fgt_fraction}.")
    if p.bpe is None:
        p.bpe = _draw(_BPE_PRIOR, float(draws[4]))
    if p.bpe not in BPE_KTRANS:
        raise ParameterError(f"bpe must be one of {list(BPE_KTRANS)}; got {p.bpe!r}.")
    if p.bpe_fraction is not None and not 0.0 < p.bpe_fraction <= 1.0:
        raise ParameterError(f"bpe_fraction must be within (0, 1]; got {p.bpe_fraction!r}.")
    if not p.bpe_scale_mm > 0:
        raise ParameterError(f"bpe_scale_mm must be > 0; got {p.bpe_scale_mm!r}.")
    if p.r1 is None:
        p.r1 = 4.5 if p.field_T == 1.5 else 4.2
    if p.aif_scale is None:
        p.aif_scale = 0.85 + 0.3 * float(draws[5])
    if p.lesions is None:
        p.lesions = [{"kind": "malignant", "kinetics": "washout"}]
    return p


# ------------------------------------------------------------------------------------------------
# the generator
