"""Where weights files live: the package's weights.toml and bundled models, the user's files.

``BREASTAI_HOME`` defaults to ``$XDG_CACHE_HOME/breastai`` (``~/.cache/breastai``) on Linux,
``~/Library/Caches/breastai`` on macOS and ``%LOCALAPPDATA%\\breastai`` on Windows. Downloaded
files live in ``$BREASTAI_HOME/models/NAME/FILENAME``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from breastai.weights.cards import ModelCard

__all__ = [
    "absolute",
    "breastai_home",
    "bundled_models_dir",
    "is_managed",
    "model_file",
    "package_weights_file",
    "store_dir",
    "user_weights_file",
]


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
    return Path(__file__).resolve().parent.parent / "weights.toml"


def bundled_models_dir() -> Path:
    """Where bundled (``bundled = true``) ONNX files live: ``breastai/models/``."""
    return Path(__file__).resolve().parent.parent / "models"


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
    return [absolute(r) for r in roots]


def absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def is_managed(path: Path, weights_file: Path | None) -> bool:
    p = absolute(path)
    return any(p.is_relative_to(root) for root in _managed_roots(weights_file))
