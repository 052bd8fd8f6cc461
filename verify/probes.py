"""Host-side probes. None of them asks the runtime or trusts the container's own tools.

* ``/proc/<pid>/ns/*`` inodes, ``NSpid``, ``uid_map`` and ``status`` are read from the host's procfs.
* Probes that must look *from inside* a namespace (SysV IPC keys, hostname, links) run in a forked
  helper process that ``setns()``-es into the container's namespaces with the host's privileges and
  sends its findings back over a pipe as JSON. The helper is a fork, not a thread, because setns into
  a mount or user namespace is refused to a multi-threaded process.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import stat
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from verify import host

_libc = ctypes.CDLL(None, use_errno=True)

NS_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")
CLONE_NEWNS = 0x00020000
IPC_CREAT = 0o1000
IPC_EXCL = 0o2000
IPC_RMID = 0
SHM_KEY_BASE = 124426  # LTP's shmem_2nstest key, offset per test to stay unique


class ProbeError(Exception):
    """A probe could not run (not a verdict about the container)."""


def _check(ret: int, what: str) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def setns(path: str, nstype: int = 0) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _check(_libc.setns(fd, nstype), f"setns({path})")
    finally:
        os.close(fd)


# --- namespace identity -------------------------------------------------------------------------


def ns_inode(pid: int | str, ns: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{ns}").st_ino


def ns_inodes(pid: int | str) -> dict[str, int]:
    return {ns: ns_inode(pid, ns) for ns in NS_TYPES if os.path.exists(f"/proc/{pid}/ns/{ns}")}


def status_fields(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def nspid(pid: int) -> list[int]:
    return [int(x) for x in status_fields(pid)["NSpid"].split()]


def read_id_map(pid: int, which: str = "uid") -> list[tuple[int, int, int]]:
    rows = []
    for line in Path(f"/proc/{pid}/{which}_map").read_text().splitlines():
        a, b, c = (int(x) for x in line.split())
        rows.append((a, b, c))
    return rows


# --- the forked helper --------------------------------------------------------------------------


def in_namespaces(
    pid: int, namespaces: list[str], fn: Callable[[], Any], timeout: float = 10.0
) -> Any:
    """Run ``fn`` in a forked child that joined ``pid``'s ``namespaces`` (in the order given);
    return what it returns (must be JSON-serialisable). Errors in the child come back as ProbeError."""
    if "net" in namespaces:
        # The network readers (net_view, route_get) use pyroute2: imported here, once per
        # session, every forked helper inherits it instead of importing it again (0.3-1.5 s each).
        import pyroute2.netlink.exceptions  # noqa: F401
        from pyroute2 import IPRoute  # noqa: F401
    # Open the namespace files before forking: the container may be gone by the time the child runs.
    fds = [(ns, os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY)) for ns in namespaces]
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.close(r)
            try:
                for ns, fd in fds:
                    _check(_libc.setns(fd, 0), f"setns({ns})")
                result: Any = {"ok": fn()}
            except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
                result = {"error": f"{type(e).__name__}: {e}", "tb": traceback.format_exc()}
            os.write(w, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(w)
    for _, fd in fds:
        os.close(fd)
    timeout *= host.slowdown()
    chunks = []
    try:
        import select

        while True:
            ready, _, _ = select.select([r], [], [], timeout)
            if not ready:
                os.kill(child, 9)
                raise ProbeError(f"namespace helper for pid {pid} timed out after {timeout}s")
            data = os.read(r, 65536)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(r)
        os.waitpid(child, 0)
    if not chunks:
        raise ProbeError(f"namespace helper for pid {pid} died without an answer")
    res = json.loads(b"".join(chunks))
    if "error" in res:
        raise ProbeError(res["error"])
    return res["ok"]


# --- SysV IPC (LTP *_nstest style) --------------------------------------------------------------


def _errno_of(ret: int) -> int | None:
    return None if ret >= 0 else ctypes.get_errno()


def ipc_lookup(kind: str, key: int) -> int | None:
    """Look a key up without creating it: the object's id, or None on ENOENT."""
    if kind == "shm":
        ret = _libc.shmget(key, 0, 0)
    elif kind == "sem":
        ret = _libc.semget(key, 0, 0)
    elif kind == "msg":
        ret = _libc.msgget(key, 0)
    else:
        raise ValueError(kind)
    err = _errno_of(ret)
    if err is None:
        return ret
    if err == errno.ENOENT:
        return None
    raise OSError(err, f"{kind}get({key}): {os.strerror(err)}")


