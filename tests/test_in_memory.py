"""The in-memory API: ``segment_study(..., out_dir=None)`` writes nothing and returns what a
written run puts on disk; ``write_outputs`` writes it as the direct run does."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from segment_factory import image_from_array, make_model_pair, write_classic_study

from breastai.errors import OutputExistsError
from breastai.pipeline import Settings, StudyOutputs, load_models, segment_study, write_outputs

# written per run: timestamps and seconds differ between two runs, nothing else may
_VOLATILE = {"created_utc", "timings_s"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_model_pair(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def dicom_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("dicom") / "case1"
    info = write_classic_study(folder, orientation="oblique")
    return folder, info


def _settings(models: dict[str, Path], weights_file: Path, **kw) -> Settings:
    return Settings(
        device="cpu",
        weights=str(models["tumor"]),
        breast_weights=str(models["breast"]),
        weights_file=weights_file,
        save_probabilities=True,
        **kw,
    )


def _tree(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every entry under the roots: path -> (size, mtime in ns)."""
    out: dict[str, tuple[int, int]] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                out[p] = (st.st_size, st.st_mtime_ns)
    return out


def _stable(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in _VOLATILE}


def _seg_pixels(path: Path) -> np.ndarray:
    return pydicom.dcmread(str(path)).pixel_array


@pytest.fixture()
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty cwd, temp folder and BREASTAI_HOME, so that any write would be seen."""
    dirs = {k: tmp_path / k for k in ("cwd", "tmp", "home")}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.chdir(dirs["cwd"])
    monkeypatch.setenv("TMPDIR", str(dirs["tmp"]))
    monkeypatch.setattr(tempfile, "tempdir", str(dirs["tmp"]))
    monkeypatch.setenv("BREASTAI_HOME", str(dirs["home"]))
    return dirs


def test_in_memory_writes_nothing_and_equals_the_written_run(
    models, dicom_study, tmp_path: Path, isolated: dict[str, Path]
) -> None:
    folder, info = dicom_study
    settings = _settings(models, tmp_path / "home" / "user-weights.toml")
    # Opening the models writes once, before the snapshot: the weights' verification stamps
    # ($BREASTAI_HOME/stamps) and OpenVINO's telemetry session file ($TMPDIR/.ses).
    loaded = load_models(settings)
    watched = (tmp_path, folder, models["tumor"].parent)
    before = _tree(*watched)
    stages: list[str] = []
    mem = segment_study(
        folder, settings=settings, models=loaded, progress=lambda s, f: stages.append(s)
    )
    assert _tree(*watched) == before  # nothing written: no output, no temp file, no cache
    assert isinstance(mem, StudyOutputs)
    assert stages[-1] == "write"

    ref = image_from_array(info["phases"][1], info)  # the study's reference grid
    assert set(mem.masks) == {"breast", "tumor", "tumor_probability"}
    for img in mem.masks.values():
        assert img.GetSize() == ref.GetSize()
        np.testing.assert_allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(img.GetDirection(), ref.GetDirection(), atol=1e-6)
    lesion = sitk.GetArrayViewFromImage(mem.masks["tumor"]) > 0
    assert lesion.any() and not lesion[info["heart"]].any()
    assert mem.report["lesion_count"] == mem.measurements.lesion_count >= 1
    assert mem.summary["t_category"] == mem.report["t_category"]

    out = tmp_path / "out"
    res = segment_study(folder, out_dir=out, settings=settings)
    written = out / "case1"
    assert res.ok and res.out_dir == written
    assert sorted(p.name for p in written.iterdir()) == sorted(res.files) == sorted(mem.files)

    for stem, img in mem.masks.items():
        disk = sitk.ReadImage(str(written / f"{stem}.nii.gz"))
        assert disk.GetPixelID() == img.GetPixelID()
        np.testing.assert_array_equal(sitk.GetArrayFromImage(disk), sitk.GetArrayFromImage(img))
        assert disk.GetSize() == img.GetSize()
        np.testing.assert_allclose(disk.GetSpacing(), img.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(disk.GetOrigin(), img.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(disk.GetDirection(), img.GetDirection(), atol=1e-6)

    assert json.loads(json.dumps(mem.report)) == json.loads((written / "report.json").read_text())
    manifest = json.loads((written / "manifest.json").read_text())
    assert _stable(json.loads(json.dumps(mem.manifest, default=str))) == _stable(manifest)
    assert manifest["outputs"] == mem.files == res.files


def test_write_outputs_gives_the_files_of_the_direct_run(
    models, dicom_study, tmp_path: Path, isolated: dict[str, Path]
) -> None:
    folder, _ = dicom_study
    settings = _settings(models, tmp_path / "home" / "user-weights.toml")
    direct = segment_study(folder, out_dir=tmp_path / "direct", settings=settings)
    mem = segment_study(folder, settings=settings)
    manifest_before = json.dumps(mem.manifest, default=str)
    res = write_outputs(mem, tmp_path / "later")
    assert json.dumps(mem.manifest, default=str) == manifest_before  # the result is not changed
    a, b = tmp_path / "direct" / "case1", tmp_path / "later" / "case1"
    assert res.files == direct.files
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for name in direct.files:
        if name == "manifest.json":
            ma, mb = (json.loads((d / name).read_text()) for d in (a, b))
            assert _stable(ma) == _stable(mb)
            assert set(ma["timings_s"]) == set(mb["timings_s"])
        elif name == "seg.dcm":  # new UIDs per object; the segments' pixels are the same
            np.testing.assert_array_equal(_seg_pixels(a / name), _seg_pixels(b / name))
        else:  # NIfTI, report, preview: the same bytes
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for key in ("lesion_count", "t_category", "tumor_volume_ml", "breast_volume_ml"):
        assert getattr(res, key) == getattr(direct, key)

    # the usual output rules: no overwrite without force, a complete replacement with it
    marker = b / "user-note.txt"
    marker.write_text("mine")
    with pytest.raises(OutputExistsError):
        write_outputs(mem, tmp_path / "later")
    assert marker.read_text() == "mine"
    write_outputs(mem, tmp_path / "later", force=True)
    assert not marker.exists() and sorted(p.name for p in b.iterdir()) == sorted(direct.files)
    assert not [p for p in (tmp_path / "later").iterdir() if p.name.startswith(".")]
