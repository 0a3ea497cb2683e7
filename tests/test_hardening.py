"""Issue 15 regressions outside the bad-input catalogue: no identifying data in any output,
output files and folders (modes, stale temporaries, writability), one-line errors and the log,
warnings that never reach the terminal raw, ``breastai doctor``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import make_study
from segment_factory import cli_model_args, make_model_pair
from typer.testing import CliRunner

from breastai.cli import app, one_line
from breastai.cohort import study_folder_name
from breastai.errors import OutputError
from breastai.io.atomic import atomic_dir, atomic_file, check_writable, clean_stale

runner = CliRunner()
SHAPE = (6, 12, 14)
NAME, PID, BIRTH = "Zyxwort^Quenby", "PID-8675309-X", "19010203"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BREASTAI_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_model_pair(tmp_path_factory.mktemp("models"))


def _seg_args(models: dict[str, Path], out: Path) -> list[str]:
    return ["-o", str(out), *cli_model_args(models, out.parent / "w.toml")]


def _phi(ds, k: int, z: int) -> None:
    ds.PatientName = NAME
    ds.PatientBirthDate = BIRTH


def _assert_no_phi(text: str, where: str) -> None:
    for value in (NAME, "Zyxwort", PID, BIRTH):
        assert value not in text, f"{value!r} in {where}"


def test_no_identifying_data_in_logs_reports_manifest_names(
    models: dict[str, Path], tmp_path: Path
) -> None:
    study = tmp_path / "case1"
    make_study(study, shape_zyx=SHAPE, patient_id=PID, per_file=_phi)
    (study / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00garbage")
    out = tmp_path / "out"
    log = tmp_path / "run.log"
    res = runner.invoke(
        app, ["--verbose", "--log", str(log), "segment", str(study), *_seg_args(models, out)]
    )
    assert res.exit_code == 0, res.output
    _assert_no_phi(res.stdout + res.stderr, "segment output")
    _assert_no_phi(log.read_text(), "the log file")
    assert "skipped" in log.read_text()  # the log is really written
    folder = out / study_folder_name(study)
    for path in folder.rglob("*"):
        _assert_no_phi(path.name, "a file name")
        if path.suffix in (".json", ".md", ".txt"):
            _assert_no_phi(path.read_text(), path.name)
    seg = (folder / "seg.dcm").read_bytes()
    assert PID.encode() in seg  # the DICOM-SEG legitimately copies the patient module
    info = runner.invoke(app, ["--verbose", "info", str(study), "--json"])
    assert info.exit_code == 0
    _assert_no_phi(info.stdout + info.stderr, "info")
    # the "holds 2 studies" refusal, on stderr and in segment --json
    make_study(tmp_path / "two" / "a", shape_zyx=SHAPE, tag="a", patient_id=PID, per_file=_phi)
    make_study(tmp_path / "two" / "b", shape_zyx=SHAPE, tag="b", patient_id=PID + "2")
    two = runner.invoke(app, ["info", str(tmp_path / "two")])
    assert two.exit_code == 1 and "holds 2 studies" in two.stderr
    _assert_no_phi(two.stdout + two.stderr, "the two-studies error")
    seg_json = runner.invoke(
        app, ["segment", str(tmp_path / "two"), *_seg_args(models, tmp_path / "o2"), "--json"]
    )
    assert seg_json.exit_code == 1
    doc = json.loads(seg_json.stdout)
    assert "holds 2 studies" in doc["results"][0]["error"]
    _assert_no_phi(seg_json.stdout + seg_json.stderr, "segment --json")


def test_segment_refuses_what_the_seg_writer_cannot_take(
    models: dict[str, Path], tmp_path: Path
) -> None:
    """Studies that `info` accepted and `segment` crashed on: refused when read, one line."""

    def other_series(ds, k: int, z: int) -> None:
        if k == 1 and z == 2:
            ds.SeriesInstanceUID = "1.2.3.4.5"

    study = tmp_path / "case"
    make_study(study, shape_zyx=SHAPE, per_file=other_series)
    res = runner.invoke(app, ["segment", str(study), *_seg_args(models, tmp_path / "out")])
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 1 and len(lines) == 1, res.stderr
    assert "SeriesInstanceUID" in lines[0] and "internal error" not in lines[0]
    assert not (tmp_path / "out" / study_folder_name(study)).exists()


def test_report_files_get_the_umask_mode(tmp_path: Path) -> None:
    """`tstage --out` wrote 0600 files (mkstemp); outputs get the umask's usual mode."""
    import SimpleITK as sitk

    arr = np.zeros((8, 20, 20), dtype=np.uint8)
    arr[3:6, 8:12, 8:12] = 1
    mask = sitk.GetImageFromArray(arr)
    mask.SetSpacing((0.8, 0.8, 2.0))
    sitk.WriteImage(mask, str(tmp_path / "tumor.nii.gz"))
    old = os.umask(0o022)
    try:
        res = runner.invoke(
            app, ["tstage", str(tmp_path / "tumor.nii.gz"), "--out", str(tmp_path / "r")]
        )
        with atomic_file(tmp_path / "x.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    for name in ("report.json", "report.md"):
        assert stat.S_IMODE((tmp_path / "r" / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o644


def test_stale_temporaries_of_dead_runs_are_removed(tmp_path: Path) -> None:
    dead = 4_194_304 + 12_345  # above Linux's pid_max: no such process
    stale = tmp_path / f".case.{dead}.abcd1234.tmp"
    stale.mkdir()
    (stale / "tumor.nii.gz").write_bytes(b"half")
    old_file = tmp_path / f".case.{dead}.old"
    old_file.mkdir()
    legacy = tmp_path / ".case.q1w2e3r4.tmp"
    legacy.mkdir()
    past = time.time() - 7200
    os.utime(legacy, (past, past))
    recent_legacy = tmp_path / ".case.a1b2c3d4.tmp"
    recent_legacy.mkdir()
    alive = tmp_path / f".case.{os.getppid()}.zzzz9999.tmp"
    alive.mkdir()
    other = tmp_path / f".other.{dead}.abcd1234.tmp"
    other.mkdir()
    with atomic_dir(tmp_path / "case") as tmp:
        (tmp / "a.txt").write_text("a")
    assert not stale.exists() and not old_file.exists() and not legacy.exists()
    assert recent_legacy.exists() and alive.exists() and other.exists()
    assert (tmp_path / "case" / "a.txt").is_file()
    assert clean_stale(tmp_path, "other") == [other]


def test_unwritable_output_is_refused_before_any_work(models: dict[str, Path], tmp_path: Path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="Cannot write into"):
        check_writable(tmp_path / "file" / "out")
    started = time.perf_counter()
    res = runner.invoke(
        app, ["segment", str(tmp_path / "missing-study"), *_seg_args(models, tmp_path / "file")]
    )
    assert res.exit_code == 1 and "Cannot write into" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert time.perf_counter() - started < 30


def test_one_line_sanitises_control_characters() -> None:
    assert one_line("a\nb\r\nc\td") == "a b c d"
    assert one_line("x\x1b[31my\x07") == "x\\x1b[31my\\x07"


def test_warnings_and_native_output_stay_off_the_terminal(tmp_path: Path) -> None:
    """A damaged file beside a good study: exit 0 and nothing on stderr (the skip is in the
    decisions and the log); with --verbose the log appears."""
    make_study(tmp_path / "s", shape_zyx=SHAPE)
    (tmp_path / "s" / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x01")
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-m", "breastai", "info", str(tmp_path / "s")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr
    verbose = subprocess.run(
        [sys.executable, "-m", "breastai", "--verbose", "info", str(tmp_path / "s")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert verbose.returncode == 0 and "skipped corrupt file" in verbose.stderr


def test_internal_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import breastai.io as bio

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(bio, "load_study", boom)
    make_study(tmp_path, shape_zyx=SHAPE)
    res = runner.invoke(app, ["info", str(tmp_path)])
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 1 and len(lines) == 1
    assert "internal error (RuntimeError: boom second line)" in lines[0]
    assert "Traceback" not in res.output


def test_doctor_library_and_cli() -> None:
    from breastai.system import CUDA_LIBRARIES, cpu_features, diagnose

    report = diagnose(try_session=True)
    doc = report.to_dict()
    for key in ("onnxruntime", "providers", "gpus", "cuda_libraries", "cpu", "cuda_used", "reason"):
        assert key in doc
    assert "CPUExecutionProvider" in report.providers
    assert len(report.cuda_libraries) == len(CUDA_LIBRARIES)
    cpu = cpu_features()
    assert cpu["logical_cores"] >= 1
    assert isinstance(cpu["avx512"], bool) and isinstance(cpu["bf16"], bool)
    if Path("/proc/cpuinfo").is_file():
        flags = Path("/proc/cpuinfo").read_text()
        assert cpu["avx512"] == (" avx512f" in flags)
        assert cpu["avx512_bf16"] == (" avx512_bf16" in flags)
    if not report.gpus:  # a CPU-only machine: CUDA is not used, and the reason says why
        assert report.cuda_used is False
        assert "CUDA" in report.reason and "not" in report.reason
    res = runner.invoke(app, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["reason"] == report.reason
    table = runner.invoke(app, ["doctor", "--no-session"], terminal_width=200)
    assert table.exit_code == 0 and "ONNX Runtime" in table.stdout and "CPU" in table.stdout


def test_segment_study_and_times_as_info_has_them(models: dict[str, Path], tmp_path: Path) -> None:
    """`segment --study UID` reads one study of a folder holding two; `--times` sets the clocks."""
    make_study(tmp_path / "two" / "a", shape_zyx=SHAPE, tag="a", study_uid="1.2.826.0.1.9.1")
    make_study(tmp_path / "two" / "b", shape_zyx=SHAPE, tag="b", study_uid="1.2.826.0.1.9.2")
    out = tmp_path / "out"
    res = runner.invoke(app, ["segment", str(tmp_path / "two"), *_seg_args(models, out)])
    assert res.exit_code == 1 and "holds 2 studies" in res.stderr
    args = [*_seg_args(models, out), "--study", "1.2.826.0.1.9.2", "--times", "0,70,140"]
    res = runner.invoke(app, ["segment", str(tmp_path / "two"), *args])
    assert res.exit_code == 0, res.output
    manifest = json.loads(
        (out / study_folder_name(tmp_path / "two") / "manifest.json").read_text()
    )
    assert manifest["study"]["study_uid"] == "1.2.826.0.1.9.2"
    assert [p["time_s"] for p in manifest["phases"]] == [0.0, 70.0, 140.0]
    res = runner.invoke(app, ["segment", str(tmp_path / "two"), *args, "--times", "0,x"])
    assert res.exit_code != 0 and "--times" in res.output
