"""v2 devices: NOT ENFORCED.

cgroup v2 has no devices.allow/deny files; device access is controlled by a BPF program
(BPF_PROG_TYPE_CGROUP_DEVICE) attached to the cgroup. isoproof does not build or attach one yet.
What still limits a container's devices on v2: its /dev holds only the nodes the runtime creates,
and mknod needs CAP_MKNOD. What does not: a process that can reach a device node (a bind-mounted
/dev/sda, a privileged container) can open it whatever ``linux.resources.devices`` says.

The manager says so in ``warnings`` after set() and in ``stats()["unenforced"]``.
"""

from __future__ import annotations

from runtime.cgroups.common import Context

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

UNENFORCED = "devices: cgroup v2 needs a BPF device filter, which isoproof does not attach; device rules are not enforced"


def wanted(devices: list[dict[str, Any]] | None) -> bool:
    return bool(devices)


def apply(devices: list[dict[str, Any]], ctx: Context) -> None:
    ctx.warn(UNENFORCED)
