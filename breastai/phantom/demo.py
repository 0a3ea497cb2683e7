"""``make_demo_study``: what ``breastai demo`` calls (a DICOM study plus its ground truth)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from breastai import RESEARCH_NOTICE
from breastai.errors import ParameterError
from breastai.io.atomic import atomic_dir, check_new_dir
from breastai.phantom.dicom import LAYOUTS, write_dicom_study
from breastai.phantom.generator import ORIENTATIONS, generate_case
from breastai.phantom.nifti import write_truth
from breastai.phantom.presets import PRESETS

__all__ = ["make_demo_study"]

log = logging.getLogger(__name__)


def make_demo_study(
    out_dir: Path,
    *,
    layout: str = "ge",
    preset: str = "default",
    seed: int = 0,
    orientation: str = "axial",
    decoys: bool = True,
) -> Path:
    """Generate a phantom case and write it as a DICOM study with its ground truth.

    Layout of ``out_dir``: ``dicom/<series folders>/IM*.dcm``, ``truth/breast.nii.gz``,
    ``truth/tumor.nii.gz``, ``truth/lesions.nii.gz``, ``truth/truth.json`` and ``README.txt``.
    Everything is written into a temporary folder beside ``out_dir`` and renamed at the end, so
    an interrupted run leaves nothing behind. The same arguments give the same bytes.

    Parameters
    ----------
    out_dir:
        Folder to create (it may exist only if empty).
    layout:
        One of ``LAYOUTS``.
    preset:
        A name of ``PRESETS``.
    seed:
        Random seed of the case and of the DICOM UIDs.
    orientation:
        ``"axial"``, ``"sagittal"`` or ``"oblique"``.
    decoys:
        Also write the decoy series.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    ParameterError
        Unknown layout, preset or orientation, or a negative seed.
    OutputExistsError
        ``out_dir`` exists and is not empty.
    """
    if layout not in LAYOUTS:
        raise ParameterError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}.")
    if preset not in PRESETS:
        raise ParameterError(
            f"unknown phantom preset {preset!r}: expected one of {', '.join(sorted(PRESETS))}."
        )
    if orientation not in ORIENTATIONS:
        raise ParameterError(
            f"unknown orientation {orientation!r}: expected one of {', '.join(ORIENTATIONS)}."
        )
    if seed < 0:
        raise ParameterError(f"seed must be >= 0; got {seed}.")
    out_dir = Path(out_dir)
    check_new_dir(out_dir, force_hint=False)
    grid: dict[str, Any] = {}
    if orientation == "sagittal" and layout == "split-bilateral":
        # both breasts in the field of view: 176 sagittal slices of 2 mm
        grid = {"shape_zyx": (176, 256, 256), "spacing_zyx": (2.0, 1.3, 1.3)}
    case = generate_case(seed, preset=preset, orientation=orientation, **grid)
    with atomic_dir(out_dir, force_hint=False) as tmp:
        write_dicom_study(case, tmp / "dicom", layout=layout, decoys=decoys, seed=seed)
        write_truth(case, tmp / "truth")
        (tmp / "README.txt").write_text(
            f"breastai synthetic phantom study: preset {preset!r}, seed {seed}, layout {layout!r}, "
            f"orientation {orientation!r}.\n{RESEARCH_NOTICE} Synthetic data, not from a patient.\n"
            "dicom/: the study (DCE series plus decoys). truth/: breast, tumor and lesion label "
            "masks on the grid of the DCE phases, and truth.json (lesion diameters, volumes, "
            "curve types, phase times).\n"
            + (
                "split-bilateral: the masks cover the full grid of both stacks and the gap "
                "between them.\n"
                if layout == "split-bilateral"
                else ""
            ),
            encoding="utf-8",
        )
    log.info("demo study written to %s", out_dir)
    return out_dir
