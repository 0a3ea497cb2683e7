"""NIfTI study input, the atomic image writer and read_image (geometry round trips)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_factory import orientation_cosines

from breastai.errors import (
    InconsistentGeometryError,
    InputError,
    NoDCESeriesError,
    OutputExistsError,
    ParameterError,
)
from breastai.io import load_study, read_image, write_image


def _image(
    k: int, orientation: str = "axial", size=(12, 10, 6), spacing=(0.7, 0.8, 2.0)
) -> sitk.Image:
    rng = np.random.default_rng(k)
    arr = rng.random(size[::-1], dtype=np.float32) + k
    img = sitk.GetImageFromArray(arr)
    row, col = orientation_cosines(orientation)
    img.SetDirection(tuple(np.column_stack([row, col, np.cross(row, col)]).ravel()))
    img.SetSpacing(spacing)
    img.SetOrigin((-10.0, 20.0, 30.0))
    return img


@pytest.mark.parametrize("orientation", ["axial", "sagittal", "oblique"])
def test_write_read_round_trip_keeps_geometry(tmp_path: Path, orientation: str) -> None:
    img = _image(0, orientation)
    path = write_image(img, tmp_path / "x.nii.gz")
    back = read_image(path)
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=1e-5)
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))
    assert [p.name for p in tmp_path.iterdir()] == ["x.nii.gz"]  # no temp file left


def test_write_image_refuses_overwrite(tmp_path: Path) -> None:
    path = write_image(_image(0), tmp_path / "x.nii.gz")
    with pytest.raises(OutputExistsError, match="--force"):
        write_image(_image(1), path)
    write_image(_image(1), path, force=True)
    assert sitk.GetArrayFromImage(read_image(path)).min() >= 1.0


@pytest.mark.parametrize("naming", ["seed", "mamamia"])
def test_per_phase_folder(tmp_path: Path, naming: str) -> None:
    images = [_image(k, "oblique") for k in range(4)]
    for k, img in enumerate(images):
        name = f"P{k}.nii.gz" if naming == "seed" else f"duke_001_{k:04d}.nii.gz"
        write_image(img, tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    study = load_study(tmp_path, times=[30, 90, 150, 210])
    assert study.kind == "nifti" and len(study.phases) == 4
    assert [p.time_s for p in study.phases] == [0.0, 60.0, 120.0, 180.0]
    for k, phase in enumerate(study.phases):
        np.testing.assert_allclose(
            sitk.GetArrayFromImage(phase.image), sitk.GetArrayFromImage(images[k]), atol=1e-6
        )
        np.testing.assert_allclose(phase.image.GetDirection(), images[k].GetDirection(), atol=1e-5)
        assert phase.image.GetPixelID() == sitk.sitkFloat32
    assert study.decisions.warnings == []


def test_four_d_nifti_with_times(tmp_path: Path) -> None:
    vols = [_image(k) for k in range(3)]
    four = sitk.JoinSeries(vols)
    sitk.WriteImage(four, str(tmp_path / "dce.nii.gz"))
    study = load_study(tmp_path / "dce.nii.gz", times=[0, 60, 120])
    assert len(study.phases) == 3
    for k, phase in enumerate(study.phases):
        np.testing.assert_allclose(
            sitk.GetArrayFromImage(phase.image), sitk.GetArrayFromImage(vols[k]), atol=1e-6
        )
        np.testing.assert_allclose(phase.image.GetOrigin(), vols[k].GetOrigin(), atol=1e-4)
    with pytest.raises(ParameterError, match="3 phases"):
        load_study(tmp_path / "dce.nii.gz", times=[0, 60])


def test_phase_on_other_grid_is_resampled_to_reference(tmp_path: Path) -> None:
    write_image(_image(0, spacing=(1.4, 1.6, 2.0), size=(6, 5, 6)), tmp_path / "P0.nii.gz")
    write_image(_image(1), tmp_path / "P1.nii.gz")
    write_image(_image(2), tmp_path / "P2.nii.gz")
    study = load_study(tmp_path)
    assert study.phases[0].image.GetSize() == study.phases[1].image.GetSize() == (12, 10, 6)
    assert any("resampled onto the grid of phase 1" in w for w in study.decisions.warnings)
    # P0 (values 0..1, all > 0) covers P1's field of view: resampled values stay in its range
    p0 = sitk.GetArrayFromImage(study.phases[0].image)
    assert float(p0.min()) >= 0.0 and float(p0.max()) <= 1.0 and float(p0.max()) > 0.0


def test_phase_outside_reference_field_of_view_refused(tmp_path: Path) -> None:
    far = _image(0)
    far.SetOrigin((500.0, 20.0, 30.0))  # half a metre away: no overlap with P1
    write_image(far, tmp_path / "P0.nii.gz")
    write_image(_image(1), tmp_path / "P1.nii.gz")
    with pytest.raises(InconsistentGeometryError, match="does not overlap"):
        load_study(tmp_path)


def test_single_volume_and_gaps_refused(tmp_path: Path) -> None:
    write_image(_image(0), tmp_path / "one.nii.gz")
    with pytest.raises(NoDCESeriesError, match="at least two phases"):
        load_study(tmp_path / "one.nii.gz")
    gap = tmp_path / "gap"
    write_image(_image(0), gap / "P0.nii.gz")
    write_image(_image(1), gap / "P2.nii.gz")
    with pytest.raises(InputError, match="gaps"):
        load_study(gap)


def test_read_image_of_dicom_seg(tmp_path: Path) -> None:
    import highdicom as hd
    import pydicom
    from dicom_factory import make_study
    from pydicom.sr.codedict import codes

    truth = make_study(tmp_path / "dcm", n_phases=1, orientation="oblique")
    sources = [pydicom.dcmread(p) for p in truth.files[0]]
    for ds in sources:  # Type-2 attributes highdicom copies
        ds.AccessionNumber = ""
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.StudyID = ""
        ds.ReferringPhysicianName = ""
    mask = np.zeros((8, 16, 16), dtype=np.uint8)
    mask[1:5, 4:9, 5:7] = 1  # asymmetric along every axis
    desc = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Tumor",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type="MANUAL",
    )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mask,
        segmentation_type="BINARY",
        segment_descriptions=[desc],
        series_instance_uid=hd.UID(),
        series_number=99,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
        omit_empty_frames=False,
    )
    seg.save_as(tmp_path / "seg.dcm")
    image = read_image(tmp_path / "seg.dcm")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), mask)
    np.testing.assert_allclose(image.GetOrigin(), truth.origin, atol=1e-3)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), truth.direction, atol=1e-5)
