"""breastai.choices: one enum per closed set, shared by the CLI, inference and the model cards."""

from __future__ import annotations

import pytest

from breastai import cli, inference, weights
from breastai.choices import Blend, Normalisation, Precision, Runtime, parse_choice
from breastai.errors import ParameterError


def test_every_copy_of_a_closed_set_is_the_enum() -> None:
    assert inference.BLEND_MODES == weights.BLENDINGS == ("vote", "mean", "gaussian")
    assert inference.RUNTIMES == ("auto", "onnxruntime", "openvino")
    assert inference.PRECISIONS == ("fp32", "bf16")
    assert weights.NORMALISATIONS == ("seed", "p1p99-minmax")
    assert cli.BlendChoice is Blend and cli.RuntimeChoice is Runtime
    assert cli.PrecisionChoice is Precision
    assert [n.value for n in Normalisation] == ["seed", "p1p99-minmax"]


def test_parse_choice_accepts_str_or_member() -> None:
    assert parse_choice(Runtime, " OpenVINO ", "--runtime") is Runtime.OPENVINO
    assert parse_choice(Precision, Precision.BF16, "--precision") is Precision.BF16
    assert inference.parse_runtime(Runtime.AUTO) == "auto"
    with pytest.raises(
        ParameterError, match=r"--blend must be one of vote, mean, gaussian, got 'x'"
    ):
        parse_choice(Blend, "x", "--blend")


def test_sliding_window_takes_the_enum() -> None:
    import numpy as np

    vol = np.ones((1, 4, 4, 4), dtype=np.float32)
    out = inference.sliding_window(
        vol, lambda b: np.full((b.shape[0], 1, 4, 4, 4), 0.25, np.float32), (4, 4, 4), (4, 4, 4),
        blend=Blend.MEAN,
    )  # fmt: skip
    assert float(out.max()) == pytest.approx(0.25)
    with pytest.raises(ParameterError, match="blend must be one of"):
        inference.sliding_window(vol, lambda b: b, (4, 4, 4), (4, 4, 4), blend="max")
