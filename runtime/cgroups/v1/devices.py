"""v1 ``devices`` controller: the allow/deny list of device nodes the tasks may open or mknod."""

from __future__ import annotations

from runtime.cgroups import convert, fs
from runtime.cgroups.common import Context
from runtime.cgroups.common import convert as checked

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

CONTROLLER = "devices"
ALLOW = "devices.allow"
DENY = "devices.deny"
LIST = "devices.list"


def wanted(devices: list[dict[str, Any]] | None) -> bool:
    return bool(devices)


def apply(d: str, devices: list[dict[str, Any]], ctx: Context) -> None:
    """Rules are applied in order, as OCI says: the usual config starts with ``deny a`` and then
    allows the few devices a container needs. One write per rule; the kernel keeps the list."""
    for i, rule in enumerate(devices):
        line = checked(f"devices[{i}]", convert.device_rule_v1, rule)
        fs.write(d, ALLOW if rule.get("allow") else DENY, line)


def rules(d: str) -> list[str]:
    return [line for line in fs.read_or(d, LIST).splitlines() if line]
