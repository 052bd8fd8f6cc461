"""The escape battery: the classes of flaw behind the container escapes that happened in runc
(CVE-2019-5736, CVE-2021-30465 / CVE-2024-45310, CVE-2024-21626) and the host-facing parts of a
default container that a runtime could leave writable, each judged from the host.

The attackers inside the container are busybox shell (the rootfs has no python). An open "for
writing" is ``{ true; } 3>>FILE``: O_WRONLY|O_CREAT|O_APPEND (checked with strace), then closed;
no byte is ever written to anything that is not the container's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from verify import host, probes
from verify.drivers import Container, Driver, RuntimeFailure
from verify.drivers.oci import copy_rootfs
from verify.spec import ContainerSpec, oci_config

pytestmark = pytest.mark.root

EXEC_ROUNDS = 30  # execs while the attacker watches /proc
# Creates while the flipper swaps the mount destination, unless the time box ends first: the whole
# battery must add at most 30 s to a host leg. runc makes ~100 creates in 10 s on a quiet host; a
# Python runtime's create + delete is ~0.5 s, so for it the box, not the count, ends the run.
# A deeper run: ISOPROOF_RACE_TRIES / ISOPROOF_RACE_BOX_S (tests/integration/test_escape_battery.py).
RACE_TRIES = int(os.environ.get("ISOPROOF_RACE_TRIES", "100"))
RACE_BOX_S = float(os.environ.get("ISOPROOF_RACE_BOX_S", "10"))
OOM_SCORE_ADJ = 345  # above any default, so no runtime needs CAP_SYS_RESOURCE to set it
CWD_FDS = range(3, 8)  # the first fds a runtime holds beyond stdio (runc leaked a cgroup fd as 7)
MARK = "7431"  # argument of the exec'd sleep, to find it among the container's processes

# One shell function for every "may this be opened for writing" probe: prints OPENED or the error.
TRY_WRITE = (
    'try() { for f in "$@"; do [ -e "$f" ] || continue; '
    'if msg=$( { { true; } 3>>"$f"; } 2>&1 ); then echo "OPENED $f"; '
    'else echo "REFUSED $f: ${msg##*: }"; fi; done; }; '
)


def try_write(runtime: Driver, c: Container, paths: list[str]) -> dict[str, str]:
    """Open each existing path in ``paths`` for writing from inside ``c``; path -> "OPENED" or
    the error (e.g. "Read-only file system")."""
    out = runtime.exec_ok(c, ["sh", "-c", TRY_WRITE + "try " + " ".join(paths)])
    res = {}
    for line in out.splitlines():
        word, _, rest = line.partition(" ")
        path, _, err = rest.partition(": ")
        res[path] = "OPENED" if word == "OPENED" else err
    return res


def start_exec(runtime: Driver, c: Container) -> tuple[subprocess.Popen[bytes], int]:
    """A long-running process exec'd into ``c``; its host PID, found among the container's
    processes by its arguments."""
    proc = subprocess.Popen(runtime.exec_argv(c, ["sleep", MARK]), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 15 * host.slowdown()
    while time.monotonic() < deadline:
        for pid in probes.proc_pids_in_pid_ns(c.pid):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/cmdline").read_bytes() == f"sleep\0{MARK}\0".encode():
                    return proc, pid
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    err = proc.communicate()[1].decode(errors="replace")
    raise RuntimeFailure("exec", proc.returncode, err or "the exec'd process never appeared")


def stop_exec(proc: subprocess.Popen[bytes], pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def foreign_fds(pid: int, inside: set[int], root_pid: int) -> list[str]:
    """The fds of ``pid`` that reach outside the container whose init is ``root_pid``. Stdio
    (0-2) is what the caller handed the container and may be a host file; never a directory."""
    bad = []
    for e in probes.fd_table(pid):
        if e["fd"] <= 2 and e["kind"] != "dir":
            continue
        if e["kind"] == "dir":
            ok, where = probes.dir_reachable_from(root_pid, f"/proc/{pid}/fd/{e['fd']}")
            if not ok or e["mnt_id"] not in inside:
                bad.append(f"fd {e['fd']}: directory {e['target']} ({where})")
        elif probes.foreign_fd(e, inside):
            bad.append(f"fd {e['fd']}: {e['kind']} {e['target']} (mount {e['mnt_id']})")
    return bad


# --- fds and cwd (CVE-2024-21626 class) ---------------------------------------------------------


def test_no_host_fds(runtime: Driver, evidence) -> None:
    """Every fd of the init and of an exec'd process, resolved from the host: pipes, sockets,
    anonymous inodes, character devices and files on the container's own mounts only."""
    c = runtime.create(ContainerSpec())
    inside = probes.mount_ids(c.pid)
    proc, pid = start_exec(runtime, c)
    try:
        found = {"init": foreign_fds(c.pid, inside, c.pid),
                 "exec": foreign_fds(pid, inside, c.pid)}  # fmt: skip
        tables = {"init": probes.fd_table(c.pid), "exec": probes.fd_table(pid)}
    finally:
        stop_exec(proc, pid)
    for who in ("init", "exec"):
        evidence.record(f"fds of the {who} process reaching outside the container", expected=[],
                        measured=found[who], ok=not found[who],
                        fds=[f"{e['fd']} {e['kind']} {e['target']}" for e in tables[who]])  # fmt: skip
    assert not found["init"] and not found["exec"], (
        f"host fds held inside the container: init {found['init']}; exec'd {found['exec']}"
    )


