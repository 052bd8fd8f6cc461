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

It stays small in memory: it imports no networking library and keeps no history in memory.

Attach protocol (unix stream socket): the client sends one flags byte (1: it will send stdin,
2: its stdin EOF closes the container's stdin), then raw stdin bytes. The monitor sends frames
``[stream u8][length u32 BE][data]``: stream 1 stdout, 2 stderr, 3 exit (data: the exit code).
"""

from __future__ import annotations

import array
import contextlib
import errno
import json
import os
import re
import selectors
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from runtime.engine.home import Home, format_ns, now
from runtime.engine.oci import OciRuntime
from runtime.engine.store import Store

STDOUT, STDERR, EXIT = 1, 2, 3
WANT_STDIN, STDIN_ONCE = 1, 2
RUNTIME_LOG = "runtime.log"  # the OCI runtime's --log of create: its warnings, its errors
MAX_PARTIAL = 16 * 1024  # flush a line this long even without a newline, like docker
SIGNAL_EXIT_BASE = 128


CLIENT_HIGH_WATER = 1 << 20  # bytes queued for one attach client before the container waits


class Client:
    """An attach connection: what it asked for and the output it has not taken yet."""

    __slots__ = ("sock", "flags", "out", "reading", "events")

    def __init__(self, sock: socket.socket, flags: int) -> None:
        self.sock = sock
        self.flags = flags
        self.out = bytearray()
        self.reading = True
        self.events = selectors.EVENT_READ


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BI", stream, len(data)) + data


def exit_code(status: int) -> int:
    """Shell convention: 128+signal for a killed process (137 for SIGKILL)."""
    if os.WIFSIGNALED(status):
        return SIGNAL_EXIT_BASE + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def clean_runtime_message(line: str) -> str:
    """runc logs ``time="..." level=error msg="..."``: keep the message."""
    m = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
    return m.group(1).replace('\\"', '"') if m else line


def recv_fd(conn: socket.socket) -> int:
    """Receive one file descriptor sent with SCM_RIGHTS (the console socket protocol)."""
    fds = array.array("i")
    _msg, ancdata, _flags, _addr = conn.recvmsg(4096, socket.CMSG_LEN(fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
            return fds[0]
    raise OSError(errno.EPROTO, "no file descriptor on the console socket")


class Monitor:
    def __init__(self, home: Home, cid: str) -> None:
        self.home = home
        self.cid = cid
        self.store = Store(home)
        self.cfg = self.store.config(cid)
        self.cdir = self.store.dir(cid)
        self.tty = bool(self.cfg["Config"].get("Tty"))
        self.open_stdin = bool(self.cfg["Config"].get("OpenStdin"))
        self.runtime = OciRuntime(self.cfg["Runtime"], self.cfg["OciRoot"])
        self.sel = selectors.DefaultSelector()
        self.clients: dict[socket.socket, Client] = {}
        self.output_paused = False
        self.partial = {STDOUT: b"", STDERR: b""}
        self.log = open(self.cdir / "container.log", "ab", buffering=0)  # noqa: SIM115 - lives as long as the monitor
        self.init_pid = 0
        self.master = -1  # pty master (tty mode)
        self.out_r = self.err_r = self.in_w = -1
        self.child_fds: tuple[int, int, int] = (-1, -1, -1)
        self.exit_status: int | None = None

    # -- stdio -------------------------------------------------------------------------------------

    def make_pipes(self) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        if self.open_stdin:
            in_r, in_w = os.pipe()
        else:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY), -1
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        self.out_r, self.err_r, self.in_w = out_r, err_r, in_w
        self.child_fds = (in_r, out_w, err_w)
        self.sel.register(out_r, selectors.EVENT_READ, ("out", STDOUT))
        self.sel.register(err_r, selectors.EVENT_READ, ("out", STDERR))

    def create(self) -> str | None:
        """Run ``<runtime> create``; return an error line or None. Sets ``init_pid``."""
        bundle = self.cdir / "bundle"
        pid_file = self.cdir / "init.pid"
        pid_file.unlink(missing_ok=True)
        # Before create, not after: if we die halfway, rm must still ask the runtime to delete.
        self.store.update(self.cid, OciContainer=True)
        console: socket.socket | None = None
        console_path = self.home.sock / f"{self.cid[:12]}.c"
        err_r = err_w = -1
        if self.tty:
            console_path.unlink(missing_ok=True)
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            console.bind(str(console_path))
            console.listen(1)
            err_r, err_w = os.pipe()  # the runtime's own messages (the container has the pty)
            null = os.open(os.devnull, os.O_RDONLY)
            try:
                proc = self.runtime.create(
                    self.cid,
                    str(bundle),
                    str(pid_file),
                    str(console_path),
                    null,
                    err_w,
                    err_w,
                    str(self.cdir / RUNTIME_LOG),
                )
            finally:
                os.close(null)  # the runtime has its copy; one leaked per restart otherwise
                os.close(err_w)
        else:
            in_r, out_w, err_w2 = self.child_fds
            proc = self.runtime.create(
                self.cid, str(bundle), str(pid_file), None, in_r, out_w, err_w2,
                str(self.cdir / RUNTIME_LOG),
            )  # fmt: skip
        try:
            if console is not None:
                console.settimeout(30)
                try:
                    conn, _ = console.accept()
                    with conn:
                        master = recv_fd(conn)
                except OSError:
                    master = -1
                if master >= 0:
                    if self.master >= 0:  # the last run's pty (a restart)
                        with contextlib.suppress(KeyError):  # unregistered already at its EOF
                            self.sel.unregister(self.master)
                        os.close(self.master)
                    self.master = master
                    os.set_blocking(master, False)
                    self.sel.register(master, selectors.EVENT_READ, ("out", STDOUT))
            rc = proc.wait()
        finally:
            if console is not None:
                console.close()
                console_path.unlink(missing_ok=True)
        if rc != 0:
            msg = ""
            if err_r >= 0:
                msg = os.read(err_r, 65536).decode(errors="replace")
            else:
                msg = self.drain_text(self.err_r)
            lines = [ln for ln in msg.strip().splitlines() if ln.strip()]
            return (
                clean_runtime_message(lines[-1]) if lines else f"OCI runtime create failed ({rc})"
            )
        if err_r >= 0:
            os.close(err_r)
        try:
            self.init_pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return "OCI runtime create wrote no pid file"
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
        line = json.dumps({"log": data.decode(errors="replace"), "stream": stream, "time": now()})
        return line.encode() + b"\n"

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

    def on_accept(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
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
        self.sel.register(conn, selectors.EVENT_READ, ("client", conn))

    def update_client(self, client: Client) -> None:
        """(Re)register a client for reading while it may send, for writing while output waits."""
        if client.out and client.sock.fileno() >= 0:
            with contextlib.suppress(OSError):
                sent = client.sock.send(client.out)
                del client.out[:sent]
        events = (selectors.EVENT_READ if client.reading else 0) | (
            selectors.EVENT_WRITE if client.out else 0
        )
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
            with contextlib.suppress(KeyError, ValueError, OSError):
                if lagging:
                    self.sel.unregister(fd)
                else:
                    self.sel.register(fd, selectors.EVENT_READ, ("out", stream))

    def on_client(self, conn: socket.socket, mask: int) -> None:
        client = self.clients.get(conn)
        if client is None:
            return
        if mask & selectors.EVENT_WRITE:
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
        if not mask & selectors.EVENT_READ:
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
            with contextlib.suppress(OSError):
                os.write(target, data)

    def close_stdin(self) -> None:
        if self.tty and self.master >= 0:
            with contextlib.suppress(OSError):
                os.write(self.master, b"\x04")  # EOF for the line discipline
        elif self.in_w >= 0:
            os.close(self.in_w)
            self.in_w = -1

    def drop(self, conn: socket.socket) -> None:
        client = self.clients.pop(conn, None)
        if client is not None and client.events:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(conn)
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
            self.abandon_start()

    def abandon_start(self) -> None:
        """Nobody will start the created container: kill it, so that the usual end (exit
        recorded, rootfs and network released, ``--rm`` honoured) follows. If the runtime says
        it is running, the start did happen (the CLI died just after): it is ours as usual."""
        state = self.runtime.state(self.cid)
        if state is not None and state.get("status") not in ("created", "creating"):
            return
        self.store.update(
            self.cid, StopRequested=True, Error="the client exited before it started the container"
        )
        self.runtime.kill(self.cid, "KILL")

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

    def oom_killed(self) -> bool:
        """Did the OOM killer act in this container's cgroup? Asked before ``delete``."""
        from runtime.engine import cgroupinfo

        return cgroupinfo.oom_kill_count(self.cfg["CgroupsPath"], self.cid, self.runtime) > 0

    def delete_oci(self) -> dict[str, Any]:
        """Delete the runtime's container (its init is dead); the state change that records it.

        This is the one delete of a container the monitor ran: ``rm`` only kills the init and
        waits for us. A failed delete leaves ``OciContainer`` set, so ``rm`` tries again."""
        return {"OciContainer": False} if self.runtime.delete(self.cid, force=True) else {}

    def restart_wanted(self, code: int, st: dict[str, Any]) -> bool:
        policy = self.cfg["HostConfig"].get("RestartPolicy") or {}
        name, limit = policy.get("Name", "no"), int(policy.get("MaximumRetryCount") or 0)
        if st.get("StopRequested") or self.cfg["HostConfig"].get("AutoRemove"):
            return False
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure" and code != 0:
            return limit == 0 or int(st.get("RestartCount", 0)) < limit
        return False

    def run(self, ready_fd: int) -> int:
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        # The monitor ends with its container, not before. A no-op handler (not SIG_IGN) because
        # handlers revert to the default on exec while SIG_IGN would be inherited by the runtime
        # and the container; also undo any SIG_IGN we were started with (a shell's `&`).
        for sig in (
            signal.SIGTERM,
            signal.SIGINT,
            signal.SIGHUP,
            signal.SIGQUIT,
            signal.SIGUSR1,
            signal.SIGUSR2,
        ):
            signal.signal(sig, _ignore)
        self.sel.register(wake_r, selectors.EVENT_READ, ("wake", None))

        attach_path = self.home.attach_socket(self.cid)
        attach_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(attach_path))
        listener.listen(16)
        self.sel.register(listener, selectors.EVENT_READ, ("accept", listener))

        if not self.tty:
            self.make_pipes()
        self.store.update(self.cid, MonitorPid=os.getpid())
        err = self.create()
        if err is not None:
            self.store.update(self.cid, Status="exited", Error=err, MonitorPid=0, ExitCode=127)
            os.write(ready_fd, f"err {err}\n".encode())
            attach_path.unlink(missing_ok=True)
            return 1
        self.store.update(self.cid, Status="created", Pid=self.init_pid, Error="")
        try:
            os.write(ready_fd, f"ok {self.init_pid}\n".encode())
        except OSError:  # EPIPE: the CLI died before it heard; nobody will start the container
            os.close(ready_fd)
            self.abandon_start()
        else:
            os.set_blocking(ready_fd, False)
            self.sel.register(ready_fd, selectors.EVENT_READ, ("ready", None))

        backoff = 0.1
        while True:
            self.exit_status = None
            self.reap()
            while self.exit_status is None:
                for key, mask in self.sel.select(timeout=1.0):
                    kind, arg = key.data
                    if kind == "out":
                        self.on_output(key.fd, arg)
                    elif kind == "accept":
                        self.on_accept(arg)
                    elif kind == "client":
                        self.on_client(arg, mask)
                    elif kind == "ready":
                        self.on_ready(key.fd)
                    elif kind == "wake":
                        try:
                            while wake_r.recv(4096):
                                pass
                        except BlockingIOError:
                            pass
                self.reap()
                if self.exit_status is None and not os.path.exists(f"/proc/{self.init_pid}"):
                    self.exit_status = 255 << 8  # gone without a status we could collect
            self.drain_outputs()
            code = exit_code(self.exit_status)
            oom = self.oom_killed()
            st = self.store.update(
                self.cid,
                ExitCode=code,
                OOMKilled=oom,
                FinishedAt=now(),
                Pid=0,
                Running=False,
                Paused=False,
                **self.delete_oci(),
            )
            if not self.restart_wanted(code, st):
                break
            self.store.update(self.cid, Status="restarting", Restarting=True)
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
            if self.store.state(self.cid).get("StopRequested"):
                break
            err = self.create()
            if err is None:
                try:
                    self.runtime.start(self.cid)
                except Exception as e:  # noqa: BLE001 - record any start failure and stop trying
                    err = str(e)
            if err is not None:
                self.store.update(self.cid, Error=err, **self.delete_oci())
                break
            st = self.store.state(self.cid)
            self.store.update(
                self.cid,
                Status="running",
                Running=True,
                Restarting=False,
                Pid=self.init_pid,
                StartedAt=now(),
                RestartCount=int(st.get("RestartCount", 0)) + 1,
                OOMKilled=False,
            )

        # Final: record, tell attach clients, release the rootfs and network, maybe remove.
        # MonitorPid stays set until the very end: the CLI waits for it before touching the mounts.
        self.store.update(self.cid, Status="exited", Running=False, Restarting=False)
        for conn, client in list(self.clients.items()):
            try:
                conn.setblocking(True)
                conn.settimeout(10)  # a client that cannot take its backlog in 10 s loses it
                conn.sendall(bytes(client.out) + frame(EXIT, str(code).encode()))
            except OSError:
                pass
            self.drop(conn)
        listener.close()
        attach_path.unlink(missing_ok=True)
        self.log.close()
        from runtime.engine import lifecycle

        lifecycle.teardown(self.home, self.cid)
        if self.cfg["HostConfig"].get("AutoRemove") and not self.store.state(self.cid).get(
            "Removing"
        ):
            lifecycle.remove(self.home, self.cid, volumes=True)
        else:
            self.store.update(self.cid, MonitorPid=0)
        return 0


def _ignore(*_: object) -> None:
    pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    home_dir, cid, ready = args[0], args[1], int(args[2])
    # Detach: the CLI reaps this intermediate process; the grandchild is the monitor.
    if os.fork() > 0:
        os._exit(0)
    home = Home(Path(home_dir))
    log = os.open(
        home.container_dir(cid) / "monitor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
    )
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(devnull)
    from runtime.sys import PR_SET_CHILD_SUBREAPER, Sys

    Sys().prctl(PR_SET_CHILD_SUBREAPER, 1)
    try:
        return Monitor(home, cid).run(ready)
    except Exception as e:  # noqa: BLE001 - leave a trace in monitor.log and in the state
        import traceback

        traceback.print_exc()
        with contextlib.suppress(OSError):
            os.write(ready, f"err monitor: {e}\n".encode())
        with contextlib.suppress(Exception):  # best effort: we are already failing
            Store(home).update(
                cid,
                Status="exited",
                Running=False,
                MonitorPid=0,
                Error=f"monitor: {e}",
                FinishedAt=format_ns(time.time_ns()),
            )
        return 1


if __name__ == "__main__":
    sys.exit(main())
