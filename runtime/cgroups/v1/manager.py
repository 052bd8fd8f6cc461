"""cgroup v1 manager: one directory per hierarchy (joined controllers such as ``cpu,cpuacct``
share one), every controller module writing into its own hierarchy's directory.

Stats shape (v2 gives the same keys)::

    {"version": 1, "mode": "hybrid", "cpu": {"usage_ns", "per_cpu_ns", "periods", "throttled_periods",
     "throttled_ns"}, "memory": {"usage", "max_usage", "limit", "failcnt", "under_oom", "oom_kill"},
     "pids": {"current", "limit"}, "blkio": {"devices": {"MAJ:MIN": {"read_bytes", "write_bytes",
     "read_ios", "write_ios"}}}, "frozen": bool, "warnings": [...]}
"""

from __future__ import annotations

import os

from runtime.cgroups import fs
from runtime.cgroups.base import Manager, Mode, remove_cgroup
from runtime.cgroups.common import Context, check_shape
from runtime.cgroups.mountinfo import CgroupMounts
from runtime.cgroups.v1 import freezer
from runtime.errors import CgroupError, suppress

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

PROCS = "cgroup.procs"
# The controller modules are imported by the methods that write or read limits: status, kill and
# delete need only the freezer, and the rest (with their conversions) cost ~2 ms per CLI call.


