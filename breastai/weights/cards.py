"""Model cards: the ``[models.NAME]`` tables of weights.toml files, read and validated.

A card says where a model file comes from (bundled, a pinned Hugging Face revision, or a local
path), its sha256, and how to run it (patch, stride, spacing, phases, normalisation, blending).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breastai.choices import Blend, Family, Normalisation, Task, values
from breastai.errors import WeightsError, WeightsNotFoundError
from breastai.weights.paths import absolute

__all__ = [
    "BLENDINGS",
    "CARD_KEYS",
    "CARD_KEYS_ORDER",
    "NORMALISATIONS",
    "PLACEHOLDER_SHA256",
    "SCHEMA_VERSION",
    "SHA256_RE",
    "TASKS",
    "ModelCard",
    "ModelStatus",
    "ResolvedModel",
    "card_from_table",
    "cards_from_file",
    "read_toml",
]

SCHEMA_VERSION = 1
TASKS = values(Task)  # ("breast", "tumor")
NORMALISATIONS = values(Normalisation)  # breastai.choices
BLENDINGS = values(Blend)
PLACEHOLDER_SHA256 = "0" * 64

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_REVISION_RE = re.compile(r"^[0-9a-f]{40}$")
_DEFAULT_INPUTS = {"breast": ("image",), "tumor": ("phases", "time_mask")}


@dataclass(frozen=True)
class ModelCard:
    """One ``[models.NAME]`` entry: where the file comes from, its sha256 and how to run it.

    All triplets are ``(z, y, x)`` (see :mod:`breastai.study`). ``input_names`` defaults to the
    standard names of the task (``("image",)`` for breast, ``("phases", "time_mask")`` for tumor).
    ``path`` is the absolute location of a local (user-registered) file; ``source`` is the
    weights.toml the entry was read from. Neither is written to a bundle.
    """

    name: str
    task: str
    filename: str
    sha256: str
    bundled: bool = False
    repo_id: str | None = None
    revision: str | None = None
    demo: bool = False
    architecture: str = ""
    patch_zyx: tuple[int, int, int] = (32, 96, 96)
    stride_zyx: tuple[int, int, int] = (16, 48, 48)
    spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0)
    phases_min: int = 2
    phases_max: int = 6
    phase_slots: int = 6
    normalisation: str = Normalisation.SEED
    blending: str = Blend.VOTE
    threshold: float = 0.5
    training_data: str = ""
    licence: str = ""
    intended_use: str = ""
    description: str = ""
    input_names: tuple[str, ...] = ()
    output_name: str = "probability"
    path: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not self.input_names:
            object.__setattr__(self, "input_names", _DEFAULT_INPUTS.get(self.task, ()))

    @property
    def downloadable(self) -> bool:
        """True when the entry names a Hugging Face repository and revision."""
        return self.repo_id is not None and self.revision is not None

    @property
    def family(self) -> Family:
        """The family of the card's architecture (:class:`breastai.choices.Family`)."""
        return Family.of(self.architecture, self.task)

    @property
    def origin(self) -> str:
        """``"bundled"``, ``"local"`` (a ``path`` entry) or ``"hub"``."""
        if self.bundled:
            return "bundled"
        if self.path is not None:
            return "local"
        return "hub"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field (tuples become lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def toml_fields(self, *, for_bundle: bool = False) -> dict[str, Any]:
        """The keys written to a ``[models.NAME]`` table (defaults and location keys omitted)."""
        defaults = {f.name: f.default for f in dataclasses.fields(ModelCard)}
        out: dict[str, Any] = {}
        for key in CARD_KEYS_ORDER:
            value = getattr(self, key)
            if key in ("task", "filename", "sha256"):
                out[key] = value
                continue
            if key == "input_names" and tuple(value) == _DEFAULT_INPUTS.get(self.task, ()):
                continue
            if key in ("bundled", "path") and for_bundle:
                continue
            if value is None or value == defaults.get(key):
                continue
            out[key] = list(value) if isinstance(value, tuple) else value
        return out


CARD_KEYS_ORDER = (
    "task",
    "filename",
    "sha256",
    "bundled",
    "repo_id",
    "revision",
    "path",
    "demo",
    "architecture",
    "patch_zyx",
    "stride_zyx",
    "spacing_zyx",
    "phases_min",
    "phases_max",
    "phase_slots",
    "normalisation",
    "blending",
    "threshold",
    "input_names",
    "output_name",
    "training_data",
    "licence",
    "intended_use",
    "description",
)
CARD_KEYS = frozenset(CARD_KEYS_ORDER)


@dataclass(frozen=True)
class ResolvedModel:
    """A model card and the verified file it describes."""

    card: ModelCard
    path: Path

    def to_dict(self) -> dict[str, Any]:
        """What a run manifest or report records: name, sha256, demo flag, origin, path."""
        return {
            "name": self.card.name,
            "task": self.card.task,
            "sha256": self.card.sha256,
            "demo": self.card.demo,
            "origin": self.card.origin,
            "repo_id": self.card.repo_id,
            "revision": self.card.revision,
            "architecture": self.card.architecture,
            "licence": self.card.licence,
            "intended_use": self.card.intended_use,
            "path": str(self.path),
        }


@dataclass(frozen=True)
class ModelStatus:
    """State of one registry entry's file, as ``breastai weights list``/``verify`` show it.

    ``state`` is one of ``"verified"`` (hash checked, stamp valid), ``"unverified"`` (present, not
    hashed since it last changed), ``"missing"``, ``"mismatch"`` (removed when breastai installed
    it) or ``"placeholder"`` (the entry's sha256 has not been filled in yet).
    """

    card: ModelCard
    path: Path
    state: str
    found_sha256: str | None = None
    default: bool = False
    message: str = ""

    def fails_verify(self, *, named: bool) -> bool:
        """Whether ``breastai weights verify`` fails on this entry: its file does not match (or
        the entry has no sha256 yet), or it is missing and was asked for by name."""
        return self.state in ("mismatch", "placeholder") or (named and self.state == "missing")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "name": self.card.name,
            "task": self.card.task,
            "demo": self.card.demo,
            "origin": self.card.origin,
            "state": self.state,
            "default": self.default,
            "sha256": self.card.sha256,
            "found_sha256": self.found_sha256,
            "path": str(self.path),
            "repo_id": self.card.repo_id,
            "revision": self.card.revision,
            "source": self.card.source,
            "message": self.message,
        }


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise WeightsNotFoundError(f"weights file {str(path)!r} does not exist.") from None
    except tomllib.TOMLDecodeError as exc:
        raise WeightsError(f"weights file {str(path)!r} is not valid TOML: {exc}.") from None
    except OSError as exc:
        raise WeightsError(
            f"cannot read weights file {str(path)!r}: {exc.strerror or exc}."
        ) from None
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise WeightsError(
            f"weights file {str(path)!r} has schema_version {version!r}; this breastai reads "
            f"version {SCHEMA_VERSION}: upgrade breastai."
        )
    return data


