"""Validation between the header index and volume assembly: impossible values are refused.

Every value that the geometry, the intensities or the DICOM-SEG writer depend on is checked for
presence, type and a physically possible range before a volume is built from it, so that a
damaged header gives one sentence instead of a traceback or, worse, a silently wrong volume:

* pixel data description: TransferSyntaxUID, Rows/Columns (1-65535), SamplesPerPixel,
  BitsAllocated (8/16/32) and BitsStored (<= BitsAllocated), PixelRepresentation (0/1),
  PhotometricInterpretation; the same BitsAllocated/BitsStored/PixelRepresentation in every file
  of a series;
* geometry: PixelSpacing two finite numbers of 0.05-50 mm, ImageOrientationPatient six finite
  numbers forming two orthogonal unit vectors, ImagePositionPatient three finite numbers within
  100 m of the origin; the slice spacing (after grouping) 0.05-50 mm;
* intensities: RescaleSlope positive, 1e-6-1e6; RescaleIntercept finite (|b| <= 1e7);
  within one phase, slopes that differ by more than 10x are refused and any variation is
  flagged as a warning; a phase whose voxels are all equal is refused;
* what the DICOM-SEG writer needs: single-valued, well-formed StudyInstanceUID,
  SeriesInstanceUID, SOPInstanceUID, SOPClassUID and FrameOfReferenceUID; a known image SOP
  class; one SeriesInstanceUID per phase (and per stack).

Each failure raises one :class:`~breastai.errors.InputError` subclass whose message names the
series, how many of its files are affected (with the first file's name), the tag and the value,
what was expected and what to do.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from breastai.errors import InconsistentGeometryError, InputError, UnsupportedInputError
from breastai.io.dicom_index import PIXEL_INT_TAGS, FrameRecord

__all__ = [
    "MAX_PIXEL_SPACING_MM",
    "MIN_PIXEL_SPACING_MM",
    "check_phase_rescale",
    "check_phase_series",
    "check_slice_spacing",
    "clean",
    "tag_name",
    "validate_records",
]

MIN_PIXEL_SPACING_MM = 0.05
MAX_PIXEL_SPACING_MM = 50.0
MAX_POSITION_MM = 1e5
MIN_ABS_SLOPE = 1e-6
MAX_ABS_SLOPE = 1e6
MAX_ABS_INTERCEPT = 1e7
MAX_SLOPE_RATIO_IN_PHASE = 10.0

_TAGS = {
    "TransferSyntaxUID": "(0002,0010)",
    "SOPClassUID": "(0008,0016)",
    "SOPInstanceUID": "(0008,0018)",
    "StudyInstanceUID": "(0020,000D)",
    "SeriesInstanceUID": "(0020,000E)",
    "FrameOfReferenceUID": "(0020,0052)",
    "ImagePositionPatient": "(0020,0032)",
    "ImageOrientationPatient": "(0020,0037)",
    "SamplesPerPixel": "(0028,0002)",
    "PhotometricInterpretation": "(0028,0004)",
    "Rows": "(0028,0010)",
    "Columns": "(0028,0011)",
    "PixelSpacing": "(0028,0030)",
    "BitsAllocated": "(0028,0100)",
    "BitsStored": "(0028,0101)",
    "PixelRepresentation": "(0028,0103)",
    "RescaleIntercept": "(0028,1052)",
    "RescaleSlope": "(0028,1053)",
}
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean(text: object, limit: int = 60) -> str:
    """A header value made safe for a one-line message: control characters (newlines, escape
    sequences) shown as ``\\xNN``, long values cut with ``...``."""
    out = _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", str(text).strip())
    return out if len(out) <= limit else out[: limit - 3] + "..."


def tag_name(keyword: str) -> str:
    """``"PixelSpacing (0028,0030)"``: a keyword with its tag, for messages."""
    return _tag(keyword)


def _tag(keyword: str) -> str:
    return f"{keyword} {_TAGS.get(keyword, '')}".strip()


def _series_label(records: Sequence[FrameRecord]) -> str:
    first = records[0]
    number = "?" if first.series_number is None else str(first.series_number)
    desc = clean(first.series_description, 40)
    return f"series {number}" + (f" ({desc!r})" if desc else "")


def _files(records: Sequence[FrameRecord]) -> int:
    return len({r.path for r in records})


def _fail(
    records: Sequence[FrameRecord],
    bad: Sequence[FrameRecord],
    keyword: str,
    value: str,
    expected: str,
    todo: str = "fix the header or re-export the series from the scanner or PACS",
    error: type[InputError] = InconsistentGeometryError,
) -> InputError:
    """The one-line error: series, affected file count (first file), tag, value, expectation."""
    return error(
        f"{_series_label(records)}: {_tag(keyword)} is {value} in {_files(bad)} of "
        f"{_files(records)} files (first: {clean(bad[0].path.name, 80)}); expected {expected}; "
        f"{todo}."
    )


def _fmt(values: Sequence[float] | None) -> str:
    if values is None:
        return "missing"
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


@dataclass
class _Check:
    keyword: str
    bad: Callable[[FrameRecord], bool]
    value: Callable[[FrameRecord], str]
    expected: str
    error: type[InputError] = InconsistentGeometryError
    todo: str = "fix the header or re-export the series from the scanner or PACS"


def _unparsed(keyword: str) -> Callable[[FrameRecord], str | None]:
    def get(r: FrameRecord) -> str | None:
        for k, text in r.unparsed:
            if k == keyword:
                return text
        return None

    return get


def _spacing_bad(r: FrameRecord) -> bool:
    ps = r.pixel_spacing
    return ps is None or not all(
        math.isfinite(v) and MIN_PIXEL_SPACING_MM <= v <= MAX_PIXEL_SPACING_MM for v in ps
    )


def _iop_bad(r: FrameRecord) -> bool:
    iop = r.iop
    if iop is None or len(iop) != 6 or not all(math.isfinite(v) for v in iop):
        return True
    row, col = iop[:3], iop[3:]
    nr = math.sqrt(sum(v * v for v in row))
    nc = math.sqrt(sum(v * v for v in col))
    dot = sum(a * b for a, b in zip(row, col, strict=True))
    return abs(nr - 1) > 1e-2 or abs(nc - 1) > 1e-2 or abs(dot) > 1e-2


def _ipp_bad(r: FrameRecord) -> bool:
    ipp = r.ipp
    return ipp is None or not all(math.isfinite(v) and abs(v) <= MAX_POSITION_MM for v in ipp)


def _uid_bad(value: str) -> bool:
    return not value or len(value) > 64 or _UID_RE.match(value) is None


@functools.lru_cache(maxsize=256)
def _known_sop_class(uid: str) -> bool:
    from pydicom.uid import UID

    try:
        name = UID(uid).name
    except Exception:
        return False
    return bool(name) and name != uid and "Storage" in name


def _shown(r: FrameRecord, keyword: str, fallback: str) -> str:
    text = _unparsed(keyword)(r)
    return repr(text) if text is not None else fallback


_CHECKS: tuple[_Check, ...] = (
    _Check(
        "TransferSyntaxUID",
        lambda r: "TransferSyntaxUID" in r.missing,
        lambda r: "missing",
        "the file meta header of a DICOM Part 10 file",
        UnsupportedInputError,
        "re-export the study as DICOM Part 10 files",
    ),
    *(
        _Check(
            kw,
            lambda r, kw=kw: kw in r.missing or _unparsed(kw)(r) is not None,  # type: ignore[misc]
            lambda r, kw=kw: _shown(r, kw, "missing"),  # type: ignore[misc]
            "a whole number (Type 1 in the Image Pixel module)",
            InputError,
        )
        for kw in PIXEL_INT_TAGS
    ),
    _Check(
        "PhotometricInterpretation",
        lambda r: "PhotometricInterpretation" in r.missing,
        lambda r: "missing",
        "MONOCHROME2 or MONOCHROME1 (Type 1 in the Image Pixel module)",
        InputError,
    ),
    _Check(
        "Rows",
        lambda r: not 1 <= r.rows <= 65535,
        lambda r: str(r.rows),
        "1-65535",
        InputError,
    ),
    _Check(
        "Columns",
        lambda r: not 1 <= r.cols <= 65535,
        lambda r: str(r.cols),
        "1-65535",
        InputError,
    ),
    _Check(
        "BitsAllocated",
        lambda r: r.bits_allocated not in (8, 16, 32),
        lambda r: str(r.bits_allocated),
        "8, 16 or 32 for an MR image",
        UnsupportedInputError,
    ),
    _Check(
        "BitsStored",
        lambda r: r.bits_stored is not None and not 1 <= r.bits_stored <= r.bits_allocated,
        lambda r: f"{r.bits_stored} (BitsAllocated {r.bits_allocated})",
        "1 to BitsAllocated",
        InputError,
    ),
    _Check(
        "PixelRepresentation",
        lambda r: r.pixel_representation not in (None, 0, 1),
        lambda r: str(r.pixel_representation),
        "0 (unsigned) or 1 (signed)",
        InputError,
    ),
    _Check(
        "PixelSpacing",
        _spacing_bad,
        lambda r: _shown(r, "PixelSpacing", _fmt(r.pixel_spacing)),
        f"two numbers of {MIN_PIXEL_SPACING_MM:g}-{MAX_PIXEL_SPACING_MM:g} mm",
    ),
    _Check(
        "ImageOrientationPatient",
        _iop_bad,
        lambda r: _shown(r, "ImageOrientationPatient", _fmt(r.iop)),
        "six finite numbers forming two orthogonal unit vectors",
    ),
    _Check(
        "ImagePositionPatient",
        _ipp_bad,
        lambda r: _shown(r, "ImagePositionPatient", _fmt(r.ipp)),
        f"three finite numbers within {MAX_POSITION_MM:g} mm of the origin",
    ),
    _Check(
        "RescaleSlope",
        lambda r: (
            _unparsed("RescaleSlope")(r) is not None
            or not math.isfinite(r.slope)
            or not MIN_ABS_SLOPE <= r.slope <= MAX_ABS_SLOPE
        ),
        lambda r: _shown(r, "RescaleSlope", f"{r.slope:g}"),
        f"a positive number of {MIN_ABS_SLOPE:g}-{MAX_ABS_SLOPE:g} (an MR intensity scale)",
        InputError,
    ),
    _Check(
        "RescaleIntercept",
        lambda r: (
            _unparsed("RescaleIntercept")(r) is not None
            or not math.isfinite(r.intercept)
            or abs(r.intercept) > MAX_ABS_INTERCEPT
        ),
        lambda r: _shown(r, "RescaleIntercept", f"{r.intercept:g}"),
        f"a finite number of magnitude <= {MAX_ABS_INTERCEPT:g}",
        InputError,
    ),
    *(
        _Check(
            kw,
            lambda r, attr=attr, kw=kw: kw in r.missing or _uid_bad(getattr(r, attr)),  # type: ignore[misc]
            lambda r, attr=attr: (
                repr(clean(getattr(r, attr), 70)) if getattr(r, attr) else "missing"
            ),  # type: ignore[misc]
            "one UID (digits and dots, at most 64 characters), which the DICOM-SEG needs",
            InputError,
        )
        for kw, attr in (
            ("StudyInstanceUID", "study_uid"),
            ("SeriesInstanceUID", "series_uid"),
            ("SOPInstanceUID", "sop_uid"),
            ("SOPClassUID", "sop_class"),
            ("FrameOfReferenceUID", "frame_of_reference_uid"),
        )
    ),
    _Check(
        "SOPClassUID",
        lambda r: not _known_sop_class(r.sop_class),
        lambda r: repr(clean(r.sop_class, 70)),
        "a known image storage SOP class (e.g. MR Image Storage 1.2.840.10008.5.1.4.1.1.4)",
        UnsupportedInputError,
    ),
)

_CONSISTENT: tuple[tuple[str, Callable[[FrameRecord], object]], ...] = (
    ("BitsAllocated", lambda r: r.bits_allocated if r.bits_allocated in (8, 16, 32) else None),
    ("BitsStored", lambda r: r.bits_stored),
    ("PixelRepresentation", lambda r: r.pixel_representation),
)


def validate_records(records: Sequence[FrameRecord]) -> None:
    """Check the header values of the frames of the chosen DCE acquisition (before grouping).

    Parameters
    ----------
    records:
        Every frame record of the selected series.

    Raises
    ------
    InputError
        A value is missing, not a number, outside its physically possible range, or (bits and
        pixel representation) differs between files of one series; the message names the
        series, the number of files, the tag and the value.
    """
    by_series: dict[str, list[FrameRecord]] = {}
    for r in records:
        by_series.setdefault(r.series_uid, []).append(r)
    main = max(by_series.values(), key=len)
    for recs in by_series.values():
        for keyword, get in _CONSISTENT:
            values = [get(r) for r in recs]
            distinct = sorted({v for v in values if v is not None}, key=str)
            if len(distinct) > 1:
                common = max(distinct, key=values.count)
                bad = [r for r in recs if get(r) not in (common, None)]
                raise _fail(
                    recs,
                    bad,
                    keyword,
                    str(get(bad[0])),
                    f"{common} as in the other files of the series",
                    "the odd files would be read wrongly: remove them or re-export the series",
                    InputError,
                )
    for check in _CHECKS:
        bad = [r for r in records if check.bad(r)]
        if bad:
            # label: the main series; count: of all the files chosen (a file that lost its
            # SeriesInstanceUID is still counted among them)
            raise _fail(
                [*main, *(r for r in records if r.series_uid != main[0].series_uid)],
                bad,
                check.keyword,
                check.value(bad[0]),
                check.expected,
                check.todo,
                check.error,
            )


def check_slice_spacing(spacing_mm: float, label: str) -> None:
    """Refuse a slice spacing outside 0.05-50 mm (a stack that cannot be a real acquisition)."""
    if not (
        math.isfinite(spacing_mm) and MIN_PIXEL_SPACING_MM <= spacing_mm <= MAX_PIXEL_SPACING_MM
    ):
        raise InconsistentGeometryError(
            f"{label}: the slice spacing from ImagePositionPatient (0020,0032) is "
            f"{spacing_mm:.6g} mm; expected {MIN_PIXEL_SPACING_MM:g}-{MAX_PIXEL_SPACING_MM:g} mm: "
            "fix the slice positions or re-export the series."
        )


def check_phase_series(frames: Sequence[FrameRecord], label: str, phase: int) -> None:
    """One SeriesInstanceUID per phase (per stack): the DICOM-SEG references one series."""
    uids: dict[str, list[FrameRecord]] = {}
    for f in frames:
        uids.setdefault(f.series_uid, []).append(f)
    if len(uids) > 1:
        odd = min(uids.values(), key=len)
        raise InputError(
            f"{label}: phase {phase} mixes {len(uids)} SeriesInstanceUIDs (0020,000E) "
            f"({len(odd)} of {len(frames)} files with {clean(odd[0].series_uid, 70)!r}, first: "
            f"{clean(odd[0].path.name, 80)}); expected one series per phase, which the DICOM-SEG "
            "references: fix the UID or pass --dce-series to choose series."
        )


def check_phase_rescale(
    frames: Sequence[FrameRecord], label: str, phase: int, warnings: list[str]
) -> None:
    """Rescale slope/intercept within one phase: refused when slopes differ by more than 10x
    (one slice would dominate every measurement), flagged as a warning when they differ."""
    pairs = {(f.slope, f.intercept) for f in frames}
    if len(pairs) <= 1:
        return
    slopes = sorted(abs(f.slope) for f in frames)
    median = slopes[len(slopes) // 2]
    if slopes[-1] > MAX_SLOPE_RATIO_IN_PHASE * slopes[0]:
        odd = max(frames, key=lambda f: abs(math.log(abs(f.slope) / median)))
        n_odd = sum(1 for f in frames if abs(math.log(abs(f.slope) / median)) > math.log(2.0))
        raise InputError(
            f"{label}: RescaleSlope (0028,1053) is {odd.slope:g} in {max(n_odd, 1)} of "
            f"{len(frames)} files of phase {phase} (first: {clean(odd.path.name, 80)}) but "
            f"{median:g} in the others; expected slopes within {MAX_SLOPE_RATIO_IN_PHASE:g}x of "
            "each other in one phase: fix the header or re-export the series."
        )
    intercepts = sorted({f.intercept for f in frames})
    warnings.append(
        f"rescale varies within phase {phase} of {label} (slope {slopes[0]:g}-{slopes[-1]:g}, "
        f"intercept {intercepts[0]:g}-{intercepts[-1]:g}); each slice was scaled with its own "
        "values"
    )
