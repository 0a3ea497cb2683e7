"""Pixel decoding of DICOM frames: the fast path for uncompressed files (the pixel bytes read
straight from the end of the file), pydicom and its decoder plugins for the rest, and the float32
volume buffer decoded into (a writable view of a new SimpleITK image's own buffer via ctypes).

:mod:`breastai.io.dicom` assembles the phases; this module only turns frame records into
rescaled float32 pixels. Arrays are ``(rows, cols)`` per frame and ``(z, y, x)`` per volume.
"""

# SimpleITK ships without type hints for its methods.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import ctypes
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset

from breastai.errors import InconsistentGeometryError, InputError, UnsupportedInputError
from breastai.io.dicom_index import FrameRecord

__all__ = [
    "PixelReader",
    "check_decoder",
    "decode_pixels",
    "image_view",
    "new_volume",
    "writable_views",
]

_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle (or numpy only)",
}
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"}


class PixelReader:
    """Reads stored pixel data of frames, caching multi-frame files and slice hashes."""

    def __init__(self) -> None:
        self._multi: dict[Path, np.ndarray] = {}
        self._hash: dict[tuple[Path, int], int] = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    def clear(self) -> None:
        self._multi.clear()

    @staticmethod
    def _decode(path: Path) -> np.ndarray:
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:
            raise InputError(
                f"Could not read the pixel data of {path} ({type(exc).__name__}: {exc}); "
                "the file is damaged: remove it or re-export the study."
            ) from None
        return decode_pixels(ds, path)

    @staticmethod
    def _tail_layout(rec: FrameRecord) -> tuple[int, int, np.dtype[Any]] | None:
        """(pixel bytes, element header bytes, dtype) of an uncompressed little-endian
        single-frame file whose pixel data can be read from the end of the file; None: use
        pydicom."""
        if rec.transfer_syntax not in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"):
            return None
        if rec.bits_allocated not in (8, 16, 32) or rec.samples_per_pixel != 1:
            return None
        if rec.rows <= 0 or rec.cols <= 0:
            return None
        nbytes = rec.rows * rec.cols * (rec.bits_allocated // 8)
        head_len = 12 if rec.transfer_syntax == "1.2.840.10008.1.2.1" else 8
        kind = "i" if rec.signed else "u"
        return nbytes, head_len, np.dtype(f"<{kind}{rec.bits_allocated // 8}")

    @staticmethod
    def _tail_into(rec: FrameRecord, buf: bytearray, nbytes: int, head_len: int) -> bool:
        """Read the PixelData element header and value, which end the file, into ``buf``
        (``head_len + nbytes`` bytes); True only after checking the element header (tag, VR
        and length) in front of the pixel bytes."""
        try:
            with open(rec.path, "rb", buffering=0) as fh:
                size = fh.seek(0, os.SEEK_END)
                if size < nbytes + head_len + 132:
                    return False
                fh.seek(size - nbytes - head_len)
                if fh.readinto(buf) != nbytes + head_len:
                    return False
        except OSError:
            return False
        if buf[:4] != b"\xe0\x7f\x10\x00":
            return False
        if head_len == 12 and (bytes(buf[4:6]) not in (b"OW", b"OB") or buf[6:8] != b"\x00\x00"):
            return False
        return int.from_bytes(buf[head_len - 4 : head_len], "little") == nbytes

    def _tail(self, rec: FrameRecord) -> np.ndarray | None:
        """Fast path for uncompressed little-endian single-frame files whose last element is the
        pixel data: read the pixel bytes straight from the end of the file after checking the
        PixelData element header in front of them (tag, VR and length). None: use pydicom."""
        layout = self._tail_layout(rec)
        if layout is None:
            return None
        nbytes, head_len, dtype = layout
        buf = bytearray(nbytes + head_len)
        if not self._tail_into(rec, buf, nbytes, head_len):
            return None
        return np.frombuffer(buf, dtype=dtype, offset=head_len).reshape(rec.rows, rec.cols)

    def frame_into(self, rec: FrameRecord, out: np.ndarray) -> None:
        """Write the frame's rescaled values (stored x slope + intercept) into ``out`` (float32,
        rows x cols). Uncompressed files are read into a per-thread buffer, nothing else is
        allocated."""
        layout = self._tail_layout(rec) if rec.frame == 0 else None
        arr: np.ndarray | None = None
        if layout is not None:
            nbytes, head_len, dtype = layout
            buf = getattr(self._local, "buf", None)
            if buf is None or len(buf) != nbytes + head_len:
                buf = bytearray(nbytes + head_len)
                self._local.buf = buf
            if self._tail_into(rec, buf, nbytes, head_len):
                arr = np.frombuffer(buf, dtype=dtype, offset=head_len).reshape(rec.rows, rec.cols)
        if arr is None:
            arr = self.frame(rec)
        if arr.shape != out.shape:
            raise InconsistentGeometryError(
                f"{rec.path}: pixel data is {arr.shape}, expected {out.shape}."
            )
        if rec.slope == 1.0 and not rec.intercept:
            np.copyto(out, arr, casting="unsafe")
        else:
            np.multiply(arr, np.float32(rec.slope), out=out, casting="unsafe")
            if rec.intercept:
                out += np.float32(rec.intercept)

    def frame(self, rec: FrameRecord) -> np.ndarray:
        if rec.frame == 0:
            fast = self._tail(rec)
            if fast is not None:
                return fast
            arr = self._decode(rec.path)
            return arr[0] if arr.ndim == 3 else arr
        with self._lock:  # one decode per multi-frame file, also with several threads
            cached = self._multi.get(rec.path)
            if cached is None:
                cached = self._decode(rec.path)
                if cached.ndim == 2:
                    cached = cached[None]
                self._multi[rec.path] = cached
        arr = cached
        if rec.frame > arr.shape[0]:
            raise InputError(
                f"{rec.path} declares frame {rec.frame} but holds {arr.shape[0]} frames; "
                "the file is truncated: re-export the study."
            )
        frame: np.ndarray = arr[rec.frame - 1]
        return frame

    def digest(self, rec: FrameRecord) -> int:
        key = (rec.path, rec.frame)
        if key not in self._hash:
            self._hash[key] = hash(self.frame(rec).tobytes())
        return self._hash[key]


def decode_pixels(ds: Dataset, path: Path) -> np.ndarray:
    """Stored values of a dataset's pixel data; one clear error for truncation or decoders."""
    if "PixelData" not in ds:
        raise InputError(f"{path} has no pixel data; re-export the study with images.")
    meta = getattr(ds, "file_meta", None)
    try:
        ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.get("BitsAllocated", 16))
        signed = int(ds.get("PixelRepresentation", 0)) == 1
    except Exception as exc:  # values the header pass read differently (damaged file)
        raise InputError(
            f"{path.name}: the pixel description (Rows, Columns, NumberOfFrames, BitsAllocated, "
            f"PixelRepresentation) cannot be read ({type(exc).__name__}); the file is damaged: "
            "remove it or re-export the study."
        ) from None
    if ts in _UNCOMPRESSED and ts != "1.2.840.10008.1.2.1.99" and bits in (8, 16, 32):
        dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}").newbyteorder("<")
        raw = ds.PixelData
        expected = rows * cols * frames * (bits // 8)
        if len(raw) < expected:
            raise InputError(
                f"{path} has truncated pixel data ({len(raw)} of {expected} bytes); "
                "the file is damaged: remove it or re-export the study."
            )
        if len(raw) > expected + 1:  # one pad byte is allowed
            raise InputError(
                f"{path.name}: PixelData (7FE0,0010) holds {len(raw)} bytes but Rows x Columns x "
                f"BitsAllocated/8 = {rows} x {cols} x {bits // 8} = {expected}; the header does "
                "not describe the pixel data: fix the header or re-export the study."
            )
        arr = np.frombuffer(raw, dtype=dtype, count=rows * cols * frames)
        return arr.reshape(frames, rows, cols) if frames > 1 else arr.reshape(rows, cols)
    check_decoder(ts)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(ds.pixel_array)
    except (ValueError, EOFError, AttributeError, KeyError, TypeError) as exc:
        raise InputError(
            f"{path} has truncated or damaged pixel data ({exc}); remove it or re-export the study."
        ) from None
    except (NotImplementedError, RuntimeError) as exc:
        raise UnsupportedInputError(
            f"{path}: pixel data in transfer syntax {ts} could not be decoded ({exc}); "
            f"install {_DECODER_PACKAGES.get(ts, 'a pydicom pixel data plugin')}."
        ) from None


def check_decoder(ts: str) -> None:
    """Raise UnsupportedInputError naming the transfer syntax and the package that decodes it."""
    if not ts or ts in _UNCOMPRESSED:
        return
    from pydicom.pixels.decoders.base import get_decoder

    try:
        name = pydicom.uid.UID(ts).name
    except Exception:
        name = ts
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise UnsupportedInputError(
            f"The study uses transfer syntax {ts} ({name}), which breastai cannot decode; "
            "re-export it uncompressed or as JPEG Lossless / JPEG 2000."
        ) from None
    if not decoder.is_available:
        raise UnsupportedInputError(
            f"The study uses transfer syntax {ts} ({name}) but no decoder is installed; "
            f"install {_DECODER_PACKAGES.get(ts, 'a pydicom pixel data plugin')}."
        )


_WRITABLE_VIEWS: bool | None = None


def image_view(image: sitk.Image) -> np.ndarray | None:
    """A writable float32 numpy view of a new float32 image's own pixel buffer, or None.

    ``sitk.GetArrayViewFromImage`` makes the buffer unique and returns a read-only view of it;
    the view is re-wrapped writable so that slices are decoded straight into the image (no
    second 4-byte-per-voxel buffer and copy). The caller keeps ``image`` alive while writing.
    """
    view = sitk.GetArrayViewFromImage(image)
    if view.dtype != np.float32 or not view.flags.c_contiguous:
        return None
    address = int(view.__array_interface__["data"][0])
    buffer = (ctypes.c_float * view.size).from_address(address)
    writable: np.ndarray = np.ctypeslib.as_array(buffer).reshape(view.shape)
    return writable


def writable_views() -> bool:
    """Whether :func:`image_view` writes land in the image (checked once per process)."""
    global _WRITABLE_VIEWS
    if _WRITABLE_VIEWS is None:
        try:
            probe = sitk.Image(3, 2, 2, sitk.sitkFloat32)
            view = image_view(probe)
            ok = view is not None and view.shape == (2, 2, 3)
            if ok and view is not None:
                pattern = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
                view[...] = pattern
                ok = bool(np.array_equal(sitk.GetArrayFromImage(probe), pattern))
                ok = ok and probe.GetPixel(2, 1, 1) == 11.0
        except Exception:  # any surprise: use the copying path
            ok = False
        _WRITABLE_VIEWS = ok
    return _WRITABLE_VIEWS


def new_volume(nz: int, ny: int, nx: int) -> tuple[sitk.Image | None, np.ndarray]:
    """A float32 (z, y, x) buffer to decode into: the pixel buffer of a new sitk image when it
    can be written in place, else a numpy array (image None: built by copying afterwards)."""
    if writable_views():
        image = sitk.Image(nx, ny, nz, sitk.sitkFloat32)
        view = image_view(image)
        if view is not None:
            return image, view
    return None, np.empty((nz, ny, nx), dtype=np.float32)
