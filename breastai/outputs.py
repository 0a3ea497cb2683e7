"""Outputs of one segmented study: built in memory, then (optionally) written to ``OUT/<study>/``.

:func:`build_outputs` turns the models' masks into a :class:`StudyOutputs` (masks as SimpleITK
images on the study's grid, the lesion measurements, the ``report.json`` dict, the manifest)
without touching the disk; :func:`write_outputs` writes it atomically (a temporary folder beside
``OUT/<study>/``, renamed into place) and returns the :class:`SegmentResult` summary.
``pipeline.segment_study(..., out_dir=None)`` returns the former; with an ``out_dir`` it calls both.

Output files and manifest keys are documented in docs/outputs.md.
"""

# SimpleITK's bindings are untyped (no stubs); calling them is fine here.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import contextlib
import json
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from breastai import RESEARCH_NOTICE, __version__
from breastai.io.atomic import atomic_dir
from breastai.models import LoadedModels
from breastai.prepare import PreparedStudy
from breastai.report import LesionReport
from breastai.settings import Progress, Settings
from breastai.study import Study

__all__ = [
    "MANIFEST_SCHEMA",
    "OutputPart",
    "PartMasks",
    "SegmentResult",
    "StudyOutputs",
    "build_outputs",
    "write_outputs",
]

MANIFEST_SCHEMA = "breastai.manifest/1"


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


@dataclass
class PartMasks:
    """The models' result for one part (the study, or one stack of a split-bilateral study)."""

    breast: sitk.Image
    tumor: sitk.Image
    tumor_probability: sitk.Image
    removed: int
    windows: dict[str, Any]
    notes: list[str]
    side_labels: sitk.Image | None = None  # 1 right / 2 left, from a left/right breast model
    non_enhancing: list[float] = field(default_factory=list)  # peak enhancement % of removed ones


@dataclass
class OutputPart:
    """One part's masks on its reference phase's grid, and the suffix of its file names."""

    study: Study
    suffix: str  # "" or "_R" / "_L"
    breast: sitk.Image
    tumor: sitk.Image
    tumor_probability: sitk.Image


@dataclass
class StudyOutputs:
    """Everything a segmentation produces for one study, in memory (nothing written).

    Attributes
    ----------
    name:
        The output folder name (``OUT/<name>/`` when written).
    study:
        The study as read.
    parts:
        One per segmented volume (two for a split-bilateral study).
    measurements:
        The lesion measurements (``report.md`` is rendered from them).
    report:
        The ``report.json`` document.
    manifest:
        The ``manifest.json`` document (``outputs`` lists the files :func:`write_outputs`
        writes; ``timings_s.write`` so far covers building the report and manifest).
    summary:
        ``lesion_count``, ``t_category``, ``longest_diameter_mm``, ``tumor_volume_ml``,
        ``breast_volume_ml``.
    weights:
        Per task: the weights' ``name``, ``sha256``, ``demo``, ``family``.
    settings:
        The run's settings (they say which optional files are written).
    notices:
        Runtime notices and the pipeline's notes.
    timings_s:
        Seconds per stage (unrounded).
    """

    name: str
    study: Study
    parts: list[OutputPart]
    measurements: LesionReport
    report: dict[str, Any]
    manifest: dict[str, Any]
    summary: dict[str, Any]
    weights: dict[str, dict[str, Any]]
    settings: Settings
    notices: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def masks(self) -> dict[str, sitk.Image]:
        """The NIfTI outputs by file stem (``breast``, ``tumor``, ``tumor_probability`` when
        ``save_probabilities``; with ``_R`` / ``_L`` for split-bilateral stacks), each on its
        part's reference-phase grid."""
        out: dict[str, sitk.Image] = {}
        for p in self.parts:
            out[f"breast{p.suffix}"] = p.breast
            out[f"tumor{p.suffix}"] = p.tumor
            if self.settings.save_probabilities:
                out[f"tumor_probability{p.suffix}"] = p.tumor_probability
        return out

    @property
    def writes_seg(self) -> bool:
        """Whether ``seg*.dcm`` is written (DICOM input with source files, ``write_seg``)."""
        return bool(
            self.settings.write_seg
            and self.study.kind == "dicom"
            and self.study.reference.source_files
        )

    @property
    def files(self) -> list[str]:
        """The file names :func:`write_outputs` writes, in the order it writes them."""
        names = [f"{stem}.nii.gz" for stem in self.masks]
        if self.writes_seg:
            names += [f"seg{p.suffix}.dcm" for p in self.parts]
        names += ["report.json", "report.md"]
        if self.settings.write_preview:
            names += [f"preview{p.suffix}.png" for p in self.parts]
        return [*names, "manifest.json"]


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


def _volume_ml(mask: sitk.Image) -> float:
    return float(sitk.GetArrayViewFromImage(mask).sum()) * float(
        np.prod(mask.GetSpacing()) / 1000.0
    )


