"""Benchmark the PACS loop: a study pulled over DICOMweb from a local Orthanc vs read from a folder.

Writes a demo phantom study (GE layout, 6 phases of 256 x 256 x 96 plus the decoy series;
``breastai demo``), starts a real Orthanc with its DICOMweb plugin (tests/orthanc_server.py: free
port, temporary storage, authentication on; stopped by its pid at the end), uploads the study
through Orthanc's REST API (not timed), then times in one process:

* folder: ``load_study(folder)`` (header index, selection, pixel load) — the baseline;
* DICOMweb: ``pull_study`` (QIDO-RS series, WADO-RS metadata of every image series, the reader's
  choice from headers, WADO-RS of the DCE series only) + ``load_study`` of the pulled folder;
* the whole job with the bundled demo weights: ``segment_study`` on the folder vs
  ``segment_from_pacs`` (pull + segment + SR) and the STOW-RS of the SEG and SR.

Prints a Markdown table (seconds, ratio to the folder read). Usage:
``python bench/pacs.py [--repeats 3] [--no-segment] [--smoke] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each read (median shown)")
    ap.add_argument("--no-segment", action="store_true", help="skip the whole-job rows")
    ap.add_argument("--smoke", action="store_true", help="tiny study, 1 repeat (tests)")
    ap.add_argument("--work", type=Path, help="work folder (default: a temporary folder)")
    args = ap.parse_args()

    import orthanc_server

    why = orthanc_server.missing()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 1
    from orthanc_server import PASSWORD, USER, Orthanc

    from breastai.io import load_study
    from breastai.pacs import Credentials, DicomwebServer, pull_study, segment_from_pacs
    from breastai.pacs.transfer import send_results
    from breastai.pipeline import Settings, load_models, segment_study

    work = args.work or Path(tempfile.mkdtemp(prefix="breastai-bench-pacs-"))
    work.mkdir(parents=True, exist_ok=True)
    repeats = 1 if args.smoke else max(1, args.repeats)
    if args.smoke:
        from segment_factory import write_classic_study

        folder = work / "study"
        if not folder.exists():
            write_classic_study(folder, shape=(8, 24, 30))
        what = "tiny classic study (3 phases of 30 x 24 x 8)"
    else:
        from breastai.phantom import make_demo_study

        if not (work / "demo" / "dicom").exists():
            make_demo_study(work / "demo")
        folder = work / "demo" / "dicom"
        what = "demo phantom study (GE layout, 6 phases of 256 x 256 x 96, with decoys)"
    files = _files(folder)
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    study = load_study(folder)
    study_uid = str(study.study_uid)

    orthanc = Orthanc(work / f"orthanc-{os.getpid()}").start()
    assert orthanc.proc is not None
    orthanc_pid = orthanc.proc.pid
    rows: list[tuple[str, float, float | None]] = []
    try:
        t0 = time.perf_counter()
        orthanc.upload(files)
        upload_s = time.perf_counter() - t0
        server = DicomwebServer(orthanc.url, Credentials(user=USER, password=PASSWORD))

        folder_s, pull_s, pixels_s, headers_s, read_after_s = [], [], [], [], []
        n_full = n_headers = 0
        for k in range(repeats):
            t0 = time.perf_counter()
            load_study(folder)
            folder_s.append(time.perf_counter() - t0)

            with tempfile.TemporaryDirectory(dir=work) as tmp:
                t0 = time.perf_counter()
                pulled = pull_study(server, study_uid, Path(tmp) / f"pull{k}")
                t1 = time.perf_counter()
                load_study(pulled.folder, study_uid=study_uid)
                t2 = time.perf_counter()
            pull_s.append(t2 - t0)
            headers_s.append(pulled.timings_s["list+headers"] + pulled.timings_s["select"])
            pixels_s.append(pulled.timings_s["pixels"])
            read_after_s.append(t2 - t1)
            n_full, n_headers = pulled.n_instances_full, pulled.n_instances_headers
        base = statistics.median(folder_s)
        med = statistics.median
        rows += [
            (f"read from a folder: load_study ({len(files)} files, {size_mb:.0f} MB)", base, 1.0),
            (
                "pulled over DICOMweb from the local Orthanc + load_study",
                med(pull_s),
                med(pull_s) / base,
            ),
            (
                f"  of which QIDO-RS + WADO-RS metadata ({n_full + n_headers} instances) + "
                "choice from headers",
                med(headers_s),
                None,
            ),
            (
                f"  of which WADO-RS pixel data of the DCE series ({n_full} instances)",
                med(pixels_s),
                None,
            ),
            ("  of which load_study of the pulled folder", med(read_after_s), None),
        ]

        if not args.no_segment:
            settings = Settings(device="cpu", force=True)
            models = load_models(settings)
            # warm-up (first-inference costs of the runtime), not timed
            segment_study(folder, out_dir=work / "out-warm", settings=settings, models=models)
            t0 = time.perf_counter()
            segment_study(folder, out_dir=work / "out-folder", settings=settings, models=models)
            seg_folder = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = segment_from_pacs(
                server, study_uid, out_dir=work / "out-pacs", settings=settings, models=models
            )
            seg_pacs = time.perf_counter() - t0
            t0 = time.perf_counter()
            sent = send_results(server, res.segment.out_dir, study_uid=study_uid)
            stow = time.perf_counter() - t0
            rows += [
                ("segment_study on the folder (demo weights, CPU)", seg_folder, 1.0),
                (
                    "segment_from_pacs: pull + segment + SR (same weights)",
                    seg_pacs,
                    seg_pacs / seg_folder,
                ),
                (f"STOW-RS of {' + '.join(s.kind for s in sent)} into the study", stow, None),
            ]
    finally:
        orthanc.stop()

    print(
        f"\n{what}; Orthanc pid {orthanc_pid} (stopped); upload to Orthanc (REST, not timed in "
        f"the rows) {upload_s:.1f} s; median of {repeats} repeat(s) for the reads\n"
    )
    print("| What | Seconds | Ratio |")
    print("|---|---|---|")
    for name, secs, ratio in rows:
        print(f"| {name} | {secs:.2f} | {'' if ratio is None else f'{ratio:.2f}'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
