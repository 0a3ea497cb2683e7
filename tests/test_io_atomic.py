"""Tests of breastai.io.atomic: all or nothing, never overwrite without force."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from breastai.errors import OutputError, OutputExistsError
from breastai.io.atomic import atomic_dir, atomic_file


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


def test_atomic_dir_new_empty_and_existing_targets(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "study"  # missing parents are created
    with atomic_dir(target) as tmp:
        assert tmp.parent == target.parent and not target.exists()
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.txt").write_text("a")
    assert (target / "sub" / "a.txt").read_text() == "a"
    assert [p.name for p in target.parent.iterdir()] == ["study"]  # no temporary left
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_dir(empty) as tmp:  # an empty folder counts as new
        (tmp / "b.txt").write_text("b")
    assert (empty / "b.txt").read_text() == "b"
    with pytest.raises(OutputExistsError, match="--force"), atomic_dir(target):
        pytest.fail("must not get here")
    with (
        pytest.raises(OutputExistsError, match="remove it first"),
        atomic_dir(target, force_hint=False),
    ):
        pytest.fail("must not get here")
    with atomic_dir(target, force=True) as tmp:
        assert (target / "sub" / "a.txt").exists()  # the old folder stays until the new is done
        (tmp / "c.txt").write_text("c")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "empty"]


def test_atomic_dir_failure_keeps_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "mine.txt").write_text("keep")
    with pytest.raises(OutputError, match="No space left"), atomic_dir(target, force=True) as tmp:
        (tmp / "half.nii.gz").write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(KeyError), atomic_dir(target, force=True):
        raise KeyError("bug")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in target.iterdir()] == ["mine.txt"]


def test_atomic_dir_refuses_a_folder_that_appeared_meanwhile(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(OutputExistsError), atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
        target.mkdir()
        (target / "theirs.txt").write_text("theirs")
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_gives_umask_modes(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "sub").mkdir()
            (tmp / "sub" / "f.txt").write_text("x")
    finally:
        os.umask(old)
    out = tmp_path / "out"
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # mkdtemp alone would give 0700
    assert stat.S_IMODE((out / "sub").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "sub" / "f.txt").stat().st_mode) == 0o644


def test_atomic_file_mode_and_error_hook(tmp_path: Path) -> None:
    import os
    import stat

    from breastai.io.atomic import atomic_write_text

    target = tmp_path / "w.toml"
    old = os.umask(0o022)
    try:
        atomic_write_text(target, "a = 1\n")
        assert stat.S_IMODE(target.stat().st_mode) == 0o644  # mkstemp alone would give 0600
        atomic_write_text(target, "a = 2\n", mode=0o600)
    finally:
        os.umask(old)
    assert target.read_text() == "a = 2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    def hook(exc: OSError, path: Path) -> OutputError:
        return OutputError(f"custom {path.name} errno {exc.errno}")

    with (
        pytest.raises(OutputError, match=r"^custom w.toml errno 28$"),
        atomic_file(target, on_error=hook),
    ):
        raise OSError(errno.ENOSPC, "No space left on device")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=r"^custom r.json errno"):
        atomic_write_text(blocker / "r.json", "{}", on_error=hook)
    assert target.read_text() == "a = 2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "w.toml"]


def test_atomic_file_path_for_a_third_party_writer(tmp_path: Path) -> None:
    """The temporary path keeps the suffix a writer chooses its format by (SimpleITK here)."""
    import SimpleITK as sitk

    target = tmp_path / "m.nii.gz"
    img = sitk.Image(3, 4, 5, sitk.sitkUInt8) + 7
    with atomic_file(target, suffix=".nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz")
        sitk.WriteImage(img, str(tmp), True)
    back = sitk.ReadImage(str(target))
    assert back.GetSize() == (3, 4, 5) and sitk.GetArrayViewFromImage(back).max() == 7
    assert [p.name for p in tmp_path.iterdir()] == ["m.nii.gz"]


def test_replace_dir_moves_a_staged_folder(tmp_path: Path) -> None:
    from breastai.io.atomic import replace_dir

    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "a.txt").write_text("new")
    target = tmp_path / "models" / "m"  # missing parent is created
    assert replace_dir(stage, target) == target
    assert (target / "a.txt").read_text() == "new" and not stage.exists()
    stage.mkdir()
    (stage / "b.txt").write_text("newer")
    with pytest.raises(OutputExistsError, match="--force"):
        replace_dir(stage, target)
    assert (stage / "b.txt").exists()  # refused: nothing moved
    replace_dir(stage, target, force=True)
    assert [p.name for p in target.iterdir()] == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["m"]  # no .old left
