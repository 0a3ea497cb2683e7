"""The channel images an nnU-Net model takes, derived from a study's phases.

Specs (see :data:`breastai.nnunet.card.CHANNEL_RE`): ``pre`` (phase 0), ``postN`` (the N-th
post-contrast phase, i.e. phase N), ``subN`` (postN - pre, voxel by voxel) and ``phaseK`` (phase K,
0-based). Every result is a float32 ``SimpleITK.Image`` on its phase's grid (``subN`` on postN's).
"""

# SimpleITK has no type hints.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from breastai.errors import InconsistentGeometryError, InputError
from breastai.nnunet.card import parse_channels
from breastai.study import Study

__all__ = ["derive_channels", "phase_index"]


def phase_index(spec: str) -> int:
    """The phase a ``pre``/``postN``/``phaseK`` spec names (``subN``: its post phase)."""
    if spec == "pre":
        return 0
    for prefix in ("post", "sub", "phase"):
        if spec.startswith(prefix):
            return int(spec[len(prefix) :])
    raise ValueError(spec)


def _phase(study: Study, spec: str, k: int) -> sitk.Image:
    n = len(study.phases)
    if k >= n:
        name = study.name or str(study.source)
        raise InputError(
            f"channel {spec!r} needs phase {k} (0 = pre-contrast) but study {name!r} has {n} "
            f"phase(s) (0..{n - 1}); choose a model whose channels this study has, or a study "
            "with that phase."
        )
    return study.phases[k].image


def derive_channels(study: Study, spec: Sequence[str] | str) -> list[sitk.Image]:
    """The model's input images, one per channel spec, from ``study``'s phases.

    Parameters
    ----------
    study:
        A loaded study (:func:`breastai.load_study`); phase 0 is the pre-contrast phase.
    spec:
        Channel specs, e.g. ``["pre", "sub1"]`` or ``"pre,sub1"``.

    Returns
    -------
    list of SimpleITK.Image
        float32 images; ``subN`` = postN - pre on postN's grid.

    Raises
    ------
    InputError
        The study lacks a phase a channel needs (one sentence naming it).
    InconsistentGeometryError
        ``subN``: pre and postN are not on one grid.
    ParameterError
        A spec that is not pre/postN/subN/phaseK.
    """
    specs = parse_channels(spec)
    out: list[sitk.Image] = []
    for s in specs:
        k = phase_index(s)
        img = _phase(study, s, k)
        if s.startswith("sub"):
            pre = _phase(study, s, 0)
            if pre.GetSize() != img.GetSize():
                raise InconsistentGeometryError(
                    f"channel {s!r} subtracts the pre-contrast phase (size {pre.GetSize()}) from "
                    f"phase {k} (size {img.GetSize()}), which are not on one grid."
                )
            arr = sitk.GetArrayViewFromImage(img).astype(np.float32) - sitk.GetArrayViewFromImage(
                pre
            ).astype(np.float32)
            sub = sitk.GetImageFromArray(arr)
            sub.CopyInformation(img)
            out.append(sub)
        elif img.GetPixelID() != sitk.sitkFloat32:
            out.append(sitk.Cast(img, sitk.sitkFloat32))
        else:
            out.append(img)
    return out
