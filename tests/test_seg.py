"""DICOM-SEG writer: round trips through highdicom on axial, sagittal and oblique studies."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from segment_factory import image_from_array, study_from_info, write_classic_study

from breastai import RESEARCH_NOTICE
from breastai.errors import OutputExistsError, ParameterError, UnsupportedInputError
from breastai.io import seg as seg_mod
from breastai.io.seg import TYPE2_DEFAULTS, read_seg, write_seg
from breastai.study import Study

WEIGHTS = {
    "breast": {"name": "demo-breast", "sha256": "a" * 64, "demo": True},
    "tumor": {"name": "demo-tumor", "sha256": "b" * 64, "demo": True},
}
DROPPED = ("AccessionNumber", "PatientBirthDate", "StudyID", "StudyTime", "SliceThickness")


@pytest.fixture(scope="module", params=["axial", "sagittal", "oblique"])
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp(f"study-{request.param}")
    info = write_classic_study(folder / "dicom", orientation=request.param, drop=DROPPED)
    study = study_from_info(info, folder / "dicom")
    breast = image_from_array(info["breast"].astype(np.uint8), info)
    tumor = image_from_array(info["lesion"].astype(np.uint8), info)
    path = write_seg(folder / "seg.dcm", study, breast=breast, tumor=tumor, weights=WEIGHTS)
    return {"info": info, "study": study, "path": path, "breast": breast, "tumor": tumor}


def test_round_trip_identical_voxels(written: dict) -> None:
    back = read_seg(written["path"], written["study"].reference.image)
    assert set(back) == {"Breast", "Tumor"}
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back["Breast"]), written["info"]["breast"])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back["Tumor"]), written["info"]["lesion"])


def test_both_readers_give_the_same_image(written: dict) -> None:
    """read_seg (onto the reference grid) and read_image (the SEG's own grid) share one geometry."""
    from breastai.io import read_image

    ref = written["study"].reference.image
    info = written["info"]
    labels = np.where(info["lesion"] > 0, 2, np.where(info["breast"] > 0, 1, 0))  # truth
    on_ref = read_seg(written["path"], ref)
    own = read_image(written["path"])  # the SEG stores its non-empty frames only
    for img in on_ref.values():
        assert img.GetSize() == ref.GetSize()
        np.testing.assert_allclose(img.GetOrigin(), ref.GetOrigin())
        np.testing.assert_allclose(img.GetSpacing(), ref.GetSpacing())
        np.testing.assert_allclose(img.GetDirection(), ref.GetDirection())
    combined = np.where(
        sitk.GetArrayFromImage(on_ref["Tumor"]) > 0,
        2,
        np.where(sitk.GetArrayFromImage(on_ref["Breast"]) > 0, 1, 0),
    )
    np.testing.assert_array_equal(combined, labels)
    # the own grid is the reference lattice: same spacing and direction, origin on a voxel
    np.testing.assert_allclose(own.GetSpacing(), ref.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(own.GetDirection(), ref.GetDirection(), atol=1e-5)
    start = ref.TransformPhysicalPointToIndex(own.GetOrigin())
    np.testing.assert_allclose(own.GetOrigin(), ref.TransformIndexToPhysicalPoint(start), atol=1e-3)
    (z0, y0, x0), (nz, ny, nx) = start[::-1], own.GetSize()[::-1]
    window = labels[z0 : z0 + nz, y0 : y0 + ny, x0 : x0 + nx]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(own), window)
    assert int((window > 0).sum()) == int((labels > 0).sum())  # nothing outside the own grid


def test_read_seg_refuses_a_grid_it_does_not_lie_on(written: dict) -> None:
    ref = written["study"].reference.image
    shifted = sitk.Image(ref)
    half = np.asarray(ref.GetDirection()).reshape(3, 3) @ (0.5 * np.asarray(ref.GetSpacing()))
    shifted.SetOrigin(tuple(np.asarray(ref.GetOrigin()) + half))
    with pytest.raises(UnsupportedInputError, match="reference grid"):
        read_seg(written["path"], shifted)


def test_geometry_of_every_frame_matches_the_source(written: dict) -> None:
    import highdicom as hd

    ds = pydicom.dcmread(written["path"])
    ref = written["study"].reference.image
    info = written["info"]
    shared = ds.SharedFunctionalGroupsSequence[0]
    iop = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    np.testing.assert_allclose(iop, np.asarray(info["direction"])[:, :2].T.ravel(), atol=1e-6)
    ps = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    assert ps == pytest.approx([info["spacing_zyx"][1], info["spacing_zyx"][2]])
    source_uids = set(info["uids"][1])
    slice_of = {uid: k for k, uid in enumerate(info["uids"][1])}
    for frame in ds.PerFrameFunctionalGroupsSequence:
        ipp = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float)
        der = frame.DerivationImageSequence[0].SourceImageSequence
        uids = {str(item.ReferencedSOPInstanceUID) for item in der}
        # derived from the P1 slice at this position (and the other phases' slices there,
        # which highdicom adds from further_source_images: the tumor model used them too)
        (p1_uid,) = uids & source_uids
        k = slice_of[p1_uid]
        at_k = {info["uids"][ph][k] for ph in range(len(info["uids"]))}
        assert uids <= at_k
        want = np.asarray(ref.TransformIndexToPhysicalPoint((0, 0, k)))
        np.testing.assert_allclose(ipp, want, atol=1e-4)
    vol = hd.seg.segread(written["path"]).get_volume(combine_segments=False)
    assert vol.spacing == pytest.approx(info["spacing_zyx"])


