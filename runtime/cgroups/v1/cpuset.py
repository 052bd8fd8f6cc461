"""v1 ``cpuset`` controller: which CPUs and memory nodes the tasks may use."""

from __future__ import annotations

import os

from runtime.cgroups import fs
from runtime.cgroups.common import Context, given

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

CONTROLLER = "cpuset"
CPUS = "cpuset.cpus"
MEMS = "cpuset.mems"


def wanted(cpu: dict[str, Any] | None) -> bool:
    return given(cpu, "cpus") or given(cpu, "mems")


def inherit(d: str) -> None:
    """Copy cpus and mems from the parent when empty.

    A new v1 cpuset starts with both empty, and attaching a task to it then fails with ENOSPC. v2
    has effective values instead, so this is v1 only.
    """
    parent = os.path.dirname(d)
    for name in (CPUS, MEMS):
        if not fs.read_or(d, name).strip():
            value = fs.read_or(parent, name).strip()
            if value:
                fs.write(d, name, value)


def apply(d: str, cpu: dict[str, Any], ctx: Context) -> None:
    if given(cpu, "cpus"):
        fs.write(d, CPUS, str(cpu["cpus"]))
    if given(cpu, "mems"):
        fs.write(d, MEMS, str(cpu["mems"]))
