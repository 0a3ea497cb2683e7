"""What this machine offers for inference, and why CUDA is or is not used (``breastai doctor``).

:func:`diagnose` returns a :class:`SystemReport`: the ONNX Runtime package and the CUDA version
it was built for, its execution providers, OpenVINO, the NVIDIA GPUs and driver, which CUDA and
cuDNN runtime libraries the dynamic loader finds, the CPU's vector features (AVX2, AVX-512,
bfloat16, AMX) and one sentence saying whether a CUDA session can be created and, if not, why.

:func:`preload_cuda_libraries` loads the CUDA/cuDNN libraries installed as pip packages (the
``[cuda]`` extra: ``nvidia-*`` wheels) before an ONNX Runtime CUDA session is created, through
``onnxruntime.preload_dlls`` where this ONNX Runtime has it. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata as md
import io
import logging
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CUDA_LIBRARIES", "SystemReport", "cpu_features", "diagnose", "preload_cuda_libraries"]

log = logging.getLogger(__name__)

#: Shared libraries ONNX Runtime's CUDA provider loads (Linux names; ``{cuda}`` = CUDA major).
CUDA_LIBRARIES = (
    "libcudart.so.{cuda}",
    "libcublasLt.so.{cuda}",
    "libcublas.so.{cuda}",
    "libcurand.so.10",
    "libcufft.so.{cufft}",
    "libcudnn.so.9",
)

_PRELOADED: list[str] | None = None


def _ort() -> Any | None:
    try:
        import onnxruntime as ort
    except Exception:  # a broken install counts as absent
        return None
    return ort


def preload_cuda_libraries() -> list[str]:
    """Load the CUDA/cuDNN libraries of the ``nvidia-*`` pip packages (once per process).

    Returns
    -------
    list of str
        The notes of the attempt: empty when there was nothing to do (no CUDA build of ONNX
        Runtime, or no ``preload_dlls``); otherwise what ``onnxruntime.preload_dlls`` reported.
    """
    global _PRELOADED
    if _PRELOADED is not None:
        return _PRELOADED
    ort = _ort()
    notes: list[str] = []
    if ort is not None and hasattr(ort, "preload_dlls") and getattr(ort, "cuda_version", None):
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                ort.preload_dlls()
        except Exception as exc:  # missing libraries are reported by diagnose(), not raised
            notes.append(f"preload_dlls failed: {type(exc).__name__}: {exc}")
        notes.extend(line.strip() for line in buf.getvalue().splitlines() if line.strip())
        for note in notes:
            log.debug("CUDA preload: %s", note)
    _PRELOADED = notes
    return notes


def cpu_features() -> dict[str, Any]:
    """The CPU's model name, logical cores and the vector features inference cares about."""
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags" and not flags:
                flags = set(value.split())
            elif key.strip() == "model name":
                model = value.strip()
    return {
        "model": model,
        "logical_cores": os.cpu_count() or 1,
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "bf16": "avx512_bf16" in flags or "amx_bf16" in flags,
    }


