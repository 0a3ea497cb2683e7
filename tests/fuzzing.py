"""Seeded header fuzzing of a small synthetic DCE study (used by tests/test_fuzz.py and
bench/fuzz.py).

A case is ``(seed, mutations)``: each mutation applies one operation (delete, empty, garbage
bytes, huge, negative, NaN, inf, wrong VR, swap with another file) to one tag in one file, in
every file of one phase, or in every file. :func:`run_info_case` runs ``breastai info --json``
in-process on the mutated copy and classifies the outcome:

* ``ok``: exit 0 and the volume passes the invariants (phases >= 2, the truth's size, spacing,
  origin and direction; finite, non-constant voxels; voxels equal to the truth when no geometry
  or rescale tag was swapped or changed);
* ``refused``: exit 1 and exactly one line on stderr;
* anything else is a failure: ``traceback``, ``internal`` (an "internal error" line),
  ``multiline``, ``bad-exit``, ``silent`` (exit 0 with a volume that breaks an invariant),
  ``hang`` (over the time limit).
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from dicom_factory import SynthStudy, make_study
from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

TAGS = (
    "PixelSpacing",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "RescaleSlope",
    "RescaleIntercept",
    "SliceThickness",
    "SpacingBetweenSlices",
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "SOPClassUID",
    "FrameOfReferenceUID",
    "TemporalPositionIdentifier",
    "NumberOfTemporalPositions",
    "AcquisitionTime",
    "ContentTime",
    "SeriesNumber",
    "InstanceNumber",
    "AcquisitionNumber",
    "EchoTime",
    "RepetitionTime",
    "FlipAngle",
    "ImageType",
    "SeriesDescription",
    "Modality",
    "Manufacturer",
    "PatientID",
    "TransferSyntaxUID",
)
OPS = ("delete", "empty", "garbage", "huge", "negative", "nan", "inf", "wrong_vr", "swap")
SCOPES = ("one", "phase", "all")
GEOMETRY = {"PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient"}
RESCALE = {"RescaleSlope", "RescaleIntercept"}


@dataclass(frozen=True)
class Mutation:
    tag: str
    op: str
    scope: str
    phase: int
    file: int

    def __str__(self) -> str:
        where = {"one": f"file {self.phase}/{self.file}", "phase": f"phase {self.phase}"}
        return f"{self.op} {self.tag} in {where.get(self.scope, 'every file')}"


@dataclass
class Outcome:
    case: int
    mutations: list[Mutation]
    kind: str  # ok | refused | traceback | internal | multiline | bad-exit | silent | hang
    exit_code: int | None
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.kind not in ("ok", "refused")

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "mutations": [str(m) for m in self.mutations],
            "kind": self.kind,
            "exit_code": self.exit_code,
            "message": self.message[:300],
        }


@dataclass
class Base:
    """The unmutated study (files [phase][slice]) and its truth."""

    root: Path
    truth: SynthStudy
    files: list[list[Path]] = field(default_factory=list)


def make_base(
    root: Path, *, shape_zyx: tuple[int, int, int] = (6, 10, 12), layout: str = "one_series"
) -> Base:
    """A 3-phase study: ``one_series`` (GE-like) or ``series_per_phase`` (Siemens-like)."""
    truth = make_study(
        root, n_phases=3, shape_zyx=shape_zyx, description="ax dyn vibrant", layout=layout
    )
    rel = [[p.relative_to(root) for p in phase] for phase in truth.files]
    return Base(root=root, truth=truth, files=rel)  # type: ignore[arg-type]


LAYOUTS = ("one_series", "series_per_phase", "decoys", "enhanced")


def make_bases(root: Path) -> list[Base]:
    """One base per layout (case ``seed`` uses ``bases[seed % len(bases)]``): GE-like one
    series, Siemens-like one series per phase, a Philips one-series study beside a derived
    subtraction series (601) and a T2 series, and one Enhanced MR multi-frame file."""
    bases = [
        make_base(root / "one-series"),
        make_base(root / "series-per-phase", layout="series_per_phase"),
    ]
    decoys = root / "decoys"
    truth = make_study(
        decoys / "dce",
        n_phases=3,
        shape_zyx=(6, 10, 12),
        description="dyn eTHRIVE",
        manufacturer="Philips Medical Systems",
        series_numbers=[600] * 3,
    )
    make_study(
        decoys / "sub",
        n_phases=2,
        shape_zyx=(6, 10, 12),
        tag="sub",
        description="dyn eTHRIVE",
        manufacturer="Philips Medical Systems",
        series_numbers=[601] * 2,
        study_uid=truth.study_uid,
        frame_of_reference_uid=truth.frame_of_reference_uid or None,
        extra={"ImageType": ["DERIVED", "PRIMARY", "SUBTRACTION"]},
    )
    make_study(
        decoys / "t2",
        n_phases=1,
        shape_zyx=(6, 10, 12),
        tag="t2",
        description="ax t2 tse",
        series_numbers=[300],
        study_uid=truth.study_uid,
        extra={"EchoTime": "80", "RepetitionTime": "4000"},
    )
    rel = [[p.relative_to(decoys) for p in phase] for phase in truth.files]
    bases.append(Base(root=decoys, truth=truth, files=rel))  # type: ignore[arg-type]
    enhanced = root / "enhanced"
    etruth = make_study(enhanced, n_phases=3, shape_zyx=(6, 10, 12), layout="enhanced")
    erel = [[p.relative_to(enhanced) for p in phase] for phase in etruth.files]
    bases.append(Base(root=enhanced, truth=etruth, files=erel))  # type: ignore[arg-type]
    return bases


def draw_case(seed: int, base: Base) -> list[Mutation]:
    """1-3 random mutations, reproducible from ``seed``."""
    rng = random.Random(seed)
    out = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        phase = rng.randrange(len(base.files))
        out.append(
            Mutation(
                tag=rng.choice(TAGS),
                op=rng.choice(OPS),
                scope=rng.choices(SCOPES, weights=(6, 2, 2))[0],
                phase=phase,
                file=rng.randrange(len(base.files[phase])),
            )
        )
    return out


def _garbage(rng: random.Random) -> bytes:
    pool = [0, 1, 7, 10, 13, 27, 0x7F, 0x80, 0x9B, 0xFF, *range(0x20, 0x7F)]
    n = rng.randrange(1, 12)
    data = bytes(rng.choice(pool) for _ in range(n))
    return data if len(data) % 2 == 0 else data + b"\x00"


def _text(value: str) -> bytes:
    raw = value.encode("latin-1")
    return raw if len(raw) % 2 == 0 else raw + b" "


def _mutate(ds: pydicom.Dataset, m: Mutation, rng: random.Random, donor: pydicom.Dataset) -> None:
    meta = m.tag == "TransferSyntaxUID"
    holder: Any = ds.file_meta if meta else ds
    found = tag_for_keyword(m.tag)
    assert found is not None
    tag = BaseTag(found)
    vr = dictionary_VR(tag)
    if m.op == "delete":
        if tag in holder:
            del holder[tag]
        return
    if m.op == "swap":
        other = donor.file_meta if meta else donor
        if tag in other:
            holder[tag] = other[tag]
        return
    if m.op == "empty":
        raw = b""
    elif m.op == "garbage":
        raw = _garbage(rng)
    elif m.op in ("huge", "negative", "nan", "inf"):
        number = {"huge": "1e308", "negative": "-5", "nan": "NaN", "inf": "inf"}[m.op]
        if vr in ("US", "UL", "SS", "SL"):
            value = {"huge": 0xFFFF, "negative": -5, "nan": 0x8000, "inf": 0xFFFE}[m.op]
            fmt = {"US": "<H", "UL": "<L", "SS": "<h", "SL": "<l"}[vr]
            import struct

            if vr in ("US", "UL"):
                value = value % (1 << (16 if vr == "US" else 32))
            raw = struct.pack(fmt, value)
        elif vr in ("FL", "FD"):
            import struct

            raw = struct.pack("<d" if vr == "FD" else "<f", float(number))
        else:
            mult = {"DS": 3 if m.tag == "ImageOrientationPatient" else 1}.get(vr, 1)
            if m.tag in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
                count = {"ImageOrientationPatient": 6, "ImagePositionPatient": 3}.get(m.tag, 2)
                values = (
                    [number] * count if rng.random() < 0.5 else [number, *(["1"] * (count - 1))]
                )
                raw = _text("\\".join(values))
            else:
                raw = _text("\\".join([number] * mult))
    elif m.op == "wrong_vr":
        if vr in ("US", "UL", "SS", "SL", "FL", "FD"):
            raw, vr = _text("12.5"), "DS"
        elif tag in holder:
            import struct

            raw, vr = struct.pack("<d", 3.0), "FD"
        else:
            return
    else:  # pragma: no cover
        raise ValueError(m.op)
    holder[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True, True, False)  # type: ignore[assignment]


def apply(base: Base, case_dir: Path, mutations: Sequence[Mutation], seed: int) -> None:
    """Copy the base study into ``case_dir`` and apply ``mutations``."""
    shutil.copytree(base.root, case_dir)
    rng = random.Random(seed * 7919 + 1)
    old = pydicom_config.settings.writing_validation_mode
    pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE
    try:
        for m in mutations:
            if m.scope == "one":
                targets = [base.files[m.phase][m.file]]
            elif m.scope == "phase":
                targets = list(base.files[m.phase])
            else:
                targets = [p for phase in base.files for p in phase]
            flat = sorted({p for phase in base.files for p in phase})
            for rel in dict.fromkeys(targets):
                path = case_dir / rel
                ds = pydicom.dcmread(path)
                donor_rel = rng.choice([p for p in flat if p != rel] or [rel])
                donor = pydicom.dcmread(case_dir / donor_rel, stop_before_pixels=True)
                _mutate(ds, m, rng, donor)
                _write_raw(ds, path)
    finally:
        pydicom_config.settings.writing_validation_mode = old


def _write_raw(ds: pydicom.Dataset, path: Path) -> None:
    """Preamble, file meta as it is (even without or with a damaged TransferSyntaxUID) and
    the data set in explicit VR little endian (the factory's encoding)."""
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_dataset, write_file_meta_info

    with open(path, "wb") as fh:
        fp = DicomFileLike(fh)
        fp.is_little_endian = True
        fp.is_implicit_VR = False
        fh.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fp, ds.file_meta, enforce_standard=False)
        write_dataset(fp, ds)


