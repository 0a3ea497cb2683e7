"""Atomic outputs: a temporary file or folder beside the target, renamed into place on success.

Every writer of a single output file (reports, CSV, DICOM-SEG/SR, preview PNG, checkpoints, ONNX
exports, weights.toml, model cards) goes through :func:`atomic_file` (or :func:`atomic_write_text`
for a text), every writer of an output folder (``breastai segment``'s ``OUT/<study>/``, phantom
studies) through :func:`atomic_dir`, and a folder built elsewhere is moved into place by
:func:`replace_dir`, so a failure never leaves a half-written output or a stray temporary, and
nothing the user had is replaced without ``force``. This is the only module of breastai that
renames files into place.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from breastai.errors import OutputError, OutputExistsError

__all__ = [
    "atomic_dir",
    "atomic_file",
    "atomic_write_text",
    "check_new_dir",
    "check_writable",
    "clean_stale",
    "replace_dir",
]

#: Turns an ``OSError`` met while writing ``path`` into the exception to raise (see
#: :func:`atomic_file`'s ``on_error``).
ErrorHook = Callable[[OSError, Path], BaseException]

#: Temporaries of a version that did not put its process id in the name are removed when they
#: are older than this (no write of one output takes that long).
LEGACY_TMP_AGE_S = 3600.0


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or unknown: keep it
    return True


def clean_stale(parent: Path, name: str, *, any_owner: bool = False) -> list[Path]:
    """Remove temporaries that dead runs left beside ``parent/name``.

    A run killed while writing (SIGKILL, power loss) leaves ``.<name>.<pid>.XXXX.tmp`` (or
    ``.<name>.<pid>.old``); it is removed when process ``pid`` no longer exists on this machine.
    Temporaries without a process id (``.<name>.XXXX.tmp``, older versions) are removed when
    older than :data:`LEGACY_TMP_AGE_S`. With ``any_owner`` (a caller that holds the lock of
    ``name``, so no other writer can exist, on any machine) every such temporary is removed.

    Returns
    -------
    list of Path
        What was removed.
    """
    parent = Path(parent)
    removed: list[Path] = []
    with_pid = re.compile(rf"^\.{re.escape(name)}\.(\d+)\.(?:[^/]*\.tmp|old)$")
    legacy = re.compile(rf"^\.{re.escape(name)}\.[A-Za-z0-9_]{{8}}\.tmp$")
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = with_pid.match(entry.name)
        try:
            if any_owner and (match is not None or legacy.match(entry.name)):
                stale = True
            elif match is not None:
                stale = not _alive(int(match.group(1)))
            elif legacy.match(entry.name):
                stale = now - entry.lstat().st_mtime > LEGACY_TMP_AGE_S
            else:
                continue
            if not stale:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
        except OSError:
            continue
    return removed


def check_writable(folder: Path, *, create: bool = True) -> None:
    """Check that files can be written in ``folder`` (creating it first when ``create``).

    Called before any work (reading, inference) so that an unwritable output folder is
    reported in seconds, not after the whole run. With ``create=False`` nothing is created:
    the folder, or its nearest existing parent, must be a folder this process can write into.

    Raises
    ------
    OutputError
        The folder cannot be created or written (nothing is left behind).
    """
    folder = Path(folder).absolute()
    probe_dir = folder
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        while not probe_dir.exists() and probe_dir != probe_dir.parent:
            probe_dir = probe_dir.parent
        if not probe_dir.is_dir():
            raise NotADirectoryError(20, f"{str(probe_dir)!r} is not a folder")
        fd, name = tempfile.mkstemp(prefix=f".breastai-write-check.{os.getpid()}.", dir=probe_dir)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OutputError(
            f"Cannot write into the output folder {str(folder)!r}: {exc.strerror or exc}; "
            "choose a writable output folder with -o (checked before any work)."
        ) from None


def _umask_file(path: Path) -> None:
    """mkstemp creates 0600 files; give the output the usual umask mode (0644 with umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_file(
    path: Path,
    *,
    force: bool = True,
    suffix: str = ".tmp",
    mode: int | None = None,
    on_error: ErrorHook | None = None,
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; ``os.replace`` it onto ``path`` on success.

    The temporary path may be handed to any writer (``open``, ``sitk.WriteImage``,
    ``torch.save``, ``torch.onnx.export``, ``zipfile``): it exists, empty, and is replaced by
    whatever the writer puts there.

    Parameters
    ----------
    path:
        The final file. Its folder is created when missing.
    force:
        Replace an existing ``path``; False raises :class:`OutputExistsError` before anything
        is written.
    suffix:
        Suffix of the temporary file (some writers choose the format from it).
    mode:
        Permission bits of the final file; default the umask's usual mode (0644 with umask 022).
    on_error:
        ``on_error(exc, path)`` gives the exception raised for an ``OSError`` (creating the
        folder or the temporary file, writing, renaming); default an :class:`OutputError`
        naming the folder or the file.

    Yields
    ------
    Path
        The temporary file (created empty) to write.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``force`` is False.
    OutputError
        The folder or the file cannot be written (the temporary file is removed).
    """
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{str(path)!r} already exists; pass --force to replace it.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(path.parent, path.name)
        fd, name = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent
        )
        os.close(fd)
    except OSError as exc:
        if on_error is not None:
            raise on_error(exc, path) from None
        raise OutputError(
            f"Cannot write into {str(path.parent)!r}: {exc.strerror or exc}; choose a writable "
            "output folder."
        ) from None
    tmp = Path(name)
    try:
        yield tmp
        if mode is None:
            _umask_file(tmp)
        else:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if on_error is not None:
            raise on_error(exc, path) from None
        raise OutputError(f"Could not write {str(path)!r}: {exc.strerror or exc}.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(
    path: Path,
    text: str,
    *,
    force: bool = True,
    mode: int | None = None,
    on_error: ErrorHook | None = None,
) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_file` (same parameters).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    with atomic_file(path, force=force, mode=mode, on_error=on_error) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def check_new_dir(target: Path, *, force: bool = False, force_hint: bool = True) -> None:
    """Refuse an output folder that exists and is not empty (unless ``force``).

    Parameters
    ----------
    target:
        The output folder.
    force:
        Accept an existing folder (it will be replaced).
    force_hint:
        Name ``--force`` in the message (False for commands that have no such option).

    Raises
    ------
    OutputExistsError
        ``target`` exists (a non-empty folder, or not a folder) and ``force`` is False.
    """
    target = Path(target)
    if force or not target.exists():
        return
    if target.is_dir() and not any(target.iterdir()):
        return
    what = "already exists and is not empty" if target.is_dir() else "exists and is not a folder"
    raise OutputExistsError(
        f"Output folder {str(target)!r} {what}; "
        + (
            "pass --force to replace it."
            if force_hint
            else "choose another folder or remove it first."
        )
    )


def _umask_permissions(folder: Path) -> None:
    """mkdtemp/mkstemp create private (0700/0600) entries; give them the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o777 & ~umask)
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o777 & ~umask)
        for f in files:
            path = os.path.join(root, f)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode & 0o111 | (0o666 & ~umask))


