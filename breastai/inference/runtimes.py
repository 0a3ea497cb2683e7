"""Model sessions: ONNX Runtime on CUDA or CPU, or OpenVINO on the CPU (:class:`OnnxModel`).

Axis contract: see :mod:`breastai.study`. :class:`OnnxModel` is the only stateful class of
:mod:`breastai.inference`; :meth:`OnnxModel.predictor` gives the ``predict`` callable of
:func:`breastai.inference.windowing.sliding_window` (binding the tumor model's ``time_mask``).

Runtimes (``runtime``): ONNX Runtime runs every model on CUDA or CPU. On the CPU, OpenVINO (the
optional ``openvino`` extra) runs the same ``.onnx`` files with the same masks, 1.2-1.4x faster
per study in float32 on 2 cores, and with ``precision="bf16"`` on a CPU with native bfloat16
(AVX512-BF16 or AMX) 1.9-2.2x faster, with slightly different probabilities (bench/RESULTS.md).
``runtime="auto"`` uses CUDA when a session really gets it, else OpenVINO when installed, else
ONNX Runtime's CPU provider; the choice is reported in ``OnnxModel.provider``.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastai.choices import Precision, Runtime, parse_choice, values
from breastai.errors import DeviceUnavailableError, ParameterError, WeightsError
from breastai.inference.windowing import Predict

__all__ = [
    "CUDNN_CONV_ALGO_SEARCH",
    "OPENVINO_CPU",
    "PRECISIONS",
    "RUNTIMES",
    "OnnxModel",
    "check_runtime_options",
    "cpu_only_options",
    "default_threads",
    "openvino_available",
    "openvino_bf16_available",
    "parse_device",
    "parse_precision",
    "parse_runtime",
]

log = logging.getLogger(__name__)

#: ``runtime`` values of :class:`OnnxModel`.
RUNTIMES = values(Runtime)
#: ``precision`` values of :class:`OnnxModel` (``bf16`` only with OpenVINO on the CPU).
PRECISIONS = values(Precision)
#: :attr:`OnnxModel.provider` of a model running on OpenVINO's CPU plugin.
OPENVINO_CPU = "OpenVINO:CPU"

#: cuDNN convolution algorithm search used on CUDA. HEURISTIC picks kernels from cuDNN's
#: heuristics without benchmarking. EXHAUSTIVE benchmarks every algorithm for every 3-D conv shape
#: on the first run; with ~40 conv shapes of a 3-D U-Net that costs seconds in the warm-up, more
#: than a single-study run (goal <= 5 s per case) can amortise, and it must repeat for every new
#: batch shape (the last, partial batch). Cohort runs can choose EXHAUSTIVE via
#: ``OnnxModel(cudnn_conv_algo_search="EXHAUSTIVE")``; measure before switching the default.
CUDNN_CONV_ALGO_SEARCH = "HEURISTIC"


# ------------------------------------------------------------------------------ ONNX Runtime


def parse_device(device: str) -> tuple[str, int]:
    """Parse ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` into (kind, device id).

    Raises
    ------
    ParameterError
        Anything else.
    """
    d = device.strip().lower()
    if d in ("auto", "cpu", "cuda"):
        return d, 0
    if d.startswith("cuda:") and d[5:].isdigit():
        return "cuda", int(d[5:])
    raise ParameterError(
        f"--device must be auto, cpu, cuda or cuda:N (N a GPU index), got {device!r}."
    )


def parse_runtime(runtime: str | Runtime) -> str:
    """Check a ``runtime`` value (one of :data:`RUNTIMES`); ParameterError for anything else."""
    return parse_choice(Runtime, runtime, "--runtime").value


def parse_precision(precision: str | Precision) -> str:
    """Check a ``precision`` value (one of :data:`PRECISIONS`); ParameterError for anything else."""
    return parse_choice(Precision, precision, "--precision").value


def cpu_only_options(runtime: str, precision: str) -> str:
    """The options among ``runtime``/``precision`` that need OpenVINO on the CPU, as the user
    writes them (``"--runtime openvino with --precision bf16"``); ``""`` when there are none."""
    opts = []
    if runtime == "openvino":
        opts.append("--runtime openvino")
    if precision == "bf16":
        opts.append("--precision bf16")
    return " with ".join(opts)


def check_runtime_options(device: str, runtime: str, precision: str) -> tuple[str, int, str, str]:
    """Parse ``device``, ``runtime`` and ``precision`` together.

    Returns
    -------
    (kind, device id, runtime, precision)

    Raises
    ------
    ParameterError
        A bad value, or OpenVINO / bf16 (CPU only) with ``device="cuda[:N]"``.
    """
    kind, device_id = parse_device(device)
    runtime, precision = parse_runtime(runtime), parse_precision(precision)
    cpu_only = cpu_only_options(runtime, precision)
    if kind == "cuda" and cpu_only:
        raise ParameterError(
            f"{cpu_only} runs on the CPU only (OpenVINO), but --device {device} was given; use "
            "--device cpu, or leave the option out for CUDA."
        )
    return kind, device_id, runtime, precision


def _is_oom(exc: BaseException) -> bool:
    msg = str(exc).lower()
    return any(
        k in msg
        for k in (
            "out of memory",
            "failed to allocate",
            "bfcarena",
            "cudaerrormemoryallocation",
            "bad_alloc",
        )
    )


@dataclass(frozen=True)
class _Session:
    session: Any
    provider: str


@functools.cache
def openvino_available() -> bool:
    """Whether the optional OpenVINO runtime (``pip install 'breastai[openvino]'``) is installed
    and imports (a broken install counts as absent: ``auto`` then uses ONNX Runtime)."""
    try:
        import openvino  # noqa: F401
    except Exception:  # ImportError, or a native library that fails to load
        return False
    return True


def _openvino_cpu_capabilities(core: Any) -> list[str]:
    """OpenVINO's CPU plugin capabilities (``FP32``, ``BF16``, ``INT8``, ...)."""
    return [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


@functools.cache
def openvino_bf16_available() -> bool:
    """Whether ``precision="bf16"`` can run here: OpenVINO installed, CPU with native bfloat16."""
    if not openvino_available():
        return False
    import openvino as ov

    return "BF16" in _openvino_cpu_capabilities(ov.Core())


@dataclass(frozen=True)
class _Port:
    """Name and shape of a model input or output (ONNX Runtime's NodeArg has the same two)."""

    name: str
    shape: tuple[int | str, ...]


class _OpenVinoSession:
    """An OpenVINO CPU model with the three methods of an ONNX Runtime session that breastai uses
    (``get_inputs``, ``get_outputs``, ``run``), so :class:`OnnxModel` treats both alike.

    Raises
    ------
    WeightsError
        OpenVINO cannot read or compile the file.
    DeviceUnavailableError
        ``bf16`` was asked for on a CPU without native bfloat16.
    """

    def __init__(self, path: Path, *, threads: int, precision: str) -> None:
        import importlib.metadata as md

        import openvino as ov

        core = ov.Core()
        if precision == "bf16":
            caps = _openvino_cpu_capabilities(core)
            if "BF16" not in caps:
                raise DeviceUnavailableError(
                    "--precision bf16 needs a CPU with native bfloat16 (AVX512-BF16 or AMX); "
                    f"this CPU offers {', '.join(caps) or 'none'}; use --precision fp32."
                )
        # f32 is set explicitly: on bf16-capable CPUs OpenVINO would otherwise default to bf16.
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self._compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise WeightsError(
                f"OpenVINO could not load {path.name}: {str(exc).strip().splitlines()[0][:300]} "
                "(re-download or re-export the model, or use --runtime onnxruntime)."
            ) from exc
        self._request = self._compiled.create_infer_request()
        self._outputs = {o.get_any_name(): o for o in self._compiled.outputs}
        try:
            self.version = md.version("openvino")
        except md.PackageNotFoundError:
            self.version = str(ov.get_version())

    @staticmethod
    def _port(port: Any) -> _Port:
        dims = tuple(int(d.get_length()) if d.is_static else "?" for d in port.get_partial_shape())
        return _Port(port.get_any_name(), dims)

    def get_inputs(self) -> list[_Port]:
        return [self._port(i) for i in self._compiled.inputs]

    def get_outputs(self) -> list[_Port]:
        return [self._port(o) for o in self._compiled.outputs]

    def run(self, names: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        res = self._request.infer({k: np.ascontiguousarray(v) for k, v in feed.items()})
        return [np.array(res[self._outputs[n]], dtype=np.float32, copy=True) for n in names]


class OnnxModel:
    """One model on CUDA (ONNX Runtime) or the CPU (OpenVINO or ONNX Runtime), with CPU fallback and
    out-of-memory retries.

    Parameters
    ----------
    path:
        The ``.onnx`` file.
    device:
        ``"auto"`` (CUDA if a session really gets the CUDA provider, else CPU with a notice),
        ``"cpu"``, or ``"cuda"`` / ``"cuda:N"`` (an error when CUDA cannot be used).
    threads:
        CPU threads (0 = the runtime's default, one per physical core).
    runtime:
        ``"auto"`` (ONNX Runtime on CUDA; on the CPU OpenVINO when installed, else ONNX Runtime),
        ``"onnxruntime"`` or ``"openvino"`` (CPU only; an error when it is not installed).
    precision:
        ``"fp32"`` (default) or ``"bf16"``: OpenVINO on a CPU with native bfloat16 only (about
        3x faster; probabilities differ by up to a few 1e-2, see bench/RESULTS.md). ``bf16``
        implies the CPU, also with ``device="auto"`` (a notice says so).
    cudnn_conv_algo_search:
        ``"HEURISTIC"`` (default, see :data:`CUDNN_CONV_ALGO_SEARCH`), ``"EXHAUSTIVE"`` or
        ``"DEFAULT"``.
    warmup:
        Optional input feed for one warm-up run on CUDA (cuDNN picks its kernels then); ignored on
        CPU, where a warm-up would only cost one window of compute.
    cpu_mem_arena:
        Keep ONNX Runtime's CPU memory arena (default). ``False`` returns the memory of each run
        to the system, for a model run once on a large input (the tumor encoder of
        :func:`sliding_window_features`) whose peak should not stay allocated afterwards.

    Attributes
    ----------
    provider:
        ``"CUDAExecutionProvider"``, ``"CPUExecutionProvider"`` or :data:`OPENVINO_CPU`: what the
        session really got.
    notices:
        One-line notices for the user (CPU fallback, batch reductions); the library never prints.
    max_batch:
        Largest batch that is run in one call (halved after a GPU out-of-memory error).

    Raises
    ------
    DeviceUnavailableError
        ``cuda`` was requested and ONNX Runtime could not create a CUDA session; OpenVINO was
        requested and is not installed; ``bf16`` on a CPU without native bfloat16.
    WeightsError
        The file cannot be loaded as an ONNX model.
    ParameterError
        A bad ``device``, ``runtime`` or ``precision``, or OpenVINO / bf16 with ``device="cuda"``.
    """

    def __init__(
        self,
        path: Path,
        *,
        device: str = "auto",
        threads: int = 0,
        runtime: str = "auto",
        precision: str = "fp32",
        cudnn_conv_algo_search: str = CUDNN_CONV_ALGO_SEARCH,
        warmup: Mapping[str, np.ndarray] | None = None,
        cpu_mem_arena: bool = True,
    ) -> None:
        self.path = Path(path)
        self.cpu_mem_arena = bool(cpu_mem_arena)
        self.kind, self.device_id, self.runtime_choice, self.precision = check_runtime_options(
            device, runtime, precision
        )
        self.threads = int(threads)
        self.cudnn_conv_algo_search = cudnn_conv_algo_search.upper()
        if self.cudnn_conv_algo_search not in ("HEURISTIC", "EXHAUSTIVE", "DEFAULT"):
            raise ParameterError(
                f"cudnn_conv_algo_search must be HEURISTIC, EXHAUSTIVE or DEFAULT, got "
                f"{cudnn_conv_algo_search!r}."
            )
        self.notices: list[str] = []
        self.max_batch: int | None = None
        self.warmup_s: float | None = None
        self._s = self._create()
        inputs = self._s.session.get_inputs()
        self.input_names: tuple[str, ...] = tuple(i.name for i in inputs)
        self.input_shapes: tuple[tuple[Any, ...], ...] = tuple(tuple(i.shape) for i in inputs)
        outputs = self._s.session.get_outputs()
        self.output_names: tuple[str, ...] = tuple(o.name for o in outputs)
        self.output_name: str = outputs[0].name
        if warmup is not None and self.on_gpu:
            t0 = time.perf_counter()
            self.run(warmup)
            self.warmup_s = time.perf_counter() - t0

    # -- session creation
    @property
    def provider(self) -> str:
        """The execution provider the session really runs on."""
        return self._s.provider

    @property
    def device(self) -> str:
        """``"cuda:N"`` or ``"cpu"``."""
        return f"cuda:{self.device_id}" if self.on_gpu else "cpu"

    @property
    def on_gpu(self) -> bool:
        """Whether the session runs on a CUDA GPU."""
        return self.provider == "CUDAExecutionProvider"

    @property
    def runtime(self) -> str:
        """``"onnxruntime"`` or ``"openvino"``: what runs the model."""
        return "openvino" if self.provider == OPENVINO_CPU else "onnxruntime"

    @property
    def runtime_version(self) -> str:
        """Version of the runtime that runs the model."""
        if isinstance(self._s.session, _OpenVinoSession):
            return self._s.session.version
        import onnxruntime as ort

        return str(ort.__version__)

    def _options(self) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.enable_cpu_mem_arena = self.cpu_mem_arena
        so.log_severity_level = 3
        return so

    def _create_session(self, providers: list[Any]) -> Any:
        import onnxruntime as ort

        if not self.path.is_file():
            raise WeightsError(f"Model file {self.path} does not exist.")
        # A failing CUDA provider logs multi-line errors on stderr from C++; silence them while
        # the session is created (the outcome is read from get_providers() and reported).
        ort.set_default_logger_severity(4)
        try:
            return ort.InferenceSession(str(self.path), self._options(), providers=providers)
        except Exception as exc:  # ORT raises its own pybind exception types
            raise WeightsError(
                f"ONNX Runtime could not load {self.path.name}: {str(exc).splitlines()[0]} "
                "(re-download or re-export the model)."
            ) from exc
        finally:
            ort.set_default_logger_severity(2)

    def _cpu_only(self) -> str:
        return cpu_only_options(self.runtime_choice, self.precision)

    def _create_cpu(self) -> _Session:
        """The CPU session: OpenVINO when asked for (or installed, under ``auto``), else ORT."""
        ov = bool(self._cpu_only())
        if ov and not openvino_available():
            raise DeviceUnavailableError(
                f"{self._cpu_only()} needs OpenVINO, which is not installed; install it with "
                "pip install 'breastai[openvino]', or leave the option out (ONNX Runtime, fp32)."
            )
        if ov or (self.runtime_choice == "auto" and openvino_available()):
            if not self.path.is_file():
                raise WeightsError(f"Model file {self.path} does not exist.")
            sess = _OpenVinoSession(self.path, threads=self.threads, precision=self.precision)
            return _Session(sess, OPENVINO_CPU)
        return _Session(self._create_session(["CPUExecutionProvider"]), "CPUExecutionProvider")

    def _create(self) -> _Session:
        import onnxruntime as ort

        cpu = ["CPUExecutionProvider"]
        if self.kind == "cpu":
            return self._create_cpu()
        if self._cpu_only():
            if self.kind == "auto":
                self.notices.append(
                    f"Running on the CPU: {self._cpu_only()} runs there only (OpenVINO)."
                )
            return self._create_cpu()
        available = ort.get_available_providers()
        reason = ""
        if "CUDAExecutionProvider" in available:
            from breastai.system import preload_cuda_libraries

            preload_cuda_libraries()  # CUDA/cuDNN pip wheels ([cuda] extra) before the session
            cuda_opts = {
                "device_id": self.device_id,
                "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
            }
            sess = self._create_session([("CUDAExecutionProvider", cuda_opts), *cpu])
            # get_available_providers() lists CUDA whenever the GPU build is installed; only the
            # created session tells whether a GPU and the CUDA/cuDNN libraries were usable.
            if sess.get_providers()[0] == "CUDAExecutionProvider":
                return _Session(sess, "CUDAExecutionProvider")
            reason = "no usable CUDA GPU (no device, or the CUDA/cuDNN libraries are missing)"
        else:
            sess = None
            reason = (
                f"this ONNX Runtime build has no CUDA support (providers: {', '.join(available)})"
            )
        if self.kind == "cuda":
            raise DeviceUnavailableError(
                f"--device cuda:{self.device_id} was requested but ONNX Runtime found {reason}; "
                "use --device cpu or --device auto."
            )
        self.notices.append(f"Running on CPU: {reason}.")
        if sess is not None and not (self.runtime_choice == "auto" and openvino_available()):
            return _Session(sess, "CPUExecutionProvider")  # the probe session already runs on CPU
        del sess  # free the probe session before OpenVINO loads the model (peak memory)
        return self._create_cpu()

    def _fallback_to_cpu(self, why: str) -> None:
        self._s = self._create_cpu()
        self.notices.append(f"Continued on CPU: {why}.")
        log.warning("OnnxModel %s: continued on CPU: %s", self.path.name, why)

    def _runtime_name(self) -> str:
        return "OpenVINO" if self.runtime == "openvino" else "ONNX Runtime"

    # -- running
    def _run_once(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        out = self._s.session.run([self.output_name], dict(feed))
        return np.asarray(out[0], dtype=np.float32)

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        """Run the model on one feed; split the batch (axis 0 of every input) on GPU OOM.

        Parameters
        ----------
        feed:
            Input name -> array; every input has the batch on axis 0.

        Returns
        -------
        numpy.ndarray
            The first output (``probability``), float32.
        """
        n = int(next(iter(feed.values())).shape[0])
        limit = self.max_batch or n
        if n > limit:
            parts = [
                self.run({k: v[i : i + limit] for k, v in feed.items()}) for i in range(0, n, limit)
            ]
            return np.concatenate(parts, axis=0)
        try:
            return self._run_once(feed)
        except Exception as exc:  # ORT raises its own pybind exception types
            if not _is_oom(exc):
                shapes = {k: tuple(v.shape) for k, v in feed.items()}
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                raise WeightsError(
                    f"{self._runtime_name()} could not run {self.path.name} on inputs {shapes} "
                    f"({first}); check that the model card's patch size and phase slots match "
                    "this model."
                ) from exc
            if n > 1:
                self.max_batch = max(1, n // 2)
                self.notices.append(
                    f"GPU out of memory with {n} windows per batch; retrying with {self.max_batch}."
                )
                log.warning("OnnxModel %s: out of memory at batch %d", self.path.name, n)
                return self.run(feed)
            if self.on_gpu:
                self._fallback_to_cpu("GPU out of memory with one window per batch")
                return self._run_once(feed)
            raise DeviceUnavailableError(
                f"Out of memory running {self.path.name} on the CPU with one window of "
                f"{tuple(next(iter(feed.values())).shape)}; close other programs or use a "
                "machine with more memory."
            ) from exc

    def predictor(self, *, time_mask: np.ndarray | None = None) -> Predict:
        """A ``predict`` callable for :func:`sliding_window`.

        Parameters
        ----------
        time_mask:
            ``(S,)`` time mask for a two-input tumor model (``phases``, ``time_mask``); it is
            repeated for every window of a batch. ``None`` for a single-input model.

        Raises
        ------
        WeightsError
            The model's inputs do not match (one input, or ``phases`` + ``time_mask``).
        """
        names = self.input_names
        if time_mask is None:
            if len(names) != 1:
                raise WeightsError(
                    f"{self.path.name} has inputs {list(names)}; a single-input model (image) "
                    "was expected here."
                )
            name = names[0]
            return lambda batch: self.run({name: batch})
        if set(names) != {"phases", "time_mask"}:
            raise WeightsError(
                f"{self.path.name} has inputs {list(names)}; the tumor model must take "
                "'phases' and 'time_mask' (see the model I/O contract)."
            )
        tm = np.asarray(time_mask, dtype=np.float32).reshape(1, -1)

        def predict(batch: np.ndarray) -> np.ndarray:
            return self.run({"phases": batch, "time_mask": np.repeat(tm, batch.shape[0], axis=0)})

        return predict

    def run_named(
        self, feed: Mapping[str, np.ndarray], names: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Run the model once and return the named outputs (no batch splitting).

        Parameters
        ----------
        feed:
            Input name -> array.
        names:
            Output names to compute (ONNX Runtime skips work needed only by other outputs).

        Returns
        -------
        dict
            Output name -> float32 array.

        Raises
        ------
        WeightsError
            ONNX Runtime failed (wrong input sizes, unknown output names).
        DeviceUnavailableError
            Out of memory (lower ``max_block_voxels`` of :func:`sliding_window_features`).
        """
        try:
            out = self._s.session.run(list(names), dict(feed))
        except Exception as exc:  # ORT raises its own pybind exception types
            shapes = {k: tuple(v.shape) for k, v in feed.items()}
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            if _is_oom(exc):
                raise DeviceUnavailableError(
                    f"Out of memory running {self.path.name} on inputs {shapes} on "
                    f"{self.device}; use smaller encoder blocks or per-window inference."
                ) from exc
            raise WeightsError(
                f"{self._runtime_name()} could not run {self.path.name} on inputs {shapes} "
                f"({first}); check that the model files belong together and match the model card."
            ) from exc
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(names, out, strict=True)}


def default_threads() -> int:
    """CPU threads for inference: ``$BREASTAI_THREADS`` if set, else 0 (ONNX Runtime decides)."""
    v = os.environ.get("BREASTAI_THREADS", "")
    return int(v) if v.isdigit() else 0
