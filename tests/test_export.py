"""ONNX export: parity with torch, symbolic batch axis, I/O names, opset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from breastai.errors import OutputExistsError  # noqa: E402

pytestmark = pytest.mark.train


def _models():  # type: ignore[no-untyped-def]
    from breastai.training.networks import SeedTumorConfig, SeedTumorNet, UNet3D, UNet3DConfig

    torch.manual_seed(0)
    tumor = SeedTumorNet(
        SeedTumorConfig(
            filters=2,
            hidden=8,
            mlp=16,
            heads=2,
            spatial_layers=1,
            temporal_layers=1,
            patch_zyx=(16, 32, 32),
        )
    )
    breast = UNet3D(UNet3DConfig(base=2, levels=4, patch_zyx=(16, 32, 32)))
    return {"tumor": tumor, "breast": breast}


@pytest.mark.parametrize("task", ["tumor", "breast"])
def test_export_parity_and_symbolic_batch(task: str, tmp_path: Path) -> None:
    from breastai.training.export import example_inputs, export_onnx

    model = _models()[task].eval()
    out = tmp_path / f"{task}.onnx"
    parity = export_onnx(model, out)
    assert parity <= 1e-4

    graph = onnx.load(str(out))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    names = [i.name for i in graph.graph.input]
    assert names == (["phases", "time_mask"] if task == "tumor" else ["image"])
    assert [o.name for o in graph.graph.output] == ["probability"]
    for value in (*graph.graph.input, *graph.graph.output):
        dim0 = value.type.tensor_type.shape.dim[0]
        assert dim0.dim_param and not dim0.HasField("dim_value"), value.name

    # independent check at batch 3 on new inputs
    inputs = example_inputs(model, batch=3, seed=5)
    with torch.no_grad():
        ref = model(*inputs).numpy()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})[0]
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= 1e-4

    with pytest.raises(OutputExistsError, match="--force"):
        export_onnx(model, out)
    export_onnx(model, out, force=True, verify=False)


def test_feature_export_encoder_and_head(tmp_path: Path) -> None:
    from breastai.inference import (
        OnnxModel,
        feature_predictors,
        sliding_window,
        sliding_window_features,
    )
    from breastai.training.export import (
        ENCODER_OUTPUTS,
        HEAD_INPUTS,
        export_feature_onnx,
        export_onnx,
    )
    from breastai.weights import sha256_file

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _models()["tumor"].eval()
        enc_path, head_path = tmp_path / "t.encoder.onnx", tmp_path / "t.head.onnx"
        res = export_feature_onnx(model, enc_path, head_path)
        full = tmp_path / "t.onnx"
        export_onnx(model, full, verify=False)
    finally:
        torch.set_num_threads(threads)
    assert res.encoder_parity <= 1e-4 and res.head_parity <= 1e-4
    assert res.encoder_sha256 == sha256_file(enc_path) and res.head_sha256 == sha256_file(head_path)

    enc = onnx.load(str(enc_path))
    assert [i.name for i in enc.graph.input] == ["pair"]
    assert [o.name for o in enc.graph.output] == list(ENCODER_OUTPUTS)
    for value in (*enc.graph.input, *enc.graph.output):  # batch and z, y, x symbolic
        dims = value.type.tensor_type.shape.dim
        assert all(dims[a].dim_param and not dims[a].HasField("dim_value") for a in (0, 2, 3, 4))
    head = onnx.load(str(head_path))
    assert [i.name for i in head.graph.input] == list(HEAD_INPUTS)
    assert [o.name for o in head.graph.output] == ["probability"]

    # the encoder file at a size other than the export example, against torch
    sess = ort.InferenceSession(str(enc_path), providers=["CPUExecutionProvider"])
    pair = np.random.default_rng(1).random((1, 2, 32, 48, 64), dtype=np.float32)
    got = sess.run(None, {"pair": pair})
    with torch.no_grad():
        skips, bridge = model.encode(torch.from_numpy(pair))
    for g, r in zip(got, [*skips, bridge], strict=True):
        assert g.shape == tuple(r.shape)
        assert float(np.abs(g - r.numpy()).max()) <= 1e-4

    # encoder + head on one window (the window IS the crop) == the full model on that window
    encode, run_head = feature_predictors(
        OnnxModel(enc_path, device="cpu", threads=1), OnnxModel(head_path, device="cpu", threads=1)
    )
    rng = np.random.default_rng(2)
    vol = 1.2 * rng.random((6, 1, 16, 32, 32), dtype=np.float32)
    vol[4:] = vol[1]
    tm = np.array([1, 1, 1, 1, 0, 0], np.float32)
    kw = {"blend": "mean", "batch_size": 1}
    feat = sliding_window_features(vol, tm, encode, run_head, (16, 32, 32), (16, 16, 16), **kw)
    ref_model = OnnxModel(full, device="cpu", threads=1)
    ref = sliding_window(vol, ref_model.predictor(time_mask=tm), (16, 32, 32), (8, 16, 16), **kw)
    with torch.no_grad():
        tref = model(torch.from_numpy(vol[None]), torch.from_numpy(tm[None])).numpy()[0, 0]
    assert float(np.abs(feat - ref).max()) <= 1e-4
    assert float(np.abs(feat - tref).max()) <= 1e-4
    assert float(feat.std()) > 1e-4  # not a constant output

    with pytest.raises(OutputExistsError, match="--force"):
        export_feature_onnx(model, enc_path, head_path)
    from breastai.errors import WeightsError

    with pytest.raises(WeightsError, match="encoder file"):
        feature_predictors(ref_model, OnnxModel(head_path, device="cpu"))
