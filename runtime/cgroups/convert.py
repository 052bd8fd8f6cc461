"""Pure conversions between OCI ``linux.resources`` values and what the kernel files take.

No I/O here: every function maps numbers to numbers or strings, so each is property-tested with
hypothesis (``tests/unit/test_cgroup_convert.py``). Invalid input raises :class:`ValueError`; the
drivers turn that into a one-line :class:`~runtime.errors.CgroupError` naming the field.
"""

from __future__ import annotations

import math

# Kernel bounds (include/linux/sched.h, block/blk-cgroup.h, kernel/cgroup/...).
SHARES_MIN, SHARES_MAX = 2, 262144  # v1 cpu.shares; the kernel clamps into this range
WEIGHT_MIN, WEIGHT_MAX = 1, 10000  # v2 cpu.weight and io.weight
BLKIO_WEIGHT_MIN, BLKIO_WEIGHT_MAX = 10, 1000  # v1 blkio.weight (and io.bfq.weight's range 1..1000)
MAX = "max"  # v2's spelling of "no limit"


def shares_to_weight(shares: int) -> int:
    """v1 ``cpu.shares`` -> v2 ``cpu.weight``, the log-scale mapping (runc >= 1.3.2, crun >= 1.23).

    With ``l = log2(shares)``: ``weight = ceil(10 ** ((l*l + 125*l)/612 - 7/34))``, clamped to
    1..10000. It is the quadratic in log-space through the three points that matter: the minimum
    (2 -> 1), the default (1024 -> 100, so a container that asked for nothing gets v2's default
    weight, like every other cgroup on the host) and the maximum (262144 -> 10000).

    Why not the old linear formula ``1 + (s-2)*9999/262142``: it maps the default 1024 to 39, so a
    container without an explicit setting ran at 39% of the weight of its non-container neighbours.

    What it does *not* do: keep ratios. 2048:1024 becomes 174:100, 512:1024 becomes 59:100. A
    contention test must expect the split of the requested shares *through this conversion* (the
    one the runtime claims), never simply of the weights a runtime wrote: a runtime that ignored
    the request would write 100 everywhere and match itself. verify/ judges it that way and
    reports the distortion (512:1024 asks for 33:67, gets 37:63) as a finding.
    """
    if shares <= SHARES_MIN:
        return WEIGHT_MIN
    if shares >= SHARES_MAX:
        return WEIGHT_MAX
    l = math.log2(shares)  # noqa: E741 - the formula's own name
    exponent = (l * l + 125 * l) / 612.0 - 7.0 / 34.0
    return max(WEIGHT_MIN, min(WEIGHT_MAX, math.ceil(10**exponent)))


# Fields whose zero (or empty string) runc's cgroup drivers read as "not set" (libcontainer's
# cgroups/fs and fs2: ``if r.CpuShares != 0``, ``if r.BlkioWeight != 0``, ...). Docker sends every
# field of its resources, the unset ones as 0: ``blockIO.weight: 0`` on each create and update.
# The kernel refuses some of these zeros (blkio.weight 0: ERANGE) and takes others as a real and
# harmful value (memory.soft_limit_in_bytes 0). pids.limit is not here: the OCI spec makes 0 a
# real limit (runc 1.1 reads it as unset; docker never sends it unset).
UNSET_ZEROS: dict[str, tuple[str, ...]] = {
    "memory": ("limit", "reservation", "swap", "kernel", "kernelTCP"),
    "cpu": ("shares", "quota", "period", "realtimeRuntime", "realtimePeriod"),
    "blockIO": ("weight", "leafWeight"),
}
UNSET_EMPTY: dict[str, tuple[str, ...]] = {"cpu": ("cpus", "mems")}


def drop_unset(resources: dict) -> dict:
    """A copy of ``linux.resources`` without the fields that mean "unset" (see UNSET_ZEROS;
    memory.swappiness -1 too, and a weightDevice entry's zero weights). Malformed sections are
    left for the shape check to refuse."""
    out = dict(resources)
    for section in ("memory", "cpu", "blockIO"):
        sec = out.get(section)
        if not isinstance(sec, dict):
            continue
        sec = dict(sec)
        for key in UNSET_ZEROS.get(section, ()):
            if type(sec.get(key)) is int and sec[key] == 0:
                del sec[key]
        for key in UNSET_EMPTY.get(section, ()):
            if sec.get(key) == "":
                del sec[key]
        if section == "memory" and type(sec.get("swappiness")) is int and sec["swappiness"] == -1:
            del sec["swappiness"]
        if section == "blockIO" and isinstance(sec.get("weightDevice"), list):
            sec["weightDevice"] = [
                {k: v for k, v in dev.items() if not (k in ("weight", "leafWeight") and v == 0)}
                if isinstance(dev, dict) else dev
                for dev in sec["weightDevice"]
            ]  # fmt: skip
        out[section] = sec
    return out


