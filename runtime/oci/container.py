"""Container lifecycle: create, start, kill, delete, pause, resume, exec, run.

Each verb re-reads the real status (:mod:`runtime.oci.state`), checks its rule, acts and saves.
``create`` follows runc: the parent (this process) makes the cgroup, forks stage-1, places it in the
cgroup *before* it runs anything, maps its user namespace, and waits until the init reports that
the container is set up and waiting on ``exec.fifo``. The sync messages are in
:mod:`runtime.oci.sync`; the children's code is in :mod:`runtime.oci.init`. Any failure rolls back
everything create made (processes, cgroup, state directory).
"""

from __future__ import annotations

import _signal as signal  # the C half of `signal`: its enum classes cost ~3 ms per CLI call
import os
import time

from runtime.errors import IsoproofError, NotFoundError, StateError, suppress
from runtime.oci import state as st_
from runtime.oci.state import EXEC_FIFO, State

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def _manager(st: State) -> Any:
    from runtime.cgroups import new_manager

    return new_manager(st.cgroups_path, st.id)


class Container:
    """A container as found under ``root``: the recorded state plus kernel-derived status."""

    def __init__(self, root: str, cid: str) -> None:
        self.root = root
        self.id = cid
        self.dir = st_.state_dir(root, cid)
        self.state = st_.load(root, cid)
        self._mgr: Any = None

    @classmethod
    def just_made(cls, root: str, state: State, mgr: Any) -> Container:
        """The container this process has just created: its state and cgroup manager are in
        hand, so ``run`` need not read them back from disk to delete it."""
        c = cls.__new__(cls)
        c.root, c.id, c.dir = root, state.id, st_.state_dir(root, state.id)
        c.state, c._mgr = state, mgr
        return c

    @property
    def mgr(self) -> Any:
        if self._mgr is None:
            if self.state is None:
                raise StateError(f"container {self.id} is still being created")
            self._mgr = _manager(self.state)
        return self._mgr

    def status(self) -> str:
        s = self.state
        return st_.derive_status(
            s,
            st_.read_proc_stat,
            os.path.exists(os.path.join(self.dir, EXEC_FIFO)),
            lambda: self.mgr.exists() and self.mgr.is_frozen(),
        )

    def require(self, verb: str, *allowed: str) -> str:
        status = self.status()
        if status not in allowed:
            raise StateError(f"cannot {verb} container {self.id}: it is {status}")
        return status


# --- create ----------------------------------------------------------------------------------------


def create(
    root: str,
    cid: str,
    bundle: str,
    pid_file: str | None = None,
    console_socket: str | None = None,
    foreground: bool = False,
    warn: Callable[[str], None] | None = None,
    preserve_fds: int = 0,
) -> State:
    return _create(root, cid, bundle, pid_file, console_socket, foreground, warn, preserve_fds)[0]


