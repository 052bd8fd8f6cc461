"""The few host-side system calls the engine itself makes (mount, umount, prctl, unshare).

Namespaces, cgroups and the container's mounts are the OCI runtime's business; the engine only
mounts the overlay rootfs of a container and keeps network namespaces alive with bind mounts.
"""

from __future__ import annotations

import ctypes
import os

from runtime.errors import SyscallError

MS_BIND = 0x1000
MNT_DETACH = 2
PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def mount(
    source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    rc = _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    if rc != 0:
        raise SyscallError("mount", ctypes.get_errno(), target)


def umount(target: str, flags: int = MNT_DETACH) -> None:
    if _libc.umount2(target.encode(), flags) != 0:
        raise SyscallError("umount2", ctypes.get_errno(), target)


def set_child_subreaper() -> None:
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SyscallError("prctl(PR_SET_CHILD_SUBREAPER)", ctypes.get_errno())


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        raise SyscallError("unshare", ctypes.get_errno())


def is_mountpoint(path: str) -> bool:
    """True if ``path`` is the mount point of some mount (looked up in /proc/self/mountinfo)."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == real:
                return True
    return False
