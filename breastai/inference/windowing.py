"""Pure sliding-window inference: window placement, blending and accumulation.

Axis contract: see :mod:`breastai.study`. A window batch is ``(B, C, D, H, W)`` for single-input
models (breast: ``image``) and ``(B, S, C, D, H, W)`` for the tumor model (``phases``); the output
is a probability ``(B, 1, D, H, W)``.

:func:`sliding_window` never sees a session: it takes a ``predict`` callable (numpy in, numpy out),
so it is tested with plain functions. Sessions live in :mod:`breastai.inference.runtimes`.

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

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from breastai.choices import Blend, values
from breastai.errors import ParameterError

__all__ = [
    "BLEND_MODES",
    "Predict",
    "Roi",
    "accumulate",
    "as_roi",
    "check_blend",
    "crop_box",
    "gaussian_weights",
    "iter_windows",
    "n_windows",
    "sliding_window",
    "window_starts",
    "zero_outside",
]

#: ``blend`` values of :func:`sliding_window` (see the module docstring): :class:`Blend`'s.
BLEND_MODES = values(Blend)

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


def as_roi(roi: Roi | Sequence[slice] | None, shape: Sequence[int]) -> Roi | None:
    """``roi`` (index ranges or slices) as a :data:`Roi` clipped to ``shape``; None stays None."""
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


def crop_box(roi: Roi | None, shape: Sequence[int], patch: Sequence[int]) -> Roi:
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


def iter_windows(
    shape: Sequence[int], patch: Sequence[int], stride: Sequence[int]
) -> Iterator[tuple[int, int, int]]:
    """Window starts ``(z, y, x)`` tiling ``shape``: :func:`window_starts` on each axis."""
    zs = window_starts(shape[0], patch[0], stride[0])
    ys = window_starts(shape[1], patch[1], stride[1])
    xs = window_starts(shape[2], patch[2], stride[2])
    for z in zs:
        for y in ys:
            for x in xs:
                yield (z, y, x)


def check_blend(blend: str | Blend) -> None:
    """ParameterError unless ``blend`` is one of :data:`BLEND_MODES` (or a :class:`Blend`)."""
    if blend not in BLEND_MODES:
        raise ParameterError(f"blend must be one of {BLEND_MODES}, got {blend!r}.")


def zero_outside(out: np.ndarray, roi: Roi | None) -> None:
    """Set ``out`` ``(z, y, x)`` to 0 outside ``roi`` (in place); nothing when ``roi`` is None."""
    if roi is not None:
        keep = np.zeros(out.shape, dtype=bool)
        (a0, a1), (b0, b1), (c0, c1) = roi
        keep[a0:a1, b0:b1, c0:c1] = True
        out[~keep] = 0.0


def n_windows(
    shape_zyx: Sequence[int],
    patch_zyx: Sequence[int],
    stride_zyx: Sequence[int],
    roi: Roi | Sequence[slice] | None = None,
) -> int:
    """Number of windows :func:`sliding_window` evaluates for this shape and roi."""
    box = crop_box(as_roi(roi, shape_zyx), shape_zyx, patch_zyx)
    sizes = [max(hi - lo, p) for (lo, hi), p in zip(box, patch_zyx, strict=True)]
    n = 1
    for s, p, st in zip(sizes, patch_zyx, stride_zyx, strict=True):
        n *= len(window_starts(s, p, st))
    return n


def accumulate(
    acc: np.ndarray,
    wsum: np.ndarray,
    group: Sequence[tuple[int, int, int]],
    pred: np.ndarray,
    patch: Sequence[int],
    blend: str | Blend,
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
    blend: str | Blend = "vote",
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
    check_blend(blend)
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
    roi_box = as_roi(roi, shape)
    if roi_box is not None and any(hi <= lo for lo, hi in roi_box):
        return out  # empty roi: nothing to compute
    (z0, z1), (y0, y1), (x0, x1) = crop_box(roi_box, shape, patch)
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
    starts = list(iter_windows(cshape, patch, stride))
    pz, py, px = patch
    done = 0
    for b0 in range(0, len(starts), batch_size):
        group = starts[b0 : b0 + batch_size]
        batch = np.stack([crop[..., z : z + pz, y : y + py, x : x + px] for z, y, x in group])
        pred = np.asarray(predict(batch), dtype=np.float32)
        accumulate(acc, wsum, group, pred, patch, blend, threshold, weight, "predict")
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
    zero_outside(out, roi_box)
    return out
