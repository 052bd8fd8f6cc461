"""The container's root filesystem: a pure plan from the spec, then its application through Sys.

:func:`plan` turns a :class:`~runtime.spec.Spec` into a list of :class:`MountStep` (unit-tested
without root); :func:`prepare` and :func:`finalize` run inside the container init, before and after
``pivot_root``. Every destination is resolved to an fd inside the rootfs and mounted onto through
/proc/self/fd (see "paths inside the rootfs, by fd" below), so neither a symlink in the image nor
one swapped in while we work can send a mount or a directory onto the host.
"""

from __future__ import annotations

import errno
import os
import stat

from runtime.errors import IsoproofError, SyscallError, suppress
from runtime.oci.record import Record
from runtime.spec import Mount, Spec
from runtime.sys import (
    MNT_DETACH,
    MS_BIND,
    MS_DIRSYNC,
    MS_MANDLOCK,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    MS_UNBINDABLE,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    Sys,
)

TYPE_CHECKING = False  # True for mypy only
if TYPE_CHECKING:
    from collections.abc import Callable

# option -> (clear?, flag). "clear" options switch a flag off (rw clears MS_RDONLY).
MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "defaults": (False, 0),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "nosuid": (False, MS_NOSUID),
    "suid": (True, MS_NOSUID),
    "nodev": (False, MS_NODEV),
    "dev": (True, MS_NODEV),
    "noexec": (False, MS_NOEXEC),
    "exec": (True, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS),
    "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC),
    "mand": (False, MS_MANDLOCK),
    "nomand": (True, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "atime": (True, MS_NOATIME),
    "nodiratime": (False, MS_NODIRATIME),
    "diratime": (True, MS_NODIRATIME),
    "relatime": (False, MS_RELATIME),
    "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "bind": (False, MS_BIND),
    "rbind": (False, MS_BIND | MS_REC),
}
PROPAGATION_FLAGS: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

# Device nodes every container gets (path, type, major, minor, mode), as runc's AllowedDevices.
DEFAULT_DEVICES: tuple[tuple[str, str, int, int, int], ...] = (
    ("/dev/null", "c", 1, 3, 0o666),
    ("/dev/zero", "c", 1, 5, 0o666),
    ("/dev/full", "c", 1, 7, 0o666),
    ("/dev/random", "c", 1, 8, 0o666),
    ("/dev/urandom", "c", 1, 9, 0o666),
    ("/dev/tty", "c", 5, 0, 0o666),
)
DEV_LINKS: tuple[tuple[str, str], ...] = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
)

# Mounts a container gets when its spec has none at that destination.
DEFAULT_MOUNTS: tuple[Mount, ...] = (
    Mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
    Mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
    Mount("/dev/pts", "devpts", "devpts",
          ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]),
    Mount("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
    Mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
)  # fmt: skip


class MountStep(Record):
    __slots__ = ("destination", "source", "fstype", "flags", "data", "propagation")

    def __init__(self, destination: str, source: str | None, fstype: str | None, flags: int,
                 data: str, propagation: list[int] | None = None) -> None:  # fmt: skip
        self.destination = destination  # inside the container
        self.source = source
        self.fstype = fstype
        self.flags = flags  # mount(2) flags without propagation
        self.data = data  # the options mount(2) does not know, comma-joined, for the filesystem
        self.propagation = propagation or []

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & MS_BIND)


def parse_options(options: list[str]) -> tuple[int, list[int], str]:
    """Mount options -> (flags, propagation flags, data string), like mount(8)."""
    flags = 0
    prop: list[int] = []
    data: list[str] = []
    for opt in options:
        if opt in MOUNT_FLAGS:
            clear, f = MOUNT_FLAGS[opt]
            flags = flags & ~f if clear else flags | f
        elif opt in PROPAGATION_FLAGS:
            prop.append(PROPAGATION_FLAGS[opt])
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


def plan(spec: Spec) -> list[MountStep]:
    """The spec's mounts in its order (bind sources made absolute against the bundle), with the
    defaults for /proc, /dev, /dev/pts, /dev/shm and /sys added in front when the spec has none
    there."""
    wanted = {os.path.normpath(m.destination) for m in spec.mounts}
    mounts = [m for m in DEFAULT_MOUNTS if m.destination not in wanted] + list(spec.mounts)
    steps = []
    for m in mounts:
        flags, prop, data = parse_options(m.options)
        if m.type == "bind":
            flags |= MS_BIND
        source = m.source
        if flags & MS_BIND and source and not source.startswith("/"):
            source = os.path.join(spec.bundle, source)
        steps.append(MountStep(os.path.normpath(m.destination), source, m.type, flags, data, prop))
    # In the spec's order, as runc: a later mount may cover an earlier one on purpose.
    return steps


