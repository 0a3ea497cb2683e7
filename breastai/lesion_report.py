"""The lesion report document: :class:`Lesion`, :class:`LesionReport` (``report.json`` dict and
``report.md`` text) and the AJCC 8th edition size-only T category.

The measurements are made by :func:`breastai.report.measure_lesions` (conventions in the
docstring of :mod:`breastai.report`); everything here is re-exported by :mod:`breastai.report`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from breastai import RESEARCH_NOTICE, __version__
from breastai.errors import ParameterError
from breastai.kinetics import Kinetics, rounded, rounded_list

__all__ = [
    "SCHEMA",
    "Lesion",
    "LesionReport",
    "round_diameter_mm",
    "t_category",
    "weights_entries",
]

SCHEMA = "breastai.report/1"
"""Schema identifier written as ``schema`` in report.json (documented in docs/report-json.md)."""


# ------------------------------------------------------------------------------------------------
# T category
# ------------------------------------------------------------------------------------------------


def round_diameter_mm(longest_diameter_mm: float) -> int:
    """Round a greatest dimension to whole millimetres as AJCC 8th edition asks.

    Parameters
    ----------
    longest_diameter_mm:
        Greatest dimension in mm (finite, >= 0).

    Returns
    -------
    int
        Round half up (20.5 -> 21, never banker's rounding), except that values above 1.0 mm and
        below 2.0 mm become 2 mm (AJCC: "round any measurement >1.0-1.9 mm to 2 mm").

    Raises
    ------
    ParameterError
        When the value is negative or not finite.
    """
    d = float(longest_diameter_mm)
    if not math.isfinite(d) or d < 0:
        raise ParameterError(f"A diameter must be a finite number >= 0 mm; got {d!r}.")
    if 1.0 < d < 2.0:
        return 2
    # the small epsilon keeps 20.5 (stored as 20.4999999...) rounding up like a person would
    return math.floor(d + 0.5 + 1e-9)


def t_category(longest_diameter_mm: float | None, n_lesions: int) -> str:
    """AJCC 8th edition T category from size alone.

    Parameters
    ----------
    longest_diameter_mm:
        Greatest dimension of the largest lesion in mm, or None when there is no lesion.
    n_lesions:
        Number of lesions; more than one appends ``"(m)"``.

    Returns
    -------
    str
        ``"T1mi"``, ``"T1a"``, ``"T1b"``, ``"T1c"``, ``"T2"`` or ``"T3"`` (plus ``"(m)"``), or
        ``"none"`` when there is no lesion. T4 is never returned: it needs chest-wall or skin
        extension, which size cannot show.

    Raises
    ------
    ParameterError
        For a negative count, a bad diameter, or a diameter given with zero lesions (or none
        given with lesions).
    """
    if n_lesions < 0:
        raise ParameterError(f"n_lesions must be >= 0; got {n_lesions}.")
    if longest_diameter_mm is None or n_lesions == 0:
        if longest_diameter_mm is not None or n_lesions != 0:
            raise ParameterError(
                "t_category needs a diameter together with n_lesions >= 1, or None with 0; got "
                f"{longest_diameter_mm!r} and {n_lesions}."
            )
        return "none"
    mm = round_diameter_mm(longest_diameter_mm)
    if mm <= 1:
        cat = "T1mi"
    elif mm <= 5:
        cat = "T1a"
    elif mm <= 10:
        cat = "T1b"
    elif mm <= 20:
        cat = "T1c"
    elif mm <= 50:
        cat = "T2"
    else:
        cat = "T3"
    return cat + ("(m)" if n_lesions > 1 else "")


# ------------------------------------------------------------------------------------------------
# Data types
# ------------------------------------------------------------------------------------------------


@dataclass
class Lesion:
    """Measurements of one lesion (a 26-connected component). Coordinates are LPS mm."""

    index: int
    voxel_count: int
    volume_ml: float
    longest_diameter_mm: float
    endpoints_lps: tuple[tuple[float, float, float], tuple[float, float, float]]
    longest_in_plane_diameter_mm: float
    in_plane_endpoints_lps: tuple[tuple[float, float, float], tuple[float, float, float]]
    in_plane_slice: int
    principal_extents_mm: tuple[float, float, float]
    centroid_lps: tuple[float, float, float]
    laterality: str
    bbox_zyx: tuple[tuple[int, int, int], tuple[int, int, int]]
    touches_image_border: bool
    breast_contact: list[str] | None = None
    kinetics: Kinetics | None = None
    stack: str | None = None

    @property
    def possible_t4(self) -> bool | None:
        """True when the lesion reaches the skin or chest-wall side of the breast mask."""
        return None if self.breast_contact is None else bool(self.breast_contact)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "volume_ml": rounded(self.volume_ml, 4),
            "voxel_count": self.voxel_count,
            "longest_diameter_mm": rounded(self.longest_diameter_mm, 2),
            "longest_diameter_rounded_mm": round_diameter_mm(self.longest_diameter_mm),
            "endpoints_lps": [rounded_list(p, 2) for p in self.endpoints_lps],
            "longest_in_plane_diameter_mm": rounded(self.longest_in_plane_diameter_mm, 2),
            "in_plane_endpoints_lps": [rounded_list(p, 2) for p in self.in_plane_endpoints_lps],
            "in_plane_slice": self.in_plane_slice,
            "principal_extents_mm": rounded_list(self.principal_extents_mm, 2),
            "centroid_lps": rounded_list(self.centroid_lps, 2),
            "laterality": self.laterality,
            "bbox_zyx": [list(self.bbox_zyx[0]), list(self.bbox_zyx[1])],
            "touches_image_border": self.touches_image_border,
            "breast_contact": self.breast_contact,
            "possible_t4": self.possible_t4,
            "kinetics": None if self.kinetics is None else self.kinetics.to_dict(),
            "stack": self.stack,
        }


@dataclass
class LesionReport:
    """All lesions of one mask, the T category and how they were measured."""

    lesions: list[Lesion]
    t_category: str
    min_volume_mm3: float
    spacing_mm: tuple[float, float, float]
    size_xyz: tuple[int, int, int]
    midline_x_mm: float | None
    midline_rule: str
    dropped_components: int = 0
    label: int | None = None
    source: str | None = None
    warnings: list[str] = field(default_factory=list)
    stacks: dict[str, dict[str, Any]] | None = None
    #: ``midline`` (LPS heuristic), ``breast model labels`` (a left/right breast model) or
    #: ``split-bilateral stack``.
    laterality_source: str = "midline"

    @property
    def lesion_count(self) -> int:
        return len(self.lesions)

    @property
    def largest(self) -> Lesion:
        """The lesion with the longest 3-D diameter (it sets the T category)."""
        if not self.lesions:
            raise ParameterError("The report has no lesion.")
        return max(self.lesions, key=lambda les: (les.longest_diameter_mm, -les.index))

    @property
    def summary(self) -> str:
        """One sentence for the reader of the report."""
        if not self.lesions:
            return "No lesion found in the mask (T category: none)."
        big = self.largest
        return (
            f"{self.lesion_count} lesion(s); longest diameter {big.longest_diameter_mm:.1f} mm "
            f"({round_diameter_mm(big.longest_diameter_mm)} mm rounded, lesion {big.index}, "
            f"{big.laterality} breast); "
            f"T category by size: {self.t_category}."
        )

    def to_dict(
        self, weights: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The report as a JSON-able dict (schema ``breastai.report/1``, docs/report-json.md)."""
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "breastai_version": __version__,
            "notice": RESEARCH_NOTICE,
            "t_category": self.t_category,
            "t_basis": "AJCC 8th edition, size only (greatest dimension of the largest lesion)",
            "largest_lesion_index": self.largest.index if self.lesions else None,
            "lesion_count": self.lesion_count,
            "summary": self.summary,
            "largest_diameter_mm": (
                rounded(self.largest.longest_diameter_mm, 2) if self.lesions else None
            ),
            "possible_t4_review": any(les.possible_t4 for les in self.lesions),
            "lesions": [les.to_dict() for les in self.lesions],
            "measurement": {
                "points": "centres of exposed voxel faces (marching-cubes vertices at level 0.5)",
                "connectivity": 26,
                "min_volume_mm3": self.min_volume_mm3,
                "dropped_components": self.dropped_components,
                "label": self.label,
                "spacing_mm": rounded_list(self.spacing_mm, 4),
                "size_xyz": list(self.size_xyz),
                "midline_x_mm": rounded(self.midline_x_mm, 2),
                "laterality_rule": self.midline_rule,
                "laterality_source": self.laterality_source,
                "stacks": self.stacks,
            },
            "source": self.source,
            "warnings": list(self.warnings),
        }
        if weights:
            out["weights"] = weights_entries(weights)
        if extra:
            clash = sorted(set(extra) & set(out))
            if clash:
                raise ParameterError(f"extra keys {clash} would replace report keys; rename them.")
            out.update(dict(extra))
        return out

    def to_markdown(self, weights: Mapping[str, Any] | None = None) -> str:
        """A short report a radiologist can read (Markdown)."""
        lines = [
            "# breastai lesion report",
            "",
            f"**{RESEARCH_NOTICE}** Measurements from an automatic segmentation; "
            "verify them on the images.",
            "",
            f"**T category (size only, AJCC 8th): {self.t_category}** — {self.summary}",
            "",
        ]
        if self.lesions:
            lines += [
                "| # | Side | Longest 3-D (mm) | Rounded (mm) | Longest in-plane (mm) [slice] "
                "| Extents (mm) | Volume (mL) | Curve | Initial (%) | FTV (mL) | Flags |",
                "|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            for les in self.lesions:
                k = les.kinetics
                flags = []
                if les.touches_image_border:
                    flags.append("touches image border (incomplete)")
                if les.breast_contact:
                    flags.append(
                        "reaches " + " and ".join(les.breast_contact) + ": possible T4, review"
                    )
                ext = " × ".join(f"{e:.1f}" for e in les.principal_extents_mm)
                init = (
                    ""
                    if k is None or k.initial_enhancement_pct is None
                    else f"{k.initial_enhancement_pct:.0f}"
                )
                side = les.laterality + (f" ({les.stack} stack)" if les.stack else "")
                lines.append(
                    f"| {les.index} | {side} | {les.longest_diameter_mm:.1f} "
                    f"| {round_diameter_mm(les.longest_diameter_mm)} "
                    f"| {les.longest_in_plane_diameter_mm:.1f} [{les.in_plane_slice}] | {ext} "
                    f"| {les.volume_ml:.2f} | {'' if k is None else k.curve_type} | {init} "
                    f"| {'' if k is None else f'{k.functional_tumor_volume_ml:.2f}'} "
                    f"| {'; '.join(flags)} |"
                )
            lines.append("")
        else:
            lines += ["No lesion was found in the mask.", ""]
        lines += [
            f"Lesions: 26-connected components ≥ {self.min_volume_mm3:g} mm³ "
            f"({self.dropped_components} smaller component(s) ignored). Diameters between exposed "
            "voxel-face centres; in-plane on the acquisition plane. Laterality: "
            f"{self.midline_rule}.",
            "",
        ]
        if self.stacks:
            lines += [
                "Split-bilateral study: each stack ("
                + ", ".join(self.stacks)
                + ") was segmented and measured on its own grid; slice numbers refer to the "
                "lesion's stack.",
                "",
            ]
        if weights:
            lines += ["## Weights", "", "| Model | sha256 | Demo |", "|---|---|---|"]
            for w in weights_entries(weights):
                demo = (
                    "yes (synthetic phantom training, not for clinical use)"
                    if w.get("demo")
                    else "no"
                )
                lines.append(f"| {w.get('name', '')} | `{w.get('sha256', '')}` | {demo} |")
            lines.append("")
        if self.warnings:
            lines += ["## Warnings", ""] + [f"- {w}" for w in self.warnings] + [""]
        lines.append(f"_breastai {__version__}. {RESEARCH_NOTICE}_")
        return "\n".join(lines) + "\n"


def weights_entries(weights: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Accept one ``{name, sha256, demo}`` dict or a mapping of role -> such dicts."""
    if "sha256" in weights or "name" in weights:
        return [dict(weights)]
    out = []
    for role, entry in weights.items():
        item = dict(entry) if isinstance(entry, Mapping) else {"name": str(entry)}
        item.setdefault("task", role)
        out.append(item)
    return out
