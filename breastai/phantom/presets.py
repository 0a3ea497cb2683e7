"""Named phantom presets: the hard cases of phantom-spec.md §8 plus ``default``.

Each preset is a dict of keyword overrides for :func:`breastai.phantom.generate_case`; explicit
keyword arguments given to ``generate_case`` win over the preset.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from breastai.choices import values

__all__ = ["LAYOUTS", "ORIENTATIONS", "PRESETS", "Layout", "Orientation", "Preset"]


class Layout(StrEnum):
    """DICOM layouts of :func:`breastai.phantom.write_dicom_study`."""

    GE = "ge"
    SIEMENS = "siemens"
    PHILIPS = "philips"
    ENHANCED = "enhanced"
    PRE_POST = "pre-post"
    SPLIT_BILATERAL = "split-bilateral"


class Orientation(StrEnum):
    """Acquisition orientations of :func:`breastai.phantom.generate_case`."""

    AXIAL = "axial"
    SAGITTAL = "sagittal"
    OBLIQUE = "oblique"


class Preset(StrEnum):
    """Names of ``PRESETS``."""

    DEFAULT = "default"
    HEART_FP = "heart_fp"
    BPE_MARKED = "bpe_marked"
    TINY_LESION = "tiny_lesion"
    MULTIFOCAL = "multifocal"
    BILATERAL = "bilateral"
    IMPLANT_PREPEC = "implant_prepec"
    IMPLANT_SUBPEC = "implant_subpec"
    SINGLE_BREAST = "single_breast"
    TWO_PHASE = "two_phase"
    MOTION = "motion"
    DENSE_ISOENHANCING = "dense_isoenhancing"
    FATTY_SMALL_BREAST = "fatty_small_breast"
    NME_SEGMENTAL = "nme_segmental"
    NECROTIC_T3 = "necrotic_T3"
    B1_ASYM_3T = "b1_asym_3T"
    NO_FATSAT = "no_fatsat"
    LOW_SNR = "low_snr"
    WRAPAROUND = "wraparound"
    AXILLARY_NODES = "axillary_nodes"
    NORMAL = "normal"
    BENIGN_FA = "benign_fa"


LAYOUTS: tuple[str, ...] = values(Layout)
ORIENTATIONS: tuple[str, ...] = values(Orientation)

_MALIGNANT_WASHOUT: dict[str, Any] = {"kind": "malignant", "kinetics": "washout"}

PRESETS: dict[str, dict[str, Any]] = {
    # one malignant washout lesion, random size/shape/side, heart and aorta in the FOV, fat-sat
    "default": {},
    # H1: first post phase early (40-60 s) -> blood RE 300-400 %; left breast close to the heart
    "heart_fp": {"first_post_s": 45.0, "heart_shift_mm": 15.0, "ghosting": 0.03},
    # H2: marked symmetric BPE in dense breasts; a malignant plateau lesion barely above it
    "bpe_marked": {
        "fgt_category": "d",
        "bpe": "marked",
        "lesions": [{"kind": "malignant", "kinetics": "plateau", "shape": "irregular"}],
    },
    # H3: 5 mm round lesion near the nipple
    "tiny_lesion": {
        "lesions": [
            {
                **_MALIGNANT_WASHOUT,
                "ld_mm": 5.0,
                "shape": "round",
                "axes_ratio": (1.0, 1.0),
                "position": "nipple",
            }
        ],
    },
    # H4: 2-4 foci in one breast within 2 cm of each other
    "multifocal": {
        "lesions": [
            {**_MALIGNANT_WASHOUT, "ld_mm": 16.0, "shape": "irregular"},
            {**_MALIGNANT_WASHOUT, "ld_mm": 8.0, "shape": "round", "near": 1},
            {**_MALIGNANT_WASHOUT, "ld_mm": 6.0, "shape": "round", "near": 1},
        ],
    },
    # H4: one focus in each breast
    "bilateral": {
        "lesions": [
            {**_MALIGNANT_WASHOUT, "ld_mm": 18.0, "shape": "irregular", "laterality": "L"},
            {**_MALIGNANT_WASHOUT, "ld_mm": 9.0, "shape": "round", "laterality": "R"},
        ],
    },
    # H5: silicone implants in front of / behind the pectoralis
    "implant_prepec": {"implant": "prepec"},
    "implant_subpec": {"implant": "subpec", "fat_sat": False},
    # H6: right mastectomy (flat chest wall), lesion in the left breast
    "single_breast": {
        "breasts": "left",
        "lesions": [{**_MALIGNANT_WASHOUT, "laterality": "L"}],
    },
    # H7: pre + one post at 120 s spacing
    "two_phase": {"n_phases": 2, "dt_s": 120.0},
    # H8: 1-2 mm rigid shifts per phase, one phase at 3 mm
    "motion": {"motion_mm": 1.5, "motion_spike_mm": 3.0},
    # H9: dense breast, moderate BPE, lesion with plateau kinetics like the FGT
    "dense_isoenhancing": {
        "fgt_category": "d",
        "bpe": "moderate",
        "lesions": [
            {
                "kind": "malignant",
                "kinetics": "plateau",
                "shape": "lobulated",
                "ktrans": 0.15,
                "ve": 0.5,
            }
        ],
    },
    # H10: fatty small breasts (about 200 mL)
    "fatty_small_breast": {"fgt_category": "a", "breast_ml": (200.0, 210.0)},
    # H11: segmental clumped non-mass enhancement, no mass
    "nme_segmental": {
        "lesions": [
            {"kind": "malignant", "kinetics": "plateau", "shape": "non-mass", "ld_mm": 45.0}
        ],
    },
    # H12: 60 mm rim-enhancing lesion, necrosis 60 % of R, near the pectoralis
    "necrotic_T3": {
        "breast_ml": (900.0, 850.0),
        "lesions": [{**_MALIGNANT_WASHOUT, "ld_mm": 60.0, "shape": "rim", "position": "posterior"}],
    },
    # H13: 3 T, FA -14 % left / +3 % right, lateral fat-sat failure
    "b1_asym_3T": {
        "field_T": 3.0,
        "b1_left": -0.14,
        "b1_right": 0.03,
        "fat_sat_lateral": 0.5,
    },
    # H14: no fat suppression (fat bright; subtraction-based reading)
    "no_fatsat": {"fat_sat": False},
    # H15: SNR 8
    "low_snr": {"snr": 8.0},
    # H16: arms outside the L-R FOV fold back in
    "wraparound": {"wrap": True},
    # H17: 2-3 enhancing axillary nodes
    "axillary_nodes": {"nodes": 3},
    # H18: no lesion
    "normal": {"lesions": []},
    # H19: enhancing persistent fibroadenoma; not in the tumor mask (malignant_only)
    "benign_fa": {
        "lesions": [{"kind": "benign", "kinetics": "persistent", "shape": "round", "ld_mm": 15.0}],
        "label_policy": "malignant_only",
    },
}
