"""v1 ``cpu`` controller: CFS shares, quota/period/burst, real-time budget, SCHED_IDLE."""

from __future__ import annotations

from runtime.cgroups import fs
from runtime.cgroups.common import Context, given, integer
from runtime.errors import CgroupError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

CONTROLLER = "cpu"
SHARES = "cpu.shares"
CFS_PERIOD = "cpu.cfs_period_us"
CFS_QUOTA = "cpu.cfs_quota_us"
CFS_BURST = "cpu.cfs_burst_us"
RT_PERIOD = "cpu.rt_period_us"
RT_RUNTIME = "cpu.rt_runtime_us"
IDLE = "cpu.idle"
STAT = "cpu.stat"

KEYS = ("shares", "quota", "period", "burst", "realtimeRuntime", "realtimePeriod", "idle")


def wanted(cpu: dict[str, Any] | None) -> bool:
    return any(given(cpu, k) for k in KEYS)


def apply(d: str, cpu: dict[str, Any], ctx: Context) -> None:
    # shares/quota/period of 0 mean "unset" in OCI's Go types (runc skips them too); the kernel
    # would reject a 0 quota or period anyway.
    shares = integer("cpu.shares", cpu["shares"]) if given(cpu, "shares") else 0
    if shares:
        fs.write(d, SHARES, shares)
    quota = integer("cpu.quota", cpu["quota"]) if given(cpu, "quota") else 0
    period = integer("cpu.period", cpu["period"]) if given(cpu, "period") else 0
    if period and quota:
        # The kernel checks quota/period against the parent's bandwidth at each write, so one order
        # can fail where the other passes (shrinking the period under a large quota, ...).
        try:
            fs.write(d, CFS_PERIOD, period)
            fs.write(d, CFS_QUOTA, quota)
        except CgroupError:
            fs.write(d, CFS_QUOTA, quota)
            fs.write(d, CFS_PERIOD, period)
    elif period:
        fs.write(d, CFS_PERIOD, period)
    elif quota:
        fs.write(d, CFS_QUOTA, quota)
    if given(cpu, "burst"):
        fs.write(d, CFS_BURST, integer("cpu.burst", cpu["burst"]))
    # Real-time: the period first, since the runtime must fit into it.
    if given(cpu, "realtimePeriod"):
        fs.write(d, RT_PERIOD, integer("cpu.realtimePeriod", cpu["realtimePeriod"]))
    if given(cpu, "realtimeRuntime"):
        fs.write(d, RT_RUNTIME, integer("cpu.realtimeRuntime", cpu["realtimeRuntime"]))
    if given(cpu, "idle"):
        fs.write(d, IDLE, integer("cpu.idle", cpu["idle"]))


def stats(d: str) -> dict[str, Any]:
    st = fs.read_keyed(d, STAT)
    return {
        "periods": st.get("nr_periods", 0),
        "throttled_periods": st.get("nr_throttled", 0),
        "throttled_ns": st.get("throttled_time", 0),
    }
