"""The registry: the package and user weights.toml files merged, and the model to run resolved.

Resolution order (:func:`resolve_model`): an explicit path, then the user's models (the
``[defaults]`` table of the user file, then user entries and downloaded models), then the bundled
demo weights.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from breastai.choices import Family
from breastai.errors import (
    ChecksumMismatchError,
    ParameterError,
    WeightsError,
    WeightsNotFoundError,
)
from breastai.weights import paths
from breastai.weights.cards import (
    PLACEHOLDER_SHA256,
    TASKS,
    ModelCard,
    ModelStatus,
    ResolvedModel,
    card_from_table,
    cards_from_file,
    read_toml,
)
from breastai.weights.integrity import current_sha, read_stamp, verify_file
from breastai.weights.paths import absolute, is_managed, model_file, user_weights_file

__all__ = [
    "load_registry",
    "model_status",
    "resolve_model",
    "unknown_name",
    "user_defaults",
    "verify_card",
    "verify_models",
]

logger = logging.getLogger(__name__)


def user_defaults(weights_file: Path | None) -> dict[str, str]:
    wf = user_weights_file(weights_file)
    if not wf.is_file():
        return {}
    defaults = read_toml(wf).get("defaults", {})
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
    registry = cards_from_file(paths.package_weights_file(), allow_bundled=True)
    wf = user_weights_file(weights_file)
    if wf.is_file():
        for name, card in cards_from_file(wf, allow_bundled=False).items():
            if name in registry:
                logger.info("user weights file %s overrides the packaged entry %r", wf, name)
            registry[name] = card
    return registry


def unknown_name(name: str, registry: Mapping[str, ModelCard]) -> WeightsNotFoundError:
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


def verify_card(card: ModelCard, weights_file: Path | None, *, full: bool = False) -> Path:
    path = model_file(card)
    if not path.is_file():
        raise _missing_file(card, path)
    managed = is_managed(path, weights_file) and not card.bundled
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
        data = read_toml(sidecar)
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
        table["path"] = str(absolute(path))
        return card_from_table(name, table, sidecar, allow_bundled=False)
    matches = [c for c in registry.values() if Path(c.filename).name == path.name]
    if not matches:
        raise WeightsNotFoundError(
            f"no model card for {str(path)!r}: put one beside it as {str(sidecar)!r} (the keys of "
            f"a [models.NAME] table) or add an entry with filename = {path.name!r} to the user "
            "weights file."
        )
    sha, _ = current_sha(path, full=False)
    for c in matches:
        if c.sha256 == sha:
            return dataclasses.replace(c, path=str(absolute(path)), bundled=False)
    return dataclasses.replace(matches[0], path=str(absolute(path)), bundled=False)


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
            raise unknown_name(name_or_path, registry)
        card = card_or_none
        if card.task != task:
            raise WeightsError(
                f"model {card.name!r} is a {card.task} model; a {task} model is needed here "
                f"(known {task} models: "
                f"{', '.join(n for n, c in registry.items() if c.task == task) or 'none'})."
            )
        return ResolvedModel(card, verify_card(card, weights_file))
    defaults = user_defaults(weights_file)
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
    candidates = [c for c in registry.values() if c.task == task and c.family != Family.NNUNET]
    ordered = [c for c in candidates if not c.bundled and not c.demo] + [
        c for c in candidates if not c.bundled and c.demo
    ]
    for c in ordered:
        if model_file(c).is_file():
            logger.info("using %s model %r (%s)", task, c.name, model_file(c))
            return ResolvedModel(c, verify_card(c, weights_file))
    for c in candidates:
        if c.bundled:
            logger.info("no user or downloaded %s model: using bundled demo model %r", task, c.name)
            return ResolvedModel(c, verify_card(c, weights_file))
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
            raise unknown_name(n, registry)
    defaults = user_defaults(weights_file)
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
            sha = read_stamp(path, path.stat())
            if card.sha256 == PLACEHOLDER_SHA256:
                state = "placeholder"
            elif sha is None:
                state = "unverified"
            else:
                state = "verified" if sha == card.sha256 else "mismatch"
            out.append(ModelStatus(card, path, state, found_sha256=sha, default=is_default))
            continue
        try:
            verify_card(card, weights_file, full=True)
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
