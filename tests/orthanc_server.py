"""A real Orthanc (Debian packages ``orthanc`` + ``orthanc-dicomweb``) for tests and bench/pacs.py.

Each server gets a temporary storage folder, a free HTTP port, authentication on (one registered
user), the DICOM server off, the DICOMweb plugin loaded, and is stopped by the process id this
helper started (never by name). Orthanc 1.10 (Debian 12) has no option to bind one address: it
listens on all interfaces, with ``RemoteAccessAllowed: false`` so that it answers only clients on
this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

USER = "breastai"
PASSWORD = "pacs-test-secret-7c1e"


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None
    )


def dicomweb_plugin() -> str | None:
    """The DICOMweb plugin's .so, as listed by the Debian package."""
    try:
        out = subprocess.run(
            ["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        out = ""
    libs = [line for line in out.splitlines() if line.endswith(".so") and "/plugins/" in line]
    libs += [line for line in out.splitlines() if ".so" in line]
    for lib in libs:
        if Path(lib).exists():
            return lib
    return None


def missing() -> str | None:
    """Why a test Orthanc cannot start here (None when it can)."""
    if orthanc_binary() is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb; see .ci/run)"
    if dicomweb_plugin() is None:
        return "the Orthanc DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Orthanc:
    """One Orthanc process: ``start()``, ``stop()``, ``restart()``, and a few REST helpers."""

    def __init__(self, folder: Path, *, stable_age_s: int = 1, port: int | None = None) -> None:
        self.folder = Path(folder)
        self.storage = self.folder / "storage"
        self.port = port or free_port()
        self.stable_age_s = stable_age_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.folder / "orthanc.log"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The DICOMweb root."""
        return f"{self.root}/dicom-web"

    def _config(self) -> Path:
        cfg = {
            "Name": "breastai-test",
            "StorageDirectory": str(self.storage),
            "IndexDirectory": str(self.storage),
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "StableAge": self.stable_age_s,
            "OrthancExplorerEnabled": False,
            "WebDavEnabled": False,
            "HttpThreadsCount": 8,
            "ConcurrentJobs": 1,
            "Plugins": [dicomweb_plugin()],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
            },
        }
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(cfg, indent=1))
        return path

    def start(self, timeout_s: float = 30.0) -> Orthanc:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        binary = orthanc_binary()
        assert binary is not None, missing()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, str(self._config())],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                r = requests.get(f"{self.root}/system", auth=(USER, PASSWORD), timeout=2)
                if r.status_code == 200 and self.plugin_ready():
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout_s} s")

    def plugin_ready(self) -> bool:
        r = requests.get(f"{self.url}/studies", auth=(USER, PASSWORD), timeout=5)
        return r.status_code in (200, 204)

    def stop(self) -> None:
        """Stop the process this helper started (by its pid), waiting for it to exit."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def restart(self) -> Orthanc:
        self.stop()
        return self.start()

    # ------------------------------------------------------------------------- REST helpers

    def get(self, path: str, **params: Any) -> Any:
        r = requests.get(f"{self.root}{path}", params=params, auth=(USER, PASSWORD), timeout=30)
        r.raise_for_status()
        return r.json() if "json" in r.headers.get("Content-Type", "") else r.content

    def upload(self, files: list[Path]) -> None:
        """POST every file to Orthanc's REST /instances (not DICOMweb: independent of breastai)."""
        with requests.Session() as s:
            s.auth = (USER, PASSWORD)
            for f in files:
                r = s.post(f"{self.root}/instances", data=Path(f).read_bytes(), timeout=30)
                r.raise_for_status()

    def study_id(self, study_uid: str) -> str:
        r = requests.post(
            f"{self.root}/tools/lookup", data=study_uid, auth=(USER, PASSWORD), timeout=10
        )
        r.raise_for_status()
        ids = [x["ID"] for x in r.json() if x["Type"] == "Study"]
        assert ids, f"study {study_uid} not in Orthanc"
        return str(ids[0])

    def series(self, study_uid: str) -> list[dict[str, Any]]:
        """Every series of a study: MainDicomTags plus the instance ids."""
        return list(self.get(f"/studies/{self.study_id(study_uid)}/series"))

    def instance_file(self, instance_id: str) -> bytes:
        r = requests.get(
            f"{self.root}/instances/{instance_id}/file", auth=(USER, PASSWORD), timeout=30
        )
        r.raise_for_status()
        return r.content

    def wait_stable(self, study_uid: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        sid = self.study_id(study_uid)
        while time.monotonic() < deadline:
            if self.get(f"/studies/{sid}").get("IsStable"):
                return
            time.sleep(0.2)
        raise TimeoutError(f"study {study_uid} not stable after {timeout_s} s")
