"""PACS commands (breastai.pacs): ``watch`` (``segment --from-pacs`` is in
:mod:`breastai.cli.segment`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from breastai import RESEARCH_NOTICE
from breastai.choices import WatchMode
from breastai.cli.common import (
    SendPreviewOption,
    WeightsFileOption,
    console,
    err_console,
    handle_errors,
)

_EVENT_STYLE = {"sent": "green", "segmented": "green", "skipped": "yellow", "failed": "red"}



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
    send_preview: SendPreviewOption = False,
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
    from breastai.pacs import WatchEvent, connect, connect_target, watch, watch_once
    from breastai.pipeline import Settings

    server = connect(url, attempts=3 if once else 2)
    target = None
    if send_to is not None and not no_send:
        target = connect_target(server, send_to)
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
