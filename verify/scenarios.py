"""TOML scenarios for the limit and contention checks.

A scenario names the check that runs it, its containers (limits and workload), what is expected and
the tolerance. A user adds one by dropping a file in ``scenarios/``; no Python needed. Every field is
validated up front and a bad one is reported as ``<file>: <field>: <problem>``.

Example (``scenarios/cpu-shares-2-to-1.toml``)::

    check = "cpu_shares"
    description = "two busy containers on one CPU, shares 2048:1024"
    duration_s = 3
    tolerance_pct = 10
    [[container]]
    name = "high"
    limits = { cpu_shares = 2048 }
    [[container]]
    name = "low"
    limits = { cpu_shares = 1024 }
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

from verify.spec import ContainerSpec

ENV_SCENARIOS = "ISOPROOF_SCENARIOS"

# check -> (required container limits, allowed "expect" keys, container count range)
CHECKS: dict[str, tuple[set[str], set[str], tuple[int, int]]] = {
    "cpu_shares": ({"cpu_shares"}, set(), (2, 8)),
    "cpu_quota": ({"cpu_quota"}, set(), (1, 1)),
    "memory_oom": ({"memory"}, {"oom", "exit_code"}, (1, 1)),
    "page_cache": ({"memory"}, set(), (1, 1)),
    "io_throttle": (set(), set(), (1, 1)),
    "pids": ({"pids"}, set(), (1, 1)),
}
LIMIT_KEYS = {
    "cpu_shares": int, "cpu_quota": int, "cpu_period": int, "cpus": str, "memory": int,
    "pids": int, "read_bps": int, "write_bps": int, "read_iops": int, "write_iops": int,
}  # fmt: skip
WORKLOADS = {"busy", "sleep", "alloc", "write_file", "dd_write", "dd_read", "fork"}
TOP_KEYS = {"check", "description", "duration_s", "tolerance_pct", "container", "expect"}
CONTAINER_KEYS = {"name", "limits", "workload", "size_mb", "block_kb", "count"}


class ScenarioError(ValueError):
    """A malformed scenario file; the message names the file and the field."""


@dataclasses.dataclass
class ContainerScenario:
    name: str
    limits: dict[str, Any]
    workload: str
    size_mb: int = 0  # alloc / write_file / dd size
    block_kb: int = 1024  # dd block size
    count: int = 0  # fork: how many processes to try


@dataclasses.dataclass
class Scenario:
    path: Path
    check: str
    description: str
    duration_s: float
    tolerance_pct: float
    containers: list[ContainerScenario]
    expect: dict[str, Any]

    @property
    def id(self) -> str:
        return self.path.stem


def default_dir() -> Path:
    """``$ISOPROOF_SCENARIOS``, else the shipped ``scenarios`` package: the repository's
    ``scenarios/`` in a checkout or an editable install, its copy in site-packages in a wheel."""
    env = os.environ.get(ENV_SCENARIOS)
    if env:
        return Path(env)
    import scenarios  # the top-level data package, not this module

    return Path(scenarios.__file__).resolve().parent


def _type_name(t: type) -> str:
    return {int: "an integer", str: "a string", float: "a number"}.get(t, t.__name__)


def parse(path: Path, text: str | None = None) -> Scenario:
    where = str(path)

    def bad(field: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{where}: {field}: {problem}")

    try:
        doc = tomllib.loads(path.read_text() if text is None else text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{where}: not valid TOML: {e}") from None
    except OSError as e:
        raise ScenarioError(f"{where}: cannot read: {e.strerror}") from None
    for k in doc:
        if k not in TOP_KEYS:
            raise bad(k, f"unknown field (known: {', '.join(sorted(TOP_KEYS))})")
    check = doc.get("check")
    if check not in CHECKS:
        raise bad("check", f"must be one of {', '.join(sorted(CHECKS))}, got {check!r}")
    required, expect_keys, (lo, hi) = CHECKS[check]
    duration = doc.get("duration_s", 3)
    if (
        not isinstance(duration, int | float)
        or isinstance(duration, bool)
        or not 0.5 <= duration <= 60
    ):
        raise bad("duration_s", f"must be a number of seconds in 0.5..60, got {duration!r}")
    tol = doc.get("tolerance_pct", 10)
    if not isinstance(tol, int | float) or isinstance(tol, bool) or not 0 < tol <= 50:
        raise bad("tolerance_pct", f"must be a percentage in (0, 50], got {tol!r}")
    expect = doc.get("expect", {})
    if not isinstance(expect, dict):
        raise bad("expect", "must be a table")
    for k in expect:
        if k not in expect_keys:
            raise bad(
                f"expect.{k}",
                f"unknown for check {check} (known: {', '.join(sorted(expect_keys)) or 'none'})",
            )
    raw = doc.get("container")
    if not isinstance(raw, list) or not raw:
        raise bad("container", "needs at least one [[container]] table")
    if not lo <= len(raw) <= hi:
        raise bad("container", f"check {check} takes {lo}..{hi} containers, got {len(raw)}")
    containers = []
    for i, c in enumerate(raw):
        f = f"container[{i}]"
        if not isinstance(c, dict):
            raise bad(f, "must be a table")
        for k in c:
            if k not in CONTAINER_KEYS:
                raise bad(f"{f}.{k}", f"unknown field (known: {', '.join(sorted(CONTAINER_KEYS))})")
        name = c.get("name", f"c{i}")
        if not isinstance(name, str) or not name:
            raise bad(f"{f}.name", "must be a non-empty string")
        limits = c.get("limits", {})
        if not isinstance(limits, dict):
            raise bad(f"{f}.limits", "must be a table")
        for k, v in limits.items():
            if k not in LIMIT_KEYS:
                raise bad(
                    f"{f}.limits.{k}", f"unknown limit (known: {', '.join(sorted(LIMIT_KEYS))})"
                )
            t = LIMIT_KEYS[k]
            if not isinstance(v, t) or isinstance(v, bool):
                raise bad(f"{f}.limits.{k}", f"must be {_type_name(t)}, got {v!r}")
            if isinstance(v, int) and v <= 0:
                raise bad(f"{f}.limits.{k}", f"must be positive, got {v}")
        for k in required:
            if k not in limits:
                raise bad(f"{f}.limits.{k}", f"required by check {check}")
        workload = c.get("workload", "busy")
        if workload not in WORKLOADS:
            raise bad(
                f"{f}.workload", f"must be one of {', '.join(sorted(WORKLOADS))}, got {workload!r}"
            )
        ints = {}
        for k in ("size_mb", "block_kb", "count"):
            v = c.get(k, ContainerScenario.__dataclass_fields__[k].default)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise bad(f"{f}.{k}", f"must be a non-negative integer, got {v!r}")
            ints[k] = v
        containers.append(
            ContainerScenario(name=name, limits=dict(limits), workload=workload, **ints)
        )
    if check == "io_throttle":
        lim = containers[0].limits
        throttles = [k for k in ("read_bps", "write_bps", "read_iops", "write_iops") if k in lim]
        if len(throttles) != 1:
            raise bad(
                "container[0].limits",
                f"io_throttle needs exactly one of read_bps, write_bps, read_iops, write_iops; got {throttles or 'none'}",
            )
    return Scenario(path=path, check=check, description=str(doc.get("description", "")),
                    duration_s=float(duration), tolerance_pct=float(tol), containers=containers,
                    expect=dict(expect))  # fmt: skip


def load_all(directory: Path | None = None) -> list[Scenario]:
    d = directory or default_dir()
    if not d.is_dir():
        raise ScenarioError(f"{d}: scenario directory not found (set ${ENV_SCENARIOS})")
    return [parse(p) for p in sorted(d.glob("*.toml"))]


# --- translation to container specs ---------------------------------------------------------------


def resources(limits: dict[str, Any], device: tuple[int, int] | None = None) -> dict[str, Any]:
    """Scenario limits -> OCI ``linux.resources``."""
    r: dict[str, Any] = {}
    cpu: dict[str, Any] = {}
    if "cpu_shares" in limits:
        cpu["shares"] = limits["cpu_shares"]
    if "cpu_quota" in limits:
        cpu["quota"] = limits["cpu_quota"]
        cpu["period"] = limits.get("cpu_period", 100000)
    if cpu:
        r["cpu"] = cpu
    if "memory" in limits:
        # OCI's swap is memory+swap: equal to the limit means no swap at all.
        r["memory"] = {"limit": limits["memory"], "swap": limits["memory"]}
    if "pids" in limits:
        r["pids"] = {"limit": limits["pids"]}
    oci_keys = {"read_bps": "throttleReadBpsDevice", "write_bps": "throttleWriteBpsDevice",
                "read_iops": "throttleReadIOPSDevice", "write_iops": "throttleWriteIOPSDevice"}  # fmt: skip
    for k, oci in oci_keys.items():
        if k in limits:
            if device is None:
                raise ValueError(f"limit {k} needs a block device")
            r.setdefault("blockIO", {})[oci] = [
                {"major": device[0], "minor": device[1], "rate": limits[k]}
            ]
    return r


# A workload that ends itself (an allocation OOM-killed in ~40 ms, a writer) waits for the host's
# go (``release``): the check reads the written limit and starts sampling first, and an engine
# that removes the cgroup when the container exits cannot take it away before it was read. It
# replaces a fixed 2 s pause (6 s per host leg), which was also only a guess on a slow guest.
GO_FILE = "/tmp/isoproof-go"


def held(command: str) -> list[str]:
    """``command`` run by a shell once GO_FILE exists inside the container (polled every 10 ms)."""
    return ["sh", "-c", f"until [ -e {GO_FILE} ]; do sleep 0.01; done; exec {command}"]


def release(init_pid: int) -> None:
    """Let a ``held`` workload go: GO_FILE, made from the host through the init's root."""
    with open(f"/proc/{init_pid}/root{GO_FILE}", "w"):
        pass