@contextlib.contextmanager
def atomic_dir(target: Path, *, force: bool = False, force_hint: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; rename it to ``target`` on success.

    Parameters
    ----------
    target:
        The final folder. It must not exist or be an empty folder, unless ``force``: then an
        existing one is replaced, only after the new one is complete.
    force:
        Replace an existing ``target``.
    force_hint:
        Name ``--force`` in the refusal (False for commands without that option).

    Yields
    ------
    Path
        The temporary folder to fill. Its entries get the umask's usual modes on success.

    Raises
    ------
    OutputExistsError
        ``target`` exists (or appeared meanwhile) and is not empty, and ``force`` is False.
    OutputError
        The parent folder cannot be written, or renaming fails (the temporary folder is
        removed; an old ``target`` is left as it was).
    """
    target = Path(target)
    check_new_dir(target, force=force, force_hint=force_hint)
    parent = target.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        clean_stale(parent, target.name)
        tmp = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=parent)
        )
    except OSError as exc:
        raise OutputError(
            f"Cannot write into {str(parent)!r}: {exc.strerror or exc}; choose a writable "
            "output folder."
        ) from None
    try:
        yield tmp
        _umask_permissions(tmp)
        check_new_dir(target, force=force, force_hint=force_hint)  # appeared meanwhile?
        _swap_in(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(
            f"Could not write {str(target)!r}: {exc.strerror or exc} (nothing was left behind)."
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(src: Path, target: Path) -> None:
    """Rename the folder ``src`` onto ``target``; an old ``target`` is removed only after.

    Raises ``OSError`` with the user's ``target`` put back when the rename fails.
    """
    old = None
    if target.exists() and target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    elif target.exists():
        old = target.absolute().parent / f".{target.name}.{os.getpid()}.old"
        os.replace(target, old)
    try:
        os.replace(src, target)
    except OSError:
        if old is not None:
            os.replace(old, target)  # put the user's folder back
        raise
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def replace_dir(src: Path, target: Path, *, force: bool = False, force_hint: bool = True) -> Path:
    """Move a complete folder ``src`` (built on the same file system) onto ``target``.

    For a folder that is staged first and published later (an imported model written once and
    moved to one or two places); :func:`atomic_dir` is the usual form. An existing ``target``
    is replaced (with ``force``) only after the rename succeeded; the modes of ``src`` are kept.

    Raises
    ------
    OutputExistsError
        ``target`` exists, is not empty, and ``force`` is False.
    OutputError
        The rename fails (``src`` is left where it was, an old ``target`` as it was).
    """
    src, target = Path(src), Path(target)
    check_new_dir(target, force=force, force_hint=force_hint)
    try:
        target.absolute().parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target.absolute().parent, target.name)
        _swap_in(src, target)
    except OSError as exc:
        raise OutputError(f"Could not write {str(target)!r}: {exc.strerror or exc}.") from None
    return target
