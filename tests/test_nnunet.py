"""nnU-Net v2 models: import, and `breastai predict` against the real nnunetv2 ``nnUNetPredictor``.

The model folders are written the way nnunetv2 writes them (tests/nnunet_factory.py: nnunetv2 builds
the network, a few training steps, a checkpoint with nnU-Net's keys). Each equivalence test runs the
real ``breastai import-weights --nnunet`` and ``breastai predict`` commands and the real
``nnUNetPredictor`` (CPU) on the same input files, with and without mirroring, and requires label
agreement >= 99.95 % of voxels and max |probability difference| <= 1e-3. The test images are on a
grid other than the model's spacing (0.9 x 0.85 x 3.3 mm against 1 x 1 x 3 mm, separate-z).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

torch = pytest.importorskip("torch", reason="needs torch (the [train] extra)")
pytest.importorskip("nnunetv2", reason="needs nnunetv2 (the [nnunet] extra)")

from typer.testing import CliRunner  # noqa: E402

from breastai.cli import app  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from nnunet_factory import (  # noqa: E402
    ModelSpec,
    build_model_folder,
    channel_files,
    reference_predict,
    write_case,
)

pytestmark = pytest.mark.train
runner = CliRunner()

MIN_AGREEMENT = 0.9995
MAX_PROB_DIFF = 1e-3

LPS_TILTED = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # rows along -x: exercises RAS reorient

SPECS: dict[str, dict[str, Any]] = {
    # PlainConvUNet, 2 channels (pre, sub1), 3 labels, anisotropic, two-fold ensemble
    "plain2": {
        "spec": ModelSpec(name="Dataset901_Plain", folds=(0, 1), seed=1),
        "task": "breast",
        "folds": (0, 1),
        "direction": None,
    },
    # ResidualEncoderUNet, a non-identity transpose, the reorienting reader (BreastDivider's)
    "resenc": {
        "spec": ModelSpec(
            name="Dataset902_ResEnc",
            architecture="ResidualEncoderUNet",
            channel_names={"0": "post1"},
            labels={"background": 0, "tumor": 1},
            spacing=(1.0, 3.0, 1.0),
            patch=(32, 8, 32),
            transpose_forward=(1, 0, 2),
            reader="SimpleITKIOWithReorient",
            seed=2,
        ),
        "task": "tumor",
        "folds": (0,),
        "direction": LPS_TILTED,
    },
    # region-based (sigmoid, regions_class_order), nonzero-mask z-score + CT normalisation
    "regions": {
        "spec": ModelSpec(
            name="Dataset903_Regions",
            channel_names={"0": "pre", "1": "post1"},
            labels={"background": 0, "breast": [1, 2], "tumor": 2},
            regions_class_order=[1, 2],
            normalization=["ZScoreNormalization", "CTNormalization"],
            use_mask_for_norm=[True, False],
            seed=3,
        ),
        "task": "tumor",
        "folds": (0,),
        "direction": None,
    },
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every model folder, imported with the CLI into one weights file, and its study."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("nnunet")
    wf = root / "home" / "weights.toml"
    out: dict[str, Any] = {"root": root, "weights_file": wf, "models": {}}
    for key, cfg in SPECS.items():
        folder = build_model_folder(root / "nnUNet_results", cfg["spec"])
        res = runner.invoke(
            app,
            ["import-weights", "--nnunet", str(folder), "--name", key, "--task", cfg["task"],
             "--weights-file", str(wf)],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        study = write_case(root / "studies" / key, direction=cfg["direction"], seed=7)
        out["models"][key] = {"folder": folder, "study": study, **cfg}
    return out


def _card(built: dict[str, Any], key: str) -> dict[str, Any]:
    path = Path(built["weights_file"]).parent / "models" / key / "nnunet.json"
    return dict(json.loads(path.read_text()))


@pytest.mark.parametrize("tta", [True, False], ids=["tta", "no-tta"])
@pytest.mark.parametrize("key", list(SPECS))
def test_predict_matches_nnunet(built: dict[str, Any], key: str, tta: bool, tmp_path: Path) -> None:
    m = built["models"][key]
    card = _card(built, key)
    study_dir = m["study"][0].parent
    out = tmp_path / "out"
    args = ["predict", "--model", key, str(study_dir), "-o", str(out), "--save-probabilities",
            "--device", "cpu", "--runtime", "onnxruntime", "--weights-file",
            str(built["weights_file"])] + ([] if tta else ["--no-tta"])  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    ours_img = sitk.ReadImage(str(out / study_dir.name / f"{key}.nii.gz"))
    with np.load(out / study_dir.name / f"{key}_probabilities.npz") as z:
        ours_p = z["probabilities"]
    files = channel_files(m["study"], card["channels"], tmp_path / "in")
    ref_l, ref_p = reference_predict(
        m["folder"], files, tmp_path / "ref", folds=m["folds"], tta=tta
    )
    ours_l = sitk.GetArrayFromImage(ours_img)
    ref_img = sitk.ReadImage(str(tmp_path / "ref" / "case.nii.gz"))
    assert ours_img.GetSize() == ref_img.GetSize()
    assert np.allclose(ours_img.GetOrigin(), ref_img.GetOrigin())
    assert np.allclose(ours_img.GetDirection(), ref_img.GetDirection())
    agreement = float((ours_l == ref_l).mean())
    # nnU-Net's probabilities of a reorienting reader stay in RAS array order; ours are on the
    # input grid like the labels: compare on the input grid.
    if card["orientation"] == "RAS":
        ref_p = _ras_to_input(ref_p, files[0])
    diff = float(np.abs(ours_p - ref_p).max())
    print(f"{key} tta={tta}: agreement {agreement:.6f}, max |dp| {diff:.2e}, "
          f"labels {np.bincount(ref_l.ravel()).tolist()}")  # fmt: skip
    assert len(np.unique(ref_l)) >= 2, "the reference predicts a single label: a vacuous test"
    assert ours_p.shape == ref_p.shape
    assert agreement >= MIN_AGREEMENT
    assert diff <= MAX_PROB_DIFF


def _ras_to_input(probs: np.ndarray, reference_file: Path) -> np.ndarray:
    ref = sitk.ReadImage(str(reference_file))
    ras = sitk.DICOMOrient(ref, "RAS")
    code = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(ref.GetDirection())
    out = []
    for c in range(probs.shape[0]):
        img = sitk.GetImageFromArray(probs[c])
        img.CopyInformation(ras)
        out.append(sitk.GetArrayFromImage(sitk.DICOMOrient(img, code)))
    return np.stack(out)


def test_card_records_what_inference_needs(built: dict[str, Any]) -> None:
    card = _card(built, "plain2")
    assert card["channels"] == ["pre", "sub1"]
    assert card["roles"] == {"left": [1], "right": [2]}
    assert card["mirroring_axes"] == [0, 1, 2]
    assert card["spacing"] == [3.0, 1.0, 1.0] and card["patch_size"] == [8, 32, 32]
    assert [f["fold"] for f in card["folds"]] == ["0", "1"]
    assert all(f["parity"] < 1e-3 for f in card["folds"])
    folder = built["models"]["plain2"]["folder"]
    from breastai.weights import sha256_file

    assert card["sources"]["fold_1/checkpoint_final.pth"] == sha256_file(
        folder / "fold_1" / "checkpoint_final.pth"
    )
    assert card["sources"]["plans.json"] == sha256_file(folder / "plans.json")
    rcard = _card(built, "resenc")
    assert rcard["orientation"] == "RAS" and rcard["transpose_forward"] == [1, 0, 2]
    assert rcard["architecture"] == "ResidualEncoderUNet"
    g = _card(built, "regions")
    assert g["regions"] == [[1, 2], [2]] and g["regions_class_order"] == [1, 2]
    from breastai.weights import load_registry

    reg = load_registry(built["weights_file"])
    assert reg["plain2"].architecture.startswith("nnunet PlainConvUNet")


def test_checkpoint_needs_the_numpy_allowlist(built: dict[str, Any]) -> None:
    """The trap the import handles: plain weights_only loading fails on nnU-Net checkpoints."""
    ck = built["models"]["plain2"]["folder"] / "fold_0" / "checkpoint_final.pth"
    with pytest.raises(Exception, match=r"weights_only|Unsupported global"):
        torch.load(ck, map_location="cpu", weights_only=True)
    from breastai.training.nnunet_import import load_checkpoint

    got = load_checkpoint(ck)
    assert got["configuration"] == "3d_fullres" and got["mirroring_axes"] == (0, 1, 2)


def test_import_from_export_zip(built: dict[str, Any], tmp_path: Path) -> None:
    """The zip of nnUNetv2_export_model_to_zip (the real exporter) imports like the folder."""
    results = built["root"] / "nnUNet_results"
    env = {**os.environ, "nnUNet_results": str(results), "nnUNet_raw": str(tmp_path / "raw"),
           "nnUNet_preprocessed": str(tmp_path / "pre")}  # fmt: skip
    zip_path = tmp_path / "model.zip"
    code = (
        "from nnunetv2.model_sharing.model_export import export_pretrained_model as e; "
        f"e('Dataset901_Plain', {str(zip_path)!r}, configurations=('3d_fullres',), folds=(0, 1), "
        "strict=False)"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    wf = tmp_path / "weights.toml"
    res = runner.invoke(app, ["import-weights", "--nnunet", str(zip_path), "--name", "z",
                              "--task", "breast", "--weights-file", str(wf)])  # fmt: skip
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "models" / "z" / "nnunet.json").read_text())
    ref = _card(built, "plain2")
    assert [f["fold"] for f in card["folds"]] == ["0", "1"]
    assert (
        card["sources"]["fold_0/checkpoint_final.pth"]
        == ref["sources"]["fold_0/checkpoint_final.pth"]
    )
    assert "model.zip" in card["sources"]


# ------------------------------------------------------------------------------- bad input


def _one_line_error(res: Any, *needles: str) -> None:
    assert res.exit_code != 0
    text = " ".join(res.output.split())
    assert "Traceback" not in res.output
    assert text.startswith("error:"), res.output
    for n in needles:
        assert n in text, res.output


def _import(folder: Path, tmp_path: Path, *extra: str) -> Any:
    return runner.invoke(app, ["import-weights", "--nnunet", str(folder), "--name", "bad",
                               "--task", "breast", "--weights-file",
                               str(tmp_path / "w.toml"), *extra])  # fmt: skip


def test_not_an_nnunet_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _one_line_error(_import(tmp_path / "empty", tmp_path), "is not an nnU-Net v2 trained-model")


def test_missing_folds(built: dict[str, Any], tmp_path: Path) -> None:
    res = _import(built["models"]["plain2"]["folder"], tmp_path, "--folds", "0,3")
    _one_line_error(res, "fold 3 has no checkpoint_final.pth", "fold_0, fold_1")


def _copy_with_plans(built: dict[str, Any], tmp_path: Path, edit: Any) -> Path:
    src = built["models"]["plain2"]["folder"]
    dst = tmp_path / "Dataset999_X" / src.name
    shutil.copytree(src, dst)
    plans = json.loads((dst / "plans.json").read_text())
    edit(plans)
    (dst / "plans.json").write_text(json.dumps(plans))
    return dst


def test_unknown_architecture(built: dict[str, Any], tmp_path: Path) -> None:
    def edit(p: dict[str, Any]) -> None:
        p["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = (
            "dynamic_network_architectures.architectures.primus.Primus"
        )

    res = _import(_copy_with_plans(built, tmp_path, edit), tmp_path)
    _one_line_error(res, "'dynamic_network_architectures.architectures.primus.Primus'",
                    "PlainConvUNet or ResidualEncoderUNet")  # fmt: skip


def test_2d_configuration_refused(built: dict[str, Any], tmp_path: Path) -> None:
    def edit(p: dict[str, Any]) -> None:
        cfg = p["configurations"].pop("3d_fullres")
        cfg["patch_size"] = [32, 32]
        cfg["spacing"] = [1.0, 1.0]
        p["configurations"]["2d"] = cfg

    dst = _copy_with_plans(built, tmp_path, edit)
    for ck_path in dst.glob("fold_*/checkpoint_final.pth"):
        ck = torch.load(ck_path, map_location="cpu", weights_only=False)
        ck["init_args"]["configuration"] = "2d"
        torch.save(ck, ck_path)
    _one_line_error(_import(dst, tmp_path), "2d configuration", "3d nnU-Net configurations only")


def test_channel_list_of_wrong_length(built: dict[str, Any], tmp_path: Path) -> None:
    res = _import(built["models"]["plain2"]["folder"], tmp_path, "--channels", "pre")
    _one_line_error(res, "--channels lists 1 channel(s)", "the model takes 2")


def test_study_without_the_needed_phase(built: dict[str, Any], tmp_path: Path) -> None:
    wf = tmp_path / "w.toml"
    folder = built["models"]["plain2"]["folder"]
    res = runner.invoke(app, ["import-weights", "--nnunet", str(folder), "--name", "p2",
                              "--task", "breast", "--channels", "pre,sub2",
                              "--weights-file", str(wf)])  # fmt: skip
    assert res.exit_code == 0, res.output
    study_dir = built["models"]["plain2"]["study"][0].parent  # two phases
    out = tmp_path / "o"
    res = runner.invoke(app, ["predict", "--model", "p2", str(study_dir), "-o", str(out),
                              "--weights-file", str(wf), "--quiet"])  # fmt: skip
    assert res.exit_code == 1
    assert "channel 'sub2' needs phase 2" in " ".join(res.output.split())
    assert "has 2 phase(s)" in " ".join(res.output.split())
    assert not (tmp_path / "o" / study_dir.name / "p2.nii.gz").exists()


def test_predict_refuses_overwrite_and_unknown_model(built: dict[str, Any], tmp_path: Path) -> None:
    study_dir = built["models"]["regions"]["study"][0].parent
    args = ["predict", "--model", "regions", str(study_dir), "-o", str(tmp_path / "o"),
            "--no-tta", "--quiet", "--weights-file", str(built["weights_file"])]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "--force" in again.output
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    wf = str(built["weights_file"])
    res = runner.invoke(app, ["predict", "--model", "nope", str(study_dir), "-o",
                              str(tmp_path / "o2"), "--weights-file", wf])  # fmt: skip
    _one_line_error(res, "no model named 'nope'", "plain2")


# ------------------------------------------------------------- building blocks vs nnunetv2


def test_gaussian_and_steps_match_nnunet() -> None:
    from nnunetv2.inference.sliding_window_prediction import (
        compute_gaussian,
        compute_steps_for_sliding_window,
    )

    from breastai.nnunet.model import gaussian_map, sliding_window_steps

    for patch in [(8, 32, 32), (16, 40, 48), (5, 7, 9)]:
        ref = compute_gaussian(patch, 1 / 8, 10, device=torch.device("cpu")).numpy()
        assert np.array_equal(gaussian_map(patch), ref)
    for size, patch in [((110, 64, 477), (64, 64, 128)), ((9, 33, 40), (8, 32, 32))]:
        assert sliding_window_steps(size, patch, 0.5) == compute_steps_for_sliding_window(
            size, patch, 0.5
        )


@pytest.mark.parametrize(
    ("shape", "new", "cur", "tgt", "order"),
    [
        ((15, 40, 44), (16, 34, 40), (3.3, 0.85, 0.9), (3.0, 1.0, 1.0), 3),  # separate z
        ((12, 20, 22), (17, 26, 29), (1.4, 1.3, 1.3), (1.0, 1.0, 1.0), 3),  # isotropic-ish
        ((16, 34, 40), (15, 40, 44), (3.0, 1.0, 1.0), (3.3, 0.85, 0.9), 1),  # export direction
    ],
)
def test_resampling_is_nnunets(
    shape: tuple[int, ...], new: tuple[int, ...], cur: Any, tgt: Any, order: int
) -> None:
    from nnunetv2.preprocessing.resampling.default_resampling import (
        resample_data_or_seg_to_shape,
    )

    from breastai.nnunet.preprocess import resample

    rng = np.random.default_rng(0)
    data = rng.standard_normal((2, *shape)).astype(np.float32)
    kw = {"order": order, "order_z": 0, "force_separate_z": None}
    ref = resample_data_or_seg_to_shape(data, new, cur, tgt, is_seg=False, **kw)
    assert np.array_equal(resample(data, new, cur, tgt, kw), ref)
    half = data.astype(np.float16)
    ref16 = resample_data_or_seg_to_shape(half, new, cur, tgt, is_seg=False, **kw)
    got16 = resample(half, new, cur, tgt, kw)
    assert got16.dtype == np.float16 and np.array_equal(got16, ref16)


def test_nnunet_models_are_not_segments_default(built: dict[str, Any]) -> None:
    """An imported nnU-Net card (a JSON file) never becomes `segment`'s default ONNX model."""
    from breastai.weights import resolve_model

    for task in ("breast", "tumor"):
        got = resolve_model(None, task, weights_file=built["weights_file"])
        assert not got.card.architecture.startswith("nnunet")
        assert got.path.suffix == ".onnx"


