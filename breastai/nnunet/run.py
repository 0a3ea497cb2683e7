"""``breastai predict``: run one imported nnU-Net model on studies and write its raw outputs.

For each study: load it (anything ``segment`` reads), derive the model's channel images
(:func:`breastai.nnunet.derive_channels`), predict, and write ``OUT/<study>/NAME.nii.gz`` (label
values as in dataset.json, on the grid of the image that feeds channel 0) and, when asked,
``OUT/<study>/NAME_probabilities.npz`` with ``probabilities`` float32 ``(classes, z, y, x)``. Files
are written atomically; an existing output file is replaced only with ``force``.
"""

# SimpleITK has no type hints.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from breastai.errors import BreastAIError, OutputExistsError
from breastai.io.atomic import atomic_file
from breastai.nnunet.channels import derive_channels
from breastai.nnunet.model import NnunetModel

__all__ = ["PredictResult", "output_paths", "predict_studies"]


@dataclass
class PredictResult:
    """Outcome for one study."""

    name: str
    source: Path
    ok: bool
    outputs: list[Path] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0
    label_counts: dict[int, int] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": str(self.source),
            "ok": self.ok,
            "outputs": [str(p) for p in self.outputs],
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "label_counts": {str(k): v for k, v in self.label_counts.items()},
            "notices": list(self.notices),
        }


def output_paths(out_dir: Path, study_name: str, model_name: str) -> tuple[Path, Path]:
    """``(labels .nii.gz, probabilities .npz)`` for a study."""
    folder = Path(out_dir) / study_name
    return folder / f"{model_name}.nii.gz", folder / f"{model_name}_probabilities.npz"


def _study_name(path: Path, name: str) -> str:
    if name:
        return name
    n = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if n.lower().endswith(suffix):
            return n[: -len(suffix)]
    return n


def predict_studies(
    model: NnunetModel,
    studies: Sequence[Path],
    out_dir: Path,
    *,
    tta: bool = True,
    save_probabilities: bool = False,
    force: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
    on_result: Callable[[int, PredictResult], None] | None = None,
) -> list[PredictResult]:
    """Run ``model`` on every study; one failing study does not stop the others.

    Parameters
    ----------
    model:
        A loaded model (:meth:`NnunetModel.load`).
    studies:
        Study folders (DICOM, per-phase NIfTI) or 4-D NIfTI files.
    out_dir:
        Output folder; one subfolder per study.
    tta:
        Mirroring test-time augmentation (nnU-Net's default).
    save_probabilities:
        Also write ``NAME_probabilities.npz``.
    force:
        Replace existing output files.
    progress:
        ``progress(study index, windows done, windows total)``.
    on_result:
        Called with each study's result as soon as it is done.

    Returns
    -------
    list of PredictResult
        In input order.
    """
    from breastai.io import load_study

    name = model.card.name
    results = []
    for i, path in enumerate(studies):
        path = Path(path)
        t0 = time.perf_counter()
        res = PredictResult(name=_study_name(path, ""), source=path, ok=False)
        try:
            study = load_study(path)
            res.name = _study_name(path, study.name)
            seg_path, prob_path = output_paths(out_dir, res.name, name)
            for p in (seg_path, prob_path) if save_probabilities else (seg_path,):
                if p.exists() and not force:
                    raise OutputExistsError(
                        f"{str(p)!r} already exists; pass --force to replace it."
                    )
            images = derive_channels(study, model.card.channels)

            def tick(done: int, total: int, i: int = i) -> None:
                if progress is not None:
                    progress(i, done, total)

            pred = model.predict(
                images, tta=tta, save_probabilities=save_probabilities, progress=tick
            )
            with atomic_file(seg_path, force=force, suffix=".nii.gz") as tmp:
                sitk.WriteImage(pred.labels, str(tmp), useCompression=True)
            res.outputs.append(seg_path)
            if save_probabilities and pred.probabilities is not None:
                with (
                    atomic_file(prob_path, force=force, suffix=".npz") as tmp,
                    open(tmp, "wb") as fh,
                ):
                    np.savez_compressed(fh, probabilities=pred.probabilities)
                res.outputs.append(prob_path)
            arr = sitk.GetArrayViewFromImage(pred.labels)
            values, counts = np.unique(arr, return_counts=True)
            res.label_counts = {int(v): int(c) for v, c in zip(values, counts, strict=True)}
            res.notices = list(pred.notices)
            res.ok = True
        except BreastAIError as exc:
            res.error = str(exc)
        res.seconds = time.perf_counter() - t0
        results.append(res)
        if on_result is not None:
            on_result(i, res)
    return results
