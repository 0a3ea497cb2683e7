"""Model execution: the model session (ONNX Runtime on CUDA or CPU, or OpenVINO on the CPU) and the
pure sliding-window function.

Axis contract: see :mod:`breastai.study`. A window batch is ``(B, C, D, H, W)`` for single-input
models (breast: ``image``) and ``(B, S, C, D, H, W)`` for the tumor model (``phases``, plus a
``time_mask`` ``(B, S)`` bound by :meth:`OnnxModel.predictor`); the output is ``probability``
``(B, 1, D, H, W)``.

:func:`sliding_window` never sees a session: it takes a ``predict`` callable (numpy in, numpy out),
so it is tested with plain functions. :class:`OnnxModel` is the only stateful class.

Runtimes (``runtime``): ONNX Runtime runs every model on CUDA or CPU. On the CPU, OpenVINO (the
optional ``openvino`` extra) runs the same ``.onnx`` files with the same masks, 1.2-1.4x faster
per study in float32 on 2 cores, and with ``precision="bf16"`` on a CPU with native bfloat16
(AVX512-BF16 or AMX) 1.9-2.2x faster, with slightly different probabilities (bench/RESULTS.md).
``runtime="auto"`` uses CUDA when a session really gets it, else OpenVINO when installed, else
ONNX Runtime's CPU provider; the choice is reported in ``OnnxModel.provider``.

:func:`sliding_window_features` is the encoder-feature-reuse variant for the seed tumor network
exported as two files (``breastai.training.export.export_feature_onnx``): the shared encoder runs
once per phase over the tiled region, each window's features are cut out of the feature maps and
only the head runs per window. Windows start on a 16-voxel grid (:func:`feature_grid`); results
differ from per-window inference near window borders (no zero padding inside the volume).

Blending modes (``blend``):

``vote``
    The seed model's released code: every window's probability is binarised at ``threshold``
    (``>=``), the binary windows are averaged over overlaps; the result is the vote fraction,
    which the caller thresholds with ``>`` (a tie is background, as in the released code).
``mean``
    Uniform average of the window probabilities.
``gaussian``
    nnU-Net-style importance weighting: each window's probabilities are weighted by a Gaussian
    centred on the window (sigma = 1/8 of the patch size per axis, peak 1) and normalised by the
    summed weights, so a constant predictor gives that constant everywhere.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastai.errors import DeviceUnavailableError, ParameterError, WeightsError

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

log = logging.getLogger(__name__)

BLEND_MODES = ("vote", "mean", "gaussian")
#: ``runtime`` values of :class:`OnnxModel`.
RUNTIMES = ("auto", "onnxruntime", "openvino")
#: ``precision`` values of :class:`OnnxModel` (``bf16`` only with OpenVINO on the CPU).
PRECISIONS = ("fp32", "bf16")
#: :attr:`OnnxModel.provider` of a model running on OpenVINO's CPU plugin.
OPENVINO_CPU = "OpenVINO:CPU"

#: cuDNN convolution algorithm search used on CUDA. HEURISTIC picks kernels from cuDNN's
#: heuristics without benchmarking. EXHAUSTIVE benchmarks every algorithm for every 3-D conv shape
#: on the first run; with ~40 conv shapes of a 3-D U-Net that costs seconds in the warm-up, more
#: than a single-study run (goal <= 5 s per case) can amortise, and it must repeat for every new
#: batch shape (the last, partial batch). Cohort runs can choose EXHAUSTIVE via
#: ``OnnxModel(cudnn_conv_algo_search="EXHAUSTIVE")``; measure before switching the default.
CUDNN_CONV_ALGO_SEARCH = "HEURISTIC"

Predict = Callable[[np.ndarray], np.ndarray]
#: A region of interest: ((z0, z1), (y0, y1), (x0, x1)) half-open voxel index ranges.
Roi = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


# ------------------------------------------------------------------------------ sliding window


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start indices of windows along one axis: every ``stride``, plus one flush with the end.

    Parameters
    ----------
    size:
        Length of the (padded) axis; if ``size <= patch`` there is one window at 0.
    patch, stride:
        Window length and step (``0 < stride``).

    Returns
    -------
    list of int
        Increasing starts; the last window ends exactly at ``size`` (when ``size >= patch``).
    """
    if patch <= 0 or stride <= 0:
        raise ParameterError(f"patch and stride must be positive, got {patch} and {stride}.")
    if size <= patch:
        return [0]
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def gaussian_weights(patch_zyx: Sequence[int], sigma_scale: float = 1.0 / 8.0) -> np.ndarray:
    """nnU-Net-style Gaussian importance map of a window (peak 1, strictly positive).

    Parameters
    ----------
    patch_zyx:
        Window size ``(z, y, x)``.
    sigma_scale:
        Sigma per axis as a fraction of the window size.

    Returns
    -------
    numpy.ndarray
        float32 ``(z, y, x)`` weights, maximum 1 at the centre, minimum > 0.
    """
    w = np.ones((1, 1, 1), dtype=np.float64)
    for axis, p in enumerate(patch_zyx):
        c = (p - 1) / 2.0
        sigma = max(p * sigma_scale, 1e-6)
        g = np.exp(-((np.arange(p) - c) ** 2) / (2 * sigma**2))
        shape = [1, 1, 1]
        shape[axis] = p
        w = w * g.reshape(shape)
    w /= w.max()
    tiny = np.finfo(np.float32).tiny
    return np.maximum(w, tiny).astype(np.float32)


