"""The cgroup manager contract (stub: the drivers fill it in).

The OCI runtime core calls, in this order::

    mgr = new_manager(spec_cgroups_path, container_id)   # pure: nothing touched yet
    mgr.create()                  # make the directories (v2: enable controllers in ancestors)
    mgr.set(linux_resources)      # write every requested limit; typed CgroupError on failure
    mgr.add_process(child_pid)    # before the child runs anything of the user's
    ...
    mgr.freeze() / mgr.thaw() / mgr.is_frozen() / mgr.pids() / mgr.stats() / mgr.oom_kill_count()
    mgr.destroy()                 # remove every directory create() made; idempotent

A Manager is rebuilt from the state file with ``new_manager(...)`` using the same arguments, so it
must not keep anything that cannot be recomputed from them.
"""

from __future__ import annotations

import abc
import enum
from typing import Any

DEFAULT_PARENT = "isoproof"


class Mode(enum.Enum):
    LEGACY = "v1"  # only v1 hierarchies
    HYBRID = "hybrid"  # v1 hierarchies plus a (controller-less) cgroup2 mount; driven as v1
    UNIFIED = "v2"  # cgroup2 at the root


def detect_mode(mountinfo: str = "/proc/self/mountinfo") -> Mode:
    raise NotImplementedError


class Manager(abc.ABC):
    version: int  # 1 or 2

    @abc.abstractmethod
    def create(self) -> None: ...

    @abc.abstractmethod
    def add_process(self, pid: int) -> None: ...

    @abc.abstractmethod
    def set(self, resources: dict[str, Any]) -> None:
        """Apply an OCI ``linux.resources`` object."""

    @abc.abstractmethod
    def freeze(self) -> None: ...

    @abc.abstractmethod
    def thaw(self) -> None: ...

    @abc.abstractmethod
    def is_frozen(self) -> bool: ...

    @abc.abstractmethod
    def pids(self) -> list[int]: ...

    @abc.abstractmethod
    def stats(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def oom_kill_count(self) -> int: ...

    @abc.abstractmethod
    def destroy(self) -> None: ...

    @abc.abstractmethod
    def exists(self) -> bool: ...

    @abc.abstractmethod
    def paths(self) -> dict[str, str]:
        """Controller name -> directory (v2: a single entry under the key ``""``)."""


def new_manager(cgroups_path: str | None, container_id: str, root: str = "/sys/fs/cgroup") -> Manager:
    """OCI rule: an absolute ``cgroupsPath`` is taken relative to each hierarchy's root; a relative
    one (or none) goes under our ``isoproof`` parent: ``/isoproof/<path or id>``."""
    raise NotImplementedError