def test_cwd_inside_root(runtime: Driver, evidence) -> None:
    """The working directory of the init and of an exec'd process lies under the container's root
    (getcwd from a helper chrooted into it; ``(unreachable)`` means outside)."""
    c = runtime.create(ContainerSpec())
    proc, pid = start_exec(runtime, c)
    try:
        seen = {who: probes.dir_reachable_from(c.pid, f"/proc/{p}/cwd")
                for who, p in (("init", c.pid), ("exec", pid))}  # fmt: skip
    finally:
        stop_exec(proc, pid)
    for who, (ok, where) in seen.items():
        evidence.record(f"cwd of the {who} process", expected="under the container's root",
                        measured=where, ok=ok)  # fmt: skip
    outside = {who: where for who, (ok, where) in seen.items() if not ok}
    assert not outside, f"working directory outside the container's root: {outside}"


def test_cwd_cannot_name_a_leaked_fd(runtime: Driver, evidence) -> None:
    """``process.cwd`` = ``/proc/self/fd/N`` (the CVE-2024-21626 exploit: a runtime fd that is still
    open when it changes directory): the runtime refuses, or the directory is inside the root."""
    if runtime.kind != "oci":
        pytest.skip(f"needs process.cwd in the OCI config; the {runtime.label} driver passes none")
    results = []
    escaped = []
    for n in CWD_FDS:
        try:
            c = runtime.create(ContainerSpec(cwd=f"/proc/self/fd/{n}"))
        except RuntimeFailure as e:
            if not any(k in str(e) for k in (f"/proc/self/fd/{n}", "working directory", "cwd")):
                raise  # refused for another reason: this proves nothing about the cwd
            results.append(f"fd {n}: refused ({str(e)[-120:]})")
            continue
        try:
            ok, where = probes.dir_reachable_from(c.pid, f"/proc/{c.pid}/cwd")
        finally:
            runtime.remove(c)
        results.append(f"fd {n}: cwd {where}")
        if not ok:
            escaped.append(f"/proc/self/fd/{n} -> {where}")
    evidence.record(f"cwd /proc/self/fd/N, N = {CWD_FDS[0]}..{CWD_FDS[-1]}",
                    expected="refused or inside the root",
                    measured=results, ok=not escaped)  # fmt: skip
    assert not escaped, f"process.cwd reached outside the container's root: {escaped}"


