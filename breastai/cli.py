"""The ``breastai`` command line: a thin layer over the library.

This is the only module that imports typer and rich. It parses arguments, calls one library
function per command, renders progress and tables, and maps ``BreastAIError`` to one red line on
stderr with the error's exit code (1 for input/weights/output problems, 2 for usage errors).
Heavy libraries (SimpleITK, pydicom, ONNX Runtime, torch) are imported inside the commands so that
``breastai --help`` answers fast.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from breastai import RESEARCH_NOTICE, __version__
from breastai.errors import AmbiguousStudyError, BreastAIError

app = typer.Typer(
    name="breastai",
    help=(
        "Breast and tumor segmentation, DICOM-SEG and T-stage report from breast DCE-MRI.\n\n"
        + RESEARCH_NOTICE
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # headers can hold PHI: never dump locals
    rich_markup_mode="rich",
)
weights_app = typer.Typer(help="List, verify and bundle model weights.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

WeightsFileOption = Annotated[
    Path | None,
    typer.Option(
        "--weights-file",
        help=(
            "User weights file (default: $BREASTAI_WEIGHTS_FILE, else $BREASTAI_HOME/weights.toml)."
        ),
        dir_okay=False,
    ),
]


# === section: error handling, logging and warnings (one line per error on stderr) ===

_VERBOSE = False
_LOG_HANDLERS: list[Any] = []
_NO_NATIVE_SETUP = {"weights_list", "weights_verify", "weights_export_bundle", "download_weights"}


def one_line(text: object) -> str:
    """A message as one printable line: newlines and tabs become spaces, other control
    characters (raw header bytes, terminal escapes) are shown as ``\\xNN``."""
    out = []
    for ch in str(text):
        if ch in "\r\n\t\v\f":
            out.append(" ")
        elif not ch.isprintable():
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return " ".join("".join(out).split())


def _err_line(prefix: str, style: str, message: object) -> None:
    from rich.text import Text

    err_console.print(
        Text.assemble((prefix, style), " ", one_line(message)), highlight=False, soft_wrap=True
    )


def _fail(exc: BreastAIError) -> typer.Exit:
    message = str(exc)
    if isinstance(exc, AmbiguousStudyError) and exc.candidates:
        message += " Candidates: " + " | ".join(exc.candidates)
    _err_line("error:", "red", message)
    return typer.Exit(code=exc.exit_code)


def _setup_logging(verbose: bool, log_file: Path | None) -> None:
    """Library logs and Python warnings (numpy, pydicom, ...) go to the log: stderr only with
    --verbose, a file with --log; never raw to the terminal otherwise."""
    import logging

    global _VERBOSE
    _VERBOSE = verbose
    root = logging.getLogger()
    for handler in _LOG_HANDLERS:
        root.removeHandler(handler)
        handler.close()
    _LOG_HANDLERS.clear()
    handlers: list[logging.Handler] = [logging.NullHandler()]
    if verbose:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handlers.append(stream)
    if log_file is not None:
        try:
            file_handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            from breastai.errors import ParameterError

            raise _fail(
                ParameterError(f"--log {log_file}: cannot write it ({exc.strerror or exc}).")
            ) from None
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        handlers.append(file_handler)
    for handler in handlers:
        root.addHandler(handler)
        _LOG_HANDLERS.append(handler)
    if verbose or log_file is not None:
        root.setLevel(logging.DEBUG)
    logging.captureWarnings(True)


def _quiet_native() -> None:
    """ITK prints warnings from C++ straight to stderr: off unless --verbose (breastai checks
    the geometry itself and reports what matters as its own warnings)."""
    try:
        import SimpleITK as sitk
    except Exception:
        return
    sitk.ProcessObject.SetGlobalWarningDisplay(_VERBOSE)


def handle_errors(fn: F) -> F:
    """Turn library errors into one red stderr line and the error's exit code; any other
    exception (a bug) into one line too, with the traceback in the log (--verbose, --log)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import logging
        import warnings

        if fn.__name__ not in _NO_NATIVE_SETUP:
            _quiet_native()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                return fn(*args, **kwargs)
        except BreastAIError as exc:
            raise _fail(exc) from None
        except KeyboardInterrupt:
            err_console.print("[red]interrupted[/red]")
            raise typer.Exit(code=130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: one line here, the traceback in the log
            logging.getLogger("breastai.cli").error("internal error", exc_info=exc)
            _err_line(
                "error:",
                "red",
                f"internal error ({type(exc).__name__}: {exc}); this is a bug in breastai: "
                "please report it (run with --verbose for the traceback).",
            )
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Print one JSON document on stdout (no rich markup, no wrapping)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"breastai {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Show the log (decisions, warnings, tracebacks) on stderr."
        ),
    ] = False,
    log_file: Annotated[
        Path | None,
        typer.Option("--log", help="Append the detailed log to this file.", dir_okay=False),
    ] = None,
) -> None:
    """breastai command line."""
    _setup_logging(verbose, log_file)


