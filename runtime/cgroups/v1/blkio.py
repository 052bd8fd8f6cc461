"""v1 ``blkio`` controller: proportional weight (CFQ/BFQ) and per-device throttles.

Throttles only slow down I/O the cgroup issues itself: buffered writes are flushed later by the
kernel's writeback threads and escape a v1 throttle, so a test must write with O_DIRECT.
"""

from __future__ import annotations

from runtime.cgroups import convert, fs
from runtime.cgroups.common import Context, block_device, given, integer, throttles
from runtime.errors import CgroupError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

CONTROLLER = "blkio"
WEIGHT = "blkio.weight"  # CFQ (kernels < 5.0)
WEIGHT_DEVICE = "blkio.weight_device"
LEAF_WEIGHT = "blkio.leaf_weight"  # CFQ only
LEAF_WEIGHT_DEVICE = "blkio.leaf_weight_device"
BFQ_WEIGHT = "blkio.bfq.weight"  # BFQ, when it is built and selected on some device
BFQ_WEIGHT_DEVICE = "blkio.bfq.weight_device"
THROTTLE = {
    "throttleReadBpsDevice": "blkio.throttle.read_bps_device",
    "throttleWriteBpsDevice": "blkio.throttle.write_bps_device",
    "throttleReadIOPSDevice": "blkio.throttle.read_iops_device",
    "throttleWriteIOPSDevice": "blkio.throttle.write_iops_device",
}
SERVICE_BYTES = "blkio.throttle.io_service_bytes"
SERVICED = "blkio.throttle.io_serviced"

KEYS = ("weight", "leafWeight", "weightDevice", *THROTTLE)


def wanted(blkio: dict[str, Any] | None) -> bool:
    return any(given(blkio, k) for k in KEYS)


def _weight_file(d: str, cfq: str, bfq: str, what: str) -> str:
    for name in (cfq, bfq):
        if fs.has(d, name):
            return name
    raise CgroupError(
        f"blockIO.{what}: neither {cfq} nor {bfq} exists in {d} (needs the CFQ or BFQ I/O scheduler)"
    )


def apply(d: str, blkio: dict[str, Any], ctx: Context) -> None:
    if given(blkio, "weight"):
        w = integer("blockIO.weight", blkio["weight"])
        fs.write(d, _weight_file(d, WEIGHT, BFQ_WEIGHT, "weight"), w)
    if given(blkio, "leafWeight"):
        if not fs.has(d, LEAF_WEIGHT):
            raise CgroupError(
                f"blockIO.leafWeight: {LEAF_WEIGHT} is missing in {d} (CFQ only, gone since 5.0)"
            )
        fs.write(d, LEAF_WEIGHT, integer("blockIO.leafWeight", blkio["leafWeight"]))
    for i, dev in enumerate(blkio.get("weightDevice") or []):
        where = f"blockIO.weightDevice[{i}]"
        major, minor = block_device(ctx, where, dev)
        if dev.get("weight") is not None:
            name = _weight_file(d, WEIGHT_DEVICE, BFQ_WEIGHT_DEVICE, "weightDevice")
            fs.write(d, name, f"{major}:{minor} {integer(where + '.weight', dev['weight'])}")
        if dev.get("leafWeight") is not None:
            if not fs.has(d, LEAF_WEIGHT_DEVICE):
                raise CgroupError(
                    f"{where}.leafWeight: {LEAF_WEIGHT_DEVICE} is missing in {d} (CFQ only)"
                )
            fs.write(d, LEAF_WEIGHT_DEVICE, f"{major}:{minor} {integer(where, dev['leafWeight'])}")
    for key, major, minor, rate in throttles(ctx, blkio, THROTTLE):
        fs.write(d, THROTTLE[key], convert.throttle_v1(major, minor, rate))


def _per_device(d: str, name: str) -> dict[str, dict[str, int]]:
    # Lines "MAJ:MIN Read N", "MAJ:MIN Write N", ... and a final "Total N".
    out: dict[str, dict[str, int]] = {}
    for line in fs.read_or(d, name).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in ("Read", "Write") and parts[2].isdigit():
            out.setdefault(parts[0], {})[parts[1].lower()] = int(parts[2])
    return out


def stats(d: str) -> dict[str, Any]:
    devices: dict[str, dict[str, int]] = {}
    for dev, v in _per_device(d, SERVICE_BYTES).items():
        devices.setdefault(dev, {}).update(
            {"read_bytes": v.get("read", 0), "write_bytes": v.get("write", 0)}
        )
    for dev, v in _per_device(d, SERVICED).items():
        devices.setdefault(dev, {}).update(
            {"read_ios": v.get("read", 0), "write_ios": v.get("write", 0)}
        )
    return {"devices": devices}
