"""Patch augmentation of the training loop (breastai.training.augment)."""

from __future__ import annotations

import numpy as np
import pytest

from breastai.training.augment import augment_intensity, sample_affine_patch


def _ball_case() -> tuple[np.ndarray, np.ndarray]:
    z, y, x = np.indices((40, 60, 60))
    ball = ((z - 20) ** 2 + (y - 30) ** 2 + (x - 30) ** 2) <= 10**2
    rng = np.random.default_rng(0)
    image = np.stack([ball * 1.0 + rng.random(ball.shape) * 0.1, (y / 60.0)]).astype(np.float32)
    return image, ball.astype(np.uint8)


def test_identity_transform_is_the_plain_crop() -> None:
    image, target = _ball_case()
    start, patch = (4, 10, 12), (32, 40, 40)
    img, tgt = sample_affine_patch(
        image,
        target,
        start,
        patch,
        np.random.default_rng(1),
        max_rot_deg=(0.0, 0.0, 0.0),
        scale=(1.0, 1.0),
        axis_jitter=0.0,
        elastic_vox=0.0,
    )
    sl = tuple(slice(a, a + p) for a, p in zip(start, patch, strict=True))
    assert np.allclose(img, image[(slice(None), *sl)], atol=1e-5)
    assert np.array_equal(tgt, target[sl])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_rotation_and_elastic_keep_image_and_mask_together(seed: int) -> None:
    image, target = _ball_case()
    img, tgt = sample_affine_patch(
        image, target, (0, 5, 5), (40, 50, 50), np.random.default_rng(seed), scale=(1.0, 1.0)
    )
    vol = target.sum()
    assert 0.85 * vol < tgt.sum() < 1.15 * vol  # rotation keeps the ball's volume
    # the mask still marks the bright voxels of channel 0 (image and mask moved together)
    assert img[0][tgt > 0].mean() > 0.9 and img[0][(tgt == 0) & (img[0] > 0)].mean() < 0.3


def test_intensity_augmentation_ranges_and_empty_slots() -> None:
    rng = np.random.default_rng(5)
    patch = rng.random((6, 8, 16, 16)).astype(np.float32)
    patch[1:3] *= 1.6  # later phases may exceed 1 (scaled with P1's range)
    patch[4:] = 0.0
    tmask = np.array([1, 1, 1, 1, 0, 0], np.float32)
    changed = 0
    for seed in range(20):
        out = augment_intensity(patch, tmask, np.random.default_rng(seed))
        assert out.dtype == np.float32 and out.shape == patch.shape
        assert np.all(out[4:] == 0.0) and out.min() >= 0.0
        changed += not np.allclose(out, patch)
        single = augment_intensity(patch[:1], None, np.random.default_rng(seed))
        assert single.min() >= 0.0 and single.max() <= 1.0
    assert changed >= 15
    a = augment_intensity(patch, tmask, np.random.default_rng(3))
    assert np.array_equal(a, augment_intensity(patch, tmask, np.random.default_rng(3)))
