"""Per-container host resources and the monitor: prepare, spawn, teardown, remove.

``prepare`` (run by the CLI before each start) mounts the overlay rootfs, makes the network
namespace (and the bridge connection), writes ``/etc/hosts``, ``/etc/resolv.conf`` and
``/etc/hostname`` and the OCI ``config.json``. ``teardown`` (run by the monitor when the container
is finally down, and by ``rm``) undoes all of it and is idempotent, so a crash halfway is repaired
by running it again.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

from runtime.cgroups.mountinfo import unescape
from runtime.engine import ocispec
from runtime.engine.home import Home, cgroup_parent, write_json
from runtime.engine.oci import OciRuntime
from runtime.engine.store import Store, remove_tree
from runtime.errors import IsoproofError, NetworkError, StateError, SyscallError
from runtime.sys import MNT_DETACH, Sys

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

MONITOR_READY_TIMEOUT = 60
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
# The monitor's start: -I (no PYTHON* variables, no site) with the package root by hand, and -c
# rather than -m (runpy's imports); its argv keeps "runtime.engine.monitor" for ps and damage.
MONITOR_BOOT = (
    f"import sys; sys.path[:0] = [{PACKAGE_ROOT!r}]; from runtime.engine.monitor import main; "
    "sys.exit(main(sys.argv[2:]))"
)


def rootfs_dir(home: Home, cid: str) -> Path:
    return home.container_dir(cid) / "bundle" / "rootfs"


def cgroups_path(cid: str) -> str:
    return f"/{cgroup_parent()}/{cid}"


def resolve_user(rootfs: Path, user: str) -> tuple[int, int, list[int]]:
    """``-u name|uid[:group|gid]`` → numeric ids, names looked up in the image's passwd/group."""
    if not user:
        return 0, 0, []
    name, _, group = user.partition(":")

    def table(path: str) -> list[list[str]]:
        try:
            return [
                ln.split(":")
                for ln in (rootfs / path).read_text().splitlines()
                if ln.count(":") >= 3
            ]
        except OSError:
            return []

    if name.isdigit():
        uid = int(name)
        entry = next((e for e in table("etc/passwd") if e[2] == name), None)
        gid = int(entry[3]) if entry else 0
    else:
        entry = next((e for e in table("etc/passwd") if e[0] == name), None)
        if entry is None:
            raise StateError(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(entry[2]), int(entry[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((e for e in table("etc/group") if e[0] == group), None)
            if g is None:
                raise StateError(f"unable to find group {group}: no matching entries in group file")
            gid = int(g[2])
    return uid, gid, []


def _resolv_conf() -> str:
    """The host's resolver list minus loopback servers (unreachable from a container)."""
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        lines = []
    keep = [
        ln for ln in lines if not (ln.startswith("nameserver") and (" 127." in ln or " ::1" in ln))
    ]
    return "\n".join(keep) + "\n"


def _make_netns(path: Path) -> None:
    path.touch()
    cp = subprocess.run(["unshare", f"--net={path}", "true"], capture_output=True, text=True)
    if cp.returncode != 0:
        path.unlink(missing_ok=True)
        raise NetworkError(f"cannot create network namespace: {cp.stderr.strip()}")


def prepare(home: Home, store: Store, cid: str) -> dict[str, Any]:
    """Make everything a start needs; on failure undo it. Returns the NetworkSettings."""
    cfg = store.config(cid)
    try:
        return _prepare(home, store, cid, cfg)
    except BaseException:
        teardown(home, cid)
        raise


def _peer_pid(store: Store, ref: str) -> int:
    peer = store.resolve(ref)
    st = store.state(peer)
    if st["Status"] not in ("running", "paused") or not st.get("Pid"):
        raise StateError(
            f"Error response from daemon: cannot join container {ref}: it is not running"
        )
    return int(st["Pid"])


def _prepare(home: Home, store: Store, cid: str, cfg: dict[str, Any]) -> dict[str, Any]:
    cdir = home.container_dir(cid)
    hc, c = cfg["HostConfig"], cfg["Config"]
    upper, work, rootfs = cdir / "upper", cdir / "work", rootfs_dir(home, cid)
    for d in (upper, work, rootfs):
        d.mkdir(parents=True, exist_ok=True)
    lower = Path(cfg["ImageRootfs"])
    if hc.get("UsernsRemap"):
        host_id, size = hc["UsernsRemap"]
        lower = shifted_lower(lower, cdir / "lower-shifted", host_id, size)
        # The overlay's root directory takes its owner from the upper directory.
        st = os.lstat(lower)
        os.chown(upper, st.st_uid, st.st_gid)
        os.chmod(upper, st.st_mode & 0o7777)
    if not is_mountpoint(str(rootfs)):
        try:
            Sys().mount(
                "overlay",
                str(rootfs),
                "overlay",
                0,
                f"lowerdir={lower},upperdir={upper},workdir={work}",
            )
        except SyscallError as e:
            if e.errno != errno.EINVAL:
                raise
            # EINVAL alone does not say why; the usual reason is a home on a filesystem that
            # cannot hold an upper layer (another overlay, 9p: a VM's shared root), so name it.
            with open("/proc/self/mountinfo") as f:
                kind = fs_type(os.path.realpath(upper), f.read())
            raise IsoproofError(
                f"mount overlay {rootfs}: the kernel refused (EINVAL); the upper directory is on "
                f"{kind}{OVERLAY_UPPER_HINT if kind in NO_OVERLAY_UPPER else ''}"
            ) from None

    peers: dict[str, int] = {}
    for kind, key in (
        ("pid", "PidMode"),
        ("ipc", "IpcMode"),
        ("uts", "UTSMode"),
        ("network", "NetworkMode"),
    ):
        mode = hc.get(key) or ""
        if mode.startswith("container:"):
            peers[kind] = _peer_pid(store, mode.split(":", 1)[1])

    netmode = hc.get("NetworkMode") or "bridge"
    hostname = c.get("Hostname") or cid[:12]
    network: dict[str, Any] = {}
    netns: str | None = None
    if netmode in ("bridge", "none"):
        nspath = home.netns_path(cid)
        if not is_mountpoint(str(nspath)):
            _make_netns(nspath)
        netns = str(nspath)
        if netmode == "bridge":
            from runtime.engine import network as net

            network = net.connect(home, cid, netns, hostname)
        else:
            from runtime.engine import network as net

            net.lo_up(netns)
    elif netmode == "host":
        hostname = os.uname().nodename if not c.get("Hostname") else hostname

    etc = cdir / "etc"
    etc.mkdir(exist_ok=True)
    hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if network.get("IPAddress"):
        hosts.append(f"{network['IPAddress']}\t{hostname}")
    (etc / "hosts").write_text("\n".join(hosts) + "\n")
    (etc / "hostname").write_text(hostname + "\n")
    (etc / "resolv.conf").write_text(_resolv_conf())
    etc_files = {f"/etc/{n}": str(etc / n) for n in ("hosts", "hostname", "resolv.conf")}
    if netmode == "host":
        etc_files = {"/etc/resolv.conf": str(etc / "resolv.conf")}

    # Make the bind targets now, as root: with --userns, root inside cannot create them in the
    # image's root-owned directories.
    for dest in [*etc_files, *(m["Destination"] for m in hc.get("Mounts") or [])]:
        target = rootfs / dest.lstrip("/")
        if not target.exists() and not target.is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            if dest in etc_files:
                target.touch()
            else:
                target.mkdir(parents=True, exist_ok=True)
    # docker creates the working directory in the container's filesystem (runc would too; not
    # every runtime does), so -w /new/dir works everywhere.
    workdir = c.get("WorkingDir") or ""
    if workdir.startswith("/") and ".." not in workdir.split("/"):
        wd = rootfs / workdir.lstrip("/")
        if not wd.exists() and not wd.is_symlink():
            wd.mkdir(parents=True, exist_ok=True)
    user = resolve_user(Path(cfg["ImageRootfs"]), c.get("User") or "")
    spec = ocispec.build(cfg, str(rootfs), etc_files, netns, peers, cfg["CgroupsPath"], user)
    write_json(cdir / "bundle" / "config.json", spec)
    return network


def teardown(home: Home, cid: str) -> None:
    """Release the rootfs mount, the network and the netns. Safe to call any number of times."""
    errors = []
    rootfs = rootfs_dir(home, cid)
    if rootfs.exists() and is_mountpoint(str(rootfs)):
        try:
            Sys().umount2(str(rootfs), MNT_DETACH)
        except IsoproofError as e:
            errors.append(str(e))
    try:
        from runtime.engine.network import release

        release(home, cid)
    except IsoproofError as e:
        errors.append(str(e))
    nspath = home.netns_path(cid)
    if nspath.exists():
        if is_mountpoint(str(nspath)):
            try:
                Sys().umount2(str(nspath), MNT_DETACH)
            except IsoproofError as e:
                errors.append(str(e))
        nspath.unlink(missing_ok=True)
    home.attach_socket(cid).unlink(missing_ok=True)
    if errors:
        print(f"isoproof: teardown of {cid[:12]}: {'; '.join(errors)}", file=sys.stderr)


def remove(home: Home, cid: str, volumes: bool = False) -> None:
    """Remove a container whose monitor is gone. The runtime's ``delete`` runs only if no one has
    deleted the runtime's container yet (the monitor does, as soon as the init is dead)."""
    store = Store(home)
    cfg = store.config(cid)
    if store.state(cid).get("OciContainer"):
        OciRuntime(cfg["Runtime"], cfg["OciRoot"]).delete(cid, force=True)
    teardown(home, cid)
    if volumes:
        for b in cfg["HostConfig"].get("Mounts") or []:
            if b.get("Anonymous"):
                remove_tree(Path(b["Source"]))
    remove_tree(home.container_dir(cid))


def spawn_monitor(home: Home, cid: str) -> tuple[int, Any]:
    """Start the container's monitor and wait until the OCI ``create`` is done. Returns the init's
    PID and the CLI's end of the ready socket: the CLI sends ``s`` on it once the runtime's
    ``start`` succeeded; if that end closes first (the CLI failed, or was killed), the monitor
    kills the created container and winds it up (``--rm`` included), so nothing is left waiting.

    Exec'd, not forked from this CLI as the OCI runtime is (``forkrun``): the monitor is known by
    its command line (``monitor_alive`` checks the container ID in it against PID reuse; ``ps``
    and the tests' leak checks look for ``runtime.engine.monitor``), and it lives as long as the
    container, so it must stay small: ``-S``, no argparse or image code, which this CLI has
    loaded by now and a fork would keep for the container's whole life."""
    import socket

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_ROOT
    try:
        w = theirs.fileno()
        proc = subprocess.Popen(
            [sys.executable, "-S", "-I", "-c", MONITOR_BOOT, "runtime.engine.monitor"]
            + [str(home.root), cid, str(w)],
            pass_fds=(w,),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env=env,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    proc.wait()  # the intermediate process: the monitor itself has been reparented
    line = b""
    while not line.endswith(b"\n"):
        chunk = ours.recv(256)
        if not chunk:
            break
        line += chunk
    text = line.decode(errors="replace").strip()
    if text.startswith("ok "):
        return int(text[3:]), ours
    ours.close()
    msg = (
        text[4:] if text.startswith("err ") else "the monitor died before the container was created"
    )
    raise StateError(f"Error response from daemon: failed to create container: {msg}")


def shift_id(n: int, host_id: int, size: int) -> int:
    """The host ID that ID ``n`` of the image becomes inside a user namespace mapping 0..size-1
    to host_id..; an ID outside the range stays as it is (it shows as nobody inside)."""
    return host_id + n if 0 <= n < size else n


def shifted_lower(image: Path, dest: Path, host_id: int, size: int) -> Path:
    """A copy of the image whose owners are moved into the container's ID range (made once per
    container, removed with it).

    With ``--userns`` the container's root is host uid ``host_id``: files the image's root owns
    (host uid 0, unmapped) would show as nobody and root inside could not write /etc. docker's
    userns-remap keeps per-range copies of the layers for the same reason.
    """
    if dest.is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    remove_tree(tmp)
    _copy_shifted(image, tmp, host_id, size)
    tmp.rename(dest)
    return dest


def _copy_shifted(src: Path, dst: Path, host_id: int, size: int) -> None:
    import shutil
    import stat

    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISDIR(st.st_mode):
        os.mkdir(dst)
        for name in sorted(os.listdir(src)):
            _copy_shifted(src / name, dst / name, host_id, size)
    elif stat.S_ISREG(st.st_mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
    else:  # device, fifo, socket: never opened, only recreated
        os.mknod(dst, st.st_mode, st.st_rdev)
    os.lchown(dst, shift_id(st.st_uid, host_id, size), shift_id(st.st_gid, host_id, size))
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid/setgid
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def is_mountpoint(path: str) -> bool:
    """True if ``path`` is the mount point of some mount (looked up in /proc/self/mountinfo)."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(unescape(line.split()[4]) == real for line in f)


# Filesystems overlayfs refuses as an upper layer (no d_type, xattrs, or tmpfile support).
NO_OVERLAY_UPPER = frozenset({"overlay", "9p", "virtiofs", "nfs", "nfs4", "vfat", "fuse", "cifs"})
OVERLAY_UPPER_HINT = ", which overlayfs cannot write to; set ISOPROOF_HOME to a directory on ext4, xfs, btrfs or tmpfs"


def fs_type(path: str, mountinfo: str) -> str:
    """The type of the filesystem holding ``path`` (an absolute, resolved path), from the text of
    a mountinfo: the mount with the longest mount point above it; of several on the same point,
    the last, which hides the others. Pure: unit tests feed it a fixture."""
    best, kind = -1, "an unknown filesystem"
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        point = unescape(fields[4])
        above = path == point or path.startswith(point.rstrip("/") + "/")
        if above and len(point) >= best:
            best, kind = len(point), fields[fields.index("-") + 1]
    return kind
