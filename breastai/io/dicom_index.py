"""Header-only index of a DICOM folder: one :class:`FrameRecord` per image frame.

dicom-rules.md §1.0: every file under the folder is read with ``stop_before_pixels``
(recursively, in parallel for large folders); DICOMDIR and non-DICOM files are skipped;
corrupt and unreadable files are skipped and counted; enhanced multi-frame objects expand into
one record per frame through their per-frame and shared functional groups; private tags are
read through their private creator (``Dataset.private_block``), never by fixed element.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import math
import os
import struct
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from breastai.io.dicom_header import read_header
from breastai.io.times import combine_date_time, parse_dt

__all__ = [
    "DICOMDIR_SOP_CLASS",
    "DURATION_FRAME",
    "DURATION_SOURCES",
    "PIXEL_INT_TAGS",
    "FileProblem",
    "FrameRecord",
    "SeriesIndex",
    "index_folder",
    "read_file_records",
]

logger = logging.getLogger(__name__)

_read_header = read_header  # the name tests/test_io_fastpath.py uses

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_NON_IMAGE_EXACT = {
    "1.2.840.10008.5.1.4.1.1.66.4": "segmentation (SEG)",
    "1.2.840.10008.5.1.4.1.1.66.7": "label map segmentation (SEG)",
    "1.2.840.10008.5.1.4.1.1.11.1": "presentation state",
    "1.2.840.10008.5.1.4.1.1.66": "raw data",
}
_NON_IMAGE_PREFIX = {
    "1.2.840.10008.5.1.4.1.1.88.": "structured report (SR)",
    "1.3.46.670589.11.0.0.12.": "Philips private",
    "1.2.840.10008.5.1.4.1.1.11.": "presentation state",
    "1.2.840.10008.5.1.4.1.1.104.": "encapsulated document",
}

_TAG_TPI = 0x00209128
_TAG_STACK_ID = 0x00209056
_TAG_IN_STACK = 0x00209057
_SPATIAL_POINTERS = {_TAG_STACK_ID, _TAG_IN_STACK, 0x00200032, 0x00209113}


def non_image_kind(sop_class: str) -> str | None:
    """Name of a non-image (or non-candidate) SOP class, or None for an image SOP class."""
    if sop_class in _NON_IMAGE_EXACT:
        return _NON_IMAGE_EXACT[sop_class]
    for prefix, name in _NON_IMAGE_PREFIX.items():
        if sop_class.startswith(prefix):
            return name
    if sop_class.startswith(SECONDARY_CAPTURE_PREFIX):
        return "secondary capture"
    return None


@dataclass(slots=True)
class FrameRecord:
    """Header values of one image frame (one slice) needed to select and group DCE phases.

    ``frame`` is 0 for a single-frame (classic) file and the 1-based frame number in an
    enhanced multi-frame file. Times are naive datetimes (scanner clock); ``trigger_time_ms``
    and ``philips_dyn_time_s`` are relative clocks.
    """

    path: Path
    frame: int = 0
    n_frames: int = 1
    image: bool = True
    non_image_kind: str | None = None
    transfer_syntax: str = ""
    sop_class: str = ""
    sop_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    patient_id: str = ""
    modality: str = ""
    series_number: int | None = None
    acquisition_number: int | None = None
    instance_number: int | None = None
    frame_of_reference_uid: str = ""
    manufacturer: str = ""
    series_description: str = ""
    protocol_name: str = ""
    sequence_name: str = ""
    ge_pulse_seq: str = ""
    scanning_sequence: str = ""
    scan_options: str = ""
    image_type: tuple[str, ...] = ()
    tr: float | None = None
    te: float | None = None
    fa: float | None = None
    b_value: float | None = None
    contrast_agent: str = ""
    mr_acq_type: str = ""
    rows: int = 0
    cols: int = 0
    samples_per_pixel: int = 1
    pixel_spacing: tuple[float, float] | None = None
    iop: tuple[float, ...] | None = None
    ipp: tuple[float, float, float] | None = None
    ipp_source: str = "ipp"
    laterality: str = ""
    gantry_tilt: float | None = None
    ge_series_plane: int | None = None
    tpi: int | None = None
    n_temporal_positions: int | None = None
    tp_index: int | None = None
    tp_index_div: int | None = None
    dim_extra: tuple[Any, ...] = ()
    stack_id: str | None = None
    ge_run: int | None = None
    philips_n_dyn: int | None = None
    acq_dt: _dt.datetime | None = None
    content_dt: _dt.datetime | None = None
    series_dt: _dt.datetime | None = None
    frame_acq_dt: _dt.datetime | None = None
    frame_ref_dt: _dt.datetime | None = None
    trigger_time_ms: float | None = None
    philips_dyn_time_s: float | None = None
    durations: tuple[tuple[str, float], ...] = ()  # (source, seconds), best source first
    temporal_resolution_ms: float | None = None
    contrast_start: _dt.datetime | None = None
    bits_allocated: int = 16
    signed: bool = False
    slope: float = 1.0
    intercept: float = 0.0
    bits_stored: int | None = None
    pixel_representation: int | None = None
    photometric: str = ""
    missing: tuple[str, ...] = ()  # Type 1 pixel-module / meta keywords absent from the header
    unparsed: tuple[tuple[str, str], ...] = ()  # (keyword, raw text) present but not usable

    @property
    def is_philips(self) -> bool:
        return "philips" in self.manufacturer.lower()

    @property
    def is_ge(self) -> bool:
        m = self.manufacturer.lower()
        return m.startswith("ge") or "general electric" in m

    @property
    def is_siemens(self) -> bool:
        return "siemens" in self.manufacturer.lower()


@dataclass
class FileProblem:
    """A file that was skipped: ``kind`` is ``"corrupt"`` or ``"unreadable"``."""

    path: Path
    kind: str
    message: str


@dataclass
class SeriesIndex:
    """Everything the header pass found under one folder."""

    root: Path
    records: list[FrameRecord] = field(default_factory=list)
    n_files: int = 0
    n_non_dicom: int = 0
    n_dicomdir: int = 0
    problems: list[FileProblem] = field(default_factory=list)

    @property
    def image_records(self) -> list[FrameRecord]:
        return [r for r in self.records if r.image]


# --------------------------------------------------------------------------------------------
# value helpers


_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UI"}
_BINARY_FORMATS = {"US": "H", "UL": "L", "SS": "h", "SL": "l", "FL": "f", "FD": "d"}
_TAG_CACHE: dict[str, tuple[int, str]] = {}
_ELEMS = "_breastai_elems"


def _elements(ds: Dataset) -> dict[int, Any]:
    """The dataset's elements by integer tag (raw or converted, as stored), cached on ``ds``."""
    elems: dict[int, Any] | None = ds.__dict__.get(_ELEMS)
    if elems is None:
        elems = {int(tag): elem for tag, elem in ds.items()}
        object.__setattr__(ds, _ELEMS, elems)
    return elems


