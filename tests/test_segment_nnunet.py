"""`breastai segment` with imported nnU-Net models in the breast and tumor slots (issue 12 item 4).

The nnU-Net models are real nnU-Net v2 trained-model folders built by nnunetv2 itself
(tests/nnunet_factory.py), imported with the real ``breastai import-weights --nnunet``. The truth
for ``segment`` is what ``breastai predict`` writes for the same model and study (already checked
against ``nnUNetPredictor`` in tests/test_nnunet.py), mapped by the model's label roles and
post-processed here with scipy, independently of the pipeline.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

torch = pytest.importorskip("torch", reason="needs torch (the [train] extra)")
pytest.importorskip("nnunetv2", reason="needs nnunetv2 (the [nnunet] extra)")

from scipy import ndimage  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from breastai.cli import app  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from nnunet_factory import ModelSpec, build_model_folder, write_case  # noqa: E402

pytestmark = pytest.mark.train
runner = CliRunner()

SPECS: dict[str, tuple[ModelSpec, str, list[str]]] = {
    # BreastDivider-like: whole breast as separate left and right labels, channel pre
    "divider": (
        ModelSpec(
            name="Dataset911_Divider",
            channel_names={"0": "pre"},
            labels={"background": 0, "left breast": 1, "right breast": 2},
            spacing=(6.0, 4.0, 4.0),  # coarse: few windows on the 256 x 256 x 96 phantom
            mirror_axes=(1, 2),
            seed=11,
        ),
        "breast",
        [],
    ),
    # a tumor model on the first subtraction and the first post-contrast image
    "nntumor": (
        ModelSpec(
            name="Dataset912_Tumor",
            channel_names={"0": "sub1", "1": "post1"},
            labels={"background": 0, "tumor": 1},
            spacing=(6.0, 3.0, 3.0),
            seed=12,
        ),
        "tumor",
        [],
    ),
    # a tumor model that needs the second post-contrast phase
    "needspost2": (
        ModelSpec(
            name="Dataset913_Post2",
            channel_names={"0": "post2"},
            labels={"background": 0, "tumor": 1},
            spacing=(6.0, 4.0, 4.0),
            seed=13,
        ),
        "tumor",
        ["--channels", "post2"],
    ),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from breastai.phantom import make_demo_study

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("segnn")
    wf = root / "home" / "weights.toml"
    for key, (spec, task, extra) in SPECS.items():
        folder = build_model_folder(root / "nnUNet_results", spec)
        res = runner.invoke(
            app,
            ["import-weights", "--nnunet", str(folder), "--name", key, "--task", task,
             "--weights-file", str(wf), *extra],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
    study = make_demo_study(root / "demo", seed=4, decoys=False)
    return {"root": root, "wf": str(wf), "study": study / "dicom"}


def _predict(built: dict[str, Any], model: str, out: Path, *extra: str) -> np.ndarray:
    res = runner.invoke(
        app,
        ["predict", "--model", model, str(built["study"]), "-o", str(out), "--quiet",
         "--weights-file", built["wf"], *extra],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (path,) = out.glob(f"*/{model}.nii.gz")
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _segment(built: dict[str, Any], out: Path, *extra: str) -> Any:
    return runner.invoke(
        app,
        ["segment", str(built["study"]), "-o", str(out), "--device", "cpu", "--quiet",
         "--weights-file", built["wf"], *extra],
    )  # fmt: skip


def _outputs(out: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    (folder,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    manifest = json.loads((folder / "manifest.json").read_text())
    report = json.loads((folder / "report.json").read_text())
    return folder, manifest, report


def _mask(folder: Path, name: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / name)))


def _clean(mask: np.ndarray, voxel_mm3: float, min_mm3: float = 10.0) -> np.ndarray:
    """Components (26-connected) of at least ``min_mm3`` (the pipeline's rule, recomputed)."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    keep = np.flatnonzero(counts * voxel_mm3 >= min_mm3)
    return np.isin(lab, keep[keep > 0])


def test_breast_model_with_left_right_labels(built: dict[str, Any], tmp_path: Path) -> None:
    """BreastDivider-like breast model + demo tumor model: breast = predict's left | right;
    each lesion's laterality = the side label it overlaps most; manifest names the model."""
    labels = _predict(built, "divider", tmp_path / "p")  # TTA on, as segment's default
    res = _segment(built, tmp_path / "o", "--breast-weights", "divider")
    assert res.exit_code == 0, res.output
    folder, manifest, report = _outputs(tmp_path / "o")
    breast = _mask(folder, "breast.nii.gz")
    expected = np.isin(labels, (1, 2))
    assert 0 < expected.sum() < expected.size, "the model predicts one label: a vacuous test"
    assert np.array_equal(breast.astype(bool), expected)
    tumor = _mask(folder, "tumor.nii.gz").astype(bool)
    assert not (tumor & ~expected).any()  # tumor kept inside the breast mask
    assert (folder / "seg.dcm").is_file()

    m = manifest["models"]["breast"]
    assert m["family"] == "nnunet" and m["name"] == "divider" and m["tta"] is True
    assert m["channels"] == ["pre"] and m["roles"] == {"left": [1], "right": [2]}
    assert len(m["sha256"]) == 64 and all(len(v) == 64 for v in m["sha256s"].values())
    assert manifest["models"]["tumor"]["family"] == "seed"
    assert manifest["settings"]["tta"] is True

    assert report["measurement"]["laterality_source"] == "breast model labels"
    rw = {w["task"]: w for w in report["weights"]}
    assert rw["breast"]["name"] == "divider" and rw["breast"]["family"] == "nnunet"
    assert rw["breast"]["sha256"] == m["sha256"] and rw["breast"]["demo"] is False
    assert report["lesion_count"] >= 1, "no lesion: the laterality check would be vacuous"
    lesions = np.zeros(tumor.shape, np.int32)
    lab, _ = ndimage.label(tumor, structure=np.ones((3, 3, 3), bool))
    for les in report["lesions"]:
        # the lesion is the component holding its voxel count; its side = the label it overlaps
        sizes = np.bincount(lab.ravel())
        (cands,) = np.nonzero(sizes == les["voxel_count"])
        k = next(int(c) for c in cands if c > 0 and not (lesions == c).any())
        lesions[lab == k] = k
        n_left = int(((lab == k) & (labels == 1)).sum())
        n_right = int(((lab == k) & (labels == 2)).sum())
        assert les["laterality"] == ("left" if n_left > n_right else "right")


def test_nnunet_tumor_model_and_no_tta(built: dict[str, Any], tmp_path: Path) -> None:
    """An nnU-Net model in the tumor slot, --no-tta: tumor = predict's tumor label inside the
    demo breast mask, small components removed."""
    labels = _predict(built, "nntumor", tmp_path / "p", "--no-tta")
    res = _segment(built, tmp_path / "o", "--weights", "nntumor", "--no-tta")
    assert res.exit_code == 0, res.output
    folder, manifest, report = _outputs(tmp_path / "o")
    breast = _mask(folder, "breast.nii.gz").astype(bool)
    tumor = _mask(folder, "tumor.nii.gz").astype(bool)
    img = sitk.ReadImage(str(folder / "tumor.nii.gz"))
    voxel = float(np.prod(img.GetSpacing()))
    raw = labels == 1
    assert raw.any() and (raw & breast).any(), "nothing to compare: a vacuous test"
    assert np.array_equal(tumor, _clean(raw & breast, voxel))
    m = manifest["models"]["tumor"]
    assert m["family"] == "nnunet" and m["tta"] is False and m["channels"] == ["sub1", "post1"]
    assert manifest["demo_weights"] is True  # the demo breast model
    assert report["measurement"]["laterality_source"] == "midline"


def test_bad_nnunet_choices_one_line(built: dict[str, Any], tmp_path: Path) -> None:
    """post2 on a two-phase study; a breast-task model as --weights: one line, no traceback."""
    two = write_case(tmp_path / "two", n_phases=2)[0].parent
    res = runner.invoke(
        app,
        ["segment", str(two), "-o", str(tmp_path / "o"), "--device", "cpu", "--quiet",
         "--weights-file", built["wf"], "--weights", "needspost2", "--json"],
    )  # fmt: skip
    assert res.exit_code != 0 and "Traceback" not in res.output
    doc = json.loads(res.stdout)
    err = doc["results"][0]["error"]
    assert "post2" in err and "2 phase(s)" in err and "\n" not in err

    res = _segment(built, tmp_path / "o2", "--weights", "divider")
    assert res.exit_code != 0 and "Traceback" not in res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "breast model" in lines[0] and "tumor model" in lines[0]
