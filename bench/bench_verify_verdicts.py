"""No false alarms: run the whole verification suite N times in a row against one runtime and
print whether every check got the same verdict each time. Prints; asserts nothing.

    python bench/bench_verify_verdicts.py [--runtime oci:isoproof-oci] [--runs 5]

Run it on an idle machine: a check that flips between runs there is a flaky check (or a flaky
runtime), and the table names it with its outcome in each run.
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


def one_run(runtime: str, results: Path) -> tuple[float, dict[str, str]]:
    cmd = [sys.executable, "-m", "verify.cli", "--runtime", runtime,
           "--isoproof-results", str(results), "-q"]  # fmt: skip
    t0 = time.monotonic()
    subprocess.run(cmd, capture_output=True, text=True, cwd="/")
    wall = time.monotonic() - t0
    path = results / "results.json"
    if not path.exists():
        return wall, {}
    doc = json.loads(path.read_text())
    return wall, {r["nodeid"]: r["outcome"] for r in doc.get("results", [])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtime", default="oci:isoproof-oci")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    runs: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="isoproof-bench-verdicts-") as tmp:
        for i in range(a.runs):
            load = os.getloadavg()[0]
            wall, verdicts = one_run(a.runtime, Path(tmp) / f"run{i}")
            counts: dict[str, int] = {}
            for outcome in verdicts.values():
                counts[outcome] = counts.get(outcome, 0) + 1
            print(f"run {i + 1}: {wall:6.1f} s, load {load:.2f} before, {counts}", flush=True)
            runs.append(verdicts)
    checks = sorted(set().union(*runs))
    flipped = [c for c in checks if len({r.get(c, "missing") for r in runs}) > 1]
    print(f"\n{len(checks)} checks, {a.runs} runs against {a.runtime}: "
          f"{len(checks) - len(flipped)} same verdict every run, {len(flipped)} flipped")  # fmt: skip
    for c in flipped:
        print(f"  {c}: {' '.join(r.get(c, 'missing') for r in runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
