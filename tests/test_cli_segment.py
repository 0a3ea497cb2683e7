"""`breastai segment` through typer's CliRunner: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from segment_factory import cli_model_args, make_model_pair, write_classic_study
from typer.testing import CliRunner

from breastai.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BREASTAI_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    models = make_model_pair(root / "models")
    write_classic_study(root / "caseA", shape=(8, 24, 30))
    (root / "empty").mkdir()
    return {"root": root, **models}


def _args(s: dict[str, Path], out: Path) -> list[str]:
    return ["-o", str(out), *cli_model_args(s, s["root"] / "w.toml")]


def test_segment_ok_then_skipped_then_force(setup, tmp_path: Path) -> None:
    from breastai.cohort import study_folder_name

    study = str(setup["root"] / "caseA")
    res = runner.invoke(app, ["segment", study, *_args(setup, tmp_path)])
    assert res.exit_code == 0, res.output
    folder = tmp_path / study_folder_name(study)
    assert folder.name.startswith("caseA-") and (folder / "seg.dcm").exists()
    assert "caseA" in res.output and "Research use only" in res.output
    assert "Traceback" not in res.output
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    again = runner.invoke(app, ["segment", study, *_args(setup, tmp_path)])  # resumed: nothing
    assert again.exit_code == 0 and "skipped" in again.output and "Traceback" not in again.output
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp
    forced = runner.invoke(app, ["segment", study, *_args(setup, tmp_path), "--force", "--quiet"])
    assert forced.exit_code == 0 and forced.output.strip() == ""
    assert (folder / "manifest.json").stat().st_mtime_ns != stamp


def test_batch_json_lists_each_study_and_exits_1(setup, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "segment",
            str(setup["root"] / "caseA"),
            str(setup["root"] / "empty"),
            *_args(setup, tmp_path),
            "--json",
        ],
    )
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    doc = json.loads(res.stdout)
    assert [r["ok"] for r in doc["results"]] == [True, False]
    assert doc["results"][1]["error"] and "Research use only" in doc["notice"]
    assert "empty: " in res.stderr and res.stderr.lstrip().startswith("error: ")
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "extra",
    [
        ["--blend", "max"],
        ["--device", "gpu"],
        ["--no-such-option"],
        ["--runtime", "tensorrt"],
        ["--precision", "fp16"],
        ["--device", "cuda", "--runtime", "openvino"],
        ["--device", "cuda:0", "--precision", "bf16"],
    ],
)
def test_usage_errors_exit_2(setup, tmp_path: Path, extra: list[str]) -> None:
    res = runner.invoke(app, ["segment", str(setup["root"] / "caseA"), "-o", str(tmp_path), *extra])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert not list(tmp_path.iterdir())


def test_cuda_without_gpu_is_one_line_exit_1(setup, tmp_path: Path) -> None:
    import onnxruntime as ort

    ort.set_default_logger_severity(4)
    s = ort.InferenceSession(
        str(setup["breast"]), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    ort.set_default_logger_severity(2)
    if s.get_providers()[0] == "CUDAExecutionProvider":
        pytest.skip("a real CUDA GPU is present")
    args = _args(setup, tmp_path)
    args[args.index("cpu")] = "cuda"
    res = runner.invoke(app, ["segment", str(setup["root"] / "caseA"), *args])
    assert res.exit_code == 1
    assert "--device cpu" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.output


def test_missing_weights_name_is_exit_1(setup, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "segment",
            str(setup["root"] / "caseA"),
            "-o",
            str(tmp_path),
            "--device",
            "cpu",
            "--weights",
            "no-such-model",
            "--breast-weights",
            str(setup["breast"]),
            "--weights-file",
            str(setup["root"] / "w.toml"),
        ],
    )
    assert res.exit_code == 1
    assert "no-such-model" in res.stderr and "Traceback" not in res.output


def test_min_enhancement_option_reaches_the_run(setup, tmp_path: Path) -> None:
    import typer

    from breastai.cohort import study_folder_name
    from breastai.postprocess import DEFAULT_MIN_ENHANCEMENT_PCT

    params = {p.name: p for p in typer.main.get_command(app).commands["segment"].params}
    assert params["min_enhancement"].default == DEFAULT_MIN_ENHANCEMENT_PCT
    study = str(setup["root"] / "caseA")
    args = ["segment", study, *_args(setup, tmp_path), "--no-breast-mask", "--json"]
    res = runner.invoke(app, [*args, "--min-enhancement", "1000"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / study_folder_name(study) / "manifest.json").read_text())
    assert manifest["settings"]["min_enhancement_pct"] == 1000.0
    # the lesion (+650 %) is removed, the "heart" (+1400 %) stays
    assert manifest["postprocess"]["non_enhancing_components_removed"] == 1
    assert json.loads(res.output)["results"][0]["lesion_count"] == 1
    bad = runner.invoke(app, [*args, "--min-enhancement", "-5"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
