"""What is left of a container, found from every source of truth, and removed.

A container is known by its directory (``containers/<id>/``), but what it holds on the host is
named by its ID in other places too, each of which can outlive the directory or its records:

=================  ===========================================================================
source             where
=================  ===========================================================================
monitor            a process whose command line is ``... runtime.engine.monitor <home> <id>``
OCI runtime        ``<home>/oci/<id>`` (runc and isoproof-oci both keep a directory per ID)
cgroup             ``/<cgroup parent>/<id>`` in every hierarchy (the container's processes)
network namespace  ``<home>/netns/isoproof-<id[:12]>`` (a bind mount; processes inside it)
rootfs             the overlay mounted on ``containers/<id>/bundle/rootfs``
address lease      the bridge's lease table (:mod:`runtime.engine.network`), with its veth
=================  ===========================================================================

:func:`scrub` removes all of it for one ID, whatever state its records are in (``rm -f`` of a
damaged container, ``system prune``); :func:`orphans` finds IDs that hold any of it although their
directory is gone. The cgroup parent may be shared by several homes: a cgroup alone is claimed
only if no home registered on this host (``/run/isoproof/homes``) has a directory for its ID.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

from runtime.engine.home import Home, cgroup_parent, default_runtime, format_ns
from runtime.engine.store import DamagedContainer, Store, initial_state, monitor_alive, pid_alive
from runtime.errors import IsoproofError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

ID_RE = re.compile(r"[0-9a-f]{64}")
NETNS_RE = re.compile(r"isoproof-([0-9a-f]{12})")
HOMES_DIR = "/run/isoproof"
HOMES_FILE = "homes"
GONE_WAIT = 10.0  # seconds to wait for SIGKILLed processes to be gone


# -- damaged containers: what ps and inspect show --------------------------------------------------


def placeholder_config(home: Home, cid: str) -> dict[str, Any]:
    """The config of a container whose config.json is unreadable: what its ID tells."""
    from runtime.engine.lifecycle import cgroups_path

    try:
        created = format_ns(int(os.stat(home.container_dir(cid)).st_mtime * 1e9))
    except OSError:
        created = format_ns(time.time_ns())
    return {
        "Id": cid,
        "Name": "",
        "Created": created,
        "Path": "",
        "Args": [],
        "Image": "",
        "ImageRootfs": "",
        "Runtime": default_runtime(),
        "OciRoot": str(home.oci_root),
        "CgroupsPath": cgroups_path(cid),
        "LogPath": str(home.container_dir(cid) / "container.log"),
        "Config": {"Image": "", "Cmd": [], "Env": [], "Tty": False, "OpenStdin": False},
        "HostConfig": {},
    }


def view(home: Home, store: Store, cid: str, err: DamagedContainer) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """(config, state) to show for a damaged container: what can be read, status ``dead``."""
    try:
        cfg = store.config(cid)
    except DamagedContainer:
        cfg = placeholder_config(home, cid)
    st = {**initial_state(), "Status": "dead", "Dead": True, "Error": f"damaged: {err.reason}"}
    return cfg, st


def config_or_none(store: Store, cid: str) -> dict[str, Any] | None:
    try:
        return store.config(cid)
    except IsoproofError:
        return None


# -- the sources of truth ---------------------------------------------------------------------------


def monitors(home: Home) -> dict[str, list[int]]:
    """Monitor processes of this home, by container ID (from their command lines)."""
    out: dict[str, list[int]] = {}
    want = str(home.root)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"runtime.engine.monitor" not in argv:
            continue
        i = argv.index(b"runtime.engine.monitor")
        rest = [a.decode(errors="replace") for a in argv[i + 1 : i + 3]]
        if len(rest) == 2 and rest[0] == want and pid_alive(int(name)):
            out.setdefault(rest[1], []).append(int(name))
    return out


def cgroup_dirs(parent: str | None = None) -> list[str]:
    """The parent cgroup's directory in every mounted hierarchy where it exists: the named ones
    too (``name=systemd``), where runc makes a container's cgroup and our manager does not look."""
    from runtime.cgroups.mountinfo import unescape

    name = parent or cgroup_parent()
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if "-" in fields and fields[fields.index("-") + 1] in ("cgroup", "cgroup2"):
                d = os.path.join(unescape(fields[4]), name)
                if os.path.isdir(d):
                    out.add(d)
    return sorted(out)


