"""The PACS loop over DICOMweb (optional extra ``[pacs]``: dicomweb-client).

* :func:`segment_from_pacs`: QIDO-RS lists a study's series, WADO-RS fetches every image series'
  headers and the DCE series' pixel data only, the study is segmented as a folder, and the
  DICOM-SEG and DICOM SR (optionally the preview as a Secondary Capture) are stored with STOW-RS
  into the same study as new series referencing the source series.
* :func:`watch` / :func:`watch_once`: follow a server (Orthanc's change feed, or QIDO-RS by date)
  and handle each new study exactly once, recorded in a state file.
* :func:`connect`: credentials from the environment or a private config file, never from the
  command line (:mod:`breastai.pacs.connection`).

docs/pacs.md has the commands for Orthanc and other DICOMweb servers.
"""

from breastai.pacs.connection import (
    Credentials,
    DicomwebServer,
    connect,
    connect_target,
    load_credentials,
)
from breastai.pacs.transfer import (
    PacsSegmentResult,
    PulledStudy,
    SentObject,
    pull_study,
    segment_from_pacs,
    send_results,
    write_sr_files,
)
from breastai.pacs.watch import WatchEvent, WatchState, find_new_studies, watch, watch_once

__all__ = [
    "Credentials",
    "DicomwebServer",
    "PacsSegmentResult",
    "PulledStudy",
    "SentObject",
    "WatchEvent",
    "WatchState",
    "connect",
    "connect_target",
    "find_new_studies",
    "load_credentials",
    "pull_study",
    "segment_from_pacs",
    "send_results",
    "watch",
    "watch_once",
    "write_sr_files",
]
