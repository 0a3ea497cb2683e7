"""ONNX export of breastai's networks, with an ONNX Runtime parity check.

Export uses the TorchScript-based exporter (``dynamo=False``): it keeps the batch axis symbolic
and, with the tumor network's fixed number of phase slots, gives results identical to torch
(the dynamo exporter needs onnxscript and silently fixes axes; see docs/training.md).

I/O names follow the interface agreed for inference (``docs/training.md``):

* tumor: inputs ``phases`` float32 ``(B, S, 1, D, H, W)`` and ``time_mask`` float32 ``(B, S)``;
* breast: input ``image`` float32 ``(B, 1, D, H, W)``;
* both: output ``probability`` float32 ``(B, 1, D, H, W)``; batch axis named ``batch``.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from breastai.choices import Blend, Normalisation
from breastai.errors import OutputExistsError, ParameterError, WeightsError
from breastai.io.atomic import atomic_file
from breastai.training.networks import SeedTumorNet, UNet3D

__all__ = [
    "ENCODER_INPUT",
    "ENCODER_OUTPUTS",
    "HEAD_INPUTS",
    "OPSET",
    "ExportedModel",
    "FeatureExport",
    "check_import_target",
    "example_inputs",
    "export_checkpoint",
    "export_feature_onnx",
    "export_onnx",
    "feature_example_inputs",
    "load_trained_network",
    "model_card",
    "onnx_parity",
]

log = logging.getLogger(__name__)

#: ONNX opset written by :func:`export_onnx`.
OPSET = 17


def example_inputs(
    model: nn.Module,
    *,
    batch: int = 1,
    seed: int = 0,
    patch_zyx: tuple[int, int, int] | None = None,
) -> tuple[torch.Tensor, ...]:
    """Deterministic random inputs for ``model`` (uniform [0, 1.2) images, a mixed time mask).

    Parameters
    ----------
    model:
        :class:`SeedTumorNet` or :class:`UNet3D`.
    batch:
        Batch size.
    seed:
        Seed of the generator.
    patch_zyx:
        Spatial size for the U-Net (default: its config's patch); the tumor net uses its own.

    Returns
    -------
    tuple of torch.Tensor
        ``(phases, time_mask)`` for the tumor net, ``(image,)`` for the U-Net.
    """
    gen = torch.Generator().manual_seed(seed)
    if isinstance(model, SeedTumorNet):
        cfg = model.config
        phases = 1.2 * torch.rand((batch, cfg.slots, 1, *cfg.patch_zyx), generator=gen)
        mask = torch.ones((batch, cfg.slots))
        for b in range(batch):
            present = 2 + (b % (cfg.slots - 1))  # 2..S phases present
            mask[b, present:] = 0.0
        return phases, mask
    if isinstance(model, UNet3D):
        size = patch_zyx or model.config.patch_zyx
        return (torch.rand((batch, 1, *size), generator=gen),)
    raise TypeError(f"unsupported model type {type(model).__name__}")


def _names(model: nn.Module) -> tuple[list[str], list[str]]:
    if isinstance(model, SeedTumorNet):
        return ["phases", "time_mask"], ["probability"]
    return ["image"], ["probability"]


def export_onnx(
    model: nn.Module,
    out_path: Path,
    *,
    force: bool = False,
    opset: int = OPSET,
    verify: bool = True,
    atol: float = 1e-4,
) -> float:
    """Export a network to ONNX (batch axis symbolic), atomically, and check it in ONNX Runtime.

    Parameters
    ----------
    model:
        :class:`SeedTumorNet` or :class:`UNet3D` (put in eval mode here).
    out_path:
        Destination ``.onnx`` file; written to a temporary file in the same folder first.
    force:
        Replace an existing file.
    opset:
        ONNX opset (>= 17).
    verify:
        Run the exported file in ONNX Runtime (CPU) on a deterministic random input at batch 2 and
        compare with torch.
    atol:
        Largest allowed absolute difference of the probabilities in that check.

    Returns
    -------
    float
        ``max |p_torch - p_onnxruntime|`` of the check (NaN when ``verify`` is false).

    Raises
    ------
    OutputExistsError
        The file exists and ``force`` is false.
    WeightsError
        The exported model disagrees with torch by more than ``atol``.
    OutputError
        The file could not be written.
    """
    out_path = Path(out_path)
    if out_path.exists() and not force:
        raise OutputExistsError(f"{out_path} exists; pass --force to replace it.")
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    model = model.eval()
    inputs = example_inputs(model, batch=1)
    in_names, out_names = _names(model)
    dynamic = {name: {0: "batch"} for name in (*in_names, *out_names)}
    diff = float("nan")
    with atomic_file(out_path, suffix=".onnx", mode=0o644) as tmp:
        export_graph(
            model,
            inputs,
            tmp,
            in_names=in_names,
            out_names=out_names,
            dynamic=dynamic,
            opset=opset,
        )
        if verify:
            diff = onnx_parity(model, tmp, batch=2)
            log.info("ONNX parity (batch 2): max |torch - onnxruntime| = %.3g", diff)
            if not diff <= atol:
                raise WeightsError(
                    f"The exported ONNX model differs from torch by {diff:.3g} "
                    f"(allowed {atol:.1g}); the export is not usable."
                )
    return diff


def onnx_parity(model: nn.Module, onnx_path: Path, *, batch: int = 2, seed: int = 1) -> float:
    """Largest absolute difference between torch and ONNX Runtime (CPU) on a random input.

    Parameters
    ----------
    model:
        The torch network the file was exported from.
    onnx_path:
        The exported file.
    batch:
        Batch size of the check (2 exercises the symbolic batch axis).
    seed:
        Seed of the random input.

    Returns
    -------
    float
        ``max |p_torch - p_onnxruntime|``.
    """
    import onnxruntime as ort

    model = model.eval()
    inputs = example_inputs(model, batch=batch, seed=seed)
    with torch.no_grad():
        ref = model(*inputs).numpy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, min(2, os.cpu_count() or 1))
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    in_names, _ = _names(model)
    feed = {n: t.numpy() for n, t in zip(in_names, inputs, strict=True)}
    got = sess.run(None, feed)[0]
    if got.shape != ref.shape:
        return float("inf")
    return float(np.max(np.abs(got - ref)))


@dataclass(frozen=True)
class ExportedModel:
    """What :func:`export_checkpoint` produced."""

    name: str
    onnx_path: Path
    sha256: str
    card: Any
    parity: float
    weights_file: Path | None


def model_card(
    options: Any,
    *,
    name: str,
    filename: str,
    sha256: str,
    demo: bool = False,
    training_data: str = "",
    description: str = "",
    licence: str = "",
    blending: str = Blend.GAUSSIAN,
) -> Any:
    """Model card (:class:`breastai.weights.ModelCard`) of a network trained by breastai.

    Parameters
    ----------
    options:
        The run's :class:`breastai.training.train.TrainOptions`.
    name, filename, sha256:
        Entry name, ONNX file name and its hash.
    demo:
        Whether these are demo weights (trained on phantoms).
    training_data, description, licence:
        Card texts.
    blending:
        Window blending for inference ("vote" | "mean" | "gaussian").

    Returns
    -------
    breastai.weights.ModelCard
    """
    from breastai.weights import ModelCard

    net = dict(options.network)
    tumor = options.task == "tumor"
    if tumor:
        arch = (
            f"seed-tumor (filters {net.get('filters')}, hidden {net.get('hidden')}, MLP "
            f"{net.get('mlp')}, heads {net.get('heads')}, layers {net.get('spatial_layers')}+"
            f"{net.get('temporal_layers')})"
        )
    else:
        arch = f"unet3d (base {net.get('base')}, levels {net.get('levels')})"
    slots = int(net.get("slots", 6)) if tumor else 6
    pz, py, px = options.patch_zyx
    sz, sy, sx = options.stride_zyx
    dz, dy, dx = options.spacing_zyx
    return ModelCard(
        name=name,
        task=options.task,
        filename=filename,
        sha256=sha256,
        demo=demo,
        architecture=arch,
        patch_zyx=(int(pz), int(py), int(px)),
        stride_zyx=(int(sz), int(sy), int(sx)),
        spacing_zyx=(float(dz), float(dy), float(dx)),
        phases_min=2,
        phases_max=slots,
        phase_slots=slots,
        normalisation=Normalisation.SEED if tumor else Normalisation.P1P99_MINMAX,
        blending=blending,
        threshold=0.5,
        training_data=training_data,
        licence=licence,
        intended_use="Research use only, not a medical device.",
        description=description,
    )


def check_import_target(
    name: str,
    out: Path | None,
    *,
    register: bool,
    force: bool,
    weights_file: Path | None,
    what: str = "file",
) -> None:
    """Refuse, before any work, an imported model with nowhere to go or a registry name taken.

    Parameters
    ----------
    name:
        Registry name of the model.
    out:
        Output ``what`` (``"file"`` or ``"folder"``), or None.
    register:
        Whether the model is registered in the user weights file.
    force:
        Replace an entry of that name.
    weights_file:
        User weights file.

    Raises
    ------
    ParameterError
        Neither ``out`` nor ``register``.
    OutputExistsError
        ``register``, the name is taken and ``force`` is false.
    """
    from breastai.weights import load_registry

    if out is None and not register:
        raise ParameterError(f"Give an output {what} (out) when the model is not registered.")
    if register and not force and name in load_registry(weights_file):
        raise OutputExistsError(
            f"A model named {name!r} already exists in the weights registry; pass --force to "
            "replace it or choose another --name."
        )


def load_trained_network(checkpoint: Path) -> tuple[nn.Module, Any]:
    """Rebuild the network of a ``breastai train`` checkpoint (eval mode) and its options.

    Parameters
    ----------
    checkpoint:
        ``best.pt`` / ``last.pt``.

    Returns
    -------
    (torch.nn.Module, TrainOptions)

    Raises
    ------
    InputError
        Not a breastai training checkpoint.
    WeightsError
        The weights do not fit the network the checkpoint describes.
    """
    from breastai.training.networks import build_network
    from breastai.training.train import TrainOptions, load_checkpoint

    ckpt = load_checkpoint(Path(checkpoint))
    options = TrainOptions.from_dict(ckpt["options"])
    net = build_network(options.task, dict(ckpt["config"]))
    try:
        net.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"{checkpoint}: weights do not fit the {options.task} network it describes: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    return net.eval(), options


def export_checkpoint(
    checkpoint: Path,
    out: Path,
    *,
    name: str | None = None,
    register: bool = False,
    force: bool = False,
    weights_file: Path | None = None,
    demo: bool = False,
    training_data: str = "",
    description: str = "",
    licence: str = "",
) -> ExportedModel:
    """Export a ``breastai train`` checkpoint to ONNX (checked in ONNX Runtime); maybe register.

    Parameters
    ----------
    checkpoint:
        ``best.pt`` / ``last.pt``.
    out:
        Destination ``.onnx``.
    name:
        Entry name (default: the file stem of ``out``).
    register:
        Add the model to the user weights file (:func:`breastai.weights.register_model`).
    force:
        Replace an existing file / entry.
    weights_file:
        User weights file.
    demo, training_data, description, licence:
        Card fields.

    Returns
    -------
    ExportedModel

    Raises
    ------
    InputError
        Not a breastai training checkpoint.
    OutputExistsError
        ``out`` (or the entry) exists and ``force`` is false.
    WeightsError
        Export disagrees with torch by more than 1e-4.
    """
    from breastai.weights import register_model, sha256_file

    out = Path(out)
    net, options = load_trained_network(checkpoint)
    name = name or out.stem
    parity = export_onnx(net, out, force=force, atol=1e-4)
    sha = sha256_file(out)
    card = model_card(
        options,
        name=name,
        filename=out.name,
        sha256=sha,
        demo=demo,
        training_data=training_data or f"breastai train ({options.task}) checkpoint {checkpoint}",
        description=description,
        licence=licence,
    )
    registered = None
    if register:
        registered = register_model(card, out, weights_file=weights_file, force=force)
    return ExportedModel(
        name=name, onnx_path=out, sha256=sha, card=card, parity=parity, weights_file=registered
    )


# ----------------------------------------------------------------- encoder + head (feature reuse)

#: Input of the encoder file: one phase pair ``[P_i, P_i - P_0]`` ``(N, 2, Z, Y, X)``.
ENCODER_INPUT = "pair"
#: Outputs of the encoder file: the four level outputs (full, 1/2, 1/4, 1/8 resolution) and the
#: bridge (1/16); the names match the head's inputs.
ENCODER_OUTPUTS = ("skip1", "skip2", "skip3", "skip4", "bridge")
#: Inputs of the head file: ``bridges`` ``(B, S, 16 f, bz, by, bx)`` (every slot), the skips of
#: phase slot 2 ``(B, f * 2**k, ...)`` and ``time_mask`` ``(B, S)``; output ``probability``.
HEAD_INPUTS = ("bridges", "skip1", "skip2", "skip3", "skip4", "time_mask")


class _EncoderGraph(nn.Module):
    """Export wrapper: the shared encoder, outputs (skip1..skip4, bridge)."""

    def __init__(self, net: SeedTumorNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, pair: torch.Tensor) -> tuple[torch.Tensor, ...]:
        skips, bridge = self.net.encode(pair)
        return (*skips, bridge)


class _HeadGraph(nn.Module):
    """Export wrapper: everything after the encoder for one window."""

    def __init__(self, net: SeedTumorNet) -> None:
        super().__init__()
        self.net = net

    def forward(
        self,
        bridges: torch.Tensor,
        skip1: torch.Tensor,
        skip2: torch.Tensor,
        skip3: torch.Tensor,
        skip4: torch.Tensor,
        time_mask: torch.Tensor,
    ) -> torch.Tensor:
        return self.net.head(bridges, [skip1, skip2, skip3, skip4], time_mask)


def feature_example_inputs(
    model: SeedTumorNet,
    *,
    batch: int = 1,
    seed: int = 0,
    size_zyx: tuple[int, int, int] | None = None,
) -> tuple[tuple[torch.Tensor], tuple[torch.Tensor, ...]]:
    """Deterministic random inputs of the encoder and the head graphs.

    Parameters
    ----------
    model:
        The tumor network.
    batch:
        Batch of the head inputs (the encoder example has batch 1).
    seed:
        Seed of the generator.
    size_zyx:
        Spatial size of the encoder example (multiples of 16; default: the patch).

    Returns
    -------
    ((pair,), (bridges, skip1, skip2, skip3, skip4, time_mask))
        ``pair`` is ``[P, P - P0]`` of random phases; the head inputs come from the encoder run
        on random windows of every slot, so they have realistic scales.
    """
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    size = size_zyx or cfg.patch_zyx
    p0 = 1.2 * torch.rand((1, 1, *size), generator=gen)
    p1 = 1.2 * torch.rand((1, 1, *size), generator=gen)
    pair = torch.cat([p1, p1 - p0], dim=1)
    phases, mask = example_inputs(model, batch=batch, seed=seed + 1)
    d, h, w = cfg.patch_zyx
    x = torch.cat([phases, phases - phases[:, :1]], dim=2).reshape(-1, 2, d, h, w)
    with torch.no_grad():
        skips, bridge = model.eval().encode(x)
    s = cfg.slots
    slot2 = [t.reshape(-1, s, *t.shape[1:])[:, 2].contiguous() for t in skips]
    bridges = bridge.reshape(-1, s, *bridge.shape[1:]).contiguous()
    return (pair,), (bridges, *slot2, mask)


@dataclass(frozen=True)
class FeatureExport:
    """What :func:`export_feature_onnx` wrote (both files checked in ONNX Runtime)."""

    encoder_path: Path
    head_path: Path
    encoder_sha256: str
    head_sha256: str
    encoder_parity: float
    head_parity: float


def export_graph(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    path: Path,
    *,
    in_names: list[str],
    out_names: list[str],
    dynamic: dict[str, dict[int, str]],
    opset: int,
) -> None:
    """Export ``module`` to ONNX at ``path`` (callers pass the temporary path of
    :func:`breastai.io.atomic.atomic_file`, and check the file before it is moved into place)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(
                module,
                inputs,
                str(path),
                input_names=in_names,
                output_names=out_names,
                dynamic_axes=dynamic,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )


def _ort_max_diff(
    path: Path, names: list[str], inputs: tuple[torch.Tensor, ...], ref: tuple[torch.Tensor, ...]
) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, min(2, os.cpu_count() or 1))
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
    diff = 0.0
    for g, r in zip(got, ref, strict=True):
        if tuple(g.shape) != tuple(r.shape):
            return float("inf")
        diff = max(diff, float(np.max(np.abs(g - r.numpy()))))
    return diff


