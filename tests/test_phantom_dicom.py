"""The phantom's DICOM writer: every layout reads back with pydicom with the right files and tags,
pixel data round-trip, geometry agrees with the NIfTI ground truth, same seed gives same bytes."""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from breastai.phantom import LAYOUTS, generate_case, write_dicom_study, write_truth
from breastai.phantom._util import dn_scale, to_dn

SMALL = {"shape_zyx": (16, 48, 40), "spacing_zyx": (8.0, 7.0, 8.4)}
N_PHASES = 4
DECOY_KINDS = {"SUBTRACTION", "MIP", "LOCALIZER"}


@pytest.fixture(scope="module")
def case() -> Any:
    return generate_case(21, n_phases=N_PHASES, **SMALL)


def _read_all(paths: list[Path]) -> dict[str, list[pydicom.Dataset]]:
    """Read every file with strict value validation (invalid VR values raise)."""
    from pydicom import config

    old = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.RAISE
    series: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    try:
        for p in paths:
            ds = pydicom.dcmread(p)
            ds.walk(lambda _ds, elem: elem.value)  # touch every value: validates it
            series[ds.SeriesInstanceUID].append(ds)
    finally:
        config.settings.reading_validation_mode = old
    return series


def _is_decoy(dss: list[pydicom.Dataset]) -> bool:
    ds = dss[0]
    it = set(ds.ImageType)
    return (
        bool(it & DECOY_KINDS)
        or ds.ImageType[0] == "DERIVED"
        or float(ds.get("EchoTime", 0) or 0) > 20
        or ("(1/1/1)" in ds.SeriesDescription)
    )


def _normal(ds: pydicom.Dataset) -> np.ndarray:
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    return np.cross(iop[:3], iop[3:])