def _create(
    root: str,
    cid: str,
    bundle: str,
    pid_file: str | None,
    console_socket: str | None,
    foreground: bool,
    warn: Callable[[str], None] | None = None,
    preserve_fds: int = 0,
) -> tuple[State, Any, int]:
    """create, returning the cgroup manager too. ``warn`` receives each setting the cgroup
    manager accepted but cannot enforce, once the limits are written and before anything is
    forked: the children inherit our stderr, so nothing may be left buffered for them."""
    from runtime import spec as spec_
    from runtime.oci import hooks as hooks_
    from runtime.oci import init, plan, sync  # before fork: no import error in a child
    from runtime.oci import process as proc_

    st_.check_id(cid)
    spec = spec_.load(bundle)
    if spec.process is None:
        raise IsoproofError("process: the spec has no process to run")
    spec.process.preserve_fds = preserve_fds
    if spec.process.terminal and console_socket is None and not foreground:
        raise IsoproofError("process.terminal is true: --console-socket is required")
    spec_.check_host(spec)
    # privileges' warnings, and the seccomp filter built here: a refused profile leaves nothing
    proc_.before_fork(spec.process, spec.linux.seccomp, warn)
    os.makedirs(root, mode=0o700, exist_ok=True)
    sdir = os.path.join(root, cid)
    try:
        os.mkdir(sdir, 0o711)
    except FileExistsError:
        raise StateError(f"container {cid} already exists") from None
    from runtime.sys import PR_SET_CHILD_SUBREAPER, Sys  # here: start/delete/state need no ctypes

    sys = Sys()
    # Orphaned children (the init, once stage-1 exits) come to us, so a failed create can reap
    # them; when this process exits they pass on to *our* nearest subreaper (an engine's monitor).
    sys.prctl(PR_SET_CHILD_SUBREAPER, 1)
    mgr = None
    stage1 = init_pid = 0
    console_fd = fifo_fd = pty_sock = master = -1
    try:
        # Who is creating it: if this process dies (SIGKILL) before state.json exists, `delete`
        # can tell an abandoned create from one in progress and clean up after it.
        _write_creator(sdir, spec.linux.cgroups_path)
        fifo = os.path.join(sdir, EXEC_FIFO)
        os.mkfifo(fifo, 0o622)
        os.chmod(fifo, 0o622)  # umask may have taken the write bits the container's user needs
        # Opened here as O_PATH and inherited: the init (maybe root of a user namespace that cannot
        # search our 0700 state root) reopens it through /proc/self/fd, like runc.
        fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
        from runtime.cgroups import new_manager

        mgr = new_manager(spec.linux.cgroups_path, cid)
        mgr.create()
        res = plan.resources(spec)
        if res:
            mgr.set(res)
        if warn is not None:
            for message in mgr.warnings:
                warn(message)
        if console_socket is not None and spec.process.terminal:
            console_fd = _connect(console_socket)
        elif spec.process.terminal:  # foreground run: the init sends the pty master to us
            console_fd, pty_sock = _pty_socketpair(spec.process)
        parent_sock, child_sock = sync_socketpair()
        pfd, cfd = parent_sock.fileno(), child_sock.fileno()
        # The container's cgroup below each hierarchy, for a `type: cgroup` mount (else None).
        cg_own = mgr.relpath if _cgroup_binds_needed(spec) else None
        stage1 = os.fork()
        if stage1 == 0:
            try:
                init.child_main(init.stage1, cfd, pfd, spec, fifo_fd, console_fd, cg_own)
            finally:
                os._exit(1)  # child_main never returns; this guards the parent's code path
        child_sock.close()
        os.close(fifo_fd)
        fifo_fd = -1
        if console_fd >= 0:
            os.close(console_fd)
            console_fd = -1
        mgr.add_process(stage1)
        sync.send(pfd, sync.CGROUP_PLACED)
        user = spec.linux.ns("user")
        if user is not None and user.path is None:
            sync.recv(pfd, sync.USERNS_READY)
            write_id_maps(stage1, spec)
            sync.send(pfd, sync.USERNS_MAPPED)
        init_pid = int(sync.recv(pfd, sync.INIT_PID)["pid"])  # type: ignore[call-overload]
        if hooks_.init_syncs(spec):
            hooks_.parent_create_hooks(pfd, spec, cid, init_pid)
        sync.recv(pfd, sync.INIT_READY)
        _reap(stage1)  # it exited after INIT_PID; reaping it here overlaps with the init's work
        stage1 = 0
        parent_sock.close()
        if pty_sock >= 0:
            master = _recv_master(pty_sock)  # sent before INIT_READY: already waiting
            pty_sock = -1
        info = st_.read_proc_stat(init_pid)
        if info is None or info[0] in ("Z", "X"):
            raise IsoproofError("container init exited during create")
        state = State(
            id=cid,
            pid=init_pid,
            bundle=spec.bundle,
            rootfs=spec.root_path,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            start_time=info[1],
            cgroups_path=spec.linux.cgroups_path,
            annotations=spec.annotations,
            config=_config_for_state(spec),
        )
        st_.save(root, state)
        if pid_file:
            write_pid_file(pid_file, init_pid)
        return state, mgr, master
    except BaseException:
        for pid in (stage1, init_pid):
            if pid > 0:
                _kill(pid, signal.SIGKILL)
        for pid in (stage1, init_pid):
            if pid > 0:
                _reap(pid, wait_reparent=True)
        for fd in (console_fd, fifo_fd, pty_sock, master):
            if fd >= 0:
                os.close(fd)
        if mgr is not None:
            try:
                mgr.kill_all()
                mgr.destroy()
            except IsoproofError:
                pass
        remove_state_dir(sdir)
        if spec.hooks.get("poststop"):  # the spec: a failed create goes on with delete's hooks
            state_doc = hooks_.state_doc(cid, st_.STOPPED, 0, spec.bundle, spec.annotations,
                                         spec.oci_version)  # fmt: skip
            hooks_.run("poststop", spec.hooks["poststop"], state_doc, warn or _stderr_warn)
        raise


