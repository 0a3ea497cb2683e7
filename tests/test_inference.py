"""Tests of breastai.inference: exact-value sliding-window checks and the ONNX Runtime wrapper."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from segment_factory import make_breast_onnx, make_tumor_onnx, sigmoid

from breastai.errors import ParameterError, WeightsError
from breastai.inference import (
    OPENVINO_CPU,
    DeviceUnavailableError,
    OnnxModel,
    gaussian_weights,
    n_windows,
    openvino_available,
    openvino_bf16_available,
    parse_device,
    parse_precision,
    parse_runtime,
    sliding_window,
    window_starts,
)
from breastai.inference.runtimes import _Session

#: Every CPU runtime this checkout can run (OpenVINO is the optional ``openvino`` extra).
CPU_RUNTIMES = [
    pytest.param("onnxruntime", id="onnxruntime"),
    pytest.param(
        "openvino",
        id="openvino",
        marks=pytest.mark.skipif(
            not openvino_available(), reason="OpenVINO (the [openvino] extra) is not installed"
        ),
    ),
]
PROVIDERS = {"onnxruntime": "CPUExecutionProvider", "openvino": OPENVINO_CPU}

PATCH = (4, 8, 6)
SHAPES = {
    "smaller": (3, 5, 4),
    "equal": PATCH,
    "not-divisible": (11, 19, 13),
}


def _stride(overlap: float) -> tuple[int, ...]:
    return tuple(max(1, round(p * (1 - overlap))) for p in PATCH)


def _plus_one(batch: np.ndarray) -> np.ndarray:
    # (B, C, z, y, x) -> (B, 1, z, y, x); (B, S, C, z, y, x) -> slot 0
    b = batch[:, 0] if batch.ndim == 6 else batch
    return b[:, :1] + 1.0


def test_window_starts() -> None:
    assert window_starts(3, 4, 2) == [0]
    assert window_starts(4, 4, 2) == [0]
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert window_starts(11, 4, 4) == [0, 4, 7]  # last window flush with the end
    with pytest.raises(ParameterError):
        window_starts(10, 0, 2)


@pytest.mark.parametrize("blend", ["vote", "mean", "gaussian"])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_plus_one_is_exact(blend: str, overlap: float, shape_name: str) -> None:
    shape = SHAPES[shape_name]
    rng = np.random.default_rng(0)
    image = rng.uniform(-1.0, 0.0, shape).astype(np.float32)  # image + 1 in [0, 1]
    for vol in (image[None], np.stack([image[None], np.zeros_like(image)[None]])):
        out = sliding_window(vol, _plus_one, PATCH, _stride(overlap), blend=blend, batch_size=3)
        assert out.shape == shape and out.dtype == np.float32
        assert np.all(np.isfinite(out))
        if blend == "vote":
            # every window votes the same binary value for a voxel: the fraction is exact
            np.testing.assert_array_equal(out, (image + 1.0 >= 0.5).astype(np.float32))
        else:
            np.testing.assert_allclose(out, image + 1.0, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("blend", ["vote", "mean", "gaussian"])
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_constant_predictor_gives_constant_map(blend: str, shape_name: str) -> None:
    shape = SHAPES[shape_name]
    vol = np.zeros((1, *shape), np.float32)

    def const(b: np.ndarray) -> np.ndarray:
        return np.full((b.shape[0], 1, *PATCH), 0.7, np.float32)

    out = sliding_window(vol, const, PATCH, _stride(0.5), blend=blend)
    want = 1.0 if blend == "vote" else 0.7
    np.testing.assert_allclose(out, want, rtol=1e-6)
    assert not np.any(np.isnan(out))


def test_vote_is_majority_of_binarised_windows() -> None:
    # Along x, 3 windows of 4 with stride 2 over 8 voxels: window k predicts 1 where k is odd.
    vol = np.zeros((1, 1, 1, 8), np.float32)
    calls: list[int] = []

    def pred(b: np.ndarray) -> np.ndarray:
        out = np.zeros((b.shape[0], 1, 1, 1, 4), np.float32)
        for i in range(b.shape[0]):
            out[i] = 0.9 if (len(calls) + i) % 2 == 1 else 0.2
        calls.extend(range(b.shape[0]))
        return out

    out = sliding_window(vol, pred, (1, 1, 4), (1, 1, 2), blend="vote")
    # windows: [0,4) -> 0, [2,6) -> 1, [4,8) -> 0
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0.5, 0.5, 0.5, 0.5, 0, 0])
    assert not (out > 0.5).any()  # a tie is background (the released code's final "> 0.5")


def test_roi_skipping_matches_full_inside_roi() -> None:
    rng = np.random.default_rng(1)
    image = rng.uniform(-1, 0, (20, 30, 26)).astype(np.float32)
    roi = ((5, 12), (3, 9), (10, 25))
    seen: list[int] = []

    def counting(b: np.ndarray) -> np.ndarray:
        seen.append(b.shape[0])
        return _plus_one(b)

    full = sliding_window(image[None], _plus_one, PATCH, _stride(0.5), blend="mean")
    part = sliding_window(image[None], counting, PATCH, _stride(0.5), blend="mean", roi=roi)
    inside = (slice(5, 12), slice(3, 9), slice(10, 25))
    np.testing.assert_allclose(part[inside], full[inside], rtol=1e-6)
    mask = np.zeros(image.shape, bool)
    mask[inside] = True
    assert np.all(part[~mask] == 0)
    assert (
        sum(seen)
        == n_windows(image.shape, PATCH, _stride(0.5), roi)
        < n_windows(image.shape, PATCH, _stride(0.5))
    )
    empty = sliding_window(image[None], counting, PATCH, PATCH, roi=((3, 3), (0, 5), (0, 5)))
    assert not empty.any()


def test_batch_size_does_not_change_result() -> None:
    rng = np.random.default_rng(2)
    vol = rng.random((1, 9, 17, 15)).astype(np.float32)

    def nonlocal_pred(b: np.ndarray) -> np.ndarray:  # depends on the whole window
        return np.broadcast_to(b.mean(axis=(1, 2, 3, 4), keepdims=True), (b.shape[0], 1, *PATCH))

    ref = sliding_window(vol, nonlocal_pred, PATCH, _stride(0.5), blend="gaussian", batch_size=1)
    for bs in (2, 5, 100):
        out = sliding_window(
            vol, nonlocal_pred, PATCH, _stride(0.5), blend="gaussian", batch_size=bs
        )
        np.testing.assert_array_equal(out, ref)


def test_bad_arguments() -> None:
    vol = np.zeros((1, 4, 4, 4), np.float32)
    with pytest.raises(ParameterError):
        sliding_window(vol[0], _plus_one, PATCH, PATCH)
    with pytest.raises(ParameterError):
        sliding_window(vol, _plus_one, PATCH, PATCH, blend="max")
    with pytest.raises(ParameterError, match="predict returned shape"):
        sliding_window(vol, lambda b: b[:, :, :2], PATCH, PATCH)


def test_gaussian_weights() -> None:
    w = gaussian_weights((5, 8, 7))
    assert w.max() == pytest.approx(1.0) and w.min() > 0
    np.testing.assert_allclose(w, w[::-1, ::-1, ::-1], rtol=1e-6)
    assert w[2, 3, 3] > w[0, 0, 0]


def test_parse_device() -> None:
    assert parse_device("auto") == ("auto", 0)
    assert parse_device("CUDA:1") == ("cuda", 1)
    assert parse_device("cpu") == ("cpu", 0)
    for bad in ("gpu", "cuda:", "cuda:x", ""):
        with pytest.raises(ParameterError):
            parse_device(bad)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("onnx")
    return {"breast": make_breast_onnx(d / "b.onnx"), "tumor": make_tumor_onnx(d / "t.onnx")}


def _has_real_cuda(path: Path) -> bool:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    ort.set_default_logger_severity(4)
    s = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    ort.set_default_logger_severity(2)
    return bool(s.get_providers()[0] == "CUDAExecutionProvider")


@pytest.mark.parametrize("runtime", CPU_RUNTIMES)
def test_onnx_breast_model_through_sliding_window(models: dict[str, Path], runtime: str) -> None:
    m = OnnxModel(models["breast"], device="cpu", runtime=runtime)
    assert m.provider == PROVIDERS[runtime] and m.device == "cpu" and m.runtime == runtime
    assert m.precision == "fp32" and m.runtime_version[:1].isdigit()
    assert m.input_names == ("image",) and m.output_name == "probability"
    assert m.notices == []
    image = np.random.default_rng(3).random((7, 13, 11)).astype(np.float32)
    out = sliding_window(
        image[None], m.predictor(), PATCH, _stride(0.5), blend="mean", batch_size=2
    )
    np.testing.assert_allclose(out, sigmoid(20.0 * (image - 0.3)), rtol=1e-5, atol=1e-6)
    with pytest.raises(WeightsError, match="phases"):
        m.predictor(time_mask=np.ones(6))


@pytest.mark.parametrize("runtime", CPU_RUNTIMES)
def test_onnx_tumor_model_with_time_mask(models: dict[str, Path], runtime: str) -> None:
    m = OnnxModel(models["tumor"], device="cpu", runtime=runtime)
    assert m.provider == PROVIDERS[runtime]
    rng = np.random.default_rng(4)
    slots = rng.random((6, 1, 6, 10, 9)).astype(np.float32)
    out = sliding_window(
        slots,
        m.predictor(time_mask=np.array([1, 1, 0, 0, 0, 0])),
        PATCH,
        _stride(0.25),
        blend="gaussian",
        batch_size=4,
    )
    np.testing.assert_allclose(
        out, sigmoid(12 * (slots[1, 0] - slots[0, 0]) - 3), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(WeightsError, match="single-input"):
        m.predictor()


def test_cuda_requested_without_gpu_is_a_clear_error(models: dict[str, Path]) -> None:
    if _has_real_cuda(models["breast"]):
        pytest.skip("a real CUDA GPU is present")
    with pytest.raises(DeviceUnavailableError) as info:
        OnnxModel(models["breast"], device="cuda")
    msg = str(info.value)
    assert "--device cpu" in msg and "\n" not in msg and info.value.exit_code == 1


def test_auto_without_gpu_falls_back_with_notice(models: dict[str, Path]) -> None:
    if _has_real_cuda(models["breast"]):
        pytest.skip("a real CUDA GPU is present")
    m = OnnxModel(
        models["breast"], device="auto", warmup={"image": np.zeros((1, 1, 2, 2, 2), np.float32)}
    )
    # auto on the CPU: OpenVINO when installed, else ONNX Runtime's CPU provider
    assert m.provider == (OPENVINO_CPU if openvino_available() else "CPUExecutionProvider")
    assert len(m.notices) == 1 and m.notices[0].startswith("Running on CPU")
    assert m.warmup_s is None  # no warm-up on CPU


@pytest.mark.parametrize("runtime", CPU_RUNTIMES)
def test_missing_or_broken_model(tmp_path: Path, runtime: str) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        OnnxModel(tmp_path / "none.onnx", device="cpu", runtime=runtime)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="could not load") as info:
        OnnxModel(bad, device="cpu", runtime=runtime)
    assert "\n" not in str(info.value) and "bad.onnx" in str(info.value)


def test_parse_runtime_and_precision() -> None:
    assert parse_runtime(" OpenVINO ") == "openvino" and parse_runtime("auto") == "auto"
    assert parse_precision("BF16") == "bf16"
    for bad in ("ort", "", "tensorrt"):
        with pytest.raises(ParameterError, match="--runtime"):
            parse_runtime(bad)
    with pytest.raises(ParameterError, match="--precision"):
        parse_precision("fp16")


def test_cpu_only_runtime_with_cuda_is_a_usage_error(models: dict[str, Path]) -> None:
    for kw in ({"runtime": "openvino"}, {"precision": "bf16"}):
        with pytest.raises(ParameterError, match="--device cpu") as info:
            OnnxModel(models["breast"], device="cuda", **kw)
        assert info.value.exit_code == 2


def test_without_openvino_auto_uses_onnxruntime_and_openvino_is_a_clear_error(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("breastai.inference.runtimes.openvino_available", lambda: False)
    assert OnnxModel(models["breast"], device="cpu").provider == "CPUExecutionProvider"
    for kw in ({"runtime": "openvino"}, {"precision": "bf16"}):
        with pytest.raises(DeviceUnavailableError, match=r"breastai\[openvino\]") as info:
            OnnxModel(models["breast"], device="cpu", **kw)
        assert info.value.exit_code == 1 and "\n" not in str(info.value)


@pytest.mark.skipif(not openvino_available(), reason="OpenVINO (the [openvino] extra) is absent")
def test_auto_device_with_bf16_runs_on_the_cpu_with_a_notice(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "breastai.inference.runtimes._openvino_cpu_capabilities", lambda core: ["FP32", "BF16"]
    )
    m = OnnxModel(models["breast"], device="auto", precision="bf16")
    assert m.provider == OPENVINO_CPU and m.precision == "bf16" and m.device == "cpu"
    assert any("runs there only" in n for n in m.notices)


@pytest.mark.skipif(not openvino_available(), reason="OpenVINO (the [openvino] extra) is absent")
def test_bf16_on_a_cpu_without_bfloat16_is_a_clear_error(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "breastai.inference.runtimes._openvino_cpu_capabilities", lambda core: ["FP32"]
    )
    with pytest.raises(DeviceUnavailableError, match="--precision fp32") as info:
        OnnxModel(models["breast"], device="cpu", precision="bf16")
    assert "bfloat16" in str(info.value)


def _conv_breast_onnx(path: Path, gain: float = 20.0, offset: float = 0.3) -> Path:
    """sigmoid(gain (x - offset)) through two 1x1x1 convolutions (bf16 applies to convolutions,
    not to the element-wise nodes of ``make_breast_onnx``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["B", 1, 4, 8, 6])
    y = helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["B", 1, 4, 8, 6])
    inits = [
        numpy_helper.from_array(np.ones((16, 1, 1, 1, 1), np.float32), "w1"),
        numpy_helper.from_array(np.full((1, 16, 1, 1, 1), gain / 16, np.float32), "w2"),
        numpy_helper.from_array(np.asarray([-gain * offset], np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["h"]),
        helper.make_node("Conv", ["h", "w2", "b2"], ["g"]),
        helper.make_node("Sigmoid", ["g"], ["probability"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "conv-breast", [x], [y], inits),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.skipif(
    not openvino_bf16_available(), reason="no OpenVINO, or this CPU has no native bfloat16"
)
def test_bf16_matches_the_analytic_model_to_bfloat16_accuracy(tmp_path: Path) -> None:
    path = _conv_breast_onnx(tmp_path / "conv.onnx")
    image = np.random.default_rng(3).random((7, 13, 11)).astype(np.float32)
    exact = sigmoid(20.0 * (image - 0.3))
    err = {}
    for precision in ("fp32", "bf16"):
        m = OnnxModel(path, device="cpu", runtime="openvino", precision=precision)
        out = sliding_window(image[None], m.predictor(), PATCH, _stride(0.5), blend="mean")
        err[precision] = float(np.abs(out - exact).max())
    assert err["fp32"] < 1e-5
    # bfloat16 keeps 8 significant bits: x in [0, 1) is off by up to 2**-9, the logit
    # 20 (x - 0.3) by up to 0.04 and the probability by up to 0.01 (steepest slope 1/4)
    assert 1e-4 < err["bf16"] < 0.02


def test_out_of_memory_halves_batch_then_falls_back_to_cpu(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    m = OnnxModel(models["breast"], device="cpu")
    # Pretend the session is on a GPU that only fits one window at a time, then none.
    m._s = _Session(m._s.session, "CUDAExecutionProvider")
    real = OnnxModel._run_once
    state = {"gpu_fits": 1}

    def fake_run_once(self: OnnxModel, feed: dict[str, np.ndarray]) -> np.ndarray:
        n = next(iter(feed.values())).shape[0]
        if self.provider == "CUDAExecutionProvider" and n > state["gpu_fits"]:
            raise RuntimeError(
                "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : CUDA failure 2: out of memory"
            )
        return real(self, feed)

    monkeypatch.setattr(OnnxModel, "_run_once", fake_run_once)
    image = np.random.default_rng(5).random((9, 9, 9)).astype(np.float32)
    out = sliding_window(
        image[None], m.predictor(), PATCH, _stride(0.5), blend="mean", batch_size=4
    )
    np.testing.assert_allclose(out, sigmoid(20 * (image - 0.3)), rtol=1e-5, atol=1e-6)
    assert m.max_batch == 1 and m.provider == "CUDAExecutionProvider"
    assert any("out of memory" in n for n in m.notices)
    state["gpu_fits"] = 0
    out2 = sliding_window(image[None], m.predictor(), PATCH, _stride(0.5), blend="mean")
    np.testing.assert_allclose(out2, out, rtol=1e-6)
    assert not m.on_gpu and m.device == "cpu"
    assert m.provider == (OPENVINO_CPU if openvino_available() else "CPUExecutionProvider")
    assert any(n.startswith("Continued on CPU") for n in m.notices)


def test_non_oom_errors_propagate(models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    m = OnnxModel(models["breast"], device="cpu")

    def boom(self: OnnxModel, feed: dict[str, np.ndarray]) -> np.ndarray:
        raise RuntimeError("invalid dimensions")

    monkeypatch.setattr(OnnxModel, "_run_once", boom)
    # not retried, not swallowed: one BreastAIError naming the model and the input shapes
    with pytest.raises(WeightsError, match=r"invalid dimensions.*patch size") as info:
        m.run({"image": np.zeros((2, 1, 4, 4, 4), np.float32)})
    assert "(2, 1, 4, 4, 4)" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert m.max_batch is None


def test_all_window_orders_cover_volume() -> None:
    # every voxel is covered by >= 1 window for a grid of shapes / strides
    for n, p, s in itertools.product(range(1, 14), range(1, 6), range(1, 6)):
        if s > p:
            continue
        starts = window_starts(max(n, p), p, s)
        covered = np.zeros(max(n, p), bool)
        for a in starts:
            covered[a : a + p] = True
        assert covered.all()


# ------------------------------------------------------------- sliding window with feature reuse
# A fake "local" encoder (average pooling on the 16-voxel grid, no context across pool cells):
# cutting its whole-volume features equals running it per window when windows start on the
# grid, so sliding_window_features must equal sliding_window exactly.


def _pool(a: np.ndarray, s: int) -> np.ndarray:
    c, z, y, x = a.shape
    pooled = a.astype(np.float64).reshape(c, z // s, s, y // s, s, x // s, s).mean(axis=(2, 4, 6))
    return pooled.astype(np.float32)  # float64 sums: the same value whatever the array size


def _up(a: np.ndarray, s: int) -> np.ndarray:
    return a.repeat(s, axis=-3).repeat(s, axis=-2).repeat(s, axis=-1)


def _local_encode(calls: list[tuple[tuple[int, ...], bool]]):  # type: ignore[no-untyped-def]
    def encode(pair: np.ndarray, with_skips: bool) -> dict[str, np.ndarray]:
        calls.append((pair.shape, with_skips))
        x = pair[0]
        out = {"bridge": np.concatenate([_pool(x, 16), -_pool(x, 16)])[None]}
        if with_skips:
            out |= {f"skip{k + 1}": _pool(x, 2**k)[None] for k in range(4)}
        return out

    return encode


def _local_head(feed):  # type: ignore[no-untyped-def]
    b, m = feed["bridges"], feed["time_mask"]  # (B, S, 4, bz, by, bx), (B, S)
    w = np.arange(1, b.shape[1] + 1, dtype=np.float32)
    mixed = ((b[:, :, 0] - 0.5) * (m * w)[:, :, None, None, None]).sum(axis=1) - b[:, 0, 3]
    logit = 20 * _up(mixed, 16) + feed["skip1"][:, 1] + _up(feed["skip3"][:, 0], 4) - 1.0
    logit = logit + _up(feed["skip2"][:, 0], 2) - _up(feed["skip4"][:, 1], 8)
    return sigmoid(logit)[:, None]


def _per_window(time_mask: np.ndarray):  # type: ignore[no-untyped-def]
    enc = _local_encode([])

    def predict(batch: np.ndarray) -> np.ndarray:  # (B, S, 1, z, y, x)
        outs = []
        for w in batch:
            f = [enc(np.stack([w[i, 0], w[i, 0] - w[0, 0]])[None], True) for i in range(len(w))]
            feed = {"bridges": np.stack([g["bridge"] for g in f], axis=1)}
            feed |= {f"skip{k}": f[2][f"skip{k}"] for k in range(1, 5)}
            feed["time_mask"] = time_mask[None]
            outs.append(_local_head(feed)[0])
        return np.stack(outs)

    return predict


def _slots(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = rng.random((6, 1, *shape), dtype=np.float32)
    vol[3:] = vol[1]  # absent phases P3.. filled with P1 (assemble_slots)
    return vol


@pytest.mark.parametrize("blend", ["vote", "mean", "gaussian"])
def test_features_equal_per_window_for_a_local_encoder(blend: str) -> None:
    from breastai.inference import sliding_window_features

    vol = _slots((48, 64, 80))
    tm = np.array([1, 1, 1, 0, 0, 0], np.float32)
    patch, stride = (16, 32, 32), (16, 32, 16)  # placement of sliding_window is on the grid
    ref = sliding_window(vol, _per_window(tm), patch, stride, blend=blend, batch_size=2)
    calls: list[tuple[tuple[int, ...], bool]] = []
    fractions: list[float] = []
    got = sliding_window_features(
        vol,
        tm,
        _local_encode(calls),
        _local_head,
        patch,
        stride,
        blend=blend,
        batch_size=3,
        progress=fractions.append,
    )
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6)
    assert 0.05 < float(ref.mean()) < 0.95  # both classes present: the test can fail
    # slots 3..5 are masked (not encoded); slot 2 (skip source) is the only one with skips
    assert calls == [((1, 2, 48, 64, 80), w) for w in (False, False, True)]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_features_skip_slot_copy_of_p1_is_encoded_once() -> None:
    from breastai.inference import sliding_window_features

    vol = _slots((32, 32, 32))
    vol[2:] = vol[1]  # a two-phase study: slot 2 (skips) is a copy of P1
    tm = np.array([1, 1, 0, 0, 0, 0], np.float32)
    calls: list[tuple[tuple[int, ...], bool]] = []
    got = sliding_window_features(
        vol, tm, _local_encode(calls), _local_head, (16, 32, 32), (16, 16, 16), blend="mean"
    )
    ref = sliding_window(vol, _per_window(tm), (16, 32, 32), (16, 16, 16), blend="mean")
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6)
    assert [w for _, w in calls] == [False, True]  # P0 bridge only; P1 also gives the skips


def test_feature_blocks_are_exact_for_a_local_encoder() -> None:
    from breastai.inference import sliding_window_features

    vol = _slots((48, 64, 80), seed=1)
    tm = np.ones(6, np.float32)
    args = (vol, tm)
    kw = {"blend": "mean", "batch_size": 4}
    whole_calls: list[tuple[tuple[int, ...], bool]] = []
    whole = sliding_window_features(
        *args, _local_encode(whole_calls), _local_head, (16, 32, 32), (16, 16, 16),
        max_block_voxels=None, **kw,
    )  # fmt: skip
    for halo in (0, 16):
        calls: list[tuple[tuple[int, ...], bool]] = []
        got = sliding_window_features(
            *args, _local_encode(calls), _local_head, (16, 32, 32), (16, 16, 16),
            max_block_voxels=48**3, halo=halo, **kw,
        )  # fmt: skip
        np.testing.assert_allclose(got, whole, rtol=0, atol=2e-6)
        assert len(calls) > len(whole_calls)  # really split
        assert all(int(np.prod(s[2:])) <= 48**3 for s, _ in calls)


def test_feature_grid_is_aligned_and_covers_the_crop() -> None:
    from breastai.inference import feature_grid

    shape = (40, 100, 90)
    roi = ((5, 30), (10, 90), (3, 90))
    g = feature_grid(shape, (16, 32, 32), (16, 16, 16), roi)
    assert g.n_windows == n_windows(shape, (16, 32, 32), (16, 16, 16), roi)
    for (lo, hi), (blo, bhi), starts, p, n in zip(
        g.extent, g.box, g.starts, (16, 32, 32), shape, strict=True
    ):
        assert lo <= blo and bhi <= hi  # covers the crop of sliding_window
        assert (hi - lo - p) % 16 == 0 and all(s % 16 == 0 for s in starts)
        assert starts[-1] + p == hi - lo
        assert (lo >= 0 and hi <= n) or hi - lo > n  # zeros only when the volume is too small
    assert feature_grid(shape, (16, 32, 32), (24, 8, 40)).stride_zyx == (16, 16, 32)
    with pytest.raises(ParameterError, match="multiples of 16"):
        feature_grid(shape, (16, 24, 32), (16, 16, 16))


def test_features_roi_and_edges_with_a_pointwise_head() -> None:
    # head = sigmoid(skip1 channel 0) = sigmoid(slot-2 image): independent of window placement
    from breastai.inference import sliding_window_features

    def head(feed):  # type: ignore[no-untyped-def]
        return sigmoid(4 * feed["skip1"][:, :1] - 2)

    vol = _slots((37, 70, 50), seed=2)
    roi = ((3, 30), (20, 70), (0, 17))
    got = sliding_window_features(
        vol, np.ones(6), _local_encode([]), head, (16, 32, 32), (16, 32, 32), blend="mean", roi=roi
    )
    expect = np.zeros_like(got)
    sl = tuple(slice(a, b) for a, b in roi)
    expect[sl] = sigmoid(4 * vol[2, 0] - 2)[sl]
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-6)
    empty = sliding_window_features(
        vol, np.ones(6), _local_encode([]), head, (16, 32, 32), (16, 32, 32),
        roi=((3, 3), (0, 5), (0, 5)),
    )  # fmt: skip
    assert not empty.any()


def test_features_bad_arguments() -> None:
    from breastai.inference import sliding_window_features

    vol = _slots((32, 32, 32))
    enc = _local_encode([])
    with pytest.raises(ParameterError, match="time_mask"):
        sliding_window_features(vol, np.ones(5), enc, _local_head, (16, 32, 32), (16, 16, 16))
    with pytest.raises(ParameterError, match="blend"):
        sliding_window_features(
            vol, np.ones(6), enc, _local_head, (16, 32, 32), (16, 16, 16), blend="max"
        )
    with pytest.raises(ParameterError, match="head returned shape"):
        sliding_window_features(
            vol, np.ones(6), enc, lambda f: np.zeros((1, 2)), (16, 32, 32), (16, 16, 16)
        )
    with pytest.raises(ParameterError, match="encode returned"):
        sliding_window_features(
            vol,
            np.ones(6),
            lambda p, s: {"bridge": np.zeros((1, 4, 1, 1, 1))},
            _local_head,
            (16, 32, 32),
            (16, 16, 16),
        )


def test_inference_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, breastai.inference, breastai.pipeline, breastai.weights; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
