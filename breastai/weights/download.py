"""Downloading a model from the Hugging Face Hub at its pinned revision.

``huggingface_hub`` is imported inside :func:`download_model`, so ``breastai weights list`` stays
instant.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Sequence
from pathlib import Path

from breastai.errors import (
    ChecksumMismatchError,
    ParameterError,
    WeightsError,
    WeightsNotFoundError,
)
from breastai.weights.cards import ResolvedModel
from breastai.weights.integrity import install_file, os_error
from breastai.weights.paths import model_file
from breastai.weights.registry import load_registry, unknown_name, verify_card

__all__ = ["download_model", "models_to_download"]

logger = logging.getLogger(__name__)


def models_to_download(
    names: Sequence[str], *, all_models: bool = False, weights_file: Path | None = None
) -> list[str]:
    """The models ``breastai download-weights`` fetches: the named ones (each once, in order) or,
    with ``all_models``, every downloadable registry entry (possibly none).

    Raises
    ------
    ParameterError
        Names and ``all_models`` together, or neither (the sentence lists the downloadable
        models).
    """
    wanted = list(dict.fromkeys(names))
    if all_models and wanted:
        raise ParameterError("pass model names or --all, not both.")
    if wanted:
        return wanted
    registry = load_registry(weights_file)
    downloadable = [n for n, c in registry.items() if c.downloadable]
    if all_models:
        return downloadable
    raise ParameterError(
        "name the models to download or pass --all; downloadable models: "
        f"{', '.join(downloadable) or 'none'} (see `breastai weights list`)."
    )


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
    sha256 checked on the way, and moved into place (:mod:`breastai.io.atomic`): a failure leaves no
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
        raise unknown_name(name, registry)
    if card.bundled or not card.downloadable:
        return ResolvedModel(card, verify_card(card, weights_file, full=force))
    target = model_file(card)
    if target.is_file() and not force:
        try:
            return ResolvedModel(card, verify_card(card, weights_file))
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
            raise os_error(exc, Path(str(cache_dir or hf_constants.HF_HUB_CACHE))) from None
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
        install_file(
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