def _triplet(value: Any, key: str, where: str, kind: type) -> tuple[Any, Any, Any]:
    ok = (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in value)
        and (kind is float or all(isinstance(v, int) for v in value))
    )
    if not ok:
        kind_name = "integers" if kind is int else "numbers"
        raise WeightsError(
            f"{where}: {key} must be three positive {kind_name} (z, y, x), found {value!r}."
        )
    return (kind(value[0]), kind(value[1]), kind(value[2]))


def card_from_table(
    name: str, table: Mapping[str, Any], source: Path, *, allow_bundled: bool
) -> ModelCard:
    where = f"[models.{name}] in {str(source)!r}"
    if not _NAME_RE.match(name):
        raise WeightsError(
            f"{where}: model names use letters, digits, '.', '_' and '-' (starting with a letter "
            "or digit)."
        )
    if not isinstance(table, Mapping):
        raise WeightsError(f"{where}: expected a table.")
    unknown = sorted(set(table) - CARD_KEYS)
    if unknown:
        raise WeightsError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known keys: "
            f"{', '.join(CARD_KEYS_ORDER)}."
        )
    for key in ("task", "filename", "sha256"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise WeightsError(f"{where}: {key!r} (a string) is required.")
    task = table["task"]
    if task not in TASKS:
        raise WeightsError(f"{where}: task must be one of {', '.join(TASKS)}, found {task!r}.")
    sha = table["sha256"].lower()
    if not SHA256_RE.match(sha):
        raise WeightsError(f"{where}: sha256 must be 64 hex digits, found {table['sha256']!r}.")
    fields: dict[str, Any] = {
        "name": name,
        "task": task,
        "filename": table["filename"],
        "sha256": sha,
    }
    bundled = table.get("bundled", False)
    if not isinstance(bundled, bool):
        raise WeightsError(f"{where}: bundled must be true or false.")
    if bundled and not allow_bundled:
        raise WeightsError(
            f"{where}: bundled = true is only valid in the package weights.toml; use path = "
            "'...' for a local file."
        )
    repo_id, revision, path = table.get("repo_id"), table.get("revision"), table.get("path")
    if (repo_id is None) != (revision is None):
        raise WeightsError(f"{where}: repo_id and revision go together.")
    if revision is not None and (not isinstance(revision, str) or not _REVISION_RE.match(revision)):
        raise WeightsError(
            f"{where}: revision must be a full 40-hex commit hash (pinned), found {revision!r}."
        )
    if repo_id is not None and (not isinstance(repo_id, str) or repo_id.count("/") != 1):
        raise WeightsError(f"{where}: repo_id must look like 'owner/name', found {repo_id!r}.")
    if path is not None and not isinstance(path, str):
        raise WeightsError(f"{where}: path must be a string.")
    if not bundled and repo_id is None and path is None:
        raise WeightsError(
            f"{where}: say where the file comes from: bundled = true, repo_id + revision, or path."
        )
    fields.update(bundled=bundled, repo_id=repo_id, revision=revision)
    if path is not None:
        p = Path(path).expanduser()
        fields["path"] = str(p if p.is_absolute() else absolute(source.parent / p))
    for key, kind in (("patch_zyx", int), ("stride_zyx", int), ("spacing_zyx", float)):
        if key in table:
            fields[key] = _triplet(table[key], key, where, kind)
    for key in ("phases_min", "phases_max", "phase_slots"):
        if key in table:
            v = table[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise WeightsError(f"{where}: {key} must be a positive integer, found {v!r}.")
            fields[key] = v
    for key, enum in (("normalisation", Normalisation), ("blending", Blend)):
        if key in table:
            choices = values(enum)
            if table[key] not in choices:
                raise WeightsError(
                    f"{where}: {key} must be one of {', '.join(choices)}, found {table[key]!r}."
                )
            fields[key] = enum(table[key])
    if "threshold" in table:
        t = table["threshold"]
        if not isinstance(t, int | float) or isinstance(t, bool) or not 0.0 < t < 1.0:
            raise WeightsError(f"{where}: threshold must be a number in (0, 1), found {t!r}.")
        fields["threshold"] = float(t)
    if "demo" in table:
        if not isinstance(table["demo"], bool):
            raise WeightsError(f"{where}: demo must be true or false.")
        fields["demo"] = table["demo"]
    if "input_names" in table:
        v = table["input_names"]
        if not isinstance(v, list) or not v or not all(isinstance(s, str) for s in v):
            raise WeightsError(f"{where}: input_names must be a list of strings.")
        fields["input_names"] = tuple(v)
    for key in (
        "architecture",
        "output_name",
        "training_data",
        "licence",
        "intended_use",
        "description",
    ):
        if key in table:
            if not isinstance(table[key], str):
                raise WeightsError(f"{where}: {key} must be a string.")
            fields[key] = table[key]
    card = ModelCard(**fields, source=str(source))
    if card.phases_min > card.phases_max or (
        task == "tumor" and card.phases_max > card.phase_slots
    ):
        raise WeightsError(
            f"{where}: need phases_min <= phases_max <= phase_slots, found "
            f"{card.phases_min}, {card.phases_max}, {card.phase_slots}."
        )
    return card


def cards_from_file(path: Path, *, allow_bundled: bool) -> dict[str, ModelCard]:
    data = read_toml(path)
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise WeightsError(f"weights file {str(path)!r}: 'models' must be a table of tables.")
    return {
        name: card_from_table(name, table, path, allow_bundled=allow_bundled)
        for name, table in models.items()
    }
