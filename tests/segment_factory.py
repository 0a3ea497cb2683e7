"""Test helpers of the segment pipeline (engineer S): tiny ONNX models built with onnx.helper.

The models follow the agreed ONNX I/O contract (INTERFACES.md) but compute something analytic, so
tests can predict their output exactly:

* breast: ``probability = sigmoid(gain * (image - offset))`` on input ``image`` (B, 1, D, H, W);
* tumor: ``probability = sigmoid(gain * (phases[:, 1] - phases[:, 0]) - bias)`` on inputs
  ``phases`` (B, S, 1, D, H, W) and ``time_mask`` (B, S) (the mask is consumed, times zero).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_breast_onnx(path: Path, *, gain: float = 20.0, offset: float = 0.3) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["B", 1, "D", "H", "W"])
    y = helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["B", 1, "D", "H", "W"])
    inits = [
        numpy_helper.from_array(np.asarray(offset, np.float32), "offset"),
        numpy_helper.from_array(np.asarray(gain, np.float32), "gain"),
    ]
    nodes = [
        helper.make_node("Sub", ["image", "offset"], ["d"]),
        helper.make_node("Mul", ["d", "gain"], ["g"]),
        helper.make_node("Sigmoid", ["g"], ["probability"]),
    ]
    graph = helper.make_graph(nodes, "breast", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_tumor_onnx(path: Path, *, gain: float = 12.0, bias: float = 3.0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    ph = helper.make_tensor_value_info("phases", TensorProto.FLOAT, ["B", "S", 1, "D", "H", "W"])
    tm = helper.make_tensor_value_info("time_mask", TensorProto.FLOAT, ["B", "S"])
    y = helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["B", 1, "D", "H", "W"])
    inits = [
        numpy_helper.from_array(np.asarray([0], np.int64), "i0"),
        numpy_helper.from_array(np.asarray([1], np.int64), "i1"),
        numpy_helper.from_array(np.asarray(gain, np.float32), "gain"),
        numpy_helper.from_array(np.asarray(bias, np.float32), "bias"),
        numpy_helper.from_array(np.asarray(0.0, np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("Gather", ["phases", "i0"], ["p0"], axis=1),  # (B, 1, 1, D, H, W)
        helper.make_node("Gather", ["phases", "i1"], ["p1"], axis=1),
        helper.make_node("Sub", ["p1", "p0"], ["d6"]),
        helper.make_node("Squeeze", ["d6", "i1"], ["d"]),  # (B, 1, D, H, W)
        helper.make_node("Mul", ["d", "gain"], ["g"]),
        helper.make_node("Sub", ["g", "bias"], ["gb"]),
        helper.make_node("ReduceSum", ["time_mask"], ["tsum"], keepdims=0),
        helper.make_node("Mul", ["tsum", "zero"], ["t0"]),
        helper.make_node("Add", ["gb", "t0"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["probability"]),
    ]
    graph = helper.make_graph(nodes, "tumor", [ph, tm], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ------------------------------------------------------------------------------------------------
# A tiny classic MR DICOM study with known geometry (pydicom only), and the Study it must give.
# ------------------------------------------------------------------------------------------------

ORIENTATIONS = {
    # (row direction, column direction) in LPS; the slice normal is row x column
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "oblique": (
        (0.9553364891, 0.0, -0.2955202067),
        (0.0873322, 0.9553364891, 0.2823212),
    ),
}


def synthetic_phases(shape: tuple[int, int, int] = (12, 28, 36), n_phases: int = 3) -> dict:
    """Analytic DCE-like volumes: two 'breasts', an enhancing lesion in one, a 'heart' outside.

    Values (P0 -> P1..): air 0; breast 500 -> 500; lesion 200 -> 1500; heart 100 -> 1500.
    The tiny test models then find the breasts (P0 bright) and the lesion and heart (P1 - P0).
    """
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    zc = (shape[0] - 1) / 2
    nz, ny, nx = shape
    left = ((z - zc) / (nz * 0.45)) ** 2 + ((y - ny * 0.55) / (ny * 0.4)) ** 2 + (
        (x - nx * 0.27) / (nx * 0.22)
    ) ** 2 <= 1
    right = ((z - zc) / (nz * 0.45)) ** 2 + ((y - ny * 0.55) / (ny * 0.4)) ** 2 + (
        (x - nx * 0.73) / (nx * 0.22)
    ) ** 2 <= 1
    lesion = np.zeros(shape, bool)
    lesion[
        int(nz * 0.3) : int(nz * 0.7),
        int(ny * 0.45) : int(ny * 0.7),
        int(nx * 0.2) : int(nx * 0.34),
    ] = True
    lesion &= left
    heart = np.zeros(shape, bool)
    heart[int(nz * 0.3) : int(nz * 0.7), 1:4, int(nx * 0.45) : int(nx * 0.55)] = True
    breast = left | right
    phases = []
    for k in range(n_phases):
        a = np.zeros(shape, np.float32)
        a[breast] = 500.0
        a[lesion] = 200.0 if k == 0 else 1500.0
        a[heart] = 100.0 if k == 0 else 1500.0
        phases.append(a)
    return {"phases": phases, "breast": breast, "lesion": lesion, "heart": heart}


def write_classic_study(
    out_dir: Path,
    *,
    shape: tuple[int, int, int] = (12, 28, 36),
    spacing_zyx: tuple[float, float, float] = (2.0, 0.9, 0.9),
    orientation: str = "axial",
    n_phases: int = 3,
    one_series: bool = False,
    drop: tuple[str, ...] = (),
    origin: tuple[float, float, float] = (-16.0, -12.0, 5.0),
) -> dict:
    """Write MR Image Storage files (one file per slice and phase) with correct geometry.

    Returns a dict with ``files`` (per phase, sorted along the normal), ``uids`` (SOP UIDs per
    phase), ``phases`` (float32 arrays), ``direction`` (3x3, columns x, y, z), ``origin``,
    ``spacing_zyx``, ``study_uid``, ``series_uids`` and the truth masks.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    truth = synthetic_phases(shape, n_phases)
    row, col = (np.asarray(v, float) for v in ORIENTATIONS[orientation])
    row /= np.linalg.norm(row)
    col -= row * (row @ col)
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    o = np.asarray(origin, float)
    study_uid, for_uid = generate_uid(), generate_uid()
    series_uids = (
        [generate_uid()] * n_phases if one_series else [generate_uid() for _ in range(n_phases)]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[list[Path]] = []
    uids: list[list[str]] = []
    for k, arr in enumerate(truth["phases"]):
        pf, pu = [], []
        for s in range(shape[0]):
            ds = pydicom.Dataset()
            sop = generate_uid()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MRImageStorage
            meta.MediaStorageSOPInstanceUID = sop
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            ds.SOPClassUID = MRImageStorage
            ds.SOPInstanceUID = sop
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uids[k]
            ds.FrameOfReferenceUID = for_uid
            ds.Modality = "MR"
            ds.PatientName = "Phantom^Test"
            ds.PatientID = "PHANTOM-1"
            ds.PatientBirthDate = "19700101"
            ds.PatientSex = "F"
            ds.StudyDate = "20260101"
            ds.StudyTime = "120000"
            ds.SeriesDate = "20260101"
            ds.AccessionNumber = "A1"
            ds.StudyID = "1"
            ds.ReferringPhysicianName = ""
            ds.Manufacturer = "breastai-tests"
            ds.SeriesNumber = 100 if one_series else 100 + k
            ds.SeriesDescription = "ax dyn" if orientation == "axial" else f"{orientation} dyn"
            ds.InstanceNumber = k * shape[0] + s + 1
            ds.AcquisitionNumber = k + 1
            ds.TemporalPositionIdentifier = k + 1
            ds.NumberOfTemporalPositions = n_phases
            ds.AcquisitionTime = f"12{k:02d}00"  # phase k starts k minutes after 12:00
            ds.ContentTime = ds.AcquisitionTime
            ds.SeriesTime = ds.AcquisitionTime
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = "SP"
            ds.MRAcquisitionType = "3D"
            ds.RepetitionTime = 4.5
            ds.EchoTime = 2.0
            ds.FlipAngle = 12
            ds.ImageOrientationPatient = [float(v) for v in (*row, *col)]
            ipp = o + s * spacing_zyx[0] * normal
            ds.ImagePositionPatient = [round(float(v), 6) for v in ipp]
            ds.PixelSpacing = [spacing_zyx[1], spacing_zyx[2]]
            ds.SliceThickness = spacing_zyx[0]
            ds.Rows, ds.Columns = shape[1], shape[2]
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 0
            ds.PixelData = arr[s].astype(np.uint16).tobytes()
            for name in drop:
                if name in ds:
                    delattr(ds, name)
            path = out_dir / f"p{k}_s{s:03d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            pf.append(path)
            pu.append(sop)
        files.append(pf)
        uids.append(pu)
    direction = np.stack([row, col, normal], axis=1)
    return {
        "files": files,
        "uids": uids,
        "phases": truth["phases"],
        "breast": truth["breast"],
        "lesion": truth["lesion"],
        "heart": truth["heart"],
        "direction": direction,
        "origin": o,
        "spacing_zyx": spacing_zyx,
        "study_uid": study_uid,
        "series_uids": series_uids,
        "times": [60.0 * k for k in range(n_phases)],
    }


def image_from_array(arr: np.ndarray, info: dict):  # -> sitk.Image
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr)
    sz, sy, sx = info["spacing_zyx"]
    img.SetSpacing((sx, sy, sz))
    img.SetOrigin(tuple(float(v) for v in info["origin"]))
    img.SetDirection(tuple(float(v) for v in np.asarray(info["direction"]).ravel()))
    return img


