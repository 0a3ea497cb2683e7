"""Run an imported nnU-Net v2 model the way ``nnUNetv2_predict`` does, without torch.

The steps and constants follow nnunetv2 2.8.1 (``nnUNetPredictor``):

1. read each channel image as nnU-Net's reader presents it (SimpleITK voxel order, or
   ``DICOMOrient(img, "RAS")`` for ``SimpleITKIOWithReorient`` plans), stack as float32;
2. transpose, crop to the hole-filled nonzero mask, normalise, resample to the target spacing
   (:mod:`breastai.nnunet.preprocess`);
3. pad to the patch (0, centred), slide the patch with nnU-Net's steps (x outer, z inner),
   mirror test-time augmentation (all flip combinations of the allowed axes, averaged in float32),
   weight with the Gaussian importance map (peak 10, sigma = patch/8, float16) and accumulate in
   float16 exactly as nnU-Net does (logits and weights rounded to float16 after every tile);
4. average the folds' float16 logits, resample them to the cropped grid (float16 result),
   argmax (labels) or sigmoid > 0.5 in region order (regions), uncrop, transpose back.

The network runs in ONNX Runtime (CUDA or CPU) or OpenVINO through
:class:`breastai.inference.OnnxModel`; on a GPU each tile and its mirrored copies go through the
network as one batch (InstanceNorm is per sample, so this equals nnU-Net's one-at-a-time calls), on
the CPU one at a time (faster in ONNX Runtime there, and less memory).
"""

# SimpleITK has no type hints.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from breastai.choices import Family
from breastai.errors import InputError, WeightsError, WeightsNotFoundError
from breastai.nnunet.card import CARD_FILE, NnunetCard
from breastai.nnunet.preprocess import compute_new_shape, crop_to_nonzero, normalise, resample

__all__ = [
    "NnunetModel",
    "NnunetPrediction",
    "Preprocessed",
    "gaussian_map",
    "sliding_window_steps",
]

log = logging.getLogger(__name__)

#: progress(done_windows, total_windows)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class NnunetPrediction:
    """One prediction.

    Attributes
    ----------
    labels:
        uint8 (uint16 for >= 255 labels) label map on the grid of ``images[0]``, values as in
        dataset.json (regions: the ``regions_class_order`` values).
    probabilities:
        float32 ``(classes, z, y, x)`` on the same grid when asked for (softmax over labels, or the
        sigmoid of each region), like nnU-Net's ``--save_probabilities``; else None.
    notices:
        One-line notices for the user (CPU fallback and the like).
    """

    labels: sitk.Image
    probabilities: np.ndarray | None = None
    notices: tuple[str, ...] = ()


@dataclass
class Preprocessed:
    """nnU-Net's preprocessed case and what is needed to map a prediction back."""

    data: np.ndarray  # float32 (C, z, y, x) on the target spacing, transposed
    shape_before_cropping: tuple[int, ...]
    bbox: list[list[int]]
    shape_after_cropping: tuple[int, ...]
    spacing: tuple[float, ...]  # of the input, transposed
    reference: sitk.Image  # images[0] as read (before any reorientation)
    oriented: sitk.Image  # images[0] as nnU-Net's reader presents it
    extra: dict[str, Any] = field(default_factory=dict)


def sliding_window_steps(
    image: Sequence[int], patch: Sequence[int], step: float
) -> list[list[int]]:
    """nnU-Net's ``compute_steps_for_sliding_window`` (``np.round``: half to even)."""
    out = []
    for i, k in zip(image, patch, strict=True):
        target = k * step
        n = int(np.ceil((i - k) / target)) + 1
        actual = (i - k) / (n - 1) if n > 1 else 99999999999
        out.append([int(np.round(actual * j)) for j in range(n)])
    return out


