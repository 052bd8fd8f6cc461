"""Code that runs in the forked children: stage-1 and the container init (and exec's twins).

Every child body runs under :func:`child_main`, which guarantees that no exception ever returns
into the parent's code path (the child is a copy of the CLI process): a failure is sent to the
parent as one ERROR message and the child leaves with ``os._exit``. See :mod:`runtime.oci.sync`
for the message order.
"""

from __future__ import annotations

import _signal as signal  # the C half of `signal`: its enum classes cost ~3 ms per CLI call
import errno
import os

from runtime.errors import IsoproofError, SyscallError, suppress
from runtime.oci import sync
from runtime.sys import PR_SET_DUMPABLE

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def reset_signals() -> None:
    """Give the container's process default signal handling and an empty signal mask.

    A disposition of SIG_IGN and a blocked mask survive execve. Python itself ignores SIGPIPE and
    SIGXFSZ, and whoever ran us (a monitor, ``nohup``, a shell with ``trap '' TERM``) may ignore
    more, e.g. SIGTERM, which would make ``kill``/``stop`` of the container silently do nothing.
    Handled signals are reset by execve anyway; ignored ones are not, so reset every one."""
    for s in range(1, signal.NSIG):
        if s in (signal.SIGKILL, signal.SIGSTOP):
            continue
        # glibc reserves two real-time signals for itself: those refuse a new disposition
        with suppress(OSError, ValueError):
            signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def child_main(body: Callable[..., None], cfd: int, pfd: int, *args: Any) -> None:
    """Run a child body; never return."""
    code = 1
    try:
        if pfd >= 0:
            os.close(pfd)
        reset_signals()
        body(cfd, *args)
        code = 0
    except IsoproofError as e:
        _debug()
        sync.send_error(cfd, str(e))
    except OSError as e:
        _debug()
        where = f" {e.filename}" if e.filename else ""
        sync.send_error(cfd, f"{e.strerror or e}{where}")
    except BaseException as e:  # a bug: still one line, still never back into the parent
        _debug()
        sync.send_error(cfd, f"internal error in container setup: {type(e).__name__}: {e}")
    finally:
        os._exit(code)


def _debug() -> None:
    """ISOPROOF_DEBUG=1 prints the child's traceback to its stderr (for developing the runtime)."""
    if os.environ.get("ISOPROOF_DEBUG"):
        try:
            import traceback  # may be unreachable after pivot_root: never let that hide the error

            traceback.print_exc()
        except Exception:
            pass


def _join(sys: Any, fds: dict[str, int], kinds: tuple[str, ...]) -> None:
    for kind in kinds:
        fd = fds.get(kind)
        if fd is not None:
            sys.setns(fd, 0, kind)
            os.close(fd)


def _join_for_exec(sys: Any, fds: dict[str, int], order: tuple[str, ...]) -> None:
    """Join a running container's namespaces in two passes, as runc's nsexec does.

    A namespace the container *joined* at create (an engine's bind-mounted network namespace) is
    owned by the host's user namespace: once we are in the container's user namespace we lack
    CAP_SYS_ADMIN over it, so setns fails with EPERM. So first join every other namespace while we
    still hold our own capabilities, then the user namespace, then retry what was refused (a
    caller without host privileges gains the right to join those only inside the user namespace).
    """
    refused: list[str] = []
    for kind in order:
        fd = fds.get(kind)
        if kind == "user" or fd is None:
            continue
        try:
            sys.setns(fd, 0, kind)
        except SyscallError as e:
            if e.errno != errno.EPERM:
                raise
            refused.append(kind)
            continue
        os.close(fd)
    _join(sys, fds, ("user",))
    _join(sys, fds, tuple(refused))


