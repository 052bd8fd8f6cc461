"""Benchmark of the verification suite: prints figures, asserts nothing.

1. Host leg wall time: the whole suite against one runtime, serially and with pytest-xdist (-n 2);
   the ratio between the two is measured in the same run. Target: under 3 minutes on 2 cores.
2. Measurement error over N runs: the CPU split (2:1 shares on one CPU), write bps and read bps
   (10 MiB/s throttles) against their expectations. Target: within 5%.

    python bench/bench_verify.py [--runtime oci:runc] [--runs 5] [--skip-wall]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_suite(runtime: str, results: Path, extra: list[str]) -> tuple[float, dict]:  # type: ignore[type-arg]
    cmd = [
        sys.executable,
        "-m",
        "verify.cli",
        "--runtime",
        runtime,
        "--isoproof-results",
        str(results),
        "-q",
        *extra,
    ]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
    wall = time.monotonic() - t0
    doc = (
        json.loads((results / "results.json").read_text())
        if (results / "results.json").exists()
        else {}
    )
    last = (r.stdout.strip().splitlines() or ["?"])[-1]
    doc["_summary_line"] = last
    return wall, doc


def errors(doc: dict) -> dict[str, list[float]]:  # type: ignore[type-arg]
    """Relative error (%) of each measured limit in one run."""
    out: dict[str, list[float]] = {}
    for r in doc.get("results", []):
        for m in r["measurements"]:
            if r["check"] == "test_cpu_shares_split" and "measured_ratio" in m:
                key = f"cpu split ({r['params'].split('-oci')[0]})"
                out.setdefault(key, []).append(
                    abs(m["measured_ratio"] - m["written_ratio"]) / m["written_ratio"] * 100
                )
            elif r["check"] == "test_io_throttle" and m.get("expected"):
                key = m["name"]
                out.setdefault(key, []).append(
                    abs(m["measured"] - m["expected"]) / m["expected"] * 100
                )
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", default="oci:runc")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-wall", action="store_true")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_verify: needs root (containers, cgroups)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="isoproof-bench-") as tmp:
        base = Path(tmp)
        if not a.skip_wall:
            print(f"== host leg wall time, runtime {a.runtime}, {os.cpu_count()} CPUs")
            serial, d1 = run_suite(a.runtime, base / "serial", ["-p", "no:xdist"])
            print(f"serial:        {serial:7.1f} s   ({d1['_summary_line']})")
            par, d2 = run_suite(a.runtime, base / "xdist", ["-n", "2"])
            print(f"xdist -n 2:    {par:7.1f} s   ({d2['_summary_line']})")
            print(f"speed-up:      {serial / par:7.2f}x   target: host leg < 180 s -> "
                  f"{'met' if min(serial, par) < 180 else 'NOT met'}")  # fmt: skip
        print(f"\n== measurement error over {a.runs} runs (relative, %), target <= 5%")
        k = "test_cpu_shares_split and 2-to-1 or test_io_throttle and bps"
        per_key: dict[str, list[float]] = {}
        for i in range(a.runs):
            _, doc = run_suite(a.runtime, base / f"m{i}", ["-k", k])
            for key, errs in errors(doc).items():
                per_key.setdefault(key, []).extend(errs)
        for key, errs in sorted(per_key.items()):
            print(f"{key:40s} mean {statistics.mean(errs):5.2f}  max {max(errs):5.2f}  (n={len(errs)})  "
                  f"{'within 5%' if max(errs) <= 5 else 'OVER 5%'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
