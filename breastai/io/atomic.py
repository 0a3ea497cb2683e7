"""Atomic outputs: a temporary file or folder beside the target, renamed into place on success.

Every writer of a single output file (reports, CSV, DICOM-SEG/SR, preview PNG) goes through
:func:`atomic_file`, every writer of an output folder (``breastai segment``'s ``OUT/<study>/``,
phantom studies) through :func:`atomic_dir`, so a failure never leaves a half-written output or a
stray temporary, and nothing the user had is replaced without ``force``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from breastai.errors import OutputError, OutputExistsError

__all__ = ["atomic_dir", "atomic_file", "check_new_dir"]


@contextlib.contextmanager
def atomic_file(path: Path, *, force: bool = True, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; ``os.replace`` it onto ``path`` on success.

    Parameters
    ----------
    path:
        The final file. Its folder is created when missing.
    force:
        Replace an existing ``path``; False raises :class:`OutputExistsError` before anything
        is written.
    suffix:
        Suffix of the temporary file (some writers choose the format from it).

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
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(
            f"Cannot write into {str(path.parent)!r}: {exc.strerror or exc}; choose a writable "
            "output folder."
        ) from None
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"Could not write {str(path)!r}: {exc.strerror or exc}.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise OutputError(
            f"Cannot write into {str(parent)!r}: {exc.strerror or exc}; choose a writable "
            "output folder."
        ) from None
    try:
        yield tmp
        _umask_permissions(tmp)
        check_new_dir(target, force=force, force_hint=force_hint)  # appeared meanwhile?
        old = None
        if target.exists() and target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        elif target.exists():
            old = parent / f".{target.name}.{os.getpid()}.old"
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except OSError:
            if old is not None:
                os.replace(old, target)  # put the user's folder back
            raise
        if old is not None:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(
            f"Could not write {str(target)!r}: {exc.strerror or exc} (nothing was left behind)."
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
