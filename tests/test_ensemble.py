"""breastai.training.ensemble: one ONNX file whose probability is the mean of its members'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from breastai.errors import OutputExistsError, ParameterError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _member(path: Path, scale: float, bias: float, inputs: tuple[str, ...] = ("x", "mask")) -> Path:
    """probability = sigmoid(scale * x + bias) * mask: an analytic stand-in for a network."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Mul", [inputs[0], "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["p"]),
        helper.make_node("Mul", ["p", inputs[1]], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "member",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 4]) for n in inputs],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor("scale", TensorProto.FLOAT, [], [scale]),
            helper.make_tensor("bias", TensorProto.FLOAT, [], [bias]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_mean_of_members(tmp_path: Path) -> None:
    from breastai.training.ensemble import mean_probability_onnx

    members = [
        _member(tmp_path / f"m{k}.onnx", s, b)
        for k, (s, b) in enumerate([(1.0, 0.0), (-2.0, 0.5), (0.5, -1.0)])
    ]
    out = mean_probability_onnx(members, tmp_path / "ens" / "model.onnx")
    x = np.linspace(-3, 3, 8, dtype=np.float32).reshape(2, 4)
    mask = np.array([[1, 1, 0, 1], [1, 0, 1, 1]], dtype=np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x", "mask"]
    (got,) = session.run(None, {"x": x, "mask": mask})

    def sigmoid(v: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-v))

    want = mask * (sigmoid(x) + sigmoid(-2 * x + 0.5) + sigmoid(0.5 * x - 1.0)) / 3
    np.testing.assert_allclose(got, want, atol=1e-6)
    with pytest.raises(OutputExistsError, match="force"):
        mean_probability_onnx(members, out)
    assert mean_probability_onnx(members[:2], out, force=True) == out
    (two,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "mask": mask}
    )
    np.testing.assert_allclose(two, mask * (sigmoid(x) + sigmoid(-2 * x + 0.5)) / 2, atol=1e-6)


def test_members_must_match(tmp_path: Path) -> None:
    from breastai.training.ensemble import mean_probability_onnx

    a = _member(tmp_path / "a.onnx", 1.0, 0.0)
    other = _member(tmp_path / "b.onnx", 1.0, 0.0, inputs=("image", "mask"))
    with pytest.raises(ParameterError, match="two or more"):
        mean_probability_onnx([a], tmp_path / "e.onnx")
    with pytest.raises(ParameterError, match="inputs"):
        mean_probability_onnx([a, other], tmp_path / "e.onnx")
    assert not (tmp_path / "e.onnx").exists()
