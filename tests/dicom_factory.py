"""A small pydicom factory for synthetic DCE studies with known geometry (tests and bench only).

``make_study(out_dir, ...)`` writes MR Image Storage (or Enhanced MR) files for ``n_phases``
phases of a ``shape_zyx`` volume and returns a :class:`SynthStudy` holding the analytic truth:
the expected float32 arrays after rescale, the LPS origin of voxel (0, 0, 0), the direction
matrix (columns = x, y, z axes) and the spacing. Every phase differs from the others in every
slice, so duplicate detection by pixel content is meaningful.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

MR = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


def ds_str(value: float) -> str:
    return format_number_as_ds(float(value))


def orientation_cosines(orientation: str | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column direction cosines (LPS) for a named orientation or explicit IOP."""
    if not isinstance(orientation, str):
        v = np.asarray(orientation, dtype=float)
        return v[:3], v[3:6]
    if orientation == "axial":
        return np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    if orientation == "sagittal":
        return np.array([0, 1.0, 0]), np.array([0, 0, -1.0])
    if orientation == "coronal":
        return np.array([1.0, 0, 0]), np.array([0, 0, -1.0])
    if orientation == "oblique":
        a, b = np.radians(20.0), np.radians(15.0)
        rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
        rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
        r = rz @ rx
        return r[:, 0], r[:, 1]
    raise ValueError(orientation)


@dataclass
class SynthStudy:
    root: Path
    arrays: np.ndarray  # (t, z, y, x) float32, values after rescale
    origin: np.ndarray  # LPS of voxel (0, 0, 0)
    direction: np.ndarray  # (3, 3), columns = x, y, z axes
    spacing_xyz: tuple[float, float, float]
    times_s: list[float]
    files: list[list[Path]] = field(default_factory=list)  # [phase][slice]
    series_uids: list[str] = field(default_factory=list)  # per phase
    study_uid: str = ""
    stack_origins: list[np.ndarray] = field(default_factory=list)
    frame_of_reference_uid: str = ""

    def corners(self) -> np.ndarray:
        nz, ny, nx = self.arrays.shape[1:]
        out = []
        for z in (0, nz - 1):
            for y in (0, ny - 1):
                for x in (0, nx - 1):
                    idx = np.array([x, y, z], dtype=float) * np.asarray(self.spacing_xyz)
                    out.append(self.origin + self.direction @ idx)
        return np.asarray(out)


def _tm(t: dt.datetime) -> str:
    return t.strftime("%H%M%S.%f")


