"""The per-container monitor, in the manner of conmon: ``python -m runtime.engine.monitor``.

One monitor per container, detached from the CLI that started it (it forks once and the CLI reaps
the intermediate, so it outlives the CLI). It

* marks itself a *child subreaper* and runs ``<runtime> create`` as its own child, so when create
  exits the container's init is reparented to the monitor, which can then ``waitpid`` it;
* owns the container's stdio: pipes, or with ``-t`` the pty master received over ``--console-socket``;
* writes the log (JSON lines: ``log``, ``stream``, ``time``), fans output out to attach clients and
  feeds their input to the container (``sock/<short>.a``);
* on exit records the exit code, the finish time and whether the OOM killer struck (read from the
  runtime's ``events --stats`` / the cgroup *before* ``delete``), applies the restart policy, deletes
  the OCI container and releases the rootfs and network.

It stays small in memory (target: 3 MiB private, measured with ``smaps_rollup`` beside conmon): it
keeps no history in memory and imports only ``os``, ``select``, ``_socket``, ``_signal`` and
``_json``, started with ``python -S -I``. What needs more (the store, the OCI runtime, teardown) runs
in a short-lived child per step, ``runtime.engine.monitor_work``, whose imports die with it.

Attach protocol (unix stream socket): the client sends one flags byte (1: it will send stdin,
2: its stdin EOF closes the container's stdin), then raw stdin bytes. The monitor sends frames
``[stream u8][length u32 BE][data]``: stream 1 stdout, 2 stderr, 3 exit (data: the exit code).
"""

from __future__ import annotations

import _json
import _signal
import _socket
import errno
import marshal
import posix as os  # os without os.py and what it imports (0.16 MiB): the monitor needs no more
import select
import sys
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (1.8 MiB)
if TYPE_CHECKING:
    from typing import Any

STDOUT, STDERR, EXIT = 1, 2, 3
WANT_STDIN, STDIN_ONCE = 1, 2
MAX_PARTIAL = 16 * 1024  # flush a line this long even without a newline, like docker
SIGNAL_EXIT_BASE = 128
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36

CLIENT_HIGH_WATER = 1 << 20  # bytes queued for one attach client before the container waits

EVENT_READ, EVENT_WRITE = 1, 2  # as in selectors
DEVNULL = "/dev/null"


class WorkError(Exception):
    """A step run in a ``monitor_work`` child failed; its message is the child's exception's."""


class Selector:
    """The part of ``selectors.EpollSelector`` the monitor uses (same masks and errors), without
    the ``selectors`` module's imports."""

    def __init__(self) -> None:
        self.ep = select.epoll()
        self.keys: dict[int, tuple[int, Any]] = {}

    @staticmethod
    def fd(fileobj: object) -> int:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()  # type: ignore[attr-defined]
        if fd < 0:
            raise ValueError(f"Invalid file descriptor: {fd}")
        return fd

    def register(self, fileobj: object, events: int, data: Any) -> None:
        fd = self.fd(fileobj)
        if fd in self.keys:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        mask = (select.EPOLLIN if events & EVENT_READ else 0) | (
            select.EPOLLOUT if events & EVENT_WRITE else 0
        )
        self.ep.register(fd, mask)
        self.keys[fd] = (events, data)

    def unregister(self, fileobj: object) -> None:
        fd = self.fd(fileobj)
        del self.keys[fd]  # KeyError if it was not registered, as selectors says
        try:  # noqa: SIM105 - no contextlib (its imports)
            self.ep.unregister(fd)
        except OSError:
            pass

    def select(self, timeout: float) -> list[tuple[int, Any, int]]:
        ready = []
        for fd, event in self.ep.poll(timeout, max(len(self.keys), 1)):
            events = 0
            if event & ~select.EPOLLIN:
                events |= EVENT_WRITE
            if event & ~select.EPOLLOUT:
                events |= EVENT_READ
            key = self.keys.get(fd)
            if key is not None:
                ready.append((fd, key[1], events & key[0]))
        return ready


def unix_socket() -> _socket.socket:
    return _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)


def accept(listener: _socket.socket) -> _socket.socket:
    fd, _addr = listener._accept()  # type: ignore[attr-defined]  # socket.accept without socket.py
    return _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)


def unlink(path: str) -> None:
    try:  # noqa: SIM105 - no contextlib (its imports)
        os.unlink(path)
    except FileNotFoundError:
        pass


def exists(path: str) -> bool:
    """``os.path.exists``."""
    try:
        os.stat(path)
    except (OSError, ValueError):
        return False
    return True


