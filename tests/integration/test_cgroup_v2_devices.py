"""The v2 device filter on a real kernel: the BPF program is loaded, attached to a cgroup2
directory, and a process moved into that cgroup is refused what the rules deny.

BPF_CGROUP_DEVICE programs need no controller, so this runs on a hybrid host too: its cgroup2
mount (``/sys/fs/cgroup/unified`` here) has no controllers, but programs attached to a directory
there are run for the processes in it. On a unified host (the v2 legs of the kernel matrix) the
same tests use the ordinary v2 manager.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.cgroups import Manager, Mode, new_manager
from runtime.cgroups.base import find_mounts, mode_of
from runtime.cgroups.testing import spawn_in, stop
from runtime.cgroups.v2 import bpf, devices
from runtime.sys import Sys
from verify import probes

MOUNTS = find_mounts()
UNIFIED = MOUNTS.v2

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not UNIFIED, reason="needs a cgroup2 mount; this host has none"),
]

# Run inside the cgroup: try each (path, flags) open and each (path, major, minor) mknod, print
# what happened as JSON ("ok" or the errno's name). -S: nothing of site runs in the cgroup.
PROBE = r"""
import errno, json, os, stat, sys
out = {}
for what in json.loads(sys.argv[1]):
    try:
        if what[0] == "open":
            os.close(os.open(what[1], getattr(os, what[2])))
        else:
            os.mknod(what[1], stat.S_IFCHR | 0o600, os.makedev(what[2], what[3]))
            os.unlink(what[1])
        out[" ".join(map(str, what))] = "ok"
    except OSError as e:
        out[" ".join(map(str, what))] = errno.errorcode[e.errno]
print(json.dumps(out))
"""

DENY_ALL = {"allow": False, "access": "rwm"}
ALLOW_ALL = {"allow": True, "access": "rwm"}
NULL = {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
DENY_ZERO = {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "rwm"}


@pytest.fixture
def rebuild(tmp_path: Path) -> Callable[[], Manager]:
    """Builds a v2 manager for one fresh cgroup under ``isoproof-t<unique>``; each call a new one,
    as each ``isoproof-oci`` command rebuilds it from the state file."""
    parent = f"isoproof-t{os.getpid()}-{uuid.uuid4().hex[:6]}"
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"99 1 0:99 / {UNIFIED} rw - cgroup2 cgroup2 rw\n")

    def make() -> Manager:
        if mode_of(MOUNTS) is Mode.UNIFIED:
            return new_manager(f"/{parent}/c", "c")
        # hybrid: drive the controller-less cgroup2 mount as if it were the only one
        return new_manager(f"/{parent}/c", "c", root=str(UNIFIED), mountinfo=str(mountinfo))

    return make


@pytest.fixture
def v2(rebuild: Callable[[], Manager]) -> Iterator[Manager]:
    """The cgroup, created; removed (with every process in it, and so with its programs) also
    when the test fails."""
    mgr = rebuild()
    parent = Path(mgr.paths()[""]).parent
    assert mgr.version == 2
    mgr.create()
    yield mgr
    if mgr.exists():
        mgr.kill_all()
    mgr.destroy()
    assert not parent.exists(), "cgroup leaked"


@pytest.fixture
def probe(tmp_path: Path) -> Callable[[Manager, list[list[object]]], dict[str, str]]:
    def run(mgr: Manager, attempts: list[list[object]]) -> dict[str, str]:
        argv = [sys.executable, "-S", "-c", PROBE, json.dumps(attempts)]
        p = spawn_in(mgr, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = p.communicate(timeout=60)
        finally:
            stop([p])
        assert p.returncode == 0, err.decode()
        return json.loads(out)

    return run


def attached_ids(mgr: Manager) -> list[int]:
    fd = os.open(mgr.paths()[""], os.O_RDONLY | os.O_DIRECTORY)
    try:
        return Sys().bpf_prog_query(fd, bpf.BPF_CGROUP_DEVICE)
    finally:
        os.close(fd)


def test_deny_all_but_dev_null(v2: Manager, probe, tmp_path: Path) -> None:
    assert v2.stats()["unenforced"] == ["devices"]  # nothing attached yet
    v2.set({"devices": [DENY_ALL, NULL]})
    assert v2.warnings == [] and v2.stats()["unenforced"] == []
    assert len(attached_ids(v2)) == 1
    got = probe(
        v2,
        [
            ["open", "/dev/null", "O_RDWR"],
            ["open", "/dev/zero", "O_RDONLY"],
            ["mknod", str(tmp_path / "null"), 1, 3],
            ["mknod", str(tmp_path / "zero"), 1, 5],
        ],
    )
    assert got == {
        "open /dev/null O_RDWR": "ok",
        "open /dev/zero O_RDONLY": "EPERM",
        f"mknod {tmp_path / 'null'} 1 3": "ok",
        f"mknod {tmp_path / 'zero'} 1 5": "EPERM",
    }
    # The host (outside the cgroup) is not affected.
    os.close(os.open("/dev/zero", os.O_RDONLY))


def test_allow_all_then_deny_dev_zero(v2: Manager, probe) -> None:
    v2.set({"devices": [ALLOW_ALL, DENY_ZERO]})
    got = probe(v2, [["open", p, "O_RDONLY"] for p in ("/dev/null", "/dev/zero", "/dev/full")])
    assert got == {
        "open /dev/null O_RDONLY": "ok",
        "open /dev/zero O_RDONLY": "EPERM",
        "open /dev/full O_RDONLY": "ok",
    }


def test_a_later_deny_of_write_refuses_read_write_opens(v2: Manager, probe) -> None:
    """The kernel asks for read|write at once for O_RDWR: the per-bit semantics on a real kernel."""
    v2.set(
        {"devices": [NULL, {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}]}
    )
    got = probe(v2, [["open", "/dev/null", f] for f in ("O_RDONLY", "O_WRONLY", "O_RDWR")])
    assert got == {
        "open /dev/null O_RDONLY": "ok",
        "open /dev/null O_WRONLY": "EPERM",
        "open /dev/null O_RDWR": "EPERM",
    }


def test_update_replaces_the_filter(v2: Manager, rebuild, probe) -> None:
    v2.set({"devices": [ALLOW_ALL, DENY_ZERO]})
    first = attached_ids(v2)
    assert probe(v2, [["open", "/dev/zero", "O_RDONLY"]]) == {"open /dev/zero O_RDONLY": "EPERM"}
    # A manager rebuilt from the state file, as `isoproof-oci update` has, finds the old filter
    # in the kernel and replaces it.
    rebuild().set({"devices": [ALLOW_ALL]})
    now = attached_ids(v2)
    assert len(now) == 1 and now != first
    assert probe(v2, [["open", "/dev/zero", "O_RDONLY"]]) == {"open /dev/zero O_RDONLY": "ok"}


def test_the_verifier_accepts_large_and_random_rule_sets() -> None:
    """Every shape the generator emits, checked by the kernel's verifier (load only)."""
    rnd = random.Random(1234)
    sets = [[], [DENY_ALL], [ALLOW_ALL, DENY_ZERO]]
    for size in (1, 5, 50, 500):
        sets.append(
            [
                {
                    "allow": rnd.random() < 0.5,
                    "type": rnd.choice("abc"),
                    "major": rnd.choice([-1, 1, 5, 8, 136, 4095]),
                    "minor": rnd.choice([-1, 0, 3, 5, (1 << 20) - 1]),
                    "access": rnd.choice(["r", "w", "m", "rw", "rwm"]),
                }
                for _ in range(size)
            ]
        )
    s = Sys()
    for rules in sets:
        fd = s.bpf_prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, devices.program(rules), bpf.LICENSE)
        os.close(fd)