def _rmdir_everywhere(cid: str) -> None:
    """The container's cgroup directory in every hierarchy: its tasks killed, then removed."""
    for parent in cgroup_dirs():
        d = os.path.join(parent, cid)
        for _ in range(50):
            if not os.path.isdir(d):
                break
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids = [int(p) for p in f.read().split()]
            except OSError:
                pids = []
            _kill_and_wait(pids)
            try:
                os.rmdir(d)
            except OSError:
                time.sleep(0.05)


def cgroup_ids(parent: str | None = None) -> set[str]:
    ids: set[str] = set()
    for d in cgroup_dirs(parent):
        with contextlib.suppress(OSError):
            ids.update(n for n in os.listdir(d) if ID_RE.fullmatch(n))
    return ids


def netns_prefixes(home: Home) -> set[str]:
    try:
        names = os.listdir(home.netns)
    except FileNotFoundError:
        return set()
    return {m.group(1) for n in names if (m := NETNS_RE.fullmatch(n))}


def oci_ids(home: Home) -> set[str]:
    try:
        return {n for n in os.listdir(home.oci_root) if ID_RE.fullmatch(n)}
    except FileNotFoundError:
        return set()


def register_home(home: Home) -> None:
    """Note this home in the host-wide list, so that another home's prune knows it exists. The
    common case (listed already) is one read; a new home rewrites the list under its lock and
    drops homes that are gone."""
    import fcntl

    path = Path(HOMES_DIR) / HOMES_FILE
    me = str(home.root)
    try:
        if me in path.read_text().splitlines():
            return
    except FileNotFoundError:
        pass
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.makedirs(HOMES_DIR, mode=0o755, exist_ok=True)
        fd = os.open(
            path.with_name(f"{HOMES_FILE}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                homes = [h for h in path.read_text().splitlines() if h and os.path.isdir(h)]
            except FileNotFoundError:
                homes = []
            tmp = path.with_name(f".{HOMES_FILE}.{os.getpid()}.tmp")
            tmp.write_text("".join(f"{h}\n" for h in dict.fromkeys([*homes, me])))
            os.replace(tmp, path)  # readers see the old list or the new one
        finally:
            os.close(fd)


def claimed_elsewhere(home: Home, cid: str) -> bool:
    """Does a registered home other than this one have a directory for ``cid``?"""
    try:
        homes = (Path(HOMES_DIR) / HOMES_FILE).read_text().splitlines()
    except OSError:
        return False
    return any(h and h != str(home.root) and (Path(h) / "containers" / cid).exists() for h in homes)


def orphans(home: Home, store: Store) -> dict[str, list[str]]:
    """IDs (or 12-character netns prefixes) holding host resources without a container
    directory, each with the sources it was found in."""
    from runtime.engine import network

    known = set(store.ids())
    short = {c[:12] for c in known}
    found: dict[str, list[str]] = {}

    def add(cid: str, source: str) -> None:
        found.setdefault(cid, []).append(source)

    for cid in oci_ids(home) - known:
        add(cid, "runtime state")
    for cid in set(monitors(home)) - known:
        add(cid, "monitor")
    for cid in network.lease_ids(home) - known:
        add(cid, "address lease")
    for cid in cgroup_ids() - known:
        if cid in found or not claimed_elsewhere(home, cid):
            add(cid, "cgroup")
    for prefix in netns_prefixes(home) - short:
        full = [c for c in found if c.startswith(prefix)]
        add(full[0] if full else prefix, "netns")
    return found


# -- removal ----------------------------------------------------------------------------------------


def _kill_and_wait(pids: list[int]) -> None:
    import signal

    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + GONE_WAIT
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.01)


def netns_pids(path: Path) -> list[int]:
    """Processes inside the network namespace bind-mounted at ``path`` (by its inode)."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    out: list[int] = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                ns = os.stat(f"/proc/{name}/ns/net")
                if (ns.st_ino, ns.st_dev) == (st.st_ino, st.st_dev) and int(name) != os.getpid():
                    out.append(int(name))
    return out


def scrub(home: Home, cid: str, cfg: dict[str, Any] | None = None) -> list[str]:
    """Remove everything ``cid`` (a full ID, or a netns prefix) holds on the host, and its
    directory. Idempotent; returns what it found to remove. Raises nothing it can carry on from."""
    import shutil
    import signal

    from runtime.cgroups import new_manager
    from runtime.engine import lifecycle
    from runtime.engine.oci import OciRuntime

    cfg = cfg or {}
    done: list[str] = []
    mons = monitors(home).get(cid, [])
    if mons:  # first: a monitor would restart the container or record its exit over our work
        _kill_and_wait(mons)
        done.append("monitor")
    full = ID_RE.fullmatch(cid) is not None
    if full:
        oci_root = cfg.get("OciRoot") or str(home.oci_root)
        if os.path.exists(os.path.join(oci_root, cid)):
            rt = OciRuntime(cfg.get("Runtime") or default_runtime(), oci_root)
            with contextlib.suppress(IsoproofError, OSError):
                rt.delete(cid, force=True)
            if os.path.exists(os.path.join(oci_root, cid)):  # a runtime that refuses: by hand
                shutil.rmtree(os.path.join(oci_root, cid), ignore_errors=True)
            done.append("runtime state")
        mgr = new_manager(cfg.get("CgroupsPath") or lifecycle.cgroups_path(cid), cid)
        if mgr.exists():
            with contextlib.suppress(IsoproofError, OSError):
                mgr.kill_all(signal.SIGKILL)
                _kill_and_wait(mgr.pids())
            for _ in range(50):
                try:
                    mgr.destroy()
                    break
                except IsoproofError:
                    time.sleep(0.05)
            done.append("cgroup")
        _rmdir_everywhere(cid)
    nspath = home.netns_path(cid)
    if nspath.exists():
        _kill_and_wait(netns_pids(nspath))
        done.append("netns")
    if full:
        lifecycle.teardown(home, cid)  # rootfs mount, lease + veth, netns, attach socket
    else:
        _drop_netns(nspath)
    (home.sock / f"{cid[:12]}.c").unlink(missing_ok=True)
    cdir = home.container_dir(cid)
    if full and cdir.exists():
        from runtime.engine.store import remove_tree

        remove_tree(cdir)
        done.append("directory")
    return done


def _drop_netns(nspath: Path) -> None:
    from runtime.engine.lifecycle import is_mountpoint
    from runtime.sys import MNT_DETACH, Sys

    if nspath.exists():
        if is_mountpoint(str(nspath)):
            with contextlib.suppress(IsoproofError):
                Sys().umount2(str(nspath), MNT_DETACH)
        nspath.unlink(missing_ok=True)


def sweep_temp(home: Home) -> list[str]:
    """Half-made and half-removed directories (``.new-<pid>-<id>``, ``.rm-<name>-<pid>``) and
    temp files of writers that are dead: a create or rm killed mid-way left them."""
    out: list[str] = []
    try:
        entries = list(home.containers.iterdir())
    except FileNotFoundError:
        return out
    for p in entries:
        pid = 0
        if p.name.startswith(".new-"):
            head = p.name[5:].split("-", 1)[0]
            pid = int(head) if head.isdigit() else 0
        elif p.name.startswith(".rm-"):
            tail = p.name.rsplit("-", 1)[-1]
            pid = int(tail) if tail.isdigit() else 0
        else:
            continue
        if pid and pid_alive(pid):
            continue
        import shutil  # only here: ps and rm call this on every run, and mostly find nothing

        shutil.rmtree(p, ignore_errors=True)
        out.append(p.name)
    return out


# -- --rm containers whose owner died -------------------------------------------------------------


def oplock_free(store: Store, cid: str) -> bool:
    import fcntl

    try:
        fd = os.open(store.dir(cid) / "oplock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def owner_alive(st: dict[str, Any]) -> bool:
    from runtime.oci.state import init_alive, read_proc_stat

    owner = st.get("Owner") or {}
    try:
        return init_alive(int(owner["pid"]), int(owner["start_time"]), read_proc_stat)
    except (KeyError, TypeError, ValueError):
        return False


def abandoned_autoremove(store: Store, cid: str, cfg: dict[str, Any], st: dict[str, Any]) -> bool:
    """A ``--rm`` container that nobody will remove: no monitor (it owns the removal once it
    exists), no verb at work on it, and either it ran, or the client that meant to start it
    (``Owner``) died first. ``create --rm`` without a start has no owner and stays."""
    if not (cfg.get("HostConfig") or {}).get("AutoRemove"):
        return False
    if monitor_alive(st, cid) or not oplock_free(store, cid):
        return False
    if st["Status"] == "created" and not st.get("MonitorPid"):
        return bool(st.get("Owner")) and not owner_alive(st)
    return st["Status"] not in ("running", "paused", "restarting")


def me_as_owner() -> dict[str, int]:
    from runtime.oci.state import read_proc_stat

    info = read_proc_stat(os.getpid())
    return {"pid": os.getpid(), "start_time": info[1] if info else 0}
