"""Model weights: the ``weights.toml`` registry, model cards, sha256 checks, downloads, bundles.

Every model breastai runs is an ONNX file described by one ``[models.NAME]`` table of a
``weights.toml`` file and pinned by its sha256. Two files are read and merged (user entries win):

* the **package file** ``breastai/weights.toml`` (the repository's ``weights.toml``): the bundled
  demo models (``bundled = true``, files in ``breastai/models/``) and the released downloadable
  models (``repo_id`` + ``revision``, a 40-hex commit of a Hugging Face repository);
* the **user weights file**: ``--weights-file PATH``, else ``$BREASTAI_WEIGHTS_FILE``, else
  ``$BREASTAI_HOME/weights.toml``. Imported checkpoints and trained models are registered there
  (:func:`register_model`); their files live in ``models/NAME/`` beside that file (``path`` key).

``BREASTAI_HOME`` defaults to ``$XDG_CACHE_HOME/breastai`` (``~/.cache/breastai``) on Linux,
``~/Library/Caches/breastai`` on macOS and ``%LOCALAPPDATA%\\breastai`` on Windows. Downloaded
files live in ``$BREASTAI_HOME/models/NAME/FILENAME``; the Hugging Face cache (``HF_HOME``) keeps
its own copy.

Resolution order (:func:`resolve_model`): an explicit path, then the user's models (the
``[defaults]`` table of the user file, then user entries and downloaded models), then the bundled
demo weights.

Integrity: a file's sha256 is computed in full before its first use and recorded in a stamp
(``$BREASTAI_HOME/stamps/*.json``: path, size, mtime_ns, inode, sha256). Every later load compares
size, mtime and inode with the stamp and hashes again only when they differ. A mismatch raises
:class:`~breastai.errors.ChecksumMismatchError` naming the file, the expected and the found hash,
and removes the file when breastai installed it (downloads, bundles, registered copies).

This module imports only the standard library at module level; ``huggingface_hub`` is imported
inside :func:`download_model`, so ``breastai weights list`` stays instant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import sys
import tomllib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from breastai.choices import Blend, Normalisation, values
from breastai.errors import (
    ChecksumMismatchError,
    OutputError,
    OutputExistsError,
    ParameterError,
    WeightsError,
    WeightsNotFoundError,
)

__all__ = [
    "BLENDINGS",
    "BUNDLE_WEIGHTS_FILE",
    "NORMALISATIONS",
    "PLACEHOLDER_SHA256",
    "SCHEMA_VERSION",
    "TASKS",
    "ModelCard",
    "ModelStatus",
    "ResolvedModel",
    "breastai_home",
    "bundled_models_dir",
    "download_model",
    "export_bundle",
    "install_from",
    "load_registry",
    "model_file",
    "model_status",
    "package_weights_file",
    "register_model",
    "resolve_model",
    "sha256_file",
    "store_dir",
    "update_bundled_entry",
    "user_weights_file",
    "verify_file",
    "verify_models",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
TASKS = ("breast", "tumor")
NORMALISATIONS = values(Normalisation)  # breastai.choices
BLENDINGS = values(Blend)
PLACEHOLDER_SHA256 = "0" * 64
BUNDLE_WEIGHTS_FILE = "weights.toml"
"""Name of the weights.toml fragment at the root of a bundle (see :func:`export_bundle`)."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_REVISION_RE = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 1 << 20
_DEFAULT_INPUTS = {"breast": ("image",), "tumor": ("phases", "time_mask")}
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


# ----------------------------------------------------------------------------------------------
# Model cards
# ----------------------------------------------------------------------------------------------


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
    normalisation: str = "seed"
    blending: str = "vote"
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
        for key in _CARD_KEYS_ORDER:
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


