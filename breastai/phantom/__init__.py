"""Seeded synthetic breast DCE-MRI phantom with exact ground truth (tests, demo, training data).

Research use only, not a medical device. The generator uses numpy and scipy only; the writers use
SimpleITK (NIfTI) and pydicom (DICOM). Names are imported lazily, so importing
``breastai.phantom.presets`` (the CLI's choices) does not load numpy.

Public API: ``generate_case``, ``PhantomCase``, ``write_dicom_study``, ``write_nifti_phases``,
``write_truth``, ``write_training_case``, ``make_demo_study``, ``PRESETS``, ``LAYOUTS``,
``ORIENTATIONS`` and the kinetics helpers ``parker_aif``, ``extended_tofts``, ``spgr_signal``,
``classify_curve``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from breastai.phantom._kinetics import (
        classify_curve,
        extended_tofts,
        parker_aif,
        spgr_signal,
    )
    from breastai.phantom._shapes import LESION_SHAPES
    from breastai.phantom.demo import make_demo_study
    from breastai.phantom.dicom import write_dicom_study
    from breastai.phantom.generator import (
        GENERATOR_VERSION,
        TISSUE_LABELS,
        PhantomCase,
        generate_case,
    )
    from breastai.phantom.nifti import (
        case_id,
        write_nifti_phases,
        write_training_case,
        write_truth,
    )
    from breastai.phantom.presets import (
        LAYOUTS,
        ORIENTATIONS,
        PRESETS,
        Layout,
        Orientation,
        Preset,
    )

_LAZY = {
    "classify_curve": "breastai.phantom._kinetics",
    "extended_tofts": "breastai.phantom._kinetics",
    "parker_aif": "breastai.phantom._kinetics",
    "spgr_signal": "breastai.phantom._kinetics",
    "LESION_SHAPES": "breastai.phantom._shapes",
    "make_demo_study": "breastai.phantom.demo",
    "write_dicom_study": "breastai.phantom.dicom",
    "GENERATOR_VERSION": "breastai.phantom.generator",
    "TISSUE_LABELS": "breastai.phantom.generator",
    "PhantomCase": "breastai.phantom.generator",
    "generate_case": "breastai.phantom.generator",
    "case_id": "breastai.phantom.nifti",
    "write_nifti_phases": "breastai.phantom.nifti",
    "write_training_case": "breastai.phantom.nifti",
    "write_truth": "breastai.phantom.nifti",
    "LAYOUTS": "breastai.phantom.presets",
    "ORIENTATIONS": "breastai.phantom.presets",
    "PRESETS": "breastai.phantom.presets",
    "Layout": "breastai.phantom.presets",
    "Orientation": "breastai.phantom.presets",
    "Preset": "breastai.phantom.presets",
}

__all__ = [
    "GENERATOR_VERSION",
    "LAYOUTS",
    "LESION_SHAPES",
    "ORIENTATIONS",
    "PRESETS",
    "TISSUE_LABELS",
    "Layout",
    "Orientation",
    "PhantomCase",
    "Preset",
    "case_id",
    "classify_curve",
    "extended_tofts",
    "generate_case",
    "make_demo_study",
    "parker_aif",
    "spgr_signal",
    "write_dicom_study",
    "write_nifti_phases",
    "write_training_case",
    "write_truth",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'breastai.phantom' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
