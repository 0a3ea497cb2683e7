"""DICOM-SEG writer and readers (highdicom): breast and tumor masks on the reference phase's grid.

The one DICOM-SEG reader module: :func:`read_seg` (segments on a reference grid) and
:func:`read_seg_labels` (one label image on the SEG's own grid) open the file the same way.

Follows docs/dicom-rules.md §3:

* BINARY segmentation, uncompressed Explicit VR Little Endian (widest viewer support).
* Segment 1 "Breast": category Anatomical Structure (SCT 91723000), type Breast (SCT 76752008).
  Segment 2 "Tumor": category Morphologically Abnormal Structure (SCT 49755003), type Neoplasm
  (SCT 108369006), anatomic region Breast. Each segment's AlgorithmIdentificationSequence names
  the weights (``breastai <weights name>``) with their sha256, the demo flag and the segmented
  phase in its algorithm parameters.
* ``source_images`` are the reference phase's (index 1) instances only (one phase of one series:
  no duplicate positions); every other phase's instances are ``further_source_images``.
* Missing Type-2 attributes that highdicom reads by attribute access are patched onto deep copies
  of the source headers (UIDs unchanged; the files are never modified).
* When the mask frames align one-to-one with the source slices, a numpy stack is passed (the
  DerivationImageSequence then names exactly the source frame of every SEG frame). Otherwise (an
  enhanced multi-frame source, or slices that do not line up) a ``highdicom.Volume`` is passed.
* SeriesDescription and ContentDescription carry the research-use notice.
"""

# SimpleITK's bindings are untyped (no stubs); calling them is fine here.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from breastai import RESEARCH_NOTICE, __version__
from breastai.errors import OutputExistsError, ParameterError, UnsupportedInputError
from breastai.geometry import on_lattice, same_grid
from breastai.io.atomic import atomic_file
from breastai.study import Study

__all__ = [
    "SEGMENT_LABELS",
    "TYPE2_DEFAULTS",
    "read_seg",
    "read_seg_labels",
    "write_seg",
]

log = logging.getLogger(__name__)

#: Segment number -> label, in the order written.
SEGMENT_LABELS = {1: "Breast", 2: "Tumor"}

#: Attributes highdicom 0.28 reads by attribute access (AttributeError when absent) and that may
#: be empty (Type 2): patched as empty values when a source header lacks them.
TYPE2_DEFAULTS: dict[str, str] = {
    "AccessionNumber": "",
    "PatientBirthDate": "",
    "StudyID": "",
    "StudyTime": "",
    "StudyDate": "",
    "ReferringPhysicianName": "",
    "PatientName": "",
    "PatientID": "",
    "PatientSex": "",
}

_POSITION_TOL_MM = 0.01


def _read_headers(files: Sequence[Path]) -> list[Any]:
    import pydicom

    out = []
    seen: set[str] = set()
    for f in files:
        key = str(Path(f).resolve())
        if key in seen:
            continue  # an enhanced multi-frame file serves many slices
        seen.add(key)
        out.append(pydicom.dcmread(f, stop_before_pixels=True))
    return out


def _missing(ds: Any) -> list[str]:
    names = [n for n in TYPE2_DEFAULTS if n not in ds]
    if "SharedFunctionalGroupsSequence" not in ds:  # classic image: geometry at the top level
        names += [n for n in ("SliceThickness", "PixelSpacing") if n not in ds]
    return names


def _patch(ds: Any, image: sitk.Image) -> Any:
    """The source header, or a copy with the missing Type-2 (and geometry) attributes filled.

    The copy is a new Dataset holding the same element objects (only missing elements are
    added to it, so the original header and the file are never changed); a deep copy of every
    header cost ~1.7 s for a 6 x 96-slice study.
    """
    import pydicom

    missing = _missing(ds)
    if not missing:
        return ds
    out = pydicom.Dataset()
    out.update(ds)
    if hasattr(ds, "file_meta"):
        out.file_meta = ds.file_meta
    sx, sy, sz = image.GetSpacing()
    for name in missing:
        if name == "SliceThickness":
            out.SliceThickness = round(float(sz), 6)
        elif name == "PixelSpacing":
            out.PixelSpacing = [round(float(sy), 6), round(float(sx), 6)]
        else:
            setattr(out, name, TYPE2_DEFAULTS[name])
    return out