def _volume(dss: list[pydicom.Dataset]) -> np.ndarray:
    dss = sorted(
        dss, key=lambda d: float(_normal(d) @ np.array([float(v) for v in d.ImagePositionPatient]))
    )
    return np.stack(
        [d.pixel_array.astype(np.float64) * float(d.get("RescaleSlope", 1)) for d in dss]
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_reads_back_with_right_files_and_tags(
    layout: str, case: Any, tmp_path: Path
) -> None:
    paths = write_dicom_study(case, tmp_path, layout=layout, seed=5)
    assert all(p.is_file() and p.is_relative_to(tmp_path) for p in paths)
    series = _read_all(paths)
    nz, ny, nx = SMALL["shape_zyx"]
    # the cached encoder writes exactly what pydicom.dcmwrite writes for the same dataset
    for p in paths[:: max(1, len(paths) // 12)]:
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, pydicom.dcmread(p), enforce_file_format=True)
        assert buf.getvalue() == p.read_bytes(), p
    dce = {uid: dss for uid, dss in series.items() if not _is_decoy(dss)}
    decoys = {uid: dss for uid, dss in series.items() if _is_decoy(dss)}
    # decoys: DERIVED subtraction, MIP, ORIGINAL-typed "(1/1/1)-(2/1/1)", 3-plane localizer, T2
    kinds = [set(d[0].ImageType) for d in decoys.values()]
    assert any("SUBTRACTION" in k and "DERIVED" in k for k in kinds)
    assert any("MIP" in k for k in kinds)
    loc = [d for d in decoys.values() if "LOCALIZER" in d[0].ImageType]
    assert len(loc) == 1 and len({tuple(d.ImageOrientationPatient) for d in loc[0]}) == 3
    assert any(float(d[0].EchoTime) == 80.0 for d in decoys.values())
    ge_sub = [d for d in decoys.values() if d[0].SeriesDescription == "(1/1/1)-(2/1/1)"]
    assert len(ge_sub) == 1 and ge_sub[0][0].ImageType[0] == "ORIGINAL"
    # every DCE object: MR storage, 12 bits, one frame of reference for the whole study
    all_ds = [d for dss in series.values() for d in dss]
    assert len({d.FrameOfReferenceUID for d in all_ds}) == 1
    assert len({d.StudyInstanceUID for d in all_ds}) == 1
    for dss in dce.values():
        for d in dss:
            assert d.BitsStored == 12 and d.BitsAllocated == 16 and d.PixelRepresentation == 0
            assert list(d.ImageType[:2]) == ["ORIGINAL", "PRIMARY"]
            assert str(d.PatientName) == "PHANTOM^BREAST"
            assert "Research use only" in d.ImageComments
    dce_files = [d for dss in dce.values() for d in dss]
    if layout == "ge":
        assert len(dce) == 1 and len(dce_files) == N_PHASES * nz
        d0 = dce_files[0]
        assert d0.SeriesDescription == "Ax Vibrant MultiPhase"
        assert int(d0.NumberOfTemporalPositions) == N_PHASES
        assert {int(d.TemporalPositionIdentifier) for d in dce_files} == set(range(1, N_PHASES + 1))
        block = d0.private_block(0x0019, "GEMS_ACQU_01")
        run_numbers = {int(d.private_block(0x0019, "GEMS_ACQU_01")[0xA2].value) for d in dce_files}
        assert block[0xA2].VR == "SL" and run_numbers == set(range(1, N_PHASES + 1))
        trig = sorted({float(d.TriggerTime) for d in dce_files})
        assert trig[0] == 0 and np.diff(trig) == pytest.approx(np.diff(case.times_s) * 1000, abs=2)
    elif layout == "siemens":
        assert len(dce) == N_PHASES and all(len(v) == nz for v in dce.values())
        by_time = sorted(dce.values(), key=lambda v: v[0].AcquisitionTime)
        numbers = [int(v[0].SeriesNumber) for v in by_time]
        assert numbers != sorted(numbers)
        assert [v[0].SeriesDescription for v in by_time] == [
            f"fl3d_dyn_ph{k}" for k in range(1, N_PHASES + 1)
        ]
        assert all("TemporalPositionIdentifier" not in d for d in dce_files)
        assert dce_files[0].PatientPosition == "FFP"
    elif layout == "philips":
        assert len(dce) == 1 and len(dce_files) == N_PHASES * nz
        inst = [int(d.InstanceNumber) for d in dce_files]
        assert sorted(inst) == list(range(1, len(inst) + 1)) and inst != sorted(inst)
        slopes = {int(d.TemporalPositionIdentifier): float(d.RescaleSlope) for d in dce_files}
        assert len(set(slopes.values())) > 1
        blk = dce_files[0].private_block(0x2005, "Philips MR Imaging DD 001")
        begin = {
            float(d.private_block(0x2005, "Philips MR Imaging DD 001")[0xA0].value)
            for d in dce_files
        }
        assert blk[0xA0].VR == "FL" and len(begin) == N_PHASES
        for d in dce_files:  # TriggerTime = dynamic scan begin x 1000
            b = float(d.private_block(0x2005, "Philips MR Imaging DD 001")[0xA0].value)
            assert float(d.TriggerTime) == pytest.approx(b * 1000.0, abs=1.0)
    elif layout == "enhanced":
        assert len(dce) == 1 and len(dce_files) == 1
        d = dce_files[0]
        assert d.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.1"
        assert int(d.NumberOfFrames) == N_PHASES * nz
        ptrs = [int(x.DimensionIndexPointer) for x in d.DimensionIndexSequence]
        assert 0x00209128 in ptrs
        tpi = [
            int(f.FrameContentSequence[0].TemporalPositionIndex)
            for f in d.PerFrameFunctionalGroupsSequence
        ]
        assert sorted(set(tpi)) == list(range(1, N_PHASES + 1))
        fad = {
            f.FrameContentSequence[0].FrameAcquisitionDateTime
            for f in d.PerFrameFunctionalGroupsSequence
        }
        assert len(fad) == N_PHASES
        shared = d.SharedFunctionalGroupsSequence[0]
        assert "PlaneOrientationSequence" in shared and "PixelMeasuresSequence" in shared
        assert d.pixel_array.shape == (N_PHASES * nz, ny, nx)
    elif layout == "pre-post":
        assert len(dce) == 2
        sizes = sorted(len(v) for v in dce.values())
        assert sizes == [nz, (N_PHASES - 1) * nz]
    elif layout == "split-bilateral":
        assert len(dce) == 2 * N_PHASES
        lat = [v[0].Laterality for v in dce.values()]
        assert lat.count("L") == lat.count("R") == N_PHASES
        cols = {v[0].Laterality: int(v[0].Columns) for v in dce.values()}
        assert cols["L"] + cols["R"] < nx  # a gap between the stacks
        # disjoint left-right extents: x (LPS) of the right stack < that of the left stack
        xr = [float(v[0].ImagePositionPatient[0]) for v in dce.values() if v[0].Laterality == "R"]
        xl = [float(v[0].ImagePositionPatient[0]) for v in dce.values() if v[0].Laterality == "L"]
        assert max(xr) < min(xl)


@pytest.mark.parametrize("layout", ["ge", "philips", "siemens"])
def test_pixel_round_trip_on_one_global_scale(layout: str, case: Any, tmp_path: Path) -> None:
    paths = write_dicom_study(case, tmp_path, layout=layout, decoys=False, seed=1)
    series = _read_all(paths)
    files = [d for dss in series.values() for d in dss]
    by_phase: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    for d in files:
        by_phase[d.AcquisitionTime].append(d)
    scale = dn_scale(case)
    for k, t in enumerate(sorted(by_phase)):
        vol = _volume(by_phase[t])
        expect = to_dn(case.images[k], scale).astype(np.float64)
        tol = 0.76 if layout != "philips" else float(by_phase[t][0].RescaleSlope) / 2 + 1e-6
        assert np.abs(vol - expect).max() <= tol, (layout, k)
    peak = max(_volume(v).max() for v in by_phase.values())
    assert 3400 <= peak <= 3600


@pytest.mark.parametrize("orientation", ["axial", "sagittal", "oblique"])
def test_nifti_truth_aligned_with_dicom_geometry(orientation: str, tmp_path: Path) -> None:
    case = generate_case(22, n_phases=2, orientation=orientation, **SMALL)
    paths = write_dicom_study(case, tmp_path / "dicom", layout="ge", decoys=False, seed=2)
    write_truth(case, tmp_path / "truth")
    truth = sitk.ReadImage(str(tmp_path / "truth" / "tumor.nii.gz"))
    dss = [d for d in (pydicom.dcmread(p) for p in paths) if int(d.TemporalPositionIdentifier) == 1]
    dss.sort(key=lambda d: float(_normal(d) @ np.array([float(v) for v in d.ImagePositionPatient])))
    assert len(dss) == truth.GetSize()[2]
    rng = np.random.default_rng(0)
    for _ in range(20):
        i, j, k = (int(rng.integers(0, n)) for n in truth.GetSize())
        d = dss[k]
        iop = np.array([float(v) for v in d.ImageOrientationPatient])
        ipp = np.array([float(v) for v in d.ImagePositionPatient])
        dr, dc = (float(v) for v in d.PixelSpacing)  # row spacing (between rows), column spacing
        world_dicom = ipp + i * dc * iop[:3] + j * dr * iop[3:]
        world_nifti = np.array(truth.TransformIndexToPhysicalPoint((i, j, k)))
        assert world_dicom == pytest.approx(world_nifti, abs=1e-3)
    # and the voxels agree: the tumour mask lies where the lesion enhances in the DICOM pixels
    lab = sitk.GetArrayFromImage(truth) > 0
    if lab.any():
        post = np.stack([d.pixel_array for d in dss]).astype(float)
        assert post[lab].mean() > 2 * post[~lab].mean()
    # SimpleITK reading the same single-phase slices gives the NIfTI grid
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(d.filename) for d in dss])
    img = reader.Execute()
    assert img.GetOrigin() == pytest.approx(truth.GetOrigin(), abs=1e-3)
    assert img.GetDirection() == pytest.approx(truth.GetDirection(), abs=1e-5)
    assert img.GetSpacing() == pytest.approx(truth.GetSpacing(), abs=1e-4)


