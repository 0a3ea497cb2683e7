"""Cohorts on a Ray cluster: one :class:`~breastai.cohort.StudyWorker` per Ray actor.

:func:`breastai.cohort.run_cohort` calls :func:`run_ray` for ``ray_address="local"`` (a private
cluster on this machine, stopped at the end) or a cluster address. Each actor loads the models
once and holds up to two studies (one runs the models while the next is read); an actor that
dies has its studies retried on another. Ray is an optional dependency (``breastai[cluster]``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from breastai.cohort import (
    MAX_ATTEMPTS,
    CohortRow,
    Job,
    RowCallback,
    StudyWorker,
    dedupe_jobs,
    emit_row,
    error_line,
)
from breastai.errors import BreastAIError, ClusterError
from breastai.settings import Settings

__all__ = ["check_reachable", "import_ray", "run_ray"]

log = logging.getLogger(__name__)


def import_ray() -> Any:
    """The ``ray`` module, or a ClusterError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ClusterError(
            "--ray needs Ray, which is not installed; install it with "
            "`pip install 'breastai[cluster]'` (or `pip install ray`)."
        ) from None
    return ray


def check_reachable(address: str) -> None:
    """One TCP connection to ``host:port`` first, so that a wrong address fails in seconds."""
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(
            f"--ray expects 'local' or a cluster address 'HOST:PORT' (or 'ray://HOST:PORT'), "
            f"got {address!r}."
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5.0):
            pass
    except OSError as exc:
        raise ClusterError(
            f"Cannot reach a Ray cluster at {address!r} ({exc.strerror or exc}); start one "
            "with `ray start --head` and pass the address it prints, or use --ray local."
        ) from None


@contextlib.contextmanager
def _ray_session(ray: Any, address: str) -> Iterator[None]:
    """Connect to a cluster (or start a private local one) and disconnect / stop it after."""
    temp: str | None = None
    kwargs: dict[str, Any] = {
        "logging_level": logging.ERROR,
        "log_to_driver": False,
        "include_dashboard": False,
        "configure_logging": True,
    }
    if address == "local":
        # a short folder: Ray's Unix socket paths under it must stay below ~107 characters
        temp = tempfile.mkdtemp(prefix="bai-ray-", dir="/tmp" if Path("/tmp").is_dir() else None)
        kwargs.update(
            address="local",
            _temp_dir=temp,
            object_store_memory=200 * 1024**2,
        )
    else:
        kwargs = {"address": address, "logging_level": logging.ERROR, "log_to_driver": False}
    if ray.is_initialized():
        ray.shutdown()
    try:
        ray.init(**kwargs)
    except Exception as exc:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)
        where = "a local Ray cluster" if address == "local" else f"the Ray cluster at {address!r}"
        raise ClusterError(
            f"Could not start or join {where} ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:300]}); check the address and that the cluster "
            "runs the same Ray and Python versions."
        ) from None
    try:
        # Ray's driver prints cluster events (e.g. "A worker died ...") on stdout, which belongs
        # to the caller (``--json``); each such event reaches the caller as a row instead.
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield
    finally:
        ray.shutdown()
        if temp:
            shutil.rmtree(temp, ignore_errors=True)


class _Pool:
    """Ray actors (StudyWorkers), each with up to ``depth`` studies in flight."""

    def __init__(
        self, ray: Any, settings: Settings, out_dir: Path, run_id: str, n: int, gpus: bool
    ) -> None:
        self.ray = ray
        self.cls = ray.remote(StudyWorker).options(
            num_cpus=max(settings.threads, 1) if not gpus else 1,
            num_gpus=1 if gpus else 0,
            max_concurrency=2,
            max_restarts=0,
            max_task_retries=0,
        )
        self.args = (settings, str(out_dir), run_id)
        self.actors: dict[int, Any] = {}
        self.infos: dict[int, dict[str, Any]] = {}
        self.load: dict[int, int] = {}
        self._next = 0
        self.replacements = n  # a dead actor is replaced this many times in all
        for _ in range(n):
            self._spawn()

    def _spawn(self) -> int:
        k = self._next
        self._next += 1
        self.actors[k] = self.cls.remote(*self.args)
        self.load[k] = 0
        return k

    def ready(self) -> list[dict[str, Any]]:
        """Wait for every actor's models; a model / device error becomes one clear line."""
        refs = {k: a.info.remote() for k, a in self.actors.items()}
        for k, ref in refs.items():
            try:
                self.infos[k] = self.ray.get(ref)
            except Exception as exc:
                cause = getattr(exc, "cause", None) or exc
                inner = getattr(cause, "cause", None)
                if isinstance(inner, BreastAIError):
                    raise inner from None
                if isinstance(cause, BreastAIError):
                    raise cause from None
                text = " ".join(str(cause).split())
                m = re.search(r"(\w*Error): (.*?)(?: \(|$)", text)
                raise ClusterError(
                    "A Ray worker could not load the models"
                    + (f" ({m.group(1)}: {m.group(2)[:300]})" if m else f" ({text[:300]})")
                    + "; every node needs breastai (same version) and the weights installed."
                ) from None
        return list(self.infos.values())

    def replace(self, k: int) -> None:
        self.actors.pop(k, None)
        self.load.pop(k, None)
        if self.replacements > 0:
            self.replacements -= 1
            self._spawn()

    def kill_all(self) -> None:
        for a in self.actors.values():
            with contextlib.suppress(Exception):
                self.ray.kill(a, no_restart=True)
        self.actors.clear()