class _Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def _raise(signum: int, frame: Any) -> None:
        raise _Hang

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_volume(base: Base, case_dir: Path, mutations: Sequence[Mutation]) -> str:
    """'' when the study read from ``case_dir`` passes the invariants, else what is wrong."""
    from breastai.io import load_study

    study = load_study(case_dir)
    truth = base.truth
    if len(study.phases) < 2:
        return f"{len(study.phases)} phase(s)"
    if len(study.phases) != truth.arrays.shape[0] and not study.decisions.warnings:
        return f"{len(study.phases)} phases instead of {truth.arrays.shape[0]} without a warning"
    for phase in study.phases:
        img = phase.image
        size = img.GetSize()
        if tuple(size) != tuple(reversed(truth.arrays.shape[1:])):
            return f"phase {phase.index} size {size}"
        if not np.allclose(img.GetSpacing(), truth.spacing_xyz, atol=1e-4):
            return f"phase {phase.index} spacing {img.GetSpacing()}"
        if not np.allclose(img.GetOrigin(), truth.origin, atol=1e-3):
            return f"phase {phase.index} origin {img.GetOrigin()}"
        if not np.allclose(np.reshape(img.GetDirection(), (3, 3)), truth.direction, atol=1e-5):
            return f"phase {phase.index} direction"
        import SimpleITK as sitk

        arr = sitk.GetArrayViewFromImage(img)
        if not np.all(np.isfinite(arr)) or float(arr.min()) == float(arr.max()):
            return f"phase {phase.index} non-finite or constant voxels"
    touched = {m.tag for m in mutations}
    swapped_geometry = any(m.tag in GEOMETRY for m in mutations)
    if not (touched & RESCALE) and not swapped_geometry and len(study.phases) == len(truth.arrays):
        import SimpleITK as sitk

        for phase, expected in zip(study.phases, truth.arrays, strict=True):
            if not np.allclose(sitk.GetArrayViewFromImage(phase.image), expected, atol=1e-3):
                return f"phase {phase.index} voxels differ from the truth"
    return ""


