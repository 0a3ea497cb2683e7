"""Assembly of one DICOM stack into phases (dicom-rules.md §1.4-1.6): slice geometry, the
ranked phase keys, the phase clocks, the per-phase invariants, and the float32 image of a phase.

:mod:`breastai.io.dicom` calls :func:`assemble_stack` for each stack of the chosen series and
:func:`build_image` for each phase; the pixels come from :mod:`breastai.io.dicom_pixels`.
Header records only until :func:`build_image`. Axis contract: see :mod:`breastai.study`.
"""

# SimpleITK ships without type hints for its methods.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from breastai.errors import InconsistentGeometryError, NoDCESeriesError
from breastai.io.dicom_index import FrameRecord
from breastai.io.dicom_pixels import PixelReader, new_volume
from breastai.io.dicom_validate import clean

__all__ = [
    "Assembly",
    "Group",
    "ReaderOptions",
    "assemble_stack",
    "build_image",
    "check_spacing",
    "orthonormal",
    "slice_position",
    "slice_positions",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReaderOptions:
    """Options of :func:`read_dicom_study` (documented defaults).

    Attributes
    ----------
    te_max_ms:
        Series with a longer echo time are not T1-weighted DCE (§1.1 rule 4).
    min_phase_interval_s:
        A clock is accepted only if it spans at least ``(phases - 1) * min_phase_interval_s``.
    tie_s:
        Phase start times closer than this count as ties (the clock is rejected).
    keep_all_pre:
        Keep every pre-contrast acquisition instead of only the last one (§1.3).
    drop_incomplete_last:
        Drop an incomplete last phase with a warning (True) or refuse (False).
    workers:
        Processes for the header pass (None: automatic).
    """

    te_max_ms: float = 20.0
    min_phase_interval_s: float = 5.0
    tie_s: float = 2.0
    keep_all_pre: bool = False
    drop_incomplete_last: bool = True
    workers: int | None = None


class _KeyRejected(Exception):
    """A grouping key failed an invariant that a better key may satisfy."""


@dataclass
class Group:
    """Frames of one phase (one stack), sorted along the slice normal."""

    key: Hashable
    frames: list[FrameRecord]
    s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    time: float | None = None


@dataclass
class Assembly:
    groups: list[Group]
    key_name: str
    clock: str
    spacing: float
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# geometry


def orthonormal(iop: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    row = np.asarray(iop[:3], dtype=float)
    col = np.asarray(iop[3:6], dtype=float)
    nr, nc = float(np.linalg.norm(row)), float(np.linalg.norm(col))
    if abs(nr - 1) > 1e-2 or abs(nc - 1) > 1e-2 or abs(float(np.dot(row, col))) > 1e-2:
        raise InconsistentGeometryError(
            f"ImageOrientationPatient {list(iop)} is not two orthogonal unit vectors; "
            "the headers are damaged."
        )
    row = row / nr
    col = col - np.dot(col, row) * row
    col = col / float(np.linalg.norm(col))
    return row, col, np.cross(row, col)


def slice_position(n: np.ndarray, f: FrameRecord) -> float:
    """Position of a frame along the slice normal (s = n . IPP); frames here always have IPP."""
    return float(np.dot(n, f.ipp)) if f.ipp is not None else math.nan


def slice_positions(frames: Sequence[FrameRecord], n: np.ndarray) -> np.ndarray:
    return np.asarray([slice_position(n, f) for f in frames if f.ipp is not None])


def check_spacing(s: np.ndarray, label: str) -> float:
    """Median slice spacing of sorted positions; raise on missing slices or irregular spacing."""
    if len(s) < 2:
        return 0.0
    ds = np.diff(s)
    med = float(np.median(ds))
    if med <= 0:
        raise InconsistentGeometryError(f"{label}: slices do not advance along the normal.")
    tol = max(0.01 * med, 0.05)
    bad = np.flatnonzero(np.abs(ds - med) > tol)
    if bad.size == 0:
        return med
    ratios = ds[bad] / med
    if np.all(np.abs(ratios - np.round(ratios)) * med <= tol) and np.all(np.round(ratios) >= 2):
        where = ", ".join(
            f"after slice index {int(i)} (s={s[i]:.2f} mm, gap {ds[i]:.2f} mm)" for i in bad[:5]
        )
        missing = int(np.sum(np.round(ratios) - 1))
        raise InconsistentGeometryError(
            f"{label}: {missing} slice(s) missing {where} where the spacing is {med:.3f} mm; "
            "re-export the complete series (breastai does not guess missing slices)."
        )
    raise InconsistentGeometryError(
        f"{label}: slice spacing is not uniform (median {med:.3f} mm, found "
        f"{float(ds.min()):.3f}-{float(ds.max()):.3f} mm at slice index {int(bad[0])}); "
        "resample the series to a regular grid first."
    )


def _check_tilt(frames: Sequence[FrameRecord], n: np.ndarray, label: str) -> None:
    if len(frames) < 2 or frames[0].ipp is None or frames[-1].ipp is None:
        return
    d = np.asarray(frames[-1].ipp) - np.asarray(frames[0].ipp)
    norm = float(np.linalg.norm(d))
    if norm == 0:
        return
    angle = math.degrees(math.acos(min(1.0, abs(float(np.dot(d, n))) / norm)))
    if angle > 0.5:
        raise InconsistentGeometryError(
            f"{label}: the slice stack is sheared by {angle:.2f} degrees from the slice normal "
            "(gantry tilt); breastai does not read tilted stacks: resample to an orthogonal "
            "grid first."
        )


# --------------------------------------------------------------------------------------------
# grouping keys


def _series_key(getter: Callable[[FrameRecord], Any]) -> Callable[[FrameRecord], Any]:
    return lambda r: (r.series_uid, getter(r))


def _tp_index(r: FrameRecord) -> int | None:
    return r.tp_index if r.tp_index is not None else r.tp_index_div


def _keys(frames: Sequence[FrameRecord]) -> list[tuple[str, Callable[[FrameRecord], Any]]]:
    keys: list[tuple[str, Callable[[FrameRecord], Any]]] = []
    if any(_tp_index(f) is not None for f in frames):
        keys.append(("TemporalPositionIndex", _series_key(_tp_index)))
        if any(f.dim_extra for f in frames):
            keys.append(
                (
                    "TemporalPositionIndex + other dimensions",
                    _series_key(lambda r: (_tp_index(r), r.dim_extra)),
                )
            )
    if any(f.dim_extra for f in frames):
        keys.append(("DimensionIndexValues (non-spatial)", _series_key(lambda r: r.dim_extra)))
    if any(f.tpi is not None for f in frames):
        keys.append(("TemporalPositionIdentifier", _series_key(lambda r: r.tpi)))
    if any(f.ge_run is not None for f in frames):
        keys.append(("GE RawDataRunNumber", _series_key(lambda r: r.ge_run)))
    if len({f.series_uid for f in frames}) > 1:
        keys.append(("separate series", lambda r: r.series_uid))
    if any(f.acquisition_number is not None for f in frames):
        keys.append(("AcquisitionNumber", _series_key(lambda r: r.acquisition_number)))
    return keys


def _clock_seconds(r: FrameRecord, name: str) -> float | None:
    if name == "ContentTime":
        return r.content_dt.timestamp() if r.content_dt else None
    if name == "TriggerTime":
        return r.trigger_time_ms / 1000.0 if r.trigger_time_ms is not None else None
    if name == "AcquisitionTime":
        return r.acq_dt.timestamp() if r.acq_dt else None
    if name == "MRImageDynamicScanBeginTime":
        return r.philips_dyn_time_s
    if name == "FrameAcquisitionDateTime":
        return r.frame_acq_dt.timestamp() if r.frame_acq_dt else None
    return None


def _cluster_clock(
    frames: Sequence[FrameRecord], name: str, n_expected: int
) -> dict[int, int] | None:
    """Cluster a clock with a 2 s merge gap; None unless it gives ``n_expected`` clusters."""
    values = [_clock_seconds(f, name) for f in frames]
    if any(v is None for v in values):
        return None
    distinct = sorted({float(v) for v in values if v is not None})
    cluster_of: dict[float, int] = {}
    cid = 0
    for k, v in enumerate(distinct):
        if k and v - distinct[k - 1] > 2.0:
            cid += 1
        cluster_of[v] = cid
    if cid + 1 != n_expected:
        return None
    return {
        id(f): cluster_of[float(v)] for f, v in zip(frames, values, strict=True) if v is not None
    }


def _position_major(
    frames: Sequence[FrameRecord],
    n: np.ndarray,
    order: Callable[[FrameRecord], Any],
    distinct: Callable[[FrameRecord], Any] | None = None,
) -> dict[int, int] | None:
    by_pos: dict[float, list[FrameRecord]] = {}
    for f in frames:
        by_pos.setdefault(round(slice_position(n, f), 2), []).append(f)
    counts = {len(v) for v in by_pos.values()}
    if len(counts) != 1 or min(counts) < 2:
        return None
    if distinct is not None and any(
        len({distinct(f) for f in members}) != len(members) for members in by_pos.values()
    ):
        return None
    out: dict[int, int] = {}
    for members in by_pos.values():
        for k, f in enumerate(sorted(members, key=order)):
            out[id(f)] = k
    return out


def _partition(frames: Sequence[FrameRecord], key: Callable[[FrameRecord], Any]) -> list[Group]:
    groups: dict[Any, list[FrameRecord]] = {}
    for f in frames:
        groups.setdefault(key(f), []).append(f)
    return [Group(k, v) for k, v in groups.items()]


def _natural(value: Any) -> tuple[Any, ...]:
    """A sort key for mixed key values (numbers before strings, None first)."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, tuple):
        return (1, 0, tuple(_natural(v) for v in value))
    if isinstance(value, int | float):
        return (1, float(value), "")
    return (2, 0, str(value))


# --------------------------------------------------------------------------------------------
# clocks (§1.6)


_CLOCKS_GENERIC: tuple[tuple[str, Callable[[FrameRecord], float | None], bool], ...] = (
    (
        "FrameAcquisitionDateTime",
        lambda r: r.frame_acq_dt.timestamp() if r.frame_acq_dt else None,
        False,
    ),
    (
        "FrameReferenceDateTime",
        lambda r: r.frame_ref_dt.timestamp() if r.frame_ref_dt else None,
        False,
    ),
    ("AcquisitionDateTime", lambda r: r.acq_dt.timestamp() if r.acq_dt else None, False),
)
_CLOCKS_PHILIPS = (
    (
        "TriggerTime (Philips dynamic start)",
        lambda r: r.trigger_time_ms / 1000.0 if r.trigger_time_ms is not None else None,
        False,
    ),
    ("MRImageDynamicScanBeginTime", lambda r: r.philips_dyn_time_s, False),
)
_CLOCKS_LATE = (
    ("ContentDateTime", lambda r: r.content_dt.timestamp() if r.content_dt else None, False),
    (
        "TriggerTime",
        lambda r: r.trigger_time_ms / 1000.0 if r.trigger_time_ms is not None else None,
        True,
    ),
    ("SeriesDateTime", lambda r: r.series_dt.timestamp() if r.series_dt else None, False),
)


def _choose_clock(
    groups: Sequence[Group], opts: ReaderOptions
) -> tuple[str, list[float] | None, list[str]]:
    """Pick the first acceptable clock; returns (name, per-group start seconds, notes)."""
    philips = any(f.is_philips for g in groups for f in g.frames[:1])
    clocks = list(_CLOCKS_GENERIC) + (list(_CLOCKS_PHILIPS) if philips else []) + list(_CLOCKS_LATE)
    if philips:
        clocks = [c for c in clocks if c[0] != "TriggerTime"]
    notes: list[str] = []
    n = len(groups)
    for name, getter, constant in clocks:
        starts: list[float] = []
        spreads: list[float] = []
        ok = True
        for g in groups:
            values = [getter(f) for f in g.frames]
            real = [v for v in values if v is not None]
            if len(real) != len(values) or not real:
                ok = False
                break
            starts.append(min(real))
            spreads.append(max(real) - min(real))
        if not ok:
            continue
        starts = _unwrap(starts)
        order = sorted(starts)
        gaps = np.diff(order) if n > 1 else np.zeros(0)
        if n > 1 and (float(gaps.min()) < opts.tie_s):
            notes.append(
                f"clock {name} rejected: phases start within {opts.tie_s:g} s of each other"
            )
            continue
        if n > 1 and order[-1] - order[0] < (n - 1) * opts.min_phase_interval_s:
            notes.append(
                f"clock {name} rejected: spans {order[-1] - order[0]:.1f} s "
                f"< {(n - 1) * opts.min_phase_interval_s:g} s"
            )
            continue
        if constant and max(spreads) > 0.5:
            notes.append(f"clock {name} rejected: varies within a phase (slice timing)")
            continue
        if n > 1 and max(spreads) >= float(gaps.min()):
            notes.append(f"clock {name} rejected: varies within a phase more than between phases")
            continue
        return name, starts, notes
    return "", None, notes


def _unwrap(starts: list[float]) -> list[float]:
    """Midnight rollover for clocks whose date was missing (times on the placeholder day)."""
    if starts and max(starts) - min(starts) > 43200.0:
        low = min(starts)
        return [v + 86400.0 if v - low < 43200.0 else v for v in starts]
    return starts


# --------------------------------------------------------------------------------------------
# assembly of one stack


def _drop_duplicates(
    group: Group, n: np.ndarray, pixels: PixelReader, label: str, warnings: list[str]
) -> None:
    """Sort a group along n; drop identical duplicates; reject the key on conflicting repeats."""
    frames = sorted(group.frames, key=lambda f: slice_position(n, f))
    s = slice_positions(frames, n)
    keep: list[FrameRecord] = []
    keep_s: list[float] = []
    runs: list[list[int]] = []
    for i in range(len(frames)):
        if runs and abs(s[i] - s[runs[-1][0]]) < 1e-3 * max(1.0, abs(s[i])) + 1e-3:
            runs[-1].append(i)
        else:
            runs.append([i])
    repeated = [r for r in runs if len(r) > 1]
    if repeated:
        centre = float(np.median(s))
        for run in sorted(repeated, key=lambda r: abs(s[r[0]] - centre)):
            digests = {pixels.digest(frames[i]) for i in run}
            if len(digests) > 1:
                raise _KeyRejected(
                    f"repeated slice position s={s[run[0]]:.2f} mm with different pixel data "
                    f"in {label}"
                )
    for run in runs:
        keep.append(frames[run[0]])
        keep_s.append(float(s[run[0]]))
        if len(run) > 1:
            names = ", ".join(frames[i].path.name for i in run[1:])
            warnings.append(
                f"dropped {len(run) - 1} duplicate slice(s) at s={s[run[0]]:.2f} mm ({names})"
            )
    group.frames = keep
    group.s = np.asarray(keep_s)


def assemble_stack(
    frames: list[FrameRecord], n: np.ndarray, pixels: PixelReader, opts: ReaderOptions, label: str
) -> Assembly:
    """Find the phase key for one stack of frames (same orientation) and check §1.5."""
    rejections: list[str] = []
    pending: InconsistentGeometryError | None = None
    seen: set[frozenset[frozenset[int]]] = set()
    single_phase = False
    positions = len({round(slice_position(n, f), 2) for f in frames})
    candidates: list[tuple[str, Callable[[], list[Group] | None]]] = []
    for name, key in _keys(frames):
        candidates.append((name, lambda key=key: _partition(frames, key)))  # type: ignore[misc]
    n_expected = len(frames) // positions if positions else 0
    philips = any(f.is_philips for f in frames[:1])
    clock_names = ["FrameAcquisitionDateTime"] if any(f.frame for f in frames) else []
    clock_names += (
        ["TriggerTime", "MRImageDynamicScanBeginTime"]
        if philips
        else ["ContentTime", "TriggerTime", "AcquisitionTime"]
    )
    for cname in clock_names:

        def _clock_groups(cname: str = cname) -> list[Group] | None:
            mapping = _cluster_clock(frames, cname, n_expected)
            return None if mapping is None else _partition(frames, lambda r: mapping[id(r)])

        candidates.append((f"clock {cname} (2 s clusters)", _clock_groups))

    def _pm(
        order: Callable[[FrameRecord], Any], distinct: Callable[[FrameRecord], Any] | None = None
    ) -> Callable[[], list[Group] | None]:
        def build() -> list[Group] | None:
            mapping = _position_major(frames, n, order, distinct)
            return None if mapping is None else _partition(frames, lambda r: mapping[id(r)])

        return build

    if any(f.acq_dt for f in frames):
        candidates.append(
            (
                "position-major AcquisitionTime",
                _pm(
                    lambda r: (r.acq_dt.timestamp() if r.acq_dt else 0.0, r.instance_number or 0),
                    lambda r: r.acq_dt,
                ),
            )
        )
    if not philips:
        candidates.append(
            (
                "position-major InstanceNumber (low confidence)",
                _pm(lambda r: (r.instance_number or 0, r.frame)),
            )
        )
    for name, build in candidates:
        groups = build()
        if groups is None:
            rejections.append(f"{name}: not applicable")
            continue
        signature = frozenset(frozenset(id(f) for f in g.frames) for g in groups)
        if signature in seen:
            continue
        seen.add(signature)
        try:
            assembly = _check_groups(groups, n, pixels, opts, name, label)
        except _KeyRejected as exc:
            rejections.append(f"{name}: {exc}")
            if str(exc).startswith("one phase"):
                single_phase = True
            continue
        except InconsistentGeometryError as exc:
            if pending is None:
                pending = exc
            rejections.append(f"{name}: {exc}")
            continue
        assembly.notes[:0] = [f"key rejected: {r}" for r in rejections]
        return assembly
    if pending is not None:
        raise pending
    if single_phase:
        raise NoDCESeriesError(
            f"{label} holds a single phase ({positions} slices); a DCE study needs at least two "
            "phases sharing one geometry: pass the other phases' series with --dce-series, or "
            "check that the export is complete."
        )
    raise InconsistentGeometryError(
        f"{label}: no grouping key splits its {len(frames)} frames into phases with one "
        f"consistent geometry ({'; '.join(rejections[-3:])}); pass --dce-series to choose series."
    )


def _check_groups(
    groups: list[Group],
    n: np.ndarray,
    pixels: PixelReader,
    opts: ReaderOptions,
    key_name: str,
    label: str,
) -> Assembly:
    warnings: list[str] = []
    notes: list[str] = []
    for g in groups:
        _drop_duplicates(g, n, pixels, label, warnings)
    if len(groups) < 2:
        raise _KeyRejected("one phase only")
    # order: clock if one is acceptable, else key value
    clock, starts, clock_notes = _choose_clock(groups, opts)
    notes.extend(clock_notes)
    if starts is not None:
        for g, t in zip(groups, starts, strict=True):
            g.time = t
        groups.sort(key=lambda g: (g.time if g.time is not None else 0.0, _natural(g.key)))
    else:
        groups.sort(key=lambda g: _natural(g.key))
    # position sets: reference = most common
    sets = Counter(tuple(np.round(g.s, 1).tolist()) for g in groups)
    ref_set, _ = sets.most_common(1)[0]
    ref = next(g for g in groups if tuple(np.round(g.s, 1).tolist()) == ref_set)
    spacing = float(np.median(np.diff(ref.s))) if len(ref.s) > 1 else 0.0
    tol = max(0.1 * spacing, 0.01)

    def matches(g: Group) -> bool:
        return len(g.s) == len(ref.s) and bool(np.all(np.abs(g.s - ref.s) <= tol))

    def subset(g: Group) -> bool:
        return all(np.min(np.abs(ref.s - v)) <= tol for v in g.s) and len(g.s) < len(ref.s)

    bad = [k for k, g in enumerate(groups) if not matches(g)]
    if bad:
        if bad == [len(groups) - 1] and subset(groups[-1]) and len(groups) > 2:
            last = groups[-1]
            if not opts.drop_incomplete_last:
                raise InconsistentGeometryError(
                    f"{label}: the last phase is incomplete ({len(last.s)} of {len(ref.s)} "
                    "slices); re-export the complete series."
                )
            warnings.append(
                f"dropped the incomplete last phase ({len(last.s)} of {len(ref.s)} slices; "
                "aborted acquisition?)"
            )
            groups = groups[:-1]
        elif all(subset(groups[k]) for k in bad):
            k = bad[0]
            missing = [int(i) for i, v in enumerate(ref.s) if np.min(np.abs(groups[k].s - v)) > tol]
            raise InconsistentGeometryError(
                f"{label}: phase {k} lacks {len(missing)} of {len(ref.s)} slices (slice index "
                f"{', '.join(map(str, missing[:5]))}, s={ref.s[missing[0]]:.2f} mm) that the other "
                "phases have; re-export the complete series."
            )
        else:
            counts = sorted({len(g.s) for g in groups})
            raise _KeyRejected(f"phases have different slice positions (slice counts {counts})")
    for g in groups:
        iops = {tuple(np.round(f.iop, 4)) for f in g.frames if f.iop is not None}
        if len(iops) > 1:
            raise _KeyRejected("more than one orientation within a phase")
        dims = Counter(
            (f.rows, f.cols, f.pixel_spacing, f.frame_of_reference_uid) for f in g.frames
        )
        if len(dims) > 1:
            common = dims.most_common(1)[0][0]
            odd = [
                f
                for f in g.frames
                if (f.rows, f.cols, f.pixel_spacing, f.frame_of_reference_uid) != common
            ]
            o = odd[0]
            raise InconsistentGeometryError(
                f"{label}: slices of one phase differ in matrix size, pixel spacing or frame of "
                f"reference ({len(odd)} of {len(g.frames)} files, first: {clean(o.path.name, 80)}: "
                f"{o.rows}x{o.cols} @ {o.pixel_spacing} vs {common[0]}x{common[1]} @ "
                f"{common[2]}); remove the odd files, or resample the phases before use."
            )
    spacing = check_spacing(groups[0].s, label)
    for g in groups:
        _check_tilt(g.frames, n, label)
    # the same in-plane position for every slice of every phase (a stack, not a mosaic)
    first = groups[0].frames[0]
    if first.iop is not None and first.pixel_spacing is not None:
        row, col = np.asarray(first.iop[:3]), np.asarray(first.iop[3:6])
        tol_xy = 0.1 * min(first.pixel_spacing) + 1e-3
        ipp0 = np.asarray(first.ipp, dtype=float)
        ref_xy = np.array([np.dot(row, ipp0), np.dot(col, ipp0)])
        for g in groups:
            ipps = np.asarray([f.ipp for f in g.frames], dtype=float)
            xy = np.column_stack([ipps @ row, ipps @ col])
            if np.max(np.abs(xy - ref_xy)) > tol_xy:
                raise _KeyRejected("slices or phases are displaced in-plane (several stacks mixed)")
    shapes = {(f.rows, f.cols, f.pixel_spacing) for g in groups for f in g.frames}
    if len(shapes) > 1:
        raise InconsistentGeometryError(
            f"{label}: the phases differ in matrix size or pixel spacing "
            f"({', '.join(f'{r}x{c} @ {ps}' for r, c, ps in sorted(shapes, key=str)[:3])}); "
            "resample them onto one grid (e.g. NIfTI input) before use."
        )
    if starts is None:
        clock = ""
    return Assembly(groups, key_name, clock, spacing, warnings, notes)


# --------------------------------------------------------------------------------------------
# volumes


_DECODE_THREADS = 2


def build_image(frames: Sequence[FrameRecord], pixels: PixelReader, spacing: float) -> sitk.Image:
    first = frames[0]
    if first.iop is None or first.ipp is None or first.pixel_spacing is None:
        raise InconsistentGeometryError(f"{first.path}: image geometry is missing.")
    row, col, n = orthonormal(first.iop)
    image, volume = new_volume(len(frames), first.rows, first.cols)

    def load(k: int) -> None:
        pixels.frame_into(frames[k], volume[k])

    def load_all(ks: range) -> None:
        for k in ks:
            load(k)

    threads = min(_DECODE_THREADS, os.cpu_count() or 1)
    if threads > 1 and len(frames) >= 16:
        # file reads and numpy casts release the GIL (overlaps I/O when the files are not
        # cached); pydicom decoding mostly holds it
        chunks = [range(i, len(frames), threads) for i in range(threads)]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in pool.map(load_all, chunks):
                pass
    else:
        load_all(range(len(frames)))
    if image is None:
        image = sitk.GetImageFromArray(volume, isVector=False)
    image.SetOrigin(tuple(float(v) for v in first.ipp))
    ps = first.pixel_spacing
    image.SetSpacing((float(ps[1]), float(ps[0]), float(spacing) if spacing > 0 else 1.0))
    direction = np.column_stack([row, col, n])
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    return image