def _gpus() -> tuple[list[str], str]:
    """(GPU descriptions, driver note) from nvidia-smi, else from the driver library."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
            lines = [line.strip() for line in out.stdout.splitlines() if line.strip()]
            if out.returncode == 0:
                return lines, "nvidia-smi"
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return [], "no NVIDIA driver (libcuda.so.1 not found)"
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return [], "NVIDIA driver found but it reports no usable GPU"
    return [f"GPU {i}" for i in range(count.value)], "libcuda.so.1"


def _library_names(cuda_version: str | None) -> list[str]:
    major = (cuda_version or "12").split(".")[0]
    cufft = {"12": "11", "13": "12"}.get(major, "12")
    return [n.format(cuda=major, cufft=cufft) for n in CUDA_LIBRARIES]


def _find_library(name: str) -> str | None:
    """Where the dynamic loader finds ``name`` (already loaded counts), or None."""
    try:
        handle = ctypes.CDLL(name)
    except OSError:
        return None
    with contextlib.suppress(Exception):
        dl_info = _dl_path(handle)
        if dl_info:
            return dl_info
    return name


def _dl_path(handle: ctypes.CDLL) -> str | None:
    """Path of a loaded library, read from /proc/self/maps (Linux)."""
    stem = Path(handle._name).name
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/maps").read_text().splitlines():
            path = line.split()[-1] if line.split() else ""
            if path.endswith(stem) or Path(path).name.startswith(stem):
                return path
    return None


@dataclass
class SystemReport:
    """What :func:`diagnose` found (``to_dict`` for JSON)."""

    breastai: str
    python: str
    platform: str
    onnxruntime: str | None
    onnxruntime_package: str | None
    onnxruntime_cuda_build: str | None
    providers: list[str]
    openvino: str | None
    gpus: list[str]
    gpu_source: str
    cuda_libraries: dict[str, str | None]
    cpu: dict[str, Any]
    cuda_used: bool
    reason: str
    preload_notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _version(*names: str) -> tuple[str | None, str | None]:
    for name in names:
        with contextlib.suppress(md.PackageNotFoundError):
            return md.version(name), name
    return None, None


def _cuda_session(ort: Any) -> tuple[bool, str]:
    """Create a CUDA session on the bundled breast model: (on CUDA, error text)."""
    from breastai.weights import bundled_models_dir

    models = sorted(bundled_models_dir().glob("*.onnx"))
    if not models:
        return False, "no bundled model to test a session with"
    ort.set_default_logger_severity(4)
    try:
        sess = ort.InferenceSession(
            str(models[0]), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
        )
        return sess.get_providers()[0] == "CUDAExecutionProvider", ""
    except Exception as exc:
        return False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        ort.set_default_logger_severity(2)


def diagnose(*, try_session: bool = True) -> SystemReport:
    """Inspect the inference runtime, GPU, CUDA/cuDNN libraries and CPU.

    Parameters
    ----------
    try_session:
        Create a CUDA session on the bundled breast model when the CUDA provider, a driver and
        the libraries are present (the only proof that ``segment`` will run on the GPU).

    Returns
    -------
    SystemReport
        Everything found, with ``cuda_used`` and the ``reason`` in one sentence.
    """
    from breastai import __version__

    ort = _ort()
    ort_version, ort_package = _version("onnxruntime-gpu", "onnxruntime")
    if ort is not None:
        ort_version = ort.__version__
    cuda_build = getattr(ort, "cuda_version", None) if ort is not None else None
    providers = list(ort.get_available_providers()) if ort is not None else []
    openvino, _ = _version("openvino")
    preload = preload_cuda_libraries() if "CUDAExecutionProvider" in providers else []
    gpus, gpu_source = _gpus()
    libraries = {name: _find_library(name) for name in _library_names(cuda_build)}
    missing = [name for name, path in libraries.items() if path is None]
    cuda_used = False
    if ort is None:
        reason = "ONNX Runtime is not installed (pip install breastai)"
    elif "CUDAExecutionProvider" not in providers:
        reason = (
            f"this ONNX Runtime build ({ort_package} {ort_version}) has no CUDA provider: "
            "install onnxruntime-gpu (pip install 'breastai[cuda]')"
        )
    elif not gpus:
        reason = (
            f"CUDA is not used: {gpu_source}"
            if gpu_source != "nvidia-smi"
            else ("CUDA is not used: nvidia-smi lists no GPU")
        )
    elif missing:
        reason = (
            f"CUDA is not used: the loader does not find {', '.join(missing)}; install them "
            "with pip install 'breastai[cuda]' (CUDA and cuDNN runtime wheels)"
        )
    elif try_session:
        cuda_used, error = _cuda_session(ort)
        reason = (
            f"CUDA is used: a session on CUDAExecutionProvider was created ({gpus[0]})"
            if cuda_used
            else "CUDA is not used: ONNX Runtime could not create a CUDA session"
            + (f" ({error})" if error else " (it fell back to the CPU)")
        )
    else:
        reason = "CUDA should be usable (provider, GPU and libraries found; no session tried)"
    return SystemReport(
        breastai=__version__,
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.machine()}",
        onnxruntime=ort_version,
        onnxruntime_package=ort_package,
        onnxruntime_cuda_build=cuda_build,
        providers=providers,
        openvino=openvino,
        gpus=gpus,
        gpu_source=gpu_source,
        cuda_libraries=libraries,
        cpu=cpu_features(),
        cuda_used=cuda_used,
        reason=reason,
        preload_notes=preload,
    )
