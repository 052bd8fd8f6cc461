"""Run every benchmark in this directory, one after another, and print their figures.

Benchmarks print numbers (medians, ratios against a peer measured in the same run, errors against an
expectation); they never fail on time. Run them on a quiet machine: they share two cores with
whatever else is running. ``tox -e bench`` runs this; pass names to run a subset:

    python bench/run_all.py oci_run cgroup_limits
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The kernel matrix boots five VMs under TCG (about 15 minutes here): run it only when asked.
ON_REQUEST = {"matrix"}


def main(argv: list[str]) -> int:
    available = {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}
    wanted = argv or [name for name in available if name not in ON_REQUEST]
    unknown = [w for w in wanted if w not in available]
    if unknown:
        print(f"bench: unknown benchmark(s) {', '.join(unknown)}; have {', '.join(available)}")
        return 2
    failed = []
    for name in wanted:
        print(f"=== {name} ===", flush=True)
        start = time.monotonic()
        rc = subprocess.call([sys.executable, str(available[name])])
        print(f"=== {name}: exit {rc}, {time.monotonic() - start:.1f} s ===\n", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"bench: could not run {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