def ipc_create(kind: str, key: int) -> int:
    flags = IPC_CREAT | IPC_EXCL | 0o600
    if kind == "shm":
        ret = _libc.shmget(key, ctypes.c_size_t(4096), flags)
    elif kind == "sem":
        ret = _libc.semget(key, 1, flags)
    elif kind == "msg":
        ret = _libc.msgget(key, flags)
    else:
        raise ValueError(kind)
    return _check(ret, f"{kind}get({key}, IPC_CREAT)")


def ipc_remove(kind: str, ident: int) -> None:
    if kind == "shm":
        _libc.shmctl(ident, IPC_RMID, None)
    elif kind == "sem":
        _libc.semctl(ident, 0, IPC_RMID)
    elif kind == "msg":
        _libc.msgctl(ident, IPC_RMID, None)


# --- small readers used inside the helper --------------------------------------------------------


def uname_nodename() -> str:
    return os.uname().nodename


def sethostname(name: str) -> None:
    b = name.encode()
    _check(_libc.sethostname(b, len(b)), "sethostname")


def net_view() -> dict[str, Any]:
    """Links, addresses and routes of the current network namespace (run inside the helper)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = [
            {"index": lk["index"], "name": lk.get_attr("IFLA_IFNAME"), "kind": _link_kind(lk)}
            for lk in ipr.get_links()
        ]
        addrs = [
            {"index": a["index"], "address": a.get_attr("IFA_ADDRESS"), "prefixlen": a["prefixlen"]}
            for a in ipr.get_addr()
        ]
        routes = [
            {
                "dst": r.get_attr("RTA_DST"),
                "dst_len": r["dst_len"],
                "gateway": r.get_attr("RTA_GATEWAY"),
                "oif": r.get_attr("RTA_OIF"),
                "table": r.get_attr("RTA_TABLE"),
            }
            for r in ipr.get_routes(family=2)
            if r.get_attr("RTA_TABLE") == 254
        ]
    return {"links": links, "addrs": addrs, "routes": routes}


def _link_kind(lk: Any) -> str | None:
    info = lk.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else None


def route_get(dst: str) -> dict[str, Any] | None:
    """The kernel's route lookup for ``dst`` in the current netns; None if unreachable. No packet
    is sent, so this is safe for any address."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            r = ipr.route("get", dst=dst)
        except NetlinkError as e:
            if e.code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                return None
            raise
    return {"oif": r[0].get_attr("RTA_OIF"), "gateway": r[0].get_attr("RTA_GATEWAY")}


def mount_tmpfs(target: str) -> None:
    _check(_libc.mount(b"isoproof", target.encode(), b"tmpfs", 0, b"size=64k"), f"mount {target}")


def umount(target: str) -> None:
    _check(_libc.umount2(target.encode(), 2), f"umount {target}")


def mountpoints(pid: int | str) -> list[dict[str, str]]:
    from verify.host import parse_mountinfo

    return parse_mountinfo(Path(f"/proc/{pid}/mountinfo").read_text())


def set_child_subreaper() -> None:
    """Make this process adopt orphaned descendants. A runc-style ``create`` exits and leaves the
    container's init behind; as its subreaper we can wait for it and read its real exit status
    from the kernel, not from the runtime."""
    PR_SET_CHILD_SUBREAPER = 36
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def block_device_candidates() -> list[tuple[int, int]]:
    """MAJ:MIN of the host's block devices: the disk behind / first (when / is on one), then
    every one the kernel lists."""
    out = []
    major, minor = host.block_device_of("/")
    if Path(f"/sys/dev/block/{major}:{minor}").exists():
        out.append((major, minor))
    for entry in sorted(Path("/sys/dev/block").iterdir()):
        major, minor = (int(x) for x in entry.name.split(":"))
        if (major, minor) not in out:
            out.append((major, minor))
    return out


def block_node_the_host_can_open(
    directory: Path, name: str = "isoproof-blk"
) -> tuple[Path, int, int] | None:
    """A block device node made in ``directory`` that the host itself can open: the control for
    device-cgroup checks (some hosts refuse even root the root disk; a device nobody may open
    proves nothing). None when the host can open none of them."""
    node = directory / name
    for major, minor in block_device_candidates():
        os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(major, minor))
        try:
            os.close(os.open(node, os.O_RDONLY))
            return node, major, minor
        except OSError:
            node.unlink()
    return None


# --- escapes: what a container's processes hold, judged from the host -----------------------------

