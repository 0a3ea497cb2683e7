"""`breastai segment --ray` on a real local Ray cluster: a head (`ray start --head`) and a second
node (`ray start --address`) on this machine, 127.0.0.1 only, free ports, a short temp folder.

Every Ray process the fixture started is stopped by its process id (the processes whose command
line names the cluster's own temp folder, and their children), never by name.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from segment_factory import cli_model_args, make_model_pair, write_classic_study
from typer.testing import CliRunner

from breastai.cli import app

pytest.importorskip("ray", reason="Ray is optional: pip install 'breastai[cluster]'")

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
runner = CliRunner()


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _processes() -> dict[int, tuple[int, str]]:
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out[int(entry)] = (ppid, cmd)
    return out


def _cluster_pids(tag: str) -> set[int]:
    """Live processes naming ``tag`` (our cluster's temp folder) and all their descendants."""
    procs = _processes()
    pids = {p for p, (_, cmd) in procs.items() if tag in cmd and p != os.getpid()}
    grew = True
    while grew:
        grew = False
        for p, (ppid, _) in procs.items():
            if ppid in pids and p not in pids:
                pids.add(p)
                grew = True
    return {p for p in pids if not _zombie(p)}


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _stop(pids: set[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(not _zombie(p) for p in pids):
            time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    ray_exe = [sys.executable, "-m", "ray.scripts.scripts"]
    temp = tempfile.mkdtemp(prefix="brt", dir="/tmp")  # short: Unix socket paths < 108 chars
    home = tmp_path_factory.mktemp("rayhome")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "BREASTAI_HOME": str(home),
        "RAY_USAGE_STATS_ENABLED": "0",
        # token authentication with this cluster's own token (not ~/.ray/auth_token)
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": uuid.uuid4().hex,
    }
    gcs, dash, *agent = _free_ports(10)
    common = [
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--num-gpus=0",
        "--object-store-memory=100000000",
        f"--temp-dir={temp}",
        "--disable-usage-stats",
    ]
    head = [
        *ray_exe,
        "start",
        "--head",
        f"--port={gcs}",
        "--include-dashboard=false",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        f"--dashboard-agent-listen-port={agent[0]}",
        f"--dashboard-agent-grpc-port={agent[1]}",
        f"--runtime-env-agent-port={agent[2]}",
        f"--metrics-export-port={agent[3]}",
        *common,
    ]
    second = [
        *ray_exe,
        "start",
        f"--address=127.0.0.1:{gcs}",
        f"--dashboard-agent-listen-port={agent[4]}",
        f"--dashboard-agent-grpc-port={agent[5]}",
        f"--runtime-env-agent-port={agent[6]}",
        f"--metrics-export-port={agent[7]}",
        *common,
    ]
    try:
        for cmd in (head, second):
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stdout + r.stderr
        yield {"address": f"127.0.0.1:{gcs}", "env": env, "temp": temp}
    finally:
        _stop(_cluster_pids(temp))
        left = _cluster_pids(temp)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes still running: {sorted(left)}"


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Six phantom studies, every folder called 'dicom', and a broken seventh."""
    root = tmp_path_factory.mktemp("raycohort")
    models = make_model_pair(root / "models")
    paths = []
    for k in range(6):
        write_classic_study(root / f"patient{k}" / "dicom", shape=(16, 48, 60), n_phases=3)
        paths.append(root / f"patient{k}" / "dicom")
    broken = root / "patient6" / "dicom"
    broken.mkdir(parents=True)
    (broken / "1.dcm").write_bytes(b"\0" * 300)
    paths.insert(3, broken)
    return {"root": root, "models": models, "paths": paths, "broken": broken}


def _args(s: dict, out: Path) -> list[str]:
    return ["-o", str(out), "--threads", "1", *cli_model_args(s["models"], s["root"] / "w.toml")]


def _held_lock_pid(out: Path) -> int | None:
    """The pid holding some study's lock right now (a worker in the middle of a study)."""
    for lock in sorted((out / ".locks").glob("*.lock")) if (out / ".locks").is_dir() else ():
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            text = lock.read_text().split()
            if len(text) == 2 and text[1].isdigit():
                return int(text[1])
        finally:
            os.close(fd)
    return None


def _arrays(folder: Path) -> dict[str, np.ndarray]:
    import SimpleITK as sitk

    return {
        n: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / n)))
        for n in ("breast.nii.gz", "tumor.nii.gz")
    }


