"""The bad-input catalogue: every hand-made bad study of issue 15, its exit code and message.

Each case builds a small synthetic study with one defect, runs the CLI in-process and checks:
the exit code, exactly one stderr line when it fails, no traceback, no raw control characters,
and a fragment of the message (or, for exit 0, the volume). The observed results make the table
docs/bad-input.md: ``BREASTAI_UPDATE_DOCS=1 python -m pytest tests/test_bad_input.py``
regenerates it; otherwise the last test checks that the table lists every case.
These cases are also the regression tests of the bugs the issue lists.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from dicom_factory import make_study, rewrite
from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag
from typer.testing import CliRunner

from breastai.cli import app

runner = CliRunner()
DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"
OBSERVED: dict[str, tuple[str, int, str]] = {}
SHAPE = (6, 10, 12)


@pytest.fixture(autouse=True)
def _lenient_writing() -> Any:
    """Bad values must be writable here (the suite's conftest raises on invalid values)."""
    old = pydicom_config.settings.writing_validation_mode
    pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE
    yield
    pydicom_config.settings.writing_validation_mode = old


def raw(ds: pydicom.Dataset, keyword: str, value: bytes, vr: str | None = None) -> None:
    """Store ``value`` as the raw bytes of ``keyword`` (garbage that pydicom would not write)."""
    found = tag_for_keyword(keyword)
    assert found is not None
    tag = BaseTag(found)
    if len(value) % 2:
        value += b" "
    ds[tag] = RawDataElement(  # type: ignore[assignment]
        tag, vr or dictionary_VR(tag), len(value), value, 0, False, True, True, False
    )


def study(
    root: Path, per_file: Callable[[pydicom.Dataset, int, int], None] | None = None, **kw: Any
) -> Path:
    kw.setdefault("shape_zyx", SHAPE)
    make_study(root, per_file=per_file, **kw)
    return root


def every(keyword: str, value: Any) -> Callable[[pydicom.Dataset, int, int], None]:
    return lambda ds, k, z: setattr(ds, keyword, value)


def only(k0: int, z0: int | None, fn: Callable[[pydicom.Dataset], None]) -> Callable[..., None]:
    def apply(ds: pydicom.Dataset, k: int, z: int) -> None:
        if k == k0 and (z0 is None or z == z0):
            fn(ds)

    return apply


def philips_600_601(tmp: Path) -> Path:
    truth = make_study(
        tmp / "dyn",
        shape_zyx=SHAPE,
        manufacturer="Philips Medical Systems",
        series_numbers=[600] * 3,
    )
    make_study(
        tmp / "sub",
        shape_zyx=SHAPE,
        tag="sub",
        manufacturer="Philips Medical Systems",
        series_numbers=[601] * 3,
        study_uid=truth.study_uid,
        per_file=every("ImageType", ["DERIVED", "PRIMARY", "SUBTRACTION"]),
    )
    return tmp


def two_studies(tmp: Path) -> Path:
    make_study(tmp / "a", shape_zyx=SHAPE, tag="a", patient_id="DISTINCTIVE-PID-1")
    make_study(tmp / "b", shape_zyx=SHAPE, tag="b", patient_id="DISTINCTIVE-PID-2")
    return tmp


def damaged_last_phase(tmp: Path) -> Path:
    truth = make_study(tmp, shape_zyx=SHAPE)
    path = truth.files[2][3]
    path.write_bytes(path.read_bytes()[:300])  # header cut off: unparseable
    return tmp


def truncated_pixels(tmp: Path) -> Path:
    truth = make_study(tmp, shape_zyx=SHAPE)
    path = truth.files[1][2]
    path.write_bytes(path.read_bytes()[:-40])
    return tmp


def missing_slice(tmp: Path) -> Path:
    truth = make_study(tmp, shape_zyx=SHAPE)
    for phase in truth.files:
        phase[2].unlink()
    return tmp


def missing_slice_one_phase(tmp: Path) -> Path:
    truth = make_study(tmp, shape_zyx=SHAPE)
    truth.files[1][2].unlink()
    return tmp


def duplicated_file(tmp: Path) -> Path:
    truth = make_study(tmp, shape_zyx=SHAPE)
    src = truth.files[1][2]
    (tmp / "copy_of_slice.dcm").write_bytes(src.read_bytes())
    return tmp


def symlink_loop(tmp: Path) -> Path:
    make_study(tmp / "s", shape_zyx=SHAPE)
    (tmp / "s" / "loop").symlink_to(tmp, target_is_directory=True)
    return tmp / "s"


def non_dicom(tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "notes.txt").write_text("not an image\n")
    (tmp / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    return tmp


def zero_bytes(tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    for k in range(3):
        (tmp / f"IM{k}").write_bytes(b"")
    return tmp


def with_zero_byte_files(tmp: Path) -> Path:
    make_study(tmp, shape_zyx=SHAPE)
    (tmp / "empty.dcm").write_bytes(b"")
    return tmp


def no_transfer_syntax(tmp: Path) -> Path:
    truth = make_study(tmp, shape_zyx=SHAPE)
    path = truth.files[1][2]
    ds = pydicom.dcmread(path)
    del ds.file_meta.TransferSyntaxUID
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_dataset, write_file_meta_info

    with open(path, "wb") as fh:
        fp = DicomFileLike(fh)
        fp.is_little_endian, fp.is_implicit_VR = True, False
        fh.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fp, ds.file_meta, enforce_standard=False)
        write_dataset(fp, ds)
    return tmp


def sheared(tmp: Path) -> Path:
    def tilt(ds: pydicom.Dataset, k: int, z: int) -> None:
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [f"{ipp[0]:.3f}", f"{ipp[1] + 0.5 * z:.3f}", f"{ipp[2]:.3f}"]

    return study(tmp, tilt)


def irregular(tmp: Path) -> Path:
    def shift(ds: pydicom.Dataset, k: int, z: int) -> None:
        if z >= 3:
            ipp = [float(v) for v in ds.ImagePositionPatient]
            ds.ImagePositionPatient = [f"{ipp[0]:.3f}", f"{ipp[1]:.3f}", f"{ipp[2] + 0.7:.3f}"]

    return study(tmp, shift)


def one_phase(tmp: Path) -> Path:
    return study(tmp, n_phases=1)


def mixed_spacing(tmp: Path) -> Path:
    return study(tmp, only(1, 2, lambda ds: setattr(ds, "PixelSpacing", ["0.9", "0.9"])))


def wide_slices(tmp: Path) -> Path:
    return study(tmp, spacing_zyx=(80.0, 0.8, 0.8))


def control_chars(tmp: Path) -> Path:
    def bad(ds: pydicom.Dataset, k: int, z: int) -> None:
        raw(ds, "SeriesDescription", b"ax\x1b[31m dyn\r\nvibrant")
        if k == 1 and z == 2:
            raw(ds, "PixelSpacing", b"0.8\n\x07\\0.8")

    return study(tmp, bad)


def constant_phase(tmp: Path) -> Path:
    vols = np.full((3, *SHAPE), 100.0, dtype=np.float32)
    vols[0] += np.arange(SHAPE[2], dtype=np.float32)
    vols[2] += np.arange(SHAPE[2], dtype=np.float32)
    return study(tmp, volumes=vols)


def pixel_length(tmp: Path) -> Path:
    def rows(ds: pydicom.Dataset, k: int, z: int) -> None:
        ds.Rows = SHAPE[1] - 2

    return study(tmp, rows)


def unknown_sop_class(tmp: Path) -> Path:
    truth = make_study(tmp, shape_zyx=SHAPE)
    rewrite(truth.files[1][3], lambda ds: setattr(ds, "SOPClassUID", "1.2.3.999"))
    return tmp


def unwritable(tmp: Path) -> list[str]:
    """An output folder that cannot be created (its parent is a file): refused before reading
    (the study folder does not even exist)."""
    from segment_factory import cli_model_args, make_model_pair

    models = make_model_pair(tmp / "models")
    (tmp / "file").write_text("not a folder\n")
    return [
        "segment", str(tmp / "no-study"), "-o", str(tmp / "file" / "out"),
        *cli_model_args(models, tmp / "w.toml"),
    ]  # fmt: skip


# name, what it is, builder -> study folder (or full argv), expected exit, message fragment
CASES: list[tuple[str, str, Callable[[Path], Any], int, str]] = [
    ("empty-folder", "empty folder", lambda t: (t.mkdir(), t)[1], 1, "is empty"),
    ("non-dicom", "only non-DICOM files", non_dicom, 1, "No DICOM images"),
    ("zero-byte-only", "only 0-byte files", zero_bytes, 1, "No DICOM images"),
    ("zero-byte-extra", "a 0-byte file beside a good study", with_zero_byte_files, 0, ""),
    ("missing-path", "folder does not exist", lambda t: t / "nope", 1, "does not exist"),
    (
        "two-studies",
        "two studies in one folder (no PatientID in the message)",
        two_studies,
        1,
        "holds 2 studies",
    ),
    (
        "mixed-patients",
        "one file with another PatientID",
        lambda t: study(t, only(1, 2, lambda ds: setattr(ds, "PatientID", "OTHER"))),
        1,
        "mixes 2 patient IDs",
    ),
    ("missing-slice", "one slice missing in every phase", missing_slice, 1, "missing"),
    (
        "missing-slice-one-phase",
        "one slice missing in one phase",
        missing_slice_one_phase,
        1,
        "lacks 1 of 6 slices",
    ),
    ("duplicate-file", "a file duplicated under another name", duplicated_file, 0, ""),
    ("symlink-loop", "a symlink loop inside the folder", symlink_loop, 0, ""),
    ("truncated-pixels", "truncated pixel data in one file", truncated_pixels, 1, "truncated"),
    (
        "damaged-last-phase",
        "one unparseable file in the last phase",
        damaged_last_phase,
        1,
        "skipped as damaged",
    ),
    ("one-phase", "a single phase", one_phase, 1, "single time point"),
    ("gantry-tilt", "sheared stack (gantry tilt)", sheared, 1, "sheared"),
    ("irregular-spacing", "irregular slice spacing", irregular, 1, "not uniform"),
    (
        "mixed-pixel-spacing",
        "one slice with another PixelSpacing",
        mixed_spacing,
        1,
        "differ in matrix size, pixel spacing",
    ),
    (
        "pixel-spacing-0",
        "PixelSpacing 0\\0 in every file",
        lambda t: study(t, every("PixelSpacing", ["0", "0"])),
        1,
        "PixelSpacing (0028,0030) is [0, 0]",
    ),
    (
        "pixel-spacing-inf",
        "PixelSpacing inf in every file",
        lambda t: study(t, lambda ds, k, z: raw(ds, "PixelSpacing", b"inf\\inf")),
        1,
        "no usable image geometry (PixelSpacing",
    ),
    (
        "pixel-spacing-1e308",
        "PixelSpacing 1e308",
        lambda t: study(t, every("PixelSpacing", ["1e308", "1e308"])),
        1,
        "PixelSpacing (0028,0030) is [1e+308",
    ),
    (
        "pixel-spacing-1e-30",
        "PixelSpacing 1e-30",
        lambda t: study(t, every("PixelSpacing", ["1e-30", "1e-30"])),
        1,
        "PixelSpacing (0028,0030) is [1e-30",
    ),
    (
        "pixel-spacing-negative",
        "PixelSpacing -0.8",
        lambda t: study(t, every("PixelSpacing", ["-0.8", "-0.8"])),
        1,
        "PixelSpacing (0028,0030)",
    ),
    ("slice-spacing-80mm", "slices 80 mm apart", wide_slices, 1, "slice spacing"),
    (
        "rows-0",
        "Rows 0 in every file",
        lambda t: study(t, every("Rows", 0)),
        1,
        "Rows (0028,0010) is 0",
    ),
    (
        "rows-garbage",
        "garbage bytes in Rows of one file",
        lambda t: study(t, only(1, 1, lambda ds: raw(ds, "Rows", b"x\x01zz", "IS"))),
        1,
        "Rows (0028,0010)",
    ),
    (
        "pixel-length",
        "Rows smaller than the pixel data",
        pixel_length,
        1,
        "PixelData (7FE0,0010) holds",
    ),
    (
        "bits-allocated-8",
        "BitsAllocated 8 in one file of a 16-bit series",
        lambda t: study(t, only(1, 2, lambda ds: setattr(ds, "BitsAllocated", 8))),
        1,
        "BitsAllocated (0028,0100) is 8 in 1 of 18",
    ),
    (
        "bits-stored-20",
        "BitsStored 20 > BitsAllocated 16",
        lambda t: study(t, every("BitsStored", 20)),
        1,
        "BitsStored (0028,0101)",
    ),
    (
        "no-pixel-representation",
        "no PixelRepresentation in one file",
        lambda t: study(t, only(1, 2, lambda ds: delattr(ds, "PixelRepresentation"))),
        1,
        "PixelRepresentation (0028,0103) is missing",
    ),
    (
        "no-photometric",
        "no PhotometricInterpretation",
        lambda t: study(
            t,
            every("PhotometricInterpretation", None)
            if False
            else only(0, None, lambda ds: delattr(ds, "PhotometricInterpretation")),
        ),
        1,
        "PhotometricInterpretation",
    ),
    (
        "no-transfer-syntax",
        "one file without (0002,0010) TransferSyntaxUID",
        no_transfer_syntax,
        1,
        "TransferSyntaxUID (0002,0010) is missing",
    ),
    (
        "slope-nan-phase",
        "RescaleSlope NaN in one phase",
        lambda t: study(t, only(1, None, lambda ds: raw(ds, "RescaleSlope", b"NaN"))),
        1,
        "RescaleSlope (0028,1053) is nan",
    ),
    (
        "slope-0",
        "RescaleSlope 0 in every file",
        lambda t: study(t, every("RescaleSlope", "0")),
        1,
        "RescaleSlope (0028,1053) is 0",
    ),
    (
        "slope-1e16-slice",
        "RescaleSlope 1e16 on one slice",
        lambda t: study(t, only(1, 3, lambda ds: setattr(ds, "RescaleSlope", "1e16"))),
        1,
        "RescaleSlope (0028,1053) is 1e+16",
    ),
    (
        "slope-50x-slice",
        "RescaleSlope 50x the others on one slice",
        lambda t: study(t, only(1, 3, lambda ds: setattr(ds, "RescaleSlope", "50"))),
        1,
        "within 10x",
    ),
    (
        "slope-negative",
        "RescaleSlope -1 in every file (an inverted image)",
        lambda t: study(t, every("RescaleSlope", "-1")),
        1,
        "RescaleSlope (0028,1053) is -1",
    ),
    (
        "slope-2x-slice",
        "RescaleSlope 2x on one slice (flagged, accepted)",
        lambda t: study(t, only(1, 3, lambda ds: setattr(ds, "RescaleSlope", "2"))),
        0,
        "",
    ),
    (
        "intercept-nan-slice",
        "RescaleIntercept NaN on one slice",
        lambda t: study(t, only(1, 3, lambda ds: raw(ds, "RescaleIntercept", b"NaN"))),
        1,
        "RescaleIntercept (0028,1052) is nan",
    ),
    (
        "ipp-inf",
        "ImagePositionPatient inf in one file",
        lambda t: study(t, only(1, 3, lambda ds: raw(ds, "ImagePositionPatient", b"inf\\0\\0"))),
        1,
        "ImagePositionPatient (0020,0032)",
    ),
    (
        "ipp-missing-one",
        "one file of 18 without ImagePositionPatient",
        lambda t: study(t, only(2, 4, lambda ds: delattr(ds, "ImagePositionPatient"))),
        1,
        "s_p02_st0_z004.dcm",
    ),
    (
        "iop-not-orthonormal",
        "ImageOrientationPatient not orthonormal",
        lambda t: study(t, every("ImageOrientationPatient", ["1", "0", "0", "0.5", "0.5", "0"])),
        1,
        "ImageOrientationPatient",
    ),
    (
        "iop-nan-one",
        "ImageOrientationPatient NaN in one file",
        lambda t: study(
            t, only(0, 2, lambda ds: raw(ds, "ImageOrientationPatient", b"NaN\\0\\0\\0\\1\\0"))
        ),
        1,
        "ImageOrientationPatient (0020,0037)",
    ),
    ("constant-phase", "a phase whose voxels are all equal", constant_phase, 1, "is constant"),
    (
        "other-series-uid-slice",
        "one reference-phase slice with another SeriesInstanceUID",
        lambda t: study(t, only(1, 3, lambda ds: setattr(ds, "SeriesInstanceUID", "1.2.3.4.5"))),
        1,
        "SeriesInstanceUID",
    ),
    (
        "unknown-sop-class",
        "one file with an unknown SOPClassUID",
        unknown_sop_class,
        1,
        "SOPClassUID (0008,0016) is '1.2.3.999'",
    ),
    (
        "multi-valued-sop-uid",
        "a multi-valued SOPInstanceUID",
        lambda t: study(t, only(1, 3, lambda ds: raw(ds, "SOPInstanceUID", b"1.2.3\\1.2.4"))),
        1,
        "SOPInstanceUID (0008,0018)",
    ),
    (
        "no-frame-of-reference",
        "no FrameOfReferenceUID",
        lambda t: study(t, only(0, None, lambda ds: delattr(ds, "FrameOfReferenceUID"))),
        1,
        "FrameOfReferenceUID",
    ),
    (
        "control-characters",
        "control characters in SeriesDescription and a value",
        control_chars,
        1,
        "\\x0a",
    ),
    (
        "philips-600-601",
        "Philips dynamic 600 beside derived subtraction 601",
        philips_600_601,
        0,
        "",
    ),
    (
        "dce-series-unknown",
        "--dce-series names no series",
        lambda t: [*_info(study(t)), "--dce-series", "9.9.9"],
        2,
        "is not a series",
    ),
    (
        "unwritable-output",
        "segment into an unwritable folder (checked first)",
        unwritable,
        1,
        "Cannot write into",
    ),
    (
        "train-hidden-heads",
        "train tumor --hidden 100 --heads 12",
        lambda t: [
            "train",
            "tumor",
            "--data",
            str(t),
            "--out",
            str(t / "o"),
            "--hidden",
            "100",
            "--heads",
            "12",
        ],
        2,
        "not divisible by --heads 12",
    ),
]


def _info(path: Path) -> list[str]:
    return ["info", str(path)]


@pytest.mark.parametrize(
    ("name", "what", "build", "code", "fragment"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input(
    tmp_path: Path, name: str, what: str, build: Callable[[Path], Any], code: int, fragment: str
) -> None:
    target = build(tmp_path / "case")
    argv = target if isinstance(target, list) else _info(Path(target))
    result = runner.invoke(app, argv)
    stderr = result.stderr or ""
    lines = [line for line in stderr.splitlines() if line.strip()]
    message = lines[0] if lines else ""
    shown = message.replace(str(tmp_path / "case"), "STUDY")
    OBSERVED[name] = (what, result.exit_code, shown)
    assert "Traceback" not in result.output + stderr
    assert not (result.exception and not isinstance(result.exception, SystemExit)), result.exception
    assert result.exit_code == code, f"{name}: exit {result.exit_code}: {stderr}"
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", stderr), repr(stderr)
    assert "DISTINCTIVE-PID" not in result.output + stderr
    if code:
        assert len(lines) == 1, stderr
        assert fragment in message, message
        assert "internal error" not in message
    if code == 0 and argv[0] == "info":
        from breastai.io import load_study

        loaded = load_study(Path(target))
        assert len(loaded.phases) == 3
        assert loaded.phases[0].image.GetSize() == (SHAPE[2], SHAPE[1], SHAPE[0])
        if name == "slope-2x-slice":
            assert any("rescale varies" in w for w in loaded.decisions.warnings)


def _table() -> str:
    head = [
        "# Bad input: what breastai answers",
        "",
        "Generated by `BREASTAI_UPDATE_DOCS=1 python -m pytest tests/test_bad_input.py` from the",
        "observed exit codes and messages (paths shortened to STUDY). Exit 0: the volume is read",
        "correctly; 1: one line on stderr saying what was expected, what was found, what to do;",
        "2: a usage error. Header fuzzing of the same reader: tests/test_fuzz.py, bench/fuzz.py.",
        "",
        "| # | case | input | exit | message |",
        "|---|---|---|---|---|",
    ]
    rows = []
    for k, (name, *_rest) in enumerate(CASES, start=1):
        what, code, message = OBSERVED.get(name, ("", -1, "(not run)"))
        cell = message.replace("|", "\\|") or "(volume read; no error)"
        rows.append(f"| {k} | {name} | {what.replace('|', '/')} | {code} | {cell} |")
    return "\n".join(head + rows) + "\n"


def test_zz_catalogue_table() -> None:
    """docs/bad-input.md lists every case (regenerated with BREASTAI_UPDATE_DOCS=1)."""
    if len(OBSERVED) < len(CASES) - 1:
        pytest.skip("run the whole module to build the table")
    if os.environ.get("BREASTAI_UPDATE_DOCS") == "1":
        DOC.write_text(_table())
    text = DOC.read_text()
    for name, *_ in CASES:
        assert f"| {name} |" in text, name
