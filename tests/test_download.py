"""Downloads through huggingface_hub against a local fake Hub on 127.0.0.1 (never the internet).

The fake Hub answers the file-resolution route ``/{repo_id}/resolve/{revision}/{filename}`` with
the headers huggingface_hub 2.x reads (``X-Repo-Commit``, ``ETag``, ``Content-Length``,
``Accept-Ranges``) and honours ``Range: bytes=N-`` with 206 responses.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from breastai import weights
from breastai.errors import ChecksumMismatchError, WeightsError, WeightsNotFoundError

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_ID = "breastai-test/models"
REV = "89abcdef0123456789abcdef0123456789abcdef"
PAYLOAD = hashlib.sha256(b"model").digest() * 40_000  # 1.28 MB stand-in ONNX file


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FakeHub:
    """State shared with the request handler."""

    files: dict[str, bytes]
    drop_first_get: bool = False
    log: list[tuple[str, str, str | None]] = field(default_factory=list)
    proxied: list[str] = field(default_factory=list)
    url: str = ""

    def gets(self) -> list[tuple[str, str, str | None]]:
        return [r for r in self.log if r[0] == "GET"]


def _handler(hub: FakeHub) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _lookup(self) -> bytes | None:
            prefix = f"/{REPO_ID}/resolve/{REV}/"
            path = self.path
            if path.startswith("http://"):  # asked as a forward proxy: absolute URI
                hub.proxied.append(path)
                path = urlsplit(path).path
            if not path.startswith(prefix):
                return None
            return hub.files.get(path[len(prefix) :])

        def _headers(self, status: int, data: bytes, start: int = 0) -> None:
            self.send_response(status)
            self.send_header("X-Repo-Commit", REV)
            self.send_header("ETag", f'"{_sha(data)}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data) - start))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()

        def _not_found(self) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Error-Message", "Entry not found")
            self.send_header("X-Repo-Commit", REV)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self) -> None:
            hub.log.append(("HEAD", self.path, None))
            data = self._lookup()
            if data is None:
                self._not_found()
                return
            self._headers(200, data)

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            hub.log.append(("GET", self.path, rng))
            data = self._lookup()
            if data is None:
                self._not_found()
                return
            start = int(rng.split("=")[1].split("-")[0]) if rng else 0
            self._headers(206 if start else 200, data, start)
            body = data[start:]
            if hub.drop_first_get and len(hub.gets()) == 1:
                self.wfile.write(body[: len(body) // 2])  # then the connection drops
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    state = FakeHub(files={"onnx/tumor.onnx": PAYLOAD})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("BREASTAI_HOME", str(home))
    monkeypatch.delenv("BREASTAI_WEIGHTS_FILE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return home


def _weights_file(
    tmp_path: Path, sha: str = _sha(PAYLOAD), filename: str = "onnx/tumor.onnx"
) -> Path:
    wf = tmp_path / "user.toml"
    wf.write_text(
        "schema_version = 1\n[models.rel-tumor]\n"
        f'task = "tumor"\nfilename = "{filename}"\nsha256 = "{sha}"\n'
        f'repo_id = "{REPO_ID}"\nrevision = "{REV}"\n'
    )
    return wf


def _leftovers(root: Path) -> list[Path]:
    return [
        p for p in root.rglob("*") if p.is_file() and (".part" in p.name or "incomplete" in p.name)
    ]


def test_download_ok_then_cached(hub: FakeHub, tmp_path: Path, env: Path) -> None:
    wf = _weights_file(tmp_path)
    rm = weights.download_model(
        "rel-tumor", weights_file=wf, endpoint=hub.url, cache_dir=tmp_path / "hf"
    )
    assert rm.path == env / "models" / "rel-tumor" / "tumor.onnx"
    assert rm.path.read_bytes() == PAYLOAD
    assert ("HEAD", f"/{REPO_ID}/resolve/{REV}/onnx/tumor.onnx", None) in hub.log
    assert len(hub.gets()) == 1
    assert _leftovers(env) == [] and _leftovers(tmp_path / "hf") == []
    # a verified copy is not downloaded again; resolve finds it
    weights.download_model(
        "rel-tumor", weights_file=wf, endpoint=hub.url, cache_dir=tmp_path / "hf"
    )
    assert len(hub.gets()) == 1
    assert weights.resolve_model(None, "tumor", weights_file=wf).card.name == "rel-tumor"


def test_resume_after_dropped_connection(
    hub: FakeHub, tmp_path: Path, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants as hf_constants

    # huggingface_hub writes (and so can resume from) whole 10 MiB chunks; shrink them so that a
    # 1.3 MB test file dropped halfway resumes from the middle rather than from zero.
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    hub.drop_first_get = True
    wf = _weights_file(tmp_path)
    rm = weights.download_model(
        "rel-tumor", weights_file=wf, endpoint=hub.url, cache_dir=tmp_path / "hf"
    )
    assert rm.path.read_bytes() == PAYLOAD
    gets = hub.gets()
    assert len(gets) == 2 and gets[0][2] is None
    resumed_at = int(gets[1][2].split("=")[1].rstrip("-"))  # type: ignore[union-attr]
    assert 0 < resumed_at < len(PAYLOAD)  # continued with a Range request, not from zero


def test_checksum_mismatch_refused_and_nothing_kept(
    hub: FakeHub, tmp_path: Path, env: Path
) -> None:
    wf = _weights_file(tmp_path, sha="ab" * 32)
    with pytest.raises(ChecksumMismatchError) as err:
        weights.download_model(
            "rel-tumor", weights_file=wf, endpoint=hub.url, cache_dir=tmp_path / "hf"
        )
    msg = str(err.value)
    assert "ab" * 32 in msg and _sha(PAYLOAD) in msg and hub.url in msg
    assert not (env / "models" / "rel-tumor" / "tumor.onnx").exists()
    assert _leftovers(env) == []
    blobs = list((tmp_path / "hf").rglob("blobs/*"))
    assert blobs == []  # dropped from the Hugging Face cache too, so offline mode cannot serve it


def test_missing_entry_on_the_hub(hub: FakeHub, tmp_path: Path) -> None:
    wf = _weights_file(tmp_path, filename="onnx/absent.onnx")
    with pytest.raises(WeightsNotFoundError, match="is not in breastai-test/models"):
        weights.download_model(
            "rel-tumor", weights_file=wf, endpoint=hub.url, cache_dir=tmp_path / "hf"
        )


def test_network_failure_is_one_line_with_the_offline_alternative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http.time, "sleep", lambda s: None)  # skip huggingface_hub's backoff
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    wf = _weights_file(tmp_path)
    with pytest.raises(WeightsError) as err:
        weights.download_model(
            "rel-tumor", weights_file=wf, endpoint=dead, cache_dir=tmp_path / "hf"
        )
    msg = str(err.value)
    assert "\n" not in msg and dead in msg and "--from" in msg and "export-bundle" in msg


def _cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    own = ("HF_", "BREASTAI_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    full = {k: v for k, v in os.environ.items() if not k.upper().startswith(own)}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "breastai", "download-weights", *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=REPO_ROOT,
        timeout=120,
    )


def test_env_variables_and_offline_mode(hub: FakeHub, tmp_path: Path) -> None:
    """HF_ENDPOINT and HF_HOME are read when huggingface_hub is imported: run the CLI apart."""
    wf = _weights_file(tmp_path)
    base = {
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    assert hub.proxied == []
    first = _cli(
        tmp_path,
        {**base, "HF_ENDPOINT": hub.url, "BREASTAI_HOME": str(tmp_path / "home1")},
        "rel-tumor",
        "--weights-file",
        str(wf),
    )
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "home1" / "models" / "rel-tumor" / "tumor.onnx").read_bytes() == PAYLOAD
    assert list((tmp_path / "hf-home" / "hub").glob("models--breastai-test--models"))
    n_requests = len(hub.log)
    # offline, fresh BREASTAI_HOME: served from the Hugging Face cache, no request made
    t0 = time.monotonic()
    offline = _cli(
        tmp_path,
        {
            **base,
            "HF_HUB_OFFLINE": "1",
            "HF_ENDPOINT": hub.url,
            "BREASTAI_HOME": str(tmp_path / "home2"),
        },
        "rel-tumor",
        "--weights-file",
        str(wf),
    )
    assert offline.returncode == 0, offline.stderr
    assert len(hub.log) == n_requests and time.monotonic() - t0 < 60
    assert (tmp_path / "home2" / "models" / "rel-tumor" / "tumor.onnx").read_bytes() == PAYLOAD
    # offline with an empty cache: one line that names the offline alternative
    empty = _cli(
        tmp_path,
        {
            **base,
            "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(tmp_path / "empty-hf"),
            "BREASTAI_HOME": str(tmp_path / "home3"),
        },
        "rel-tumor",
        "--weights-file",
        str(wf),
    )
    assert empty.returncode == 1
    assert empty.stderr.strip().count("\n") == 0, empty.stderr
    assert "HF_HUB_OFFLINE" in empty.stderr and "--from" in empty.stderr
    assert "Traceback" not in empty.stderr


def test_proxy_variables_are_honoured(hub: FakeHub, tmp_path: Path) -> None:
    """HTTP_PROXY routes the download: the endpoint's host does not resolve, the proxy answers."""
    wf = _weights_file(tmp_path)
    res = _cli(
        tmp_path,
        {
            "HF_ENDPOINT": "http://hub.invalid",
            "HTTP_PROXY": hub.url,
            "HF_HOME": str(tmp_path / "hf-home"),
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "BREASTAI_HOME": str(tmp_path / "home"),
        },
        "rel-tumor",
        "--weights-file",
        str(wf),
    )
    assert res.returncode == 0, res.stderr
    assert hub.proxied and all(u.startswith("http://hub.invalid/") for u in hub.proxied)
    assert (tmp_path / "home" / "models" / "rel-tumor" / "tumor.onnx").read_bytes() == PAYLOAD
