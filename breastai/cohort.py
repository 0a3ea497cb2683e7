"""Cohorts: many studies, one row each, on this machine or on a Ray cluster; resumable.

``run_cohort`` segments a list of studies into ``OUT/<folder>/`` and writes ``OUT/cohort.csv`` and
``OUT/cohort.json`` (one row per input). The same unit of work runs in both modes:

* plain (``ray_address=None``): one :class:`StudyWorker` in this process; the next study is read
  on a background thread while the current one runs the models in this thread;
* Ray (``ray_address="local"`` or a cluster address; :mod:`breastai.cohort_ray`): one
  :class:`StudyWorker` per Ray actor, each
  loading the models once and keeping them (one GPU per actor when the cluster has GPUs, else
  ``settings.threads`` CPUs per actor). Each actor holds up to two studies: one runs the models
  while the next is read. An actor that dies (its process killed, its node lost) has its studies
  retried on another actor.

Stable names: a study's folder (:func:`study_folder_name`) depends on that study alone -- its
folder name plus a short hash of its absolute path -- never on the order or the subset of inputs.

Resumable and idempotent: each ``manifest.json`` records ``cohort.key``, a sha256 of the study's
files (relative path, size, modification time), the two models' sha256 and the settings that
change outputs. A study whose folder holds a complete output with the same key is skipped; a
failed or interrupted one is redone. One lock file per study (``OUT/.locks/<folder>.lock``,
``flock``; released by the kernel when a worker dies) keeps two runs on one OUT from writing the
same study; leftovers of a killed worker (``OUT/.<folder>.*.tmp``) are removed under that lock.

Research use only, not a medical device.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from breastai import RESEARCH_NOTICE
from breastai.errors import BreastAIError, InputError, OutputError
from breastai.io.atomic import atomic_file, check_writable, clean_stale
from breastai.pipeline import SegmentResult, Settings
from breastai.study import Study

__all__ = [
    "COHORT_SCHEMA",
    "ROW_FIELDS",
    "STATUSES",
    "CohortResult",
    "CohortRow",
    "Job",
    "StudyWorker",
    "input_fingerprint",
    "read_study_list",
    "run_cohort",
    "study_folder_name",
    "write_cohort_table",
]

log = logging.getLogger(__name__)

COHORT_SCHEMA = "breastai.cohort/1"
#: Row statuses: done in this run, failed, or left alone because its outputs were complete.
STATUSES = ("ok", "failed", "skipped")
#: Columns of ``cohort.csv`` (and keys of each ``cohort.json`` row), in order.
ROW_FIELDS = (
    "study",
    "folder",
    "status",
    "error",
    "lesion_count",
    "longest_diameter_mm",
    "t_category",
    "tumor_volume_ml",
    "breast_volume_ml",
    "seconds",
    "worker",
    "attempts",
)
#: Settings that cannot change an output, left out of the resume key (device and runtime give
#: masks identical on the tested studies; probabilities differ by ~1e-6).
_KEY_IGNORES = frozenset(
    {
        "force",
        "threads",
        "batch_size",
        "device",
        "runtime",
        "cudnn_conv_algo_search",
        "weights",
        "breast_weights",
        "weights_file",
    }
)
#: A worker that dies this many times on one study gives that study a failed row.
MAX_ATTEMPTS = 3
_LOCKS = ".locks"


# ------------------------------------------------------------------------------------- names


def _base_name(item: Study | Path | str) -> str:
    if isinstance(item, Study):
        name = item.name or Path(item.source).name
    else:
        name = Path(item).name
        for suffix in (".nii.gz", ".nii"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")
    return name or "study"


def study_folder_name(item: Study | Path | str) -> str:
    """The output folder name of one study: ``<folder name>-<8 hex digits>``.

    The digits are the start of the sha256 of the study's absolute, symlink-resolved path, so the
    name depends on that study alone: the same study gets the same folder whatever else is on the
    command line and in whatever order, and two studies whose folders are both called ``dicom``
    get different ones.

    Parameters
    ----------
    item:
        A study folder, a 4-D NIfTI file, or a loaded ``Study`` (its ``source`` is used).

    Returns
    -------
    str
        E.g. ``dicom-3fa2c1d0`` for ``/data/cohort/p7/dicom``.
    """
    source = (Path(item.source) if isinstance(item, Study) else Path(item)).resolve()
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:8]
    return f"{_base_name(item if isinstance(item, Study) else source)}-{digest}"


# ----------------------------------------------------------------------------- study lists


def read_study_list(path: Path) -> list[Path]:
    """Read a study list: one path per line, or a CSV with a ``path`` column.

    Blank lines and lines starting with ``#`` are ignored. Relative paths are relative to the
    list's folder.

    Parameters
    ----------
    path:
        The list file.

    Returns
    -------
    list of Path
        The studies, in file order.

    Raises
    ------
    InputError
        The file cannot be read, has no studies, has a CSV header without a ``path`` column, or
        names paths that do not exist (the message gives their number and the first ones).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"Cannot read the study list {str(path)!r} ({exc}); give a text file with one study "
            "path per line or a CSV with a 'path' column."
        ) from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    first = lines[0] if lines else ""
    entries: list[str]
    if "," in first or "\t" in first:
        dialect = "excel-tab" if "\t" in first else "excel"
        reader = csv.DictReader(io.StringIO("\n".join(lines)), dialect=dialect)
        fields = [f.strip().lower() for f in reader.fieldnames or ()]
        if "path" not in fields:
            raise InputError(
                f"The study list {str(path)!r} looks like a CSV but has no 'path' column "
                f"(columns: {', '.join(fields)}); name the column of study paths 'path'."
            )
        col = (reader.fieldnames or [])[fields.index("path")]
        entries = [(row.get(col) or "").strip() for row in reader]
        entries = [e for e in entries if e]
    else:
        entries = [ln.strip() for ln in lines]
    if not entries:
        raise InputError(f"The study list {str(path)!r} names no studies.")
    studies = [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]
    missing = [str(p) for p in studies if not p.exists()]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise InputError(
            f"{len(missing)} of {len(studies)} paths in the study list {str(path)!r} do not "
            f"exist ({shown}); fix or remove them (relative paths are read from the list's "
            "folder)."
        )
    return studies


