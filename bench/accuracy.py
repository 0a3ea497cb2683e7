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

Usage (about 15 s per case and model pair on 2 CPU cores)::

    python bench/accuracy.py --cases 24 [--work DIR] [--weights NAME] [--breast-weights NAME]
        [--seed-base 900000] [--runtime auto|onnxruntime|openvino] [--precision fp32|bf16]
        [--sets indist,oof] [--oof-cases 8] [--oof-seed-base 700000]
        [--candidate [LABEL=]DIR[:breast|:tumor] ...] [--min-enhancement PCT[,PCT...]]
        [--json PATH]

``--seed-base 800000`` gives the second held-out set, the one to tune recipes on; report on
900000+. A different seed base needs its own ``--work`` folder (studies are named by index).

Evaluation sets (``--sets``): ``indist`` = the phantom studies above; ``oof`` = out-of-family
studies from ``bench/oof_phantom.py`` (a second generator with its own anatomy, contrast and
kinetics that no training recipe samples; seeds 700000+, layouts ge / siemens / philips).
``--candidate DIR`` also runs the model pair ``DIR/demo-breast.onnx`` + ``DIR/demo-tumor.onnx``
(with their sidecar cards, as ``python -m breastai.training.demo_weights --out DIR`` writes
them) on the same studies in the same run, so old and new models are compared on identical
inputs; the summary then has one row per set and model pair. ``--candidate new=DIR:breast``
pairs DIR's breast model with the bundled tumor model (repeat ``--candidate`` for several).
``--min-enhancement 0,10`` runs every model pair once per value of the enhancement rule
(``breastai segment --min-enhancement``; labels ``PAIR@0``, ``PAIR@10``), default: the
pipeline's default only.

