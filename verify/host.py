"""Facts about the host, read from the kernel: cgroup mode, controllers, where each hierarchy is
mounted, and the cgroup directory of any process.

Nothing here asks a runtime anything: the container's cgroup is found from ``/proc/<pid>/cgroup``
(what the kernel says the process belongs to) joined with the mount points in ``/proc/self/mountinfo``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
from pathlib import Path

from runtime.cgroups.mountinfo import unescape

MOUNTINFO = "/proc/self/mountinfo"
V1_CONTROLLERS = {
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "blkio", "perf_event",
    "net_prio", "hugetlb", "pids", "rdma", "misc",
}  # fmt: skip
V2_CONTROLLERS_FILE = "cgroup.controllers"


@dataclasses.dataclass(frozen=True)
class CgroupLayout:
    """Where the cgroup hierarchies are mounted on this host."""

    mode: str  # "v1", "hybrid" or "v2"
    v1: dict[str, str]  # controller (or "name=systemd") -> mount point
    v2: str | None  # cgroup2 mount point, if any

    @property
    def version(self) -> int:
        # A hybrid host keeps its controllers on v1; the empty cgroup2 mount holds none.
        return 2 if self.mode == "v2" else 1

    def controllers(self) -> list[str]:
        if self.mode == "v2" and self.v2:
            return Path(self.v2, V2_CONTROLLERS_FILE).read_text().split()
        return sorted(c for c in self.v1 if not c.startswith("name="))

    def has_controller(self, name: str) -> bool:
        if name == "freezer" and self.mode == "v2":
            # v2 has no freezer controller, so cgroup.controllers never lists it: since 5.2 every
            # non-root cgroup has a cgroup.freeze file instead (the root has none to look at).
            return kernel_at_least(5, 2)
        aliases = {"io": "blkio", "blkio": "io"}
        have = set(self.controllers())
        return name in have or aliases.get(name, "") in have


def kernel_at_least(major: int, minor: int, release: str | None = None) -> bool:
    nums = (release or platform.release()).split("-")[0].split(".")
    try:
        return (int(nums[0]), int(nums[1])) >= (major, minor)
    except (IndexError, ValueError):
        return False


def parse_mountinfo(text: str) -> list[dict[str, str]]:
    """Parse mountinfo lines into dicts (mount point, fs type, source, options, root)."""
    out = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        f = left.split()
        r = right.split()
        if len(f) < 6 or len(r) < 2:
            continue
        out.append(
            {
                "id": f[0],
                "dev": f[2],
                "root": unescape(f[3]),
                "mountpoint": unescape(f[4]),
                "options": f[5],
                "fstype": r[0],
                "source": r[1],
                "super_options": r[2] if len(r) > 2 else "",
            }
        )
    return out


def layout_from_mountinfo(text: str) -> CgroupLayout:
    v1: dict[str, str] = {}
    v2 = None
    for m in parse_mountinfo(text):
        if m["fstype"] == "cgroup2":
            v2 = v2 or m["mountpoint"]
        elif m["fstype"] == "cgroup":
            for opt in m["super_options"].split(","):
                # The super options mix controllers with mount flags (rw, xattr, noprefix, ...).
                if opt in V1_CONTROLLERS or opt.startswith("name="):
                    v1.setdefault(opt, m["mountpoint"])
    if v1 and v2:
        mode = "hybrid"
    elif v2:
        mode = "v2"
    else:
        mode = "v1"
    return CgroupLayout(mode=mode, v1=v1, v2=v2)


@functools.lru_cache(maxsize=1)
def layout() -> CgroupLayout:
    return layout_from_mountinfo(Path(MOUNTINFO).read_text())


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` -> {controller: path}; the v2 line has the key ``""``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrls, path = parts
        if not ctrls:
            out[""] = path
        for c in ctrls.split(","):
            if c:
                out[c] = path
    return out


def cgroup_dirs(pid: int, lay: CgroupLayout | None = None) -> dict[str, Path]:
    """Controller -> the directory of ``pid``'s cgroup on this host (v2: key ``""``)."""
    lay = lay or layout()
    paths = parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
    out: dict[str, Path] = {}
    if lay.mode == "v2":
        if "" in paths and lay.v2:
            out[""] = Path(lay.v2 + paths[""])
        return out
    for ctrl, mnt in lay.v1.items():
        if ctrl in paths:
            out[ctrl] = Path(mnt + paths[ctrl])
    return out


@functools.lru_cache(maxsize=1)
def facts() -> dict[str, object]:
    lay = layout()
    return {
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cgroup_mode": lay.mode,
        "controllers": lay.controllers(),
        "cpus": os.cpu_count() or 1,
    }


def block_device_of(path: str) -> tuple[int, int]:
    """The whole-disk MAJ:MIN behind ``path``: throttles apply to disks, not partitions."""
    dev = os.stat(path).st_dev
    major, minor = os.major(dev), os.minor(dev)
    sys = Path(f"/sys/dev/block/{major}:{minor}")
    if (sys / "partition").exists():
        parent = sys.resolve().parent / "dev"
        major, minor = (int(x) for x in parent.read_text().split(":"))
    return major, minor


def slowdown() -> float:
    """How much slower than a normal machine this one runs: ``ISOPROOF_TIMEOUT_SCALE`` (the kernel
    matrix sets 5 in TCG guests, where every process start and Python import is emulated). Only
    *waits* are scaled (how long to wait for a helper or a runtime command), never a tolerance."""
    try:
        return max(1.0, float(os.environ.get("ISOPROOF_TIMEOUT_SCALE", "1")))
    except ValueError:
        return 1.0
