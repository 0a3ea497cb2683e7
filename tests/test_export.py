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
