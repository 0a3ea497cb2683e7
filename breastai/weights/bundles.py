"""Offline bundles: export models with their cards into one archive, install from one.

Bundle layout (``.tar``, ``.tar.gz``/``.tgz`` or ``.zip``)::

    weights.toml                 schema_version = 1 + one [models.NAME] table per model
    models/NAME/FILENAME         the ONNX file, sha256 as in the table
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from breastai.errors import (
    ChecksumMismatchError,
    OutputExistsError,
    ParameterError,
    WeightsError,
    WeightsNotFoundError,
)
from breastai.weights.cards import SCHEMA_VERSION, ModelCard, ResolvedModel, card_from_table
from breastai.weights.integrity import drop_stamp, install_stream, os_error
from breastai.weights.paths import model_file, user_weights_file
from breastai.weights.registry import load_registry, unknown_name, verify_card
from breastai.weights.toml_edit import register_model, render_table

__all__ = ["BUNDLE_WEIGHTS_FILE", "export_bundle", "install_from"]

logger = logging.getLogger(__name__)

BUNDLE_WEIGHTS_FILE = "weights.toml"
"""Name of the weights.toml fragment at the root of a bundle (see :func:`export_bundle`)."""

_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


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
                raise unknown_name(n, registry)
        cards = [registry[n] for n in dict.fromkeys(names)]
    else:
        cards = [c for c in registry.values() if not c.bundled and model_file(c).is_file()]
        if not cards:
            raise WeightsNotFoundError(
                "no downloaded or registered model to export; run `breastai download-weights NAME` "
                "first, or name the models to export (bundled demo models included)."
            )
    files = [(c, verify_card(c, weights_file, full=True)) for c in cards]
    fragment = (
        f"# breastai offline bundle: {len(cards)} model(s)\nschema_version = {SCHEMA_VERSION}\n"
    )
    for c, _ in files:
        fragment += "\n" + render_table(c.name, c.toml_fields(for_bundle=True))
    payload = fragment.encode("utf-8")
    from breastai.io.atomic import atomic_file  # breastai.io imports numpy: not at import

    with atomic_file(out, on_error=os_error) as tmp:
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
        cards[name] = card_from_table(name, t, where, allow_bundled=False)
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
                install_stream(f, tmp, card.sha256, name=card.name, origin=origin)
            fresh = dataclasses.replace(card, path=None, repo_id=None, revision=None)
            if card.repo_id is not None:
                fresh = dataclasses.replace(fresh, repo_id=card.repo_id, revision=card.revision)
            register_model(fresh, tmp, weights_file=weights_file, force=force)
        drop_stamp(tmp)
        registered = load_registry(weights_file)[card.name]
        return ResolvedModel(registered, verify_card(registered, weights_file))
    target = model_file(card)
    if card.bundled:
        return ResolvedModel(card, verify_card(card, weights_file, full=True))
    if target.is_file() and not force:
        try:
            return ResolvedModel(card, verify_card(card, weights_file))
        except ChecksumMismatchError as exc:
            logger.warning("%s; installing it again from %s", exc, src.path)
    with src.open(member) as f:
        install_stream(f, target, card.sha256, name=card.name, origin=origin)
    return ResolvedModel(card, target)


def _tmp_parent(weights_file: Path | None) -> Path:
    parent = user_weights_file(weights_file).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, parent) from None
    return parent