# ---------------------------------------------------------------------------------------------
# Commands are grouped by the library module they call. Keep each command thin: parse, call one
# library function, render. Sections: demo | info | segment | tstage | evaluate | weights |
# training (train / export / import-weights).
# ---------------------------------------------------------------------------------------------

# === section: demo (breastai.phantom) ===

from breastai.phantom.presets import Layout, Orientation, Preset  # noqa: E402  (no numpy)


@app.command("demo")
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


def _parse_times(text: str | None) -> list[float] | None:
    from breastai.errors import ParameterError

    if text is None:
        return None
    try:
        return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ParameterError(
            f"--times {text!r} is not a comma-separated list of seconds (e.g. 0,60,120)."
        ) from None


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


@app.command("info")
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
    times: Annotated[
        str | None,
        typer.Option("--times", help="Phase times in seconds, comma-separated (e.g. 0,60,120)."),
    ] = None,
) -> None:
    """Show every series of a study, the DCE phases found and how they were found."""
    import contextlib

    from rich.table import Table

    from breastai.errors import AmbiguousStudyError as _Ambiguous
    from breastai.errors import NoDCESeriesError
    from breastai.io import index_study, load_study, study_info

    phase_times = _parse_times(times)
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


# === section: segment (breastai.pipeline) ===

from enum import StrEnum  # noqa: E402

# the library's enums (breastai.choices), under the names the options use
from breastai.choices import Blend as BlendChoice  # noqa: E402
from breastai.choices import Precision as PrecisionChoice  # noqa: E402
from breastai.choices import Runtime as RuntimeChoice  # noqa: E402


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


@app.command("segment")
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
    device: Annotated[
        str, typer.Option(help="auto | cpu | cuda | cuda:N (auto: CUDA if usable, else CPU).")
    ] = "auto",
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
    send_preview: Annotated[bool, typer.Option("--send-preview", help=_PREVIEW_HELP)] = False,
    times: Annotated[
        str | None,
        typer.Option("--times", help="Phase times in seconds, comma-separated (e.g. 0,60,120)."),
    ] = None,
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
    phase_times = _parse_times(times)
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
                _err_line("error:", "red", f"{row.study}: {row.error or ''}")
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


# --- end segment ---


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


@app.command("tstage")
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
    from breastai import report as rpt
    from breastai.errors import ParameterError

    if sr and (out is None or study is None):
        raise ParameterError("--sr needs --out DIR and a DICOM --study STUDY_DIR.")
    mask_img = rpt.read_mask(mask)
    breast_img = rpt.read_mask(breast_mask) if breast_mask is not None else None
    study_obj = None
    if study is not None:
        from breastai.io import load_study  # type: ignore[attr-defined]

        study_obj = load_study(study)
        if sr and study_obj.kind != "dicom":
            raise ParameterError("--sr needs a DICOM study; this study was read from NIfTI files.")
    result = rpt.measure_lesions(
        mask_img,
        study=study_obj,
        breast_mask=breast_img,
        min_volume_mm3=rpt.DEFAULT_MIN_VOLUME_MM3 if min_volume_mm3 is None else min_volume_mm3,
        label=label,
    )
    result.source = str(mask)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    written = rpt.write_report(result, out, force=force) if out is not None else []
    if sr and out is not None and study_obj is not None:
        written.append(rpt.write_sr(result, study_obj, out / "report-sr.dcm", force=force))
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


