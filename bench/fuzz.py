"""Header fuzzing of `breastai info` (and a subprocess sample for raw stderr leaks).

    python bench/fuzz.py --cases 1000 [--seed-base 0] [--subprocess 50] [--json out.json]

Each case mutates 1-3 header values (delete, empty, garbage bytes, huge, negative, NaN, inf,
wrong VR, swapped between files) of a small synthetic 3-phase study (seed % 4: GE-like one
series, one series per phase, Philips with a derived subtraction and a T2 series, Enhanced MR
multi-frame) and runs `breastai info --json` in-process. Counted
as good: exit 0 with a volume passing the invariants (tests/fuzzing.py), or exit 1 with exactly
one stderr line. Everything else (traceback, internal error, several lines, silent acceptance of
a broken volume, hang) is printed with its seed so that it can be kept as a regression test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from fuzzing import make_bases, run_info_case, run_info_subprocess, summarise  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed-base", type=int, default=0)
    ap.add_argument("--subprocess", type=int, default=50, help="cases also run as a process")
    ap.add_argument("--json", type=Path, default=None, help="write every outcome here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="breastai-fuzz-"))
    bases = make_bases(work / "bases")
    outcomes = []
    t0 = time.perf_counter()
    for seed in range(args.seed_base, args.seed_base + args.cases):
        outcome = run_info_case(bases[seed % len(bases)], work, seed)
        outcomes.append(outcome)
        if outcome.failed:
            print(json.dumps(outcome.to_dict()), flush=True)
    elapsed = time.perf_counter() - t0
    # subprocess sample: what reaches a real terminal (C++ warnings, print, logging last resort)
    leaks = 0
    for seed in range(args.seed_base, args.seed_base + args.subprocess):
        _, stderr, problem = run_info_subprocess(bases[seed % len(bases)], work, seed)
        if problem is not None:
            leaks += 1
            row = {"case": seed, "problem": problem, "stderr": stderr[-500:]}
            print(json.dumps(row), flush=True)
    counts = summarise(outcomes)
    bad = sum(1 for o in outcomes if o.failed)
    print(
        f"fuzz: {len(outcomes)} cases in {elapsed:.0f} s ({elapsed / max(len(outcomes), 1):.3f} "
        f"s/case): {counts}; failures {bad}; subprocess sample {args.subprocess} cases, "
        f"stderr leaks {leaks}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps([o.to_dict() for o in outcomes], indent=1))
    return 1 if bad or leaks else 0


if __name__ == "__main__":
    raise SystemExit(main())
