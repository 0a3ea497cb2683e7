"""Benchmark of `breastai segment` (engineer S): speed on CPU against a naive baseline, the
seed-size tumor network, and accuracy of the demo weights on held-out phantom studies.

Usage (from the repository root)::

    python bench/segment.py                       # speed: 3 demo studies, ours vs naive baseline
    python bench/segment.py --accuracy 24         # + accuracy on 24 held-out phantoms
    python bench/segment.py --seed-size           # + the seed-size tumor network (random weights)
    python bench/segment.py --tumor-ckpt T/best.pt --breast-ckpt B/best.pt  # torch baseline

Sections (each prints a markdown table; ratios are computed inside one run):

* speed: per case and per stage seconds and peak RSS (each mode in its own child process) of
  ``segment_study`` with the bundled demo weights, against a naive baseline on the same studies:
  torch eager, every window of the whole volume for both models (no breast-box cropping), batch 1,
  same weights (from the training checkpoints ``best.pt``; without them the baseline runs the same
  ONNX files in ONNX Runtime over every window and says so), same preprocessing; the baseline
  writes nothing (in its favour).
* seed-size: the authors' full-size tumor network (176 M parameters, random weights) exported to
  ONNX and run through the pipeline on one demo study (CPU s per case; goal <= 90 s on 2 cores).
* accuracy: N held-out phantom studies (seeds 900000 + i; the training set must not use them),
  cycling through every layout, preset and orientation; tumor and breast Dice against the
  phantom's ground truth, with and without the breast mask, plus the tumor volume found outside
  the true breast (false positives at the heart and chest wall).

Research use only, not a medical device.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HELD_OUT_SEED = 900_000


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _make_demo(work: Path, i: int, *, layout: str, preset: str, orientation: str) -> Path:
    from breastai.phantom import make_demo_study

    out = work / f"case{i:03d}-{layout}-{preset}-{orientation}"
    if not (out / "dicom").exists():
        make_demo_study(
            out,
            layout=layout,
            preset=preset,
            seed=HELD_OUT_SEED + i,
            orientation=orientation,
            decoys=False,
        )
    return out


# ------------------------------------------------------------------------------ child: ours


def child_ours(
    cases: list[str], out: str, threads: int, tumor: str | None, breast: str | None = None
) -> dict[str, Any]:
    from breastai.pipeline import Settings, load_models, segment_study

    settings = Settings(
        device="cpu", threads=threads, weights=tumor, breast_weights=breast, force=True
    )
    t0 = time.perf_counter()
    models = load_models(settings)
    load_s = time.perf_counter() - t0
    rows = []
    for c in cases:
        res = segment_study(Path(c) / "dicom", out_dir=Path(out), settings=settings, models=models)
        man = json.loads((res.out_dir / "manifest.json").read_text())
        rows.append({"case": Path(c).name, "timings": res.timings_s, "windows": man["windows"]})
    return {"load_models_s": load_s, "rows": rows, "peak_rss_mb": _rss_mb()}


# ----------------------------------------------------------------------------- child: naive


def _torch_predictors(breast_ckpt: str | None, tumor_ckpt: str | None, threads: int) -> Any:
    import torch

    from breastai.training.export import load_trained_network

    torch.set_num_threads(max(1, threads or os.cpu_count() or 1))
    if not (breast_ckpt and tumor_ckpt):
        return None
    b, _ = load_trained_network(Path(breast_ckpt))
    t, _ = load_trained_network(Path(tumor_ckpt))

    def pb(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return b(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    def make_pt(mask: np.ndarray) -> Any:
        tm = torch.from_numpy(mask[None].astype(np.float32))

        def pt(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                xt = torch.from_numpy(np.ascontiguousarray(x))
                return t(xt, tm.repeat(xt.shape[0], 1)).numpy()

        return pt

    return pb, make_pt


def child_naive(
    cases: list[str],
    threads: int,
    breast_ckpt: str | None,
    tumor_ckpt: str | None,
    tumor: str | None = None,
    breast: str | None = None,
) -> dict[str, Any]:
    from breastai.inference import n_windows, sliding_window
    from breastai.pipeline import Settings, _prepare, load_models

    settings = Settings(device="cpu", threads=threads, weights=tumor, breast_weights=breast)
    models = load_models(settings)
    torch_pred = _torch_predictors(breast_ckpt, tumor_ckpt, threads)
    engine = (
        "torch eager (training checkpoints)" if torch_pred else "onnxruntime (no checkpoints given)"
    )
    rows = []
    for c in cases:
        t0 = time.perf_counter()
        prep = _prepare(Path(c) / "dicom", settings, models)
        t1 = time.perf_counter()
        bc, tc = models.breast.card, models.tumor.card
        pb = torch_pred[0] if torch_pred else models.breast.session.predictor()
        sliding_window(
            prep.breast_input, pb, bc.patch_zyx, bc.stride_zyx, blend=bc.blending, batch_size=1
        )
        t2 = time.perf_counter()
        pt = (
            torch_pred[1](prep.time_mask)
            if torch_pred
            else models.tumor.session.predictor(time_mask=prep.time_mask)
        )
        sliding_window(
            prep.tumor_input, pt, tc.patch_zyx, tc.stride_zyx, blend=tc.blending, batch_size=1
        )
        t3 = time.perf_counter()
        rows.append(
            {
                "case": Path(c).name,
                "timings": {
                    "read+preprocess": t1 - t0,
                    "breast": t2 - t1,
                    "tumor": t3 - t2,
                    "total": t3 - t0,
                },
                "windows": {
                    "breast": n_windows(prep.breast_input.shape[-3:], bc.patch_zyx, bc.stride_zyx),
                    "tumor": n_windows(prep.tumor_input.shape[-3:], tc.patch_zyx, tc.stride_zyx),
                },
            }
        )
    return {"engine": engine, "rows": rows, "peak_rss_mb": _rss_mb()}


def _child(mode: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Run one mode in a fresh interpreter (own peak RSS, no warm caches from the other mode)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(payload, f)
    cmd = [sys.executable, __file__, "--_child", mode, "--_payload", f.name]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    os.unlink(f.name)
    if proc.returncode != 0:
        raise SystemExit(f"child {mode} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------- sections


def speed(work: Path, n: int, threads: int, args: argparse.Namespace) -> list[str]:
    from breastai.phantom import LAYOUTS

    cases = [
        str(
            _make_demo(
                work, i, layout=LAYOUTS[i % len(LAYOUTS)], preset="default", orientation="axial"
            )
        )
        for i in range(n)
    ]
    w = {"tumor": args.weights, "breast": args.breast_weights}
    ours = _child("ours", {"cases": cases, "out": str(work / "out-speed"), "threads": threads, **w})
    naive = _child(
        "naive",
        {
            "cases": cases,
            "threads": threads,
            "breast_ckpt": args.breast_ckpt,
            "tumor_ckpt": args.tumor_ckpt,
            **w,
        },
    )
    lines = [
        f"Speed, CPU ({threads or os.cpu_count()} threads), demo weights, {n} demo studies "
        f"(96x256x256, 6 phases); baseline engine: {naive['engine']}",
        "",
        "| case | ours total s | read | preprocess | breast | tumor | postprocess | write | "
        "tumor windows (ours / full) | naive total s | naive windows (breast+tumor) | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for o, nv in zip(ours["rows"], naive["rows"], strict=True):
        t = o["timings"]
        r = nv["timings"]["total"] / t["total"]
        ratios.append(r)
        lines.append(
            f"| {o['case']} | {t['total']:.2f} | {t['read']:.2f} | {t['preprocess']:.2f} | "
            f"{t['breast']:.2f} | {t['tumor']:.2f} | {t['postprocess']:.2f} | {t['write']:.2f} | "
            f"{o['windows']['tumor']} / {o['windows']['tumor_full_volume']} | "
            f"{nv['timings']['total']:.2f} | {nv['windows']['breast']}+{nv['windows']['tumor']} | "
            f"{r:.2f}x |"
        )
    lines += [
        "",
        f"Median speed-up {np.median(ratios):.2f}x (goal >= 3x). Peak RSS: ours "
        f"{ours['peak_rss_mb']:.0f} MB, naive {naive['peak_rss_mb']:.0f} MB. Model loading "
        f"(once per run): {ours['load_models_s']:.2f} s.",
    ]
    return lines


def seed_size(
    work: Path, threads: int, breast: str | None = None, *, full: bool = False
) -> list[str]:
    import hashlib

    import torch

    from breastai.training.export import export_onnx
    from breastai.training.networks import SeedTumorConfig, SeedTumorNet

    folder = work / "seed-size"
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / "seed-size-random.onnx"
    if not onnx_path.exists():
        torch.manual_seed(0)
        net = SeedTumorNet(SeedTumorConfig()).eval()
        export_onnx(net, onnx_path, force=True, verify=False)
    sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    onnx_path.with_suffix(".toml").write_text(
        "[models.seed-size-random]\n"
        'task = "tumor"\nfilename = "seed-size-random.onnx"\n'
        f'sha256 = "{sha}"\ndemo = true\narchitecture = "seed-tumor"\n'
        "patch_zyx = [32, 96, 96]\nstride_zyx = [16, 48, 48]\nspacing_zyx = [1.0, 1.0, 1.0]\n"
        'phase_slots = 6\nnormalisation = "seed"\nblending = "vote"\nthreshold = 0.5\n'
    )
    case = _make_demo(work, 0, layout="ge", preset="default", orientation="axial")
    if not full:
        return _seed_size_estimate(case, onnx_path, threads)
    res = _child(
        "ours",
        {
            "cases": [str(case)],
            "out": str(work / "out-seed"),
            "threads": threads,
            "tumor": str(onnx_path),
            "breast": breast,
        },
    )
    row = res["rows"][0]
    t = row["timings"]
    return [
        "Seed-size tumor network (176 M parameters, random weights, 32x96x96 at 1 mm, vote), CPU "
        f"({threads or os.cpu_count()} threads), one demo study, whole pipeline:",
        "",
        "| total s | tumor s | tumor windows (breast box / full volume) | s per window "
        "| peak RSS MB |",
        "|---|---|---|---|---|",
        f"| {t['total']:.1f} | {t['tumor']:.1f} | {row['windows']['tumor']} / "
        f"{row['windows']['tumor_full_volume']} | "
        f"{t['tumor'] / max(1, row['windows']['tumor']):.2f} | {res['peak_rss_mb']:.0f} |",
        "",
        "Goal <= 90 s per case on 2 cores.",
    ]


def _seed_size_estimate(case: Path, onnx_path: Path, threads: int) -> list[str]:
    """Seconds per window (3 timed windows after one warm-up) x windows over the TRUE breast box."""
    import SimpleITK as sitk

    from breastai.inference import OnnxModel, n_windows
    from breastai.postprocess import bounding_box
    from breastai.preprocess import resample_to_spacing

    model = OnnxModel(onnx_path, device="cpu", threads=threads)
    rng = np.random.default_rng(0)
    x = rng.random((1, 6, 1, 32, 96, 96), dtype=np.float32)
    feed = {"phases": x, "time_mask": np.ones((1, 6), np.float32)}
    model.run(feed)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        model.run(feed)
        times.append(time.perf_counter() - t0)
    per = float(np.median(times))
    truth = sitk.ReadImage(str(case / "truth" / "breast.nii.gz"))
    grid = resample_to_spacing(sitk.Cast(truth, sitk.sitkFloat32), (1.0, 1.0, 1.0))
    shape = sitk.GetArrayViewFromImage(grid).shape
    box = bounding_box(truth, grid, margin_mm=8.0)
    counts = {
        "full volume, stride 16x48x48 (vote)": n_windows(shape, (32, 96, 96), (16, 48, 48)),
        "breast box, stride 16x48x48 (vote)": n_windows(shape, (32, 96, 96), (16, 48, 48), box),
        "breast box, stride 24x72x72 (25 % overlap)": n_windows(
            shape, (32, 96, 96), (24, 72, 72), box
        ),
    }
    lines = [
        "Seed-size tumor network (176 M parameters, random weights, exported to ONNX), CPU "
        f"({threads or os.cpu_count()} threads): {per:.2f} s per 32x96x96 window (median of 3, "
        f"ONNX Runtime, batch 1); windows on the 1 mm grid {shape} of a demo study "
        "(breast box from the phantom's true breast mask + 8 mm):",
        "",
        "| tiling | windows | tumor-model seconds per case (windows x s/window) |",
        "|---|---|---|",
    ]
    for k, n in counts.items():
        lines.append(f"| {k} | {n} | {n * per:.0f} |")
    lines += ["", "Goal <= 90 s per case on 2 cores (the tumor model is > 95 % of a case)."]
    return lines


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2.0 * (a & b).sum() / s)


def accuracy(
    work: Path, n: int, threads: int, weights: str | None = None, breast_weights: str | None = None
) -> list[str]:
    import SimpleITK as sitk

    from breastai.phantom import LAYOUTS, ORIENTATIONS, PRESETS
    from breastai.pipeline import Settings, load_models, segment_study
    from breastai.preprocess import resample_to_reference

    presets = list(PRESETS)
    coverage = (
        "every layout, preset and orientation"
        if n >= max(len(presets), len(LAYOUTS) * len(ORIENTATIONS))
        else f"REDUCED run: {n} < {len(presets)} presets, not every preset covered"
    )
    base = Settings(
        device="cpu",
        threads=threads,
        force=True,
        write_seg=False,
        write_preview=False,
        weights=weights,
        breast_weights=breast_weights,
    )
    models = load_models(base)
    lines = [
        f"Accuracy of the demo weights ({models.tumor.card.name} sha256 "
        f"{models.tumor.card.sha256[:12]}..., {models.breast.card.name}), {n} held-out phantom "
        f"studies (seeds {HELD_OUT_SEED}+i), {coverage}:",
        "",
        "| case | tumor Dice (breast mask) | tumor Dice (no mask) "
        "| FP ml outside breast (mask / no mask) | breast Dice |",
        "|---|---|---|---|---|",
    ]
    rows = []
    for i in range(n):
        layout, preset = LAYOUTS[i % len(LAYOUTS)], presets[i % len(presets)]
        orientation = ORIENTATIONS[(i // len(LAYOUTS)) % len(ORIENTATIONS)]
        try:
            case = _make_demo(work, i, layout=layout, preset=preset, orientation=orientation)
        except Exception as exc:  # a phantom combination the generator refuses
            lines.append(f"| {layout}/{preset}/{orientation} | generator failed: {exc} | | | |")
            continue
        out = {}
        for masked in (True, False):
            s = dataclasses.replace(base, use_breast_mask=masked)
            try:
                res = segment_study(
                    case / "dicom",
                    out_dir=work / f"out-acc-{int(masked)}",
                    settings=s,
                    models=models,
                )
            except Exception as exc:
                out[masked] = exc
                continue
            out[masked] = res
        if any(isinstance(v, Exception) for v in out.values()):
            err = next(v for v in out.values() if isinstance(v, Exception))
            lines.append(f"| {case.name} | failed: {err} | | | |")
            continue
        ref = sitk.ReadImage(str(out[True].out_dir / "tumor.nii.gz"))

        def truth(name: str, case: Path = case, ref: Any = ref) -> np.ndarray:
            img = sitk.ReadImage(str(case / "truth" / f"{name}.nii.gz"))
            img = resample_to_reference(img, ref, interpolator="nearest", extrapolate=False)
            return sitk.GetArrayFromImage(img) > 0

        t_true, b_true = truth("tumor"), truth("breast")
        voxel_ml = float(np.prod(ref.GetSpacing())) / 1000.0
        vals = {}
        for masked in (True, False):
            d = out[masked].out_dir
            t = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "tumor.nii.gz"))) > 0
            vals[masked] = (_dice(t, t_true), float((t & ~b_true).sum()) * voxel_ml)
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(out[True].out_dir / "breast.nii.gz"))) > 0
        bd = _dice(b, b_true)
        rows.append((vals[True][0], vals[False][0], vals[True][1], vals[False][1], bd))
        lines.append(
            f"| {case.name} | {vals[True][0]:.3f} | {vals[False][0]:.3f} | "
            f"{vals[True][1]:.2f} / {vals[False][1]:.2f} | {bd:.3f} |"
        )
    if rows:
        a = np.asarray(rows)
        lines.append(
            f"| **mean of {len(rows)}** | **{a[:, 0].mean():.3f}** | **{a[:, 1].mean():.3f}** | "
            f"**{a[:, 2].mean():.2f} / {a[:, 3].mean():.2f}** | **{a[:, 4].mean():.3f}** |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=3, help="demo studies for the speed section")
    ap.add_argument("--accuracy", type=int, default=0, help="held-out phantoms (0 = skip; >= 22)")
    ap.add_argument("--seed-size", action="store_true", help="run the seed-size network section")
    ap.add_argument(
        "--seed-size-full",
        action="store_true",
        help="seed-size section through the whole pipeline (slow) instead of per-window timing",
    )
    ap.add_argument("--no-speed", action="store_true", help="skip the speed section")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    ap.add_argument("--weights", help="tumor model (default: the bundled demo model)")
    ap.add_argument("--breast-weights", help="breast model (default: the bundled demo model)")
    ap.add_argument("--breast-ckpt", help="breast best.pt for the torch baseline")
    ap.add_argument("--tumor-ckpt", help="tumor best.pt for the torch baseline")
    ap.add_argument("--work", type=Path, help="work folder (default: a temp folder, kept)")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    ap.add_argument("--_payload", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        payload = json.loads(Path(args._payload).read_text())
        fn = {"ours": child_ours, "naive": child_naive}[args._child]
        print(json.dumps(fn(**payload)))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="breastai-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# bench/segment.py  (work folder {work})\n")
    if not args.no_speed and args.cases > 0:
        print("\n".join(speed(work, args.cases, args.threads, args)) + "\n")
    if args.seed_size:
        lines = seed_size(work, args.threads, args.breast_weights, full=args.seed_size_full)
        print("\n".join(lines) + "\n")
    if args.accuracy:
        print(
            "\n".join(
                accuracy(work, args.accuracy, args.threads, args.weights, args.breast_weights)
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
