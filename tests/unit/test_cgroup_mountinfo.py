"""Parsing /proc/self/mountinfo for cgroup mounts and the mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cgroups import Mode, detect_mode
from runtime.cgroups.base import mode_of
from runtime.cgroups.mountinfo import parse_mountinfo
from runtime.errors import CgroupError

# This machine's layout: v1 controllers, cpu and cpuacct mounted apart, an empty cgroup2.
HYBRID_APART = (Path(__file__).parent / "data" / "hybrid-cpu-cpuacct-apart.mountinfo").read_text()

LEGACY_JOINED = """\
25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
26 24 0:23 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid shared:10 - cgroup cgroup rw,net_cls,net_prio
27 24 0:24 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids,clone_children
"""

UNIFIED = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"


def test_hybrid_apart() -> None:
    m = parse_mountinfo(HYBRID_APART)
    assert m.v1 == {
        "cpu": "/sys/fs/cgroup/cpu",
        "cpuacct": "/sys/fs/cgroup/cpuacct",
        "memory": "/sys/fs/cgroup/memory",
    }
    assert m.v2 == "/sys/fs/cgroup/unified"
    assert mode_of(m) is Mode.HYBRID


def test_legacy_joined_and_optional_fields() -> None:
    m = parse_mountinfo(LEGACY_JOINED)
    assert m.v1["cpu"] == m.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert m.v1["net_prio"] == "/sys/fs/cgroup/net_cls,net_prio"
    assert "clone_children" not in m.v1
    assert mode_of(m) is Mode.LEGACY


def test_unified() -> None:
    m = parse_mountinfo(UNIFIED)
    assert m.v1 == {} and m.v2 == "/sys/fs/cgroup"
    assert mode_of(m) is Mode.UNIFIED


def test_escaped_mount_point() -> None:
    m = parse_mountinfo("30 1 0:26 / /tmp/my\\040cgroup rw - cgroup2 cgroup2 rw\n")
    assert m.v2 == "/tmp/my cgroup"


def test_no_cgroup_at_all(tmp_path: Path) -> None:
    f = tmp_path / "mountinfo"
    f.write_text("22 1 0:21 / / rw - ext4 /dev/vda rw\n")
    with pytest.raises(CgroupError, match="no cgroup filesystem"):
        detect_mode(str(f))


def test_this_host() -> None:
    # Whatever the host is, detection must give an answer that agrees with /sys/fs/cgroup.
    mode = detect_mode()
    assert (mode is Mode.UNIFIED) == Path("/sys/fs/cgroup/cgroup.controllers").exists()