@app.command("evaluate")
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
    import math

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
        means = []
        for c in cols:
            finite = [getattr(r, c) for r in rows if math.isfinite(getattr(r, c))]
            means.append(f"{sum(finite) / len(finite):.3f}" if finite else "nan")
        tot = [sum(getattr(r, k) for r in rows) for k in ("tp", "fn", "fp")]
        table.add_row("[bold]mean (finite)[/bold]", *means, "/".join(map(str, tot)))
    console.print(table)
    if csv_out is not None:
        console.print(f"wrote {csv_out}", highlight=False)
    console.print(f"[dim]{RESEARCH_NOTICE}[/dim]")


# === section: weights (breastai.weights) ===


_STATE_STYLE = {
    "verified": "green",
    "unverified": "yellow",
    "missing": "dim",
    "mismatch": "red",
    "placeholder": "yellow",
}


@app.command("download-weights")
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

    wanted = list(dict.fromkeys(names or []))
    if source is not None:
        if all_models and wanted:
            raise ParameterError("pass model names or --all, not both.")
        done = weights.install_from(source, wanted, weights_file=weights_file, force=force)
        for rm in done:
            console.print(
                f"installed {rm.card.name} ({rm.card.sha256[:12]}) -> {rm.path}",
                markup=False,
                highlight=False,
            )
        return
    registry = weights.load_registry(weights_file)
    if all_models:
        if wanted:
            raise ParameterError("pass model names or --all, not both.")
        wanted = [n for n, c in registry.items() if c.downloadable]
        if not wanted:
            console.print(
                "nothing to download: the registry lists no downloadable model "
                "(the bundled demo models are already installed)."
            )
            return
    if not wanted:
        downloadable = ", ".join(n for n, c in registry.items() if c.downloadable) or "none"
        raise ParameterError(
            "name the models to download or pass --all; downloadable models: "
            f"{downloadable} (see `breastai weights list`)."
        )
    for name in wanted:
        rm = weights.download_model(name, weights_file=weights_file, force=force)
        line = f"{rm.card.name}: ok ({rm.card.sha256[:12]}) -> {rm.path}"
        console.print(line, markup=False, highlight=False)


@weights_app.command("list")
@handle_errors
def weights_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
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