# --- through the OCI runtime's CLI (v1 devices.allow on a hybrid host, the BPF filter on v2) -----


def test_container_gets_its_default_devices_and_no_other(oci, bundle) -> None:
    script = (
        "echo x > /dev/null && echo null-ok; head -c 1 /dev/zero | wc -c;"
        " head -c 1 /dev/isoproof-blk 2>&1 >/dev/null"
    )
    b = bundle(args=["sh", "-c", script])
    oci.create(b, "devs")
    pid = oci.state("devs")["pid"]
    # Made by the host after create (the container's /dev exists), before the user's process runs.
    # (The node goes with the container's /dev.)
    found = probes.block_node_the_host_can_open(Path(f"/proc/{pid}/root/dev"))
    if found is None:
        pytest.skip("needs a block device the host can open; this host refuses every one")
    _node, major, minor = found
    oci("start", "devs")
    oci.wait_status("devs", "stopped")
    lines = b.out.read_text().splitlines()
    assert lines[:2] == ["null-ok", "1"]
    assert lines[2:] == ["head: /dev/isoproof-blk: Operation not permitted"], (
        f"host block device {major}:{minor} was not refused: {lines[2:]}"
    )


def test_update_prints_the_cgroup_managers_warnings(oci, bundle) -> None:
    """``update`` reports what it accepted but cannot enforce, as create does (new device rules
    where bpf(2) is refused would be one)."""
    b = bundle()
    oci.create(b, "updw")
    r = oci("update", "--kernel-memory", "1m", "updw")
    if oci.is_ours:
        assert len(r.stderr.splitlines()) == 1
        assert r.stderr.startswith("isoproof-oci: warning: memory.kernel is ignored")
