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
    cases: list[str],
    out: str,
    threads: int,
    tumor: str | None,
    breast: str | None = None,
    runtime: str = "auto",
    precision: str = "fp32",
) -> dict[str, Any]:
    from breastai.pipeline import Settings, load_models, segment_study

    settings = Settings(
        device="cpu",
        threads=threads,
        weights=tumor,
        breast_weights=breast,
        force=True,
        runtime=runtime,
        precision=precision,
    )
    t0 = time.perf_counter()
    models = load_models(settings)
    load_s = time.perf_counter() - t0
    rows = []
    for c in cases:
        # every case's study folder is called dicom: one output folder per case
        res = segment_study(
            Path(c) / "dicom", out_dir=Path(out) / Path(c).name, settings=settings, models=models
        )
        man = json.loads((res.out_dir / "manifest.json").read_text())
        rows.append(
            {
                "case": Path(c).name,
                "timings": res.timings_s,
                "windows": man["windows"],
                "provider": man["device"]["provider"],
                "out_dir": str(res.out_dir),
            }
        )
    return {"load_models_s": load_s, "rows": rows, "peak_rss_mb": _hwm_mb()}


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
    return {"engine": engine, "rows": rows, "peak_rss_mb": _hwm_mb()}


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
    work: Path,
    threads: int,
    breast: str | None = None,
    *,
    full: bool = False,
    reuse: bool = False,
    tumor_ckpt: str | None = None,
    n_cases: int = 6,
) -> list[str]:
    if reuse:  # per-window vs encoder-feature reuse (+ a small trained network if given)
        case = _make_demo(work, 0, layout="ge", preset="default", orientation="axial")
        return _seed_size_reuse(work, case, threads, tumor_ckpt, n_cases)

    onnx_path = seed_size_model(work)
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


def seed_size_model(work: Path) -> Path:
    """The authors' full-size network with seeded random weights as ONNX (702 MB; made once per
    work folder, with a model card beside it: the seed's 32x96x96 windows at 1 mm, vote)."""
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
    return onnx_path


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


