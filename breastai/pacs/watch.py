"""Watch a DICOMweb server for new studies; segment each breast DCE study once; send results back.

Finding new studies:

* **Orthanc** (detected from ``<root>/system``; ``mode="orthanc"``): Orthanc's change feed
  (``/changes?since=N``), which Orthanc keeps in its database across restarts; the first look
  takes the changes from one day back (or ``since_date``), not the server's whole history. Every
  ``NewStudy`` and ``StableStudy`` change puts the study on the pending list (kept in the state
  file); a pending study is handled once Orthanc reports it stable (``IsStable``: no new instance
  for Orthanc's ``StableAge``). Tracking ``NewStudy`` too means a study whose ``StableStudy``
  event was lost to a server restart is still handled.
* **Any other DICOMweb server** (``mode="qido"``): QIDO-RS for studies with a StudyDate from one
  day before the last look (or ``since_date``); a study is handled once its number of instances
  has not changed for ``stable_age_s`` seconds between two looks (0: at once). QIDO-RS cannot see
  when a study *arrived*, so older studies sent to the PACS later need ``since_date``.

Exactly once: the state file (JSON, written atomically after every study) records every study
handled (``sent``, ``skipped`` with the reader's reason, ``failed`` with the error,
``has-results`` when the study already holds breastai results) and the change-feed position.
A study is only recorded after its results were stored; should breastai stop between storing
and recording, the next look finds the breastai series in the study (QIDO-RS) and records it
without sending again. Two watchers cannot share one state file (an exclusive lock).

Server errors (connection refused, timeouts, HTTP 429/5xx) are retried with exponential backoff;
wrong credentials stop the watcher.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from breastai import RESEARCH_NOTICE
from breastai.choices import WatchMode, values
from breastai.errors import (
    BreastAIError,
    InputError,
    NoDCESeriesError,
    OutputError,
    PacsAuthError,
    PacsError,
    PacsUnavailableError,
    ParameterError,
)
from breastai.io.atomic import atomic_file
from breastai.pacs.connection import DicomwebServer
from breastai.pacs.transfer import existing_results, list_series, segment_from_pacs

__all__ = [
    "MODES",
    "STATE_SCHEMA",
    "WatchEvent",
    "WatchState",
    "find_new_studies",
    "watch",
    "watch_once",
]

log = logging.getLogger(__name__)

STATE_SCHEMA = "breastai.watch-state/1"
MODES = values(WatchMode)  # ("auto", "orthanc", "qido")


@dataclass
class WatchEvent:
    """One thing the watcher did (or could not do), for the caller to show."""

    status: str  # sent | segmented | skipped | failed | has-results | server-error
    message: str
    study_uid: str | None = None
    out_dir: str | None = None
    sent: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class WatchState:
    """The state file: studies handled, pending studies, the change-feed position."""

    def __init__(self, path: Path, data: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = data or {
            "schema": STATE_SCHEMA,
            "notice": RESEARCH_NOTICE,
            "handled": {},
            "orthanc": {},
            "qido": {},
        }
        for key in ("handled", "orthanc", "qido"):
            self.data.setdefault(key, {})

    @classmethod
    def load(cls, path: Path) -> WatchState:
        """Read the state file (a fresh state when it does not exist).

        Raises
        ------
        InputError
            The file exists but is not a breastai watch state.
        """
        path = Path(path)
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(
                f"The watch state file {str(path)!r} cannot be read ({exc}); it records which "
                "studies were handled: repair it, or move it away to handle every study again."
            ) from None
        if not isinstance(data, dict) or data.get("schema") != STATE_SCHEMA:
            raise InputError(
                f"{str(path)!r} is not a breastai watch state file (schema {STATE_SCHEMA}); "
                "choose another --state file."
            )
        return cls(path, data)

    def save(self) -> None:
        """Write the state atomically."""
        self.data["updated_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
        with atomic_file(self.path) as tmp:
            tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n", "utf-8")

    @property
    def handled(self) -> dict[str, Any]:
        return self.data["handled"]  # type: ignore[no-any-return]

    def record(self, study_uid: str, event: WatchEvent) -> None:
        """Mark a study handled (and save)."""
        self.handled[study_uid] = {
            "status": event.status,
            "message": event.message,
            "out_dir": event.out_dir,
            "sent": [s.get("series_uid") for s in event.sent],
            "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.data["orthanc"].get("pending", {}).pop(study_uid, None)
        self.data["qido"].get("seen", {}).pop(study_uid, None)
        self.save()


@contextlib.contextmanager
def _locked(state_path: Path) -> Iterator[None]:
    """An exclusive lock beside the state file (POSIX; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock = Path(str(state_path) + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock, "a")  # noqa: SIM115 (held for the whole block)
    except OSError as exc:
        raise OutputError(
            f"Cannot create the lock file {str(lock)!r}: {exc.strerror or exc}; choose a "
            "writable --state location."
        ) from None
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(
                f"Another breastai watch is using the state file {str(state_path)!r}; run one "
                "watcher per state file."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# ------------------------------------------------------------------------------ finding studies


def _orthanc_candidates(
    server: DicomwebServer, root: str, state: WatchState, *, since_date: str | None
) -> list[str]:
    """Pending studies from Orthanc's change feed that are stable now (StudyInstanceUIDs).

    The first look (no position recorded) takes studies that arrived from ``since_date``
    (default: yesterday) on, not the server's whole history.
    """
    orth = state.data["orthanc"]
    if orth.get("root") != root:
        orth.clear()
        orth["root"] = root
    first = "since" not in orth
    cutoff = since_date or (date.today() - timedelta(days=1)).strftime("%Y%m%d")
    since = int(orth.get("since", 0))
    pending: dict[str, str] = orth.setdefault("pending", {})  # orthanc id -> study uid or ""
    latest = server.orthanc_get(root, "/changes", {"last": ""})
    last_seq = int(latest.get("Last", 0)) if isinstance(latest, dict) else 0
    if last_seq < since:
        log.warning(
            "Orthanc's change feed is at %d, before the recorded position %d (a new database?); "
            "reading it from the start (handled studies are not handled again)",
            last_seq,
            since,
        )
        since = 0
    while True:
        doc = server.orthanc_get(root, "/changes", {"since": since, "limit": 500})
        for change in doc.get("Changes", []):
            if change.get("ChangeType") not in ("NewStudy", "StableStudy"):
                continue
            if first and str(change.get("Date", ""))[:8] < cutoff:
                continue  # arrived before the first look's window
            pending.setdefault(str(change["ID"]), "")
        since = int(doc.get("Last", since))
        if doc.get("Done", True):
            break
    orth["since"] = since
    ready = []
    for oid in list(pending):
        info = server.orthanc_get(root, f"/studies/{oid}", missing_ok=True)
        if info is None:  # deleted since
            pending.pop(oid)
            continue
        uid = str(info.get("MainDicomTags", {}).get("StudyInstanceUID", ""))
        if not uid or uid in state.handled:
            pending.pop(oid)
            continue
        pending[oid] = uid
        if info.get("IsStable", True):
            ready.append(uid)
    state.save()
    return list(dict.fromkeys(ready))


def _qido_candidates(
    server: DicomwebServer,
    state: WatchState,
    *,
    stable_age_s: float,
    since_date: str | None,
    now: float,
) -> list[str]:
    qido = state.data["qido"]
    if since_date is None:
        last = qido.get("last_look_date")
        start = (datetime.strptime(last, "%Y%m%d").date() if last else date.today()) - timedelta(
            days=1
        )
        since_date = start.strftime("%Y%m%d")
    found = server.search_studies(
        {"StudyDate": f"{since_date}-"},
        fields=("StudyInstanceUID", "NumberOfStudyRelatedInstances"),
    )
    seen: dict[str, Any] = qido.setdefault("seen", {})
    ready = []
    for item in found:
        uid_v = item.get("0020000D", {}).get("Value")
        if not uid_v:
            continue
        uid = str(uid_v[0])
        if uid in state.handled:
            continue
        count_v = item.get("00201208", {}).get("Value")
        count = int(count_v[0]) if count_v else -1
        prev = seen.get(uid)
        if prev is None or prev.get("count") != count:
            seen[uid] = {"count": count, "since": now}
            prev = seen[uid]
        if now - float(prev["since"]) >= stable_age_s:
            ready.append(uid)
    qido["last_look_date"] = date.today().strftime("%Y%m%d")
    state.save()
    return ready


def find_new_studies(
    server: DicomwebServer,
    state: WatchState,
    *,
    mode: str = "auto",
    stable_age_s: float = 60.0,
    since_date: str | None = None,
    now: float | None = None,
) -> tuple[list[str], str]:
    """Studies that arrived since the last look, are complete, and were not handled yet.

    Returns
    -------
    tuple
        ``(StudyInstanceUIDs, mode used: "orthanc" | "qido")``.

    Raises
    ------
    ParameterError
        An unknown mode, or ``orthanc`` for a server that is not an Orthanc.
    PacsError
        The server failed.
    """
    if mode not in MODES:
        raise ParameterError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}.")
    if since_date is not None:
        try:
            datetime.strptime(since_date, "%Y%m%d")
        except ValueError:
            raise ParameterError(f"--since-date takes YYYYMMDD, got {since_date!r}.") from None
    root = server.orthanc_root() if mode in ("auto", "orthanc") else None
    if mode == "orthanc" and root is None:
        raise ParameterError(
            f"{server.url} is not an Orthanc DICOMweb root (no Orthanc /system beside it); use "
            "--mode qido."
        )
    if root is not None:
        return _orthanc_candidates(server, root, state, since_date=since_date), "orthanc"
    when = time.time() if now is None else now
    ready = _qido_candidates(
        server, state, stable_age_s=stable_age_s, since_date=since_date, now=when
    )
    return ready, "qido"


# ------------------------------------------------------------------------------ handling studies


def _handle(
    server: DicomwebServer,
    study_uid: str,
    *,
    out_dir: Path,
    settings: Any,
    send_to: DicomwebServer | None,
    preview: bool,
    models: Any,
) -> WatchEvent:
    try:
        series = list_series(server, study_uid)
        already = existing_results(series)
        if already:
            return WatchEvent(
                "has-results",
                f"the study already holds {len(already)} breastai series; nothing sent",
                study_uid,
            )
        res = segment_from_pacs(
            server,
            study_uid,
            out_dir=out_dir,
            settings=settings,
            send_to=send_to,
            preview=preview,
            models=models,
            series=series,
        )
    except NoDCESeriesError as exc:
        return WatchEvent("skipped", str(exc), study_uid)
    except (PacsUnavailableError, PacsAuthError, OutputError):
        raise
    except (InputError, PacsError) as exc:
        return WatchEvent("failed", str(exc), study_uid)
    seg = res.segment
    summary = f"{seg.lesion_count} lesion(s), T {seg.t_category}" + (
        f", longest {seg.longest_diameter_mm:.1f} mm" if seg.longest_diameter_mm else ""
    )
    if send_to is None:
        return WatchEvent("segmented", summary, study_uid, str(seg.out_dir))
    return WatchEvent(
        "sent",
        f"{summary}; stored {', '.join(s.kind for s in res.sent)} into the study",
        study_uid,
        str(seg.out_dir),
        [dataclasses.asdict(s) for s in res.sent],
    )


def watch_once(
    server: DicomwebServer,
    *,
    out_dir: Path,
    state_path: Path | None = None,
    settings: Any = None,
    send_to: DicomwebServer | None = None,
    send: bool = True,
    preview: bool = False,
    mode: str = "auto",
    stable_age_s: float = 60.0,
    since_date: str | None = None,
    on_event: Callable[[WatchEvent], None] | None = None,
    models: Any = None,
    _locked_already: bool = False,
) -> list[WatchEvent]:
    """Handle every study that is new since the last look, then return.

    Parameters
    ----------
    server:
        The watched DICOMweb server.
    out_dir:
        Parent output folder (``OUT/<StudyInstanceUID>/`` per study; an existing folder of a
        study not recorded as handled, left by an interrupted run, is replaced).
    state_path:
        The state file (default ``OUT/breastai-watch.json``).
    settings:
        :class:`breastai.pipeline.Settings`.
    send_to:
        Where results go (default: the watched server).
    send:
        False: segment only, store nothing.
    preview:
        Also store the preview as a Secondary Capture.
    mode, stable_age_s, since_date:
        See :func:`find_new_studies`.
    on_event:
        Called with each :class:`WatchEvent` as it happens.
    models:
        Loaded models (default: loaded once here).

    Returns
    -------
    list of WatchEvent

    Raises
    ------
    PacsUnavailableError
        The server cannot be reached (after retries).
    PacsAuthError
        Wrong credentials.
    WeightsError, OutputError
        Problems that would fail every study.
    """
    from breastai.pipeline import Settings, load_models

    out_dir = Path(out_dir)
    state_path = Path(state_path) if state_path else out_dir / "breastai-watch.json"
    settings = dataclasses.replace(settings or Settings(), force=True)
    target = (send_to or server) if send else None
    events: list[WatchEvent] = []
    lock = contextlib.nullcontext() if _locked_already else _locked(state_path)
    with lock:
        state = WatchState.load(state_path)
        ready, _mode = find_new_studies(
            server, state, mode=mode, stable_age_s=stable_age_s, since_date=since_date
        )
        if ready and models is None:
            models = load_models(settings)
        for uid in ready:
            if uid in state.handled:
                continue
            try:
                event = _handle(
                    server,
                    uid,
                    out_dir=out_dir,
                    settings=settings,
                    send_to=target,
                    preview=preview,
                    models=models,
                )
            except BreastAIError:
                raise
            except Exception as exc:  # a bug must not stop the watcher, nor repeat forever
                log.error("internal error on study %s", uid, exc_info=exc)
                event = WatchEvent(
                    "failed",
                    f"internal error ({type(exc).__name__}: {exc}); please report it",
                    uid,
                )
            state.record(uid, event)
            events.append(event)
            if on_event:
                on_event(event)
    return events


def watch(
    server: DicomwebServer,
    *,
    out_dir: Path,
    interval_s: float = 30.0,
    max_backoff_s: float = 300.0,
    stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
    on_event: Callable[[WatchEvent], None] | None = None,
    state_path: Path | None = None,
    settings: Any = None,
    **kwargs: Any,
) -> None:
    """Run :func:`watch_once` every ``interval_s`` until ``stop()``; back off on server errors.

    While the server cannot be reached (or answers 429/5xx), the wait doubles after each failed
    look, up to ``max_backoff_s``, and returns to ``interval_s`` after a good one. Wrong
    credentials, weights and output problems stop the watcher (they would fail every look).
    Other keyword arguments go to :func:`watch_once`.
    """
    from breastai.pipeline import Settings, load_models

    if interval_s <= 0:
        raise ParameterError(f"--interval must be > 0 seconds, got {interval_s:g}.")
    out_dir = Path(out_dir)
    state_path = Path(state_path) if state_path else out_dir / "breastai-watch.json"
    settings = settings or Settings()
    models = kwargs.pop("models", None) or load_models(settings)
    delay = interval_s
    with _locked(state_path):
        while not stop():
            try:
                watch_once(
                    server,
                    out_dir=out_dir,
                    state_path=state_path,
                    settings=settings,
                    on_event=on_event,
                    models=models,
                    _locked_already=True,
                    **kwargs,
                )
                delay = interval_s
            except PacsUnavailableError as exc:
                delay = min(max_backoff_s, max(interval_s, delay * 2))
                if on_event:
                    on_event(WatchEvent("server-error", f"{exc}; next look in {delay:g} s"))
            if stop():
                break
            sleep(delay)
