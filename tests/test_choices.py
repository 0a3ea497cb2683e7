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


def test_family_is_one_enum_for_families_cards_and_nnunet() -> None:
    from breastai import families
    from breastai.choices import Family
    from breastai.nnunet.card import NnunetCard

    assert families.FAMILIES == ("unet", "seed", "nnunet")
    assert Family("nnunet") is Family.NNUNET and NnunetCard.family is Family.NNUNET
    card = weights.ModelCard(name="x", task="tumor", filename="x.onnx", sha256="0" * 64)
    assert card.family is Family.SEED  # a tumor model of no named architecture is a seed one
    cases = {
        ("nnunet PlainConvUNet 3d_fullres", "tumor"): Family.NNUNET,
        ("unet3d (base 8, levels 3)", "breast"): Family.UNET,
        ("unet3d (base 8, levels 3)", "tumor"): Family.UNET,
        ("seed-tumor (filters 8)", "tumor"): Family.SEED,
        ("", "breast"): Family.UNET,
    }
    for (arch, task), fam in cases.items():
        assert families.family_of(arch, task) is fam
        assert weights.ModelCard("x", task, "x.onnx", "0" * 64, architecture=arch).family is fam
    assert families.UNetFamily((1.0, 1.0, 1.0)).name == "unet"
    assert families.SeedFamily((1.0, 1.0, 1.0), 6).normalisation == "seed"