def not_dumpable(sys: Any) -> None:
    """Make this process (and the children it forks) non-dumpable, before it joins or makes any
    of the container's namespaces: the CVE-2019-5736 class.

    Every process of ours that the container can see (the init until its execve; the process
    ``exec`` forks into the container's pid namespace) is this Python interpreter, holding the
    runtime's privileges. A dumpable one lets a process inside with the same uid open its
    /proc/PID/exe (the host's interpreter, to overwrite once it is no longer running), its
    /proc/PID/fd/* and /proc/PID/mem. Non-dumpable, each of those needs CAP_SYS_PTRACE over the
    host's user namespace. The final execve makes the process dumpable again (the kernel does
    that for a readable binary), when it is the container's program and no longer ours.

    Non-dumpable is not enough alone: a program whose interpreter line is /proc/self/exe makes
    the kernel start our executable as the container's process, dumpable again; that one is
    covered by :func:`runtime.oci.reexec.exec_read_only`. What neither covers: a container given CAP_SYS_PTRACE
    (over the host's user namespace) may ptrace any process of ours it can see, as with runc."""
    sys.prctl(PR_SET_DUMPABLE, 0)


def _fork_and_announce(cfd: int, body: Callable[..., None], *args: Any) -> None:
    """Fork the init and send INIT_PID for it. The init shares our sync socket, so it must not
    send INIT_READY before INIT_PID is out: it waits for EOF on a pipe that we close after."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        child_main(_after_announce, cfd, -1, r, w, body, *args)
    os.close(r)
    sync.send(cfd, sync.INIT_PID, pid=pid)
    os.close(w)


def _after_announce(cfd: int, r: int, w: int, body: Callable[..., None], *args: Any) -> None:
    os.close(w)
    os.read(r, 1)  # EOF: the parent has INIT_PID
    os.close(r)
    body(cfd, *args)


def stage1(cfd: int, spec: Any, fifo_fd: int, console_fd: int, cg_own: str | None) -> None:
    # Import what we and the init need now, while the parent writes our pid into the cgroups (its
    # slowest step): the two overlap. After pivot_root nothing could be imported anyway.
    from runtime.oci import caps, plan, process, rootfs  # noqa: F401
    from runtime.sys import Sys

    sys = Sys()
    not_dumpable(sys)
    sync.recv(cfd, sync.CGROUP_PLACED)
    # Read the host's view of our cgroup now: after unshare(CLONE_NEWCGROUP) it reads "/".
    cg_binds = []
    if cg_own is not None:
        cg_binds = rootfs.own_cgroup_binds(rootfs.cgroup_binds(), cg_own)
    joins = plan.joins(spec)
    # In a mount namespace not made by us (joined, or none) the /proc the init sees may not show
    # it (another pid namespace's procfs, or no /proc in the rootfs): the host's, to reopen the
    # fifo. Close-on-exec and closed once used: no host fd reaches the container's program.
    mnt = spec.linux.ns("mount")
    proc_fd = -1
    if mnt is None or mnt.path is not None:
        proc_fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    fds = {}
    for kind, path in joins:  # open them all before any setns changes what the paths mean
        fds[kind] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    # Join first (a joined user namespace first of all: it owns the others), while we still hold
    # the capabilities of the namespaces we came from; then create the new ones, user first.
    _join(sys, fds, tuple(k for k, _ in joins))
    new_flags = plan.unshare_flags(spec)
    from runtime.sys import CLONE_NEWUSER

    if new_flags & CLONE_NEWUSER:
        sys.unshare(CLONE_NEWUSER)
        sync.send(cfd, sync.USERNS_READY)
        sync.recv(cfd, sync.USERNS_MAPPED)
        sys.setresgid(0, 0, 0)
        sys.setresuid(0, 0, 0)
        new_flags &= ~CLONE_NEWUSER
    if new_flags:
        sys.unshare(new_flags)
    _fork_and_announce(cfd, container_init, spec, fifo_fd, console_fd, cg_binds, proc_fd)


def container_init(cfd: int, spec: Any, fifo_fd: int, console_fd: int, cg_binds: list,
                   proc_fd: int = -1) -> None:  # fmt: skip
    # After pivot_root the host's Python library is out of reach: import all we need first.
    from runtime.oci import hooks, rootfs
    from runtime.oci import process as proc_
    from runtime.oci.caps import last_cap
    from runtime.sys import Sys

    sys = Sys()
    p = spec.process
    hook_point = hooks.InitHooks(spec, cfd) if hooks.init_syncs(spec) else None
    user = spec.linux.ns("user")
    in_new_userns = user is not None and user.path is None
    userns = user is not None
    # fifo_fd (O_PATH, from the parent) survives pivot_root; we reopen it through /proc/self/fd.
    cap_last = last_cap()
    mnt = spec.linux.ns("mount")
    if mnt is not None and mnt.path is None:
        rootfs.prepare(sys, spec, userns, cg_binds, hook_point.create if hook_point else None)
        if p.terminal and console_fd >= 0:
            # The pty now, to bind its slave onto /dev/console before the rootfs is finalized
            # (runc's order); prepare() below then has no console left to set up.
            proc_.setup_terminal(console_fd, p.console_size)
            rootfs.mount_console(sys)
            console_fd = -1
        rootfs.write_sysctls(spec)
        rootfs.finalize(sys, spec)
    else:
        if mnt is None:
            # No mount namespace of its own (runc: no pivot_root then, a chroot): the host's
            # mounts, seen from the rootfs; nothing is mounted, so nothing can be left behind.
            os.chdir(spec.root_path)
            os.chroot(".")
            os.chdir("/")
        if hook_point is not None:
            hook_point.create()
    # A joined mount namespace is already set up by whoever made it: we do not touch its mounts.
    uts = spec.linux.ns("uts")
    if uts is not None and uts.path is None:
        if spec.hostname is not None:
            sys.sethostname(spec.hostname)
        if spec.domainname is not None:
            sys.setdomainname(spec.domainname)
    path = proc_.prepare(sys, p, console_fd, in_new_userns, cap_last, spec.linux.seccomp)
    os.set_inheritable(cfd, False)
    sync.send(cfd, sync.INIT_READY)
    os.close(cfd)
    # Blocks until `start` opens the fifo for reading. Nothing of the user's has run yet.
    if proc_fd >= 0:  # "self" in the host's procfs: this process, seen from the host
        wfd = os.open(f"self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC, dir_fd=proc_fd)
        os.close(proc_fd)
    else:
        wfd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    if hook_point is not None:
        hook_point.start(wfd)  # startContainer hooks; on failure it answers start and exits
    os.write(wfd, b"0")
    os.close(wfd)
    os.close(fifo_fd)
    env = dict(e.split("=", 1) for e in p.env)
    proc_.before_exec(sys, p, spec.linux.seccomp)
    try:
        os.execve(path, p.args, env)
    except OSError as e:
        # After start the parent is gone: the container's stderr is the only place left.
        os.write(2, f"isoproof-oci: exec {path}: {e.strerror}\n".encode())
        os._exit(127)


def exec_stage1(cfd: int, process: Any, ns_fds: dict[str, int], new_userns: bool,
                console_fd: int, seccomp: Any = None) -> None:  # fmt: skip
    from runtime.oci.container import NS_ORDER
    from runtime.sys import Sys

    sys = Sys()
    not_dumpable(sys)
    sync.recv(cfd, sync.CGROUP_PLACED)
    _join_for_exec(sys, ns_fds, NS_ORDER)
    root = ns_fds.pop("root", None)
    if root is not None:
        # a container without a mount namespace of its own: its root is a chroot, not ours
        os.fchdir(root)
        os.chroot(".")
        os.close(root)
    # a pid namespace takes effect for children only: the process to exec is our child
    _fork_and_announce(cfd, exec_init, process, new_userns, console_fd, seccomp)


def exec_init(cfd: int, process: Any, new_userns: bool, console_fd: int,
              seccomp: Any = None) -> None:  # fmt: skip
    from runtime.oci import process as proc_
    from runtime.oci.caps import last_cap
    from runtime.sys import Sys

    sys = Sys()
    path = proc_.prepare(sys, process, console_fd, new_userns, last_cap(), seccomp)
    sync.send(cfd, sync.INIT_READY)
    os.close(cfd)
    env = dict(e.split("=", 1) for e in process.env)
    proc_.before_exec(sys, process, seccomp)
    os.execve(path, process.args, env)
