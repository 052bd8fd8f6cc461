"""A kernel-matrix result set (matrix.json, schema isoproof-matrix/1) made from recorded host runs.

A real 5-leg x 3-runtime matrix takes about an hour of VMs, which only the lead may run; so the
matrix fixture is *synthesised*, carefully, from real data:

- every check record is a real entry of a recorded suite run on the hybrid host
  (``reports-host-pass.json``: runc, all passed; ``reports-host-failures.json``: runc with two
  real failures and crun's real runtime errors, since crun 1.8 refuses hybrid cgroups), with its
  real measurements and time series, re-labelled to the leg and runtime it stands for;
- the record and leg shapes are the matrix's own: records as ``verify.matrix.merge.read_leg``
  writes them (the suite's measurements under the ``isoproof_measurement`` user property, one
  dict or a list), legs as ``merge.LegResult.summary()``, statuses and reasons from
  ``merge.verdict`` rules;
- what stands in for what: ``isoproof`` and v2 legs' ``oci:crun`` reuse runc's passing records
  (crun works on v2); crun on v1 legs is the recorded crun runtime error; the 6.12-v2 leg's
  ``isoproof`` column carries the recorded write-bps and memory failures; the dead leg (when asked
  for) is a kernel panic before the payload, as ``merge.verdict`` reports one.

Pure and deterministic: the same inputs give the same document.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from verify.matrix import merge

DATA = Path(__file__).parent
PASS = DATA / "reports-host-pass.json"
FAILURES = DATA / "reports-host-failures.json"
RUNTIMES = ("isoproof", "oci:runc", "oci:crun")
LEGS = (
    ("6.18-hybrid", "6.18.44-fc-v1147", "hybrid"),
    ("6.1-v1", "6.1.0-40-amd64", "v1"),
    ("6.1-v2", "6.1.0-40-amd64", "v2"),
    ("6.12-v1", "6.12.57+deb12-amd64", "v1"),
    ("6.12-v2", "6.12.57+deb12-amd64", "v2"),
)
RUNC_ID = "oci-runc"
CRUN_ID = "oci-crun"


def _relabel(test_id: str, label_id: str) -> str:
    return re.sub(rf"(\[|-)({RUNC_ID}|{CRUN_ID})(-|\])", rf"\g<1>{label_id}\g<3>", test_id)


def _record(entry: dict[str, Any], leg: tuple[str, str, str], runtime: str) -> dict[str, Any]:
    ms = copy.deepcopy(entry.get("measurements") or [])
    props: dict[str, Any] = {}
    if ms:
        props["isoproof_measurement"] = ms[0] if len(ms) == 1 else ms
    if entry["outcome"] == "runtime_error":
        props["isoproof_outcome"] = "runtime_error"
    outcome = "failed" if entry["outcome"] == "runtime_error" else entry["outcome"]
    name, kernel, mode = leg
    return {
        "leg": name,
        "kernel": kernel,
        "cgroup_mode": mode,
        "runtime": runtime,
        "phase": "payload",
        "test_id": _relabel(entry["nodeid"], merge.label_id(runtime)),
        "outcome": outcome,
        "duration_s": entry.get("duration_s"),
        "message": entry.get("message") or entry.get("reason"),
        "measurements": props,
    }


def _by_check(doc: dict[str, Any], rid: str) -> dict[str, dict[str, Any]]:
    """Entries of one runtime keyed by node id without the runtime (the worse one wins)."""
    out: dict[str, dict[str, Any]] = {}
    for e in doc["results"]:
        if f"-{rid}" in e["nodeid"] or f"[{rid}" in e["nodeid"]:
            out[_relabel(e["nodeid"], "RT")] = e
    return out


def matrix(dead_leg: str | None = "6.12-v1", legs: int = 5) -> dict[str, Any]:
    passing = json.loads(PASS.read_text())
    failing = json.loads(FAILURES.read_text())
    runc = _by_check(passing, RUNC_ID)
    runc_failed = {k: e for k, e in _by_check(failing, RUNC_ID).items() if e["outcome"] == "failed"}
    crun = _by_check(failing, CRUN_ID)
    leg_docs, records = [], []
    for name, kernel, mode in LEGS[:legs]:
        res = merge.LegResult(leg=name, kernel=kernel, cgroup_mode=mode, runtimes=list(RUNTIMES),
                              accel="tcg", wall_s=612.0, boot_s=19.5,
                              kernel_package=f"linux-image-{kernel}")  # fmt: skip
        res.dir = f"legs/{name}"
        res.console_log = f"legs/{name}/console.log"
        if name == dead_leg:
            res.status, res.reason = (
                "error",
                ("kernel panic/oops: Kernel panic - not syncing: VFS: Unable to mount root fs"),
            )
            res.wall_s, res.boot_s = 95.0, None
            leg_docs.append(res.summary())
            continue
        leg = (name, kernel, mode)
        for key in sorted(runc):
            records.append(_record(runc[key], leg, "oci:runc"))
            own = runc_failed.get(key) if name == "6.12-v2" else None
            records.append(_record(own or runc[key], leg, "isoproof"))
            theirs = runc[key] if mode == "v2" else crun.get(key)
            if theirs is not None:
                records.append(_record(theirs, leg, "oci:crun"))
        leg_records = [r for r in records if r["leg"] == name]
        res.counts = {k: sum(1 for r in leg_records if r["outcome"] == k) for k in merge.OUTCOMES}
        bad = res.counts["failed"] + res.counts["error"]
        res.status = "failed" if bad else "passed"
        res.reason = f"{res.counts['failed']} failed, {res.counts['error']} errors" if bad else None
        leg_docs.append(res.summary())
    return {
        "schema": merge.SCHEMA,
        "created": "2026-12-03T13:00:00Z",
        "host": {
            "kernel": passing["host"]["kernel"],
            "cgroup_mode": "hybrid",
            "cpus": 2,
            "accel": "tcg",
        },  # fmt: skip
        "legs": leg_docs,
        "results": records,
        "wall_s": 3061.0,
        "jobs": 1,
    }


def write(path: Path, **kwargs: Any) -> Path:
    path.write_text(json.dumps(matrix(**kwargs)))
    return path
