"""The cgroup manager contract, mode detection and :func:`new_manager`.

The OCI runtime core calls, in this order::

    mgr = new_manager(spec_cgroups_path, container_id)   # pure: nothing touched yet
    mgr.create()                  # make the directories (v2: enable controllers in ancestors)
    mgr.set(linux_resources)      # write every requested limit; typed CgroupError on failure
    mgr.add_process(child_pid)    # before the child runs anything of the user's
    ...
    mgr.freeze() / mgr.thaw() / mgr.is_frozen() / mgr.pids() / mgr.stats() / mgr.oom_kill_count()
    mgr.set(partial_resources)    # ``update``: only the fields given are written
    count = mgr.oom_kill_count()  # store it in the state *before* destroy: the counter dies with the cgroup
    mgr.destroy()                 # remove every directory create() made; idempotent

A Manager is rebuilt from the state file with ``new_manager(...)`` using the same arguments, so it
keeps nothing that cannot be recomputed from them. That is also why ``destroy`` works after a crash
in the middle of ``create``: it removes whatever exists of the same paths.

Settings a driver accepts but cannot enforce (v2 device rules where the kernel refuses us bpf(2),
kernel memory limits) are listed in ``mgr.warnings`` after ``set`` and in ``stats()["warnings"]``.
"""

from __future__ import annotations

import abc
import os
import time
from _signal import SIGKILL  # not `signal`: its enum classes cost ~3 ms per CLI call

from runtime.cgroups import fs
from runtime.cgroups.mountinfo import PROC_MOUNTINFO, CgroupMounts, read_mountinfo, scan_tree
from runtime.errors import CgroupError, suppress

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any, ClassVar

DEFAULT_PARENT = "isoproof"
DEFAULT_ROOT = "/sys/fs/cgroup"
# Cgroups that belong to the machine, not to us: never created in, written or removed.
FOREIGN = frozenset({"process_api"})
PREFIX = "isoproof"  # only ancestors named like this are removed by destroy() once empty
REMOVE_TIMEOUT_S = 5.0


class Mode:
    """The host's cgroup layout: ``Mode.LEGACY``, ``Mode.HYBRID`` or ``Mode.UNIFIED``, compared
    with ``is``; ``.value`` names it. (Not an ``enum.Enum``: importing enum costs ~3 ms per CLI
    call, and a status check or delete needs the mode.)"""

    __slots__ = ("value",)
    LEGACY: ClassVar[Mode]  # only v1 hierarchies
    HYBRID: ClassVar[Mode]  # v1 hierarchies plus a (controller-less) cgroup2 mount; driven as v1
    UNIFIED: ClassVar[Mode]  # cgroup2 at the root

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"<Mode {self.value}>"


Mode.LEGACY, Mode.HYBRID, Mode.UNIFIED = Mode("v1"), Mode("hybrid"), Mode("v2")


def mode_of(mounts: CgroupMounts) -> Mode:
    if mounts.v1:
        return Mode.HYBRID if mounts.v2 else Mode.LEGACY
    if mounts.v2:
        return Mode.UNIFIED
    raise CgroupError(f"no cgroup filesystem is mounted (none in {mounts.source})")


def find_mounts(root: str = DEFAULT_ROOT, mountinfo: str | None = None) -> CgroupMounts:
    """Mounts from ``mountinfo`` (default: /proc/self/mountinfo for the real root); a fake ``root``
    without a mountinfo is scanned as a directory tree (see :func:`mountinfo.scan_tree`)."""
    if mountinfo is None and os.path.normpath(root) != DEFAULT_ROOT:
        return scan_tree(root)
    return read_mountinfo(mountinfo or PROC_MOUNTINFO)


def detect_mode(mountinfo: str = PROC_MOUNTINFO) -> Mode:
    return mode_of(read_mountinfo(mountinfo))


def cgroup_relpath(cgroups_path: str | None, container_id: str) -> str:
    """OCI rule: an absolute ``cgroupsPath`` is taken relative to each hierarchy's root; a relative
    one (or none) goes under our ``isoproof`` parent: ``isoproof/<path or id>``."""
    if cgroups_path:
        parts = [p for p in cgroups_path.split("/") if p not in ("", ".")]
        if not cgroups_path.startswith("/"):
            parts = [DEFAULT_PARENT, *parts]
    else:
        if not container_id or "/" in container_id:
            raise CgroupError(f"container id {container_id!r} cannot name a cgroup")
        parts = [DEFAULT_PARENT, container_id]
    if not parts or len(parts) < 1:
        raise CgroupError(
            f"cgroupsPath {cgroups_path!r} names the root cgroup; refusing to manage it"
        )
    if ".." in parts:
        raise CgroupError(f"cgroupsPath {cgroups_path!r} contains '..'")
    if FOREIGN & set(parts):
        raise CgroupError(
            f"cgroupsPath {cgroups_path!r} is inside a cgroup that belongs to the machine"
        )
    return os.path.join(*parts)


