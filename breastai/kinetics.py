"""Enhancement kinetics of lesions in a DCE study (part of the lesion report).

Conventions: the mean signal of each lesion per phase; the initial enhancement
``(S1 - S0) / S0`` at the first post-contrast phase; the early peak is the highest mean signal
among the post-contrast phases acquired within :data:`EARLY_WINDOW_S` of the first post-contrast
phase (the first post-contrast phase alone when times are unknown); the initial phase is slow
(< 50 %), medium (50-100 %) or fast (> 100 %) by the early peak's enhancement; the delayed change
``(S_last - S_peak) / S_peak`` is persistent (> +10 %), plateau (within +-10 %) or washout
(< -10 %) (BI-RADS); ``"n/a"`` when the last phase is in the early window. The functional tumor
volume counts lesion voxels whose own enhancement at the first post-contrast phase is at least
:data:`FTV_THRESHOLD` (I-SPY). :func:`breastai.report.measure_lesions` calls
:func:`add_kinetics` when it is given a study.
"""

# SimpleITK's methods carry no type annotations.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from breastai.geometry import align_to_grid, resample_to_reference, same_grid
from breastai.study import Study

if TYPE_CHECKING:
    from breastai.report import Lesion

__all__ = [
    "CURVE_TOLERANCE_PCT",
    "EARLY_WINDOW_S",
    "FTV_THRESHOLD",
    "Kinetics",
    "add_kinetics",
    "early_window",
    "label_voxel_signals",
    "rounded",
    "rounded_list",
]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

EARLY_WINDOW_S = 90.0
"""The initial (early) window ends this many seconds after the first post-contrast phase: about
2.5 min after injection for a first post-contrast phase at about 1 min (BI-RADS: peak within the
first 2 min after bolus arrival)."""
FTV_THRESHOLD = 0.70
CURVE_TOLERANCE_PCT = 10.0


def rounded(value: float | None, nd: int = 3) -> float | None:
    """``value`` rounded to ``nd`` decimals (None stays None), for the JSON report."""
    return None if value is None else round(float(value), nd)


def rounded_list(values: Sequence[float] | FloatArray, nd: int = 3) -> list[float]:
    """Each value rounded to ``nd`` decimals, as a list of floats."""
    return [round(float(v), nd) for v in values]


@dataclass
class Kinetics:
    """Enhancement kinetics of one lesion (see the module docstring for the conventions)."""

    times_s: list[float | None]
    mean_signal: list[float]
    initial_enhancement_pct: float | None
    initial_phase: str | None
    early_peak_phase: int
    early_peak_enhancement_pct: float | None
    delayed_change_pct: float | None
    curve_type: str
    functional_tumor_volume_ml: float
    voxels_on_study_grid: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "times_s": [rounded(t, 2) for t in self.times_s],
            "mean_signal": rounded_list(self.mean_signal, 3),
            "initial_enhancement_pct": rounded(self.initial_enhancement_pct, 1),
            "initial_phase": self.initial_phase,
            "early_peak_phase": self.early_peak_phase,
            "early_peak_enhancement_pct": rounded(self.early_peak_enhancement_pct, 1),
            "delayed_change_pct": rounded(self.delayed_change_pct, 1),
            "curve_type": self.curve_type,
            "functional_tumor_volume_ml": rounded(self.functional_tumor_volume_ml, 4),
            "voxels_on_study_grid": self.voxels_on_study_grid,
        }


