"""The one syscall choke point.

Every privileged system call the runtime makes goes through a :class:`Sys` object, so that

* errno is never lost (ctypes with ``use_errno=True``; a failed call raises
  :class:`~runtime.errors.SyscallError` naming the call, errno and the path it acted on), and
* unit tests can hand the code a :class:`RecordingSys` and check *which* calls would be made, in
  which order, without root.

Nothing heavy is imported here: every ``isoproof-oci`` command that makes a container imports this
module. ``ctypes`` itself comes with the first :class:`Sys`; unshare, setns, mount and prctl also
work without it (the module functions of the same names, made through :mod:`runtime.libc`, which
the engine's monitor uses for its prctl: it keeps no ``os`` or ``ctypes`` in memory).
"""

from __future__ import annotations

import fcntl
import os
import resource

from runtime import libc
from runtime.errors import BpfVerifierError, SyscallError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

# --- clone(2) / unshare(2) / setns(2) flags -------------------------------------------------------
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# --- mount(2) flags ---------------------------------------------------------------------------------
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

MNT_DETACH = 0x2

# --- openat2(2) resolve flags (linux/openat2.h) ------------------------------------------------------
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# --- prctl(2) -------------------------------------------------------------------------------------
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# ioctl(2) on a namespace file: which CLONE_NEW* type it is (linux/nsfs.h, _IO(0xb7, 0x3)).
NS_GET_NSTYPE = 0xB703

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# pivot_root(2) has no glibc wrapper: call it by number.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
# Nor has openat2(2) (Linux 5.6): one number on every architecture, as for all new calls.
_SYS_OPENAT2 = 437
# Nor has bpf(2).
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}

# --- bpf(2) commands (linux/bpf.h enum bpf_cmd) -------------------------------------------------------
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_MAX_PROGS_PER_CGROUP = 64  # the kernel's BPF_CGROUP_MAX_PROGS for one attach type
VERIFIER_LOG_SIZE = 1 << 18


