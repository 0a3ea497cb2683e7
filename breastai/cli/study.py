"""Study commands: ``demo`` (breastai.phantom), ``info`` (breastai.io), ``tstage``
(breastai.report) and ``evaluate`` (breastai.evaluate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from breastai import RESEARCH_NOTICE
from breastai.cli.common import (
    TimesOption,
    console,
    err_console,
    handle_errors,
    parse_times,
    print_json,
)
from breastai.errors import BreastAIError
from breastai.phantom.presets import Layout, Orientation, Preset  # (no numpy)

# === section: demo (breastai.phantom) ===


@handle_errors
def demo(
    out_dir: Annotated[
        Path, typer.Argument(help="New (or empty) folder for the study and its ground truth.")
    ],
    layout: Annotated[
        Layout, typer.Option(help="Vendor-like DICOM layout of the DCE series.")
    ] = Layout.GE,
    preset: Annotated[
        Preset, typer.Option(help="Phantom preset (a hard case of phantom-spec.md §8).")
    ] = Preset.DEFAULT,
    seed: Annotated[int, typer.Option(min=0, help="Random seed (same seed, same bytes).")] = 0,
    orientation: Annotated[
        Orientation, typer.Option(help="Acquisition orientation.")
    ] = Orientation.AXIAL,
    decoys: Annotated[
        bool,
        typer.Option(
            "--decoys/--no-decoys",
            help="Also write decoy series (subtraction, MIP, localizer, T2).",
        ),
    ] = True,
) -> None:
    """Write a synthetic breast DCE-MRI study (DICOM) plus its ground truth (NIfTI + JSON)."""
    from breastai.phantom import make_demo_study

    path = make_demo_study(
        out_dir,
        layout=layout.value,
        preset=preset.value,
        seed=seed,
        orientation=orientation.value,
        decoys=decoys,
    )
    console.print(f"wrote {path}/dicom (study) and {path}/truth (ground truth)", highlight=False)
    console.print(RESEARCH_NOTICE, highlight=False)


# === section: info (breastai.io) ===


def _series_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="Series", show_lines=False)
    for name in ("#", "Description", "Files", "Frames", "Role"):
        table.add_column(name, overflow="fold")
    for row in rows:
        role = str(row.get("role") or "")
        style = "dim" if role.startswith("excluded") else ""
        style = "green" if role.startswith("DCE") else style
        table.add_row(
            "" if row.get("series_number") is None else str(row["series_number"]),
            str(row.get("description") or ""),
            str(row.get("n_files", "")),
            str(row.get("n_frames", "")),
            role,
            style=style,
        )
    return table


@handle_errors
def info_command(
    study_dir: Annotated[
        Path,
        typer.Argument(help="DICOM study folder, folder of per-phase NIfTI files, or a 4-D NIfTI."),
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (schema: docs/info-json.md).")
    ] = False,
    dce_series: Annotated[
        list[str] | None,
        typer.Option(
            "--dce-series",
            help="SeriesInstanceUID (or series number) of the DCE acquisition; "
            "repeat or comma-separate.",
        ),
    ] = None,
    study: Annotated[
        str | None,
        typer.Option(
            "--study", help="StudyInstanceUID to read when the folder holds several studies."
        ),
    ] = None,
    times: TimesOption = None,
) -> None:
    """Show every series of a study, the DCE phases found and how they were found."""
    import contextlib

    from rich.table import Table

    from breastai.errors import AmbiguousStudyError as _Ambiguous
    from breastai.errors import NoDCESeriesError
    from breastai.io import index_study, load_study, study_info

    phase_times = parse_times(times)
    index = index_study(study_dir)  # one header pass, also for the series table after an error
    try:
        result = load_study(
            study_dir,
            dce_series=tuple(dce_series or ()),
            study_uid=study,
            times=phase_times,
            index=index,
        )
    except (_Ambiguous, NoDCESeriesError):
        if not json_output and study_dir.is_dir():
            from breastai.io.dicom import list_series

            with contextlib.suppress(BreastAIError):
                console.print(_series_table(list_series(study_dir, study_uid=study, index=index)))
        raise
    info = study_info(result)
    if json_output:
        print_json(info)
        return
    if info["series"]:
        console.print(_series_table(info["series"]))
    table = Table(title=f"DCE phases ({len(info['phases'])})")
    columns = (
        "Phase", "Time (s)", "Duration (s)", "Mid after injection (s)", "Size (x,y,z)",
        "Spacing (mm)", "Origin (LPS mm)", "Series", "Label",
    )  # fmt: skip
    for name in columns:
        table.add_column(name, overflow="fold")
    for ph in info["phases"]:
        table.add_row(
            str(ph["index"]) + (" (ref)" if ph["index"] == info["reference_phase"] else ""),
            "-" if ph["time_s"] is None else f"{ph['time_s']:.1f}",
            "-" if ph.get("duration_s") is None else f"{ph['duration_s']:.1f}",
            "-"
            if ph.get("mid_time_since_injection_s") is None
            else f"{ph['mid_time_since_injection_s']:.1f}",
            "x".join(str(v) for v in ph["size"]),
            ", ".join(f"{v:.3g}" for v in ph["spacing"]),
            ", ".join(f"{v:.1f}" for v in ph["origin"]),
            ("..." + str(ph["series_uid"])[-10:]) if ph["series_uid"] else "-",
            str(ph["label"] or ""),
        )
    console.print(table)
    decisions = info["decisions"]
    console.print(
        f"grouping key: {decisions['grouping_key']}; clock: {decisions['clock']}; "
        f"times relative to: {decisions['time_reference']}",
        highlight=False,
    )
    if info["phases"]:
        first = info["phases"][0]
        console.print(
            f"duration from: {first.get('duration_source') or 'unknown'}; injection time: "
            f"{first.get('injection_reference') or 'unknown'}",
            highlight=False,
        )
    for warning in decisions["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    console.print(RESEARCH_NOTICE, style="dim")


# === section: tstage (breastai.report) ===


def _tstage_table(report: Any) -> Any:
    from rich.table import Table

    table = Table(
        title=f"T category (size only, AJCC 8th): {report.t_category}", title_justify="left"
    )
    for col in ("#", "side", "3-D mm", "2-D mm [slice]", "mL"):
        table.add_column(col, justify="left" if col in ("#", "side") else "right")
    has_kin = any(les.kinetics is not None for les in report.lesions)
    if has_kin:
        for col in ("curve", "init %", "FTV mL"):
            table.add_column(col, justify="right")
    table.add_column("flags")
    for les in report.lesions:
        flags = []
        if les.touches_image_border:
            flags.append("touches border")
        if les.breast_contact:
            flags.append("reaches " + "+".join(les.breast_contact) + ": possible T4, review")
        row = [
            str(les.index),
            les.laterality,
            f"{les.longest_diameter_mm:.1f}",
            f"{les.longest_in_plane_diameter_mm:.1f} [{les.in_plane_slice}]",
            f"{les.volume_ml:.2f}",
        ]
        if has_kin:
            k = les.kinetics
            init = k.initial_enhancement_pct if k is not None else None
            row += [
                "" if k is None else k.curve_type,
                "" if init is None else f"{init:.0f}",
                "" if k is None else f"{k.functional_tumor_volume_ml:.2f}",
            ]
        row.append("; ".join(flags))
        table.add_row(*row)
    return table


@handle_errors
def tstage(
    mask: Annotated[Path, typer.Argument(help="Tumor mask: NIfTI/NRRD/MHA or DICOM-SEG.")],
    study: Annotated[
        Path | None,
        typer.Option("--study", help="DCE study (DICOM or NIfTI folder) for per-lesion kinetics."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json on stdout.")] = False,
    min_volume_mm3: Annotated[
        float | None,
        typer.Option(
            "--min-volume-mm3", help="Smallest lesion volume kept (default 10 mm³).", min=0
        ),
    ] = None,
    label: Annotated[
        int | None, typer.Option("--label", help="Lesion label to use in a label-map mask.")
    ] = None,
    breast_mask: Annotated[
        Path | None,
        typer.Option(
            "--breast-mask", help="Breast mask: laterality midline, skin/chest-wall flag."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write report.json and report.md into this folder.")
    ] = None,
    sr: Annotated[
        bool,
        typer.Option(
            "--sr", help="Also write report-sr.dcm (DICOM SR TID 1500); needs --out, DICOM --study."
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace existing report files.")] = False,
) -> None:
    """Measure the lesions of a tumor mask: longest 3-D diameter, AJCC T category (size only)."""
    from breastai.report import measure_mask_file

    result, written = measure_mask_file(
        mask,
        study=study,
        breast_mask=breast_mask,
        min_volume_mm3=min_volume_mm3,
        label=label,
        out_dir=out,
        sr=sr,
        force=force,
    )
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    if as_json:
        print_json(result.to_dict())
        return
    if result.lesions:
        console.print(_tstage_table(result))
    console.print(result.summary, highlight=False)
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    console.print(f"[dim]{RESEARCH_NOTICE}[/dim]")


# === section: evaluate (breastai.evaluate) ===


@handle_errors
def evaluate(
    pred: Annotated[Path, typer.Argument(help="Predicted mask file, or a folder of them.")],
    gt: Annotated[
        Path, typer.Argument(help="Ground-truth mask file, or a folder (paired by name).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="Write one CSV row per case to this file.")
    ] = None,
    label: Annotated[
        int | None, typer.Option("--label", help="Compare only this label (default: any non-zero).")
    ] = None,
    pred_label: Annotated[
        int | None,
        typer.Option("--pred-label", help="Label in PRED (a breastai DICOM-SEG: tumor = 2)."),
    ] = None,
    gt_label: Annotated[int | None, typer.Option("--gt-label", help="Label in GT.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing CSV.")] = False,
) -> None:
    """Dice, sensitivity, precision, Hausdorff/HD95 (mm) and lesion detection vs a ground truth.

    Distances are between surface-voxel centres with the voxel spacing; HD95 is the 95th
    percentile of the surface distances of both directions pooled. A ground-truth lesion
    (26-connected) is detected when any predicted voxel overlaps it.
    """
    from rich.table import Table

    from breastai import evaluate as ev

    rows, notes = ev.evaluate_paths(pred, gt, label=label, pred_label=pred_label, gt_label=gt_label)
    for note in notes + [w for r in rows for w in r.warnings]:
        err_console.print(f"[yellow]warning:[/yellow] {note}", highlight=False, soft_wrap=True)
    if csv_out is not None:
        ev.write_csv(rows, csv_out, force=force)
    if as_json:
        print_json({"notice": RESEARCH_NOTICE, "cases": [r.to_dict() for r in rows]})
        return
    table = Table(title="Segmentation metrics", title_justify="left")
    cols = ("dice", "sensitivity", "precision", "hausdorff_mm", "hd95_mm")
    for col in ("case", *cols, "TP/FN/FP"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for r in rows:
        vals = [getattr(r, c) for c in cols]
        table.add_row(r.case, *(f"{v:.3f}" for v in vals), f"{r.tp}/{r.fn}/{r.fp}")
    if len(rows) > 1:
        means = [f"{ev.mean_finite(rows, c):.3f}" for c in cols]
        tot = [sum(getattr(r, k) for r in rows) for k in ("tp", "fn", "fp")]
        table.add_row("[bold]mean (finite)[/bold]", *means, "/".join(map(str, tot)))
    console.print(table)
    if csv_out is not None:
        console.print(f"wrote {csv_out}", highlight=False)
    console.print(f"[dim]{RESEARCH_NOTICE}[/dim]")