def workload_args(c: ContainerScenario) -> list[str]:
    """The busybox command line of a workload preset."""
    if c.workload == "busy":
        return ["sh", "-c", "while :; do :; done"]
    if c.workload == "sleep":
        return ["sleep", "3600"]
    if c.workload == "alloc":
        # dd's buffer is one block: reading /dev/zero into it touches every page of it.
        return held(f"dd if=/dev/zero of=/dev/null bs={c.size_mb}M count=1")
    if c.workload == "write_file":
        return held(f"dd if=/dev/zero of=/tmp/isoproof-cache bs=1M count={c.size_mb}")
    if c.workload == "fork":
        # A pause between forks lets the host sample the task count as it climbs to the limit.
        return ["sh", "-c", f"for i in $(seq {c.count}); do sleep 1000 & sleep 0.05; done; wait"]
    # dd_write / dd_read run as exec'd commands in a sleeping container (see io checks).
    return ["sleep", "3600"]


def container_spec(c: ContainerScenario, device: tuple[int, int] | None = None) -> ContainerSpec:
    spec = ContainerSpec(
        args=workload_args(c), resources=resources(c.limits, device), hostname=f"isoproof-{c.name}"
    )
    return spec.pinned(c.limits["cpus"]) if "cpus" in c.limits else spec
