"""Small helpers shared by the phantom writers: atomic outputs and the 12-bit scaling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from breastai.errors import OutputError
from breastai.io.atomic import atomic_file, atomic_write_text

if TYPE_CHECKING:
    import SimpleITK as sitk

    from breastai.phantom.generator import PhantomCase

__all__ = ["atomic_write_image", "atomic_write_json", "cannot_write", "dn_scale", "to_dn"]

DN_PEAK = 3500.0


def dn_scale(case: PhantomCase) -> float:
    """The one global factor that maps the float signal of all phases to 12-bit (peak ≈3500)."""
    peak = float(case.images.max())
    return DN_PEAK / peak if peak > 0 else 1.0


def to_dn(volume: NDArray[np.float32], scale: float) -> NDArray[np.uint16]:
    """Scale a float volume to uint16 DN (rounded, clipped to 0..4095)."""
    out = np.multiply(volume, scale, dtype=np.float32)
    np.rint(out, out=out)
    np.clip(out, 0, 4095, out=out)
    return out.astype(np.uint16)


def cannot_write(exc: BaseException, path: Path) -> OutputError:
    """The one-line error of a failed phantom write (``on_error`` of :mod:`breastai.io.atomic`)."""
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip()[:200]
    return OutputError(
        f"cannot write {str(path)!r} ({why}); choose a writable path with free space."
    )


def atomic_write_image(image: sitk.Image, path: Path, *, compression_level: int = 1) -> None:
    """Write a SimpleITK image to ``path`` through :func:`breastai.io.atomic.atomic_file`."""
    import SimpleITK as sitk

    path = Path(path)
    with atomic_file(path, suffix="".join(path.suffixes), on_error=cannot_write) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), True, compression_level)
        except RuntimeError as exc:  # SimpleITK reports write failures as RuntimeError
            raise cannot_write(exc, path) from None


def atomic_write_json(obj: Any, path: Path) -> None:
    """Write ``obj`` as indented, key-sorted JSON through :func:`breastai.io.atomic.atomic_file`."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    atomic_write_text(Path(path), text, on_error=cannot_write)
