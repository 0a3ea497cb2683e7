"""Benchmark of breastai.report.measure_lesions (issue 6: 300x300x200 mask, 5 lesions, < 1 s).

Run: ``python bench/report.py``. Prints a Markdown table. Baselines in the same run:
26-connected labelling of the whole volume (the floor any component analysis pays) and the
brute-force farthest pair over all surface points of one lesion (what the convex hull avoids).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.distance import pdist

from breastai.evaluate import evaluate_case
from breastai.report import _face_centres, farthest_pair, measure_lesions
from breastai.study import Phase, Study

SHAPE_ZYX = (200, 300, 300)
SPACING_XYZ = (0.8, 0.8, 1.5)
# (centre z, y, x voxels), semi-axes (mm): 5 ellipsoids, 8 to 64 mm long
LESIONS = [
    ((100, 150, 150), (32.0, 22.0, 18.0)),
    ((50, 70, 70), (20.0, 14.0, 12.0)),
    ((150, 230, 90), (12.0, 10.0, 9.0)),
    ((60, 230, 230), (8.0, 6.0, 6.0)),
    ((150, 80, 230), (4.0, 3.5, 3.0)),
]


def _mask() -> sitk.Image:
    z, y, x = np.ogrid[: SHAPE_ZYX[0], : SHAPE_ZYX[1], : SHAPE_ZYX[2]]
    arr = np.zeros(SHAPE_ZYX, dtype=np.uint8)
    for (cz, cy, cx), (a, b, c) in LESIONS:
        dx = (x - cx) * SPACING_XYZ[0] / a
        dy = (y - cy) * SPACING_XYZ[1] / b
        dz = (z - cz) * SPACING_XYZ[2] / c
        arr[dx**2 + dy**2 + dz**2 <= 1.0] = 1
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING_XYZ)
    return img


def _best(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    mask = _mask()
    arr = sitk.GetArrayViewFromImage(mask) != 0
    rep = measure_lesions(mask)
    assert rep.lesion_count == 5
    t_measure = _best(lambda: measure_lesions(mask))
    t_label = _best(lambda: ndimage.label(arr, structure=np.ones((3, 3, 3))))

    # a 6-phase study on the same grid for the kinetics path
    phases = []
    for k in range(6):
        ph = sitk.GetImageFromArray(np.full(SHAPE_ZYX, 100.0 + 20 * k, dtype=np.float32))
        ph.CopyInformation(mask)
        phases.append(Phase(index=k, image=ph, time_s=75.0 * k))
    study = Study(phases=phases, source=Path("bench"), kind="nifti")
    t_kin = _best(lambda: measure_lesions(mask, study=study), repeat=3)

    # hull vs brute force farthest pair on the surface points of lesion 3 (24 mm long)
    (cz, cy, cx), _ = LESIONS[2]
    crop = ndimage.label(arr[cz - 12 : cz + 13, cy - 20 : cy + 21, cx - 20 : cx + 21])[0] == 1
    pts = _face_centres(crop) * np.array(SPACING_XYZ[::-1])
    t_hull = _best(lambda: farthest_pair(pts))
    t_brute = _best(lambda: pdist(pts).max(), repeat=2)
    assert math.isclose(farthest_pair(pts)[0], float(pdist(pts).max()), rel_tol=1e-12)

    # evaluate_case on the same mask against a copy shifted by 2 voxels along x
    shifted = sitk.GetImageFromArray(np.roll(sitk.GetArrayFromImage(mask), 2, axis=2))
    shifted.CopyInformation(mask)
    t_eval = _best(lambda: evaluate_case(shifted, mask), repeat=3)

    sizes = ", ".join(f"{les.longest_diameter_mm:.1f}" for les in rep.lesions)
    print(f"## report (measure_lesions), {time.strftime('%Y-%m-%d')}")
    print()
    print(f"Mask {SHAPE_ZYX[2]}x{SHAPE_ZYX[1]}x{SHAPE_ZYX[0]} (x, y, z), spacing {SPACING_XYZ} mm,")
    print(f"5 ellipsoid lesions, longest diameters {sizes} mm; best of 5 runs, this machine's CPU.")
    print()
    print("| What | Time (s) | Ratio |")
    print("|---|---|---|")
    print(f"| measure_lesions (5 lesions, goal < 1 s) | {t_measure:.3f} | 1.00 |")
    print(f"| baseline: 26-connected labelling of the whole volume | {t_label:.3f} | "
          f"{t_label / t_measure:.2f} |")  # fmt: skip
    print(f"| measure_lesions with a 6-phase study (kinetics) | {t_kin:.3f} | "
          f"{t_kin / t_measure:.2f} |")  # fmt: skip
    print(f"| evaluate_case (Dice, HD, HD95, detection) on the same volume | {t_eval:.3f} | "
          f"{t_eval / t_measure:.2f} |")  # fmt: skip
    print(f"| farthest pair, convex hull ({len(pts)} surface points) | {t_hull:.4f} | 1.00 |")
    print(f"| farthest pair, brute force (same points) | {t_brute:.4f} | "
          f"{t_brute / t_hull:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
