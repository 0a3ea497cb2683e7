"""Small helpers shared by the phantom writers: atomic outputs and the 12-bit scaling."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from breastai.errors import OutputError

if TYPE_CHECKING:
    import SimpleITK as sitk

    from breastai.phantom.generator import PhantomCase

__all__ = ["atomic_write_image", "dn_scale", "to_dn"]

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


def atomic_write_image(image: sitk.Image, path: Path, *, compression_level: int = 1) -> None:
    """Write a SimpleITK image to ``path`` through a temporary file in the same folder."""
    import SimpleITK as sitk

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}" + "".join(path.suffixes))
    try:
        sitk.WriteImage(image, str(tmp), True, compression_level)
        os.replace(tmp, path)
    except (RuntimeError, OSError) as exc:  # SimpleITK reports write failures as RuntimeError
        tmp.unlink(missing_ok=True)
        raise OutputError(
            f"cannot write {str(path)!r} ({str(exc).strip()[:200]}); choose a writable path "
            "with free space."
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
