"""Spec -> plan conversions (pure): mount options, the rootfs mount list, namespace joins and
unshares, capability masks and device rules (path resolution: test_rootfs_resolve.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime import spec as spec_
from runtime import sys as s
from runtime.oci import plan, process, rootfs
from runtime.oci.caps import CAPS, mask


def make(**linux: object) -> spec_.Spec:
    doc = spec_.default_spec()
    doc["process"]["terminal"] = False
    doc["linux"].update(linux)
    return spec_.parse(doc, "/b")


def test_parse_options_flags_propagation_and_data():
    flags, prop, data = rootfs.parse_options(
        ["nosuid", "noexec", "ro", "rw", "rbind", "rslave", "mode=755", "size=64k"]
    )
    assert flags == s.MS_NOSUID | s.MS_NOEXEC | s.MS_BIND | s.MS_REC  # rw cleared ro
    assert prop == [s.MS_SLAVE | s.MS_REC]
    assert data == "mode=755,size=64k"


def test_plan_keeps_spec_mounts_in_config_order_adds_missing_defaults_first():
    sp = make()
    sp.mounts = [m for m in sp.mounts if m.destination not in ("/dev", "/sys")]
    sp.mounts.insert(0, spec_.Mount("/dev/pts/x", "bind", "data", ["bind"]))
    steps = rootfs.plan(sp)
    dests = [st.destination for st in steps]
    assert dests[:2] == ["/dev", "/sys"]  # the defaults the spec lacks, in front
    # then the spec's own, in its order (runc's): /dev/pts/x first, even before /dev/pts
    assert dests[2:] == [os.path.normpath(m.destination) for m in sp.mounts]
    assert dests.count("/proc") == 1  # the spec's own, not a second default
    bind = next(st for st in steps if st.destination == "/dev/pts/x")
    assert bind.is_bind and bind.source == "/b/data"  # relative to the bundle
    sysfs = next(st for st in steps if st.destination == "/sys")
    assert sysfs.flags & s.MS_RDONLY


def test_root_propagation_defaults_to_rprivate():
    assert rootfs.root_propagation(make()) == s.MS_PRIVATE | s.MS_REC
    assert rootfs.root_propagation(make(rootfsPropagation="rslave")) == s.MS_SLAVE | s.MS_REC


def test_joins_user_first_mount_last_and_unshare_flags():
    sp = make(namespaces=[{"type": "mount", "path": "/proc/1/ns/mnt"}, {"type": "pid"},
                          {"type": "network", "path": "/n"}, {"type": "user", "path": "/u"},
                          {"type": "uts"}])  # fmt: skip
    sp_joins = plan.joins(sp)
    assert [k for k, _ in sp_joins] == ["user", "network", "mount"]
    assert plan.unshare_flags(sp) == s.CLONE_NEWPID | s.CLONE_NEWUTS
    assert plan.unshare_flags(make()) == (s.CLONE_NEWPID | s.CLONE_NEWNET | s.CLONE_NEWIPC
                                          | s.CLONE_NEWUTS | s.CLONE_NEWNS | s.CLONE_NEWCGROUP)  # fmt: skip


def test_cap_masks_limit_to_kernel_and_absent_means_none():
    c = spec_.Capabilities(bounding=["CAP_KILL", "CAP_CHECKPOINT_RESTORE"], effective=["CAP_KILL"])
    m = process.cap_masks(c, last_cap=39)
    assert m.bounding == 1 << CAPS["CAP_KILL"]  # 40 is beyond this kernel
    assert m.effective == mask(["CAP_KILL"]) and m.ambient == 0
    assert process.cap_masks(None, 40) == process.CapMasks(0, 0, 0, 0, 0)


def test_device_rules_append_defaults_after_spec_rules():
    sp = make()
    res = plan.resources(sp)
    rules = res["devices"]
    assert isinstance(rules, list)
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in rules
    assert {"allow": True, "type": "c", "major": 136, "access": "rwm"} in rules  # /dev/pts/*
    assert plan.resources(make(resources={})) == {}
    assert sp.linux.resources["devices"] == [{"allow": False, "access": "rwm"}]  # not mutated


def test_cgroup_binds_hybrid(tmp_path: Path):
    mi = tmp_path / "mountinfo"
    mi.write_text(
        "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "32 25 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
        "33 25 0:29 / /proc rw - proc proc rw\n"
    )
    cg = tmp_path / "cgroup"
    cg.write_text("0::/\n4:memory:/isoproof/c1\n3:cpu:/isoproof/c1\n")
    binds = rootfs.cgroup_binds(str(mi), str(cg))
    assert binds == [("/sys/fs/cgroup/unified/", "unified"),
                     ("/sys/fs/cgroup/memory/isoproof/c1", "memory"),
                     ("/sys/fs/cgroup/cpu/isoproof/c1", "cpu")]  # fmt: skip
    # the v2 mount of a hybrid host, where the container has no cgroup of its own, is left out
    assert rootfs.own_cgroup_binds(binds, "isoproof/c1") == binds[1:]


def test_lookup_uses_container_path():
    have = {"/usr/bin/tool"}

    def exists(p: str, _mode: int) -> bool:
        return p in have

    assert process.lookup("tool", ["PATH=/bin:/usr/bin"], exists) == "/usr/bin/tool"
    with pytest.raises(process.ExecError, match="not found in"):
        process.lookup("tool", ["PATH=/bin"], exists)
    with pytest.raises(process.ExecError, match="no such file or directory"):
        process.lookup("/bin/tool", [], exists)  # podman and docker: exit 127

    def present_not_executable(p: str, mode: int) -> bool:
        return mode == os.F_OK

    with pytest.raises(process.ExecError, match="permission denied"):  # their exit 126
        process.lookup("/etc/passwd", [], present_not_executable)


def test_plan_default_spec_keeps_config_order():
    """runc's order: /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys, ... as listed (the old
    plan sorted by depth and put /sys before /dev/pts)."""
    sp = make()
    assert [st.destination for st in rootfs.plan(sp)] == [m.destination for m in sp.mounts]
