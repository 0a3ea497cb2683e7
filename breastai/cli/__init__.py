"""The ``breastai`` command line: a thin layer over the library.

This package is the only place that imports typer and rich. It parses arguments, calls one
library function per command, renders progress and tables, and maps ``BreastAIError`` to one red
line on stderr with the error's exit code (1 for input/weights/output problems, 2 for usage
errors). Heavy libraries (SimpleITK, pydicom, ONNX Runtime, torch) are imported inside the
commands so that ``breastai --help`` answers fast.

Commands are grouped by the library module they call, one module per group; each command is
thin: parse, call one library function, render. This module builds the Typer ``app`` and
registers the commands (in the order ``breastai --help`` lists them):

- :mod:`breastai.cli.study`: ``demo``, ``info``, ``tstage``, ``evaluate``
- :mod:`breastai.cli.segment`: ``segment`` (also ``--from-pacs``), ``predict`` (nnU-Net)
- :mod:`breastai.cli.weights`: ``download-weights``, ``import-weights``, ``weights ...``
- :mod:`breastai.cli.train`: ``train``, ``export``
- :mod:`breastai.cli.pacs`: ``watch``
- :mod:`breastai.cli.system`: ``doctor``
- :mod:`breastai.cli.common`: consoles, error handling, logging, shared options
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breastai import RESEARCH_NOTICE

# the library's enums (breastai.choices), under the names the options use
from breastai.choices import Blend as BlendChoice
from breastai.choices import Precision as PrecisionChoice
from breastai.choices import Runtime as RuntimeChoice
from breastai.cli import pacs, segment, study, system, train, weights
from breastai.cli.common import one_line, setup_logging, version_callback

__all__ = [
    "BlendChoice",
    "PrecisionChoice",
    "RuntimeChoice",
    "app",
    "main",
    "one_line",
    "weights_app",
]

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


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Show the version."
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
    setup_logging(verbose, log_file)


# --- the commands, in the order of `breastai --help` ---
app.command("demo")(study.demo)
app.command("info")(study.info_command)
app.command("segment")(segment.segment)
app.command("tstage")(study.tstage)
app.command("evaluate")(study.evaluate)
app.command("download-weights")(weights.download_weights)
weights_app.command("list")(weights.weights_list)
weights_app.command("verify")(weights.weights_verify)
weights_app.command("export-bundle")(weights.weights_export_bundle)
app.command("train")(train.train_cmd)
app.command("export")(train.export_cmd)
app.command("import-weights")(weights.import_weights_cmd)
app.command("watch")(pacs.watch_cmd)
app.command("doctor")(system.doctor)
app.command("predict")(segment.predict_cmd)


def main() -> None:
    """Console-script entry point."""
    app()
