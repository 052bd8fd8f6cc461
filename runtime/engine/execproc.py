"""``isoproof exec``: a new process in a running container, through ``<runtime> exec``.

The process description starts from the container's own (capabilities, environment, user) and
applies ``-e``, ``-u``, ``-w`` and ``-t``. With ``-t`` the runtime hands the pty master to a console
socket of ours, and this CLI copies between its own terminal (raw mode) and the pty; without it the
runtime's process inherits our stdin (with ``-i``), stdout and stderr directly.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import tempfile
from pathlib import Path

from runtime.engine import units
from runtime.engine.home import Home, read_json, write_json
from runtime.engine.lifecycle import resolve_user
from runtime.engine.monitor import recv_fd
from runtime.engine.oci import OciRuntime
from runtime.engine.store import Store
from runtime.errors import IsoproofError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any


def _winsize(fd: int) -> bytes | None:
    import fcntl
    import termios

    try:
        return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None


def run_exec(home: Home, store: Store, cid: str, a: argparse.Namespace) -> int:
    cfg = store.config(cid)
    spec = read_json(store.dir(cid) / "bundle" / "config.json")
    proc: dict[str, Any] = dict(spec["process"])
    proc["args"] = list(a.command)
    proc["terminal"] = bool(a.tty)
    proc.pop("consoleSize", None)
    env = list(proc.get("env") or [])
    if a.tty:
        env = units.merge_env(env, ["TERM=xterm"])
    proc["env"] = units.merge_env(env, units.parse_env(a.env, dict(os.environ)))
    if a.workdir:
        proc["cwd"] = a.workdir
    if a.user:
        try:
            uid, gid, _ = resolve_user(Path(cfg["ImageRootfs"]), a.user)
        except IsoproofError as e:
            raise IsoproofError(f"Error response from daemon: {e}") from None
        proc["user"] = {"uid": uid, "gid": gid}
    rt = OciRuntime(cfg["Runtime"], cfg["OciRoot"])
    with tempfile.TemporaryDirectory(prefix="isoproof-exec-") as tmp:
        pj = os.path.join(tmp, "process.json")
        write_json(Path(pj), proc)
        if a.detach:
            cp = subprocess.run(
                rt.exec_argv(cid, pj, None, detach=True),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            if cp.returncode:
                raise IsoproofError(
                    f"Error response from daemon: {cp.stderr.strip().splitlines()[-1:]}"
                )
            return 0
        if not a.tty:
            stdin = None if a.interactive else subprocess.DEVNULL
            return subprocess.run(rt.exec_argv(cid, pj, None), stdin=stdin).returncode
        return _exec_tty(rt, cid, pj, tmp, a.interactive)


def _exec_tty(rt: OciRuntime, cid: str, pj: str, tmp: str, interactive: bool) -> int:
    """runc hands out a pty only to a detached exec: become a subreaper to wait for the process."""
    from runtime.sys import PR_SET_CHILD_SUBREAPER, Sys

    Sys().prctl(PR_SET_CHILD_SUBREAPER, 1)
    path = os.path.join(tmp, "console.sock")
    pid_file = os.path.join(tmp, "exec.pid")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    child = subprocess.Popen(
        rt.exec_argv(cid, pj, path, detach=True, pid_file=pid_file),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    listener.settimeout(0.1)
    master = -1
    try:
        while master < 0:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                if child.poll() is not None:
                    break
                continue
            with conn:
                try:
                    master = recv_fd(conn)
                except OSError:  # the runtime hung up without a pty: its stderr says why
                    break
    finally:
        listener.close()
    _out, err = child.communicate()
    if child.returncode != 0 or master < 0:
        from runtime.engine.monitor import clean_runtime_message

        lines = err.decode(errors="replace").strip().splitlines()
        msg = clean_runtime_message(lines[-1]) if lines else "exec failed"
        raise IsoproofError(f"Error response from daemon: {msg}")
    pid = int(Path(pid_file).read_text().strip())
    ws = _winsize(0) if os.isatty(0) else None
    if ws:
        import fcntl
        import termios

        fcntl.ioctl(master, termios.TIOCSWINSZ, ws)
    from runtime.engine.attach import raw_terminal

    restore = raw_terminal() if interactive and os.isatty(0) else None
    fds = [master] + ([0] if interactive else [])
    status: int | None = None
    try:
        while True:
            ready, _, _ = select.select(fds, [], [], 0.1)
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    fds.remove(0)
                    os.write(master, b"\x04")
                else:
                    os.write(master, data)
            if status is None:
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
            if status is not None and master not in select.select([master], [], [], 0.05)[0]:
                break
    finally:
        if restore:
            restore()
        os.close(master)
    if status is None:
        _, status = os.waitpid(pid, 0)
    from runtime.engine.monitor import exit_code

    return exit_code(status)