def _aligned(headers: Sequence[Any], image: sitk.Image) -> bool:
    """True when classic source slices line up 1:1 with the image's slices (array axis 0)."""
    nx, ny, nz = image.GetSize()
    if len(headers) != nz or any("ImagePositionPatient" not in ds for ds in headers):
        return False
    if any(int(ds.Rows) != ny or int(ds.Columns) != nx for ds in headers):
        return False
    for k, ds in enumerate(headers):
        want = np.asarray(image.TransformIndexToPhysicalPoint((0, 0, k)), dtype=np.float64)
        got = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
        if np.abs(want - got).max() > _POSITION_TOL_MM:
            return False
    return True


def _algorithm(task: str, weights: Mapping[str, Any], phase_label: str) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    name = str(weights.get("name", f"{task} model"))
    params = {
        "task": task,
        "weights": name,
        "sha256": str(weights.get("sha256", "")),
        "demo": "true" if weights.get("demo") else "false",
        "phase": phase_label,
    }
    return hd.AlgorithmIdentificationSequence(
        name=f"breastai {name}"[:64],
        family=codes.cid7162.ArtificialIntelligence,
        version=__version__,
        source="breastai",
        parameters=params,
    )


def _volume(image: sitk.Image, array: np.ndarray, **kwargs: Any) -> Any:
    """A highdicom Volume whose array axes are this module's (z, y, x) order of ``image``."""
    import highdicom as hd

    d = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    sx, sy, sz = image.GetSpacing()
    return hd.Volume.from_components(
        array,
        spacing=(sz, sy, sx),
        coordinate_system="PATIENT",
        position=tuple(float(v) for v in image.GetOrigin()),
        # array axis 0 = image z (direction column 2), ..., axis 2 = image x; row-major flat
        direction=[float(v) for v in d[:, ::-1].ravel()],
        **kwargs,
    )