def _c() -> Any:
    """``ctypes`` and the C structures of capget/capset, openat2 and bpf: made by the first
    :class:`Sys` (each command makes one before it forks anything that leaves the host's files, so
    the children have them). Not at import: ``ctypes`` costs ~2.5 ms and 0.4 MiB, and the light
    calls below (unshare, setns, mount, prctl, through :mod:`runtime.libc`) do without it."""
    if _C:
        return _C[0]
    import ctypes

    class C:
        class CapHeader(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        class CapData(ctypes.Structure):
            _fields_ = [
                ("effective", ctypes.c_uint32),
                ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32),
            ]

        class OpenHow(ctypes.Structure):
            _fields_ = [
                ("flags", ctypes.c_uint64),
                ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64),
            ]

        class BpfProgLoad(ctypes.Structure):
            """The BPF_PROG_LOAD part of ``union bpf_attr``, up to the fields we set."""

            _fields_ = [
                ("prog_type", ctypes.c_uint32),
                ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64),
                ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32),
                ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64),
                ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32),
                ("prog_name", ctypes.c_char * 16),
                ("prog_ifindex", ctypes.c_uint32),
                ("expected_attach_type", ctypes.c_uint32),
            ]

        class BpfAttach(ctypes.Structure):
            """BPF_PROG_ATTACH / BPF_PROG_DETACH."""

            _fields_ = [
                ("target_fd", ctypes.c_uint32),
                ("attach_bpf_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32),
                ("attach_flags", ctypes.c_uint32),
                ("replace_bpf_fd", ctypes.c_uint32),
            ]

        class BpfQuery(ctypes.Structure):
            """BPF_PROG_QUERY."""

            _fields_ = [
                ("target_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32),
                ("query_flags", ctypes.c_uint32),
                ("attach_flags", ctypes.c_uint32),
                ("prog_ids", ctypes.c_uint64),
                ("prog_cnt", ctypes.c_uint32),
                ("_pad", ctypes.c_uint32),
            ]

        class BpfGetFdById(ctypes.Structure):
            _fields_ = [
                ("prog_id", ctypes.c_uint32),
                ("next_id", ctypes.c_uint32),
                ("open_flags", ctypes.c_uint32),
            ]

    C.ctypes = ctypes  # type: ignore[attr-defined]
    _C.append(C)
    return C


_C: list[Any] = []


# --- the light calls: runtime.libc (`_ctypes` alone) ------------------------------------------------


def _light(call: str, target: str | None, name: str, *args: object) -> int:
    try:
        return libc.call(name, *args)
    except OSError as e:
        raise SyscallError(call, e.errno or 0, target) from None


def unshare(flags: int) -> None:
    _light("unshare", hex(flags), "unshare", libc.Int(flags))


def setns(fd: int, nstype: int = 0, target: str | None = None) -> None:
    _light("setns", target, "setns", libc.Int(fd), libc.Int(nstype))


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:  # fmt: skip
    _light(
        "mount", target, "mount", _b(source), _b(target), _b(fstype), libc.ULong(flags), _b(data)
    )


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    try:
        return libc.prctl(option, arg2, arg3, arg4, arg5)
    except OSError as e:
        raise SyscallError("prctl", e.errno or 0, str(option)) from None


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


class Sys:
    """Real system calls through libc."""

    def __init__(self) -> None:
        self._c = _c()
        self._libc = self._c.ctypes.CDLL(None, use_errno=True)

    def _check(self, ret: int, call: str, target: str | None = None) -> int:
        if ret == -1:
            raise SyscallError(call, self._c.ctypes.get_errno(), target)
        return ret

    # namespaces
    def unshare(self, flags: int) -> None:
        unshare(flags)

    def setns(self, fd: int, nstype: int = 0, target: str | None = None) -> None:
        setns(fd, nstype, target)

    # mounts
    def mount(
        self,
        source: str | None,
        target: str,
        fstype: str | None = None,
        flags: int = 0,
        data: str | None = None,
    ) -> None:
        mount(source, target, fstype, flags, data)

    def umount2(self, target: str, flags: int = 0) -> None:
        self._check(self._libc.umount2(_b(target), flags), "umount2", target)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        nr = _SYS_PIVOT_ROOT.get(os.uname().machine)
        if nr is None:
            raise SyscallError("pivot_root", 38, os.uname().machine)  # ENOSYS: unknown arch
        _light("pivot_root", new_root, "syscall", libc.Long(nr), _b(new_root), _b(put_old))

    def openat2(self, dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
        """openat(2) with ``resolve`` rules (RESOLVE_IN_ROOT: resolve as if ``dirfd`` were "/").
        ENOSYS on kernels before 5.6: callers fall back to a walk of their own."""
        ctypes = self._c.ctypes
        how = self._c.OpenHow(flags, mode, resolve)
        ret = self._libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), _b(path),
                                 ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))  # fmt: skip
        return self._check(ret, "openat2", path)

    # identity
    def sethostname(self, name: str) -> None:
        raw = name.encode()
        self._check(self._libc.sethostname(raw, len(raw)), "sethostname", name)

    def setdomainname(self, name: str) -> None:
        raw = name.encode()
        self._check(self._libc.setdomainname(raw, len(raw)), "setdomainname", name)

    def setgroups(self, gids: list[int]) -> None:
        arr = (self._c.ctypes.c_uint32 * max(1, len(gids)))(*gids)
        self._check(self._libc.setgroups(len(gids), arr), "setgroups", str(gids))

    def setresuid(self, r: int, e: int, s: int) -> None:
        self._check(self._libc.setresuid(r, e, s), "setresuid", str(e))

    def setresgid(self, r: int, e: int, s: int) -> None:
        self._check(self._libc.setresgid(r, e, s), "setresgid", str(e))

    # process attributes
    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
        return prctl(option, arg2, arg3, arg4, arg5)

    def capget(self) -> tuple[int, int, int]:
        """Return (effective, permitted, inheritable) of this thread as 64-bit masks."""
        c = self._c
        hdr = c.CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (c.CapData * 2)()
        self._check(self._libc.capget(c.ctypes.byref(hdr), data), "capget")
        return tuple(  # type: ignore[return-value]
            getattr(data[0], f) | (getattr(data[1], f) << 32)
            for f in ("effective", "permitted", "inheritable")
        )

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        c = self._c
        hdr = c.CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (c.CapData * 2)()
        for i in (0, 1):
            shift = 32 * i
            data[i].effective = (effective >> shift) & 0xFFFFFFFF
            data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
            data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
        self._check(self._libc.capset(c.ctypes.byref(hdr), data), "capset")

    def setrlimit(self, kind: int, soft: int, hard: int) -> None:
        try:
            resource.setrlimit(kind, (soft, hard))
        except (OSError, ValueError) as e:
            raise SyscallError("setrlimit", getattr(e, "errno", None) or 22, str(kind)) from None

    def nstype(self, fd: int) -> int:
        """The CLONE_NEW* type of an open namespace file (NS_GET_NSTYPE)."""
        try:
            return fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError as e:
            raise SyscallError("ioctl(NS_GET_NSTYPE)", e.errno or 22) from None

    # bpf(2): only what the cgroup v2 device filter needs
    def _bpf(self, cmd: int, attr: Any) -> int:
        """The raw call; returns the result or -1 with errno set (callers name the failure)."""
        ctypes = self._c.ctypes
        nr = _SYS_BPF.get(os.uname().machine)
        if nr is None:
            ctypes.set_errno(38)  # ENOSYS: unknown arch
            return -1
        ret: int = self._libc.syscall(
            ctypes.c_long(nr),
            ctypes.c_int(cmd),
            ctypes.byref(attr),
            ctypes.c_uint(ctypes.sizeof(attr)),
        )
        return ret

    def bpf_prog_load(self, prog_type: int, insns: bytes, license: str) -> int:
        """Load a program; returns its fd (close-on-exec, as every bpf fd).

        Loaded first without a verifier log (a log costs time, and a too-small one is an error of
        its own); if that fails, once more with a log, so a refusal names the verifier's reason."""
        ctypes = self._c.ctypes
        code = ctypes.create_string_buffer(insns, len(insns))
        lic = ctypes.create_string_buffer(license.encode())
        attr = self._c.BpfProgLoad(prog_type=prog_type, insn_cnt=len(insns) // 8)
        attr.insns = ctypes.addressof(code)
        attr.license = ctypes.addressof(lic)
        attr.prog_name = b"isoproof_dev"
        fd: int = self._bpf(BPF_PROG_LOAD, attr)
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        log = ctypes.create_string_buffer(VERIFIER_LOG_SIZE)
        attr.log_level, attr.log_size, attr.log_buf = 1, VERIFIER_LOG_SIZE, ctypes.addressof(log)
        fd = self._bpf(BPF_PROG_LOAD, attr)
        if fd >= 0:  # a transient failure the first time
            return fd
        text = log.value.decode(errors="replace")
        if text.strip():
            raise BpfVerifierError(ctypes.get_errno(), text)
        raise SyscallError("bpf(BPF_PROG_LOAD)", err)

    def bpf_prog_attach(self, target_fd: int, prog_fd: int, attach_type: int, flags: int) -> None:
        attr = self._c.BpfAttach(target_fd, prog_fd, attach_type, flags, 0)
        self._check(self._bpf(BPF_PROG_ATTACH, attr), "bpf(BPF_PROG_ATTACH)", f"fd {target_fd}")

    def bpf_prog_detach(self, target_fd: int, prog_fd: int, attach_type: int) -> None:
        attr = self._c.BpfAttach(target_fd, prog_fd, attach_type, 0, 0)
        self._check(self._bpf(BPF_PROG_DETACH, attr), "bpf(BPF_PROG_DETACH)", f"fd {target_fd}")

    def bpf_prog_query(self, target_fd: int, attach_type: int) -> list[int]:
        """IDs of the programs of ``attach_type`` attached to the cgroup itself (not inherited)."""
        ctypes = self._c.ctypes
        ids = (ctypes.c_uint32 * BPF_MAX_PROGS_PER_CGROUP)()
        attr = self._c.BpfQuery(target_fd=target_fd, attach_type=attach_type)
        attr.prog_ids, attr.prog_cnt = ctypes.addressof(ids), BPF_MAX_PROGS_PER_CGROUP
        self._check(self._bpf(BPF_PROG_QUERY, attr), "bpf(BPF_PROG_QUERY)", f"fd {target_fd}")
        return list(ids[: attr.prog_cnt])

    def bpf_prog_get_fd_by_id(self, prog_id: int) -> int:
        ret: int = self._bpf(BPF_PROG_GET_FD_BY_ID, self._c.BpfGetFdById(prog_id, 0, 0))
        return self._check(ret, "bpf(BPF_PROG_GET_FD_BY_ID)", str(prog_id))


_REAL: list[Sys | None] = [None]  # RecordingSys's real Sys for openat2, made on first use


def _named(path: str | None) -> str | None:
    """A /proc/self/fd/N mount argument as "fd:<what it names>", read while N is still open."""
    if path is None or not path.startswith("/proc/self/fd/"):
        return path
    try:
        return "fd:" + os.readlink(path)
    except OSError:
        return path


class RecordingSys(Sys):
    """A fake that records every call instead of making it.

    ``calls`` is a list of ``(name, args)`` tuples. ``fail`` maps a call name to an errno: that call
    raises :class:`SyscallError` as the real one would. ``nstypes`` answers :meth:`nstype`.

    For bpf(2) it also plays a kernel with one cgroup: ``bpf_attached`` holds the IDs of the device
    programs attached to it, in attach order; ``bpf_programs`` maps an ID to the instructions it was
    loaded with. A loaded program's fd is ``1000 + id``; one from GET_FD_BY_ID is ``2000 + id``.
    """

    def __init__(self, fail: dict[str, int] | None = None) -> None:  # noqa: D107 - no libc here
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail = dict(fail or {})
        self.nstypes: dict[int, int] = {}
        self.caps = (0, 0, 0)
        self.bpf_attached: list[int] = []
        self.bpf_programs: dict[int, bytes] = {}
        self.bpf_fds: dict[int, int] = {}

    def _rec(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if name in self.fail:
            raise SyscallError(name, self.fail[name], str(args[0]) if args else None)

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def unshare(self, flags: int) -> None:
        self._rec("unshare", flags)

    def setns(self, fd: int, nstype: int = 0, target: str | None = None) -> None:
        self._rec("setns", fd, nstype, target)

    def mount(
        self,
        source: str | None,
        target: str,
        fstype: str | None = None,
        flags: int = 0,
        data: str | None = None,
    ) -> None:
        self._rec("mount", _named(source), _named(target), fstype, flags, data)

    def umount2(self, target: str, flags: int = 0) -> None:
        self._rec("umount2", target, flags)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        self._rec("pivot_root", new_root, put_old)

    def openat2(self, dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
        """Recorded, then really made: it only resolves paths, and the code under test goes on to
        use the fd (fstat, mkdirat) on the test's own directories."""
        self._rec("openat2", path, flags, resolve)
        real = _REAL[0]
        if real is None:
            real = _REAL[0] = Sys()
        return real.openat2(dirfd, path, flags, resolve, mode)

    def sethostname(self, name: str) -> None:
        self._rec("sethostname", name)

    def setdomainname(self, name: str) -> None:
        self._rec("setdomainname", name)

    def setgroups(self, gids: list[int]) -> None:
        self._rec("setgroups", list(gids))

    def setresuid(self, r: int, e: int, s: int) -> None:
        self._rec("setresuid", r, e, s)

    def setresgid(self, r: int, e: int, s: int) -> None:
        self._rec("setresgid", r, e, s)

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
        self._rec("prctl", option, arg2, arg3, arg4, arg5)
        return 0

    def capget(self) -> tuple[int, int, int]:
        self._rec("capget")
        return self.caps

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        self._rec("capset", effective, permitted, inheritable)
        self.caps = (effective, permitted, inheritable)

    def setrlimit(self, kind: int, soft: int, hard: int) -> None:
        self._rec("setrlimit", kind, soft, hard)

    def nstype(self, fd: int) -> int:
        self._rec("nstype", fd)
        return self.nstypes.get(fd, 0)

    def bpf_prog_load(self, prog_type: int, insns: bytes, license: str) -> int:
        self._rec("bpf_prog_load", prog_type, insns, license)
        prog_id = len(self.bpf_programs) + 1
        self.bpf_programs[prog_id] = insns
        return self._prog_fd(prog_id)

    def _prog_fd(self, prog_id: int) -> int:
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.bpf_fds[fd] = prog_id
        return fd

    def bpf_prog_attach(self, target_fd: int, prog_fd: int, attach_type: int, flags: int) -> None:
        self._rec("bpf_prog_attach", self.bpf_fds[prog_fd], attach_type, flags)
        self.bpf_attached.append(self.bpf_fds[prog_fd])

    def bpf_prog_detach(self, target_fd: int, prog_fd: int, attach_type: int) -> None:
        self._rec("bpf_prog_detach", self.bpf_fds[prog_fd], attach_type)
        self.bpf_attached.remove(self.bpf_fds[prog_fd])

    def bpf_prog_query(self, target_fd: int, attach_type: int) -> list[int]:
        self._rec("bpf_prog_query", attach_type)
        return list(self.bpf_attached)

    def bpf_prog_get_fd_by_id(self, prog_id: int) -> int:
        self._rec("bpf_prog_get_fd_by_id", prog_id)
        return self._prog_fd(prog_id)