def remove_cgroup(d: str, mount: str, timeout: float = REMOVE_TIMEOUT_S) -> None:
    """Remove ``d`` and every cgroup below it (deepest first), then each empty ancestor named
    ``isoproof*`` up to the mount. Idempotent.

    rmdir is retried while the kernel says EBUSY: a process that was just killed is still listed
    until it is reaped and its cgroup reference dropped. An ancestor that is busy holds other
    cgroups (another container's), and is left alone.
    """
    # The usual cgroup has no children: try it alone before walking the tree below it.
    if not fs.rmdir(d):
        for path in [*fs.child_dirs(d), d]:
            deadline = time.monotonic() + timeout
            delay = 0.005
            while not fs.rmdir(path):
                if time.monotonic() > deadline:
                    left = fs.read_pids(path)
                    why = f"processes {left} are still in it" if left else "it is busy"
                    raise CgroupError(f"cannot remove cgroup {path}: {why}")
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
    parent = os.path.dirname(d)
    mount = os.path.normpath(mount)
    while parent.startswith(mount + os.sep) and os.path.basename(parent).startswith(PREFIX):
        if not fs.rmdir(parent):
            break
        parent = os.path.dirname(parent)


class Manager(abc.ABC):
    version: int  # 1 or 2
    mode: Mode
    relpath: str  # the cgroup's path below each hierarchy's mount point
    warnings: list[str]

    @abc.abstractmethod
    def create(self) -> None: ...

    @abc.abstractmethod
    def add_process(self, pid: int) -> None: ...

    @abc.abstractmethod
    def set(self, resources: dict[str, Any]) -> None:
        """Apply an OCI ``linux.resources`` object; fields that are absent or null are not touched."""

    @abc.abstractmethod
    def freeze(self) -> None: ...

    @abc.abstractmethod
    def thaw(self) -> None: ...

    @abc.abstractmethod
    def is_frozen(self) -> bool: ...

    @abc.abstractmethod
    def pids(self) -> list[int]: ...

    @abc.abstractmethod
    def stats(self) -> dict[str, Any]:
        """JSON-able counters; the shape is the same for v1 and v2 (see the drivers)."""

    @abc.abstractmethod
    def oom_kill_count(self) -> int: ...

    @abc.abstractmethod
    def cpu_usage_ns(self) -> int:
        """Total CPU time used by the cgroup's tasks, in ns (cpuacct.usage / cpu.stat usage_usec)."""

    @abc.abstractmethod
    def destroy(self) -> None: ...

    @abc.abstractmethod
    def exists(self) -> bool: ...

    @abc.abstractmethod
    def paths(self) -> dict[str, str]:
        """Controller name -> directory (v2: a single entry under the key ``""``)."""

    def kill_all(self, sig: int = SIGKILL) -> None:
        """Signal every task of the cgroup (``delete --force``, ``kill --all``, cleanup).

        The cgroup is frozen while the tasks are listed and signalled, so that none can fork a
        child that the list misses (runc does the same). After SIGKILL it is thawed: a task frozen
        by the v1 freezer cannot die until it runs again. Other signals to a paused container stay
        pending until ``resume``, as with runc.
        """
        if not self.exists():
            return
        froze = False
        if not self.is_frozen():
            with suppress(CgroupError):
                self.freeze()
                froze = True
        for pid in self.pids():
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        if froze or sig == SIGKILL:
            with suppress(CgroupError):
                self.thaw()


def new_manager(
    cgroups_path: str | None,
    container_id: str,
    root: str = DEFAULT_ROOT,
    mountinfo: str | None = None,
) -> Manager:
    """Build the manager for this host's mode; pure, nothing is created until ``create()``.

    ``root`` and ``mountinfo`` exist for tests: a fake tree in a temporary directory, described
    either by a fake mountinfo file or by its directory names alone.
    """
    mounts = find_mounts(root, mountinfo)
    mode = mode_of(mounts)
    relpath = cgroup_relpath(cgroups_path, container_id)
    if mode is Mode.UNIFIED:
        from runtime.cgroups.v2 import V2Manager

        return V2Manager(mounts, relpath)
    from runtime.cgroups.v1 import V1Manager

    return V1Manager(mounts, relpath, mode)