def export_feature_onnx(
    model: SeedTumorNet,
    encoder_path: Path,
    head_path: Path,
    *,
    force: bool = False,
    opset: int = OPSET,
    verify: bool = True,
    atol: float = 1e-4,
) -> FeatureExport:
    """Export the tumor network as two ONNX files for encoder-feature reuse; check both.

    The encoder file takes ``pair`` float32 ``(N, 2, Z, Y, X)`` (``[P_i, P_i - P_0]``; batch and
    the three spatial axes symbolic, each side a multiple of 16) and returns ``skip1`` ..
    ``skip4`` and ``bridge`` (:data:`ENCODER_OUTPUTS`). The head file takes :data:`HEAD_INPUTS`
    for windows of exactly ``config.patch_zyx`` (batch symbolic) and returns ``probability``
    ``(B, 1, D, H, W)``. Running the encoder on each slot of a window and the head on the
    results equals ``model(phases, time_mask)``.

    Parameters
    ----------
    model:
        The tumor network (put in eval mode here).
    encoder_path, head_path:
        Destination ``.onnx`` files (each written to a temporary file in its folder first and
        moved into place only when both exports and checks succeeded).
    force:
        Replace existing files.
    opset:
        ONNX opset (>= 17).
    verify:
        Compare ONNX Runtime (CPU) with torch: the encoder on a random input one 16-voxel step
        larger than the patch on each axis, the head at batch 2.
    atol:
        Largest allowed absolute difference (encoder outputs and probabilities).

    Returns
    -------
    FeatureExport
        Paths, sha256 of both files and the two parity figures (NaN when not verified).

    Raises
    ------
    OutputExistsError
        A destination exists and ``force`` is false.
    WeightsError
        An export disagrees with torch by more than ``atol``.
    OutputError
        A file could not be written.
    """
    from breastai.weights import sha256_file

    encoder_path, head_path = Path(encoder_path), Path(head_path)
    for path in (encoder_path, head_path):
        if path.exists() and not force:
            raise OutputExistsError(f"{path} exists; pass --force to replace it.")
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    if not isinstance(model, SeedTumorNet):
        raise TypeError(f"feature export needs a SeedTumorNet, got {type(model).__name__}")
    model = model.eval()
    enc, head = _EncoderGraph(model).eval(), _HeadGraph(model).eval()
    (pair,), head_in = feature_example_inputs(model, batch=1)
    enc_dyn = {
        n: {0: "batch", 2: f"{n}_z", 3: f"{n}_y", 4: f"{n}_x"}
        for n in (ENCODER_INPUT, *ENCODER_OUTPUTS)
    }
    head_dyn = {n: {0: "batch"} for n in (*HEAD_INPUTS, "probability")}
    enc_diff = head_diff = float("nan")
    with (
        atomic_file(encoder_path, suffix=".onnx", mode=0o644) as enc_tmp,
        atomic_file(head_path, suffix=".onnx", mode=0o644) as head_tmp,
    ):
        export_graph(
            enc,
            (pair,),
            enc_tmp,
            in_names=[ENCODER_INPUT],
            out_names=list(ENCODER_OUTPUTS),
            dynamic=enc_dyn,
            opset=opset,
        )
        export_graph(
            head,
            head_in,
            head_tmp,
            in_names=list(HEAD_INPUTS),
            out_names=["probability"],
            dynamic=head_dyn,
            opset=opset,
        )
        if verify:
            size = tuple(p + 16 for p in model.config.patch_zyx)
            (vpair,), vhead = feature_example_inputs(
                model, batch=2, seed=7, size_zyx=(size[0], size[1], size[2])
            )
            with torch.no_grad():
                enc_ref = enc(vpair)
                head_ref = (head(*vhead),)
            enc_diff = _ort_max_diff(enc_tmp, [ENCODER_INPUT], (vpair,), enc_ref)
            head_diff = _ort_max_diff(head_tmp, list(HEAD_INPUTS), vhead, head_ref)
            log.info("feature export parity: encoder %.3g, head %.3g", enc_diff, head_diff)
            for what, diff in (("encoder", enc_diff), ("head", head_diff)):
                if not diff <= atol:
                    raise WeightsError(
                        f"The exported ONNX {what} differs from torch by {diff:.3g} "
                        f"(allowed {atol:.1g}); the export is not usable."
                    )
    return FeatureExport(
        encoder_path=encoder_path,
        head_path=head_path,
        encoder_sha256=sha256_file(encoder_path),
        head_sha256=sha256_file(head_path),
        encoder_parity=enc_diff,
        head_parity=head_diff,
    )
