"""v2 ``cpuset`` controller. Unlike v1, an empty ``cpuset.cpus`` means "the parent's" (the kernel
keeps ``cpuset.cpus.effective``), so nothing has to be copied at create time."""

from __future__ import annotations

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


def apply(d: str, cpu: dict[str, Any], ctx: Context) -> None:
    if given(cpu, "cpus"):
        fs.write(d, CPUS, str(cpu["cpus"]))
    if given(cpu, "mems"):
        fs.write(d, MEMS, str(cpu["mems"]))
