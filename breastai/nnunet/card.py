"""The nnU-Net model card: everything breastai needs to run an imported nnU-Net v2 model.

An imported model is a folder ``models/NAME/`` holding ``nnunet.json`` (this card) and one ONNX
file per fold (``fold_K.onnx``; input ``image`` ``(B, C, z, y, x)`` float32 in nnU-Net's
preprocessed space, output ``logits`` ``(B, heads, z, y, x)``, raw logits). The card is written by
``breastai import-weights --nnunet`` (:mod:`breastai.training.nnunet_import`) from the trained-model
folder's ``plans.json``, ``dataset.json`` and checkpoints; :func:`card_fields_from_folder` reads
those two JSON files (no torch) and is shared by the import and the tests.

Axis contract: see :mod:`breastai.study`. nnU-Net's own axis order is the one of
``sitk.GetArrayFromImage`` (z, y, x) as its SimpleITK reader presents the file (or after
``DICOMOrient(img, "RAS")`` when the plans name ``SimpleITKIOWithReorient``: ``orientation ==
"RAS"``); ``transpose_forward`` permutes those axes before everything else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from breastai.choices import Family
from breastai.errors import ParameterError, WeightsError
from breastai.io.atomic import atomic_write_text

__all__ = [
    "CARD_FILE",
    "CARD_FORMAT",
    "CHANNEL_RE",
    "NORMALISATION_SCHEMES",
    "ROLES",
    "SUPPORTED_ARCHITECTURES",
    "NnunetCard",
    "card_fields_from_folder",
    "channel_spec_from_names",
    "parse_channels",
    "parse_label_roles",
    "roles_from_labels",
]

CARD_FILE = "nnunet.json"
CARD_FORMAT = "breastai-nnunet/1"
#: Channel images breastai derives from a study (see :func:`breastai.nnunet.derive_channels`).
CHANNEL_RE = re.compile(r"^(pre|post[1-9][0-9]?|sub[1-9][0-9]?|phase[0-9][0-9]?)$")
ROLES = ("breast", "left", "right", "tumor")
NORMALISATION_SCHEMES = (
    "ZScoreNormalization",
    "CTNormalization",
    "NoNormalization",
    "RescaleTo01Normalization",
    "RGBTo01Normalization",
)
#: Network classes the import builds (dynamic_network_architectures), by short name.
SUPPORTED_ARCHITECTURES = ("PlainConvUNet", "ResidualEncoderUNet")
_RESAMPLING_FNS = ("resample_data_or_seg_to_shape",)
_READERS = {
    "SimpleITKIO": "as-read",
    "NibabelIO": "as-read",
    "SimpleITKIOWithReorient": "RAS",
    "NibabelIOWithReorient": "RAS",
}


@dataclass(frozen=True)
class NnunetCard:
    """What ``nnunet.json`` records (all spatial lists in nnU-Net's transposed (z, y, x) order).

    Attributes
    ----------
    name, task:
        Registry name and ``"breast"`` or ``"tumor"``.
    channels:
        One channel spec per network input channel (``pre``, ``postN``, ``subN``, ``phaseK``).
    labels:
        dataset.json's ``labels`` as written (name -> int, or list of ints for a region).
    roles:
        Role (``breast``, ``left``, ``right``, ``tumor``) -> label values in the output map.
    regions, regions_class_order:
        Region-based models: the foreground regions in head order and the label each one writes
        (later entries overwrite earlier ones). Empty for label-based models.
    num_heads:
        Output channels of the network (labels incl. background, or foreground regions).
    configuration, trainer, plans_name, dataset_name:
        Where the model came from.
    orientation:
        ``"as-read"`` (SimpleITKIO: voxel order of the file) or ``"RAS"`` (SimpleITKIOWithReorient).
    transpose_forward, transpose_backward:
        Axis permutations of the preprocessed arrays.
    spacing, patch_size:
        Target spacing (mm) and sliding-window patch, transposed (z, y, x).
    normalization_schemes, use_mask_for_norm, intensity_properties:
        Per channel: the scheme name, whether the nonzero mask is used, and the foreground
        intensity properties (``mean``, ``std``, ``percentile_00_5``, ``percentile_99_5``, ...).
    resampling_data, resampling_probabilities:
        ``{"fn": name, "kwargs": {...}}`` of the plans (``order``, ``order_z``,
        ``force_separate_z``).
    mirroring_axes:
        Axes (of the spatial dims) flipped for test-time augmentation; None = no TTA.
    tile_step_size:
        Sliding-window step as a fraction of the patch (nnU-Net's default 0.5).
    architecture:
        ``PlainConvUNet`` or ``ResidualEncoderUNet``.
    folds:
        One dict per fold: ``fold``, ``file`` (ONNX file name beside the card), ``sha256``,
        ``parity`` (max |torch - ONNX Runtime| of the import check).
    sources:
        Source file (relative path in the trained-model folder or zip) -> sha256.
    licence, description:
        Texts for reports.
    family:
        :attr:`breastai.choices.Family.NNUNET` (a class constant, not written to the card); the
        registry entry of an imported model has an architecture starting with it.
    """

    family: ClassVar[Family] = Family.NNUNET

    name: str
    task: str
    channels: tuple[str, ...]
    labels: dict[str, Any]
    roles: dict[str, tuple[int, ...]]
    num_heads: int
    configuration: str
    trainer: str
    plans_name: str
    dataset_name: str
    orientation: str
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    spacing: tuple[float, ...]
    patch_size: tuple[int, ...]
    normalization_schemes: tuple[str, ...]
    use_mask_for_norm: tuple[bool, ...]
    intensity_properties: dict[str, dict[str, float]]
    resampling_data: dict[str, Any]
    resampling_probabilities: dict[str, Any]
    mirroring_axes: tuple[int, ...] | None
    architecture: str
    folds: tuple[dict[str, Any], ...]
    regions: tuple[tuple[int, ...], ...] = ()
    regions_class_order: tuple[int, ...] = ()
    tile_step_size: float = 0.5
    checkpoint: str = "checkpoint_final.pth"
    sources: dict[str, str] = field(default_factory=dict)
    licence: str = ""
    description: str = ""
    format: str = CARD_FORMAT

    @property
    def has_regions(self) -> bool:
        """Whether the model is region-based (sigmoid heads) rather than label-based (softmax)."""
        return bool(self.regions)

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""

        def plain(v: Any) -> Any:
            if isinstance(v, tuple | list):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v

        return {k: plain(getattr(self, k)) for k in self.__dataclass_fields__}

    def write(self, path: Path) -> None:
        """Write the card as JSON (UTF-8, key order kept: label and region order matter),
        atomically (:func:`breastai.io.atomic.atomic_write_text`).

        Raises
        ------
        OutputError
            The file cannot be written (nothing is left half-written).
        """
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> NnunetCard:
        """Read and validate ``nnunet.json``.

        Raises
        ------
        WeightsError
            Missing, unreadable or inconsistent card.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise WeightsError(f"nnU-Net model card {str(path)!r} does not exist.") from None
        except (OSError, ValueError) as exc:
            raise WeightsError(f"cannot read nnU-Net model card {str(path)!r}: {exc}.") from None
        return cls.from_dict(data, where=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "nnU-Net card") -> NnunetCard:
        """Build and validate a card from its JSON dict."""
        if not isinstance(data, Mapping) or data.get("format") != CARD_FORMAT:
            raise WeightsError(
                f"{where} is not a breastai nnU-Net model card (expected format {CARD_FORMAT!r}); "
                "import the model again with `breastai import-weights --nnunet DIR`."
            )
        try:
            card = cls(
                name=str(data["name"]),
                task=str(data["task"]),
                channels=tuple(data["channels"]),
                labels=dict(data["labels"]),
                roles={k: tuple(int(x) for x in v) for k, v in data["roles"].items()},
                num_heads=int(data["num_heads"]),
                configuration=str(data["configuration"]),
                trainer=str(data["trainer"]),
                plans_name=str(data["plans_name"]),
                dataset_name=str(data["dataset_name"]),
                orientation=str(data["orientation"]),
                transpose_forward=tuple(int(x) for x in data["transpose_forward"]),
                transpose_backward=tuple(int(x) for x in data["transpose_backward"]),
                spacing=tuple(float(x) for x in data["spacing"]),
                patch_size=tuple(int(x) for x in data["patch_size"]),
                normalization_schemes=tuple(str(x) for x in data["normalization_schemes"]),
                use_mask_for_norm=tuple(bool(x) for x in data["use_mask_for_norm"]),
                intensity_properties={
                    str(k): {str(a): float(b) for a, b in v.items()}
                    for k, v in data["intensity_properties"].items()
                },
                resampling_data=dict(data["resampling_data"]),
                resampling_probabilities=dict(data["resampling_probabilities"]),
                mirroring_axes=(
                    None
                    if data["mirroring_axes"] is None
                    else tuple(int(x) for x in data["mirroring_axes"])
                ),
                architecture=str(data["architecture"]),
                folds=tuple(dict(f) for f in data["folds"]),
                regions=tuple(tuple(int(x) for x in r) for r in data.get("regions", ())),
                regions_class_order=tuple(int(x) for x in data.get("regions_class_order", ())),
                tile_step_size=float(data.get("tile_step_size", 0.5)),
                checkpoint=str(data.get("checkpoint", "checkpoint_final.pth")),
                sources=dict(data.get("sources", {})),
                licence=str(data.get("licence", "")),
                description=str(data.get("description", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(
                f"{where}: the nnU-Net model card is incomplete or malformed ({exc!r}); import "
                "the model again."
            ) from None
        card.validate(where)
        return card

    def validate(self, where: str = "nnU-Net card") -> None:
        """Check the card's internal consistency (raises WeightsError)."""
        n = len(self.channels)
        problems = []
        if self.task not in ("breast", "tumor"):
            problems.append(f"task {self.task!r} is not breast or tumor")
        if not all(CHANNEL_RE.match(c) for c in self.channels):
            problems.append(f"channels {list(self.channels)} are not pre/postN/subN/phaseK")
        if len(self.normalization_schemes) != n or len(self.use_mask_for_norm) != n:
            problems.append("normalisation lists do not match the channel count")
        if len(self.spacing) != 3 or len(self.patch_size) != 3:
            problems.append("only 3d configurations are supported")
        if sorted(self.transpose_forward) != [0, 1, 2]:
            problems.append(
                f"transpose_forward {list(self.transpose_forward)} is not a permutation"
            )
        if self.orientation not in ("as-read", "RAS"):
            problems.append(f"orientation {self.orientation!r} is not as-read or RAS")
        if not self.folds:
            problems.append("no folds")
        if self.has_regions and len(self.regions_class_order) != len(self.regions):
            problems.append("regions_class_order does not match the regions")
        if problems:
            raise WeightsError(f"{where}: {'; '.join(problems)}.")


# ---------------------------------------------------------------------------------------------
# Reading an nnU-Net trained-model folder (plans.json + dataset.json); no torch
# ---------------------------------------------------------------------------------------------


def _resolve_configuration(plans: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    configs = plans.get("configurations")
    if not isinstance(configs, Mapping) or name not in configs:
        known = ", ".join(configs) if isinstance(configs, Mapping) else "none"
        raise WeightsError(
            f"{where}: plans.json has no configuration {name!r} (it has: {known}); the checkpoint "
            "does not belong to these plans."
        )
    seen: list[str] = []
    cfg: dict[str, Any] = {}
    current: str | None = name
    chain = []
    while current is not None:
        if current in seen:
            raise WeightsError(f"{where}: configuration inheritance loops through {current!r}.")
        seen.append(current)
        c = configs.get(current)
        if not isinstance(c, Mapping):
            raise WeightsError(f"{where}: configuration {current!r} is missing from plans.json.")
        chain.append(c)
        parent = c.get("inherits_from")
        current = str(parent) if parent is not None else None
    for c in reversed(chain):
        cfg.update({k: v for k, v in c.items() if k != "inherits_from"})
    return cfg


def architecture_of(cfg: Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    """The short class name (one of :data:`SUPPORTED_ARCHITECTURES`) and the keyword arguments.

    Plans of nnU-Net >= 2.3 carry ``architecture``; older plans (``UNet_class_name``) are
    converted the way nnU-Net's ``ConfigurationManager`` does.

    Raises
    ------
    WeightsError
        Another network class (one clear refusal naming it).
    """
    arch = cfg.get("architecture")
    if isinstance(arch, Mapping):
        full = str(arch.get("network_class_name", ""))
        kwargs = dict(arch.get("arch_kwargs", {}))
    else:
        full = str(cfg.get("UNet_class_name", ""))
        if full not in SUPPORTED_ARCHITECTURES:
            kwargs = {}
        else:
            n = len(cfg["n_conv_per_stage_encoder"])
            dim = len(cfg["patch_size"])
            key = "n_conv_per_stage" if full == "PlainConvUNet" else "n_blocks_per_stage"
            kwargs = {
                "n_stages": n,
                "features_per_stage": [
                    min(
                        int(cfg["UNet_base_num_features"]) * 2**i, int(cfg["unet_max_num_features"])
                    )
                    for i in range(n)
                ],
                "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
                "kernel_sizes": cfg["conv_kernel_sizes"],
                "strides": cfg["pool_op_kernel_sizes"],
                key: cfg["n_conv_per_stage_encoder"],
                "n_conv_per_stage_decoder": cfg["n_conv_per_stage_decoder"],
                "conv_bias": True,
                "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
                "norm_op_kwargs": {"eps": 1e-5, "affine": True},
                "dropout_op": None,
                "dropout_op_kwargs": None,
                "nonlin": "torch.nn.LeakyReLU",
                "nonlin_kwargs": {"inplace": True},
            }
    short = full.rsplit(".", 1)[-1]
    if short not in SUPPORTED_ARCHITECTURES or not (
        full == short or full.startswith("dynamic_network_architectures.")
    ):
        raise WeightsError(
            f"{where}: the network class {full or '(none)'!r} is not supported; breastai imports "
            f"nnU-Net models built as {' or '.join(SUPPORTED_ARCHITECTURES)} "
            "(dynamic_network_architectures) only."
        )
    return short, kwargs


def roles_from_labels(labels: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Default roles from dataset.json label names (``left``/``right``/``breast``/``tumor``).

    A name containing ``left`` or ``right`` (and not both) is that breast; ``breast`` (without
    left/right) is the whole breast; ``tumor``, ``tumour``, ``lesion``, ``cancer`` or ``mass`` is
    tumor. Region values (lists) count with every label they hold.
    """
    roles: dict[str, list[int]] = {}
    for name, value in labels.items():
        n = name.lower()
        if n in ("background", "ignore"):
            continue
        values = [int(v) for v in value] if isinstance(value, list | tuple) else [int(value)]
        role = None
        if "left" in n and "right" not in n:
            role = "left"
        elif "right" in n and "left" not in n:
            role = "right"
        elif "breast" in n:
            role = "breast"
        elif any(k in n for k in ("tumor", "tumour", "lesion", "cancer", "mass")):
            role = "tumor"
        if role is not None:
            roles.setdefault(role, [])
            roles[role].extend(v for v in values if v not in roles[role])
    return {k: tuple(v) for k, v in roles.items()}


def parse_label_roles(text: str) -> dict[str, tuple[int, ...]]:
    """Parse ``--labels`` (``"left=1,right=2"`` or ``"tumor=1"``; ``+`` joins values:
    ``"breast=1+2"``).

    Raises
    ------
    ParameterError
        Bad syntax or an unknown role.
    """
    out: dict[str, tuple[int, ...]] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        role, sep, values = part.partition("=")
        role = role.strip().lower()
        try:
            ints = tuple(int(v) for v in values.split("+"))
        except ValueError:
            ints = ()
        if not sep or role not in ROLES or not ints or any(v <= 0 for v in ints):
            raise ParameterError(
                f"--labels takes ROLE=VALUE pairs separated by commas (roles: {', '.join(ROLES)}; "
                f"values: positive label values, '+' to join), e.g. 'left=1,right=2'; got {text!r}."
            )
        out[role] = ints
    if not out:
        raise ParameterError("--labels names no role; e.g. 'tumor=1' or 'left=1,right=2'.")
    return out


def parse_channels(text: str | Sequence[str]) -> tuple[str, ...]:
    """Parse ``--channels`` (``"pre,sub1"``) into a tuple of channel specs.

    Raises
    ------
    ParameterError
        A spec that is not ``pre``, ``postN`` (N >= 1), ``subN`` (N >= 1) or ``phaseK``.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    specs = tuple(s.strip().lower() for s in items if s.strip())
    bad = [s for s in specs if not CHANNEL_RE.match(s)]
    if bad or not specs:
        raise ParameterError(
            f"--channels takes a comma-separated list of pre, postN (N-th post-contrast phase), "
            f"subN (postN - pre) or phaseK (0-based), e.g. 'pre,sub1'; got {bad or text!r}."
        )
    return specs


def channel_spec_from_names(names: Sequence[str]) -> tuple[str, ...] | None:
    """The channel specs dataset.json's channel names state, or None when any name says none.

    A name that is itself a spec (``pre``, ``post1``, ``sub1``, ``phase2``) counts, and so do
    ``pre-contrast``/``precontrast``/``t1_pre`` (-> ``pre``), ``post_1``/``post-contrast 1``
    (-> ``post1``) and ``sub_1``/``subtraction 1`` (-> ``sub1``).
    """
    out = []
    for raw in names:
        n = re.sub(r"[\s_\-]+", "", str(raw).lower())
        n = n.replace("contrast", "").replace("subtraction", "sub")
        n = n.removeprefix("t1")
        if CHANNEL_RE.match(n):
            out.append(n)
        else:
            return None
    return tuple(out)


def card_fields_from_folder(
    plans: Mapping[str, Any],
    dataset_json: Mapping[str, Any],
    configuration: str,
    *,
    where: str,
) -> dict[str, Any]:
    """The card fields that come from plans.json and dataset.json for one configuration.

    Returns
    -------
    dict
        Keys ``labels``, ``regions``, ``regions_class_order``, ``num_heads``,
        ``num_input_channels``, ``channel_names``, ``configuration``, ``plans_name``,
        ``dataset_name``, ``orientation``, ``transpose_forward``, ``transpose_backward``,
        ``spacing``, ``patch_size``, ``normalization_schemes``, ``use_mask_for_norm``,
        ``intensity_properties``, ``resampling_data``, ``resampling_probabilities``,
        ``architecture``, ``arch_kwargs``, ``licence``.

    Raises
    ------
    WeightsError
        Unsupported configuration (2d, cascade, another reader, network or resampling), or
        inconsistent files.
    """
    cfg = _resolve_configuration(plans, configuration, where)
    patch = list(cfg.get("patch_size", []))
    if len(patch) != 3:
        raise WeightsError(
            f"{where}: configuration {configuration!r} is a {len(patch)}d configuration; breastai "
            "runs 3d nnU-Net configurations only (3d_fullres, 3d_lowres, ResEnc 3d plans): "
            "import a 3d model."
        )
    if cfg.get("previous_stage") or "cascade" in configuration:
        raise WeightsError(
            f"{where}: configuration {configuration!r} is a cascade stage, which needs the "
            "previous stage's prediction; import a single-stage 3d configuration."
        )
    short, kwargs = architecture_of(cfg, where)
    reader = str(plans.get("image_reader_writer", "SimpleITKIO"))
    if reader not in _READERS:
        raise WeightsError(
            f"{where}: plans.json names the image reader {reader!r}; breastai reproduces "
            f"{', '.join(_READERS)} only."
        )
    channel_names = dataset_json.get("channel_names", dataset_json.get("modality"))
    labels = dataset_json.get("labels")
    if not isinstance(channel_names, Mapping) or not isinstance(labels, Mapping) or not labels:
        raise WeightsError(f"{where}: dataset.json lacks 'channel_names' or 'labels'.")
    n_in = len(channel_names)
    has_regions = any(isinstance(v, list | tuple) and len(v) > 1 for v in labels.values())
    regions: list[list[int]] = []
    order: list[int] = []
    if has_regions:
        for k, v in labels.items():
            if k == "ignore":
                continue
            vals = [int(x) for x in v] if isinstance(v, list | tuple) else [int(v)]
            if set(vals) == {0}:
                continue
            regions.append(vals)
        order = [int(x) for x in dataset_json.get("regions_class_order", [])]
        if len(order) != len(regions):
            raise WeightsError(
                f"{where}: region-based dataset.json needs regions_class_order with one entry "
                f"per region ({len(regions)}), found {order}."
            )
        n_heads = len(regions)
    else:
        all_labels = sorted(
            {
                int(x)
                for k, v in labels.items()
                if k != "ignore"
                for x in (v if isinstance(v, list | tuple) else [v])
            }
        )
        n_heads = len(all_labels)
    schemes = [str(s) for s in cfg.get("normalization_schemes", [])]
    masks = [bool(m) for m in cfg.get("use_mask_for_norm", [])]
    if len(schemes) != n_in or len(masks) != n_in:
        raise WeightsError(
            f"{where}: plans.json lists {len(schemes)} normalisation scheme(s) for {n_in} "
            "channel(s) in dataset.json."
        )
    unknown = sorted(set(schemes) - set(NORMALISATION_SCHEMES))
    if unknown:
        raise WeightsError(
            f"{where}: normalisation scheme(s) {', '.join(unknown)} are custom; breastai "
            f"reproduces {', '.join(NORMALISATION_SCHEMES)}."
        )
    props_all = plans.get("foreground_intensity_properties_per_channel", {})
    props = {str(c): dict(props_all.get(str(c), {})) for c in range(n_in)}
    for c, s in enumerate(schemes):
        need = ("mean", "std", "percentile_00_5", "percentile_99_5")
        if s == "CTNormalization" and not all(k in props[str(c)] for k in need):
            raise WeightsError(
                f"{where}: channel {c} uses CTNormalization but plans.json lacks its foreground "
                "intensity properties."
            )
    resampling = {}
    for key in ("resampling_fn_data", "resampling_fn_probabilities"):
        fn = str(cfg.get(key, ""))
        if fn not in _RESAMPLING_FNS:
            raise WeightsError(
                f"{where}: plans.json uses the resampling function {fn!r} ({key}); breastai "
                f"reproduces {', '.join(_RESAMPLING_FNS)} only."
            )
        kw = dict(cfg.get(f"{key}_kwargs", {}))
        resampling[key] = {
            "fn": fn,
            "kwargs": {
                "order": int(kw.get("order", 3 if key == "resampling_fn_data" else 1)),
                "order_z": int(kw.get("order_z", 0)),
                "force_separate_z": kw.get("force_separate_z"),
            },
        }
    tf = [int(x) for x in plans.get("transpose_forward", [0, 1, 2])]
    tb = [int(x) for x in plans.get("transpose_backward", [tf.index(i) for i in range(3)])]
    licence = str(dataset_json.get("licence", dataset_json.get("license", "")))
    return {
        "labels": dict(labels),
        "regions": regions,
        "regions_class_order": order,
        "num_heads": n_heads,
        "num_input_channels": n_in,
        "channel_names": [str(channel_names[k]) for k in sorted(channel_names, key=int)],
        "configuration": configuration,
        "plans_name": str(plans.get("plans_name", "")),
        "dataset_name": str(plans.get("dataset_name", "")),
        "orientation": _READERS[reader],
        "transpose_forward": tf,
        "transpose_backward": tb,
        "spacing": [float(x) for x in cfg["spacing"]],
        "patch_size": [int(x) for x in patch],
        "normalization_schemes": schemes,
        "use_mask_for_norm": masks,
        "intensity_properties": props,
        "resampling_data": resampling["resampling_fn_data"],
        "resampling_probabilities": resampling["resampling_fn_probabilities"],
        "architecture": short,
        "arch_kwargs": kwargs,
        "licence": licence,
    }
