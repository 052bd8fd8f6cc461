"""Benchmark of the verification suite: prints figures, asserts nothing.

1. Host leg wall time per runtime (issue 17: <= 60 s each for runc and isoproof-oci, the same checks
   and tolerances): the whole suite against one runtime, serially, as ``isoproof verify`` runs it.
   Printed beside it: the time the checks waited for the host-wide lock (other suites' timing checks
   on a shared machine; not the suite's own cost, so the target is judged on wall minus that wait),
   the load average before and after, the outcome counts, and the 10 slowest checks.
2. With ``--xdist``: the same leg under pytest-xdist ``-n 2`` and the speed-up against serial.
3. Measurement error over ``--runs`` runs: the CPU split (2:1 shares on one CPU), write and read bps
   (10 MiB/s throttles) against their expectations. Target: within 5%.

    python bench/bench_verify.py [--runtime oci:/usr/sbin/runc --runtime oci:isoproof-oci]
                                 [--runs 0] [--skip-wall] [--xdist] [--slowest 10]
    python bench/bench_verify.py --windows .isoproof-results/results.json ...   # window lengths
    python bench/bench_verify.py --baseline DIR [--baseline-runtime oci:isoproof-oci=oci:OLD]

Run it with the interpreter of the env whose suite is measured (``.tox/verify/bin/python`` for
``tox -e verify``): the driver starts the ``isoproof-oci`` beside it (the header says which).

Figures, one run with ``--baseline`` (2026-12-03 19:56-20:00 UTC, load 2.4-4.4; baseline = the
tree before the verify env's ``-SI`` launcher and the driver's host-side SIGKILL, with pip's
console script): runc 42.5 -> 42.7 s; isoproof-oci 91.5 -> 63.7 s (checks' own 78.6 -> 57.4 s).
Earlier the same day, .tox/py's editable-install hook (30-100 ms per start) made it 110-127 s.
A leg starts isoproof-oci ~400 times (114 create, 119 delete, 75 start, 48 exec, 36 state; 66
cleanup kills before). Above runc's leg now: the mount race's 10 s box (runc 1.1.5 fails at its
first escapes, ~2 s), the lifecycle machine (runc's declared deviation ends it in 0.5 s; ours 3 s)
and ~50 ms more per create and exec (two interpreter starts: the read-only-bind re-exec).
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

TARGET_S = 60.0
DEFAULT_RUNTIMES = ["oci:/usr/sbin/runc", "oci:isoproof-oci"]


def run_suite(runtime: str, results: Path, extra: list[str], tree: Path | None = None
              ) -> tuple[float, dict]:  # type: ignore[type-arg]  # fmt: skip
    """One serial leg; ``tree``: run that checkout's suite and runtime (PYTHONPATH) instead."""
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
    env = dict(os.environ, PYTHONPATH=str(tree)) if tree else None
    r = subprocess.run(cmd, capture_output=True, text=True, cwd="/", env=env)
    wall = time.monotonic() - t0
    doc = (
        json.loads((results / "results.json").read_text())
        if (results / "results.json").exists()
        else {}
    )
    last = (r.stdout.strip().splitlines() or ["?"])[-1]
    doc["_summary_line"] = last
    return wall, doc


def which_binary(runtime: str) -> str:
    """What the suite will start for an ``oci:NAME`` runtime, as the driver finds it (PATH, then
    beside this interpreter), and its first line: a Python launcher's ``site`` or ``-SI`` is a
    per-call cost that differs between venvs (an editable install's import hook: +30-100 ms)."""
    if not runtime.startswith("oci:"):
        return ""
    from verify.drivers.base import find_binary

    path = find_binary(runtime[4:])
    try:
        with open(path, "rb") as f:
            first = f.readline(200).decode(errors="replace").strip()
    except OSError as e:
        return f"{path} ({e.strerror})"
    return f"{path} ({first})" if first.startswith("#!") else path


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def leg_figures(doc: dict, wall: float, slowest: int) -> list[str]:  # type: ignore[type-arg]
    """The lines printed for one host leg (pure: the unit tests feed it a results document)."""
    results = doc.get("results", [])
    waited = sum(r.get("lock_wait_s", 0.0) for r in results)
    own = wall - waited
    counts = ", ".join(f"{n} {k}" for k, n in sorted(doc.get("summary", {}).items()))
    lines = [
        f"wall {wall:6.1f} s   lock wait {waited:5.1f} s   own {own:6.1f} s   "
        f"target <= {TARGET_S:.0f} s: {'met' if own <= TARGET_S else 'NOT met'}",
        f"checks: {counts or 'none recorded'}; checks' own time {sum(r['duration_s'] for r in results):.1f} s",
        f"{slowest} slowest checks:",
    ]
    for r in sorted(results, key=lambda r: -r["duration_s"])[:slowest]:
        name = r["check"] + (f"[{r['params']}]" if r.get("params") else "")
        lines.append(f"  {r['duration_s']:6.2f} s  {r['outcome']:<9} {name}")
    return lines


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


