"""Merging the legs into one result set, and the summary table.

The merged result set (``matrix.json``, schema ``isoproof-matrix/1``) is the input of the HTML
isolation report::

    {
      "schema": "isoproof-matrix/1",
      "created": "2026-11-27T21:40:00Z",
      "host": {"kernel": "6.18.0", "cgroup_mode": "hybrid", "accel": "tcg", "accel_why": "..."},
      "legs": [{
        "leg": "6.12-v2", "kernel": "6.12.117+deb12-amd64",
        "kernel_package": "linux-image-6.12.117+deb12-amd64", "kernel_version": "6.12.117-1~deb12u1",
        "kernel_sha256": "...", "cgroup_mode": "v2", "accel": "tcg", "runtimes": ["isoproof", ...],
        "status": "passed" | "failed" | "error", "reason": "one line, for failed/error",
        "wall_s": 312.4, "boot_s": 14.1,
        "counts": {"passed": 40, "failed": 0, "skipped": 2, "error": 0, "xfailed": 0, "xpassed": 0},
        "dir": "legs/6.12-v2", "console_log": "legs/6.12-v2/console.log",
        "v1_unavailable": ["cpuset", "memory"], "suite_results": ["legs/6.12-v2/suite/x.json"]
      }],
      "results": [{
        "leg": "6.12-v2", "kernel": "...", "cgroup_mode": "v2", "runtime": "oci:runc" | null,
        "phase": "selfcheck" | "payload", "test_id": "...", "outcome": "passed",
        "duration_s": 1.2, "message": null, "measurements": {"ratio": 1.94}
      }]
    }

Paths are relative to the results directory. A leg's status is ``error`` when the guest never wrote
``exit-status`` (panic, hang, timeout, killed VM, kernel not found), ``failed`` when a test failed
or errored or a phase exited non-zero with nothing to show for it, else ``passed``.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "isoproof-matrix/1"
OUTCOMES = ("passed", "failed", "skipped", "error", "xfailed", "xpassed")
PHASE_FILES = {"selfcheck": "selfcheck.json", "payload": "payload.json"}
# pytest exit codes that do not mean a test failed: 0 ok, 5 nothing collected.
PYTEST_OK = (0, 5)
PANIC_PATTERNS = ("Kernel panic", "BUG: ", "Oops: ", "general protection fault", "watchdog: BUG")


@dataclass
class LegResult:
    leg: str
    kernel: str
    cgroup_mode: str
    status: str = "error"
    reason: str | None = None
    wall_s: float = 0.0
    boot_s: float | None = None
    accel: str | None = None
    runtimes: list[str] = field(default_factory=list)
    kernel_package: str | None = None
    kernel_version: str | None = None
    kernel_sha256: str | None = None
    v1_unavailable: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    dir: str = ""
    console_log: str = ""
    suite_results: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("records")
        return d


def parse_exit_status(text: str) -> dict[str, int]:
    """``selfcheck=0 payload=1`` -> {"selfcheck": 0, "payload": 1}."""
    return {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", text)}


def label_id(label: str) -> str:
    """How the verification suite names a runtime in test ids (``oci:/usr/sbin/runc`` -> ``oci-runc``);
    mirrors ``verify.drivers.label_id`` so results from any suite version can be read."""
    return "oci-" + Path(label[4:]).name if label.startswith("oci:") else label


def runtime_from_id(test_id: str, runtimes: list[str]) -> str | None:
    """The runtime a parametrised test ran against, from the ``[...]`` part of its node id."""
    m = re.search(r"\[(.*)\]$", test_id)
    if not m:
        return None
    for rt in sorted(
        runtimes, key=lambda r: len(label_id(r)), reverse=True
    ):  # oci-crun before crun
        for name in dict.fromkeys((label_id(rt), rt)):
            if re.search(rf"(?:^|-){re.escape(name)}(?:-|$)", m.group(1)):
                return rt
    return None


def load_phase(path: Path) -> list[dict[str, Any]] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    tests = data.get("tests") if isinstance(data, dict) else None
    return tests if isinstance(tests, list) else None


def find_panic(console: str) -> str | None:
    for line in console.splitlines():
        for pat in PANIC_PATTERNS:
            if pat in line:
                return line.strip()[-200:]
    return None


def read_leg(res: LegResult, leg_dir: Path, base: Path, timed_out: bool, rc: int | None) -> None:
    """Fill ``res`` (records, counts, status, reason) from the files in ``leg_dir``."""
    res.dir = str(leg_dir.relative_to(base))
    console = leg_dir / "console.log"
    res.console_log = str(console.relative_to(base))
    for phase, name in PHASE_FILES.items():
        for rec in load_phase(leg_dir / name) or []:
            runtime = rec.get("runtime") or runtime_from_id(
                str(rec.get("test_id", "")), res.runtimes
            )
            res.records.append(
                {
                    "leg": res.leg,
                    "kernel": res.kernel,
                    "cgroup_mode": res.cgroup_mode,
                    "runtime": runtime,
                    "phase": phase,
                    "test_id": rec.get("test_id"),
                    "outcome": rec.get("outcome"),
                    "duration_s": rec.get("duration_s"),
                    "message": rec.get("message"),
                    "measurements": rec.get("measurements") or {},
                }
            )
    res.suite_results = sorted(str(p.relative_to(base)) for p in (leg_dir / "suite").glob("*.json"))
    counts = Counter(str(r["outcome"]) for r in res.records)
    res.counts = {k: counts.get(k, 0) for k in OUTCOMES}
    res.status, res.reason = verdict(leg_dir, res.counts, timed_out, rc, res.wall_s)


def verdict(
    leg_dir: Path, counts: dict[str, int], timed_out: bool, rc: int | None, wall_s: float
) -> tuple[str, str | None]:
    status_file = leg_dir / "exit-status"
    console_text = ""
    if (leg_dir / "console.log").exists():
        console_text = (leg_dir / "console.log").read_text(errors="replace")
    if not status_file.exists():
        if timed_out:
            return "error", f"timed out after {wall_s:.0f}s; see console.log"
        panic = find_panic(console_text)
        if panic:
            return "error", f"kernel panic/oops: {panic}"
        if not (leg_dir / "booted").exists():
            return "error", f"guest never started its script (vng exit {rc}); see console.log"
        return "error", f"guest stopped before finishing (vng exit {rc}): VM died or was killed"
    codes = parse_exit_status(status_file.read_text())
    bad = counts["failed"] + counts["error"]
    if bad:
        return "failed", f"{counts['failed']} failed, {counts['error']} errors"
    odd = {k: v for k, v in codes.items() if v not in PYTEST_OK}
    if odd:
        return "failed", "exit " + ", ".join(f"{k}={v}" for k, v in odd.items())
    if sum(counts.values()) == 0:
        return "failed", "no results came back"
    return "passed", None


def result_set(legs: list[LegResult], host: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": host,
        "legs": [leg.summary() for leg in legs],
        "results": [r for leg in legs for r in leg.records],
    }


def summary_table(legs: list[LegResult], total_s: float | None = None) -> str:
    """One row per leg: kernel, cgroup mode, counts, wall time, status (and why)."""
    head = ("leg", "kernel", "cgroup", "accel", "passed", "failed", "skipped", "wall", "status")
    rows = [head]
    for leg in legs:
        c = leg.counts
        status = leg.status if not leg.reason else f"{leg.status}: {leg.reason}"
        rows.append(
            (
                leg.leg,
                leg.kernel,
                leg.cgroup_mode,
                leg.accel or "-",
                str(c["passed"] + c["xfailed"]),
                str(c["failed"] + c["error"]),
                str(c["skipped"]),
                f"{leg.wall_s:.0f}s",
                status,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    lines = []
    for r in rows:
        cells = [r[i].ljust(widths[i]) for i in range(len(head) - 1)]
        lines.append("  ".join(cells + [r[-1]]).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    if total_s is not None:
        lines.append(f"total wall time {total_s:.0f}s for {len(legs)} legs")
    return "\n".join(lines)


def combine(
    docs: list[dict[str, Any]], host: dict[str, Any]
) -> tuple[dict[str, Any], list[LegResult]]:
    """Several result sets (one per CI job, say) into one; a leg named twice is an error."""
    legs: list[LegResult] = []
    known = set(LegResult.__dataclass_fields__) - {"records"}
    hosts = []
    for doc in docs:
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"not an {SCHEMA} result set (schema {doc.get('schema')!r})")
        hosts.append(doc.get("host", {}))
        for summary in doc.get("legs", []):
            res = LegResult(**{k: v for k, v in summary.items() if k in known})
            res.records = [r for r in doc.get("results", []) if r.get("leg") == res.leg]
            if any(leg.leg == res.leg for leg in legs):
                raise ValueError(f"leg {res.leg!r} appears in more than one result set")
            legs.append(res)
    out = result_set(legs, host | {"merged_from": hosts})
    return out, legs
