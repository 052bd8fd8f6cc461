"""Helpers shared by the v1 and v2 controller modules: input checks and the set() context."""

from __future__ import annotations

import os

from runtime.errors import CgroupError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

SYS_DEV_BLOCK = "/sys/dev/block"  # one symlink per block device, named MAJ:MIN


class Context:
    """What a controller module may need beyond its directory: where block devices are listed
    (injectable for unit tests) and where to put warnings about settings that are not enforced.
    (A plain class: ``dataclasses`` is too slow to import on the ``isoproof-oci run`` path.)"""

    __slots__ = ("dev_block", "warnings")

    def __init__(self, dev_block: str = SYS_DEV_BLOCK, warnings: list[str] | None = None) -> None:
        self.dev_block = dev_block
        self.warnings: list[str] = [] if warnings is None else warnings

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)


def given(section: dict[str, Any] | None, key: str) -> bool:
    """OCI leaves unset fields out or null; only fields that are given are written (``update``)."""
    return bool(section) and section.get(key) is not None  # type: ignore[union-attr]


def integer(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CgroupError(f"{where}: {value!r} is not an integer")
    return value


def block_device(ctx: Context, where: str, dev: dict[str, Any]) -> tuple[int, int]:
    """MAJ:MIN of a blockIO device entry, checked against /sys/dev/block.

    The kernel's own answer to an unknown device is a bare ENODEV/EINVAL on write; checking first
    lets the error name the device and the field it came from.
    """
    major = integer(f"{where}.major", dev.get("major"))
    minor = integer(f"{where}.minor", dev.get("minor"))
    if not os.path.exists(os.path.join(ctx.dev_block, f"{major}:{minor}")):
        raise CgroupError(
            f"{where}: no block device {major}:{minor} ({ctx.dev_block}/{major}:{minor} does not exist)"
        )
    return major, minor


def throttles(ctx: Context, blkio: dict[str, Any], keys: Any) -> Any:
    """Yield ``(key, major, minor, rate)`` for every ``blockIO.throttle*`` entry under ``keys``,
    each device checked and each rate a non-negative integer. Both versions write these; only the
    file and the line format differ."""
    for key in keys:
        for i, dev in enumerate(blkio.get(key) or []):
            where = f"blockIO.{key}[{i}]"
            major, minor = block_device(ctx, where, dev)
            rate = integer(f"{where}.rate", dev.get("rate"))
            if rate < 0:
                raise CgroupError(f"{where}.rate {rate} is negative")
            yield key, major, minor, rate


def convert(where: str, fn: Any, *args: Any) -> Any:
    """Run a pure conversion, turning its ValueError into a one-line CgroupError naming the field."""
    try:
        return fn(*args)
    except ValueError as e:
        raise CgroupError(f"{where}: {e}") from None


OBJECT_FIELDS = ("cpu", "memory", "pids", "blockIO", "unified", "network", "rdma")
LIST_FIELDS = ("devices", "hugepageLimits")
BLOCKIO_LISTS = (
    "weightDevice",
    "throttleReadBpsDevice",
    "throttleWriteBpsDevice",
    "throttleReadIOPSDevice",
    "throttleWriteIOPSDevice",
)


def check_shape(resources: Any) -> dict[str, Any]:
    """Refuse a malformed ``linux.resources`` with one line instead of a traceback further down."""
    if resources is None:
        return {}
    if not isinstance(resources, dict):
        raise CgroupError("linux.resources must be an object")
    for key in OBJECT_FIELDS:
        if resources.get(key) is not None and not isinstance(resources[key], dict):
            raise CgroupError(f"linux.resources.{key} must be an object")
    for key in LIST_FIELDS:
        value = resources.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(x, dict) for x in value)
        ):
            raise CgroupError(f"linux.resources.{key} must be a list of objects")
    for key in BLOCKIO_LISTS:
        value = (resources.get("blockIO") or {}).get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(x, dict) for x in value)
        ):
            raise CgroupError(f"linux.resources.blockIO.{key} must be a list of objects")
    from runtime.cgroups.convert import drop_unset

    return drop_unset(resources)
