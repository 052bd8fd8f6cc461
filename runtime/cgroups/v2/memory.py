"""v2 ``memory`` controller: ``memory.max``, ``memory.low``, ``memory.swap.max`` (swap alone).

Not available in v2 and therefore reported in the manager's warnings, not enforced:
``swappiness`` (no per-cgroup file), ``disableOOMKiller`` (no switch; the OOM killer always acts at
``memory.max``), ``kernel``/``kernelTCP`` (kernel memory is always part of ``memory.max``).
"""

from __future__ import annotations

from runtime.cgroups import convert, fs
from runtime.cgroups.common import Context, given, integer
from runtime.cgroups.common import convert as checked

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

CONTROLLER = "memory"
MAX = "memory.max"
LOW = "memory.low"
SWAP_MAX = "memory.swap.max"
CURRENT = "memory.current"
PEAK = "memory.peak"  # 5.19+
EVENTS = "memory.events"  # low high max oom oom_kill ...
STAT = "memory.stat"

KEYS = ("limit", "reservation", "swap", "swappiness", "disableOOMKiller", "kernel", "kernelTCP")


def wanted(mem: dict[str, Any] | None) -> bool:
    return any(given(mem, k) for k in KEYS)


def apply(d: str, mem: dict[str, Any], ctx: Context) -> None:
    if given(mem, "swappiness"):
        ctx.warn("memory.swappiness is not enforced: cgroup v2 has no per-cgroup swappiness")
    if mem.get("disableOOMKiller"):
        ctx.warn("memory.disableOOMKiller is not enforced: cgroup v2 cannot disable the OOM killer")
    for old in ("kernel", "kernelTCP"):
        if given(mem, old):
            ctx.warn(f"memory.{old} is ignored: v2 counts kernel memory in memory.max")
    limit = integer("memory.limit", mem["limit"]) if given(mem, "limit") else 0
    swap = integer("memory.swap", mem["swap"]) if given(mem, "swap") else 0
    if swap:
        # An update that gives only swap is relative to the limit already in force.
        base = limit or (fs.read_int(d, MAX) or -1)
        swap_value = checked("memory.swap", convert.swap_v2, swap, base)
    else:
        swap_value = None
    if swap_value is not None and not fs.has(d, SWAP_MAX):
        ctx.warn(f"memory.swap: {SWAP_MAX} is missing (kernel without swap accounting)")
        swap_value = None
    # Shrinking swap first and then memory (or the reverse) does not matter on v2: the two files
    # are independent, unlike v1's memsw >= limit rule.
    if limit:
        fs.write(d, MAX, convert.memory_v2(limit))
    if swap_value is not None:
        fs.write(d, SWAP_MAX, swap_value)
    if given(mem, "reservation"):
        fs.write(d, LOW, convert.memory_v2(integer("memory.reservation", mem["reservation"])))


def oom_kill_count(d: str) -> int:
    return fs.read_keyed(d, EVENTS).get("oom_kill", 0)


def stats(d: str) -> dict[str, Any]:
    ev = fs.read_keyed(d, EVENTS)
    return {
        "usage": fs.read_int(d, CURRENT) or 0,
        "max_usage": fs.read_int(d, PEAK) or 0,
        "limit": fs.read_int(d, MAX),
        "failcnt": ev.get("max", 0),  # times usage hit memory.max, v1's failcnt
        "oom": ev.get("oom", 0),
        "oom_kill": ev.get("oom_kill", 0),
        "stat": fs.read_keyed(d, STAT),  # file, anon, inactive_file, ...
    }
