"""Training data: case folders to arrays on the model grid, then random patches and batches.

Dataset layout: see :mod:`breastai.training.train`. Every case goes through its model family's
:meth:`~breastai.families.ModelFamily.prepare` -- the very function ``segment`` calls -- so phase
choice, resampling and normalisation cannot drift between training and inference. Patches are
centred on foreground with probability ``foreground_fraction`` (as in the paper), otherwise drawn
at random inside :attr:`PreparedCase.box` (the breast bounding box for the tumor model, which is
where inference runs it).

Axis contract: see :mod:`breastai.study`.
"""

# SimpleITK's bindings are untyped.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk
import torch
from torch import Tensor

from breastai.choices import Normalisation
from breastai.errors import InputError
from breastai.preprocess import assemble_slots, resample_to_spacing
from breastai.training.augment import augment_intensity, sample_affine_patch

if TYPE_CHECKING:
    from breastai.training.train import TrainOptions

__all__ = [
    "PreparedCase",
    "find_cases",
    "make_batch",
    "model_family",
    "prepare_case",
    "prepare_images",
    "sample_patch",
]


@dataclass
class PreparedCase:
    """One case on the model grid, normalised, ready for patch sampling.

    ``image`` is ``(n_phases, z, y, x)`` float32 (tumor: normalised phases; breast: one channel);
    ``target`` ``(z, y, x)`` uint8; ``box`` the region inference runs the model in
    (tumor: the breast bounding box; breast: everything), as (start, stop) per axis.
    """

    case_id: str
    image: np.ndarray
    target: np.ndarray
    box: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    foreground: np.ndarray = field(repr=False)


