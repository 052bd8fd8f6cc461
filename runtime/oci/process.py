"""The container process's identity and privileges: user, capabilities, rlimits, and the exec.

:func:`cap_masks` is pure; :func:`apply` performs the steps in the order the kernel needs:

1. rlimits and oomScoreAdj while we still hold CAP_SYS_RESOURCE,
2. ``PR_SET_KEEPCAPS`` so the permitted set survives the uid change,
3. drop from the bounding set what the spec does not list (needs CAP_SETPCAP, still held),
4. supplementary groups, gid, uid,
5. capset(effective, permitted, inheritable), then the ambient set (only what the kernel lets us
   raise: a capability in both permitted and inheritable; runc ignores the rest, we warn),
6. ``noNewPrivileges`` and the seccomp filter last, right before execve (:func:`before_exec`).

The seccomp filter goes where runc puts it: as late as possible, after no_new_privs, so that the
fewest of our own syscalls run under the container's profile. Without no_new_privs the kernel
lets only a CAP_SYS_ADMIN holder install a filter, so it is loaded in :func:`prepare` before the
capabilities are dropped (podman sends exactly that: a profile and no noNewPrivileges).
"""

from __future__ import annotations

import fcntl
import os
import struct

from runtime.errors import IsoproofError, SyscallError, suppress
from runtime.oci import caps as capslib
from runtime.oci.record import Record
from runtime.spec import Capabilities, Process
from runtime.sys import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAP_AMBIENT_RAISE,
    PR_CAPBSET_DROP,
    PR_SET_KEEPCAPS,
    PR_SET_NO_NEW_PRIVS,
    Sys,
)

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from runtime.seccomp import Profile

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ExecError(IsoproofError):
    """The process's program cannot be found or run."""


class CapMasks(Record):
    __slots__ = ("bounding", "effective", "permitted", "inheritable", "ambient")

    def __init__(self, bounding: int, effective: int, permitted: int, inheritable: int,
                 ambient: int) -> None:  # fmt: skip
        self.bounding = bounding
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable
        self.ambient = ambient


def cap_masks(c: Capabilities | None, last_cap: int) -> CapMasks:
    """The five sets as bit masks, limited to the capabilities this kernel knows. No
    ``capabilities`` object means no capabilities at all (the safe reading of an absent field).

    ``ambient`` holds only what PR_CAP_AMBIENT_RAISE accepts: a capability that is also permitted
    and inheritable (``runc spec`` lists ambient capabilities that are not inheritable; the
    kernel refuses those with EPERM and runc goes on without them)."""
    if c is None:
        return CapMasks(0, 0, 0, 0, 0)
    known = (1 << (last_cap + 1)) - 1
    permitted = capslib.mask(c.permitted) & known
    inheritable = capslib.mask(c.inheritable) & known
    return CapMasks(
        bounding=capslib.mask(c.bounding) & known,
        effective=capslib.mask(c.effective) & known,
        permitted=permitted,
        inheritable=inheritable,
        ambient=capslib.mask(c.ambient) & permitted & inheritable,
    )


def cap_warnings(c: Capabilities | None, last_cap: int) -> list[str]:
    """What :func:`cap_masks` leaves out of the spec's capabilities, one line each: names we do
    not know, capabilities this kernel lacks, ambient ones the kernel would not raise."""
    if c is None:
        return []
    out = []
    if c.unknown:
        out.append(f"process.capabilities: unknown capabilities ignored: {', '.join(c.unknown)}")
    listed = set(c.bounding) | set(c.effective) | set(c.permitted) | set(c.inheritable)
    beyond = sorted((n for n in listed | set(c.ambient) if capslib.CAPS[n] > last_cap),
                    key=capslib.CAPS.__getitem__)  # fmt: skip
    if beyond:
        out.append(f"process.capabilities: not known to this kernel, ignored: {', '.join(beyond)}")
    skipped = (
        capslib.mask(c.ambient) & ~cap_masks(c, last_cap).ambient & ((1 << (last_cap + 1)) - 1)
    )
    if skipped:
        out.append("process.capabilities.ambient: not raised (the kernel needs them permitted "
                   f"and inheritable): {', '.join(capslib.names(skipped))}")  # fmt: skip
    return out


def apply(sys: Sys, proc: Process, in_new_userns: bool, last_cap: int) -> None:
    for r in proc.rlimits:
        sys.setrlimit(r.resource, r.soft, r.hard)
    if proc.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(proc.oom_score_adj))
    m = cap_masks(proc.capabilities, last_cap)
    sys.prctl(PR_SET_KEEPCAPS, 1)
    for cap in range(last_cap + 1):
        if not m.bounding >> cap & 1:
            sys.prctl(PR_CAPBSET_DROP, cap)
    u = proc.user
    if in_new_userns:
        # We wrote "deny" to /proc/<pid>/setgroups before the gid map, as unprivileged mapping
        # requires; supplementary groups are then out of reach.
        if u.additional_gids:
            raise IsoproofError("process.user.additionalGids: not possible in a new user namespace")
    else:
        sys.setgroups(u.additional_gids)
    sys.setresgid(u.gid, u.gid, u.gid)
    sys.setresuid(u.uid, u.uid, u.uid)
    sys.prctl(PR_SET_KEEPCAPS, 0)
    try:
        sys.capset(m.effective, m.permitted, m.inheritable)
    except SyscallError as e:
        _, held, _ = sys.capget()
        missing = capslib.names((m.permitted | m.effective) & ~held)
        if missing:
            raise IsoproofError(
                f"capset: the runtime does not hold {', '.join(missing)} (asked for by "
                "process.capabilities)"
            ) from None
        raise e from None
    sys.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in range(last_cap + 1):
        if m.ambient >> cap & 1:
            sys.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)
    if u.umask is not None:
        os.umask(u.umask)