def _stderr_warn(message: str) -> None:
    import sys

    print(f"isoproof-oci: warning: {message}", file=sys.stderr, flush=True)


def _run_hooks(c: Container, kind: str, status: str, warn: Callable[[str], None] | None) -> None:
    """poststart/poststop: kept in state.json at create, failures are warnings."""
    s = c.state
    hooks = [] if s is None else (s.config.get("hooks") or {}).get(kind)
    if not hooks:
        return
    from runtime.oci import hooks as hooks_

    assert s is not None
    doc = hooks_.state_doc(s.id, status, 0 if status == st_.STOPPED else s.pid, s.bundle,
                           s.annotations, s.oci_version)  # fmt: skip
    hooks_.run(kind, hooks, doc, warn or _stderr_warn)


CREATOR_FILE = "creator.json"


def _write_creator(sdir: str, cgroups_path: str | None) -> None:
    """Who is creating the container and which cgroup it is given. Atomic (a kill -9 mid-write
    used to leave a 0-byte record that kept the container "creating" forever), and kept after
    create: once state.json exists it is still the record of the cgroup, should state.json ever
    be damaged."""
    from runtime import statefile

    me = st_.read_proc_stat(os.getpid())
    rec = {"pid": os.getpid(), "start_time": me[1] if me else 0, "cgroups_path": cgroups_path}
    statefile.write(os.path.join(sdir, CREATOR_FILE), rec, durable=False)  # see state.save


def _creator_record(sdir: str) -> dict[str, Any] | None:
    from runtime import statefile

    try:
        return statefile.read(os.path.join(sdir, CREATOR_FILE))
    except (FileNotFoundError, statefile.Damaged):
        return None


def _abandoned_create(sdir: str, force: bool = False) -> dict[str, Any] | None:
    """The creator record of a create whose process is gone, else None. With ``force``, a
    missing or damaged record counts as abandoned too (``{}``): the creator was killed before
    its record was in place, so it had made nothing but the directory."""
    rec = _creator_record(sdir)
    if rec is None:
        return {} if force else None
    try:
        alive = st_.init_alive(int(rec["pid"]), int(rec["start_time"]), st_.read_proc_stat)
    except (KeyError, TypeError, ValueError):
        return {} if force else None
    return None if alive else rec


def remove_state_dir(sdir: str, destroy_cgroup: bool = False) -> None:
    """The state dir holds only files we made (state.json, creator.json, exec.fifo, temp files):
    no rmtree. ``destroy_cgroup``: kill what runs in the cgroup the creator record names and
    remove it first (a container whose state.json is damaged: its init's pid is unknown)."""
    if destroy_cgroup:
        rec = _creator_record(sdir)
        if rec is not None:
            from runtime.cgroups import new_manager

            mgr = new_manager(rec.get("cgroups_path"), os.path.basename(sdir))
            if mgr.exists():
                mgr.kill_all(signal.SIGKILL)
                mgr.destroy()
    try:
        names = os.listdir(sdir)
    except FileNotFoundError:
        return
    for n in names:
        with suppress(FileNotFoundError):
            os.unlink(os.path.join(sdir, n))
    with suppress(FileNotFoundError):
        os.rmdir(sdir)


def _cgroup_binds_needed(spec: Any) -> bool:
    return any(m.type == "cgroup" for m in spec.mounts)


