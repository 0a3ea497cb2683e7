"""bench/pacs.py (DICOMweb pull vs folder read) must keep running: its smoke mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

pytest.importorskip("dicomweb_client", reason="the [pacs] extra (dicomweb-client) is not installed")
import orthanc_server  # noqa: E402


@pytest.mark.slow
@pytest.mark.skipif(orthanc_server.missing() is not None, reason=str(orthanc_server.missing()))
def test_smoke_run_prints_the_pull_and_folder_rows(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pacs.py"), "--smoke", "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {line.split("|")[1].strip(): line.split("|")[2:4] for line in res.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| What")}  # fmt: skip
    folder = next(v for k, v in rows.items() if k.startswith("read from a folder"))
    pulled = next(v for k, v in rows.items() if k.startswith("pulled over DICOMweb"))
    assert float(folder[1]) == 1.0 and float(pulled[0]) > 0
    assert float(pulled[1]) > 0 and float(folder[0]) > 0
    assert any(k.startswith("STOW-RS of SEG + SR") for k in rows)
    # the Orthanc it started (pid printed) was stopped
    pid = int(res.stdout.split("Orthanc pid ")[1].split()[0].rstrip(";,"))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
