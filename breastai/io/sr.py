"""DICOM SR writer: lesion measurements as a Comprehensive 3-D SR (TID 1500, highdicom).

:func:`write_sr` turns a :class:`breastai.report.LesionReport` measured on a DICOM study into a
measurement report that references the study's reference phase. It is also importable as
``breastai.report.write_sr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from breastai import __version__
from breastai.errors import InputError, OutputExistsError
from breastai.io.atomic import atomic_file
from breastai.study import Study

if TYPE_CHECKING:
    from breastai.lesion_report import LesionReport

__all__ = ["SR_SERIES_DESCRIPTION", "write_sr"]

SR_SERIES_DESCRIPTION = "breastai lesions - research use only, not a medical device"


def write_sr(
    report: LesionReport,
    study: Study,
    path: Path,
    *,
    weights: Mapping[str, Any] | None = None,
    series_number: int = 9902,
    force: bool = False,
) -> Path:
    """Write the lesion measurements as a DICOM Comprehensive 3-D SR (TID 1500, highdicom).

    One measurement group per lesion (tracking identifier "lesion N", finding site breast with
    laterality): longest 3-D diameter (Long axis, mm), longest in-plane diameter (Diameter, mm)
    and volume (mL); the size-based T category as a qualitative evaluation in the private
    coding scheme ``99BREASTAI``. The evidence is the reference phase's source instances. The
    series description carries the research-use notice; the algorithm identification names
    breastai and the weights.

    Parameters
    ----------
    report:
        The measurements (from a mask on the study's grid).
    study:
        The DICOM study the mask belongs to (its reference phase needs source files).
    path:
        Output file (written atomically).
    weights:
        As for :func:`breastai.report.write_report`; named in the algorithm identification.
    series_number:
        SeriesNumber of the SR.
    force:
        Replace an existing file.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        When the study has no DICOM source files.
    OutputExistsError, OutputError
        When the file exists (without ``force``) or cannot be written.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from breastai.lesion_report import weights_entries

    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{str(path)!r} already exists; pass --force to replace it.")
    sources = list(study.reference.source_files)
    if study.kind != "dicom" or not sources:
        raise InputError(
            "A DICOM SR needs a DICOM study with source files; this study was read from "
            f"{study.kind!r} input. Write report.json/report.md instead."
        )
    evidence = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in dict.fromkeys(sources)]
    wlist = weights_entries(weights) if weights else []
    names = [str(w.get("name", "")) for w in wlist]
    version = __version__ + (f" ({', '.join(names)})" if names else "")
    # name, sha256 and demo flag of every model, in full (the version string is LO, 64 chars)
    parameters = [
        f"{w.get('task', 'weights')}: {w.get('name', '')} sha256 {w.get('sha256', '')}"
        + (" (DEMO weights trained on synthetic phantoms)" if w.get("demo") else "")
        for w in wlist
    ]
    algorithm = hd.sr.AlgorithmIdentification(
        name="breastai", version=version[:64], parameters=parameters or None
    )
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="breastai", model_name=f"breastai {__version__}"[:64]
        ),
    )
    groups = []
    mm = codes.UCUM.Millimeter
    ml = hd.sr.CodedConcept(value="mL", scheme_designator="UCUM", meaning="milliliter")
    t_name = hd.sr.CodedConcept(
        value="T-SIZE", scheme_designator="99BREASTAI", meaning="AJCC T category by size"
    )
    for les in report.lesions:
        side = codes.SCT.Left if les.laterality == "left" else codes.SCT.Right
        site = hd.sr.FindingSite(anatomic_location=codes.SCT.Breast, laterality=side)
        measurements = [
            hd.sr.Measurement(
                name=codes.SCT.LongAxis, value=round(les.longest_diameter_mm, 2), unit=mm
            ),
            hd.sr.Measurement(
                name=codes.SCT.Diameter, value=round(les.longest_in_plane_diameter_mm, 2), unit=mm
            ),
            hd.sr.Measurement(name=codes.SCT.Volume, value=round(les.volume_ml, 4), unit=ml),
        ]
        evaluations = []
        if les.index == 1:
            value = hd.sr.CodedConcept(
                value=report.t_category, scheme_designator="99BREASTAI", meaning=report.t_category
            )
            evaluations.append(hd.sr.QualitativeEvaluation(name=t_name, value=value))
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=generate_uid(), identifier=f"lesion {les.index}"
                ),
                finding_type=codes.SCT.Lesion,
                finding_sites=[site],
                algorithm_id=algorithm,
                measurements=measurements,
                qualitative_evaluations=evaluations or None,
            )
        )
    if not groups:  # TID 1500 needs one group: say "no lesion", T category "none"
        value = hd.sr.CodedConcept(
            value=report.t_category, scheme_designator="99BREASTAI", meaning=report.t_category
        )
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=generate_uid(), identifier="no lesion found"
                ),
                finding_type=codes.SCT.Breast,
                algorithm_id=algorithm,
                qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=t_name, value=value)],
            )
        )
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.LN.BreastBilateralMrWoAndWContrastIv,
        imaging_measurements=groups or None,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=content[0],
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="breastai",
        series_description=SR_SERIES_DESCRIPTION,
    )
    with atomic_file(path, force=force) as tmp:
        sr.save_as(tmp)
    return path
