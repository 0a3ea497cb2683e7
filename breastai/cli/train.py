"""Training commands (breastai.training, needs the [train] extra): ``train`` and ``export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from breastai.choices import Task as TrainTask
from breastai.choices import TrainDevice
from breastai.cli.common import (
    ForceEntryOption,
    WeightsFileOption,
    console,
    err_console,
    handle_errors,
)


def _triplet_option(value: str | None, name: str, kind: type) -> tuple[Any, Any, Any] | None:
    from breastai.errors import ParameterError

    if value is None:
        return None
    parts = [p for p in value.replace("x", ",").split(",") if p.strip()]
    try:
        vals = tuple(kind(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 3:
        raise ParameterError(f"{name} takes three numbers Z,Y,X (e.g. 32,96,96); got {value!r}.")
    return (vals[0], vals[1], vals[2])


@handle_errors
def train_cmd(
    task: Annotated[TrainTask, typer.Argument(help="breast (U-Net) or tumor (seed network).")],
    data: Annotated[
        Path,
        typer.Option("--data", help="Dataset folder: one sub-folder per case (docs/training.md)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder for checkpoints.")],
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 100,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (default 1e-3 tumor, 2e-3 breast).")
    ] = None,
    lr_step: Annotated[int, typer.Option(help="Halve the learning rate every N epochs.")] = 50,
    batch_size: Annotated[int, typer.Option(help="Patches per step.")] = 2,
    iters_per_epoch: Annotated[
        int, typer.Option(help="Steps per epoch (0: one per training case).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.pt.")] = False,
    device: Annotated[TrainDevice, typer.Option(help="cpu or cuda.")] = TrainDevice.CPU,
    val_cases: Annotated[int, typer.Option(help="Cases held out for validation.")] = 2,
    spacing: Annotated[
        str | None, typer.Option(help="Grid spacing Z,Y,X mm (default 1,1,1 tumor; 3,3,3 breast).")
    ] = None,
    patch: Annotated[str | None, typer.Option(help="Patch Z,Y,X voxels.")] = None,
    stride: Annotated[
        str | None, typer.Option(help="Window stride Z,Y,X (validation, card).")
    ] = None,
    filters: Annotated[int | None, typer.Option(help="Tumor: encoder width (16).")] = None,
    hidden: Annotated[int | None, typer.Option(help="Tumor: transformer width (768).")] = None,
    mlp: Annotated[int | None, typer.Option(help="Tumor: transformer MLP width (2048).")] = None,
    heads: Annotated[int | None, typer.Option(help="Tumor: attention heads (12).")] = None,
    layers: Annotated[
        int | None, typer.Option(help="Tumor: blocks in each transformer (12).")
    ] = None,
    slots: Annotated[int | None, typer.Option(help="Tumor: phase slots (6).")] = None,
    base: Annotated[int | None, typer.Option(help="Breast: U-Net base width (8).")] = None,
    levels: Annotated[int | None, typer.Option(help="Breast: U-Net levels (4).")] = None,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: default).")] = 0,
) -> None:
    """Train a breast or tumor network on per-case NIfTI folders (needs the \\[train] extra)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from breastai.training.train import TrainProgress, default_options, network_sizes, train

    sizes = {
        "filters": filters,
        "hidden": hidden,
        "mlp": mlp,
        "heads": heads,
        "layers": layers,
        "slots": slots,
        "base": base,
        "levels": levels,
    }
    net = network_sizes(str(task), sizes)
    overrides: dict[str, Any] = {
        "network": net,
        "epochs": epochs,
        "lr_step_epochs": lr_step,
        "batch_size": batch_size,
        "iters_per_epoch": iters_per_epoch,
        "seed": seed,
        "device": str(device),
        "val_cases": val_cases,
        "threads": threads,
    }
    if lr is not None:
        overrides["lr"] = lr
    for key, text, kind in (
        ("spacing_zyx", spacing, float),
        ("patch_zyx", patch, int),
        ("stride_zyx", stride, int),
    ):
        parsed = _triplet_option(text, "--" + key.split("_")[0], kind)
        if parsed is not None:
            overrides[key] = parsed
    options = default_options(str(task), **overrides)

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        bar_id = bar.add_task("preparing", total=None, info="")

        def on_progress(p: TrainProgress) -> None:
            if p.message:
                bar.update(bar_id, description=p.message)
                return
            info = f"loss {p.loss:.4f} lr {p.lr:.2g}"
            if p.best_val_dice is not None:
                info += f" best val Dice {p.best_val_dice:.3f}"
            bar.update(
                bar_id,
                description=f"epoch {p.epoch}/{p.epochs}",
                total=p.steps_per_epoch,
                completed=p.step,
                info=info,
            )
            if p.val_dice is not None:
                bar.console.print(
                    f"epoch {p.epoch}: loss {p.loss:.4f}, validation Dice {p.val_dice:.3f}"
                )

        result = train(data, out, options, resume=resume, progress=on_progress)
    best = "-" if result.best_val_dice is None else f"{result.best_val_dice:.3f}"
    console.print(
        f"Trained {task} for {result.epochs_done} epochs on {len(result.train_cases)} cases "
        f"(validation: {len(result.val_cases)}); best validation Dice {best}.\n"
        f"Checkpoints: {result.best_checkpoint} (best), {result.last_checkpoint} (last). "
        f"Export with: breastai export {result.best_checkpoint} --out MODEL.onnx"
    )


@handle_errors
def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="best.pt / last.pt from `breastai train`.")],
    out: Annotated[Path, typer.Option("--out", help="ONNX file to write.")],
    name: Annotated[
        str | None, typer.Option(help="Model name (default: the ONNX file name).")
    ] = None,
    register: Annotated[
        bool, typer.Option("--register", help="Add the model to the user weights file.")
    ] = False,
    force: ForceEntryOption = False,
    weights_file: WeightsFileOption = None,
) -> None:
    """Export a trained checkpoint to ONNX (checked against torch in ONNX Runtime)."""
    from breastai.training.export import export_checkpoint

    res = export_checkpoint(
        checkpoint, out, name=name, register=register, force=force, weights_file=weights_file
    )
    console.print(
        f"Wrote {res.onnx_path} (model {res.name!r}, sha256 {res.sha256}; "
        f"max |torch - onnxruntime| = {res.parity:.2g})."
    )
    if res.weights_file is not None:
        console.print(f"Registered {res.name!r} in {res.weights_file}.")
