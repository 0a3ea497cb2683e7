"""Read a DCE study from a DICOM folder: select the DCE acquisition, group and check its phases.

dicom-rules.md §1 is the specification. Tags propose, geometry decides:

1. :func:`breastai.io.dicom_index.index_folder` reads every header (one record per frame).
2. :mod:`breastai.io.dicom_series` chooses the DCE series (study filter, ``--dce-series``,
   the exclusions and scoring of :mod:`breastai.io.dicom_select`, the winner).
3. :func:`read_dicom_study` assembles the winner across series (split series, pre + post,
   split bilateral), tries the ranked phase keys (§1.4) and accepts the first whose groups pass
   every per-phase invariant (§1.5; :mod:`breastai.io.dicom_stack`), orders the phases by their
   clock (§1.6), reads the pixels
   of each phase in sorted order (:mod:`breastai.io.dicom_pixels`) and builds one float32
   ``SimpleITK.Image`` per phase with its LPS origin, spacing and direction set explicitly. A
   series reader is never pointed at a multi-phase series.

Every decision goes to the :class:`~breastai.study.DecisionLog`; whatever cannot be assembled
without guessing raises an :class:`~breastai.errors.InputError` subclass with one sentence.
"""

# SimpleITK ships without type hints for its methods.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from breastai.errors import (
    InconsistentGeometryError,
    InputError,
    NoDCESeriesError,
    ParameterError,
)
from breastai.io.dicom_index import DURATION_SOURCES, FrameRecord, SeriesIndex, index_folder
from breastai.io.dicom_pixels import PixelReader, check_decoder
from breastai.io.dicom_select import Candidate, Unit
from breastai.io.dicom_series import (
    best_candidate,
    check_left_out_siblings,
    select_series,
)
from breastai.io.dicom_stack import (
    Assembly,
    Group,
    ReaderOptions,
    assemble_stack,
    build_image,
    check_spacing,
    orthonormal,
    slice_position,
    slice_positions,
)
from breastai.io.dicom_validate import (
    check_phase_rescale,
    check_phase_series,
    check_slice_spacing,
    clean,
    validate_records,
)
from breastai.io.times import phase_timing, since_injection
from breastai.study import DecisionLog, Phase, Study

__all__ = [
    "ReaderOptions",
    "check_decoder",
    "list_series",
    "read_dicom_study",
    "select_dce_series",
    "select_series",
]

logger = logging.getLogger(__name__)


def list_series(
    path: Path,
    *,
    study_uid: str | None = None,
    options: ReaderOptions | None = None,
    index: SeriesIndex | None = None,
) -> list[dict[str, Any]]:
    """Every series of a DICOM folder with its exclusion reason or candidate rank (no pixels).

    Used by ``breastai info`` to show the series table when no study can be assembled.
    """
    opts = options or ReaderOptions()
    if index is None:
        index = index_folder(Path(path), workers=opts.workers)
    units, cands = select_series(index, study_uid=study_uid, options=opts)
    for rank, cand in enumerate(cands, start=1):
        for u in cand.units:
            u.role = f"candidate #{rank} (score {cand.score})"
    return [u.to_dict() for u in units]


