"""Model loading: resolve, verify and open the breast and tumor models once per run.

:func:`load_models` returns :class:`LoadedModels` (re-exported by :mod:`breastai.pipeline`), which a
cohort reuses for every study. ONNX models run through :class:`breastai.inference.OnnxModel`;
imported nnU-Net models through :class:`breastai.nnunet.NnunetModel`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from breastai.choices import Family
from breastai.errors import ParameterError
from breastai.settings import Settings

__all__ = ["LoadedModels", "Model", "batch_size", "load_models"]


@dataclass(frozen=True)
class Model:
    """One opened model: its resolved weights, runtime session and preprocessing family."""

    resolved: Any  # breastai.weights.ResolvedModel
    session: Any  # breastai.inference.OnnxModel (nnU-Net: the first fold's)
    nnunet: Any = None  # breastai.nnunet.NnunetModel for an imported nnU-Net model
    family: Any = None  # breastai.families.ModelFamily: the model's preprocessing

    @property
    def fam(self) -> Any:
        from breastai.families import family_for_card

        return self.family or family_for_card(self.card, self.nnunet)

    @property
    def card(self) -> Any:
        return self.resolved.card

    def info(self, blend: str, tta: bool = True) -> dict[str, Any]:
        c = self.card
        d: dict[str, Any] = dict(self.resolved.to_dict())
        if self.nnunet is not None:
            nc = self.nnunet.card
            d.update(
                family="nnunet",
                sha256s={str(f["file"]): str(f.get("sha256", "")) for f in nc.folds},
                channels=list(nc.channels),
                roles={k: list(v) for k, v in nc.roles.items()},
                configuration=nc.configuration,
                folds=[f["fold"] for f in nc.folds],
                spacing_zyx=list(nc.spacing),
                patch_zyx=list(nc.patch_size),
                tile_step_size=nc.tile_step_size,
                tta=bool(tta and nc.mirroring_axes),
            )
            return d
        d.update(
            family=self.fam.name,
            blending=blend,
            threshold=c.threshold,
            patch_zyx=list(c.patch_zyx),
            stride_zyx=list(c.stride_zyx),
            spacing_zyx=list(c.spacing_zyx),
            normalisation=c.normalisation,
        )
        if c.task == "tumor":
            d["phase_slots"] = c.phase_slots
        return d


@dataclass(frozen=True)
class LoadedModels:
    """The opened breast and tumor models (from :func:`load_models`), reused across studies."""

    breast: Model
    tumor: Model

    @property
    def provider(self) -> str:
        return str(self.tumor.session.provider)

    @property
    def device(self) -> str:
        return str(self.tumor.session.device)

    @property
    def precision(self) -> str:
        return str(self.tumor.session.precision)

    @property
    def runtime(self) -> str:
        """``onnxruntime 1.x`` / ``openvino 2026.x``: what ran the models."""
        s = self.tumor.session
        return f"{s.runtime} {s.runtime_version}"

    def notices(self) -> list[str]:
        seen: list[str] = []
        for m in (self.breast, self.tumor):
            for n in m.session.notices:
                if n not in seen:
                    seen.append(n)
        return seen


def batch_size(settings: Settings, provider: str) -> int:
    """Windows per model call: ``settings.batch_size``, else 4 on CUDA and 1 on CPU."""
    if settings.batch_size is not None:
        return settings.batch_size
    return 4 if provider == "CUDAExecutionProvider" else 1


def load_models(settings: Settings) -> LoadedModels:
    """Resolve, verify and open the breast and tumor models once (reused for a cohort)."""
    from breastai.inference import OnnxModel
    from breastai.weights import resolve_model

    out: dict[str, Model] = {}
    for task, name in (("breast", settings.breast_weights), ("tumor", settings.weights)):
        resolved = resolve_model(name, task, weights_file=settings.weights_file)
        card = resolved.card
        if card.task != task:
            raise ParameterError(
                f"model {card.name!r} is a {card.task} model; "
                f"--{'breast-' if task == 'breast' else ''}weights needs a {task} model."
            )
        if card.family is Family.NNUNET:
            out[task] = _load_nnunet(resolved, task, settings)
            continue
        session = OnnxModel(
            resolved.path,
            device=settings.device,
            threads=settings.threads,
            runtime=settings.runtime,
            precision=settings.precision,
            cudnn_conv_algo_search=settings.cudnn_conv_algo_search,
        )
        if session.on_gpu:
            b = batch_size(settings, session.provider)
            feed = {"image": np.zeros((b, 1, *card.patch_zyx), np.float32)}
            if task == "tumor":
                s = card.phase_slots
                feed = {
                    "phases": np.zeros((b, s, 1, *card.patch_zyx), np.float32),
                    "time_mask": np.ones((b, s), np.float32),
                }
            t0 = time.perf_counter()
            session.run(feed)  # warm-up: cuDNN picks its kernels for this window shape
            session.warmup_s = time.perf_counter() - t0
        from breastai.families import family_for_card

        out[task] = Model(resolved, session, None, family_for_card(card))
    return LoadedModels(breast=out["breast"], tumor=out["tumor"])


def _load_nnunet(resolved: Any, task: str, settings: Settings) -> Model:
    """An imported nnU-Net model in the breast or tumor slot (its card names its roles)."""
    from breastai.nnunet import NnunetCard, NnunetModel

    ncard = NnunetCard.read(resolved.path)
    need = ("breast", "left", "right") if task == "breast" else ("tumor",)
    if not any(ncard.roles.get(r) for r in need):
        raise ParameterError(
            f"nnU-Net model {ncard.name!r} has no {' / '.join(need)} label (roles: "
            f"{', '.join(sorted(ncard.roles)) or 'none'}); import it again with --labels naming "
            f"its {task} label(s)."
        )
    model = NnunetModel(
        ncard,
        resolved.path.parent,
        device=settings.device,
        runtime=settings.runtime,
        precision=settings.precision,
        threads=settings.threads,
    )
    from breastai.families import NnunetFamily

    return Model(resolved, model.sessions[0], model, NnunetFamily(model))
