"""Editing weights.toml files at the text level (comments and layout are kept).

:func:`update_bundled_entry` sets keys of one table of the package file (the demo-weights script);
:func:`register_model` copies a model into the user's models folder and adds its table to the
user weights file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from breastai.errors import (
    ChecksumMismatchError,
    OutputExistsError,
    ParameterError,
    WeightsError,
    WeightsNotFoundError,
)
from breastai.weights import paths
from breastai.weights.cards import (
    CARD_KEYS,
    CARD_KEYS_ORDER,
    PLACEHOLDER_SHA256,
    ModelCard,
    card_from_table,
    cards_from_file,
    read_toml,
)
from breastai.weights.integrity import install_file, os_error, sha256_file
from breastai.weights.paths import absolute, user_weights_file

__all__ = ["register_model", "render_table", "update_bundled_entry"]

logger = logging.getLogger(__name__)

_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


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


def _write_text(path: Path, text: str) -> None:
    """Replace a weights.toml atomically (through a symlink; the file keeps its mode)."""
    from breastai.io.atomic import atomic_write_text  # breastai.io imports numpy: not at import

    real = path.resolve() if path.is_symlink() else path
    mode = None
    with contextlib.suppress(OSError):
        if real.exists():
            mode = real.stat().st_mode & 0o777
    atomic_write_text(real, text, mode=mode, on_error=os_error)


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
    unknown = sorted(set(fields) - CARD_KEYS)
    if unknown:
        raise ParameterError(
            f"unknown card key(s) {', '.join(unknown)}; known: {', '.join(CARD_KEYS_ORDER)}."
        )
    path = weights_toml if weights_toml is not None else paths.package_weights_file()
    path = path.resolve()
    text = path.read_text(encoding="utf-8")
    new_text = _set_keys_in_table(text, name, fields)
    card = _check_edited(new_text, path, name, fields, allow_bundled=True)
    _write_text(path, new_text)
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
    return card_from_table(name, table, path, allow_bundled=allow_bundled)


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
    models_root = absolute(wf.parent / "models")
    if absolute(model_path).is_relative_to(models_root):
        # already in place: no second copy
        rel = absolute(model_path).relative_to(absolute(wf.parent))
    new = dataclasses.replace(card, sha256=sha, bundled=False, path=rel.as_posix())
    fields = new.toml_fields()
    card_from_table(card.name, fields, wf, allow_bundled=False)  # validate before writing anything
    text = wf.read_text(encoding="utf-8") if wf.is_file() else _USER_FILE_HEADER
    if wf.is_file():
        read_toml(wf)
    lines = text.splitlines(keepends=True)
    span = _table_span(lines, card.name)
    if span is not None and not force:
        raise OutputExistsError(
            f"a model named {card.name!r} is already registered in {str(wf)!r}; pass --force "
            "(force=True) to replace it."
        )
    packaged = cards_from_file(paths.package_weights_file(), allow_bundled=True)
    if card.name in packaged and not force:
        raise OutputExistsError(
            f"{card.name!r} is the name of a packaged model; choose another name or pass --force "
            "to override it in the user weights file."
        )
    install_file(model_path, wf.parent / rel, sha, name=card.name)
    table = render_table(card.name, fields)
    if span is not None:
        start, end = span
        lines[start:end] = [table]
        new_text = "".join(lines)
    else:
        sep = "" if text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        new_text = text + sep + table
    _check_edited(new_text, wf, card.name, {"sha256": sha}, allow_bundled=False)
    _write_text(wf, new_text)
    logger.info("registered %r in %s", card.name, wf)
    return wf
