"""v2 ``cpu`` controller: weight, bandwidth (``cpu.max``), burst, SCHED_IDLE.

There are no real-time budgets in v2 (``cpu.rt_*``): asking for one is an error.
"""

from __future__ import annotations

from runtime.cgroups import convert, fs
from runtime.cgroups.common import Context, given, integer
from runtime.errors import CgroupError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

CONTROLLER = "cpu"
WEIGHT = "cpu.weight"
MAX = "cpu.max"  # "$QUOTA $PERIOD" in µs, QUOTA may be "max"
MAX_BURST = "cpu.max.burst"
IDLE = "cpu.idle"
STAT = "cpu.stat"  # present without the controller too: usage_usec user_usec system_usec ...

KEYS = ("shares", "quota", "period", "burst", "realtimeRuntime", "realtimePeriod", "idle")


def wanted(cpu: dict[str, Any] | None) -> bool:
    return any(given(cpu, k) for k in KEYS)


def apply(d: str, cpu: dict[str, Any], ctx: Context) -> None:
    for rt in ("realtimeRuntime", "realtimePeriod"):
        if given(cpu, rt):
            raise CgroupError(f"cpu.{rt}: cgroup v2 has no real-time budget (no cpu.rt_* files)")
    shares = integer("cpu.shares", cpu["shares"]) if given(cpu, "shares") else 0
    if shares:  # 0 is "unset" in OCI's Go types
        fs.write(d, WEIGHT, convert.shares_to_weight(shares))
    quota = integer("cpu.quota", cpu["quota"]) if given(cpu, "quota") else 0
    period = integer("cpu.period", cpu["period"]) if given(cpu, "period") else 0
    if quota or period:
        q: int | None = quota
        if not quota:
            # Only the period changes (``update --cpu-period``): keep the quota that is there,
            # because cpu.max takes both and "max" would silently lift the limit.
            current = fs.read_or(d, MAX).split()
            q = int(current[0]) if current and current[0].isdigit() else None
        fs.write(d, MAX, convert.cpu_max(q, period or None))
    if given(cpu, "burst"):
        fs.write(d, MAX_BURST, integer("cpu.burst", cpu["burst"]))
    if given(cpu, "idle"):
        fs.write(d, IDLE, integer("cpu.idle", cpu["idle"]))


def usage_ns(d: str) -> int:
    return fs.read_keyed(d, STAT).get("usage_usec", 0) * 1000


def stats(d: str) -> dict[str, Any]:
    st = fs.read_keyed(d, STAT)
    return {
        "usage_ns": st.get("usage_usec", 0) * 1000,
        "per_cpu_ns": [],  # v2 keeps no per-CPU usage
        "user_ns": st.get("user_usec", 0) * 1000,
        "kernel_ns": st.get("system_usec", 0) * 1000,
        "periods": st.get("nr_periods", 0),
        "throttled_periods": st.get("nr_throttled", 0),
        "throttled_ns": st.get("throttled_usec", 0) * 1000,
    }