def _uid(*parts: Any) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _volume(k: int, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = 100.0 + rng.integers(0, 50, size=shape).astype(np.float32)
    z, y, x = np.indices(shape)
    cz, cy, cx = (s // 2 for s in shape)
    lesion = (abs(z - cz) <= 1) & (abs(y - cy) <= 2) & (abs(x - cx) <= 2)
    vol = base + 10.0 * k + (40.0 * min(k, 3)) * lesion
    return vol.astype(np.float32)


def make_study(
    out_dir: Path,
    *,
    n_phases: int = 3,
    shape_zyx: tuple[int, int, int] = (8, 16, 16),
    spacing_zyx: tuple[float, float, float] = (2.0, 0.8, 0.8),
    orientation: str | Sequence[float] = "axial",
    origin: Sequence[float] = (-60.0, -70.0, -20.0),
    layout: str = "one_series",
    times_s: Sequence[float] | None = None,
    start: dt.datetime = dt.datetime(2024, 3, 1, 9, 0, 0),
    description: str = "ax dyn vibrant",
    manufacturer: str = "GE MEDICAL SYSTEMS",
    series_numbers: Sequence[int] | None = None,
    temporal_tag: bool = True,
    slopes: Sequence[float] | None = None,
    contrast_from: int | None = 1,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    patient_id: str = "SYNTH01",
    seed: int = 0,
    tag: str = "s",
    extra: dict[str, Any] | None = None,
    per_file: Callable[[Dataset, int, int], None] | None = None,
    bilateral_gap_mm: float = 60.0,
    photometric: str = "MONOCHROME2",
    volumes: np.ndarray | None = None,
) -> SynthStudy:
    """Write a synthetic DCE study under ``out_dir``; see the module docstring.

    Layouts: ``one_series`` (TemporalPositionIdentifier 1..N in one series), ``series_per_phase``,
    ``pre_post`` (pre-contrast series + one multiphase series), ``enhanced`` (one Enhanced MR
    multi-frame file, TemporalPositionIndex through the dimension index), ``split_bilateral``
    (two series per phase with disjoint lateral ranges; ``orientation`` should be sagittal).
    ``volumes`` (t, z, y, x) replaces the default random content (every stack gets it).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = shape_zyx
    dz, dy, dx = spacing_zyx
    row, col = orientation_cosines(orientation)
    n = np.cross(row, col)
    origin_v = np.asarray(origin, dtype=float)
    times = list(times_s) if times_s is not None else [60.0 * k for k in range(n_phases)]
    study_uid = study_uid or _uid(tag, "study", seed)
    for_uid = frame_of_reference_uid or _uid(tag, "for", seed)
    stacks = 2 if layout == "split_bilateral" else 1
    if volumes is not None:
        if volumes.shape != (n_phases, *shape_zyx):
            raise ValueError(f"volumes {volumes.shape} != {(n_phases, *shape_zyx)}")
        arrays = np.asarray(volumes, np.float32).copy()
    else:
        arrays = np.stack([_volume(k, shape_zyx, seed) for k in range(n_phases)])
    if slopes is None:
        slopes = [1.0] * n_phases
    iop = [float(v) for v in (*row, *col)]

    def series_uid_for(k: int, stack: int) -> str:
        if layout in ("series_per_phase", "split_bilateral"):
            return _uid(tag, "series", seed, k, stack)
        if layout == "pre_post":
            return _uid(tag, "series", seed, 0 if k == 0 else 1)
        return _uid(tag, "series", seed, 0)

    def series_number_for(k: int, stack: int) -> int:
        if series_numbers is not None:
            return int(series_numbers[k * stacks + stack])
        if layout in ("series_per_phase", "split_bilateral"):
            return 10 + k * stacks + stack
        if layout == "pre_post":
            return 10 if k == 0 else 11
        return 10

    def stack_origin(stack: int) -> np.ndarray:
        if stacks == 1:
            return origin_v
        # stack 0: right side (x < 0), stack 1: left (x > 0); both step along n
        extent = (nz - 1) * dz
        centre_x = (extent + bilateral_gap_mm) / 2.0 * (-1.0 if stack == 0 else 1.0)
        centre = np.array([centre_x, origin_v[1], origin_v[2]])
        return centre - n * (extent / 2.0)

    def stack_origins() -> list[np.ndarray]:
        return [stack_origin(k) for k in range(stacks)]

    def common(ds: Dataset, k: int, stack: int) -> None:
        t = start + dt.timedelta(seconds=times[k])
        ds.PatientID = patient_id
        ds.PatientName = "Synthetic^Study"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid_for(k, stack)
        ds.FrameOfReferenceUID = for_uid
        ds.Modality = "MR"
        ds.Manufacturer = manufacturer
        ds.SeriesDescription = description
        ds.SeriesNumber = series_number_for(k, stack)
        ds.StudyDate = start.strftime("%Y%m%d")
        ds.StudyTime = _tm(start)
        series_t = (
            t
            if layout in ("series_per_phase", "split_bilateral")
            or (layout == "pre_post" and k == 0)
            else (start + dt.timedelta(seconds=times[1 if layout == "pre_post" else 0]))
        )
        ds.SeriesDate = series_t.strftime("%Y%m%d")
        ds.SeriesTime = _tm(series_t)
        ds.AcquisitionDate = t.strftime("%Y%m%d")
        ds.AcquisitionTime = _tm(t)
        ds.ContentDate = t.strftime("%Y%m%d")
        ds.ContentTime = _tm(t)
        ds.ScanningSequence = "GR"
        ds.SequenceVariant = "SP"
        ds.ScanOptions = "FS"
        ds.MRAcquisitionType = "3D"
        ds.RepetitionTime = "4.5"
        ds.EchoTime = "2.1"
        ds.FlipAngle = "12"
        if contrast_from is not None and k >= contrast_from:
            ds.ContrastBolusAgent = "Gadobutrol"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        if extra:
            for key, value in extra.items():
                setattr(ds, key, value)

    def finish(ds: Dataset, sop_class: str, path: Path) -> None:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.SOPClassUID = sop_class
        pydicom.dcmwrite(path, ds, enforce_file_format=True)

    files: list[list[Path]] = [[] for _ in range(n_phases)]
    series_uids = [series_uid_for(k, 0) for k in range(n_phases)]
    if layout == "enhanced":
        _write_enhanced(
            out_dir,
            arrays,
            slopes,
            iop,
            origin_v,
            n,
            spacing_zyx,
            times,
            start,
            common,
            finish,
            tag,
            seed,
            files,
        )
    else:
        instance = 0
        for k in range(n_phases):
            for stack in range(stacks):
                o = stack_origin(stack)
                for z in range(nz):
                    instance += 1
                    ds = Dataset()
                    common(ds, k, stack)
                    ds.SOPInstanceUID = _uid(tag, "sop", seed, k, stack, z)
                    ds.InstanceNumber = (
                        z + 1 + (nz * k if layout in ("one_series", "pre_post") else 0)
                    )
                    ds.AcquisitionNumber = 1
                    if temporal_tag and layout in ("one_series", "pre_post"):
                        ds.TemporalPositionIdentifier = (
                            k + 1 if layout == "one_series" else max(k, 1)
                        )
                        ds.NumberOfTemporalPositions = (
                            n_phases if layout == "one_series" else n_phases - 1
                        )
                    ipp = o + n * (z * dz)
                    ds.ImagePositionPatient = [ds_str(v) for v in ipp]
                    ds.ImageOrientationPatient = [ds_str(v) for v in iop]
                    ds.PixelSpacing = [ds_str(dy), ds_str(dx)]
                    ds.SliceThickness = ds_str(dz)
                    ds.SliceLocation = ds_str(float(np.dot(ipp, n)))
                    slope = float(slopes[k])
                    ds.RescaleSlope = ds_str(slope)
                    ds.RescaleIntercept = "0"
                    stored = np.round(arrays[k, z] / slope).astype(np.uint16)
                    arrays[k, z] = stored.astype(np.float32) * np.float32(slope)
                    ds.PixelData = stored.tobytes()
                    if per_file is not None:
                        per_file(ds, k, z)
                    path = out_dir / f"{tag}_p{k:02d}_st{stack}_z{z:03d}.dcm"
                    finish(ds, MR, path)
                    files[k].append(path)
    return SynthStudy(
        root=out_dir,
        arrays=arrays,
        origin=origin_v,
        direction=np.column_stack([row, col, n]),
        spacing_xyz=(dx, dy, dz),
        times_s=[t - times[0] for t in times],
        files=files,
        series_uids=series_uids,
        study_uid=study_uid,
        stack_origins=stack_origins(),
        frame_of_reference_uid=for_uid,
    )


def _write_enhanced(
    out_dir: Path,
    arrays: np.ndarray,
    slopes: Sequence[float],
    iop: list[float],
    origin: np.ndarray,
    n: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    times: list[float],
    start: dt.datetime,
    common: Callable[[Dataset, int, int], None],
    finish: Callable[[Dataset, str, Path], None],
    tag: str,
    seed: int,
    files: list[list[Path]],
    swap_pointers: bool = False,
) -> None:
    t_count, nz = arrays.shape[:2]
    ds = Dataset()
    common(ds, 0, 0)
    ds.SOPInstanceUID = _uid(tag, "enh", seed)
    ds.InstanceNumber = 1
    ds.NumberOfFrames = t_count * nz
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER", "NONE"]
    org_uid = _uid(tag, "dimorg", seed)
    ds.DimensionOrganizationSequence = DicomSequence([Dataset()])
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = org_uid
    dims = []
    for pointer in (0x00209056, 0x00209057, 0x00209128):
        item = Dataset()
        item.DimensionOrganizationUID = org_uid
        item.DimensionIndexPointer = pointer
        item.FunctionalGroupPointer = 0x00209111
        dims.append(item)
    ds.DimensionIndexSequence = DicomSequence(dims)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [ds_str(spacing_zyx[1]), ds_str(spacing_zyx[2])]
    measures.SliceThickness = ds_str(spacing_zyx[0])
    shared.PixelMeasuresSequence = DicomSequence([measures])
    orient = Dataset()
    orient.ImageOrientationPatient = [ds_str(v) for v in iop]
    shared.PlaneOrientationSequence = DicomSequence([orient])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    stored_frames = []
    for k in range(t_count):
        t = start + dt.timedelta(seconds=times[k])
        for z in range(nz):
            item = Dataset()
            content = Dataset()
            content.StackID = "1"
            content.InStackPositionNumber = z + 1
            content.TemporalPositionIndex = k + 1
            content.DimensionIndexValues = [1, z + 1, k + 1]
            content.FrameAcquisitionDateTime = t.strftime("%Y%m%d%H%M%S.%f")
            item.FrameContentSequence = DicomSequence([content])
            pos = Dataset()
            pos.ImagePositionPatient = [ds_str(v) for v in origin + n * (z * spacing_zyx[0])]
            item.PlanePositionSequence = DicomSequence([pos])
            transform = Dataset()
            transform.RescaleSlope = ds_str(slopes[k])
            transform.RescaleIntercept = "0"
            transform.RescaleType = "US"
            item.PixelValueTransformationSequence = DicomSequence([transform])
            per_frame.append(item)
            stored = np.round(arrays[k, z] / float(slopes[k])).astype(np.uint16)
            arrays[k, z] = stored.astype(np.float32) * np.float32(slopes[k])
            stored_frames.append(stored)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    for attr in ("AcquisitionTime", "ContentTime", "AcquisitionDate", "ContentDate"):
        if attr in ds:
            del ds[attr]
    ds.ContentDate = start.strftime("%Y%m%d")
    ds.ContentTime = _tm(start)
    ds.AcquisitionDateTime = start.strftime("%Y%m%d%H%M%S.%f")
    ds.PixelData = np.stack(stored_frames).tobytes()
    path = out_dir / f"{tag}_enhanced.dcm"
    finish(ds, ENHANCED_MR, path)
    for k in range(t_count):
        files[k] = [path] * nz


def rewrite(path: Path, change: Callable[[Dataset], None]) -> None:
    """Read a file, apply ``change`` and write it back (test helper)."""
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)
