"""nnU-Net v2 inference on the CPU: `breastai predict` against `nnUNetv2_predict -device cpu`.

Usage (from the repository root; needs torch, nnunetv2 and, for the OpenVINO rows, openvino)::

    python bench/nnunet.py                 # a mid-size 3d_fullres PlainConvUNet, one 2-channel case
    python bench/nnunet.py --no-tta        # the same without mirroring
    python bench/nnunet.py --smoke         # tiny; CI runs it (tests/test_bench_nnunet.py)

One model folder is written the way nnunetv2 writes it (tests/nnunet_factory.py: nnunetv2 builds
the PlainConvUNet from the plans, a few training steps, checkpoint_final.pth) and imported with
`breastai import-weights --nnunet`. The same case (a 2-phase per-phase NIfTI study; nnU-Net gets the
derived channel files pre and sub1) then goes through, each in its own process and in one run:

* ``nnUNetv2_predict -d ... -c 3d_fullres -f 0 -device cpu`` (the reference; TTA as nnU-Net's
  default unless --no-tta),
* ``breastai predict`` with ONNX Runtime fp32, OpenVINO fp32 and OpenVINO bf16 (when the CPU has
  native bfloat16).

Printed: wall seconds of the whole command (start-up, model loading, preprocessing, export
included), peak RSS of the largest process of the command (``RUSAGE_CHILDREN``; nnU-Net's worker
processes count individually), speed-up against nnU-Net, and voxel agreement of each mask with
nnU-Net's. Research use only, not a medical device.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def _measure(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd`` in a fresh wrapper process: wall seconds and peak RSS of its processes."""
    code = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "dt = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'rc': p.returncode, 'seconds': dt, 'rss_kib': rss,"
        " 'err': p.stderr[-3000:]}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *cmd], capture_output=True, text=True, env=env, check=False
    )
    res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed:\n{res['err']}")
    return res


def _read(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny model and case (CI)")
    ap.add_argument("--no-tta", action="store_true", help="no mirroring, in every run")
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for ours (0: default)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-nnunet-"))
    work.mkdir(parents=True, exist_ok=True)

    from nnunet_factory import ModelSpec, build_model_folder, channel_files, write_case

    from breastai.inference import openvino_available, openvino_bf16_available

    if args.smoke:
        spec = ModelSpec(name="Dataset951_BenchSmoke", seed=11, train_steps=4)
        case: dict[str, Any] = {"size_xyz": (44, 40, 15), "spacing_xyz": (0.9, 0.85, 3.3)}
    else:
        spec = ModelSpec(
            name="Dataset950_Bench",
            seed=10,
            train_steps=3,
            spacing=(2.0, 1.0, 1.0),
            patch=(32, 96, 96),
            features=(16, 32, 64, 128, 256),
            kernels=((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
            strides=((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)),
        )
        case = {"size_xyz": (200, 180, 48), "spacing_xyz": (0.8, 0.8, 2.2)}
    results = work / "nnUNet_results"
    t0 = time.perf_counter()
    folder = build_model_folder(results, spec)
    build_s = time.perf_counter() - t0
    study = write_case(work / "study" / "case", seed=3, **case)
    files = channel_files(study, ["pre", "sub1"], work / "nnunet_in")
    wf = work / "home" / "weights.toml"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.update(
        nnUNet_results=str(results),
        nnUNet_raw=str(work / "nnUNet_raw"),
        nnUNet_preprocessed=str(work / "nnUNet_preprocessed"),
    )
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "breastai", "import-weights", "--nnunet", str(folder), "--name",
         "bench", "--task", "breast", "--weights-file", str(wf), "--force"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    import_s = time.perf_counter() - t0
    tta = [] if not args.no_tta else ["--disable_tta"]
    runs: list[tuple[str, list[str], Path]] = []
    ref_out = work / "out-nnunet"
    dataset_id = spec.name[len("Dataset") : len("Dataset") + 3]
    nnunet_cmd = [
        "nnUNetv2_predict", "-i", str(files[0].parent), "-o", str(ref_out), "-d", dataset_id,
        "-c", "3d_fullres", "-f", "0", "-device", "cpu", *tta,
    ]  # fmt: skip
    runs.append(("nnUNetv2_predict -device cpu (torch)", nnunet_cmd, ref_out / "case.nii.gz"))
    ours = [("onnxruntime", "fp32")]
    notes = []
    if openvino_available():
        ours.append(("openvino", "fp32"))
        if openvino_bf16_available():
            ours.append(("openvino", "bf16"))
        else:
            notes.append("this CPU has no native bfloat16: no bf16 run")
    else:
        notes.append("OpenVINO is not installed: no OpenVINO runs")
    for runtime, precision in ours:
        out = work / f"out-{runtime}-{precision}"
        cmd = [
            sys.executable, "-m", "breastai", "predict", "--model", "bench", str(study[0].parent),
            "-o", str(out), "--device", "cpu", "--runtime", runtime, "--precision", precision,
            "--weights-file", str(wf), "--quiet", "--force",
        ] + (["--no-tta"] if args.no_tta else [])  # fmt: skip
        if args.threads:
            env["BREASTAI_THREADS"] = str(args.threads)
        label = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}[runtime]
        runs.append((f"breastai predict, {label} {precision}", cmd, out / "case" / "bench.nii.gz"))
    rows = []
    for label, cmd, mask in runs:
        m = _measure(cmd, env)
        rows.append((label, m, _read(mask)))
    ref_mask = rows[0][2]
    base = rows[0][1]["seconds"]
    import SimpleITK as sitk

    img = sitk.ReadImage(str(study[0]))
    from breastai.nnunet import NnunetModel

    model = NnunetModel.load("bench", device="cpu", runtime="onnxruntime", weights_file=wf)
    pre = model.preprocess([img, img])
    windows = model.n_windows(pre.data.shape[1:])
    mirrors = 1 if args.no_tta else 8
    print(
        f"nnU-Net v2 CPU inference ({os.cpu_count()} CPUs), {spec.architecture} "
        f"{list(spec.features)} patch {list(spec.patch)}, 1 fold, 2 channels, case "
        f"{case['size_xyz'][::-1]} (z,y,x) at {case['spacing_xyz'][::-1]} mm -> "
        f"{list(pre.data.shape[1:])} at {list(spec.spacing)} mm, {windows} windows x {mirrors} "
        f"{'mirrors' if mirrors > 1 else '(no TTA)'}; model built in {build_s:.0f} s, imported in "
        f"{import_s:.1f} s"
    )
    print()
    print("| run | seconds | peak RSS (MiB) | speed-up vs nnU-Net | mask agreement vs nnU-Net |")
    print("|---|---|---|---|---|")
    for label, m, mask in rows:
        agree = float((mask == ref_mask).mean()) if mask.shape == ref_mask.shape else float("nan")
        print(
            f"| {label} | {m['seconds']:.1f} | {m['rss_kib'] / 1024:.0f} | "
            f"{base / m['seconds']:.2f}x | {agree:.6f} |"
        )
    for n in notes:
        print(f"\nNote: {n}.")
    print("\nResearch use only, not a medical device.")


if __name__ == "__main__":
    main()
