"""Import of the authors' checkpoint, checked against the golden vectors of their network."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from breastai.errors import WeightsError  # noqa: E402
from breastai.inference import OPENVINO_CPU, OnnxModel, openvino_available  # noqa: E402

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def golden(shared_dir: Path) -> Path:
    path = shared_dir / "golden" / "seed-tumor"
    if not (path / "state_dict.npz").is_file():
        pytest.skip("golden seed-tumor vectors not present")
    return path


@pytest.fixture(scope="module")
def golden_state(golden: Path):  # type: ignore[no-untyped-def]
    from breastai.training.seed_import import read_state_dict

    return read_state_dict(golden / "state_dict.npz")


@pytest.fixture(scope="module")
def cases(golden: Path):  # type: ignore[no-untyped-def]
    with np.load(golden / "cases.npz") as data:
        return {k: data[k] for k in data.files}


def test_sizes_are_read_from_the_tensors(golden: Path, golden_state) -> None:  # type: ignore[no-untyped-def]
    from breastai.training.seed_import import infer_seed_config

    conf = json.loads((golden / "config.json").read_text())["trans_param"]
    cfg = infer_seed_config(golden_state)
    assert cfg.hidden == conf["hidden_size"]
    assert cfg.mlp == conf["MLP_dim"]
    assert cfg.spatial_layers == cfg.temporal_layers == conf["Trans_num_layers"]
    assert cfg.heads == conf["Num_heads"] == 12  # the documented default
    assert cfg.filters == 16 and cfg.slots == 6 and cfg.positions == 72


def test_golden_outputs_in_torch(golden_state, cases) -> None:  # type: ignore[no-untyped-def]
    from breastai.training.seed_import import load_seed_network

    net = load_seed_network(golden_state)
    n = 0
    for key in sorted(k for k in cases if k.endswith("_output")):
        case = key[: -len("_output")]
        x = torch.from_numpy(cases[f"{case}_phases"].astype(np.float32))
        m = torch.from_numpy(cases[f"{case}_time_mask"].astype(np.float32))
        with torch.no_grad():
            got = net(x, m).numpy()
        # 1e-4: agreed float32 tolerance (different summation order than the reference run)
        assert float(np.abs(got - cases[key]).max()) <= 1e-4, case
        n += 1
    assert n == 3


def test_torch_checkpoint_formats(golden_state, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from breastai.training.seed_import import read_state_dict

    with_counters = dict(golden_state)
    with_counters["encoder_post.down_1.0.1.num_batches_tracked"] = torch.tensor(5)
    wrapped = tmp_path / "best_model.pth"
    torch.save({"model": with_counters, "epoch": 3}, wrapped)
    bare = tmp_path / "bare.pth"
    torch.save({f"module.{k}": v for k, v in golden_state.items()}, bare)
    for path in (wrapped, bare):
        state = read_state_dict(path)
        assert state.keys() == golden_state.keys()
        torch.testing.assert_close(
            state["decoder.out.0.weight"], golden_state["decoder.out.0.weight"]
        )


def test_mismatches_name_the_key_and_shapes(golden_state) -> None:  # type: ignore[no-untyped-def]
    from breastai.training.seed_import import load_seed_network

    missing = dict(golden_state)
    del missing["decoder.up_3.1.weight"]
    with pytest.raises(
        WeightsError,
        match=r"lacks 'decoder\.up_3\.1\.weight' \(expected shape \(64, 64, 3, 3, 3\)\)",
    ):
        load_seed_network(missing)

    extra = dict(golden_state)
    extra["decoder.res_up5.0.weight"] = torch.zeros(16, 48, 3, 3, 3)
    with pytest.raises(
        WeightsError,
        match=r"unexpected key 'decoder\.res_up5\.0\.weight' \(shape \(16, 48, 3, 3, 3\)\)",
    ):
        load_seed_network(extra)

    wrong = dict(golden_state)
    wrong["decoder.trans_3.1.weight"] = torch.zeros(100)
    with pytest.raises(
        WeightsError, match=r"trans_3\.1\.weight: expected shape \(128,\), found \(100,\)"
    ):
        load_seed_network(wrong)

    with pytest.raises(WeightsError, match="patch_embeddings"):
        load_seed_network({k: v for k, v in golden_state.items() if "patch_embeddings" not in k})


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return (os.system, ("touch EVIL_MARKER",))


def test_foreign_and_unsafe_files_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from breastai.training.seed_import import read_state_dict

    monkeypatch.chdir(tmp_path)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(WeightsError, match="not a torch checkpoint"):
        read_state_dict(text)
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"model": _Evil()}))
    with pytest.raises(WeightsError, match="not a torch checkpoint"):
        read_state_dict(evil)
    torch.save({"model": {"a": _Evil()}}, tmp_path / "evil2.pth")
    with pytest.raises(WeightsError):
        read_state_dict(tmp_path / "evil2.pth")
    assert not (tmp_path / "EVIL_MARKER").exists()  # nothing in the file was executed
    with pytest.raises(WeightsError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="not a state dict"):
        read_state_dict(tmp_path / "list.pth")


@pytest.mark.slow
def test_import_exports_onnx_matching_golden(golden: Path, cases, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import onnx
    import onnxruntime as ort

    from breastai.training.seed_import import import_seed_checkpoint
    from breastai.weights import load_registry, sha256_file

    wf = tmp_path / "home" / "weights.toml"
    out = tmp_path / "seed.onnx"
    res = import_seed_checkpoint(
        golden / "state_dict.npz", out=out, name="golden-seed", weights_file=wf
    )
    assert res.parity <= 1e-3 and res.sha256 == sha256_file(out)
    model = onnx.load(str(out))
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in model.graph.input
    }
    assert dims["phases"][1:] == [6, 1, 32, 96, 96] and dims["time_mask"][1:] == [6]
    assert isinstance(dims["phases"][0], str)  # symbolic batch
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for i in range(3):
        got = sess.run(
            None,
            {
                "phases": cases[f"case{i}_phases"].astype(np.float32),
                "time_mask": cases[f"case{i}_time_mask"].astype(np.float32),
            },
        )[0]
        # 1e-3: agreed tolerance between the reference and ONNX Runtime CPU kernels
        assert float(np.abs(got - cases[f"case{i}_output"]).max()) <= 1e-3
    if openvino_available():  # the same file on OpenVINO's CPU plugin (float32), same tolerance
        ov_model = OnnxModel(out, device="cpu", runtime="openvino")
        assert ov_model.provider == OPENVINO_CPU
        for i in range(3):
            got = ov_model.run(
                {
                    "phases": cases[f"case{i}_phases"].astype(np.float32),
                    "time_mask": cases[f"case{i}_time_mask"].astype(np.float32),
                }
            )
            assert float(np.abs(got - cases[f"case{i}_output"]).max()) <= 1e-3
    card = load_registry(wf)["golden-seed"]
    assert card.task == "tumor" and card.sha256 == res.sha256 and not card.demo
    assert card.normalisation == "seed" and card.blending == "vote"
    assert card.patch_zyx == (32, 96, 96) and card.stride_zyx == (16, 48, 48)
    assert card.spacing_zyx == (1.0, 1.0, 1.0)
    assert (card.phases_min, card.phases_max, card.phase_slots) == (2, 6, 6)
    assert card.licence == "code MIT; weights as the authors state"


def test_cli_import_weights_bad_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from breastai.cli import app

    bad = tmp_path / "best_model.pth"
    bad.write_text("not a checkpoint")
    res = CliRunner().invoke(
        app,
        [
            "import-weights",
            "--seed-checkpoint",
            str(bad),
            "--weights-file",
            str(tmp_path / "w.toml"),
        ],
    )
    assert res.exit_code == 1
    assert "not a torch checkpoint" in res.output and "Traceback" not in res.output
