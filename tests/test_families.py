"""One model interface (issue 12 item 5): `breastai train` builds its inputs with the same family
functions as `segment`, so for the same phantom study the arrays are identical."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs torch (the [train] extra)")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from breastai.phantom import make_demo_study

    return make_demo_study(tmp_path_factory.mktemp("fam") / "case", seed=5, decoys=False)


def test_training_inputs_equal_inference_inputs(phantom: Path) -> None:
    """The demo models' inputs as `segment` prepares them == as `train.prepare_images` does."""
    import SimpleITK as sitk

    from breastai.io import load_study
    from breastai.pipeline import Settings, load_models, prepare_study
    from breastai.training.train import default_options, prepare_images

    study = load_study(phantom / "dicom")
    settings = Settings(device="cpu")
    models = load_models(settings)
    prep = prepare_study(study, settings=settings, models=models)
    (part,) = prep.parts
    bcard, tcard = models.breast.card, models.tumor.card

    phases = [p.image for p in study.phases]
    times = [p.time_s for p in study.phases]
    assert all(t is not None for t in times)
    n_chosen = len(prep.chosen)
    assert n_chosen >= 2

    def mask_ones(img: sitk.Image) -> sitk.Image:  # whole volume: prepare_images crops nothing
        m = sitk.Image(img.GetSize(), sitk.sitkUInt8) + 1
        m.CopyInformation(img)
        return m

    ones = mask_ones(study.reference.image)
    bopt = default_options("breast", spacing_zyx=tuple(bcard.spacing_zyx), patch_zyx=(8, 8, 8))
    got_b = prepare_images("c", phases[:1], ones, None, bopt, times_s=times[:1])
    assert got_b.image.shape == part.breast_input.shape
    assert np.array_equal(got_b.image, part.breast_input)

    topt = default_options(
        "tumor",
        spacing_zyx=tuple(tcard.spacing_zyx),
        patch_zyx=(16, 16, 16),
        stride_zyx=(8, 8, 8),
        network={"slots": int(tcard.phase_slots)},
    )
    got_t = prepare_images("c", phases, ones, ones, topt, times_s=times)
    inference = part.tumor_input[:n_chosen, 0]  # the slots the chosen phases fill
    assert got_t.image.shape == inference.shape
    assert np.array_equal(got_t.image, inference)
    assert part.time_mask[:n_chosen].all() and not part.time_mask[n_chosen:].any()


def test_family_choice_is_by_time_not_index() -> None:
    """More phases than slots: the family chooses by time, as `segment` does (P0, P1, spread)."""
    import SimpleITK as sitk

    from breastai.families import SeedFamily, study_from_phases

    imgs = []
    for k in range(8):
        img = sitk.GetImageFromArray(np.full((4, 6, 6), 10.0 * (k + 1), np.float32))
        imgs.append(img)
    # late phases bunched early except the last two: a time-spread choice takes P6, not P4
    times = [0.0, 60.0, 70.0, 80.0, 90.0, 100.0, 500.0, 700.0]
    fam = SeedFamily((1.0, 1.0, 1.0), 5)
    by_time = fam.prepare(study_from_phases(imgs, times))
    by_index = fam.prepare(study_from_phases(imgs, None))
    assert by_time.chosen == [0, 1, 2, 6, 7]
    assert by_index.chosen == [0, 1, 2, 4, 7]  # what training did before (times ignored)
    assert by_time.raw is not None and float(by_time.raw[3].max()) == 70.0  # P6's values