@pytest.mark.slow
def test_predict_reads_a_dicom_study_onto_the_channel0_grid(
    built: dict[str, Any], tmp_path: Path
) -> None:
    """STUDY is anything `segment` reads: a DICOM study; the mask lies on channel 0's grid."""
    from breastai.io import load_study
    from breastai.phantom import make_demo_study

    study_dir = make_demo_study(tmp_path / "demo", seed=3, decoys=False)
    study = load_study(study_dir)
    wf = str(built["weights_file"])
    for key, phase in (("plain2", 0), ("resenc", 1)):  # channel 0: pre / post1
        out = tmp_path / f"o-{key}"
        res = runner.invoke(app, ["predict", "--model", key, str(study_dir), "-o", str(out),
                                  "--no-tta", "--quiet", "--weights-file", wf])  # fmt: skip
        assert res.exit_code == 0, res.output
        (mask_path,) = out.glob(f"*/{key}.nii.gz")
        mask = sitk.ReadImage(str(mask_path))
        ref = study.phases[phase].image
        assert mask.GetSize() == ref.GetSize()
        assert np.allclose(mask.GetOrigin(), ref.GetOrigin(), atol=1e-4)
        assert np.allclose(mask.GetDirection(), ref.GetDirection(), atol=1e-6)
        assert np.allclose(mask.GetSpacing(), ref.GetSpacing(), atol=1e-6)


def test_fold_all_and_checkpoint_choice(built: dict[str, Any], tmp_path: Path) -> None:
    """Only fold_all (BreastDivider's layout) is found by default; --checkpoint best is read."""
    from breastai.training.nnunet_import import import_nnunet

    src = built["models"]["plain2"]["folder"]
    dst = tmp_path / "Dataset998_All" / src.name
    shutil.copytree(src, dst)
    shutil.rmtree(dst / "fold_1")
    (dst / "fold_0").rename(dst / "fold_all")
    res = import_nnunet(dst, name="all", task="breast", out=tmp_path / "m", register=False)
    assert [f["fold"] for f in res.card.folds] == ["all"]
    with pytest.raises(Exception, match=r"no fold_K/checkpoint_best\.pth"):
        import_nnunet(
            dst, name="b", task="breast", checkpoint="best", out=tmp_path / "b", register=False
        )
    shutil.copy(dst / "fold_all" / "checkpoint_final.pth", dst / "fold_all" / "checkpoint_best.pth")
    res = import_nnunet(
        dst, name="b", task="breast", checkpoint="best", out=tmp_path / "b", register=False
    )
    assert res.card.checkpoint == "checkpoint_best.pth"
    assert "fold_all/checkpoint_best.pth" in res.card.sources
