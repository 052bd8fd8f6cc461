"""v1 ``memory`` controller: limit, soft limit, memory+swap, swappiness, the OOM killer switch."""

from __future__ import annotations

from runtime.cgroups import convert, fs
from runtime.cgroups.common import Context, given, integer
from runtime.errors import CgroupError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

CONTROLLER = "memory"
LIMIT = "memory.limit_in_bytes"
SOFT_LIMIT = "memory.soft_limit_in_bytes"
MEMSW_LIMIT = "memory.memsw.limit_in_bytes"  # memory + swap; absent without swap accounting
SWAPPINESS = "memory.swappiness"
OOM_CONTROL = "memory.oom_control"  # "oom_kill_disable 0\nunder_oom 0\noom_kill N"
USAGE = "memory.usage_in_bytes"
MAX_USAGE = "memory.max_usage_in_bytes"
FAILCNT = "memory.failcnt"
STAT = "memory.stat"

UNLIMITED = 1 << 62  # v1 shows "no limit" as a page-rounded LONG_MAX

KEYS = ("limit", "reservation", "swap", "swappiness", "disableOOMKiller", "kernel", "kernelTCP")


def wanted(mem: dict[str, Any] | None) -> bool:
    return any(given(mem, k) for k in KEYS)


def apply(d: str, mem: dict[str, Any], ctx: Context) -> None:
    for old in ("kernel", "kernelTCP"):
        if given(mem, old):
            # Deprecated by the kernel (kmem limits were removed in 6.x; writes fail or do nothing)
            # and by the OCI spec; accepted so old configs load, and reported.
            ctx.warn(f"memory.{old} is ignored: kernel memory limits are deprecated")
    # 0 means "unset" for limit and swap (OCI Go types); -1 means unlimited.
    limit = integer("memory.limit", mem["limit"]) if given(mem, "limit") else 0
    swap = integer("memory.swap", mem["swap"]) if given(mem, "swap") else 0
    if swap and not fs.has(d, MEMSW_LIMIT):
        raise CgroupError(
            f"memory.swap: {MEMSW_LIMIT} is missing in {d} (kernel without swap accounting)"
        )
    if limit and swap:
        if swap != -1 and limit != -1 and swap < limit:
            raise CgroupError(
                f"memory.swap {swap} is below memory.limit {limit}; it counts memory plus swap"
            )
        # The kernel keeps memsw >= limit at every write, so the order depends on the direction:
        # growing, raise memsw first; shrinking, lower the limit first.
        current = fs.read_int(d, LIMIT)
        growing = limit == -1 or (current is not None and limit > current)
        order = (
            [(MEMSW_LIMIT, swap), (LIMIT, limit)]
            if growing
            else [(LIMIT, limit), (MEMSW_LIMIT, swap)]
        )
        for name, value in order:
            fs.write(d, name, convert.memory_v1(value))
    elif limit:
        memsw = fs.read_int(d, MEMSW_LIMIT)
        if memsw is not None and memsw < UNLIMITED and (limit == -1 or limit > memsw):
            # The kernel would answer a bare EINVAL: memory+swap may never be below memory.
            raise CgroupError(
                f"memory.limit {limit} is above the memory+swap limit {memsw} in force"
                f" ({MEMSW_LIMIT}); give memory.swap as well"
            )
        fs.write(d, LIMIT, convert.memory_v1(limit))
    elif swap:
        fs.write(d, MEMSW_LIMIT, convert.memory_v1(swap))
    if given(mem, "reservation"):
        fs.write(
            d, SOFT_LIMIT, convert.memory_v1(integer("memory.reservation", mem["reservation"]))
        )
    if given(mem, "swappiness"):
        value = integer("memory.swappiness", mem["swappiness"])
        if not 0 <= value <= 100:
            raise CgroupError(f"memory.swappiness {value} is outside 0..100")
        fs.write(d, SWAPPINESS, value)
    if given(mem, "disableOOMKiller"):
        fs.write(d, OOM_CONTROL, 1 if mem["disableOOMKiller"] else 0)


def oom_kill_count(d: str) -> int:
    return fs.read_keyed(d, OOM_CONTROL).get("oom_kill", 0)


def stats(d: str) -> dict[str, Any]:
    oom = fs.read_keyed(d, OOM_CONTROL)
    limit = fs.read_int(d, LIMIT)
    return {
        "usage": fs.read_int(d, USAGE) or 0,
        "max_usage": fs.read_int(d, MAX_USAGE) or 0,
        # v1 reports "no limit" as a huge page-rounded number; show it as None like v2's "max".
        "limit": None if limit is None or limit >= UNLIMITED else limit,
        "failcnt": fs.read_int(d, FAILCNT) or 0,
        "under_oom": oom.get("under_oom", 0),
        "oom_kill": oom.get("oom_kill", 0),
        "stat": fs.read_keyed(d, STAT),  # cache, rss, total_inactive_file, ...
    }
