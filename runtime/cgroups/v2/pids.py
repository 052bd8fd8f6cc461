"""v2 ``pids`` controller (same files as v1)."""

from __future__ import annotations

from runtime.cgroups import convert, fs
from runtime.cgroups.common import Context, given, integer

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

CONTROLLER = "pids"
MAX = "pids.max"
CURRENT = "pids.current"


def wanted(pids: dict[str, Any] | None) -> bool:
    return given(pids, "limit")


def apply(d: str, pids: dict[str, Any], ctx: Context) -> None:
    fs.write(d, MAX, convert.pids_max(integer("pids.limit", pids["limit"])))


def stats(d: str) -> dict[str, Any]:
    return {"current": fs.read_int(d, CURRENT) or 0, "limit": fs.read_int(d, MAX)}
