"""Preparation: read a study and put its phases on the models' grids (no model runs here).

:func:`prepare` returns a :class:`PreparedStudy`: one :class:`Part` per volume to segment (the
study, or each stack of a split-bilateral study) with the breast input (P0 on the breast
card's grid, normalised), the tumor input (the chosen phases on one grid derived from P1 at the
tumor card's spacing, normalised, absent slots masked) or, for nnU-Net models, their channel
images. A cohort prepares the next study while the current one runs inference
(:mod:`breastai.pipeline`).
"""

# SimpleITK's bindings are untyped (no stubs); calling them is fine here.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from breastai.choices import Normalisation
from breastai.errors import InputError
from breastai.models import LoadedModels, Model
from breastai.settings import Progress, Settings
from breastai.study import Study

__all__ = ["Part", "PreparedStudy", "prepare", "study_name"]

log = logging.getLogger(__name__)


@dataclass
class Part:
    """One volume to segment: the study, or one stack of a split-bilateral study."""

    study: Study
    suffix: str  # "" or "_R" / "_L": appended to every output file name of this part
    side: str | None  # None, or "right" / "left" for a split-bilateral stack
    breast_input: np.ndarray  # (1, z, y, x)
    breast_grid: sitk.Image
    tumor_input: np.ndarray  # (S, 1, z, y, x)
    time_mask: np.ndarray  # (S,)
    tumor_grid: sitk.Image
    breast_channels: list[sitk.Image] | None = None  # nnU-Net breast model: its channel images
    tumor_channels: list[sitk.Image] | None = None  # nnU-Net tumor model: its channel images


@dataclass
class PreparedStudy:
    """A read and preprocessed study, ready for the models (from :func:`prepare`)."""

    study: Study
    name: str
    parts: list[Part]
    chosen: list[int]
    selection_note: str | None
    timings: dict[str, float]


def study_name(study_or_path: Study | Path | str) -> str:
    """The output folder name of a study: its name, or its folder / file name without .nii(.gz)."""
    if isinstance(study_or_path, Study):
        return study_or_path.name or Path(study_or_path.source).name or "study"
    p = Path(study_or_path)
    name = p.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name or "study"


def _side_fields(sides: Sequence[str], k: int) -> dict[str, Any]:
    """``suffix`` and ``side`` of stack k (``sides``: ``R``/``L`` per stack, empty when one)."""
    side = sides[k] if sides else None
    return {
        "suffix": f"_{side}" if side else "",
        "side": None if side is None else ("right" if side == "R" else "left"),
    }


def prepare(
    study_or_path: Study | Path | str,
    settings: Settings,
    models: LoadedModels,
    progress: Progress | None = None,
) -> PreparedStudy:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if progress:
        progress("read", 0.0)
    if isinstance(study_or_path, Study):
        study = study_or_path
    else:
        from breastai.io import load_study

        study = load_study(
            Path(study_or_path),
            dce_series=settings.dce_series,
            study_uid=settings.study_uid,
            times=settings.times,
        )
    name = study_name(study_or_path if not isinstance(study_or_path, Study) else study)
    timings["read"] = time.perf_counter() - t0
    if progress:
        progress("read", 1.0)

    t0 = time.perf_counter()
    if models.tumor.nnunet is not None:
        return _prepare_nnunet_tumor(study, name, models, timings, t0, progress)
    tcard = models.tumor.card
    n = len(study.phases)
    if n < max(2, tcard.phases_min):
        raise InputError(
            f"Study {name!r} has {n} phase(s); the tumor model {tcard.name!r} needs at least "
            f"{max(2, tcard.phases_min)} (pre-contrast and first post-contrast). Check the DCE "
            "series choice with `breastai info`."
        )
    chosen, note = models.tumor.fam.choose(study)
    if note:
        log.info("%s: %s", name, note)
    subs = study.split_stacks()
    resampled = []
    for k, sub in enumerate(subs):
        resampled.append(_resample_part(sub, chosen, models))
        if progress:
            progress("preprocess", (k + 1) / (len(subs) + 1))
    parts = _finish_parts(resampled, study.stack_sides, models)
    if progress:
        progress("preprocess", 1.0)
    timings["preprocess"] = time.perf_counter() - t0
    return PreparedStudy(
        study=study,
        name=name,
        parts=parts,
        chosen=chosen,
        selection_note=note,
        timings=timings,
    )