def classify(result: Any) -> tuple[str, str]:
    """(kind, message) of a CliRunner result for the one-line contract (exit 0 not judged)."""
    output = (result.stdout or "") + (result.stderr or "")
    if "Traceback" in output or (
        result.exception is not None and not isinstance(result.exception, SystemExit)
    ):
        exc = result.exception
        return "traceback", f"{type(exc).__name__}: {exc}" if exc else output[-300:]
    if result.exit_code == 0:
        return "ok", ""
    lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
    message = " / ".join(lines)
    if result.exit_code != 1:
        return "bad-exit", f"exit {result.exit_code}: {message}"
    if any("internal error" in line for line in lines):
        return "internal", message
    if len(lines) != 1:
        return "multiline", message
    return "refused", message


def run_info_subprocess(base: Base, work: Path, seed: int) -> tuple[int, str, str | None]:
    """``breastai info`` on a mutated copy in a real process: what a terminal sees.

    Returns
    -------
    (exit code, stderr, what is wrong or None)
        Right is exit 0 with nothing on stderr, or exit 1 with exactly one line, never a
        traceback (C++ warnings, stray prints and logging's last resort all count).
    """
    case_dir = work / f"proc{seed}"
    apply(base, case_dir, draw_case(seed, base), seed)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "breastai", "info", str(case_dir)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(case_dir, ignore_errors=True)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    problem = None
    if proc.returncode not in (0, 1):
        problem = f"exit {proc.returncode}"
    elif "Traceback" in proc.stderr:
        problem = "traceback"
    elif len(lines) != (0 if proc.returncode == 0 else 1):
        problem = f"{len(lines)} stderr lines with exit {proc.returncode}"
    return proc.returncode, proc.stderr, problem


