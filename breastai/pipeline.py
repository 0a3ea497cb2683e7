"""The segmentation pipeline: a study folder or Study in; masks, DICOM-SEG, report, preview out.

``segment_study`` is the one function the CLI calls for a study; ``segment_studies`` runs a cohort,
reading and preprocessing the next study on a background thread while the current one runs
inference, and never lets one failing study stop the others.

Data flow (axis contract: :mod:`breastai.study`):

1. read (``breastai.io.load_study``); phases in time order, P1 = reference phase;
2. breast model: P0 resampled to the breast card's spacing (linear), normalised per card, sliding
   window; probability resampled back onto P1's native grid (linear), thresholded (``>``), largest
   component per side, holes filled (:mod:`breastai.postprocess`);
3. tumor model: phases chosen by time when there are more than the card's slots (P0, P1, then
   evenly spread), each resampled onto one grid derived from P1 at the card's spacing, normalised,
   absent slots filled with P1 and masked; windows only over the breast bounding box (plus
   ``roi_margin_mm``) unless breast masking is off; probability back to P1's grid (linear),
   thresholded, multiplied by the breast mask, small components removed, then components that do
   not enhance over P0 (``min_enhancement_pct``) removed;
4. outputs (:mod:`breastai.outputs`): lesions measured, report and manifest built in memory;
   with an ``out_dir`` they are written into a temporary folder beside ``OUT/<study>/`` and
   renamed into place, with ``out_dir=None`` they are returned (:class:`StudyOutputs`).

The steps live in their own modules: settings (:mod:`breastai.settings`), model loading
(:mod:`breastai.models`), reading and preprocessing (:mod:`breastai.prepare`), outputs
(:mod:`breastai.outputs`); this module runs the models and orchestrates.

Output files and manifest keys are documented in docs/outputs.md.
"""

# SimpleITK's bindings are untyped (no stubs); calling them is fine here.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import SimpleITK as sitk

from breastai.errors import BreastAIError
from breastai.io.atomic import check_new_dir, check_writable
from breastai.models import LoadedModels, Model, batch_size, load_models
from breastai.outputs import (
    MANIFEST_SCHEMA,
    PartMasks,
    SegmentResult,
    StudyOutputs,
    build_outputs,
    write_outputs,
)
from breastai.prepare import Part, PreparedStudy, study_name
from breastai.prepare import prepare as _prepare
from breastai.settings import STAGES, Progress, Settings
from breastai.study import Study