def add_kinetics(
    lesions: Sequence[Lesion],
    labels: NDArray[np.int32],
    mask: sitk.Image,
    study: Study,
    warnings: list[str],
) -> None:
    """Set ``kinetics`` of each lesion from the study's phases (conventions: module docstring).

    ``labels`` numbers the lesions (0 = background) on ``mask``'s grid; they are placed on the
    reference phase's grid when it differs. Problems become ``warnings`` (no exception).
    """
    if len(study.phases) < 2:
        msg = "The study has a single phase; kinetics need a pre- and a post-contrast phase."
        warnings.append(msg)
        log.warning(msg)
        return
    ref = study.reference.image
    lab_img = sitk.GetImageFromArray(labels)
    lab_img.CopyInformation(mask)
    lab_img = align_to_grid(
        lab_img, ref, what="tumor mask", onto="study's reference phase", warnings=warnings
    )

    def resampled(k: int) -> None:
        msg = f"Phase {study.phases[k].index} was resampled onto the reference phase grid (linear)."
        warnings.append(msg)
        log.warning(msg)

    lab, signals = label_voxel_signals(
        sitk.GetArrayViewFromImage(lab_img),
        ref,
        [phase.image for phase in study.phases],
        on_resample=resampled,
    )
    n = len(lesions)
    counts = np.bincount(lab, minlength=n + 1)[: n + 1]
    sums = np.stack([np.bincount(lab, weights=s, minlength=n + 1)[: n + 1] for s in signals])
    s0, s1 = signals[0], signals[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        pe = np.where(s0 > 0, (s1 - s0) / np.where(s0 > 0, s0, 1.0), -np.inf)
    ftv_counts = np.bincount(lab[pe >= FTV_THRESHOLD], minlength=n + 1)[: n + 1]
    ref_voxel_ml = float(np.prod(ref.GetSpacing())) / 1000.0
    times = [p.time_s for p in study.phases]
    early = early_window(times)
    for les in lesions:
        c = int(counts[les.index])
        if c == 0:
            msg = f"Lesion {les.index} has no voxel on the study grid; no kinetics."
            warnings.append(msg)
            log.warning(msg)
            continue
        mean = sums[:, les.index] / c
        les.kinetics = _curve(mean, times, early, float(ftv_counts[les.index]) * ref_voxel_ml, c)


def label_voxel_signals(
    labels: NDArray[np.integer[Any]],
    grid: sitk.Image,
    phases: Sequence[sitk.Image],
    *,
    on_resample: Callable[[int], None] | None = None,
) -> tuple[NDArray[np.intp], list[FloatArray]]:
    """The label of every labelled voxel and each phase's signal there.

    Parameters
    ----------
    labels:
        Label array (0 = background) on ``grid``.
    grid:
        The image whose grid ``labels`` lies on.
    phases:
        Phase images; one on another grid is resampled onto ``grid`` (linear, 0 outside) and
        ``on_resample(k)`` is called with its position ``k``.

    Returns
    -------
    (ndarray, list of ndarray)
        The labels of the labelled voxels (in array order), and per phase the signals of the same
        voxels as float64. Only those voxels of each phase are read.
    """
    flat = np.asarray(labels).ravel()
    sel = np.flatnonzero(flat)
    signals = []
    for k, img in enumerate(phases):
        if not same_grid(img, grid):
            img = resample_to_reference(img, grid, interpolator="linear", extrapolate=False)
            if on_resample is not None:
                on_resample(k)
        signals.append(sitk.GetArrayViewFromImage(img).ravel()[sel].astype(np.float64))
    return flat[sel].astype(np.intp), signals


def early_window(times: Sequence[float | None]) -> list[int]:
    """Post-contrast phase indices in the early (initial) window."""
    if len(times) < 2:
        return []
    t1 = times[1]
    if t1 is None or any(t is None for t in times[1:]):
        return [1]
    return [k for k in range(1, len(times)) if (times[k] or 0.0) - t1 <= EARLY_WINDOW_S]


def _curve(
    mean: FloatArray, times: Sequence[float | None], early: list[int], ftv_ml: float, count: int
) -> Kinetics:
    s0, s1 = float(mean[0]), float(mean[1])
    initial = 100.0 * (s1 - s0) / s0 if s0 > 0 else None
    peak = max(early, key=lambda k: mean[k])
    peak_pct = 100.0 * (float(mean[peak]) - s0) / s0 if s0 > 0 else None
    phase = None
    if peak_pct is not None:
        phase = "slow" if peak_pct < 50 else ("fast" if peak_pct > 100 else "medium")
    last = len(mean) - 1
    change: float | None = None
    curve = "n/a"
    if last not in early and mean[peak] > 0:
        change = 100.0 * (float(mean[last]) - float(mean[peak])) / float(mean[peak])
        if change > CURVE_TOLERANCE_PCT:
            curve = "persistent"
        elif change < -CURVE_TOLERANCE_PCT:
            curve = "washout"
        else:
            curve = "plateau"
    return Kinetics(
        times_s=list(times),
        mean_signal=[float(v) for v in mean],
        initial_enhancement_pct=initial,
        initial_phase=phase,
        early_peak_phase=int(peak),
        early_peak_enhancement_pct=peak_pct,
        delayed_change_pct=change,
        curve_type=curve,
        functional_tumor_volume_ml=ftv_ml,
        voxels_on_study_grid=count,
    )
