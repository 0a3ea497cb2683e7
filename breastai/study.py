"""Core data types shared by the reader, the pipeline and the writers.

Axis contract (the one place it is written down; other docstrings cite it):

* Every volume that crosses a module boundary is a ``SimpleITK.Image`` whose origin, spacing and
  direction are in DICOM patient coordinates (LPS, millimetres). Orientation is never rebuilt from
  array shapes.
* ``sitk.GetArrayFromImage`` gives numpy arrays in ``(z, y, x)`` = ``(slice, row, column)`` order;
  every numpy array in breastai uses that order. ``image.GetSize()`` and ``GetSpacing()`` are
  ``(x, y, z)``.
* Model inputs are float32 ``(B, C, D, H, W)`` = ``(batch, channel, z, y, x)``; the tumor model
  takes ``phases`` ``(B, S, 1, D, H, W)`` (S phase slots; slot 0 = pre-contrast, slot 1 = first
  post-contrast) and ``time_mask`` ``(B, S)``.
* Phase 0 is the pre-contrast phase; phase 1, the first post-contrast phase, is the reference phase
  whose grid the output masks share (the paper's "phase 2").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from breastai.errors import InconsistentGeometryError

__all__ = ["DecisionLog", "Phase", "Study"]


@dataclass(frozen=True)
class Phase:
    """One temporal phase of a DCE acquisition: one 3-D volume plus where and when it came from.

    Attributes
    ----------
    index:
        Position in acquisition order, 0 = pre-contrast.
    image:
        The volume (float32, LPS geometry, rescale already applied).
    time_s:
        Start of the phase in seconds relative to the first phase (None when no clock is usable).
    series_uid:
        SeriesInstanceUID the phase came from (None for NIfTI input).
    instance_uids:
        SOPInstanceUIDs of the source slices, sorted along the slice normal (empty for NIfTI).
    source_files:
        Source files, in the same order as ``instance_uids`` (the NIfTI file for NIfTI input).
    stack_phases:
        For split-bilateral acquisitions whose two stacks could not be joined into one grid: this
        phase once per stack, right stack first, each a ``Phase`` with its own image, series,
        instances and files (``image``, ``series_uid``, ``instance_uids``, ``source_files`` and
        ``frame_numbers`` of this phase are then the right stack's). Empty otherwise.
    frame_numbers:
        For enhanced multi-frame sources: the 1-based frame numbers of this phase's slices, in
        the same order as ``instance_uids``. Empty for classic (single-frame) sources.
    label:
        ``""``, ``"bilateral (joined)"``, ``"split bilateral: R + L"``, or for one stack of
        ``stack_phases``: ``"split bilateral: R stack"`` / ``"split bilateral: L stack"``.
    timing:
        Optional timing details from the reader (docs/info-json.md): ``duration_s``,
        ``duration_source``, ``mid_time_s``, ``time_since_injection_s``,
        ``mid_time_since_injection_s``, ``time_since_first_post_s``, ``injection_reference``.
        Empty when unknown.
    """

    index: int
    image: sitk.Image
    time_s: float | None = None
    series_uid: str | None = None
    instance_uids: tuple[str, ...] = ()
    source_files: tuple[Path, ...] = ()
    stack_phases: tuple[Phase, ...] = ()
    frame_numbers: tuple[int, ...] = ()
    label: str = ""
    timing: dict[str, Any] = field(default_factory=dict)

    @property
    def stacks(self) -> tuple[sitk.Image, ...]:
        """The volumes of ``stack_phases`` (right stack first); empty for one-volume phases."""
        return tuple(p.image for p in self.stack_phases)


@dataclass
class DecisionLog:
    """What the reader decided and why: shown by ``breastai info`` and saved in manifests."""

    candidates: list[dict[str, Any]] = field(default_factory=list)
    grouping_key: str | None = None
    clock: str | None = None
    time_reference: str | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "grouping_key": self.grouping_key,
            "clock": self.clock,
            "time_reference": self.time_reference,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


@dataclass
class Study:
    """A DCE study: ordered phases (0 = pre-contrast) plus the reader's decision log.

    Attributes
    ----------
    phases:
        The phases in acquisition order.
    source:
        The folder or file the study was read from.
    kind:
        ``"dicom"`` or ``"nifti"``.
    study_uid:
        StudyInstanceUID (None for NIfTI input).
    name:
        A short name for output folders (the folder name by default).
    decisions:
        The reader's decision log.
    series:
        For DICOM input: one dict per series in the folder with its role (``breastai info``).
    """

    phases: list[Phase]
    source: Path
    kind: str = "dicom"
    study_uid: str | None = None
    name: str = ""
    decisions: DecisionLog = field(default_factory=DecisionLog)
    series: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reference_index(self) -> int:
        """Index of the reference phase (first post-contrast) whose grid the masks share."""
        return 1 if len(self.phases) > 1 else 0

    @property
    def reference(self) -> Phase:
        return self.phases[self.reference_index]

    @property
    def stack_sides(self) -> tuple[str, ...]:
        """``("R", "L")`` for a split-bilateral study kept as two stacks; ``()`` otherwise."""
        n = len(self.reference.stack_phases)
        return ("R", "L") if n == 2 else ()

    def split_stacks(self) -> list[Study]:
        """One study per split-bilateral stack (right first), or ``[self]`` for one volume.

        Each returned study has the stack's phases (same indices and times) and is named
        ``<name>_R`` / ``<name>_L``; everything else (source, UIDs, decisions) is shared.
        """
        sides = self.stack_sides
        if not sides:
            return [self]
        out = []
        for k, side in enumerate(sides):
            phases = []
            for p in self.phases:
                if len(p.stack_phases) != len(sides):
                    raise InconsistentGeometryError(
                        f"phase {p.index} has {len(p.stack_phases)} stack(s) where the reference "
                        f"phase has {len(sides)}; choose one side's series with --dce-series."
                    )
                phases.append(p.stack_phases[k])
            out.append(
                Study(
                    phases=phases,
                    source=self.source,
                    kind=self.kind,
                    study_uid=self.study_uid,
                    name=f"{self.name}_{side}" if self.name else side,
                    decisions=self.decisions,
                    series=self.series,
                )
            )
        return out
