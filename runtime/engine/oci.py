"""Drive an OCI runtime (isoproof-oci, runc) through its command line, with runc's shapes.

The engine never reaches into a runtime's internals: everything it needs (create, start, state,
kill, delete, pause, resume, exec, ps, update, events --stats) goes through this class, so any
runtime that speaks runc's CLI can be swapped in with ``$ISOPROOF_OCI_RUNTIME``.

When that runtime is our own ``isoproof-oci``, a call forks and runs its ``main`` with the same
argv instead of exec'ing a new interpreter (see :mod:`runtime.engine.forkrun`): the same process
boundary, arguments, stdio and exit status, without the interpreter start.
"""

from __future__ import annotations

import json
import subprocess

from runtime.engine import forkrun
from runtime.errors import IsoproofError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import IO, Any


class RuntimeError_(IsoproofError):
    """The OCI runtime refused or failed; carries its last stderr line."""


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no message)"


def _oci_main(args: list[str]) -> int:
    """isoproof-oci's program, run in a forked child. Imported there, not here: the monitor's
    memory stays what it was, and the engine calls the runtime only once or twice per command."""
    from runtime.oci.cli import main

    return main(args)


class OciRuntime:
    def __init__(self, binary: str, root: str) -> None:
        self.binary = binary
        self.root = root
        self.own = forkrun.is_own_runtime(binary)

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.root, *args]

    def _fork(self) -> bool:
        """Fork rather than exec: our own runtime, in a process without threads (checked at each
        call; the engine CLI and the monitor have none, and fork with threads is unsafe)."""
        return self.own and forkrun.single_threaded()

    def _run(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        argv = self.argv(*args)
        try:
            if self._fork():
                cp = forkrun.run(_oci_main, argv, timeout)
            else:
                cp = subprocess.run(
                    argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
                )
        except FileNotFoundError:
            raise RuntimeError_(f"OCI runtime {self.binary} not found") from None
        except subprocess.TimeoutExpired:
            raise RuntimeError_(f"OCI runtime {args[0]} timed out") from None
        except OSError as e:  # fork or pipe failed (EAGAIN, EMFILE)
            raise RuntimeError_(f"OCI runtime {args[0]}: {e.strerror or e}") from None
        if check and cp.returncode != 0:
            raise RuntimeError_(f"{args[0]}: {_last_line(cp.stderr or cp.stdout)}")
        return cp

    def create(
        self,
        cid: str,
        bundle: str,
        pid_file: str,
        console_socket: str | None,
        stdin: int | IO[Any] | None,
        stdout: int | IO[Any] | None,
        stderr: int | IO[Any] | None,
        log: str | None = None,
    ) -> subprocess.Popen[bytes] | forkrun.Child:
        """Start ``create``; the caller waits (it owns the stdio the container inherits).

        ``log`` is given to the runtime as ``--log``: its warnings (settings it accepts but cannot
        enforce) then go to that file rather than to the stderr it shares with the container,
        which would put them in the container's log. Errors still come on stderr."""
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        if log:
            args = ["--log", log, *args]  # a global option: before the verb
        argv = self.argv(*args, cid)
        if self._fork():
            return forkrun.spawn(_oci_main, argv, stdin, stdout, stderr)
        return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr)

    def start(self, cid: str) -> None:
        self._run("start", cid)

    def state(self, cid: str) -> dict[str, Any] | None:
        """The runtime's state JSON, or None if it does not know the container."""
        cp = self._run("state", cid, check=False)
        if cp.returncode != 0:
            return None
        try:
            return dict(json.loads(cp.stdout))
        except ValueError:
            return None

    def kill(self, cid: str, signal: str, all_: bool = False) -> bool:
        if all_ and self._run("kill", "--all", cid, signal, check=False).returncode == 0:
            return True
        # `kill --all` finds the processes in the container's cgroup; when that cgroup was removed
        # under the container, it fails (runc and isoproof-oci alike) and the container ran on:
        # `stop` then waited out its timeouts and left it running. Signal the init instead: a
        # SIGKILL to PID 1 of a PID namespace ends every process in it.
        return self._run("kill", cid, signal, check=False).returncode == 0

    def delete(self, cid: str, force: bool = False) -> bool:
        args = ["delete"] + (["--force"] if force else []) + [cid]
        return self._run(*args, check=False).returncode == 0

    def pause(self, cid: str) -> None:
        self._run("pause", cid)

    def resume(self, cid: str) -> None:
        self._run("resume", cid)

    def ps(self, cid: str) -> list[int]:
        cp = self._run("ps", "--format", "json", cid)
        return [int(p) for p in json.loads(cp.stdout or "[]") or []]

    def stats(self, cid: str) -> dict[str, Any]:
        """``events --stats``: one JSON object whose ``data`` holds cpu, memory, pids, blkio."""
        cp = self._run("events", "--stats", cid)
        data = json.loads(cp.stdout)
        return dict(data.get("data") or {})

    def exec_argv(
        self,
        cid: str,
        process_json: str,
        console_socket: str | None,
        detach: bool = False,
        pid_file: str | None = None,
    ) -> list[str]:
        args = ["exec", "--process", process_json]
        if console_socket:
            args += ["--console-socket", console_socket]
        if detach:
            args.append("--detach")
        if pid_file:
            args += ["--pid-file", pid_file]
        return self.argv(*args, cid)
