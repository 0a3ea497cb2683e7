"""Weights commands (breastai.weights): ``download-weights``, ``weights list``, ``weights
verify``, ``weights export-bundle``, and ``import-weights`` (breastai.training: the authors'
seed checkpoint, or an nnU-Net v2 model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breastai import RESEARCH_NOTICE
from breastai.cli.common import (
    ForceEntryOption,
    JsonOption,
    WeightsFileOption,
    console,
    err_console,
    handle_errors,
    print_json,
)

_STATE_STYLE = {
    "verified": "green",
    "unverified": "yellow",
    "missing": "dim",
    "mismatch": "red",
    "placeholder": "yellow",
}


@handle_errors
def download_weights(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Model names from `breastai weights list`.", show_default=False),
    ] = None,
    all_models: Annotated[
        bool, typer.Option("--all", help="Every downloadable model in the registry.")
    ] = False,
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Install from a folder or a bundle (.tar, .tar.gz, .zip) instead of the network.",
            exists=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Download or install again even if present.")
    ] = False,
    weights_file: WeightsFileOption = None,
) -> None:
    """Download model weights (pinned revision, sha256 checked), or install them offline (--from).

    Downloads honour HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE, HF_TOKEN and the proxy variables.
    """
    from breastai import weights
    from breastai.errors import ParameterError

    if source is not None:
        if all_models and names:
            raise ParameterError("pass model names or --all, not both.")
        wanted = list(dict.fromkeys(names or []))
        done = weights.install_from(source, wanted, weights_file=weights_file, force=force)
        for rm in done:
            console.print(
                f"installed {rm.card.name} ({rm.card.sha256[:12]}) -> {rm.path}",
                markup=False,
                highlight=False,
            )
        return
    wanted = weights.models_to_download(
        names or (), all_models=all_models, weights_file=weights_file
    )
    if not wanted:  # --all, and the registry lists nothing to download
        console.print(
            "nothing to download: the registry lists no downloadable model "
            "(the bundled demo models are already installed)."
        )
        return
    for name in wanted:
        rm = weights.download_model(name, weights_file=weights_file, force=force)
        line = f"{rm.card.name}: ok ({rm.card.sha256[:12]}) -> {rm.path}"
        console.print(line, markup=False, highlight=False)


@handle_errors
def weights_list(
    as_json: JsonOption = False,
    weights_file: WeightsFileOption = None,
) -> None:
    """List known models, where their files are and whether they are verified (no hashing)."""
    from rich.markup import escape
    from rich.table import Table

    from breastai import weights

    statuses = weights.model_status(weights_file)
    if as_json:
        print_json(
            {
                "user_weights_file": str(weights.user_weights_file(weights_file)),
                "models": [s.to_dict() for s in statuses],
            }
        )
        return
    table = Table(title="breastai models", title_justify="left")
    for col in ("name", "task", "origin", "state", "sha256", "path"):
        table.add_column(col, overflow="fold")
    for s in statuses:
        name = s.card.name + (" (demo)" if s.card.demo else "") + (" *" if s.default else "")
        style = _STATE_STYLE.get(s.state, "")
        table.add_row(
            name,
            s.card.task,
            s.card.origin,
            f"[{style}]{s.state}[/{style}]" if style else s.state,
            s.card.sha256[:12],
            escape(str(s.path)),
        )
    console.print(table)
    console.print(
        f"user weights file: {escape(str(weights.user_weights_file(weights_file)))}; "
        "* = default in its \\[defaults] table. " + RESEARCH_NOTICE,
        highlight=False,
    )


@handle_errors
def weights_verify(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models to verify (default: all present).")
    ] = None,
    as_json: JsonOption = False,
    weights_file: WeightsFileOption = None,
) -> None:
    """Hash every model file in full; a mismatching downloaded file is removed (exit 1)."""
    from breastai import weights

    statuses = weights.verify_models(names or (), weights_file=weights_file)
    if as_json:
        print_json([s.to_dict() for s in statuses])
    else:
        for s in statuses:
            style = _STATE_STYLE.get(s.state, "")
            line = f"{s.card.name}: [{style}]{s.state}[/{style}]" if style else s.card.name
            console.print(line + (f" - {s.message}" if s.message else ""), highlight=False)
    failed = [s for s in statuses if s.fails_verify(named=bool(names))]
    if failed:
        for s in sorted(failed, key=lambda s: s.state == "missing"):  # missing ones last
            err_console.print(
                f"[red]error:[/red] {s.message or s.card.name + ': ' + s.state}",
                highlight=False,
                soft_wrap=True,
            )
        raise typer.Exit(code=1)


@handle_errors
def weights_export_bundle(
    out: Annotated[
        Path, typer.Argument(help="Bundle to write: .tar, .tar.gz or .zip.", dir_okay=False)
    ],
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Models to include (default: every downloaded or user model)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle.")] = False,
    weights_file: WeightsFileOption = None,
) -> None:
    """Write an offline bundle (model files + weights.toml) for `download-weights --from`."""
    from breastai import weights

    path = weights.export_bundle(out, names or (), weights_file=weights_file, force=force)
    console.print(f"wrote {path}", markup=False, highlight=False)


# === section: import-weights (breastai.training; nnU-Net: breastai.training.nnunet_import) ===


@handle_errors
def import_weights_cmd(
    seed_checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--seed-checkpoint",
            help="The authors' best_model.pth ({'model': state_dict}), a state dict, or .npz.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Also keep the ONNX file(s) here (registered copy: models/NAME/)."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Model name in the weights file (seed default: seed-tumor)."),
    ] = None,
    heads: Annotated[
        int, typer.Option(help="Attention heads (12 in the authors' configuration).")
    ] = 12,
    force: ForceEntryOption = False,
    weights_file: WeightsFileOption = None,
    # --- nnU-Net import (issue 12) ---
    nnunet: Annotated[
        Path | None,
        typer.Option(
            "--nnunet",
            help="An nnU-Net v2 trained-model folder (plans.json, dataset.json, fold_K/) or the "
            "zip of nnUNetv2_export_model_to_zip.",
        ),
    ] = None,
    task: Annotated[str | None, typer.Option("--task", help="nnU-Net: breast | tumor.")] = None,
    channels: Annotated[
        str | None,
        typer.Option(
            "--channels",
            help="nnU-Net: study image per input channel: pre, postN, subN (postN - pre), phaseK; "
            "e.g. 'pre' or 'pre,sub1' (default: from dataset.json's channel names).",
        ),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels",
            help="nnU-Net: which label values are breast/left/right/tumor, e.g. 'left=1,right=2' "
            "(default: from dataset.json's label names).",
        ),
    ] = None,
    folds: Annotated[
        str | None,
        typer.Option("--folds", help="nnU-Net: folds to use, e.g. '0,1,2,3,4' or 'all'."),
    ] = None,
    checkpoint: Annotated[
        str, typer.Option("--checkpoint", help="nnU-Net: final | best.")
    ] = "final",
) -> None:
    """Import weights: the authors' tumor checkpoint (--seed-checkpoint) or an nnU-Net v2 model
    (--nnunet); check, export ONNX, register (needs \\[train]; nnU-Net also \\[nnunet])."""
    from breastai.errors import ParameterError

    if (seed_checkpoint is None) == (nnunet is None):
        raise ParameterError("Give exactly one of --seed-checkpoint FILE or --nnunet DIR_OR_ZIP.")
    if nnunet is not None:
        _import_nnunet(nnunet, name, task, channels, labels, folds, checkpoint, out, force,
                       weights_file)  # fmt: skip
        return
    from breastai.training.seed_import import import_seed_checkpoint

    assert seed_checkpoint is not None
    with err_console.status("Loading, exporting and checking the checkpoint ..."):
        res = import_seed_checkpoint(
            seed_checkpoint,
            out=out,
            name=name or "seed-tumor",
            heads=heads,
            force=force,
            weights_file=weights_file,
        )
    c = res.config
    console.print(
        f"Imported {seed_checkpoint} as {res.name!r}: filters {c.filters}, hidden {c.hidden}, "
        f"MLP {c.mlp}, heads {c.heads}, layers {c.spatial_layers}+{c.temporal_layers}.\n"
        f"ONNX: {res.onnx_path} (sha256 {res.sha256}; max |torch - onnxruntime| = "
        f"{res.parity:.2g}).\nRegistered in {res.weights_file}; use it with "
        f"`breastai segment STUDY --weights {res.name}`."
    )


def _import_nnunet(
    source: Path,
    name: str | None,
    task: str | None,
    channels: str | None,
    labels: str | None,
    folds: str | None,
    checkpoint: str,
    out: Path | None,
    force: bool,
    weights_file: Path | None,
) -> None:
    from breastai.errors import ParameterError

    if not name or not task:
        raise ParameterError("--nnunet needs --name NAME and --task breast|tumor.")
    from breastai.training.nnunet_import import import_nnunet

    fold_list = [f.strip() for f in folds.split(",") if f.strip()] if folds else None
    with err_console.status(
        "Loading the checkpoints, exporting and checking one ONNX per fold ..."
    ):
        res = import_nnunet(
            source,
            name=name,
            task=task,
            channels=channels,
            labels=labels,
            folds=fold_list,
            checkpoint=checkpoint,
            out=out,
            force=force,
            weights_file=weights_file,
        )
    card = res.card
    parity = max(float(f["parity"]) for f in card.folds)
    roles = ", ".join(f"{k}={'+'.join(map(str, v))}" for k, v in card.roles.items())
    console.print(
        f"Imported {source} as {res.name!r}: nnU-Net {card.architecture} {card.configuration}, "
        f"{len(card.folds)} fold(s), channels {','.join(card.channels)}, labels {roles}, "
        f"mirroring {'off' if card.mirroring_axes is None else list(card.mirroring_axes)}.\n"
        f"ONNX + card: {res.folder} (max |torch - onnxruntime| = {parity:.2g}).\n"
        f"Registered in {res.weights_file}; run it with `breastai predict --model {res.name} "
        "STUDY -o OUT`.",
        highlight=False,
    )
    if card.licence:
        console.print(f"Licence (dataset.json): {card.licence}", highlight=False)
