"""Small nnU-Net v2 trained-model folders, written the way nnunetv2 writes them, for tests/bench.

A folder ``<root>/DatasetXXX_Name/<Trainer>__<Plans>__3d_fullres/`` with ``plans.json``,
``dataset.json``, ``dataset_fingerprint.json`` and ``fold_K/checkpoint_final.pth``. The network is
built by nnunetv2 itself (``nnUNetTrainer.build_network_architecture`` from the plans), initialised
the nnU-Net way and trained for a few steps on synthetic blobs so that its outputs depend on the
image (random weights give near-constant logits and meaningless ties). The checkpoint holds the keys
``nnUNetTrainer.save_checkpoint`` writes, numpy scalars in its log included (the
``torch.load(weights_only=True)`` trap).

Needs torch and nnunetv2 (the ``nnunet`` extra).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk


@dataclass
class ModelSpec:
    """What to build."""

    name: str = "Dataset901_Tiny"
    architecture: str = "PlainConvUNet"  # or "ResidualEncoderUNet"
    channel_names: dict[str, str] = field(default_factory=lambda: {"0": "pre", "1": "sub1"})
    labels: dict[str, Any] = field(
        default_factory=lambda: {"background": 0, "left breast": 1, "right breast": 2}
    )
    regions_class_order: list[int] | None = None
    spacing: tuple[float, float, float] = (3.0, 1.0, 1.0)  # transposed (z, y, x)
    patch: tuple[int, int, int] = (8, 32, 32)
    normalization: Sequence[str] | None = None  # default ZScore per channel
    use_mask_for_norm: Sequence[bool] | None = None
    transpose_forward: tuple[int, int, int] = (0, 1, 2)
    folds: Sequence[int] = (0,)
    mirror_axes: tuple[int, ...] | None = (0, 1, 2)
    reader: str = "SimpleITKIO"
    seed: int = 0
    train_steps: int = 12
    configuration: str = "3d_fullres"
    conv_op: str = "torch.nn.modules.conv.Conv3d"
    features: tuple[int, ...] = (4, 8, 16)
    kernels: tuple[tuple[int, int, int], ...] = ((1, 3, 3), (3, 3, 3), (3, 3, 3))
    strides: tuple[tuple[int, int, int], ...] = ((1, 1, 1), (1, 2, 2), (2, 2, 2))


def _arch(spec: ModelSpec) -> dict[str, Any]:
    kernel = [list(k) for k in spec.kernels]
    strides = [list(s) for s in spec.strides]
    n = len(spec.features)
    common = {
        "n_stages": n,
        "features_per_stage": list(spec.features),
        "conv_op": spec.conv_op,
        "kernel_sizes": kernel,
        "strides": strides,
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    if spec.architecture == "ResidualEncoderUNet":
        blocks = [1] + [2] * (n - 1)
        kw = {**common, "n_blocks_per_stage": blocks, "n_conv_per_stage_decoder": [1] * (n - 1)}
        cls = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
    elif spec.architecture == "PlainConvUNet":
        kw = {**common, "n_conv_per_stage": [2] * n, "n_conv_per_stage_decoder": [2] * (n - 1)}
        cls = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
    else:
        kw = dict(common)
        cls = spec.architecture
    return {
        "network_class_name": cls,
        "arch_kwargs": kw,
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def plans_for(spec: ModelSpec) -> dict[str, Any]:
    """A plans.json of the shape nnunetv2 2.8 writes (one 3d_fullres configuration)."""
    n = len(spec.channel_names)
    norm = list(spec.normalization or ["ZScoreNormalization"] * n)
    mask = list(spec.use_mask_for_norm or [False] * n)
    tf = list(spec.transpose_forward)
    tb = [tf.index(i) for i in range(3)]
    props = {
        str(c): {
            "max": 900.0,
            "mean": 180.0 + 10 * c,
            "median": 170.0,
            "min": 0.0,
            "percentile_00_5": 5.0,
            "percentile_99_5": 600.0,
            "std": 95.0,
        }
        for c in range(n)
    }
    cfg = {
        "data_identifier": f"nnUNetPlans_{spec.configuration}",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": list(spec.patch),
        "median_image_size_in_voxels": [14.0, 48.0, 48.0],
        "spacing": list(spec.spacing),
        "normalization_schemes": norm,
        "use_mask_for_norm": mask,
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {
            "is_seg": False,
            "order": 3,
            "order_z": 0,
            "force_separate_z": None,
        },
        "resampling_fn_seg_kwargs": {
            "is_seg": True,
            "order": 1,
            "order_z": 0,
            "force_separate_z": None,
        },
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {
            "is_seg": False,
            "order": 1,
            "order_z": 0,
            "force_separate_z": None,
        },
        "architecture": _arch(spec),
        "batch_dice": True,
    }
    return {
        "dataset_name": spec.name,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(spec.spacing),
        "original_median_shape_after_transp": [14, 48, 48],
        "image_reader_writer": spec.reader,
        "transpose_forward": tf,
        "transpose_backward": tb,
        "configurations": {spec.configuration: cfg},
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": props,
    }


def dataset_json_for(spec: ModelSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "channel_names": dict(spec.channel_names),
        "labels": dict(spec.labels),
        "numTraining": 4,
        "file_ending": ".nii.gz",
        "licence": "CC BY-NC 4.0 (test)",
    }
    if spec.regions_class_order is not None:
        out["regions_class_order"] = list(spec.regions_class_order)
    return out


def _blobs(rng: np.random.Generator, shape: Sequence[int], n_ch: int) -> np.ndarray:
    """Smooth blob images (C, z, y, x), roughly unit scale."""
    from scipy import ndimage

    x = rng.standard_normal((n_ch, *shape)).astype(np.float32)
    for c in range(n_ch):
        x[c] = ndimage.gaussian_filter(x[c], sigma=(1.0, 3.0, 3.0))
        x[c] /= x[c].std() + 1e-6
    return x


def _write_png(path: Path) -> None:
    from PIL import Image

    Image.new("L", (8, 8)).save(path)


def build_model_folder(root: Path, spec: ModelSpec) -> Path:
    """Write the trained-model folder for ``spec`` under ``root``; return its path."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = plans_for(spec)
    ds = dataset_json_for(spec)
    folder = root / spec.name / f"nnUNetTrainer__nnUNetPlans__{spec.configuration}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=4, sort_keys=False))
    (folder / "dataset.json").write_text(json.dumps(ds, indent=4, sort_keys=False))
    (folder / "dataset_fingerprint.json").write_text(
        json.dumps({"median_relative_size_after_cropping": 0.9, "spacings": [list(spec.spacing)]})
    )
    pm = PlansManager(plans)
    cm = pm.get_configuration(spec.configuration)
    lm = pm.get_label_manager(ds)
    n_in = len(spec.channel_names)
    n_out = lm.num_segmentation_heads
    for fold in spec.folds:
        torch.manual_seed(spec.seed * 100 + int(fold))
        net = nnUNetTrainer.build_network_architecture(
            pm, cm, n_in, n_out, enable_deep_supervision=False
        )
        rng = np.random.default_rng(spec.seed * 100 + int(fold))
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        net.train()
        for _ in range(spec.train_steps):
            x = torch.from_numpy(np.stack([_blobs(rng, spec.patch, n_in) for _ in range(2)]))
            s = x[:, 0] + 0.5 * x[:, -1]
            if lm.has_regions:
                tgt = torch.stack([(s > t).float() for t in (-0.3, 0.4, 1.0)[:n_out]], 1)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), tgt)
            else:
                edges = torch.tensor(np.linspace(-0.6, 0.6, n_out - 1), dtype=torch.float32)
                tgt = torch.bucketize(s, edges)
                loss = torch.nn.functional.cross_entropy(net(x), tgt)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        ck = {
            "network_weights": net.state_dict(),
            "optimizer_state": opt.state_dict(),
            "grad_scaler_state": None,
            "logging": {
                "mean_fg_dice": [np.float32(0.5)],
                "ema_fg_dice": [np.float32(0.5)],
                "dice_per_class_or_region": [[np.float32(0.5)] * max(1, n_out - 1)],
                "train_losses": [loss.item()],
                "val_losses": [loss.item()],
                "lrs": [3e-3],
                "epoch_start_timestamps": [0.0],
                "epoch_end_timestamps": [1.0],
            },
            "_best_ema": np.float32(0.5),
            "current_epoch": 1,
            "init_args": {
                "plans": plans,
                "configuration": spec.configuration,
                "fold": int(fold),
                "dataset_json": ds,
                "device": torch.device("cpu"),
            },
            "trainer_name": "nnUNetTrainer",
            "inference_allowed_mirroring_axes": spec.mirror_axes,
        }
        fdir = folder / f"fold_{fold}"
        fdir.mkdir(exist_ok=True)
        torch.save(ck, fdir / "checkpoint_final.pth")
        # what a training run leaves beside the checkpoint (nnUNetv2_export_model_to_zip packs it)
        (fdir / "debug.json").write_text(json.dumps({"fold": int(fold), "test": True}))
        _write_png(fdir / "progress.png")
        (fdir / "validation").mkdir(exist_ok=True)
        (fdir / "validation" / "summary.json").write_text(json.dumps({"foreground_mean": {}}))
    return folder


