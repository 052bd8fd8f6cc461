"""Run our own OCI runtime's ``main(argv)`` in a forked child instead of exec'ing its program.

Why: under TCG emulation (the kernel matrix's VMs) every Python interpreter start costs 1-1.5 s,
and one container's life runs ``isoproof-oci`` about five times (create, start, kill, delete).
A fork of the engine CLI or the monitor, both already running Python, costs milliseconds. Only
for ``isoproof-oci`` of this very installation (:func:`is_own_runtime`); any other runtime (runc,
a wrapper script) is exec'd as always, and ``ISOPROOF_OCI_FORK=0`` forces exec for ours too.

The child keeps the process boundary of an exec'd runtime: its own pid, the exit status as the
result, stdio as ``Popen`` would set it. Where the difference could show (to the runtime, or to
the container's init, which inherits the runtime's process state), it looks freshly exec'd:

* fds 0-2 as given, every other fd closed: the monitor holds attach sockets, its log, selector
  fds, pipes of the container; neither the runtime nor the init may keep those open;
* the signal dispositions of a fresh interpreter (all default, except Python's own SIGINT handler
  and ignored SIGPIPE/SIGXFSZ), an empty mask, no wakeup fd; all signals are blocked across the
  fork, so none can run a handler of the parent in the child;
* new ``sys.stdin/stdout/stderr`` on the new fds (the parent's may hold read-ahead input; its
  buffers are flushed before the fork, so nothing is written twice or out of order);
* it leaves through ``os._exit``: no atexit handler, ``finally`` block or buffer of the parent
  runs in it; an exception out of ``main`` becomes ``isoproof-oci: <one line>``, status 1;
* inherited objects are frozen for the garbage collector (``gc.freeze``), so the child never
  finalises a parent's socket or file, whose fd number the runtime may have reused by then;
* as across exec: cwd, environment, umask, rlimits, credentials. Not inherited by a forked child,
  as not by an exec'd one: ``PR_SET_CHILD_SUBREAPER`` (the monitor's; prctl(2)).

Forking a process that has threads is unsafe (a lock another thread holds stays locked in the
child). The engine CLI and the monitor are single-threaded; :func:`single_threaded` checks that
before every fork, and the caller execs the runtime instead if it is not so.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import io
import os
import selectors
import signal
import subprocess
import sys
import time

from runtime.engine.home import own_runtime

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any

    Stdio = int | IO[Any] | None  # an fd, a file, subprocess.DEVNULL, or None (inherit ours)
    Main = Callable[[list[str]], int]

ENV_FORK = "ISOPROOF_OCI_FORK"
PROG = "isoproof-oci"


def is_own_runtime(binary: str) -> bool:
    """Is ``binary`` the ``isoproof-oci`` console script beside this interpreter?

    Decided by file identity (``os.path.samefile``: a symlink or another spelling of the same
    path counts), never by name: a wrapper script or another installation's ``isoproof-oci`` is
    exec'd like any runtime. pip wrote that script for this interpreter, to import
    ``runtime.oci.cli`` from this installation, so calling its ``main`` here runs the same code.
    A bare name (looked up in ``$PATH`` by exec) is not resolved here: it is exec'd."""
    if os.environ.get(ENV_FORK) == "0" or os.sep not in binary:
        return False
    try:
        return os.path.samefile(binary, own_runtime())
    except OSError:
        return False


def single_threaded() -> bool:
    return len(os.listdir("/proc/self/task")) == 1


def spawn(main: Main, argv: list[str], stdin: Stdio, stdout: Stdio, stderr: Stdio) -> Child:
    """Fork; the child runs ``main(argv[1:])`` with the given stdio and exits with its status."""
    targets = [_fd(s, i) for i, s in enumerate((stdin, stdout, stderr))]
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream: nothing to flush
            stream.flush()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:
            _child(main, argv, targets)  # never returns
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd, given in zip(targets, (stdin, stdout, stderr), strict=True):
            if given == subprocess.DEVNULL:
                os.close(fd)
    return Child(pid, argv)


