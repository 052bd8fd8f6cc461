"""v2 ``io`` controller: weight (BFQ's ``io.bfq.weight`` or iocost's ``io.weight``) and ``io.max``.

Unlike v1, v2 throttles buffered writes too (writeback is charged to the cgroup).
"""

from __future__ import annotations

from runtime.cgroups import convert, fs
from runtime.cgroups.common import Context, block_device, given, integer, throttles
from runtime.cgroups.common import convert as checked
from runtime.errors import CgroupError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

CONTROLLER = "io"
BFQ_WEIGHT = "io.bfq.weight"  # takes the v1 value unchanged
WEIGHT = "io.weight"  # 1..10000, converted
MAX = "io.max"  # "MAJ:MIN rbps=N wbps=N riops=N wiops=N"
STAT = "io.stat"
THROTTLE = {
    "throttleReadBpsDevice": "read_bps",
    "throttleWriteBpsDevice": "write_bps",
    "throttleReadIOPSDevice": "read_iops",
    "throttleWriteIOPSDevice": "write_iops",
}

KEYS = ("weight", "leafWeight", "weightDevice", *THROTTLE)


def wanted(blkio: dict[str, Any] | None) -> bool:
    return any(given(blkio, k) for k in KEYS)


def _weight(d: str, where: str, w: int) -> tuple[str, int]:
    """Which file and which value: BFQ when its file exists, else iocost's io.weight."""
    checked(where, convert.check_blkio_weight, w)
    if fs.has(d, BFQ_WEIGHT):
        return BFQ_WEIGHT, w
    if fs.has(d, WEIGHT):
        return WEIGHT, convert.blkio_weight_to_io_weight(w)
    raise CgroupError(
        f"{where}: neither {BFQ_WEIGHT} nor {WEIGHT} exists in {d} (needs BFQ or iocost)"
    )


def apply(d: str, blkio: dict[str, Any], ctx: Context) -> None:
    if given(blkio, "weight"):
        name, value = _weight(d, "blockIO.weight", integer("blockIO.weight", blkio["weight"]))
        fs.write(d, name, value)
    if given(blkio, "leafWeight"):
        ctx.warn("blockIO.leafWeight is not enforced: cgroup v2 has no leaf weight")
    for i, dev in enumerate(blkio.get("weightDevice") or []):
        where = f"blockIO.weightDevice[{i}]"
        major, minor = block_device(ctx, where, dev)
        if dev.get("weight") is not None:
            name, value = _weight(d, where + ".weight", integer(where + ".weight", dev["weight"]))
            fs.write(d, name, f"{major}:{minor} {value}")
        if dev.get("leafWeight") is not None:
            ctx.warn(f"{where}.leafWeight is not enforced: cgroup v2 has no leaf weight")
    for key, major, minor, rate in throttles(ctx, blkio, THROTTLE):
        fs.write(d, MAX, convert.io_max(major, minor, THROTTLE[key], rate))


STAT_KEYS = {
    "rbytes": "read_bytes",
    "wbytes": "write_bytes",
    "rios": "read_ios",
    "wios": "write_ios",
}


def stats(d: str) -> dict[str, Any]:
    devices: dict[str, dict[str, int]] = {}
    for line in fs.read_or(d, STAT).splitlines():
        dev, *pairs = line.split()
        entry = devices.setdefault(dev, {})
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key in STAT_KEYS and value.isdigit():
                entry[STAT_KEYS[key]] = int(value)
    return {"devices": devices}