__all__ = [
    "MANIFEST_SCHEMA",
    "STAGES",
    "LoadedModels",
    "PreparedStudy",
    "SegmentResult",
    "Settings",
    "StudyOutputs",
    "load_models",
    "prepare_study",
    "result_table",
    "run_models",
    "segment_prepared",
    "segment_studies",
    "segment_study",
    "write_outputs",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------- inference


def _image_like(arr: np.ndarray, grid: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(grid)
    return img


def _stage_progress(progress: Progress | None, stage: str) -> Callable[[float], None] | None:
    if progress is None:
        return None
    return lambda f: progress(stage, f)


def _nnunet_labels(
    model: Model,
    images: Sequence[sitk.Image],
    ref: sitk.Image,
    roles: Sequence[str],
    settings: Settings,
    progress: Callable[[float], None] | None,
    windows: dict[str, Any],
    key: str,
) -> tuple[dict[str, np.ndarray], sitk.Image]:
    """Run an nnU-Net model; per role, a bool mask on ``ref``'s grid; and the label map there.

    nnU-Net's labels lie on the grid of channel 0; they are moved onto ``ref``'s grid with nearest
    neighbour where the grids differ.
    """
    from breastai.preprocess import same_grid

    nm = model.nnunet
    seen: dict[str, int] = {}

    def tick(done: int, total: int) -> None:
        seen["total"] = total
        if progress:
            progress(done / max(total, 1))

    pred = nm.predict(images, tta=settings.tta, save_probabilities=False, progress=tick)
    labels = pred.labels
    if not same_grid(labels, ref):
        labels = sitk.Resample(labels, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    windows[key] = seen.get("total", 0)
    arr = sitk.GetArrayViewFromImage(labels)
    out = {r: np.isin(arr, nm.card.roles.get(r, ())) for r in roles}
    return out, labels


def _part_progress(progress: Progress | None, k: int, n: int) -> Progress | None:
    """Progress of part k of n mapped onto the whole stage (fractions k/n .. (k+1)/n)."""
    if progress is None or n == 1:
        return progress
    return lambda stage, f: progress(stage, (k + f) / n)


def _clean_tumor(
    probability: sitk.Image,
    threshold: float,
    breast: sitk.Image,
    part: Part,
    settings: Settings,
    notes: list[str],
) -> tuple[sitk.Image, int, list[float]]:
    """Tumor mask from the probability on the native grid (module docstring, step 3).

    Returns the mask, the number of small components removed, and the peak enhancement (percent)
    of each non-enhancing component removed (a note says so).
    """
    from breastai.postprocess import remove_non_enhancing, tumor_mask

    tumor, removed = tumor_mask(
        probability,
        threshold,
        breast=breast if settings.use_breast_mask else None,
        min_volume_mm3=settings.min_volume_mm3,
    )
    phases = [p.image for p in part.study.phases]
    tumor, dropped = remove_non_enhancing(tumor, phases, settings.min_enhancement_pct)
    if dropped:
        where = f" of the {part.side} stack" if part.side else ""
        peaks = ", ".join(f"{v:.1f}" for v in sorted(dropped, reverse=True))
        notes.append(
            f"{len(dropped)} tumor component(s){where} did not enhance (peak enhancement {peaks} "
            f"%, below {settings.min_enhancement_pct:g} %) and were removed; "
            "--min-enhancement 0 keeps them."
        )
    return tumor, removed, dropped


def _infer(
    part: Part,
    settings: Settings,
    models: LoadedModels,
    progress: Progress | None,
    timings: dict[str, float],
) -> PartMasks:
    """Breast and tumor models on one part; stage seconds are added to ``timings``."""
    from breastai.families import ModelInputs
    from breastai.inference import n_windows
    from breastai.postprocess import bounding_box, breast_mask

    ref = part.study.reference.image
    notes: list[str] = []
    where = f" ({part.side} stack)" if part.side else ""
    windows: dict[str, Any] = {}

    def add_time(stage: str, t0: float) -> None:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0

    # breast
    t0 = time.perf_counter()
    bm, bcard = models.breast, models.breast.card
    side_labels = None
    if bm.nnunet is not None and part.breast_channels is not None:
        masks, _ = _nnunet_labels(
            bm,
            part.breast_channels,
            ref,
            ("breast", "left", "right"),
            settings,
            _stage_progress(progress, "breast"),
            windows,
            "breast",
        )
        union = masks["breast"] | masks["left"] | masks["right"]
        breast = _image_like(union.astype(np.uint8), ref)
        if masks["left"].any() or masks["right"].any():
            sides = np.zeros(union.shape, np.uint8)
            sides[masks["right"]] = 1
            sides[masks["left"]] = 2
            side_labels = _image_like(sides, ref)
    else:
        b_native = bm.fam.predict(
            ModelInputs(image=part.breast_input, grid=part.breast_grid, chosen=[0]),
            bm.session,
            ref,
            card=bcard,
            blend=settings.blend or bcard.blending,
            batch_size=batch_size(settings, bm.session.provider),
            progress=_stage_progress(progress, "breast"),
        )
        windows["breast"] = n_windows(
            part.breast_input.shape[-3:], bcard.patch_zyx, bcard.stride_zyx
        )
        breast = breast_mask(b_native, bcard.threshold, one_breast=part.side is not None)
    add_time("breast", t0)

    if models.tumor.nnunet is not None and part.tumor_channels is not None:
        t0 = time.perf_counter()
        masks, _ = _nnunet_labels(
            models.tumor,
            part.tumor_channels,
            ref,
            ("tumor",),
            settings,
            _stage_progress(progress, "tumor"),
            windows,
            "tumor",
        )
        windows["tumor_roi_zyx"] = None
        add_time("tumor", t0)
        t0 = time.perf_counter()
        if progress:
            progress("postprocess", 0.0)
        t_native = _image_like(masks["tumor"].astype(np.float32), ref)
        tumor, removed, non_enhancing = _clean_tumor(t_native, 0.5, breast, part, settings, notes)
        add_time("postprocess", t0)
        if progress:
            progress("postprocess", 1.0)
        return PartMasks(
            breast, tumor, t_native, removed, windows, notes, side_labels, non_enhancing
        )

    # tumor
    t0 = time.perf_counter()
    tm, tcard = models.tumor, models.tumor.card
    blend_t = settings.blend or tcard.blending
    shape = part.tumor_input.shape[-3:]
    roi = None
    skip = False
    if settings.use_breast_mask:
        roi = bounding_box(breast, part.tumor_grid, margin_mm=settings.roi_margin_mm)
        if roi is None:
            skip = True
            notes.append(
                f"The breast model found no breast tissue{where}: the tumor mask is empty."
            )
    if skip:
        t_native = _image_like(np.zeros(sitk.GetArrayViewFromImage(ref).shape, np.float32), ref)
        windows["tumor"] = 0
    else:
        t_native = tm.fam.predict(
            ModelInputs(image=part.tumor_input, grid=part.tumor_grid, chosen=[]),
            tm.session,
            ref,
            time_mask=part.time_mask,
            card=tcard,
            blend=blend_t,
            batch_size=batch_size(settings, tm.session.provider),
            roi=roi,
            progress=_stage_progress(progress, "tumor"),
        )
        windows["tumor"] = n_windows(shape, tcard.patch_zyx, tcard.stride_zyx, roi)
    windows["tumor_full_volume"] = n_windows(shape, tcard.patch_zyx, tcard.stride_zyx)
    windows["tumor_roi_zyx"] = [list(r) for r in roi] if roi is not None else None
    add_time("tumor", t0)

    # back to the native grid, threshold, mask, clean
    t0 = time.perf_counter()
    if progress:
        progress("postprocess", 0.0)
    tumor, removed, non_enhancing = _clean_tumor(
        t_native, tcard.threshold, breast, part, settings, notes
    )
    add_time("postprocess", t0)
    if progress:
        progress("postprocess", 1.0)
    return PartMasks(breast, tumor, t_native, removed, windows, notes, side_labels, non_enhancing)


# ------------------------------------------------------------------------------ orchestration


def run_models(
    prep: PreparedStudy,
    *,
    settings: Settings,
    models: LoadedModels,
    started: float,
    progress: Progress | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
) -> StudyOutputs:
    """Run the models on a prepared study and build its outputs in memory (nothing is written).

    Parameters
    ----------
    prep:
        From :func:`prepare_study`.
    settings, models, progress:
        As for :func:`segment_study`.
    started:
        ``time.perf_counter()`` when work on this study began (for ``timings_s.total``).
    manifest_extra:
        Top-level keys added to the manifest.

    Returns
    -------
    StudyOutputs
        Masks, measurements, report and manifest; :func:`write_outputs` writes them.
    """
    n = len(prep.parts)
    comps = [
        _infer(part, settings, models, _part_progress(progress, k, n), prep.timings)
        for k, part in enumerate(prep.parts)
    ]
    if n > 1:
        comps[0].notes.insert(
            0,
            "Split-bilateral study kept as two stacks that share no grid: each stack was "
            "segmented on its own grid; output files carry _R / _L.",
        )
    return build_outputs(prep, comps, settings, models, started, manifest_extra)


def _run(
    prep: PreparedStudy,
    out_dir: Path,
    settings: Settings,
    models: LoadedModels,
    started: float,
    progress: Progress | None,
    manifest_extra: Mapping[str, Any] | None = None,
) -> SegmentResult:
    check_new_dir(Path(out_dir) / prep.name, force=settings.force)  # before minutes of inference
    outputs = run_models(
        prep,
        settings=settings,
        models=models,
        started=started,
        progress=progress,
        manifest_extra=manifest_extra,
    )
    return write_outputs(outputs, out_dir, force=settings.force, progress=progress)


@overload
def segment_study(
    study_or_path: Study | Path | str,
    *,
    out_dir: None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
    models: LoadedModels | None = None,
) -> StudyOutputs: ...


@overload
def segment_study(
    study_or_path: Study | Path | str,
    *,
    out_dir: Path | str,
    settings: Settings | None = None,
    progress: Progress | None = None,
    models: LoadedModels | None = None,
) -> SegmentResult: ...


def segment_study(
    study_or_path: Study | Path | str,
    *,
    out_dir: Path | str | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
    models: LoadedModels | None = None,
) -> SegmentResult | StudyOutputs:
    """Segment one study: in memory (``out_dir=None``), or written to ``out_dir/<study>/``.

    Parameters
    ----------
    study_or_path:
        A study folder (DICOM or per-phase NIfTI), a 4-D NIfTI file, or a loaded ``Study``.
    out_dir:
        Parent folder of the per-study output folder; None: write nothing and return the
        outputs in memory.
    settings:
        Run settings (defaults: ``Settings()``; ``force`` applies when writing).
    progress:
        Called with ``(stage, fraction)``; stages in :data:`STAGES`.
    models:
        Models from :func:`load_models` to reuse (a cohort loads them once).

    Returns
    -------
    StudyOutputs
        With ``out_dir=None``: the masks (SimpleITK images on the study's grid), lesion
        measurements, ``report.json`` document and manifest; nothing is written.
    SegmentResult
        With an ``out_dir``: ``ok=True`` with the written files and summary numbers (the
        outputs are written by :func:`write_outputs`).

    Raises
    ------
    BreastAIError
        Input, weights and output problems (the output folder is then left as it was).
    """
    settings = settings or Settings()
    started = time.perf_counter()
    if out_dir is not None:
        check_new_dir(Path(out_dir) / study_name(study_or_path), force=settings.force)
        check_writable(Path(out_dir))  # before any reading or inference
    models = models or load_models(settings)
    prep = _prepare(study_or_path, settings, models, progress)
    if out_dir is not None:
        return _run(prep, Path(out_dir), settings, models, started, progress)
    outputs = run_models(prep, settings=settings, models=models, started=started, progress=progress)
    if progress:
        progress("write", 1.0)
    return outputs


def prepare_study(
    study_or_path: Study | Path | str,
    *,
    settings: Settings,
    models: LoadedModels,
    name: str | None = None,
    progress: Progress | None = None,
) -> PreparedStudy:
    """Read and preprocess one study (the part of :func:`segment_study` that needs no model run).

    A cohort runner calls this for the next study while the current one is in
    :func:`segment_prepared`.

    Parameters
    ----------
    study_or_path:
        A study folder, a 4-D NIfTI file, or a loaded ``Study``.
    settings, models:
        As for :func:`segment_study` (only the model cards are used here).
    name:
        Output folder name under ``out_dir`` (default: the study's folder name).
    progress:
        Called with ``(stage, fraction)``.

    Returns
    -------
    PreparedStudy
        The study on the models' grids, with its ``read`` / ``preprocess`` seconds.

    Raises
    ------
    BreastAIError
        The study cannot be read or has too few phases.
    """
    prep = _prepare(study_or_path, settings, models, progress)
    if name is not None:
        prep.name = name
    return prep


def segment_prepared(
    prep: PreparedStudy,
    *,
    out_dir: Path,
    settings: Settings,
    models: LoadedModels,
    started: float,
    progress: Progress | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
) -> SegmentResult:
    """Run the models on a prepared study and write ``out_dir/<prep.name>/`` atomically.

    :func:`run_models` then :func:`write_outputs`; the parameters are theirs (``out_dir`` as for
    :func:`segment_study`; a cohort run records its ``cohort`` key through ``manifest_extra``).

    Returns
    -------
    SegmentResult
        ``ok=True`` with the written files and summary numbers.

    Raises
    ------
    BreastAIError
        Output problems (nothing is left half-written).
    """
    return _run(prep, Path(out_dir), settings, models, started, progress, manifest_extra)


def _failure(name: str, source: str, exc: BaseException) -> SegmentResult:
    if isinstance(exc, BreastAIError):
        return SegmentResult(
            name=name,
            source=source,
            ok=False,
            error=str(exc),
            error_type=type(exc).__name__,
            exit_code=exc.exit_code,
        )
    log.error("internal error on %s", name, exc_info=exc)
    return SegmentResult(
        name=name,
        source=source,
        ok=False,
        error=f"internal error ({type(exc).__name__}: {exc}); please report it",
        error_type=type(exc).__name__,
        exit_code=1,
    )


def _unique_names(items: Sequence[Study | Path | str]) -> list[str]:
    from breastai.cohort import study_folder_name

    return [study_folder_name(it) for it in items]


def segment_studies(
    items: Sequence[Study | Path | str],
    *,
    out_dir: Path,
    settings: Settings | None = None,
    progress: Callable[[int, str, float], None] | None = None,
    on_result: Callable[[int, SegmentResult], None] | None = None,
) -> list[SegmentResult]:
    """Segment a cohort; the next study is read and preprocessed while the current one runs.

    Parameters
    ----------
    items:
        Study folders / files / loaded studies. Output folder names depend on the study alone
        (:func:`breastai.cohort.study_folder_name`), never on the order or the other items.
    out_dir:
        Parent output folder.
    settings:
        Shared settings.
    progress:
        Called with ``(study index, stage, fraction)``.
    on_result:
        Called with ``(study index, result)`` as each study finishes.

    Returns
    -------
    list of SegmentResult
        One per item, in order; failures have ``ok=False`` and the error's one-line message. A
        failing study never stops the others. Weights problems (which would fail every study)
        raise ``WeightsError`` before any study is read.
    """
    settings = settings or Settings()
    check_writable(Path(out_dir))  # an unwritable output folder fails before any work
    models = load_models(settings)
    names = _unique_names(items)
    results: list[SegmentResult] = []

    def prep_one(i: int) -> tuple[PreparedStudy, float]:
        started = time.perf_counter()
        final = Path(out_dir) / names[i]
        check_new_dir(final, force=settings.force)
        cb = (lambda st, f: progress(i, st, f)) if progress else None
        p = _prepare(items[i], settings, models, cb)
        p.name = names[i]
        return p, started

    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as ex:
        pending = ex.submit(prep_one, 0) if items else None
        for i in range(len(items)):
            if pending is None:  # cannot happen: one future per item
                break
            fut = pending
            pending = ex.submit(prep_one, i + 1) if i + 1 < len(items) else None
            item = items[i]
            source = str(item.source if isinstance(item, Study) else item)
            try:
                prep, started = fut.result()
                cb = (lambda st, f, i=i: progress(i, st, f)) if progress else None
                res = _run(prep, Path(out_dir), settings, models, started, cb)
            except Exception as exc:
                res = _failure(names[i], source, exc)
            results.append(res)
            if on_result:
                on_result(i, res)
    return results


def result_table(results: Sequence[SegmentResult]) -> list[Mapping[str, Any]]:
    """Rows for a summary table / JSON (one per study)."""
    return [r.to_dict() for r in results]
