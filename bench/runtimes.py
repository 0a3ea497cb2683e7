"""CPU runtimes compared: ONNX Runtime fp32, OpenVINO fp32 and OpenVINO bf16.

Usage (from the repository root; needs the ``openvino`` extra, and torch for the seed-size export)::

    python bench/runtimes.py                      # per-window seed-size + 6 demo phantom studies
    python bench/runtimes.py --seed-size-full     # + the seed-size network through `segment`
    python bench/runtimes.py --smoke              # tiny; CI runs it (tests/test_bench_runtimes.py)

Sections (each prints a markdown table; ratios come from one run on one machine):

* seed-size, per window: the authors' full-size tumor network (176 M parameters, seeded random
  weights, 32x96x96, 6 phases, batch 1) on each runtime in one process, runs interleaved
  (ORT, OV fp32, OV bf16, ORT, ...) so that machine-load drift hits all alike; median seconds per
  window, ratio to ONNX Runtime, and the projection to one demo study (windows over the breast
  box, as ``segment`` tiles it). Agreement with ORT on random inputs: max |p diff|.
* seed-size, whole pipeline (``--seed-size-full``): ``segment_study`` on one demo study with the
  seed-size tumor model, each runtime in its own child process (own peak RSS).
* demo models: the bundled demo weights on N held-out phantom studies (seeds 900000 + i, cycling
  layouts and presets), each runtime in its own child process: seconds per case and per model
  stage, peak RSS, and Dice of each runtime's masks against ONNX Runtime fp32's and against the
  phantom's truth.

bf16 runs only where OpenVINO reports native bfloat16 (AVX512-BF16 or AMX); otherwise its
columns say so. Research use only, not a medical device.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from segment import HELD_OUT_SEED, _child, _dice, _make_demo, seed_size_model  # noqa: E402

RUNS = (("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"))


def _label(runtime: str, precision: str) -> str:
    return {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}[runtime] + f" {precision}"


def _runs() -> tuple[list[tuple[str, str]], str]:
    """The runs this machine can do, and a note on those it cannot."""
    from breastai.inference import openvino_available, openvino_bf16_available

    if not openvino_available():
        return [RUNS[0]], "OpenVINO is not installed (pip install 'breastai[openvino]')"
    if not openvino_bf16_available():
        return list(RUNS[:2]), "this CPU has no native bfloat16: no bf16 run"
    return list(RUNS), ""


def _read(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


# ---------------------------------------------------------------------------------- sections


def per_window(
    onnx_path: Path,
    case: Path,
    reps: int,
    threads: int,
    patch: tuple[int, int, int],
    label: str = "Seed-size tumor network (random weights",
) -> list[str]:
    """Seconds per window of one model on every runtime, interleaved in one process."""
    import SimpleITK as sitk

    from breastai.inference import OnnxModel, n_windows
    from breastai.postprocess import bounding_box
    from breastai.preprocess import resample_to_spacing

    runs, note = _runs()
    models, load_s = {}, {}
    for run in runs:
        t0 = time.perf_counter()
        models[run] = OnnxModel(
            onnx_path, device="cpu", threads=threads, runtime=run[0], precision=run[1]
        )
        load_s[run] = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    feed = {
        "phases": rng.random((1, 6, 1, *patch), dtype=np.float32),
        "time_mask": np.ones((1, 6), np.float32),
    }
    outs = {run: m.run(feed) for run, m in models.items()}  # warm-up
    times: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    for _ in range(reps):
        for run, m in models.items():
            t0 = time.perf_counter()
            m.run(feed)
            times[run].append(time.perf_counter() - t0)
    med = {run: statistics.median(t) for run, t in times.items()}
    ref = outs[RUNS[0]]
    del models  # free their memory before the pipeline children run

    truth = sitk.ReadImage(str(case / "truth" / "breast.nii.gz"))
    grid = resample_to_spacing(sitk.Cast(truth, sitk.sitkFloat32), (1.0, 1.0, 1.0))
    shape = sitk.GetArrayViewFromImage(grid).shape
    box = bounding_box(truth, grid, margin_mm=8.0)
    stride = tuple(p // 2 for p in patch)
    n = n_windows(shape, patch, stride, box)
    lines = [
        f"{label}, {patch[0]}x{patch[1]}x{patch[2]}, 6 phases, "
        f"batch 1), CPU {threads or os.cpu_count()} threads, median of {reps} interleaved runs; "
        f"projection: {n} windows (stride half the patch, vote) over the breast box (+8 mm) of "
        f"one demo study (1 mm grid {shape}). Load average {os.getloadavg()[0]:.1f}.",
        "",
        "| runtime | s per window | vs ONNX Runtime | s per case (windows x s) | load s "
        "| max abs p diff vs ORT |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        diff = float(np.abs(outs[run] - ref).max())
        lines.append(
            f"| {_label(*run)} | {med[run]:.3f} | {med[RUNS[0]] / med[run]:.2f}x faster | "
            f"{n * med[run]:.0f} | {load_s[run]:.1f} | {diff:.1e} |"
        )
    if note:
        lines += ["", f"Not run: {note}."]
    return lines


def _pipeline_children(
    cases: list[Path], work: Path, threads: int, tumor: str | None
) -> dict[tuple[str, str], dict[str, Any]]:
    runs, _ = _runs()
    res = {}
    for runtime, precision in runs:
        res[runtime, precision] = _child(
            "ours",
            {
                "cases": [str(c) for c in cases],
                "out": str(work / f"out-{runtime}-{precision}" / ("seed" if tumor else "demo")),
                "threads": threads,
                "tumor": tumor,
                "runtime": runtime,
                "precision": precision,
            },
        )
    return res


def pipeline(cases: list[Path], work: Path, threads: int, tumor: str | None = None) -> list[str]:
    """``segment_study`` per runtime (each in its own process): speed and mask agreement."""
    import SimpleITK as sitk

    from breastai.evaluate import union_on_grid

    runs, note = _runs()
    res = _pipeline_children(cases, work, threads, tumor)
    what = "seed-size tumor network (random weights)" if tumor else "bundled demo models"
    lines = [
        f"`segment_study`, {what}, {len(cases)} phantom studies, CPU "
        f"{threads or os.cpu_count()} threads, each runtime in its own process (in this order: "
        f"{', '.join(_label(*r) for r in runs)}). Seconds are medians over the studies; Dice "
        "is the mean over studies (against ONNX Runtime fp32's masks, and against the truth).",
        "",
        "| runtime | total s | breast s | tumor s | vs ORT (total / tumor) | peak RSS MB "
        "| breast Dice vs ORT | tumor Dice vs ORT | tumor Dice vs truth |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ref_rows = res[RUNS[0]]["rows"]

    def med(run: tuple[str, str], key: str) -> float:
        return statistics.median(r["timings"][key] for r in res[run]["rows"])

    for run in runs:
        d_b, d_t, d_truth = [], [], []
        for row, ref in zip(res[run]["rows"], ref_rows, strict=True):
            got_dir, ref_dir = Path(row["out_dir"]), Path(ref["out_dir"])
            for name, acc in (("breast", d_b), ("tumor", d_t)):
                got = sorted(got_dir.glob(f"{name}*.nii.gz"))
                exp = sorted(ref_dir.glob(f"{name}*.nii.gz"))
                acc.append(
                    statistics.mean(
                        _dice(_read(g), _read(e)) for g, e in zip(got, exp, strict=True)
                    )
                )
            case = next(c for c in cases if c.name == row["case"])
            truth = sitk.ReadImage(str(case / "truth" / "tumor.nii.gz"))
            # split-bilateral outputs (tumor_R, tumor_L) are scored as their union
            found = union_on_grid(sorted(got_dir.glob("tumor*.nii.gz")), truth)
            d_truth.append(_dice(sitk.GetArrayFromImage(found), sitk.GetArrayFromImage(truth)))
        lines.append(
            f"| {_label(*run)} | {med(run, 'total'):.2f} | {med(run, 'breast'):.2f} | "
            f"{med(run, 'tumor'):.2f} | {med(RUNS[0], 'total') / med(run, 'total'):.2f}x / "
            f"{med(RUNS[0], 'tumor') / med(run, 'tumor'):.2f}x | "
            f"{res[run]['peak_rss_mb']:.0f} | {np.mean(d_b):.4f} | {np.mean(d_t):.4f} | "
            f"{np.mean(d_truth) if d_truth else float('nan'):.3f} |"
        )
    if note:
        lines += ["", f"Not run: {note}."]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="interleaved rounds per window")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (0 = all cores)")
    ap.add_argument("--cases", type=int, default=6, help="phantom studies for the demo models")
    ap.add_argument("--seed-size-full", action="store_true", help="seed-size through segment")
    ap.add_argument("--smoke", action="store_true", help="small network, 1 study, 1 rep (CI)")
    ap.add_argument("--work", type=Path, help="work folder (default: a temp folder, kept)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="breastai-runtimes-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# bench/runtimes.py  (work folder {work})\n")
    from breastai.phantom import LAYOUTS, PRESETS

    n = 1 if args.smoke else args.cases
    presets = list(PRESETS)
    cases = [
        _make_demo(
            work,
            i,
            layout=LAYOUTS[i % len(LAYOUTS)],
            preset=presets[i % len(presets)] if i else "default",
            orientation="axial",
        )
        for i in range(n)
    ]
    if args.smoke:
        onnx_path = Path(HERE.parent / "breastai" / "models" / "demo-tumor.onnx")
        lines = per_window(
            onnx_path, cases[0], 1, args.threads, (16, 48, 48), "SMOKE: demo-tumor (trained"
        )
        print("\n".join(lines) + "\n")
    else:
        onnx_path = seed_size_model(work)
        print("\n".join(per_window(onnx_path, cases[0], args.reps, args.threads, (32, 96, 96))))
        print()
    print("\n".join(pipeline(cases, work, args.threads)) + "\n")
    if args.seed_size_full and not args.smoke:
        print("\n".join(pipeline(cases[:1], work, args.threads, tumor=str(onnx_path))) + "\n")
    print(f"held-out seeds {HELD_OUT_SEED}..{HELD_OUT_SEED + n - 1}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
