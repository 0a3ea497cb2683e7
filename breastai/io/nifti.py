"""Per-phase NIfTI input (seed ``P0.nii.gz``... or MAMA-MIA ``<case>_0000.nii.gz``...) or one
4-D NIfTI, read into the same :class:`~breastai.study.Study` as DICOM input; and an atomic
image writer.

All phases end up on the grid of the reference phase (index 1, the first post-contrast phase):
a phase on another grid is resampled onto it (linear) with a warning.
"""

# SimpleITK ships without type hints for its methods.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from breastai.errors import (
    InconsistentGeometryError,
    InputError,
    NoDCESeriesError,
    OutputError,
    ParameterError,
    UnsupportedInputError,
)
from breastai.geometry import resample_to_reference, same_grid
from breastai.io.atomic import atomic_file
from breastai.io.times import phase_timing
from breastai.study import DecisionLog, Phase, Study

__all__ = [
    "IMAGE_SUFFIXES",
    "find_phase_files",
    "read_nifti_study",
    "same_grid",
    "write_image",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_SEED_RE = re.compile(r"^P(\d+)$", re.IGNORECASE)
_MAMA_RE = re.compile(r"^(.*)_(\d{4})$")


def _stem(path: Path) -> str | None:
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def find_phase_files(folder: Path) -> tuple[list[Path], str]:
    """Per-phase image files of a folder in phase order, and the naming scheme found.

    Returns
    -------
    tuple
        ``(files, naming)`` with naming ``"seed"`` (``P0``, ``P1``...) or ``"mamamia"``
        (``<case>_0000``...); ``([], "")`` when the folder holds neither.

    Raises
    ------
    InputError
        A MAMA-MIA folder holding several cases, or phase numbers with gaps.
    """
    seed: dict[int, Path] = {}
    mama: dict[str, dict[int, Path]] = {}
    for path in sorted(Path(folder).iterdir()):
        stem = _stem(path)
        if stem is None or not path.is_file():
            continue
        m = _SEED_RE.match(stem)
        if m:
            seed[int(m.group(1))] = path
            continue
        m = _MAMA_RE.match(stem)
        if m:
            mama.setdefault(m.group(1), {})[int(m.group(2))] = path
    if seed:
        found, naming = seed, "seed"
    elif mama:
        if len(mama) > 1:
            raise InputError(
                f"{folder} holds phase files of {len(mama)} cases ({', '.join(sorted(mama))}); "
                "expected the phases of one case."
            )
        found, naming = next(iter(mama.values())), "mamamia"
    else:
        return [], ""
    numbers = sorted(found)
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise InputError(
            f"{folder}: phase numbers {numbers} have gaps; expected consecutive phases "
            "(P0, P1, ... or <case>_0000, <case>_0001, ...)."
        )
    return [found[k] for k in numbers], naming


def _read(path: Path) -> sitk.Image:
    from breastai.io.image_check import read_checked

    return read_checked(path)


def _float3d(image: sitk.Image, path: Path) -> sitk.Image:
    if image.GetDimension() != 3:
        raise InputError(f"{path} is {image.GetDimension()}-D; expected a 3-D phase volume.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise UnsupportedInputError(
            f"{path} has vector/colour pixels; expected scalar MR intensities."
        )
    cast: sitk.Image = sitk.Cast(image, sitk.sitkFloat32)
    return cast


def _split_4d(image: sitk.Image, path: Path) -> list[sitk.Image]:
    size = list(image.GetSize())
    if image.GetDimension() != 4:
        raise InputError(f"{path} is {image.GetDimension()}-D; expected a 4-D (x, y, z, t) image.")
    out = []
    for t in range(size[3]):
        extract = sitk.Extract(image, [size[0], size[1], size[2], 0], [0, 0, 0, t])
        out.append(_float3d(extract, path))
    return out


def read_nifti_study(
    path: Path,
    *,
    times: Sequence[float] | None = None,
) -> Study:
    """Read per-phase NIfTI files (a folder) or one 4-D NIfTI into a :class:`Study`.

    Parameters
    ----------
    path:
        A folder of ``P0.nii.gz, P1.nii.gz, ...`` (seed) or ``<case>_0000.nii.gz, ...`` (MAMA-MIA)
        files, or one 4-D NIfTI file.
    times:
        Phase times in seconds (one per phase); times are stored relative to the first phase.
        Without them ``Phase.time_s`` is None.

    Returns
    -------
    Study
        ``kind="nifti"``; every phase on the grid of the reference phase (index 1).

    Raises
    ------
    InputError
        No phase files, fewer than two phases, unreadable files.
    ParameterError
        ``times`` does not have one value per phase.
    """
    path = Path(path)
    log = DecisionLog()
    if path.is_dir():
        files, naming = find_phase_files(path)
        if not files:
            raise InputError(
                f"{path} holds no per-phase NIfTI files; expected P0.nii.gz, P1.nii.gz, ... or "
                "<case>_0000.nii.gz, <case>_0001.nii.gz, ..."
            )
        images = [_float3d(_read(f), f) for f in files]
        sources: list[Path] = list(files)
        log.grouping_key = f"file names ({naming})"
        name = path.name
    elif path.is_file():
        image = _read(path)
        if image.GetDimension() == 3:
            raise NoDCESeriesError(
                f"{path} is a single 3-D volume; a DCE study needs at least two phases: pass a "
                "4-D NIfTI or a folder of per-phase files."
            )
        images = _split_4d(image, path)
        sources = [path] * len(images)
        log.grouping_key = "4th dimension of one NIfTI"
        name = _stem(path) or path.stem
    else:
        raise InputError(f"{path} does not exist; expected a folder of phase files or a 4-D NIfTI.")
    if len(images) < 2:
        raise NoDCESeriesError(
            f"{path} holds one phase; a DCE study needs at least two phases "
            "(pre and post contrast)."
        )
    if times is not None and len(times) != len(images):
        raise ParameterError(
            f"--times has {len(times)} values but {path} holds {len(images)} phases."
        )
    ref = images[1]
    for k, img in enumerate(images):
        if k != 1 and not same_grid(img, ref):
            moved = resample_to_reference(img, ref, interpolator="linear", extrapolate=False)
            if not np.any(sitk.GetArrayViewFromImage(moved)) and np.any(
                sitk.GetArrayViewFromImage(img)
            ):
                raise InconsistentGeometryError(
                    f"phase {k} ({sources[k].name}) does not overlap the field of view of phase 1 "
                    f"({sources[1].name}): expected phases of one acquisition, found origins "
                    f"{tuple(round(v, 1) for v in img.GetOrigin())} and "
                    f"{tuple(round(v, 1) for v in ref.GetOrigin())} mm; check the phase files."
                )
            images[k] = moved
            log.warnings.append(
                f"phase {k} ({sources[k].name}) was on another grid and was resampled onto the "
                "grid of phase 1 (linear)"
            )
    log.clock = "user (--times)" if times is not None else None
    log.time_reference = "first phase" if times is not None else None
    rel = [float(t) - float(times[0]) for t in times] if times is not None else [None] * len(images)
    timings, notes = phase_timing(
        rel,
        [[] for _ in images],
        injection_reference=(
            "none: NIfTI input carries no ContrastBolusStartTime; times are relative to the "
            "first phase (time_s) and to the first post-contrast phase (time_since_first_post_s)"
        ),
    )
    log.notes.extend(notes)
    phases = [
        Phase(index=k, image=img, time_s=rel[k], source_files=(sources[k],), timing=timings[k])
        for k, img in enumerate(images)
    ]
    for w in log.warnings:
        logger.warning("%s", w)
    return Study(phases=phases, source=path, kind="nifti", name=name, decisions=log)


def write_image(image: sitk.Image, path: Path, *, force: bool = False) -> Path:
    """Write an image atomically (through :func:`breastai.io.atomic.atomic_file`).

    Parameters
    ----------
    image:
        The image (geometry in LPS; SimpleITK converts to the file format's convention).
    path:
        Destination (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``).
    force:
        Overwrite an existing file.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError
        The file exists and ``force`` is False.
    OutputError
        The folder is not writable or the write failed.
    """
    path = Path(path)
    suffix = next((s for s in IMAGE_SUFFIXES if path.name.lower().endswith(s)), path.suffix)
    with atomic_file(path, force=force, suffix=suffix) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), useCompression=suffix.endswith(".gz"))
        except RuntimeError as exc:  # SimpleITK reports write failures as RuntimeError
            raise OutputError(f"Could not write {path}: {str(exc).strip()[:200]}.") from None
    return path
