"""v1 ``cpuacct`` controller: CPU time used (it sets nothing)."""

from __future__ import annotations

import os

from runtime.cgroups import fs

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

CONTROLLER = "cpuacct"
USAGE = "cpuacct.usage"  # total ns, all CPUs
USAGE_PERCPU = "cpuacct.usage_percpu"  # ns per CPU, space-separated
STAT = "cpuacct.stat"  # "user N\nsystem N" in clock ticks (USER_HZ)


def usage_ns(d: str) -> int:
    return fs.read_int(d, USAGE) or 0


def stats(d: str) -> dict[str, Any]:
    per_cpu = [int(x) for x in fs.read_or(d, USAGE_PERCPU).split() if x.isdigit()]
    ticks = fs.read_keyed(d, STAT)
    ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return {
        "usage_ns": usage_ns(d),
        "per_cpu_ns": per_cpu,
        "user_ns": ticks.get("user", 0) * ns_per_tick,
        "kernel_ns": ticks.get("system", 0) * ns_per_tick,
    }