def _g(ds: Dataset, keyword: str) -> Any:
    """``ds.get(keyword)`` without pydicom's value conversion for text and binary-number VRs
    (the header pass spends most of its time converting values): a str, a list of str for
    multi-valued text, a number or list of numbers for US/UL/SS/SL/FL/FD, or the converted
    value for other VRs; None when absent."""
    cached = _TAG_CACHE.get(keyword)
    if cached is None:
        found = tag_for_keyword(keyword)
        if found is None:
            return None
        cached = _TAG_CACHE[keyword] = (int(found), dictionary_VR(found))
    tag, dict_vr = cached
    elem = _elements(ds).get(tag)
    if elem is None:
        return None
    if isinstance(elem, RawDataElement):
        vr = elem.VR or dict_vr
        raw = elem.value
        if vr in _TEXT_VRS:
            if raw is None:
                return None
            text = raw.decode("latin-1").strip("\x00 ")
            parts = [p.strip("\x00 ") for p in text.split("\\")]
            return parts if len(parts) > 1 else parts[0]
        fmt = _BINARY_FORMATS.get(vr)
        if fmt is not None and elem.is_little_endian and isinstance(raw, bytes):
            size = struct.calcsize(fmt)
            if not raw:
                return None
            if len(raw) % size == 0:
                values = struct.unpack(f"<{len(raw) // size}{fmt}", raw)
                return values[0] if len(values) == 1 else list(values)
    return ds.get(keyword)


def _s(ds: Dataset | None, keyword: str) -> str:
    if ds is None:
        return ""
    value = _g(ds, keyword)
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _f(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        if len(value) == 0:
            return None
        value = value[0]
    try:
        text = str(value).strip()
        if not text:
            return None
        return float(text)
    except (TypeError, ValueError):
        return None


def _i(value: Any) -> int | None:
    number = _f(value)
    if number is None:
        return None
    return round(number)


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes):
        value = [value]
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


