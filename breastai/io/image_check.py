"""Checked reading of NIfTI/NRRD/MHA images: impossible headers refused before ITK guesses.

ITK reads a NIfTI header with a zero, negative or NaN voxel size, an invalid quaternion or a
truncated voxel block and returns *some* image (spacing 1, a default orientation, zero-filled
voxels), printing warnings from C++ straight to the terminal. :func:`read_checked` checks the
NIfTI header first (dimensions, voxel sizes of 0.05-50 mm, quaternion and affine rows, voxel data
length of an uncompressed file), reads with ITK's native stderr captured into the log, and checks
the image's geometry (finite origin, spacing in range, orthonormal direction).
"""

# SimpleITK's bindings are untyped (no stubs); calling them is fine here.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import contextlib
import gzip
import logging
import math
import os
import struct
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from breastai.errors import InputError
from breastai.io.dicom_validate import MAX_PIXEL_SPACING_MM, MIN_PIXEL_SPACING_MM

__all__ = ["check_image_geometry", "check_nifti_header", "quiet_native_stderr", "read_checked"]

log = logging.getLogger(__name__)

_BITPIX_OK = {1, 8, 16, 32, 64, 128, 256}


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send what C/C++ code writes on file descriptor 2 (ITK, VNL) to the log instead of the
    terminal while the block runs."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        fd = 2
    try:
        saved = os.dup(fd)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            if text:
                log.debug("native library output: %s", " | ".join(text.splitlines()[:20]))


def _header(path: Path) -> bytes:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            return bytes(fh.read(352))
    except (OSError, EOFError):
        return b""


def check_nifti_header(path: Path) -> None:
    """Refuse a NIfTI-1 header that no scanner or tool writes (see the module docstring).

    Raises
    ------
    InputError
        Naming the field, its value and what was expected.
    """
    head = _header(path)
    if len(head) < 348:
        return  # not a NIfTI-1 file (or unreadable): ITK decides and reports
    for endian in ("<", ">"):
        if struct.unpack_from(endian + "i", head, 0)[0] == 348:
            break
    else:
        return  # NIfTI-2 or another format
    name = path.name

    def bad(field: str, value: object, expected: str) -> InputError:
        return InputError(
            f"{name}: NIfTI header field {field} is {value}; expected {expected}: the file is "
            "damaged, re-export it."
        )

    dim = struct.unpack_from(endian + "8h", head, 40)
    if not 1 <= dim[0] <= 7:
        raise bad("dim[0]", dim[0], "1-7")
    if any(d < 1 for d in dim[1 : dim[0] + 1]):
        raise bad("dim", list(dim[1 : dim[0] + 1]), "sizes >= 1")
    bitpix = struct.unpack_from(endian + "h", head, 72)[0]
    pixdim = struct.unpack_from(endian + "8f", head, 76)
    for k in range(1, min(dim[0], 3) + 1):
        v = pixdim[k]
        if not (math.isfinite(v) and MIN_PIXEL_SPACING_MM <= abs(v) <= MAX_PIXEL_SPACING_MM):
            raise bad(
                f"pixdim[{k}] (voxel size)",
                f"{v:g}",
                f"{MIN_PIXEL_SPACING_MM:g}-{MAX_PIXEL_SPACING_MM:g} mm",
            )
    vox_offset = struct.unpack_from(endian + "f", head, 108)[0]
    qform_code, sform_code = struct.unpack_from(endian + "2h", head, 252)
    quatern = struct.unpack_from(endian + "6f", head, 256)
    srow = struct.unpack_from(endian + "12f", head, 280)
    if qform_code > 0:
        if not all(math.isfinite(v) for v in quatern):
            raise bad("quatern_b/c/d or qoffset", [f"{v:g}" for v in quatern], "finite numbers")
        if quatern[0] ** 2 + quatern[1] ** 2 + quatern[2] ** 2 > 1.0 + 1e-3:
            raise bad(
                "quatern_b/c/d",
                [f"{v:g}" for v in quatern[:3]],
                "a unit quaternion's b, c, d (b² + c² + d² <= 1)",
            )
    if sform_code > 0:
        if not all(math.isfinite(v) for v in srow):
            raise bad("srow_x/y/z", "not finite", "finite numbers")
        rot = np.asarray(srow, dtype=float).reshape(3, 4)[:, :3]
        if abs(float(np.linalg.det(rot))) < 1e-9:
            raise bad("srow_x/y/z", "a singular matrix", "an invertible affine")
    if not path.name.lower().endswith(".gz") and bitpix in _BITPIX_OK and math.isfinite(vox_offset):
        n_voxels = int(np.prod([int(d) for d in dim[1 : dim[0] + 1]], dtype=np.int64))
        needed = int(vox_offset) + n_voxels * bitpix // 8
        size = path.stat().st_size
        if size < needed:
            raise InputError(
                f"{name}: the voxel data is truncated ({size} bytes, the header describes "
                f"{needed}); the file is damaged: re-export it."
            )


def check_image_geometry(image: sitk.Image, path: Path) -> None:
    """Refuse an image whose origin, spacing or direction cannot describe a real acquisition."""
    spacing = image.GetSpacing()
    origin = image.GetOrigin()
    direction = np.asarray(image.GetDirection(), dtype=np.float64)
    name = path.name
    if not all(math.isfinite(v) and v > 0 for v in spacing):
        raise InputError(f"{name}: voxel spacing {list(spacing)} is not positive and finite.")
    if not all(MIN_PIXEL_SPACING_MM <= v <= MAX_PIXEL_SPACING_MM for v in spacing[:3]):
        raise InputError(
            f"{name}: voxel spacing {[round(v, 6) for v in spacing]} mm is outside "
            f"{MIN_PIXEL_SPACING_MM:g}-{MAX_PIXEL_SPACING_MM:g} mm; the header is damaged: "
            "re-export the image."
        )
    if not all(math.isfinite(v) for v in origin):
        raise InputError(f"{name}: the image origin {list(origin)} is not finite.")
    d = round(math.sqrt(direction.size))
    m = direction.reshape(d, d)
    if not np.all(np.isfinite(m)) or not np.allclose(m.T @ m, np.eye(d), atol=1e-3):
        raise InputError(
            f"{name}: the image orientation (direction cosines) is not orthonormal; the header "
            "is damaged: re-export the image."
        )


def read_checked(path: Path) -> sitk.Image:
    """Read an image file with the checks above.

    Raises
    ------
    InputError
        A damaged header, an unreadable file, or an impossible geometry.
    """
    path = Path(path)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        check_nifti_header(path)
    try:
        with quiet_native_stderr():
            image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        first = lines[-1][-200:] if lines else ""
        raise InputError(
            f"Could not read {path} as an image ({first}); the file is damaged."
        ) from None
    check_image_geometry(image, path)
    return image
