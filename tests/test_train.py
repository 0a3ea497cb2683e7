"""Training loop: dataset layout, preprocessing, checkpoints, resume, export of trained models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sitk = pytest.importorskip("SimpleITK")

from breastai.errors import InputError, OutputError, ParameterError  # noqa: E402

pytestmark = pytest.mark.train

SHAPE = (20, 40, 40)  # (z, y, x) voxels at 2 mm


def _write(arr: np.ndarray, path: Path, spacing_zyx: tuple[float, float, float]) -> None:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(reversed(spacing_zyx)))
    img.SetOrigin((-40.0, -40.0, -20.0))
    sitk.WriteImage(img, str(path))


def write_case(root: Path, seed: int, n_phases: int = 4) -> Path:
    """A tiny synthetic DCE case: a bright block ("breast") with an enhancing ball ("tumor")."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(SHAPE)
    breast = (y >= 10) & (y < 34) & (x >= 4) & (x < 36) & (z >= 2) & (z < 18)
    c = (int(rng.integers(6, 14)), int(rng.integers(16, 28)), int(rng.integers(10, 30)))
    tumor = ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) <= 9
    case = root / f"case{seed:03d}"
    case.mkdir(parents=True)
    for k in range(n_phases):
        img = np.where(breast, 200.0, 20.0) + rng.normal(0, 5, SHAPE)
        img = img + tumor * (0 if k == 0 else 400.0 + 50 * k)
        _write(img.astype(np.float32), case / f"P{k}.nii.gz", (2.0, 2.0, 2.0))
    _write(breast.astype(np.uint8), case / "breast.nii.gz", (2.0, 2.0, 2.0))
    _write(tumor.astype(np.uint8), case / "tumor.nii.gz", (2.0, 2.0, 2.0))
    (case / "truth.json").write_text(json.dumps({"seed": seed}))
    return case


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for seed in range(3):
        write_case(root, seed)
    return root


def _tumor_options(**kw: object):  # type: ignore[no-untyped-def]
    from breastai.training.train import default_options

    base = {
        "network": {
            "filters": 2,
            "hidden": 8,
            "mlp": 16,
            "heads": 2,
            "spatial_layers": 1,
            "temporal_layers": 1,
            "slots": 4,
        },
        "epochs": 2,
        "iters_per_epoch": 2,
        "batch_size": 2,
        "spacing_zyx": (2.0, 2.0, 2.0),
        "patch_zyx": (16, 32, 32),
        "stride_zyx": (8, 16, 16),
        "val_cases": 1,
        "seed": 3,
        "lr_step_epochs": 1,
    }
    base.update(kw)
    return default_options("tumor", **base)


def test_find_cases_and_bad_layout(dataset: Path, tmp_path: Path) -> None:
    from breastai.training.train import find_cases

    assert [p.name for p in find_cases(dataset)] == ["case000", "case001", "case002"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"P0\.nii\.gz"):
        find_cases(tmp_path / "empty")


def test_prepare_case_uses_inference_preprocessing(dataset: Path) -> None:
    from breastai.preprocess import normalise_seed
    from breastai.training.train import prepare_case

    opts = _tumor_options(spacing_zyx=(2.0, 2.0, 2.0))
    case = prepare_case(dataset / "case000", opts)
    assert case.image.shape[0] == 4 and case.image.dtype == np.float32
    assert case.image.shape[1:] == case.target.shape
    # Same values as the inference normalisation of the full volume, inside the kept crop.
    raw = [
        sitk.GetArrayFromImage(sitk.ReadImage(str(dataset / "case000" / f"P{k}.nii.gz")))
        for k in range(4)
    ]
    ref = normalise_seed(raw)
    (z0, z1), (y0, y1), (x0, x1) = case.box
    # box = breast bounding box: z 2..18, y 10..34, x 4..36 (crop offsets make it relative)
    assert (z1 - z0, y1 - y0, x1 - x0) == (16, 24, 32)
    tumor_vals = case.image[1][case.target > 0]
    np.testing.assert_allclose(tumor_vals.max(), ref[1].max(), rtol=1e-5)
    assert case.foreground.shape[1] == 3 and len(case.foreground) == int(case.target.sum())


