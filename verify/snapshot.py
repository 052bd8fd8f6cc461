"""The host before and after a verification run: whatever the run changed and did not undo fails it.

Read from the host, never asked of a runtime: hostname and domainname, every readable sysctl under
``/proc/sys`` (but the volatile ones below), SysV IPC objects, network links and addresses,
mounts, cgroup directories named ``isoproof*``, and the iptables rules (read only, with
``iptables-save``). A runtime that writes a sysctl of the host, leaves a mount, a link, an IPC
object or a firewall rule behind, fails the session even when every check passed.

Attribution on a shared host: objects named ``isoproof*`` belong to some isoproof session. Only
those that name this session (its id or work directory) count; another session's are listed as
ignored (its own run judges them), and so are objects that went away during the run. Everything
else counts; on a host where other work runs beside the suite, ``$ISOPROOF_SNAPSHOT_IGNORE`` (a
regular expression matched against each difference line) names what is not the run's.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from verify import host

PROC_SYS = Path("/proc/sys")

# Sysctls that change on their own, with why. A prefix ending in "." covers a subtree.
VOLATILE_SYSCTLS = {
    "kernel.random.": "entropy counters and a fresh uuid on every read",
    "kernel.ns_last_pid": "the last PID handed out: every fork moves it",
    "kernel.pty.nr": "number of ptys open right now",
    "kernel.perf_event_max_sample_rate": "the kernel lowers it itself when perf interrupts run long",
    "kernel.sched_domain.": "per-CPU scheduler statistics",
    "fs.dentry-state": "dentry cache counters",
    "fs.inode-nr": "inode cache counters",
    "fs.inode-state": "inode cache counters",
    "fs.file-nr": "open file handles right now",
    "fs.aio-nr": "AIO contexts in use right now",
    "fs.quota.": "quota operation counters",
    "fs.fscache.": "fscache statistics",
    "net.netfilter.nf_conntrack_count": "tracked connections right now",
    "net.ipv4.route.gc_": "route cache garbage-collection state",
    "vm.nr_pdflush_threads": "writeback threads right now",
    "dev.cdrom.info": "drive status",
    "debug.": "debugging knobs and counters, not configuration",
}
# Per-interface sysctls: compared only for interfaces present before and after (a link that came or
# went is reported once, under links).
_PER_IFACE = re.compile(r"^net\.ipv[46]\.(conf|neigh)\.([^.]+)\.")


def _ignore_pattern(text: str) -> re.Pattern[str] | None:
    """``$ISOPROOF_SNAPSHOT_IGNORE`` as a pattern; text that is no valid expression is literal."""
    if not text:
        return None
    try:
        return re.compile(text)
    except re.error:
        return re.compile(re.escape(text))


_IGNORE = _ignore_pattern(os.environ.get("ISOPROOF_SNAPSHOT_IGNORE", ""))
_SNAP = pytest.StashKey[dict[str, Any]]()
_RESULT = pytest.StashKey[dict[str, Any]]()


def volatile(key: str) -> bool:
    return any(key == v or (v.endswith(".") and key.startswith(v)) for v in VOLATILE_SYSCTLS)


def sysctls(root: Path = PROC_SYS) -> dict[str, str]:
    """Every readable, non-volatile sysctl: dotted name -> value (whitespace normalised)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            key = os.path.relpath(path, root).replace("/", ".")
            if volatile(key):
                continue
            try:
                if not os.stat(path).st_mode & 0o444:
                    continue  # write-only (vm.drop_caches, net.ipv4.route.flush)
                with open(path, "rb") as f:
                    value = f.read(65536)
            except OSError:
                continue  # EPERM/EINVAL/EIO: some sysctls refuse reading
            out[key] = " ".join(value.decode(errors="replace").split())
    return out


def sysv_ipc() -> list[str]:
    rows = []
    for kind in ("shm", "sem", "msg"):
        p = Path("/proc/sysvipc") / kind
        if not p.exists():
            continue
        lines = p.read_text().splitlines()
        for line in lines[1:]:
            f = line.split()
            rows.append(f"{kind} key {f[0]} id {f[1]} perms {f[2]}")
    return sorted(rows)


def links() -> list[str]:
    out = []
    for d in sorted(Path("/sys/class/net").iterdir()):
        try:
            mtu = (d / "mtu").read_text().strip()
            flags = int((d / "flags").read_text(), 16) & 0x1  # IFF_UP: the rest changes on its own
        except OSError:
            continue
        out.append(f"{d.name} mtu {mtu} {'up' if flags else 'down'}")
    return out


def addresses() -> list[str]:
    r = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, timeout=15)
    out = []
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) >= 4:
            out.append(f"{f[1]} {f[2]} {f[3]}")
    return sorted(out)


def mounts() -> list[str]:
    ms = host.parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    return sorted(f"{m['mountpoint']} {m['fstype']} {m['source']} {m['options']}" for m in ms)


def cgroups() -> list[str]:
    """Cgroup directories named isoproof* (two levels deep) in every hierarchy."""
    lay = host.layout()
    out = set()
    for mnt in {*lay.v1.values(), *([lay.v2] if lay.v2 else [])}:
        base = Path(mnt)
        for top in base.glob("isoproof*"):
            if top.is_dir():
                out.add(str(top))
                out.update(str(p) for p in top.iterdir() if p.is_dir())
    return sorted(out)