def run(main: Main, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(argv, capture_output=True, text=True, stdin=DEVNULL, timeout=...)``
    for a forked ``main``: raises ``subprocess.TimeoutExpired`` after killing the child."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        child = spawn(main, argv, subprocess.DEVNULL, out_w, err_w)
    finally:
        os.close(out_w)
        os.close(err_w)
    deadline = time.monotonic() + timeout
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    try:
        with selectors.DefaultSelector() as sel:
            for fd in chunks:
                sel.register(fd, selectors.EVENT_READ)
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(argv, timeout)
                for key, _ in sel.select(left):
                    data = os.read(key.fd, 65536)
                    if data:
                        chunks[key.fd].append(data)
                    else:
                        sel.unregister(key.fd)
        code = child.wait(max(0.0, deadline - time.monotonic()))
    except BaseException:  # a timeout, or ^C in the engine: do not leave the child running
        child.kill()
        child.wait()
        raise
    finally:
        os.close(out_r)
        os.close(err_r)

    def text(fd: int) -> str:
        return b"".join(chunks[fd]).decode(errors="replace")

    return subprocess.CompletedProcess(argv, code, text(out_r), text(err_r))


class Child:
    """The part of ``subprocess.Popen`` the engine uses, for a forked child."""

    def __init__(self, pid: int, args: list[str]) -> None:
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: as Popen, report 0
                pid, status = self.pid, 0
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)  # -N for signal N, as Popen
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None and self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                self.returncode = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            time.sleep(0.005)
        return code

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def _fd(given: Stdio, index: int) -> int:
    """The fd the child gets as ``index``, in the parent (DEVNULL opens one, closed after fork);
    -1: inherit ours, which we do not have (then neither has the child, as with Popen)."""
    if given is None:
        try:
            fcntl.fcntl(index, fcntl.F_GETFD)
        except OSError:
            return -1
        return index
    if given == subprocess.DEVNULL:
        return os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    if isinstance(given, int):
        if given < 0:
            raise ValueError(f"unsupported stdio {given}")  # PIPE: use run() for captured output
        return given
    return given.fileno()


def _child(main: Main, argv: list[str], targets: list[int]) -> None:
    """The forked child: become a fresh process, run ``main``, leave. Never returns."""
    code = 1
    try:
        gc.freeze()
        # Copies above 2 first: a target may itself be one of 0-2 (stdout given as stderr).
        copies = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3) if fd >= 0 else -1 for fd in targets]
        for index, fd in enumerate(copies):
            if fd >= 0:
                os.dup2(fd, index)  # inheritable, as Popen's (the runtime passes 0-2 on)
        for name in os.listdir("/proc/self/fd"):
            if int(name) > 2:
                with contextlib.suppress(OSError):  # the listing's own fd is closed already
                    os.close(int(name))
        _fresh_signals()
        old_stdio = (sys.stdin, sys.stdout, sys.stderr)  # noqa: F841 - kept alive, never closed
        sys.stdin, sys.stdout, sys.stderr = (_stream(fd, s) for fd, s in enumerate(old_stdio))
        sys.argv = list(argv)
        code = _call(main, argv[1:])
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                code = code or 120  # as the interpreter's exit when its flush fails
    except BaseException as e:  # noqa: BLE001 - nothing may unwind into the parent's frames
        with contextlib.suppress(BaseException):
            os.write(2, f"{PROG}: cannot start: {e}\n".encode())
    finally:
        os._exit(code)


def _stream(fd: int, like: Any) -> Any:
    """A new text stream on ``fd``, made as the interpreter makes its stdio at start: encoding,
    errors and ``python -u`` (write-through) as ``like``, the parent's, which the interpreter made
    so; line-buffered on a terminal and for stderr, else block-buffered. None if no such fd."""
    write = fd > 0
    try:
        raw = io.FileIO(fd, "w" if write else "r", closefd=False)
    except OSError:
        return None
    unbuffered = write and bool(getattr(like, "write_through", False))
    buffer: Any = raw
    if not unbuffered:
        buffer = io.BufferedWriter(raw) if write else io.BufferedReader(raw)
    return io.TextIOWrapper(
        buffer,
        encoding=getattr(like, "encoding", None),
        errors=getattr(like, "errors", None),
        line_buffering=write and not unbuffered and (fd == 2 or raw.isatty()),
        write_through=unbuffered,
    )


def _fresh_signals() -> None:
    """The signal state of a freshly started Python (we run Python code, so that is "fresh")."""
    signal.set_wakeup_fd(-1)
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        with contextlib.suppress(OSError, ValueError):  # glibc's reserved real-time signals
            signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _call(main: Main, args: list[str]) -> int:
    """``main(args)`` with the exit status the program would have: SystemExit as the interpreter
    handles it, any other exception as one line (the real program would print a traceback)."""
    try:
        return int(main(args) or 0)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return int(e.code or 0)
        print(e.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - a bug in main: still one line, still an exit status
        print(f"{PROG}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
