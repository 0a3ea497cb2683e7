"""Pull a study over DICOMweb, segment it as a folder, and push DICOM-SEG + SR back into it.

Pull (:func:`pull_study`):

1. QIDO-RS lists the study's series;
2. WADO-RS fetches the *metadata* of every image series (DICOM JSON, no pixel data), written as
   header-only Part 10 files into ``FOLDER/<series>/<instance>.dcm``;
3. the reader chooses the DCE acquisition from those headers alone
   (:func:`breastai.io.dicom.select_dce_series`, the same choice as for a folder);
4. WADO-RS fetches the full instances of the chosen series only, replacing their header-only
   files. The other series stay header-only, so the reader sees every series (its exclusions
   compare series with one another) and reads pixels only where it needs them.

Push (:func:`send_results`): STOW-RS of ``seg*.dcm`` and ``report-sr*.dcm`` (and, optionally,
``preview*.png`` as a Secondary Capture) into the source study. Each is a new series; the SEG
references the segmented phase's series and instances, the SR its evidence (the same instances),
the Secondary Capture the same instances as source images.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from breastai import RESEARCH_NOTICE
from breastai.errors import InputError, OutputError, PacsError
from breastai.io.atomic import atomic_file
from breastai.pacs._json2dcm import header_file_bytes
from breastai.pacs.connection import DicomwebServer

__all__ = [
    "PACS_RECORD",
    "RESULT_DESCRIPTION_PREFIX",
    "PacsSegmentResult",
    "PulledStudy",
    "SentObject",
    "existing_results",
    "list_series",
    "pull_study",
    "segment_from_pacs",
    "send_results",
    "write_sr_files",
]

log = logging.getLogger(__name__)

#: The record of a PACS run, written into ``OUT/<study>/``.
PACS_RECORD = "pacs.json"
#: Every series breastai stores starts its SeriesDescription with this.
RESULT_DESCRIPTION_PREFIX = "breastai"
#: Modalities whose series hold no images the reader could use (no metadata fetched).
_NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "PR", "KO", "DOC", "RTSTRUCT", "REG"})

#: Concurrent WADO-RS requests of one pull.
_WORKERS = 4

_SERIES_UID = "0020000E"
_MODALITY = "00080060"
_DESCRIPTION = "0008103E"
_NUMBER = "00200011"
_COUNT = "00201209"


def _value(item: Mapping[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value")
    return values[0] if values else None


@dataclass
class PulledStudy:
    """A study fetched over DICOMweb into a folder the reader can read."""

    study_uid: str
    folder: Path
    dce_series: list[str]
    series: list[dict[str, Any]] = field(default_factory=list)
    existing_results: list[str] = field(default_factory=list)
    n_instances_full: int = 0
    n_instances_headers: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["folder"] = str(self.folder)
        return d


@dataclass
class SentObject:
    """One object stored into the PACS."""

    kind: str  # "SEG" | "SR" | "SC"
    file: str
    series_uid: str
    sop_uid: str
    referenced_series: list[str]


@dataclass
class PacsSegmentResult:
    """What ``segment --from-pacs`` did: the pull, the segmentation, what was sent."""

    study_uid: str
    source_url: str
    segment: Any  # breastai.pipeline.SegmentResult
    pulled: PulledStudy
    sent_to: str | None = None
    sent: list[SentObject] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_uid": self.study_uid,
            "source_url": self.source_url,
            "segment": self.segment.to_dict(),
            "dce_series": self.pulled.dce_series,
            "series": self.pulled.series,
            "sent_to": self.sent_to,
            "sent": [asdict(s) for s in self.sent],
            "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()},
        }


def existing_results(series: Iterable[Mapping[str, Any]]) -> list[str]:
    """SeriesInstanceUIDs of breastai results (SEG/SR/SC series described ``breastai...``)."""
    out = []
    for s in series:
        desc = str(s.get("description") or "")
        if s.get("modality") in ("SEG", "SR", "OT") and desc.startswith(RESULT_DESCRIPTION_PREFIX):
            out.append(str(s["series_uid"]))
    return out


def list_series(server: DicomwebServer, study_uid: str) -> list[dict[str, Any]]:
    """QIDO-RS: every series of a study as ``{series_uid, number, modality, description, n}``.

    Raises
    ------
    InputError
        The server has no such study.
    """
    found = server.search_series(
        study_uid,
        fields=("SeriesDescription", "Modality", "SeriesNumber", "NumberOfSeriesRelatedInstances"),
    )
    if not found:
        raise InputError(
            f"Study {study_uid} is not on the DICOMweb server {server.url} (QIDO-RS found no "
            "series); check the StudyInstanceUID."
        )
    out = []
    for item in found:
        n = _value(item, _COUNT)
        number = _value(item, _NUMBER)
        out.append(
            {
                "series_uid": str(_value(item, _SERIES_UID)),
                "number": int(number) if number is not None else None,
                "modality": str(_value(item, _MODALITY) or ""),
                "description": str(_value(item, _DESCRIPTION) or ""),
                "n_instances": int(n) if n is not None else None,
                "pixels": False,
            }
        )
    out.sort(key=lambda s: (s["number"] is None, s["number"] or 0, s["series_uid"]))
    return out


def _header_dataset(item: dict[str, Any]) -> Any:
    """A pydicom Dataset from DICOM JSON metadata, without the bulk data (pixels, blobs)."""
    import pydicom

    def strip(obj: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for tag, elem in obj.items():
            if not isinstance(elem, dict) or "BulkDataURI" in elem:
                continue  # pixel data and other blobs by reference: not needed for headers
            if elem.get("vr") == "SQ" and elem.get("Value"):
                elem = {**elem, "Value": [strip(v) for v in elem["Value"]]}
            out[tag] = elem
        return out

    return pydicom.Dataset.from_json(strip(item))


def _save(ds: Any, path: Path, *, header_only: bool) -> None:
    """Write one instance as a Part 10 file (header-only files as Explicit VR Little Endian).

    No temporary-and-rename here: the files go into the pull's own new folder.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    ts = None if header_only or meta is None else meta.get("TransferSyntaxUID")
    if ts is None:
        new = FileMetaDataset()
        new.MediaStorageSOPClassUID = ds.SOPClassUID
        new.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        new.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = new
    with _fetched_write(path):
        ds.save_as(path, enforce_file_format=True)


