"""Series exclusion and DCE candidate scoring (dicom-rules.md §1.1-1.2).

The functions here work on header records only (no pixel data). Each series becomes a
:class:`Unit` (an enhanced series holding several orientations becomes one unit per
orientation); units that survive the hard exclusions are grouped by acquisition signature and
each group is scored with a per-rule trace.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from breastai.io.dicom_index import FrameRecord

__all__ = ["Candidate", "Unit", "build_units", "exclusion_reason", "score_candidates"]

_DERIVED_TYPES = {"SUB", "SUBTRACTION", "MIP", "PROJECTION IMAGE", "MPR", "ADC", "TRACE"}
_DERIVED_TOKENS = {
    "sub",
    "subtract",
    "subtraction",
    "mip",
    "mpr",
    "reformat",
    "cad",
    "pe",
    "ser",
    "map",
    "color",
    "colour",
}
_GE_SUB_RE = re.compile(r"\(\d+/\d+/\d+\)\s*-\s*\(\d+/\d+/\d+\)")
_KEYWORD_RE = re.compile(
    r"(?<![a-z])(dyn|dynamic|dce|pre|post|pass|ph\d+|1st|2nd|3rd|4th|multiphase)(?![a-z])"
    r"|\+c(?![a-z])|(?<![a-z])c\+",
    re.IGNORECASE,
)
_SIEMENS_DCE = ("fl3d", "fl3_we", "fldyn3d", "twist", "tvw")
_GE_DCE = ("efgre3d", "3dfgre", "vibrant")


def tokens(text: str) -> list[str]:
    """Lower-case alphanumeric tokens of a description (underscores and digits split too)."""
    return [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t]


def normal_of(iop: Sequence[float]) -> np.ndarray:
    """Unit slice normal n = row x col of an ImageOrientationPatient."""
    row = np.asarray(iop[:3], dtype=float)
    col = np.asarray(iop[3:6], dtype=float)
    n = np.cross(row, col)
    norm = float(np.linalg.norm(n))
    return n / norm if norm > 0 else n


def _iop_close(a: Sequence[float], b: Sequence[float], tol: float = 1e-3) -> bool:
    return bool(np.max(np.abs(np.asarray(a) - np.asarray(b))) <= tol)


@dataclass
class Unit:
    """One series (or one orientation stack of a multi-orientation enhanced series)."""

    key: str
    series_uid: str
    records: list[FrameRecord]
    excluded: str | None = None
    role: str = ""
    n_files: int = 0

    @property
    def first(self) -> FrameRecord:
        return self.records[0]

    @property
    def description(self) -> str:
        return self.first.series_description

    @property
    def number(self) -> int | None:
        return self.first.series_number

    def positions(self) -> np.ndarray:
        """Distinct slice positions s = n . IPP (sorted), rounded to 0.01 mm."""
        iop = self.first.iop
        if iop is None:
            return np.zeros(0)
        n = normal_of(iop)
        values = [float(np.dot(n, r.ipp)) for r in self.records if r.ipp is not None]
        return np.unique(np.round(np.asarray(values), 2))

    def time(self) -> float | None:
        """Earliest acquisition (else series) time of the unit as a POSIX-like number."""
        stamps = [r.acq_dt or r.series_dt or r.content_dt for r in self.records]
        real = [s.timestamp() for s in stamps if s is not None]
        return min(real) if real else None

    def to_dict(self) -> dict[str, Any]:
        files = {r.path for r in self.records}
        return {
            "series_uid": self.series_uid,
            "unit": self.key,
            "series_number": self.number,
            "description": self.description,
            "manufacturer": self.first.manufacturer,
            "n_files": len(files),
            "n_frames": len(self.records) if self.first.image else 0,
            "role": self.role or (f"excluded: {self.excluded}" if self.excluded else ""),
        }


def _split_by_orientation(records: list[FrameRecord]) -> list[list[FrameRecord]]:
    """Cluster by orientation; records without a usable orientation join the first cluster
    (never a cluster of their own: one damaged file must not make a series a "localizer")."""
    clusters: list[list[FrameRecord]] = []
    without = [rec for rec in records if rec.iop is None]
    for rec in records:
        if rec.iop is None:
            continue
        for cluster in clusters:
            head = cluster[0].iop
            if head is not None and _iop_close(head, rec.iop):
                cluster.append(rec)
                break
        else:
            clusters.append([rec])
    if without:
        if clusters:
            clusters[0].extend(without)
        else:
            clusters.append(without)
    return clusters


def build_units(records: Sequence[FrameRecord]) -> list[Unit]:
    """Group records by series; split a multi-orientation series into one unit per orientation
    when it is enhanced multi-frame or every orientation holds at least 16 frames (a real
    multi-stack acquisition, §2 case 30); otherwise the series is a localizer."""
    by_series: dict[str, list[FrameRecord]] = {}
    for rec in records:
        by_series.setdefault(rec.series_uid or f"<no SeriesInstanceUID>:{rec.path}", []).append(rec)
    units: list[Unit] = []
    for uid, recs in by_series.items():
        n_files = len({r.path for r in recs})
        if not recs[0].image:
            units.append(
                Unit(
                    uid,
                    uid,
                    recs,
                    excluded=f"non-image object ({recs[0].non_image_kind})",
                    n_files=n_files,
                )
            )
            continue
        clusters = _split_by_orientation(recs)
        if len(clusters) == 1:
            units.append(Unit(uid, uid, recs, n_files=n_files))
            continue
        enhanced = any(r.n_frames > 1 for r in recs)
        if enhanced or min(len(c) for c in clusters) >= 16:
            for k, cluster in enumerate(clusters, start=1):
                units.append(
                    Unit(f"{uid}#stack{k}", uid, cluster, n_files=len({r.path for r in cluster}))
                )
        else:
            units.append(
                Unit(
                    uid,
                    uid,
                    recs,
                    excluded=f"localizer ({len(clusters)} orientations in one series)",
                    n_files=n_files,
                )
            )
    units.sort(key=lambda u: (u.number if u.number is not None else 10**9, u.key))
    return units


def exclusion_reason(
    unit: Unit, units: Sequence[Unit], *, te_max_ms: float = 20.0, siblings: bool = True
) -> str | None:
    """The hard exclusion rule (§1.1) that removes ``unit``, or None when it stays a candidate.

    ``siblings=False`` skips the Philips sibling rule (used to ask whether the sibling itself is
    an original candidate)."""
    if unit.excluded:
        return unit.excluded
    recs = unit.records
    first = recs[0]
    if any(r.samples_per_pixel != 1 for r in recs):
        return "colour image (SamplesPerPixel > 1)"
    if all(r.iop is None or r.ipp is None or r.pixel_spacing is None for r in recs):
        # a series of which only some files lack geometry stays a candidate: the validation of
        # the chosen series names those files (dicom_validate)
        unusable = [(k, v) for r in recs[:1] for k, v in r.unparsed]
        if unusable:
            from breastai.io.dicom_validate import tag_name

            keyword, text = unusable[0]
            return f"no usable image geometry ({tag_name(keyword)} is '{text}')"
        return (
            "no image geometry (ImagePositionPatient/ImageOrientationPatient/PixelSpacing missing)"
        )
    types = set().union(*(set(r.image_type) for r in recs))
    if "LOCALIZER" in types:
        return "localizer (ImageType LOCALIZER)"
    if first.ge_series_plane == 256:
        return "localizer (GE SeriesPlane 256)"
    seq = first.sequence_name.lower().lstrip("*")
    if seq.startswith("tfl2d1") or seq == "fl2d1" or seq.startswith("fl3d1_ns"):
        return f"localizer (Siemens sequence {first.sequence_name})"
    if any(r.image_type[:1] == ("DERIVED",) for r in recs):
        return "derived series (ImageType DERIVED)"
    derived = sorted(types & _DERIVED_TYPES)
    if derived:
        return f"derived series (ImageType {derived[0]})"
    desc = first.series_description
    hit = [t for t in tokens(desc) if t in _DERIVED_TOKENS]
    if hit:
        return f"derived series (description token {hit[0]!r})"
    if _GE_SUB_RE.search(desc):
        return "derived series (GE subtraction description)"
    if (
        siblings
        and first.is_philips
        and first.series_number is not None
        and first.series_number % 100 != 1
    ):
        # only a sibling that is itself an original candidate counts (a derived 601 beside the
        # dynamic 600 must not exclude 600)
        base = first.series_number - first.series_number % 100 + 1
        if any(
            u.number == base
            and u.first.image
            and exclusion_reason(u, units, te_max_ms=te_max_ms, siblings=False) is None
            for u in units
            if u is not unit
        ):
            return f"derived series (Philips series {first.series_number} beside original {base})"
    b_values = [r.b_value for r in recs if r.b_value is not None]
    if any(b > 0 for b in b_values):
        return "diffusion-weighted (b-value > 0)"
    if "EP" in first.scanning_sequence.split("\\") and b_values:
        return "diffusion-weighted (EPI with a b-value)"
    if first.te is not None and first.te > te_max_ms:
        return f"not T1-weighted DCE (TE {first.te:g} ms > {te_max_ms:g} ms)"
    ordered = sorted(recs, key=lambda r: (r.instance_number or 0, r.frame))
    a, b = ordered[0], ordered[-1]
    for name, x, y in (("TR", a.tr, b.tr), ("flip angle", a.fa, b.fa)):
        if x is not None and y is not None and abs(x - y) > 1e-3 * max(abs(x), 1.0):
            return f"{name} changes within the series ({x:g} -> {y:g})"
    return None


@dataclass
class Candidate:
    """A group of units sharing one acquisition signature, with its score and trace."""

    units: list[Unit]
    score: int = 0
    trace: list[dict[str, Any]] = field(default_factory=list)
    strong: bool = False
    est_phases: int = 1
    n_positions: int = 0
    orientation: str = ""

    def add(self, rule: str, points: int, detail: str) -> None:
        self.score += points
        self.trace.append({"rule": rule, "points": points, "detail": detail})

    def to_dict(self, rank: int) -> dict[str, Any]:
        return {
            "rank": rank,
            "score": self.score,
            "series_uids": sorted({u.series_uid for u in self.units}),
            "units": sorted({u.key for u in self.units}),
            "series_numbers": sorted({u.number for u in self.units if u.number is not None}),
            "descriptions": sorted({u.description for u in self.units}),
            "estimated_phases": self.est_phases,
            "positions": self.n_positions,
            "orientation": self.orientation,
            "trace": self.trace,
        }

    def line(self, rank: int) -> str:
        numbers = ",".join(
            str(n) for n in sorted({u.number for u in self.units if u.number is not None})
        )
        uids = ",".join(sorted({u.key for u in self.units}))
        descs = "; ".join(sorted({u.description for u in self.units}))
        return (
            f"#{rank} score {self.score}: series {numbers or '?'} ({descs or 'no description'}), "
            f"~{self.est_phases} phases x {self.n_positions} slices, {self.orientation}; "
            f"--dce-series {uids}"
        )


def _orientation_name(iop: Sequence[float]) -> str:
    n = np.abs(normal_of(iop))
    axis = int(np.argmax(n))
    if n[axis] < 0.95:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _signature(unit: Unit) -> tuple[Any, ...]:
    # a record with usable geometry stands for the unit (a damaged first file must not move
    # the whole series to another acquisition: the validation names that file)
    r = next(
        (x for x in unit.records if x.iop is not None and x.pixel_spacing is not None), unit.first
    )
    fat_sat = "FS" in r.scan_options.split("\\") or "SFS" in r.scan_options.split("\\")
    return (
        r.study_uid,
        r.frame_of_reference_uid,
        tuple(round(v, 3) + 0.0 for v in (r.iop or ())),
        tuple(round(v, 3) for v in (r.pixel_spacing or ())),
        None if r.te is None else round(r.te, 1),
        None if r.fa is None else round(r.fa, 1),
        fat_sat,
    )


def _unit_phase_evidence(unit: Unit) -> tuple[int, str]:
    """(estimated phases, why) from the tags of one unit."""
    recs = unit.records
    for name, values in (
        (
            "TemporalPositionIndex",
            [r.tp_index if r.tp_index is not None else r.tp_index_div for r in recs],
        ),
        ("TemporalPositionIdentifier", [r.tpi for r in recs]),
        ("GE RawDataRunNumber", [r.ge_run for r in recs]),
    ):
        distinct = {v for v in values if v is not None}
        if len(distinct) >= 2:
            return len(distinct), f"{len(distinct)} distinct {name} values"
    iop = unit.first.iop
    if iop is not None:
        n = normal_of(iop)
        counts = Counter(round(float(np.dot(n, r.ipp)), 2) for r in recs if r.ipp is not None)
        repeats = set(counts.values())
        if len(repeats) == 1 and min(repeats) >= 2:
            k = min(repeats)
            return k, f"every position repeats {k} times"
        if repeats and max(repeats) >= 2 and min(repeats) >= max(repeats) - 1:
            return max(repeats), f"positions repeat {min(repeats)}-{max(repeats)} times"
    for name, value in (
        ("NumberOfTemporalPositions", unit.first.n_temporal_positions),
        ("Philips NumberOfDynamicScans", unit.first.philips_n_dyn),
    ):
        if value is not None and value > 1:
            return value, f"{name} = {value}"
    return 1, ""


def _time_key(unit: Unit) -> float:
    t = unit.time()
    return t if t is not None else float("inf")


def score_candidates(units: Sequence[Unit]) -> list[Candidate]:
    """Group the non-excluded units by acquisition signature and score each group (§1.2).

    TR is compared within a signature: members whose TR differs by more than 5 % from the
    group's first member form their own group; a smaller difference is recorded in the trace.

    Returns
    -------
    list of Candidate
        Best first (score, then phases up to 10, then slices, then earliest time).
    """
    groups: dict[tuple[Any, ...], list[list[Unit]]] = {}
    for unit in units:
        if unit.excluded:
            continue
        buckets = groups.setdefault(_signature(unit), [])
        tr = unit.first.tr
        for bucket in buckets:
            ref = bucket[0].first.tr
            if tr is None or ref is None or abs(tr - ref) <= 0.05 * max(ref, 1e-6):
                bucket.append(unit)
                break
        else:
            buckets.append([unit])
    candidates = [Candidate(units=b) for buckets in groups.values() for b in buckets]
    for cand in candidates:
        _score(cand)
    axial_phases = max((c.est_phases for c in candidates if c.orientation == "axial"), default=0)
    for cand in candidates:
        if cand.orientation == "sagittal" and axial_phases > cand.est_phases:
            cand.add("sagittal", -3, "sagittal while an axial candidate has more phases")
    candidates.sort(
        key=lambda c: (
            -c.score,
            -min(c.est_phases, 10),
            -c.n_positions * c.est_phases,
            min(_time_key(u) for u in c.units),
        )
    )
    return candidates


def _score(cand: Candidate) -> None:
    units = cand.units
    first = units[0].first
    cand.orientation = _orientation_name(first.iop or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    trs = sorted({round(u.first.tr, 3) for u in units if u.first.tr is not None})
    if len(trs) > 1:
        cand.trace.append({"rule": "TR", "points": 0, "detail": f"TR differs within 5 %: {trs}"})
    # stacks: units with overlapping position ranges
    ranges = [(u, u.positions()) for u in units]
    positions = max((len(p) for _, p in ranges), default=0)
    cand.n_positions = positions
    best_unit_phases, why = max((_unit_phase_evidence(u) for u in units), key=lambda x: x[0])
    if best_unit_phases >= 2:
        cand.add("multi-phase series", 5, why)
        cand.strong = True
    # siblings: several units with the same position set and different times
    sets: dict[tuple[float, ...], list[Unit]] = {}
    for unit, pos in ranges:
        sets.setdefault(tuple(pos.tolist()), []).append(unit)
    sibling_count = 0
    for members in sets.values():
        times = {u.time() for u in members}
        if len(members) >= 2 and len(times) >= 2:
            sibling_count = max(sibling_count, len(members))
    if sibling_count >= 2:
        cand.add("sibling series", 5, f"{sibling_count} series share geometry and differ in time")
        cand.strong = True
    phases_from_series = max((len(m) for m in sets.values()), default=1)
    multi = [_unit_phase_evidence(u)[0] for u in units]
    cand.est_phases = max(best_unit_phases, phases_from_series, sum(multi) // max(len(sets), 1))
    # vendor fingerprints
    seqs = " ".join(f"{u.first.sequence_name} {u.first.ge_pulse_seq}".lower() for u in units)
    descs = " ".join(f"{u.description} {u.first.protocol_name}" for u in units)
    descs_lower = descs.lower()
    fingerprint = ""
    if any(k in seqs for k in _SIEMENS_DCE):
        fingerprint = "Siemens DCE sequence"
    elif any(k in seqs for k in _GE_DCE) or "vibrant" in descs_lower or "disco" in descs_lower:
        fingerprint = "GE VIBRANT/DISCO"
    elif first.is_philips and ("dyn" in descs_lower or "thrive" in descs_lower):
        fingerprint = "Philips dynamic/THRIVE"
    if fingerprint:
        cand.add("vendor sequence", 3, fingerprint)
    match = _KEYWORD_RE.search(descs)
    if match:
        cand.add("description keyword", 2, f"{match.group(0)!r}")
    if any(u.first.contrast_agent for u in units) or any(
        r.contrast_agent for u in units for r in u.records[:1] + u.records[-1:]
    ):
        cand.add("contrast agent", 1, "ContrastBolusAgent present")
    if first.tr is not None and first.fa is not None and first.tr < 10 and 8 <= first.fa <= 30:
        cand.add("T1 GRE", 1, f"TR {first.tr:g} ms, FA {first.fa:g} deg")
    if first.mr_acq_type.upper() == "3D":
        cand.add("3D", 1, "MRAcquisitionType 3D")
    if positions < 32:
        cand.add("few slices", -3, f"{positions} slices per phase (< 32)")
    if not cand.strong:
        cand.add("single time point", -3, "one time point and no sibling series")
