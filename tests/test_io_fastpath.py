"""The reader's fast paths give exactly what the slow, general paths give.

* Header: the lean Part 10 parser (``dicom_index._read_header``) against
  ``pydicom.dcmread(stop_before_pixels=True)`` — every field of every frame record, for classic,
  enhanced (defined and undefined-length sequences), implicit VR, RLE, truncated and
  preamble-less files.
* Pixels: decoding straight into the SimpleITK buffer against building a numpy volume and
  copying it with ``GetImageFromArray``; the end-of-file pixel read refuses files whose last
  element is not the pixel data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import make_study, rewrite
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from breastai.io import dicom_index, dicom_pixels, load_study


def _slow_records(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[dict], str]:
    """read_file_records through pydicom only (the fast parser switched off)."""

    def no_fast(p: Path) -> tuple[None, bool]:
        with open(p, "rb") as fh:
            head = fh.read(132)
        return None, len(head) >= 132 and head[128:132] == b"DICM"

    with monkeypatch.context() as m:
        m.setattr(dicom_index, "_read_header", no_fast)
        status, records, message = dicom_index.read_file_records(path)
    return status, [dataclasses.asdict(r) for r in records], message


def _fast_records(path: Path) -> tuple[str, list[dict], str]:
    status, records, message = dicom_index.read_file_records(path)
    return status, [dataclasses.asdict(r) for r in records], message


def _undefined_lengths(ds: Dataset) -> None:
    """Re-encode every sequence (and item) of the data set with undefined lengths."""

    def mark(d: Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                elem.is_undefined_length = True
                for item in elem.value:
                    item.is_undefined_length_sequence_item = True
                    mark(item)

    mark(ds)


def test_fast_header_equals_pydicom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    classic = make_study(tmp_path / "classic", n_phases=2, orientation="oblique", slopes=[1.0, 2.0])
    enhanced = make_study(tmp_path / "enh", n_phases=2, layout="enhanced", orientation="sagittal")
    undefined = make_study(tmp_path / "undef", n_phases=2, layout="enhanced")
    rewrite(undefined.files[0][0], _undefined_lengths)
    implicit_path = classic.files[1][0]

    ds = pydicom.dcmread(implicit_path)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    pydicom.dcmwrite(implicit_path, ds, implicit_vr=True, enforce_file_format=True)
    rle_path = classic.files[1][1]
    rewrite(rle_path, lambda d: d.compress("1.2.840.10008.1.2.5"))
    big_header = classic.files[1][2]  # a 40 kB private block (like a Siemens CSA header)
    rewrite(
        big_header,
        lambda d: d.private_block(0x0029, "SIEMENS CSA HEADER", create=True).add_new(
            0x10, "OB", bytes(range(256)) * 160
        ),
    )
    raw = classic.files[0][0].read_bytes()
    (tmp_path / "nopreamble.dcm").write_bytes(raw[132:])
    (tmp_path / "cut-header.dcm").write_bytes(raw[:700])
    (tmp_path / "notes.txt").write_text("not DICOM")
    with open(undefined.files[0][0], "rb") as fh:
        assert b"\xfe\xff\xdd\xe0" in fh.read()  # a sequence delimiter: undefined lengths written

    fast_expected = {
        *[p for files in classic.files for p in files],
        enhanced.files[0][0],
        undefined.files[0][0],
    }
    slow_only = {tmp_path / "nopreamble.dcm", tmp_path / "notes.txt"}
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    for path in files:
        assert _fast_records(path) == _slow_records(path, monkeypatch), path.name
        ds_fast, _ = dicom_index._read_header(path)
        if path in fast_expected:
            assert ds_fast is not None, path.name
        if path in slow_only:
            assert ds_fast is None, path.name
    # the fast parser really parsed the implicit-VR and the undefined-length files
    records = dicom_index.read_file_records(undefined.files[0][0])[1]
    assert len(records) == 16 and {r.tp_index for r in records} == {1, 2}
    big, _ = dicom_index._read_header(big_header)
    assert big is not None and len(big.get_item(0x00291010).value) == 40960
    implicit_ds, _ = dicom_index._read_header(implicit_path)
    assert implicit_ds is not None
    assert implicit_ds.get_item(0x00200032).VR is None  # implicit VR: pydicom resolves the VR
    assert dicom_index.read_file_records(implicit_path)[1][0].ipp is not None


def test_writable_view_and_copy_paths_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth = make_study(tmp_path, n_phases=3, shape_zyx=(20, 24, 16), slopes=[1.0, 2.0, 0.5])
    assert dicom_pixels.writable_views()  # the in-place path is what this SimpleITK build takes
    fast = load_study(tmp_path)
    monkeypatch.setattr(dicom_pixels, "_WRITABLE_VIEWS", False)
    slow = load_study(tmp_path)
    for a, b, expected in zip(fast.phases, slow.phases, truth.arrays, strict=True):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(a.image), expected)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(b.image), expected)
        assert a.image.GetOrigin() == b.image.GetOrigin()
        assert a.image.GetDirection() == b.image.GetDirection()
        assert a.image.GetSpacing() == b.image.GetSpacing()


def test_pixels_not_last_element_read_by_pydicom(tmp_path: Path) -> None:
    """Trailing padding after the pixel data: the end-of-file read must not be taken."""
    truth = make_study(tmp_path, n_phases=2, shape_zyx=(4, 8, 8))
    path = truth.files[1][2]
    rewrite(path, lambda d: d.add_new(0xFFFCFFFC, "OB", b"\x00" * 64))
    rec = next(r for r in dicom_index.index_folder(tmp_path).records if r.path == path)
    layout = dicom_pixels.PixelReader._tail_layout(rec)
    assert layout is not None
    assert not dicom_pixels.PixelReader._tail_into(
        rec, bytearray(layout[0] + layout[1]), *layout[:2]
    )
    study = load_study(tmp_path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(study.phases[1].image), truth.arrays[1])
