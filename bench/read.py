"""Benchmark the DICOM study reader (breastai.io.load_study) against SimpleITK.

Generates (once, under --work, default /tmp/breastai-bench-read) a 6-phase 512x512x160 study of
960 classic MR files with the test factory, then in fresh subprocesses (so peak RSS is clean):

* ours:  header index + selection + grouping + pixel load into six float32 SimpleITK images;
* sitk:  SimpleITK ImageSeriesReader on pre-sorted per-phase file lists (the baseline; it does
         no indexing, selection or validation), raw pixel type, and the same cast to float32;
* decoys: index time of the same study plus 100 decoy series (1,600 more files).

Prints a table and the ratio ours / sitk (goal <= 1.5x) and peak memory / decoded volumes (goal
<= 2x). Usage: ``python bench/read.py [--repeats 2] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _generate(work: Path, phases: int, slices: int, size: int, decoys: int) -> None:
    from dicom_factory import make_study

    study = work / "study"
    if not (work / "lists.json").exists():
        t0 = time.perf_counter()
        truth = make_study(
            study,
            n_phases=phases,
            shape_zyx=(slices, size, size),
            spacing_zyx=(1.0, 0.7, 0.7),
            layout="one_series",
            tag="bench",
        )
        lists = [[str(p) for p in files] for files in truth.files]
        (work / "lists.json").write_text(json.dumps(lists))
        print(f"generated {phases * slices} files in {time.perf_counter() - t0:.1f} s", flush=True)
    decoy_dir = work / "with-decoys"
    if decoys and not (decoy_dir / "done").exists():
        decoy_dir.mkdir(parents=True, exist_ok=True)
        link = decoy_dir / "study"  # hard links: the same files, no second copy on disk
        link.mkdir(exist_ok=True)
        for path in study.iterdir():
            if not (link / path.name).exists():
                (link / path.name).hardlink_to(path)
        import pydicom

        study_uid = pydicom.dcmread(next(study.iterdir()), stop_before_pixels=True).StudyInstanceUID
        kinds = [
            {"description": "ax t2 tse", "extra": {"EchoTime": "90"}},
            {"description": "dwi b800", "extra": {"DiffusionBValue": 800}},
            {
                "description": "SUB 1",
                "extra": {"ImageType": ["DERIVED", "SECONDARY", "SUBTRACTION"]},
            },
            {"description": "MIP post"},
            {
                "description": "3-plane loc",
                "extra": {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]},
            },
        ]
        for k in range(decoys):
            kind = kinds[k % len(kinds)]
            make_study(
                decoy_dir / f"decoy{k:03d}",
                n_phases=1,
                shape_zyx=(16, 128, 128),
                tag=f"decoy{k}",
                study_uid=study_uid,
                origin=(-40.0, -40.0, float(k)),
                **kind,  # type: ignore[arg-type]
            )
        (decoy_dir / "done").write_text("")


def _measure(mode: str, work: Path) -> dict[str, float]:
    import numpy as np  # noqa: F401  (imports counted in the baseline RSS)
    import pydicom  # noqa: F401
    import SimpleITK as sitk

    from breastai.io import load_study
    from breastai.io.dicom_index import index_folder

    base = _rss_mb()
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    if mode == "ours":
        index = index_folder(work / "study")
        out["index_s"] = time.perf_counter() - t0
        from breastai.io.dicom import read_dicom_study

        study = read_dicom_study(work / "study", index=index)
        out["phases"] = len(study.phases)
        out["slices"] = study.phases[0].image.GetSize()[2]
    elif mode in ("sitk", "sitk-float"):
        lists = json.loads((work / "lists.json").read_text())
        images = []
        for files in lists:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(files)
            image = reader.Execute()
            if mode == "sitk-float":
                image = sitk.Cast(image, sitk.sitkFloat32)
            images.append(image)
        out["phases"] = len(images)
    elif mode == "decoys":
        index = index_folder(work / "with-decoys")
        out["index_s"] = time.perf_counter() - t0
        out["files"] = index.n_files
        t1 = time.perf_counter()
        study = load_study(work / "with-decoys")
        out["load_s"] = time.perf_counter() - t1
        out["phases"] = len(study.phases)
    out["seconds"] = time.perf_counter() - t0
    out["peak_mb"] = _rss_mb() - base
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/breastai-bench-read"))
    parser.add_argument("--phases", type=int, default=6)
    parser.add_argument("--slices", type=int, default=160)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--decoys", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--measure", choices=["ours", "sitk", "sitk-float", "decoys"])
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_measure(args.measure, args.work)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    _generate(args.work, args.phases, args.slices, args.size, args.decoys)
    results: dict[str, list[dict[str, float]]] = {}
    modes = ["ours", "sitk", "sitk-float"] + (["decoys"] if args.decoys else [])
    for _ in range(args.repeats):  # interleaved so that drift and cache state affect all alike
        for mode in modes:
            proc = subprocess.run(
                [sys.executable, __file__, "--measure", mode, "--work", str(args.work)],
                capture_output=True,
                text=True,
                check=True,
            )
            results.setdefault(mode, []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
    best = {m: min(r, key=lambda x: x["seconds"]) for m, r in results.items()}
    decoded_mb = args.phases * args.slices * args.size * args.size * 4 / 2**20
    ours, sitk_raw, sitk_f = best["ours"], best["sitk"], best["sitk-float"]
    rows = [
        (
            "ours: index + select + group + load (float32)",
            f"{ours['seconds']:.2f}",
            f"{ours['peak_mb']:.0f}",
        ),
        ("  of which header index", f"{ours['index_s']:.2f}", ""),
        (
            "SimpleITK ImageSeriesReader, pre-sorted lists (uint16)",
            f"{sitk_raw['seconds']:.2f}",
            f"{sitk_raw['peak_mb']:.0f}",
        ),
        (
            "SimpleITK ImageSeriesReader + cast to float32",
            f"{sitk_f['seconds']:.2f}",
            f"{sitk_f['peak_mb']:.0f}",
        ),
    ]
    if "decoys" in best:
        d = best["decoys"]
        rows.append(
            (
                f"index, study + 100 decoy series ({int(d['files'])} files)",
                f"{d['index_s']:.2f}",
                "",
            )
        )
        rows.append(
            (
                "load_study (index + load), study + 100 decoy series",
                f"{d['load_s']:.2f}",
                f"{d['peak_mb']:.0f}",
            )
        )
    print(
        f"\n{args.phases} phases x {args.slices} slices x {args.size}^2 "
        f"({args.phases * args.slices} files), "
        f"best of {args.repeats}; decoded float32 volumes {decoded_mb:.0f} MB"
    )
    print(f"| {'step':<58} | {'seconds':>8} | {'peak MB':>8} |")
    print(f"|{'-' * 60}|{'-' * 10}|{'-' * 10}|")
    for name, sec, mb in rows:
        print(f"| {name:<58} | {sec:>8} | {mb:>8} |")
    print(
        f"\nratio ours / SimpleITK (uint16): {ours['seconds'] / sitk_raw['seconds']:.2f}x; "
        f"ours / SimpleITK+float32: {ours['seconds'] / sitk_f['seconds']:.2f}x (goal <= 1.5x)"
    )
    print(f"peak memory / decoded volumes: {ours['peak_mb'] / decoded_mb:.2f}x (goal <= 2x)")


if __name__ == "__main__":
    main()