def blkio_weight_to_io_weight(weight: int) -> int:
    """v1 ``blkio.weight`` (10..1000) -> v2 ``io.weight`` (1..10000), linear: ``1 + (w-10)*9999/990``.

    Only for ``io.weight`` (the iocost/blk-throttle weight). When ``io.bfq.weight`` exists the BFQ
    scheduler is in charge and takes the v1 value unchanged (its range is 1..1000).
    """
    if not BLKIO_WEIGHT_MIN <= weight <= BLKIO_WEIGHT_MAX:
        raise ValueError(f"blkio weight {weight} is outside {BLKIO_WEIGHT_MIN}..{BLKIO_WEIGHT_MAX}")
    return 1 + (weight - BLKIO_WEIGHT_MIN) * 9999 // 990


def check_blkio_weight(weight: int) -> int:
    if not BLKIO_WEIGHT_MIN <= weight <= BLKIO_WEIGHT_MAX:
        raise ValueError(f"blkio weight {weight} is outside {BLKIO_WEIGHT_MIN}..{BLKIO_WEIGHT_MAX}")
    return weight


def swap_v2(swap: int | None, limit: int | None) -> str | None:
    """OCI ``memory.swap`` (memory *plus* swap, v1's memsw) -> v2 ``memory.swap.max`` (swap alone).

    Returns None when nothing should be written. -1 means unlimited ("max"). 0 means "unset" in
    OCI's Go types, so it is left alone. Otherwise ``swap - limit``, which needs a real limit and
    ``swap >= limit`` (equal means no swap at all).
    """
    if swap is None or swap == 0:
        return None
    if swap == -1:
        return MAX
    if swap < -1:
        raise ValueError(f"memory.swap {swap} is negative")
    if limit is None or limit <= 0:
        raise ValueError("memory.swap needs memory.limit too (v2 stores swap apart from memory)")
    if swap < limit:
        raise ValueError(
            f"memory.swap {swap} is below memory.limit {limit}; it counts memory plus swap"
        )
    return str(swap - limit)


def memory_v2(limit: int) -> str:
    """-1 (or any negative) is unlimited; v2 writes that as ``max``."""
    return MAX if limit < 0 else str(limit)


def memory_v1(limit: int) -> str:
    """v1 takes -1 for unlimited; other negatives are not limits."""
    return "-1" if limit < 0 else str(limit)


def pids_max(limit: int) -> str:
    """OCI ``pids.limit``: -1 (runc: any negative) is ``max``; 0 is a real limit (no new task)."""
    return MAX if limit < 0 else str(limit)


def cpu_max(quota: int | None, period: int | None) -> str:
    """v2 ``cpu.max`` = ``"$QUOTA $PERIOD"``; quota -1 (or unset with a period) is ``max``.

    The kernel keeps the old period when only the quota is written, which is what a partial
    ``update --cpu-quota`` means.
    """
    q = MAX if quota is None or quota < 0 else str(quota)
    return q if period is None else f"{q} {period}"


def throttle_v1(major: int, minor: int, rate: int) -> str:
    """v1 ``blkio.throttle.*_device`` line; rate 0 removes the rule."""
    return f"{major}:{minor} {rate}"


IO_MAX_KEYS = {"read_bps": "rbps", "write_bps": "wbps", "read_iops": "riops", "write_iops": "wiops"}


def io_max(major: int, minor: int, kind: str, rate: int) -> str:
    """v2 ``io.max`` line, e.g. ``"254:0 wbps=1048576"``; rate 0 removes the rule (``max``)."""
    value = MAX if rate == 0 else str(rate)
    return f"{major}:{minor} {IO_MAX_KEYS[kind]}={value}"


def device_rule_v1(rule: dict) -> str:
    """OCI device rule -> v1 ``devices.allow``/``devices.deny`` line: ``"c 1:3 rwm"``, ``"a *:* rwm"``.

    A missing type means all (``a``); a missing or -1 major/minor means any (``*``).
    """
    kind = rule.get("type") or "a"
    if kind not in ("a", "b", "c"):
        raise ValueError(f"device type {kind!r} is not a, b or c")
    access = rule.get("access") or "rwm"
    if not access or set(access) - set("rwm"):
        raise ValueError(f"device access {access!r} is not a subset of rwm")

    def num(v: object) -> str:
        return "*" if v is None or v == -1 else str(int(v))  # type: ignore[call-overload]

    return f"{kind} {num(rule.get('major'))}:{num(rule.get('minor'))} {access}"


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_page_size(text: str) -> int:
    """OCI ``hugepageLimits[].pageSize`` ("2MB", "1GB", "64KB") -> bytes. Binary units, as the kernel."""
    # ^(\d+)([KMGT]?)B$ without `re` (~4 ms of import per CLI call); \d is str.isdecimal()
    num, unit = text[:-1], ""
    if num[-1:] in ("K", "M", "G", "T"):
        num, unit = num[:-1], num[-1]
    if not text.endswith("B") or not num.isdecimal():
        raise ValueError(f"huge page size {text!r} is not like 2MB or 1GB")
    return int(num) * _UNITS[unit]


def page_size_name(size: int) -> str:
    """Bytes -> the kernel's name in ``hugetlb.<name>.*`` files: the largest exact unit (2MB, 1GB)."""
    if size <= 0:
        raise ValueError(f"huge page size {size} is not positive")
    for unit in ("T", "G", "M", "K"):
        if size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}B"
    return f"{size}B"
