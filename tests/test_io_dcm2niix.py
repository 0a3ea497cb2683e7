"""Interop: breastai's phases against dcm2niix, the community reference for DICOM geometry.

Phantom studies (breastai.phantom.write_dicom_study, several vendor layouts and orientations,
with decoy series) are read by breastai; dcm2niix converts the same DCE files (only those: the
files breastai used) to NIfTI + JSON. For every phase:

* the world coordinates of the eight corner voxel centres agree within 0.01 mm (dcm2niix writes
  RAS, converted here to LPS by negating x and y; dcm2niix may flip rows or slices, so corners
  are compared as sets);
* the voxel-index mapping between the two grids is a signed axis permutation with an integral
  offset, and through it the voxel arrays are equal after dcm2niix's scl_slope/scl_inter.

The NIfTI-1 files are parsed here with numpy (header fields at their standard offsets) so that
the check does not go through SimpleITK, which breastai itself uses. Skips when dcm2niix is not
installed (pip package ``dcm2niix``).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from breastai import phantom
from breastai.io import load_study


def _dcm2niix() -> str | None:
    found = shutil.which("dcm2niix")
    if found:
        return found
    try:
        import dcm2niix  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = getattr(dcm2niix, "bin", None)
    return str(path) if path and Path(path).is_file() else None


DCM2NIIX = _dcm2niix()
pytestmark = pytest.mark.skipif(
    DCM2NIIX is None,
    reason="dcm2niix not installed (pip install dcm2niix): interop check skipped",
)

_NIFTI_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4"}


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(4x4 voxel index -> RAS affine from the sform, data as (t, z, y, x) after scaling)."""
    raw = path.read_bytes()
    endian = "<" if int.from_bytes(raw[:4], "little") == 348 else ">"
    assert int.from_bytes(raw[:4], "little" if endian == "<" else "big") == 348
    dim = np.frombuffer(raw, dtype=f"{endian}i2", count=8, offset=40)
    datatype = int(np.frombuffer(raw, dtype=f"{endian}i2", count=1, offset=70)[0])
    vox_offset = int(np.frombuffer(raw, dtype=f"{endian}f4", count=1, offset=108)[0])
    slope, inter = np.frombuffer(raw, dtype=f"{endian}f4", count=2, offset=112)
    sform_code = int(np.frombuffer(raw, dtype=f"{endian}i2", count=1, offset=254)[0])
    assert sform_code > 0, f"{path.name}: dcm2niix wrote no sform"
    srow = np.frombuffer(raw, dtype=f"{endian}f4", count=12, offset=280).astype(float)
    affine = np.vstack([srow.reshape(3, 4), [0.0, 0.0, 0.0, 1.0]])
    nx, ny, nz = (int(v) for v in dim[1:4])
    nt = int(dim[4]) if dim[0] >= 4 else 1
    dtype = np.dtype(_NIFTI_DTYPES[datatype]).newbyteorder(endian)
    data = np.frombuffer(raw, dtype=dtype, count=nx * ny * nz * nt, offset=vox_offset)
    values = data.reshape(nt, nz, ny, nx).astype(np.float64)  # x varies fastest on disk
    if slope not in (0.0, 1.0) or inter != 0.0:
        values = values * (float(slope) if slope != 0 else 1.0) + float(inter)
    return affine, values


def _index_to_lps(image: sitk.Image) -> np.ndarray:
    d = np.reshape(image.GetDirection(), (3, 3)) * np.asarray(image.GetSpacing())
    out = np.eye(4)
    out[:3, :3] = d
    out[:3, 3] = image.GetOrigin()
    return out


def _corners(to_world: np.ndarray, shape_xyz: tuple[int, int, int]) -> np.ndarray:
    idx = itertools.product(*[(0, n - 1) for n in shape_xyz])
    return np.asarray([(to_world @ np.array([i, j, k, 1.0]))[:3] for i, j, k in idx])


def _assert_same_set(a: np.ndarray, b: np.ndarray, atol: float) -> None:
    for point in a:
        dist = np.min(np.linalg.norm(b - point, axis=1))
        assert dist <= atol, f"corner {point} has no counterpart within {atol} mm ({dist:.4f})"


