"""The v2 driver on a real kernel, even on a hybrid host.

A hybrid host has a cgroup2 mount without controllers (``/sys/fs/cgroup/unified`` here). The parts
of v2 that need no controller are real there: mkdir/rmdir, ``cgroup.procs``, ``cgroup.freeze`` with
``cgroup.events``, ``cgroup.kill``, ``cpu.stat`` usage, and the "controller missing from
cgroup.controllers" error. The v2 resource files are covered by the same integration tests run
inside the v2 VMs of the kernel matrix.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.cgroups import Manager, Mode, new_manager
from runtime.cgroups.base import find_mounts, mode_of
from runtime.cgroups.testing import BUSY_LOOP, spawn_in, stop
from runtime.errors import CgroupError

MOUNTS = find_mounts()
UNIFIED = MOUNTS.v2


def _skip_reason() -> str | None:
    if not UNIFIED:
        return "needs a cgroup2 mount; this host has none"
    if mode_of(MOUNTS) is Mode.UNIFIED:
        return "host is unified (v2): test_cgroup_integration.py drives v2 here already"
    if not Path(UNIFIED, "cgroup.freeze").exists() and not Path(UNIFIED, "cgroup.procs").exists():
        return f"{UNIFIED} lacks cgroup.procs"
    return None


pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason())),
]


@pytest.fixture
def v2(tmp_path: Path) -> Iterator[Manager]:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"99 1 0:99 / {UNIFIED} rw - cgroup2 cgroup2 rw\n")
    parent = f"isoproof-t{os.getpid()}-{uuid.uuid4().hex[:6]}"
    mgr = new_manager(f"/{parent}/c", "c", root=str(UNIFIED), mountinfo=str(mountinfo))
    assert mgr.version == 2
    mgr.create()
    yield mgr
    if mgr.exists():
        mgr.kill_all()
    mgr.destroy()
    assert not Path(str(UNIFIED), parent).exists(), "cgroup leaked"


def test_v2_add_process_pids_and_kill(v2: Manager) -> None:
    p = spawn_in(v2, ["sleep", "30"])
    try:
        assert v2.pids() == [p.pid]
        v2.kill_all()
        assert p.wait(timeout=10) == -9
    finally:
        stop([p])


def test_v2_freeze_stops_cpu_and_thaw_restores_it(v2: Manager) -> None:
    p = spawn_in(v2, BUSY_LOOP)
    try:
        time.sleep(0.3)
        v2.freeze()
        assert v2.is_frozen() and v2.stats()["frozen"]
        u0 = v2.cpu_usage_ns()
        time.sleep(0.5)
        frozen_use = v2.cpu_usage_ns() - u0
        v2.thaw()
        u1 = v2.cpu_usage_ns()
        time.sleep(0.5)
        thawed_use = v2.cpu_usage_ns() - u1
    finally:
        stop([p])
    # Absolute CPU shares depend on what else the two cores are doing; what must hold is that the
    # frozen loop gets (almost) nothing and the thawed one clearly runs again.
    assert frozen_use < 5_000_000
    assert thawed_use > 20_000_000 and thawed_use > 10 * frozen_use


def test_v2_kill_of_a_frozen_cgroup_then_destroy(v2: Manager) -> None:
    p = spawn_in(v2, ["sleep", "30"])
    v2.freeze()
    v2.kill_all()
    assert p.wait(timeout=10) == -9
    v2.destroy()
    assert not v2.exists()


def test_v2_missing_controller_names_the_controllers_file(v2: Manager) -> None:
    with pytest.raises(
        CgroupError,
        match=rf"'memory' controller, which is missing from {UNIFIED}/cgroup.controllers",
    ):
        v2.set({"memory": {"limit": 1 << 30}})
    with pytest.raises(CgroupError, match="pids"):
        v2.set({"unified": {"pids.max": "10"}})
