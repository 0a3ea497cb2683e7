"""breastai.nnunet without torch or nnunetv2: channel specs, label roles, cards, channels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from breastai.errors import InputError, ParameterError, WeightsError
from breastai.nnunet import NnunetCard, derive_channels
from breastai.nnunet.card import (
    architecture_of,
    channel_spec_from_names,
    parse_channels,
    parse_label_roles,
    roles_from_labels,
)
from breastai.study import Phase, Study


def _study(n: int) -> Study:
    phases = []
    for k in range(n):
        arr = np.full((3, 4, 5), 10.0 * (k + 1), dtype=np.float32)
        arr[0, 0, 0] = k
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((0.7, 0.8, 2.5))
        img.SetOrigin((1.0, 2.0, 3.0))
        phases.append(Phase(index=k, image=img))
    return Study(phases=phases, source=Path("s"), kind="nifti", name="two")


def test_derive_channels_values_and_grid() -> None:
    study = _study(3)
    pre, sub2, post1, ph2 = derive_channels(study, "pre,sub2,post1,phase2")
    a = sitk.GetArrayFromImage
    assert np.array_equal(a(pre), a(study.phases[0].image))
    assert np.array_equal(a(sub2), a(study.phases[2].image) - a(study.phases[0].image))
    assert a(sub2)[1, 1, 1] == 20.0 and a(sub2)[0, 0, 0] == 2.0
    assert np.array_equal(a(post1), a(study.phases[1].image))
    assert np.array_equal(a(ph2), a(study.phases[2].image))
    assert sub2.GetOrigin() == study.phases[2].image.GetOrigin()
    assert all(i.GetPixelID() == sitk.sitkFloat32 for i in (pre, sub2, post1, ph2))


def test_derive_channels_missing_phase_is_one_sentence() -> None:
    with pytest.raises(InputError, match=r"channel 'post2' needs phase 2 .* has 2 phase\(s\)"):
        derive_channels(_study(2), ["pre", "post2"])
    with pytest.raises(ParameterError, match="--channels"):
        derive_channels(_study(2), ["pre", "post0"])


def test_channel_specs_from_dataset_names() -> None:
    assert channel_spec_from_names(["post1"]) == ("post1",)
    assert channel_spec_from_names(["T1_pre", "Post_1", "subtraction 1"]) == (
        "pre",
        "post1",
        "sub1",
    )
    assert channel_spec_from_names(["MR"]) is None  # BreastDivider: the import asks
    assert channel_spec_from_names(["T1"]) is None  # MAMA-MIA baseline
    assert parse_channels(" Pre , SUB1") == ("pre", "sub1")
    with pytest.raises(ParameterError):
        parse_channels("pre,t2")


def test_label_roles() -> None:
    assert roles_from_labels({"background": 0, "left": 1, "right": 2}) == {
        "left": (1,),
        "right": (2,),
    }
    assert roles_from_labels({"background": 0, "tumor": 1}) == {"tumor": (1,)}
    assert roles_from_labels({"background": 0, "breast": [1, 2], "lesion": 2}) == {
        "breast": (1, 2),
        "tumor": (2,),
    }
    assert parse_label_roles("left=1, right=2") == {"left": (1,), "right": (2,)}
    assert parse_label_roles("breast=1+2") == {"breast": (1, 2)}
    for bad in ("kidney=1", "tumor", "tumor=0", "tumor=x"):
        with pytest.raises(ParameterError, match="--labels"):
            parse_label_roles(bad)


def test_architecture_refusal_and_old_plans() -> None:
    with pytest.raises(WeightsError, match=r"'my\.net\.Custom' is not supported"):
        architecture_of({"architecture": {"network_class_name": "my.net.Custom"}}, "x")
    old = {
        "UNet_class_name": "ResidualEncoderUNet",
        "n_conv_per_stage_encoder": [1, 3],
        "n_conv_per_stage_decoder": [1],
        "patch_size": [16, 32, 32],
        "UNet_base_num_features": 32,
        "unet_max_num_features": 320,
        "conv_kernel_sizes": [[3, 3, 3], [3, 3, 3]],
        "pool_op_kernel_sizes": [[1, 1, 1], [2, 2, 2]],
    }
    name, kw = architecture_of(old, "x")
    assert name == "ResidualEncoderUNet" and kw["n_blocks_per_stage"] == [1, 3]
    assert kw["features_per_stage"] == [32, 64]


def test_card_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "nnunet.json"
    path.write_text('{"format": "something else"}')
    with pytest.raises(WeightsError, match="not a breastai nnU-Net model card"):
        NnunetCard.read(path)
    path.write_text('{"format": "breastai-nnunet/1", "name": "x"}')
    with pytest.raises(WeightsError, match="incomplete or malformed"):
        NnunetCard.read(path)


def test_inference_never_imports_torch() -> None:
    code = (
        "import sys, breastai.nnunet, breastai.nnunet.run, breastai.nnunet.preprocess; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_card_write_is_atomic(tmp_path: Path) -> None:
    """nnunet.json goes through io.atomic: no temporary left, a failure is an OutputError."""
    import json

    from breastai.errors import OutputError

    card = NnunetCard(
        name="m", task="tumor", channels=("pre", "post1"), labels={"background": 0, "tumor": 1},
        roles={"tumor": (1,)}, num_heads=2, configuration="3d_fullres", trainer="nnUNetTrainer",
        plans_name="nnUNetPlans", dataset_name="Dataset001_x", orientation="as-read",
        transpose_forward=(0, 1, 2), transpose_backward=(0, 1, 2), spacing=(1.0, 1.0, 1.0),
        patch_size=(8, 8, 8), normalization_schemes=("ZScoreNormalization",) * 2,
        use_mask_for_norm=(False, False), intensity_properties={}, resampling_data={},
        resampling_probabilities={}, mirroring_axes=None, architecture="PlainConvUNet", folds=(),
    )  # fmt: skip
    path = tmp_path / "m" / "nnunet.json"  # missing folder is created
    card.write(path)
    assert json.loads(path.read_text())["labels"] == {"background": 0, "tumor": 1}
    assert [p.name for p in path.parent.iterdir()] == ["nnunet.json"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="Cannot write into"):
        card.write(blocker / "nnunet.json")