# ------------------------------------------------------------------------------- resume key


def input_fingerprint(source: Path) -> str:
    """sha256 over the files of a study: relative path, size and modification time (ns).

    A study folder is walked recursively (symlinks followed, hidden files included); a file
    (4-D NIfTI) is taken alone. Contents are not read: a copy that keeps names, sizes and times
    counts as the same input.

    Raises
    ------
    InputError
        The path does not exist.
    """
    source = Path(source)
    h = hashlib.sha256()
    try:
        if source.is_dir():
            for root, dirs, files in os.walk(source, followlinks=True):
                dirs.sort()
                for f in sorted(files):
                    p = Path(root) / f
                    st = p.stat()
                    rel = p.relative_to(source).as_posix()
                    h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        else:
            st = source.stat()
            h.update(f"{source.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    except OSError as exc:
        raise InputError(
            f"Cannot read the study {str(source)!r} ({exc.strerror or exc}); check the path."
        ) from None
    return h.hexdigest()


def _settings_key(settings: Settings, model_sha256: dict[str, str]) -> dict[str, Any]:
    d = {k: v for k, v in settings.to_dict().items() if k not in _KEY_IGNORES}
    return {"settings": d, "models": dict(sorted(model_sha256.items()))}


def _key(fingerprint: str, base: dict[str, Any]) -> str:
    doc = json.dumps({"inputs": fingerprint, **base}, sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()


# ----------------------------------------------------------------------------------- rows

#: The summary numbers a row copies from a result (or a manifest's ``summary``).
_SUMMARY_FIELDS = (
    "lesion_count",
    "t_category",
    "longest_diameter_mm",
    "tumor_volume_ml",
    "breast_volume_ml",
)


@dataclass
class CohortRow:
    """One input of a cohort run: what happened to it and its summary numbers."""

    study: str
    folder: str
    status: str
    error: str | None = None
    lesion_count: int | None = None
    longest_diameter_mm: float | None = None
    t_category: str | None = None
    tumor_volume_ml: float | None = None
    breast_volume_ml: float | None = None
    seconds: float | None = None
    worker: str | None = None
    attempts: int = 1
    index: int = -1  # position in the input list (not a column)
    notices: list[str] = field(default_factory=list)  # not a column
    demo_weights: bool | None = None  # not a column
    timings_s: dict[str, float] = field(default_factory=dict)  # per stage (not a column)

    @classmethod
    def from_result(cls, res: SegmentResult, *, study: str, folder: str, **kw: Any) -> CohortRow:
        """The row of a finished :class:`~breastai.pipeline.SegmentResult`."""
        return cls(study=study, folder=folder, status="ok", **kw).with_result(res)

    def with_result(self, res: SegmentResult) -> CohortRow:
        """This row (study, folder, worker, seconds) with the outcome and numbers of ``res``."""
        return dataclasses.replace(
            self,
            status="ok" if res.ok else "failed",
            error=res.error,
            notices=list(res.notices),
            demo_weights=res.demo_weights,
            timings_s=dict(res.timings_s),
            **{k: getattr(res, k) for k in _SUMMARY_FIELDS},
        )

    @property
    def ok(self) -> bool:
        """Not failed (done in this run, or complete from an earlier one)."""
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        """The row's columns (:data:`ROW_FIELDS`) plus ``ok``."""
        d = {k: getattr(self, k) for k in ROW_FIELDS}
        d["ok"] = self.ok
        return d


@dataclass
class CohortResult:
    """All rows of a run (input order) and whether it was interrupted."""

    rows: list[CohortRow]
    total: int
    interrupted: bool = False
    table_paths: tuple[Path, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        """Rows per status."""
        return {s: sum(r.status == s for r in self.rows) for s in STATUSES}


def write_cohort_table(
    out_dir: Path, rows: Sequence[CohortRow], *, total: int, interrupted: bool = False
) -> tuple[Path, Path]:
    """Write ``OUT/cohort.csv`` and ``OUT/cohort.json`` atomically (rows in input order).

    Returns
    -------
    tuple of Path
        The CSV and JSON paths.
    """
    rows = sorted(rows, key=lambda r: r.index)
    csv_path, json_path = Path(out_dir) / "cohort.csv", Path(out_dir) / "cohort.json"
    with atomic_file(csv_path) as tmp, tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(ROW_FIELDS)
        for r in rows:
            w.writerow(["" if getattr(r, k) is None else getattr(r, k) for k in ROW_FIELDS])
    doc = {
        "schema": COHORT_SCHEMA,
        "notice": RESEARCH_NOTICE,
        "inputs": total,
        "interrupted": interrupted,
        "counts": {s: sum(r.status == s for r in rows) for s in STATUSES},
        "rows": [{k: getattr(r, k) for k in ROW_FIELDS} for r in rows],
    }
    with atomic_file(json_path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return csv_path, json_path


def error_line(exc: BaseException) -> str:
    if isinstance(exc, BreastAIError):
        return " ".join(str(exc).split())
    log.error("internal error", exc_info=exc)
    return f"internal error ({type(exc).__name__}: {' '.join(str(exc).split())}); please report it"


# ------------------------------------------------------------------------------------ locks


class _StudyLock:
    """An exclusive ``flock`` on ``OUT/.locks/<folder>.lock`` (the kernel drops it on death)."""

    def __init__(self, out_dir: Path, folder: str) -> None:
        self.path = Path(out_dir) / _LOCKS / f"{folder}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise OutputError(
                f"Cannot create the lock file {str(self.path)!r} ({exc.strerror or exc}); "
                "choose a writable output folder."
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """Who holds (or last held) the lock: ``host pid``."""
        with contextlib.suppress(OSError):
            return self.path.read_text().strip()
        return "?"

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _complete(folder: Path, manifest: dict[str, Any]) -> bool:
    outputs = manifest.get("outputs") or []
    return bool(outputs) and all((folder / f).is_file() for f in outputs)


def _row_from_manifest(row: CohortRow, manifest: dict[str, Any]) -> CohortRow:
    s = manifest.get("summary") or {}
    row.lesion_count = s.get("lesion_count")
    row.t_category = s.get("t_category")
    row.longest_diameter_mm = s.get("longest_diameter_mm")
    tv, bv = s.get("tumor_volume_ml"), s.get("breast_volume_ml")
    row.tumor_volume_ml = None if tv is None else round(float(tv), 4)
    row.breast_volume_ml = None if bv is None else round(float(bv), 4)
    row.demo_weights = manifest.get("demo_weights")
    return row


# ----------------------------------------------------------------------------------- worker


@dataclass(frozen=True)
class Job:
    """One unit of work: a study and its output folder name."""

    index: int
    source: str
    folder: str
    attempt: int = 1


@dataclass
class _Started:
    """A study whose lock is held and which is read (or finished early with a row)."""

    job: Job
    t0: float
    begin_s: float = 0.0  # seconds spent in begin (reading); waiting for the models is not counted
    lock: _StudyLock | None = None
    row: CohortRow | None = None  # set when nothing is left to do (skipped / failed)
    prep: Any = None
    key: str = ""
    force: bool = False

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


class StudyWorker:
    """Loads the models once and segments studies into ``out_dir`` (one Ray actor each).

    ``begin(job)`` checks the resume key, takes the study's lock and reads the study;
    ``finish(started)`` runs the models and writes the outputs; ``run(job)`` does both, the
    model part serialised by a lock so that two concurrent calls overlap reading with inference.
    Both return a :class:`CohortRow`; no exception escapes for a study's own problems.

    Parameters
    ----------
    settings:
        Run settings (``force`` redoes complete studies).
    out_dir:
        Cohort output folder.
    run_id:
        Identifies this run in the manifests (a retry after a worker died recognises its own
        finished output).

    Raises
    ------
    BreastAIError
        The models cannot be resolved or opened (weights, device).
    """

    def __init__(self, settings: Settings, out_dir: Path | str, run_id: str) -> None:
        from breastai.pipeline import load_models

        t0 = time.perf_counter()
        self.settings = settings
        self.out_dir = Path(out_dir)
        self.run_id = run_id
        self.models = load_models(settings)
        self.load_s = time.perf_counter() - t0
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        sha = {
            "breast": str(self.models.breast.resolved.card.sha256),
            "tumor": str(self.models.tumor.resolved.card.sha256),
        }
        self._key_base = _settings_key(settings, sha)
        self._compute = threading.Lock()

    def info(self) -> dict[str, Any]:
        """Where this worker runs and what it loaded (a cheap call: also a readiness probe)."""
        return {
            "worker": self.worker,
            "pid": os.getpid(),
            "device": self.models.device,
            "provider": self.models.provider,
            "load_s": self.load_s,
        }

    def _row(self, job: Job, status: str, t0: float, error: str | None = None) -> CohortRow:
        return CohortRow(
            study=job.source,
            folder=job.folder,
            status=status,
            error=error,
            seconds=round(time.perf_counter() - t0, 3),
            worker=self.worker,
            attempts=job.attempt,
            index=job.index,
        )

    def begin(self, job: Job) -> _Started:
        """Check, lock and read one study (see the class docstring)."""
        from breastai.pipeline import prepare_study

        st = _Started(job=job, t0=time.perf_counter())
        try:
            key = _key(input_fingerprint(Path(job.source)), self._key_base)
            final = self.out_dir / job.folder
            lock = _StudyLock(self.out_dir, job.folder)
            if not lock.acquire():
                st.row = self._row(
                    job,
                    "skipped",
                    st.t0,
                    f"another run is segmenting this study (lock held by {lock.holder()}); "
                    "run again when it has finished",
                )
                return st
            st.lock = lock
            clean_stale(self.out_dir, job.folder, any_owner=True)
            manifest = _read_manifest(final) if final.is_dir() else None
            theirs = (manifest or {}).get("cohort") or {}
            if manifest is not None and theirs.get("key") == key and _complete(final, manifest):
                if not self.settings.force:
                    mine = theirs.get("run_id") == self.run_id  # our own retry
                    st.row = _row_from_manifest(
                        self._row(job, "ok" if mine else "skipped", st.t0), manifest
                    )
                    st.release()
                    return st
            elif (
                final.exists()
                and not self.settings.force
                and not (final.is_dir() and not any(final.iterdir()))
                and theirs.get("key") != key
            ):
                why = (
                    "was made from other inputs, weights or settings"
                    if theirs.get("key")
                    else "was not made by a cohort run"
                )
                raise OutputError(
                    f"Output folder {str(final)!r} exists and {why}; pass --force to redo it, "
                    "or choose another -o."
                )
            # same key but incomplete: our own broken output, replaced without --force
            st.force = self.settings.force or final.exists()
            st.key = key
            st.prep = prepare_study(
                Path(job.source), settings=self.settings, models=self.models, name=job.folder
            )
        except Exception as exc:  # one study's problem: its row, never the others'
            st.release()
            st.row = self._row(job, "failed", st.t0, error_line(exc))
        st.begin_s = time.perf_counter() - st.t0
        return st

    def finish(self, st: _Started) -> CohortRow:
        """Run the models on a begun study and write its folder; release its lock."""
        from breastai.pipeline import segment_prepared

        if st.row is not None:
            return st.row
        job = st.job
        st.t0 = time.perf_counter() - st.begin_s  # this study's own seconds, not the wait
        try:
            settings = dataclasses.replace(self.settings, force=st.force)
            res = segment_prepared(
                st.prep,
                out_dir=self.out_dir,
                settings=settings,
                models=self.models,
                started=st.t0,
                manifest_extra={
                    "cohort": {"key": st.key, "run_id": self.run_id, "worker": self.worker}
                },
            )
            row = self._row(job, "ok", st.t0).with_result(res)
        except Exception as exc:
            row = self._row(job, "failed", st.t0, error_line(exc))
        finally:
            st.prep = None
            st.release()
        return row

    def run(self, job: Job) -> CohortRow:
        """``begin`` then ``finish``; concurrent calls take turns on the models."""
        st = self.begin(job)
        if st.row is not None:
            return st.row
        with self._compute:
            return self.finish(st)


# ------------------------------------------------------------------------------- the runner

RowCallback = Callable[[CohortRow], None]


def _jobs(studies: Sequence[Path | str]) -> list[Job]:
    return [
        Job(index=i, source=str(Path(s).absolute()), folder=study_folder_name(s))
        for i, s in enumerate(studies)
    ]


def run_cohort(
    studies: Sequence[Path | str],
    *,
    out_dir: Path,
    settings: Settings | None = None,
    ray_address: str | None = None,
    workers: int | None = None,
    on_row: RowCallback | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    table_every_s: float = 5.0,
) -> CohortResult:
    """Segment a cohort into ``out_dir`` and write ``cohort.csv`` / ``cohort.json``.

    Parameters
    ----------
    studies:
        Study folders or 4-D NIfTI files (a study appearing twice is done once; both rows).
    out_dir:
        Output folder (created); one subfolder per study (:func:`study_folder_name`).
    settings:
        Shared settings; ``threads`` is the CPU threads per worker, ``force`` redoes complete
        studies.
    ray_address:
        None: this process. ``"local"``: a private Ray cluster on this machine, stopped at the
        end. Otherwise the address of a running cluster (``host:port`` or ``ray://host:port``).
    workers:
        Ray: the most workers (default: one per GPU, else one per ``max(threads, 1)`` CPUs).
    on_row:
        Called with each finished row (in completion order).
    on_start:
        Called once with ``{"workers": [...info...]}`` when the workers are ready.
    table_every_s:
        The tables are rewritten at most this often while the run goes on, and at the end.

    Returns
    -------
    CohortResult
        One row per study, in input order (only those done when interrupted).

    Raises
    ------
    BreastAIError
        Before any study runs: the output folder cannot be written, the weights cannot be
        resolved, Ray is missing or the cluster cannot be reached or cannot start a worker.
    KeyboardInterrupt
        After the tables of what was done are written.
    """
    settings = settings or Settings()
    out_dir = Path(out_dir)
    check_writable(out_dir, create=False)
    _check_weights(settings)
    if ray_address is not None:
        from breastai.cohort_ray import check_reachable, import_ray

        import_ray()
        if ray_address != "local":
            check_reachable(ray_address)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"Cannot create the output folder {str(out_dir)!r} ({exc.strerror or exc}); "
            "choose a writable folder with -o."
        ) from None
    jobs = _jobs(studies)
    rows: dict[int, CohortRow] = {}
    last = [time.monotonic()]
    lock = threading.Lock()

    def done(row: CohortRow) -> None:
        with lock:
            rows[row.index] = row
        if on_row:
            on_row(row)
        if time.monotonic() - last[0] > table_every_s:
            last[0] = time.monotonic()
            write_cohort_table(out_dir, list(rows.values()), total=len(jobs))

    interrupted = False
    try:
        if ray_address is None:
            _run_here(jobs, out_dir, settings, done, on_start)
        else:
            from breastai.cohort_ray import run_ray

            run_ray(jobs, out_dir, settings, ray_address, workers, done, on_start)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        paths = write_cohort_table(
            out_dir, list(rows.values()), total=len(jobs), interrupted=interrupted
        )
    return CohortResult(rows=[rows[i] for i in sorted(rows)], total=len(jobs), table_paths=paths)


def _check_weights(settings: Settings) -> None:
    """Fail before any study (and before a cluster starts) when the weights cannot resolve."""
    from breastai.weights import resolve_model

    resolve_model(settings.breast_weights, "breast", weights_file=settings.weights_file)
    resolve_model(settings.weights, "tumor", weights_file=settings.weights_file)


def dedupe_jobs(jobs: list[Job]) -> tuple[list[Job], dict[str, list[Job]]]:
    """The first job of each output folder, and per folder the later jobs (its twins)."""
    first: dict[str, Job] = {}
    twins: dict[str, list[Job]] = {}
    for j in jobs:
        if j.folder in first:
            twins.setdefault(j.folder, []).append(j)
        else:
            first[j.folder] = j
    return list(first.values()), twins


def emit_row(row: CohortRow, twins: dict[str, list[Job]], done: RowCallback) -> None:
    """Report a finished row, and a copy of it for each twin job of the same study."""
    done(row)
    for t in twins.get(row.folder, []):
        done(dataclasses.replace(row, index=t.index, study=t.source))


def _run_here(
    jobs: list[Job],
    out_dir: Path,
    settings: Settings,
    done: RowCallback,
    on_start: Callable[[dict[str, Any]], None] | None,
) -> None:
    """This process: the next study is read on a thread while this one runs the models."""
    unique, twins = dedupe_jobs(jobs)
    worker = StudyWorker(settings, out_dir, uuid.uuid4().hex)
    if on_start:
        on_start({"workers": [worker.info()]})
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
    pending = ex.submit(worker.begin, unique[0]) if unique else None
    try:
        for i in range(len(unique)):
            if pending is None:  # cannot happen: one future per job
                break
            st = pending.result()
            pending = ex.submit(worker.begin, unique[i + 1]) if i + 1 < len(unique) else None
            emit_row(worker.finish(st), twins, done)
    finally:
        # interrupted: let the read-ahead study finish reading (it writes nothing), drop its lock
        ex.shutdown(wait=True, cancel_futures=True)
        if pending is not None and not pending.cancelled() and pending.exception() is None:
            pending.result().release()