Prints a markdown report for bench/RESULTS.md. Research use only, not a medical device.
"""

from __future__ import annotations

import argparse
import dataclasses
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


def _oof_module() -> Any:
    """bench/oof_phantom.py (bench is not a package: load it by path)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parent / "oof_phantom.py"
    spec = importlib.util.spec_from_file_location("breastai_bench_oof_phantom", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _studies(args: argparse.Namespace, work: Path) -> list[tuple[str, str, Path]]:
    """(set, name, study folder) of every study, generated into ``work`` when missing."""
    out: list[tuple[str, str, Path]] = []
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = set(sets) - {"indist", "oof"}
    if unknown:
        raise SystemExit(f"--sets takes indist and/or oof, got {sorted(unknown)}")
    if "indist" in sets:
        presets, layouts = list(PRESETS), list(LAYOUTS)
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
            out.append(("indist", name, study_dir))
    if "oof" in sets:
        oof = _oof_module()
        for i in range(args.oof_cases):
            layout = ("ge", "siemens", "philips")[i % 3]
            seed = args.oof_seed_base + i
            name = f"oof{i:02d}-{layout}-s{seed}"
            study_dir = work / "oof" / name
            if not study_dir.exists():
                study_dir.parent.mkdir(parents=True, exist_ok=True)
                oof.make_oof_study(study_dir, seed, layout=layout)
            out.append(("oof", name, study_dir))
    return out


def _score(
    out_dir: Path, study_dir: Path, name: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    truth_dir = study_dir / "truth"
    truth = json.loads((truth_dir / "truth.json").read_text())
    truth_breast = sitk.ReadImage(str(truth_dir / "breast.nii.gz"))
    truth_tumor = sitk.ReadImage(str(truth_dir / "tumor.nii.gz"))
    tumor = read_mask(out_dir, "tumor", truth_tumor)
    breast = evaluate_case(read_mask(out_dir, "breast", truth_breast), truth_breast, case=name)
    tum = evaluate_case(tumor, truth_tumor, case=name)
    rows = _lesion_rows(tumor, sitk.ReadImage(str(truth_dir / "lesions.nii.gz")), truth)
    case = {
        "case": name,
        "breast_dice": breast.dice,
        "tumor_dice": tum.dice,
        "sensitivity": tum.sensitivity,
        "hd95": tum.hd95_mm,
        "fp": tum.fp,
        "gt_empty": tum.gt_empty,
        "lesions": len(rows),
        "detected": sum(r["detected"] for r in rows),
    }
    return case, rows


def _fmt(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _summary(cases: list[dict[str, Any]], lesions: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [c for c in cases if "error" not in c]
    with_gt = [c for c in ok if not c["gt_empty"]]
    hd = [c["hd95"] for c in with_gt if math.isfinite(c["hd95"])]
    det = sum(r["detected"] for r in lesions)
    return {
        "studies": len(cases),
        "ok": len(ok),
        "breast_dice": statistics.fmean(c["breast_dice"] for c in ok) if ok else math.nan,
        "tumor_dice": statistics.fmean(c["tumor_dice"] for c in with_gt) if with_gt else math.nan,
        "with_lesion": len(with_gt),
        "lesions": len(lesions),
        "detected": det,
        "fp_per_study": statistics.fmean(c["fp"] for c in ok) if ok else math.nan,
        "median_hd95": statistics.median(hd) if hd else math.nan,
        "bins": [
            {
                "bin": label,
                "lesions": len(sel),
                "detected": sum(r["detected"] for r in sel),
                "dice": statistics.fmean(r["dice"] for r in sel) if sel else math.nan,
            }
            for lo, hi, label in BINS
            for sel in [[r for r in lesions if lo <= r["diameter_mm"] < hi]]
        ],
    }


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
    parser.add_argument("--sets", default="indist", help="indist, oof or indist,oof")
    parser.add_argument("--oof-cases", type=int, default=8)
    parser.add_argument("--oof-seed-base", type=int, default=700_000)
    parser.add_argument(
        "--candidate",
        action="append",
        default=[],
        metavar="[LABEL=]DIR[:breast|:tumor]",
        help="folder with demo-breast.onnx + demo-tumor.onnx (and cards), compared in this run; "
        "':breast' / ':tumor' takes only that model from DIR (the other stays bundled); repeatable",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument(
        "--no-bundled", action="store_true", help="run only the candidates (not the bundled pair)"
    )
    parser.add_argument(
        "--min-enhancement",
        default=None,
        metavar="PCT[,PCT...]",
        help="run every model pair once per value of the tumor enhancement rule (default: the "
        "pipeline's default only)",
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="breastai-accuracy-"))
    common = {"device": "cpu", "force": True, "runtime": args.runtime, "precision": args.precision}
    pairs = [
        ("bundled", Settings(weights=args.weights, breast_weights=args.breast_weights, **common))
    ]
    for i, spec in enumerate(args.candidate):
        label, _, rest = spec.rpartition("=")
        folder, _, only = rest.partition(":")
        if only not in ("", "breast", "tumor"):
            raise SystemExit(f"--candidate {spec!r}: the suffix must be ':breast' or ':tumor'")
        cand = Path(folder).resolve()
        tumor = str(cand / "demo-tumor.onnx") if only in ("", "tumor") else args.weights
        breast = str(cand / "demo-breast.onnx") if only in ("", "breast") else args.breast_weights
        label = label or ("candidate" if i == 0 else f"candidate{i + 1}")
        pairs.append((label, Settings(weights=tumor, breast_weights=breast, **common)))
    if args.no_bundled and len(pairs) > 1:
        pairs = pairs[1:]
    models = {label: load_models(settings) for label, settings in pairs}
    if args.min_enhancement is not None:
        values = [float(v) for v in args.min_enhancement.split(",") if v.strip()]
        for label, _ in list(pairs):
            for v in values:
                models[f"{label}@{v:g}"] = models[label]
            del models[label]
        pairs = [
            (f"{label}@{v:g}", dataclasses.replace(settings, min_enhancement_pct=v))
            for label, settings in pairs
            for v in values
        ]
    t0 = time.perf_counter()
    studies = _studies(args, work)
    print(f"# {len(studies)} studies ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    results: dict[tuple[str, str], tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for set_name, name, study_dir in studies:
        for label, settings in pairs:
            cases, lesions = results.setdefault((set_name, label), ([], []))
            res = segment_study(
                study_dir / "dicom",
                out_dir=work / "out" / label / name,
                settings=settings,
                models=models[label],
            )
            if not res.ok or res.out_dir is None:
                cases.append({"case": name, "error": res.error})
                continue
            case, rows = _score(res.out_dir, study_dir, name)
            cases.append(case)
            lesions.extend(rows)
            print(
                f"# {set_name} {label} {name}: breast {case['breast_dice']:.3f} tumor "
                f"{case['tumor_dice']:.3f} fp {case['fp']} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    labels = [label for label, _ in pairs]
    summaries: dict[str, dict[str, Any]] = {}
    for set_name in dict.fromkeys(s for s, _, _ in studies):
        print(f"\n### {set_name}: per study ({' / '.join(labels)})\n")
        print("| case | breast Dice | tumor Dice | tumor sensitivity | FP lesions |")
        print("|---|---|---|---|---|")
        per = [results[(set_name, label)][0] for label in labels]
        for row in zip(*per, strict=True):
            if any("error" in c for c in row):
                print(f"| {row[0]['case']} | failed: {[c.get('error') for c in row]} | | | |")
                continue
            td = (
                "- (no target lesion)"
                if row[0]["gt_empty"]
                else " / ".join(_fmt(c["tumor_dice"]) for c in row)
            )
            print(
                f"| {row[0]['case']} | {' / '.join(_fmt(c['breast_dice']) for c in row)} | {td} "
                f"| {' / '.join(_fmt(c['sensitivity']) for c in row)} "
                f"| {' / '.join(str(c['fp']) for c in row)} |"
            )
        for label in labels:
            summaries[f"{set_name}/{label}"] = _summary(*results[(set_name, label)])
    print(
        "\n| set | models | studies ok | mean breast Dice | mean tumor Dice (studies with a "
        "lesion) | lesions detected | FP lesions per study | median HD95 mm |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for key, sm in summaries.items():
        set_name, label = key.split("/")
        det = f"{sm['detected']} of {sm['lesions']}"
        if sm["lesions"]:
            det += f" ({sm['detected'] / sm['lesions']:.2f})"
        print(
            f"| {set_name} | {label} | {sm['ok']} of {sm['studies']} | {_fmt(sm['breast_dice'])} "
            f"| {_fmt(sm['tumor_dice'])} ({sm['with_lesion']}) | {det} "
            f"| {sm['fp_per_study']:.2f} | {sm['median_hd95']:.1f} |"
        )
    print("\n| set | models | true lesion size | lesions | detected | mean local Dice |")
    print("|---|---|---|---|---|---|")
    for key, sm in summaries.items():
        set_name, label = key.split("/")
        for b in sm["bins"]:
            if b["lesions"]:
                print(
                    f"| {set_name} | {label} | {b['bin']} | {b['lesions']} | {b['detected']} "
                    f"| {_fmt(b['dice'])} |"
                )
    run = next(iter(models.values()))
    print(
        f"\nTotal {time.perf_counter() - t0:.0f} s; {run.runtime} {run.precision} on "
        f"{run.device}; work folder {work}"
    )
    if args.json is not None:
        payload = {
            "summaries": summaries,
            "cases": {f"{s}/{m}": v[0] for (s, m), v in results.items()},
        }
        args.json.write_text(json.dumps(payload, indent=1, default=str))


if __name__ == "__main__":
    main()