@weights_app.command("verify")
@handle_errors
def weights_verify(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models to verify (default: all present).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
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
    bad = [s for s in statuses if s.state in ("mismatch", "placeholder")]
    missing = [s for s in statuses if s.state == "missing" and names]
    if bad or missing:
        for s in bad + missing:
            err_console.print(
                f"[red]error:[/red] {s.message or s.card.name + ': ' + s.state}",
                highlight=False,
                soft_wrap=True,
            )
        raise typer.Exit(code=1)


@weights_app.command("export-bundle")
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


# === section: training (breastai.training) ===


class TrainTask(StrEnum):
    """What `breastai train` trains."""

    BREAST = "breast"
    TUMOR = "tumor"


class TrainDevice(StrEnum):
    """Where `breastai train` runs."""

    CPU = "cpu"
    CUDA = "cuda"


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


@app.command("train")
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

    from breastai.training.train import TrainProgress, default_options, train

    net: dict[str, Any] = {}
    sizes = {
        "filters": filters,
        "hidden": hidden,
        "mlp": mlp,
        "heads": heads,
        "spatial_layers": layers,
        "temporal_layers": layers,
        "slots": slots,
        "base": base,
        "levels": levels,
    }
    tumor_keys = {"filters", "hidden", "mlp", "heads", "spatial_layers", "temporal_layers", "slots"}
    for key, value in sizes.items():
        if value is not None:
            if (key in tumor_keys) != (task == TrainTask.TUMOR):
                from breastai.errors import ParameterError

                raise ParameterError(f"--{key.split('_')[-1]} does not apply to the {task} model.")
            net[key] = value
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


@app.command("export")
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
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file/entry.")] = False,
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


@app.command("import-weights")
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
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file/entry.")] = False,
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


# === section: pacs (breastai.pacs; `segment --from-pacs`, `watch`) ===

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
_PREVIEW_HELP = "Also store the preview as a Secondary Capture (with --send-to, or watch)."


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
    from breastai.pacs import connect, segment_from_pacs

    source = connect(url)
    target = None
    if send_to is not None:
        target = source if send_to.rstrip("/") == source.url else connect(send_to)
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


class WatchMode(StrEnum):
    """How `breastai watch` finds new studies (breastai.pacs.watch.MODES)."""

    AUTO = "auto"
    ORTHANC = "orthanc"
    QIDO = "qido"


_EVENT_STYLE = {"sent": "green", "segmented": "green", "skipped": "yellow", "failed": "red"}


@app.command("watch")
@handle_errors
def watch_cmd(
    url: Annotated[
        str, typer.Argument(help="DICOMweb root URL of the server to watch (credentials: env).")
    ],
    out: Annotated[
        Path, typer.Option("-o", "--out", help="Output folder; one subfolder per study UID.")
    ] = Path("breastai-output"),
    once: Annotated[
        bool, typer.Option("--once", help="Handle what is new, then exit (cron, tests).")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between looks.")
    ] = 30.0,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state", help="State file (default OUT/breastai-watch.json).", dir_okay=False
        ),
    ] = None,
    send_to: Annotated[
        str | None, typer.Option("--send-to", help="Store results here (default: URL).")
    ] = None,
    no_send: Annotated[
        bool, typer.Option("--no-send", help="Segment only; store nothing in any PACS.")
    ] = False,
    send_preview: Annotated[bool, typer.Option("--send-preview", help=_PREVIEW_HELP)] = False,
    mode: Annotated[
        WatchMode,
        typer.Option(
            help="auto: Orthanc's change feed when the server is an Orthanc, else QIDO-RS."
        ),
    ] = WatchMode.AUTO,
    since_date: Annotated[
        str | None,
        typer.Option(
            "--since-date",
            help="YYYYMMDD. QIDO-RS: oldest StudyDate to look at. Orthanc: the first look takes "
            "studies that arrived since then (default: yesterday).",
        ),
    ] = None,
    stable_age: Annotated[
        float,
        typer.Option(
            "--stable-age", min=0.0, help="QIDO-RS: seconds a study must stay unchanged first."
        ),
    ] = 60.0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    weights: Annotated[
        str | None, typer.Option("--weights", help="Tumor model name or ONNX path.")
    ] = None,
    breast_weights: Annotated[
        str | None, typer.Option("--breast-weights", help="Breast model name or ONNX path.")
    ] = None,
    weights_file: WeightsFileOption = None,
) -> None:
    """Watch a DICOMweb server: segment each new breast DCE study once and send the results back.

    Orthanc: its change feed (stable studies); other servers: QIDO-RS by StudyDate. Studies
    without a DCE acquisition are skipped with the reader's reason. What was handled is kept in
    the state file, so every study is handled once across restarts (docs/pacs.md).
    """
    from breastai.pacs import WatchEvent, connect, watch, watch_once
    from breastai.pipeline import Settings

    server = connect(url, attempts=3 if once else 2)
    target = None
    if send_to is not None and not no_send:
        target = server if send_to.rstrip("/") == server.url else connect(send_to)
    settings = Settings(
        device=device, weights=weights, breast_weights=breast_weights, weights_file=weights_file
    )
    counts: dict[str, int] = {}

    def on_event(ev: WatchEvent) -> None:
        counts[ev.status] = counts.get(ev.status, 0) + 1
        if ev.status == "server-error":
            err_console.print(f"[yellow]server:[/yellow] {ev.message}", highlight=False)
            return
        style = _EVENT_STYLE.get(ev.status, "")
        label = f"[{style}]{ev.status}[/{style}]" if style else ev.status
        console.print(f"{label} {ev.study_uid}: {ev.message}", highlight=False, soft_wrap=True)

    common: dict[str, Any] = {
        "out_dir": out,
        "state_path": state,
        "settings": settings,
        "send_to": target,
        "send": not no_send,
        "preview": send_preview,
        "mode": mode.value,
        "stable_age_s": stable_age,
        "since_date": since_date,
        "on_event": on_event,
    }
    if once:
        events = watch_once(server, **common)
        if not events:
            console.print("nothing new", highlight=False)
        console.print(RESEARCH_NOTICE, style="dim")
        if any(e.status == "failed" for e in events):
            raise typer.Exit(code=1)
        return
    console.print(
        f"watching {server.url} every {interval:g} s (Ctrl-C to stop); {RESEARCH_NOTICE}",
        highlight=False,
    )
    watch(server, interval_s=interval, **common)