def test_ray_cohort_survives_a_killed_worker_matches_plain_and_resumes(
    cluster: dict, studies: dict, tmp_path: Path
) -> None:
    paths = [str(p) for p in studies["paths"]]
    plain_out, ray_out = tmp_path / "plain", tmp_path / "ray"
    plain = runner.invoke(app, ["segment", *paths, *_args(studies, plain_out), "--quiet"])
    assert plain.exit_code == 1  # the broken study
    cmd = [
        sys.executable,
        "-m",
        "breastai",
        "segment",
        *paths,
        *_args(studies, ray_out),
        "--ray",
        cluster["address"],
        "--json",
    ]
    proc = subprocess.Popen(
        cmd, env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    killed = None
    deadline = time.monotonic() + 180
    while proc.poll() is None and killed is None and time.monotonic() < deadline:
        pid = _held_lock_pid(ray_out)
        if pid is not None and pid != proc.pid:
            os.kill(pid, signal.SIGKILL)  # a worker dies in the middle of a study
            killed = pid
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=240)
    assert killed is not None, "no worker was caught in the middle of a study"
    assert proc.returncode == 1, stderr  # the broken study's row; the others ok
    rows = json.loads(stdout)["results"]
    assert [r["study"] for r in rows] == paths
    status = {r["study"]: r["status"] for r in rows}
    assert status.pop(str(studies["broken"])) == "failed"
    assert set(status.values()) == {"ok"}
    retried = [r for r in rows if r["attempts"] > 1]
    assert retried and all(not r["worker"].endswith(f":{killed}") for r in retried)
    assert len({r["worker"] for r in rows}) >= 2  # both nodes' workers took studies
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1  # the broken one

    # nothing half-written, no duplicate, the same folders and masks as a plain run
    ok_folders = sorted(r["folder"] for r in rows if r["status"] == "ok")
    entries = sorted(p.name for p in ray_out.iterdir())
    assert entries == sorted([*ok_folders, ".locks", "cohort.csv", "cohort.json"])
    assert sorted(p.name for p in plain_out.iterdir() if p.is_dir() and p.name[0] != ".") == (
        ok_folders
    )
    for folder in ok_folders:
        a, b = _arrays(plain_out / folder), _arrays(ray_out / folder)
        for name in a:
            assert np.array_equal(a[name], b[name]), (folder, name)
    table = (ray_out / "cohort.csv").read_text().splitlines()
    assert len(table) == 1 + len(paths)

    # a rerun redoes nothing
    stamps = {f: (ray_out / f / "manifest.json").stat().st_mtime_ns for f in ok_folders}
    again = subprocess.run(cmd, env=cluster["env"], capture_output=True, text=True, timeout=240)
    assert again.returncode == 1, again.stderr
    rows2 = json.loads(again.stdout)["results"]
    assert sorted(r["status"] for r in rows2) == ["failed"] + ["skipped"] * 6
    assert stamps == {f: (ray_out / f / "manifest.json").stat().st_mtime_ns for f in ok_folders}


def test_unreachable_address_is_one_line(studies: dict, tmp_path: Path) -> None:
    (port,) = _free_ports(1)  # nothing listens there
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        ["segment", str(studies["paths"][0]), *_args(studies, out), "--ray", f"127.0.0.1:{port}"],
    )
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1
    assert "Cannot reach a Ray cluster at" in res.stderr and "ray start --head" in res.stderr
    assert not out.exists()