def _as_roi(roi: Roi | Sequence[slice] | None, shape: Sequence[int]) -> Roi | None:
    if roi is None:
        return None
    out: list[tuple[int, int]] = []
    for r, n in zip(roi, shape, strict=True):
        if isinstance(r, slice):
            lo, hi, _ = r.indices(n)
        else:
            lo, hi = (int(v) for v in r)  # type: ignore[attr-defined]
        out.append((max(0, lo), min(n, hi)))
    return (out[0], out[1], out[2])


def _crop_box(roi: Roi | None, shape: Sequence[int], patch: Sequence[int]) -> Roi:
    """The crop that is tiled: the roi, grown to at least a patch (inside the volume)."""
    box = roi if roi is not None else ((0, shape[0]), (0, shape[1]), (0, shape[2]))
    out: list[tuple[int, int]] = []
    for (lo, hi), n, p in zip(box, shape, patch, strict=True):
        if hi - lo < p:
            grow = min(p, n) - (hi - lo)
            lo = lo - grow // 2
            hi = hi + (grow - grow // 2)
            if lo < 0:
                hi, lo = hi - lo, 0
            if hi > n:
                lo, hi = max(0, lo - (hi - n)), n
        out.append((lo, hi))
    return (out[0], out[1], out[2])


def _windows(
    shape: Sequence[int], patch: Sequence[int], stride: Sequence[int]
) -> Iterator[tuple[int, int, int]]:
    zs = window_starts(shape[0], patch[0], stride[0])
    ys = window_starts(shape[1], patch[1], stride[1])
    xs = window_starts(shape[2], patch[2], stride[2])
    for z in zs:
        for y in ys:
            for x in xs:
                yield (z, y, x)


def n_windows(
    shape_zyx: Sequence[int],
    patch_zyx: Sequence[int],
    stride_zyx: Sequence[int],
    roi: Roi | Sequence[slice] | None = None,
) -> int:
    """Number of windows :func:`sliding_window` evaluates for this shape and roi."""
    box = _crop_box(_as_roi(roi, shape_zyx), shape_zyx, patch_zyx)
    sizes = [max(hi - lo, p) for (lo, hi), p in zip(box, patch_zyx, strict=True)]
    n = 1
    for s, p, st in zip(sizes, patch_zyx, stride_zyx, strict=True):
        n *= len(window_starts(s, p, st))
    return n


def _accumulate(
    acc: np.ndarray,
    wsum: np.ndarray,
    group: Sequence[tuple[int, int, int]],
    pred: np.ndarray,
    patch: Sequence[int],
    blend: str,
    threshold: float,
    weight: np.ndarray | None,
    what: str,
) -> None:
    """Check a batch of window outputs and add them (blended per ``blend``) into acc / wsum."""
    pz, py, px = patch
    if pred.shape == (len(group), 1, pz, py, px):
        pred = pred[:, 0]
    if pred.shape != (len(group), pz, py, px):
        raise ParameterError(
            f"{what} returned shape {pred.shape} for a batch of {len(group)} windows of "
            f"{tuple(patch)}; expected ({len(group)}, 1, {pz}, {py}, {px})."
        )
    if blend == "vote":
        pred = (pred >= threshold).astype(np.float32)
    for (z, y, x), p in zip(group, pred, strict=True):
        sl = (slice(z, z + pz), slice(y, y + py), slice(x, x + px))
        if weight is None:
            acc[sl] += p
            wsum[sl] += 1.0
        else:
            acc[sl] += p * weight
            wsum[sl] += weight


def sliding_window(
    volume: np.ndarray,
    predict: Predict,
    patch_zyx: Sequence[int],
    stride_zyx: Sequence[int],
    *,
    blend: str = "vote",
    batch_size: int = 1,
    roi: Roi | Sequence[slice] | None = None,
    threshold: float = 0.5,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Run ``predict`` over overlapping windows of a volume and blend the results.

    The volume is first cropped to ``roi`` (grown to at least one patch inside the volume), then
    padded with zeros (symmetrically) to at least one patch, then tiled with windows every
    ``stride`` plus one window flush with each far edge.

    Parameters
    ----------
    volume:
        ``(C, z, y, x)`` or ``(S, C, z, y, x)`` float32 model input (normalised).
    predict:
        Maps a window batch ``(B, *volume.shape[:-3], pz, py, px)`` to probabilities
        ``(B, 1, pz, py, px)`` or ``(B, pz, py, px)``.
    patch_zyx, stride_zyx:
        Window size and step in voxels.
    blend:
        ``"vote"``, ``"mean"`` or ``"gaussian"`` (see the module docstring).
    batch_size:
        Windows per ``predict`` call (the last batch may be smaller).
    roi:
        Optional bounding box ``((z0, z1), (y0, y1), (x0, x1))`` (half-open) or three slices:
        windows are only placed over it; the result is 0 outside it.
    threshold:
        Per-window binarisation threshold of ``vote`` (``>=``); unused otherwise.
    progress:
        Called with the fraction of windows done after each batch.

    Returns
    -------
    numpy.ndarray
        float32 ``(z, y, x)``: blended probability (``vote``: the fraction of windows voting
        foreground), 0 outside ``roi``.

    Raises
    ------
    ParameterError
        Bad shapes, blend mode, patch/stride or batch size; or ``predict`` returning a wrong shape.
    """
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim not in (4, 5):
        raise ParameterError(
            "sliding_window expects a (C, z, y, x) or (S, C, z, y, x) volume, "
            f"got shape {vol.shape}."
        )
    if blend not in BLEND_MODES:
        raise ParameterError(f"blend must be one of {BLEND_MODES}, got {blend!r}.")
    patch = tuple(int(p) for p in patch_zyx)
    stride = tuple(int(s) for s in stride_zyx)
    if len(patch) != 3 or len(stride) != 3 or min(patch) <= 0 or min(stride) <= 0:
        raise ParameterError(
            f"patch {patch_zyx!r} and stride {stride_zyx!r} must be 3 positive ints."
        )
    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1, got {batch_size}.")
    shape = vol.shape[-3:]
    out = np.zeros(shape, dtype=np.float32)
    roi_box = _as_roi(roi, shape)
    if roi_box is not None and any(hi <= lo for lo, hi in roi_box):
        return out  # empty roi: nothing to compute
    (z0, z1), (y0, y1), (x0, x1) = _crop_box(roi_box, shape, patch)
    crop = vol[..., z0:z1, y0:y1, x0:x1]
    pads = [
        (max(0, p - n) // 2, max(0, p - n) - max(0, p - n) // 2)
        for n, p in zip(crop.shape[-3:], patch, strict=True)
    ]
    lead = [(0, 0)] * (vol.ndim - 3)
    if any(a or b for a, b in pads):
        crop = np.pad(crop, lead + pads, mode="constant", constant_values=0.0)
    cshape = crop.shape[-3:]
    acc = np.zeros(cshape, dtype=np.float32)
    wsum = np.zeros(cshape, dtype=np.float32)
    weight = gaussian_weights(patch) if blend == "gaussian" else None
    starts = list(_windows(cshape, patch, stride))
    pz, py, px = patch
    done = 0
    for b0 in range(0, len(starts), batch_size):
        group = starts[b0 : b0 + batch_size]
        batch = np.stack([crop[..., z : z + pz, y : y + py, x : x + px] for z, y, x in group])
        pred = np.asarray(predict(batch), dtype=np.float32)
        _accumulate(acc, wsum, group, pred, patch, blend, threshold, weight, "predict")
        done += len(group)
        if progress is not None:
            progress(done / len(starts))
    blended = acc / np.maximum(wsum, np.finfo(np.float32).tiny)
    blended = blended[
        pads[0][0] : pads[0][0] + (z1 - z0),
        pads[1][0] : pads[1][0] + (y1 - y0),
        pads[2][0] : pads[2][0] + (x1 - x0),
    ]
    out[z0:z1, y0:y1, x0:x1] = blended
    if roi_box is not None:
        keep = np.zeros(shape, dtype=bool)
        (a0, a1), (b0_, b1), (c0, c1) = roi_box
        keep[a0:a1, b0_:b1, c0:c1] = True
        out[~keep] = 0.0
    return out


# ------------------------------------------------------------------ sliding window, feature reuse

#: Encoder features are cut out of whole-volume maps: window starts (and encoder blocks) must lie
#: on this grid (4 max-pool levels: 2**4) so that every window sees the pooling grid it would
#: see on its own.
FEATURE_ALIGN = 16
#: Default context (voxels, each side) around an encoder block: the bridge of the seed encoder
#: (4 levels + bridge, each a pair of 3x3x3 convolutions, max-pool 2) reaches 62 voxels beyond
#: its 16-voxel cell, so 64 (the next multiple of 16) reproduces the whole-region encoder exactly.
ENCODER_HALO = 64
#: Default largest encoder input (voxels, halo included) per call: bounds peak memory. The seed
#: encoder (filters 16) peaks at ~200 bytes per input voxel in ONNX Runtime on CPU (8 M voxels:
#: ~1.6 GB), and the kept feature maps of the skip slot take ~85 bytes per voxel.
ENCODER_BLOCK_VOXELS = 8_000_000

#: ``encode(pair, with_skips)``: ``pair`` ``(1, 2, Z, Y, X)`` = ``[P_i, P_i - P_0]`` -> mapping
#: with ``"bridge"`` ``(1, Cb, Z/16, Y/16, X/16)`` and, when ``with_skips``, ``"skip1"`` ..
#: ``"skip4"`` ``(1, C_k, Z/2**(k-1), ...)``.
EncodeFn = Callable[[np.ndarray, bool], Mapping[str, np.ndarray]]
#: ``head(feed)``: feed with ``"bridges"`` ``(B, S, Cb, bz, by, bx)``, ``"skip1"`` .. ``"skip4"``
#: ``(B, C_k, ...)`` (slot 2) and ``"time_mask"`` ``(B, S)`` -> probability ``(B, 1, pz, py, px)``.
HeadFn = Callable[[Mapping[str, np.ndarray]], np.ndarray]

_SKIPS = ("skip1", "skip2", "skip3", "skip4")


@dataclass(frozen=True)
class FeatureGrid:
    """Where :func:`sliding_window_features` places its windows.

    Attributes
    ----------
    box:
        The crop of :func:`sliding_window`: the roi grown to at least one patch inside the volume.
    extent:
        The tiled region ``((z0, z1), (y0, y1), (x0, x1))`` in volume indices: ``box`` grown
        (symmetrically, then shifted into the volume where possible) to ``patch + k * stride``
        on each axis; parts outside the volume (only when the volume is smaller) are zeros.
    stride_zyx:
        The stride used: the requested one rounded down to a multiple of 16 (at least 16).
    starts:
        Window starts per axis, relative to ``extent`` (multiples of 16).
    """

    box: Roi
    extent: Roi
    stride_zyx: tuple[int, int, int]
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]

    @property
    def n_windows(self) -> int:
        """Number of windows."""
        return len(self.starts[0]) * len(self.starts[1]) * len(self.starts[2])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Size of ``extent``."""
        (a, b), (c, d), (e, f) = self.extent
        return (b - a, d - c, f - e)


def feature_grid(
    shape_zyx: Sequence[int],
    patch_zyx: Sequence[int],
    stride_zyx: Sequence[int],
    roi: Roi | Sequence[slice] | None = None,
) -> FeatureGrid:
    """Window placement of :func:`sliding_window_features` (starts on the 16-voxel grid).

    :func:`sliding_window` puts its last window flush with the crop's far edge, which is rarely
    on the encoder's pooling grid. Here the crop is instead grown to ``patch + k * stride`` (the
    same window count when ``stride`` is a multiple of 16) by taking more of the volume around
    it (zeros only beyond the volume), so every window starts at a multiple of 16.

    Parameters
    ----------
    shape_zyx:
        Volume shape.
    patch_zyx, stride_zyx:
        Window size (multiples of 16) and requested step.
    roi:
        As in :func:`sliding_window`.

    Returns
    -------
    FeatureGrid

    Raises
    ------
    ParameterError
        A patch side not a multiple of 16, or non-positive sizes.
    """
    patch = tuple(int(p) for p in patch_zyx)
    stride_in = tuple(int(s) for s in stride_zyx)
    if len(patch) != 3 or len(stride_in) != 3 or min(patch) <= 0 or min(stride_in) <= 0:
        raise ParameterError(
            f"patch {patch_zyx!r} and stride {stride_zyx!r} must be 3 positive ints."
        )
    if any(p % FEATURE_ALIGN for p in patch):
        raise ParameterError(
            f"Encoder-feature reuse needs patch sides that are multiples of {FEATURE_ALIGN}, "
            f"got {patch}; use per-window inference for this model."
        )
    stride = tuple(max(FEATURE_ALIGN, s // FEATURE_ALIGN * FEATURE_ALIGN) for s in stride_in)
    shape = tuple(int(n) for n in shape_zyx)
    roi_box = _as_roi(roi, shape)
    if roi_box is not None and any(hi <= lo for lo, hi in roi_box):
        roi_box = None  # empty roi: nothing is computed; describe the whole-volume grid
    box = _crop_box(roi_box, shape, patch)
    extent: list[tuple[int, int]] = []
    starts: list[tuple[int, ...]] = []
    for (lo, hi), n, p, st in zip(box, shape, patch, stride, strict=True):
        size = max(hi - lo, p)
        count = 1 if size <= p else -(-(size - p) // st) + 1
        e = p + (count - 1) * st
        elo = lo - (e - (hi - lo)) // 2
        ehi = elo + e
        if ehi > n:
            d = min(ehi - n, max(0, elo))
            elo, ehi = elo - d, ehi - d
        if elo < 0:
            d = min(-elo, max(0, n - ehi))
            elo, ehi = elo + d, ehi + d
        extent.append((elo, ehi))
        starts.append(tuple(range(0, e - p + 1, st)))
    return FeatureGrid(
        box=box,
        extent=(extent[0], extent[1], extent[2]),
        stride_zyx=(stride[0], stride[1], stride[2]),
        starts=(starts[0], starts[1], starts[2]),
    )


def _region(vol: np.ndarray, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
    """``vol[..., lo:hi]`` over the last three axes, zeros where the range leaves the volume."""
    shape = vol.shape[-3:]
    src = [slice(max(0, a), min(n, b)) for a, b, n in zip(lo, hi, shape, strict=True)]
    whole: tuple[Any, ...] = (..., *src)
    if all(a >= 0 for a in lo) and all(b <= n for b, n in zip(hi, shape, strict=True)):
        inner: np.ndarray = vol[whole]
        return inner
    out = np.zeros((*vol.shape[:-3], *(b - a for a, b in zip(lo, hi, strict=True))), vol.dtype)
    if all(s.stop > s.start for s in src):
        dst: tuple[Any, ...] = (
            ...,
            *(slice(s.start - a, s.stop - a) for s, a in zip(src, lo, strict=True)),
        )
        out[dst] = vol[whole]
    return out


def _axis_blocks(size: int, parts: int, halo: int) -> list[tuple[int, int, int, int]]:
    """Split ``[0, size)`` (multiple of 16) into ``parts`` interiors aligned to 16, with halo.

    Returns ``(inner_lo, inner_hi, outer_lo, outer_hi)`` per block.
    """
    units = size // FEATURE_ALIGN
    per = -(-units // parts)
    out = []
    for u0 in range(0, units, per):
        lo, hi = u0 * FEATURE_ALIGN, min(units, u0 + per) * FEATURE_ALIGN
        out.append((lo, hi, max(0, lo - halo), min(size, hi + halo)))
    return out


def _encoder_blocks(
    shape: tuple[int, int, int], max_voxels: int | None, halo: int
) -> list[tuple[tuple[int, int, int, int], ...]]:
    """Encoder blocks: the split (up to 8 parts per axis) with the least total input volume
    (interiors + halos) whose largest block fits ``max_voxels``; if none fits, the split with
    the smallest largest block."""
    axes = [
        [_axis_blocks(n, k, halo) for k in range(1, min(8, n // FEATURE_ALIGN) + 1)] for n in shape
    ]
    best: tuple[tuple[int, int], list[list[tuple[int, int, int, int]]]] | None = None
    for bz in axes[0]:
        for by in axes[1]:
            for bx in axes[2]:
                sizes = [[o1 - o0 for _, _, o0, o1 in axis] for axis in (bz, by, bx)]
                biggest = math.prod(max(v) for v in sizes)
                total = math.prod(sum(v) for v in sizes)
                fits = max_voxels is None or biggest <= max_voxels
                key = (0, total) if fits else (1, biggest)
                if best is None or key < best[0]:
                    best = (key, [bz, by, bx])
    assert best is not None
    if best[0][0]:
        log.warning(
            "encoder blocks cannot be made smaller than %d voxels (limit %s)",
            best[0][1],
            max_voxels,
        )
    cz, cy, cx = best[1]
    return [(z, y, x) for z in cz for y in cy for x in cx]


def sliding_window_features(
    volume: np.ndarray,
    time_mask: np.ndarray,
    encode: EncodeFn,
    head: HeadFn,
    patch_zyx: Sequence[int],
    stride_zyx: Sequence[int],
    *,
    blend: str = "vote",
    batch_size: int = 1,
    roi: Roi | Sequence[slice] | None = None,
    threshold: float = 0.5,
    progress: Callable[[float], None] | None = None,
    skip_slot: int = 2,
    max_block_voxels: int | None = ENCODER_BLOCK_VOXELS,
    halo: int = ENCODER_HALO,
) -> np.ndarray:
    """Sliding-window inference of the seed tumor network with encoder features computed once.

    The shared encoder is convolutional, so instead of running it on every phase of every
    (overlapping) window, it runs once per phase over the tiled region (in blocks, see
    ``max_block_voxels``) and each window's features are cut out of the feature maps; only the
    head (patch embedding, transformers, decoder) runs per window. Conventions are those of
    :func:`sliding_window` (roi crop, blending, threshold, batch, progress), except the window
    placement (:func:`feature_grid`: starts on the 16-voxel grid, stride rounded down to a
    multiple of 16).

    Results differ from per-window inference near window borders: there the per-window
    encoder sees zero padding, here it sees the neighbouring voxels (bench/RESULTS.md,
    "seed-size encoder reuse", measures the difference). When one window covers the whole
    crop, the result equals :func:`sliding_window` (up to float rounding).

    Parameters
    ----------
    volume:
        ``(S, 1, z, y, x)`` or ``(S, z, y, x)`` float32: the assembled phase slots (slot 0 =
        pre-contrast).
    time_mask:
        ``(S,)``, 1 = phase present. Masked slots other than ``skip_slot`` are not encoded
        (their features are multiplied by 0 in the network: zeros are passed); slots identical
        to an earlier slot (absent phases filled with P1) reuse its features.
    encode:
        Encoder callable (:data:`EncodeFn`), e.g. from :func:`feature_predictors`.
    head:
        Head callable (:data:`HeadFn`).
    patch_zyx, stride_zyx:
        Window size (multiples of 16, the head's patch) and step.
    blend:
        ``"vote"``, ``"mean"`` or ``"gaussian"`` (see the module docstring).
    batch_size:
        Windows per ``head`` call.
    roi:
        Optional bounding box (as in :func:`sliding_window`); the result is 0 outside it.
    threshold:
        Per-window binarisation threshold of ``vote`` (``>=``).
    progress:
        Called with the fraction done (encoder: first half, windows: second half).
    skip_slot:
        The slot whose encoder levels feed the decoder's skip connections (2 in the seed
        network); only this slot's full-resolution features are kept.
    max_block_voxels:
        Largest encoder input per call (halo included); the tiled region is split into blocks
        aligned to 16 when it is larger (``None``: one call per phase, whatever the size).
    halo:
        Context voxels on each side of an interior block boundary (rounded up to a multiple of
        16); with the default (>= the receptive radius) blocks change nothing; less is faster
        and differs near block boundaries.

    Returns
    -------
    numpy.ndarray
        float32 ``(z, y, x)`` as :func:`sliding_window`.

    Raises
    ------
    ParameterError
        Bad shapes, blend mode, patch/stride, batch size or time mask, or callables returning
        wrong shapes.
    """
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim == 5:
        if vol.shape[1] != 1:
            raise ParameterError(f"expected one channel per phase slot, got shape {vol.shape}.")
        vol = vol[:, 0]
    if vol.ndim != 4:
        raise ParameterError(
            f"sliding_window_features expects a (S, 1, z, y, x) volume, got shape {vol.shape}."
        )
    n_slots = vol.shape[0]
    tm = np.asarray(time_mask, dtype=np.float32).reshape(-1)
    if tm.shape != (n_slots,) or not 0 <= skip_slot < n_slots:
        raise ParameterError(
            f"time_mask has shape {tm.shape} for {n_slots} phase slots (skip slot {skip_slot})."
        )
    if blend not in BLEND_MODES:
        raise ParameterError(f"blend must be one of {BLEND_MODES}, got {blend!r}.")
    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1, got {batch_size}.")
    shape = vol.shape[-3:]
    out = np.zeros(shape, dtype=np.float32)
    grid = feature_grid(shape, patch_zyx, stride_zyx, roi)
    roi_box = _as_roi(roi, shape)
    if roi_box is not None and any(hi <= lo for lo, hi in roi_box):
        return out
    patch = tuple(int(p) for p in patch_zyx)
    halo = -(-max(0, int(halo)) // FEATURE_ALIGN) * FEATURE_ALIGN
    elo = [a for a, _ in grid.extent]
    eshape = grid.shape

    # which slots to encode: present slots and the skip slot; identical slots share features
    need = [i for i in range(n_slots) if tm[i] != 0 or i == skip_slot]
    canon: dict[int, int] = {}
    for i in need:
        canon[i] = next((j for j in canon if np.array_equal(vol[j], vol[i])), i)
    encoded = sorted(set(canon.values()))
    skip_src = canon[skip_slot]
    blocks = _encoder_blocks(eshape, max_block_voxels, halo)
    total_enc = len(encoded) * len(blocks)
    feats: dict[int, dict[str, np.ndarray]] = {}
    pre = vol[0]
    done_enc = 0
    for i in encoded:
        with_skips = i == skip_src
        maps: dict[str, np.ndarray] = {}
        for block in blocks:
            olo = [e + b[2] for e, b in zip(elo, block, strict=True)]
            ohi = [e + b[3] for e, b in zip(elo, block, strict=True)]
            p_i = _region(vol[i], olo, ohi)
            pair = np.stack([p_i, p_i - _region(pre, olo, ohi)])[None]
            res = encode(pair, with_skips)
            names = ("bridge", *_SKIPS) if with_skips else ("bridge",)
            for name in names:
                scale = FEATURE_ALIGN if name == "bridge" else 2 ** (int(name[-1]) - 1)
                f = np.asarray(res[name], dtype=np.float32)
                want = tuple((b[3] - b[2]) // scale for b in block)
                if f.ndim != 5 or f.shape[0] != 1 or f.shape[2:] != want:
                    raise ParameterError(
                        f"encode returned {name} of shape {f.shape} for an input of "
                        f"{pair.shape}; expected (1, C, {', '.join(map(str, want))})."
                    )
                if name not in maps:
                    maps[name] = np.empty(
                        (f.shape[1], *(n // scale for n in eshape)), dtype=np.float32
                    )
                src: tuple[Any, ...] = (
                    0,
                    slice(None),
                    *(slice((b[0] - b[2]) // scale, (b[1] - b[2]) // scale) for b in block),
                )
                dst: tuple[Any, ...] = (
                    slice(None),
                    *(slice(b[0] // scale, b[1] // scale) for b in block),
                )
                maps[name][dst] = f[src]
            done_enc += 1
            if progress is not None:
                progress(0.5 * done_enc / total_enc)
        feats[i] = maps
    cb = feats[skip_src]["bridge"].shape[0]
    zero_bridge = np.zeros((cb, *(n // FEATURE_ALIGN for n in eshape)), dtype=np.float32)
    slot_bridge = [
        feats[canon[i]]["bridge"] if i in canon and tm[i] != 0 else zero_bridge
        for i in range(n_slots)
    ]
    skips = {name: feats[skip_src][name] for name in _SKIPS}

    acc = np.zeros(eshape, dtype=np.float32)
    wsum = np.zeros(eshape, dtype=np.float32)
    weight = gaussian_weights(patch) if blend == "gaussian" else None
    starts = [(z, y, x) for z in grid.starts[0] for y in grid.starts[1] for x in grid.starts[2]]
    pz, py, px = patch
    done = 0
    for b0 in range(0, len(starts), batch_size):
        group = starts[b0 : b0 + batch_size]

        def cut(m: np.ndarray, scale: int, group: list[tuple[int, int, int]] = group) -> np.ndarray:
            return np.stack(
                [
                    m[
                        :,
                        z // scale : (z + pz) // scale,
                        y // scale : (y + py) // scale,
                        x // scale : (x + px) // scale,
                    ]
                    for z, y, x in group
                ]
            )

        feed = {
            "bridges": np.stack([cut(m, FEATURE_ALIGN) for m in slot_bridge], axis=1),
            **{name: cut(skips[name], 2**k) for k, name in enumerate(_SKIPS)},
            "time_mask": np.repeat(tm[None], len(group), axis=0),
        }
        pred = np.asarray(head(feed), dtype=np.float32)
        _accumulate(acc, wsum, group, pred, patch, blend, threshold, weight, "head")
        done += len(group)
        if progress is not None:
            progress(0.5 + 0.5 * done / len(starts))
    blended = acc / np.maximum(wsum, np.finfo(np.float32).tiny)
    (z0, z1), (y0, y1), (x0, x1) = grid.box
    out[z0:z1, y0:y1, x0:x1] = blended[
        z0 - elo[0] : z1 - elo[0], y0 - elo[1] : y1 - elo[1], x0 - elo[2] : x1 - elo[2]
    ]
    if roi_box is not None:
        keep = np.zeros(shape, dtype=bool)
        (a0, a1), (c0, c1), (d0, d1) = roi_box
        keep[a0:a1, c0:c1, d0:d1] = True
        out[~keep] = 0.0
    return out


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


def _choice(value: str, allowed: Sequence[str], option: str) -> str:
    v = value.strip().lower()
    if v not in allowed:
        raise ParameterError(f"{option} must be one of {', '.join(allowed)}, got {value!r}.")
    return v


def parse_runtime(runtime: str) -> str:
    """Check a ``runtime`` value (one of :data:`RUNTIMES`); ParameterError for anything else."""
    return _choice(runtime, RUNTIMES, "--runtime")


def parse_precision(precision: str) -> str:
    """Check a ``precision`` value (one of :data:`PRECISIONS`); ParameterError for anything else."""
    return _choice(precision, PRECISIONS, "--precision")


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


def feature_predictors(encoder: OnnxModel, head: OnnxModel) -> tuple[EncodeFn, HeadFn]:
    """``encode`` and ``head`` callables of :func:`sliding_window_features` from two sessions.

    Parameters
    ----------
    encoder:
        Session of the encoder file (input ``pair``; outputs ``skip1`` .. ``skip4``, ``bridge``).
    head:
        Session of the head file (inputs ``bridges``, ``skip1`` .. ``skip4``, ``time_mask``;
        output ``probability``).

    Returns
    -------
    (EncodeFn, HeadFn)

    Raises
    ------
    WeightsError
        The files do not have the expected inputs/outputs.
    """
    enc_out = {o.name for o in encoder._s.session.get_outputs()}
    if encoder.input_names != ("pair",) or not {"bridge", *_SKIPS} <= enc_out:
        raise WeightsError(
            f"{encoder.path.name} is not a tumor encoder file (inputs {list(encoder.input_names)}, "
            f"outputs {sorted(enc_out)}; expected 'pair' -> skip1..skip4, bridge)."
        )
    if set(head.input_names) != {"bridges", *_SKIPS, "time_mask"}:
        raise WeightsError(
            f"{head.path.name} is not a tumor head file (inputs {list(head.input_names)}; "
            "expected bridges, skip1..skip4, time_mask)."
        )

    def encode(pair: np.ndarray, with_skips: bool) -> Mapping[str, np.ndarray]:
        names = ("bridge", *_SKIPS) if with_skips else ("bridge",)
        return encoder.run_named({"pair": pair}, names)

    def run_head(feed: Mapping[str, np.ndarray]) -> np.ndarray:
        return head.run(feed)

    return encode, run_head


def default_threads() -> int:
    """CPU threads for inference: ``$BREASTAI_THREADS`` if set, else 0 (ONNX Runtime decides)."""
    v = os.environ.get("BREASTAI_THREADS", "")
    return int(v) if v.isdigit() else 0
