"""cgroup v2 manager: one directory in the unified hierarchy.

Controllers are enabled in the ``cgroup.subtree_control`` of every *ancestor* (root included) at
create time, never in the leaf's own: a v2 cgroup with processes cannot enable controllers for
children ("no internal processes"), and the leaf is where the container's processes live.

Stats: the same shape as v1 (see ``v1/manager.py``), with ``memory.oom`` (v2's count of OOM
events) instead of ``under_oom``, ``per_cpu_ns`` empty, and ``unenforced`` listing ``devices``
while no BPF device filter is attached to the cgroup (v2 has no other way to restrict devices;
see ``devices.py``). That is read from the kernel, not remembered: a manager rebuilt from the
state file answers the same.
"""

from __future__ import annotations

import os

from runtime.cgroups import fs
from runtime.cgroups.base import Manager, Mode, remove_cgroup
from runtime.cgroups.common import Context, check_shape
from runtime.cgroups.mountinfo import CgroupMounts
from runtime.cgroups.v2 import freezer
from runtime.errors import CgroupError, suppress

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

PROCS = "cgroup.procs"
CONTROLLERS = "cgroup.controllers"
SUBTREE_CONTROL = "cgroup.subtree_control"
KILL = "cgroup.kill"  # 5.14+
# The controller modules and Sys (ctypes, for bpf(2)) are imported by the methods that write or
# read limits: status, kill and delete need only the freezer; the rest cost ~5 ms per CLI call.