def test_segments_codes_algorithm_and_notice(written: dict) -> None:
    ds = pydicom.dcmread(written["path"])
    assert ds.SegmentationType == "BINARY"
    assert RESEARCH_NOTICE in ds.SeriesDescription and RESEARCH_NOTICE in ds.ContentDescription
    assert "DEMO" in ds.SeriesDescription
    assert "demo-tumor" in ds.ImageComments and "b" * 64 in ds.ImageComments
    seg1, seg2 = ds.SegmentSequence
    assert (seg1.SegmentNumber, seg1.SegmentLabel) == (1, "Breast")
    assert seg1.SegmentedPropertyTypeCodeSequence[0].CodeValue == "76752008"
    assert seg1.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
    assert (seg2.SegmentNumber, seg2.SegmentLabel) == (2, "Tumor")
    assert seg2.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    assert seg2.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert seg2.AnatomicRegionSequence[0].CodeValue == "76752008"
    for item, task in ((seg1, "breast"), (seg2, "tumor")):
        algo = item.SegmentationAlgorithmIdentificationSequence[0]
        assert algo.AlgorithmName == f"breastai {WEIGHTS[task]['name']}"
        assert WEIGHTS[task]["sha256"] in algo.AlgorithmParameters
        assert "demo=true" in algo.AlgorithmParameters.replace(" ", "")


def test_references_reference_phase_and_further_sources(written: dict) -> None:
    ds = pydicom.dcmread(written["path"])
    info = written["info"]
    referenced = {
        str(inst.ReferencedSOPInstanceUID)
        for series in ds.ReferencedSeriesSequence
        for inst in series.ReferencedInstanceSequence
    }
    for seq in ds.get("StudiesContainingOtherReferencedInstancesSequence", []):
        for series in seq.ReferencedSeriesSequence:
            referenced |= {
                str(i.ReferencedSOPInstanceUID) for i in series.ReferencedInstanceSequence
            }
    every = {u for phase in info["uids"] for u in phase}
    assert every <= referenced  # P1 as source, P0 and P2 as further source images
    assert ds.StudyInstanceUID == info["study_uid"]
    assert ds.FrameOfReferenceUID == pydicom.dcmread(info["files"][1][0]).FrameOfReferenceUID


def test_missing_type2_attributes_were_patched_on_copies(written: dict) -> None:
    ds = pydicom.dcmread(written["path"])
    for name in ("AccessionNumber", "PatientBirthDate", "StudyID", "StudyTime"):
        assert name in ds and not ds[name].value  # present and empty
    src = pydicom.dcmread(written["info"]["files"][1][0])
    for name in DROPPED:
        assert name not in src  # the source files were not modified
    assert set(DROPPED) - {"SliceThickness"} <= set(TYPE2_DEFAULTS)


