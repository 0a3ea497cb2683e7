"""Benchmark of breastai.phantom: case generation and DICOM / NIfTI writing.

Run: ``python bench/phantom.py [--repeats 3]``. Prints CPU (process) and wall seconds, medians over
seeds, and ratios against a baseline measured in the same run:

* generation of a 256x256x96, 6-phase case (goal < 2 s on one core) with the default exact
  Rician noise (independent complex noise per phase), against the "pooled" noise option;
* the DICOM writer (ge layout, 576 DCE files + decoys) with its cached element encoder, against
  plain ``pydicom.dcmwrite`` per file;
* one training-case folder (6 int16 NIfTI phases + masks).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c0, time.perf_counter() - w0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3, help="seeds per configuration")
    args = ap.parse_args()

    from breastai.phantom import dicom as dcm
    from breastai.phantom import generate_case, write_dicom_study, write_training_case

    generate_case(99, shape_zyx=(16, 32, 32))  # warm-up (imports, FFT plans)
    rows: list[tuple[str, float, float]] = []
    gen: dict[str, list[tuple[float, float]]] = {"exact": [], "pooled": []}
    case = None
    for seed in range(args.repeats):
        for noise in ("exact", "pooled"):
            cpu, wall, c = _timed(lambda s=seed, n=noise: generate_case(s, noise=n))
            gen[noise].append((cpu, wall))
            if noise == "exact" and case is None:
                case = c
    for noise, vals in gen.items():
        rows.append(
            (
                f"generate 96x256x256 x6 ({noise} noise)",
                statistics.median(v[0] for v in vals),
                statistics.median(v[1] for v in vals),
            )
        )
    assert case is not None

    tmp = Path(tempfile.mkdtemp(prefix="bench-phantom-"))
    try:
        n_files = 0
        w_cached: list[tuple[float, float]] = []
        for i in range(args.repeats):
            cpu, wall, paths = _timed(
                lambda i=i: write_dicom_study(case, tmp / f"c{i}", layout="ge", seed=0)
            )
            w_cached.append((cpu, wall))
            n_files = len(paths)
        rows.append(
            (
                f"DICOM ge layout, {n_files} files (cached encoder)",
                statistics.median(v[0] for v in w_cached),
                statistics.median(v[1] for v in w_cached),
            )
        )

        def _dcmwrite_encode(self: Any, ds: Any) -> bytes:
            import pydicom

            buf = io.BytesIO()
            pydicom.dcmwrite(buf, ds, enforce_file_format=True)
            return buf.getvalue()

        original = dcm._Encoder.encode
        dcm._Encoder.encode = _dcmwrite_encode  # type: ignore[method-assign]
        try:
            cpu, wall, _ = _timed(lambda: write_dicom_study(case, tmp / "base", layout="ge"))
        finally:
            dcm._Encoder.encode = original  # type: ignore[method-assign]
        rows.append((f"DICOM ge layout, {n_files} files (pydicom.dcmwrite baseline)", cpu, wall))
        cpu, wall, _ = _timed(lambda: write_dicom_study(case, tmp / "enh", layout="enhanced"))
        rows.append(("DICOM enhanced layout (1 multi-frame + decoys)", cpu, wall))
        cpu, wall, _ = _timed(lambda: write_training_case(case, tmp / "train"))
        rows.append(("training case (6 int16 NIfTI phases + masks)", cpu, wall))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  {'cpu_s':>7}  {'wall_s':>7}")
    for name, cpu, wall in rows:
        print(f"{name:<{width}}  {cpu:7.2f}  {wall:7.2f}")
    print(
        f"ratio pooled/exact noise (cpu): {rows[1][1] / rows[0][1]:.2f}; "
        f"dcmwrite/cached encoder (cpu): {rows[3][1] / rows[2][1]:.2f}"
    )
    print(f"load average: {os.getloadavg()[0]:.1f} (shared machine; expect +-30 %)")


if __name__ == "__main__":
    main()
