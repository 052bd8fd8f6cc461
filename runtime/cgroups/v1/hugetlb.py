"""v1 ``hugetlb`` controller: a byte limit per huge page size."""

from __future__ import annotations

from runtime.cgroups import convert, fs
from runtime.cgroups.common import Context, integer
from runtime.cgroups.common import convert as checked
from runtime.errors import CgroupError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

CONTROLLER = "hugetlb"
LIMIT = "hugetlb.{size}.limit_in_bytes"  # size as the kernel names it: 2MB, 1GB


def wanted(limits: list[dict[str, Any]] | None) -> bool:
    return bool(limits)


def file_for(template: str, page_size: str, where: str) -> str:
    size = checked(
        where, convert.page_size_name, checked(where, convert.parse_page_size, page_size)
    )
    return template.format(size=size)


def apply(d: str, limits: list[dict[str, Any]], ctx: Context) -> None:
    for i, entry in enumerate(limits):
        where = f"hugepageLimits[{i}]"
        name = file_for(LIMIT, str(entry.get("pageSize")), where + ".pageSize")
        if not fs.has(d, name):
            raise CgroupError(
                f"{where}: {name} is missing in {d} (the kernel has no such huge page size)"
            )
        fs.write(d, name, integer(where + ".limit", entry.get("limit")))