def run_info_case(base: Base, work: Path, seed: int, *, limit_s: int = 60) -> Outcome:
    """Mutate, run ``breastai info --json`` in-process, judge (see the module docstring)."""
    from typer.testing import CliRunner

    from breastai.cli import app

    mutations = draw_case(seed, base)
    case_dir = work / f"case{seed}"
    try:
        apply(base, case_dir, mutations, seed)
        try:
            with time_limit(limit_s):
                result = CliRunner().invoke(app, ["info", str(case_dir), "--json"])
                kind, message = classify(result)
                if kind == "ok":
                    json.loads(result.stdout)
                    problem = check_volume(base, case_dir, mutations)
                    if problem:
                        kind, message = "silent", problem
        except _Hang:
            return Outcome(seed, mutations, "hang", None, f"over {limit_s} s")
        return Outcome(seed, mutations, kind, result.exit_code, message)
    finally:
        shutil.rmtree(case_dir, ignore_errors=True)


def summarise(outcomes: Sequence[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.kind] = counts.get(o.kind, 0) + 1
    return dict(sorted(counts.items()))


# --------------------------------------------------------------------------------------------
# segment on mutated studies


def run_segment_case(
    base: Base, work: Path, seed: int, models: dict[str, Path], *, limit_s: int = 120
) -> Outcome:
    """Mutate, run ``breastai segment`` in-process: exit 0 with the outputs written (NIfTI masks
    on the reference grid, seg.dcm, report.json, manifest.json), or exit 1 with one line."""
    from segment_factory import cli_model_args
    from typer.testing import CliRunner

    from breastai.cli import app
    from breastai.cohort import study_folder_name

    mutations = draw_case(seed, base)
    case_dir = work / f"seg{seed}"
    out = work / f"out{seed}"
    try:
        apply(base, case_dir, mutations, seed)
        argv = [
            "segment", str(case_dir), "-o", str(out), "--quiet",
            *cli_model_args(models, work / "w.toml"),
        ]  # fmt: skip
        try:
            with time_limit(limit_s):
                result = CliRunner().invoke(app, argv)
        except _Hang:
            return Outcome(seed, mutations, "hang", None, f"over {limit_s} s")
        kind, message = classify(result)
        if kind == "ok":
            folder = out / study_folder_name(case_dir)
            needed = ("breast.nii.gz", "tumor.nii.gz", "seg.dcm", "report.json", "manifest.json")
            missing = [n for n in needed if not (folder / n).is_file()]
            if missing:
                kind, message = "silent", f"exit 0 without {missing}"
            else:
                report = json.loads((folder / "report.json").read_text())
                if not np.isfinite(float(report.get("total_volume_ml", 0.0) or 0.0)):
                    kind, message = "silent", "non-finite volume in report.json"
        return Outcome(seed, mutations, kind, result.exit_code, message)
    finally:
        shutil.rmtree(case_dir, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# tstage on mutated masks

MASK_OPS = (
    "pixdim-0",
    "pixdim-negative",
    "pixdim-nan",
    "pixdim-inf",
    "pixdim-huge",
    "dim0-2",
    "dim0-7",
    "dim-zero",
    "datatype-bad",
    "quatern-bad",
    "srow-nan",
    "vox-offset-huge",
    "truncate",
    "empty-file",
    "garbage-file",
    "labels-2",
    "labels-255",
    "labels-negative",
    "float-half",
    "float-nan",
    "all-zero",
    "all-one",
    "4d",
    "2d",
)


def _nifti_mask(path: Path, values: np.ndarray, spacing: tuple[float, float, float]) -> None:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(values)
    img.SetSpacing(spacing)
    img.SetOrigin((-20.0, -15.0, 4.0))
    sitk.WriteImage(img, str(path), useCompression=False)


def make_mask(path: Path, op: str) -> None:
    """A 10 x 24 x 24 mask with one ellipsoid lesion, damaged by ``op``."""
    import struct

    z, y, x = np.indices((10, 24, 24))
    lesion = ((z - 5) / 3.0) ** 2 + ((y - 12) / 6.0) ** 2 + ((x - 11) / 5.0) ** 2 <= 1.0
    values: np.ndarray = lesion.astype(np.uint8)
    if op == "labels-2":
        values = values * 2
    elif op == "labels-255":
        values = values * 255
    elif op == "labels-negative":
        values = values.astype(np.int16) * -1
    elif op == "float-half":
        values = values.astype(np.float32) * 0.5
    elif op == "float-nan":
        values = values.astype(np.float32)
        values[0, 0, 0] = np.nan
    elif op == "all-zero":
        values = np.zeros_like(values)
    elif op == "all-one":
        values = np.ones_like(values)
    elif op == "4d":
        values = np.stack([values, values])
    elif op == "2d":
        values = values[5]
    spacing: tuple[float, ...] = (0.8, 0.8, 2.0)[: values.ndim] if values.ndim <= 3 else (0.8,) * 4
    if op == "4d":
        import SimpleITK as sitk

        sitk.WriteImage(sitk.GetImageFromArray(values), str(path), useCompression=False)
    else:
        _nifti_mask(path, values, spacing)  # type: ignore[arg-type]
    data = bytearray(path.read_bytes())
    patch = {
        "pixdim-0": (80, "<f", 0.0),
        "pixdim-negative": (80, "<f", -0.8),
        "pixdim-nan": (84, "<f", float("nan")),
        "pixdim-inf": (88, "<f", float("inf")),
        "pixdim-huge": (80, "<f", 1e30),
        "dim0-2": (40, "<h", 2),
        "dim0-7": (40, "<h", 7),
        "dim-zero": (42, "<h", 0),
        "datatype-bad": (70, "<h", 2048),
        "quatern-bad": (256, "<f", 5.0),
        "srow-nan": (280, "<f", float("nan")),
        "vox-offset-huge": (108, "<f", 1e9),
    }.get(op)
    if patch is not None:
        offset, fmt, value = patch
        struct.pack_into(fmt, data, offset, value)
        if op == "srow-nan":
            struct.pack_into("<h", data, 254, 1)  # sform_code: use the sform
    if op == "truncate":
        data = data[: len(data) // 2]
    elif op == "empty-file":
        data = bytearray()
    elif op == "garbage-file":
        data = bytearray(random.Random(7).randbytes(700))
    path.write_bytes(bytes(data))


def run_tstage_case(work: Path, op: str) -> Outcome:
    """``breastai tstage MASK --json``: exit 0 with finite, non-negative measurements, or exit
    1 with one line."""
    from typer.testing import CliRunner

    from breastai.cli import app

    path = work / f"mask-{op}.nii"
    make_mask(path, op)
    mutation = Mutation(op, "mask", "all", 0, 0)
    try:
        with time_limit(60):
            result = CliRunner().invoke(app, ["tstage", str(path), "--json"])
    except _Hang:
        return Outcome(0, [mutation], "hang", None, "over 60 s")
    kind, message = classify(result)
    if kind == "ok":
        doc = json.loads(result.stdout)
        numbers = [
            float(v)
            for lesion in doc.get("lesions", [])
            for k, v in lesion.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        if any(not np.isfinite(v) for v in numbers):
            kind, message = "silent", "non-finite measurement"
        elif any(
            float(lesion.get("volume_ml", 0)) < 0 or float(lesion.get("longest_diameter_mm", 0)) < 0
            for lesion in doc.get("lesions", [])
        ):
            kind, message = "silent", "negative measurement"
    path.unlink(missing_ok=True)
    return Outcome(0, [mutation], kind, result.exit_code, message)