def format_ns(ns: int) -> str:
    """RFC 3339 with nanoseconds, as docker writes it: ``home.format_ns`` without ``datetime``."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def now() -> str:
    return format_ns(time.time_ns())


def log_record(stream: str, data: bytes) -> bytes:
    """One log line, byte for byte what ``json.dumps({"log":, "stream":, "time":})`` writes."""
    text = _json.encode_basestring_ascii(data.decode(errors="replace"))
    return f'{{"log": {text}, "stream": "{stream}", "time": "{now()}"}}\n'.encode()


def work_start(name: str, *args: object) -> tuple[int, int]:
    """Fork a child that runs ``monitor_work.<name>(*args)``; see ``work_end``."""
    r, w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: import what the step needs, send the result, exit
        status = 0
        try:
            # Dies with the monitor, as the same work done in the monitor would: nothing writes
            # the container's state after a kill -9 of its monitor.
            prctl(PR_SET_PDEATHSIG, _signal.SIGKILL)
            if os.getppid() != parent:
                os._exit(1)
            os.close(r)
            _signal.set_wakeup_fd(-1)  # the monitor's: our SIGCHLDs are none of its business
            from runtime.engine import monitor_work

            result = (True, getattr(monitor_work, name)(*args))
        except BaseException as e:  # noqa: BLE001 - every failure goes back to the monitor
            import traceback

            traceback.print_exc()
            result = (False, str(e))
        try:
            data = marshal.dumps(result)
            data = len(data).to_bytes(4, "big") + data
            while data:
                data = data[os.write(w, data) :]
        except BaseException:  # noqa: BLE001 - the monitor sees a short answer
            status = 1
        finally:
            try:
                sys.stderr.flush()
            finally:
                os._exit(status)
    os.close(w)
    return pid, r


def work_end(pid: int, r: int) -> object:
    """The result of a step started with ``work_start``; its exception as ``WorkError``. The
    answer is read by its length, not to EOF: processes the step started may hold the pipe."""
    data = b""
    try:
        want = 4
        while len(data) < want:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
            if want == 4 and len(data) >= 4:
                want = 4 + int.from_bytes(data[:4], "big")
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    if len(data) < 4 or len(data) < want:
        raise WorkError("the monitor's helper process died")
    ok, result = marshal.loads(data[4:want])
    if not ok:
        raise WorkError(result)
    return result


def work(name: str, *args: object) -> object:
    return work_end(*work_start(name, *args))


def prctl(option: int, arg: int) -> None:
    """``prctl(option, arg)`` through ``runtime.libc``, the light core of ``runtime.sys``
    (``_ctypes`` only: ``runtime.sys`` or ``ctypes`` would cost the monitor 0.4 MiB of its 3)."""
    from runtime import libc

    libc.prctl(option, arg)


class Client:
    """An attach connection: what it asked for and the output it has not taken yet."""

    __slots__ = ("sock", "flags", "out", "reading", "events")

    def __init__(self, sock: _socket.socket, flags: int) -> None:
        self.sock = sock
        self.flags = flags
        self.out = bytearray()
        self.reading = True
        self.events = EVENT_READ


def frame(stream: int, data: bytes) -> bytes:
    return bytes((stream,)) + len(data).to_bytes(4, "big") + data


def exit_code(status: int) -> int:
    """Shell convention: 128+signal for a killed process (137 for SIGKILL)."""
    if os.WIFSIGNALED(status):
        return SIGNAL_EXIT_BASE + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def clean_runtime_message(line: str) -> str:
    """runc logs ``time="..." level=error msg="..."``: keep the message."""
    import re  # only on a failed create: the monitor ends then

    m = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
    return m.group(1).replace('\\"', '"') if m else line


def recv_fd(conn: _socket.socket) -> int:
    """Receive one file descriptor sent with SCM_RIGHTS (the console socket protocol)."""
    _msg, ancdata, _flags, _addr = conn.recvmsg(4096, _socket.CMSG_LEN(4))
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4:
            return int.from_bytes(data[:4], sys.byteorder, signed=True)
    raise OSError(errno.EPROTO, "no file descriptor on the console socket")


class Monitor:
    def __init__(self, home_dir: str, cid: str) -> None:
        self.home_dir = home_dir
        self.cid = cid
        info: dict[str, object] = work("info", home_dir, cid)  # type: ignore[assignment]
        self.cdir = str(info["cdir"])
        self.console_path = str(info["console"])
        self.attach_path = str(info["attach"])
        self.tty = bool(info["tty"])
        self.open_stdin = bool(info["open_stdin"])
        self.sel = Selector()
        self.clients: dict[_socket.socket, Client] = {}
        self.output_paused = False
        self.partial = {STDOUT: b"", STDERR: b""}
        self.log = open(self.cdir + "/container.log", "ab", buffering=0)  # noqa: SIM115 - lives as long as the monitor
        self.init_pid = 0
        self.master = -1  # pty master (tty mode)
        self.out_r = self.err_r = self.in_w = -1
        self.child_fds: tuple[int, int, int] = (-1, -1, -1)
        self.exit_status: int | None = None

    def work(self, name: str, *args: object) -> object:
        return work(name, self.home_dir, self.cid, *args)

    def update(self, **fields: object) -> dict[str, object]:
        return self.work("update", fields)  # type: ignore[return-value]

    # -- stdio -------------------------------------------------------------------------------------

    def make_pipes(self) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        if self.open_stdin:
            in_r, in_w = os.pipe()
        else:
            in_r, in_w = os.open(DEVNULL, os.O_RDONLY), -1
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        self.out_r, self.err_r, self.in_w = out_r, err_r, in_w
        self.child_fds = (in_r, out_w, err_w)
        self.sel.register(out_r, EVENT_READ, ("out", STDOUT))
        self.sel.register(err_r, EVENT_READ, ("out", STDERR))

    def create(self, first: bool) -> str | None:
        """Run ``<runtime> create``; return an error line or None. Sets ``init_pid``. The first
        time, the same step records the monitor's PID (before) and the created state (after)."""
        monitor_pid = os.getpid() if first else 0
        console: _socket.socket | None = None
        err_r = err_w = -1
        if self.tty:
            unlink(self.console_path)
            console = unix_socket()
            console.bind(self.console_path)
            console.listen(1)
            err_r, err_w = os.pipe()  # the runtime's own messages (the container has the pty)
            null = os.open(DEVNULL, os.O_RDONLY)
            try:
                step = work_start(
                    "create", self.home_dir, self.cid, monitor_pid, (null, err_w, err_w),
                    self.console_path,
                )  # fmt: skip
            finally:
                os.close(null)  # the runtime has its copy; one leaked per restart otherwise
                os.close(err_w)
        else:
            step = work_start("create", self.home_dir, self.cid, monitor_pid, self.child_fds, None)
        try:
            if console is not None:
                console.settimeout(30)
                try:
                    conn = accept(console)
                    try:
                        master = recv_fd(conn)
                    finally:
                        conn.close()
                except OSError:
                    master = -1
                if master >= 0:
                    if self.master >= 0:  # the last run's pty (a restart)
                        try:  # noqa: SIM105 - no contextlib (its imports)
                            self.sel.unregister(self.master)
                        except KeyError:  # unregistered already at its EOF
                            pass
                        os.close(self.master)
                    self.master = master
                    os.set_blocking(master, False)
                    self.sel.register(master, EVENT_READ, ("out", STDOUT))
            result: Any = work_end(*step)
            rc, pid = int(result[0]), int(result[1])
        finally:
            if console is not None:
                console.close()
                unlink(self.console_path)
        if rc != 0:
            msg = ""
            if err_r >= 0:
                msg = os.read(err_r, 65536).decode(errors="replace")
                os.close(err_r)  # a failed restart with -t must not keep it either
            else:
                msg = self.drain_text(self.err_r)
            lines = [ln for ln in msg.strip().splitlines() if ln.strip()]
            return (
                clean_runtime_message(lines[-1]) if lines else f"OCI runtime create failed ({rc})"
            )
        if err_r >= 0:
            os.close(err_r)
        if not pid:
            return "OCI runtime create wrote no pid file"
        self.init_pid = pid
        return None

    def drain_text(self, fd: int) -> str:
        chunks = []
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks).decode(errors="replace")

    # -- output --------------------------------------------------------------------------------------

    def on_output(self, fd: int, stream: int) -> bool:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        except OSError:  # EIO: pty without a slave (the container exited)
            data = b""
        if not data:
            self.sel.unregister(fd)
            return False
        self.emit(stream, data)
        return True

    def emit(self, stream: int, data: bytes) -> None:
        for client in list(self.clients.values()):
            client.out += frame(stream, data)
            self.update_client(client)
        self.apply_backpressure()
        buf = self.partial[stream] + data
        *lines, rest = buf.split(b"\n")
        name = "stdout" if stream == STDOUT else "stderr"
        records = [self.record(name, line + b"\n") for line in lines]
        if len(rest) >= MAX_PARTIAL:
            records.append(self.record(name, rest))
            rest = b""
        self.partial[stream] = rest
        if records:
            self.log.write(b"".join(records))

    def record(self, stream: str, data: bytes) -> bytes:
        return log_record(stream, data)

    def flush_partial(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self.log.write(self.record("stdout" if stream == STDOUT else "stderr", rest))
                self.partial[stream] = b""

    def drain_outputs(self) -> None:
        for fd, stream in ((self.out_r, STDOUT), (self.err_r, STDERR), (self.master, STDOUT)):
            if fd < 0:
                continue
            for _ in range(1000):
                try:
                    data = os.read(fd, 65536)
                except (BlockingIOError, OSError):
                    break
                if not data:
                    break
                self.emit(stream, data)
        self.flush_partial()

    # -- attach clients --------------------------------------------------------------------------

    def on_accept(self, listener: _socket.socket) -> None:
        conn = accept(listener)
        conn.settimeout(5)
        try:
            flags = conn.recv(1)
        except OSError:
            conn.close()
            return
        if not flags:
            conn.close()
            return
        conn.setblocking(False)
        client = Client(conn, flags[0])
        self.clients[conn] = client
        self.sel.register(conn, EVENT_READ, ("client", conn))

    def update_client(self, client: Client) -> None:
        """(Re)register a client for reading while it may send, for writing while output waits."""
        if client.out and client.sock.fileno() >= 0:
            try:
                sent = client.sock.send(client.out)
                del client.out[:sent]
            except OSError:
                pass
        events = (EVENT_READ if client.reading else 0) | (EVENT_WRITE if client.out else 0)
        if events == client.events:
            return
        if client.events:
            self.sel.unregister(client.sock)
        if events:
            self.sel.register(client.sock, events, ("client", client.sock))
        client.events = events

    def apply_backpressure(self) -> None:
        """Stop reading the container's output while an attached client lags far behind."""
        lagging = any(len(c.out) > CLIENT_HIGH_WATER for c in self.clients.values())
        if lagging == self.output_paused:
            return
        self.output_paused = lagging
        for fd, stream in ((self.out_r, STDOUT), (self.err_r, STDERR), (self.master, STDOUT)):
            if fd < 0:
                continue
            try:
                if lagging:
                    self.sel.unregister(fd)
                else:
                    self.sel.register(fd, EVENT_READ, ("out", stream))
            except (KeyError, ValueError, OSError):
                pass

    def on_client(self, conn: _socket.socket, mask: int) -> None:
        client = self.clients.get(conn)
        if client is None:
            return
        if mask & EVENT_WRITE:
            try:
                sent = conn.send(client.out)
                del client.out[:sent]
            except BlockingIOError:
                pass
            except OSError:
                self.drop(conn)
                self.apply_backpressure()
                return
            self.update_client(client)
            self.apply_backpressure()
        if not mask & EVENT_READ:
            return
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # Only the client's writing half may be closed: keep sending it output.
            client.reading = False
            self.update_client(client)
            if client.flags & STDIN_ONCE:
                self.close_stdin()
            return
        if not client.flags & WANT_STDIN:
            return
        target = self.master if self.tty else self.in_w
        if target >= 0:
            try:  # noqa: SIM105 - no contextlib (its imports)
                os.write(target, data)
            except OSError:
                pass

    def close_stdin(self) -> None:
        if self.tty and self.master >= 0:
            try:  # noqa: SIM105 - no contextlib (its imports)
                os.write(self.master, b"\x04")  # EOF for the line discipline
            except OSError:
                pass
        elif self.in_w >= 0:
            os.close(self.in_w)
            self.in_w = -1

    def drop(self, conn: _socket.socket) -> None:
        client = self.clients.pop(conn, None)
        if client is not None and client.events:
            try:  # noqa: SIM105 - no contextlib (its imports)
                self.sel.unregister(conn)
            except (KeyError, ValueError):
                pass
        conn.close()

    # -- lifecycle -------------------------------------------------------------------------------

    def on_ready(self, fd: int) -> None:
        """The CLI that asked for this start says ``s`` once the runtime's start succeeded; its
        end closing without that means it died (or gave up) between create and start."""
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data and b"s" not in data:
            return
        self.sel.unregister(fd)
        os.close(fd)
        if not data:
            self.work("abandon_start")

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.init_pid:
                self.exit_status = status

    def run(self, ready_fd: int) -> int:
        wake_r, wake_w = _socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        _signal.set_wakeup_fd(wake_w.fileno())
        _signal.signal(_signal.SIGCHLD, lambda *_: None)
        _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
        # The monitor ends with its container, not before. A no-op handler (not SIG_IGN) because
        # handlers revert to the default on exec while SIG_IGN would be inherited by the runtime
        # and the container; also undo any SIG_IGN we were started with (a shell's `&`).
        for sig in (
            _signal.SIGTERM,
            _signal.SIGINT,
            _signal.SIGHUP,
            _signal.SIGQUIT,
            _signal.SIGUSR1,
            _signal.SIGUSR2,
        ):
            _signal.signal(sig, _ignore)
        self.sel.register(wake_r, EVENT_READ, ("wake", None))

        unlink(self.attach_path)
        listener = unix_socket()
        listener.bind(self.attach_path)
        listener.listen(16)
        self.sel.register(listener, EVENT_READ, ("accept", listener))

        if not self.tty:
            self.make_pipes()
        err = self.create(first=True)
        if err is not None:
            self.update(Status="exited", Error=err, MonitorPid=0, ExitCode=127)
            os.write(ready_fd, f"err {err}\n".encode())
            unlink(self.attach_path)
            return 1
        try:
            os.write(ready_fd, f"ok {self.init_pid}\n".encode())
        except OSError:  # EPIPE: the CLI died before it heard; nobody will start the container
            os.close(ready_fd)
            self.work("abandon_start")
        else:
            os.set_blocking(ready_fd, False)
            self.sel.register(ready_fd, EVENT_READ, ("ready", None))

        backoff = 0.1
        while True:
            self.exit_status = None
            self.reap()
            while self.exit_status is None:
                for fd, data, mask in self.sel.select(timeout=1.0):
                    kind, arg = data
                    if kind == "out":
                        self.on_output(fd, arg)
                    elif kind == "accept":
                        self.on_accept(arg)
                    elif kind == "client":
                        self.on_client(arg, mask)
                    elif kind == "ready":
                        self.on_ready(fd)
                    elif kind == "wake":
                        try:
                            while wake_r.recv(4096):
                                pass
                        except BlockingIOError:
                            pass
                self.reap()
                if self.exit_status is None and not exists(f"/proc/{self.init_pid}"):
                    self.exit_status = 255 << 8  # gone without a status we could collect
            self.drain_outputs()
            code = exit_code(self.exit_status)
            # Records the exit (OOM kill asked before delete; the OCI container deleted).
            if not self.work("exited", code):
                break
            self.update(Status="restarting", Restarting=True)
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
            if self.work("state").get("StopRequested"):  # type: ignore[attr-defined]
                break
            err = self.create(first=False)
            if not self.work("restarted", err, self.init_pid):
                break

        # Final: record, tell attach clients, release the rootfs and network, maybe remove.
        # MonitorPid stays set until the very end: the CLI waits for it before touching the mounts.
        self.update(Status="exited", Running=False, Restarting=False)
        for conn, client in list(self.clients.items()):
            try:
                conn.setblocking(True)
                conn.settimeout(10)  # a client that cannot take its backlog in 10 s loses it
                conn.sendall(bytes(client.out) + frame(EXIT, str(code).encode()))
            except OSError:
                pass
            self.drop(conn)
        listener.close()
        unlink(self.attach_path)
        self.log.close()
        self.work("final")
        return 0


def _ignore(*_: object) -> None:
    pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    home_dir, cid, ready = args[0], args[1], int(args[2])
    # Detach: the CLI reaps this intermediate process; the grandchild is the monitor.
    if os.fork() > 0:
        os._exit(0)
    # Home.container_dir, without importing the engine's Home (pathlib, json, datetime).
    log = os.open(
        f"{home_dir}/containers/{cid}/monitor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
    )
    devnull = os.open(DEVNULL, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(devnull)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    try:
        return Monitor(home_dir, cid).run(ready)
    except Exception as e:  # noqa: BLE001 - leave a trace in monitor.log and in the state
        import traceback

        traceback.print_exc()
        try:  # noqa: SIM105 - no contextlib (its imports)
            os.write(ready, f"err monitor: {e}\n".encode())
        except OSError:
            pass
        try:  # noqa: SIM105 - best effort: we are already failing
            work("failed", home_dir, cid, str(e), time.time_ns())
        except Exception:  # noqa: BLE001, S110
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