def study_from_info(info: dict, source: Path):  # -> breastai.study.Study
    """The Study that a correct reader returns for :func:`write_classic_study` output."""
    from breastai.study import Phase, Study

    phases = [
        Phase(
            index=k,
            image=image_from_array(arr, info),
            time_s=info["times"][k],
            series_uid=info["series_uids"][k],
            instance_uids=tuple(info["uids"][k]),
            source_files=tuple(info["files"][k]),
        )
        for k, arr in enumerate(info["phases"])
    ]
    return Study(
        phases=phases, source=source, kind="dicom", study_uid=info["study_uid"], name=source.name
    )


def make_model_pair(
    folder: Path,
    *,
    patch_zyx: tuple[int, int, int] = (8, 16, 16),
    stride_zyx: tuple[int, int, int] = (4, 8, 8),
    spacing_zyx: tuple[float, float, float] = (2.0, 1.0, 1.0),
    blending: str = "mean",
) -> dict[str, Path]:
    """Tiny breast + tumor ONNX models with sidecar model cards (NAME.toml) beside them."""
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for task, maker in (("breast", make_breast_onnx), ("tumor", make_tumor_onnx)):
        path = maker(folder / f"tiny-{task}.onnx")
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        norm = "p1p99-minmax" if task == "breast" else "seed"
        (folder / f"tiny-{task}.toml").write_text(
            f"""[models.tiny-{task}]
task = "{task}"
filename = "tiny-{task}.onnx"
sha256 = "{sha}"
demo = true
architecture = "analytic-test-graph"
patch_zyx = {list(patch_zyx)}
stride_zyx = {list(stride_zyx)}
spacing_zyx = {list(spacing_zyx)}
phase_slots = 6
normalisation = "{norm}"
blending = "{blending}"
threshold = 0.5
"""
        )
        out[task] = path
    return out


def cli_model_args(models: dict, weights_file: Path) -> list[str]:
    """``segment`` options that run the pair from :func:`make_model_pair` on the CPU, with a
    private weights file (so no user registry is read)."""
    return [
        "--device", "cpu", "--weights", str(models["tumor"]),
        "--breast-weights", str(models["breast"]), "--weights-file", str(weights_file),
    ]  # fmt: skip