def subwindow_errors(doc: dict, lengths: list[float]) -> dict[float, list[float]]:  # type: ignore[type-arg]
    """What shorter windows would have measured: for each CPU split in ``doc`` with its usage
    series, every sub-window of each length (within one sample interval) is judged like the check
    (values_close against the written weights); the worst container's error in % of (u + e)."""
    out: dict[float, list[float]] = {}
    results = doc.get("results", []) if isinstance(doc, dict) else []  # another tool's results.json
    for r in results:
        if r.get("check") != "test_cpu_shares_split":
            continue
        ms = {m["name"]: m for m in r["measurements"]}
        weights = (ms.get("cpu weights written") or {}).get("expected")
        series = (ms.get("cpu usage over time") or {}).get("series")
        if not weights or not series:
            continue
        t = series["t"]
        names = [k for k in series if k != "t"]
        step = (t[-1] - t[0]) / max(1, len(t) - 1)
        for length in lengths:
            for i in range(len(t)):
                j = next(
                    (j for j in range(i + 1, len(t)) if t[j] - t[i] >= length - step / 4), None
                )
                if j is None or t[j] - t[i] > length + step / 4:
                    continue
                used = [series[n][j] - series[n][i] for n in names]
                total, wsum = sum(used), sum(weights)
                if total <= 0:
                    continue
                err = max(abs(u - total * w / wsum) / (u + total * w / wsum) * 100
                          for u, w in zip(used, weights, strict=True))  # fmt: skip
                out.setdefault(length, []).append(err)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", action="append", help=f"repeatable; default {DEFAULT_RUNTIMES}")
    ap.add_argument("--runs", type=int, default=0, help="runs for the measurement error (0: none)")
    ap.add_argument("--skip-wall", action="store_true")
    ap.add_argument("--xdist", action="store_true", help="also run each leg with -n 2")
    ap.add_argument("--slowest", type=int, default=10)
    ap.add_argument("--baseline", type=Path, metavar="DIR",
                    help="before each leg, the same leg with DIR's verify/ and runtime/ "
                         "(e.g. git archive HEAD verify runtime | tar -x -C DIR)")  # fmt: skip
    ap.add_argument("--baseline-runtime", action="append", default=[], metavar="OLD=LABEL",
                    help="with --baseline: run runtime OLD's baseline leg as LABEL instead "
                         "(another isoproof-oci launcher)")  # fmt: skip
    ap.add_argument("--windows", nargs="+", metavar="RESULTS_JSON",
                    help="only: the CPU split's error in shorter windows, from stored series")  # fmt: skip
    a = ap.parse_args()
    if a.windows:
        errs: dict[float, list[float]] = {}
        for f in a.windows:
            for length, e in subwindow_errors(
                json.loads(Path(f).read_text()), [0.5, 1, 1.5, 2, 3]
            ).items():
                errs.setdefault(length, []).extend(e)
        print(f"CPU split error by window (values_close %, tolerance 10%), {len(a.windows)} files")
        for length, e in sorted(errs.items()):
            e.sort()
            print(f"  {length:4} s: n={len(e):4d}  median {statistics.median(e):5.2f}  "
                  f"p95 {e[int(0.95 * (len(e) - 1))]:5.2f}  max {e[-1]:5.2f}")  # fmt: skip
        return 0
    if os.geteuid() != 0:
        print("bench_verify: needs root (containers, cgroups)", file=sys.stderr)
        return 1
    runtimes = a.runtime or DEFAULT_RUNTIMES
    with tempfile.TemporaryDirectory(prefix="isoproof-bench-") as tmp:
        base = Path(tmp)
        instead = dict(x.split("=", 1) for x in a.baseline_runtime)
        legs = [(r, None, "") for r in runtimes]
        if a.baseline:  # before and after of each runtime back to back, in this one process
            legs = [leg for r in runtimes
                    for leg in ((instead.get(r, r), a.baseline, " (baseline)"), (r, None, ""))]  # fmt: skip
        for i, (runtime, tree, tag) in enumerate([] if a.skip_wall else legs):
            print(f"== host leg{tag}, runtime {runtime}, {os.cpu_count()} CPUs, load {load()}",
                  flush=True)  # fmt: skip
            if which_binary(runtime):
                print(f"runs {which_binary(runtime)}")
            # Serial: the CLI runs without -n (no "-p no:xdist": the plugin implements an xdist hook).
            serial, d1 = run_suite(runtime, base / f"serial{i}", [], tree)
            for line in leg_figures(d1, serial, a.slowest):
                print(line)
            print(f"load after: {load()}   ({d1['_summary_line']})", flush=True)
            if a.xdist:
                par, d2 = run_suite(runtime, base / f"xdist{i}", ["-n", "2"])
                print(f"xdist -n 2: {par:6.1f} s, speed-up {serial / par:.2f}x "
                      f"({d2['_summary_line']})")  # fmt: skip
            print()
        if a.runs:
            print(f"== measurement error over {a.runs} runs (relative, %), target <= 5%")
            k = "test_cpu_shares_split and 2-to-1 or test_io_throttle and bps"
            per_key: dict[str, list[float]] = {}
            for i in range(a.runs):
                _, doc = run_suite(runtimes[0], base / f"m{i}", ["-k", k])
                for key, errs in errors(doc).items():
                    per_key.setdefault(key, []).extend(errs)
            for key, errs in sorted(per_key.items()):
                print(f"{key:40s} mean {statistics.mean(errs):5.2f}  max {max(errs):5.2f}  (n={len(errs)})  "
                      f"{'within 5%' if max(errs) <= 5 else 'OVER 5%'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