def test_dice_loss_values() -> None:
    from breastai.training.train import dice_loss

    g = torch.zeros(1, 1, 4, 4, 4)
    g[..., :2, :, :] = 1
    assert float(dice_loss(g, g, eps=0.0)) == pytest.approx(0.0)
    assert float(dice_loss(1 - g, g, eps=0.0)) == pytest.approx(1.0)
    half = g.clone()
    half[..., :1, :, :] = 0  # predicts half of the foreground: Dice 2*16/(16+32) = 2/3
    assert float(dice_loss(half, g, eps=0.0)) == pytest.approx(1 / 3)


def test_options_validation() -> None:
    from breastai.training.train import default_options

    with pytest.raises(ParameterError):
        default_options("lung")
    with pytest.raises(ParameterError, match="divisible by 16"):
        default_options("tumor", patch_zyx=(24, 96, 96))
    with pytest.raises(ParameterError, match="unknown"):
        default_options("breast", learning_rate=1.0)
    assert default_options("tumor").lr == pytest.approx(1e-3)
    assert default_options("breast").lr == pytest.approx(2e-3)
    assert default_options("breast").lr_step_epochs == 50


def test_train_resume_is_identical_and_exports(dataset: Path, tmp_path: Path) -> None:
    from breastai.training.export import export_checkpoint
    from breastai.training.train import load_checkpoint, train

    seen = []
    straight = train(dataset, tmp_path / "a", _tumor_options(epochs=2), progress=seen.append)
    assert straight.epochs_done == 2 and straight.best_checkpoint.is_file()
    assert len(straight.val_cases) == 1 and len(straight.train_cases) == 2
    assert any(p.val_dice is not None for p in seen)
    assert [p.step for p in seen if p.epoch == 1][:2] == [1, 2]
    # Adam lr 1e-3 halved after every epoch here (lr_step_epochs=1)
    assert [h["lr"] for h in straight.history] == pytest.approx([5e-4, 2.5e-4])

    first = train(dataset, tmp_path / "b", _tumor_options(epochs=1))
    assert first.epochs_done == 1
    with pytest.raises(OutputError, match="--resume"):
        train(dataset, tmp_path / "b", _tumor_options(epochs=2))
    resumed = train(dataset, tmp_path / "b", _tumor_options(epochs=2), resume=True)
    assert resumed.epochs_done == 2
    a = load_checkpoint(straight.last_checkpoint)["model"]
    b = load_checkpoint(resumed.last_checkpoint)["model"]
    assert a.keys() == b.keys()
    for key in a:  # resuming restores weights, optimiser, schedule and random states exactly
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert [h["epoch"] for h in resumed.history] == [1, 2]

    onnx_path = tmp_path / "tumor.onnx"
    res = export_checkpoint(straight.best_checkpoint, onnx_path)
    assert onnx_path.is_file() and res.parity <= 1e-4
    assert res.card.task == "tumor" and res.card.phase_slots == 4
    assert res.card.patch_zyx == (16, 32, 32) and res.card.normalisation == "seed"


@pytest.mark.slow
def test_breast_training_runs(dataset: Path, tmp_path: Path) -> None:
    from breastai.training.export import export_checkpoint
    from breastai.training.train import default_options, train

    opts = default_options(
        "breast",
        network={"base": 2, "levels": 3},
        epochs=1,
        iters_per_epoch=2,
        spacing_zyx=(4.0, 4.0, 4.0),
        patch_zyx=(8, 16, 16),
        stride_zyx=(4, 8, 8),
        val_cases=1,
    )
    res = train(dataset, tmp_path / "breast", opts)
    assert res.best_val_dice is not None and 0.0 <= res.best_val_dice <= 1.0
    out = export_checkpoint(res.best_checkpoint, tmp_path / "breast.onnx")
    assert out.card.normalisation == "p1p99-minmax" and out.card.spacing_zyx == (4.0, 4.0, 4.0)


def test_foreign_checkpoint_is_rejected(tmp_path: Path) -> None:
    from breastai.training.train import load_checkpoint

    p = tmp_path / "x.pt"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable torch checkpoint"):
        load_checkpoint(p)
    torch.save({"model": {}}, p)
    with pytest.raises(InputError, match="import-weights"):
        load_checkpoint(p)