# --- the runtime's executable (CVE-2019-5736 class) ---------------------------------------------

# The container's init. Every process it can see but itself (and its own command substitutions,
# which run its own busybox): each /proc/PID/exe and /proc/PID/fd/N but stdio is opened for
# writing, else read-only (a running binary refuses a write open with ETXTBSY; the published
# exploits keep a read-only fd and wait for the runtime to finish). Whatever opened is logged
# with the kernel's view of it (its path, type and mount id), from the still-open fd.
ATTACKER = r"""
exec 2>/dev/null
n=0
while [ ! -e /tmp/isoproof-stop ]; do
  n=$((n+1))
  for d in /proc/[0-9]*; do
    [ "${d#/proc/}" = "$$" ] && continue
    for f in $d/exe $d/fd/*; do
      case "$f" in */fd/0|*/fd/1|*/fd/2|*'*') continue;; esac
      [ -p "$f" ] && continue
      [ "$f" -ef /proc/$$/exe ] && continue
      if { true; } 3>>"$f"; then m=W; elif { true; } 3<"$f"; then m=R; else continue; fi
      { echo "$m|$f|$(readlink /proc/self/fd/3)|$(grep mnt_id /proc/self/fdinfo/3)|$(stat -L -c %F /proc/self/fd/3)" >> /tmp/isoproof-hits; } 3<"$f"
    done
  done
  [ $n = 1 ] && : > /tmp/isoproof-swept
done
echo $n > /tmp/isoproof-stopped
exec sleep 3600
"""


def test_runtime_executable_unreachable(runtime: Driver, evidence) -> None:
    """During ``exec`` (EXEC_ROUNDS times), a process inside opens every /proc/*/exe and
    /proc/*/fd/* it can see: nothing it opens may be a host file (the runtime's binary above all)."""
    c = runtime.create(ContainerSpec(args=["sh", "-c", ATTACKER]))
    root = Path(f"/proc/{c.pid}/root")
    inside = probes.mount_ids(c.pid)
    # The execs start once the attacker has made its first sweep (an event, not a fixed 0.2 s
    # that a loaded host could outrun); if it never does, sweeps == 0 below says so.
    deadline = time.monotonic() + 5 * host.slowdown()
    while not (root / "tmp/isoproof-swept").exists() and time.monotonic() < deadline and c.alive():
        time.sleep(0.01)
    rounds = 0
    for _ in range(EXEC_ROUNDS):
        runtime.exec_ok(c, ["true"])
        rounds += 1
    (root / "tmp/isoproof-stop").touch()
    deadline = time.monotonic() + 5 * host.slowdown()
    while not (root / "tmp/isoproof-stopped").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped = root / "tmp/isoproof-stopped"
    sweeps = int(stopped.read_text().strip() or 0) if stopped.exists() else 0
    if sweeps == 0:  # an attacker that never looked proves nothing
        raise RuntimeFailure("exec", None, "the attacker inside made no sweep over /proc")
    hits = root / "tmp/isoproof-hits"
    lines = hits.read_text().splitlines() if hits.exists() else []
    bad, opened = probes.judge_hits(lines, inside)
    evidence.record("host files opened through /proc/*/exe and /proc/*/fd/* during exec",
                    expected=[], measured=bad, ok=not bad, execs=rounds, sweeps=sweeps,
                    opens_logged=opened)  # fmt: skip
    assert not bad, f"from inside the container, during {rounds} execs: {bad}"


# --- mount destinations through a swapped symlink (CVE-2021-30465 / CVE-2024-45310 class) ------

# A flipper that spins: with a pause between bursts of swaps, runc 1.1.5's escapes (4 in 49
# creates spinning) did not come up at all in 43.
FLIPPER = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = (p.encode() for p in sys.argv[1:3])
while True:
    libc.renameat2(-100, a, -100, b, 2)  # AT_FDCWD, RENAME_EXCHANGE
