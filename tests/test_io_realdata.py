"""The reader against real GE/Philips/Siemens multi-volume series (../shared/data/dicom-temporal).

Truth: EXPECTED.json from dcm2niix (volume count, grid size, spacing, RAS affine). dcm2niix may
flip rows or slices, so the eight corner voxel centres are compared as a set, in LPS (RAS -> LPS:
negate x and y), within 0.01 mm. These series are fMRI/ASL, not DCE, so the series is chosen
explicitly with ``dce_series`` (the TE rule would exclude them).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from breastai.io import load_study
from breastai.io.dicom_index import index_folder

DATASETS = [
    "ge_epi_10vol_no_tpi",
    "ge_multiphase_10tp_A",
    "philips_classic_fmri_3dyn",
    "philips_enhanced_pcasl_source_3dyn",
    "siemens_xa10_enhanced_4vol",
]


def _corners_lps_from_ras(
    affine: np.ndarray, shape_xyz: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Corner voxel centres in LPS and, per corner, the tolerance: 0.01 mm plus the error that
    EXPECTED.json's 3-decimal rounding of the affine can cause at that voxel index."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps = flip @ affine
    out, tol = [], []
    for i, j, k in itertools.product(*[(0, n - 1) for n in shape_xyz]):
        out.append((lps @ np.array([i, j, k, 1.0]))[:3])
        tol.append(0.01 + np.sqrt(3) * 0.0005 * (i + j + k + 1))
    return np.asarray(out), np.asarray(tol)


def _corners(image: sitk.Image) -> np.ndarray:
    nx, ny, nz = image.GetSize()
    return np.asarray(
        [
            image.TransformIndexToPhysicalPoint((i, j, k))
            for i, j, k in itertools.product((0, nx - 1), (0, ny - 1), (0, nz - 1))
        ]
    )


@pytest.mark.parametrize("name", DATASETS)
def test_real_series_against_dcm2niix(shared_dir: Path, name: str) -> None:
    root = shared_dir / "data" / "dicom-temporal"
    expected = json.loads((root / "EXPECTED.json").read_text())[name]
    folder = root / name
    uids = sorted({r.series_uid for r in index_folder(folder).records if r.image})
    study = load_study(folder, dce_series=uids)
    assert len(study.phases) == expected["volumes"]
    want, tol = _corners_lps_from_ras(
        np.asarray(expected["affine_ras_from_dcm2niix"]), expected["shape_xyz"]
    )
    for phase in study.phases:
        image = phase.image
        assert list(image.GetSize()) == expected["shape_xyz"]
        np.testing.assert_allclose(image.GetSpacing(), expected["spacing_xyz_mm"], atol=0.01)
        got = _corners(image)
        # each expected corner has a reader corner within 0.01 mm (+ the affine's rounding);
        # dcm2niix may flip axes, so corners are matched as a set
        dist = np.linalg.norm(want[:, None, :] - got[None, :, :], axis=2)
        assert np.all(dist.min(axis=1) < tol), dist.min(axis=1)
        assert dist.min(axis=1).min() < 0.01  # the corners at index 0 carry no rounding
    # phases differ (never the same volume twice) and have distinct source frames
    sources = [
        set(zip(p.source_files, p.frame_numbers or (0,) * len(p.source_files), strict=True))
        for p in study.phases
    ]
    assert all(not (a & b) for a, b in itertools.combinations(sources, 2))


def test_philips_pcasl_is_six_volumes_of_forty(shared_dir: Path) -> None:
    folder = shared_dir / "data" / "dicom-temporal" / "philips_enhanced_pcasl_source_3dyn"
    uids = sorted({r.series_uid for r in index_folder(folder).records})
    study = load_study(folder, dce_series=uids)
    assert [p.image.GetSize()[2] for p in study.phases] == [40] * 6  # never 3 x 80
    assert "TemporalPositionIndex" in (study.decisions.grouping_key or "")
    assert any("repeated slice position" in n for n in study.decisions.notes)


def test_real_series_not_mistaken_for_dce(shared_dir: Path) -> None:
    """Without --dce-series the EPI fMRI series is excluded with a clear reason."""
    from breastai.errors import NoDCESeriesError

    folder = shared_dir / "data" / "dicom-temporal" / "ge_epi_10vol_no_tpi"
    with pytest.raises(NoDCESeriesError, match=r"excluded .*--dce-series"):
        load_study(folder)
