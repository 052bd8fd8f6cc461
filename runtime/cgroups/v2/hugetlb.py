"""v2 ``hugetlb`` controller: ``hugetlb.<size>.max`` per huge page size."""

from __future__ import annotations

from runtime.cgroups import fs
from runtime.cgroups.common import Context, integer
from runtime.cgroups.v1.hugetlb import file_for
from runtime.errors import CgroupError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

CONTROLLER = "hugetlb"
MAX = "hugetlb.{size}.max"


def wanted(limits: list[dict[str, Any]] | None) -> bool:
    return bool(limits)


def apply(d: str, limits: list[dict[str, Any]], ctx: Context) -> None:
    for i, entry in enumerate(limits):
        where = f"hugepageLimits[{i}]"
        name = file_for(MAX, str(entry.get("pageSize")), where + ".pageSize")
        if not fs.has(d, name):
            raise CgroupError(f"{where}: {name} is missing in {d} (no such huge page size)")
        fs.write(d, name, integer(where + ".limit", entry.get("limit")))
