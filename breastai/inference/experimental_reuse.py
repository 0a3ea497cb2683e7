"""EXPERIMENTAL: encoder-feature reuse for the seed tumor network. Not used by ``segment``.

Only ``bench/segment.py`` and the tests use this module; it may change or go away without notice.

:func:`sliding_window_features` is the encoder-feature-reuse variant of
:func:`breastai.inference.windowing.sliding_window` for the seed tumor network exported as two
files (``breastai.training.export.export_feature_onnx``): the shared encoder runs once per phase
over the tiled region, each window's features are cut out of the feature maps and only the head
runs per window. Windows start on a 16-voxel grid (:func:`feature_grid`); results differ from
per-window inference near window borders (no zero padding inside the volume).

Axis contract: see :mod:`breastai.study`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from breastai.errors import ParameterError, WeightsError
from breastai.inference.runtimes import OnnxModel
from breastai.inference.windowing import (
    Roi,
    accumulate,
    as_roi,
    check_blend,
    crop_box,
    gaussian_weights,
    zero_outside,
)

__all__ = [
    "ENCODER_BLOCK_VOXELS",
    "ENCODER_HALO",
    "FEATURE_ALIGN",
    "EncodeFn",
    "FeatureGrid",
    "HeadFn",
    "feature_grid",
    "feature_predictors",
    "region",
    "sliding_window_features",
]

log = logging.getLogger(__name__)


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
    roi_box = as_roi(roi, shape)
    if roi_box is not None and any(hi <= lo for lo, hi in roi_box):
        roi_box = None  # empty roi: nothing is computed; describe the whole-volume grid
    box = crop_box(roi_box, shape, patch)
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


def region(vol: np.ndarray, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
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
    check_blend(blend)
    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1, got {batch_size}.")
    shape = vol.shape[-3:]
    out = np.zeros(shape, dtype=np.float32)
    grid = feature_grid(shape, patch_zyx, stride_zyx, roi)
    roi_box = as_roi(roi, shape)
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
            p_i = region(vol[i], olo, ohi)
            pair = np.stack([p_i, p_i - region(pre, olo, ohi)])[None]
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
        accumulate(acc, wsum, group, pred, patch, blend, threshold, weight, "head")
        done += len(group)
        if progress is not None:
            progress(0.5 + 0.5 * done / len(starts))
    blended = acc / np.maximum(wsum, np.finfo(np.float32).tiny)
    (z0, z1), (y0, y1), (x0, x1) = grid.box
    out[z0:z1, y0:y1, x0:x1] = blended[
        z0 - elo[0] : z1 - elo[0], y0 - elo[1] : y1 - elo[1], x0 - elo[2] : x1 - elo[2]
    ]
    zero_outside(out, roi_box)
    return out


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
    enc_out = set(encoder.output_names)
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