def write_seg(
    path: Path,
    study: Study,
    *,
    breast: sitk.Image,
    tumor: sitk.Image,
    weights: Mapping[str, Mapping[str, Any]],
    series_number: int = 9901,
    force: bool = False,
) -> Path:
    """Write a BINARY DICOM-SEG with the breast and tumor masks of a DICOM study.

    Parameters
    ----------
    path:
        Output ``.dcm`` file (written atomically: temp file beside it, then rename).
    study:
        The DICOM study the masks were computed from; the masks lie on the grid of
        ``study.reference`` (the first post-contrast phase).
    breast, tumor:
        uint8 0/1 masks on the reference phase's grid.
    weights:
        ``{"breast": {"name", "sha256", "demo"}, "tumor": {...}}``.
    series_number:
        SeriesNumber of the SEG series.
    force:
        Replace an existing file.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    UnsupportedInputError
        The study is not DICOM (NIfTI input gets no DICOM-SEG).
    ParameterError
        A mask is not on the reference grid.
    OutputExistsError, OutputError
        The file exists (without ``force``) or cannot be written.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{str(path)!r} already exists; pass --force to replace it.")
    ref = study.reference
    if study.kind != "dicom" or not ref.source_files:
        raise UnsupportedInputError(
            "A DICOM-SEG needs DICOM input; this study was read from "
            f"{study.kind} files, so only NIfTI masks are written."
        )
    grid = ref.image
    for name, m in (("breast", breast), ("tumor", tumor)):
        if not same_grid(m, grid):
            raise ParameterError(
                f"The {name} mask is not on the reference phase's grid "
                f"(size {m.GetSize()} vs {grid.GetSize()}); resample it first."
            )
    phase_label = f"phase {ref.index}" + (" (first post-contrast)" if ref.index == 1 else "")
    files = list(ref.source_files)
    # split bilateral kept as stacks: the masks lie on ref.image (the first stack, whose slices
    # are ref.source_files); the other stack's files are further sources
    other_stack = [f for sp in ref.stack_phases[1:] for f in sp.source_files]
    source = _read_headers(files)
    source_uids = {str(ds.SOPInstanceUID) for ds in source}
    further: list[Any] = [
        ds for ds in _read_headers(other_stack) if str(ds.SOPInstanceUID) not in source_uids
    ]
    for ph in study.phases:
        if ph.index == ref.index:
            continue
        further.extend(
            ds for ds in _read_headers(ph.source_files) if str(ds.SOPInstanceUID) not in source_uids
        )
    patched = sorted({n for ds in [*source, *further] for n in _missing(ds)})
    if patched:
        log.info("DICOM-SEG: patched missing source attributes %s", ", ".join(patched))
    source = [_patch(ds, grid) for ds in source]
    further = [_patch(ds, grid) for ds in further]

    b = sitk.GetArrayFromImage(breast) > 0
    t = sitk.GetArrayFromImage(tumor) > 0
    stack = np.stack([b, t], axis=-1).astype(np.uint8)  # (z, y, x, segments)
    # (number, task, category, type, anatomic regions) of the two segments (docs/dicom-rules.md §3)
    segments = (
        (1, "breast", codes.SCT.AnatomicalStructure, codes.SCT.Breast, None),
        (
            2,
            "tumor",
            codes.SCT.MorphologicallyAbnormalStructure,
            codes.SCT.Neoplasm,
            [codes.SCT.Breast],
        ),
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=SEGMENT_LABELS[number],
            segmented_property_category=category,
            segmented_property_type=prop_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=_algorithm(task, weights.get(task, {}), phase_label),
            anatomic_regions=regions,
        )
        for number, task, category, prop_type, regions in segments
    ]
    classic = len(source) == len(files) and not ref.frame_numbers
    pixel_array: Any
    if classic and _aligned(source, grid):
        pixel_array = stack
    else:
        if classic:
            # sort the sources along the slice normal as highdicom expects for a Volume
            log.info("DICOM-SEG: source slices do not align 1:1 with the mask; using a Volume")
        pixel_array = _volume(
            grid,
            stack,
            frame_of_reference_uid=str(source[0].FrameOfReferenceUID),
            channels={"SegmentNumber": [1, 2]},
        )
    demo = any(bool(w.get("demo")) for w in weights.values())
    # SeriesDescription and ContentDescription are LO (64 characters): name + notice fit.
    description = f"breastai{' DEMO' if demo else ''}: {RESEARCH_NOTICE}"
    seg = hd.seg.Segmentation(
        source_images=source,
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="breastai",
        manufacturer_model_name="breastai",
        software_versions=__version__,
        device_serial_number="0",
        series_description=description[:64],
        content_description=description[:64],
        content_label="BREASTAI",
        further_source_images=further or None,
        omit_empty_frames=bool(stack.any()),
    )
    # The longer statement (weights, phase) goes into ImageComments (LT).
    names = ", ".join(f"{t}: {w.get('name')} sha256 {w.get('sha256')}" for t, w in weights.items())
    seg.ImageComments = f"{RESEARCH_NOTICE} Segmented phase: {phase_label}. Weights: {names}" + (
        " (DEMO weights trained on synthetic phantoms)." if demo else "."
    )
    _save_atomic(seg, path)
    return path


def _save_atomic(ds: Any, path: Path) -> None:
    with atomic_file(path, suffix=".dcm.tmp") as tmp:
        ds.save_as(tmp)


def read_seg(path: Path, reference: sitk.Image) -> dict[str, sitk.Image]:
    """Read a DICOM-SEG back onto a reference grid (validation and evaluation).

    Parameters
    ----------
    path:
        The SEG file.
    reference:
        The grid to express the segments on (e.g. the reference phase); the SEG must lie on it
        up to axis permutations and flips (no interpolation is done).

    Returns
    -------
    dict
        Segment label -> uint8 0/1 ``SimpleITK.Image`` on ``reference``'s grid.

    Raises
    ------
    UnsupportedInputError
        Not a DICOM-SEG, or a segment that does not lie on ``reference``'s grid.
    """
    seg = _segread(path)
    out: dict[str, sitk.Image] = {}
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        vol = seg.get_volume(segment_numbers=[number], combine_segments=True, relabel=True)
        if vol is None:  # no frame of this segment stored
            arr = np.zeros(reference.GetSize()[::-1], dtype=np.uint8)
        else:
            placed = on_lattice(_volume_image(vol, np.uint8, path), reference)
            if placed is None:
                raise UnsupportedInputError(
                    f"{path}: the DICOM-SEG does not lie on the reference grid (size "
                    f"{reference.GetSize()}, spacing, orientation) or extends outside it; read "
                    "it with breastai.io.read_image and resample it."
                )
            arr = (placed > 0).astype(np.uint8)
        img = sitk.GetImageFromArray(arr)
        img.CopyInformation(reference)
        out[str(item.SegmentLabel)] = img
    return out


def _volume_image(volume: Any, dtype: type[np.integer[Any]], path: Path) -> sitk.Image:
    """The one geometry path of the SEG readers: a highdicom ``Volume`` (the SEG frames stacked
    by their plane positions, with orientation and spacing) as a SimpleITK image in LPS.

    Slices are ordered along row x column (the DICOM reader's convention), so a SEG written on a
    study's grid reads back onto that same grid.
    """
    array = np.asarray(volume.array)
    if array.ndim != 3:
        raise UnsupportedInputError(f"{path}: the DICOM-SEG volume is not 3-D ({array.shape}).")
    affine = np.asarray(volume.affine, dtype=float)  # (i, j, k) array index -> LPS
    columns = affine[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    direction = columns[:, ::-1] / spacing[::-1]  # sitk x = k, y = j, z = i
    origin = affine[:3, 3].copy()
    if float(np.dot(direction[:, 2], np.cross(direction[:, 0], direction[:, 1]))) < 0:
        # slices stored against the row x column normal: flip so z = row x col, as the reader does
        origin = origin + direction[:, 2] * spacing[0] * (array.shape[0] - 1)
        direction[:, 2] = -direction[:, 2]
        array = array[::-1]
    image = sitk.GetImageFromArray(
        np.ascontiguousarray(array.astype(dtype))
    )  # (i, j, k) as (z, y, x)
    image.SetSpacing(tuple(float(v) for v in spacing[::-1]))
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    image.SetOrigin(tuple(float(v) for v in origin))
    return image


def _segread(path: Path) -> Any:
    """The highdicom Segmentation of ``path``; UnsupportedInputError when it is not one."""
    import highdicom as hd

    try:
        return hd.seg.segread(str(path))
    except Exception as exc:
        raise UnsupportedInputError(
            f"{path} is DICOM but not a readable DICOM-SEG ({type(exc).__name__}: {exc})."
        ) from None


def read_seg_labels(path: Path) -> sitk.Image:
    """Read a DICOM-SEG as one label image on its own grid (``breastai.io.read_image``).

    Returns
    -------
    SimpleITK.Image
        uint16 (uint32 beyond 65535 segments) label image in LPS whose value k marks segment k
        (overlapping segments: the highest number wins); slices ordered along row x column.

    Raises
    ------
    UnsupportedInputError
        Not a DICOM-SEG, no frames, or frames that do not form one regular 3-D volume.
    """
    seg = _segread(path)
    numbers = list(seg.segment_numbers)
    try:
        volume = seg.get_volume(combine_segments=True, skip_overlap_checks=True)
    except Exception as exc:
        raise UnsupportedInputError(
            f"{path}: the DICOM-SEG frames do not form one regular volume ({exc})."
        ) from None
    if volume is None:
        raise UnsupportedInputError(f"{path}: the DICOM-SEG holds no frames.")
    dtype = np.uint16 if (not numbers or max(numbers) < 65536) else np.uint32
    return _volume_image(volume, dtype, path)