def _worker_died(ray: Any, exc: BaseException) -> bool:
    kinds = tuple(
        getattr(ray.exceptions, n)
        for n in ("RayActorError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError")
        if hasattr(ray.exceptions, n)
    )
    return isinstance(exc, kinds)


def run_ray(
    jobs: list[Job],
    out_dir: Path,
    settings: Settings,
    address: str,
    workers: int | None,
    done: RowCallback,
    on_start: Callable[[dict[str, Any]], None] | None,
) -> None:
    """Run the jobs on Ray actors (:class:`~breastai.cohort.StudyWorker`), rows to ``done``.

    Workers: one per GPU, else one per ``max(settings.threads, 1)`` CPUs, at most ``workers``;
    a job whose worker died is retried on another up to ``MAX_ATTEMPTS`` times.
    """
    ray = import_ray()
    if workers is not None and workers < 1:
        raise ClusterError(f"--workers must be >= 1, got {workers}.")
    unique, twins = dedupe_jobs(jobs)
    with _ray_session(ray, address):
        res = ray.cluster_resources()
        n_gpu = int(res.get("GPU", 0))
        per = 1 if n_gpu else max(settings.threads, 1)
        n = n_gpu if n_gpu else max(int(res.get("CPU", 1)) // per, 1)
        n = max(min(n, workers or n, len(unique) or 1), 1)
        pool = _Pool(ray, settings, out_dir, uuid.uuid4().hex, n, gpus=n_gpu > 0)
        inflight: dict[Any, tuple[Job, int]] = {}
        try:
            infos = pool.ready()
            if on_start:
                on_start({"workers": infos, "gpus": n_gpu, "cpus": res.get("CPU", 0)})
            queue = deque(unique)
            while queue or inflight:
                for k in list(pool.actors):
                    while queue and pool.load.get(k, 9) < 2:
                        job = queue.popleft()
                        inflight[pool.actors[k].run.remote(job)] = (job, k)
                        pool.load[k] += 1
                if not inflight:
                    if queue and not pool.actors:
                        for job in queue:  # no worker left to try
                            emit_row(_died_row(job, "no Ray worker is left"), twins, done)
                        queue.clear()
                    continue
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
                for ref in ready:
                    job, k = inflight.pop(ref)
                    if k in pool.load:
                        pool.load[k] -= 1
                    try:
                        row = ray.get(ref)
                    except Exception as exc:
                        if not _worker_died(ray, exc):
                            row = CohortRow(
                                study=job.source,
                                folder=job.folder,
                                status="failed",
                                error=error_line(exc),
                                attempts=job.attempt,
                                index=job.index,
                            )
                        else:
                            log.info("worker died on %s (attempt %d)", job.source, job.attempt)
                            if k in pool.actors:
                                pool.replace(k)
                            if job.attempt < MAX_ATTEMPTS:
                                queue.appendleft(dataclasses.replace(job, attempt=job.attempt + 1))
                                continue
                            row = _died_row(job, f"its worker died {job.attempt} times")
                    emit_row(row, twins, done)
        except BaseException:
            pool.kill_all()
            raise
        finally:
            pool.kill_all()


def _died_row(job: Job, why: str) -> CohortRow:
    return CohortRow(
        study=job.source,
        folder=job.folder,
        status="failed",
        error=f"not segmented: {why} (a crash in the runtime, or out of memory); see the Ray "
        "logs of that node",
        attempts=job.attempt,
        index=job.index,
    )
