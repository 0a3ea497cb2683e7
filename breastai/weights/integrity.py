"""Integrity of model files: sha256, stamps, verification, and installing a file hash-checked.

A file's sha256 is computed in full before its first use and recorded in a stamp
(``$BREASTAI_HOME/stamps/*.json``: path, size, mtime_ns, inode, sha256). Every later load compares
size, mtime and inode with the stamp and hashes again only when they differ. A mismatch raises
:class:`~breastai.errors.ChecksumMismatchError` naming the file, the expected and the found hash.
Files are installed through :func:`breastai.io.atomic.atomic_file`, their sha256 checked on the
way.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import IO

from breastai.errors import (
    ChecksumMismatchError,
    OutputError,
    WeightsError,
    WeightsNotFoundError,
)
from breastai.weights.cards import PLACEHOLDER_SHA256, SHA256_RE
from breastai.weights.paths import absolute, breastai_home

__all__ = [
    "current_sha",
    "drop_stamp",
    "install_file",
    "install_stream",
    "os_error",
    "read_stamp",
    "sha256_file",
    "verify_file",
    "write_stamp",
]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


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
    key = hashlib.sha256(str(absolute(path)).encode("utf-8")).hexdigest()[:32]
    return breastai_home() / "stamps" / f"{key}.json"


def _file_identity(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def read_stamp(path: Path, st: os.stat_result) -> str | None:
    """The sha256 recorded for ``path`` if its size, mtime and inode still match, else None."""
    try:
        data = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("path") != str(absolute(path)):
        return None
    if any(data.get(k) != v for k, v in _file_identity(st).items()):
        return None
    sha = data.get("sha256")
    return sha if isinstance(sha, str) and SHA256_RE.match(sha) else None


def write_stamp(path: Path, st: os.stat_result, sha: str) -> None:
    stamp = _stamp_path(path)
    data = {"path": str(absolute(path)), **_file_identity(st), "sha256": sha}
    from breastai.io.atomic import atomic_write_text  # breastai.io imports numpy: not at import

    try:
        atomic_write_text(stamp, json.dumps(data))
    except OutputError as exc:  # a read-only home only costs a full hash next time
        logger.debug("could not write stamp %s: %s", stamp, exc)


def drop_stamp(path: Path) -> None:
    with contextlib.suppress(OSError):
        _stamp_path(path).unlink(missing_ok=True)


def current_sha(path: Path, *, full: bool) -> tuple[str, bool]:
    """(sha256, hashed_now): from the stamp when it still matches, else hashed and stamped."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise WeightsNotFoundError(f"model file {str(path)!r} does not exist.") from None
    if not full:
        sha = read_stamp(path, st)
        if sha is not None:
            return sha, False
    sha = sha256_file(path)
    st_after = path.stat()
    if _file_identity(st_after) == _file_identity(st):
        write_stamp(path, st, sha)
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
    sha, _ = current_sha(path, full=full)
    if sha == expected:
        return path
    if expected == PLACEHOLDER_SHA256:
        raise WeightsError(
            f"{label}file {str(path)!r} has no pinned sha256 yet (placeholder in weights.toml); "
            f"its sha256 is {sha}: fill it in (the demo-weights script does this for bundled "
            "models)."
        )
    drop_stamp(path)
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


def os_error(exc: OSError, target: Path) -> OutputError:
    """The one-line error for a failed write of ``target`` (the ``on_error`` of every atomic
    write of this package: it names the cause and ``BREASTAI_HOME``)."""
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


def install_stream(
    src: IO[bytes], target: Path, expected_sha256: str, *, name: str, origin: str
) -> Path:
    """Copy a stream to ``target`` through a temporary file, checking the sha256 on the way."""
    from breastai.io.atomic import atomic_file  # breastai.io imports numpy: not at import

    with atomic_file(target, on_error=os_error) as tmp:
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
    write_stamp(target, target.stat(), expected_sha256)
    return target


def install_file(
    src: Path, target: Path, expected_sha256: str, *, name: str, origin: str = ""
) -> Path:
    if absolute(src) == absolute(target):
        return verify_file(target, expected_sha256, name=name, full=True)
    try:
        with open(src, "rb") as f:
            return install_stream(
                f, target, expected_sha256, name=name, origin=origin or repr(str(src))
            )
    except FileNotFoundError:
        raise WeightsNotFoundError(f"model file {str(src)!r} does not exist.") from None