_PRIVATE_GROUPS = (0x0019, 0x0021, 0x0043, 0x2001, 0x2005)


def _creators(ds: Dataset) -> dict[tuple[int, str], int]:
    """Private creators of the groups breastai reads: (group, creator) -> block byte.

    Equivalent to ``Dataset.private_block(group, creator)`` lookups, done once per file.
    """
    found: dict[tuple[int, str], int] = {}
    for tag, element in _elements(ds).items():
        group, elem = tag >> 16, tag & 0xFFFF
        if group in _PRIVATE_GROUPS and 0x10 <= elem <= 0xFF:
            if isinstance(element, RawDataElement) and isinstance(element.value, bytes):
                value: Any = element.value.decode("latin-1", "replace").strip("\x00 ")
            else:
                value = ds[tag].value
                if isinstance(value, bytes):
                    value = value.decode("latin-1", "replace")
            found[(group, str(value).strip())] = elem
    return found


def _private(ds: Dataset, group: int, creator: str, element: int) -> Any:
    """Value of a private element found through its private creator (None when absent)."""
    creators: dict[tuple[int, str], int] | None = getattr(ds, "_breastai_creators", None)
    if creators is None:
        try:
            block = ds.private_block(group, creator)
            return block[element].value
        except KeyError:
            return None
    block_byte = creators.get((group, creator))
    if block_byte is None:
        return None
    elem = ds.get((group << 16) | (block_byte << 8) | element)
    return None if elem is None else elem.value


def _first_private(ds: Dataset, group: int, creators: Sequence[str], element: int) -> Any:
    for creator in creators:
        value = _private(ds, group, creator, element)
        if value is not None:
            return value
    return None


def _item(seq_holder: Dataset | None, keyword: str) -> Dataset | None:
    if seq_holder is None:
        return None
    seq = seq_holder.get(keyword)
    if not seq:
        return None
    item = seq[0]
    return item if isinstance(item, Dataset) else None


def _fg(per_frame: Dataset | None, shared: Dataset | None, keyword: str) -> Dataset | None:
    """A functional-group macro item: the per-frame one if present, else the shared one."""
    found = _item(per_frame, keyword)
    return found if found is not None else _item(shared, keyword)


# --------------------------------------------------------------------------------------------
# per-file reading

DURATION_FRAME = "FrameAcquisitionDuration (0018,9220)"
_DURATION_TAGS: tuple[tuple[str, Callable[[Dataset], Any], float], ...] = (
    ("AcquisitionDuration (0018,9073)", lambda ds: _g(ds, "AcquisitionDuration"), 1.0),
    (
        "Siemens SliceMeasurementDuration (0019,xx0B)",
        lambda ds: _private(ds, 0x0019, "SIEMENS MR HEADER", 0x0B),
        1e-3,
    ),
    (
        "Philips AcquisitionDuration (2005,xx33)",
        lambda ds: _private(ds, 0x2005, "Philips MR Imaging DD 001", 0x33),
        1.0,
    ),
    (
        "GE AcquisitionDuration (0019,xx5A)",
        lambda ds: _private(ds, 0x0019, "GEMS_ACQU_01", 0x5A),
        1e-6,
    ),
    ("TemporalResolution (0020,0110)", lambda ds: _g(ds, "TemporalResolution"), 1e-3),
)


DURATION_SOURCES = (DURATION_FRAME, *(name for name, _, _ in _DURATION_TAGS))


def _durations(ds: Dataset) -> tuple[tuple[str, float], ...]:
    """Acquisition durations the header states, best source first, in seconds (dicom-rules.md
    §1.6: 0018,9073 in s; Siemens 0019,xx0B in ms; Philips 2005,xx33 in s; GE 0019,xx5A in µs;
    TemporalResolution 0020,0110 in ms). FrameAcquisitionDuration (0018,9220, ms) is per frame
    of an enhanced object and is prepended by the frame expansion."""
    out: list[tuple[str, float]] = []
    for name, getter, scale in _DURATION_TAGS:
        value = _f(getter(ds))
        if value is not None and value > 0 and math.isfinite(value):
            out.append((name, value * scale))
    return tuple(out)