def _nnunet_channels(model: Model, study: Study) -> list[sitk.Image] | None:
    if model.nnunet is None:
        return None
    images: list[sitk.Image] | None = model.fam.prepare(study).images
    return images


def _prepare_nnunet_tumor(
    study: Study,
    name: str,
    models: LoadedModels,
    timings: dict[str, float],
    t0: float,
    progress: Progress | None,
) -> PreparedStudy:
    """An nnU-Net tumor model: its channel images per stack (the breast model's as usual)."""
    from breastai.nnunet.channels import phase_index

    specs = models.tumor.nnunet.card.channels
    chosen = sorted(
        {phase_index(s) for s in specs}
        | ({0} if any(s.startswith("sub") for s in specs) else set())
    )
    subs = study.split_stacks()
    sides = study.stack_sides
    parts = []
    for k, sub in enumerate(subs):
        b_in, b_grid = _breast_input(sub, models)
        ref = sub.reference.image
        parts.append(
            Part(
                study=sub,
                **_side_fields(sides, k),
                breast_input=b_in,
                breast_grid=b_grid,
                tumor_input=np.zeros((0,), np.float32),
                time_mask=np.ones(len(chosen), np.float32),
                tumor_grid=ref,
                breast_channels=_nnunet_channels(models.breast, sub),
                tumor_channels=_nnunet_channels(models.tumor, sub),
            )
        )
        if progress:
            progress("preprocess", (k + 1) / (len(subs) + 1))
    if progress:
        progress("preprocess", 1.0)
    timings["preprocess"] = time.perf_counter() - t0
    return PreparedStudy(
        study=study, name=name, parts=parts, chosen=chosen, selection_note=None, timings=timings
    )


def _breast_input(study: Study, models: LoadedModels) -> tuple[np.ndarray, sitk.Image]:
    """P0 on the breast card's grid, normalised per card (an nnU-Net breast model: nothing)."""
    if models.breast.nnunet is not None:
        return np.zeros((0,), np.float32), study.phases[0].image
    inputs = models.breast.fam.prepare(study)
    return inputs.image, inputs.grid


@dataclass
class _Resampled:
    """One volume's model grids: the normalised breast input and the raw tumor-grid phases."""

    study: Study
    breast_input: np.ndarray  # (1, z, y, x), normalised
    breast_grid: sitk.Image
    tumor_grid: sitk.Image
    tumor_raw: list[np.ndarray]  # the chosen phases on the tumor grid, not normalised
    breast_channels: list[sitk.Image] | None = None


def _resample_part(study: Study, chosen: Sequence[int], models: LoadedModels) -> _Resampled:
    """P0 on the breast grid (normalised); the chosen phases on the tumor grid (raw)."""
    b_input, breast_grid = _breast_input(study, models)
    tumor_grid, arrays = models.tumor.fam.resample(study, chosen)
    return _Resampled(
        study=study,
        breast_input=b_input,
        breast_grid=breast_grid,
        tumor_grid=tumor_grid,
        tumor_raw=arrays,
        breast_channels=_nnunet_channels(models.breast, study),
    )


def _finish_parts(
    resampled: Sequence[_Resampled], sides: Sequence[str], models: LoadedModels
) -> list[Part]:
    """Normalise the tumor phases (jointly over split-bilateral stacks) and build the parts."""
    from breastai.preprocess import assemble_slots, seed_clip_bounds

    tcard = models.tumor.card
    bounds = None
    if len(resampled) > 1 and tcard.normalisation == Normalisation.SEED:
        # the stacks of one study are normalised alike, as one bilateral volume would be
        bounds = seed_clip_bounds([r.tumor_raw for r in resampled])
    parts = []
    for k, r in enumerate(resampled):
        normed = models.tumor.fam.normalise(r.tumor_raw, bounds)
        stacked, mask = assemble_slots(normed, int(tcard.phase_slots))
        parts.append(
            Part(
                study=r.study,
                **_side_fields(sides, k),
                breast_input=r.breast_input,
                breast_grid=r.breast_grid,
                tumor_input=stacked[:, None],
                time_mask=mask,
                tumor_grid=r.tumor_grid,
                breast_channels=r.breast_channels,
            )
        )
    return parts