"""
RACE_DIR = "isoproof-race"
RACE_MOUNT = "/isoproof-race/a/b"


def _stopped(pid: int) -> None:
    """Wait until ``pid`` has stopped (SIGSTOP is delivered asynchronously)."""
    for _ in range(200):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            return
        time.sleep(0.001)


def test_mount_destination_race(runtime: Driver, evidence) -> None:
    """While a flipper swaps the mount destination's parent between a directory and a symlink to
    a host directory (renameat2 RENAME_EXCHANGE), containers are created (RACE_TRIES, time-boxed):
    nothing may appear in the host directory, and every mount that was made is inside the root."""
    binary = getattr(runtime, "binary", None)
    if runtime.kind != "oci" or binary is None:
        pytest.skip(f"needs bundle-level control (an OCI runtime's create from a bundle the suite "
                    f"writes); the {runtime.label} engine writes its own bundles")  # fmt: skip
    from runtime.busybox import ensure_rootfs

    bundle = runtime.workdir / f"{runtime.prefix}-race"
    state = runtime.workdir / f"state-{runtime.prefix}-race"
    hostdir = bundle / "host"  # outside the rootfs: nothing may ever appear here
    rootfs = bundle / "rootfs"
    flipper = None
    made: list[str] = []
    outcomes = {"created": 0, "refused": 0}
    escapes: list[str] = []
    errors: list[str] = []
    refusals: list[str] = []
    create_s: list[float] = []
    try:
        bundle.mkdir(parents=True)
        hostdir.mkdir()
        copy_rootfs(ensure_rootfs(), rootfs)
        (rootfs / RACE_DIR).mkdir()
        os.symlink("../host", rootfs / f"{RACE_DIR}-link")
        cfg = oci_config(ContainerSpec(), str(rootfs), "")
        # Only what the race needs, so more tries fit in the box: the mount and pid namespaces,
        # /proc and /dev, and the raced mount.
        cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] in ("/proc", "/dev")]
        cfg["linux"]["namespaces"] = [{"type": "mount"}, {"type": "pid"}]
        cfg["linux"]["maskedPaths"] = cfg["linux"]["readonlyPaths"] = []
        cfg.pop("hostname", None)  # no UTS namespace to set it in
        cfg["mounts"].append({"destination": RACE_MOUNT, "type": "tmpfs", "source": "isoproof-race",
                              "options": ["size=64k"]})  # fmt: skip
        flipper = subprocess.Popen([sys.executable, "-S", "-c", FLIPPER, str(rootfs / RACE_DIR),
                                    str(rootfs / f"{RACE_DIR}-link")])  # fmt: skip
        os.kill(flipper.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        tries = 0
        # Until the first escape: one is the verdict, more only cost time (runc 1.1.5 showed 2-4
        # in 37-97 creates, so a failing run now ends after ~a third of them); else until the
        # count or the box ends, as before: a runtime that passes gets the same search. Not
        # before one create has worked: a runtime whose every create is refused is judged as
        # such below (an escape in a refused first create ended a runc run that way).
        while (not (escapes and outcomes["created"]) and tries < RACE_TRIES
               and time.monotonic() - t0 < RACE_BOX_S * host.slowdown()):  # fmt: skip
            tries += 1
            name = f"{runtime.prefix}-r{tries}"
            cfg["linux"]["cgroupsPath"] = f"/{getattr(runtime, 'cgroup_parent', 'isoproof')}/{name}"
            (bundle / "config.json").write_text(json.dumps(cfg))
            base = [binary, "--root", str(state)]
            made.append(name)
            os.kill(flipper.pid, signal.SIGCONT)
            t_create = time.monotonic()
            # create hands its stdio to the container's init: files, never pipes we wait on.
            with open(bundle / "create.err", "w+") as err:
                r = subprocess.run([*base, "create", "--bundle", str(bundle), "--pid-file",
                                    str(bundle / "pid"), name], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=err, timeout=30)  # fmt: skip
            os.kill(flipper.pid, signal.SIGSTOP)
            _stopped(flipper.pid)
            create_s.append(time.monotonic() - t_create)
            if r.returncode == 0:
                outcomes["created"] += 1
                pid = int((bundle / "pid").read_text())
                mine = [m for m in probes.mountpoints(pid) if m["source"] == "isoproof-race"]
                if not mine:
                    escapes.append(f"try {tries}: the tmpfs for {RACE_MOUNT} is not inside the "
                                   f"container's root: it was mounted elsewhere")  # fmt: skip
            else:
                outcomes["refused"] += 1
                refusals.append((bundle / "create.err").read_text().strip()[-200:])
            escapes += [f"try {tries}: {x}" for x in _host_side(hostdir)]
            d = subprocess.run([*base, "delete", "--force", name], capture_output=True, text=True,
                               timeout=30)  # fmt: skip
            if d.returncode == 0 or r.returncode != 0:  # a refused create may leave nothing
                made.remove(name)
            else:
                errors.append(f"delete {name}: {d.stderr.strip()[-200:]}")
            _reset_race_dirs(rootfs, hostdir)
        elapsed = time.monotonic() - t0
    finally:
        if flipper is not None:
            flipper.kill()
            flipper.wait()
        for name in made:
            subprocess.run([binary, "--root", str(state), "delete", "--force", name],
                           capture_output=True, timeout=30)  # fmt: skip
        for m in reversed(host.parse_mountinfo(Path("/proc/self/mountinfo").read_text())):
            if m["mountpoint"].startswith(str(bundle) + "/"):
                subprocess.run(["umount", "-l", m["mountpoint"]], capture_output=True)
        shutil.rmtree(bundle, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    evidence.record("escapes while the mount destination was swapped", expected=[],
                    measured=escapes[:20], ok=not escapes, tries=tries, elapsed_s=round(elapsed, 1),
                    create_median_s=round(sorted(create_s)[len(create_s) // 2], 3) if create_s else None,
                    refusals=sorted(set(refusals))[:5], **outcomes)  # fmt: skip
    if outcomes["created"] == 0:  # every create refused: the runtime does not work here
        raise RuntimeFailure("create", None, f"all {tries} creates refused: {refusals[:1]}")
    assert not errors, f"the runtime could not delete its containers: {errors[:3]}"
    assert not escapes, f"{len(escapes)} escapes in {tries} creates: {escapes[:5]}"


def _host_side(hostdir: Path) -> list[str]:
    """What the race left in the host directory (entries, mounts), removed after being noted."""
    found = []
    for m in reversed(host.parse_mountinfo(Path("/proc/self/mountinfo").read_text())):
        if m["mountpoint"].startswith(str(hostdir) + "/"):
            found.append(f"mount {m['mountpoint']} ({m['fstype']}) on the host")
            subprocess.run(["umount", "-l", m["mountpoint"]], capture_output=True)
    for p in sorted(hostdir.iterdir()):
        found.append(f"{p} appeared on the host")
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink()
    return found


def _reset_race_dirs(rootfs: Path, hostdir: Path) -> None:
    """With the flipper stopped: empty whichever name is the directory now, and the directories
    that resolving the symlink inside the root made (rootfs/host)."""
    for name in (RACE_DIR, f"{RACE_DIR}-link"):
        p = rootfs / name
        if p.is_dir() and not p.is_symlink():
            for child in p.iterdir():
                shutil.rmtree(child, ignore_errors=True)
    shutil.rmtree(rootfs / "host", ignore_errors=True)


# --- what a default container can write on the host's side --------------------------------------

SYSFS_PROBES = ["/sys/kernel/uevent_helper", "/sys/kernel/profiling", "/sys/kernel/mm/ksm/run",
                "/sys/kernel/mm/transparent_hugepage/enabled", "/sys/power/state"]  # fmt: skip
CGROUPFS_PROBES = ["/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max",
                   "/sys/fs/cgroup/cpu/cpu.shares", "/sys/fs/cgroup/memory.max",
                   "/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/cgroup.procs"]  # fmt: skip
PROC_SYS_PROBES = ["/proc/sys/vm/swappiness", "/proc/sys/fs/lease-break-time",
                   "/proc/sys/kernel/domainname", "/proc/sys/net/core/somaxconn"]  # fmt: skip
EROFS = "Read-only file system"


def _readonly_check(runtime: Driver, evidence: Any, what: str, paths: list[str]) -> None:
    c = runtime.create(ContainerSpec())
    res = try_write(runtime, c, paths)
    evidence.record(f"opening {what} files for writing from inside", expected=EROFS,
                    measured=res, ok=bool(res) and all(v == EROFS for v in res.values()))  # fmt: skip
    assert res, f"none of {paths} exists inside the container: nothing to prove {what} read-only"
    writable = {p: v for p, v in res.items() if v != EROFS}
    assert not writable, f"{what} is not read-only inside: {writable}"


def test_sysfs_readonly(runtime: Driver, evidence) -> None:
    _readonly_check(runtime, evidence, "/sys", SYSFS_PROBES)


def test_cgroupfs_readonly(runtime: Driver, evidence) -> None:
    _readonly_check(runtime, evidence, "/sys/fs/cgroup", CGROUPFS_PROBES)


def test_proc_sys_readonly(runtime: Driver, evidence) -> None:
    _readonly_check(runtime, evidence, "/proc/sys", PROC_SYS_PROBES)


@pytest.mark.requires_controller("memory")
def test_cannot_raise_own_limits(runtime: Driver, evidence) -> None:
    """The container writes twice its memory limit into every memory limit file it can see (v1:
    memory+swap first, which must never be below the limit); the limit the host reads afterwards
    is the one it was given."""
    limit = 64 << 20
    c = runtime.create(ContainerSpec(resources={"memory": {"limit": limit, "swap": limit}}))
    name = "memory.max" if host.layout().version == 2 else "memory.limit_in_bytes"
    before = c.read_cgroup("memory", name).strip()
    files = ["/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
             "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"]  # fmt: skip
    script = " ".join(
        f'[ -e {f} ] && {{ echo {2 * limit} > {f} && echo "WROTE {f}" || echo "REFUSED {f}"; }};'
        for f in files
    )
    out = runtime.exec_ok(c, ["sh", "-c", script + " true"])  # a failed exec proves nothing
    after = c.read_cgroup("memory", name).strip()
    evidence.record("memory limit after the container wrote 2x into its cgroup files",
                    expected=before, measured=after, ok=after == before,
                    inside=out.strip().splitlines())  # fmt: skip
    assert after == before, f"the container raised its own limit: {name} {before} -> {after}"
    assert "WROTE" not in out, f"the container wrote its limit files: {out.strip()}"


def test_oom_score_adj(runtime: Driver, evidence) -> None:
    if runtime.kind != "oci":
        pytest.skip(f"needs process.oomScoreAdj in the OCI config; the {runtime.label} driver "
                    f"passes none")  # fmt: skip
    mine = int(Path("/proc/self/oom_score_adj").read_text())
    if mine > OOM_SCORE_ADJ:
        pytest.skip(f"needs the suite's oom_score_adj <= {OOM_SCORE_ADJ}; it is {mine}")
    c = runtime.create(ContainerSpec(oom_score_adj=OOM_SCORE_ADJ))
    got = int(Path(f"/proc/{c.pid}/oom_score_adj").read_text())
    evidence.record("init's oom_score_adj", expected=OOM_SCORE_ADJ, measured=got,
                    ok=got == OOM_SCORE_ADJ)  # fmt: skip
    assert got == OOM_SCORE_ADJ, f"oom_score_adj {got}, asked {OOM_SCORE_ADJ}"