# === end of section: pacs ===
# === section: doctor (breastai.system) ===


@app.command("doctor")
@handle_errors
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    no_session: Annotated[
        bool, typer.Option("--no-session", help="Do not try to create a CUDA session.")
    ] = False,
) -> None:
    """Show the inference runtime, providers, GPU, CUDA/cuDNN libraries, CPU features and
    whether (and why not) CUDA is used."""
    from rich.markup import escape
    from rich.table import Table

    from breastai.system import diagnose

    report = diagnose(try_session=not no_session)
    if as_json:
        print_json(report.to_dict())
        return
    table = Table(title="breastai doctor", title_justify="left", show_header=False)
    table.add_column("item")
    table.add_column("found", overflow="fold")
    cpu = report.cpu
    features = [
        name
        for name, key in (
            ("AVX2", "avx2"),
            ("AVX-512", "avx512"),
            ("AVX512-BF16", "avx512_bf16"),
            ("AMX-BF16", "amx_bf16"),
        )
        if cpu.get(key)
    ]
    libs = [
        f"{name}: {'[green]' + escape(str(path)) + '[/green]' if path else '[red]not found[/red]'}"
        for name, path in report.cuda_libraries.items()
    ]
    rows = (
        ("breastai", f"{report.breastai} (Python {report.python}, {report.platform})"),
        (
            "ONNX Runtime",
            f"{report.onnxruntime_package or 'not installed'} {report.onnxruntime or ''}"
            + (
                f" (built for CUDA {report.onnxruntime_cuda_build})"
                if report.onnxruntime_cuda_build
                else ""
            ),
        ),
        ("providers", ", ".join(report.providers) or "none"),
        ("OpenVINO", report.openvino or "not installed (pip install 'breastai[openvino]')"),
        ("GPU", "; ".join(report.gpus) or report.gpu_source),
        ("CUDA/cuDNN libraries", "\n".join(libs) or "-"),
        (
            "CPU",
            f"{cpu.get('model')}, {cpu.get('logical_cores')} logical cores; "
            f"{', '.join(features) or 'no AVX2/AVX-512'}; bf16 "
            + ("yes" if cpu.get("bf16") else "no"),
        ),
    )
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    style = "green" if report.cuda_used else "yellow"
    console.print(f"[{style}]{escape(report.reason)}[/{style}]", highlight=False)
# === section: nnU-Net (breastai.nnunet; issue 12) ===


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


@app.command("predict")
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
    device: Annotated[
        str, typer.Option(help="auto | cpu | cuda | cuda:N (auto: CUDA if usable, else CPU).")
    ] = "auto",
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


# === end section: nnU-Net ===


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
