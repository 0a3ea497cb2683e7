"""Segmentation commands: ``segment`` (breastai.pipeline and breastai.cohort; one study from a
PACS with ``--from-pacs``, breastai.pacs) and ``predict`` (an imported nnU-Net model,
breastai.nnunet)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from breastai import RESEARCH_NOTICE
from breastai.choices import Blend as BlendChoice
from breastai.choices import Precision as PrecisionChoice
from breastai.choices import Runtime as RuntimeChoice
from breastai.cli.common import (
    DeviceOption,
    SendPreviewOption,
    TimesOption,
    WeightsFileOption,
    console,
    err_console,
    err_line,
    handle_errors,
    parse_times,
    print_json,
)

# === section: segment (breastai.pipeline) ===

_FROM_PACS_HELP = (
    "Fetch the study over DICOMweb from this root URL (e.g. http://localhost:8042/dicom-web); "
    "with --study. Credentials: BREASTAI_DICOMWEB_USER + BREASTAI_DICOMWEB_PASSWORD or "
    "BREASTAI_DICOMWEB_TOKEN, or the config file (docs/pacs.md); never on the command line."
)
_STUDY_HELP = (
    "StudyInstanceUID: the study to read when a folder holds several, or to fetch with "
    "--from-pacs."
)
_SEND_TO_HELP = (
    "Store the DICOM-SEG and the SR into the same study on this DICOMweb server (STOW-RS)."
)


def _segment_table(rows: list[Any]) -> Any:
    from rich.table import Table

    noun = "study" if len(rows) == 1 else "studies"
    table = Table(title=f"breastai segment: {len(rows)} {noun}")
    cols = ("Study", "Status", "Lesions", "T", "Longest (mm)", "Tumor (ml)", "Time (s)", "Output")
    for col in cols:
        table.add_column(col, overflow="fold")
    style = {"ok": "green", "skipped": "cyan", "failed": "red"}
    for r in rows:
        done = r.status != "failed"
        try:
            shown = str(Path(r.study).relative_to(Path.cwd()))
        except ValueError:
            shown = r.study
        table.add_row(
            shown,
            f"[{style[r.status]}]{r.status}[/{style[r.status]}]",
            str(r.lesion_count) if done and r.lesion_count is not None else "",
            str(r.t_category) if done and r.t_category is not None else "",
            "" if r.longest_diameter_mm is None else f"{r.longest_diameter_mm:.1f}",
            "" if r.tumor_volume_ml is None else f"{r.tumor_volume_ml:.2f}",
            "" if r.seconds is None else f"{r.seconds:.1f}",
            r.folder if done else "-",
        )
    return table


# --- segment: cohort options (breastai.cohort): --studies-from, --ray, --workers, --threads ---


@handle_errors
def segment(
    study_dirs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Study folders (DICOM or per-phase NIfTI) or 4-D NIfTI files.", show_default=False
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "-o", "--out", help="Output folder; one subfolder per study, cohort.csv/.json."
        ),
    ] = Path("breastai-output"),
    studies_from: Annotated[
        Path | None,
        typer.Option(
            "--studies-from",
            help="File listing studies: one path per line, or a CSV with a 'path' column.",
            dir_okay=False,
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Run on a Ray cluster: 'local' (a private one for this run) or HOST:PORT of a "
            "running one. Needs the \\[cluster] extra.",
            metavar="ADDRESS|local",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="With --ray: the most workers (default: one per GPU, else one per --threads "
            "CPUs).",
        ),
    ] = None,
    threads: Annotated[
        int,
        typer.Option("--threads", min=0, help="CPU threads per worker (0: runtime default)."),
    ] = 0,
    device: DeviceOption = "auto",
    runtime: Annotated[
        RuntimeChoice,
        typer.Option(
            help="auto: ONNX Runtime on CUDA; on the CPU OpenVINO when installed (faster), else "
            "ONNX Runtime."
        ),
    ] = RuntimeChoice.AUTO,
    precision: Annotated[
        PrecisionChoice,
        typer.Option(
            help="bf16: ~3x faster on CPUs with native bfloat16 (OpenVINO); probabilities "
            "differ slightly from fp32."
        ),
    ] = PrecisionChoice.FP32,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights", help="Tumor model name or ONNX path (an imported nnU-Net model too)."
        ),
    ] = None,
    breast_weights: Annotated[
        str | None,
        typer.Option(
            "--breast-weights",
            help="Breast model name or ONNX path (an imported nnU-Net model too).",
        ),
    ] = None,
    # --- nnU-Net models (issue 12) ---
    no_tta: Annotated[
        bool,
        typer.Option(
            "--no-tta",
            help="nnU-Net models: no mirroring test-time augmentation (about 8x faster).",
        ),
    ] = False,
    blend: Annotated[
        BlendChoice | None,
        typer.Option("--blend", help="Override the model cards' window blending."),
    ] = None,
    no_breast_mask: Annotated[
        bool,
        typer.Option("--no-breast-mask", help="Do not restrict the tumor mask to the breast mask."),
    ] = False,
    min_enhancement: Annotated[
        float,
        typer.Option(
            "--min-enhancement",
            min=0,
            metavar="PCT",
            help="Remove tumor components whose mean signal rises less than PCT % over the "
            "pre-contrast phase in every post-contrast phase (0: keep them).",
        ),
    ] = 10.0,
    save_probabilities: Annotated[
        bool,
        typer.Option("--save-probabilities", help="Also write tumor_probability.nii.gz."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Redo studies whose outputs are complete, and replace folders made otherwise.",
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress and no table; errors only.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the per-study rows as one JSON document.")
    ] = False,
    weights_file: WeightsFileOption = None,
    dce_series: Annotated[
        list[str] | None,
        typer.Option(
            "--dce-series",
            help="SeriesInstanceUID (or number) of the DCE acquisition; repeat or comma-separate.",
        ),
    ] = None,
    # --- PACS (section: pacs, below) ---
    from_pacs: Annotated[str | None, typer.Option("--from-pacs", help=_FROM_PACS_HELP)] = None,
    pacs_study: Annotated[str | None, typer.Option("--study", help=_STUDY_HELP)] = None,
    send_to: Annotated[str | None, typer.Option("--send-to", help=_SEND_TO_HELP)] = None,
    send_preview: SendPreviewOption = False,
    times: TimesOption = None,
) -> None:
    """Segment breast and tumor, write NIfTI masks, DICOM-SEG, report, preview and manifest.

    Each study goes to OUT/<folder name>-<hash of its path>/; OUT/cohort.csv and cohort.json
    list every study. A rerun skips studies whose outputs are complete (docs/cohorts.md).
    With --from-pacs URL --study UID the study is fetched over DICOMweb (docs/pacs.md).
    """
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from breastai.cohort import read_study_list, run_cohort
    from breastai.pipeline import Settings

    studies = list(study_dirs or [])
    if studies_from is not None:
        studies += read_study_list(studies_from)
    series = tuple(s.strip() for item in (dce_series or ()) for s in item.split(",") if s.strip())
    studies = _check_pacs_options(studies, from_pacs, pacs_study, send_to, send_preview)
    phase_times = parse_times(times)
    if from_pacs is not None and ray_address is not None:
        from breastai.errors import ParameterError

        raise ParameterError("--ray runs study folders; --from-pacs fetches one study: not both.")
    settings = Settings(
        device=device,
        runtime=runtime.value,
        precision=precision.value,
        weights=weights,
        breast_weights=breast_weights,
        weights_file=weights_file,
        blend=blend.value if blend is not None else None,
        use_breast_mask=not no_breast_mask,
        min_enhancement_pct=min_enhancement,
        save_probabilities=save_probabilities,
        force=force,
        threads=threads,
        dce_series=series,
        study_uid=None if from_pacs is not None else pacs_study,
        times=None if phase_times is None else tuple(phase_times),
        tta=not no_tta,
    )
    show = not quiet and not json_output
    if from_pacs is not None and pacs_study is not None:
        _segment_from_pacs(from_pacs, pacs_study, out, settings, send_to, send_preview,
                           show=show, json_output=json_output)  # fmt: skip
        return
    n = len(studies)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not show,
    )
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    with progress:
        task = progress.add_task("starting", total=n)

        def on_start(info: dict[str, Any]) -> None:
            k = len(info["workers"])
            progress.update(task, description=f"{k} worker{'s' if k != 1 else ''}")

        def on_row(row: Any) -> None:
            counts[row.status] += 1
            progress.update(
                task,
                advance=1,
                description=f"done {counts['ok'] + counts['skipped']}, "
                f"failed {counts['failed']}",
            )
            if row.status == "failed":
                err_line("error:", "red", f"{row.study}: {row.error or ''}")
            elif show:
                if row.attempts > 1:
                    progress.console.print(
                        f"[yellow]note:[/yellow] {escape(row.study)}: its worker died; "
                        f"done by another on attempt {row.attempts}",
                        highlight=False,
                    )
                for note in row.notices:
                    progress.console.print(f"[yellow]note:[/yellow] {note}", highlight=False)

        try:
            result = run_cohort(
                studies,
                out_dir=out,
                settings=settings,
                ray_address=ray_address,
                workers=workers,
                on_row=on_row,
                on_start=on_start,
            )
        except KeyboardInterrupt:
            err_console.print(
                f"[red]interrupted[/red]: {sum(counts.values())} of {n} studies listed in "
                f"{out / 'cohort.csv'}; run the same command again to resume."
            )
            raise typer.Exit(code=130) from None
    rows = result.rows
    if json_output:
        print_json({"notice": RESEARCH_NOTICE, "results": [r.to_dict() for r in rows]})
    elif show and (len(rows) > 1 or rows[0].ok):
        console.print(_segment_table(rows))
        if any(r.demo_weights for r in rows if r.ok):
            console.print(
                "[yellow]Demo weights (trained on synthetic phantoms): "
                "not for real patients.[/yellow]"
            )
        console.print(f"Table: {result.table_paths[0]}", style="dim")
        console.print(RESEARCH_NOTICE, style="dim")
    if any(not r.ok for r in rows):
        raise typer.Exit(code=1)


# --- segment --from-pacs (breastai.pacs) ---


def _check_pacs_options(
    study_dirs: list[Path],
    from_pacs: str | None,
    study: str | None,
    send_to: str | None,
    send_preview: bool,
) -> list[Path]:
    from breastai.errors import ParameterError

    if from_pacs is None:
        if send_to is not None or send_preview:
            raise ParameterError(
                "--send-to and --send-preview go with --from-pacs URL; folder studies are not "
                "sent to a PACS."
            )
        if not study_dirs:
            raise ParameterError(
                "No study given: pass STUDY_DIR [STUDY_DIR ...], --studies-from FILE or "
                "--from-pacs URL --study UID."
            )
        return study_dirs
    if study_dirs:
        raise ParameterError(
            "Pass study folders (or --studies-from) or --from-pacs URL --study UID, not both."
        )
    if study is None:
        raise ParameterError("--from-pacs needs --study STUDY_UID (the StudyInstanceUID).")
    if send_preview and send_to is None:
        raise ParameterError("--send-preview needs --send-to URL.")
    return []


def _sent_lines(sent: list[Any]) -> list[str]:
    return [
        f"stored {s.kind} {s.file} as series {s.series_uid} (references series "
        f"{', '.join(s.referenced_series) or '-'})"
        for s in sent
    ]


def _segment_from_pacs(
    url: str,
    study_uid: str,
    out: Path,
    settings: Any,
    send_to: str | None,
    send_preview: bool,
    *,
    show: bool,
    json_output: bool,
) -> None:
    from breastai.pacs import connect, connect_target, segment_from_pacs

    source = connect(url)
    target = None if send_to is None else connect_target(source, send_to)
    with err_console.status("fetching the study over DICOMweb ...") as status:

        def on_progress(stage: str, fraction: float) -> None:
            if show:
                status.update(f"{study_uid[-16:]}: {stage}")

        if not show:
            status.stop()
        res = segment_from_pacs(
            source,
            study_uid,
            out_dir=out,
            settings=settings,
            send_to=target,
            preview=send_preview,
            progress=on_progress,
        )
    result = res.segment
    if json_output:
        print_json(
            {"notice": RESEARCH_NOTICE, "results": [result.to_dict()], "pacs": res.to_dict()}
        )
        return
    if not show:
        return
    for note in result.notices:
        err_console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    from breastai.cohort import CohortRow

    folder = result.out_dir.name if result.out_dir else "-"
    seconds = result.timings_s.get("total")
    row = CohortRow.from_result(result, study=study_uid, folder=folder, seconds=seconds)
    console.print(_segment_table([row]))
    t = res.timings_s
    console.print(
        f"fetched {res.pulled.n_instances_full} images of the DCE series "
        f"({len(res.pulled.dce_series)} series) and the headers of "
        f"{res.pulled.n_instances_headers} others from {source.url} in {t['pull']:.1f} s",
        highlight=False,
    )
    for line in _sent_lines(res.sent):
        console.print(line, highlight=False)
    if result.demo_weights:
        console.print(
            "[yellow]Demo weights (trained on synthetic phantoms): not for real patients.[/yellow]"
        )
    console.print(RESEARCH_NOTICE, style="dim")


# === section: predict (breastai.nnunet; issue 12) ===


@handle_errors
def predict_cmd(
    study_dirs: Annotated[
        list[Path],
        typer.Argument(help="Study folders (DICOM or per-phase NIfTI) or 4-D NIfTI files."),
    ],
    model: Annotated[
        str,
        typer.Option("--model", help="An nnU-Net model imported with import-weights --nnunet."),
    ],
    out: Annotated[
        Path, typer.Option("-o", "--out", help="Output folder; one subfolder per study.")
    ],
    save_probabilities: Annotated[
        bool,
        typer.Option(
            "--save-probabilities", help="Also write NAME_probabilities.npz (classes, z, y, x)."
        ),
    ] = False,
    no_tta: Annotated[
        bool,
        typer.Option("--no-tta", help="No mirroring test-time augmentation (about 8x faster)."),
    ] = False,
    device: DeviceOption = "auto",
    runtime: Annotated[
        RuntimeChoice,
        typer.Option(help="auto: ONNX Runtime on CUDA; on the CPU OpenVINO when installed."),
    ] = RuntimeChoice.AUTO,
    precision: Annotated[
        PrecisionChoice,
        typer.Option(help="bf16: OpenVINO on CPUs with native bfloat16 (outputs differ slightly)."),
    ] = PrecisionChoice.FP32,
    force: Annotated[bool, typer.Option("--force", help="Replace existing output files.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress; errors only.")] = False,
    weights_file: WeightsFileOption = None,
) -> None:
    """Run an imported nnU-Net model as nnU-Net does: OUT/<study>/NAME.nii.gz (+ probabilities)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from breastai.nnunet import NnunetModel
    from breastai.nnunet.run import predict_studies

    with err_console.status(f"Loading {model} ..."):
        net = NnunetModel.load(
            model,
            device=device,
            runtime=runtime.value,
            precision=precision.value,
            weights_file=weights_file,
        )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("windows"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=quiet,
    )
    with progress:
        task_id = progress.add_task("", total=None)

        def on_progress(i: int, done: int, total: int) -> None:
            progress.update(
                task_id, completed=done, total=total, description=f"{study_dirs[i].name}"
            )

        def on_result(i: int, res: Any) -> None:
            if not res.ok:
                err_console.print(
                    f"[red]error:[/red] {res.name}: {res.error}", highlight=False, soft_wrap=True
                )
            elif not quiet:
                counts = ", ".join(f"{k}: {v}" for k, v in res.label_counts.items())
                console.print(
                    f"{res.name}: {', '.join(str(p) for p in res.outputs)} "
                    f"({res.seconds:.1f} s; voxels per label {counts})",
                    highlight=False,
                )

        results = predict_studies(
            net,
            study_dirs,
            out,
            tta=not no_tta,
            save_probabilities=save_probabilities,
            force=force,
            progress=on_progress,
            on_result=on_result,
        )
    if not quiet:
        for note in net.notices:
            err_console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
        lic = f"; licence: {net.card.licence}" if net.card.licence else ""
        console.print(
            f"Model {net.card.name!r} ({net.card.dataset_name}{lic}). {RESEARCH_NOTICE}",
            style="dim",
            highlight=False,
        )
    if any(not r.ok for r in results):
        raise typer.Exit(code=1)
