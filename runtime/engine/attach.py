"""The client end of a monitor's attach socket: connect, then copy stdin in and the monitor's
frames out until the exit frame (``run`` in the foreground, ``start -a``, ``attach``).

A frame is one byte of stream (1 stdout, 2 stderr, 3 the exit code), a big-endian 4-byte length
and the payload. The first byte a client sends says what it wants: 1 send stdin, 2 our EOF
closes the container's stdin. Imported only by the verbs that attach or wait for an exit.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import sys

from runtime.errors import NotFoundError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from runtime.engine.engine import Engine
    from runtime.engine.home import Home


def connect(home: Home, cid: str, flags: int) -> socket.socket | None:
    """A connection to the container's monitor, or None when no monitor listens (it exited)."""
    path = home.attach_socket(cid)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        s.sendall(bytes([flags]))
    except OSError:
        s.close()
        return None
    return s


def recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def stream(e: Engine, cid: str, sock: socket.socket, stdin: bool, tty: bool) -> int:
    """Copy stdin to the attach socket and frames to stdout/stderr until the exit frame."""
    code: int | None = None
    buf = b""
    fds: list[Any] = [sock]
    if stdin:
        fds.append(sys.stdin.fileno())
    restore = raw_terminal() if tty and stdin and os.isatty(0) else None
    old_handlers: dict[signal.Signals, Any] = {}
    try:
        rt = e.runtime(cid)
    except NotFoundError:  # --rm and already gone: nothing left to forward signals to
        rt = None
    if rt is not None and not tty:  # docker's --sig-proxy

        def forward(signum: int, _frame: Any) -> None:
            rt.kill(cid, str(signum))

        for sig in (signal.SIGINT, signal.SIGTERM):
            old_handlers[sig] = signal.signal(sig, forward)
    try:
        while code is None:
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if sys.stdin.fileno() in ready and stdin:
                data = os.read(0, 65536)
                if not data:
                    fds.remove(sys.stdin.fileno())
                    sock.shutdown(socket.SHUT_WR)
                else:
                    sock.sendall(data)
            if sock in ready:
                data = recv(sock)
                if not data:
                    break
                buf += data
                while len(buf) >= 5:
                    kind, length = struct.unpack(">BI", buf[:5])
                    if len(buf) < 5 + length:
                        break
                    payload, buf = buf[5 : 5 + length], buf[5 + length :]
                    if kind == 3:
                        code = int(payload or b"0")
                    else:
                        os.write(1 if kind == 1 else 2, payload)
    finally:
        sock.close()
        if restore:
            restore()
        for sig, h in old_handlers.items():
            signal.signal(sig, h)
    if code is None:  # the stream ended without an exit frame: ask the state
        try:
            e.wait_exit(cid, 10)
            code = int(e.store.state(cid).get("ExitCode") or 0)
        except NotFoundError:
            code = 0
    return code


def raw_terminal() -> Callable[[], None] | None:
    import termios
    import tty

    try:
        old = termios.tcgetattr(0)
    except termios.error:
        return None
    tty.setraw(0)
    return lambda: termios.tcsetattr(0, termios.TCSADRAIN, old)