def test_network_sizes_map_options_onto_each_network() -> None:
    from breastai.training.train import network_sizes

    given = {"filters": 2, "hidden": None, "layers": 3, "slots": 4, "base": None, "levels": None}
    assert network_sizes("tumor", given) == {
        "filters": 2,
        "spatial_layers": 3,
        "temporal_layers": 3,
        "slots": 4,
    }
    assert network_sizes("breast", {"base": 4, "levels": 3, "filters": None}) == {
        "base": 4,
        "levels": 3,
    }
    with pytest.raises(ParameterError, match=r"^--layers does not apply to the breast model\.$"):
        network_sizes("breast", {"layers": 2})
    with pytest.raises(ParameterError, match="--base does not apply to the tumor model"):
        network_sizes("tumor", {"base": 4})
    with pytest.raises(ParameterError, match="task"):
        network_sizes("lesion", {})


def test_cli_train_export_register(dataset: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from breastai.cli import app
    from breastai.weights import load_registry

    runner = CliRunner()
    out = tmp_path / "run"
    args = ["train", "tumor", "--data", str(dataset), "--out", str(out), "--epochs", "1"]
    args += ["--iters-per-epoch", "1", "--spacing", "2,2,2", "--patch", "16,32,32"]
    args += ["--stride", "8,16,16", "--filters", "2", "--hidden", "8", "--mlp", "16"]
    args += ["--heads", "2", "--layers", "1", "--slots", "4", "--val-cases", "1"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (out / "best.pt").is_file() and "validation Dice" in res.output

    wf = tmp_path / "home" / "weights.toml"
    onnx_path = tmp_path / "mine.onnx"
    args = ["export", str(out / "best.pt"), "--out", str(onnx_path), "--register"]
    res = runner.invoke(app, [*args, "--weights-file", str(wf)])
    assert res.exit_code == 0, res.output
    card = load_registry(wf)["mine"]
    assert card.task == "tumor" and card.phase_slots == 4 and not card.demo

    bad = runner.invoke(
        app, ["train", "tumor", "--data", str(dataset), "--out", str(tmp_path / "x"), "--base", "4"]
    )
    assert bad.exit_code == 2 and "does not apply" in bad.output and "Traceback" not in bad.output
    nowhere = str(tmp_path / "x")
    missing = str(tmp_path / "nope")
    bad = runner.invoke(app, ["train", "breast", "--data", missing, "--out", nowhere])
    assert bad.exit_code == 1 and "does not exist" in bad.output
    bad = runner.invoke(
        app, ["train", "breast", "--data", str(dataset), "--out", nowhere, "--patch", "8,8"]
    )
    assert bad.exit_code == 2 and "three numbers" in bad.output


@pytest.mark.slow
def test_demo_weights_smoke(tmp_path: Path) -> None:
    import shutil

    from breastai.training.demo_weights import build_demo_weights
    from breastai.weights import package_weights_file, sha256_file

    toml = tmp_path / "weights.toml"
    shutil.copy(package_weights_file(), toml)
    res = build_demo_weights(tmp_path / "models", smoke=True, weights_toml=toml)
    assert res.breast_onnx.is_file() and res.tumor_onnx.is_file()
    assert res.tumor_sha256 == sha256_file(res.tumor_onnx)
    text = toml.read_text()
    assert res.breast_sha256 in text and res.tumor_sha256 in text
    assert "patch_zyx = [32, 96, 96]" in text  # the tumor entry now has the demo patch
    import tomllib

    entries = tomllib.loads(text)["models"]
    assert entries["demo-tumor"]["spacing_zyx"] == [2.0, 2.0, 2.0]
    assert entries["demo-breast"]["spacing_zyx"] == [4.0, 4.0, 4.0]
    assert entries["demo-tumor"]["sha256"] == res.tumor_sha256 and entries["demo-tumor"]["demo"]
    # --only breast: the same breast weights as the full run; the tumor entry is left alone
    again = build_demo_weights(tmp_path / "m2", smoke=True, weights_toml=toml, only="breast")
    assert again.tumor_onnx is None and again.breast_sha256 == res.breast_sha256
    assert tomllib.loads(toml.read_text())["models"]["demo-tumor"]["sha256"] == res.tumor_sha256


def test_demo_plan_cases(tmp_path: Path) -> None:
    from breastai.phantom import PRESETS
    from breastai.phantom.params import DEFAULT_BPE_SCALE_MM
    from breastai.training.demo_cases import TUMOR_HARD_NEGATIVES, TUMOR_MARKED_LESIONS
    from breastai.training.demo_weights import DEMO_SEED_BASE, build_demo_weights, demo_plan

    plan = demo_plan(0, recipe="phantom")
    train = plan.train_cases + plan.breast_extra_train + plan.tumor_extra_train
    val = plan.val_cases + plan.breast_extra_val
    seeds = [c["seed"] for c in train + val]
    assert len(set(seeds)) == len(seeds)
    # disjoint from the tests' (< 1000) and the accuracy benchmark's (800000+, 900000+) seeds
    assert all(DEMO_SEED_BASE <= s < DEMO_SEED_BASE + 1000 for s in seeds)
    assert {c["preset"] for c in plan.train_cases} == set(PRESETS)
    extra = {(c["preset"], c["orientation"]) for c in plan.breast_extra_train}
    assert {("implant_prepec", "sagittal"), ("implant_subpec", "sagittal")} <= extra
    assert ("no_fatsat", "axial") in extra
    t_extra = {(c["preset"], c["orientation"]) for c in plan.tumor_extra_train}
    hard = {("tiny_lesion", "sagittal"), ("nme_segmental", "oblique"), ("motion", "axial")}
    assert hard <= t_extra
    assert not any("overrides" in c for c in train + val)
    # "hard-negatives": "demo" plus tumor cases with clumped background enhancement, finer than
    # the phantom's default patches
    demo, hard = demo_plan(0), demo_plan(0, recipe="hard-negatives")
    assert not any("overrides" in c for c in demo.tumor_extra_train)

    def appended(base: list, extended: list, listed: tuple, levels: tuple) -> list:
        """The cases ``extended`` adds after ``base``: one per listed case, each with clumped
        background enhancement (a small share of the gland in small patches) at ``levels``."""
        assert extended[: len(base)] == base
        added = extended[len(base) :]
        assert len(added) == len(listed) >= 6
        for c in added:
            o = c["overrides"]
            assert 0.2 <= o["bpe_fraction"] <= 0.4 and o["bpe_scale_mm"] < DEFAULT_BPE_SCALE_MM
            assert c["preset"] == "bpe_marked" or o["bpe"] in levels
        return added

    appended(
        demo.tumor_extra_train,
        hard.tumor_extra_train,
        TUMOR_HARD_NEGATIVES,
        ("moderate", "marked"),
    )
    assert (hard.tumor, hard.breast, hard.train_cases) == (
        demo.tumor,
        demo.breast,
        demo.train_cases,
    )
    assert hard.breast_extra_train == demo.breast_extra_train
    # "marked-bpe": "hard-negatives" plus lesions inside marked, clumped enhancement, each with
    # its lesions given (the borders the negatives alone cost)
    marked = demo_plan(0, recipe="marked-bpe")
    lesion_cases = appended(
        hard.tumor_extra_train, marked.tumor_extra_train, TUMOR_MARKED_LESIONS, ("marked",)
    )
    kinetics = {les["kinetics"] for c in lesion_cases for les in c["overrides"].get("lesions", [])}
    assert {"plateau", "persistent"} <= kinetics  # curves like the background's own
    assert (marked.tumor, marked.breast_extra_train) == (demo.tumor, demo.breast_extra_train)
    every = marked.train_cases + marked.breast_extra_train + marked.tumor_extra_train
    every += marked.val_cases + marked.breast_extra_val + marked.randomised_train
    assert len({c["seed"] for c in every}) == len(every)
    every = hard.train_cases + hard.breast_extra_train + hard.tumor_extra_train + hard.val_cases
    every += hard.breast_extra_val + hard.randomised_train + hard.randomised_val
    seeds = [c["seed"] for c in every]
    assert len(set(seeds)) == len(seeds)
    assert all(DEMO_SEED_BASE <= s < DEMO_SEED_BASE + 1000 for s in seeds)
    assert all(c["spacing_zyx"] == (3.0, 1.5, 1.5) for c in train if c["orientation"] == "sagittal")
    assert plan.breast.val_cases == len(val) == 4 and plan.tumor.val_cases == len(plan.val_cases)
    with pytest.raises(ParameterError, match="only"):
        build_demo_weights(tmp_path, only="lesion")


def test_spec_overrides_reach_the_phantom() -> None:
    """A case spec's phantom overrides are what the training case is generated with."""
    from breastai.phantom import generate_case
    from breastai.training.demo_cases import case_specs, generate_spec_case

    grids = (((24, 48, 48), (6.0, 5.0, 5.0)),)
    plain, clumped = (
        case_specs(1, 41, ["bpe_marked"], grids, ["axial"], overrides)[0]
        for overrides in (None, [{"bpe_fraction": 0.3, "bpe_scale_mm": 8.0}])
    )
    assert "overrides" not in plain
    case, case_id = generate_spec_case(clumped)
    assert case_id == "bpe_marked-axial-s41"
    assert case.meta["bpe_fraction"] == 0.3 and case.meta["bpe_scale_mm"] == 8.0
    same = generate_case(
        41,
        preset="bpe_marked",
        shape_zyx=(24, 48, 48),
        spacing_zyx=(6.0, 5.0, 5.0),
        bpe_fraction=0.3,
        bpe_scale_mm=8.0,
    )
    assert np.array_equal(case.images, same.images)
    base, _ = generate_spec_case(plain)
    assert "bpe_fraction" not in base.meta and not np.array_equal(base.images, case.images)


def test_randomised_recipe_plan() -> None:
    from breastai.training.demo_weights import DEMO_SEED_BASE, demo_plan

    phantom, plan = demo_plan(0, recipe="phantom"), demo_plan(0, recipe="randomised")
    # the randomised recipe keeps every phantom case and adds domain-randomised ones
    assert plan.train_cases == phantom.train_cases and plan.val_cases == phantom.val_cases
    assert len(plan.randomised_train) >= 30 and len(plan.randomised_val) == 2
    assert all(c["randomised"] for c in plan.randomised_train + plan.randomised_val)
    every = (
        plan.train_cases
        + plan.breast_extra_train
        + plan.tumor_extra_train
        + plan.val_cases
        + plan.breast_extra_val
        + plan.randomised_train
        + plan.randomised_val
    )
    seeds = [c["seed"] for c in every]
    assert len(set(seeds)) == len(seeds)
    assert all(DEMO_SEED_BASE <= s < DEMO_SEED_BASE + 1000 for s in seeds)
    assert plan.tumor.augment == plan.breast.augment == "dr"
    assert phantom.tumor.augment == phantom.breast.augment == "none"
    assert plan.breast.val_cases == phantom.breast.val_cases + 2
    assert plan.tumor.val_cases == phantom.tumor.val_cases + 2
    # "demo" (the default, the bundled pair): breast as "randomised", tumor as "phantom"
    demo = demo_plan(0)
    assert demo.recipe == "demo" and demo.breast == plan.breast and demo.tumor == phantom.tumor
    assert demo.randomised_train == plan.randomised_train
    assert demo.randomised_val == plan.randomised_val
    with pytest.raises(ParameterError, match="recipe"):
        demo_plan(0, recipe="magic")


def test_demo_recipe_trains_the_tumor_model_on_phantom_cases_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # which cases reach each model's training (the training itself is the smoke test's)
    import breastai.training.demo_weights as dw

    seen: dict[str, list[str]] = {"breast": [], "tumor": []}
    real_prepare = dw._prepare

    def spy(specs, plan, tasks=("breast", "tumor")):  # type: ignore[no-untyped-def]
        for t in tasks:
            seen[t] += ["r" if c.get("randomised") else "p" for c in specs]
        return real_prepare(specs, plan, tasks)

    stop = RuntimeError("stop before training")

    def no_train(*a, **k):  # type: ignore[no-untyped-def]
        raise stop

    monkeypatch.setattr(dw, "_prepare", spy)
    monkeypatch.setattr(dw, "train", no_train)
    for recipe, breast_r, tumor_r in (("demo", True, False), ("randomised", True, True)):
        seen = {"breast": [], "tumor": []}
        with pytest.raises(RuntimeError, match="stop before"):
            dw.build_demo_weights(tmp_path / recipe, smoke=True, recipe=recipe)
        assert ("r" in seen["breast"]) is breast_r and ("r" in seen["tumor"]) is tumor_r
        assert "p" in seen["breast"] and "p" in seen["tumor"]
    assert dw.training_data("demo", "breast") == dw.TRAINING_DATA["randomised"]
    assert dw.training_data("demo", "tumor") == dw.TRAINING_DATA["phantom"]


def test_augment_option_is_checked_and_stored(tmp_path: Path, dataset: Path) -> None:
    from breastai.training.train import TrainOptions, load_checkpoint, train

    with pytest.raises(ParameterError, match="augment"):
        _tumor_options(augment="heavy")
    opts = _tumor_options(augment="dr", epochs=1, iters_per_epoch=2)
    res = train(dataset, tmp_path / "run", opts)
    saved = TrainOptions.from_dict(load_checkpoint(res.last_checkpoint)["options"])
    assert saved.augment == "dr"


def test_install_demo_weights_checks_the_card(tmp_path: Path) -> None:
    import shutil
    import tomllib

    from breastai.errors import InputError
    from breastai.training.demo_weights import TRAINING_DATA, install_demo_weights
    from breastai.weights import package_weights_file, sha256_file

    run = tmp_path / "run"
    run.mkdir()
    onnx = run / "demo-breast.onnx"
    onnx.write_bytes(b"not really a network, but bytes with a hash")
    card = (
        'schema_version = 1\n\n[models.demo-breast]\ntask = "breast"\n'
        'filename = "demo-breast.onnx"\n'
        f'sha256 = "{sha256_file(onnx)}"\n'
        "patch_zyx = [32, 64, 64]\nstride_zyx = [16, 32, 32]\nspacing_zyx = [4.0, 4.0, 4.0]\n"
        'threshold = 0.5\nblending = "gaussian"\n'
    )
    (run / "demo-breast.toml").write_text(card)
    toml = tmp_path / "weights.toml"
    shutil.copy(package_weights_file(), toml)
    models = tmp_path / "models"
    models.mkdir()
    out = install_demo_weights(run, models_dir=models, weights_toml=toml, tasks=("breast",))
    assert out == [models / "demo-breast.onnx"]
    assert (models / "demo-breast.onnx").read_bytes() == onnx.read_bytes()
    entry = tomllib.loads(toml.read_text())["models"]["demo-breast"]
    assert entry["sha256"] == sha256_file(onnx)
    assert entry["training_data"] == TRAINING_DATA["randomised"]
    # a file that no longer matches its card is refused, and nothing is installed for it
    onnx.write_bytes(b"changed after export")
    with pytest.raises(InputError, match="sha256"):
        install_demo_weights(run, models_dir=models, weights_toml=toml, tasks=("breast",))
    with pytest.raises(InputError, match="demo-tumor"):
        install_demo_weights(run, models_dir=models, weights_toml=toml, tasks=("tumor",))


def test_demo_weights_resume(tmp_path: Path) -> None:
    from breastai.training.demo_weights import build_demo_weights

    with pytest.raises(ParameterError, match="--work"):
        build_demo_weights(tmp_path / "m", smoke=True, only="breast", resume=True)
    work = tmp_path / "work"
    first = build_demo_weights(
        tmp_path / "m1", smoke=True, only="breast", work_dir=work, update_weights_toml=False
    )
    done = json.loads((work / "breast-history.json").read_text())
    # A resumed run continues from work/breast/last.pt: the finished stage is not trained again,
    # so the exported weights are the same and the history is the checkpoint's, to the recorded
    # epoch times (a second training, even a deterministic one, would record other seconds).
    again = build_demo_weights(
        tmp_path / "m2",
        smoke=True,
        only="breast",
        work_dir=work,
        update_weights_toml=False,
        resume=True,
    )
    assert again.breast_sha256 == first.breast_sha256
    assert json.loads((work / "breast-history.json").read_text()) == done
    assert all(h["seconds"] > 0 for h in done)