def root_propagation(spec: Spec) -> int:
    """Propagation applied to "/" before anything is mounted: rprivate unless the spec asks."""
    return PROPAGATION_FLAGS.get(spec.linux.rootfs_propagation, MS_PRIVATE | MS_REC)


# --- paths inside the rootfs, by fd -----------------------------------------------------------------
#
# A destination is never a string handed to mkdir(2) or mount(2): whoever shares the rootfs
# directory (another container, a volume) can swap any component for a symlink between our check
# and our use (CVE-2021-30465, CVE-2024-45310). Each path is resolved to an O_PATH fd with the rootfs
# as "/", missing directories are made with mkdirat(2) under their parent's fd, and mounts go onto
# /proc/self/fd/N. A swap can then at worst move the destination elsewhere *inside* the rootfs, or
# make create fail; and after each mount, where it landed is checked (:func:`_check_inside`).

_O_PATH = os.O_PATH | os.O_CLOEXEC
_IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
_MAX_SYMLINKS = 40  # the kernel's own limit for one lookup
_openat2: list[bool] = [True]  # False once the kernel answered ENOSYS (before Linux 5.6)


def fd_path(fd: int) -> str:
    """The magic link that names what ``fd`` refers to, whatever happened to its path since."""
    return f"/proc/self/fd/{fd}"


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def open_in_root(sys: Sys, rootfd: int, path: str) -> int:
    """An O_PATH fd of ``path`` resolved inside the directory ``rootfd`` as if it were "/":
    absolute symlinks start again at it, ".." never climbs above it, magic links are refused.
    Raises OSError (FileNotFoundError, ...) like open(2)."""
    if _openat2[0]:
        for _ in range(16):
            try:
                return sys.openat2(rootfd, path, _O_PATH, _IN_ROOT)
            except SyscallError as e:
                if e.errno == errno.EAGAIN:  # a rename raced a ".." walk: the kernel asks to retry
                    continue
                if e.errno != errno.ENOSYS:
                    raise OSError(e.errno, os.strerror(e.errno), path) from None
                _openat2[0] = False
                break
        else:
            raise OSError(errno.EAGAIN, "the rootfs kept changing during lookup", path)
    return walk_in_root(rootfd, path)


def walk_in_root(rootfd: int, path: str) -> int:
    """:func:`open_in_root` for kernels without openat2: one component at a time, each opened
    O_PATH|O_NOFOLLOW under the fd of the one before; a symlink's target is read and walked again
    from the root (absolute) or from its directory (relative), so no link can lead out."""
    stack = [os.dup(rootfd)]  # the resolved directories, the root at the bottom
    todo = _parts(path)
    hops = 0
    try:
        while todo:
            part = todo.pop(0)
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            fd = os.open(part, _O_PATH | os.O_NOFOLLOW, dir_fd=stack[-1])
            if not stat.S_ISLNK(os.fstat(fd).st_mode):
                stack.append(fd)
                continue
            os.close(fd)
            hops += 1
            if hops > _MAX_SYMLINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(part, dir_fd=stack[-1])
            if target.startswith("/"):
                for f in stack[1:]:
                    os.close(f)
                del stack[1:]
            todo = _parts(target) + todo
        return os.dup(stack[-1])
    finally:
        for f in stack:
            os.close(f)