def _config_for_state(spec: Any) -> dict[str, Any]:
    """What exec needs later without re-reading a bundle that may have changed."""
    from runtime.oci.hooks import as_dicts

    user = spec.linux.ns("user")
    doc: dict[str, Any] = {"new_userns": user is not None and user.path is None}
    hooks = as_dicts(spec.hooks, ("poststart", "poststop"))
    if hooks:
        doc["hooks"] = hooks
    if spec.linux.seccomp is not None:  # exec gets the container's filter, as with runc
        doc["seccomp"] = spec.linux.seccomp.doc
    return doc


def write_id_maps(pid: int, spec: Any) -> None:
    """setgroups "deny" first (the kernel demands it before an unprivileged gid_map, and it keeps
    the container from dropping groups it was denied by), then the maps."""
    lx = spec.linux
    with open(f"/proc/{pid}/setgroups", "w") as f:
        f.write("deny")
    for name, maps in (("uid_map", lx.uid_mappings), ("gid_map", lx.gid_mappings)):
        text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)
        except OSError as e:
            key = "uidMappings" if name == "uid_map" else "gidMappings"
            raise IsoproofError(f"linux.{key}: the kernel refused the map: {e.strerror}") from None


def write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.isoproof-tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def sync_socketpair() -> tuple[Any, Any]:
    """The AF_UNIX/SOCK_SEQPACKET pair for :mod:`runtime.oci.sync` (one message per packet).
    Made with the C module ``_socket``: the ``socket`` wrapper and what it imports cost a few
    milliseconds per `isoproof-oci run`, and we use nothing of it here."""
    import _socket

    return _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)


def _connect(path: str) -> int:
    # Also loads `socket` for the init, which sends the pty master after pivot_root.
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise IsoproofError(f"--console-socket {path}: {e.strerror}") from None
    return s.detach()


