"""breastai.cohort without Ray: stable names, study lists, cohort tables, resume, locks."""

from __future__ import annotations

import csv
import fcntl
import json
import os
from pathlib import Path

import pytest
from segment_factory import cli_model_args, make_model_pair, write_classic_study
from typer.testing import CliRunner

from breastai.cli import app
from breastai.cohort import (
    ROW_FIELDS,
    read_study_list,
    run_cohort,
    study_folder_name,
)
from breastai.errors import InputError, OutputError
from breastai.pipeline import Settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BREASTAI_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three studies all in folders called 'dicom', and a broken one (also 'dicom')."""
    root = tmp_path_factory.mktemp("cohort")
    models = make_model_pair(root / "models")
    studies = []
    for p in ("p1", "p2", "p3"):
        write_classic_study(root / p / "dicom", shape=(8, 24, 30))
        studies.append(root / p / "dicom")
    (root / "broken" / "dicom").mkdir(parents=True)
    (root / "broken" / "dicom" / "x.dcm").write_bytes(b"not dicom at all")
    return {"root": root, "models": models, "studies": studies, "broken": root / "broken/dicom"}


def _settings(c: dict, **kw) -> Settings:
    return Settings(
        device="cpu",
        weights=str(c["models"]["tumor"]),
        breast_weights=str(c["models"]["breast"]),
        weights_file=c["root"] / "none.toml",
        **kw,
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _mtimes(out: Path) -> dict[str, int]:
    return {
        str(p.relative_to(out)): p.stat().st_mtime_ns
        for p in out.rglob("*")
        if p.is_file() and ".locks" not in p.parts and not p.name.startswith("cohort.")
    }


def test_folder_names_depend_on_the_study_alone(tmp_path: Path, monkeypatch) -> None:
    a, b = tmp_path / "x" / "dicom", tmp_path / "y" / "dicom"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    na, nb = study_folder_name(a), study_folder_name(b)
    assert na != nb and na.startswith("dicom-") and nb.startswith("dicom-")
    monkeypatch.chdir(tmp_path)
    assert study_folder_name(Path("x/dicom")) == na  # relative or absolute: same study
    (tmp_path / "link").symlink_to(a)
    assert study_folder_name(tmp_path / "link") == na  # symlinks resolved
    assert study_folder_name(tmp_path / "case 7.nii.gz").startswith("case_7-")


def test_study_list_lines_and_csv(tmp_path: Path) -> None:
    for p in ("a", "b"):
        (tmp_path / p).mkdir()
    (tmp_path / "list.txt").write_text("# cohort\na\n\n" + str(tmp_path / "b") + "\n")
    assert read_study_list(tmp_path / "list.txt") == [tmp_path / "a", tmp_path / "b"]
    (tmp_path / "list.csv").write_text("id,Path,age\n1,b,50\n2,a,60\n")
    assert read_study_list(tmp_path / "list.csv") == [tmp_path / "b", tmp_path / "a"]
    (tmp_path / "nopath.csv").write_text("id,folder\n1,a\n")
    with pytest.raises(InputError, match="no 'path' column"):
        read_study_list(tmp_path / "nopath.csv")
    (tmp_path / "missing.txt").write_text("a\nnope1\nnope2\n")
    with pytest.raises(InputError, match=r"2 of 3 paths .* do not exist \('.*nope1'"):
        read_study_list(tmp_path / "missing.txt")


def test_run_rerun_and_changed_input(cohort: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    studies = [*cohort["studies"], cohort["broken"]]
    first = run_cohort(studies, out_dir=out, settings=_settings(cohort))
    assert [r.status for r in first.rows] == ["ok", "ok", "ok", "failed"]
    assert first.rows[3].error and "\n" not in first.rows[3].error
    folders = {r.folder for r in first.rows[:3]}
    assert folders == {study_folder_name(s) for s in cohort["studies"]} and len(folders) == 3
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        [*folders, "cohort.csv", "cohort.json"]
    )
    table = _read_csv(out / "cohort.csv")
    assert list(table[0]) == list(ROW_FIELDS)
    assert [t["status"] for t in table] == ["ok", "ok", "ok", "failed"]
    assert table[0]["lesion_count"] == "1" and table[0]["t_category"] == "T1b"
    doc = json.loads((out / "cohort.json").read_text())
    assert doc["counts"] == {"ok": 3, "failed": 1, "skipped": 0}
    assert [r["folder"] for r in doc["rows"]] == [t["folder"] for t in table]
    manifest = json.loads((out / table[0]["folder"] / "manifest.json").read_text())
    assert len(manifest["cohort"]["key"]) == 64

    # a rerun in another order, on a subset: same folders, nothing redone, measures kept
    before = _mtimes(out)
    again = run_cohort(studies[::-1][:3], out_dir=out, settings=_settings(cohort))
    assert [r.status for r in again.rows] == ["failed", "skipped", "skipped"]
    assert [r.folder for r in again.rows[1:]] == [first.rows[2].folder, first.rows[1].folder]
    assert again.rows[1].lesion_count == 1 and again.rows[1].t_category == "T1b"
    assert _mtimes(out) == before

    # other settings: refused with one line (the user's folder is kept) unless --force
    other = run_cohort(studies[:1], out_dir=out, settings=_settings(cohort, min_volume_mm3=20))
    assert other.rows[0].status == "failed" and "--force" in (other.rows[0].error or "")
    assert _mtimes(out) == before
    forced = run_cohort(
        studies[:1], out_dir=out, settings=_settings(cohort, min_volume_mm3=20, force=True)
    )
    assert forced.rows[0].status == "ok"


def test_incomplete_output_and_leftovers_are_redone(cohort: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    study = cohort["studies"][0]
    run_cohort([study], out_dir=out, settings=_settings(cohort))
    folder = out / study_folder_name(study)
    (folder / "tumor.nii.gz").unlink()  # incomplete (same key)
    stale = out / f".{folder.name}.abcd1234.tmp"  # what a killed writer leaves
    stale.mkdir()
    (stale / "breast.nii.gz").write_bytes(b"half")
    # a killed writer on another node: its pid may be alive here, but the study lock says the
    # writer is gone
    remote = out / f".{folder.name}.{os.getppid()}.wxyz9876.tmp"
    remote.mkdir()
    res = run_cohort([study], out_dir=out, settings=_settings(cohort))
    assert res.rows[0].status == "ok"
    assert (folder / "tumor.nii.gz").is_file() and not stale.exists() and not remote.exists()


def test_a_study_locked_by_another_run_is_left_alone(cohort: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    study = cohort["studies"][1]
    lock = out / ".locks" / f"{study_folder_name(study)}.lock"
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another run would hold it
        os.write(fd, b"otherhost 4242\n")
        res = run_cohort([study], out_dir=out, settings=_settings(cohort))
    finally:
        os.close(fd)
    assert res.rows[0].status == "skipped" and "otherhost 4242" in (res.rows[0].error or "")
    assert not (out / study_folder_name(study)).exists()
    assert run_cohort([study], out_dir=out, settings=_settings(cohort)).rows[0].status == "ok"


def test_unwritable_output_fails_before_anything(cohort: dict, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        run_cohort(cohort["studies"], out_dir=blocker / "out", settings=_settings(cohort))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _cli_args(c: dict, out: Path) -> list[str]:
    return ["-o", str(out), *cli_model_args(c["models"], c["root"] / "n.toml")]


def test_cli_studies_from_and_bad_inputs(cohort: dict, tmp_path: Path, monkeypatch) -> None:
    import sys

    lst = tmp_path / "studies.csv"
    lst.write_text("path,note\n" + "\n".join(f"{s},x" for s in cohort["studies"][:2]) + "\n")
    out = tmp_path / "out"
    res = runner.invoke(app, ["segment", "--studies-from", str(lst), *_cli_args(cohort, out)])
    assert res.exit_code == 0, res.output
    assert [r["status"] for r in _read_csv(out / "cohort.csv")] == ["ok", "ok"]

    bad = tmp_path / "bad.txt"
    bad.write_text(f"{cohort['studies'][0]}\n{tmp_path / 'gone'}\n")
    res = runner.invoke(app, ["segment", "--studies-from", str(bad), *_cli_args(cohort, out / "x")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "1 of 2 paths" in res.stderr
    assert not (out / "x").exists()

    blocker = tmp_path / "blocker"
    blocker.write_text("")
    args = _cli_args(cohort, blocker / "out")
    res = runner.invoke(app, ["segment", str(cohort["studies"][0]), *args])
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "Cannot write into the output folder" in res.stderr

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the [cluster] extra were missing
    res = runner.invoke(
        app, ["segment", str(cohort["studies"][0]), "--ray", "local", *_cli_args(cohort, out)]
    )
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "pip install 'breastai[cluster]'" in res.stderr


def test_ctrl_c_writes_the_table_of_what_is_done(cohort: dict, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    studies = []
    n = 8  # enough that a machine starving this test's poll loop cannot finish them all first
    for k in range(n):
        write_classic_study(tmp_path / f"s{k}" / "dicom", shape=(24, 64, 80))
        studies.append(str(tmp_path / f"s{k}" / "dicom"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "breastai", "segment", *studies, *_cli_args(cohort, out)]
    # A test run earlier in the session may leave SIGINT ignored, and a child inherits that
    # (Python then never raises KeyboardInterrupt): give the child the default disposition.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.is_dir() and p.name.startswith("dicom-") for p in out.glob("*")):
            break  # the first study is done
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    # the console wraps at 80 columns when stderr is not a terminal, wherever the path ends
    assert "Traceback" not in stderr and "run the same command again" in " ".join(stderr.split())
    doc = json.loads((out / "cohort.json").read_text())
    done = [r["folder"] for r in doc["rows"]]
    assert doc["interrupted"] is True and 1 <= len(done) < n
    assert all(r["status"] == "ok" for r in doc["rows"])
    visible = [p for p in out.iterdir() if p.name.startswith("dicom-")]
    assert set(done) <= {p.name for p in visible}
    assert all((p / "manifest.json").is_file() for p in visible)  # every folder is complete
    assert not [p for p in out.iterdir() if p.name.endswith((".tmp", ".old"))]