class V2Manager(Manager):
    version = 2
    mode = Mode.UNIFIED

    def __init__(self, mounts: CgroupMounts, relpath: str) -> None:
        assert mounts.v2 is not None
        self.mount = mounts.v2
        self.relpath = relpath
        self.dir = os.path.join(self.mount, relpath)
        self.ctx = Context()
        self.warnings = self.ctx.warnings
        self._sys: Any = None

    @property
    def sys(self) -> Any:
        """bpf(2) for the device filter; unit tests put a RecordingSys here."""
        if self._sys is None:
            from runtime.sys import Sys

            self._sys = Sys()
        return self._sys

    @sys.setter
    def sys(self, value: Any) -> None:
        self._sys = value

    def paths(self) -> dict[str, str]:
        return {"": self.dir}

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    def _ancestors(self) -> list[str]:
        """The mount and every level above the leaf, top first."""
        out, cur = [self.mount], self.mount
        for part in self.relpath.split(os.sep)[:-1]:
            cur = os.path.join(cur, part)
            out.append(cur)
        return out

    def create(self) -> None:
        try:
            fs.makedirs(self.dir, self.mount)
            for level in self._ancestors():
                enabled = set(fs.read_or(level, SUBTREE_CONTROL).split())
                for ctrl in fs.read_or(level, CONTROLLERS).split():
                    if ctrl in enabled:
                        continue
                    # One at a time: a controller that cannot be enabled (cpu with a real-time
                    # task in the way, ...) must not stop the others. set() reports it if needed.
                    try:
                        fs.write(level, SUBTREE_CONTROL, f"+{ctrl}")
                    except CgroupError:
                        continue
        except CgroupError:
            with suppress(CgroupError):
                self.destroy()
            raise

    def _check_controller(self, ctrl: str, what: str) -> None:
        if ctrl in fs.read_or(self.dir, CONTROLLERS).split():
            return
        levels = self._ancestors()
        for level in levels:
            if ctrl not in fs.read_or(level, CONTROLLERS).split():
                raise CgroupError(
                    f"{what} needs the cgroup v2 '{ctrl}' controller, which is missing from"
                    f" {os.path.join(level, CONTROLLERS)}"
                )
        raise CgroupError(
            f"{what} needs the cgroup v2 '{ctrl}' controller, which is missing from"
            f" {os.path.join(self.dir, CONTROLLERS)} (it could not be enabled in"
            f" {os.path.join(levels[-1], SUBTREE_CONTROL)})"
        )

    def add_process(self, pid: int) -> None:
        fs.write(self.dir, PROCS, pid)

    def set(self, resources: dict[str, Any]) -> None:
        from runtime.cgroups.v2 import cpu, cpuset, devices, hugetlb, io, memory, pids

        resources = check_shape(resources)
        for unsupported in ("network", "rdma"):
            if resources.get(unsupported):
                raise CgroupError(f"linux.resources.{unsupported} is not supported by isoproof")
        if not os.path.isdir(self.dir):
            raise CgroupError(f"cgroup {self.dir} does not exist; create() it before set()")
        cpu_section = resources.get("cpu") or {}
        plan: list[tuple[str, Any, Any]] = []
        if cpu.wanted(cpu_section):
            plan.append((cpu.CONTROLLER, cpu, cpu_section))
        if cpuset.wanted(cpu_section):
            plan.append((cpuset.CONTROLLER, cpuset, cpu_section))
        for key, module in (("memory", memory), ("pids", pids), ("blockIO", io)):
            if module.wanted(resources.get(key)):
                plan.append((module.CONTROLLER, module, resources[key]))
        if hugetlb.wanted(resources.get("hugepageLimits")):
            plan.append((hugetlb.CONTROLLER, hugetlb, resources["hugepageLimits"]))
        unified = resources.get("unified") or {}
        unified_ctrls = self._unified_controllers(unified)
        for ctrl, _m, _s in plan:
            self._check_controller(ctrl, f"linux.resources ({ctrl})")
        for key, ctrl in unified_ctrls.items():
            self._check_controller(ctrl, f"linux.resources.unified[{key!r}]")
        # Compiled (so every rule is checked) before anything is written.
        device_filter = None
        if devices.wanted(resources.get("devices")):
            device_filter = devices.program(resources["devices"])
        for _ctrl, module, section in plan:
            module.apply(self.dir, section, self.ctx)
        if device_filter is not None:
            devices.attach(self.dir, device_filter, self.ctx, self.sys)
        # Last, so that it overrides what the typed fields wrote (OCI: unified wins).
        for key, value in unified.items():
            fs.write(self.dir, key, str(value))

    def _unified_controllers(self, unified: dict[str, Any]) -> dict[str, str]:
        """Check each ``unified`` key names a plain file of this cgroup; return key -> controller."""
        out: dict[str, str] = {}
        for key in unified:
            if not key or "/" in key or key.startswith("."):
                raise CgroupError(f"linux.resources.unified[{key!r}] is not a cgroup file name")
            ctrl = key.split(".", 1)[0]
            if ctrl != "cgroup":
                out[key] = ctrl
        for key, ctrl in out.items():
            if not fs.has(self.dir, key):
                self._check_controller(ctrl, f"linux.resources.unified[{key!r}]")
                raise CgroupError(f"linux.resources.unified[{key!r}]: no such file in {self.dir}")
        return out

    def freeze(self) -> None:
        freezer.freeze(self.dir)

    def thaw(self) -> None:
        freezer.thaw(self.dir)

    def is_frozen(self) -> bool:
        return freezer.is_frozen(self.dir)

    def pids(self) -> list[int]:
        return fs.read_pids(self.dir, PROCS) if os.path.isdir(self.dir) else []

    def oom_kill_count(self) -> int:
        from runtime.cgroups.v2 import memory

        return memory.oom_kill_count(self.dir)

    def cpu_usage_ns(self) -> int:
        from runtime.cgroups.v2 import cpu

        return cpu.usage_ns(self.dir)

    def stats(self) -> dict[str, Any]:
        from runtime.cgroups.v2 import cpu, devices, io, memory, pids

        return {
            "version": 2,
            "mode": self.mode.value,
            "cpu": cpu.stats(self.dir),
            "memory": memory.stats(self.dir),
            "pids": pids.stats(self.dir),
            "blkio": io.stats(self.dir),
            "frozen": self.is_frozen(),
            "warnings": list(self.warnings),
            "unenforced": [] if devices.attached(self.dir, self.sys) else ["devices"],
        }

    def kill_all(self, sig: int = 9) -> None:
        # cgroup.kill (5.14+) kills every task atomically, including ones forking right now.
        if sig == 9 and fs.has(self.dir, KILL):
            fs.write(self.dir, KILL, 1)
            return
        super().kill_all(sig)

    def destroy(self) -> None:
        remove_cgroup(self.dir, self.mount)