def _digest(paths: list[Path], root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.mark.parametrize("layout", ["ge", "philips", "enhanced"])
def test_same_seed_same_bytes(layout: str, tmp_path: Path) -> None:
    a = write_dicom_study(
        generate_case(3, n_phases=2, **SMALL), tmp_path / "a", layout=layout, seed=4
    )
    b = write_dicom_study(
        generate_case(3, n_phases=2, **SMALL), tmp_path / "b", layout=layout, seed=4
    )
    assert _digest(a, tmp_path / "a") == _digest(b, tmp_path / "b")
    c = write_dicom_study(
        generate_case(3, n_phases=2, **SMALL), tmp_path / "c", layout=layout, seed=5
    )
    assert _digest(a, tmp_path / "a") != _digest(c, tmp_path / "c")


def test_demo_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from breastai.cli import app

    runner = CliRunner()
    out = tmp_path / "demo"
    import breastai.phantom.demo as demo_mod

    real = demo_mod.generate_case

    def small(seed: int, **kw: Any) -> Any:  # keep the CLI test fast: a small grid
        return real(seed, shape_zyx=(16, 48, 40), spacing_zyx=(8.0, 7.0, 8.4), **kw)

    demo_mod.generate_case = small  # type: ignore[assignment]
    try:
        res = runner.invoke(app, ["demo", str(out), "--layout", "siemens", "--seed", "3"])
        assert res.exit_code == 0, res.output
        assert (out / "truth" / "breast.nii.gz").is_file() and (
            out / "truth" / "tumor.nii.gz"
        ).is_file()
        assert (out / "truth" / "truth.json").is_file() and any((out / "dicom").rglob("*.dcm"))
        res = runner.invoke(app, ["demo", str(out)])
        assert res.exit_code == 1 and "not empty" in res.output and "Traceback" not in res.output
        res = runner.invoke(app, ["demo", str(tmp_path / "x"), "--preset", "nope"])
        assert res.exit_code == 2 and not (tmp_path / "x").exists()
        res = runner.invoke(app, ["demo", str(tmp_path / "y"), "--layout", "agfa"])
        assert res.exit_code == 2 and not (tmp_path / "y").exists()
    finally:
        demo_mod.generate_case = real  # type: ignore[assignment]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no temp folders left


def test_split_bilateral_sagittal_stacks(tmp_path: Path) -> None:
    # sagittal grid wide enough for both breasts (48 x 7 mm = 336 mm left-right)
    case = generate_case(
        23, n_phases=2, orientation="sagittal", shape_zyx=(48, 24, 40), spacing_zyx=(7.0, 8.0, 8.4)
    )
    paths = write_dicom_study(case, tmp_path, layout="split-bilateral", decoys=False, seed=1)
    series = _read_all(paths)
    assert len(series) == 4
    x = defaultdict(list)
    for dss in series.values():
        assert len({tuple(d.ImageOrientationPatient) for d in dss}) == 1
        x[dss[0].Laterality] += [float(d.ImagePositionPatient[0]) for d in dss]
        assert int(dss[0].Columns) == 40 and len(dss) < 24
    assert max(x["R"]) < 0 < min(x["L"])  # LPS: patient right has negative x
    assert sum(len(v) for v in series.values()) < 2 * 48  # the gap between the stacks
