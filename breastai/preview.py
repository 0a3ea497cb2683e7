"""preview.png: a maximum intensity projection of the first subtraction with the tumor outline,
beside the key slice through the largest lesion (Pillow only).

Both panels are axial views whatever the acquisition plane: the projection / slicing axis is the
array axis closest to the patient's head-foot (LPS z) axis, and the two remaining axes are shown
with the patient's anterior at the top and the patient's left on the image's right (radiological
convention), scaled to their physical size. Oblique acquisitions use the nearest axes.
"""

# SimpleITK's bindings are untyped (no stubs); calling them is fine here.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from breastai import RESEARCH_NOTICE
from breastai.errors import ParameterError
from breastai.geometry import resample_to_reference, same_grid
from breastai.io.atomic import atomic_file

__all__ = ["write_preview"]

log = logging.getLogger(__name__)

_PANEL_PX = 384
_OUTLINE = (255, 40, 40)
_BREAST = (60, 200, 255)


def _axes(image: sitk.Image) -> tuple[int, int, int, bool, bool, np.ndarray]:
    """(slice axis, row axis, column axis) in array order, flips, spacing per array axis."""
    d = np.abs(np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3))
    signed = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    # array axis a (0 = z, 1 = y, 2 = x) uses direction column 2 - a
    col_of = {0: 2, 1: 1, 2: 0}
    slice_axis = max(range(3), key=lambda a: d[2, col_of[a]])
    rest = [a for a in range(3) if a != slice_axis]
    row_axis = max(rest, key=lambda a: d[1, col_of[a]])  # rows follow patient y (A -> P)
    col_axis = next(a for a in rest if a != row_axis)  # columns follow patient x (R -> L)
    flip_rows = signed[1, col_of[row_axis]] < 0
    flip_cols = signed[0, col_of[col_axis]] < 0
    sp = np.asarray(image.GetSpacing(), dtype=np.float64)[::-1]
    return slice_axis, row_axis, col_axis, flip_rows, flip_cols, sp


def _view(arr: np.ndarray, rows_first: bool, fr: bool, fc: bool) -> np.ndarray:
    """A 2-D array (slice axis already removed) in display orientation."""
    out = arr if rows_first else arr.T
    if fr:
        out = out[::-1, :]
    if fc:
        out = out[:, ::-1]
    return out


def _window(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, [1.0, 99.5]) if img.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    out: np.ndarray = (np.clip((img - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    return out


def _outline(mask: np.ndarray) -> np.ndarray:
    inner = np.asarray(ndimage.binary_erosion(mask, border_value=0), dtype=bool)
    out: np.ndarray = mask & ~inner
    return out


def _panel(
    gray: np.ndarray,
    overlays: list[tuple[np.ndarray, tuple[int, int, int]]],
    aspect_rc: tuple[float, float],
) -> object:
    from PIL import Image

    rgb = np.repeat(_window(gray)[..., None], 3, axis=2)
    for mask, colour in overlays:
        rgb[_outline(mask)] = colour
    img = Image.fromarray(rgb, mode="RGB")
    h_mm = gray.shape[0] * aspect_rc[0]
    w_mm = gray.shape[1] * aspect_rc[1]
    scale = _PANEL_PX / max(h_mm, w_mm, 1e-6)
    size = (max(1, round(w_mm * scale)), max(1, round(h_mm * scale)))
    return img.resize(size, resample=Image.Resampling.NEAREST)


def write_preview(
    path: Path,
    *,
    pre: sitk.Image,
    post: sitk.Image,
    tumor: sitk.Image,
    breast: sitk.Image | None = None,
    caption: str = "",
) -> Path:
    """Write the preview PNG.

    Parameters
    ----------
    path:
        Output PNG.
    pre, post:
        Pre-contrast and first post-contrast phases (``pre`` is resampled onto ``post``'s grid
        when the grids differ).
    tumor:
        Tumor mask on ``post``'s grid (outlined in red).
    breast:
        Optional breast mask on the same grid (outlined in blue on the key slice).
    caption:
        Text under the panels (the research notice is always added).

    Returns
    -------
    Path
        ``path``.
    """
    from PIL import Image, ImageDraw

    if not same_grid(pre, post):
        pre = resample_to_reference(pre, post, interpolator="linear", extrapolate=False)
    for name, mask in (("tumor", tumor), ("breast", breast)):
        if mask is not None and not same_grid(mask, post):
            raise ParameterError(
                f"The {name} mask must lie on the post-contrast phase's grid (size "
                f"{post.GetSize()}); got size {mask.GetSize()}: resample it onto that grid first."
            )
    sub = sitk.GetArrayFromImage(post).astype(np.float32) - sitk.GetArrayFromImage(pre).astype(
        np.float32
    )
    t = sitk.GetArrayFromImage(tumor) > 0
    b = sitk.GetArrayFromImage(breast) > 0 if breast is not None else None
    post_arr = sitk.GetArrayFromImage(post).astype(np.float32)
    sa, ra, ca, fr, fc, sp = _axes(post)
    rows_first = ra < ca
    aspect = (float(sp[ra]), float(sp[ca]))

    def disp(a: np.ndarray) -> np.ndarray:
        return _view(a, rows_first, fr, fc)

    mip = disp(sub.max(axis=sa))
    t_mip = disp(np.asarray(t.any(axis=sa)))

    if t.any():
        labels, _n = ndimage.label(t, structure=np.ones((3, 3, 3), bool))
        sizes = np.bincount(labels.ravel())[1:]
        largest = labels == (int(np.argmax(sizes)) + 1)
        k = round(float(np.argwhere(largest)[:, sa].mean()))
    else:
        k = t.shape[sa] // 2
    key = np.take(post_arr, k, axis=sa)
    t_key = np.take(t, k, axis=sa)
    key_v = disp(key)
    overlays_key = [(disp(t_key), _OUTLINE)]
    if b is not None:
        overlays_key.insert(0, (disp(np.take(b, k, axis=sa)), _BREAST))

    left = _panel(mip, [(t_mip, _OUTLINE)], aspect)
    right = _panel(key_v, overlays_key, aspect)
    lw, lh = left.size  # type: ignore[attr-defined]
    rw, rh = right.size  # type: ignore[attr-defined]
    pad, text_h = 8, 44
    canvas = Image.new("RGB", (lw + rw + 3 * pad, max(lh, rh) + 2 * pad + text_h), (0, 0, 0))
    canvas.paste(left, (pad, pad))  # type: ignore[arg-type]
    canvas.paste(right, (2 * pad + lw, pad))  # type: ignore[arg-type]
    draw = ImageDraw.Draw(canvas)
    y = max(lh, rh) + pad + 4
    draw.text((pad, y), f"MIP of P1-P0 | key slice {k}   {caption}"[:120], fill=(230, 230, 230))
    draw.text((pad, y + 16), RESEARCH_NOTICE, fill=(255, 200, 0))
    with atomic_file(Path(path)) as tmp:
        canvas.save(tmp, format="PNG")
    return path
