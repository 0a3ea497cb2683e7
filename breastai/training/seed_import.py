"""Import the authors' released tumor checkpoint (``best_model.pth``) into breastai.

The checkpoint is read with ``torch.load(..., weights_only=True)`` (nothing in it is executed); an
``.npz`` of arrays under the same key names (how the golden vectors are stored) goes through the
same code after loading. Sizes (filters, hidden, MLP width, layers, phase slots, positions) are read
from the tensor shapes; the number of attention heads cannot be, and defaults to the authors' 12.
The state dict is then loaded strictly, exported to ONNX with 6 fixed phase slots and registered
in the user's weights file with a model card.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from breastai.choices import Blend, Normalisation
from breastai.errors import WeightsError
from breastai.training.networks import SeedTumorConfig, SeedTumorNet

__all__ = [
    "DEFAULT_HEADS",
    "SEED_LICENCE",
    "ImportResult",
    "import_seed_checkpoint",
    "infer_seed_config",
    "load_seed_network",
    "read_state_dict",
    "seed_model_card",
]

log = logging.getLogger(__name__)

#: Attention heads of the authors' configuration (not recoverable from the tensors).
DEFAULT_HEADS = 12
SEED_LICENCE = "code MIT; weights as the authors state"
_SEED_PATCH = (32, 96, 96)
_SEED_STRIDE = (16, 48, 48)


def _to_tensor(value: Any, key: str, source: Path) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float32)
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiu":
        return torch.from_numpy(np.asarray(value, dtype=np.float32))
    raise WeightsError(
        f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor; expected a state "
        "dict of tensors (the authors' checkpoint holds {'model': state_dict})."
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint's state dict as float32 tensors, executing nothing.

    Accepts a torch file holding ``{'model': state_dict}`` (the authors' format), ``{'state_dict':
    ...}`` or a bare state dict, and an ``.npz`` of arrays. BatchNorm ``num_batches_tracked``
    counters are dropped, and a ``module.`` prefix (DataParallel) is removed.

    Parameters
    ----------
    path:
        The checkpoint file.

    Returns
    -------
    dict of str to torch.Tensor
        Parameters and buffers, float32, in file order.

    Raises
    ------
    WeightsError
        The file is missing, not a torch checkpoint / npz, or holds no state dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Checkpoint {path} does not exist or is not a file.")
    raw: Any
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                raw = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise WeightsError(
                f"{path} is not a readable .npz archive of arrays ({exc})."
            ) from None
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for foreign or unsafe files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsError(
                f"{path} is not a torch checkpoint that can be read safely (weights_only=True): "
                f"{first[:200]}. Pass the authors' best_model.pth or an .npz of arrays."
            ) from None
    if isinstance(raw, Mapping):
        for wrapper in ("model", "state_dict", "model_state_dict"):
            inner = raw.get(wrapper)
            if isinstance(inner, Mapping):
                raw = inner
                break
    if not isinstance(raw, Mapping) or not raw:
        raise WeightsError(
            f"{path} holds a {type(raw).__name__}, not a state dict; expected {{'model': "
            "state_dict}} or a bare state dict of tensors."
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        name = str(key)
        if name.endswith("num_batches_tracked"):
            continue
        if name.startswith("module."):
            name = name[len("module.") :]
        state[name] = _to_tensor(value, name, path)
    return state


def _shape(state: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    tensor = state.get(key)
    if tensor is None:
        raise WeightsError(
            f"The checkpoint has no {key!r}; it is not the authors' tumor network "
            "(expected keys such as encoder_post.down_1..., patch_embeddings..., decoder...)."
        )
    if tensor.ndim != ndim:
        raise WeightsError(f"{key}: expected a {ndim}-D tensor, found shape {tuple(tensor.shape)}.")
    return tuple(int(s) for s in tensor.shape)


def _count_layers(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.layer\.(\d+)\.")
    idx = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    if not idx:
        raise WeightsError(f"The checkpoint has no {prefix}.layer.N blocks.")
    return max(idx) + 1


def infer_seed_config(
    state: Mapping[str, torch.Tensor],
    *,
    heads: int = DEFAULT_HEADS,
    patch_zyx: tuple[int, int, int] = _SEED_PATCH,
) -> SeedTumorConfig:
    """Read the network sizes of the authors' tumor network from its tensors.

    Parameters
    ----------
    state:
        The state dict (see :func:`read_state_dict`).
    heads:
        Attention heads (12 in the authors' configuration; not stored in the tensors).
    patch_zyx:
        Patch size; must give as many bottleneck positions as ``position_embeddings`` holds.

    Returns
    -------
    SeedTumorConfig

    Raises
    ------
    WeightsError
        A size-defining tensor is missing or inconsistent.
    """
    filters = _shape(state, "encoder_post.down_1.0.0.weight", 5)[0]
    in_ch = _shape(state, "encoder_post.down_1.0.0.weight", 5)[1]
    if in_ch != 2:
        raise WeightsError(
            f"encoder_post.down_1.0.0.weight: expected 2 input channels ([P_i, P_i - P_0]), "
            f"found {in_ch}."
        )
    hidden = _shape(state, "patch_embeddings.weight", 5)[0]
    positions = _shape(state, "position_embeddings", 3)[1]
    slots = _shape(state, "time_embeddings", 3)[1]
    mlp = _shape(state, "spatial_transformer.layer.0.ffn.fc1.weight", 2)[0]
    spatial_layers = _count_layers(state, "spatial_transformer")
    temporal_layers = _count_layers(state, "temporal_transformer")
    cfg = SeedTumorConfig(
        filters=filters,
        hidden=hidden,
        mlp=mlp,
        heads=heads,
        spatial_layers=spatial_layers,
        temporal_layers=temporal_layers,
        slots=slots,
        patch_zyx=patch_zyx,
    )
    if cfg.positions != positions:
        raise WeightsError(
            f"position_embeddings holds {positions} positions but a {patch_zyx} patch gives "
            f"{cfg.positions}; the checkpoint was trained with another patch size."
        )
    if hidden % heads:
        raise WeightsError(f"hidden size {hidden} is not divisible by {heads} attention heads.")
    return cfg


def load_seed_network(
    state: Mapping[str, torch.Tensor],
    *,
    heads: int = DEFAULT_HEADS,
    patch_zyx: tuple[int, int, int] = _SEED_PATCH,
) -> SeedTumorNet:
    """Build :class:`SeedTumorNet` with sizes from ``state`` and load it strictly (eval mode).

    Parameters
    ----------
    state:
        The state dict (float32 tensors; ``num_batches_tracked`` optional).
    heads:
        Attention heads.
    patch_zyx:
        Patch size.

    Returns
    -------
    SeedTumorNet
        In eval mode.

    Raises
    ------
    WeightsError
        Naming the first missing key, unexpected key or shape mismatch, with expected and actual
        shapes.
    """
    cfg = infer_seed_config(state, heads=heads, patch_zyx=patch_zyx)
    net = SeedTumorNet(cfg)
    expected = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    for key, ref in expected.items():
        got = state.get(key)
        if got is None:
            raise WeightsError(
                f"The checkpoint lacks {key!r} (expected shape {tuple(ref.shape)}); it does not "
                f"match the authors' tumor network ({_describe(cfg)})."
            )
        if tuple(got.shape) != tuple(ref.shape):
            raise WeightsError(
                f"{key}: expected shape {tuple(ref.shape)}, found {tuple(got.shape)} "
                f"(network inferred as {_describe(cfg)})."
            )
    for key, got in state.items():
        if key not in expected:
            raise WeightsError(
                f"The checkpoint has an unexpected key {key!r} (shape {tuple(got.shape)}) that the "
                f"authors' tumor network ({_describe(cfg)}) does not have."
            )
    full = dict(net.state_dict())
    full.update({k: state[k] for k in expected})
    net.load_state_dict(full, strict=True)
    return net.eval()


def _describe(cfg: SeedTumorConfig) -> str:
    return (
        f"filters {cfg.filters}, hidden {cfg.hidden}, MLP {cfg.mlp}, heads {cfg.heads}, "
        f"layers {cfg.spatial_layers}+{cfg.temporal_layers}, slots {cfg.slots}"
    )


def seed_model_card(name: str, filename: str, sha256: str, cfg: SeedTumorConfig) -> Any:
    """Model card of an imported seed checkpoint (a :class:`breastai.weights.ModelCard`).

    Parameters
    ----------
    name:
        Model name (the weights-file entry).
    filename:
        ONNX file name.
    sha256:
        ONNX file hash.
    cfg:
        Network sizes.

    Returns
    -------
    breastai.weights.ModelCard
    """
    from breastai.weights import ModelCard

    return ModelCard(
        name=name,
        task="tumor",
        filename=filename,
        sha256=sha256,
        demo=False,
        architecture=f"seed spatial-temporal tumor network ({_describe(cfg)})",
        patch_zyx=cfg.patch_zyx,
        stride_zyx=_SEED_STRIDE,
        spacing_zyx=(1.0, 1.0, 1.0),
        phases_min=2,
        phases_max=cfg.slots,
        phase_slots=cfg.slots,
        normalisation=Normalisation.SEED,
        blending=Blend.VOTE,
        threshold=0.5,
        training_data="the authors' checkpoint (Zhang et al., Patterns 2023), imported by the user",
        licence=SEED_LICENCE,
        intended_use="Research use only, not a medical device.",
        description="Imported with `breastai import-weights --seed-checkpoint`.",
    )


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_seed_checkpoint` produced."""

    name: str
    onnx_path: Path
    sha256: str
    config: SeedTumorConfig
    weights_file: Path | None
    parity: float


def import_seed_checkpoint(
    checkpoint: Path,
    *,
    out: Path | None = None,
    name: str = "seed-tumor",
    heads: int = DEFAULT_HEADS,
    force: bool = False,
    weights_file: Path | None = None,
    register: bool = True,
) -> ImportResult:
    """Import the authors' checkpoint: load strictly, export ONNX, verify, register.

    Parameters
    ----------
    checkpoint:
        ``best_model.pth`` (``{'model': state_dict}``), a bare state dict, or an ``.npz``.
    out:
        Where to keep the ONNX file; the registered copy lives in ``models/NAME/`` beside the
        user weights file (required when ``register`` is false).
    name:
        Model name in the weights file.
    heads:
        Attention heads (default 12, the authors' configuration).
    force:
        Replace an existing ONNX file and weights entry.
    weights_file:
        User weights file (default: :func:`breastai.weights.user_weights_file`).
    register:
        Add the model to the user weights file.

    Returns
    -------
    ImportResult

    Raises
    ------
    WeightsError
        Unreadable checkpoint, key/shape mismatch, or an export that disagrees with torch.
    OutputExistsError
        The ONNX file (or entry) exists and ``force`` is false.
    """
    import tempfile

    from breastai.training.export import check_import_target, export_onnx
    from breastai.weights import register_model, sha256_file, user_weights_file

    check_import_target(name, out, register=register, force=force, weights_file=weights_file)
    state = read_state_dict(Path(checkpoint))
    net = load_seed_network(state, heads=heads)
    cfg = net.config
    log.info("Loaded seed checkpoint %s: %s", checkpoint, _describe(cfg))
    registered: Path | None = None
    with tempfile.TemporaryDirectory(prefix="breastai-import-") as tmp:
        target = Path(out) if out is not None else Path(tmp) / f"{name}.onnx"
        # 1e-3: the agreed tolerance between torch float32 and ONNX Runtime for the seed network
        parity = export_onnx(net, target, force=force, atol=1e-3)
        sha = sha256_file(target)
        if register:
            card = seed_model_card(name, target.name, sha, cfg)
            registered = register_model(card, target, weights_file=weights_file, force=force)
            if out is None:
                target = user_weights_file(weights_file).parent / "models" / name / target.name
    return ImportResult(
        name=name,
        onnx_path=target,
        sha256=sha,
        config=cfg,
        weights_file=registered,
        parity=parity,
    )
