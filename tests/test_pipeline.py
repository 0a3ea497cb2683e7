"""End-to-end tests of breastai.pipeline with tiny analytic ONNX models on synthetic studies."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from segment_factory import image_from_array, make_model_pair, study_from_info, write_classic_study

from breastai import RESEARCH_NOTICE
from breastai.errors import InputError, OutputError, OutputExistsError, ParameterError
from breastai.inference import OPENVINO_CPU, openvino_available, openvino_bf16_available
from breastai.pipeline import STAGES, Settings, segment_studies, segment_study
from breastai.postprocess import DEFAULT_MIN_ENHANCEMENT_PCT
from breastai.study import Phase, Study


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BREASTAI_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_model_pair(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def dicom_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("dicom") / "case1"
    info = write_classic_study(folder, orientation="oblique")
    return folder, info


def _settings(models: dict[str, Path], tmp: Path, **kw) -> Settings:
    return Settings(
        device="cpu",
        weights=str(models["tumor"]),
        breast_weights=str(models["breast"]),
        weights_file=tmp / "user-weights.toml",
        **kw,
    )


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * (a & b).sum() / max(1, a.sum() + b.sum())


def _same_geometry(img: sitk.Image, ref: sitk.Image) -> None:
    assert img.GetSize() == ref.GetSize()
    np.testing.assert_allclose(img.GetSpacing(), ref.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(img.GetDirection(), ref.GetDirection(), atol=1e-6)


def test_dicom_end_to_end(models, dicom_study, tmp_path: Path) -> None:
    folder, info = dicom_study
    stages: list[str] = []
    res = segment_study(
        folder,
        out_dir=tmp_path / "out",
        settings=_settings(models, tmp_path, save_probabilities=True),
        progress=lambda stage, f: stages.append(stage),
    )
    out = tmp_path / "out" / "case1"
    assert res.ok and res.out_dir == out
    expected = {
        "breast.nii.gz",
        "tumor.nii.gz",
        "tumor_probability.nii.gz",
        "seg.dcm",
        "report.json",
        "report.md",
        "preview.png",
        "manifest.json",
    }
    assert {p.name for p in out.iterdir()} == expected == set(res.files)
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == list(STAGES)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]

    ref = image_from_array(info["phases"][1], info)  # the reference phase's native grid
    breast = sitk.ReadImage(str(out / "breast.nii.gz"))
    tumor = sitk.ReadImage(str(out / "tumor.nii.gz"))
    prob = sitk.ReadImage(str(out / "tumor_probability.nii.gz"))
    for img in (breast, tumor, prob):
        _same_geometry(img, ref)
    assert breast.GetPixelID() == tumor.GetPixelID() == sitk.sitkUInt8
    t = sitk.GetArrayFromImage(tumor)
    assert _dice(t, info["lesion"]) > 0.85
    assert _dice(sitk.GetArrayFromImage(breast), info["breast"]) > 0.9
    assert not (t > 0)[info["heart"]].any()  # the heart's enhancement is outside the breast
    assert set(np.unique(t)) <= {0, 1}

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["notice"] == RESEARCH_NOTICE
    assert manifest["models"]["tumor"]["name"] == "tiny-tumor"
    assert len(manifest["models"]["tumor"]["sha256"]) == 64
    assert manifest["demo_weights"] is True
    ov = openvino_available()  # auto on the CPU: OpenVINO when installed
    assert manifest["device"]["provider"] == (OPENVINO_CPU if ov else "CPUExecutionProvider")
    assert manifest["device"]["runtime"].startswith("openvino " if ov else "onnxruntime ")
    assert manifest["device"]["precision"] == "fp32" == res.precision
    assert [p["time_s"] for p in manifest["phases"]] == pytest.approx([0, 60, 120])
    assert manifest["time_mask"] == [1, 1, 1, 0, 0, 0]
    assert set(manifest["timings_s"]) >= set(STAGES) | {"total"}
    assert manifest["windows"]["tumor"] <= manifest["windows"]["tumor_full_volume"]
    report = json.loads((out / "report.json").read_text())
    assert report["lesion_count"] == 1 == res.lesion_count
    assert "Research use only" in (out / "report.md").read_text()


def test_existing_output_untouched_without_force(models, dicom_study, tmp_path: Path) -> None:
    folder, _ = dicom_study
    out = tmp_path / "out" / "case1"
    out.mkdir(parents=True)
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="--force"):
        segment_study(folder, out_dir=tmp_path / "out", settings=_settings(models, tmp_path))
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    segment_study(
        folder, out_dir=tmp_path / "out", settings=_settings(models, tmp_path, force=True)
    )
    assert not (out / "mine.txt").exists() and (out / "tumor.nii.gz").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["case1"]  # no temp or .old left


def test_unwritable_output_leaves_nothing(models, dicom_study, tmp_path: Path) -> None:
    folder, _ = dicom_study
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="Cannot write"):
        segment_study(folder, out_dir=blocker / "out", settings=_settings(models, tmp_path))
    assert blocker.read_text() == "x"


def test_disk_full_while_writing_leaves_nothing(
    models, dicom_study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import breastai.preview

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(breastai.preview, "write_preview", full)
    folder, _ = dicom_study
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="No space left"):
        segment_study(folder, out_dir=out, settings=_settings(models, tmp_path))
    assert list(out.iterdir()) == []


def test_no_breast_mask_keeps_the_heart(models, dicom_study, tmp_path: Path) -> None:
    folder, info = dicom_study
    res = segment_study(
        folder,
        out_dir=tmp_path,
        settings=_settings(models, tmp_path, use_breast_mask=False, write_seg=False),
    )
    t = sitk.GetArrayFromImage(sitk.ReadImage(str(res.out_dir / "tumor.nii.gz")))
    assert (t > 0)[info["heart"]].mean() > 0.5  # the false positive the breast mask removes
    assert res.lesion_count == 2
    assert "seg.dcm" not in res.files


def test_components_that_do_not_enhance_enough_are_removed(
    models, dicom_study, tmp_path: Path
) -> None:
    # The study's lesion rises 200 -> 1500 (+650 %), its "heart" 100 -> 1500 (+1400 %); the tiny
    # tumor model finds both without the breast mask. A rule above the lesion's enhancement and
    # below the heart's keeps only the heart: the rule reads each component's own signal.
    folder, info = dicom_study
    kw = {"use_breast_mask": False, "write_seg": False, "write_preview": False}
    keep = segment_study(folder, settings=_settings(models, tmp_path, **kw))
    cut = segment_study(
        folder, settings=_settings(models, tmp_path, min_enhancement_pct=1000.0, **kw)
    )
    kept = sitk.GetArrayFromImage(keep.masks["tumor"]) > 0
    left = sitk.GetArrayFromImage(cut.masks["tumor"]) > 0
    assert kept[info["lesion"]].mean() > 0.5 and kept[info["heart"]].mean() > 0.5
    assert not left[info["lesion"]].any() and left[info["heart"]].mean() > 0.5
    assert not (left & ~kept).any()
    assert keep.report["lesion_count"] == 2 and cut.report["lesion_count"] == 1
    post = cut.manifest["postprocess"]
    assert post["min_enhancement_pct"] == 1000.0 and post["non_enhancing_components_removed"] == 1
    assert keep.manifest["postprocess"]["non_enhancing_components_removed"] == 0
    assert keep.manifest["postprocess"]["min_enhancement_pct"] == DEFAULT_MIN_ENHANCEMENT_PCT
    (note,) = [n for n in cut.manifest["notes"] if "did not enhance" in n]
    assert "1 tumor component(s)" in note and "below 1000 %" in note


def test_batch_failure_does_not_stop_others(models, dicom_study, tmp_path: Path) -> None:
    folder, _ = dicom_study
    empty = tmp_path / "empty"
    empty.mkdir()
    from breastai.cohort import study_folder_name

    other = tmp_path / "case2"
    write_classic_study(other, shape=(8, 24, 30))
    results = segment_studies(
        [folder, empty, other], out_dir=tmp_path / "out", settings=_settings(models, tmp_path)
    )
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error and "\n" not in results[1].error and results[1].exit_code == 1
    # folder names depend on each study alone (name + hash of its path), not on the order
    names = [study_folder_name(p) for p in (folder, empty, other)]
    assert [r.name for r in results] == names
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([names[0], names[2]])


def test_nifti_input_gives_no_seg(models, tmp_path: Path) -> None:
    info = write_classic_study(tmp_path / "dcm", orientation="sagittal")
    nifti_dir = tmp_path / "nifti-case"
    nifti_dir.mkdir()
    for k, arr in enumerate(info["phases"]):
        sitk.WriteImage(image_from_array(arr, info), str(nifti_dir / f"P{k}.nii.gz"))
    res = segment_study(nifti_dir, out_dir=tmp_path / "out", settings=_settings(models, tmp_path))
    assert "seg.dcm" not in res.files and "tumor.nii.gz" in res.files
    tumor = sitk.ReadImage(str(res.out_dir / "tumor.nii.gz"))
    _same_geometry(tumor, image_from_array(info["phases"][1], info))
    assert _dice(sitk.GetArrayFromImage(tumor), info["lesion"]) > 0.85


def test_more_phases_than_slots_are_chosen_by_time(models, tmp_path: Path) -> None:
    info = write_classic_study(tmp_path / "d", n_phases=8, shape=(8, 24, 30))
    study = study_from_info(info, tmp_path / "d")
    study.name = "eight"
    res = segment_study(study, out_dir=tmp_path / "out", settings=_settings(models, tmp_path))
    manifest = json.loads((res.out_dir / "manifest.json").read_text())
    used = [p["index"] for p in manifest["phases"] if p["used"]]
    assert used == [0, 1, 2, 4, 5, 7]  # P0, P1, then times 120..420 s spread over 4 slots
    assert "8 phases" in manifest["phase_selection"]
    assert manifest["time_mask"] == [1] * 6


def test_single_phase_study_is_refused(models, tmp_path: Path) -> None:
    info = write_classic_study(tmp_path / "d", n_phases=2, shape=(6, 20, 24))
    study = study_from_info(info, tmp_path / "d")
    one = Study(phases=[study.phases[0]], source=tmp_path / "d", name="one")
    with pytest.raises(InputError, match="needs at least 2"):
        segment_study(one, out_dir=tmp_path / "out", settings=_settings(models, tmp_path))
    assert not (tmp_path / "out" / "one").exists()


def test_settings_validation() -> None:
    with pytest.raises(ParameterError):
        Settings(device="gpu")
    with pytest.raises(ParameterError):
        Settings(blend="max")
    with pytest.raises(ParameterError):
        Settings(batch_size=0)
    assert Settings().to_dict()["use_breast_mask"] is True
    assert Settings().min_enhancement_pct == DEFAULT_MIN_ENHANCEMENT_PCT
    for pct in (-1.0, float("nan")):
        with pytest.raises(ParameterError, match="min_enhancement_pct"):
            Settings(min_enhancement_pct=pct)
    bad: list[dict[str, str]] = [
        {"runtime": "ort"},
        {"precision": "fp16"},
        {"device": "cuda", "runtime": "openvino"},
    ]
    for kw in bad:
        with pytest.raises(ParameterError):
            Settings(**kw)


@pytest.mark.slow
@pytest.mark.skipif(not openvino_available(), reason="OpenVINO (the [openvino] extra) is absent")
def test_bundled_demo_models_give_the_same_masks_on_onnxruntime_and_openvino(
    tmp_path: Path,
) -> None:
    from breastai.phantom import make_demo_study

    study = make_demo_study(tmp_path / "study", layout="siemens", seed=5, decoys=False)
    runs = [("onnxruntime", "fp32"), ("openvino", "fp32")]
    if openvino_bf16_available():
        runs.append(("openvino", "bf16"))
    masks: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for runtime, precision in runs:
        out = tmp_path / f"{runtime}-{precision}"
        res = segment_study(
            study / "dicom",
            out_dir=out,
            settings=Settings(
                device="cpu",
                runtime=runtime,
                precision=precision,
                weights_file=tmp_path / "none.toml",
                write_seg=False,
                write_preview=False,
            ),
        )
        assert res.ok and res.precision == precision, res.error
        assert res.provider == (OPENVINO_CPU if runtime == "openvino" else "CPUExecutionProvider")
        masks[runtime, precision] = {
            k: sitk.GetArrayFromImage(sitk.ReadImage(str(res.out_dir / f"{k}.nii.gz")))
            for k in ("breast", "tumor")
        }
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(study / "truth" / "tumor.nii.gz")))
    ref = masks["onnxruntime", "fp32"]
    assert _dice(ref["tumor"], truth) > 0.5  # the demo model finds the lesion at all
    others = {key: got for key, got in masks.items() if key != ("onnxruntime", "fp32")}
    assert others  # at least one other runtime/precision ran
    for key, got in others.items():
        for k in ("breast", "tumor"):
            # float32 on both runtimes: probabilities agree to ~1e-6, so at most a handful of
            # voxels at exactly the threshold may differ; bfloat16 moves boundaries a little
            floor = 0.999 if key[1] == "fp32" else 0.95
            assert _dice(got[k], ref[k]) >= floor, (key, k, _dice(got[k], ref[k]))


def test_blend_override_and_missing_breast(models, tmp_path: Path) -> None:
    # a study without breast tissue (P0 dark everywhere): empty masks, a clear note, no crash
    info = write_classic_study(tmp_path / "d", shape=(6, 20, 24))
    study = study_from_info(info, tmp_path / "d")
    dark = [
        Phase(
            index=p.index,
            image=image_from_array(np.zeros((6, 20, 24), np.float32), info),
            time_s=p.time_s,
        )
        for p in study.phases
    ]
    s = Study(phases=dark, source=tmp_path / "d", kind="nifti", name="dark")
    res = segment_study(
        s, out_dir=tmp_path / "out", settings=_settings(models, tmp_path, blend="vote")
    )
    assert res.ok and res.lesion_count == 0
    assert any("no breast tissue" in n for n in res.notices)
    manifest = json.loads((res.out_dir / "manifest.json").read_text())
    assert manifest["models"]["tumor"]["blending"] == "vote"
    assert manifest["windows"]["tumor"] == 0


def test_cohort_prefetches_next_study_during_inference(
    models, dicom_study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    import breastai.pipeline as pl

    folder, _ = dicom_study
    events: list[tuple[str, str, float]] = []
    real_prepare, real_run = pl._prepare, pl._run
    lock = threading.Lock()

    def prepare(item, *a, **k):
        with lock:
            events.append(
                ("prep-start", Path(str(getattr(item, "source", item))).name, time.perf_counter())
            )
        return real_prepare(item, *a, **k)

    def run(prep, *a, **k):
        t0 = time.perf_counter()
        time.sleep(0.5)  # "inference": the next study should be read meanwhile
        res = real_run(prep, *a, **k)
        with lock:
            name = prep.name.rsplit("-", 1)[0]  # folder names end with a hash of the path
            events.append(("run", name, t0))
            events.append(("run-end", name, time.perf_counter()))
        return res

    monkeypatch.setattr(pl, "_prepare", prepare)
    monkeypatch.setattr(pl, "_run", run)
    other = tmp_path / "case2"
    write_classic_study(other, shape=(8, 24, 30))
    results = segment_studies(
        [folder, other], out_dir=tmp_path / "out", settings=_settings(models, tmp_path)
    )
    assert all(r.ok for r in results)
    t = {(e, n): ts for e, n, ts in events}
    assert t[("prep-start", "case2")] < t[("run-end", "case1")]  # overlapped with study 1


def test_split_bilateral_stacks_are_segmented_each_on_its_own_grid(tmp_path: Path) -> None:
    """Two sagittal stacks per phase that share no grid: both are segmented, nothing is joined."""
    import pydicom
    from dicom_factory import make_study
    from segment_factory import synthetic_phases

    from breastai.io.seg import read_seg

    shape = (12, 28, 36)
    truth = synthetic_phases(shape, 3)
    # 1 mm model grids: the sagittal stacks' 0.9 mm in-plane axes run along the model's z
    models = make_model_pair(tmp_path / "models", spacing_zyx=(1.0, 1.0, 1.0))
    # one breast per stack, as in a real split-bilateral protocol: drop the second "breast"
    one = np.zeros(shape, bool)
    one[:, :, : shape[2] // 2] = True
    for a in truth["phases"]:
        a[truth["breast"] & ~one] = 0.0
    truth["breast"] = truth["breast"] & one
    synth = make_study(
        tmp_path / "split",
        n_phases=3,
        shape_zyx=shape,
        spacing_zyx=(2.0, 0.9, 0.9),
        orientation="sagittal",
        layout="split_bilateral",
        bilateral_gap_mm=40.0,
        volumes=np.stack(truth["phases"]),
    )
    res = segment_study(
        tmp_path / "split", out_dir=tmp_path / "out", settings=_settings(models, tmp_path)
    )
    out = res.out_dir
    assert out is not None
    per_side = {f"{kind}_{s}.nii.gz" for kind in ("breast", "tumor") for s in "RL"}
    expected = per_side | {"seg_R.dcm", "seg_L.dcm", "preview_R.png", "preview_L.png"}
    expected |= {"report.json", "report.md", "manifest.json"}
    assert {p.name for p in out.iterdir()} == expected == set(res.files)

    series = {  # (side, phase) -> SeriesInstanceUID, from the files the factory wrote
        ("RL"[st], k): pydicom.dcmread(
            next((tmp_path / "split").glob(f"*_p{k:02d}_st{st}_z000.dcm")), stop_before_pixels=True
        ).SeriesInstanceUID
        for st in (0, 1)
        for k in range(3)
    }
    # stack 0 of the factory is the patient's right (LPS x < 0), stack 1 the left
    for side, origin in zip("RL", synth.stack_origins, strict=True):
        breast = sitk.ReadImage(str(out / f"breast_{side}.nii.gz"))
        tumor = sitk.ReadImage(str(out / f"tumor_{side}.nii.gz"))
        assert breast.GetSize() == shape[::-1] == tumor.GetSize()
        np.testing.assert_allclose(breast.GetOrigin(), origin, atol=1e-3)
        np.testing.assert_allclose(tumor.GetOrigin(), origin, atol=1e-3)
        np.testing.assert_allclose(
            np.reshape(tumor.GetDirection(), (3, 3)), synth.direction, atol=1e-6
        )
        assert _dice(sitk.GetArrayFromImage(tumor), truth["lesion"]) > 0.85
        assert _dice(sitk.GetArrayFromImage(breast), truth["breast"]) > 0.9
        assert not (sitk.GetArrayFromImage(tumor) > 0)[truth["heart"]].any()
        # the DICOM-SEG of a stack references that stack's instances and holds its masks
        seg = pydicom.dcmread(out / f"seg_{side}.dcm")
        refs = {s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence}
        assert series[(side, 1)] in refs
        assert refs <= {series[(side, k)] for k in range(3)}
        back = read_seg(out / f"seg_{side}.dcm", tumor)
        np.testing.assert_array_equal(
            sitk.GetArrayFromImage(back["Tumor"]), sitk.GetArrayFromImage(tumor)
        )

    report = json.loads((out / "report.json").read_text())
    got = sorted((les["stack"], les["laterality"]) for les in report["lesions"])
    assert got == [("L", "left"), ("R", "right")]
    assert report["measurement"]["stacks"].keys() == {"R", "L"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["side"] for s in manifest["stacks"]] == ["right", "left"]
    assert manifest["windows"].keys() == {"R", "L"}
    assert any("split-bilateral" in n.lower() for n in manifest["notes"])
    assert res.lesion_count == 2
