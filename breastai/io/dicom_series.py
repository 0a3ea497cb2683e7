"""Which series of a DICOM folder form the DCE acquisition, from headers (dicom-rules.md §1.1-1.2).

The study and patient filter, the user's ``--dce-series``, the hard exclusions (with whole-series
duplicates), the scoring of :mod:`breastai.io.dicom_select`, and the winner (refused when no
candidate is strong or two score alike). :mod:`breastai.io.dicom` reads the winner's pixels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from breastai.errors import (
    AmbiguousStudyError,
    InconsistentGeometryError,
    InputError,
    NoDCESeriesError,
    ParameterError,
)
from breastai.io.dicom_index import FrameRecord, SeriesIndex
from breastai.io.dicom_select import (
    Candidate,
    Unit,
    build_units,
    exclusion_reason,
    score_candidates,
)
from breastai.io.dicom_stack import ReaderOptions
from breastai.io.dicom_validate import clean
from breastai.study import DecisionLog

__all__ = ["best_candidate", "check_left_out_siblings", "select_series", "study_records"]


def study_records(index: SeriesIndex, study_uid: str | None) -> list[FrameRecord]:
    """The records of the one study to read; InputError for an empty folder, no images, several
    studies without ``study_uid``, or several patients."""
    records = index.records
    images = [r for r in records if r.image]
    if not images:
        if index.n_files == 0:
            raise InputError(
                f"{index.root} is empty; expected a folder of DICOM files of one study."
            )
        parts = []
        if index.problems:
            parts.append(f"{len(index.problems)} damaged or unreadable")
        if index.n_non_dicom:
            parts.append(f"{index.n_non_dicom} non-DICOM")
        if index.n_dicomdir:
            parts.append(f"{index.n_dicomdir} DICOMDIR")
        non_image = len({r.path for r in records if not r.image})
        if non_image:
            parts.append(f"{non_image} non-image DICOM")
        raise InputError(
            f"No DICOM images found under {index.root} ({index.n_files} files: "
            f"{', '.join(parts) or 'none usable'}); expected the image files of one MR study."
        )
    studies = Counter(r.study_uid for r in images)
    if study_uid is not None:
        if study_uid not in studies:
            raise InputError(
                f"Study {clean(study_uid, 70)} is not in {index.root}; it holds "
                f"{', '.join(clean(u, 70) for u in sorted(studies)[:5])}."
            )
        records = [r for r in records if r.study_uid == study_uid]
        images = [r for r in images if r.study_uid == study_uid]
    elif len(studies) > 1:
        desc = (
            "; ".join(  # no PatientID here: messages and logs carry no identifying data
                f"{clean(uid, 70)} ({len({r.path for r in images if r.study_uid == uid})} files)"
                for uid in sorted(studies)[:3]
            )
            + (f"; and {len(studies) - 3} more" if len(studies) > 3 else "")
        )
        raise InputError(
            f"{index.root} holds {len(studies)} studies ({desc}); pass --study UID to choose one."
        )
    patients = {r.patient_id for r in images}
    if len(patients) > 1:
        raise InputError(
            f"Study {clean(images[0].study_uid, 70)} mixes {len(patients)} patient IDs; refusing "
            "to combine images of different patients: export one patient's study."
        )
    return records


def select_series(
    index: SeriesIndex,
    *,
    dce_series: Sequence[str] = (),
    study_uid: str | None = None,
    options: ReaderOptions | None = None,
) -> tuple[list[Unit], list[Candidate]]:
    """Exclusions and scoring: every unit with its role so far, and the ranked candidates.

    Parameters
    ----------
    index:
        The header index of the folder.
    dce_series:
        SeriesInstanceUIDs (or series numbers) chosen by the user; they form the only candidate
        and the hard exclusions are not applied to them.
    study_uid:
        StudyInstanceUID to read when the folder holds several studies.
    options:
        Reader options.

    Returns
    -------
    tuple
        ``(units, candidates)``; candidates are best first.
    """
    opts = options or ReaderOptions()
    records = study_records(index, study_uid)
    units = build_units(records)
    chosen: list[str] = []
    for item in dce_series:
        chosen.extend(v.strip() for v in str(item).split(",") if v.strip())
    if chosen:
        picked = [
            u for u in units if u.series_uid in chosen or u.key in chosen or str(u.number) in chosen
        ]
        missing = [
            c for c in chosen if not any(c in (u.series_uid, u.key, str(u.number)) for u in picked)
        ]
        if missing:
            raise ParameterError(
                f"--dce-series {', '.join(missing)} is not a series in this study; "
                f"choose from {', '.join(sorted({u.series_uid for u in units}))}."
            )
        for u in units:
            if u in picked:
                if not u.first.image:
                    raise ParameterError(f"--dce-series {u.series_uid} is not an image series.")
                u.excluded = None
            else:
                u.excluded = "not chosen (--dce-series)"
        cand = Candidate(units=picked, score=0, strong=True)
        cand.trace.append({"rule": "user choice", "points": 0, "detail": "--dce-series"})
        cand.n_positions = max(len(u.positions()) for u in picked)
        return units, [cand]
    for u in units:
        u.excluded = exclusion_reason(u, units, te_max_ms=opts.te_max_ms)
    _exclude_duplicate_series(units)
    return units, score_candidates(units)


def _exclude_duplicate_series(units: Sequence[Unit]) -> None:
    """Whole series repeated under another UID (PACS duplicates, Siemens ``ND`` copies): same
    orientation, positions, frame count and acquisition times. Keep one (not ``ND``, then the
    lowest series number) and exclude the others."""
    seen: dict[tuple[Any, ...], Unit] = {}
    candidates = [u for u in units if not u.excluded]
    candidates.sort(key=lambda u: ("ND" in u.first.image_type, u.number or 0, u.key))
    for u in candidates:
        times = tuple(
            sorted({round(r.acq_dt.timestamp(), 2) for r in u.records if r.acq_dt is not None})
        )
        if not times:
            continue
        iop = np.asarray(u.first.iop or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), dtype=float)
        ipp = np.asarray(u.first.ipp or (0.0, 0.0, 0.0), dtype=float)
        key = (
            tuple(np.round(iop, 3)),
            (round(float(iop[:3] @ ipp), 1), round(float(iop[3:] @ ipp), 1)),  # in-plane offset
            (u.first.rows, u.first.cols),
            tuple(u.positions().tolist()),
            len(u.records),
            times,
            u.first.frame_of_reference_uid,
        )
        if key in seen:
            kept = seen[key]
            u.excluded = f"duplicate of series {kept.number} (same geometry and acquisition times)"
        else:
            seen[key] = u


def _candidate_error(cands: Sequence[Candidate], units: Sequence[Unit]) -> NoDCESeriesError:
    excluded = [u for u in units if u.excluded]
    shown = "; ".join(f"series {u.number} {u.description!r}: {u.excluded}" for u in excluded[:6])
    more = f" and {len(excluded) - 6} more" if len(excluded) > 6 else ""
    if not cands:
        return NoDCESeriesError(
            "No DCE series found: every image series was excluded "
            f"({shown}{more}); pass --dce-series UID to read a series anyway."
        )
    best = cands[0]
    return NoDCESeriesError(
        f"No DCE acquisition with at least two phases found (best candidate: series "
        f"{','.join(str(u.number) for u in best.units)} {best.units[0].description!r}, "
        f"a single time point); excluded: {shown or 'none'}{more}."
    )


def check_left_out_siblings(best: Candidate, units: Sequence[Unit], log: DecisionLog) -> None:
    """A series left out of the chosen acquisition that looks like one of its phases (same
    description, matrix and study): refused when it was left out for damaged geometry values
    (it may be a missing phase), otherwise named in a warning."""
    chosen = {u.key for u in best.units}
    first = best.units[0].first
    for u in units:
        if u.key in chosen or not u.first.image or not u.description:
            continue
        other = u.first
        same = (
            other.series_description == first.series_description
            and other.study_uid == first.study_uid
            and (other.rows, other.cols) == (first.rows, first.cols)
        )
        if not same:
            continue
        why = u.excluded or "a different acquisition signature (TE, flip angle, TR, geometry)"
        if why.startswith(("derived", "localizer", "non-image", "duplicate", "not chosen")):
            continue  # left out for what it is, not for a damaged value
        if why.startswith("no usable image geometry"):
            raise InconsistentGeometryError(
                f"series {u.number} ({clean(u.description, 40)!r}) looks like a phase of the DCE "
                f"acquisition but was left out: {clean(why, 120)}; fix or re-export it, or pass "
                "--dce-series to choose the series to read."
            )
        log.warnings.append(
            f"series {u.number} ({clean(u.description, 40)!r}) has the DCE series' description "
            f"but was not used: {clean(why, 120)}"
        )


def best_candidate(cands: Sequence[Candidate], units: Sequence[Unit]) -> Candidate:
    """The winning candidate; NoDCESeriesError without a strong one, AmbiguousStudyError when
    the runner-up scores alike."""
    if not cands or not cands[0].strong:
        raise _candidate_error(cands, units)
    best = cands[0]
    if len(cands) > 1 and cands[1].strong and cands[1].score >= best.score - 1:
        raise AmbiguousStudyError(
            f"{sum(1 for c in cands if c.strong)} candidate DCE acquisitions score alike "
            f"({best.score} vs {cands[1].score}); choose one with --dce-series UID[,UID...].",
            [c.line(rank) for rank, c in enumerate(cands[:5], start=1) if c.strong],
        )
    return best
