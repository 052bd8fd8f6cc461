"""The leg self-check: before the payload, prove the guest is the leg it claims to be.

Run by the guest script as ``pytest verify/matrix/selfcheck.py`` (explicit path, so the file name
need not match ``test_*``). A leg whose cgroup layout, kernel, disk or interpreter is wrong would make
every verdict after it meaningless, so these are recorded like any other test.
"""

from __future__ import annotations

import os
import platform
import stat
import sys
from pathlib import Path

import pytest

from runtime.cgroups.mountinfo import unescape

IN_GUEST = os.environ.get("ISOPROOF_IN_MATRIX_GUEST") == "1"
pytestmark = pytest.mark.skipif(
    not IN_GUEST, reason="runs inside a matrix VM leg (ISOPROOF_IN_MATRIX_GUEST=1); this is not one"
)

CGROUP_ROOT = Path("/sys/fs/cgroup")
# The controllers the verification suite's properties need, by cgroup version.
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "blkio", "pids", "freezer", "devices")
V2_CONTROLLERS = ("cpu", "cpuset", "memory", "io", "pids")


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, fs type, options) for every mount, from /proc/self/mountinfo."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        fstype, _source, superopts = right.split(maxsplit=2)
        out.append((unescape(fields[4]), fstype, superopts))
    return out


def test_kernel_is_the_legs() -> None:
    want = os.environ.get("ISOPROOF_EXPECT_RELEASE")
    assert want, "the host did not say which kernel this leg boots"
    assert platform.release() == want


def test_cgroup_layout_matches_leg() -> None:
    mode = os.environ["ISOPROOF_CGROUP_MODE"]
    mounts = _mounts()
    cgroup2 = [m for m in mounts if m[1] == "cgroup2"]
    v1 = {Path(m[0]).name: m for m in mounts if m[1] == "cgroup"}
    if mode == "v2":
        assert [m[0] for m in cgroup2] == [str(CGROUP_ROOT)]
        assert not v1, f"v1 hierarchies in a v2 leg: {sorted(v1)}"
        available = (CGROUP_ROOT / "cgroup.controllers").read_text().split()
        missing = [c for c in V2_CONTROLLERS if c not in available]
        assert not missing, f"cgroup2 lacks {missing}; has {available}"
    else:
        assert not cgroup2, f"cgroup2 still mounted in a v1 leg: {cgroup2}"
        # The host reads the kernel's .config: Debian's 6.12 has no v1 memory or cpuset at all.
        unavailable = os.environ.get("ISOPROOF_V1_UNAVAILABLE", "").split()
        expected = [c for c in V1_CONTROLLERS if c not in unavailable]
        missing = [c for c in expected if c not in v1]
        assert not missing, f"no v1 hierarchy for {missing}; mounted: {sorted(v1)}"
        surprise = [c for c in unavailable if c in v1]
        assert not surprise, f"{surprise} mounted as v1 though the kernel config says no v1"
        for ctrl in expected:
            assert ctrl in v1[ctrl][2].split(","), f"{ctrl} hierarchy mounted without {ctrl}"


def test_disk_for_io_checks() -> None:
    dev = os.environ.get("ISOPROOF_DISK_DEV")
    assert dev, "no disk was set up in the guest (see guest.log)"
    assert stat.S_ISBLK(os.stat(dev).st_mode)
    scratch = Path(os.environ["ISOPROOF_SCRATCH"])
    assert any(m[0] == str(scratch) and m[1] == "ext4" for m in _mounts())
    probe = scratch / "isoproof-selfcheck"
    probe.write_bytes(b"x" * 4096)
    probe.unlink()


def test_host_interpreter_and_modules() -> None:
    assert sys.executable == os.environ.get("ISOPROOF_EXPECT_PYTHON", sys.executable)
    modules = Path("/lib/modules") / platform.release()
    assert (modules / "modules.dep").is_file(), f"no modules for this kernel at {modules}"


def _cached_9p(opts: str) -> bool:
    """Whether 9p mount options show a page cache: 6.12 prints ``cache=0xf``, 6.1 a bare
    ``loose`` (or ``fscache``, ``mmap``); an uncached mount prints neither."""
    for opt in opts.split(","):
        if opt in ("loose", "fscache", "mmap"):
            return True
        if opt.startswith("cache=") and opt not in ("cache=none", "cache=0x0", "cache=0"):
            return True
    return False


def test_page_cached_views_and_leg_dir() -> None:
    """The interpreter, venv, repo and /usr are seen through the page-cached share (else the suite
    runs ~4x slower and may time out), and the leg directory still writes through to the host."""
    wanted = [p for p in os.environ.get("ISOPROOF_FAST_PATHS", "").split(":") if p]
    if not wanted:
        pytest.skip("the host asked for no page-cached views (ISOPROOF_FAST_PATHS is empty)")
    top = {}
    for point, fstype, opts in _mounts():
        top[point] = (fstype, opts)  # later mounts hide earlier ones at the same point
    for path in wanted:
        fstype, opts = top.get(path, ("none", ""))
        assert fstype == "9p" and _cached_9p(opts), f"{path}: {fstype} {opts} (no page cache)"
    leg_dir = Path(os.environ["ISOPROOF_LEG_DIR"])
    probe = leg_dir / "selfcheck-write-probe"
    probe.write_text("x")
    probe.unlink()
