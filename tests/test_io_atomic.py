"""Tests of breastai.io.atomic: all or nothing, never overwrite without force."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from breastai.errors import OutputError, OutputExistsError
from breastai.io.atomic import atomic_file


def test_written_in_place_and_no_temp_left(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "r.json"  # missing folder is created
    with atomic_file(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]


def test_existing_file_kept_without_force(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(OutputExistsError, match="--force"), atomic_file(target, force=False):
        pytest.fail("must not get here")
    with atomic_file(target, force=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_failure_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(OutputError, match="No space left"), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(KeyError), atomic_file(target) as tmp:
        raise KeyError("bug")  # not an I/O problem: propagates unchanged
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_unwritable_folder_is_an_output_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="Cannot write into"), atomic_file(blocker / "r.json"):
        pytest.fail("must not get here")
