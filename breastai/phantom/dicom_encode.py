"""DICOM value formatting and a cached Part 10 encoder for the phantom's DICOM writer."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["Part10Encoder", "da_value", "ds_value", "dt_value", "tm_value"]


def ds_value(x: float) -> str:
    """A DS (decimal string) value as pydicom writes it, never "-0"."""
    from pydicom.valuerep import format_number_as_ds

    s = format_number_as_ds(float(x))
    return "0" if s in ("-0", "-0.0") else s


def tm_value(t: dt.datetime) -> str:
    """A TM value (HHMMSS.ffffff cut to milliseconds)."""
    return t.strftime("%H%M%S.%f")[:13]


def da_value(t: dt.datetime | dt.date) -> str:
    """A DA value (YYYYMMDD)."""
    return t.strftime("%Y%m%d")


def dt_value(t: dt.datetime) -> str:
    """A DT value (YYYYMMDDHHMMSS.ffffff)."""
    return t.strftime("%Y%m%d%H%M%S.%f")


class Part10Encoder:
    """Explicit VR little endian Part 10 encoder with a per-element byte cache.

    Most elements of a series are the same in every file; encoding each distinct (tag, VR, value)
    once makes writing hundreds of slices several times faster than ``dcmwrite``, with identical
    bytes (checked by the tests against ``pydicom.dcmwrite``).
    """

    def __init__(self) -> None:
        self.cache: dict[tuple[Any, ...], bytes] = {}

    @staticmethod
    def _key(elem: Any) -> tuple[Any, ...] | None:
        v = elem.value
        if elem.VR in ("SQ", "OW", "OB", "UN") or isinstance(v, bytes | bytearray):
            return None
        if isinstance(v, list | tuple) or type(v).__name__ == "MultiValue":
            return (int(elem.tag), elem.VR, tuple(str(x) for x in v))
        return (int(elem.tag), elem.VR, type(v).__name__, str(v))

    def encode(self, ds: Dataset) -> bytes:
        """The Part 10 bytes of ``ds`` (file meta, then the data set in tag order)."""
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_data_element, write_file_meta_info

        meta = DicomBytesIO()
        meta.is_little_endian, meta.is_implicit_VR = True, False
        meta.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
        parts = [meta.getvalue()]
        encoding = ds.get("SpecificCharacterSet", "iso8859")
        for tag in sorted(ds.keys()):
            if tag.element == 0 and tag.group > 6:
                continue
            elem = ds[tag]
            key = self._key(elem)
            blob = self.cache.get(key) if key is not None else None
            if blob is None:
                fp = DicomBytesIO()
                fp.is_little_endian, fp.is_implicit_VR = True, False
                write_data_element(fp, elem, encoding)
                blob = fp.getvalue()
                if key is not None:
                    self.cache[key] = blob
            parts.append(blob)
        return b"".join(parts)