def prepare(sys: Sys, proc: Process, console_fd: int, in_new_userns: bool, last_cap: int,
            seccomp: Profile | None = None) -> str:  # fmt: skip
    """The steps the container's init and an exec'd process share before their exec: terminal,
    cwd, the binary (looked up while $PATH and the rootfs are final), limits/user/capabilities, and
    close-on-exec for everything but stdio. Returns the path to exec."""
    if proc.terminal and console_fd >= 0:
        setup_terminal(console_fd, proc.console_size)
    try:
        os.chdir(proc.cwd)
    except OSError as e:
        raise IsoproofError(f"process.cwd: {proc.cwd}: {e.strerror}") from None
    path = lookup(proc.args[0], proc.env)
    if seccomp is not None and not proc.no_new_privileges:
        from runtime import seccomp as seccomplib  # loaded with the Profile: no file is read

        seccomplib.load(seccomp)  # while we still hold CAP_SYS_ADMIN: see the module's docstring
    apply(sys, proc, in_new_userns, last_cap)
    close_extra_fds(3 + proc.preserve_fds)  # --preserve-fds (runtime/oci/cli.py)
    return path


def no_new_privs(sys: Sys, proc: Process) -> None:
    if proc.no_new_privileges:
        sys.prctl(PR_SET_NO_NEW_PRIVS, 1)


def before_exec(sys: Sys, proc: Process, seccomp: Profile | None = None) -> None:
    """The last steps before execve: no_new_privs, then (with it) the seccomp filter.

    This runs after ``start`` released us: nobody is left to read an error over the sync socket,
    so a failure is written to the container's stderr and the process ends, as a failed execve
    does."""
    no_new_privs(sys, proc)
    if seccomp is not None and proc.no_new_privileges:
        from runtime import seccomp as seccomplib  # loaded with the Profile: no file is read

        try:
            seccomplib.load(seccomp)
        except IsoproofError as e:
            os.write(2, f"isoproof-oci: {e}\n".encode())
            os._exit(127)


def env_path(env: list[str]) -> str:
    for e in env:
        if e.startswith("PATH="):
            return e[5:]
    return DEFAULT_PATH


def lookup(arg0: str, env: list[str], exists=os.access) -> str:
    """Resolve the program like execvp, with the *container's* PATH."""
    if "/" in arg0:
        # runc's wording, word for word: podman and docker turn "no such file or directory" into
        # exit 127 and "permission denied" into 126 (anything else is 125/126, "runtime failed").
        if not exists(arg0, os.F_OK):
            raise ExecError(f'exec: "{arg0}": stat {arg0}: no such file or directory')
        if not exists(arg0, os.X_OK):
            raise ExecError(f'exec: "{arg0}": permission denied')
        return arg0
    for d in env_path(env).split(":"):
        cand = os.path.join(d or ".", arg0)
        if exists(cand, os.X_OK) and not os.path.isdir(cand):
            return cand
    raise ExecError(f'exec: "{arg0}": executable file not found in $PATH')


def close_extra_fds(keep: int = 3) -> None:
    """Mark every fd >= 3 close-on-exec: the container gets stdio and nothing the runtime held."""
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd >= keep:
            with suppress(OSError):
                os.set_inheritable(fd, False)


def setup_terminal(console_fd: int, size: tuple[int, int] | None = None) -> None:
    """Open a pty in the container's devpts, send its master over the console socket (SCM_RIGHTS,
    as runc does) and make its slave our controlling terminal and stdio."""
    import socket  # loaded by the parent when it connected the console socket: works after pivot

    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, 0x40045431, struct.pack("i", 0))  # TIOCSPTLCK: unlock
    n = struct.unpack("i", fcntl.ioctl(master, 0x80045430, struct.pack("i", 0)))[0]  # TIOCGPTN
    slave_path = f"/dev/pts/{n}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    if size is not None:
        fcntl.ioctl(slave, 0x5414, struct.pack("HHHH", size[0], size[1], 0, 0))  # TIOCSWINSZ
    sock = socket.socket(fileno=console_fd)
    try:
        socket.send_fds(sock, [slave_path.encode()], [master])
    finally:
        sock.detach()
        os.close(console_fd)
        os.close(master)
    os.setsid()
    fcntl.ioctl(slave, 0x540E, 0)  # TIOCSCTTY
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def before_fork(proc: Process, seccomp: Profile | None, warn: Callable[[str], None] | None,
                last_cap: int | None = None) -> None:  # fmt: skip
    """The runtime's part, before it forks the container's first child: say what of the process's
    privileges will not be applied (runc's log lines), and build the seccomp filter, so a profile
    libseccomp refuses fails the command before anything exists and the init only loads it."""
    if warn is not None:
        for message in cap_warnings(proc.capabilities, capslib.last_cap() if last_cap is None
                                    else last_cap):  # fmt: skip
            warn(message)
    if seccomp is not None:
        from runtime import seccomp as seccomplib

        seccomplib.build(seccomp, warn)


def exec_seccomp(doc: dict[str, Any] | None) -> Profile | None:
    """The container's seccomp profile for ``exec``, from the copy kept in its state (the bundle
    may have changed since create), with its filter built."""
    if not doc:
        return None
    from runtime import seccomp as seccomplib

    profile = seccomplib.parse(doc)
    seccomplib.build(profile)
    return profile
