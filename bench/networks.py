"""CPU time per patch at batch 1: torch eager vs ONNX Runtime, seed-size and demo networks.

Run: ``python bench/networks.py [--reps 3] [--threads 2] [--skip-seed]``. Prints a markdown table.
Runs are interleaved (torch, ORT, torch, ORT, ...) in one process so machine-load drift hits both
alike; the table gives the median per patch and the torch/ORT ratio. Random weights (timing does
not depend on the values); the demo rows use the demo configurations and, for ONNX Runtime, the
shipped files in breastai/models when present.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from breastai.training.export import example_inputs, export_onnx
from breastai.training.networks import SeedTumorConfig, SeedTumorNet, UNet3D, UNet3DConfig

ROOT = Path(__file__).resolve().parents[1]


def _session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def bench(
    label: str, model: torch.nn.Module, onnx_path: Path | None, reps: int, threads: int
) -> dict:
    model = model.eval()
    inputs = example_inputs(model, batch=1)
    names = ["phases", "time_mask"] if isinstance(model, SeedTumorNet) else ["image"]
    tmp = None
    if onnx_path is None or not onnx_path.is_file():
        tmp = tempfile.TemporaryDirectory()
        onnx_path = Path(tmp.name) / "m.onnx"
        export_onnx(model, onnx_path, verify=False)
    sess = _session(onnx_path, threads)
    feed = {n: t.numpy() for n, t in zip(names, inputs, strict=True)}
    t_torch, t_ort = [], []
    with torch.no_grad():
        ref = model(*inputs).numpy()  # warm-up
    got = sess.run(None, feed)[0]  # warm-up
    for _ in range(reps):
        t0 = time.perf_counter()
        with torch.no_grad():
            model(*inputs)
        t_torch.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sess.run(None, feed)
        t_ort.append(time.perf_counter() - t0)
    params = sum(p.numel() for p in model.parameters())
    diff = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("nan")
    if tmp is not None:
        tmp.cleanup()
    return {
        "label": label,
        "params": params,
        "patch": tuple(inputs[0].shape[-3:]),
        "torch": statistics.median(t_torch),
        "ort": statistics.median(t_ort),
        "diff": diff,
        "onnx_mb": None,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-seed", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from breastai.training.demo_weights import demo_plan

    plan = demo_plan(0)
    rows = []
    if not args.skip_seed:
        rows.append(
            bench(
                "seed tumor, full size (hidden 768, 12+12 layers)",
                SeedTumorNet(),
                None,
                args.reps,
                args.threads,
            )
        )
    tcfg = dict(plan.tumor.network, patch_zyx=plan.tumor.patch_zyx)
    rows.append(
        bench(
            "demo-tumor (filters 4, hidden 32, 1+1 layers), 2 mm",
            SeedTumorNet(SeedTumorConfig(**tcfg)),
            ROOT / "breastai" / "models" / "demo-tumor.onnx",
            args.reps,
            args.threads,
        )
    )
    bcfg = dict(plan.breast.network, patch_zyx=plan.breast.patch_zyx)
    rows.append(
        bench(
            "demo-breast (U-Net base 8, 4 levels), 4 mm",
            UNet3D(UNet3DConfig(**bcfg)),
            ROOT / "breastai" / "models" / "demo-breast.onnx",
            args.reps,
            args.threads,
        )
    )
    print(f"CPU: {os.cpu_count()} cores, {args.threads} threads, batch 1, median of {args.reps}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    print()
    head = "| Model | Params | Patch (z,y,x) | torch eager (s) | ONNX Runtime (s) | torch/ORT |"
    print(head + " max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['label']} | {r['params'] / 1e6:.2f} M | {r['patch']} | {r['torch']:.3f} | "
            f"{r['ort']:.3f} | {r['torch'] / r['ort']:.2f} | {r['diff']:.1e} |"
        )
    print("| CUDA fp32 / fp16 | - | - | not measured: no GPU in this session | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
