"""nnU-Net v2 models in breastai: the model card, torch-free inference and channel derivation.

Public API::

    from breastai.nnunet import NnunetModel, derive_channels

    model = NnunetModel.load("breastdivider", device="auto", runtime="auto", precision="fp32")
    images = derive_channels(study, model.card.channels)      # e.g. ["pre"] or ["pre", "sub1"]
    pred = model.predict(images, tta=True, save_probabilities=False, progress=None)
    pred.labels            # SimpleITK label image on the grid of images[0]
    pred.probabilities     # None, or float32 (classes, z, y, x)

Models are imported with ``breastai import-weights --nnunet DIR`` (torch side:
:mod:`breastai.training.nnunet_import`). Nothing here imports torch.
"""

from __future__ import annotations

from breastai.nnunet.card import NnunetCard
from breastai.nnunet.channels import derive_channels
from breastai.nnunet.model import NnunetModel, NnunetPrediction

__all__ = ["NnunetCard", "NnunetModel", "NnunetPrediction", "derive_channels"]