@lru_cache(maxsize=4)
def gaussian_map(patch: tuple[int, ...]) -> np.ndarray:
    """nnU-Net's ``compute_gaussian(patch, 1/8, value_scaling_factor=10)`` as float16.

    torch's float64 -> float16 conversion on the CPU goes through float32 (double rounding); that is
    reproduced here. Zeros are replaced by the smallest nonzero value.
    """
    tmp = np.zeros(patch)
    tmp[tuple(i // 2 for i in patch)] = 1
    g = ndimage.gaussian_filter(tmp, [i / 8 for i in patch], 0, mode="constant", cval=0)
    g /= np.max(g) / 10
    g16 = g.astype(np.float32).astype(np.float16)
    zero = g16 == 0
    if zero.any():
        g16[zero] = g16[~zero].min()
    g16.setflags(write=False)
    return np.asarray(g16)


def _pad(data: np.ndarray, patch: Sequence[int]) -> tuple[np.ndarray, tuple[slice, ...]]:
    """acvl_utils ``pad_nd_image(data, patch, 'constant', {'value': 0}, True)``."""
    shape = data.shape[1:]
    new = [max(s, p) for s, p in zip(shape, patch, strict=True)]
    if list(new) == list(shape):
        return data, tuple(slice(0, s) for s in shape)
    diff = [n - s for n, s in zip(new, shape, strict=True)]
    below = [d // 2 for d in diff]
    above = [d // 2 + d % 2 for d in diff]
    padded = np.pad(data, [(0, 0), *zip(below, above, strict=True)], mode="constant")
    return padded, tuple(slice(b, b + s) for b, s in zip(below, shape, strict=True))


def _mirror_combos(axes: Sequence[int] | None) -> list[tuple[int, ...]]:
    if not axes:
        return []
    ax = [a + 2 for a in axes]
    return [c for i in range(len(ax)) for c in itertools.combinations(ax, i + 1)]


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    e = np.exp(x - x.max(axis=0, keepdims=True))
    out: np.ndarray = e / e.sum(axis=0, keepdims=True)
    return out.astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    out: np.ndarray = (1.0 / (1.0 + np.exp(-x))).astype(np.float32)
    return out


class NnunetModel:
    """An imported nnU-Net v2 model: its card and one ONNX session per fold.

    Use :meth:`load`. ``predict`` reproduces ``nnUNetPredictor`` (tile step 0.5, Gaussian, mirroring
    as the checkpoint allows it unless ``tta=False``) on the images of one case.
    """

    def __init__(
        self,
        card: NnunetCard,
        folder: Path,
        *,
        device: str = "auto",
        runtime: str = "auto",
        precision: str = "fp32",
        threads: int = 0,
        verify: bool = True,
    ) -> None:
        from breastai.inference import OnnxModel, check_runtime_options
        from breastai.weights import verify_file

        check_runtime_options(device, runtime, precision)
        self.card = card
        self.folder = Path(folder)
        self.sessions: list[Any] = []
        for f in card.folds:
            path = self.folder / str(f["file"])
            if not path.is_file():
                raise WeightsNotFoundError(
                    f"nnU-Net model {card.name!r}: fold file {str(path)!r} is missing; import the "
                    "model again."
                )
            if verify and f.get("sha256"):
                verify_file(path, str(f["sha256"]), name=card.name)
        for f in card.folds:
            self.sessions.append(
                OnnxModel(
                    self.folder / str(f["file"]),
                    device=device,
                    runtime=runtime,
                    precision=precision,
                    threads=threads,
                )
            )

    # -------------------------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        name_or_dir: str | Path,
        *,
        device: str = "auto",
        runtime: str = "auto",
        precision: str = "fp32",
        threads: int = 0,
        weights_file: Path | None = None,
    ) -> NnunetModel:
        """Load a registered nnU-Net model by name, or a folder holding ``nnunet.json``.

        A registered name wins over a folder of the same name in the working directory.

        Raises
        ------
        WeightsNotFoundError
            Unknown name, or a missing file.
        WeightsError
            The name is not an nnU-Net model, or the card is invalid.
        ChecksumMismatchError
            A file differs from its pinned sha256.
        """
        from breastai.weights import load_registry, resolve_model

        p = Path(name_or_dir).expanduser()
        registry = load_registry(weights_file)
        if str(name_or_dir) not in registry and p.is_dir():
            card_path = p / CARD_FILE
            if not card_path.is_file():
                raise WeightsNotFoundError(
                    f"{str(p)!r} holds no {CARD_FILE}; give a model imported with `breastai "
                    "import-weights --nnunet` (its name, or its folder)."
                )
            card = NnunetCard.read(card_path)
            return cls(
                card, p, device=device, runtime=runtime, precision=precision, threads=threads
            )
        name = str(name_or_dir)
        entry = registry.get(name)
        if entry is None:
            nn = sorted(n for n, c in registry.items() if c.family == Family.NNUNET)
            raise WeightsNotFoundError(
                f"no model named {name!r}; imported nnU-Net models: {', '.join(nn) or 'none'} "
                "(import one with `breastai import-weights --nnunet DIR --name NAME`)."
            )
        if entry.family != Family.NNUNET:
            raise WeightsError(
                f"model {name!r} is not an nnU-Net model ({entry.architecture or 'breastai'}); "
                "`breastai predict` runs models imported with `import-weights --nnunet`."
            )
        resolved = resolve_model(name, entry.task, weights_file=weights_file)
        card = NnunetCard.read(resolved.path)
        return cls(
            card,
            resolved.path.parent,
            device=device,
            runtime=runtime,
            precision=precision,
            threads=threads,
        )

    @property
    def provider(self) -> str:
        """The execution provider the sessions run on."""
        return str(self.sessions[0].provider)

    @property
    def notices(self) -> list[str]:
        out: list[str] = []
        for s in self.sessions:
            out.extend(n for n in s.notices if n not in out)
        return out

    # -------------------------------------------------------------------------------- steps
    def preprocess(self, images: Sequence[sitk.Image]) -> Preprocessed:
        """nnU-Net's reading and ``run_case_npy`` on ``images`` (one per channel)."""
        card = self.card
        if len(images) != card.num_channels:
            raise InputError(
                f"model {card.name!r} takes {card.num_channels} channel image(s) "
                f"({', '.join(card.channels)}), got {len(images)}."
            )
        oriented = [
            sitk.DICOMOrient(im, "RAS") if card.orientation == "RAS" else im for im in images
        ]
        arrays = []
        for k, im in enumerate(oriented):
            if im.GetDimension() != 3:
                raise InputError(
                    f"channel {k} ({card.channels[k]}) is a {im.GetDimension()}-D image; the "
                    "model needs 3-D volumes."
                )
            if im.GetSize() != oriented[0].GetSize() or not np.allclose(
                im.GetSpacing(), oriented[0].GetSpacing()
            ):
                raise InputError(
                    f"channel {k} ({card.channels[k]}) has size {im.GetSize()} and spacing "
                    f"{im.GetSpacing()}, channel 0 has {oriented[0].GetSize()} and "
                    f"{oriented[0].GetSpacing()}; nnU-Net needs all channels on one grid."
                )
            arrays.append(sitk.GetArrayViewFromImage(im)[None])
        data = np.vstack(arrays, dtype=np.float32, casting="unsafe")
        spacing = [abs(s) for s in list(oriented[0].GetSpacing())[::-1]]
        tf = list(card.transpose_forward)
        data = data.transpose([0, *[i + 1 for i in tf]])
        spacing_t = tuple(float(spacing[i]) for i in tf)
        shape_before = tuple(int(s) for s in data.shape[1:])
        data, seg, bbox = crop_to_nonzero(data)
        shape_after = tuple(int(s) for s in data.shape[1:])
        new_shape = compute_new_shape(shape_after, spacing_t, card.spacing)
        data = np.ascontiguousarray(data, dtype=np.float32)
        data = normalise(
            data, seg, card.normalization_schemes, card.use_mask_for_norm, card.intensity_properties
        )
        data = resample(data, new_shape, spacing_t, card.spacing, card.resampling_data["kwargs"])
        return Preprocessed(
            data=np.ascontiguousarray(data, dtype=np.float32),
            shape_before_cropping=shape_before,
            bbox=bbox,
            shape_after_cropping=shape_after,
            spacing=spacing_t,
            reference=images[0],
            oriented=oriented[0],
        )

    def n_windows(self, shape: Sequence[int]) -> int:
        """Sliding-window tiles per fold for a preprocessed ``(z, y, x)`` shape."""
        padded = [max(s, p) for s, p in zip(shape, self.card.patch_size, strict=True)]
        steps = sliding_window_steps(padded, self.card.patch_size, self.card.tile_step_size)
        return int(np.prod([len(s) for s in steps]))

    def _sliding_window(
        self, session: Any, data: np.ndarray, tta: bool, tick: Callable[[], None]
    ) -> np.ndarray:
        card = self.card
        patch = tuple(card.patch_size)
        padded, unpad = _pad(data, patch)
        steps = sliding_window_steps(padded.shape[1:], patch, card.tile_step_size)
        gauss = gaussian_map(patch)
        g32 = gauss.astype(np.float32)
        logits = np.zeros((card.num_heads, *padded.shape[1:]), dtype=np.float16)
        weights = np.zeros(padded.shape[1:], dtype=np.float16)
        combos = _mirror_combos(card.mirroring_axes if tta else None)
        name = session.input_names[0]
        for sx in steps[0]:
            for sy in steps[1]:
                for sz in steps[2]:
                    sl = (
                        slice(sx, sx + patch[0]),
                        slice(sy, sy + patch[1]),
                        slice(sz, sz + patch[2]),
                    )
                    x = np.ascontiguousarray(padded[(slice(None), *sl)][None])
                    batch = [x] + [np.ascontiguousarray(np.flip(x, c)) for c in combos]
                    if session.on_gpu:
                        out = session.run({name: np.concatenate(batch)})
                    else:  # one at a time: faster in ONNX Runtime on the CPU, less memory
                        out = np.concatenate([session.run({name: b}) for b in batch])
                    pred = out[0:1].astype(np.float32, copy=True)
                    for i, c in enumerate(combos):
                        pred += np.flip(out[i + 1 : i + 2], c)
                    if combos:
                        pred /= len(combos) + 1
                    pred = pred[0] * g32
                    logits[(slice(None), *sl)] += pred
                    weights[sl] += gauss
                    tick()
        np.divide(logits, weights, out=logits)
        if np.isinf(logits).any():
            raise WeightsError(
                f"nnU-Net model {card.name!r} produced logits beyond float16 range; the model "
                "cannot be run the way nnU-Net runs it."
            )
        return logits[(slice(None), *unpad)]

    def predict_logits(
        self, data: np.ndarray, *, tta: bool = True, progress: Progress | None = None
    ) -> np.ndarray:
        """The fold-averaged float16 logits ``(heads, z, y, x)`` of a preprocessed case."""
        total = self.n_windows(data.shape[1:]) * len(self.sessions)
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        pred: np.ndarray | None = None
        for s in self.sessions:
            lg = self._sliding_window(s, data, tta, tick)
            if pred is None:
                pred = lg
            else:
                pred += lg
        assert pred is not None
        if len(self.sessions) > 1:
            pred /= len(self.sessions)
        return pred

    def _labels_of(self, values: np.ndarray, *, probabilities: bool) -> np.ndarray:
        """Label map from logits (or probabilities when ``probabilities``)."""
        card = self.card
        if card.has_regions:
            prob = values if probabilities else _sigmoid(values)
            seg = np.zeros(prob.shape[1:], dtype=np.uint16)
            for i, c in enumerate(card.regions_class_order):
                seg[prob[i] > 0.5] = c
            return seg
        idx = np.asarray(values.argmax(0))
        labels = self._all_labels()
        if labels == list(range(len(labels))):
            return idx
        return np.asarray(np.asarray(labels)[idx])

    def _all_labels(self) -> list[int]:
        vals: set[int] = set()
        for k, v in self.card.labels.items():
            if k == "ignore":
                continue
            vals.update(int(x) for x in (v if isinstance(v, list | tuple) else [v]))
        return sorted(vals)

    def postprocess(
        self, logits: np.ndarray, pre: Preprocessed, *, save_probabilities: bool = False
    ) -> tuple[sitk.Image, np.ndarray | None]:
        """nnU-Net's ``convert_predicted_logits_to_segmentation_with_correct_shape`` + writing."""
        card = self.card
        resampled = resample(
            logits,
            pre.shape_after_cropping,
            card.spacing,
            pre.spacing,
            card.resampling_probabilities["kwargs"],
        )
        probs = None
        if save_probabilities:
            probs = _sigmoid(resampled) if card.has_regions else _softmax(resampled)
            seg = self._labels_of(probs, probabilities=True)
        else:
            seg = self._labels_of(resampled, probabilities=False)
        n_fg = len([v for v in self._all_labels() if v != 0])
        dtype = np.uint8 if n_fg < 255 else np.uint16
        full = np.zeros(pre.shape_before_cropping, dtype=dtype)
        sl = tuple(slice(a, b) for a, b in pre.bbox)
        full[sl] = seg
        tb = list(card.transpose_backward)
        full = full.transpose(tb)
        out_dtype = np.uint8 if int(full.max(initial=0)) < 255 else np.uint16
        img = sitk.GetImageFromArray(np.ascontiguousarray(full.astype(out_dtype, copy=False)))
        img.CopyInformation(pre.oriented)
        prob_full: np.ndarray | None = None
        if probs is not None:
            prob_full = np.zeros((probs.shape[0], *pre.shape_before_cropping), dtype=np.float32)
            if not card.has_regions:
                prob_full[0] = 1
            prob_full[(slice(None), *sl)] = probs
            prob_full = prob_full.transpose([0, *[i + 1 for i in tb]])
        if card.orientation == "RAS":
            code = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(
                pre.reference.GetDirection()
            )
            img = sitk.DICOMOrient(img, code)
            if prob_full is not None:
                chans = []
                for c in range(prob_full.shape[0]):
                    ci = sitk.GetImageFromArray(np.ascontiguousarray(prob_full[c]))
                    ci.CopyInformation(pre.oriented)
                    chans.append(sitk.GetArrayFromImage(sitk.DICOMOrient(ci, code)))
                prob_full = np.stack(chans)
        img.CopyInformation(pre.reference)
        if prob_full is not None:
            prob_full = np.ascontiguousarray(prob_full, dtype=np.float32)
        return img, prob_full

    def predict(
        self,
        images: Sequence[sitk.Image],
        *,
        tta: bool = True,
        save_probabilities: bool = False,
        progress: Progress | None = None,
    ) -> NnunetPrediction:
        """Segment one case.

        Parameters
        ----------
        images:
            One image per channel, in the card's channel order (:func:`derive_channels`), all on
            one grid.
        tta:
            Mirroring test-time augmentation (nnU-Net's default) when the checkpoint allows it.
        save_probabilities:
            Also return the probabilities ``(classes, z, y, x)``.
        progress:
            Called as ``progress(done, total)`` after every window (all folds together).

        Returns
        -------
        NnunetPrediction
            Labels on the grid of ``images[0]``.

        Raises
        ------
        InputError
            Wrong number of images, or images not on one grid.
        """
        pre = self.preprocess(images)
        logits = self.predict_logits(pre.data, tta=tta, progress=progress)
        labels, probs = self.postprocess(logits, pre, save_probabilities=save_probabilities)
        return NnunetPrediction(labels=labels, probabilities=probs, notices=tuple(self.notices))
