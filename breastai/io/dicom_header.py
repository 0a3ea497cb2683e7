"""Lean DICOM Part 10 header parser for the header index (the common case: little-endian files).

``read_header`` yields the same raw elements as ``pydicom.dcmread(stop_before_pixels=True)``
(checked by tests/test_io_fastpath.py) without decoding anything it does not need; a file it does
not handle (no preamble, big endian, deflated, unusual encodings, damaged) returns None, and
``breastai.io.dicom_index`` reads it with pydicom instead.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag

__all__ = ["read_header"]

_VR_LENGTH_32 = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
_VALID_VRS = (
    _VR_LENGTH_32
    | frozenset(
        (b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN")
    )
    | frozenset((b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"))
)
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_UNDEFINED = 0xFFFFFFFF
_HEAD_BYTES = 16384
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<L")
_TAG_LEN = struct.Struct("<HHL")
_TAG_VR_LEN16 = struct.Struct("<HH2sH")


class _Fallback(Exception):
    """The fast parser does not handle this file: read it with pydicom."""


class _NeedMore(Exception):
    """The header continues past the bytes read so far."""


def _skip_item_elements(buf: bytes, pos: int, implicit: bool, end: int | None) -> int:
    """Skip the elements of a sequence item up to ``end`` (defined length) or past the item
    delimiter (``end`` None); returns the position after the item."""
    limit = len(buf)
    while end is None or pos < end:
        if pos + 8 > limit:
            raise _NeedMore
        group, element, length = _TAG_LEN.unpack_from(buf, pos)
        tag = group << 16 | element
        if tag == 0xFFFEE00D:
            if end is not None:
                raise _Fallback
            return pos + 8
        if implicit:
            is_sq = length == _UNDEFINED
            pos += 8
        else:
            vr = buf[pos + 4 : pos + 6]
            if vr not in _VALID_VRS:
                raise _Fallback
            if vr in _VR_LENGTH_32:
                if pos + 12 > limit:
                    raise _NeedMore
                length = _U32.unpack_from(buf, pos + 8)[0]
                pos += 12
            else:
                length = _U16.unpack_from(buf, pos + 6)[0]
                pos += 8
            is_sq = vr == b"SQ"
        if length == _UNDEFINED:
            if not is_sq:
                raise _Fallback
            pos = _skip_sequence(buf, pos, implicit)
        else:
            pos += length
    if pos != end:
        raise _Fallback
    return pos


def _skip_sequence(buf: bytes, pos: int, implicit: bool) -> int:
    """Skip the items of an undefined-length sequence; returns the position after its
    sequence delimiter."""
    limit = len(buf)
    while True:
        if pos + 8 > limit:
            raise _NeedMore
        group, element, length = _TAG_LEN.unpack_from(buf, pos)
        tag = group << 16 | element
        pos += 8
        if tag == 0xFFFEE0DD:
            return pos
        if tag != 0xFFFEE000:
            raise _Fallback
        if length == _UNDEFINED:
            pos = _skip_item_elements(buf, pos, implicit, None)
        else:
            if pos + length > limit:
                raise _NeedMore
            _skip_item_elements(buf, pos, implicit, pos + length)
            pos += length


def _parse_elements(
    buf: bytes, pos: int, implicit: bool, *, meta: bool, complete: bool
) -> tuple[dict[BaseTag, RawDataElement | DataElement], int]:
    """Top-level elements from ``pos``: the file meta group (``meta``) or the data set up to the
    pixel data. Mirrors ``pydicom.filereader.data_element_generator``: raw values, VR None for
    implicit VR (resolved by pydicom on access), undefined-length sequences kept as their raw
    item bytes including the sequence delimiter (pydicom's ``convert_SQ`` reads them)."""
    out: dict[BaseTag, RawDataElement | DataElement] = {}
    limit = len(buf)
    while True:
        if pos + 8 > limit:
            if not complete:
                raise _NeedMore
            return out, pos  # end of file (pydicom ignores fewer than 8 trailing bytes)
        group, element = _U16.unpack_from(buf, pos)[0], _U16.unpack_from(buf, pos + 2)[0]
        tag = group << 16 | element
        if meta and group != 2:
            return out, pos
        if tag in _PIXEL_TAGS:
            return out, pos
        if tag > 0x7FE00010 or tag == 0xFFFEE00D:
            raise _Fallback
        vr: str | None
        if implicit:
            length = _U32.unpack_from(buf, pos + 4)[0]
            vr = None
            value_pos = pos + 8
            is_sq = length == _UNDEFINED
        else:
            vr_bytes = buf[pos + 4 : pos + 6]
            if vr_bytes not in _VALID_VRS:
                raise _Fallback
            if vr_bytes in _VR_LENGTH_32:
                if pos + 12 > limit:
                    raise _NeedMore
                length = _U32.unpack_from(buf, pos + 8)[0]
                value_pos = pos + 12
            else:
                length = _U16.unpack_from(buf, pos + 6)[0]
                value_pos = pos + 8
            vr = vr_bytes.decode("ascii")
            is_sq = vr == "SQ"
        if length == _UNDEFINED:
            if meta or not is_sq:
                raise _Fallback
            end = _skip_sequence(buf, value_pos, implicit)
            value: Any = buf[value_pos:end]
            pos = end
            vr = "SQ"
        else:
            end = value_pos + length
            if end > limit:
                if complete:
                    raise _Fallback
                raise _NeedMore
            value = buf[value_pos:end] if length else empty_value_for_VR(vr, raw=True)
            pos = end
        key = BaseTag(tag)
        out[key] = RawDataElement(key, vr, length, value, value_pos, implicit, True, True, False)


def _fast_dataset(buf: bytes, complete: bool) -> Dataset:
    """A header-only pydicom ``Dataset`` (with ``file_meta``) parsed from the first bytes of a
    Part 10 file; raises _NeedMore or _Fallback when pydicom must do it."""
    if len(buf) < 132 or buf[128:132] != b"DICM":
        raise _Fallback
    meta, pos = _parse_elements(buf, 132, False, meta=True, complete=complete)
    ts_elem = meta.get(BaseTag(0x00020010))
    if ts_elem is None or not ts_elem.value:
        raise _Fallback
    ts = ts_elem.value.decode("latin-1").strip("\x00 ")
    if ts == _IMPLICIT_LE:
        implicit = True
    elif ts == _EXPLICIT_LE or ts.startswith("1.2.840.10008.1.2.4.") or ts == "1.2.840.10008.1.2.5":
        implicit = False
    else:  # big endian, deflated, private or unknown syntaxes
        raise _Fallback
    if pos + 6 <= len(buf) and implicit and buf[pos + 4 : pos + 6] in _VALID_VRS:
        raise _Fallback  # explicit VR under an implicit transfer syntax (pydicom switches)
    elements, _ = _parse_elements(buf, pos, implicit, meta=False, complete=complete)
    ds = Dataset(elements)
    ds.file_meta = FileMetaDataset(meta)
    return ds


def read_header(path: Path) -> tuple[Dataset | None, bool]:
    """``(dataset or None, has_magic)``: the fast parser's header, or None where pydicom must
    read the file. Reads 16 KiB, then doubles until the header is complete (never the whole
    pixel data of a big file just for its header). Raises OSError when the file cannot be read.
    """
    with open(path, "rb") as fh:
        buf = fh.read(_HEAD_BYTES)
        has_magic = len(buf) >= 132 and buf[128:132] == b"DICM"
        if not has_magic:
            return None, False
        eof = len(buf) < _HEAD_BYTES
        while True:
            try:
                return _fast_dataset(buf, eof), True
            except (_NeedMore, struct.error):
                if eof:
                    return None, True
                more = fh.read(len(buf))
                eof = len(more) < len(buf)
                buf += more
            except Exception:  # _Fallback, or anything unexpected: pydicom decides
                return None, True
