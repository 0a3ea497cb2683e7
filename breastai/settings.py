"""What a segmentation run can be told: :class:`Settings` (the CLI builds one from its options).

Re-exported by :mod:`breastai.pipeline`; a module of its own so that model loading
(:mod:`breastai.models`), preparation (:mod:`breastai.prepare`) and output writing
(:mod:`breastai.outputs`) share it without importing the pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from breastai.errors import ParameterError

__all__ = ["STAGES", "Progress", "Settings"]

#: Progress stages, in order; the progress callback receives (stage, fraction of that stage).
STAGES = ("read", "preprocess", "breast", "tumor", "postprocess", "write")

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class Settings:
    """Everything a segmentation run can be told (the CLI builds one from its options).

    Attributes
    ----------
    device:
        ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
    weights, breast_weights:
        Tumor / breast model name or ONNX path (None: the default model of the task).
    weights_file:
        User weights file (None: the default location).
    blend:
        Override of the model cards' blending (``vote`` | ``mean`` | ``gaussian``).
    use_breast_mask:
        Multiply the tumor mask by the breast mask and restrict tumor windows to the breast
        bounding box (the paper). False = ``--no-breast-mask``.
    save_probabilities:
        Also write ``tumor_probability.nii.gz``.
    force:
        Replace an existing ``OUT/<study>/`` folder.
    batch_size:
        Windows per model call; None = 1 on CPU (no gain from more on few cores), 4 on CUDA.
    threads:
        CPU threads of the runtime (0 = its default).
    runtime:
        ``auto`` | ``onnxruntime`` | ``openvino`` (see :class:`breastai.inference.OnnxModel`).
    precision:
        ``fp32`` | ``bf16`` (bf16: OpenVINO on a CPU with native bfloat16; outputs differ a little).
    dce_series:
        DICOM SeriesInstanceUIDs (or numbers) of the DCE acquisition, overriding the reader.
    study_uid:
        DICOM: the StudyInstanceUID to read when a folder holds several studies.
    times:
        Phase times in seconds, overriding the DICOM clocks (and giving NIfTI phases times).
    min_volume_mm3:
        Smallest tumor component kept.
    min_enhancement_pct:
        A tumor component is kept only if its mean signal rises at least this much (percent of the
        pre-contrast mean) in some post-contrast phase
        (:func:`breastai.postprocess.remove_non_enhancing`); 0 turns the rule off.
    roi_margin_mm:
        Margin around the breast bounding box for the tumor windows.
    write_seg, write_preview:
        Write ``seg.dcm`` (DICOM input only) and ``preview.png``.
    cudnn_conv_algo_search:
        ``HEURISTIC`` (default) or ``EXHAUSTIVE`` (see :mod:`breastai.inference`).
    tta:
        nnU-Net models: mirroring test-time augmentation as the model allows it (False =
        ``--no-tta``). No effect on the other families.
    """

    device: str = "auto"
    weights: str | None = None
    breast_weights: str | None = None
    weights_file: Path | None = None
    blend: str | None = None
    use_breast_mask: bool = True
    save_probabilities: bool = False
    force: bool = False
    batch_size: int | None = None
    threads: int = 0
    runtime: str = "auto"
    precision: str = "fp32"
    dce_series: tuple[str, ...] = ()
    study_uid: str | None = None
    times: tuple[float, ...] | None = None
    min_volume_mm3: float = 10.0
    min_enhancement_pct: float = 10.0
    roi_margin_mm: float = 8.0
    write_seg: bool = True
    write_preview: bool = True
    cudnn_conv_algo_search: str = "HEURISTIC"
    tta: bool = True

    def __post_init__(self) -> None:
        from breastai.inference import BLEND_MODES, check_runtime_options

        check_runtime_options(self.device, self.runtime, self.precision)
        if self.blend is not None and self.blend not in BLEND_MODES:
            raise ParameterError(f"--blend must be one of {BLEND_MODES}, got {self.blend!r}.")
        if self.batch_size is not None and self.batch_size < 1:
            raise ParameterError(f"batch size must be >= 1, got {self.batch_size}.")
        if self.min_volume_mm3 < 0 or self.roi_margin_mm < 0:
            raise ParameterError("min_volume_mm3 and roi_margin_mm must be >= 0.")
        if not math.isfinite(self.min_enhancement_pct) or self.min_enhancement_pct < 0:
            raise ParameterError(
                f"min_enhancement_pct must be a number >= 0, got {self.min_enhancement_pct!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weights_file"] = str(self.weights_file) if self.weights_file else None
        d["dce_series"] = list(self.dce_series)
        d["times"] = None if self.times is None else list(self.times)
        return d