def _write_bytes(path: Path, data: bytes) -> None:
    with _fetched_write(path):
        path.write_bytes(data)


@contextlib.contextmanager
def _fetched_write(path: Path) -> Iterator[None]:
    """An OSError while writing a fetched file becomes the one-line OutputError."""
    try:
        yield
    except OSError as exc:
        raise OutputError(
            f"Cannot write the fetched study into {str(path.parent)!r}: {exc.strerror or exc}; "
            "free space in the temporary folder (TMPDIR)."
        ) from None


def _safe_name(uid: str) -> str:
    return "".join(c for c in uid if c.isdigit() or c == ".") or "x"


def pull_study(
    server: DicomwebServer,
    study_uid: str,
    folder: Path,
    *,
    dce_series: Sequence[str] = (),
    series: list[dict[str, Any]] | None = None,
) -> PulledStudy:
    """Fetch the headers of a study and the pixel data of its DCE series into ``folder``.

    Parameters
    ----------
    server:
        The DICOMweb server.
    study_uid:
        StudyInstanceUID.
    folder:
        An empty or new folder.
    dce_series:
        Override of the reader's choice (SeriesInstanceUIDs or numbers).
    series:
        The study's series from :func:`list_series` (listed again when None).

    Returns
    -------
    PulledStudy

    Raises
    ------
    NoDCESeriesError, AmbiguousStudyError, InputError
        The reader's verdict on the headers (nothing but headers was fetched then).
    PacsError
        The server failed or sent incomplete series.
    """
    from breastai.io.dicom import select_dce_series
    from breastai.io.dicom_index import index_folder

    t0 = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series = series if series is not None else list_series(server, study_uid)
    expected: dict[str, set[str]] = {}
    n_headers = 0
    wanted = [s["series_uid"] for s in series if s["modality"] not in _NON_IMAGE_MODALITIES]
    # the server reads while this thread converts: requests in flight overlap the conversion
    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="wado") as pool:
        futures = {pool.submit(server.series_metadata, study_uid, uid): uid for uid in wanted}
        try:
            for fut in as_completed(futures):
                uid = futures[fut]
                sub = folder / _safe_name(uid)
                sub.mkdir(exist_ok=True)
                expected[uid] = set()
                for item in fut.result():
                    encoded = header_file_bytes(item)
                    if encoded is not None:
                        data, sop, _ = encoded
                        _write_bytes(sub / f"{_safe_name(sop)}.dcm", data)
                    else:  # a character set or value form the fast encoder leaves to pydicom
                        ds = _header_dataset(item)
                        sop = str(ds.get("SOPInstanceUID", ""))
                        if not sop or "SOPClassUID" not in ds:
                            continue
                        _save(ds, sub / f"{_safe_name(sop)}.dcm", header_only=True)
                    expected[uid].add(sop)
                    n_headers += 1
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    t1 = time.perf_counter()
    if not n_headers:
        raise InputError(
            f"Study {study_uid} on {server.url} holds no image series (only "
            f"{', '.join(sorted({s['modality'] or '?' for s in series}))}); expected an MR study."
        )
    index = index_folder(folder)
    chosen = select_dce_series(index, dce_series=dce_series, study_uid=study_uid)
    t2 = time.perf_counter()

    def fetch(uid: str) -> int:
        """Stream one DCE series to disk (in a worker thread); the number of instances."""
        sub = folder / _safe_name(uid)
        got: set[str] = set()
        for ds in server.retrieve_series(study_uid, uid):
            sop = str(ds.SOPInstanceUID)
            _save(ds, sub / f"{_safe_name(sop)}.dcm", header_only=False)
            got.add(sop)
        missing = expected.get(uid, set()) - got
        if missing:
            raise PacsError(
                f"DICOMweb server {server.url} sent {len(got)} of {len(got) + len(missing)} "
                f"instances of series {uid}; try again, or check the server's log."
            )
        return len(got)

    n_full = 0
    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="wado") as pool:
        pixel_futures = [pool.submit(fetch, uid) for uid in chosen]
        try:
            for pfut in as_completed(pixel_futures):
                n_full += pfut.result()
        except BaseException:
            for pf in pixel_futures:
                pf.cancel()
            raise
    for s in series:
        s["pixels"] = s["series_uid"] in chosen
    t3 = time.perf_counter()
    return PulledStudy(
        study_uid=study_uid,
        folder=folder,
        dce_series=chosen,
        series=series,
        existing_results=existing_results(series),
        n_instances_full=n_full,
        n_instances_headers=n_headers - n_full,
        timings_s={"list+headers": t1 - t0, "select": t2 - t1, "pixels": t3 - t2},
    )


