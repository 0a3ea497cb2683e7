"""Benchmark of cohort runs: plain sequential `segment` vs `--ray local` (actors) vs Ray tasks.

Usage (from the repository root; needs the [cluster] extra)::

    python bench/cohort.py                 # 8 demo studies (cached under --work)
    python bench/cohort.py --studies 4 --work /tmp/cohort-bench

On the same CPUs, in one run:

* plain: ``run_cohort(ray_address=None)``: one process, the runtime's default threads (all
  cores), the next study read on a thread while the current one runs the models;
* actors: ``run_cohort(ray_address="local")``: a private Ray cluster with one actor per core
  (``threads=1`` each), each loading the models once, two studies in flight per actor;
* tasks: the same cluster size, one Ray task per study (``num_cpus=1``), each task loading the
  models itself (what a stateless ``@ray.remote`` function does).

Printed: wall seconds, seconds per study and the ratio to plain; the per-study cost breakdown
(mean stage seconds of the plain run, model load, Ray start-up); and the projection of studies
per hour on 1, 4 and 16 GPU workers from that breakdown (see the printed assumptions).

Every demo study folder is called ``dicom`` (stable folder names keep them apart). Research use
only, not a medical device.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Ray workers are new processes: they must import this checkout's breastai too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
)

STAGES = ("read", "preprocess", "breast", "tumor", "postprocess", "write")


def _studies(work: Path, n: int) -> list[Path]:
    from breastai.phantom import make_demo_study

    out = []
    layouts = ("ge", "siemens", "philips", "ge")
    for i in range(n):
        case = work / f"case{i:02d}"
        if not (case / "dicom").exists():
            make_demo_study(case, layout=layouts[i % len(layouts)], seed=700_000 + i, decoys=False)
        out.append(case / "dicom")
    return out


def _settings(threads: int) -> Any:
    from breastai.pipeline import Settings

    return Settings(device="cpu", threads=threads)


def run_plain(studies: list[Path], out: Path) -> dict[str, Any]:
    from breastai.cohort import run_cohort

    infos: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    res = run_cohort(studies, out_dir=out, settings=_settings(0), on_start=infos.append)
    wall = time.perf_counter() - t0
    return {"wall": wall, "rows": res.rows, "load_s": infos[0]["workers"][0]["load_s"]}


def run_actors(studies: list[Path], out: Path, cpus: int) -> dict[str, Any]:
    from breastai.cohort import run_cohort

    infos: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    res = run_cohort(
        studies,
        out_dir=out,
        settings=_settings(1),
        ray_address="local",
        workers=cpus,
        on_start=lambda i: infos.append({**i, "t": time.perf_counter()}),
    )
    wall = time.perf_counter() - t0
    startup = infos[0]["t"] - t0  # cluster start + actors + model loads
    return {
        "wall": wall,
        "rows": res.rows,
        "startup": startup,
        "load_s": statistics.mean(w["load_s"] for w in infos[0]["workers"]),
        "workers": len(infos[0]["workers"]),
    }


def run_tasks(studies: list[Path], out: Path, cpus: int) -> dict[str, Any]:
    import ray

    from breastai.cohort import Job, StudyWorker, study_folder_name

    settings = _settings(1)
    run_id = uuid.uuid4().hex
    out.mkdir(parents=True, exist_ok=True)

    def one(job: Job) -> tuple[Any, float]:
        w = StudyWorker(settings, out, run_id)  # a task has no state: it loads the models
        return w.run(job), w.load_s

    temp = tempfile.mkdtemp(prefix="bai-bt-", dir="/tmp")
    t0 = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=cpus,
        _temp_dir=temp,
        include_dashboard=False,
        object_store_memory=200 * 1024**2,
        logging_level="ERROR",
        log_to_driver=False,
    )
    try:
        startup = time.perf_counter() - t0
        task = ray.remote(num_cpus=1)(one)
        jobs = [
            Job(index=i, source=str(s), folder=study_folder_name(s)) for i, s in enumerate(studies)
        ]
        got = ray.get([task.remote(j) for j in jobs])
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    wall = time.perf_counter() - t0
    return {
        "wall": wall,
        "rows": [g[0] for g in got],
        "startup": startup,
        "load_s": statistics.mean(g[1] for g in got),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=8)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bai-cohort-bench")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    args = ap.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    studies = _studies(args.work, args.studies)
    print(f"{len(studies)} demo studies ready in {time.perf_counter() - t0:.0f} s ({args.work})")
    outs = {m: args.work / f"out-{m}" for m in ("plain", "actors", "tasks")}
    for o in outs.values():
        shutil.rmtree(o, ignore_errors=True)

    plain = run_plain(studies, outs["plain"])
    actors = run_actors(studies, outs["actors"], args.cpus)
    tasks = run_tasks(studies, outs["tasks"], args.cpus)
    n = len(studies)
    for name, r in (("plain", plain), ("actors", actors), ("tasks", tasks)):
        bad = [row for row in r["rows"] if row.status != "ok"]
        if bad:
            raise SystemExit(f"{name}: {len(bad)} studies not ok: {bad[0].error}")

    print(f"\n### {n} demo studies on {args.cpus} CPU cores (demo weights, CPU)\n")
    print("| mode | workers x threads | wall s | s / study | vs plain | startup s | model load s |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| plain sequential | 1 x default | {plain['wall']:.1f} | {plain['wall'] / n:.2f} | "
        f"1.00x | - | {plain['load_s']:.2f} |"
    )
    for label, r, wk in (
        ("Ray actors (`--ray local`)", actors, f"{actors['workers']} x 1"),
        ("Ray tasks (one per study)", tasks, f"{args.cpus} x 1"),
    ):
        print(
            f"| {label} | {wk} | {r['wall']:.1f} | {r['wall'] / n:.2f} | "
            f"{plain['wall'] / r['wall']:.2f}x | {r['startup']:.1f} | {r['load_s']:.2f} |"
        )
    steady_a = (actors["wall"] - actors["startup"]) / n
    print(
        f"\nActors after start-up: {steady_a:.2f} s / study "
        f"({plain['wall'] / n / steady_a:.2f}x plain). Tasks pay the model load on every study."
    )

    # per-study cost breakdown (plain run: each stage alone on all cores)
    stage = {s: statistics.mean(r.timings_s.get(s, 0.0) for r in plain["rows"]) for s in STAGES}
    total = sum(stage.values())
    print("\n### Per-study cost breakdown (plain run, mean over studies, seconds)\n")
    print("| " + " | ".join(STAGES) + " | sum | model load (once per worker) |")
    print("|" + "---|" * (len(STAGES) + 2))
    print(
        "| "
        + " | ".join(f"{stage[s]:.2f}" for s in STAGES)
        + f" | {total:.2f} | {plain['load_s']:.2f} |"
    )

    # projection: a GPU worker runs breast+tumor on the GPU; read+preprocess of the next study
    # overlaps with the current study's model + postprocess + write (two studies in flight)
    cpu_in = stage["read"] + stage["preprocess"]
    cpu_out = stage["postprocess"] + stage["write"]
    gpu_model_s = 1.0  # assumption (no GPU measured here): both demo models per study on a GPU
    period = max(cpu_in, cpu_out + gpu_model_s)
    serial = cpu_in + cpu_out + gpu_model_s
    print("\n### Projection: studies per hour (not measured: see assumptions)\n")
    print("| GPUs | overlapped (bound) | without overlap |")
    print("|---|---|---|")
    for g in (1, 4, 16):
        print(f"| {g} | {g * 3600 / period:.0f} | {g * 3600 / serial:.0f} |")
    print(
        f"\nAssumptions: GPU model time {gpu_model_s:.1f} s per study (both models); each GPU "
        f"worker has >= 2 CPU cores so that read+preprocess ({cpu_in:.2f} s) overlaps with "
        f"postprocess+write ({cpu_out:.2f} s) + GPU; CPU stage times as measured here; the "
        "shared file system keeps up. Throughput is then linear in GPUs."
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "studies": n,
                    "cpus": args.cpus,
                    "wall_s": {
                        "plain": plain["wall"],
                        "actors": actors["wall"],
                        "tasks": tasks["wall"],
                    },
                    "startup_s": {"actors": actors["startup"], "tasks": tasks["startup"]},
                    "load_s": {
                        "plain": plain["load_s"],
                        "actors": actors["load_s"],
                        "tasks": tasks["load_s"],
                    },
                    "stages_s": stage,
                    "total_s": total,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
