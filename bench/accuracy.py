"""Accuracy of the bundled demo weights on held-out phantom studies (issue 4 item 4).

Every case is a DICOM study written by ``breastai.phantom`` with seeds never used in training
(training uses 100000+, tests use < 1000; this uses 900000+), cycling through every preset, every
DICOM layout and the three orientations, and segmented by the public pipeline exactly as
``breastai segment`` does (breast mask on). Metrics come from ``breastai.evaluate``:

* breast and tumor Dice, tumor sensitivity and HD95 per case;
* per ground-truth lesion, by its true longest diameter (truth.json): detected (any predicted
  voxel inside the lesion) and a local Dice (prediction and lesion inside the lesion's bounding box
  grown by 10 mm), grouped into size bins;
* false-positive lesions per case: predicted 26-connected components touching no true lesion
  (benign lesions and nodes are not target lesions, so they count as false positives).

Split-bilateral studies whose two stacks cannot be joined are segmented per stack: the output
folder then holds ``breast_R/L.nii.gz`` and ``tumor_R/L.nii.gz`` (each on its own stack's grid)
instead of ``breast.nii.gz``/``tumor.nii.gz``; each side is resampled onto the truth grid (nearest
neighbour) and the union is scored. Both output forms are read.

Usage (about 15 s per case on 2 CPU cores)::

    python bench/accuracy.py --cases 24 [--work DIR] [--weights NAME] [--breast-weights NAME]
        [--seed-base 900000] [--runtime auto|onnxruntime|openvino] [--precision fp32|bf16]

``--seed-base 800000`` gives the second held-out set, the one to tune recipes on; report on
900000+. A different seed base needs its own ``--work`` folder (studies are named by index).

Prints a markdown report for bench/RESULTS.md. Research use only, not a medical device.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from breastai.evaluate import evaluate_case, union_on_grid
from breastai.phantom import LAYOUTS, ORIENTATIONS, PRESETS, make_demo_study
from breastai.pipeline import Settings, load_models, segment_study

SEED_BASE = 900_000
BINS = (
    (0.0, 10.0, "< 10 mm"),
    (10.0, 20.0, "10-20 mm"),
    (20.0, 50.0, "20-50 mm"),
    (50.0, math.inf, "> 50 mm"),
)


def _lesion_rows(
    pred: sitk.Image, lesions: sitk.Image, truth: dict[str, Any]
) -> list[dict[str, Any]]:
    """Per true lesion: longest diameter, detected, local Dice (see module docstring)."""
    if pred.GetSize() != lesions.GetSize():
        pred = sitk.Resample(pred, lesions, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    p = sitk.GetArrayViewFromImage(pred) > 0
    lab = sitk.GetArrayViewFromImage(lesions)
    spacing_zyx = np.array(lesions.GetSpacing()[::-1])
    margin = np.ceil(10.0 / spacing_zyx).astype(int)
    rows = []
    for lesion in truth.get("lesions", []):
        if not lesion.get("malignant", True):
            continue
        g = lab == lesion["label"]
        if not g.any():
            continue
        idx = np.argwhere(g)
        lo = np.maximum(idx.min(0) - margin, 0)
        hi = np.minimum(idx.max(0) + margin + 1, g.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        gb, pb = g[box], p[box]
        denom = gb.sum() + pb.sum()
        rows.append(
            {
                "diameter_mm": float(lesion["longest_diameter_mm"]),
                "detected": bool((pb & gb).any()),
                "dice": float(2 * (pb & gb).sum() / denom) if denom else 1.0,
            }
        )
    return rows


def read_mask(out_dir: Path, kind: str, truth: sitk.Image) -> sitk.Image:
    """The predicted ``kind`` mask ("breast" | "tumor") of one output folder on ``truth``'s grid.

    ``KIND.nii.gz`` when the study was segmented as one volume; otherwise the union of the
    per-stack masks ``KIND_<side>.nii.gz`` (split-bilateral studies whose stacks could not be
    joined), each resampled onto the truth grid with nearest neighbour.
    """
    single = out_dir / f"{kind}.nii.gz"
    parts = [single] if single.exists() else sorted(out_dir.glob(f"{kind}_*.nii.gz"))
    parts = [p for p in parts if "probability" not in p.name]
    if not parts:
        raise FileNotFoundError(f"No {kind} mask ({kind}.nii.gz or {kind}_R/L.nii.gz) in {out_dir}")
    return union_on_grid(parts, truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--weights", default=None, help="tumor model (default: bundled demo)")
    parser.add_argument("--breast-weights", default=None)
    parser.add_argument(
        "--seed-base",
        type=int,
        default=SEED_BASE,
        help="first phantom seed (900000: the held-out set; 800000: the set to tune on)",
    )
    parser.add_argument("--runtime", default="auto", help="auto | onnxruntime | openvino")
    parser.add_argument("--precision", default="fp32", help="fp32 | bf16 (OpenVINO)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="breastai-accuracy-"))
    settings = Settings(
        device="cpu",
        weights=args.weights,
        breast_weights=args.breast_weights,
        force=True,
        runtime=args.runtime,
        precision=args.precision,
    )
    models = load_models(settings)
    presets, layouts = list(PRESETS), list(LAYOUTS)
    cases, lesions = [], []
    t0 = time.perf_counter()
    for i in range(args.cases):
        preset, layout = presets[i % len(presets)], layouts[i % len(layouts)]
        orientation = ORIENTATIONS[(i // len(layouts)) % len(ORIENTATIONS)]
        if layout == "split-bilateral" and orientation != "sagittal":
            orientation = "sagittal"  # split bilateral stacks are a sagittal protocol
        name = f"case{i:02d}-{layout}-{preset}-{orientation}"
        study_dir = work / name
        if not study_dir.exists():
            make_demo_study(
                study_dir,
                layout=layout,
                preset=preset,
                seed=args.seed_base + i,
                orientation=orientation,
            )
        res = segment_study(
            study_dir / "dicom", out_dir=work / "out" / name, settings=settings, models=models
        )
        if not res.ok or res.out_dir is None:
            cases.append({"case": name, "error": res.error})
            continue
        truth_dir = study_dir / "truth"
        truth = json.loads((truth_dir / "truth.json").read_text())
        truth_breast = sitk.ReadImage(str(truth_dir / "breast.nii.gz"))
        truth_tumor = sitk.ReadImage(str(truth_dir / "tumor.nii.gz"))
        tumor = read_mask(res.out_dir, "tumor", truth_tumor)
        breast = evaluate_case(
            read_mask(res.out_dir, "breast", truth_breast), truth_breast, case=name
        )
        tum = evaluate_case(tumor, truth_tumor, case=name)
        rows = _lesion_rows(tumor, sitk.ReadImage(str(truth_dir / "lesions.nii.gz")), truth)
        lesions.extend(rows)
        cases.append(
            {
                "case": name,
                "breast_dice": breast.dice,
                "tumor_dice": tum.dice,
                "sensitivity": tum.sensitivity,
                "hd95": tum.hd95_mm,
                "fp": tum.fp,
                "gt_empty": tum.gt_empty,
                "lesions": len(rows),
            }
        )
        print(
            f"# {name}: breast {breast.dice:.3f} tumor {tum.dice:.3f} fp {tum.fp} "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )

    def fmt(v: float | None) -> str:
        return "-" if v is None or not math.isfinite(v) else f"{v:.3f}"

    print("\n| case | breast Dice | tumor Dice | tumor sensitivity | HD95 mm | FP lesions |")
    print("|---|---|---|---|---|---|")
    for c in cases:
        if "error" in c:
            print(f"| {c['case']} | failed: {c['error']} | | | | |")
            continue
        td = "- (no target lesion)" if c["gt_empty"] else fmt(c["tumor_dice"])
        print(
            f"| {c['case']} | {fmt(c['breast_dice'])} | {td} | {fmt(c['sensitivity'])} "
            f"| {fmt(c['hd95'])} | {c['fp']} |"
        )
    ok = [c for c in cases if "error" not in c]
    with_gt = [c for c in ok if not c["gt_empty"]]
    hd = [c["hd95"] for c in with_gt if math.isfinite(c["hd95"])]
    print(
        f"\nCases: {len(ok)} ok of {len(cases)}. Mean breast Dice "
        f"{statistics.fmean(c['breast_dice'] for c in ok):.3f}; mean tumor Dice "
        f"{statistics.fmean(c['tumor_dice'] for c in with_gt):.3f} over {len(with_gt)} cases "
        f"with a target lesion; median HD95 {statistics.median(hd) if hd else float('nan'):.1f} "
        f"mm; false-positive lesions per case {statistics.fmean(c['fp'] for c in ok):.2f}."
    )
    print("\n| true lesion size | lesions | detected (sensitivity) | mean local Dice |")
    print("|---|---|---|---|")
    for lo, hi, label in BINS:
        sel = [r for r in lesions if lo <= r["diameter_mm"] < hi]
        if sel:
            det = sum(r["detected"] for r in sel)
            print(
                f"| {label} | {len(sel)} | {det} ({det / len(sel):.2f}) | "
                f"{statistics.fmean(r['dice'] for r in sel):.3f} |"
            )
        else:
            print(f"| {label} | 0 | - | - |")
    print(
        f"\nTotal {time.perf_counter() - t0:.0f} s; {models.runtime} {models.precision} on "
        f"{models.device}; work folder {work}"
    )


if __name__ == "__main__":
    main()
