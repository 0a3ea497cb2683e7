"""Model execution, in three modules with one job each:

- :mod:`breastai.inference.windowing`: the pure sliding window (window placement, blending,
  accumulation). No session, no I/O: ``predict`` is a callable, numpy in, numpy out.
- :mod:`breastai.inference.runtimes`: :class:`OnnxModel`, the model session (ONNX Runtime on CUDA
  or CPU, or OpenVINO on the CPU), and the checks of ``device`` / ``runtime`` / ``precision``.
- :mod:`breastai.inference.experimental_reuse`: EXPERIMENTAL encoder-feature reuse for the seed
  tumor network (used only by ``bench/segment.py`` and the tests, not by ``segment``).

The names below are re-exported so that ``from breastai.inference import X`` keeps working.
Axis contract: see :mod:`breastai.study`.
"""

from __future__ import annotations

from breastai.errors import DeviceUnavailableError
from breastai.inference.experimental_reuse import (
    ENCODER_BLOCK_VOXELS,
    ENCODER_HALO,
    FEATURE_ALIGN,
    EncodeFn,
    FeatureGrid,
    HeadFn,
    feature_grid,
    feature_predictors,
    sliding_window_features,
)
from breastai.inference.runtimes import (
    CUDNN_CONV_ALGO_SEARCH,
    OPENVINO_CPU,
    PRECISIONS,
    RUNTIMES,
    OnnxModel,
    check_runtime_options,
    cpu_only_options,
    default_threads,
    openvino_available,
    openvino_bf16_available,
    parse_device,
    parse_precision,
    parse_runtime,
)
from breastai.inference.windowing import (
    BLEND_MODES,
    Predict,
    Roi,
    gaussian_weights,
    n_windows,
    sliding_window,
    window_starts,
)

__all__ = [
    "BLEND_MODES",
    "CUDNN_CONV_ALGO_SEARCH",
    "ENCODER_BLOCK_VOXELS",
    "ENCODER_HALO",
    "FEATURE_ALIGN",
    "OPENVINO_CPU",
    "PRECISIONS",
    "RUNTIMES",
    "DeviceUnavailableError",
    "EncodeFn",
    "FeatureGrid",
    "HeadFn",
    "OnnxModel",
    "Predict",
    "Roi",
    "check_runtime_options",
    "cpu_only_options",
    "default_threads",
    "feature_grid",
    "feature_predictors",
    "gaussian_weights",
    "n_windows",
    "openvino_available",
    "openvino_bf16_available",
    "parse_device",
    "parse_precision",
    "parse_runtime",
    "sliding_window",
    "sliding_window_features",
    "window_starts",
]
