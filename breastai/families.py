"""Model families: each owns how a study becomes its model's input, for inference and training.

Three families run in ``segment``:

* ``unet`` -- our demo 3-D U-Net breast model: P0 resampled to the card's spacing (linear,
  canonical axes), normalised per the card (``p1p99-minmax``, or ``seed`` together with P1).
* ``seed`` -- the authors' spatial-temporal tumor network (and our reduced demo of it): phases
  chosen by time (:func:`breastai.preprocess.choose_phases`), the reference phase (P1) resampled
  to the card's spacing and every other chosen phase onto that grid (linear), normalised per the
  card (``seed``: joint clip bounds over the stacks of a split-bilateral study), then stacked
  into the phase slots with a time mask.
* ``nnunet`` -- an imported nnU-Net v2 model: the channel images its card names
  (:func:`breastai.nnunet.derive_channels`); nnU-Net's own preprocessing runs inside
  :meth:`breastai.nnunet.NnunetModel.predict`.

Each family has ``prepare(study) -> ModelInputs`` and ``predict(inputs, ...)``, which gives the
result on the native grid of the reference phase (unet/seed: the probability, resampled back
linearly; nnunet: nnU-Net's labels on channel 0's grid, which the pipeline maps by the card's
roles). ``segment`` (:mod:`breastai.pipeline`) and ``breastai train``
(:mod:`breastai.training.train`) both call :meth:`ModelFamily.prepare`, so training sees exactly
the arrays inference sees for the same study (tests/test_families.py). Nothing here imports
torch.
"""

# SimpleITK's bindings are untyped (no stubs); calling them is fine here.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import SimpleITK as sitk

from breastai.choices import Family, Normalisation, values
from breastai.errors import ParameterError
from breastai.study import Phase, Study

__all__ = [
    "FAMILIES",
    "ModelFamily",
    "ModelInputs",
    "NnunetFamily",
    "SeedFamily",
    "UNetFamily",
    "family_for_card",
    "family_of",
    "study_from_phases",
]

FAMILIES = values(Family)  # breastai.choices


def family_of(architecture: str, task: str) -> Family:
    """The family of a model card's ``architecture`` (see :meth:`breastai.choices.Family.of`)."""
    return Family.of(architecture, task)


@dataclass
class ModelInputs:
    """What a family's ``prepare`` gives: arrays on the model grid, and how they were chosen.

    ``image`` is ``(C, z, y, x)`` float32 (unet: C = 1; seed: one normalised phase per chosen
    phase, before the slots are filled); nnunet: ``images`` holds the channel images instead.
    """

    image: np.ndarray
    grid: sitk.Image | None
    chosen: list[int]
    note: str | None = None
    raw: list[np.ndarray] | None = None  # seed: the chosen phases on the grid, not normalised
    images: list[sitk.Image] | None = None  # nnunet: the channel images (native grids)


class ModelFamily(Protocol):
    """One model family's preprocessing (inference and training use the same one)."""

    @property
    def name(self) -> str:
        """``unet`` | ``seed`` | ``nnunet``."""
        ...

    def prepare(self, study: Study) -> ModelInputs:
        """The model's inputs for one study (or one stack of a split-bilateral study)."""
        ...


def study_from_phases(
    phases: Sequence[sitk.Image], times_s: Sequence[float | None] | None = None, name: str = ""
) -> Study:
    """A :class:`Study` of in-memory phases (time order, P0 first), as training holds them."""
    from pathlib import Path

    times = list(times_s) if times_s is not None else [None] * len(phases)
    return Study(
        phases=[
            Phase(index=i, image=img, time_s=t)
            for i, (img, t) in enumerate(zip(phases, times, strict=True))
        ],
        source=Path(name or "in-memory"),
        kind="nifti",
        name=name,
    )


