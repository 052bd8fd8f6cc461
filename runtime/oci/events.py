"""``events --stats`` in runc's shape (runc's ``types/events.go``), from a cgroup manager's stats.

Tools that read runc's output (containerd's shim, docker's stats, our engine) find the same keys
here: ``cpu.usage.total``, ``memory.usage.usage``, ``pids.current``,
``blkio.ioServiceBytesRecursive``. Zero or unknown values are left out where runc leaves them out
(its ``omitempty`` fields), so a reader cannot tell "not measured" from "zero" in either runtime.
No limit is 2^64-1, runc's value on v2 (on v1 runc prints the kernel's page-rounded LONG_MAX; both
are above any host's memory, which is how readers treat them). What runc has no field for (the
freezer state, the OOM-kill count, settings that are not enforced) is under ``isoproof``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

NO_LIMIT = 2**64 - 1


def _nonzero(d: dict[str, Any]) -> dict[str, Any]:
    """Go's ``omitempty``: zero, empty and null values are not printed."""
    return {k: v for k, v in d.items() if v}


def runc_stats(st: dict[str, Any]) -> dict[str, Any]:
    """A manager's ``stats()`` (the same keys on v1 and v2) -> runc's ``types.Stats``."""
    cpu = st.get("cpu") or {}
    usage = {
        **_nonzero({"total": cpu.get("usage_ns"), "percpu": cpu.get("per_cpu_ns")}),
        "kernel": cpu.get("kernel_ns", 0),
        "user": cpu.get("user_ns", 0),
    }
    throttling = _nonzero(
        {
            "periods": cpu.get("periods"),
            "throttledPeriods": cpu.get("throttled_periods"),
            "throttledTime": cpu.get("throttled_ns"),
        }
    )

    mem = st.get("memory") or {}
    raw = mem.get("stat") or {}
    memory: dict[str, Any] = {
        "usage": {
            "limit": NO_LIMIT if mem.get("limit") is None else mem["limit"],
            **_nonzero({"usage": mem.get("usage"), "max": mem.get("max_usage")}),
            "failcnt": mem.get("failcnt", 0),
        },
        # runc: v1's hierarchical total_cache, v2's file (page cache) from memory.stat.
        **_nonzero({"cache": raw.get("total_cache", raw.get("file")), "raw": raw}),
    }

    pids = st.get("pids") or {}
    blkio: dict[str, list[dict[str, Any]]] = {}
    for key, read, write in (
        ("ioServiceBytesRecursive", "read_bytes", "write_bytes"),
        ("ioServicedRecursive", "read_ios", "write_ios"),
    ):
        entries = []
        for dev, counts in sorted((st.get("blkio") or {}).get("devices", {}).items()):
            major, _, minor = dev.partition(":")
            for op, name in (("Read", read), ("Write", write)):
                entry = {"major": int(major), "minor": int(minor), "op": op}
                entries.append(entry | _nonzero({"value": counts.get(name)}))
        if entries:
            blkio[key] = entries

    return {
        "cpu": {"usage": usage, "throttling": throttling},
        "memory": memory,
        "pids": _nonzero({"current": pids.get("current"), "limit": pids.get("limit")}),
        "blkio": blkio,
        "hugetlb": {},
        "isoproof": {
            k: st[k] for k in ("version", "mode", "frozen", "warnings", "unenforced") if k in st
        }
        | {k: mem[k] for k in ("oom_kill", "oom", "under_oom") if k in mem},
    }
