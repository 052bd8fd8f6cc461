"""Where the cgroup hierarchies are mounted, read from ``/proc/self/mountinfo``.

Why mountinfo and not a fixed list of paths: hosts differ. Ours mounts ``cpu`` and ``cpuacct`` apart
(``/sys/fs/cgroup/cpu`` and ``/sys/fs/cgroup/cpuacct``), most distributions join them as
``cpu,cpuacct``, and a v2 host has one ``cgroup2`` mount. Named v1 hierarchies (``name=systemd``)
carry no controller and are ignored.

For unit tests the mountinfo path is injectable, and :func:`scan_tree` reads a fake tree laid out
like ``/sys/fs/cgroup`` (directory names are controller lists) when there is no mountinfo at all.
"""

from __future__ import annotations

import os

from runtime.errors import CgroupError

PROC_MOUNTINFO = "/proc/self/mountinfo"
CGROUP_CONTROLLERS = "cgroup.controllers"

# The v1 controllers the kernel knows. Anything else in a v1 mount's super options (rw, xattr,
# name=..., clone_children, release_agent=..., cpuset_v2_mode, ...) is a mount option.
V1_CONTROLLERS = frozenset(
    {
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "debug",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    }
)


class CgroupMounts:
    """v1: controller -> mount point (joined controllers share one); v2: the cgroup2 mount point.

    A plain class rather than a ``@dataclass``: importing ``dataclasses`` (it pulls in ``inspect``,
    ``ast``, ``dis`` and ``tokenize``) costs several milliseconds on every ``isoproof-oci run``.
    """

    __slots__ = ("v1", "v2", "source")

    def __init__(self, v1: dict[str, str] | None = None, v2: str | None = None,
                 source: str = PROC_MOUNTINFO) -> None:  # fmt: skip
        self.v1: dict[str, str] = {} if v1 is None else v1
        self.v2 = v2
        self.source = source  # named in error messages ("not mounted according to ...")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CgroupMounts):
            return NotImplemented
        return (self.v1, self.v2, self.source) == (other.v1, other.v2, other.source)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return f"CgroupMounts(v1={self.v1!r}, v2={self.v2!r}, source={self.source!r})"


def unescape(path: str) -> str:
    """A path as /proc/*/mountinfo and /proc/mounts write it: space, tab, newline and backslash
    escaped as \\ooo octal."""
    if "\\" not in path:
        return path  # the usual case: nothing to decode
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and i + 4 <= len(path) and path[i + 1 : i + 4].isdigit():
            out.append(chr(int(path[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str, source: str = PROC_MOUNTINFO) -> CgroupMounts:
    mounts = CgroupMounts(source=source)
    for line in text.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 10:
            continue
        sep = fields.index("-")
        fstype, superopts = fields[sep + 1], fields[sep + 3] if len(fields) > sep + 3 else ""
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mountpoint = unescape(fields[4])
        if fstype == "cgroup2":
            # Several cgroup2 mounts can exist (bind mounts, a hybrid's "unified"); the first wins.
            mounts.v2 = mounts.v2 or mountpoint
        elif fstype == "cgroup":
            for opt in superopts.split(","):
                if opt in V1_CONTROLLERS:
                    mounts.v1.setdefault(opt, mountpoint)
    return mounts


def read_mountinfo(path: str = PROC_MOUNTINFO) -> CgroupMounts:
    try:
        with open(path) as f:
            return parse_mountinfo(f.read(), source=path)
    except OSError as e:
        raise CgroupError(f"cannot read {path}: {e.strerror}") from None


def scan_tree(root: str) -> CgroupMounts:
    """Read a tree laid out like ``/sys/fs/cgroup`` without a mountinfo (fake trees in tests).

    ``root/cgroup.controllers`` makes it unified; otherwise each subdirectory whose name is a
    comma-separated list of controllers is a v1 mount, and ``root/unified`` a hybrid's cgroup2.
    """
    mounts = CgroupMounts(source=f"the tree at {root}")
    if os.path.exists(os.path.join(root, CGROUP_CONTROLLERS)):
        mounts.v2 = root
        return mounts
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if not os.path.isdir(path):
            continue
        if os.path.exists(os.path.join(path, CGROUP_CONTROLLERS)):
            mounts.v2 = mounts.v2 or path
            continue
        for ctrl in name.split(","):
            if ctrl in V1_CONTROLLERS:
                mounts.v1.setdefault(ctrl, path)
    return mounts