def write_case(
    folder: Path,
    *,
    size_xyz: tuple[int, int, int] = (44, 40, 15),
    spacing_xyz: tuple[float, float, float] = (0.9, 0.85, 3.3),
    n_phases: int = 2,
    seed: int = 5,
    direction: Sequence[float] | None = None,
) -> list[Path]:
    """A per-phase NIfTI study ``P0.nii.gz`` .. (float32): an ellipsoid body of smooth tissue
    with zero air around it (exercises the nonzero crop), phases brighter with contrast."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    nx, ny, nz = size_xyz
    zz, yy, xx = np.meshgrid(
        np.linspace(-1, 1, nz), np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij"
    )
    body = (xx / 0.85) ** 2 + (yy / 0.8) ** 2 + (zz / 1.3) ** 2 < 1.0
    tissue = ndimage.gaussian_filter(rng.standard_normal((nz, ny, nx)), (0.7, 2.5, 2.5))
    tissue = 200 + 600 * tissue
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for p in range(n_phases):
        arr = np.where(body, tissue * (1 + 0.35 * p) + 30 * p, 0.0).astype(np.float32)
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing_xyz)
        img.SetOrigin((-20.0, 15.0, 7.5))
        if direction is not None:
            img.SetDirection(tuple(direction))
        path = folder / f"P{p}.nii.gz"
        sitk.WriteImage(img, str(path))
        paths.append(path)
    return paths


def channel_files(study: Sequence[Path], specs: Sequence[str], out: Path) -> list[Path]:
    """nnU-Net input files ``case_0000.nii.gz`` .. for the channel specs, computed from the phase
    files independently of breastai (pre = P0, postN = PN, subN = PN - P0)."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for k, s in enumerate(specs):
        if s == "pre":
            img = sitk.ReadImage(str(study[0]))
        elif s.startswith("post"):
            img = sitk.ReadImage(str(study[int(s[4:])]))
        elif s.startswith("sub"):
            a = sitk.ReadImage(str(study[int(s[3:])]))
            b = sitk.ReadImage(str(study[0]))
            arr = sitk.GetArrayFromImage(a).astype(np.float32) - sitk.GetArrayFromImage(b)
            img = sitk.GetImageFromArray(arr.astype(np.float32))
            img.CopyInformation(a)
        else:
            raise ValueError(s)
        path = out / f"case_{k:04d}.nii.gz"
        sitk.WriteImage(img, str(path))
        files.append(path)
    return files


def reference_predict(
    model_folder: Path,
    files: Sequence[Path],
    out: Path,
    *,
    folds: Sequence[int | str],
    tta: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """nnUNetPredictor (CPU, step 0.5, Gaussian) on one case: (labels z,y,x, probabilities)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch.set_num_threads(2)
    pred = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=tta,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        verbose=False,
        allow_tqdm=False,
    )
    pred.initialize_from_trained_model_folder(
        str(model_folder), use_folds=tuple(folds), checkpoint_name="checkpoint_final.pth"
    )
    out.mkdir(parents=True, exist_ok=True)
    pred.predict_from_files_sequential(
        [[str(f) for f in files]], str(out), save_probabilities=True, overwrite=True
    )
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "case.nii.gz")))
    with np.load(out / "case.npz") as z:
        probs = z["probabilities"]
    return labels, probs