def build_outputs(
    prep: PreparedStudy,
    comps: Sequence[PartMasks],
    settings: Settings,
    models: LoadedModels,
    started: float,
    manifest_extra: Mapping[str, Any] | None = None,
) -> StudyOutputs:
    """Measure the lesions and build the report and manifest of one study, in memory.

    Parameters
    ----------
    prep:
        The prepared study (its ``timings`` get ``write`` and ``total``).
    comps:
        The models' masks, one per part of ``prep``.
    settings, models, started, manifest_extra:
        As for :func:`breastai.pipeline.run_models` (recorded in the manifest).

    Returns
    -------
    StudyOutputs
        Nothing is written.
    """
    from breastai.report import measure_lesions, merge_reports

    study = prep.study
    parts = prep.parts
    t0 = time.perf_counter()
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
    extra = {"study": prep.name, "run": {"device": models.device, "provider": models.provider}}
    rdict = report.to_dict(weights=weights, extra=extra)
    summary: dict[str, Any] = {
        "lesion_count": rdict.get("lesion_count"),
        "t_category": rdict.get("t_category"),
        "tumor_volume_ml": sum(_volume_ml(c.tumor) for c in comps),
        "breast_volume_ml": sum(_volume_ml(c.breast) for c in comps),
    }
    lesions = rdict.get("lesions") or []
    diam = [float(x["longest_diameter_mm"]) for x in lesions if x.get("longest_diameter_mm")]
    summary["longest_diameter_mm"] = max(diam) if diam else None
    prep.timings["write"] = time.perf_counter() - t0
    prep.timings["total"] = time.perf_counter() - started
    out = StudyOutputs(
        name=prep.name,
        study=study,
        parts=[
            OutputPart(part.study, part.suffix, c.breast, c.tumor, c.tumor_probability)
            for part, c in zip(parts, comps, strict=True)
        ],
        measurements=report,
        report=rdict,
        manifest={},
        summary=summary,
        weights=weights,
        settings=settings,
        notices=models.notices() + [note for c in comps for note in c.notes],
        timings_s=prep.timings,
    )
    out.manifest = {
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
            "min_enhancement_pct": settings.min_enhancement_pct,
            "non_enhancing_components_removed": sum(len(c.non_enhancing) for c in comps),
        },
        "windows": (
            comps[0].windows
            if len(parts) == 1
            else {part.suffix.lstrip("_"): c.windows for part, c in zip(parts, comps, strict=True)}
        ),
        "notes": [n for c in comps for n in c.notes],
        "settings": settings.to_dict(),
        "summary": summary,
        "timings_s": _rounded(prep.timings),
        "outputs": out.files,
    }
    out.manifest.update(manifest_extra or {})
    return out


def _rounded(timings: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in timings.items()}


def write_outputs(
    result: StudyOutputs,
    out_dir: Path | str,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> SegmentResult:
    """Write a study's outputs into ``out_dir/<result.name>/``, atomically.

    The files are those of ``result.files``: the NIfTI masks, ``seg*.dcm`` (DICOM input),
    ``report.json`` / ``report.md``, ``preview*.png`` and ``manifest.json``; they are written
    into a temporary folder beside the target and renamed into place, so a failure leaves no
    half-written folder.

    Parameters
    ----------
    result:
        From ``segment_study(..., out_dir=None)`` (or :func:`build_outputs`). It is not changed.
    out_dir:
        Parent folder of the study's folder.
    force:
        Replace an existing non-empty ``out_dir/<result.name>/``.
    progress:
        Called with ``("write", fraction)``.

    Returns
    -------
    SegmentResult
        ``ok=True`` with the written files and summary numbers; ``timings_s.write`` and
        ``total`` include the writing.

    Raises
    ------
    OutputExistsError
        The study's folder exists, is not empty and ``force`` is False.
    OutputError
        The folder cannot be written (nothing is left half-written).
    """
    from breastai.report import write_report

    t0 = time.perf_counter()
    final = Path(out_dir) / result.name
    files: list[str] = []
    with atomic_dir(final, force=force) as tmp:
        for stem, img in result.masks.items():
            sitk.WriteImage(img, str(tmp / f"{stem}.nii.gz"), useCompression=True)
            files.append(f"{stem}.nii.gz")
        if progress:
            progress("write", 0.2)
        if result.writes_seg:
            from breastai.io.seg import write_seg

            for k, part in enumerate(result.parts):
                fname = f"seg{part.suffix}.dcm"
                write_seg(
                    tmp / fname,
                    part.study,
                    breast=part.breast,
                    tumor=part.tumor,
                    weights=result.weights,
                    series_number=9901 + k,
                )
                files.append(fname)
        if progress:
            progress("write", 0.5)
        extra = {k: result.report[k] for k in ("study", "run")}
        for p in write_report(result.measurements, tmp, weights=result.weights, extra=extra):
            files.append(Path(p).name)
        if progress:
            progress("write", 0.7)
        if result.settings.write_preview:
            from breastai.preview import write_preview

            demo = " (DEMO)" if result.manifest["demo_weights"] else ""
            for part in result.parts:
                caption = f"{result.name}{part.suffix}  tumor: {result.weights['tumor']['name']}"
                write_preview(
                    tmp / f"preview{part.suffix}.png",
                    pre=part.study.phases[0].image,
                    post=part.study.reference.image,
                    tumor=part.tumor,
                    breast=part.breast,
                    caption=caption + demo,
                )
                files.append(f"preview{part.suffix}.png")
        files.append("manifest.json")
        timings = dict(result.timings_s)
        spent = time.perf_counter() - t0
        timings["write"] = timings.get("write", 0.0) + spent
        timings["total"] = timings.get("total", 0.0) + spent
        manifest = {**result.manifest, "timings_s": _rounded(timings), "outputs": files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        if progress:
            progress("write", 1.0)
    s = result.summary
    dev = result.manifest["device"]
    return SegmentResult(
        name=result.name,
        source=str(result.study.source),
        ok=True,
        out_dir=final,
        files=files,
        lesion_count=s["lesion_count"],
        t_category=s["t_category"],
        longest_diameter_mm=s["longest_diameter_mm"],
        tumor_volume_ml=round(s["tumor_volume_ml"], 4),
        breast_volume_ml=round(s["breast_volume_ml"], 4),
        device=dev["used"],
        provider=dev["provider"],
        precision=dev["precision"],
        demo_weights=result.manifest["demo_weights"],
        notices=list(result.notices),
        timings_s=_rounded(timings),
    )
