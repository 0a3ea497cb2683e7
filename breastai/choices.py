"""The closed sets of choices, each defined once (an enum accepting ``str | Enum``).

A library function takes either the enum member or its string value (``Blend("gaussian")`` is
``Blend.GAUSSIAN``, and a member compares equal to its value, as highdicom's enums do); the
CLI uses the same enums for its ``--blend``, ``--runtime`` and ``--precision`` choices, so help
text, validation and the API cannot drift apart. The tuples of values that other modules export
(``breastai.inference.BLEND_MODES``, ``RUNTIMES``, ``PRECISIONS``; ``breastai.weights.BLENDINGS``,
``NORMALISATIONS``; ``breastai.families.FAMILIES``) are built from these enums. The values are
written into model cards and manifests: they never change.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from breastai.errors import ParameterError

__all__ = [
    "Blend",
    "Family",
    "Normalisation",
    "Precision",
    "Runtime",
    "Task",
    "TrainDevice",
    "WatchMode",
    "parse_choice",
    "values",
]


class Blend(StrEnum):
    """How overlapping sliding-window outputs are combined (:mod:`breastai.inference.windowing`)."""

    VOTE = "vote"
    MEAN = "mean"
    GAUSSIAN = "gaussian"


class Runtime(StrEnum):
    """Inference runtime of :class:`breastai.inference.OnnxModel`."""

    AUTO = "auto"
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"


class Precision(StrEnum):
    """Inference precision (``bf16`` only with OpenVINO on the CPU)."""

    FP32 = "fp32"
    BF16 = "bf16"


class Normalisation(StrEnum):
    """Input normalisation of a model (``normalisation`` in weights.toml)."""

    SEED = "seed"
    P1P99_MINMAX = "p1p99-minmax"


class Task(StrEnum):
    """What a model segments (``breastai train TASK``; ``breastai.training.train.TASKS``)."""

    BREAST = "breast"
    TUMOR = "tumor"


class TrainDevice(StrEnum):
    """Where ``breastai train`` runs."""

    CPU = "cpu"
    CUDA = "cuda"


class WatchMode(StrEnum):
    """How ``breastai watch`` finds new studies (``breastai.pacs.watch.MODES``)."""

    AUTO = "auto"
    ORTHANC = "orthanc"
    QIDO = "qido"


class Family(StrEnum):
    """Model family: how a study becomes a model's input (:mod:`breastai.families`)."""

    UNET = "unet"
    SEED = "seed"
    NNUNET = "nnunet"

    @classmethod
    def of(cls, architecture: str, task: str) -> Family:
        """The family of a model card's ``architecture`` (``nnunet ...``, ``unet3d``,
        ``seed...``; a tumor model of another architecture is a seed one)."""
        a = str(architecture).lower()
        if a.startswith("nnunet"):
            return cls.NNUNET
        if a.startswith("seed") or (task == "tumor" and not a.startswith("unet")):
            return cls.SEED
        return cls.UNET


E = TypeVar("E", bound=StrEnum)


def values(choices: type[StrEnum]) -> tuple[str, ...]:
    """The string values of an enum, in definition order."""
    return tuple(m.value for m in choices)


def parse_choice(choices: type[E], value: str | E, option: str) -> E:
    """``value`` (a member, or its value in any case, surrounding blanks ignored) as a member of
    ``choices``.

    Raises
    ------
    ParameterError
        ``"<option> must be one of a, b, c, got 'x'."``
    """
    v = str(value).strip().lower()
    try:
        return choices(v)
    except ValueError:
        raise ParameterError(
            f"{option} must be one of {', '.join(values(choices))}, got {value!r}."
        ) from None
