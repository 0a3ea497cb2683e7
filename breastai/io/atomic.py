"""Atomic file outputs: a temporary file beside the target, renamed into place on success.

Every writer of a single output file (reports, CSV, DICOM-SEG/SR, preview PNG) goes through
:func:`atomic_file`, so a failure never leaves a half-written file or a stray temporary file, and
an existing file is never replaced without ``force``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from breastai.errors import OutputError, OutputExistsError

__all__ = ["atomic_file"]


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
