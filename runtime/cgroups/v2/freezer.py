"""v2 freezer: ``cgroup.freeze`` (5.2+) and the ``frozen`` key of ``cgroup.events``."""

from __future__ import annotations

import time

from runtime.cgroups import fs
from runtime.errors import CgroupError

FREEZE = "cgroup.freeze"
EVENTS = "cgroup.events"  # populated 0|1, frozen 0|1

TIMEOUT_S = 5.0


def freeze(d: str, timeout: float = TIMEOUT_S) -> None:
    """Write 1 and wait until the kernel reports ``frozen 1``: writing only asks, tasks stop at
    their next return to user space. Bounded; on timeout the cgroup is thawed again."""
    if not fs.has(d, FREEZE):
        raise CgroupError(f"pause needs {FREEZE} (kernel 5.2 or later); it is missing in {d}")
    fs.write(d, FREEZE, 1)
    deadline = time.monotonic() + timeout
    while not is_frozen(d):
        if time.monotonic() > deadline:
            fs.write(d, FREEZE, 0)
            raise CgroupError(f"{EVENTS}: {d} not frozen after {timeout:.0f}s; thawed it again")
        time.sleep(0.01)


def thaw(d: str) -> None:
    fs.write(d, FREEZE, 0)


def is_frozen(d: str) -> bool:
    return fs.read_keyed(d, EVENTS).get("frozen", 0) == 1
