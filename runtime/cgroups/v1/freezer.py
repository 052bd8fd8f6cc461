"""v1 ``freezer`` controller: pause and resume every task of the cgroup."""

from __future__ import annotations

import time

from runtime.cgroups import fs
from runtime.errors import CgroupError

CONTROLLER = "freezer"
STATE = "freezer.state"  # THAWED, FREEZING or FROZEN
FROZEN, FREEZING, THAWED = "FROZEN", "FREEZING", "THAWED"

TIMEOUT_S = 5.0


def state(d: str) -> str:
    return fs.read_or(d, STATE, THAWED).strip()


def freeze(d: str, timeout: float = TIMEOUT_S) -> None:
    """Write FROZEN and wait until the kernel says FROZEN.

    The state stays FREEZING while a task cannot be stopped yet (in an uninterruptible sleep, or
    forking); writing FROZEN again retries those tasks. Bounded: on timeout the cgroup is thawed
    again rather than left half frozen, and the error says so.
    """
    deadline = time.monotonic() + timeout
    polls = 0
    fs.write(d, STATE, FROZEN)
    while True:
        current = state(d)
        if current == FROZEN:
            return
        if time.monotonic() > deadline:
            fs.write(d, STATE, THAWED)
            raise CgroupError(f"{STATE}: {d} still {current} after {timeout:.0f}s; thawed it again")
        polls += 1
        if polls % 50 == 0:
            fs.write(d, STATE, FROZEN)
        time.sleep(0.01)


def thaw(d: str) -> None:
    fs.write(d, STATE, THAWED)


def is_frozen(d: str) -> bool:
    # FREEZING counts as not frozen: some task still runs.
    return state(d) == FROZEN
