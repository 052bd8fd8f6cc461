"""Host-side helpers for cgroup tests and benchmarks: put a fresh process into a cgroup before it
runs anything, make a scratch loop device, measure a CPU split and a write rate.

Written against the :class:`~runtime.cgroups.Manager` interface only, so the same measurement runs
on a v1, hybrid or v2 host. Needs root. Not used by the runtime itself.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from runtime.cgroups.base import Manager
from runtime.sys import PR_SET_PDEATHSIG, Sys

BUSY_LOOP = ["/bin/sh", "-c", "while :; do :; done"]
DD_SECONDS = re.compile(r"copied, ([0-9.]+) s")  # coreutils dd's summary line


def _die_with_parent() -> None:
    Sys().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn_in(mgr: Manager, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
    """Start ``argv`` inside ``mgr``'s cgroup. A shell waits on its stdin until it has been moved,
    then execs ``argv``: nothing of ``argv`` ever runs outside the cgroup (runc does the same
    with its sync pipe). The child dies with us (PDEATHSIG): a test run killed before its
    finalisers would otherwise leave busy loops running in a cgroup nobody removes."""
    p = subprocess.Popen(
        ["/bin/sh", "-c", 'read _; exec "$@"', "sh", *argv],
        stdin=subprocess.PIPE,
        preexec_fn=_die_with_parent,
        **kw,  # type: ignore[call-overload]
    )
    try:
        mgr.add_process(p.pid)
    except BaseException:
        p.kill()
        p.wait()
        raise
    assert p.stdin is not None
    p.stdin.write(b"\n")
    p.stdin.close()
    p.stdin = None  # so that communicate() does not touch it
    return p


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


@dataclass
class LoopDevice:
    path: str
    major: int
    minor: int
    backing: str


@contextmanager
def loop_device(size_mib: int = 64, directory: str = "/var/tmp") -> Iterator[LoopDevice]:
    """A loop device over a sparse file, detached and deleted afterwards (also on failure)."""
    if not os.path.exists("/dev/loop-control"):
        # A guest without udev has not loaded the module (CONFIG_BLK_DEV_LOOP=m on Debian).
        subprocess.run(["modprobe", "loop"], check=False, capture_output=True)
    backing = os.path.join(directory, f"isoproof-loop-{uuid.uuid4().hex[:8]}.img")
    with open(backing, "wb") as f:
        f.truncate(size_mib << 20)
    dev = ""
    try:
        proc = subprocess.run(
            ["losetup", "--find", "--show", backing], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"losetup --find --show {backing}: {proc.stderr.strip()}")
        dev = proc.stdout.strip()
        st = os.stat(dev)
        yield LoopDevice(dev, os.major(st.st_rdev), os.minor(st.st_rdev), backing)
    finally:
        if dev:
            subprocess.run(["losetup", "-d", dev], check=False)
        os.unlink(backing)


def some_block_device() -> tuple[int, int] | None:
    """MAJ:MIN of a real whole disk: the one holding / when / is on a disk, else the scratch disk a
    matrix guest announces in ISOPROOF_DISK_DEV (a guest's / is 9p, on no block device)."""
    dev = os.stat("/").st_dev
    sysdir = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
    if os.path.exists(sysdir):
        real = os.path.realpath(sysdir)
        if os.path.exists(os.path.join(real, "partition")):
            real = os.path.dirname(real)
        with open(os.path.join(real, "dev")) as f:
            major, minor = f.read().strip().split(":")
        return int(major), int(minor)
    scratch = os.environ.get("ISOPROOF_DISK_DEV")
    if scratch and os.path.exists(scratch):
        st = os.stat(scratch)
        return os.major(st.st_rdev), os.minor(st.st_rdev)
    return None


def cpu_split(a: Manager, b: Manager, seconds: float) -> tuple[int, int]:
    """Run one busy loop in each cgroup (the caller pins both to one CPU with ``cpu.cpus``) and
    return the CPU time each used over ``seconds``, in ns, measured from the cgroups' counters."""
    procs = [spawn_in(a, BUSY_LOOP), spawn_in(b, BUSY_LOOP)]
    try:
        time.sleep(0.3)  # let both get onto the run queue before measuring
        a0, b0 = a.cpu_usage_ns(), b.cpu_usage_ns()
        time.sleep(seconds)
        a1, b1 = a.cpu_usage_ns(), b.cpu_usage_ns()
    finally:
        stop(procs)
    return a1 - a0, b1 - b0


def direct_write_rate(mgr: Manager, device: str, mib: int, block_kib: int = 1024) -> float:
    """Bytes per second of ``mib`` MiB of O_DIRECT writes to ``device`` from inside ``mgr``, in
    blocks of ``block_kib`` KiB (``mib`` MiB must be a whole number of blocks).

    O_DIRECT because v1 throttles only I/O the cgroup submits itself, not later writeback."""
    total = mib << 20
    block = block_kib << 10
    argv = ["dd", "if=/dev/zero", f"of={device}", f"bs={block}", f"count={total // block}"]
    argv.append("oflag=direct")
    start = time.monotonic()
    p = spawn_in(mgr, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _out, err = p.communicate()
    elapsed = time.monotonic() - start
    if p.returncode != 0:
        raise RuntimeError(f"dd failed ({p.returncode}): {err.decode().strip()}")
    # dd's own clock starts once the device is open: it leaves out process start-up, which takes
    # a noticeable part of a second in an emulated (TCG) VM. The wall time is the fallback.
    m = DD_SECONDS.search(err.decode(errors="replace"))
    if m and float(m.group(1)) > 0:
        elapsed = float(m.group(1))
    return total / elapsed
