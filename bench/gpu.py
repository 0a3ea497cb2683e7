"""Network speed on a CUDA GPU (torch fp32 / fp16 / bf16) against ONNX Runtime CPU in the same run.

Why a separate script: the lent GPU machines (see the README's "GPU check" notes) have torch with
CUDA and a CPU-only ``onnxruntime``, no SimpleITK or pydicom, and no network; the
``onnxruntime-gpu`` wheel (~270 MB CUDA provider) cannot travel there. So the whole ``breastai
segment`` job cannot run on them, but the networks can be timed with torch on CUDA, which bounds
what ONNX Runtime's CUDA provider would do. This script imports only torch, numpy, onnxruntime
and ``breastai.training.networks``/``export`` (no SimpleITK), and writes its table to
``--out`` (``$OUT`` on the device machine).

Run on the device machine (one call, ~3-5 min on an H100)::

    PYTHONUNBUFFERED=1 python3 bench/gpu.py --out $OUT

Here (CPU only) ``python bench/gpu.py --smoke`` checks that it still runs (tiny sizes, no CUDA
rows). Rows: seconds per window at batch 1 and 4 (median of ``--reps`` after warm-up, CUDA
synchronised), the speed-up over ONNX Runtime CPU at batch 1 in the same run, and the largest
absolute probability difference of fp16/bf16 against fp32 with the share of voxels that flip at
0.5. Seconds per case = windows per case x seconds per window (``--seed-windows``: 96, the
seed-size windows over the breast box of a demo study in bench/RESULTS.md).
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from breastai.training.export import example_inputs, export_onnx
from breastai.training.networks import (
    SeedTumorConfig,
    SeedTumorNet,
    UNet3D,
    UNet3DConfig,
)

# The shipped demo configurations (breastai.training.demo_weights.demo_plan, which needs
# SimpleITK and so cannot be imported on the device machine); checked against it where it can.
DEMO_TUMOR = {"filters": 8, "hidden": 32, "mlp": 64, "heads": 4, "spatial_layers": 1,
              "temporal_layers": 1, "slots": 6, "patch_zyx": (16, 48, 48)}  # fmt: skip
DEMO_BREAST = {"base": 8, "levels": 4, "patch_zyx": (32, 64, 64)}


def _demo_configs() -> tuple[dict[str, Any], dict[str, Any], str]:
    try:
        from breastai.training.demo_weights import demo_plan
    except ImportError as exc:
        return DEMO_TUMOR, DEMO_BREAST, f"demo_plan not importable ({exc}): built-in copy used"
    plan = demo_plan(0)
    tumor = dict(plan.tumor.network, patch_zyx=tuple(plan.tumor.patch_zyx))
    breast = dict(plan.breast.network, patch_zyx=tuple(plan.breast.patch_zyx))
    return tumor, breast, "configurations from demo_plan"


def _time(fn: Any, reps: int, sync: bool) -> float:
    fn()  # warm-up (cuDNN picks its kernels)
    if sync:
        torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def _ort_cpu(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], reps: int) -> float:
    import onnxruntime as ort

    names = ["phases", "time_mask"] if isinstance(model, SeedTumorNet) else ["image"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        export_onnx(model, path, verify=False)
        opts = ort.SessionOptions()
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {n: t[:1].numpy() for n, t in zip(names, inputs, strict=True)}
        return _time(lambda: sess.run(None, feed), reps, sync=False)


def bench(label: str, model: torch.nn.Module, reps: int, device: str) -> dict[str, Any]:
    model = model.eval()
    row: dict[str, Any] = {"label": label, "params": sum(p.numel() for p in model.parameters())}
    cpu_inputs = example_inputs(model, batch=4)
    row["patch"] = tuple(cpu_inputs[0].shape[-3:])
    row["ort_cpu_b1"] = _ort_cpu(model, cpu_inputs, reps)
    m = model.to(device)
    sync = device == "cuda"
    with torch.no_grad():
        for b in (1, 4):
            x = tuple(t[:b].to(device) for t in cpu_inputs)
            row[f"fp32_b{b}"] = _time(lambda x=x: m(*x), reps, sync=sync)
            for name, dt in (("fp16", torch.float16), ("bf16", torch.bfloat16)):

                def run(x: tuple[torch.Tensor, ...] = x, dt: torch.dtype = dt) -> torch.Tensor:
                    with torch.autocast(device, dtype=dt):
                        out: torch.Tensor = m(*x)
                    return out

                row[f"{name}_b{b}"] = _time(run, reps, sync=sync)
        x1 = tuple(t[:1].to(device) for t in cpu_inputs)
        ref = m(*x1).float()
        for name, dt in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
            with torch.autocast(device, dtype=dt):
                got = m(*x1).float()
            row[f"{name}_maxdiff"] = float((got - ref).abs().max())
            row[f"{name}_flip"] = float(((got > 0.5) != (ref > 0.5)).float().mean())
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", type=Path, help="folder for gpu.md (default: print only)")
    ap.add_argument("--seed-windows", type=int, default=96)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on CPU (checks it runs)")
    args = ap.parse_args()
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    tumor_cfg, breast_cfg, cfg_note = _demo_configs()
    models: list[tuple[str, torch.nn.Module]] = []
    if args.smoke:
        small = SeedTumorConfig(filters=2, hidden=16, mlp=16, heads=2, spatial_layers=1,
                                temporal_layers=1, patch_zyx=(16, 16, 16))  # fmt: skip
        models.append(("smoke tumor", SeedTumorNet(small)))
        args.reps = 1
    else:
        models.append(("seed tumor, full size (hidden 768, 12+12 layers)", SeedTumorNet()))
        models.append(("demo-tumor configuration", SeedTumorNet(SeedTumorConfig(**tumor_cfg))))
        models.append(("demo-breast configuration", UNet3D(UNet3DConfig(**breast_cfg))))
    rows = [bench(label, m, args.reps, device) for label, m in models]
    lines = [
        f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'CPU (no CUDA)'}; torch "
        f"{torch.__version__}; {os.cpu_count()} CPU cores for ONNX Runtime; median of {args.reps}"
        f" after warm-up; {cfg_note}.",
        "",
        f"| Model | Params | Patch | ORT CPU b1 (s) | torch {device} fp32 b1 | fp16 b1 | bf16 b1 "
        "| fp32 b4 (per window) | fp16 b4 (per window) | fp32 speed-up vs ORT CPU "
        "| fp16 max diff / flipped |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['params'] / 1e6:.2f} M | {r['patch']} | {r['ort_cpu_b1']:.3f} "
            f"| {r['fp32_b1']:.4f} | {r['fp16_b1']:.4f} | {r['bf16_b1']:.4f} "
            f"| {r['fp32_b4'] / 4:.4f} | {r['fp16_b4'] / 4:.4f} "
            f"| {r['ort_cpu_b1'] / r['fp32_b1']:.1f}x "
            f"| {r['fp16_maxdiff']:.1e} / {100 * r['fp16_flip']:.3f} % |"
        )
    if not args.smoke:
        seed = rows[0]
        lines += [
            "",
            f"Seed-size network per case ({args.seed_windows} windows): fp32 batch 4 "
            f"{args.seed_windows * seed['fp32_b4'] / 4:.1f} s, fp16 batch 4 "
            f"{args.seed_windows * seed['fp16_b4'] / 4:.1f} s (model time only; reading and "
            "resampling are CPU work measured in bench/segment.py).",
        ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