def _normalise(kind: str, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    from breastai.preprocess import normalise_p1p99_minmax, normalise_seed

    if kind == Normalisation.SEED:
        return normalise_seed(arrays)
    if kind == Normalisation.P1P99_MINMAX:
        return [normalise_p1p99_minmax(a) for a in arrays]
    raise ParameterError(f"unknown normalisation {kind!r} in the model card (seed | p1p99-minmax).")


def _window_predict(
    session: Any,
    image: np.ndarray,
    grid: sitk.Image,
    reference: sitk.Image,
    *,
    card: Any,
    blend: str,
    batch_size: int,
    roi: Any = None,
    time_mask: np.ndarray | None = None,
    progress: Any = None,
) -> sitk.Image:
    """Sliding window over ``image`` on ``grid``; the probability back on ``reference``'s grid
    (linear)."""
    from breastai.inference import sliding_window
    from breastai.preprocess import resample_to_reference

    predictor = session.predictor() if time_mask is None else session.predictor(time_mask=time_mask)
    prob = sliding_window(
        image,
        predictor,
        card.patch_zyx,
        card.stride_zyx,
        blend=blend,
        batch_size=batch_size,
        roi=roi,
        threshold=card.threshold,
        progress=progress,
    )
    img = sitk.GetImageFromArray(prob)
    img.CopyInformation(grid)
    return resample_to_reference(img, reference)


@dataclass(frozen=True)
class UNetFamily:
    """Our demo U-Net breast model on P0 (see the module docstring)."""

    spacing_zyx: tuple[float, float, float]
    normalisation: str = Normalisation.P1P99_MINMAX
    name: str = Family.UNET

    def prepare(self, study: Study) -> ModelInputs:
        from breastai.preprocess import resample_to_reference, resample_to_spacing

        pre = study.phases[0].image
        grid = resample_to_spacing(pre, self.spacing_zyx, interpolator="linear", canonical=True)
        arr = sitk.GetArrayFromImage(grid).astype(np.float32)
        if self.normalisation == Normalisation.SEED:
            post = resample_to_reference(study.reference.image, grid)
            normed = _normalise(Normalisation.SEED, [arr, sitk.GetArrayFromImage(post)])[0]
        else:
            normed = _normalise(self.normalisation, [arr])[0]
        return ModelInputs(image=normed[None].astype(np.float32, copy=False), grid=grid, chosen=[0])

    def predict(
        self, inputs: ModelInputs, session: Any, reference: sitk.Image, **options: Any
    ) -> sitk.Image:
        """Breast probability on ``reference``'s (P1's) native grid (options: ``card``,
        ``blend``, ``batch_size``, ``progress``; see :func:`breastai.inference.sliding_window`)."""
        if inputs.grid is None:
            raise ParameterError("UNetFamily.predict needs inputs from UNetFamily.prepare.")
        return _window_predict(session, inputs.image, inputs.grid, reference, **options)


@dataclass(frozen=True)
class SeedFamily:
    """The seed spatial-temporal tumor network (see the module docstring)."""

    spacing_zyx: tuple[float, float, float]
    slots: int
    phases_max: int | None = None
    normalisation: str = Normalisation.SEED
    name: str = Family.SEED

    def choose(self, study: Study) -> tuple[list[int], str | None]:
        """Which phases fill the slots: by time (P0, P1, then evenly spread)."""
        from breastai.preprocess import choose_phases

        n = self.slots if self.phases_max is None else min(self.slots, self.phases_max)
        return choose_phases([p.time_s for p in study.phases], n)

    def resample(self, study: Study, chosen: Sequence[int]) -> tuple[sitk.Image, list[np.ndarray]]:
        """The chosen phases on one grid: P1 at the card's spacing (linear), raw values."""
        from breastai.preprocess import resample_to_reference, resample_to_spacing

        grid = resample_to_spacing(
            study.reference.image, self.spacing_zyx, interpolator="linear", canonical=True
        )
        arrays = []
        for i in chosen:
            img = study.phases[i].image
            on_grid = (
                grid
                if i == study.reference_index
                else resample_to_reference(img, grid, interpolator="linear")
            )
            arrays.append(sitk.GetArrayFromImage(on_grid).astype(np.float32))
        return grid, arrays

    def normalise(self, raw: Sequence[np.ndarray], clip_bounds: Any = None) -> list[np.ndarray]:
        """Normalise the chosen phases per the card (``clip_bounds``: shared over stacks)."""
        from breastai.preprocess import normalise_seed

        if clip_bounds is not None:
            return normalise_seed(raw, clip_bounds=clip_bounds)
        return _normalise(self.normalisation, raw)

    def prepare(self, study: Study) -> ModelInputs:
        chosen, note = self.choose(study)
        grid, raw = self.resample(study, chosen)
        image = np.stack(self.normalise(raw)).astype(np.float32, copy=False)
        return ModelInputs(image=image, grid=grid, chosen=chosen, note=note, raw=raw)

    def predict(
        self,
        inputs: ModelInputs,
        session: Any,
        reference: sitk.Image,
        *,
        time_mask: np.ndarray,
        **options: Any,
    ) -> sitk.Image:
        """Tumor probability (float32) on ``reference``'s native grid; ``inputs.image`` is the
        slot-assembled ``(slots, 1, z, y, x)`` input (options: ``card``, ``blend``,
        ``batch_size``, ``roi``, ``progress``)."""
        if inputs.grid is None:
            raise ParameterError("SeedFamily.predict needs inputs from SeedFamily.prepare.")
        prob = _window_predict(
            session, inputs.image, inputs.grid, reference, time_mask=time_mask, **options
        )
        out: sitk.Image = sitk.Cast(prob, sitk.sitkFloat32)
        return out


class NnunetFamily:
    """An imported nnU-Net v2 model: its channels from the study; nnU-Net's steps inside."""

    name = Family.NNUNET

    def __init__(self, model: Any) -> None:  # breastai.nnunet.NnunetModel
        self.model = model

    def chosen(self) -> list[int]:
        """The phases the channels read (``subN``: N and 0)."""
        from breastai.nnunet.channels import phase_index

        specs = self.model.card.channels
        out = {phase_index(s) for s in specs}
        if any(s.startswith("sub") for s in specs):
            out.add(0)
        return sorted(out)

    def prepare(self, study: Study) -> ModelInputs:
        from breastai.nnunet import derive_channels

        images = derive_channels(study, self.model.card.channels)
        return ModelInputs(
            image=np.zeros((0,), np.float32), grid=None, chosen=self.chosen(), images=images
        )

    def predict(self, inputs: ModelInputs, *, tta: bool = True, progress: Any = None) -> Any:
        """nnU-Net's prediction (:class:`breastai.nnunet.NnunetPrediction`: labels on the grid
        of channel 0; the pipeline maps them by the card's roles onto P1's grid)."""
        return self.model.predict(inputs.images or [], tta=tta, progress=progress)


def family_for_card(card: Any, nnunet_model: Any = None) -> ModelFamily:
    """The family object for a breastai model card (``nnunet_model`` for an nnU-Net one)."""
    fam = Family.of(str(card.architecture or ""), str(card.task))
    if fam == Family.NNUNET:
        if nnunet_model is None:
            raise ParameterError(f"model {card.name!r} is an nnU-Net model; load it first.")
        return NnunetFamily(nnunet_model)
    if fam == Family.SEED:
        return SeedFamily(
            tuple(card.spacing_zyx),  # type: ignore[arg-type]
            int(card.phase_slots),
            int(card.phases_max) if card.phases_max else None,
            card.normalisation,
        )
    return UNetFamily(tuple(card.spacing_zyx), card.normalisation)  # type: ignore[arg-type]
