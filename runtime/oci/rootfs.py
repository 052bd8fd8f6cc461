"""The container's root filesystem: a pure plan from the spec, then its application through Sys.

:func:`plan` turns a :class:`~runtime.spec.Spec` into a list of :class:`MountStep` (unit-tested
without root); :func:`prepare` and :func:`finalize` run inside the container init, before and after
``pivot_root``. Destinations are resolved inside the rootfs with :func:`secure_join`, so a symlink
in the image cannot send a mount onto the host.
"""

from __future__ import annotations

import errno
import os
import stat

from runtime.errors import SyscallError
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
    """The spec's mounts (bind sources made absolute against the bundle), with the defaults for
    /proc, /dev, /dev/pts, /dev/shm and /sys added in front when the spec has none there."""
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
    # Parents before children: /dev before /dev/pts whatever order the spec lists them in.
    steps.sort(key=lambda s: s.destination.count("/") if s.destination != "/" else 0)
    return steps


def root_propagation(spec: Spec) -> int:
    """Propagation applied to "/" before anything is mounted: rprivate unless the spec asks."""
    return PROPAGATION_FLAGS.get(spec.linux.rootfs_propagation, MS_PRIVATE | MS_REC)


def secure_join(root: str, path: str) -> str:
    """``root/path`` with every symlink resolved as if ``root`` were "/" (never escapes root)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError:  # not a link, or missing: take it literally
            resolved.append(part)
            continue
        hops += 1
        if hops > 255:
            raise OSError(errno.ELOOP, "too many symlinks", path)
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return os.path.join(root, *resolved)


def _mkdir_p(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _make_target(dest: str, source_is_dir: bool) -> None:
    if source_is_dir:
        _mkdir_p(dest)
    elif not os.path.exists(dest):
        _mkdir_p(os.path.dirname(dest))
        os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _mount_one(sys: Sys, rootfs: str, step: MountStep, userns: bool, cgroup_binds: list) -> None:
    dest = secure_join(rootfs, step.destination)
    if step.fstype == "cgroup":
        _mount_cgroup(sys, rootfs, step, cgroup_binds)
        return
    if step.is_bind:
        src = step.source or ""
        if not os.path.exists(src):
            raise OSError(
                errno.ENOENT, f"mounts: bind source {src} of {step.destination} does not exist"
            )
        _make_target(dest, os.path.isdir(src))
        sys.mount(src, dest, None, MS_BIND | (step.flags & MS_REC))
        # A bind mount ignores every other flag: apply them with a remount.
        extra = step.flags & ~(MS_BIND | MS_REC)
        if extra:
            sys.mount(None, dest, None, MS_BIND | MS_REMOUNT | extra)
    else:
        _mkdir_p(dest)
        data = step.data
        if step.fstype == "devpts" and userns:
            # gid=5 may be unmapped in a user namespace: the kernel refuses it.
            data = ",".join(o for o in data.split(",") if not o.startswith("gid="))
        try:
            sys.mount(step.source, dest, step.fstype, step.flags, data or None)
        except SyscallError as e:
            # sysfs in a user namespace without its own netns is refused: bind the host's instead.
            if step.fstype != "sysfs" or e.errno != errno.EPERM:
                raise
            sys.mount("/sys", dest, None, MS_BIND | MS_REC)
            sys.mount(None, dest, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
                      | MS_NOEXEC)  # fmt: skip
    for p in step.propagation:
        sys.mount(None, dest, None, p)


def _mount_cgroup(sys: Sys, rootfs: str, step: MountStep, binds: list) -> None:
    """``type: cgroup``: a tmpfs with each hierarchy's directory for this container bound below it
    (v1 and hybrid), or the container's cgroup2 directory itself (v2). ``binds`` was computed by
    stage-1 from the host's view (see :func:`cgroup_binds`)."""
    dest = secure_join(rootfs, step.destination)
    _mkdir_p(dest)
    ro = step.flags & MS_RDONLY
    if len(binds) == 1 and binds[0][1] == "":
        sys.mount(binds[0][0], dest, None, MS_BIND)
        sys.mount(None, dest, None, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC | ro)
        return
    sys.mount("tmpfs", dest, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")
    for host_dir, name in binds:
        sub = os.path.join(dest, name)
        _mkdir_p(sub)
        sys.mount(host_dir, sub, None, MS_BIND)
        sys.mount(None, sub, None, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC | ro)
    if ro:
        sys.mount(None, dest, None, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)


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


def _create_devices(sys: Sys, rootfs: str, spec: Spec, userns: bool) -> None:
    devices = list(DEFAULT_DEVICES)
    for d in spec.linux.devices:
        devices.append((d.path, d.type, d.major, d.minor, d.file_mode or 0o666))
    for path, kind, major, minor, mode in devices:
        dest = secure_join(rootfs, path)
        _mkdir_p(os.path.dirname(dest))
        if userns:
            # mknod is not allowed in a user namespace: bind the host's node instead.
            _make_target(dest, False)
            sys.mount(path, dest, None, MS_BIND)
            continue
        if os.path.lexists(dest):
            os.unlink(dest)
        ftype = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]
        old = os.umask(0)
        try:
            os.mknod(dest, ftype | mode, os.makedev(major, minor))
        except OSError as e:
            raise OSError(e.errno, f"mknod {path}: {e.strerror}") from None
        finally:
            os.umask(old)
    for target, link in DEV_LINKS:
        dest = secure_join(rootfs, link)
        if not os.path.lexists(dest):
            os.symlink(target, dest)


def prepare(sys: Sys, spec: Spec, userns: bool, cgroup_bind_list: list,
            before_pivot: Callable[[], None] | None = None) -> None:  # fmt: skip
    """Everything up to and including pivot_root. Runs in the init's new mount namespace.
    ``before_pivot``: the OCI hooks' point (runtime/oci/hooks.py), mounts made, old root in reach."""
    rootfs = spec.root_path
    sys.mount(None, "/", None, root_propagation(spec))
    # pivot_root needs the new root to be a mount point: bind it onto itself.
    sys.mount(rootfs, rootfs, None, MS_BIND | MS_REC)
    steps = plan(spec)
    for step in steps:
        _mount_one(sys, rootfs, step, userns, cgroup_bind_list)
    if any(s.destination == "/dev" and not s.is_bind for s in steps):
        _create_devices(sys, rootfs, spec, userns)
    if before_pivot is not None:
        before_pivot()
    pivot(sys, rootfs)


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
    """After pivot_root: readonly and masked paths, then the read-only root."""
    for path in spec.linux.readonly_paths:
        try:
            sys.mount(path, path, None, MS_BIND | MS_REC)
        except SyscallError as e:
            if e.errno == errno.ENOENT:
                continue
            raise
        sys.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | _locked(path))
    for path in spec.linux.masked_paths:
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path):
            sys.mount("tmpfs", path, "tmpfs", MS_RDONLY, None)
        else:
            sys.mount("/dev/null", path, None, MS_BIND)
    if spec.root_readonly:
        sys.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked("/"))


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
