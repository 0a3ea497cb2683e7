"""DICOM study reader: layouts, orientations and the failure cases of dicom-rules.md §2.

Every study is synthesised with tests/dicom_factory.py, whose analytic geometry and pixel
values are the truth the reader's result is compared against.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import SynthStudy, make_study, rewrite
from pydicom.dataset import Dataset

from breastai.errors import (
    AmbiguousStudyError,
    InconsistentGeometryError,
    InputError,
    NoDCESeriesError,
    UnsupportedInputError,
)
from breastai.io import load_study, study_info
from breastai.io.dicom_index import index_folder
from breastai.io.times import DURATION_SPACING
from breastai.study import Study


def _arrays(study: Study) -> np.ndarray:
    return np.stack([sitk.GetArrayFromImage(p.image) for p in study.phases])


def _assert_geometry(
    image: sitk.Image, truth: SynthStudy, origin: np.ndarray | None = None
) -> None:
    np.testing.assert_allclose(
        image.GetOrigin(), truth.origin if origin is None else origin, atol=1e-3
    )
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), truth.direction, atol=1e-5)
    np.testing.assert_allclose(image.GetSpacing(), truth.spacing_xyz, atol=1e-4)
    assert image.GetSize() == tuple(reversed(truth.arrays.shape[1:]))
    assert image.GetPixelID() == sitk.sitkFloat32


def _assert_matches(study: Study, truth: SynthStudy) -> None:
    assert len(study.phases) == truth.arrays.shape[0]
    for phase in study.phases:
        _assert_geometry(phase.image, truth)
    np.testing.assert_allclose(_arrays(study), truth.arrays, atol=1e-3)
    assert [p.time_s for p in study.phases] == pytest.approx(truth.times_s, abs=1e-3)


# -------------------------------------------------------------------------------------------
# layouts and orientations


@pytest.mark.parametrize("orientation", ["axial", "sagittal", "coronal", "oblique"])
def test_case1_one_series_temporal_position_identifier(tmp_path: Path, orientation: str) -> None:
    truth = make_study(tmp_path, n_phases=4, orientation=orientation)
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    assert study.decisions.grouping_key == "TemporalPositionIdentifier"
    assert study.decisions.clock == "AcquisitionDateTime"
    # corners in world coordinates, from the analytic geometry
    img = study.phases[1].image
    nx, ny, nz = img.GetSize()
    got = np.array(
        [
            img.TransformIndexToPhysicalPoint((x, y, z))
            for z in (0, nz - 1)
            for y in (0, ny - 1)
            for x in (0, nx - 1)
        ]
    )
    np.testing.assert_allclose(got, truth.corners(), atol=1e-3)
    # phase instance bookkeeping for the SEG writer
    assert len(study.phases[1].instance_uids) == 8
    assert all(Path(f).exists() for f in study.phases[1].source_files)


def test_case2_never_stacks_all_phases(tmp_path: Path) -> None:
    make_study(tmp_path, n_phases=3, spacing_zyx=(2.0, 0.8, 0.8))
    study = load_study(tmp_path)
    assert [p.image.GetSize()[2] for p in study.phases] == [8, 8, 8]
    assert all(p.image.GetSpacing()[2] == pytest.approx(2.0) for p in study.phases)


def test_case3_series_numbers_not_in_time_order(tmp_path: Path) -> None:
    truth = make_study(
        tmp_path, n_phases=5, layout="series_per_phase", series_numbers=[14, 11, 13, 10, 12]
    )
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    assert [p.series_uid for p in study.phases] == truth.series_uids
    roles = {row["series_number"]: row["role"] for row in study.series}
    assert roles == {
        14: "DCE phase 0",
        11: "DCE phase 1",
        13: "DCE phase 2",
        10: "DCE phase 3",
        12: "DCE phase 4",
    }


def test_case4_pre_series_plus_multiphase_post(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=4, layout="pre_post", orientation="oblique")
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    assert study.phases[0].series_uid == truth.series_uids[0]
    assert len({p.series_uid for p in study.phases[1:]}) == 1
    assert study.phases[1].series_uid != study.phases[0].series_uid


def test_case5_split_bilateral_kept_as_two_stacks(tmp_path: Path) -> None:
    truth = make_study(
        tmp_path,
        n_phases=3,
        layout="split_bilateral",
        orientation="sagittal",
        bilateral_gap_mm=60.0,
    )
    study = load_study(tmp_path)
    assert len(study.phases) == 3
    for phase in study.phases:
        assert len(phase.stacks) == 2
        assert phase.label == "split bilateral: R + L"
        right, left = phase.stacks
        assert right.GetSize() == left.GetSize() == (16, 16, 8)  # never one stack with a gap
        np.testing.assert_allclose(right.GetOrigin(), truth.stack_origins[0], atol=1e-3)
        np.testing.assert_allclose(left.GetOrigin(), truth.stack_origins[1], atol=1e-3)
        assert right.GetOrigin()[0] < 0 < left.GetOrigin()[0]
        assert len(phase.instance_uids) == len(phase.source_files) == right.GetSize()[2]
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(study.phases[2].stacks[1]), truth.arrays[2], atol=1e-3
    )


def test_case5_split_bilateral_on_one_grid_is_joined(tmp_path: Path) -> None:
    make_study(
        tmp_path, n_phases=3, layout="split_bilateral", orientation="sagittal", bilateral_gap_mm=2.0
    )
    study = load_study(tmp_path)
    assert [p.image.GetSize() for p in study.phases] == [(16, 16, 16)] * 3
    assert study.phases[0].stacks == ()
    assert study.phases[0].image.GetSpacing()[2] == pytest.approx(2.0)


def test_case6_subtraction_mip_cad_excluded(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=3, tag="dce")
    kw = {"study_uid": truth.study_uid, "n_phases": 3}
    make_study(
        tmp_path / "sub",
        tag="sub",
        description="t1c1_sub",
        extra={"ImageType": ["DERIVED", "SECONDARY", "SUBTRACTION"]},
        **kw,
    )
    make_study(tmp_path / "ge", tag="gesub", description="(1/1/1)-(2/1/1)", **kw)
    make_study(tmp_path / "mip", tag="mip", description="MIP post", **kw)
    make_study(tmp_path / "cad", tag="cad", description="CAD SER map", **kw)
    make_study(tmp_path / "pe", tag="pe", description="PE color", **kw)
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    excluded = [row["role"] for row in study.series if row["role"].startswith("excluded")]
    assert len(excluded) == 5
    assert all("derived" in role for role in excluded)


def test_case7_philips_random_instance_numbers(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    numbers = rng.permutation(1000)

    def shuffle(ds: Dataset, k: int, z: int) -> None:
        ds.InstanceNumber = int(numbers[k * 8 + z]) + 1

    truth = make_study(
        tmp_path,
        n_phases=3,
        manufacturer="Philips Medical Systems",
        description="DYN_eTHRIVE",
        per_file=shuffle,
    )
    _assert_matches(load_study(tmp_path), truth)


def test_case8_philips_trigger_time_is_a_clock(tmp_path: Path) -> None:
    def trigger(ds: Dataset, k: int, z: int) -> None:
        ds.TriggerTime = str(90000 * k)
        ds.AcquisitionTime = "090000"
        ds.ContentTime = "090000"
        del ds.TemporalPositionIdentifier

    truth = make_study(
        tmp_path,
        n_phases=3,
        manufacturer="Philips Medical Systems",
        per_file=trigger,
        times_s=[0, 90, 180],
    )
    study = load_study(tmp_path)
    assert "TriggerTime" in (study.decisions.clock or "")
    assert [p.time_s for p in study.phases] == pytest.approx([0.0, 90.0, 180.0])
    np.testing.assert_allclose(_arrays(study), truth.arrays, atol=1e-3)


def test_case9_incomplete_last_phase_dropped(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=4)
    for path in truth.files[3][4:]:
        path.unlink()
    study = load_study(tmp_path)
    assert len(study.phases) == 3
    np.testing.assert_allclose(_arrays(study), truth.arrays[:3], atol=1e-3)
    assert any("incomplete last phase" in w for w in study.decisions.warnings)


def test_case10_missing_slice_everywhere_is_reported(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=3)
    for k in range(3):
        truth.files[k][4].unlink()
    with pytest.raises(InconsistentGeometryError, match=r"missing after slice index 3"):
        load_study(tmp_path)


def test_case10_missing_slice_in_one_phase_is_reported(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=3)
    truth.files[1][5].unlink()
    with pytest.raises(
        InconsistentGeometryError, match=r"phase 1 lacks 1 of 8 slices \(slice index 5"
    ):
        load_study(tmp_path)


def test_case11_factorization_from_distinct_positions(tmp_path: Path) -> None:
    # 120 files: 12 phases x 10 slices (not 24 x 5 or 6 x 20); no temporal tag at all
    truth = make_study(
        tmp_path,
        n_phases=12,
        shape_zyx=(10, 8, 8),
        temporal_tag=False,
        times_s=[20.0 * k for k in range(12)],
    )
    study = load_study(tmp_path)
    assert len(study.phases) == 12
    assert {p.image.GetSize()[2] for p in study.phases} == {10}
    np.testing.assert_allclose(_arrays(study), truth.arrays, atol=1e-3)


def test_case12_zip2_images_in_acquisition_ignored(tmp_path: Path) -> None:
    # GE ZIP2: ImagesInAcquisition = 2 x LocationsInAcquisition; the slice count comes from IPP
    truth = make_study(tmp_path, n_phases=3, extra={"ImagesInAcquisition": 16})
    study = load_study(tmp_path)
    assert [p.image.GetSize()[2] for p in study.phases] == [8, 8, 8]
    _assert_matches(study, truth)


def test_case13_low_precision_positions_accepted(tmp_path: Path) -> None:
    def coarse(ds: Dataset, k: int, z: int) -> None:
        ds.ImagePositionPatient = [f"{float(v):.2f}" for v in ds.ImagePositionPatient]

    truth = make_study(
        tmp_path, n_phases=3, orientation="oblique", spacing_zyx=(1.1, 0.7, 0.7), per_file=coarse
    )
    study = load_study(tmp_path)
    assert study.phases[0].image.GetSpacing()[2] == pytest.approx(1.1, abs=0.01)
    np.testing.assert_allclose(_arrays(study), truth.arrays, atol=1e-3)


def _edit_frames(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    def change(ds: Dataset) -> None:
        for item in ds.PerFrameFunctionalGroupsSequence:
            edit(item.FrameContentSequence[0])

    rewrite(path, change)


def test_enhanced_multiframe(tmp_path: Path) -> None:
    truth = make_study(
        tmp_path, n_phases=3, layout="enhanced", orientation="sagittal", slopes=[1.0, 2.0, 0.5]
    )
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    assert study.decisions.grouping_key == "TemporalPositionIndex"
    assert study.phases[1].frame_numbers == tuple(range(9, 17))


def test_case14_canon_temporal_position_index_all_one(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=3, layout="enhanced")

    def ones(content: Dataset) -> None:
        content.TemporalPositionIndex = 1
        content.DimensionIndexValues = [1, content.InStackPositionNumber, 1]

    _edit_frames(truth.files[0][0], ones)
    study = load_study(tmp_path)
    assert study.decisions.grouping_key != "TemporalPositionIndex"
    _assert_matches(study, truth)


@pytest.mark.parametrize("keep_attribute", [True, False])
def test_case15_inconsistent_dimension_index(tmp_path: Path, keep_attribute: bool) -> None:
    truth = make_study(tmp_path, n_phases=3, layout="enhanced")
    path = truth.files[0][0]

    def swap(ds: Dataset) -> None:
        seq = ds.DimensionIndexSequence
        seq[1].DimensionIndexPointer, seq[2].DimensionIndexPointer = 0x00209128, 0x00209057
        if not keep_attribute:
            for item in ds.PerFrameFunctionalGroupsSequence:
                del item.FrameContentSequence[0].TemporalPositionIndex

    rewrite(path, swap)
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    if keep_attribute:
        assert any("DimensionIndexValues disagree" in w for w in study.decisions.warnings)


def test_case16_siemens_new_series_per_volume(tmp_path: Path) -> None:
    def seq(ds: Dataset, k: int, z: int) -> None:
        ds.SequenceName = "*fl3d1"

    truth = make_study(
        tmp_path,
        n_phases=4,
        layout="series_per_phase",
        manufacturer="SIEMENS",
        description="t1_fl3d_tra_dynaViews",
        series_numbers=[1001, 1002, 1003, 1004],
        per_file=seq,
    )
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    assert any(t["rule"] == "vendor sequence" for t in study.decisions.candidates[0]["trace"])


def test_case17_acquisition_number_per_phase(tmp_path: Path) -> None:
    def twist(ds: Dataset, k: int, z: int) -> None:
        ds.AcquisitionNumber = k + 1
        ds.InstanceNumber = z + 1

    truth = make_study(
        tmp_path, n_phases=3, temporal_tag=False, manufacturer="SIEMENS", per_file=twist
    )
    study = load_study(tmp_path)
    assert study.decisions.grouping_key == "AcquisitionNumber"
    _assert_matches(study, truth)


def test_case18_constant_content_time_switches_clock(tmp_path: Path) -> None:
    def clocks(ds: Dataset, k: int, z: int) -> None:
        for name in ("AcquisitionTime", "AcquisitionDate"):
            del ds[name]
        ds.ContentTime = "091500"
        ds.TriggerTime = str(45000 * k)

    truth = make_study(tmp_path, n_phases=3, per_file=clocks, times_s=[0, 45, 90])
    study = load_study(tmp_path)
    assert study.decisions.clock == "TriggerTime"
    assert any("ContentDateTime rejected" in n for n in study.decisions.notes)
    _assert_matches(study, truth)


@pytest.mark.parametrize("dates", [True, False])
def test_case19_times_across_midnight(tmp_path: Path, dates: bool) -> None:
    def strip(ds: Dataset, k: int, z: int) -> None:
        if not dates:
            for name in ("AcquisitionDate", "ContentDate", "SeriesDate"):
                del ds[name]

    truth = make_study(
        tmp_path,
        n_phases=3,
        start=dt.datetime(2024, 3, 1, 23, 59, 50),
        times_s=[0, 20, 40],
        per_file=strip,
    )
    study = load_study(tmp_path)
    assert [p.time_s for p in study.phases] == pytest.approx([0.0, 20.0, 40.0])
    _assert_matches(study, truth)


@pytest.mark.parametrize("dates", [True, False])
def test_phase_timing_from_headers(tmp_path: Path, dates: bool) -> None:
    """Injection 30 s before phase 0 (across midnight), 50 s TemporalResolution, 60 s phases."""

    def stamp(ds: Dataset, k: int, z: int) -> None:
        ds.ContrastBolusStartTime = "235940"
        ds.TemporalResolution = 50000.0  # ms
        if not dates:
            for name in ("AcquisitionDate", "ContentDate", "SeriesDate", "StudyDate"):
                del ds[name]

    make_study(
        tmp_path,
        n_phases=3,
        start=dt.datetime(2024, 3, 1, 23, 59, 40),
        times_s=[30, 90, 150],
        per_file=stamp,
    )
    info = study_info(load_study(tmp_path))
    phases = info["phases"]
    assert [p["time_s"] for p in phases] == [0.0, 60.0, 120.0]
    assert [p["duration_s"] for p in phases] == [50.0] * 3
    assert {p["duration_source"] for p in phases} == {"TemporalResolution (0020,0110)"}
    assert [p["mid_time_s"] for p in phases] == [25.0, 85.0, 145.0]
    assert [p["time_since_injection_s"] for p in phases] == pytest.approx([30.0, 90.0, 150.0])
    assert [p["mid_time_since_injection_s"] for p in phases] == pytest.approx([55, 115, 175])
    assert [p["time_since_first_post_s"] for p in phases] == [-60.0, 0.0, 60.0]
    assert {p["injection_reference"] for p in phases} == {"ContrastBolusStartTime (0018,1042)"}
    # user times are not on the scanner clock: no time since injection from them
    user = study_info(load_study(tmp_path, times=[0, 70, 140]))["phases"]
    assert {p["time_since_injection_s"] for p in user} == {None}
    assert all("--times" in p["injection_reference"] for p in user)


def test_phase_timing_without_injection_or_durations(tmp_path: Path) -> None:
    make_study(tmp_path, n_phases=3, times_s=[0, 100, 160])
    phases = study_info(load_study(tmp_path))["phases"]
    assert [p["duration_s"] for p in phases] == [100.0, 60.0, 60.0]
    assert {p["duration_source"] for p in phases} == {DURATION_SPACING}
    assert [p["mid_time_s"] for p in phases] == [50.0, 130.0, 190.0]
    assert {p["time_since_injection_s"] for p in phases} == {None}
    assert all(
        "ContrastBolusStartTime (0018,1042) absent" in p["injection_reference"] for p in phases
    )
    # user times: spacing of the given times; no injection reference from the headers
    user = study_info(load_study(tmp_path, times=[0, 80, 200]))["phases"]
    assert [p["duration_s"] for p in user] == [80.0, 120.0, 120.0]
    assert {p["time_since_injection_s"] for p in user} == {None}


def test_case20_duplicate_pre_contrast_keeps_last(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=5, contrast_from=2)
    study = load_study(tmp_path)
    assert len(study.phases) == 4
    np.testing.assert_allclose(_arrays(study), truth.arrays[1:], atol=1e-3)
    assert study.phases[0].time_s == 0.0 and study.phases[1].time_s == pytest.approx(60.0)
    assert any("pre-contrast" in w for w in study.decisions.warnings)
    assert len(load_study(tmp_path, keep_all_pre=True).phases) == 5


def test_inconsistent_contrast_tags_keep_every_phase(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=4, contrast_from=3)  # only the last phase tagged
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    assert any("inconsistent" in w for w in study.decisions.warnings)


def test_case21_three_plane_localizer_excluded(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=3)
    loc = tmp_path / "loc"
    for k, orient in enumerate(["axial", "sagittal", "coronal"]):
        orient_index = k + 1

        def same_series(ds: Dataset, _k: int, z: int, orient_index: int = orient_index) -> None:
            ds.SeriesInstanceUID = "1.2.3.4.5.6"
            ds.SeriesNumber = 1
            ds.SOPInstanceUID = f"1.2.3.4.5.6.{ds.SeriesNumber}.{orient_index}.{z}"

        make_study(
            loc / orient,
            n_phases=1,
            shape_zyx=(3, 16, 16),
            orientation=orient,
            tag=f"loc{k}",
            study_uid=truth.study_uid,
            description="3-plane loc",
            per_file=same_series,
        )
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    role = next(r["role"] for r in study.series if r["series_number"] == 1)
    assert role.startswith("excluded: localizer")


def test_case22_duplicate_file_dropped(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=3)
    shutil.copy(truth.files[1][3], tmp_path / "copy_of_one_slice.dcm")
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    assert any("duplicate" in w for w in study.decisions.warnings)


def test_duplicate_series_nd_copy_excluded(tmp_path: Path) -> None:
    kw = {"n_phases": 3, "layout": "series_per_phase", "manufacturer": "SIEMENS"}
    truth = make_study(
        tmp_path / "dis",
        tag="dis",
        series_numbers=[10, 12, 14],
        extra={"ImageType": ["ORIGINAL", "PRIMARY", "M", "DIS3D"]},
        **kw,
    )
    make_study(
        tmp_path / "nd",
        tag="nd",
        series_numbers=[11, 13, 15],
        study_uid=truth.study_uid,
        frame_of_reference_uid=truth.frame_of_reference_uid,
        extra={"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"]},
        **kw,
    )
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    assert [p.series_uid for p in study.phases] == truth.series_uids
    dup = [r["role"] for r in study.series if r["series_number"] in (11, 13, 15)]
    assert all(r.startswith("excluded: duplicate of series") for r in dup)


def test_case23_gantry_tilt_refused(tmp_path: Path) -> None:
    def shear(ds: Dataset, k: int, z: int) -> None:
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [f"{ipp[0]:.4f}", f"{ipp[1] + 0.5 * z:.4f}", f"{ipp[2]:.4f}"]

    make_study(tmp_path, n_phases=3, per_file=shear)
    with pytest.raises(InconsistentGeometryError, match="tilt"):
        load_study(tmp_path)


def test_case24_rescale_slope_per_phase(tmp_path: Path) -> None:
    truth = make_study(
        tmp_path, n_phases=3, slopes=[1.0, 2.5, 0.5], manufacturer="Philips Medical Systems"
    )
    _assert_matches(load_study(tmp_path), truth)


def test_case25_philips_private_position(tmp_path: Path) -> None:
    from pydicom.sequence import Sequence as DicomSequence

    def private_ipp(ds: Dataset, k: int, z: int) -> None:
        item = Dataset()
        item.ImagePositionPatient = ds.ImagePositionPatient
        block = ds.private_block(0x2005, "Philips MR Imaging DD 005", create=True)
        block.add_new(0x0F, "SQ", DicomSequence([item]))
        del ds.ImagePositionPatient

    truth = make_study(
        tmp_path, n_phases=3, manufacturer="Philips Medical Systems", per_file=private_ipp
    )
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    assert any("half a voxel" in w for w in study.decisions.warnings)


def test_philips_derived_series_number_rule(tmp_path: Path) -> None:
    kw = {"manufacturer": "Philips Medical Systems", "description": "DYN_eTHRIVE"}
    truth = make_study(tmp_path / "orig", n_phases=3, tag="o", series_numbers=[1401] * 3, **kw)
    make_study(
        tmp_path / "deriv",
        n_phases=3,
        tag="d",
        series_numbers=[1403] * 3,
        study_uid=truth.study_uid,
        **kw,
    )
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    role = next(r["role"] for r in study.series if r["series_number"] == 1403)
    assert "Philips series 1403 beside original 1401" in role


def test_tr_change_within_series_excluded(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=3, tag="dce")

    def tr_ramp(ds: Dataset, k: int, z: int) -> None:
        ds.RepetitionTime = str(4.5 + k)

    make_study(
        tmp_path / "ramp",
        n_phases=3,
        tag="ramp",
        study_uid=truth.study_uid,
        per_file=tr_ramp,
        origin=(0, 0, 0),
    )
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    assert any("TR changes within the series" in r["role"] for r in study.series)


def test_case30_two_geometries_in_one_enhanced_series(tmp_path: Path) -> None:
    a = make_study(tmp_path / "a", n_phases=3, layout="enhanced", tag="x")
    b = make_study(tmp_path / "b", n_phases=3, layout="enhanced", tag="x", orientation="sagittal")
    ds_a = pydicom.dcmread(a.files[0][0])
    ds_b = pydicom.dcmread(b.files[0][0])
    for ds in (ds_a, ds_b):
        orient = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence
        for item in ds.PerFrameFunctionalGroupsSequence:
            item.PlaneOrientationSequence = orient
        del ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence
    ds_a.PerFrameFunctionalGroupsSequence.extend(ds_b.PerFrameFunctionalGroupsSequence)
    ds_a.NumberOfFrames = 48
    ds_a.PixelData = ds_a.PixelData + ds_b.PixelData
    out = tmp_path / "merged"
    out.mkdir()
    ds_a.save_as(out / "mf.dcm", enforce_file_format=True)
    with pytest.raises(AmbiguousStudyError) as info:
        load_study(out)
    assert len(info.value.candidates) == 2
    assert all("#stack" in line and "--dce-series" in line for line in info.value.candidates)
    uid = ds_a.SeriesInstanceUID
    study = load_study(out, dce_series=[f"{uid}#stack2"])  # one stack, never merged
    assert len(study.phases) == 3
    np.testing.assert_allclose(
        np.reshape(study.phases[0].image.GetDirection(), (3, 3)), b.direction, atol=1e-5
    )


# -------------------------------------------------------------------------------------------
# decoys, selection and bad input


def test_decoys_t2_dwi_single_t1(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=3, tag="dce")
    kw = {"study_uid": truth.study_uid}
    make_study(
        tmp_path / "t2", tag="t2", n_phases=1, description="ax t2", extra={"EchoTime": "90"}, **kw
    )
    make_study(
        tmp_path / "dwi",
        tag="dwi",
        n_phases=2,
        description="ax dwi",
        extra={"DiffusionBValue": 800},
        **kw,
    )
    make_study(tmp_path / "t1", tag="t1", n_phases=1, description="ax t1 nonfs", **kw)
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    roles = [r["role"] for r in study.series]
    assert sum("TE 90" in r for r in roles) == 1 and sum("diffusion" in r for r in roles) == 1
    assert any(r.startswith("candidate #2") for r in roles)
    assert study.decisions.candidates[0]["score"] > study.decisions.candidates[1]["score"]


def test_ambiguous_candidates(tmp_path: Path) -> None:
    a = make_study(tmp_path / "a", n_phases=3, tag="a", description="dyn left")
    make_study(
        tmp_path / "b",
        n_phases=3,
        tag="b",
        description="dyn right",
        study_uid=a.study_uid,
        origin=(0, 0, 0),
    )
    with pytest.raises(AmbiguousStudyError, match="--dce-series") as info:
        load_study(tmp_path)
    assert len(info.value.candidates) == 2
    study = load_study(tmp_path, dce_series=[a.series_uids[0]])
    _assert_matches(study, a)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty"):
        load_study(tmp_path)


def test_no_dicom(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(InputError, match="No DICOM images"):
        load_study(tmp_path)


def test_single_phase_only(tmp_path: Path) -> None:
    make_study(tmp_path, n_phases=1)
    with pytest.raises(NoDCESeriesError, match="two phases"):
        load_study(tmp_path)


def test_corrupt_and_unreadable_files_skipped(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=3)
    (tmp_path / "broken.dcm").write_bytes(
        bytes(128) + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + bytes(10)
    )
    os.symlink(tmp_path / "does-not-exist.dcm", tmp_path / "dangling.dcm")
    (tmp_path / "DICOMDIR").write_bytes(b"")
    study = load_study(tmp_path)
    _assert_matches(study, truth)
    warning = " ".join(study.decisions.warnings)
    assert "corrupt 1 file(s)" in warning and "unreadable 1 file(s)" in warning


def test_truncated_pixel_data(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=3)
    path = truth.files[1][2]
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(InputError, match="truncated") as info:
        load_study(tmp_path)
    assert path.name in str(info.value)


def test_mixed_studies_refused_unless_chosen(tmp_path: Path) -> None:
    a = make_study(tmp_path / "a", n_phases=3, tag="a")
    make_study(tmp_path / "b", n_phases=3, tag="b", patient_id="OTHER")
    with pytest.raises(InputError, match="--study"):
        load_study(tmp_path)
    _assert_matches(load_study(tmp_path, study_uid=a.study_uid), a)


def test_mixed_patients_in_one_study_refused(tmp_path: Path) -> None:
    a = make_study(tmp_path / "a", n_phases=3, tag="a")
    make_study(tmp_path / "b", n_phases=1, tag="b", patient_id="OTHER", study_uid=a.study_uid)
    with pytest.raises(InputError, match="patient"):
        load_study(tmp_path)


def test_compressed_without_decoder(tmp_path: Path) -> None:
    from pydicom.encaps import encapsulate

    truth = make_study(tmp_path, n_phases=2)

    def mpeg(ds: Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
        ds.PixelData = encapsulate([bytes(64)])
        ds["PixelData"].VR = "OB"

    for path in truth.files[1]:
        rewrite(path, mpeg)
    with pytest.raises(UnsupportedInputError, match=r"1\.2\.840\.10008\.1\.2\.4\.100"):
        load_study(tmp_path)


def test_missing_decoder_names_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import pydicom.pixels.decoders.base as decoders

    from breastai.io import dicom

    class Fake:
        is_available = False

    monkeypatch.setattr(decoders, "get_decoder", lambda uid: Fake())
    with pytest.raises(UnsupportedInputError, match=r"JPEG-LS.*pylibjpeg-libjpeg or python-gdcm"):
        dicom.check_decoder("1.2.840.10008.1.2.4.80")


@pytest.mark.parametrize(
    "syntax", ["1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.80"]
)
def test_compressed_transfer_syntaxes_decode(tmp_path: Path, syntax: str) -> None:
    truth = make_study(tmp_path, n_phases=2, shape_zyx=(4, 32, 32))  # openjpeg needs >= 32 px

    def compress(ds: Dataset) -> None:
        ds.compress(syntax)

    for files in truth.files:
        for path in files:
            rewrite(path, compress)
    assert pydicom.dcmread(truth.files[0][0]).file_meta.TransferSyntaxUID == syntax
    _assert_matches(load_study(tmp_path), truth)


def test_index_parallel_equals_serial(tmp_path: Path) -> None:
    make_study(tmp_path, n_phases=2, layout="series_per_phase")
    serial = index_folder(tmp_path, workers=1)
    parallel = index_folder(tmp_path, workers=2)
    assert [(r.path, r.frame, r.ipp) for r in serial.records] == [
        (r.path, r.frame, r.ipp) for r in parallel.records
    ]


def test_private_tags_read_by_creator(tmp_path: Path) -> None:
    def private(ds: Dataset, k: int, z: int) -> None:
        block = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
        block.add_new(0xA2, "SL", 7000 + k)
        # another creator in the same group, occupying the slot GE would use by default
        other = ds.private_block(0x0019, "OTHER VENDOR", create=True)
        other.add_new(0xA2, "SL", 1)

    truth = make_study(tmp_path, n_phases=3, temporal_tag=False, per_file=private)
    records = index_folder(tmp_path).records
    assert sorted({r.ge_run for r in records}) == [7000, 7001, 7002]
    study = load_study(tmp_path)
    assert study.decisions.grouping_key == "GE RawDataRunNumber"
    _assert_matches(study, truth)