def _bilateral_split(units: Sequence[Unit], n: np.ndarray) -> list[list[Unit]]:
    """Cluster units into stacks: same in-plane offset and overlapping ranges along the normal.

    Split-bilateral acquisitions give two stacks: sagittal stacks with disjoint ranges along the
    normal, or axial/oblique half-width stacks displaced in-plane.
    """
    info = []
    for u in units:
        s = slice_positions(u.records, n)
        f = u.records[0]
        iop = f.iop if f.iop is not None else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
        xy = (
            (float(np.dot(iop[:3], f.ipp)), float(np.dot(iop[3:6], f.ipp))) if f.ipp else (0.0, 0.0)
        )
        ps = min(f.pixel_spacing) if f.pixel_spacing else 1.0
        info.append((float(s.min()), float(s.max()), xy, ps, u))
    parent = list(range(len(info)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in itertools.combinations(range(len(info)), 2):
        lo_i, hi_i, xy_i, ps, _ = info[i]
        lo_j, hi_j, xy_j, _, _ = info[j]
        same_xy = max(abs(xy_i[0] - xy_j[0]), abs(xy_i[1] - xy_j[1])) <= 0.1 * ps + 1e-3
        overlap = lo_i <= hi_j + 1e-3 and lo_j <= hi_i + 1e-3
        if same_xy and overlap:
            parent[root(i)] = root(j)
    clusters: dict[int, list[Unit]] = {}
    for i, item in enumerate(info):
        clusters.setdefault(root(i), []).append(item[4])
    return sorted(clusters.values(), key=lambda us: min(slice_positions(us[0].records, n)))


def _phase(
    index: int,
    image: sitk.Image,
    time_s: float | None,
    frames: Sequence[FrameRecord],
    label: str,
    timing: dict[str, Any],
) -> Phase:
    """A Phase whose sources are ``frames`` (the slices of ``image``, in order)."""
    return Phase(
        index=index,
        image=image,
        time_s=time_s,
        series_uid=frames[0].series_uid,
        instance_uids=tuple(f.sop_uid for f in frames),
        source_files=tuple(f.path for f in frames),
        frame_numbers=tuple(f.frame for f in frames) if any(f.frame for f in frames) else (),
        label=label,
        timing=dict(timing),
    )


def _lateral_order(
    images: Sequence[sitk.Image], frame_lists: Sequence[Sequence[FrameRecord]]
) -> tuple[list[int], str]:
    """Order two stacks right then left by their centre's LPS x (x grows to the patient's left);
    returns the order and a warning when the Laterality tags disagree with the geometry."""
    centres = [
        img.TransformContinuousIndexToPhysicalPoint([(v - 1) / 2.0 for v in img.GetSize()])[0]
        for img in images
    ]
    order = sorted(range(len(images)), key=lambda i: centres[i])
    tags = []
    for i in order:
        marks = {f.laterality.upper() for f in frame_lists[i] if f.laterality}
        tags.append(marks.pop() if len(marks) == 1 else "")
    if any(tags) and tags != ["R", "L"]:
        return order, (
            f"Laterality tags ({', '.join(t or '-' for t in tags)}) disagree with the stack "
            "positions; stacks labelled right/left by position (LPS x)"
        )
    return order, ""


def _contrast_evidence(g: Group) -> bool:
    from breastai.io.dicom_select import tokens

    if any(f.contrast_agent for f in g.frames):
        return True
    toks = set(tokens(g.frames[0].series_description))
    return "post" in toks or "+c" in g.frames[0].series_description.lower()


def read_dicom_study(
    path: Path,
    *,
    dce_series: Sequence[str] = (),
    study_uid: str | None = None,
    times: Sequence[float] | None = None,
    options: ReaderOptions | None = None,
    index: SeriesIndex | None = None,
) -> Study:
    """Read the DCE acquisition of a DICOM study folder into ordered phases.

    Parameters
    ----------
    path:
        Folder holding the study (searched recursively) or one DICOM file.
    dce_series:
        SeriesInstanceUIDs (or series numbers) of the DCE acquisition, overriding the automatic
        choice (values may also be comma-separated).
    study_uid:
        StudyInstanceUID to read when the folder holds several studies.
    times:
        Phase times in seconds, overriding the DICOM clocks (one per phase).
    options:
        :class:`ReaderOptions`.
    index:
        A header index already computed for ``path`` (avoids a second header pass).

    Returns
    -------
    Study
        Phases in acquisition order (0 = pre-contrast), float32 images in LPS, with the
        decision log and the role of every series.

    Raises
    ------
    InputError
        Empty folder, no DICOM, mixed studies or patients, damaged pixel data.
    NoDCESeriesError
        No series with at least two phases.
    AmbiguousStudyError
        Several candidates score alike (``candidates`` lists them with the ``--dce-series`` hint).
    InconsistentGeometryError
        Missing slices, irregular spacing, gantry tilt, mixed geometry.
    UnsupportedInputError
        A compressed transfer syntax without an installed decoder.
    """
    opts = options or ReaderOptions()
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; expected a folder of DICOM files.")
    if index is None:
        index = index_folder(path, workers=opts.workers)
    log = DecisionLog()
    _log_skipped_files(index, log)
    units, cands = select_series(index, dce_series=dce_series, study_uid=study_uid, options=opts)
    log.candidates = [c.to_dict(rank) for rank, c in enumerate(cands, start=1)]
    best = best_candidate(cands, units)
    _mark_candidate_roles(units, cands)
    n = _check_selection(best, units, log)
    pixels = PixelReader()
    assemblies = _assemble_stacks(best, n, pixels, opts, index)
    main = assemblies[0]
    joined = _combine_stacks(assemblies, log)
    clock_starts, phase_times = _phase_times(assemblies, times, log)
    since, injection_reference = _since_injection(main, clock_starts, times, log)
    keep = _kept_phases(main, opts, log)
    # durations, mid-phase times, times since injection (§1.6)
    kept_times = [
        None
        if phase_times[k] is None
        else float(phase_times[k] or 0.0) - float(phase_times[keep[0]] or 0.0)
        for k in keep
    ]
    timings, timing_notes = phase_timing(
        kept_times,
        [_phase_durations([f for asm in assemblies for f in asm.groups[k].frames]) for k in keep],
        injection_s=[since[k] for k in keep],
        injection_reference=injection_reference,
        reference_index=1,
        times_are_mid=main.clock == "FrameReferenceDateTime" and times is None,
    )
    log.notes.extend(timing_notes)
    phases, role_of = _build_phases(assemblies, keep, kept_times, timings, joined, n, pixels, log)
    pixels.clear()
    _mark_phase_roles(units, best, role_of)
    log.notes.append(
        f"{len(phases)} phases x {phases[0].image.GetSize()[2]} slices, spacing "
        f"{', '.join(f'{v:.3f}' for v in phases[0].image.GetSpacing())} mm"
    )
    for w in log.warnings:
        logger.warning("%s", w)
    return Study(
        phases=phases,
        source=path,
        kind="dicom",
        study_uid=best.units[0].first.study_uid or None,
        name=path.name if path.is_dir() else path.stem,
        decisions=log,
        series=[u.to_dict() for u in units],
    )


# read_dicom_study's steps, in order


def _log_skipped_files(index: SeriesIndex, log: DecisionLog) -> None:
    """One warning naming the files the header pass skipped, by kind."""
    if index.problems:
        kinds = Counter(p.kind for p in index.problems)
        log.warnings.append(
            "skipped "
            + ", ".join(f"{k} {v} file(s)" for v, k in sorted((v, k) for k, v in kinds.items()))
            + f" (first: {index.problems[0].path.name}: {index.problems[0].message[:120]})"
        )


def _mark_candidate_roles(units: Sequence[Unit], cands: Sequence[Candidate]) -> None:
    """The role of every excluded or not-selected series (the chosen ones get theirs later)."""
    for u in units:
        if u.excluded:
            u.role = f"excluded: {u.excluded}"
        elif not any(u in c.units for c in cands[:1]):
            rank = next(k for k, c in enumerate(cands, start=1) if u in c.units)
            u.role = f"candidate #{rank} (not selected, score {cands[rank - 1].score})"


def _check_selection(best: Candidate, units: Sequence[Unit], log: DecisionLog) -> np.ndarray:
    """Check the chosen series' headers (records, left-out siblings, one orientation, decoders)
    and return the slice normal."""
    validate_records([r for u in best.units for r in u.records])
    check_left_out_siblings(best, units, log)
    first = best.units[0].first
    if first.iop is None:
        raise InconsistentGeometryError("the selected series has no ImageOrientationPatient.")
    iops = {tuple(np.round(r.iop, 3)) for u in best.units for r in u.records if r.iop is not None}
    if len(iops) > 1:
        raise InconsistentGeometryError(
            f"the chosen series have {len(iops)} different orientations; choose series of one "
            "acquisition with --dce-series."
        )
    _, _, n = orthonormal(first.iop)
    mismatched = [
        r
        for u in best.units
        for r in u.records
        if r.tp_index is not None and r.tp_index_div is not None and r.tp_index != r.tp_index_div
    ]
    if mismatched:
        log.warnings.append(
            f"DimensionIndexValues disagree with TemporalPositionIndex in {len(mismatched)} "
            "frame(s) (inconsistent DimensionIndexSequence); used the TemporalPositionIndex "
            "attribute"
        )
    if any(r.ipp_source == "philips-private" for u in best.units for r in u.records):
        log.warnings.append(
            "ImagePositionPatient taken from the Philips private (2005,xx0F) sequence; it can be "
            "off by half a voxel: check the geometry against the scanner's export"
        )
    ts = {r.transfer_syntax for u in best.units for r in u.records}
    for t in sorted(ts):
        check_decoder(t)
    return n


def _assemble_stacks(
    best: Candidate, n: np.ndarray, pixels: PixelReader, opts: ReaderOptions, index: SeriesIndex
) -> list[Assembly]:
    """Group each stack of the chosen series into phases (one stack, or two split-bilateral)
    and check every phase's series, slice spacing and rescale."""
    stacks = _bilateral_split(best.units, n) if len(best.units) > 1 else [list(best.units)]
    assemblies: list[Assembly] = []
    damaged = ""
    if index.problems:
        # a skipped damaged file may be a slice of any phase: an incomplete last phase is then
        # not an aborted acquisition, and a missing slice is named with the damaged files
        opts = dataclasses.replace(opts, drop_incomplete_last=False)
        damaged = (
            f"; {len(index.problems)} file(s) were skipped as damaged or unreadable (first: "
            f"{clean(index.problems[0].path.name, 80)}) and may hold the missing slices: "
            "repair or re-export them"
        )
    for k, stack in enumerate(stacks):
        frames = [r for u in stack for r in u.records]
        numbers = list(dict.fromkeys(str(u.number) for u in stack))
        label = "series " + ",".join(numbers[:6]) + (" ..." if len(numbers) > 6 else "")
        stack_label = label if len(stacks) == 1 else f"stack {k + 1} ({label})"
        try:
            assembly = assemble_stack(frames, n, pixels, opts, stack_label)
        except InconsistentGeometryError as exc:
            if not damaged:
                raise
            raise InconsistentGeometryError(str(exc).rstrip(".") + damaged + ".") from None
        if len(assembly.groups[0].s) >= 2:
            check_slice_spacing(assembly.spacing, stack_label)
        for p_index, g in enumerate(assembly.groups):
            check_phase_series(g.frames, stack_label, p_index)
            check_phase_rescale(g.frames, stack_label, p_index, assembly.warnings)
        assemblies.append(assembly)
    return assemblies


def _combine_stacks(assemblies: Sequence[Assembly], log: DecisionLog) -> bool:
    """Check the stacks agree (at most two, same phase count), log the grouping, clock and the
    stacks' notes; True when two split-bilateral stacks share one grid (joined per phase)."""
    if len(assemblies) > 2:
        raise InconsistentGeometryError(
            f"the DCE acquisition has {len(assemblies)} separate slabs; expected one volume or "
            "two split-bilateral stacks: choose series with --dce-series."
        )
    if len(assemblies) == 2:
        a, b = assemblies
        if len(a.groups) != len(b.groups):
            raise InconsistentGeometryError(
                f"split-bilateral stacks have {len(a.groups)} and {len(b.groups)} phases; "
                "choose one side with --dce-series."
            )
        log.notes.append("split bilateral acquisition: two stacks per phase")
    main = assemblies[0]
    log.grouping_key = main.key_name
    log.clock = main.clock or "none (phase order from the grouping key)"
    for asm in assemblies:
        log.warnings.extend(asm.warnings)
        log.notes.extend(asm.notes)
    joined = False
    in_plane_split = len(assemblies) == 2 and bool(
        np.intersect1d(
            np.round(assemblies[0].groups[0].s, 1), np.round(assemblies[1].groups[0].s, 1)
        ).size
    )
    if len(assemblies) == 2 and in_plane_split:
        log.notes.append(
            "split-bilateral stacks side by side in-plane: kept as two stacks per phase"
        )
    elif len(assemblies) == 2:
        s_union = np.sort(np.concatenate([assemblies[0].groups[0].s, assemblies[1].groups[0].s]))
        try:
            spacing = check_spacing(s_union, "joined stacks")
            joined = abs(spacing - main.spacing) <= max(0.01 * main.spacing, 0.05)
        except InconsistentGeometryError:
            joined = False
        log.notes.append(
            "split-bilateral stacks share one grid: joined into one volume per phase"
            if joined
            else "split-bilateral stacks do not share one grid: kept as two stacks per phase"
        )
    return joined


def _phase_times(
    assemblies: Sequence[Assembly], times: Sequence[float] | None, log: DecisionLog
) -> tuple[list[float | None], list[float | None]]:
    """(clock start of each phase, phase times relative to the first): the user's ``times``,
    else the clock, else the nominal TemporalPositionIdentifier x TemporalResolution."""
    main = assemblies[0]
    n_phases = len(main.groups)
    clock_starts: list[float | None] = []
    for k in range(n_phases):
        starts_k = [g.time for g in (asm.groups[k] for asm in assemblies) if g.time is not None]
        clock_starts.append(min(starts_k) if starts_k else None)
    phase_times: list[float | None]
    if times is not None:
        if len(times) != n_phases:
            raise ParameterError(
                f"--times has {len(times)} values but the study has {n_phases} phases."
            )
        phase_times = [float(t) - float(times[0]) for t in times]
        log.clock = "user (--times)"
    elif all(t is not None for t in clock_starts):
        t0 = clock_starts[0]
        phase_times = [
            float(t) - float(t0) for t in clock_starts if t is not None and t0 is not None
        ]
    else:
        phase_times = _nominal_times(main.groups)
        if any(t is not None for t in phase_times):
            log.clock = "nominal (TemporalPositionIdentifier x TemporalResolution)"
    log.time_reference = "first phase" if any(t is not None for t in phase_times) else None
    return clock_starts, phase_times


def _since_injection(
    main: Assembly,
    clock_starts: Sequence[float | None],
    times: Sequence[float] | None,
    log: DecisionLog,
) -> tuple[list[float | None], str]:
    """Seconds since ContrastBolusStartTime per phase (and the reference) when the clock is an
    absolute time of day; :func:`breastai.io.times.since_injection` says why not otherwise."""
    injection = sorted(
        {r.contrast_start for g in main.groups for r in g.frames[:1] if r.contrast_start}
    )
    if len(injection) > 1 and (injection[-1] - injection[0]).total_seconds() > 1.0:
        log.warnings.append(
            f"phases state {len(injection)} different ContrastBolusStartTime values; "
            "used the earliest"
        )
    if times is not None:
        no_clock = "the phase times were given by the user (--times)"
    elif main.clock not in _ABSOLUTE_CLOCKS:
        no_clock = f"the phase clock ({log.clock}) is not an absolute time of day"
    else:
        no_clock = ""
    since, injection_reference = since_injection(
        clock_starts, injection[0].timestamp() if injection else None, reason=no_clock
    )
    if since[0] is not None:
        log.notes.append(
            "seconds since ContrastBolusStartTime: "
            + ", ".join(f"{v:.1f}" for v in since if v is not None)
        )
    return since, injection_reference


def _kept_phases(main: Assembly, opts: ReaderOptions, log: DecisionLog) -> list[int]:
    """Indices of the phases kept: duplicate pre-contrast acquisitions drop all but the last
    unless ``keep_all_pre`` (§1.3, case 20); at least two phases."""
    n_phases = len(main.groups)
    keep = list(range(n_phases))
    evidence = [_contrast_evidence(g) for g in main.groups]
    if any(evidence) and not all(evidence):
        first_post = evidence.index(True)
        consistent = all(evidence[first_post:]) and n_phases - first_post >= 2
        if first_post >= 2 and not consistent:
            log.warnings.append(
                "contrast-agent tags are inconsistent across phases; kept every phase"
            )
        elif first_post >= 2:
            log.warnings.append(
                f"{first_post} pre-contrast acquisitions before the first enhanced phase"
                + (
                    "; kept all"
                    if opts.keep_all_pre
                    else f"; kept the last one, dropped {first_post - 1}"
                )
            )
            if not opts.keep_all_pre:
                keep = list(range(first_post - 1, n_phases))
    if len(keep) < 2:
        raise NoDCESeriesError("the DCE acquisition has fewer than two usable phases.")
    return keep


def _build_phases(
    assemblies: Sequence[Assembly],
    keep: Sequence[int],
    kept_times: Sequence[float | None],
    timings: Sequence[dict[str, Any]],
    joined: bool,
    n: np.ndarray,
    pixels: PixelReader,
    log: DecisionLog,
) -> tuple[list[Phase], dict[str, list[int]]]:
    """Read the pixels of every kept phase into images (joined, or right + left stacks) and
    return the phases and, per series UID, the new phase indices it feeds."""
    main = assemblies[0]
    phases: list[Phase] = []
    role_of: dict[str, list[int]] = {}
    for new_index, k in enumerate(keep):
        per_stack = [asm.groups[k] for asm in assemblies]
        if joined:
            frames = sorted(
                [f for g in per_stack for f in g.frames], key=lambda f: slice_position(n, f)
            )
            images = [build_image(frames, pixels, main.spacing)]
            frame_lists = [frames]
            label = "bilateral (joined)"
        else:
            frame_lists = [g.frames for g in per_stack]
            images = [
                build_image(fl, pixels, asm.spacing)
                for fl, asm in zip(frame_lists, assemblies, strict=True)
            ]
            if len(assemblies) == 2:
                order, note = _lateral_order(images, frame_lists)
                if note and note not in log.warnings:
                    log.warnings.append(note)
                images = [images[i] for i in order]
                frame_lists = [frame_lists[i] for i in order]
                label = "split bilateral: R + L"
            else:
                label = ""
        for img, fl in zip(images, frame_lists, strict=True):
            _check_not_constant(img, fl, new_index)
        all_frames = [f for fl in frame_lists for f in fl]
        t_k = kept_times[new_index]
        timing = timings[new_index]
        # ``image`` and its sources are the right stack's when split (images[0])
        phase = _phase(new_index, images[0], t_k, frame_lists[0], label, timing)
        if len(images) > 1:
            sides = tuple(
                _phase(new_index, img, t_k, fl, f"split bilateral: {side} stack", timing)
                for img, fl, side in zip(images, frame_lists, ("R", "L"), strict=True)
            )
            phase = dataclasses.replace(phase, stack_phases=sides)
        phases.append(phase)
        for f in all_frames:
            role_of.setdefault(f.series_uid, [])
            if new_index not in role_of[f.series_uid]:
                role_of[f.series_uid].append(new_index)
    return phases, role_of


def _mark_phase_roles(
    units: Sequence[Unit], best: Candidate, role_of: Mapping[str, Sequence[int]]
) -> None:
    """The role of each chosen series: the phases it feeds, or dropped."""
    for u in units:
        if u.series_uid in role_of and not u.excluded:
            ks = sorted(role_of[u.series_uid])
            u.role = f"DCE phase {ks[0]}" if len(ks) == 1 else f"DCE phases {ks[0]}-{ks[-1]}"
        elif u in best.units:
            u.role = "DCE (dropped: see warnings)"


def _check_not_constant(image: sitk.Image, frames: Sequence[FrameRecord], index: int) -> None:
    """Refuse a phase whose voxels are all equal (or not finite): no image can look like that."""
    arr = sitk.GetArrayViewFromImage(image)
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(
            f"phase {index} ({len(frames)} files, first: {clean(frames[0].path.name, 80)}) holds "
            "non-finite values after rescaling; expected finite intensities: check RescaleSlope "
            "(0028,1053) and RescaleIntercept (0028,1052) or re-export the series."
        )
    if lo == hi:
        raise InputError(
            f"phase {index} ({len(frames)} files, first: {clean(frames[0].path.name, 80)}) is "
            f"constant (every voxel {lo:g}); expected an MR image: check the pixel data and "
            "RescaleSlope (0028,1053), or re-export the series."
        )


_ABSOLUTE_CLOCKS = {
    "FrameAcquisitionDateTime",
    "FrameReferenceDateTime",
    "AcquisitionDateTime",
    "ContentDateTime",
    "SeriesDateTime",
}


def _phase_durations(frames: Sequence[FrameRecord]) -> list[tuple[str, float]]:
    """The durations a phase's headers state, ``(source, median seconds)``, best source first."""
    values: dict[str, list[float]] = {}
    for f in frames:
        for name, seconds in f.durations:
            values.setdefault(name, []).append(seconds)
    return [(name, float(np.median(values[name]))) for name in DURATION_SOURCES if name in values]


def _nominal_times(groups: Sequence[Group]) -> list[float | None]:
    out: list[float | None] = []
    for k, g in enumerate(groups):
        f = g.frames[0]
        if f.temporal_resolution_ms:
            index = f.tpi if f.tpi is not None else k + 1
            out.append((index - 1) * f.temporal_resolution_ms / 1000.0)
        else:
            out.append(None)
    if any(v is None for v in out):
        return [None] * len(groups)
    base = out[0] or 0.0
    return [float(v) - base for v in out if v is not None]


def select_dce_series(
    index: SeriesIndex,
    *,
    dce_series: Sequence[str] = (),
    study_uid: str | None = None,
    options: ReaderOptions | None = None,
) -> list[str]:
    """The SeriesInstanceUIDs of the DCE acquisition, chosen from headers alone (no pixels).

    The same choice :func:`read_dicom_study` makes (exclusions, scoring, ambiguity), for callers
    that must decide which series' pixel data to fetch, e.g. over DICOMweb (``breastai.pacs``)
    from header-only files.

    Parameters
    ----------
    index:
        The header index of the folder (header-only files are enough).
    dce_series, study_uid, options:
        As for :func:`read_dicom_study`.

    Returns
    -------
    list of str
        The chosen series, in the candidate's order.

    Raises
    ------
    NoDCESeriesError
        No DCE acquisition (the message is the reader's reason).
    AmbiguousStudyError
        Several candidates score alike.
    InputError
        Empty folder, mixed studies or patients.
    """
    opts = options or ReaderOptions()
    units, cands = select_series(index, dce_series=dce_series, study_uid=study_uid, options=opts)
    best = best_candidate(cands, units)
    return list(dict.fromkeys(u.series_uid for u in best.units))