def _compare(phase_image: sitk.Image, affine_ras: np.ndarray, volume_zyx: np.ndarray) -> None:
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_ras
    nz, ny, nx = volume_zyx.shape
    ours = _index_to_lps(phase_image)
    _assert_same_set(_corners(lps, (nx, ny, nz)), _corners(ours, phase_image.GetSize()), 0.01)
    # voxel index mapping dcm2niix -> breastai: a signed permutation with an integral offset
    mapping = np.linalg.solve(ours, lps)
    rounded = np.round(mapping)
    np.testing.assert_allclose(mapping, rounded, atol=1e-3)
    perm = rounded[:3, :3]
    assert sorted(np.abs(perm).sum(axis=0).tolist()) == [1, 1, 1], perm
    theirs_xyz = volume_zyx.transpose(2, 1, 0)  # (x, y, z) of the NIfTI grid
    axes, flips = [], []
    for a in range(3):  # breastai axis a comes from NIfTI axis b, possibly reversed
        b = int(np.flatnonzero(perm[a])[0])
        axes.append(b)
        flips.append(perm[a, b] < 0)
    aligned = theirs_xyz.transpose(axes)
    for a, flip in enumerate(flips):
        if flip:
            aligned = np.flip(aligned, axis=a)
    ours_xyz = sitk.GetArrayFromImage(phase_image).transpose(2, 1, 0).astype(np.float64)
    assert aligned.shape == ours_xyz.shape
    np.testing.assert_allclose(aligned, ours_xyz, rtol=1e-6, atol=1e-3)


def _convert(files: list[Path], work: Path) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
    """dcm2niix on exactly ``files``: series number -> volumes [(RAS affine, (z, y, x) data)]."""
    src, out = work / "dce", work / "nifti"
    src.mkdir()
    out.mkdir()
    for i, path in enumerate(files):
        shutil.copyfile(path, src / f"{i:05d}.dcm")
    assert DCM2NIIX is not None
    proc = subprocess.run(
        [DCM2NIIX, "-z", "n", "-b", "y", "-f", "%s_%p", "-o", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    volumes: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for nii in sorted(out.glob("*.nii")):
        assert nii.with_suffix(".json").is_file(), f"no JSON sidecar for {nii.name}"
        series = int(nii.name.split("_", 1)[0])
        affine, values = _read_nifti(nii)
        volumes.setdefault(series, []).extend((affine, v) for v in values)
    return volumes


def _check_layout(tmp_path: Path, layout: str, orientation: str) -> None:
    case = phantom.generate_case(
        0,
        orientation=orientation,
        shape_zyx=(24, 64, 64),
        spacing_zyx=(2.0, 1.4, 1.4),
        n_phases=4,
    )
    phantom.write_dicom_study(case, tmp_path / "study", layout=layout, decoys=True, seed=0)
    study = load_study(tmp_path / "study")
    assert len(study.phases) == 4
    files = sorted({f for p in study.phases for f in p.source_files})
    volumes = _convert(files, tmp_path)
    by_series: dict[int, list[sitk.Image]] = {}
    for phase in study.phases:  # acquisition order within each series
        number = int(pydicom.dcmread(phase.source_files[0], stop_before_pixels=True).SeriesNumber)
        by_series.setdefault(number, []).append(phase.image)
    assert sorted(by_series) == sorted(volumes), (sorted(by_series), sorted(volumes))
    for number, images in by_series.items():
        assert len(volumes[number]) == len(images), f"series {number}: volume count differs"
        for image, (affine, data) in zip(images, volumes[number], strict=True):
            _compare(image, affine, data)


@pytest.mark.parametrize("orientation", ["axial", "sagittal", "oblique"])
@pytest.mark.parametrize("layout", ["ge", "siemens"])
def test_phases_match_dcm2niix(tmp_path: Path, layout: str, orientation: str) -> None:
    _check_layout(tmp_path, layout, orientation)


@pytest.mark.slow
@pytest.mark.parametrize("orientation", ["axial", "sagittal", "oblique"])
@pytest.mark.parametrize("layout", ["philips", "enhanced", "pre-post"])
def test_more_layouts_match_dcm2niix(tmp_path: Path, layout: str, orientation: str) -> None:
    _check_layout(tmp_path, layout, orientation)
