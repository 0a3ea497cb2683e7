"""What every command of the ``breastai`` command line shares.

The consoles, the error handling (one red stderr line and the error's exit code), the
``--verbose``/``--log`` set-up, JSON output, and the Typer options that several commands
declare the same way (defined once here as ``Annotated`` aliases).
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

from breastai import __version__
from breastai.errors import AmbiguousStudyError, BreastAIError

__all__ = [
    "DeviceOption",
    "ForceEntryOption",
    "JsonOption",
    "SendPreviewOption",
    "TimesOption",
    "WeightsFileOption",
    "console",
    "err_console",
    "err_line",
    "fail",
    "handle_errors",
    "one_line",
    "parse_times",
    "print_json",
    "setup_logging",
    "version_callback",
]

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


# === section: options declared the same way by several commands ===

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
TimesOption = Annotated[
    str | None,
    typer.Option("--times", help="Phase times in seconds, comma-separated (e.g. 0,60,120)."),
]
DeviceOption = Annotated[
    str, typer.Option(help="auto | cpu | cuda | cuda:N (auto: CUDA if usable, else CPU).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ForceEntryOption = Annotated[bool, typer.Option("--force", help="Replace an existing file/entry.")]
SendPreviewOption = Annotated[
    bool,
    typer.Option(
        "--send-preview",
        help="Also store the preview as a Secondary Capture (with --send-to, or watch).",
    ),
]


def parse_times(text: str | None) -> list[float] | None:
    """``--times`` as a list of seconds (``None`` when not given)."""
    from breastai.errors import ParameterError

    if text is None:
        return None
    try:
        return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ParameterError(
            f"--times {text!r} is not a comma-separated list of seconds (e.g. 0,60,120)."
        ) from None


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


def err_line(prefix: str, style: str, message: object) -> None:
    """``prefix message`` on stderr, the message as one line (:func:`one_line`)."""
    from rich.text import Text

    err_console.print(
        Text.assemble((prefix, style), " ", one_line(message)), highlight=False, soft_wrap=True
    )


def fail(exc: BreastAIError) -> typer.Exit:
    """Print ``exc`` as one red line; the ``typer.Exit`` to raise with its exit code."""
    message = str(exc)
    if isinstance(exc, AmbiguousStudyError) and exc.candidates:
        message += " Candidates: " + " | ".join(exc.candidates)
    err_line("error:", "red", message)
    return typer.Exit(code=exc.exit_code)


def setup_logging(verbose: bool, log_file: Path | None) -> None:
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

            raise fail(
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
            raise fail(exc) from None
        except KeyboardInterrupt:
            err_console.print("[red]interrupted[/red]")
            raise typer.Exit(code=130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: one line here, the traceback in the log
            logging.getLogger("breastai.cli").error("internal error", exc_info=exc)
            err_line(
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


def version_callback(value: bool) -> None:
    """``--version``: print it and exit."""
    if value:
        console.print(f"breastai {__version__}")
        raise typer.Exit()