def mkdir_in_root(sys: Sys, rootfd: int, path: str, mode: int = 0o755) -> int:
    """An O_PATH fd of directory ``path`` inside the root, making each missing component with
    mkdirat(2) under the fd of its resolved parent. A component that is a dangling symlink is an
    error (FileNotFoundError): where it points might be made outside the root by a later swap."""
    try:
        fd = open_in_root(sys, rootfd, path)
    except FileNotFoundError:
        parts = _parts(os.path.normpath("/" + path))
        fd = os.dup(rootfd)
        for i, name in enumerate(parts):
            prefix = "/".join(parts[: i + 1])
            try:
                nxt = open_in_root(sys, rootfd, prefix)
            except FileNotFoundError:
                try:
                    os.mkdir(name, mode, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile by someone else, or a dangling symlink: resolve again
                except OSError:
                    os.close(fd)
                    raise
                try:
                    nxt = open_in_root(sys, rootfd, prefix)
                except OSError:
                    os.close(fd)
                    raise
            os.close(fd)
            fd = nxt
    if not stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
    return fd


def file_in_root(sys: Sys, rootfd: int, path: str, mode: int = 0o644) -> int:
    """An O_PATH fd of ``path`` inside the root, made as an empty file (and its directories) when
    missing: the target of a file bind mount."""
    try:
        return open_in_root(sys, rootfd, path)
    except FileNotFoundError:
        pass
    parent = mkdir_in_root(sys, rootfd, os.path.dirname(os.path.normpath("/" + path)))
    try:
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        os.close(os.open(os.path.basename(path), flags, mode, dir_fd=parent))
    except FileExistsError:
        pass  # see mkdir_in_root
    finally:
        os.close(parent)
    return open_in_root(sys, rootfd, path)


def _mount_id(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise OSError(errno.EINVAL, "no mnt_id in fdinfo")


def _unescape(field: str) -> str:
    """mountinfo escapes blanks, tabs, newlines and backslashes as octal (\\040 ...)."""
    if "\\" not in field:
        return field
    # re.sub(r"\\([0-7]{3})", ...) without `re`, which costs ~4 ms of import per CLI call
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mounted(sys: Sys, rootfd: int, fd: int, dest: str, root: str) -> int:
    """After a mount onto the directory (or file) of ``fd``: an O_PATH fd of the new mount's root,
    once mountinfo confirms that the mount at ``dest`` is the one made on ``fd`` and that it sits
    on ``root`` or below it. (Reopening ``fd`` through /proc/self/fd would not step onto the new
    mount: a magic link lands on the covered dentry itself; so ``dest`` is resolved again.)"""
    mfd = open_in_root(sys, rootfd, dest)
    try:
        new_id, under_id = _mount_id(mfd), _mount_id(fd)
        on = os.readlink(fd_path(fd))
        parent = point = None
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split(" ", 5)
                if int(fields[0]) == new_id:
                    parent, point = int(fields[1]), _unescape(fields[4])
                    break
        if new_id == under_id or parent != under_id or point != on:
            raise IsoproofError(f"mounts: {dest}: the rootfs changed under the mount")
        if point != root and not point.startswith(root.rstrip("/") + "/"):
            sys.umount2(fd_path(mfd), MNT_DETACH)
            raise IsoproofError(f"mounts: {dest}: the mount landed outside the rootfs, at {point}")
    except BaseException:
        os.close(mfd)
        raise
    return mfd


def _mount_one(sys: Sys, root: Root, step: MountStep, userns: bool, cgroup_binds: list) -> None:
    if step.fstype == "cgroup":
        _mount_cgroup(sys, root, step, cgroup_binds)
        return
    if step.is_bind:
        src = step.source or ""
        if not os.path.exists(src):
            raise OSError(
                errno.ENOENT, f"mounts: bind source {src} of {step.destination} does not exist"
            )
        if os.path.isdir(src):
            fd = mkdir_in_root(sys, root.fd, step.destination)
        else:
            fd = file_in_root(sys, root.fd, step.destination)
        try:
            sys.mount(src, fd_path(fd), None, MS_BIND | (step.flags & MS_REC))
            mfd = _mounted(sys, root.fd, fd, step.destination, root.path)
        finally:
            os.close(fd)
        # A bind mount ignores every other flag: apply them with a remount.
        extra = step.flags & ~(MS_BIND | MS_REC)
        if extra:
            sys.mount(None, fd_path(mfd), None, MS_BIND | MS_REMOUNT | extra)
    else:
        fd = mkdir_in_root(sys, root.fd, step.destination)
        # runc's "tmpcopyup" (podman sends it for --tmpfs and --read-only's /run, /tmp): the new
        # tmpfs starts with what the directory held. Not a kernel option: taken out of the data.
        options = step.data.split(",") if step.data else []
        copy_up = "tmpcopyup" in options and step.fstype == "tmpfs"
        data = ",".join(o for o in options if o != "tmpcopyup")
        if step.fstype == "devpts" and userns:
            # gid=5 may be unmapped in a user namespace: the kernel refuses it.
            data = ",".join(o for o in data.split(",") if not o.startswith("gid="))
        try:
            try:
                sys.mount(step.source, fd_path(fd), step.fstype, step.flags, data or None)
                mfd = _mounted(sys, root.fd, fd, step.destination, root.path)
                if copy_up:  # fd still names the directory under the new mount: copy from it
                    import shutil  # only here: every create would pay for its import

                    shutil.copytree(fd_path(fd), fd_path(mfd), symlinks=True, dirs_exist_ok=True)
            except SyscallError as e:
                # sysfs in a user namespace without its own netns is refused: bind the host's.
                if step.fstype != "sysfs" or e.errno != errno.EPERM:
                    raise
                sys.mount("/sys", fd_path(fd), None, MS_BIND | MS_REC)
                mfd = _mounted(sys, root.fd, fd, step.destination, root.path)
                sys.mount(None, fd_path(mfd), None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID
                          | MS_NODEV | MS_NOEXEC)  # fmt: skip
        finally:
            os.close(fd)
    try:
        for p in step.propagation:
            sys.mount(None, fd_path(mfd), None, p)
    finally:
        os.close(mfd)


def _mount_cgroup(sys: Sys, root: Root, step: MountStep, binds: list) -> None:
    """``type: cgroup``: a tmpfs with each hierarchy's directory for this container bound below it
    (v1 and hybrid), or the container's cgroup2 directory itself (v2). ``binds`` was computed by
    stage-1 from the host's view (see :func:`cgroup_binds`)."""
    ro = step.flags & MS_RDONLY
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC | ro
    fd = mkdir_in_root(sys, root.fd, step.destination)
    try:
        if len(binds) == 1 and binds[0][1] == "":
            sys.mount(binds[0][0], fd_path(fd), None, MS_BIND)
            mfd = _mounted(sys, root.fd, fd, step.destination, root.path)
            sys.mount(None, fd_path(mfd), None, flags)
            os.close(mfd)
            return
        sys.mount("tmpfs", fd_path(fd), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")
        top = _mounted(sys, root.fd, fd, step.destination, root.path)
    finally:
        os.close(fd)
    try:
        for host_dir, name in binds:
            # The tmpfs is ours and brand new: nobody else can have put a link into it.
            sub = os.path.join(step.destination, name)
            sfd = mkdir_in_root(sys, root.fd, sub)
            try:
                sys.mount(host_dir, fd_path(sfd), None, MS_BIND)
                mfd = _mounted(sys, root.fd, sfd, sub, root.path)
            finally:
                os.close(sfd)
            sys.mount(None, fd_path(mfd), None, flags)
            os.close(mfd)
        if ro:
            sys.mount(None, fd_path(top), None, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC
                      | MS_RDONLY)  # fmt: skip
    finally:
        os.close(top)


def cgroup_binds(
    mountinfo: str = "/proc/self/mountinfo", cgroup: str = "/proc/self/cgroup"
) -> list[tuple[str, str]]:
    """(host directory of this process's cgroup, name under /sys/fs/cgroup) for each hierarchy.

    Read by stage-1 after it was placed in the container's cgroup and before it unshares the cgroup
    namespace, so the paths are the host's. A v2-only host gives one entry with name "".
    """
    with open(cgroup) as f:
        lines = [ln.rstrip("\n").split(":", 2) for ln in f if ln.strip()]
    by_ctrl = {}
    for _, ctrls, path in lines:
        by_ctrl[ctrls] = path
    out = []
    with open(mountinfo) as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = pre.split()
            fstype, _src, opts = (post.split() + ["", "", ""])[:3]
            mnt_root, mnt_point = fields[3], fields[4]
            if fstype == "cgroup2":
                key = ""
            elif fstype == "cgroup":
                key = ",".join(o for o in opts.split(",") if o not in ("rw", "ro")
                               and (o.startswith("name=") or o in _known_ctrls(by_ctrl)))  # fmt: skip
            else:
                continue
            found = _match(by_ctrl, key)
            if found is None:
                continue
            rel = os.path.relpath(found, mnt_root) if mnt_root != "/" else found.lstrip("/")
            if rel.startswith(".."):
                continue
            name = os.path.basename(mnt_point) if mnt_point != "/sys/fs/cgroup" else ""
            out.append((os.path.join(mnt_point, rel), name))
    if len(out) > 1:  # hybrid: the v2 mount is one entry among many, named after its mount point
        out = [(d, n or "unified") for d, n in out]
    return out


def own_cgroup_binds(binds: list[tuple[str, str]], relpath: str) -> list[tuple[str, str]]:
    """Only the hierarchies where the container has its own cgroup (``relpath``): binding any
    other (a named hierarchy it was never moved in, say) would show the host's tree above it."""
    tail = "/" + relpath.strip("/")
    return [(d, n) for d, n in binds if d.rstrip("/").endswith(tail)]


def _known_ctrls(by_ctrl: dict[str, str]) -> set[str]:
    return {c for k in by_ctrl for c in k.split(",") if c}


def _match(by_ctrl: dict[str, str], key: str) -> str | None:
    if key == "":
        return by_ctrl.get("")
    want = set(key.split(","))
    for k, path in by_ctrl.items():
        if k and set(k.split(",")) == want:
            return path
    return None


class Root(Record):
    """The rootfs being set up: an O_PATH fd of it (every path inside is resolved from this) and
    its host path (where mountinfo must show each new mount)."""

    __slots__ = ("fd", "path")

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path


_DEVICE_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def _create_devices(sys: Sys, root: Root, spec: Spec, userns: bool) -> None:
    devices: list[tuple[str, str, int, int, int, int | None, int | None]] = [
        (p, k, ma, mi, mode, None, None) for p, k, ma, mi, mode in DEFAULT_DEVICES
    ]
    for d in spec.linux.devices:
        devices.append((d.path, d.type, d.major, d.minor, d.file_mode or 0o666, d.uid, d.gid))
    for path, kind, major, minor, mode, uid, gid in devices:
        name = os.path.basename(path)
        parent = mkdir_in_root(sys, root.fd, os.path.dirname(path))
        try:
            if userns:
                # mknod is not allowed in a user namespace: bind the host's node instead.
                fd = file_in_root(sys, root.fd, path)
                try:
                    sys.mount(path, fd_path(fd), None, MS_BIND)
                    os.close(_mounted(sys, root.fd, fd, path, root.path))
                finally:
                    os.close(fd)
                continue
            with suppress(FileNotFoundError):
                os.unlink(name, dir_fd=parent)
            old = os.umask(0)
            try:
                os.mknod(name, _DEVICE_TYPES[kind] | mode, os.makedev(major, minor), dir_fd=parent)
            except OSError as e:
                raise OSError(e.errno, f"mknod {path}: {e.strerror}") from None
            finally:
                os.umask(old)
            if uid is not None or gid is not None:
                os.chown(name, -1 if uid is None else uid, -1 if gid is None else gid,
                         dir_fd=parent, follow_symlinks=False)  # fmt: skip
        finally:
            os.close(parent)
    for target, link in DEV_LINKS:
        parent = mkdir_in_root(sys, root.fd, os.path.dirname(link))
        try:
            os.symlink(target, os.path.basename(link), dir_fd=parent)
        except FileExistsError:
            pass
        finally:
            os.close(parent)


def prepare(sys: Sys, spec: Spec, userns: bool, cgroup_bind_list: list,
            before_pivot: Callable[[], None] | None = None) -> None:  # fmt: skip
    """Everything up to and including pivot_root. Runs in the init's new mount namespace.
    ``before_pivot``: the OCI hooks' point (runtime/oci/hooks.py), mounts made, old root in reach."""
    rootfs = os.path.realpath(spec.root_path)
    sys.mount(None, "/", None, root_propagation(spec))
    # pivot_root refuses a new root whose parent mount is shared (rootfsPropagation "shared" on
    # "/" above): make that one mount private, as runc does; the propagation asked for is given to
    # the new "/" after pivot_root.
    _parent_private(sys, rootfs)
    # pivot_root needs the new root to be a mount point: bind it onto itself.
    sys.mount(rootfs, rootfs, None, MS_BIND | MS_REC)
    # Opened after the bind, so every mount below is made in the tree that becomes "/".
    root = Root(os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), rootfs)
    try:
        steps = plan(spec)
        for step in steps:
            _mount_one(sys, root, step, userns, cgroup_bind_list)
        if any(s.destination == "/dev" and not s.is_bind for s in steps):
            _create_devices(sys, root, spec, userns)
    finally:
        os.close(root.fd)
    if before_pivot is not None:
        before_pivot()
    pivot(sys, rootfs)
    if spec.linux.rootfs_propagation:
        sys.mount(None, "/", None, root_propagation(spec))


def mount_console(sys: Sys) -> None:
    """/dev/console for ``process.terminal``: the pty slave (our stdin by now) bound onto it, as
    runc does; programs that write to the console (init systems, getty) reach the terminal."""
    slave = os.ttyname(0)
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = file_in_root(sys, root, "/dev/console", 0o666)
        try:
            sys.mount(slave, fd_path(fd), None, MS_BIND)
        finally:
            os.close(fd)
    finally:
        os.close(root)


def _parent_private(sys: Sys, rootfs: str, mountinfo: str = "/proc/self/mountinfo") -> None:
    """Make the mount that holds ``rootfs`` private if it is shared (runc's
    rootfsParentMountPrivate): pivot_root refuses a shared parent, and our bind of the rootfs
    onto itself must not propagate to the host. Also if it is unbindable ("unbindable" asked for
    on "/"): nothing could be bound out of it, the rootfs included (runc 1.1 fails there)."""
    best: tuple[str, bool] | None = None
    with open(mountinfo) as f:
        for line in f:
            pre = line.partition(" - ")[0].split()
            point = _unescape(pre[4])
            holds = point == "/" or rootfs == point or rootfs.startswith(point + "/")
            # ">=": a later line at the same point is mounted on top of the earlier one
            if holds and (best is None or len(point) >= len(best[0])):
                best = (point, any(o.startswith(("shared:", "unbindable")) for o in pre[6:]))
    if best is not None and best[1]:
        sys.mount(None, best[0], None, MS_PRIVATE)


def pivot(sys: Sys, rootfs: str) -> None:
    """pivot_root(".", ".") stacks the old root on top of the new one; detach it (after making it
    a slave, so the unmount does not propagate to the host). No chroot anywhere."""
    os.chdir(rootfs)
    sys.pivot_root(".", ".")
    sys.mount(None, ".", None, MS_SLAVE | MS_REC)
    sys.umount2(".", MNT_DETACH)
    os.chdir("/")


def write_sysctls(spec: Spec) -> None:
    for key, value in spec.linux.sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        with open(path, "w") as f:
            f.write(value)


def finalize(sys: Sys, spec: Spec) -> None:
    """After pivot_root: readonly and masked paths, then the read-only root. Each path is resolved
    inside the new root to an fd (a symlink in the image cannot point a mask elsewhere)."""
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path in spec.linux.readonly_paths:
            fd = _open_existing(sys, root, path)
            if fd < 0:
                continue
            try:
                sys.mount(fd_path(fd), fd_path(fd), None, MS_BIND | MS_REC)
            finally:
                os.close(fd)
            mfd = open_in_root(sys, root, path)  # the bind just made (see _mounted)
            try:
                target = fd_path(mfd)
                sys.mount(None, target, None,
                          MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | _locked(target))  # fmt: skip
            finally:
                os.close(mfd)
        for path in spec.linux.masked_paths:
            fd = _open_existing(sys, root, path)
            if fd < 0:
                continue
            try:
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    sys.mount("tmpfs", fd_path(fd), "tmpfs", MS_RDONLY, None)
                else:
                    sys.mount("/dev/null", fd_path(fd), None, MS_BIND)
            finally:
                os.close(fd)
    finally:
        os.close(root)
    if spec.root_readonly:
        sys.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked("/"))


def _open_existing(sys: Sys, root: int, path: str) -> int:
    """open_in_root, or -1 for a path the image does not have (masked/readonly paths are
    skipped then, as runc does)."""
    try:
        return open_in_root(sys, root, path)
    except (FileNotFoundError, NotADirectoryError):
        return -1


def _locked(path: str) -> int:
    """Flags a remount must keep: in a user namespace the kernel refuses to drop nosuid, nodev,
    noexec of a mount inherited from a more privileged namespace."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    out = 0
    for bit, flag in (
        (os.ST_NOSUID, MS_NOSUID),
        (os.ST_NODEV, MS_NODEV),
        (os.ST_NOEXEC, MS_NOEXEC),
    ):
        if st.f_flag & bit:
            out |= flag
    return out