def _base_record(path: Path, ds: Dataset) -> FrameRecord:
    object.__setattr__(ds, "_breastai_creators", _creators(ds))
    meta = getattr(ds, "file_meta", None)
    ts = _s(meta, "TransferSyntaxUID") if meta is not None else ""
    rec = FrameRecord(path=path)
    rec.transfer_syntax = ts
    rec.sop_class = _s(ds, "SOPClassUID") or (_s(meta, "MediaStorageSOPClassUID") if meta else "")
    rec.sop_uid = _s(ds, "SOPInstanceUID")
    rec.study_uid = _s(ds, "StudyInstanceUID")
    rec.series_uid = _s(ds, "SeriesInstanceUID")
    rec.patient_id = _s(ds, "PatientID")
    rec.modality = _s(ds, "Modality")
    rec.series_number = _i(_g(ds, "SeriesNumber"))
    rec.acquisition_number = _i(_g(ds, "AcquisitionNumber"))
    rec.instance_number = _i(_g(ds, "InstanceNumber"))
    rec.frame_of_reference_uid = _s(ds, "FrameOfReferenceUID")
    rec.manufacturer = _s(ds, "Manufacturer")
    rec.series_description = _s(ds, "SeriesDescription")
    rec.protocol_name = _s(ds, "ProtocolName")
    rec.sequence_name = _s(ds, "SequenceName") or _s(ds, "PulseSequenceName")
    ge_seq = _private(ds, 0x0019, "GEMS_ACQU_01", 0x9C)
    rec.ge_pulse_seq = str(ge_seq).strip() if ge_seq is not None else ""
    rec.scanning_sequence = _s(ds, "ScanningSequence")
    rec.scan_options = _s(ds, "ScanOptions")
    image_type = _g(ds, "ImageType")
    if image_type is not None:
        values = [image_type] if isinstance(image_type, str) else list(image_type)
        rec.image_type = tuple(str(v).strip().upper() for v in values)
    rec.tr = _f(_g(ds, "RepetitionTime"))
    rec.te = _f(_g(ds, "EchoTime"))
    rec.fa = _f(_g(ds, "FlipAngle"))
    rec.b_value = _f(_g(ds, "DiffusionBValue"))
    if rec.b_value is None:
        rec.b_value = _f(_private(ds, 0x0043, "GEMS_PARM_01", 0x39))
    if rec.b_value is None:
        rec.b_value = _f(_private(ds, 0x0019, "SIEMENS MR HEADER", 0x0C))
    if rec.b_value is None:
        rec.b_value = _f(_private(ds, 0x2001, "Philips Imaging DD 001", 0x03))
    rec.contrast_agent = _s(ds, "ContrastBolusAgent")
    rec.mr_acq_type = _s(ds, "MRAcquisitionType")
    unparsed: list[tuple[str, str]] = []
    missing: list[str] = []
    pixel_ints: dict[str, int | None] = {}
    for keyword in PIXEL_INT_TAGS:
        raw_value = _g(ds, keyword)
        number = _f(raw_value)
        if raw_value is None or (isinstance(raw_value, str | bytes) and not raw_value):
            missing.append(keyword)
            pixel_ints[keyword] = None
        elif number is None or not math.isfinite(number) or number != round(number):
            unparsed.append((keyword, _raw_text(raw_value)))
            pixel_ints[keyword] = None
        else:
            pixel_ints[keyword] = round(number)
    rec.rows = pixel_ints["Rows"] or 0
    rec.cols = pixel_ints["Columns"] or 0
    rec.samples_per_pixel = pixel_ints["SamplesPerPixel"] or 1
    rec.bits_allocated = pixel_ints["BitsAllocated"] or 16
    rec.bits_stored = pixel_ints["BitsStored"]
    rec.pixel_representation = pixel_ints["PixelRepresentation"]
    rec.signed = rec.pixel_representation == 1
    rec.photometric = _s(ds, "PhotometricInterpretation")
    if not rec.photometric:
        missing.append("PhotometricInterpretation")
    if not ts:
        missing.append("TransferSyntaxUID")
    spacing = _geometry(ds, "PixelSpacing", 2, unparsed)
    rec.pixel_spacing = (spacing[0], spacing[1]) if spacing else None
    rec.iop = _geometry(ds, "ImageOrientationPatient", 6, unparsed)
    if rec.iop is not None and not _orthonormal_iop(rec.iop):
        unparsed.append(("ImageOrientationPatient", _raw_text(_g(ds, "ImageOrientationPatient"))))
        rec.iop = None  # not an orientation: never split a series by it (validation names it)
    if not _s(ds, "SOPClassUID"):
        missing.append("SOPClassUID")
    ipp = _geometry(ds, "ImagePositionPatient", 3, unparsed)
    rec.ipp = (ipp[0], ipp[1], ipp[2]) if ipp else None
    if rec.ipp is None:  # Philips: IPP only in the private (2005,xx0F) sequence (§2 case 25)
        private_seq = _private(ds, 0x2005, "Philips MR Imaging DD 005", 0x0F)
        if private_seq:
            item = private_seq[0]
            ipp = (
                _floats(item.get("ImagePositionPatient"), 3) if isinstance(item, Dataset) else None
            )
            if ipp:
                rec.ipp = (ipp[0], ipp[1], ipp[2])
                rec.ipp_source = "philips-private"
    rec.laterality = _s(ds, "ImageLaterality") or _s(ds, "Laterality")
    rec.gantry_tilt = _f(_g(ds, "GantryDetectorTilt"))
    rec.ge_series_plane = _i(_private(ds, 0x0019, "GEMS_ACQU_01", 0x17))
    rec.tpi = _i(_g(ds, "TemporalPositionIdentifier"))
    rec.n_temporal_positions = _i(_g(ds, "NumberOfTemporalPositions"))
    rec.ge_run = _i(_private(ds, 0x0019, "GEMS_ACQU_01", 0xA2))
    rec.philips_n_dyn = _i(_private(ds, 0x2001, "Philips Imaging DD 001", 0x81))
    rec.acq_dt = parse_dt(_g(ds, "AcquisitionDateTime")) or combine_date_time(
        _g(ds, "AcquisitionDate"), _g(ds, "AcquisitionTime")
    )
    rec.content_dt = combine_date_time(_g(ds, "ContentDate"), _g(ds, "ContentTime"))
    rec.series_dt = combine_date_time(_g(ds, "SeriesDate"), _g(ds, "SeriesTime"))
    rec.trigger_time_ms = _f(_g(ds, "TriggerTime"))
    rec.philips_dyn_time_s = _f(_private(ds, 0x2005, "Philips MR Imaging DD 001", 0xA0))
    rec.durations = _durations(ds)
    rec.temporal_resolution_ms = _f(_g(ds, "TemporalResolution"))
    start = _g(ds, "ContrastBolusStartTime")
    if start:
        day = _g(ds, "AcquisitionDate") or _g(ds, "SeriesDate") or _g(ds, "StudyDate")
        rec.contrast_start = combine_date_time(day, start)
    for keyword, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        raw_value = _g(ds, keyword)
        number = _f(raw_value)
        if number is None and raw_value is not None and _raw_text(raw_value):
            unparsed.append((keyword, _raw_text(raw_value)))
        setattr(rec, "slope" if keyword == "RescaleSlope" else "intercept", _or(number, default))
    rec.missing = tuple(missing)
    rec.unparsed = tuple(unparsed)
    return rec