def test_volume_path_gives_the_same_voxels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = write_classic_study(tmp_path / "d", orientation="oblique", one_series=True)
    study = study_from_info(info, tmp_path / "d")
    monkeypatch.setattr(seg_mod, "_aligned", lambda *a: False)  # force the hd.Volume branch
    b = image_from_array(info["breast"].astype(np.uint8), info)
    t = image_from_array(info["lesion"].astype(np.uint8), info)
    p = write_seg(tmp_path / "v.dcm", study, breast=b, tumor=t, weights=WEIGHTS)
    back = read_seg(p, study.reference.image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back["Tumor"]), info["lesion"])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back["Breast"]), info["breast"])


def test_empty_masks_and_refusals(tmp_path: Path) -> None:
    info = write_classic_study(tmp_path / "d", shape=(6, 20, 24))
    study = study_from_info(info, tmp_path / "d")
    zero = image_from_array(np.zeros((6, 20, 24), np.uint8), info)
    p = write_seg(tmp_path / "e.dcm", study, breast=zero, tumor=zero, weights=WEIGHTS)
    back = read_seg(p, study.reference.image)
    assert not sitk.GetArrayFromImage(back["Tumor"]).any()
    with pytest.raises(OutputExistsError):
        write_seg(p, study, breast=zero, tumor=zero, weights=WEIGHTS)
    small = image_from_array(np.zeros((5, 20, 24), np.uint8), info)
    with pytest.raises(ParameterError, match="grid"):
        write_seg(tmp_path / "x.dcm", study, breast=small, tumor=zero, weights=WEIGHTS)
    nifti = Study(phases=study.phases, source=tmp_path, kind="nifti")
    with pytest.raises(UnsupportedInputError):
        write_seg(tmp_path / "n.dcm", nifti, breast=zero, tumor=zero, weights=WEIGHTS)
    assert not list(tmp_path.glob(".seg-*"))  # no temp files left


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
def test_dciodvfy_reports_no_errors(written: dict) -> None:
    res = subprocess.run(
        ["dciodvfy", str(written["path"])], capture_output=True, text=True, timeout=60, check=False
    )
    out = res.stdout + res.stderr
    errors = [line for line in out.splitlines() if line.startswith("Error")]
    assert errors == [], out


@pytest.mark.parametrize("layout", ["enhanced", "split-bilateral"])
def test_phantom_layouts_round_trip(layout: str, tmp_path: Path) -> None:
    """Enhanced multi-frame (hd.Volume path) and split-bilateral (two series) via the reader."""
    from breastai import phantom
    from breastai.io import load_study

    case = phantom.generate_case(1, shape_zyx=(16, 64, 96), spacing_zyx=(3.0, 2.5, 2.5), n_phases=3)
    phantom.write_dicom_study(case, tmp_path / "d", layout=layout, decoys=False)
    study = load_study(tmp_path / "d")
    ref = study.reference.image

    def on_ref(img: sitk.Image) -> sitk.Image:
        return sitk.Resample(
            img, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
        )

    breast, tumor = on_ref(case.mask_image("breast")), on_ref(case.mask_image("tumor"))
    assert sitk.GetArrayFromImage(breast).any()
    p = write_seg(tmp_path / "seg.dcm", study, breast=breast, tumor=tumor, weights=WEIGHTS)
    back = read_seg(p, ref)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(back["Breast"]), sitk.GetArrayFromImage(breast)
    )
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(back["Tumor"]), sitk.GetArrayFromImage(tumor)
    )
    ds = pydicom.dcmread(p)
    assert RESEARCH_NOTICE in ds.SeriesDescription
    if shutil.which("dciodvfy"):  # the phantom's patient module must not make the SEG invalid
        res = subprocess.run(["dciodvfy", str(p)], capture_output=True, text=True, check=False)
        out = res.stdout + res.stderr
        assert [line for line in out.splitlines() if line.startswith("Error")] == [], out
