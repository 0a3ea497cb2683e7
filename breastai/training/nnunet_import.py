"""Import an nnU-Net v2 trained model (a folder, or the zip of ``nnUNetv2_export_model_to_zip``).

What it does, in order:

1. find ``plans.json``, ``dataset.json`` and ``fold_K/checkpoint_{final,best}.pth`` (a zip is
   extracted to a temporary folder first, refusing members outside it);
2. read every checkpoint with ``torch.load(weights_only=True)`` (nothing in it is executed; the
   numpy scalar types nnU-Net's training log holds are allow-listed);
3. build the network from the plans (``PlainConvUNet`` or ``ResidualEncoderUNet`` of
   dynamic_network_architectures, without deep supervision) and load each fold's weights strictly;
4. export one ONNX file per fold (input ``image`` ``(B, C, *patch)``, output ``logits``, batch axis
   symbolic) and check it against torch in ONNX Runtime on a random input;
5. write the model card ``nnunet.json`` (:class:`breastai.nnunet.card.NnunetCard`) beside the ONNX
   files, with the sha256 of every source file, and register the model in the user weights file
   the way the seed-checkpoint import does (:func:`breastai.weights.register_model`; the
   registered file is the card, which pins every fold file by sha256).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pydoc
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from breastai.choices import Blend
from breastai.errors import (
    InputError,
    OutputError,
    OutputExistsError,
    ParameterError,
    WeightsError,
)
from breastai.io.atomic import atomic_file, replace_dir
from breastai.nnunet.card import (
    CARD_FILE,
    NnunetCard,
    card_fields_from_folder,
    channel_spec_from_names,
    parse_channels,
    parse_label_roles,
    roles_from_labels,
)

__all__ = [
    "NnunetImportResult",
    "build_network",
    "find_model_folder",
    "import_nnunet",
    "load_checkpoint",
]

log = logging.getLogger(__name__)

_CHECKPOINTS = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth"}
_FOLD_RE = re.compile(r"^fold_(\d+|all)$")
_TORCH_NN_CLASSES = re.compile(r"^torch\.nn\.(modules\.[a-z_]+\.)?[A-Za-z0-9_]+$")
#: max |torch - ONNX Runtime| allowed on the random-input check (logits)
PARITY_ATOL = 1e-3


@dataclass(frozen=True)
class NnunetImportResult:
    """What :func:`import_nnunet` produced."""

    name: str
    folder: Path
    card: NnunetCard
    weights_file: Path | None


# ------------------------------------------------------------------------------------ sources


def _safe_extract(zf: zipfile.ZipFile, dest: Path) -> None:
    root = dest.resolve()
    for member in zf.infolist():
        target = (dest / member.filename).resolve()
        if not target.is_relative_to(root):
            raise InputError(
                f"the zip holds {member.filename!r}, outside its own folder; refusing to extract."
            )
    zf.extractall(dest)


def find_model_folder(root: Path) -> Path:
    """The one folder under ``root`` (itself included) holding plans.json and dataset.json.

    Raises
    ------
    InputError
        None (not an nnU-Net trained-model folder), or several.
    """
    found = sorted(
        {p.parent for p in root.rglob("plans.json") if (p.parent / "dataset.json").is_file()}
    )
    if (root / "plans.json").is_file() and (root / "dataset.json").is_file():
        return root
    if not found:
        raise InputError(
            f"{root} is not an nnU-Net v2 trained-model folder: expected plans.json, "
            "dataset.json and fold_K/checkpoint_final.pth (a folder like "
            "nnUNet_results/DatasetXXX/nnUNetTrainer__nnUNetPlans__3d_fullres, or the zip of "
            "nnUNetv2_export_model_to_zip)."
        )
    if len(found) > 1:
        rels = ", ".join(str(p.relative_to(root)) for p in found)
        raise InputError(
            f"{root} holds {len(found)} nnU-Net model folders ({rels}); pass one of them."
        )
    return found[0]


@contextlib.contextmanager
def _opened(source: Path) -> Iterator[Path]:
    source = Path(source)
    if not source.exists():
        raise InputError(
            f"{source} does not exist; expected an nnU-Net trained-model folder or zip."
        )
    if source.is_dir():
        yield find_model_folder(source)
        return
    if not zipfile.is_zipfile(source):
        raise InputError(
            f"{source} is neither a folder nor a zip; expected an nnU-Net trained-model folder "
            "or the zip of nnUNetv2_export_model_to_zip."
        )
    with tempfile.TemporaryDirectory(prefix="breastai-nnunet-") as tmp:
        with zipfile.ZipFile(source) as zf:
            _safe_extract(zf, Path(tmp))
        yield find_model_folder(Path(tmp))


def _sha256(path: Path) -> str:
    from breastai.weights import sha256_file

    return sha256_file(path)


# ------------------------------------------------------------------------------ checkpoints


def _numpy_safe_globals() -> list[Any]:
    """The numpy reconstructors a nnU-Net checkpoint's training log needs (data only)."""
    out: list[Any] = []
    for mod_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        mod = pydoc.locate(mod_name)
        if mod is not None and hasattr(mod, "scalar"):
            out.append(mod.scalar)
            break
    out.append(np.dtype)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for n in ("Float32DType", "Float64DType", "Int64DType", "Int32DType", "BoolDType"):
            if hasattr(dtypes, n):
                out.append(getattr(dtypes, n))
    return out


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read an nnU-Net checkpoint with ``torch.load(weights_only=True)``.

    Returns
    -------
    dict
        ``network_weights`` (float32 tensors), ``trainer_name``, ``configuration``,
        ``mirroring_axes`` (tuple or None).

    Raises
    ------
    WeightsError
        Not a readable (safe) torch checkpoint, or not an nnU-Net one.
    """
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or unsafe files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise WeightsError(
            f"{path} cannot be read safely as a torch checkpoint (weights_only=True): {first}."
        ) from None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("network_weights"), Mapping):
        raise WeightsError(
            f"{path} is not an nnU-Net v2 checkpoint (no 'network_weights' state dict)."
        )
    init = raw.get("init_args") if isinstance(raw.get("init_args"), Mapping) else {}
    axes = raw.get("inference_allowed_mirroring_axes")
    return {
        "network_weights": {
            str(k): v.detach().to(torch.float32) if v.is_floating_point() else v
            for k, v in raw["network_weights"].items()
        },
        "trainer_name": str(raw.get("trainer_name", "nnUNetTrainer")),
        "configuration": str(init.get("configuration", "")) if init else "",
        "mirroring_axes": None if axes is None else tuple(int(a) for a in axes),
    }


def _fold_dirs(
    folder: Path, folds: Sequence[str] | None, checkpoint: str
) -> list[tuple[str, Path]]:
    if folds:
        out = []
        for f in folds:
            f = str(f).strip()
            if not _FOLD_RE.match(f"fold_{f}"):
                raise ParameterError(f"--folds takes fold numbers or 'all', got {f!r}.")
            ck = folder / f"fold_{f}" / checkpoint
            if not ck.is_file():
                have = sorted(p.parent.name for p in folder.glob(f"fold_*/{checkpoint}"))
                raise InputError(
                    f"fold {f} has no {checkpoint} in {folder} (folds with it: "
                    f"{', '.join(have) or 'none'}); pass --folds with the folds that exist."
                )
            out.append((f, ck))
        return out
    found = []
    for p in sorted(folder.glob(f"fold_*/{checkpoint}")):
        m = _FOLD_RE.match(p.parent.name)
        if m and m.group(1) != "all":
            found.append((m.group(1), p))
    found.sort(key=lambda t: int(t[0]))
    if not found and (folder / "fold_all" / checkpoint).is_file():
        found = [("all", folder / "fold_all" / checkpoint)]
    if not found:
        raise InputError(
            f"{folder} holds no fold_K/{checkpoint}: the model's folds are missing (for "
            "checkpoint_best.pth use --checkpoint best)."
        )
    return found


# ---------------------------------------------------------------------------------- network


def _locate_torch_class(name: str, key: str) -> Any:
    if not _TORCH_NN_CLASSES.match(name):
        raise WeightsError(f"plans.json: {key} = {name!r} is not a torch.nn class breastai builds.")
    cls = pydoc.locate(name)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise WeightsError(f"plans.json: {key} = {name!r} is not a torch.nn module class.")
    return cls


def build_network(
    architecture: str, arch_kwargs: Mapping[str, Any], n_in: int, n_out: int
) -> nn.Module:
    """The network nnU-Net builds from the plans (``deep_supervision=False``), in eval mode.

    Raises
    ------
    WeightsError
        dynamic_network_architectures is missing, or the plans' keyword arguments do not fit.
    """
    try:
        from dynamic_network_architectures.architectures import unet
    except ImportError:
        raise WeightsError(
            "importing an nnU-Net model needs dynamic_network_architectures: pip install "
            "'breastai[nnunet]'."
        ) from None
    cls = getattr(unet, architecture)
    kwargs = dict(arch_kwargs)
    for key in ("conv_op", "norm_op", "dropout_op", "nonlin"):
        v = kwargs.get(key)
        if isinstance(v, str):
            kwargs[key] = _locate_torch_class(v, key)
    try:
        net: nn.Module = cls(
            input_channels=n_in, num_classes=n_out, **kwargs, deep_supervision=False
        )
    except TypeError as exc:
        raise WeightsError(
            f"plans.json's architecture keywords do not fit {architecture}: {exc}."
        ) from None
    return net.eval()


def _export_fold(net: nn.Module, n_in: int, patch: Sequence[int], out: Path) -> float:
    import onnxruntime as ort

    from breastai.training.export import OPSET, export_graph

    example = torch.zeros((1, n_in, *patch))
    with atomic_file(out, suffix=".onnx", mode=0o644) as tmp:
        export_graph(
            net,
            (example,),
            tmp,
            in_names=["image"],
            out_names=["logits"],
            dynamic={"image": {0: "batch"}, "logits": {0: "batch"}},
            opset=OPSET,
        )
        gen = torch.Generator().manual_seed(0)
        x = torch.randn((2, n_in, *patch), generator=gen)
        with torch.no_grad():
            ref = net(x).numpy()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, min(2, os.cpu_count() or 1))
        sess = ort.InferenceSession(str(tmp), opts, providers=["CPUExecutionProvider"])
        got = sess.run(None, {"image": x.numpy()})[0]
        diff = float(np.max(np.abs(got - ref))) if got.shape == ref.shape else float("inf")
        if not diff <= PARITY_ATOL * max(1.0, float(np.max(np.abs(ref)))):
            raise WeightsError(
                f"the exported ONNX network differs from torch by {diff:.3g} on a random input; "
                "the export is not usable."
            )
    return diff


# ----------------------------------------------------------------------------------- import


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path} as JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} does not hold a JSON object.")
    return data


def _check_roles(roles: Mapping[str, Sequence[int]], valid: set[int], task: str) -> None:
    for role, vals in roles.items():
        bad = [v for v in vals if v not in valid]
        if bad:
            raise ParameterError(
                f"--labels: {role}={'+'.join(map(str, vals))} names label value(s) {bad} the model "
                f"does not output (it outputs {sorted(valid)})."
            )
    need = ("tumor",) if task == "tumor" else ("breast", "left", "right")
    if not any(r in roles for r in need):
        raise ParameterError(
            f"no label of this model is marked as {' or '.join(need)} (from dataset.json's label "
            "names); pass --labels, e.g. "
            + ("'tumor=1'." if task == "tumor" else "'left=1,right=2'.")
        )


def import_nnunet(
    source: Path,
    *,
    name: str,
    task: str,
    channels: str | Sequence[str] | None = None,
    labels: str | Mapping[str, Sequence[int]] | None = None,
    folds: Sequence[str] | None = None,
    checkpoint: str = "final",
    out: Path | None = None,
    register: bool = True,
    force: bool = False,
    weights_file: Path | None = None,
) -> NnunetImportResult:
    """Import an nnU-Net v2 trained model: build, export one ONNX per fold, check, card, register.

    Parameters
    ----------
    source:
        A trained-model folder (``plans.json``, ``dataset.json``, ``fold_K/``) or its zip.
    name:
        Model name (registry entry and folder name).
    task:
        ``"breast"`` or ``"tumor"``.
    channels:
        Channel specs, one per model input (``"pre,sub1"``); default from dataset.json's channel
        names where they say it.
    labels:
        Roles (``"left=1,right=2"``); default from dataset.json's label names.
    folds:
        Folds to use (``["0", "1"]`` or ``["all"]``); default every ``fold_K`` with the
        checkpoint (``fold_all`` when there is no other).
    checkpoint:
        ``"final"`` or ``"best"``.
    out:
        Write the model folder here instead of (``register=False``) or besides the registry copy.
    register:
        Register in the user weights file (files in ``models/NAME/`` beside it).
    force:
        Replace an existing model of that name / an existing ``out`` folder.
    weights_file:
        User weights file.

    Raises
    ------
    InputError
        Not an nnU-Net folder/zip, missing folds.
    WeightsError
        Unsafe or foreign checkpoint, unsupported architecture or configuration (2d, cascade),
        checkpoint that does not fit the plans, an export that disagrees with torch.
    ParameterError
        Bad ``--channels`` (wrong count) or ``--labels``, unknown task or checkpoint.
    OutputExistsError
        The name is taken and ``force`` is false.
    """
    from breastai.training.export import check_import_target
    from breastai.weights import TASKS, ModelCard, register_model, user_weights_file

    if task not in TASKS:
        raise ParameterError(f"--task must be one of {', '.join(TASKS)}, got {task!r}.")
    if checkpoint not in _CHECKPOINTS:
        raise ParameterError(f"--checkpoint must be final or best, got {checkpoint!r}.")
    check_import_target(
        name, out, register=register, force=force, weights_file=weights_file, what="folder"
    )
    if out is not None and Path(out).exists() and not force:
        raise OutputExistsError(f"{out} exists; pass --force to replace it.")
    ck_name = _CHECKPOINTS[checkpoint]
    source = Path(source)
    with _opened(source) as folder:
        where = str(folder if source.is_dir() else source)
        plans = _load_json(folder / "plans.json")
        dataset = _load_json(folder / "dataset.json")
        fold_files = _fold_dirs(folder, folds, ck_name)
        cks = [(f, p, load_checkpoint(p)) for f, p in fold_files]
        config = cks[0][2]["configuration"]
        if not config:
            m = re.match(r"^.+__.+__(.+)$", folder.name)
            config = m.group(1) if m else ""
        if any(c["configuration"] not in ("", config) for _, _, c in cks):
            raise WeightsError(f"{where}: the folds were trained with different configurations.")
        fields = card_fields_from_folder(plans, dataset, config, where=where)
        n_in = int(fields["num_input_channels"])
        if channels is None:
            spec = channel_spec_from_names(fields["channel_names"])
            if spec is None:
                raise ParameterError(
                    f"dataset.json names the model's {n_in} channel(s) "
                    f"{fields['channel_names']}, which do not say which study image feeds each; "
                    "pass --channels (pre, postN, subN or phaseK per channel, e.g. 'pre' or "
                    "'pre,sub1')."
                )
        else:
            spec = parse_channels(channels)
        if len(spec) != n_in:
            raise ParameterError(
                f"--channels lists {len(spec)} channel(s) ({','.join(spec)}) but the model takes "
                f"{n_in} ({', '.join(fields['channel_names'])}); give one spec per channel."
            )
        roles: dict[str, tuple[int, ...]]
        if labels is None:
            roles = roles_from_labels(fields["labels"])
        elif isinstance(labels, str):
            roles = parse_label_roles(labels)
        else:
            roles = {k: tuple(int(x) for x in v) for k, v in labels.items()}
        valid = (
            set(fields["regions_class_order"])
            if fields["regions"]
            else {
                int(x)
                for k, v in fields["labels"].items()
                if k != "ignore"
                for x in (v if isinstance(v, list | tuple) else [v])
            }
        )
        valid.discard(0)
        _check_roles(roles, valid, task)
        net = build_network(
            fields["architecture"], fields["arch_kwargs"], n_in, fields["num_heads"]
        )
        sources = {
            str(p.relative_to(folder)): _sha256(p)
            for p in [folder / "plans.json", folder / "dataset.json"]
            + [folder / "dataset_fingerprint.json"]
            * (folder / "dataset_fingerprint.json").is_file()
        }
        if source.is_file():
            sources[source.name] = _sha256(source)
        wf = user_weights_file(weights_file)
        models_root = wf.parent / "models"
        stage_parent = models_root if register else Path(out).parent  # type: ignore[arg-type]
        try:
            stage_parent.mkdir(parents=True, exist_ok=True)
            stage = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=stage_parent))
        except OSError as exc:
            raise OutputError(f"cannot write to {stage_parent}: {exc.strerror or exc}.") from None
        try:
            fold_entries = []
            for f, p, ck in cks:
                try:
                    net.load_state_dict(ck["network_weights"], strict=True)
                except RuntimeError as exc:
                    first = str(exc).strip().splitlines()[0][:200]
                    raise WeightsError(
                        f"{p}: the weights do not fit the network plans.json describes "
                        f"({fields['architecture']}): {first}. The trainer "
                        f"{ck['trainer_name']!r} may build a custom network, which breastai "
                        "cannot import."
                    ) from None
                sources[str(p.relative_to(folder))] = _sha256(p)
                onnx = stage / f"fold_{f}.onnx"
                parity = _export_fold(net, n_in, fields["patch_size"], onnx)
                fold_entries.append(
                    {"fold": f, "file": onnx.name, "sha256": _sha256(onnx), "parity": parity}
                )
            ck0 = cks[0][2]
            card = NnunetCard(
                name=name,
                task=task,
                channels=tuple(spec),
                labels=fields["labels"],
                roles=roles,
                num_heads=int(fields["num_heads"]),
                configuration=config,
                trainer=str(ck0["trainer_name"]),
                plans_name=fields["plans_name"],
                dataset_name=fields["dataset_name"],
                orientation=fields["orientation"],
                transpose_forward=tuple(fields["transpose_forward"]),
                transpose_backward=tuple(fields["transpose_backward"]),
                spacing=tuple(fields["spacing"]),
                patch_size=tuple(fields["patch_size"]),
                normalization_schemes=tuple(fields["normalization_schemes"]),
                use_mask_for_norm=tuple(fields["use_mask_for_norm"]),
                intensity_properties=fields["intensity_properties"],
                resampling_data=fields["resampling_data"],
                resampling_probabilities=fields["resampling_probabilities"],
                mirroring_axes=ck0["mirroring_axes"],
                architecture=fields["architecture"],
                folds=tuple(fold_entries),
                regions=tuple(tuple(r) for r in fields["regions"]),
                regions_class_order=tuple(fields["regions_class_order"]),
                checkpoint=ck_name,
                sources=sources,
                licence=fields["licence"],
                description=(
                    f"nnU-Net v2 {fields['dataset_name']} {config} ({fields['architecture']}, "
                    f"{ck0['trainer_name']}, folds {','.join(f for f, _, _ in cks)}), imported "
                    "with `breastai import-weights --nnunet`."
                ),
            )
            card.validate(where)
            card.write(stage / CARD_FILE)
            registered: Path | None = None
            if out is not None:
                target = Path(out)
                if register:
                    tmp_out = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
                    shutil.copytree(stage, tmp_out, dirs_exist_ok=True)
                    replace_dir(tmp_out, target, force=True)
                else:
                    replace_dir(stage, target, force=True)
            folder_out = Path(out) if (out is not None and not register) else models_root / name
            if register:
                replace_dir(stage, folder_out, force=True)
                mcard = ModelCard(
                    name=name,
                    task=task,
                    filename=CARD_FILE,
                    sha256="",
                    architecture=f"{card.family} {card.architecture} {config}",
                    patch_zyx=tuple(card.patch_size),  # type: ignore[arg-type]
                    stride_zyx=tuple(max(1, int(p * card.tile_step_size)) for p in card.patch_size),  # type: ignore[arg-type]
                    spacing_zyx=tuple(card.spacing),  # type: ignore[arg-type]
                    blending=Blend.GAUSSIAN,
                    input_names=("image",),
                    output_name="logits",
                    training_data=fields["dataset_name"],
                    licence=card.licence,
                    intended_use="Research use only, not a medical device.",
                    description=card.description,
                )
                registered = register_model(
                    mcard, folder_out / CARD_FILE, weights_file=weights_file, force=True
                )
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)
    log.info("imported nnU-Net model %s from %s", name, source)
    return NnunetImportResult(name=name, folder=folder_out, card=card, weights_file=registered)
