"""JPEG Lossless SV1 (1.2.840.10008.1.2.4.70), the usual PACS export syntax, decodes bit-exactly.

pydicom cannot encode this syntax, so the files are recompressed with GDCM (python-gdcm, a runtime
dependency); the truth is the factory's uncompressed arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import make_study

from breastai.io import load_study

JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"


def _recompress_jpeg_lossless(path: Path) -> None:
    gdcm = pytest.importorskip("gdcm", reason="python-gdcm is needed to encode JPEG Lossless")
    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read(), f"GDCM could not read {path}"
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    assert change.Change(), "GDCM could not encode JPEG Lossless SV1"
    writer = gdcm.ImageWriter()
    out = path.with_suffix(".jpeg.dcm")
    writer.SetFileName(str(out))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    out.replace(path)


def test_jpeg_lossless_sv1_decodes_exactly(tmp_path: Path) -> None:
    truth = make_study(tmp_path, n_phases=2, shape_zyx=(4, 32, 32))
    for files in truth.files:
        for path in files:
            _recompress_jpeg_lossless(path)
    assert pydicom.dcmread(truth.files[0][0]).file_meta.TransferSyntaxUID == JPEG_LOSSLESS_SV1
    study = load_study(tmp_path)
    arrays = np.stack([sitk.GetArrayFromImage(p.image) for p in study.phases])
    np.testing.assert_allclose(arrays, truth.arrays, atol=1e-3)
    assert [p.time_s for p in study.phases] == pytest.approx(truth.times_s, abs=1e-3)