# readlink of /proc/PID/fd/N for objects that are no path in any filesystem: never a host file.
ANON_FD_PREFIXES = ("pipe:", "socket:", "anon_inode:", "/memfd:")


def mount_ids(pid: int | str) -> set[int]:
    """Mount ids the process can reach from its root: the kernel leaves every mount outside
    ``/proc/PID/root`` out of ``/proc/PID/mountinfo``, and ids are unique across namespaces, so an
    id missing here names a mount of another namespace or one outside the container's root."""
    return {int(m["id"]) for m in mountpoints(pid)}


def fd_table(pid: int | str) -> list[dict[str, Any]]:
    """Every fd of ``pid`` as the host sees it: number, readlink target, file type, mount id."""
    out = []
    base = Path(f"/proc/{pid}/fd")
    for entry in sorted(os.listdir(base), key=int):
        try:
            target = os.readlink(base / entry)
            info = (Path(f"/proc/{pid}/fdinfo") / entry).read_text()
        except FileNotFoundError:
            continue  # closed between listdir and readlink
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        try:
            mode = os.stat(base / entry).st_mode
            kind = _file_kind(mode)
        except OSError:
            kind = "?"
        out.append({"fd": int(entry), "target": target, "kind": kind,
                    "mnt_id": int(fields.get("mnt_id", "-1").strip())})  # fmt: skip
    return out


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"), (stat.S_ISCHR, "chardev"),
                       (stat.S_ISBLK, "blockdev"), (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISLNK, "symlink")):  # fmt: skip
        if test(mode):
            return name
    return "?"


def foreign_fd(entry: dict[str, Any], inside: set[int]) -> bool:
    """Whether one fd (from :func:`fd_table`) reaches outside the container: anything but a pipe,
    socket, anonymous inode, memfd, character device (a tty, /dev/null: the device cgroup decides
    those) or a file on a mount inside the container's root (``inside``: :func:`mount_ids`)."""
    target = entry["target"]
    if target.startswith(ANON_FD_PREFIXES) or entry["kind"] in ("chardev", "fifo", "socket"):
        return False
    return entry["mnt_id"] not in inside


def dir_reachable_from(root_pid: int, path: str) -> tuple[bool, str]:
    """Whether the directory ``path`` (a host path, typically ``/proc/PID/cwd`` or
    ``/proc/PID/fd/N``) lies under the root directory of ``root_pid``, and its path as seen from
    there. A forked helper opens it, chroots into ``/proc/ROOT_PID/root`` and asks ``getcwd`` after
    ``fchdir``: the kernel answers ``(unreachable)/...`` for a directory outside the root (the
    CVE-2024-21626 test runc does on its own cwd), which glibc turns into ENOENT."""

    def probe() -> list[Any]:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        os.chroot(f"/proc/{root_pid}/root")
        os.fchdir(fd)
        try:
            return [True, os.getcwd()]
        except FileNotFoundError:
            buf = ctypes.create_string_buffer(4096)
            ret = _libc.syscall(79, buf, ctypes.c_size_t(4096))  # SYS_getcwd: the raw answer
            return [False, buf.value.decode(errors="replace") if ret > 0 else "(unreachable)"]

    ok, where = in_namespaces(root_pid, [], probe)
    return bool(ok), str(where)


def proc_pids_in_pid_ns(pid: int) -> list[int]:
    """Host PIDs of every process in ``pid``'s PID namespace."""
    want = ns_inode(pid, "pid")
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if ns_inode(d, "pid") == want:
                    out.append(int(d))
            except OSError:
                continue
    return out


def judge_hits(lines: list[str], inside: set[int]) -> tuple[list[str], int]:
    """(the host objects among what the attacker opened, how many opens it logged). Anonymous
    objects (a memfd copy of the runtime, pipes), character devices and files on the
    container's own mounts are its own; a deleted file is no host file any more."""
    bad = []
    for line in lines:
        parts = line.split("|")
        if len(parts) < 5:
            continue  # the process went while the line was being made
        mode, path, target, mnt, kind = parts[:5]
        mnt_id = int(mnt.split(":")[-1].strip() or -1) if mnt.strip() else -1
        anon = target.startswith(ANON_FD_PREFIXES) or target.endswith(" (deleted)")
        if anon or kind == "character special file" or mnt_id in inside or not target:
            continue
        how = "opened for writing" if mode == "W" else "opened read-only, write refused"
        bad.append(f"{target} ({kind}, host mount {mnt_id}) via {path}: {how}")
    return sorted(set(bad)), len(lines)
