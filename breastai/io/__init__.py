"""Readers and writers: DICOM studies, NIfTI phases and masks, DICOM-SEG.

``load_study`` is the one entry point for study input (a DICOM folder, a folder of per-phase
NIfTI files, or one 4-D NIfTI); ``read_image`` reads one image or a DICOM-SEG as a label image;
``write_image`` writes one image atomically.
"""

# SimpleITK ships without type hints for its methods.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import SimpleITK as sitk

from breastai.errors import InputError, ParameterError, UnsupportedInputError
from breastai.io.nifti import IMAGE_SUFFIXES, find_phase_files, read_nifti_study, write_image
from breastai.study import Study

if TYPE_CHECKING:
    from breastai.io.dicom_index import SeriesIndex

__all__ = [
    "INFO_SCHEMA",
    "TIMING_KEYS",
    "index_study",
    "load_study",
    "read_image",
    "study_info",
    "write_image",
]

INFO_SCHEMA = "breastai.info/1"
TIMING_KEYS = (
    "duration_s",
    "duration_source",
    "mid_time_s",
    "time_since_injection_s",
    "mid_time_since_injection_s",
    "time_since_first_post_s",
    "injection_reference",
)

_READER_OPTIONS = {
    "te_max_ms",
    "min_phase_interval_s",
    "tie_s",
    "keep_all_pre",
    "drop_incomplete_last",
    "workers",
}


def _is_image_file(path: Path) -> bool:
    return any(path.name.lower().endswith(s) for s in IMAGE_SUFFIXES)


def _is_nifti_input(path: Path) -> bool:
    """A NIfTI/NRRD/MHA file, or a folder of per-phase image files (else: DICOM)."""
    if path.is_file() and _is_image_file(path):
        return True
    return path.is_dir() and bool(find_phase_files(path)[0])


def index_study(path: Path, *, workers: int | None = None) -> SeriesIndex | None:
    """The DICOM header index of a study path that :func:`load_study` would read as DICOM, to
    pass to :func:`load_study` and :func:`breastai.io.dicom.list_series` (one header pass for
    both); None for a missing path or NIfTI input.

    Raises
    ------
    InputError
        As the header pass of :func:`load_study` (e.g. a folder without DICOM files).
    """
    path = Path(path)
    if not path.exists() or _is_nifti_input(path):
        return None
    from breastai.io.dicom_index import index_folder

    return index_folder(path, workers=workers)


def load_study(
    path: Path,
    *,
    dce_series: Sequence[str] = (),
    study_uid: str | None = None,
    times: Sequence[float] | None = None,
    index: SeriesIndex | None = None,
    **options: Any,
) -> Study:
    """Load a DCE study: a DICOM folder, a folder of per-phase NIfTI files, or a 4-D NIfTI.

    Parameters
    ----------
    path:
        The study folder or file.
    dce_series:
        DICOM only: SeriesInstanceUIDs (or series numbers) of the DCE acquisition, overriding
        the automatic choice.
    study_uid:
        DICOM only: the StudyInstanceUID to read when the folder holds several studies.
    times:
        Phase times in seconds (required for meaningful times with NIfTI input; overrides the
        DICOM clocks).
    index:
        DICOM only: the header index of ``path`` already computed (:func:`index_study`).
    **options:
        DICOM reader options (:class:`breastai.io.dicom.ReaderOptions`): ``te_max_ms``,
        ``min_phase_interval_s``, ``tie_s``, ``keep_all_pre``, ``drop_incomplete_last``,
        ``workers``.

    Returns
    -------
    Study
        Phases in acquisition order (0 = pre-contrast), float32 images in LPS.

    Raises
    ------
    InputError
        (and its subclasses) with one sentence saying what was expected and found.
    ParameterError
        An unknown option.
    """
    unknown = sorted(set(options) - _READER_OPTIONS)
    if unknown:
        raise ParameterError(
            f"unknown load_study option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(_READER_OPTIONS))}."
        )
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; expected a study folder or a 4-D NIfTI file.")
    if _is_nifti_input(path):
        return read_nifti_study(path, times=times)
    from breastai.io.dicom import ReaderOptions, read_dicom_study

    return read_dicom_study(
        path,
        dce_series=dce_series,
        study_uid=study_uid,
        times=times,
        options=ReaderOptions(**options),
        index=index,
    )


def _geometry(image: sitk.Image) -> dict[str, Any]:
    return {
        "size": [int(v) for v in image.GetSize()],
        "spacing": [round(float(v), 6) for v in image.GetSpacing()],
        "origin": [round(float(v), 6) for v in image.GetOrigin()],
        "direction": [round(float(v), 8) for v in image.GetDirection()],
    }


def study_info(study: Study) -> dict[str, Any]:
    """The JSON-able description of a study printed by ``breastai info --json``.

    The schema (``"schema": "breastai.info/1"``) is documented in docs/info-json.md: top-level
    ``phases`` (one object per phase: index, label, size/spacing [x, y, z], origin, direction
    (LPS, row-major 3x3), time_s, the optional timing keys of ``TIMING_KEYS``, series_uid,
    n_slices, stacks), ``series`` and ``decisions``.
    """
    from breastai import RESEARCH_NOTICE

    phases = []
    for phase in study.phases:
        entry: dict[str, Any] = {"index": phase.index, "label": phase.label}
        entry.update(_geometry(phase.image))
        entry["time_s"] = None if phase.time_s is None else round(float(phase.time_s), 3)
        for key in TIMING_KEYS:  # optional in schema breastai.info/1 (null when unknown)
            entry[key] = phase.timing.get(key)
        entry["series_uid"] = phase.series_uid
        entry["n_slices"] = int(phase.image.GetSize()[2])
        entry["n_files"] = len(set(phase.source_files))
        entry["stacks"] = [_geometry(s) for s in phase.stacks]
        phases.append(entry)
    return {
        "schema": INFO_SCHEMA,
        "notice": RESEARCH_NOTICE,
        "source": str(study.source),
        "kind": study.kind,
        "study_uid": study.study_uid,
        "name": study.name,
        "reference_phase": study.reference_index,
        "phases": phases,
        "series": study.series,
        "decisions": study.decisions.to_dict(),
    }


def read_image(path: Path) -> sitk.Image:
    """Read one image (NIfTI, NRRD, MHA) or a DICOM-SEG as a label image, geometry in LPS.

    A DICOM-SEG becomes a uint16 label image whose value k marks segment k (overlapping segments:
    the highest number wins), on the SEG's own grid.

    Raises
    ------
    InputError
        Missing or unreadable file.
    UnsupportedInputError
        A format breastai cannot read.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; expected an image file.")
    if _is_image_file(path):
        from breastai.io.image_check import read_checked

        return read_checked(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise InputError(
            f"Could not read {path}: {exc.strerror or exc}; check the file's permissions."
        ) from None
    if head[128:132] != b"DICM":
        raise UnsupportedInputError(
            f"{path} is neither NIfTI/NRRD/MHA nor DICOM; expected a mask image or a DICOM-SEG."
        )
    from breastai.io.seg import read_seg_labels

    return read_seg_labels(path)