#: Integer tags of the Image Pixel module every image file must carry.
PIXEL_INT_TAGS = (
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _raw_text(value: Any, limit: int = 40) -> str:
    """A short printable rendering of a header value for messages (control characters
    escaped, long values cut)."""
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    text = str(value).strip()
    out = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _orthonormal_iop(iop: Sequence[float], tol: float = 1e-2) -> bool:
    row, col = iop[:3], iop[3:6]
    nr = math.sqrt(sum(v * v for v in row))
    nc = math.sqrt(sum(v * v for v in col))
    dot = sum(a * b for a, b in zip(row, col, strict=True))
    return abs(nr - 1) <= tol and abs(nc - 1) <= tol and abs(dot) <= tol


def _geometry(
    ds: Dataset, keyword: str, n: int, unparsed: list[tuple[str, str]]
) -> tuple[float, ...] | None:
    """A geometry vector of ``n`` finite numbers, or None; a present but unusable value
    (wrong count, text, NaN/inf) is recorded in ``unparsed``."""
    raw_value = _g(ds, keyword)
    if raw_value is None:
        return None
    values = _floats(raw_value, n)
    if values is None or not all(math.isfinite(v) for v in values):
        if _raw_text(raw_value):
            unparsed.append((keyword, _raw_text(raw_value)))
        return None
    return values


def _expand_frames(rec: FrameRecord, ds: Dataset) -> list[FrameRecord]:
    """Expand an enhanced multi-frame header into one record per frame."""
    n_frames = _i(ds.get("NumberOfFrames")) or 1
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    if not per_frame:
        rec.n_frames = n_frames
        return [rec] if n_frames == 1 else []
    pointers: list[int] = []
    for item in ds.get("DimensionIndexSequence") or []:
        pointer = item.get("DimensionIndexPointer")
        pointers.append(int(pointer) if pointer is not None else -1)
    tpi_component = pointers.index(_TAG_TPI) if _TAG_TPI in pointers else None
    extra_components = [
        k for k, p in enumerate(pointers) if p not in _SPATIAL_POINTERS and p != _TAG_TPI
    ]
    records: list[FrameRecord] = []
    for number, item in enumerate(per_frame, start=1):
        r = dataclasses.replace(rec, frame=number)
        r.n_frames = n_frames
        content = _fg(item, shared, "FrameContentSequence")
        if content is not None:
            r.tp_index = _i(content.get("TemporalPositionIndex"))
            r.stack_id = _s(content, "StackID") or None
            div = content.get("DimensionIndexValues")
            if div is not None:
                values = [div] if isinstance(div, int) else list(div)
                if tpi_component is not None and tpi_component < len(values):
                    r.tp_index_div = int(values[tpi_component])
                r.dim_extra = tuple(values[k] for k in extra_components if k < len(values))
            r.frame_acq_dt = parse_dt(content.get("FrameAcquisitionDateTime"))
            r.frame_ref_dt = parse_dt(content.get("FrameReferenceDateTime"))
            duration = _f(content.get("FrameAcquisitionDuration"))
            if duration is not None and duration > 0:
                r.durations = ((DURATION_FRAME, duration / 1000.0), *rec.durations)
        position = _fg(item, shared, "PlanePositionSequence")
        if position is not None:
            ipp = _floats(position.get("ImagePositionPatient"), 3)
            r.ipp = (ipp[0], ipp[1], ipp[2]) if ipp else r.ipp
        orientation = _fg(item, shared, "PlaneOrientationSequence")
        if orientation is not None:
            r.iop = _floats(orientation.get("ImageOrientationPatient"), 6) or r.iop
        measures = _fg(item, shared, "PixelMeasuresSequence")
        if measures is not None:
            spacing = _floats(measures.get("PixelSpacing"), 2)
            if spacing:
                r.pixel_spacing = (spacing[0], spacing[1])
        transform = _fg(item, shared, "PixelValueTransformationSequence")
        if transform is not None:
            slope = _f(transform.get("RescaleSlope"))
            intercept = _f(transform.get("RescaleIntercept"))
            r.slope = slope if slope is not None else r.slope
            r.intercept = intercept if intercept is not None else r.intercept
        timing = _fg(item, shared, "MRTimingAndRelatedParametersSequence")
        if timing is not None:
            r.tr = _f(timing.get("RepetitionTime")) or r.tr
            r.fa = _f(timing.get("FlipAngle")) or r.fa
        echo = _fg(item, shared, "MREchoSequence")
        if echo is not None:
            r.te = _f(echo.get("EffectiveEchoTime")) or r.te
        diffusion = _fg(item, shared, "MRDiffusionSequence")
        if diffusion is not None:
            b_value = _f(diffusion.get("DiffusionBValue"))
            r.b_value = b_value if b_value is not None else r.b_value
        frame_type = _fg(item, shared, "MRImageFrameTypeSequence")
        if frame_type is not None and frame_type.get("FrameType") is not None:
            values = frame_type.FrameType
            r.image_type = tuple(
                str(v).strip().upper() for v in ([values] if isinstance(values, str) else values)
            )
        records.append(r)
    return records


_POOL_MIN_FILES = 3000  # files: below this the header pass runs without a pool


def read_file_records(path: Path) -> tuple[str, list[FrameRecord], str]:
    """Read one file's header.

    Little-endian Part 10 files are parsed by a lean header parser that yields the same raw
    elements as ``pydicom.dcmread(stop_before_pixels=True)`` (checked by the tests); any other
    file (no preamble, big endian, deflated, unusual encodings, damaged) is read by pydicom.

    Returns
    -------
    tuple
        ``(status, records, message)``; status is ``"ok"``, ``"non-dicom"``, ``"dicomdir"``,
        ``"corrupt"`` or ``"unreadable"``.
    """
    try:
        ds_fast, has_magic = read_header(path)
    except OSError as exc:
        return "unreadable", [], f"{exc.strerror or exc}"
    try:
        if ds_fast is not None:
            ds = ds_fast
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=not has_magic)
    except Exception as exc:  # pydicom raises many types on damaged files
        if not has_magic:
            return "non-dicom", [], ""
        return "corrupt", [], f"{type(exc).__name__}: {exc}"
    if "SOPClassUID" not in ds and "ImagePositionPatient" not in ds:
        if not has_magic:
            return "non-dicom", [], ""
        if "DirectoryRecordSequence" not in ds:
            return "corrupt", [], "no SOP Class UID and no image position (damaged header)"
    meta = getattr(ds, "file_meta", None)
    media_class = _s(meta, "MediaStorageSOPClassUID") if meta is not None else ""
    if media_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        return "dicomdir", [], ""
    try:
        rec = _base_record(path, ds)
        kind = non_image_kind(rec.sop_class)
        if kind is not None or "Rows" not in ds:
            rec.image = False
            rec.non_image_kind = kind or "no pixel data"
            return "ok", [rec], ""
        if "PerFrameFunctionalGroupsSequence" in ds or (_i(ds.get("NumberOfFrames")) or 1) > 1:
            return "ok", _expand_frames(rec, ds), ""
        return "ok", [rec], ""
    except Exception as exc:  # a header whose values cannot be interpreted
        return "corrupt", [], f"{type(exc).__name__}: {exc}"