def find_cases(data_dir: Path) -> list[Path]:
    """Case folders under ``data_dir`` (sorted), each with P0, P1, breast and tumor NIfTI files.

    Parameters
    ----------
    data_dir:
        Dataset root.

    Returns
    -------
    list of pathlib.Path

    Raises
    ------
    InputError
        No case folder found.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"Training data folder {data_dir} does not exist.")
    need = ("P0.nii.gz", "P1.nii.gz", "breast.nii.gz", "tumor.nii.gz")
    cases = [
        p for p in sorted(data_dir.iterdir()) if p.is_dir() and all((p / n).is_file() for n in need)
    ]
    if not cases:
        raise InputError(
            f"No training case in {data_dir}: expected sub-folders holding P0.nii.gz, P1.nii.gz, "
            "..., breast.nii.gz and tumor.nii.gz (see docs/training.md; "
            "breastai.phantom.write_training_case writes them)."
        )
    return cases


def _phase_files(case_dir: Path) -> list[Path]:
    files = []
    k = 0
    while (case_dir / f"P{k}.nii.gz").is_file():
        files.append(case_dir / f"P{k}.nii.gz")
        k += 1
    return files


def _read(path: Path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"Cannot read {path}: {str(exc).strip().splitlines()[-1]}") from None


def _mask_on_grid(mask: sitk.Image, spacing_zyx: Sequence[float]) -> np.ndarray:
    img = sitk.Cast(mask, sitk.sitkFloat32)
    res = resample_to_spacing(img, spacing_zyx, interpolator="linear", canonical=True)
    return (sitk.GetArrayFromImage(res) > 0.5).astype(np.uint8)


def _bbox(mask: np.ndarray) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    idx = np.nonzero(mask)
    if not idx[0].size:
        return ((0, mask.shape[0]), (0, mask.shape[1]), (0, mask.shape[2]))
    return tuple(  # type: ignore[return-value]
        (int(i.min()), int(i.max()) + 1) for i in idx
    )


def prepare_case(case_dir: Path, options: TrainOptions) -> PreparedCase:
    """Read one case and bring it to the model grid with the inference preprocessing.

    Parameters
    ----------
    case_dir:
        A case folder (see :func:`find_cases`).
    options:
        Task, spacing and (tumor) phase slots.

    Returns
    -------
    PreparedCase

    Raises
    ------
    InputError
        Missing or unreadable files, or phases on different grids.
    """
    case_dir = Path(case_dir)
    files = _phase_files(case_dir)
    if options.task == "breast":
        files = files[:1]
    phases = [_read(f) for f in files]
    tumor = _read(case_dir / "tumor.nii.gz") if options.task == "tumor" else None
    return prepare_images(case_dir.name, phases, _read(case_dir / "breast.nii.gz"), tumor, options)


def model_family(options: TrainOptions) -> Any:
    """The :mod:`breastai.families` family a trained model runs as (its exported card says the
    same normalisation: :func:`breastai.training.export` writes ``seed`` / ``p1p99-minmax``)."""
    from breastai.families import SeedFamily, UNetFamily

    sp = tuple(float(v) for v in options.spacing_zyx)
    if options.task == "breast":
        return UNetFamily(sp, Normalisation.P1P99_MINMAX)  # type: ignore[arg-type]
    slots = int(options.network.get("slots", 6))
    return SeedFamily(sp, slots, None, Normalisation.SEED)  # type: ignore[arg-type]


def prepare_images(
    case_id: str,
    phases: Sequence[sitk.Image],
    breast_mask: sitk.Image,
    tumor_mask: sitk.Image | None,
    options: TrainOptions,
    *,
    times_s: Sequence[float | None] | None = None,
) -> PreparedCase:
    """Bring one case's images to the model grid with the inference preprocessing.

    The image is the model family's :meth:`~breastai.families.ModelFamily.prepare` -- the very
    function ``segment`` calls -- so phase choice, resampling and normalisation cannot drift.

    Parameters
    ----------
    case_id:
        Name of the case (for logs and checkpoints).
    phases:
        Phase volumes in time order (P0 first); the breast task uses P0 only.
    breast_mask:
        Whole-breast mask (0/1) on the phases' grid.
    tumor_mask:
        Tumor mask (0/1) on the phases' grid (tumor task only).
    options:
        Task, spacing, patch and (tumor) phase slots.
    times_s:
        Phase times in seconds (the tumor phases are chosen by time, as at inference; None:
        unknown, index order).

    Returns
    -------
    PreparedCase

    Raises
    ------
    InputError
        Phases and masks on different grids, or a missing tumor mask.
    """
    from breastai.families import study_from_phases

    sp = options.spacing_zyx
    breast = _mask_on_grid(breast_mask, sp)
    study = study_from_phases(phases, times_s, case_id)
    if options.task == "breast":
        image = model_family(options).prepare(study).image
        target = breast
        box = ((0, breast.shape[0]), (0, breast.shape[1]), (0, breast.shape[2]))
    else:
        if tumor_mask is None:
            raise InputError(f"Case {case_id}: the tumor task needs a tumor mask.")
        image = model_family(options).prepare(study).image
        target = _mask_on_grid(tumor_mask, sp)
        box = _bbox(breast)
    if target.shape != image.shape[1:]:
        raise InputError(
            f"Case {case_id}: masks and phases are on different grids ({target.shape} vs "
            f"{image.shape[1:]}); write them on one grid."
        )
    # Keep only what patches can reach (the box plus half a patch), to bound memory.
    lo = [max(0, b[0] - p // 2) for b, p in zip(box, options.patch_zyx, strict=True)]
    hi = [
        min(n, b[1] + p // 2) for b, p, n in zip(box, options.patch_zyx, target.shape, strict=True)
    ]
    crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    image = np.ascontiguousarray(image[(slice(None), *crop)])
    target = np.ascontiguousarray(target[crop])
    box = tuple((b[0] - a, b[1] - a) for b, a in zip(box, lo, strict=True))  # type: ignore[assignment]
    # pad to at least one patch (zeros, as the sliding window pads at inference)
    pad = [max(0, p - n) for p, n in zip(options.patch_zyx, target.shape, strict=True)]
    if any(pad):
        widths = [(q // 2, q - q // 2) for q in pad]
        image = np.pad(image, [(0, 0), *widths])
        target = np.pad(target, widths)
        box = tuple(  # type: ignore[assignment]
            (b[0] + w[0], b[1] + w[0]) for b, w in zip(box, widths, strict=True)
        )
    fg = np.argwhere(target > 0).astype(np.int32)
    return PreparedCase(case_id, image, target, box, fg)


def sample_patch(
    case: PreparedCase, options: TrainOptions, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One random (image, mask, time_mask) patch; image (S or 1, pz, py, px)."""
    patch = np.asarray(options.patch_zyx)
    shape = np.asarray(case.target.shape)
    if case.foreground.size and rng.random() < options.foreground_fraction:
        centre = case.foreground[rng.integers(len(case.foreground))]
        start = centre - rng.integers(patch // 4, patch - patch // 4 + 1)
    else:
        lo = np.asarray([b[0] for b in case.box])
        hi = np.asarray([b[1] for b in case.box])
        centre = lo + (rng.random(3) * np.maximum(hi - lo, 1)).astype(int)
        start = centre - patch // 2
    start = np.clip(start, 0, shape - patch)
    sl = tuple(slice(int(a), int(a + p)) for a, p in zip(start, patch, strict=True))
    if options.augment == "dr" and rng.random() < 0.5:
        img, tgt = sample_affine_patch(
            case.image, case.target, start.tolist(), options.patch_zyx, rng
        )
    else:
        img = case.image[(slice(None), *sl)]
        tgt = case.target[sl]
    if options.task == "tumor":
        slots = int(options.network.get("slots", 6))
        n = img.shape[0]
        keep = n
        if n > 2 and rng.random() < options.phase_dropout:
            keep = int(rng.integers(2, n))
        img, tmask = assemble_slots(list(img[:keep]), slots)
    else:
        tmask = np.ones((1,), dtype=np.float32)
    if options.augment == "dr":
        img = augment_intensity(img, tmask if options.task == "tumor" else None, rng)
    if rng.random() < 0.5:  # left-right flip (x): breasts are mirror images
        img = img[..., ::-1]
        tgt = tgt[..., ::-1]
    return np.ascontiguousarray(img), np.ascontiguousarray(tgt), tmask


def make_batch(
    cases: Sequence[PreparedCase], options: TrainOptions, rng: np.random.Generator, device: str
) -> dict[str, Tensor]:
    """``batch_size`` patches of random cases (:func:`sample_patch`) as tensors on ``device``."""
    imgs, tgts, masks = [], [], []
    for _ in range(options.batch_size):
        case = cases[int(rng.integers(len(cases)))]
        img, tgt, tm = sample_patch(case, options, rng)
        imgs.append(img)
        tgts.append(tgt)
        masks.append(tm)
    return {
        "image": torch.from_numpy(np.stack(imgs)).to(device),
        "target": torch.from_numpy(np.stack(tgts)[:, None].astype(np.float32)).to(device),
        "time_mask": torch.from_numpy(np.stack(masks)).to(device),
    }
