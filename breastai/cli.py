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
        help="User weights file (default: $BREASTAI_WEIGHTS_FILE, else $BREASTAI_HOME/weights.toml).",
        dir_okay=False,
    ),
]


def _fail(exc: BreastAIError) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
    if isinstance(exc, AmbiguousStudyError) and exc.candidates:
        for line in exc.candidates:
            err_console.print(f"  {line}", highlight=False, soft_wrap=True)
    return typer.Exit(code=exc.exit_code)


def handle_errors(fn: F) -> F:
    """Turn library errors into one red stderr line and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BreastAIError as exc:
            raise _fail(exc) from None
        except KeyboardInterrupt:
            err_console.print("[red]interrupted[/red]")
            raise typer.Exit(code=130) from None

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
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """breastai command line."""


# ---------------------------------------------------------------------------------------------
# Commands are grouped by the library module they call. Keep each command thin: parse, call one
# library function, render. Sections: demo | info | segment | tstage | evaluate | weights |
# training (train / export / import-weights).
# ---------------------------------------------------------------------------------------------

# === section: demo (breastai.phantom) ===

# === section: info (breastai.io) ===

# === section: segment (breastai.pipeline) ===

# === section: tstage (breastai.report) ===

# === section: evaluate (breastai.evaluate) ===

# === section: weights (breastai.weights) ===

# === section: training (breastai.training) ===


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