def _kill(pid: int, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap(pid: int, wait_reparent: bool = False) -> int | None:
    """waitpid for a child (or an orphan reparented to us as subreaper). Returns the status."""
    deadline = time.monotonic() + (2.0 if wait_reparent else 0)
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            # Not (yet) ours: the orphan is reparented once its parent has been reaped.
            if time.monotonic() >= deadline or not os.path.exists(f"/proc/{pid}"):
                return None
            time.sleep(0.002)


# --- start / run -----------------------------------------------------------------------------------


def start(root: str, cid: str, warn: Callable[[str], None] | None = None) -> None:
    c = Container(root, cid)
    c.require("start", st_.CREATED)
    assert c.state is not None
    _open_fifo(c.dir, c.state)
    _run_hooks(c, "poststart", st_.RUNNING, warn)


def _open_fifo(sdir: str, state: State) -> None:
    """Open exec.fifo for reading: the init, blocked opening it for writing, wakes and execs.
    Non-blocking open plus poll, so a dead init cannot hang us."""
    import select

    fifo = os.path.join(sdir, EXEC_FIFO)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not p.poll(50):
            if not st_.init_alive(state.pid, state.start_time, st_.read_proc_stat):
                raise StateError(f"container {state.id}: its init exited before start")
            if time.monotonic() > deadline:
                raise StateError(f"container {state.id}: init did not answer start")
        answer = os.read(fd, 4096)
        if answer[:1] == b"E":  # a startContainer hook failed; the init has exited
            raise StateError(answer[1:].decode(errors="replace"))
        if answer[:1] != b"0":
            raise StateError(f"container {state.id}: init did not answer start")
    finally:
        os.close(fd)
    os.unlink(fifo)


def run(
    root: str,
    cid: str,
    bundle: str,
    pid_file: str | None = None,
    console_socket: str | None = None,
    detach: bool = False,
    warn: Callable[[str], None] | None = None,
    preserve_fds: int = 0,
    keep: bool = False,
) -> int:
    """create + start; in the foreground, wait for the init and return its exit code (128+N for
    a signal), forwarding the usual signals, then delete the container (unless ``keep``)."""
    state, mgr, master = _create(root, cid, bundle, pid_file, console_socket, not detach, warn,
                                 preserve_fds)  # fmt: skip
    c = Container.just_made(root, state, mgr)
    try:
        _open_fifo(c.dir, state)
    except BaseException:
        if master >= 0:
            os.close(master)
        _force_cleanup(c, warn)
        raise
    _run_hooks(c, "poststart", st_.RUNNING, warn)
    if detach:
        return 0
    # We are the init's subreaper (see create), so we can wait for it like a child.

    def forward(signum: int, _frame: Any) -> None:
        if signum == signal.SIGWINCH and master >= 0:
            _copy_winsize(0, master)  # the kernel tells the pty's foreground group itself
        else:
            _kill(state.pid, signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
              signal.SIGUSR2, signal.SIGWINCH):  # fmt: skip
        signal.signal(s, forward)
    if master >= 0:
        status = _pty_session(master, state.pid)
    else:
        status = _reap(state.pid, wait_reparent=True)
    code = 255 if status is None else os.waitstatus_to_exitcode(status)
    if code < 0:
        code = 128 - code
    if not keep:
        _force_cleanup(c, warn)
    return code


# --- a pty for `run` in the foreground (process.terminal without --console-socket) -------------------


def _pty_socketpair(process: Any) -> tuple[int, int]:
    """The init makes the pty in the container's devpts and sends its master over a console
    socket, as for --console-socket; here the socket's other end is ours. The pty starts with
    the caller's window size when the caller has a terminal (and the spec names none)."""
    import socket  # the init needs it too, after pivot_root: imported here, before the fork

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if process.console_size is None and os.isatty(0):
        size = os.get_terminal_size(0)
        process.console_size = (size.lines, size.columns)
    return theirs.detach(), ours.detach()


def _recv_master(sock_fd: int) -> int:
    import socket

    s = socket.socket(fileno=sock_fd)
    try:
        _msg, fds, _flags, _addr = socket.recv_fds(s, 4096, 1)
    finally:
        s.close()
    if not fds:
        raise IsoproofError("process.terminal: the container's init sent no pty")
    os.set_inheritable(fds[0], False)
    return fds[0]


def _copy_winsize(src: int, dst: int) -> None:
    import fcntl
    import termios

    with suppress(OSError):
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _pty_session(master: int, pid: int) -> int | None:
    """Copy our stdin to the pty and the pty to our stdout until the init has exited and the pty
    is drained (runc's foreground tty). Our terminal, if stdin is one, is raw meanwhile: the
    container's line discipline does the echo and ^C, not ours. Returns the init's wait status."""
    import select

    saved = None
    if os.isatty(0):
        import termios
        import tty

        saved = termios.tcgetattr(0)
        tty.setraw(0)
    poller = select.poll()
    poller.register(master, select.POLLIN)
    poller.register(0, select.POLLIN)
    status = None
    open_fds = {0, master}
    try:
        while master in open_fds:
            events = poller.poll(50)
            for fd, _ev in events:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: every holder of the pty's other end has exited
                    data = b""
                if not data:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                elif fd == master:
                    _write_all(1, data)
                else:
                    _write_all(master, data)
            if status is None:
                with suppress(ChildProcessError):
                    done, st = os.waitpid(pid, os.WNOHANG)
                    if done:
                        status = st
            if status is not None and not events:
                break  # the init is gone and the pty has nothing more to say
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)
    if status is None:
        status = _reap(pid, wait_reparent=True)
    return status


def _force_cleanup(c: Container, warn: Callable[[str], None] | None = None) -> None:
    with suppress(IsoproofError):
        _delete(c, True, warn)


# --- kill / delete / pause / resume ----------------------------------------------------------------


def kill(root: str, cid: str, sig: int, all_procs: bool = False) -> None:
    c = Container(root, cid)
    c.require("kill", st_.CREATED, st_.RUNNING, st_.PAUSED)
    assert c.state is not None
    if all_procs:
        pids = c.mgr.pids()
        # The init is the container's whatever its cgroup lists: a cgroup removed under a running
        # container lists nobody, and `kill --all` must not then signal nobody and say it did.
        for pid in pids if c.state.pid in pids else [c.state.pid, *pids]:
            _kill(pid, sig)
    else:
        _kill(c.state.pid, sig)