def _hwm_mb() -> float:
    """Peak RSS of this process since exec (VmHWM; ru_maxrss of a child started by a large
    parent also counts the parent's pages at fork time)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return _rss_mb()


def _feature_inputs(case: Path, spacing: tuple[float, float, float], folder: Path) -> Path:
    """Tumor-model input of a demo study on the model grid (as the pipeline prepares it), its
    time mask, the breast box (true breast mask + 8 mm) and the true tumor, saved to one .npz."""
    out = folder / f"inputs-{case.name}-{spacing[0]:g}mm.npz"
    if out.exists():
        return out
    import SimpleITK as sitk

    from breastai.io import load_study
    from breastai.postprocess import bounding_box
    from breastai.preprocess import (
        assemble_slots,
        normalise_seed,
        resample_to_reference,
        resample_to_spacing,
    )

    study = load_study(case / "dicom")
    grid = resample_to_spacing(
        study.reference.image, spacing, interpolator="linear", canonical=True
    )
    arrays = [
        sitk.GetArrayFromImage(resample_to_reference(p.image, grid)).astype(np.float32)
        for p in study.phases[:6]
    ]
    stacked, mask = assemble_slots(normalise_seed(arrays), 6)
    truth = sitk.ReadImage(str(case / "truth" / "breast.nii.gz"))
    box = bounding_box(truth, grid, margin_mm=8.0)
    tumor = resample_to_reference(
        sitk.ReadImage(str(case / "truth" / "tumor.nii.gz")), grid, interpolator="nearest",
        extrapolate=False,
    )  # fmt: skip
    np.savez(
        out,
        volume=stacked.reshape(6, 1, *stacked.shape[-3:]).astype(np.float32),
        time_mask=mask.astype(np.float32),
        box=np.asarray(box, dtype=np.int64),
        tumor=sitk.GetArrayFromImage(tumor) > 0,
    )
    return out


def _replaying(outputs: list[np.ndarray]) -> Any:
    it = iter(outputs)
    return lambda *_: next(it)


def child_window(
    inputs: str, onnx: str, patch: list[int], stride: list[int], threads: int, out: str
) -> dict[str, Any]:
    """Per-window reference: the full network on every window (sliding_window, vote)."""
    from breastai.inference import OnnxModel, n_windows, sliding_window

    data = dict(np.load(inputs))
    roi = [tuple(int(v) for v in r) for r in data["box"]]
    model = OnnxModel(Path(onnx), device="cpu", threads=threads)
    predict = model.predictor(time_mask=data["time_mask"])
    cache: list[np.ndarray] = []

    def recording(batch: np.ndarray) -> np.ndarray:
        cache.append(predict(batch))
        return cache[-1]

    t0 = time.perf_counter()
    vote = sliding_window(data["volume"], recording, patch, stride, blend="vote", roi=roi)
    seconds = time.perf_counter() - t0
    rss = _hwm_mb()
    mean = sliding_window(data["volume"], _replaying(cache), patch, stride, blend="mean", roi=roi)
    np.savez(out, vote=vote, mean=mean)
    n = n_windows(data["volume"].shape[-3:], patch, stride, roi)
    return {"seconds": seconds, "windows": n, "peak_rss_mb": rss}


def child_features(
    inputs: str,
    encoder: str,
    head: str,
    patch: list[int],
    stride: list[int],
    threads: int,
    out: str,
    max_block_voxels: int | None = None,
) -> dict[str, Any]:
    """Encoder-feature reuse: encoder once per phase over the tiled region, head per window."""
    from breastai.inference import (
        ENCODER_BLOCK_VOXELS,
        OnnxModel,
        feature_grid,
        feature_predictors,
        sliding_window_features,
    )

    data = dict(np.load(inputs))
    roi = [tuple(int(v) for v in r) for r in data["box"]]
    encode, run_head = feature_predictors(
        OnnxModel(Path(encoder), device="cpu", threads=threads, cpu_mem_arena=False),
        OnnxModel(Path(head), device="cpu", threads=threads),
    )
    spent = {"encoder": 0.0, "head": 0.0}
    cache: list[np.ndarray] = []

    def timed_encode(pair: np.ndarray, with_skips: bool) -> Any:
        t = time.perf_counter()
        res = encode(pair, with_skips)
        spent["encoder"] += time.perf_counter() - t
        return res

    def timed_head(feed: Any) -> np.ndarray:
        t = time.perf_counter()
        cache.append(run_head(feed))
        spent["head"] += time.perf_counter() - t
        return cache[-1]

    blocks = max_block_voxels or ENCODER_BLOCK_VOXELS
    kw = {"roi": roi, "max_block_voxels": blocks}
    t0 = time.perf_counter()
    vote = sliding_window_features(
        data["volume"], data["time_mask"], timed_encode, timed_head, patch, stride,
        blend="vote", **kw,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    rss = _hwm_mb()
    mean = sliding_window_features(
        data["volume"], data["time_mask"], encode, _replaying(cache), patch, stride,
        blend="mean", **kw,
    )  # fmt: skip
    np.savez(out, vote=vote, mean=mean)
    grid = feature_grid(data["volume"].shape[-3:], patch, stride, roi)
    return {
        "seconds": seconds,
        "encoder_s": spent["encoder"],
        "head_s": spent["head"],
        "windows": grid.n_windows,
        "tiled_zyx": list(grid.shape),
        "stride": list(grid.stride_zyx),
        "block_voxels": blocks,
        "peak_rss_mb": rss,
    }


def child_costs(
    inputs: str, onnx: str, encoder: str, head: str, threads: int, rounds: int = 5
) -> dict[str, Any]:
    """Interleaved timing in one process (load drift cancels): the full network on one window,
    the head on one window, and the encoder on one phase over the whole tiled region."""
    from breastai.inference import OnnxModel, feature_grid, feature_predictors

    data = dict(np.load(inputs))
    vol, tm = data["volume"], data["time_mask"]
    roi = [tuple(int(v) for v in r) for r in data["box"]]
    full = OnnxModel(Path(onnx), device="cpu", threads=threads)
    encode, run_head = feature_predictors(
        OnnxModel(Path(encoder), device="cpu", threads=threads, cpu_mem_arena=False),
        OnnxModel(Path(head), device="cpu", threads=threads),
    )
    predict = full.predictor(time_mask=tm)
    window = np.ascontiguousarray(vol[None, :, :, :32, :96, :96])
    pair = np.concatenate([window[:, 2], window[:, 2] - window[:, 0]], axis=1)
    feats = encode(pair, True)
    bridges = np.repeat(feats["bridge"][:, None], vol.shape[0], axis=1)
    feed = {"bridges": bridges, **{f"skip{k}": feats[f"skip{k}"] for k in range(1, 5)}}
    feed["time_mask"] = tm[None]
    g = feature_grid(vol.shape[-3:], (32, 96, 96), (16, 48, 48), roi)
    (z0, z1), (y0, y1), (x0, x1) = g.extent
    region = vol[:, 0, max(0, z0) : z1, max(0, y0) : y1, max(0, x0) : x1]
    big = np.zeros((1, 2, *g.shape), np.float32)
    big[0, 0, : region.shape[1], : region.shape[2], : region.shape[3]] = region[2]
    big[0, 1, : region.shape[1], : region.shape[2], : region.shape[3]] = region[2] - region[0]
    predict(window)
    run_head(feed)
    t: dict[str, list[float]] = {"full": [], "head": [], "encoder": []}
    for r in range(rounds):
        for name, fn in (("full", lambda: predict(window)), ("head", lambda: run_head(feed))):
            t0 = time.perf_counter()
            fn()
            t[name].append(time.perf_counter() - t0)
        if r < 2:
            t0 = time.perf_counter()
            encode(big, r == 0)
            t["encoder"].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in t.items()}
    return {
        **med,
        "windows": g.n_windows,
        "tiled_zyx": list(g.shape),
        "encoded_phases": int((tm != 0).sum()),
    }


def _agreement(ref: Path, got: Path, inputs: Path) -> dict[str, float]:
    """max |p| difference, flips at 0.5 and Dice, inside the breast box; + Dice vs true tumor."""
    box = np.load(inputs)["box"]
    sl = tuple(slice(int(a), int(b)) for a, b in box)
    tumor = np.load(inputs)["tumor"][sl]
    a, b = np.load(ref), np.load(got)
    res: dict[str, float] = {}
    for blend, cut in (("mean", lambda p: p >= 0.5), ("vote", lambda p: p > 0.5)):
        pa, pb = a[blend][sl], b[blend][sl]
        ma, mb = cut(pa), cut(pb)
        res[f"{blend}_max_diff"] = float(np.abs(pa - pb).max())
        res[f"{blend}_mean_diff"] = float(np.abs(pa - pb).mean())
        res[f"{blend}_flipped"] = float((ma != mb).mean())
        res[f"{blend}_dice"] = _dice(ma, mb)
        res[f"{blend}_fg_ref"] = float(ma.mean())
        res[f"{blend}_fg_got"] = float(mb.mean())
        res[f"{blend}_truth_dice_ref"] = _dice(ma, tumor)
        res[f"{blend}_truth_dice_got"] = _dice(mb, tumor)
    return res


def _export_pair(net: Any, folder: Path, stem: str) -> tuple[Path, Path, Path]:
    from breastai.training.export import export_feature_onnx, export_onnx

    full = folder / f"{stem}.onnx"
    enc, head = folder / f"{stem}.encoder.onnx", folder / f"{stem}.head.onnx"
    if not full.exists():
        export_onnx(net, full, force=True, verify=False)
    if not (enc.exists() and head.exists()):
        export_feature_onnx(net, enc, head, force=True, verify=False)
    return full, enc, head


def _seed_size_reuse(
    work: Path, case: Path, threads: int, tumor_ckpt: str | None = None, n_cases: int = 6
) -> list[str]:
    """Per-window vs encoder-feature reuse, same run, each in its own process (peak RSS); then,
    with a trained checkpoint, agreement and Dice against the phantom truth on ``n_cases``."""
    import torch

    from breastai.training.networks import SeedTumorConfig, SeedTumorNet

    folder = work / "seed-size"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    seed = SeedTumorNet(SeedTumorConfig()).eval()
    full, enc, head = _export_pair(seed, folder, "seed-random")
    del seed
    patch, stride = [32, 96, 96], [16, 48, 48]
    inputs = _feature_inputs(case, (1.0, 1.0, 1.0), folder)
    common = {"inputs": str(inputs), "patch": patch, "stride": stride, "threads": threads}
    r_win, r_feat = folder / "seed-window.npz", folder / "seed-features.npz"
    win = _child("window", {**common, "onnx": str(full), "out": str(r_win)})
    feat = _child(
        "features", {**common, "encoder": str(enc), "head": str(head), "out": str(r_feat)}
    )
    ag = _agreement(r_win, r_feat, inputs)
    costs = _child(
        "costs",
        {"inputs": str(inputs), "onnx": str(full), "encoder": str(enc), "head": str(head),
         "threads": threads},
    )  # fmt: skip
    print(json.dumps({"window": win, "features": feat, "agreement": ag, "costs": costs}))
    n_win, n_enc = costs["windows"], costs["encoded_phases"]
    per_window_model = n_win * costs["full"]
    reuse_model = n_enc * costs["encoder"] + n_win * costs["head"]
    ratio_model = per_window_model / reuse_model
    nthreads = threads or os.cpu_count()
    lines = [
        "Seed-size tumor network (176 M parameters, random weights, 32x96x96 at 1 mm, stride "
        f"16x48x48, vote), CPU ONNX Runtime, {nthreads} threads, batch 1, one demo study "
        f"({case.name}), windows over the breast box (true breast mask + 8 mm; tiled region "
        f"{'x'.join(map(str, feat['tiled_zyx']))}, one encoder block); per-window "
        "(`sliding_window`, full network per window) and encoder-feature reuse "
        "(`sliding_window_features`) each in its own process, same run:",
        "",
        "| mode | windows | s per case | of which encoder / head | s per window | peak RSS MB |",
        "|---|---|---|---|---|---|",
        f"| per-window | {win['windows']} | {win['seconds']:.1f} | - | "
        f"{win['seconds'] / win['windows']:.2f} | {win['peak_rss_mb']:.0f} |",
        f"| feature reuse | {feat['windows']} | {feat['seconds']:.1f} | {feat['encoder_s']:.1f} "
        f"/ {feat['head_s']:.1f} | {feat['head_s'] / feat['windows']:.2f} (head) | "
        f"{feat['peak_rss_mb']:.0f} |",
        f"| **ratio** | | **{win['seconds'] / feat['seconds']:.2f}x faster** | | | "
        f"{feat['peak_rss_mb'] / win['peak_rss_mb']:.2f}x |",
        "",
        "The two processes ran minutes apart on a shared machine, so their ratio carries the "
        "load drift. Interleaved in one process (median of 5 rounds, encoder of 2): full "
        f"network {costs['full']:.2f} s per window, head {costs['head']:.2f} s per window, "
        f"encoder {costs['encoder']:.2f} s per phase over the tiled region: per-window "
        f"{n_win} x {costs['full']:.2f} = {per_window_model:.0f} s vs reuse {n_enc} x "
        f"{costs['encoder']:.2f} + {n_win} x {costs['head']:.2f} = {reuse_model:.0f} s, "
        f"**{ratio_model:.2f}x**; at the idle 1.74 s per window of performance-notes.md "
        f"({n_win * 1.74:.0f} s per window-wise case) that is "
        f"**{n_win * 1.74 / ratio_model:.0f} s per case** (goal <= 90 s).",
        "",
        "Agreement inside the breast box (random weights: nearly everything is foreground, so "
        "these say little about a trained model): max |p diff| "
        f"{ag['mean_max_diff']:.3g} (window outputs averaged: 'mean'), mean |p diff| "
        f"{ag['mean_mean_diff']:.2g}; flipped at 0.5: {100 * ag['mean_flipped']:.2f} % (mean) / "
        f"{100 * ag['vote_flipped']:.2f} % (vote); Dice between the masks "
        f"{ag['mean_dice']:.4f} (mean) / {ag['vote_dice']:.4f} (vote); foreground "
        f"{100 * ag['vote_fg_ref']:.1f} % / {100 * ag['vote_fg_got']:.1f} % of the box.",
    ]
    if tumor_ckpt:
        lines += ["", *_reuse_trained_cases(work, Path(tumor_ckpt), threads, n_cases)]
    return lines


def _reuse_trained_cases(work: Path, ckpt: Path, threads: int, n: int) -> list[str]:
    """A small trained tumor network on n phantom studies: per-window (pipeline placement and
    the same 16-aligned windows as reuse) vs reuse; Dice against the true tumor."""
    from breastai.inference import (
        OnnxModel,
        feature_grid,
        feature_predictors,
        sliding_window,
        sliding_window_features,
    )
    from breastai.inference.experimental_reuse import region
    from breastai.phantom import PRESETS
    from breastai.training.export import load_trained_network

    folder = work / "seed-size"
    net, opts = load_trained_network(ckpt)
    full, enc, head = _export_pair(net, folder, "trained-small")
    sp = tuple(float(v) for v in opts.spacing_zyx)
    patch = tuple(int(v) for v in opts.patch_zyx)
    card = tuple(int(v) for v in opts.stride_zyx)
    stride = tuple(max(16, v // 16 * 16) for v in card)
    m_full = OnnxModel(full, device="cpu", threads=threads)
    encode, run_head = feature_predictors(
        OnnxModel(enc, device="cpu", threads=threads, cpu_mem_arena=False),
        OnnxModel(head, device="cpu", threads=threads),
    )
    presets = [p for p in PRESETS if p != "default"]
    lines = [
        f"Small trained tumor network ({ckpt.parent.name}/{ckpt.name}: seed architecture, "
        f"{dict(opts.network)}, {'x'.join(map(str, patch))} at {sp[0]:g} mm), vote blending, "
        f"{n} held-out phantom studies (seeds {HELD_OUT_SEED}+i), breast box from the true "
        f"breast mask. Stride {stride} (the card's {card} rounded down to multiples of 16) for "
        "every mode; 'per-window' = `sliding_window` as the pipeline runs it (last window flush "
        "with the crop), 'aligned' = per-window on exactly the windows reuse uses:",
        "",
        "| case | truth ml | Dice vs truth: per-window / aligned / reuse | reuse vs aligned: "
        "Dice, flipped % of box, max abs p diff (mean) | s: per-window / reuse |",
        "|---|---|---|---|---|",
    ]
    agg = []
    for i in range(n):
        preset = "default" if i == 0 else presets[(i - 1) % len(presets)]
        try:
            case = _make_demo(work, i, layout="ge", preset=preset, orientation="axial")
        except Exception as exc:  # a preset the generator refuses with these options
            lines.append(f"| {i} {preset} | generator failed: {exc} | | | |")
            continue
        d = dict(np.load(_feature_inputs(case, (sp[0], sp[1], sp[2]), folder)))
        vol, tm, tumor = d["volume"], d["time_mask"], d["tumor"]
        box = [(int(a), int(b)) for a, b in d["box"]]
        sl = tuple(slice(a, b) for a, b in box)
        pred = m_full.predictor(time_mask=tm)
        t0 = time.perf_counter()
        p_win = sliding_window(vol, pred, patch, stride, blend="vote", roi=box)
        t1 = time.perf_counter()
        res = {}
        for blend in ("vote", "mean"):
            res[blend] = sliding_window_features(
                vol, tm, encode, run_head, patch, stride, blend=blend, roi=box
            )
            if blend == "vote":
                t2 = time.perf_counter()
        g = feature_grid(vol.shape[-3:], patch, stride, box)
        lo, hi = [a for a, _ in g.extent], [b for _, b in g.extent]
        sub = region(vol, lo, hi)
        aligned = {}
        for blend in ("vote", "mean"):
            full_out = np.zeros(vol.shape[-3:], np.float32)
            out_sub = sliding_window(sub, pred, patch, stride, blend=blend)
            src = tuple(
                slice(max(0, -a), max(0, -a) + min(n_, b) - max(0, a))
                for a, b, n_ in zip(lo, hi, vol.shape[-3:], strict=True)
            )
            dst = tuple(
                slice(max(0, a), min(n_, b))
                for a, b, n_ in zip(lo, hi, vol.shape[-3:], strict=True)
            )
            full_out[dst] = out_sub[src]
            aligned[blend] = full_out
        t_mask = tumor[sl]
        w_mask = p_win[sl] > 0.5
        a_mask, r_mask = aligned["vote"][sl] > 0.5, res["vote"][sl] > 0.5
        row = (
            _dice(w_mask, t_mask),
            _dice(a_mask, t_mask),
            _dice(r_mask, t_mask),
            _dice(a_mask, r_mask),
            float((a_mask != r_mask).mean()),
            float(np.abs(aligned["mean"][sl] - res["mean"][sl]).max()),
        )
        agg.append(row)
        ml = float(tumor.sum()) * float(np.prod(sp)) / 1000.0
        lines.append(
            f"| {case.name} | {ml:.1f} | {row[0]:.3f} / {row[1]:.3f} / {row[2]:.3f} | "
            f"{row[3]:.3f}, {100 * row[4]:.3f} %, {row[5]:.3f} | {t1 - t0:.1f} / {t2 - t1:.1f} |"
        )
    if agg:
        a = np.asarray(agg)
        lines.append(
            f"| **mean of {len(agg)}** | | **{a[:, 0].mean():.3f} / {a[:, 1].mean():.3f} / "
            f"{a[:, 2].mean():.3f}** | **{a[:, 3].mean():.3f}, {100 * a[:, 4].mean():.3f} %, "
            f"{a[:, 5].mean():.3f}** | |"
        )
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
    ap.add_argument(
        "--seed-size-reuse",
        action="store_true",
        help="seed-size section: per-window vs encoder-feature reuse, same run (+ agreement; "
        "with --tumor-ckpt also for that small trained network)",
    )
    ap.add_argument(
        "--reuse-cases", type=int, default=6, help="phantom studies for --seed-size-reuse"
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
        fn = {
            "ours": child_ours,
            "naive": child_naive,
            "window": child_window,
            "features": child_features,
            "costs": child_costs,
        }[args._child]
        print(json.dumps(fn(**payload)))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="breastai-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# bench/segment.py  (work folder {work})\n")
    if not args.no_speed and args.cases > 0:
        print("\n".join(speed(work, args.cases, args.threads, args)) + "\n")
    if args.seed_size or args.seed_size_reuse:
        lines = seed_size(
            work,
            args.threads,
            args.breast_weights,
            full=args.seed_size_full,
            reuse=args.seed_size_reuse,
            tumor_ckpt=args.tumor_ckpt,
            n_cases=args.reuse_cases,
        )
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
