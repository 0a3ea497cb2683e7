"""Vendor-like DICOM studies from a phantom case (pydicom), with decoy series.

Layouts (``LAYOUTS``):

``ge``
    One classic MR series holding every phase: TemporalPositionIdentifier 1..t,
    NumberOfTemporalPositions, TriggerTime (ms since the first phase), GE private RawDataRunNumber
    (0019,xxA2 under creator ``GEMS_ACQU_01``), LocationsInAcquisition (0021,xx4F under
    ``GEMS_RELA_01``). Description "Ax Vibrant MultiPhase".
``siemens``
    One series per phase ("fl3d_dyn_ph1" ...), series numbers NOT in time order, no
    TemporalPositionIdentifier, InstanceNumber descending along the slice normal, PatientPosition
    FFP, slice duration in (0019,xx0B) under ``SIEMENS MR HEADER``.
``philips``
    One series, all dynamics, random InstanceNumber, TriggerTime = dynamic scan begin × 1000,
    MRImageDynamicScanBeginTime (2005,xxA0) under ``Philips MR Imaging DD 001``, per-phase
    RescaleSlope (stored values differ per phase; stored × slope is consistent across phases) and
    the private ScaleSlope (2005,xx0E) = 1 / RescaleSlope.
``enhanced``
    One Enhanced MR Image Storage multi-frame object (all phases), per-frame PlanePosition and
    FrameContent (TemporalPositionIndex, FrameAcquisitionDateTime), shared PlaneOrientation and
    PixelMeasures, DimensionIndexSequence pointing at StackID, InStackPositionNumber and
    TemporalPositionIndex (0020,9128).
``pre-post``
    A pre-contrast series plus one multiphase post-contrast series (TemporalPositionIdentifier
    1..t-1).
``split-bilateral``
    Per phase, two series (right and left stack, Laterality R/L) covering disjoint halves of the
    left-right extent, with a gap of about 8 % of that extent between them. The ground truth
    stays on the full grid of the case (both stacks and the gap).

Decoys (``decoys=True``): a DERIVED subtraction series, a DERIVED MIP, an ORIGINAL-typed GE-style
subtraction described "(1/1/1)-(2/1/1)", a 3-plane localizer (ImageType LOCALIZER) and a T2 series
(TE 80 ms). All DCE series share one FrameOfReferenceUID. Pixel data are uint16 with BitsStored 12;
the float signal of all phases is scaled by one global factor (peak ≈3500). Dates and times are
fixed and UIDs derive from the seed, so the same case and seed give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from breastai import RESEARCH_NOTICE
from breastai.errors import OutputError, ParameterError
from breastai.phantom._util import dn_scale, to_dn
from breastai.phantom.dicom_encode import (
    Part10Encoder,
    da_value,
    ds_value,
    dt_value,
    tm_value,
)
from breastai.phantom.presets import LAYOUTS

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from breastai.phantom.generator import PhantomCase

__all__ = ["LAYOUTS", "write_dicom_study"]

log = logging.getLogger(__name__)

_Encoder = Part10Encoder  # the name bench/phantom.py patches (same class)

_STUDY_DATE = dt.date(2026, 1, 15)
_INJECTION = dt.datetime(2026, 1, 15, 9, 30, 0)
_MANUFACTURER = {
    "ge": ("GE MEDICAL SYSTEMS", "SIGNA Premier"),
    "siemens": ("SIEMENS", "Skyra"),
    "philips": ("Philips Medical Systems", "Ingenia"),
    "enhanced": ("Philips Medical Systems", "Ingenia"),
    "pre-post": ("GE MEDICAL SYSTEMS", "SIGNA Premier"),
    "split-bilateral": ("GE MEDICAL SYSTEMS", "SIGNA HDxt"),
}
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4.1"


class _Writer:
    def __init__(self, case: PhantomCase, out_dir: Path, layout: str, seed: int) -> None:
        self.case, self.out, self.layout, self.seed = case, out_dir, layout, seed
        self.scale = dn_scale(case)
        self.rng = np.random.default_rng([int(seed), 0xD1C0])
        self.paths: list[Path] = []
        m = case.meta
        key = f"{m.get('preset')}|{m.get('orientation')}|{m.get('seed')}|{seed}|{layout}"
        self.key = key
        self.study_uid = self.uid("study")
        self.for_uid = self.uid("frame-of-reference")
        self.manufacturer, self.model = _MANUFACTURER[layout]
        self.dirn = np.asarray(case.direction, dtype=np.float64)
        self.nz, self.ny, self.nx = case.images.shape[1:]
        self.sz, self.sy, self.sx = case.spacing_zyx
        self.origin = np.asarray(case.origin_lps, dtype=np.float64)
        self.times = np.asarray(case.times_s, dtype=np.float64)
        dt_s = float(np.median(np.diff(self.times))) if self.times.size > 1 else 60.0
        self.duration_s = 0.95 * dt_s
        self.n_files = 0
        self.encoder = Part10Encoder()

    # ---- identity -------------------------------------------------------------------------
    def uid(self, *parts: object) -> str:
        from pydicom.uid import generate_uid

        return str(generate_uid(entropy_srcs=[self.key, *[str(p) for p in parts]]))

    def phase_start(self, k: int) -> dt.datetime:
        start = float(self.times[k]) - self.duration_s / 2.0
        return _INJECTION + dt.timedelta(seconds=round(start, 3))

    # ---- datasets -------------------------------------------------------------------------
    def base(self, sop_class: str = MR_IMAGE) -> Dataset:
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import UID, ExplicitVRLittleEndian

        c = self.case
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = sop_class
        ds.StudyDate = da_value(_STUDY_DATE)
        ds.StudyTime = "091500.000000"
        ds.AccessionNumber = f"PH{int(c.meta.get('seed', 0)):06d}"
        ds.Modality = "MR"
        ds.Manufacturer = self.manufacturer
        ds.ManufacturerModelName = self.model
        ds.SoftwareVersions = "breastai-phantom"
        ds.InstitutionName = "breastai synthetic phantom"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "MR BREAST BILATERAL DCE (synthetic phantom)"
        ds.PatientName = "PHANTOM^BREAST"
        ds.PatientID = f"PHANTOM-{int(c.meta.get('seed', 0)):05d}"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "F"
        ds.PatientAge = "056Y"
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "synthetic phantom (breastai): never held patient data"
        ds.BodyPartExamined = "BREAST"
        ds.StudyInstanceUID = self.study_uid
        ds.StudyID = "1"
        ds.FrameOfReferenceUID = self.for_uid
        ds.PositionReferenceIndicator = ""
        ds.PatientPosition = "FFP" if self.layout == "siemens" else "HFP"
        ds.MagneticFieldStrength = ds_value(c.meta.get("field_T", 1.5))
        ds.ImageComments = f"{RESEARCH_NOTICE} Synthetic breastai phantom, not patient data."
        return ds

    def mr_params(self, ds: Dataset, *, t2: bool = False) -> None:
        m = self.case.meta
        ds.ScanningSequence = "SE" if t2 else "GR"
        ds.SequenceVariant = "SK" if t2 else ["SS", "SP"]
        ds.ScanOptions = "" if t2 or not m.get("fat_sat", True) else "FS"
        ds.MRAcquisitionType = "2D" if t2 else "3D"
        ds.RepetitionTime = ds_value(4000.0 if t2 else m.get("tr_ms", 4.5))
        ds.EchoTime = ds_value(80.0 if t2 else m.get("te_ms", 2.0))
        ds.FlipAngle = ds_value(90.0 if t2 else m.get("flip_deg", 12.0))
        ds.EchoTrainLength = "16" if t2 else "1"
        ds.ImagingFrequency = ds_value(63.87 if float(m.get("field_T", 1.5)) == 1.5 else 127.74)
        ds.ImagedNucleus = "1H"
        if not t2:
            if self.layout == "siemens":
                ds.SequenceName = "*fl3d1"
            elif self.manufacturer.startswith("Philips"):
                ds.SequenceName = "THRIVE"

    def geometry(
        self,
        ds: Dataset,
        ipp: NDArray[np.float64],
        *,
        row: NDArray[np.float64],
        col: NDArray[np.float64],
        rows: int,
        cols: int,
        spacing_rc: tuple[float, float],
        thickness: float,
        between: float,
    ) -> None:
        ds.ImageOrientationPatient = [ds_value(v) for v in (*row, *col)]
        ds.ImagePositionPatient = [ds_value(v) for v in ipp]
        normal = np.cross(row, col)
        ds.SliceLocation = ds_value(float(normal @ ipp))
        ds.PixelSpacing = [ds_value(spacing_rc[0]), ds_value(spacing_rc[1])]
        ds.SliceThickness = ds_value(thickness)
        ds.SpacingBetweenSlices = ds_value(between)
        ds.Rows, ds.Columns = rows, cols

    def pixels(self, ds: Dataset, arr: NDArray[np.uint16]) -> None:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PixelData = np.ascontiguousarray(arr, dtype="<u2").tobytes()
        ds["PixelData"].VR = "OW"

    def save(self, ds: Dataset, folder: str) -> Path:
        d = self.out / folder
        d.mkdir(parents=True, exist_ok=True)
        self.n_files += 1
        path = d / f"IM{self.n_files:05d}.dcm"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path.write_bytes(self.encoder.encode(ds))
        self.paths.append(path)
        return path

    # ---- classic DCE series ---------------------------------------------------------------
    def series(
        self,
        *,
        name: str,
        number: int,
        description: str,
        phases: Sequence[int],
        z_range: tuple[int, int] | None = None,
        x_range: tuple[int, int] | None = None,
        temporal_ids: bool = False,
        laterality: str | None = None,
        image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "OTHER"),
        volumes: dict[int, NDArray[np.uint16]] | None = None,
        slopes: dict[int, float] | None = None,
        instance_order: str = "ascending",
    ) -> None:
        """Write phases ``phases`` (a list of case phase indices) as one classic MR series."""
        ser_uid = self.uid("series", name)
        z0, z1 = z_range or (0, self.nz)
        x0, x1 = x_range or (0, self.nx)
        row, col, nrm = self.dirn[:, 0], self.dirn[:, 1], self.dirn[:, 2]
        slices = [(k, z) for k in phases for z in range(z0, z1)]
        n_slices = z1 - z0
        numbers = np.arange(1, len(slices) + 1)
        if instance_order == "random":
            numbers = self.rng.permutation(numbers)
        elif instance_order == "descending":  # descending along the normal within each phase
            numbers = np.concatenate([
                j * n_slices + np.arange(n_slices, 0, -1) for j in range(len(phases))
            ])  # fmt: skip
        order = np.arange(len(slices))
        if instance_order == "random":
            order = self.rng.permutation(len(slices))
        t_first = self.phase_start(phases[0])
        ds = self.base()
        ds.SeriesInstanceUID = ser_uid
        ds.SeriesNumber = str(number)
        ds.SeriesDescription = description
        ds.ProtocolName = description
        ds.ImageType = list(image_type)
        ds.ContrastBolusAgent = "Gadobutrol 0.1 mmol/kg"
        ds.ContrastBolusStartTime = tm_value(_INJECTION)
        ds.SeriesDate = da_value(t_first)
        ds.SeriesTime = tm_value(t_first)
        if laterality:
            ds.Laterality = laterality
        self.mr_params(ds)
        ds.ImagesInAcquisition = str(n_slices)
        ds.WindowCenter = "1200"
        ds.WindowWidth = "2400"
        if temporal_ids:
            ds.NumberOfTemporalPositions = str(len(phases))
        for j in order:
            k, z = slices[j]
            start = self.phase_start(k)
            ds.SOPInstanceUID = self.uid("sop", name, k, z)
            ds.InstanceNumber = str(int(numbers[j]))
            ds.AcquisitionNumber = str(phases.index(k) + 1)
            ds.AcquisitionDate = da_value(start)
            ds.AcquisitionTime = tm_value(start)
            ds.AcquisitionDateTime = dt_value(start)
            done = start + dt.timedelta(seconds=round(self.duration_s + 4.0, 3))
            ds.ContentDate = da_value(done)
            ds.ContentTime = tm_value(done)
            ds.TriggerTime = ds_value(round((start - t_first).total_seconds() * 1000.0, 1))
            if temporal_ids:
                ds.TemporalPositionIdentifier = str(phases.index(k) + 1)
            ipp = self.origin + z * self.sz * nrm + x0 * self.sx * row
            self.geometry(
                ds,
                ipp,
                row=row,
                col=col,
                rows=self.ny,
                cols=x1 - x0,
                spacing_rc=(self.sy, self.sx),
                thickness=self.sz,
                between=self.sz,
            )
            arr = volumes[k][z, :, x0:x1] if volumes is not None else self.dn(k)[z, :, x0:x1]
            if slopes is not None:
                slope = slopes[k]
                arr = np.clip(np.rint(arr / slope), 0, 4095).astype(np.uint16)
                ds.RescaleSlope = ds_value(slope)
                ds.RescaleIntercept = "0"
                ds.RescaleType = "US"
            self.vendor_private(ds, k, phases, start)
            self.pixels(ds, arr)
            self.save(ds, name)

    def vendor_private(
        self, ds: Dataset, k: int, phases: Sequence[int], start: dt.datetime
    ) -> None:
        if self.manufacturer.startswith("GE"):
            acq = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
            acq.add_new(0xA2, "SL", k + 1)  # RawDataRunNumber (acquisition-wide)
            acq.add_new(0x5A, "FL", float(self.duration_s * 1e6))  # acquisition duration (µs)
            rela = ds.private_block(0x0021, "GEMS_RELA_01", create=True)
            rela.add_new(0x4F, "SS", int(ds.ImagesInAcquisition))  # LocationsInAcquisition
        elif self.layout == "siemens":
            blk = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
            blk.add_new(
                0x0B, "DS", ds_value(self.duration_s * 1000.0)
            )  # SliceMeasurementDuration ms
        elif self.manufacturer.startswith("Philips"):
            blk = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
            t0 = self.phase_start(phases[0])
            blk.add_new(0xA0, "FL", float((start - t0).total_seconds()))  # dyn scan begin (s)
            blk.add_new(0x33, "FL", float(self.duration_s))  # acquisition duration (s)
            if "RescaleSlope" in ds:
                blk.add_new(0x0E, "FL", float(1.0 / float(ds.RescaleSlope)))  # ScaleSlope
            blk2 = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
            blk2.add_new(0x81, "IS", str(len(phases)))  # NumberOfDynamicScans
            blk2.add_new(0x10, "CS", "NO")  # cardiac synchronised

    _dn_cache: dict[int, NDArray[np.uint16]]

    def dn(self, k: int) -> NDArray[np.uint16]:
        if not hasattr(self, "_dn_cache"):
            self._dn_cache = {}
        if k not in self._dn_cache:  # all phases kept: uint16, t x 2 bytes per voxel
            self._dn_cache[k] = to_dn(self.case.images[k], self.scale)
        return self._dn_cache[k]

    # ---- enhanced multi-frame -------------------------------------------------------------
    def enhanced(self, *, name: str, number: int, description: str) -> None:
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence as Seq
        from pydicom.tag import Tag

        nt = self.case.n_phases
        row, col, nrm = self.dirn[:, 0], self.dirn[:, 1], self.dirn[:, 2]
        ds = self.base(ENHANCED_MR_IMAGE)
        ds.SOPInstanceUID = self.uid("sop", name)
        ds.SeriesInstanceUID = self.uid("series", name)
        ds.SeriesNumber = str(number)
        ds.SeriesDescription = description
        ds.ProtocolName = description
        ds.InstanceNumber = "1"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
        t0 = self.phase_start(0)
        ds.SeriesDate, ds.SeriesTime = da_value(t0), tm_value(t0)
        ds.ContentDate = da_value(t0)
        ds.ContentTime = tm_value(t0)
        ds.AcquisitionDateTime = dt_value(t0)
        ds.ContrastBolusAgent = "Gadobutrol 0.1 mmol/kg"
        ds.ContrastBolusStartTime = tm_value(_INJECTION)
        ds.AcquisitionContrast = "T1"
        ds.PixelPresentation = "MONOCHROME"
        ds.VolumetricProperties = "VOLUME"
        ds.VolumeBasedCalculationTechnique = "NONE"
        ds.ComplexImageComponent = "MAGNITUDE"
        ds.ContentQualification = "RESEARCH"
        ds.ImagedNucleus = "1H"
        ds.MagneticFieldStrength = ds_value(self.case.meta.get("field_T", 1.5))
        ds.MRAcquisitionType = "3D"
        ds.NumberOfTemporalPositions = str(nt)
        ds.BurnedInAnnotation = "NO"
        ds.LossyImageCompression = "00"
        ds.PresentationLUTShape = "IDENTITY"
        m = self.case.meta
        shared = Dataset()
        pm = Dataset()
        pm.PixelSpacing = [ds_value(self.sy), ds_value(self.sx)]
        pm.SliceThickness = ds_value(self.sz)
        pm.SpacingBetweenSlices = ds_value(self.sz)
        shared.PixelMeasuresSequence = Seq([pm])
        po = Dataset()
        po.ImageOrientationPatient = [ds_value(v) for v in (*row, *col)]
        shared.PlaneOrientationSequence = Seq([po])
        tim = Dataset()
        tim.RepetitionTime = float(m.get("tr_ms", 4.5))
        tim.FlipAngle = float(m.get("flip_deg", 12.0))
        tim.EchoTrainLength = 1
        shared.MRTimingAndRelatedParametersSequence = Seq([tim])
        echo = Dataset()
        echo.EffectiveEchoTime = float(m.get("te_ms", 2.0))
        shared.MREchoSequence = Seq([echo])
        pvt = Dataset()
        pvt.RescaleSlope = "1"
        pvt.RescaleIntercept = "0"
        pvt.RescaleType = "US"
        shared.PixelValueTransformationSequence = Seq([pvt])
        ds.SharedFunctionalGroupsSequence = Seq([shared])
        org_uid = self.uid("dimension-organization", name)
        dorg = Dataset()
        dorg.DimensionOrganizationUID = org_uid
        ds.DimensionOrganizationSequence = Seq([dorg])
        ds.DimensionOrganizationType = "3D_TEMPORAL"
        dims = []
        for ptr, label in (
            (0x00209056, "Stack ID"),
            (0x00209057, "In-Stack Position Number"),
            (0x00209128, "Temporal Position Index"),
        ):
            d = Dataset()
            d.DimensionOrganizationUID = org_uid
            d.DimensionIndexPointer = Tag(ptr)
            d.FunctionalGroupPointer = Tag(0x00209111)
            d.DimensionDescriptionLabel = label
            dims.append(d)
        ds.DimensionIndexSequence = Seq(dims)
        frames = []
        data = np.empty((nt * self.nz, self.ny, self.nx), np.uint16)
        i = 0
        for k in range(nt):
            vol = self.dn(k)
            start = self.phase_start(k)
            centre = _INJECTION + dt.timedelta(seconds=round(float(self.times[k]), 3))
            for z in range(self.nz):
                f = Dataset()
                fc = Dataset()
                fc.FrameAcquisitionDateTime = dt_value(start)
                fc.FrameReferenceDateTime = dt_value(centre)
                fc.FrameAcquisitionDuration = float(self.duration_s * 1000.0)
                fc.StackID = "1"
                fc.InStackPositionNumber = z + 1
                fc.TemporalPositionIndex = k + 1
                fc.DimensionIndexValues = [1, z + 1, k + 1]
                f.FrameContentSequence = Seq([fc])
                pp = Dataset()
                pp.ImagePositionPatient = [ds_value(v) for v in self.origin + z * self.sz * nrm]
                f.PlanePositionSequence = Seq([pp])
                ft = Dataset()
                ft.FrameType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
                f.MRImageFrameTypeSequence = Seq([ft])
                frames.append(f)
                data[i] = vol[z]
                i += 1
        ds.PerFrameFunctionalGroupsSequence = Seq(frames)
        ds.NumberOfFrames = str(nt * self.nz)
        ds.Rows, ds.Columns = self.ny, self.nx
        self.pixels(ds, data)
        self.save(ds, name)

    # ---- decoys ---------------------------------------------------------------------------
    def decoys(self, first_number: int) -> None:
        nt = self.case.n_phases
        post = 1 if nt > 1 else 0
        sub = np.clip(self.dn(post).astype(np.int32) - self.dn(0).astype(np.int32), 0, 4095)
        sub16 = sub.astype(np.uint16)
        n = first_number
        for suffix, description, image_type in (
            ("sub", "Ax SUB ph2-ph1", ("DERIVED", "SECONDARY", "SUBTRACTION")),
            ("gesub", "(1/1/1)-(2/1/1)", ("ORIGINAL", "PRIMARY", "OTHER")),  # GE-style
        ):
            self.series(
                name=f"S{n:04d}_{suffix}",
                number=n,
                description=description,
                phases=[post],
                volumes={post: sub16},
                image_type=image_type,
            )
            n += 1
        self.mip(sub16, name=f"S{n:04d}_mip", number=n)
        n += 1
        self.localizer(name=f"S{n:04d}_loc", number=n)
        n += 1
        self.t2(name=f"S{n:04d}_t2", number=n)

    def mip(self, sub: NDArray[np.uint16], *, name: str, number: int) -> None:
        row, col = self.dirn[:, 0], self.dirn[:, 1]
        nrm = self.dirn[:, 2]
        ds = self.base()
        ds.SeriesInstanceUID = self.uid("series", name)
        ds.SeriesNumber = str(number)
        ds.SeriesDescription = "MIP SUB ph2-ph1"
        ds.ImageType = ["DERIVED", "SECONDARY", "MIP"]
        self.mr_params(ds)
        t = self.phase_start(1 if self.case.n_phases > 1 else 0)
        ds.SeriesDate, ds.SeriesTime = da_value(t), tm_value(t)
        ds.SOPInstanceUID = self.uid("sop", name)
        ds.InstanceNumber = "1"
        ipp = self.origin + (self.nz - 1) / 2.0 * self.sz * nrm
        self.geometry(
            ds,
            ipp,
            row=row,
            col=col,
            rows=self.ny,
            cols=self.nx,
            spacing_rc=(self.sy, self.sx),
            thickness=self.sz * self.nz,
            between=self.sz * self.nz,
        )
        self.pixels(ds, sub.max(axis=0))
        self.save(ds, name)

    def localizer(self, *, name: str, number: int) -> None:
        pre = self.dn(0)
        d = self.dirn
        c = np.array([self.nx // 2, self.ny // 2, self.nz // 2], dtype=np.float64)
        sp = np.array([self.sx, self.sy, self.sz])
        planes = [  # (row axis, col axis, image)
            (0, 1, pre[self.nz // 2, :, :]),
            (0, 2, pre[:, self.ny // 2, :]),
            (1, 2, pre[:, :, self.nx // 2]),
        ]
        ds = self.base()
        ds.SeriesInstanceUID = self.uid("series", name)
        ds.SeriesNumber = str(number)
        ds.SeriesDescription = "3-Plane Loc"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        t = self.phase_start(0) - dt.timedelta(minutes=6)
        ds.SeriesDate, ds.SeriesTime = da_value(t), tm_value(t)
        ds.AcquisitionTime = tm_value(t)
        ds.ScanningSequence = "GR"
        ds.SequenceVariant = "SS"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime, ds.EchoTime, ds.FlipAngle = "6.5", "2.1", "30"
        for i, (ra, ca, img) in enumerate(planes):
            # img rows run along axis ca, columns along axis ra (numpy (z,y,x) order)
            pos = c.copy()
            pos[ra], pos[ca] = 0.0, 0.0
            ipp = self.origin + d @ (pos * sp)
            ds.SOPInstanceUID = self.uid("sop", name, i)
            ds.InstanceNumber = str(i + 1)
            self.geometry(
                ds,
                ipp,
                row=d[:, ra],
                col=d[:, ca],
                rows=img.shape[0],
                cols=img.shape[1],
                spacing_rc=(float(sp[ca]), float(sp[ra])),
                thickness=10.0,
                between=10.0,
            )
            self.pixels(ds, np.ascontiguousarray(img))
            self.save(ds, name)

    def t2(self, *, name: str, number: int) -> None:
        from breastai.phantom.generator import TISSUE_LABELS

        tissue = self.case.tissue
        lut = np.zeros(256, np.float32)
        values = {
            "skin": 900,
            "fat": 1800,
            "fgt": 1300,
            "muscle": 500,
            "bone": 150,
            "lung": 60,
            "blood_pool": 250,
            "myocardium": 600,
            "great_vessel": 200,
            "breast_vessel": 300,
            "lymph_node": 1500,
            "implant": 2600,
            "liver": 650,
            "necrosis": 3000,
        }
        for k, v in values.items():
            lut[TISSUE_LABELS[k]] = v
        lut[21:40] = 1700
        rng = np.random.default_rng([self.seed, 0x72])
        step = 2
        nrm = self.dirn[:, 2]
        ds = self.base()
        ds.SeriesInstanceUID = self.uid("series", name)
        ds.SeriesNumber = str(number)
        ds.SeriesDescription = "Ax T2 FSE" if self.manufacturer.startswith("GE") else "t2_tse_tra"
        ds.ProtocolName = ds.SeriesDescription
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        t = self.phase_start(0) - dt.timedelta(minutes=4)
        ds.SeriesDate, ds.SeriesTime = da_value(t), tm_value(t)
        ds.AcquisitionTime = tm_value(t)
        self.mr_params(ds, t2=True)
        for j, z in enumerate(range(0, self.nz, step)):
            img = lut[tissue[z]] if tissue.size else self.dn(0)[z].astype(np.float32)
            img = np.abs(img + rng.normal(0, 60, img.shape).astype(np.float32))
            ds.SOPInstanceUID = self.uid("sop", name, z)
            ds.InstanceNumber = str(j + 1)
            ipp = self.origin + z * self.sz * nrm
            self.geometry(
                ds,
                ipp,
                row=self.dirn[:, 0],
                col=self.dirn[:, 1],
                rows=self.ny,
                cols=self.nx,
                spacing_rc=(self.sy, self.sx),
                thickness=self.sz * step,
                between=self.sz * step,
            )
            self.pixels(ds, np.clip(np.rint(img), 0, 4095).astype(np.uint16))
            self.save(ds, name)

    # ---- layouts --------------------------------------------------------------------------
    def write(self, decoys: bool) -> None:
        nt = self.case.n_phases
        phases = list(range(nt))
        lay = self.layout
        if lay == "ge":
            self.series(
                name="S0005_dce",
                number=5,
                description="Ax Vibrant MultiPhase",
                phases=phases,
                temporal_ids=True,
            )
        elif lay == "siemens":
            numbers = list(self.rng.permutation(nt) + 10)
            if numbers == sorted(numbers):
                numbers[0], numbers[-1] = numbers[-1], numbers[0]
            for k in phases:
                self.series(
                    name=f"S{int(numbers[k]):04d}_dyn{k + 1}",
                    number=int(numbers[k]),
                    description=f"fl3d_dyn_ph{k + 1}",
                    phases=[k],
                    instance_order="descending",
                )
        elif lay == "philips":
            slopes = {
                k: float(s)
                for k, s in zip(
                    phases, np.round(self.rng.uniform(0.9, 1.35, size=nt), 4), strict=True
                )
            }
            self.series(
                name="S0701_dyn",
                number=701,
                description="DYN_THRIVE_bilat",
                phases=phases,
                temporal_ids=True,
                slopes=slopes,
                instance_order="random",
            )
        elif lay == "enhanced":
            self.enhanced(name="S0701_dyn_enh", number=701, description="DYN_eTHRIVE")
        elif lay == "pre-post":
            self.series(name="S0004_pre", number=4, description="Ax Vibrant pre", phases=[0])
            if nt > 1:
                self.series(
                    name="S0005_post",
                    number=5,
                    description="Ax Vibrant MultiPhase post",
                    phases=phases[1:],
                    temporal_ids=True,
                )
        elif lay == "split-bilateral":
            self.split(phases)
        if decoys:
            self.decoys(first_number=900 if lay in ("philips", "enhanced") else 40)

    def split(self, phases: list[int]) -> None:
        # the array axis most aligned with patient x (left-right) is split in two stacks
        lr_axis = int(np.argmax(np.abs(self.dirn[0, :])))  # 0 = x (columns), 2 = z (slices)
        if lr_axis == 1:
            raise ParameterError(
                "split-bilateral needs rows not running left-right; this case's rows do. Use an "
                "axial, sagittal or oblique case."
            )
        n = self.nx if lr_axis == 0 else self.nz
        gap = max(1, round(0.08 * n))
        halves = [(0, (n - gap) // 2), ((n - gap) // 2 + gap, n)]
        # laterality from the LPS x of each stack's centre (x > 0: patient left)
        stacks = []
        for lo, hi in halves:
            idx = np.array([(self.nx - 1) / 2.0, (self.ny - 1) / 2.0, (self.nz - 1) / 2.0])
            idx[0 if lr_axis == 0 else 2] = (lo + hi - 1) / 2.0
            centre = self.origin + self.dirn @ (idx * np.array([self.sx, self.sy, self.sz]))
            stacks.append(("L" if centre[0] > 0 else "R", (lo, hi)))
        number = 100
        for k in phases:
            for side, rng_ in stacks:
                number += 1
                desc = (
                    f"Sag VIBRANT {side} ph{k + 1}"
                    if lr_axis == 2
                    else (f"Ax VIBRANT {side} ph{k + 1}")
                )
                kw: dict[str, Any] = {"z_range": rng_} if lr_axis == 2 else {"x_range": rng_}
                self.series(
                    name=f"S{number:04d}_{side}{k + 1}",
                    number=number,
                    description=desc,
                    phases=[k],
                    laterality=side,
                    **kw,
                )


def write_dicom_study(
    case: PhantomCase, out_dir: Path, *, layout: str = "ge", decoys: bool = True, seed: int = 0
) -> list[Path]:
    """Write a phantom case as a vendor-like DICOM study (see the module docstring for layouts).

    Parameters
    ----------
    case:
        The phantom case.
    out_dir:
        Folder to write into (created if needed); one sub-folder per series.
    layout:
        One of ``LAYOUTS``.
    decoys:
        Also write the decoy series (subtraction, ORIGINAL-typed subtraction, MIP, 3-plane
        localizer, T2).
    seed:
        Seed for UIDs and vendor quirks (series numbers, instance shuffles, slopes).

    Returns
    -------
    list of Path
        Every file written.

    Raises
    ------
    ParameterError
        Unknown layout.
    OutputError
        The folder cannot be written.
    """
    if layout not in LAYOUTS:
        raise ParameterError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}.")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        w = _Writer(case, out_dir, layout, seed)
        w.write(decoys)
    except OSError as exc:
        raise OutputError(
            f"cannot write DICOM files under {str(out_dir)!r} ({exc.strerror}); choose a "
            "writable folder with free space."
        ) from None
    log.info("wrote %d DICOM files (%s layout) to %s", len(w.paths), layout, out_dir)
    return w.paths
