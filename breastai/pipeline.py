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
   thresholded, multiplied by the breast mask, small components removed;
4. outputs written into a temporary folder beside ``OUT/<study>/`` and renamed into place.

Output files and manifest keys are documented in docs/outputs.md.
"""

# SimpleITK's bindings are untyped (no stubs); calling them is fine here.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from breastai import RESEARCH_NOTICE, __version__
from breastai.errors import BreastAIError, InputError, ParameterError
from breastai.io.atomic import atomic_dir, check_new_dir, check_writable
from breastai.study import Study

__all__ = [
    "MANIFEST_SCHEMA",
    "STAGES",
    "LoadedModels",
    "PreparedStudy",
    "SegmentResult",
    "Settings",
    "load_models",
    "prepare_study",
    "result_table",
    "segment_prepared",
    "segment_studies",
    "segment_study",
]

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = "breastai.manifest/1"
#: Progress stages, in order; the progress callback receives (stage, fraction of that stage).
STAGES = ("read", "preprocess", "breast", "tumor", "postprocess", "write")

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class Settings:
    """Everything a segmentation run can be told (the CLI builds one from its options).

    Attributes
    ----------
    device:
        ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
    weights, breast_weights:
        Tumor / breast model name or ONNX path (None: the default model of the task).
    weights_file:
        User weights file (None: the default location).
    blend:
        Override of the model cards' blending (``vote`` | ``mean`` | ``gaussian``).
    use_breast_mask:
        Multiply the tumor mask by the breast mask and restrict tumor windows to the breast
        bounding box (the paper). False = ``--no-breast-mask``.
    save_probabilities:
        Also write ``tumor_probability.nii.gz``.
    force:
        Replace an existing ``OUT/<study>/`` folder.
    batch_size:
        Windows per model call; None = 1 on CPU (no gain from more on few cores), 4 on CUDA.
    threads:
        CPU threads of the runtime (0 = its default).
    runtime:
        ``auto`` | ``onnxruntime`` | ``openvino`` (see :class:`breastai.inference.OnnxModel`).
    precision:
        ``fp32`` | ``bf16`` (bf16: OpenVINO on a CPU with native bfloat16; outputs differ a little).
    dce_series:
        DICOM SeriesInstanceUIDs (or numbers) of the DCE acquisition, overriding the reader.
    study_uid:
        DICOM: the StudyInstanceUID to read when a folder holds several studies.
    times:
        Phase times in seconds, overriding the DICOM clocks (and giving NIfTI phases times).
    min_volume_mm3:
        Smallest tumor component kept.
    roi_margin_mm:
        Margin around the breast bounding box for the tumor windows.
    write_seg, write_preview:
        Write ``seg.dcm`` (DICOM input only) and ``preview.png``.
    cudnn_conv_algo_search:
        ``HEURISTIC`` (default) or ``EXHAUSTIVE`` (see :mod:`breastai.inference`).
    tta:
        nnU-Net models: mirroring test-time augmentation as the model allows it (False =
        ``--no-tta``). No effect on the other families.
    """

    device: str = "auto"
    weights: str | None = None
    breast_weights: str | None = None
    weights_file: Path | None = None
    blend: str | None = None
    use_breast_mask: bool = True
    save_probabilities: bool = False
    force: bool = False
    batch_size: int | None = None
    threads: int = 0
    runtime: str = "auto"
    precision: str = "fp32"
    dce_series: tuple[str, ...] = ()
    study_uid: str | None = None
    times: tuple[float, ...] | None = None
    min_volume_mm3: float = 10.0
    roi_margin_mm: float = 8.0
    write_seg: bool = True
    write_preview: bool = True
    cudnn_conv_algo_search: str = "HEURISTIC"
    tta: bool = True

    def __post_init__(self) -> None:
        from breastai.inference import BLEND_MODES, check_runtime_options

        check_runtime_options(self.device, self.runtime, self.precision)
        if self.blend is not None and self.blend not in BLEND_MODES:
            raise ParameterError(f"--blend must be one of {BLEND_MODES}, got {self.blend!r}.")
        if self.batch_size is not None and self.batch_size < 1:
            raise ParameterError(f"batch size must be >= 1, got {self.batch_size}.")
        if self.min_volume_mm3 < 0 or self.roi_margin_mm < 0:
            raise ParameterError("min_volume_mm3 and roi_margin_mm must be >= 0.")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weights_file"] = str(self.weights_file) if self.weights_file else None
        d["dce_series"] = list(self.dce_series)
        d["times"] = None if self.times is None else list(self.times)
        return d


@dataclass
class SegmentResult:
    """What happened to one study (success or failure)."""

    name: str
    source: str
    ok: bool
    out_dir: Path | None = None
    files: list[str] = field(default_factory=list)
    error: str | None = None
    error_type: str | None = None
    exit_code: int = 0
    lesion_count: int | None = None
    t_category: str | None = None
    longest_diameter_mm: float | None = None
    tumor_volume_ml: float | None = None
    breast_volume_ml: float | None = None
    device: str | None = None
    provider: str | None = None
    precision: str | None = None
    demo_weights: bool | None = None
    notices: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir) if self.out_dir else None
        return d


# ------------------------------------------------------------------------------------ models


@dataclass(frozen=True)
class _Model:
    resolved: Any  # breastai.weights.ResolvedModel
    session: Any  # breastai.inference.OnnxModel (nnU-Net: the first fold's)
    nnunet: Any = None  # breastai.nnunet.NnunetModel for an imported nnU-Net model
    family: Any = None  # breastai.families.ModelFamily: the model's preprocessing

    @property
    def fam(self) -> Any:
        from breastai.families import family_for_card

        return self.family or family_for_card(self.card, self.nnunet)

    @property
    def card(self) -> Any:
        return self.resolved.card

    def info(self, blend: str, tta: bool = True) -> dict[str, Any]:
        c = self.card
        d: dict[str, Any] = dict(self.resolved.to_dict())
        if self.nnunet is not None:
            nc = self.nnunet.card
            d.update(
                family="nnunet",
                sha256s={str(f["file"]): str(f.get("sha256", "")) for f in nc.folds},
                channels=list(nc.channels),
                roles={k: list(v) for k, v in nc.roles.items()},
                configuration=nc.configuration,
                folds=[f["fold"] for f in nc.folds],
                spacing_zyx=list(nc.spacing),
                patch_zyx=list(nc.patch_size),
                tile_step_size=nc.tile_step_size,
                tta=bool(tta and nc.mirroring_axes),
            )
            return d
        d.update(
            family=self.fam.name,
            blending=blend,
            threshold=c.threshold,
            patch_zyx=list(c.patch_zyx),
            stride_zyx=list(c.stride_zyx),
            spacing_zyx=list(c.spacing_zyx),
            normalisation=c.normalisation,
        )
        if c.task == "tumor":
            d["phase_slots"] = c.phase_slots
        return d


@dataclass(frozen=True)
class LoadedModels:
    """The opened breast and tumor models (from :func:`load_models`), reused across studies."""

    breast: _Model
    tumor: _Model

    @property
    def provider(self) -> str:
        return str(self.tumor.session.provider)

    @property
    def device(self) -> str:
        return str(self.tumor.session.device)

    @property
    def precision(self) -> str:
        return str(self.tumor.session.precision)

    @property
    def runtime(self) -> str:
        """``onnxruntime 1.x`` / ``openvino 2026.x``: what ran the models."""
        s = self.tumor.session
        return f"{s.runtime} {s.runtime_version}"

    def notices(self) -> list[str]:
        seen: list[str] = []
        for m in (self.breast, self.tumor):
            for n in m.session.notices:
                if n not in seen:
                    seen.append(n)
        return seen


def _batch(settings: Settings, provider: str) -> int:
    if settings.batch_size is not None:
        return settings.batch_size
    return 4 if provider == "CUDAExecutionProvider" else 1


def load_models(settings: Settings) -> LoadedModels:
    """Resolve, verify and open the breast and tumor models once (reused for a cohort)."""
    from breastai.inference import OnnxModel
    from breastai.weights import resolve_model

    out: dict[str, _Model] = {}
    for task, name in (("breast", settings.breast_weights), ("tumor", settings.weights)):
        resolved = resolve_model(name, task, weights_file=settings.weights_file)
        card = resolved.card
        if card.task != task:
            raise ParameterError(
                f"model {card.name!r} is a {card.task} model; "
                f"--{'breast-' if task == 'breast' else ''}weights needs a {task} model."
            )
        if card.architecture.startswith("nnunet"):
            out[task] = _load_nnunet(resolved, task, settings)
            continue
        session = OnnxModel(
            resolved.path,
            device=settings.device,
            threads=settings.threads,
            runtime=settings.runtime,
            precision=settings.precision,
            cudnn_conv_algo_search=settings.cudnn_conv_algo_search,
        )
        if session.on_gpu:
            b = _batch(settings, session.provider)
            feed = {"image": np.zeros((b, 1, *card.patch_zyx), np.float32)}
            if task == "tumor":
                s = card.phase_slots
                feed = {
                    "phases": np.zeros((b, s, 1, *card.patch_zyx), np.float32),
                    "time_mask": np.ones((b, s), np.float32),
                }
            t0 = time.perf_counter()
            session.run(feed)  # warm-up: cuDNN picks its kernels for this window shape
            session.warmup_s = time.perf_counter() - t0
        from breastai.families import family_for_card

        out[task] = _Model(resolved, session, None, family_for_card(card))
    return LoadedModels(breast=out["breast"], tumor=out["tumor"])


def _load_nnunet(resolved: Any, task: str, settings: Settings) -> _Model:
    """An imported nnU-Net model in the breast or tumor slot (its card names its roles)."""
    from breastai.nnunet import NnunetCard, NnunetModel

    ncard = NnunetCard.read(resolved.path)
    need = ("breast", "left", "right") if task == "breast" else ("tumor",)
    if not any(ncard.roles.get(r) for r in need):
        raise ParameterError(
            f"nnU-Net model {ncard.name!r} has no {' / '.join(need)} label (roles: "
            f"{', '.join(sorted(ncard.roles)) or 'none'}); import it again with --labels naming "
            f"its {task} label(s)."
        )
    model = NnunetModel(
        ncard,
        resolved.path.parent,
        device=settings.device,
        runtime=settings.runtime,
        precision=settings.precision,
        threads=settings.threads,
    )
    from breastai.families import NnunetFamily

    return _Model(resolved, model.sessions[0], model, NnunetFamily(model))


# ------------------------------------------------------------------------------- preparation


@dataclass
class _Part:
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
class _Prepared:
    study: Study
    name: str
    parts: list[_Part]
    chosen: list[int]
    selection_note: str | None
    timings: dict[str, float]


def _study_name(study_or_path: Study | Path | str) -> str:
    if isinstance(study_or_path, Study):
        return study_or_path.name or Path(study_or_path.source).name or "study"
    p = Path(study_or_path)
    name = p.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name or "study"


def _prepare(
    study_or_path: Study | Path | str,
    settings: Settings,
    models: LoadedModels,
    progress: Progress | None = None,
) -> _Prepared:
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
    name = _study_name(study_or_path if not isinstance(study_or_path, Study) else study)
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
    return _Prepared(
        study=study,
        name=name,
        parts=parts,
        chosen=chosen,
        selection_note=note,
        timings=timings,
    )


def _nnunet_channels(model: _Model, study: Study) -> list[sitk.Image] | None:
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
) -> _Prepared:
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
        side = sides[k] if sides else None
        ref = sub.reference.image
        parts.append(
            _Part(
                study=sub,
                suffix=f"_{side}" if side else "",
                side=None if side is None else ("right" if side == "R" else "left"),
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
    return _Prepared(
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
) -> list[_Part]:
    """Normalise the tumor phases (jointly over split-bilateral stacks) and build the parts."""
    from breastai.preprocess import assemble_slots, seed_clip_bounds

    tcard = models.tumor.card
    bounds = None
    if len(resampled) > 1 and tcard.normalisation == "seed":
        # the stacks of one study are normalised alike, as one bilateral volume would be
        bounds = seed_clip_bounds([r.tumor_raw for r in resampled])
    parts = []
    for k, r in enumerate(resampled):
        normed = models.tumor.fam.normalise(r.tumor_raw, bounds)
        stacked, mask = assemble_slots(normed, int(tcard.phase_slots))
        side = sides[k] if sides else None
        parts.append(
            _Part(
                study=r.study,
                suffix=f"_{side}" if side else "",
                side=None if side is None else ("right" if side == "R" else "left"),
                breast_input=r.breast_input,
                breast_grid=r.breast_grid,
                tumor_input=stacked[:, None],
                time_mask=mask,
                tumor_grid=r.tumor_grid,
                breast_channels=r.breast_channels,
            )
        )
    return parts


# --------------------------------------------------------------------------------- inference


def _image_like(arr: np.ndarray, grid: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(grid)
    return img


def _stage_progress(progress: Progress | None, stage: str) -> Callable[[float], None] | None:
    if progress is None:
        return None
    return lambda f: progress(stage, f)


@dataclass
class _Computed:
    breast: sitk.Image
    tumor: sitk.Image
    tumor_probability: sitk.Image
    removed: int
    windows: dict[str, Any]
    notes: list[str]
    side_labels: sitk.Image | None = None  # 1 right / 2 left, from a left/right breast model


def _nnunet_labels(
    model: _Model,
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


def _infer(
    part: _Part,
    settings: Settings,
    models: LoadedModels,
    progress: Progress | None,
    timings: dict[str, float],
) -> _Computed:
    """Breast and tumor models on one part; stage seconds are added to ``timings``."""
    from breastai.families import ModelInputs
    from breastai.inference import n_windows
    from breastai.postprocess import bounding_box, breast_mask, tumor_mask

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
            batch_size=_batch(settings, bm.session.provider),
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
        tumor, removed = tumor_mask(
            t_native,
            0.5,
            breast=breast if settings.use_breast_mask else None,
            min_volume_mm3=settings.min_volume_mm3,
        )
        add_time("postprocess", t0)
        if progress:
            progress("postprocess", 1.0)
        return _Computed(breast, tumor, t_native, removed, windows, notes, side_labels)

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
            batch_size=_batch(settings, tm.session.provider),
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
    tumor, removed = tumor_mask(
        t_native,
        tcard.threshold,
        breast=breast if settings.use_breast_mask else None,
        min_volume_mm3=settings.min_volume_mm3,
    )
    add_time("postprocess", t0)
    if progress:
        progress("postprocess", 1.0)
    return _Computed(breast, tumor, t_native, removed, windows, notes, side_labels)


# ------------------------------------------------------------------------------------ writing


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"breastai": __version__, "python": platform.python_version()}
    for pkg in (
        "numpy",
        "SimpleITK",
        "onnxruntime-gpu",
        "onnxruntime",
        "openvino",
        "pydicom",
        "highdicom",
        "scipy",
        "Pillow",
    ):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def _write_outputs(
    tmp: Path,
    prep: _Prepared,
    comps: Sequence[_Computed],
    settings: Settings,
    models: LoadedModels,
    started: float,
    progress: Progress | None,
    manifest_extra: Mapping[str, Any] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    from breastai.report import measure_lesions, merge_reports, write_report

    study = prep.study
    parts = prep.parts
    t0 = time.perf_counter()
    files: list[str] = []

    def nifti(img: sitk.Image, fname: str) -> None:
        sitk.WriteImage(img, str(tmp / fname), useCompression=True)
        files.append(fname)

    for part, comp in zip(parts, comps, strict=True):
        nifti(comp.breast, f"breast{part.suffix}.nii.gz")
        nifti(comp.tumor, f"tumor{part.suffix}.nii.gz")
        if settings.save_probabilities:
            nifti(comp.tumor_probability, f"tumor_probability{part.suffix}.nii.gz")
    if progress:
        progress("write", 0.2)

    blend = {
        "breast": settings.blend or models.breast.card.blending,
        "tumor": settings.blend or models.tumor.card.blending,
    }
    minfo = {
        "breast": models.breast.info(blend["breast"], settings.tta),
        "tumor": models.tumor.info(blend["tumor"], settings.tta),
    }
    weights: dict[str, dict[str, Any]] = {
        task: {
            "name": m["name"],
            "sha256": m["sha256"],
            "demo": bool(m["demo"]),
            "family": m["family"],
            **({"sha256s": m["sha256s"]} if "sha256s" in m else {}),
        }
        for task, m in minfo.items()
    }
    demo = any(w["demo"] for w in weights.values())
    if settings.write_seg and study.kind == "dicom" and study.reference.source_files:
        from breastai.io.seg import write_seg

        for k, (part, comp) in enumerate(zip(parts, comps, strict=True)):
            fname = f"seg{part.suffix}.dcm"
            write_seg(
                tmp / fname,
                part.study,
                breast=comp.breast,
                tumor=comp.tumor,
                weights=weights,
                series_number=9901 + k,
            )
            files.append(fname)
    if progress:
        progress("write", 0.5)

    reports = {
        part.suffix.lstrip("_"): measure_lesions(
            comp.tumor,
            study=part.study,
            breast_mask=comp.breast,
            min_volume_mm3=settings.min_volume_mm3,
            side=part.side,
            side_labels=comp.side_labels,
        )
        for part, comp in zip(parts, comps, strict=True)
    }
    report = reports[""] if "" in reports else merge_reports(reports)
    rdict = report.to_dict()
    extra = {"study": prep.name, "run": {"device": models.device, "provider": models.provider}}
    for p in write_report(report, tmp, weights=weights, extra=extra):
        files.append(Path(p).name)
    if progress:
        progress("write", 0.7)

    if settings.write_preview:
        from breastai.preview import write_preview

        for part, comp in zip(parts, comps, strict=True):
            caption = f"{prep.name}{part.suffix}  tumor: {weights['tumor']['name']}" + (
                " (DEMO)" if demo else ""
            )
            write_preview(
                tmp / f"preview{part.suffix}.png",
                pre=part.study.phases[0].image,
                post=part.study.reference.image,
                tumor=comp.tumor,
                breast=comp.breast,
                caption=caption,
            )
            files.append(f"preview{part.suffix}.png")
    prep.timings["write"] = time.perf_counter() - t0
    prep.timings["total"] = time.perf_counter() - started

    def volume_ml(mask: sitk.Image) -> float:
        return float(sitk.GetArrayViewFromImage(mask).sum()) * float(
            np.prod(mask.GetSpacing()) / 1000.0
        )

    summary = {
        "lesion_count": rdict.get("lesion_count"),
        "t_category": rdict.get("t_category"),
        "tumor_volume_ml": sum(volume_ml(c.tumor) for c in comps),
        "breast_volume_ml": sum(volume_ml(c.breast) for c in comps),
    }
    lesions = rdict.get("lesions") or []
    diam = [float(x["longest_diameter_mm"]) for x in lesions if x.get("longest_diameter_mm")]
    summary["longest_diameter_mm"] = max(diam) if diam else None
    files.append("manifest.json")
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "notice": RESEARCH_NOTICE,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "software": _versions(),
        "study": {
            "name": prep.name,
            "source": str(study.source),
            "kind": study.kind,
            "study_uid": study.study_uid,
        },
        "models": minfo,
        "demo_weights": demo,
        "device": {
            "requested": settings.device,
            "used": models.device,
            "provider": models.provider,
            "runtime": models.runtime,
            "precision": models.precision,
            "notices": models.notices(),
        },
        "reference_phase": study.reference_index,
        "stacks": (
            None
            if len(parts) == 1
            else [
                {
                    "side": part.side,
                    "suffix": part.suffix,
                    "series_uid": part.study.reference.series_uid,
                    "size_xyz": list(part.study.reference.image.GetSize()),
                    "spacing_xyz": list(part.study.reference.image.GetSpacing()),
                }
                for part in parts
            ]
        ),
        "phases": [
            {
                "index": p.index,
                "time_s": p.time_s,
                "series_uid": p.series_uid,
                "label": p.label,
                "used": p.index in prep.chosen,
                "slot": prep.chosen.index(p.index) if p.index in prep.chosen else None,
            }
            for p in study.phases
        ],
        "phase_selection": prep.selection_note,
        "time_mask": [float(v) for v in parts[0].time_mask],
        "reader_decisions": study.decisions.to_dict(),
        "postprocess": {
            "threshold_rule": "probability > threshold",
            "use_breast_mask": settings.use_breast_mask,
            "min_volume_mm3": settings.min_volume_mm3,
            "small_components_removed": sum(c.removed for c in comps),
        },
        "windows": (
            comps[0].windows
            if len(parts) == 1
            else {part.suffix.lstrip("_"): c.windows for part, c in zip(parts, comps, strict=True)}
        ),
        "notes": [n for c in comps for n in c.notes],
        "settings": settings.to_dict(),
        "summary": summary,
        "timings_s": {k: round(v, 4) for k, v in prep.timings.items()},
        "outputs": files,
    }
    manifest.update(manifest_extra or {})
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    if progress:
        progress("write", 1.0)
    return files, manifest


def _run(
    prep: _Prepared,
    out_dir: Path,
    settings: Settings,
    models: LoadedModels,
    started: float,
    progress: Progress | None,
    manifest_extra: Mapping[str, Any] | None = None,
) -> SegmentResult:
    final = Path(out_dir) / prep.name
    check_new_dir(final, force=settings.force)  # fail before minutes of inference
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
    with atomic_dir(final, force=settings.force) as tmp:
        files, manifest = _write_outputs(
            tmp, prep, comps, settings, models, started, progress, manifest_extra
        )
    s = manifest["summary"]
    return SegmentResult(
        name=prep.name,
        source=str(prep.study.source),
        ok=True,
        out_dir=final,
        files=files,
        lesion_count=s["lesion_count"],
        t_category=s["t_category"],
        longest_diameter_mm=s["longest_diameter_mm"],
        tumor_volume_ml=round(s["tumor_volume_ml"], 4),
        breast_volume_ml=round(s["breast_volume_ml"], 4),
        device=models.device,
        provider=models.provider,
        precision=models.precision,
        demo_weights=manifest["demo_weights"],
        notices=models.notices() + [note for c in comps for note in c.notes],
        timings_s={k: round(v, 4) for k, v in prep.timings.items()},
    )


def segment_study(
    study_or_path: Study | Path | str,
    *,
    out_dir: Path,
    settings: Settings | None = None,
    progress: Progress | None = None,
    models: LoadedModels | None = None,
) -> SegmentResult:
    """Segment one study and write ``out_dir/<study>/``.

    Parameters
    ----------
    study_or_path:
        A study folder (DICOM or per-phase NIfTI), a 4-D NIfTI file, or a loaded ``Study``.
    out_dir:
        Parent folder of the per-study output folder.
    settings:
        Run settings (defaults: ``Settings()``).
    progress:
        Called with ``(stage, fraction)``; stages in :data:`STAGES`.
    models:
        Models from :func:`load_models` to reuse (a cohort loads them once).

    Returns
    -------
    SegmentResult
        ``ok=True`` with the written files and summary numbers.

    Raises
    ------
    BreastAIError
        Input, weights and output problems (the output folder is then left as it was).
    """
    settings = settings or Settings()
    started = time.perf_counter()
    name = _study_name(study_or_path)
    final = Path(out_dir) / name
    check_new_dir(final, force=settings.force)
    check_writable(Path(out_dir))  # before any reading or inference
    models = models or load_models(settings)
    prep = _prepare(study_or_path, settings, models, progress)
    return _run(prep, Path(out_dir), settings, models, started, progress)


#: A read and preprocessed study, ready for the models (from :func:`prepare_study`).
PreparedStudy = _Prepared


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

    Parameters
    ----------
    prep:
        From :func:`prepare_study`.
    out_dir, settings, models, progress:
        As for :func:`segment_study`.
    started:
        ``time.perf_counter()`` when work on this study began (for ``timings_s.total``).
    manifest_extra:
        Top-level keys added to ``manifest.json`` (a cohort run records its ``cohort`` key).

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

    def prep_one(i: int) -> tuple[_Prepared, float]:
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
