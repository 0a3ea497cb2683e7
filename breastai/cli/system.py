"""System command (breastai.system): ``doctor``."""

from __future__ import annotations

from typing import Annotated

import typer

from breastai.cli.common import console, handle_errors, print_json


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
