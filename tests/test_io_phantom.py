"""The reader on every layout and orientation of the phantom's DICOM writer (with decoys).

Truth comes from the phantom case: its float signal scaled to the writer's 12-bit DN by the one
global factor documented in breastai/phantom/dicom.py (peak 3500), its LPS origin, direction and
spacing, and its phase times.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from breastai import phantom
from breastai.io import load_study

LAYOUTS = getattr(phantom, "LAYOUTS", ())
ORIENTATIONS = getattr(phantom, "ORIENTATIONS", ())


@pytest.fixture(scope="module", params=ORIENTATIONS)
def case(request: pytest.FixtureRequest) -> object:
    return phantom.generate_case(
        0,
        orientation=request.param,
        shape_zyx=(12, 48, 48),
        spacing_zyx=(2.0, 1.5, 1.5),
        n_phases=4,
    )


def _expected_dn(images: np.ndarray) -> np.ndarray:
    scale = 3500.0 / float(images.max())
    return np.clip(np.rint(images.astype(np.float64) * scale), 0, 4095)


def _grid_offset(image: sitk.Image, case: object) -> np.ndarray:
    """Index of ``image``'s voxel (0,0,0) on the case grid (must be integral)."""
    spacing_xyz = np.asarray(case.spacing_zyx[::-1])  # type: ignore[attr-defined]
    m = np.asarray(case.direction) * spacing_xyz  # type: ignore[attr-defined]
    idx = np.linalg.solve(m, np.asarray(image.GetOrigin()) - np.asarray(case.origin_lps))  # type: ignore[attr-defined]
    np.testing.assert_allclose(idx, np.round(idx), atol=1e-3)
    return np.round(idx).astype(int)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_phantom_layout(tmp_path: Path, case: object, layout: str) -> None:
    phantom.write_dicom_study(case, tmp_path, layout=layout, decoys=True, seed=0)
    study = load_study(tmp_path)
    images = case.images  # type: ignore[attr-defined]
    truth = _expected_dn(images)
    assert len(study.phases) == images.shape[0]
    times = np.asarray(case.times_s) - case.times_s[0]  # type: ignore[attr-defined]
    np.testing.assert_allclose([p.time_s for p in study.phases], times, atol=0.01)
    # case.times_s are k-space centres after injection; every layout states the duration
    # (0018,9220 / vendor private) and ContrastBolusStartTime, so the mid-phase times since
    # injection must reproduce them
    sources = {p.timing["duration_source"] for p in study.phases}
    assert len(sources) == 1 and "spacing" not in next(iter(sources))
    np.testing.assert_allclose(
        [p.timing["mid_time_since_injection_s"] for p in study.phases],
        case.times_s,  # type: ignore[attr-defined]
        atol=0.01,
    )
    assert {p.timing["injection_reference"] for p in study.phases} == {
        "ContrastBolusStartTime (0018,1042)"
    }
    mids = np.asarray([p.timing["mid_time_s"] for p in study.phases])
    np.testing.assert_allclose(mids - mids[0], times, atol=0.01)
    first = pydicom.dcmread(study.phases[1].source_files[0], stop_before_pixels=True)
    # 1 DN: the writer scales in float32; + slope / 2: stored = round(DN / slope) (Philips)
    atol = 1.0 + 0.5 * float(first.get("RescaleSlope", 1.0)) + 1e-3
    roles = [row["role"] for row in study.series]
    assert sum(r.startswith("excluded") for r in roles) >= 5  # SUB, MIP, (1/1/1)-(2/1/1), loc, T2
    for k, phase in enumerate(study.phases):
        stacks = phase.stacks or (phase.image,)
        if layout == "split-bilateral":
            assert len(stacks) == 2 and phase.label == "split bilateral: R + L"
        covered = np.zeros(images.shape[1:], dtype=int)
        for image in stacks:
            np.testing.assert_allclose(
                np.reshape(image.GetDirection(), (3, 3)), case.direction, atol=1e-5
            )  # type: ignore[attr-defined]
            np.testing.assert_allclose(image.GetSpacing(), case.spacing_zyx[::-1], atol=1e-4)  # type: ignore[attr-defined]
            ox, oy, oz = _grid_offset(image, case)
            nx, ny, nz = image.GetSize()
            arr = sitk.GetArrayFromImage(image)
            np.testing.assert_allclose(
                arr, truth[k, oz : oz + nz, oy : oy + ny, ox : ox + nx], atol=atol
            )
            covered[oz : oz + nz, oy : oy + ny, ox : ox + nx] += 1
        assert covered.max() == 1  # stacks never overlap
        if layout != "split-bilateral":
            assert covered.min() == 1 and phase.image.GetSize() == images.shape[1:][::-1]
        else:
            # right then left: LPS x grows to the patient's left
            centre = [
                img.TransformContinuousIndexToPhysicalPoint([(v - 1) / 2 for v in img.GetSize()])
                for img in stacks
            ]
            assert centre[0][0] < centre[1][0]