def _read_chunk(paths: Sequence[Path]) -> list[tuple[Path, str, list[FrameRecord], str]]:
    return [(p, *read_file_records(p)) for p in paths]


def _list_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            files.append(Path(dirpath) / name)
    return files


def index_folder(
    root: Path,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SeriesIndex:
    """Read the header of every file under ``root`` (recursively) into a :class:`SeriesIndex`.

    Parameters
    ----------
    root:
        A folder (or a single DICOM file).
    workers:
        Worker processes for the header pass; None picks ``min(os.cpu_count(), 8)`` for folders
        of more than 3000 files on machines with at least 4 CPUs, and 1 (no pool) otherwise
        (starting workers and sending the records back costs more than it saves below that).
    progress:
        Optional callback ``progress(done, total)``.

    Returns
    -------
    SeriesIndex
        The frame records plus counts of skipped files and the list of corrupt/unreadable ones.
    """
    root = Path(root)
    files = [root] if root.is_file() else _list_files(root)
    index = SeriesIndex(root=root, n_files=len(files))
    if workers is None:  # ~0.3 ms per classic header: a pool pays off only for big folders
        cpus = os.cpu_count() or 1
        workers = min(cpus, 8) if len(files) > _POOL_MIN_FILES and cpus >= 4 else 1
    results: Iterable[tuple[Path, str, list[FrameRecord], str]]
    if workers > 1 and len(files) > 1:
        chunk = max(16, len(files) // (workers * 8) + 1)
        chunks = [files[i : i + chunk] for i in range(0, len(files), chunk)]
        out: list[tuple[Path, str, list[FrameRecord], str]] = []
        try:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for part in pool.map(_read_chunk, chunks):
                    out.extend(part)
                    if progress is not None:
                        progress(len(out), len(files))
        except (OSError, BrokenProcessPool) as exc:  # no worker processes here: read serially
            logger.warning("header pass without worker processes (%s)", exc)
            out = _read_chunk(files)
        results = out
    else:

        def _serial() -> Iterable[tuple[Path, str, list[FrameRecord], str]]:
            for n, path in enumerate(files, start=1):
                yield (path, *read_file_records(path))
                if progress is not None:
                    progress(n, len(files))

        results = _serial()
    for path, status, records, message in results:
        if status == "ok":
            index.records.extend(records)
        elif status == "non-dicom":
            index.n_non_dicom += 1
        elif status == "dicomdir":
            index.n_dicomdir += 1
        else:
            index.problems.append(FileProblem(path, status, message))
    for problem in index.problems:
        logger.warning("skipped %s file %s: %s", problem.kind, problem.path, problem.message)
    return index