_CARD_KEYS_ORDER = (
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
_CARD_KEYS = frozenset(_CARD_KEYS_ORDER)


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


# ----------------------------------------------------------------------------------------------
# Locations
# ----------------------------------------------------------------------------------------------


def breastai_home() -> Path:
    """The breastai cache folder: ``$BREASTAI_HOME`` or the platform cache folder.

    Returns
    -------
    Path
        ``$BREASTAI_HOME`` if set; else ``$XDG_CACHE_HOME/breastai`` or ``~/.cache/breastai`` on
        Linux, ``~/Library/Caches/breastai`` on macOS, ``%LOCALAPPDATA%\\breastai`` on Windows.
        The folder is not created.
    """
    env = os.environ.get("BREASTAI_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else Path.home() / "AppData" / "Local") / "breastai"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "breastai"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "breastai"


def user_weights_file(weights_file: Path | None = None) -> Path:
    """The user weights file: ``weights_file``, else ``$BREASTAI_WEIGHTS_FILE``, else the home one.

    Parameters
    ----------
    weights_file : Path or None
        An explicit file (``--weights-file``); it need not exist yet.

    Returns
    -------
    Path
        The file to read user entries from and to register models into.
    """
    if weights_file is not None:
        return Path(weights_file).expanduser()
    env = os.environ.get("BREASTAI_WEIGHTS_FILE")
    if env:
        return Path(env).expanduser()
    return breastai_home() / "weights.toml"


def package_weights_file() -> Path:
    """The weights.toml shipped inside the package (the repository's weights.toml)."""
    return Path(__file__).resolve().parent / "weights.toml"


def bundled_models_dir() -> Path:
    """Where bundled (``bundled = true``) ONNX files live: ``breastai/models/``."""
    return Path(__file__).resolve().parent / "models"


def store_dir() -> Path:
    """Where downloaded and bundle-installed files go: ``$BREASTAI_HOME/models``."""
    return breastai_home() / "models"


def model_file(card: ModelCard) -> Path:
    """The path a card's file has (or will have) on this machine.

    Bundled entries live in :func:`bundled_models_dir`, local entries at their ``path``, and
    downloadable entries in ``store_dir()/NAME/FILENAME``.
    """
    if card.bundled:
        return bundled_models_dir() / Path(card.filename).name
    if card.path is not None:
        return Path(card.path)
    return store_dir() / card.name / Path(card.filename).name


def _managed_roots(weights_file: Path | None) -> list[Path]:
    roots = [store_dir(), user_weights_file(weights_file).parent / "models"]
    return [_abs(r) for r in roots]


def _abs(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _is_managed(path: Path, weights_file: Path | None) -> bool:
    p = _abs(path)
    return any(p.is_relative_to(root) for root in _managed_roots(weights_file))


# ----------------------------------------------------------------------------------------------
# Hashing and stamps
# ----------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """The lowercase hex sha256 of a file, read in 1 MiB chunks.

    Parameters
    ----------
    path : Path
        File to hash.

    Returns
    -------
    str
        64 lowercase hex digits.

    Raises
    ------
    WeightsNotFoundError
        If the file does not exist or cannot be read.
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except FileNotFoundError:
        raise WeightsNotFoundError(f"model file {str(path)!r} does not exist.") from None
    except OSError as exc:
        raise WeightsError(
            f"cannot read model file {str(path)!r}: {exc.strerror or exc}."
        ) from None
    return h.hexdigest()


def _stamp_path(path: Path) -> Path:
    key = hashlib.sha256(str(_abs(path)).encode("utf-8")).hexdigest()[:32]
    return breastai_home() / "stamps" / f"{key}.json"


def _file_identity(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _read_stamp(path: Path, st: os.stat_result) -> str | None:
    """The sha256 recorded for ``path`` if its size, mtime and inode still match, else None."""
    try:
        data = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("path") != str(_abs(path)):
        return None
    if any(data.get(k) != v for k, v in _file_identity(st).items()):
        return None
    sha = data.get("sha256")
    return sha if isinstance(sha, str) and _SHA256_RE.match(sha) else None


def _write_stamp(path: Path, st: os.stat_result, sha: str) -> None:
    stamp = _stamp_path(path)
    data = {"path": str(_abs(path)), **_file_identity(st), "sha256": sha}
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_name(f".{stamp.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, stamp)
    except OSError as exc:  # a read-only home only costs a full hash next time
        logger.debug("could not write stamp %s: %s", stamp, exc)
        with contextlib.suppress(OSError, UnboundLocalError):
            tmp.unlink(missing_ok=True)


def _drop_stamp(path: Path) -> None:
    with contextlib.suppress(OSError):
        _stamp_path(path).unlink(missing_ok=True)


def _current_sha(path: Path, *, full: bool) -> tuple[str, bool]:
    """(sha256, hashed_now): from the stamp when it still matches, else hashed and stamped."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise WeightsNotFoundError(f"model file {str(path)!r} does not exist.") from None
    if not full:
        sha = _read_stamp(path, st)
        if sha is not None:
            return sha, False
    sha = sha256_file(path)
    st_after = path.stat()
    if _file_identity(st_after) == _file_identity(st):
        _write_stamp(path, st, sha)
    return sha, True


def verify_file(
    path: Path,
    expected_sha256: str,
    *,
    name: str = "",
    full: bool = False,
    remove_on_mismatch: bool = False,
    hint: str = "",
) -> Path:
    """Check a file against its pinned sha256 (full hash once, then size + stamp).

    Parameters
    ----------
    path : Path
        The model file.
    expected_sha256 : str
        Pinned lowercase hex sha256.
    name : str
        Model name for the message.
    full : bool
        Hash the whole file even when a valid stamp exists.
    remove_on_mismatch : bool
        Delete the file (and its stamp) when the hash differs.
    hint : str
        What to do next, appended to a mismatch message.

    Returns
    -------
    Path
        ``path``, verified.

    Raises
    ------
    WeightsNotFoundError
        The file does not exist.
    WeightsError
        The entry's sha256 is still the placeholder.
    ChecksumMismatchError
        The hash differs (the message names the file, expected and found hashes).
    """
    expected = expected_sha256.lower()
    label = f"model {name!r} " if name else ""
    sha, _ = _current_sha(path, full=full)
    if sha == expected:
        return path
    if expected == PLACEHOLDER_SHA256:
        raise WeightsError(
            f"{label}file {str(path)!r} has no pinned sha256 yet (placeholder in weights.toml); "
            f"its sha256 is {sha}: fill it in (the demo-weights script does this for bundled "
            "models)."
        )
    _drop_stamp(path)
    if remove_on_mismatch:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fate = "the file was removed"
    else:
        fate = "the file was left in place because breastai did not install it"
    raise ChecksumMismatchError(
        f"{label}file {str(path)!r} has sha256 {sha} but {expected} is expected; {fate}"
        + (f"; {hint}" if hint else ".")
    )


# ----------------------------------------------------------------------------------------------
# Reading weights.toml files
# ----------------------------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
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


def _card_from_table(
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
    unknown = sorted(set(table) - _CARD_KEYS)
    if unknown:
        raise WeightsError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known keys: "
            f"{', '.join(_CARD_KEYS_ORDER)}."
        )
    for key in ("task", "filename", "sha256"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise WeightsError(f"{where}: {key!r} (a string) is required.")
    task = table["task"]
    if task not in TASKS:
        raise WeightsError(f"{where}: task must be one of {', '.join(TASKS)}, found {task!r}.")
    sha = table["sha256"].lower()
    if not _SHA256_RE.match(sha):
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
        fields["path"] = str(p if p.is_absolute() else _abs(source.parent / p))
    for key, kind in (("patch_zyx", int), ("stride_zyx", int), ("spacing_zyx", float)):
        if key in table:
            fields[key] = _triplet(table[key], key, where, kind)
    for key in ("phases_min", "phases_max", "phase_slots"):
        if key in table:
            v = table[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise WeightsError(f"{where}: {key} must be a positive integer, found {v!r}.")
            fields[key] = v
    for key, choices in (("normalisation", NORMALISATIONS), ("blending", BLENDINGS)):
        if key in table:
            if table[key] not in choices:
                raise WeightsError(
                    f"{where}: {key} must be one of {', '.join(choices)}, found {table[key]!r}."
                )
            fields[key] = table[key]
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


def _cards_from_file(path: Path, *, allow_bundled: bool) -> dict[str, ModelCard]:
    data = _read_toml(path)
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise WeightsError(f"weights file {str(path)!r}: 'models' must be a table of tables.")
    return {
        name: _card_from_table(name, table, path, allow_bundled=allow_bundled)
        for name, table in models.items()
    }


def _user_defaults(weights_file: Path | None) -> dict[str, str]:
    wf = user_weights_file(weights_file)
    if not wf.is_file():
        return {}
    defaults = _read_toml(wf).get("defaults", {})
    if not isinstance(defaults, dict) or not all(
        k in TASKS and isinstance(v, str) for k, v in defaults.items()
    ):
        raise WeightsError(
            f"weights file {str(wf)!r}: [defaults] maps a task (breast, tumor) to a model name."
        )
    return defaults


def load_registry(weights_file: Path | None = None) -> dict[str, ModelCard]:
    """All known models: the package entries, then the user file's entries (which win on a clash).

    Parameters
    ----------
    weights_file : Path or None
        The user weights file (see :func:`user_weights_file`); a missing file has no entries
        (it is created when a model is first registered).

    Returns
    -------
    dict[str, ModelCard]
        By name, package entries first, in file order.

    Raises
    ------
    WeightsError
        A weights file is invalid (the message names the file, the table and the key).
    """
    registry = _cards_from_file(package_weights_file(), allow_bundled=True)
    wf = user_weights_file(weights_file)
    if wf.is_file():
        for name, card in _cards_from_file(wf, allow_bundled=False).items():
            if name in registry:
                logger.info("user weights file %s overrides the packaged entry %r", wf, name)
            registry[name] = card
    return registry


def _unknown_name(name: str, registry: Mapping[str, ModelCard]) -> WeightsNotFoundError:
    known = ", ".join(sorted(registry)) or "none"
    return WeightsNotFoundError(
        f"no model named {name!r}; known models: {known} (see `breastai weights list`)."
    )


def _missing_file(card: ModelCard, path: Path) -> WeightsNotFoundError:
    if card.bundled:
        what = (
            "the installed package lacks this bundled demo file: reinstall breastai, or run "
            f"`breastai download-weights {card.name} --from DIR_OR_BUNDLE`"
        )
    elif card.downloadable:
        what = f"run `breastai download-weights {card.name}` (offline: add --from DIR_OR_BUNDLE)"
    else:
        what = (
            f"register it again or run `breastai download-weights {card.name} --from DIR_OR_BUNDLE`"
        )
    return WeightsNotFoundError(f"model {card.name!r}: file {str(path)!r} is missing; {what}.")


def _verify_card(card: ModelCard, weights_file: Path | None, *, full: bool = False) -> Path:
    path = model_file(card)
    if not path.is_file():
        raise _missing_file(card, path)
    managed = _is_managed(path, weights_file) and not card.bundled
    hint = (
        f"run `breastai download-weights {card.name}` to fetch it again"
        if card.downloadable
        else f"install it again (`breastai download-weights {card.name} --from DIR_OR_BUNDLE`)"
    )
    return verify_file(
        path, card.sha256, name=card.name, full=full, remove_on_mismatch=managed, hint=hint
    )


def _looks_like_path(value: str) -> bool:
    return (
        "/" in value
        or os.sep in value
        or value.endswith(".onnx")
        or value.startswith(".")
        or value.startswith("~")
    )


def _card_for_explicit_path(path: Path, registry: Mapping[str, ModelCard]) -> ModelCard:
    sidecar = path.with_suffix(".toml")
    if sidecar.is_file():
        data = _read_toml(sidecar)
        models = data.get("models")
        if isinstance(models, dict):
            if len(models) != 1:
                raise WeightsError(
                    f"model card {str(sidecar)!r} must hold exactly one [models.NAME] table, "
                    f"found {len(models)}."
                )
            ((name, table),) = models.items()
        else:
            table = {k: v for k, v in data.items() if k not in ("schema_version", "name")}
            name = str(data.get("name", path.stem))
        table = {k: v for k, v in table.items() if k not in ("bundled", "path")}
        table["path"] = str(_abs(path))
        return _card_from_table(name, table, sidecar, allow_bundled=False)
    matches = [c for c in registry.values() if Path(c.filename).name == path.name]
    if not matches:
        raise WeightsNotFoundError(
            f"no model card for {str(path)!r}: put one beside it as {str(sidecar)!r} (the keys of "
            f"a [models.NAME] table) or add an entry with filename = {path.name!r} to the user "
            "weights file."
        )
    sha, _ = _current_sha(path, full=False)
    for c in matches:
        if c.sha256 == sha:
            return dataclasses.replace(c, path=str(_abs(path)), bundled=False)
    return dataclasses.replace(matches[0], path=str(_abs(path)), bundled=False)


def resolve_model(
    name_or_path: str | None, task: str, *, weights_file: Path | None = None
) -> ResolvedModel:
    """Find and verify the model to run for ``task``.

    Resolution order: an explicit path; else a registry name; else (``None``) the user's models --
    the user file's ``[defaults]`` entry for the task, then user entries and downloaded models
    whose file is present, in file order -- and finally the bundled demo model of the task.

    Parameters
    ----------
    name_or_path : str or None
        A model name from the registry, a path to an ONNX file (its card comes from a sidecar
        ``STEM.toml`` or a registry entry with that filename), or None for the default.
    task : str
        ``"breast"`` or ``"tumor"``.
    weights_file : Path or None
        User weights file (see :func:`user_weights_file`).

    Returns
    -------
    ResolvedModel
        The card and the verified path.

    Raises
    ------
    ParameterError
        ``task`` is not one of :data:`TASKS`.
    WeightsNotFoundError
        Unknown name (the message lists the known names) or missing file (the message holds the
        ``breastai download-weights NAME`` command).
    WeightsError
        The model is for another task, or a weights file is invalid.
    ChecksumMismatchError
        The file's sha256 differs from the pinned one.
    """
    if task not in TASKS:
        raise ParameterError(f"task must be one of {', '.join(TASKS)}, found {task!r}.")
    registry = load_registry(weights_file)
    card: ModelCard
    if name_or_path is not None and (
        name_or_path not in registry
        and (_looks_like_path(name_or_path) or Path(name_or_path).is_file())
    ):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"model file {str(path)!r} does not exist.")
        card = _card_for_explicit_path(path, registry)
        if card.task != task:
            raise WeightsError(
                f"model file {str(path)!r} is a {card.task} model ({card.name!r}); a {task} model "
                "is needed here."
            )
        verified = verify_file(path, card.sha256, name=card.name, remove_on_mismatch=False)
        return ResolvedModel(card, verified)
    if name_or_path is not None:
        card_or_none = registry.get(name_or_path)
        if card_or_none is None:
            raise _unknown_name(name_or_path, registry)
        card = card_or_none
        if card.task != task:
            raise WeightsError(
                f"model {card.name!r} is a {card.task} model; a {task} model is needed here "
                f"(known {task} models: "
                f"{', '.join(n for n, c in registry.items() if c.task == task) or 'none'})."
            )
        return ResolvedModel(card, _verify_card(card, weights_file))
    defaults = _user_defaults(weights_file)
    if task in defaults:
        name = defaults[task]
        if name not in registry:
            raise WeightsError(
                f"[defaults] {task} = {name!r} in {str(user_weights_file(weights_file))!r} names "
                f"no model; known models: {', '.join(sorted(registry))}."
            )
        return resolve_model(name, task, weights_file=weights_file)
    # nnU-Net models (`import-weights --nnunet`: the file is the nnunet.json card, not an ONNX
    # file) run through breastai.nnunet; they are never picked as the default segment model.
    candidates = [
        c for c in registry.values() if c.task == task and not c.architecture.startswith("nnunet")
    ]
    ordered = [c for c in candidates if not c.bundled and not c.demo] + [
        c for c in candidates if not c.bundled and c.demo
    ]
    for c in ordered:
        if model_file(c).is_file():
            logger.info("using %s model %r (%s)", task, c.name, model_file(c))
            return ResolvedModel(c, _verify_card(c, weights_file))
    for c in candidates:
        if c.bundled:
            logger.info("no user or downloaded %s model: using bundled demo model %r", task, c.name)
            return ResolvedModel(c, _verify_card(c, weights_file))
    raise WeightsNotFoundError(
        f"no {task} model is installed; known {task} models: "
        f"{', '.join(c.name for c in candidates) or 'none'}; run `breastai download-weights NAME`."
    )


def model_status(
    weights_file: Path | None = None, *, full: bool = False, names: Sequence[str] = ()
) -> list[ModelStatus]:
    """State of every (or every named) registry entry's file; cheap unless ``full``.

    Parameters
    ----------
    weights_file : Path or None
        User weights file.
    full : bool
        Hash every present file (``breastai weights verify``); a mismatching file that breastai
        installed is removed. Without it only the stamps are read (``breastai weights list``).
    names : sequence of str
        Restrict to these names (unknown names raise).

    Returns
    -------
    list[ModelStatus]
        In registry order.
    """
    registry = load_registry(weights_file)
    for n in names:
        if n not in registry:
            raise _unknown_name(n, registry)
    defaults = _user_defaults(weights_file)
    out: list[ModelStatus] = []
    for name, card in registry.items():
        if names and name not in names:
            continue
        path = model_file(card)
        is_default = defaults.get(card.task) == name
        if not path.is_file():
            out.append(ModelStatus(card, path, "missing", default=is_default))
            continue
        if not full:
            sha = _read_stamp(path, path.stat())
            if card.sha256 == PLACEHOLDER_SHA256:
                state = "placeholder"
            elif sha is None:
                state = "unverified"
            else:
                state = "verified" if sha == card.sha256 else "mismatch"
            out.append(ModelStatus(card, path, state, found_sha256=sha, default=is_default))
            continue
        try:
            _verify_card(card, weights_file, full=True)
            out.append(ModelStatus(card, path, "verified", card.sha256, is_default))
        except ChecksumMismatchError as exc:
            out.append(ModelStatus(card, path, "mismatch", None, is_default, str(exc)))
        except WeightsError as exc:
            state = "placeholder" if card.sha256 == PLACEHOLDER_SHA256 else "missing"
            out.append(ModelStatus(card, path, state, None, is_default, str(exc)))
    return out


def verify_models(
    names: Sequence[str] = (), *, weights_file: Path | None = None
) -> list[ModelStatus]:
    """Hash every present model file in full (see :func:`model_status` with ``full=True``)."""
    return model_status(weights_file, full=True, names=names)


# ----------------------------------------------------------------------------------------------
# Writing files atomically
# ----------------------------------------------------------------------------------------------


def _os_error(exc: OSError, target: Path) -> OutputError:
    if exc.errno == errno.ENOSPC:
        why = "no space left on the device"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "the folder is not writable"
    else:
        why = exc.strerror or str(exc)
    return OutputError(
        f"cannot write {str(target)!r}: {why}; nothing was left behind. Free space or set "
        "BREASTAI_HOME to a writable folder."
    )


@contextlib.contextmanager
def _atomic_target(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; os.replace it into place on success only."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        raise _os_error(exc, target) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _install_stream(
    src: IO[bytes], target: Path, expected_sha256: str, *, name: str, origin: str
) -> Path:
    """Copy a stream to ``target`` through a temporary file, checking the sha256 on the way."""
    with _atomic_target(target) as tmp:
        h = hashlib.sha256()
        with open(tmp, "wb") as out:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        found = h.hexdigest()
        if found != expected_sha256:
            raise ChecksumMismatchError(
                f"model {name!r}: {origin} has sha256 {found} but {expected_sha256} is expected; "
                f"nothing was installed."
            )
    _write_stamp(target, target.stat(), expected_sha256)
    return target


def _install_file(
    src: Path, target: Path, expected_sha256: str, *, name: str, origin: str = ""
) -> Path:
    if _abs(src) == _abs(target):
        return verify_file(target, expected_sha256, name=name, full=True)
    try:
        with open(src, "rb") as f:
            return _install_stream(
                f, target, expected_sha256, name=name, origin=origin or repr(str(src))
            )
    except FileNotFoundError:
        raise WeightsNotFoundError(f"model file {str(src)!r} does not exist.") from None


# ----------------------------------------------------------------------------------------------
# Text-level TOML editing (comments and layout are preserved)
# ----------------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ParameterError(f"cannot write {value!r} to weights.toml.")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ParameterError(f"cannot write a {type(value).__name__} to weights.toml.")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY_RE.match(key) else json.dumps(key)


def render_table(name: str, fields: Mapping[str, Any]) -> str:
    lines = [f"[models.{_toml_key(name)}]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


_HEADER_RE = re.compile(r"^\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _header_key(line: str) -> str | None:
    m = _HEADER_RE.match(line.rstrip("\r\n"))
    if m is None:
        return None
    parts = []
    for part in re.findall(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|[^.\s]+', m.group(1)):
        parts.append(json.loads(part) if part.startswith('"') else part.strip("'"))
    return ".".join(parts)


def _table_span(lines: Sequence[str], name: str) -> tuple[int, int] | None:
    """[start, end) line indices of ``[models.NAME]``; trailing comments/blank lines excluded."""
    start = None
    for i, line in enumerate(lines):
        if start is None:
            if _header_key(line) == f"models.{name}":
                start = i
            continue
        if _header_key(line) is not None:
            end = i
            while end > start + 1 and (
                not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")
            ):
                end -= 1
            return start, end
    if start is None:
        return None
    end = len(lines)
    while end > start + 1 and (
        not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")
    ):
        end -= 1
    return start, end


def _value_end(lines: Sequence[str], i: int) -> int:
    """Index after the last line of the key/value starting on line ``i`` (multi-line arrays)."""
    depth = 0
    for j in range(i, len(lines)):
        text = _STRING_RE.sub('""', lines[j]).split("#", 1)[0]
        if j == i:
            text = text.split("=", 1)[1] if "=" in text else ""
        depth += text.count("[") - text.count("]")
        if depth <= 0:
            return j + 1
    return len(lines)


def _trailing_comment(line: str) -> str:
    """The `` # ...`` comment at the end of a one-line key/value, with its leading spaces."""
    masked = _STRING_RE.sub(lambda m: "x" * len(m.group(0)), line.rstrip("\r\n"))
    pos = masked.find("#")
    if pos < 0:
        return ""
    start = pos
    while start > 0 and masked[start - 1] in " \t":
        start -= 1
    return line.rstrip("\r\n")[start:]


_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'')


def _set_keys_in_table(text: str, name: str, fields: Mapping[str, Any]) -> str:
    lines = text.splitlines(keepends=True)
    span = _table_span(lines, name)
    if span is None:
        raise WeightsNotFoundError(f"no [models.{name}] table to update.")
    start, end = span
    for key, value in fields.items():
        key_re = re.compile(rf"^(\s*){re.escape(key)}\s*=")
        rendered = f"{key} = {_toml_value(value)}"
        for i in range(start + 1, end):
            m = key_re.match(lines[i])
            if m:
                stop = _value_end(lines, i)
                comment = _trailing_comment(lines[i]) if stop == i + 1 else ""
                lines[i:stop] = [f"{m.group(1)}{rendered}{comment}\n"]
                end -= stop - i - 1
                break
        else:
            if lines and not lines[end - 1].endswith("\n"):
                lines[end - 1] += "\n"
            lines.insert(end, rendered + "\n")
            end += 1
    return "".join(lines)


def _write_text_atomic(path: Path, text: str) -> None:
    real = path.resolve() if path.is_symlink() else path
    with _atomic_target(real) as tmp:
        tmp.write_text(text, encoding="utf-8")
        if real.exists():
            with contextlib.suppress(OSError):
                os.chmod(tmp, real.stat().st_mode & 0o777)


def update_bundled_entry(
    name: str, *, weights_toml: Path | None = None, **fields: Any
) -> ModelCard:
    """Set keys of one ``[models.NAME]`` table in place, keeping comments and layout.

    Used by the demo-weights training script to write the real sha256, patch, stride and spacing
    of the bundled demo models into the repository's weights.toml, e.g.
    ``update_bundled_entry("demo-tumor", sha256=sha256_file(p), patch_zyx=(32, 64, 64))``.

    Parameters
    ----------
    name : str
        Model name (the table must exist).
    weights_toml : Path or None
        The file to edit; default :func:`package_weights_file` (followed through the symlink to
        the repository's weights.toml in a development checkout).
    **fields
        Card keys and their new values (tuples for triplets).

    Returns
    -------
    ModelCard
        The entry as re-read from the edited file.

    Raises
    ------
    ParameterError
        A key is not a card key, or a value cannot be written.
    WeightsError
        The edited entry does not validate (the file is left unchanged).
    """
    unknown = sorted(set(fields) - _CARD_KEYS)
    if unknown:
        raise ParameterError(
            f"unknown card key(s) {', '.join(unknown)}; known: {', '.join(_CARD_KEYS_ORDER)}."
        )
    path = weights_toml if weights_toml is not None else package_weights_file()
    path = path.resolve()
    text = path.read_text(encoding="utf-8")
    new_text = _set_keys_in_table(text, name, fields)
    card = _check_edited(new_text, path, name, fields, allow_bundled=True)
    _write_text_atomic(path, new_text)
    return card


def _check_edited(
    text: str, path: Path, name: str, fields: Mapping[str, Any], *, allow_bundled: bool
) -> ModelCard:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WeightsError(
            f"editing {str(path)!r} would make it invalid TOML ({exc}); left unchanged."
        ) from None
    table = data.get("models", {}).get(name)
    if table is None:
        raise WeightsError(f"editing {str(path)!r} lost [models.{name}]; left unchanged.")
    for k, v in fields.items():
        want = list(v) if isinstance(v, tuple) else v
        if table.get(k) != want:
            raise WeightsError(
                f"editing {str(path)!r}: {k} reads back as {table.get(k)!r}; left unchanged."
            )
    return _card_from_table(name, table, path, allow_bundled=allow_bundled)


_USER_FILE_HEADER = """\
# breastai user weights file (see docs/weights.md). One [models.NAME] table per model; entries here
# override packaged entries of the same name. [defaults] picks the model a task uses by default:
#   [defaults]
#   tumor = "seed-tumor"
schema_version = 1
"""


def register_model(
    card: ModelCard, model_path: Path, *, weights_file: Path | None = None, force: bool = False
) -> Path:
    """Copy a model into the user's models folder and add its entry to the user weights file.

    The file is copied to ``models/NAME/FILENAME`` beside the user weights file (atomically, sha256
    checked; a file already under that ``models/`` folder is registered where it is), and
    ``[models.NAME]`` is added or replaced with ``path = "models/..."`` (relative to the weights
    file); the rest of the file (comments, other tables) is kept as it is.

    Parameters
    ----------
    card : ModelCard
        The card; ``sha256`` may be empty or the placeholder (it is computed), otherwise it must
        match the file. ``bundled`` and ``path`` are ignored.
    model_path : Path
        The ONNX file.
    weights_file : Path or None
        User weights file (see :func:`user_weights_file`); created if missing.
    force : bool
        Replace an existing entry of that name.

    Returns
    -------
    Path
        The user weights file written.

    Raises
    ------
    OutputExistsError
        An entry of that name exists and ``force`` is false.
    ChecksumMismatchError
        ``card.sha256`` is given and differs from the file's.
    WeightsError
        The card does not validate.
    OutputError
        The file or the folder cannot be written (nothing is left half-written).
    """
    model_path = Path(model_path)
    wf = user_weights_file(weights_file)
    sha = sha256_file(model_path)
    if card.sha256 and card.sha256 != PLACEHOLDER_SHA256 and card.sha256.lower() != sha:
        raise ChecksumMismatchError(
            f"model {card.name!r}: file {str(model_path)!r} has sha256 {sha} but the card says "
            f"{card.sha256}; nothing was registered."
        )
    rel = Path("models") / card.name / Path(card.filename).name
    models_root = _abs(wf.parent / "models")
    if _abs(model_path).is_relative_to(models_root):
        rel = _abs(model_path).relative_to(_abs(wf.parent))  # already in place: no second copy
    new = dataclasses.replace(card, sha256=sha, bundled=False, path=rel.as_posix())
    fields = new.toml_fields()
    _card_from_table(card.name, fields, wf, allow_bundled=False)  # validate before writing anything
    text = wf.read_text(encoding="utf-8") if wf.is_file() else _USER_FILE_HEADER
    if wf.is_file():
        _read_toml(wf)
    lines = text.splitlines(keepends=True)
    span = _table_span(lines, card.name)
    if span is not None and not force:
        raise OutputExistsError(
            f"a model named {card.name!r} is already registered in {str(wf)!r}; pass --force "
            "(force=True) to replace it."
        )
    packaged = _cards_from_file(package_weights_file(), allow_bundled=True)
    if card.name in packaged and not force:
        raise OutputExistsError(
            f"{card.name!r} is the name of a packaged model; choose another name or pass --force "
            "to override it in the user weights file."
        )
    _install_file(model_path, wf.parent / rel, sha, name=card.name)
    table = render_table(card.name, fields)
    if span is not None:
        start, end = span
        lines[start:end] = [table]
        new_text = "".join(lines)
    else:
        sep = "" if text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        new_text = text + sep + table
    _check_edited(new_text, wf, card.name, {"sha256": sha}, allow_bundled=False)
    _write_text_atomic(wf, new_text)
    logger.info("registered %r in %s", card.name, wf)
    return wf


# ----------------------------------------------------------------------------------------------
# Downloading
# ----------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def download_model(
    name: str,
    *,
    weights_file: Path | None = None,
    force: bool = False,
    endpoint: str | None = None,
    cache_dir: Path | None = None,
) -> ResolvedModel:
    """Download one model from the Hugging Face Hub at its pinned revision and verify it.

    ``huggingface_hub.hf_hub_download`` fetches the file into the Hugging Face cache (``HF_HOME``;
    ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_TOKEN`` and the proxy variables are honoured by
    huggingface_hub itself; a dropped connection is resumed with an HTTP Range request). The file
    is then copied to ``$BREASTAI_HOME/models/NAME/`` through a temporary file in that folder, its
    sha256 checked on the way, and moved into place with ``os.replace``: a failure leaves no
    partial file. A mismatching download is refused and also dropped from the Hugging Face cache.

    Parameters
    ----------
    name : str
        Registry name of a downloadable (``repo_id`` + ``revision``) or bundled model; a bundled
        model is only verified.
    weights_file : Path or None
        User weights file.
    force : bool
        Download again even if a verified copy exists.
    endpoint : str or None
        Hub endpoint; default ``HF_ENDPOINT`` (or https://huggingface.co).
    cache_dir : Path or None
        Hugging Face cache folder; default the one under ``HF_HOME``.

    Returns
    -------
    ResolvedModel
        The card and the verified installed file.

    Raises
    ------
    WeightsNotFoundError
        Unknown name (known names listed), or the file is not on the Hub at that revision.
    WeightsError
        The Hub cannot be reached (one line naming the endpoint and the ``--from`` alternative).
    ChecksumMismatchError
        The downloaded file's sha256 differs from the pinned one (nothing is kept).
    OutputError
        The cache cannot be written (disk full, read-only).
    """
    registry = load_registry(weights_file)
    card = registry.get(name)
    if card is None:
        raise _unknown_name(name, registry)
    if card.bundled or not card.downloadable:
        return ResolvedModel(card, _verify_card(card, weights_file, full=force))
    target = model_file(card)
    if target.is_file() and not force:
        try:
            return ResolvedModel(card, _verify_card(card, weights_file))
        except ChecksumMismatchError as exc:
            logger.warning("%s; downloading it again", exc)
    repo_id, revision = card.repo_id or "", card.revision or ""

    import huggingface_hub
    from huggingface_hub import constants as hf_constants
    from huggingface_hub import errors as hf_errors

    from breastai import __version__

    where = (endpoint or hf_constants.ENDPOINT).rstrip("/")
    what = f"{repo_id}@{revision[:12]} {card.filename}"
    offline_hint = (
        f"on an offline workstation, copy a bundle made with `breastai weights export-bundle` "
        f"and run `breastai download-weights {name} --from BUNDLE`"
    )
    try:
        cached = Path(
            huggingface_hub.hf_hub_download(
                repo_id=repo_id,
                filename=card.filename,
                revision=revision,
                cache_dir=cache_dir,
                endpoint=endpoint,
                force_download=force,
                library_name="breastai",
                library_version=__version__,
            )
        )
    except hf_errors.RemoteEntryNotFoundError:
        raise WeightsNotFoundError(
            f"model {name!r}: {card.filename!r} is not in {repo_id} at revision "
            f"{revision} on {where}; the weights.toml entry is wrong."
        ) from None
    except (hf_errors.RevisionNotFoundError, hf_errors.RepositoryNotFoundError) as exc:
        raise WeightsNotFoundError(
            f"model {name!r}: {what} not found on {where} ({_first_line(exc)}); check the entry, "
            "or HF_TOKEN for a gated or private repository."
        ) from None
    except (hf_errors.OfflineModeIsEnabled, hf_errors.LocalEntryNotFoundError) as exc:
        mode = (
            "HF_HUB_OFFLINE is set and the file is not in the Hugging Face cache"
            if (hf_constants.HF_HUB_OFFLINE)
            else f"cannot reach {where} ({_first_line(exc)})"
        )
        raise WeightsError(f"cannot download {name!r} ({what}): {mode}; {offline_hint}.") from None
    except hf_errors.HfHubHTTPError as exc:
        raise WeightsError(
            f"cannot download {name!r} from {where}: {_first_line(exc)}; {offline_hint}."
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS):
            raise _os_error(exc, Path(str(cache_dir or hf_constants.HF_HUB_CACHE))) from None
        raise WeightsError(
            f"cannot download {name!r} from {where}: {_first_line(exc)}; {offline_hint}."
        ) from None
    except ValueError as exc:  # e.g. force_download while offline
        raise WeightsError(
            f"cannot download {name!r}: {_first_line(exc)}; {offline_hint}."
        ) from None
    except Exception as exc:  # httpx2 transport errors (proxy, TLS) are not OSError
        if type(exc).__module__.split(".")[0] not in ("httpx2", "httpx", "httpcore", "ssl"):
            raise
        raise WeightsError(
            f"cannot reach {where} to download {name!r} ({_first_line(exc)}); {offline_hint}."
        ) from None
    try:
        _install_file(
            cached, target, card.sha256, name=name, origin=f"the download from {where} ({what})"
        )
    except ChecksumMismatchError:
        _drop_from_hf_cache(cached)
        raise
    logger.info("installed %r at %s", name, target)
    return ResolvedModel(card, target)


def _drop_from_hf_cache(pointer: Path) -> None:
    """Remove a bad file from the Hugging Face cache (snapshot link and blob)."""
    with contextlib.suppress(OSError):
        blob = pointer.resolve()
        pointer.unlink(missing_ok=True)
        if blob != pointer:
            blob.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# Offline bundles
# ----------------------------------------------------------------------------------------------


def _archive_kind(path: Path) -> str:
    name = path.name.lower()
    for suffix in _ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return "zip" if suffix == ".zip" else "tar"
    raise ParameterError(
        f"bundle {str(path)!r}: expected a name ending in {', '.join(_ARCHIVE_SUFFIXES)}."
    )


def _bundle_member(card: ModelCard) -> str:
    return f"models/{card.name}/{Path(card.filename).name}"


def export_bundle(
    out: Path,
    names: Sequence[str] = (),
    *,
    weights_file: Path | None = None,
    force: bool = False,
) -> Path:
    """Write an offline bundle: the model files and a weights.toml fragment describing them.

    Bundle layout (``.tar``, ``.tar.gz``/``.tgz`` or ``.zip``)::

        weights.toml                 schema_version = 1 + one [models.NAME] table per model
        models/NAME/FILENAME         the ONNX file, sha256 as in the table

    The tables keep ``repo_id``/``revision`` as provenance; ``bundled`` and ``path`` are dropped.
    Every file is hashed in full before it is packed; the archive is written to a temporary file
    beside ``out`` and moved into place.

    Parameters
    ----------
    out : Path
        Archive to write.
    names : sequence of str
        Models to include; default every non-bundled model whose file is present.
    weights_file : Path or None
        User weights file.
    force : bool
        Replace an existing ``out``.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    OutputExistsError
        ``out`` exists and ``force`` is false.
    WeightsNotFoundError
        A named model is unknown or missing, or there is nothing to export.
    ChecksumMismatchError
        A file no longer matches its sha256.
    """
    out = Path(out)
    kind = _archive_kind(out)
    if out.exists() and not force:
        raise OutputExistsError(f"{str(out)!r} exists; pass --force to replace it.")
    registry = load_registry(weights_file)
    if names:
        for n in names:
            if n not in registry:
                raise _unknown_name(n, registry)
        cards = [registry[n] for n in dict.fromkeys(names)]
    else:
        cards = [c for c in registry.values() if not c.bundled and model_file(c).is_file()]
        if not cards:
            raise WeightsNotFoundError(
                "no downloaded or registered model to export; run `breastai download-weights NAME` "
                "first, or name the models to export (bundled demo models included)."
            )
    files = [(c, _verify_card(c, weights_file, full=True)) for c in cards]
    fragment = (
        f"# breastai offline bundle: {len(cards)} model(s)\nschema_version = {SCHEMA_VERSION}\n"
    )
    for c, _ in files:
        fragment += "\n" + render_table(c.name, c.toml_fields(for_bundle=True))
    payload = fragment.encode("utf-8")
    with _atomic_target(out) as tmp:
        if kind == "zip":
            import zipfile

            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                zf.writestr(BUNDLE_WEIGHTS_FILE, payload)
                for c, p in files:
                    zf.write(p, _bundle_member(c))
        else:
            import io
            import tarfile

            mode = "w:gz" if out.name.lower().endswith((".gz", ".tgz")) else "w"
            with tarfile.open(tmp, mode) as tf:  # type: ignore[call-overload]
                info = tarfile.TarInfo(BUNDLE_WEIGHTS_FILE)
                info.size = len(payload)
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(payload))
                for c, p in files:
                    tf.add(p, arcname=_bundle_member(c), recursive=False)
    logger.info("wrote bundle %s with %s", out, ", ".join(c.name for c in cards))
    return out


class _Source:
    """A folder or an archive to install model files from (read member by member)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.kind = "dir" if path.is_dir() else _archive_kind(path)
        self._zip: Any = None
        self._tar: Any = None
        try:
            if self.kind == "zip":
                import zipfile

                self._zip = zipfile.ZipFile(path)
            elif self.kind == "tar":
                import tarfile

                self._tar = tarfile.open(path)  # noqa: SIM115 (closed by close())
        except FileNotFoundError:
            raise WeightsNotFoundError(f"bundle {str(path)!r} does not exist.") from None
        except Exception as exc:  # zipfile.BadZipFile, tarfile.ReadError
            raise WeightsError(
                f"{str(path)!r} is not a readable {self.kind} bundle: {exc}."
            ) from None

    def close(self) -> None:
        for handle in (self._zip, self._tar):
            if handle is not None:
                handle.close()

    def names(self) -> list[str]:
        if self.kind == "dir":
            return [
                p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()
            ]
        if self._zip is not None:
            return [n for n in self._zip.namelist() if not n.endswith("/")]
        return [m.name for m in self._tar.getmembers() if m.isfile()]

    @contextlib.contextmanager
    def open(self, member: str) -> Iterator[IO[bytes]]:
        if self.kind == "dir":
            with open(self.path / member, "rb") as f:
                yield f
        elif self._zip is not None:
            with self._zip.open(member) as f:
                yield f
        else:
            f = self._tar.extractfile(member)
            if f is None:
                raise WeightsError(f"bundle {str(self.path)!r}: {member!r} is not a file.")
            with f:
                yield f


def _fragment_cards(src: _Source) -> dict[str, ModelCard]:
    if BUNDLE_WEIGHTS_FILE not in src.names():
        return {}
    with src.open(BUNDLE_WEIGHTS_FILE) as f:
        try:
            data = tomllib.loads(f.read().decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise WeightsError(
                f"bundle {str(src.path)!r}: its weights.toml is not valid TOML ({exc})."
            ) from None
    models = data.get("models", {})
    where = src.path / BUNDLE_WEIGHTS_FILE
    cards = {}
    for name, table in models.items():
        t = {k: v for k, v in table.items() if k not in ("bundled", "path")}
        if "repo_id" not in t:
            t["path"] = _bundle_member_for(name, t)
        cards[name] = _card_from_table(name, t, where, allow_bundled=False)
    return cards


def _bundle_member_for(name: str, table: Mapping[str, Any]) -> str:
    return f"models/{name}/{Path(str(table.get('filename', ''))).name}"


def install_from(
    source: Path,
    names: Sequence[str] = (),
    *,
    weights_file: Path | None = None,
    force: bool = False,
) -> list[ResolvedModel]:
    """Install models from a folder or a bundle (for air-gapped workstations).

    A bundle (see :func:`export_bundle`) or a folder holding a ``weights.toml`` fragment installs
    the models it describes: a model the registry knows must have the registry's sha256 and goes
    where a download would put it (bundled ones are only checked); an unknown model is registered
    in the user weights file (:func:`register_model`). A folder without a fragment is matched by
    file name against the registry (e.g. ONNX files copied from the Hub by hand).

    Parameters
    ----------
    source : Path
        Folder, ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip``.
    names : sequence of str
        Install only these (default: everything in the source).
    weights_file : Path or None
        User weights file.
    force : bool
        Replace installed files and user entries of the same name.

    Returns
    -------
    list[ResolvedModel]
        What was installed (or already present and verified).

    Raises
    ------
    WeightsNotFoundError
        The source is missing, holds none of the named models, or holds nothing usable.
    ChecksumMismatchError
        A file's sha256 differs from the fragment's or the registry's (nothing of it installed).
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise WeightsNotFoundError(
            f"{str(source)!r} does not exist (expected a folder or a bundle)."
        )
    registry = load_registry(weights_file)
    src = _Source(source)
    try:
        members = set(src.names())
        fragment = _fragment_cards(src)
        plan: list[tuple[ModelCard, str, bool]] = []  # (card, member, known to the registry)
        if fragment:
            for name, card in fragment.items():
                member = _bundle_member(card)
                if member not in members:
                    raise WeightsError(
                        f"bundle {str(source)!r} lists {name!r} but lacks {member!r}."
                    )
                known = registry.get(name)
                if known is not None and known.sha256 != card.sha256:
                    raise ChecksumMismatchError(
                        f"model {name!r}: the bundle's file has sha256 {card.sha256} but "
                        f"{known.sha256} is pinned in {known.source!r}; nothing was installed."
                    )
                plan.append((known or card, member, known is not None))
        else:
            by_file: dict[str, list[str]] = {}
            for m in members:
                by_file.setdefault(Path(m).name, []).append(m)
            for card in registry.values():
                hits = by_file.get(Path(card.filename).name, [])
                if hits:
                    plan.append((card, sorted(hits, key=len)[0], True))
        if names:
            missing = [n for n in names if n not in {c.name for c, _, _ in plan}]
            if missing:
                available = ", ".join(c.name for c, _, _ in plan) or "none"
                raise WeightsNotFoundError(
                    f"{str(source)!r} holds no file for {', '.join(missing)}; it holds: "
                    f"{available}."
                )
            plan = [p for p in plan if p[0].name in names]
        if not plan:
            raise WeightsNotFoundError(
                f"{str(source)!r} holds no model breastai knows: expected a bundle from "
                "`breastai weights export-bundle` or ONNX files named as in "
                "`breastai weights list`."
            )
        done: list[ResolvedModel] = []
        for card, member, is_known in plan:
            done.append(_install_one(src, card, member, is_known, weights_file, force))
        return done
    finally:
        src.close()


def _install_one(
    src: _Source,
    card: ModelCard,
    member: str,
    known: bool,
    weights_file: Path | None,
    force: bool,
) -> ResolvedModel:
    origin = f"{member!r} in {str(src.path)!r}"
    if not known:
        # A model this machine does not know: register it like an imported checkpoint.
        import tempfile

        with tempfile.TemporaryDirectory(dir=_tmp_parent(weights_file)) as tmpdir:
            tmp = Path(tmpdir) / Path(card.filename).name
            with src.open(member) as f:
                _install_stream(f, tmp, card.sha256, name=card.name, origin=origin)
            fresh = dataclasses.replace(card, path=None, repo_id=None, revision=None)
            if card.repo_id is not None:
                fresh = dataclasses.replace(fresh, repo_id=card.repo_id, revision=card.revision)
            register_model(fresh, tmp, weights_file=weights_file, force=force)
        _drop_stamp(tmp)
        registered = load_registry(weights_file)[card.name]
        return ResolvedModel(registered, _verify_card(registered, weights_file))
    target = model_file(card)
    if card.bundled:
        return ResolvedModel(card, _verify_card(card, weights_file, full=True))
    if target.is_file() and not force:
        try:
            return ResolvedModel(card, _verify_card(card, weights_file))
        except ChecksumMismatchError as exc:
            logger.warning("%s; installing it again from %s", exc, src.path)
    with src.open(member) as f:
        _install_stream(f, target, card.sha256, name=card.name, origin=origin)
    return ResolvedModel(card, target)


def _tmp_parent(weights_file: Path | None) -> Path:
    parent = user_weights_file(weights_file).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_error(exc, parent) from None
    return parent