def delete(root: str, cid: str, force: bool = False,
           warn: Callable[[str], None] | None = None) -> None:  # fmt: skip
    try:
        c = Container(root, cid)
    except NotFoundError:
        if force:  # as runc: tools delete --force after every failed create, to be sure
            return
        raise
    except st_.Damaged:
        if not force:
            raise
        remove_state_dir(st_.state_dir(root, cid), destroy_cgroup=True)
        return
    _delete(c, force, warn)


def _delete(c: Container, force: bool, warn: Callable[[str], None] | None = None) -> None:
    cid = c.id
    status = c.status()
    if status == st_.CREATING:
        rec = _abandoned_create(c.dir, force)
        if rec is None:
            raise StateError(f"cannot delete container {cid}: it is still being created")
        # Its create was killed before it could roll back: do that for it.
        from runtime.cgroups import new_manager

        mgr = new_manager(rec.get("cgroups_path"), cid)
        if mgr.exists():
            mgr.kill_all(signal.SIGKILL)
            mgr.destroy()
        remove_state_dir(c.dir)
        return
    if status != st_.STOPPED and not force:
        raise StateError(f"cannot delete container {cid}: it is {status} (use --force)")
    assert c.state is not None
    mgr = c.mgr
    if status != st_.STOPPED:
        _kill(c.state.pid, signal.SIGKILL)
    # Without a private pid namespace the init's death does not end its descendants. (kill_all
    # freezes, signals and thaws: skip it for the usual empty cgroup of a stopped container.)
    if mgr.exists() and (status != st_.STOPPED or mgr.pids()):
        mgr.kill_all(signal.SIGKILL)
    _wait_gone(c.state)
    mgr.destroy()
    remove_state_dir(c.dir)
    _run_hooks(c, "poststop", st_.STOPPED, warn)