def iptables() -> list[str] | str:
    """The rules, counters and timestamps left out; a string says why there are none."""
    exe = shutil.which("iptables-save")
    if exe is None:
        return "skipped: iptables-save is not installed"
    r = subprocess.run([exe], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return f"skipped: iptables-save failed: {r.stderr.strip()[-200:]}"
    return [re.sub(r"\[\d+:\d+\]", "[0:0]", ln) for ln in r.stdout.splitlines()
            if ln and not ln.startswith("#")]  # fmt: skip


def uts() -> list[str]:
    domain = Path("/proc/sys/kernel/domainname").read_text().strip()
    return [f"hostname {socket.gethostname()}", f"domainname {domain}"]


SECTIONS: dict[str, Callable[[], Any]] = {"uts": uts, "sysctl": sysctls, "ipc": sysv_ipc, "links": links,
            "addresses": addresses, "mounts": mounts, "cgroups": cgroups, "iptables": iptables}  # fmt: skip
# Objects of these sections that were there before and are gone after: another process's cleanup
# on a shared host (the suite removes only what it made). Shown, not counted.
_GONE_IS_OTHERS = ("ipc", "links", "addresses", "mounts", "cgroups")
# Host changes that the host's own tools make once and keep on purpose. Shown, not counted.
HOST_TOOL_MOUNTS = {
    "/run/netns": "iproute2's `ip netns add` mounts a tmpfs here the first time any namespace is "
    "named on the host and keeps it for every later one (docker and CNI share it); seen on the "
    "first run on a fresh Debian root",
}


def take() -> dict[str, Any]:
    """One snapshot; a section that cannot be read here (no /sys in a bare chroot, no ``ip``) is
    a string saying why, and is not compared."""
    out: dict[str, Any] = {}
    for name, read in SECTIONS.items():
        try:
            out[name] = read()
        except (OSError, subprocess.SubprocessError) as e:
            out[name] = f"skipped: {e}"
    return out


def _ifaces(snap: dict[str, Any]) -> set[str]:
    return set() if isinstance(snap["links"], str) else {x.split()[0] for x in snap["links"]}


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Every difference between two snapshots, one line each."""
    out: list[str] = []
    both = _ifaces(before) & _ifaces(after)
    sb, sa = before["sysctl"], after["sysctl"]
    if isinstance(sb, str) or isinstance(sa, str):
        sb = sa = {}
    for key in sorted(set(sb) | set(sa)):
        m = _PER_IFACE.match(key)
        if m and m.group(2) not in both:
            continue
        if sb.get(key) != sa.get(key):
            out.append(f"sysctl {key}: {sb.get(key, '(absent)')} -> {sa.get(key, '(absent)')}")
    for section in ("uts", "ipc", "links", "addresses", "mounts", "cgroups", "iptables"):
        b, a = before[section], after[section]
        if isinstance(b, str) or isinstance(a, str):
            continue  # skipped: the reason is in the result
        out += [f"{section} removed: {x}" for x in sorted(set(b) - set(a))]
        out += [f"{section} added: {x}" for x in sorted(set(a) - set(b))]
    return out


def attribute(lines: list[str], ours: list[str]) -> tuple[list[str], list[str]]:
    """(differences that count, differences ignored: another isoproof session's objects, and
    objects that went away during the run)."""
    count, ignored = [], []
    for line in lines:
        gone = line.startswith(tuple(f"{s} removed: " for s in _GONE_IS_OTHERS))
        gone = gone or line.startswith(tuple(f"mounts added: {m} " for m in HOST_TOOL_MOUNTS))
        told = bool(_IGNORE and _IGNORE.search(line))
        if gone or told or ("isoproof" in line and not any(x in line for x in ours)):
            ignored.append(line)
        else:
            count.append(line)
    return count, ignored


# --- the session hooks (called from verify.plugin) --------------------------------------------------


def begin(config: pytest.Config) -> None:
    if os.geteuid() == 0:
        config.stash[_SNAP] = take()


def end(session: pytest.Session, ours: list[str]) -> dict[str, Any]:
    """Compare with the snapshot from :func:`begin` (after the session cleaned up); a counted
    difference fails the session and is printed."""
    config = session.config
    before = config.stash.get(_SNAP, None)
    if before is None:
        return {"ok": True, "skipped": "no snapshot at the start (not root)"}
    after = take()
    count, ignored = attribute(diff(before, after), ours)
    res: dict[str, Any] = {
        "ok": not count,
        "differences": count,
        "ignored_other_sessions": ignored,
        "volatile_sysctls": VOLATILE_SYSCTLS,
        "sysctls_compared": len(after["sysctl"]),
    }
    res["sections_skipped"] = {k: v for k, v in after.items() if isinstance(v, str)}
    config.stash[_RESULT] = res
    if count:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_sep("=", "isoproof host snapshot FAILED: the host differs after the run",
                         red=True)  # fmt: skip
            for line in count:
                tr.write_line(f"  {line}")
    return res


def result(config: pytest.Config) -> dict[str, Any] | None:
    return config.stash.get(_RESULT, None)
