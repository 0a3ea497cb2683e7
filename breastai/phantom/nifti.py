"""NIfTI outputs of a phantom case: per-phase volumes, ground truth, training-case folders.

All files are written on the exact grid of the case (LPS geometry carried by SimpleITK, which
converts to the NIfTI RAS convention). Phase volumes are int16 "DN" on the same global 12-bit scale
as the DICOM writer (peak over all phases ≈3500), so relative enhancement is preserved.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from breastai.errors import ParameterError
from breastai.io.atomic import atomic_dir
from breastai.phantom._util import atomic_write_image, atomic_write_json, dn_scale, to_dn

if TYPE_CHECKING:
    from breastai.phantom.generator import PhantomCase

__all__ = ["case_id", "write_nifti_phases", "write_training_case", "write_truth"]

NAMINGS = ("seed", "mamamia")


def case_id(case: PhantomCase) -> str:
    """Folder name of a case: ``phantom_<preset>_<orientation>_s<seed>``."""
    m = case.meta
    return (
        f"phantom_{m.get('preset', 'default')}_{m.get('orientation', 'axial')}_s{m.get('seed', 0)}"
    )


def write_nifti_phases(
    case: PhantomCase, out_dir: Path, *, naming: str = "seed", case_name: str = "case"
) -> list[Path]:
    """Write one NIfTI file per phase (int16 DN, global 12-bit scale).

    Parameters
    ----------
    case:
        The phantom case.
    out_dir:
        Folder to write into (created if needed). Existing files of the same name are replaced.
    naming:
        ``"seed"``: ``P0.nii.gz``, ``P1.nii.gz``, ...; ``"mamamia"``: ``<case_name>_0000.nii.gz``,
        ``<case_name>_0001.nii.gz``, ...
    case_name:
        Prefix for the ``"mamamia"`` naming.

    Returns
    -------
    list of Path
        The phase files in time order.

    Raises
    ------
    ParameterError
        Unknown naming.
    OutputError
        The folder cannot be written.
    """
    import SimpleITK as sitk

    if naming not in NAMINGS:
        raise ParameterError(f"unknown naming {naming!r}: expected one of {', '.join(NAMINGS)}.")
    out_dir = Path(out_dir)  # created by the first write (io.atomic)
    scale = dn_scale(case)
    paths = []
    for k in range(case.n_phases):
        name = f"P{k}.nii.gz" if naming == "seed" else f"{case_name}_{k:04d}.nii.gz"
        img = sitk.GetImageFromArray(to_dn(case.images[k], scale).astype(np.int16))
        case._set_geometry(img)
        path = out_dir / name
        atomic_write_image(img, path)
        paths.append(path)
    return paths


def _truth_json(case: PhantomCase) -> dict[str, Any]:
    meta = dict(case.meta)
    meta["dn_scale"] = dn_scale(case)
    meta["origin_lps"] = list(case.origin_lps)
    meta["direction"] = [float(x) for x in case.direction.ravel()]
    meta["spacing_zyx"] = list(case.spacing_zyx)
    meta["case_id"] = case_id(case)
    return meta


def write_truth(case: PhantomCase, out_dir: Path) -> list[Path]:
    """Write ``breast.nii.gz``, ``tumor.nii.gz``, ``lesions.nii.gz`` and ``truth.json``.

    Parameters
    ----------
    case:
        The phantom case.
    out_dir:
        Folder to write into (created if needed).

    Returns
    -------
    list of Path
        The four files.
    """
    out_dir = Path(out_dir)  # created by the first write (io.atomic)
    paths = []
    for name in ("breast", "tumor", "lesions"):
        path = out_dir / f"{name}.nii.gz"
        atomic_write_image(case.mask_image(name), path)
        paths.append(path)
    path = out_dir / "truth.json"
    atomic_write_json(_truth_json(case), path)
    paths.append(path)
    return paths


def write_training_case(case: PhantomCase, out_dir: Path, *, case_name: str | None = None) -> Path:
    """Write one training case folder ``out_dir/<case_id>/``.

    Contents: ``P0.nii.gz .. P{t-1}.nii.gz`` (int16 DN), ``breast.nii.gz``, ``tumor.nii.gz``,
    ``lesions.nii.gz`` and ``truth.json``. The folder is written beside its final place and
    renamed when complete.

    Parameters
    ----------
    case:
        The phantom case.
    out_dir:
        Dataset root (created if needed).
    case_name:
        Folder name (default :func:`case_id`: ``phantom_<preset>_<orientation>_s<seed>``).

    Returns
    -------
    Path
        The case folder.

    Raises
    ------
    OutputExistsError
        The case folder exists and is not empty.
    """
    root = Path(out_dir)  # created by atomic_dir
    name = case_name or case_id(case)
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ParameterError(f"case_name must be a plain folder name; got {name!r}.")
    target = root / name
    with atomic_dir(target, force_hint=False) as tmp:
        write_nifti_phases(case, tmp, naming="seed")
        write_truth(case, tmp)
    return target
