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

One module per job:

* :mod:`~breastai.weights.paths` -- the package, user and cache folders;
* :mod:`~breastai.weights.cards` -- :class:`ModelCard` and reading/validating weights.toml tables;
* :mod:`~breastai.weights.integrity` -- sha256, stamps, :func:`verify_file`, hash-checked installs;
* :mod:`~breastai.weights.registry` -- :func:`load_registry`, :func:`resolve_model`, status;
* :mod:`~breastai.weights.toml_edit` -- :func:`update_bundled_entry`, :func:`register_model`;
* :mod:`~breastai.weights.download` -- :func:`download_model` (Hugging Face Hub);
* :mod:`~breastai.weights.bundles` -- :func:`export_bundle`, :func:`install_from`.

The package imports only the standard library at module level; ``huggingface_hub`` is imported
inside :func:`download_model`, so ``breastai weights list`` stays instant. Every file is written
through :mod:`breastai.io.atomic`.
"""

from __future__ import annotations

from breastai.weights.bundles import BUNDLE_WEIGHTS_FILE, export_bundle, install_from
from breastai.weights.cards import (
    BLENDINGS,
    NORMALISATIONS,
    PLACEHOLDER_SHA256,
    SCHEMA_VERSION,
    TASKS,
    ModelCard,
    ModelStatus,
    ResolvedModel,
)
from breastai.weights.cards import card_from_table as _card_from_table  # noqa: F401 (tests)
from breastai.weights.download import download_model, models_to_download
from breastai.weights.integrity import sha256_file, verify_file
from breastai.weights.paths import (
    breastai_home,
    bundled_models_dir,
    model_file,
    package_weights_file,
    store_dir,
    user_weights_file,
)
from breastai.weights.registry import load_registry, model_status, resolve_model, verify_models
from breastai.weights.toml_edit import register_model, render_table, update_bundled_entry

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
    "models_to_download",
    "package_weights_file",
    "register_model",
    "render_table",
    "resolve_model",
    "sha256_file",
    "store_dir",
    "update_bundled_entry",
    "user_weights_file",
    "verify_file",
    "verify_models",
]