class V1Manager(Manager):
    version = 1

    def __init__(self, mounts: CgroupMounts, relpath: str, mode: Mode = Mode.LEGACY) -> None:
        self.mounts = dict(mounts.v1)
        self.source = mounts.source
        self.relpath = relpath
        self.mode = mode
        self.ctx = Context()
        self.warnings = self.ctx.warnings

    # -- paths -------------------------------------------------------------------------------
    def _dir(self, controller: str) -> str | None:
        mount = self.mounts.get(controller)
        return os.path.join(mount, self.relpath) if mount else None

    def _need(self, controller: str, what: str) -> str:
        d = self._dir(controller)
        if d is None:
            raise CgroupError(
                f"{what} needs the cgroup v1 '{controller}' controller, which is not mounted"
                f" (no cgroup mount with it in {self.source})"
            )
        return d

    def _hierarchies(self) -> list[tuple[str, str]]:
        """(mount point, our directory) per hierarchy, each once."""
        seen = sorted(set(self.mounts.values()))
        return [(m, os.path.join(m, self.relpath)) for m in seen]

    def paths(self) -> dict[str, str]:
        return {c: os.path.join(m, self.relpath) for c, m in sorted(self.mounts.items())}

    def exists(self) -> bool:
        return any(os.path.isdir(d) for _m, d in self._hierarchies())

    # -- lifecycle ---------------------------------------------------------------------------
    def create(self) -> None:
        from runtime.cgroups.v1 import cpuset

        try:
            for mount, d in self._hierarchies():
                fs.makedirs(d, mount)
                if mount == self.mounts.get(cpuset.CONTROLLER):
                    # Every level, not only the ones made now: a crash may have left a level
                    # with empty cpus/mems.
                    level = mount
                    for part in self.relpath.split(os.sep):
                        level = os.path.join(level, part)
                        cpuset.inherit(level)
        except CgroupError:
            self._destroy_quietly()
            raise

    def _destroy_quietly(self) -> None:
        with suppress(CgroupError):
            self.destroy()

    def add_process(self, pid: int) -> None:
        # Join every hierarchy, so that no controller sees the task in the parent's cgroup.
        for _mount, d in self._hierarchies():
            fs.write(d, PROCS, pid)

    def set(self, resources: dict[str, Any]) -> None:
        from runtime.cgroups.v1 import blkio, cpu, cpuset, devices, hugetlb, memory, pids

        resources = check_shape(resources)
        if resources.get("unified"):
            keys = ", ".join(sorted(resources["unified"]))
            raise CgroupError(
                f"linux.resources.unified ({keys}) sets cgroup v2 files; this host is"
                f" {self.mode.value} and driven as cgroup v1"
            )
        for unsupported in ("network", "rdma"):
            if resources.get(unsupported):
                raise CgroupError(f"linux.resources.{unsupported} is not supported by isoproof")
        cpu_section = resources.get("cpu") or {}
        plan: list[tuple[str, Any, Any]] = []  # (controller, module, section)
        if cpu.wanted(cpu_section):
            plan.append((cpu.CONTROLLER, cpu, cpu_section))
        if cpuset.wanted(cpu_section):
            plan.append((cpuset.CONTROLLER, cpuset, cpu_section))
        for key, module in (("memory", memory), ("pids", pids), ("blockIO", blkio)):
            if module.wanted(resources.get(key)):
                plan.append((module.CONTROLLER, module, resources[key]))
        if devices.wanted(resources.get("devices")):
            plan.append((devices.CONTROLLER, devices, resources["devices"]))
        if hugetlb.wanted(resources.get("hugepageLimits")):
            plan.append((hugetlb.CONTROLLER, hugetlb, resources["hugepageLimits"]))
        # Check every controller before writing anything, so a missing one fails cleanly.
        dirs = [self._need(ctrl, f"linux.resources ({ctrl})") for ctrl, _m, _s in plan]
        for d in dirs:
            if not os.path.isdir(d):
                raise CgroupError(f"cgroup {d} does not exist; create() it before set()")
        for d, (_ctrl, module, section) in zip(dirs, plan, strict=True):
            module.apply(d, section, self.ctx)

    # -- freezer -----------------------------------------------------------------------------
    def freeze(self) -> None:
        freezer.freeze(self._need(freezer.CONTROLLER, "pause"))

    def thaw(self) -> None:
        freezer.thaw(self._need(freezer.CONTROLLER, "resume"))

    def is_frozen(self) -> bool:
        d = self._dir(freezer.CONTROLLER)
        return bool(d) and freezer.is_frozen(d)  # type: ignore[arg-type]

    # -- reading -----------------------------------------------------------------------------
    def pids(self) -> list[int]:
        for ctrl in (freezer.CONTROLLER, "pids", "memory", *sorted(self.mounts)):
            d = self._dir(ctrl)
            if d and os.path.isdir(d):
                return fs.read_pids(d, PROCS)
        return []

    def oom_kill_count(self) -> int:
        from runtime.cgroups.v1 import memory

        d = self._dir(memory.CONTROLLER)
        return memory.oom_kill_count(d) if d else 0

    def cpu_usage_ns(self) -> int:
        from runtime.cgroups.v1 import cpuacct

        return cpuacct.usage_ns(self._need(cpuacct.CONTROLLER, "cpu usage"))

    def stats(self) -> dict[str, Any]:
        from runtime.cgroups.v1 import blkio, cpu, cpuacct, memory, pids

        out: dict[str, Any] = {"version": 1, "mode": self.mode.value}
        cpu_stats: dict[str, Any] = {}
        if d := self._dir(cpuacct.CONTROLLER):
            cpu_stats.update(cpuacct.stats(d))
        if d := self._dir(cpu.CONTROLLER):
            cpu_stats.update(cpu.stats(d))
        out["cpu"] = cpu_stats
        if d := self._dir(memory.CONTROLLER):
            out["memory"] = memory.stats(d)
        if d := self._dir(pids.CONTROLLER):
            out["pids"] = pids.stats(d)
        if d := self._dir(blkio.CONTROLLER):
            out["blkio"] = blkio.stats(d)
        out["frozen"] = self.is_frozen()
        out["warnings"] = list(self.warnings)
        out["unenforced"] = []
        return out

    def destroy(self) -> None:
        # Dying tasks in a frozen v1 cgroup never finish dying; thaw so that rmdir can succeed.
        if self.is_frozen():
            with suppress(CgroupError):
                self.thaw()
        errors: list[str] = []
        for mount, d in self._hierarchies():
            try:
                remove_cgroup(d, mount)
            except CgroupError as e:
                errors.append(str(e))
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise CgroupError(errors[0] + more)