def _wait_gone(s: State) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while st_.init_alive(s.pid, s.start_time, st_.read_proc_stat):
        try:  # ours to reap when we are its (sub)reaper: foreground run
            if os.waitpid(s.pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            pass
        if time.monotonic() > deadline:
            raise StateError(f"container {s.id}: init {s.pid} did not exit after SIGKILL")
        time.sleep(0.002)


def update(root: str, cid: str, resources: dict[str, Any],
           warn: Callable[[str], None] | None = None) -> None:  # fmt: skip
    """Apply new limits all or nothing: every cgroup file written is journaled with its old
    value, and a failure part-way writes the old values back, so the error is the whole truth."""
    from runtime.cgroups import fs

    c = Container(root, cid)
    c.require("update", st_.CREATED, st_.RUNNING, st_.PAUSED)
    fs.journal_start()
    try:
        c.mgr.set(resources)
    except IsoproofError as e:
        left = fs.journal_rollback()
        if left:
            raise IsoproofError(f"{e}; could not restore {', '.join(left)}") from None
        raise IsoproofError(f"{e} (nothing was changed)") from None
    finally:
        fs.journal_stop()
    if warn is not None:
        for message in c.mgr.warnings:  # e.g. new device rules where bpf(2) is refused
            warn(message)


def pause(root: str, cid: str) -> None:
    c = Container(root, cid)
    c.require("pause", st_.RUNNING)
    c.mgr.freeze()


def resume(root: str, cid: str) -> None:
    c = Container(root, cid)
    c.require("resume", st_.PAUSED)
    c.mgr.thaw()


def list_ids(root: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(root) if st_.valid_id(n))
    except FileNotFoundError:
        return []


# --- exec ------------------------------------------------------------------------------------------


def exec_process(
    root: str,
    cid: str,
    process: Any,
    detach: bool = False,
    pid_file: str | None = None,
    console_socket: str | None = None,
    ignore_paused: bool = False,
    cgroups: list[str] | None = None,
) -> int:
    """Run another process in the container: join its namespaces (user first, mount last) and
    its cgroup (before it runs anything), then execve. Returns its exit code unless detached."""
    # Import before fork: after setns(mnt) the host's Python library is out of reach.
    from runtime.oci import caps as _caps  # noqa: F401
    from runtime.oci import init, sync
    from runtime.oci import process as _proc

    c = Container(root, cid)
    c.require("exec in", st_.CREATED, st_.RUNNING, *((st_.PAUSED,) if ignore_paused else ()))
    assert c.state is not None
    s = c.state
    cgroup_dirs = _sub_cgroups(c.mgr, cgroups or [])
    seccomp = _proc.exec_seccomp(s.config.get("seccomp"))  # built before the fork
    ns_fds = _open_container_namespaces(s.pid)
    if "mnt" not in ns_fds:  # no mount namespace of its own: its root is a chroot (init.py)
        ns_fds["root"] = os.open(f"/proc/{s.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    from runtime.sys import PR_SET_CHILD_SUBREAPER, Sys

    sys = Sys()
    sys.prctl(PR_SET_CHILD_SUBREAPER, 1)
    console_fd = -1
    if process.terminal:
        if console_socket is None:
            raise IsoproofError("--tty needs --console-socket")
        console_fd = _connect(console_socket)
    parent_sock, child_sock = sync_socketpair()
    pfd, cfd = parent_sock.fileno(), child_sock.fileno()
    stage1 = pid = 0
    try:
        stage1 = os.fork()
        if stage1 == 0:
            init.child_main(
                init.exec_stage1, cfd, pfd, process, ns_fds, s.config.get("new_userns", False),
                console_fd, seccomp,
            )  # fmt: skip
        child_sock.close()
        for fd in ns_fds.values():
            os.close(fd)
        if console_fd >= 0:
            os.close(console_fd)
        c.mgr.add_process(stage1)
        for d in cgroup_dirs:  # --cgroup: then into the sub-cgroups asked for
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(stage1))
        sync.send(pfd, sync.CGROUP_PLACED)
        pid = int(sync.recv(pfd, sync.INIT_PID)["pid"])  # type: ignore[call-overload]
        _reap(stage1)
        stage1 = 0
        sync.recv(pfd, sync.INIT_READY)
        parent_sock.close()
    except BaseException:
        for p in (stage1, pid):
            if p > 0:
                _kill(p, signal.SIGKILL)
                _reap(p, wait_reparent=True)
        raise
    if pid_file:
        write_pid_file(pid_file, pid)
    if detach:
        return 0
    status = _reap(pid, wait_reparent=True)
    if status is None:
        return 255
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _sub_cgroups(mgr: Any, specs: list[str]) -> list[str]:
    """``exec --cgroup [CTRL[,CTRL]:]PATH``: the existing sub-cgroup directories to join, below
    the container's cgroup (runc's rule: without controllers, PATH applies to every one)."""
    paths = mgr.paths()  # controller -> the container's directory ("" on cgroup v2)
    chosen: dict[str, str] = {}
    for spec in specs:
        ctrls, sep, sub = spec.rpartition(":")
        names = ctrls.split(",") if sep else list(paths)
        sub = sub.strip("/")
        if not sub or ".." in sub.split("/"):
            raise IsoproofError(f"--cgroup {spec}: needs a path below the container's cgroup")
        for name in names:
            if name not in paths:
                raise IsoproofError(f"--cgroup {spec}: no {name!r} controller in this container")
            chosen[paths[name]] = os.path.join(paths[name], sub)
    for d in chosen.values():
        if not os.path.isdir(d):
            raise IsoproofError(f"--cgroup: {d} does not exist (it must be made first)")
    return sorted(set(chosen.values()))


NS_ORDER = ("user", "ipc", "uts", "net", "pid", "cgroup", "time", "mnt")


def _open_container_namespaces(pid: int) -> dict[str, int]:
    """fds of the init's namespaces that differ from ours, in join order (user first: it grants
    the capabilities to join the rest; mnt last: it changes our root)."""
    out: dict[str, int] = {}
    for name in NS_ORDER:
        path = f"/proc/{pid}/ns/{name}"
        try:
            if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            out[name] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # e.g. no time namespaces on this kernel
        except OSError as e:
            for fd in out.values():
                os.close(fd)
            raise StateError(f"cannot open {path}: {e.strerror}") from None
    return out