# ------------------------------------------------------------------------------------------ SR


def _weights_from_manifest(out_dir: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    models = manifest.get("models") or {}
    return {
        task: {"name": m.get("name"), "sha256": m.get("sha256"), "demo": bool(m.get("demo"))}
        for task, m in models.items()
        if isinstance(m, dict)
    }


def write_sr_files(study: Any, out_dir: Path, *, min_volume_mm3: float = 10.0) -> list[Path]:
    """Write ``report-sr.dcm`` (or ``report-sr_R/_L.dcm`` per split-bilateral stack).

    The lesions are measured again from the written masks (``tumor*.nii.gz``,
    ``breast*.nii.gz``) on the study's reference phase, exactly as ``report.json`` was.

    Parameters
    ----------
    study:
        The DICOM ``Study`` that was segmented.
    out_dir:
        The study's output folder (``OUT/<study>/``).
    min_volume_mm3:
        Smallest lesion kept (the run's setting).

    Returns
    -------
    list of Path
    """
    import SimpleITK as sitk

    from breastai.report import measure_lesions, write_sr

    out_dir = Path(out_dir)
    weights = _weights_from_manifest(out_dir)
    written = []
    if (out_dir / "tumor.nii.gz").exists():
        parts = [("", study, None)]
    else:
        stacks = study.split_stacks()
        parts = [(f"_{s.name.rsplit('_', 1)[-1]}", s, s.name.rsplit("_", 1)[-1]) for s in stacks]
    for k, (suffix, part, side) in enumerate(parts):
        tumor = sitk.ReadImage(str(out_dir / f"tumor{suffix}.nii.gz"))
        breast_file = out_dir / f"breast{suffix}.nii.gz"
        breast = sitk.ReadImage(str(breast_file)) if breast_file.exists() else None
        report = measure_lesions(
            tumor,
            study=part,
            breast_mask=breast,
            min_volume_mm3=min_volume_mm3,
            **({"side": side} if side else {}),
        )
        written.append(
            write_sr(
                report,
                part,
                out_dir / f"report-sr{suffix}.dcm",
                weights=weights,
                series_number=9903 + k,
                force=True,
            )
        )
    return written


# ---------------------------------------------------------------------------------------- push


def _references(ds: Any) -> list[str]:
    """SeriesInstanceUIDs an object references (SEG: ReferencedSeriesSequence; SR: evidence)."""
    out: list[str] = []
    for item in getattr(ds, "ReferencedSeriesSequence", []) or []:
        out.append(str(item.SeriesInstanceUID))
    for study in getattr(ds, "CurrentRequestedProcedureEvidenceSequence", []) or []:
        for item in getattr(study, "ReferencedSeriesSequence", []) or []:
            out.append(str(item.SeriesInstanceUID))
    return list(dict.fromkeys(out))


def _secondary_capture(png: Path, seg: Any, number: int) -> Any:
    """The preview PNG as an RGB Secondary Capture in the SEG's study, sourced like the SEG."""
    import highdicom as hd
    import numpy as np
    from PIL import Image
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB"))
    sc = hd.sc.SCImage(
        pixel_array=rgb,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=seg.StudyInstanceUID,
        series_instance_uid=generate_uid(),
        series_number=number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="breastai",
        patient_id=getattr(seg, "PatientID", None),
        patient_name=getattr(seg, "PatientName", None),
        patient_birth_date=getattr(seg, "PatientBirthDate", None),
        patient_sex=getattr(seg, "PatientSex", None) or None,
        accession_number=getattr(seg, "AccessionNumber", None),
        study_id=getattr(seg, "StudyID", None),
        study_date=getattr(seg, "StudyDate", None) or None,
        study_time=getattr(seg, "StudyTime", None) or None,
        referring_physician_name=getattr(seg, "ReferringPhysicianName", None),
        patient_orientation=("L", "P"),
    )
    sc.SeriesDescription = f"{RESULT_DESCRIPTION_PREFIX} preview: {RESEARCH_NOTICE}"[:64]
    sc.ImageComments = f"{RESEARCH_NOTICE} {getattr(seg, 'ImageComments', '')}"[:10240]
    sources = []
    for ser in getattr(seg, "ReferencedSeriesSequence", []) or []:
        for inst in getattr(ser, "ReferencedInstanceSequence", []) or []:
            item = Dataset()
            item.ReferencedSOPClassUID = inst.ReferencedSOPClassUID
            item.ReferencedSOPInstanceUID = inst.ReferencedSOPInstanceUID
            sources.append(item)
    if sources:
        sc.SourceImageSequence = sources
    sc.ReferencedSeriesSequence = list(getattr(seg, "ReferencedSeriesSequence", []) or [])
    return sc


def send_results(
    server: DicomwebServer,
    out_dir: Path,
    *,
    study_uid: str,
    preview: bool = False,
) -> list[SentObject]:
    """STOW-RS the DICOM-SEG(s) and SR(s) of ``OUT/<study>/`` (and the previews) into the study.

    Parameters
    ----------
    server:
        Where to store.
    out_dir:
        The study's output folder.
    study_uid:
        The source StudyInstanceUID; every object must belong to it.
    preview:
        Also store ``preview*.png`` as Secondary Capture images.

    Returns
    -------
    list of SentObject

    Raises
    ------
    InputError
        Nothing to send (no ``seg*.dcm``), or an object of another study.
    PacsError
        The server refused an object.
    """
    import pydicom

    out_dir = Path(out_dir)
    segs = sorted(out_dir.glob("seg*.dcm"))
    if not segs:
        raise InputError(
            f"{out_dir} holds no seg*.dcm to send; a DICOM-SEG is only written for DICOM input."
        )
    objects: list[tuple[str, Path, Any]] = [("SEG", p, pydicom.dcmread(p)) for p in segs]
    objects += [("SR", p, pydicom.dcmread(p)) for p in sorted(out_dir.glob("report-sr*.dcm"))]
    if preview:
        for k, png in enumerate(sorted(out_dir.glob("preview*.png"))):
            suffix = png.stem[len("preview") :]
            seg = next((d for kind, p, d in objects if p.stem == f"seg{suffix}"), objects[0][2])
            objects.append(("SC", png, _secondary_capture(png, seg, 9905 + k)))
    for _kind, path, ds in objects:
        if str(ds.StudyInstanceUID) != study_uid:
            raise InputError(
                f"{path.name} belongs to study {ds.StudyInstanceUID}, not {study_uid}; refusing "
                "to store it there."
            )
    server.store([ds for _, _, ds in objects], study_uid)
    return [
        SentObject(
            kind=kind,
            file=path.name,
            series_uid=str(ds.SeriesInstanceUID),
            sop_uid=str(ds.SOPInstanceUID),
            referenced_series=_references(ds),
        )
        for kind, path, ds in objects
    ]


def _write_record(out_dir: Path, record: Mapping[str, Any]) -> None:
    with atomic_file(Path(out_dir) / PACS_RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")


def segment_from_pacs(
    server: DicomwebServer,
    study_uid: str,
    *,
    out_dir: Path,
    settings: Any = None,
    send_to: DicomwebServer | None = None,
    preview: bool = False,
    progress: Callable[[str, float], None] | None = None,
    work_dir: Path | None = None,
    models: Any = None,
    series: list[dict[str, Any]] | None = None,
) -> PacsSegmentResult:
    """Pull a study over DICOMweb, segment it, write its SR, and optionally send the results.

    The study is fetched into a temporary folder named after its StudyInstanceUID (removed
    afterwards), so the outputs land in ``out_dir/<StudyInstanceUID>/``: the usual files plus
    ``report-sr.dcm`` and ``pacs.json`` (where it came from and what was sent, never
    credentials).

    Parameters
    ----------
    server:
        Where the study is.
    study_uid:
        Its StudyInstanceUID.
    out_dir:
        Parent output folder.
    settings:
        :class:`breastai.pipeline.Settings`.
    send_to:
        Store the SEG and SR (and preview) into the same study on this server.
    preview:
        Also send the preview as a Secondary Capture.
    progress:
        ``(stage, fraction)`` callback; stages ``pull`` then :data:`breastai.pipeline.STAGES`.
    work_dir:
        Parent of the temporary download folder (default: the system's temporary folder).
    models:
        Loaded models to reuse (:func:`breastai.pipeline.load_models`).
    series:
        The study's series (QIDO-RS), when the caller listed them already.

    Returns
    -------
    PacsSegmentResult

    Raises
    ------
    BreastAIError
        Pull, reader, weights, output and store problems, each with one sentence.
    """
    from breastai.io import load_study
    from breastai.io.atomic import check_new_dir
    from breastai.pipeline import Settings, segment_study

    settings = settings or Settings()
    out_dir = Path(out_dir)
    check_new_dir(out_dir / _safe_name(study_uid), force=settings.force)  # before any download
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="breastai-pacs-", dir=work_dir) as tmp:
        folder = Path(tmp) / _safe_name(study_uid)
        if progress:
            progress("pull", 0.0)
        pulled = pull_study(
            server, study_uid, folder, dce_series=settings.dce_series, series=series
        )
        if progress:
            progress("pull", 1.0)
        t1 = time.perf_counter()
        # the reader decides again from the same headers (its decision log is the manifest's)
        study = load_study(folder, dce_series=settings.dce_series, study_uid=study_uid)
        result = segment_study(
            study, out_dir=out_dir, settings=settings, progress=progress, models=models
        )
        final = Path(result.out_dir or out_dir / study.name)
        for path in write_sr_files(study, final, min_volume_mm3=settings.min_volume_mm3):
            result.files.append(path.name)
        t2 = time.perf_counter()
    res = PacsSegmentResult(
        study_uid=study_uid, source_url=server.url, segment=result, pulled=pulled
    )
    record = {
        "notice": RESEARCH_NOTICE,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {"url": server.url, "study_uid": study_uid},
        "series": pulled.series,
        "dce_series": pulled.dce_series,
        "sent_to": None,
        "sent": [],
    }
    _write_record(final, record)
    result.files.append(PACS_RECORD)
    if send_to is not None:
        res.sent = send_results(send_to, final, study_uid=study_uid, preview=preview)
        res.sent_to = send_to.url
        record["sent_to"] = send_to.url
        record["sent"] = [asdict(s) for s in res.sent]
        record["sent_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
        _write_record(final, record)
    t3 = time.perf_counter()
    res.timings_s = {"pull": t1 - t0, "segment": t2 - t1, "send": t3 - t2, "total": t3 - t0}
    return res
