"""OCI hooks: programs the runtime runs at points of the lifecycle, the container state on stdin.

Where each kind runs (runtime-spec ``config.md#posix-platform-hooks``, as runc does it):

==================  ==========================================  =======================================
kind                when                                        where, by whom
==================  ==========================================  =======================================
prestart            create: namespaces and mounts made, before  runtime's namespaces: the ``create``
                    pivot_root (deprecated; before             process
                    createRuntime)
createRuntime       same point, after prestart                  runtime's namespaces: ``create``
createContainer     after createRuntime, before pivot_root      container's namespaces: the init
startContainer      ``start``: after the start signal, before  container's namespaces: the init
                    the user's program is executed
poststart           ``start``/``run``: after the program runs   runtime's namespaces: ``start``
poststop            ``delete``: after the container is gone    runtime's namespaces: ``delete``
==================  ==========================================  =======================================

A failing (non-zero exit, killed, timed out, not executable) prestart, createRuntime or
createContainer hook fails ``create``, which then rolls back everything (no process, cgroup,
state directory or mount is left); a failing startContainer hook fails ``start`` and the init
exits without running the program. poststart and poststop failures are warnings: the spec says
the lifecycle goes on. A hook past its ``timeout`` is killed (SIGKILL) and counts as failed.

The init runs its hooks after pivot_root too (startContainer), where the host's Python library is
out of reach: this module imports everything it uses at the top, and the init imports it first.
"""

from __future__ import annotations

import _signal as signal  # the C half of `signal`: its enum classes cost ~3 ms per CLI call
import os
import select
import time

from runtime import cjson  # json without the json package's imports (re, enum)
from runtime.errors import IsoproofError
from runtime.oci import sync

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# Kinds run around create, so the init must stop and let the parent run them.
INIT_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer")
# What a hook says on its stdout and stderr is kept for the error message, up to this many bytes.
OUTPUT_KEEP = 4096


class HookError(IsoproofError):
    """A hook failed: its kind, path and why, in one line."""


def as_dicts(hooks: dict[str, list[Any]], kinds: tuple[str, ...]) -> dict[str, list[dict]]:
    """The spec's hooks of ``kinds`` as plain dicts, to keep in state.json for later verbs (the
    bundle may have changed by then, as with runc, which keeps its config in its state)."""
    return {k: [h.to_dict() for h in hooks[k]] for k in kinds if hooks.get(k)}


def state_doc(cid: str, status: str, pid: int, bundle: str, annotations: dict[str, str],
              version: str) -> dict[str, Any]:  # fmt: skip
    """The OCI state that each hook reads on its stdin."""
    return {"ociVersion": version, "id": cid, "status": status, "pid": pid, "bundle": bundle,
            "annotations": annotations}  # fmt: skip


def run(kind: str, hooks: list[Any], state: dict[str, Any],
        warn: Callable[[str], None] | None = None) -> None:  # fmt: skip
    """Run ``hooks`` (Hook records or their dicts) one after the other, in order.

    With ``warn`` a failure is passed to it and the next hook still runs (poststart, poststop);
    without, the first failure raises :class:`HookError` and the rest do not run."""
    data = cjson.dumps(state).encode()
    for i, h in enumerate(hooks):
        if isinstance(h, dict):
            path, args, env, timeout = h["path"], h["args"], h["env"], h["timeout"]
        else:
            path, args, env, timeout = h.path, h.args, h.env, h.timeout
        try:
            run_one(path, args, env, timeout, data)
        except HookError as e:
            message = f"{kind} hook #{i} ({path}): {e}"
            if warn is None:
                raise HookError(message) from None
            warn(message)


def run_one(path: str, args: list[str], env: list[str], timeout: int | None, stdin: bytes) -> None:
    """fork + execve one hook with ``stdin`` on its stdin and its stdout/stderr captured; raise
    HookError unless it exits 0 within ``timeout`` seconds. Only ``os``, ``select``, ``signal``
    and ``time``: this runs in the init after pivot_root too."""
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    env_map = dict(e.split("=", 1) for e in env)
    pid = os.fork()
    if pid == 0:  # the hook
        try:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # Python ignores it; execve keeps that
            os.dup2(r_in, 0)
            os.dup2(w_out, 1)
            os.dup2(w_out, 2)
            os.closerange(3, 65536)  # nothing of ours (sync socket, fifo, console) leaks into it
            os.execve(path, args, env_map)
        except OSError as e:
            os.write(2, f"cannot execute: {e.strerror}".encode())
        finally:
            os._exit(127)
    os.close(r_in)
    os.close(w_out)
    # The init runs with SIGPIPE at its default (it is reset for the container's program): a hook
    # that exits without reading its stdin must not kill us.
    old = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        os.write(w_in, stdin)  # a state is far smaller than a pipe's buffer: never blocks
    except BrokenPipeError:
        pass  # its exit status tells the rest
    finally:
        signal.signal(signal.SIGPIPE, old)
    os.close(w_in)
    output = b""
    poller = select.poll()
    poller.register(r_out, select.POLLIN)
    deadline = None if timeout is None else time.monotonic() + timeout
    status = None
    reading = True
    try:
        while status is None:
            if reading and poller.poll(20):
                chunk = os.read(r_out, 65536)
                if chunk:
                    output = (output + chunk)[-OUTPUT_KEEP:]
                else:
                    reading = False  # EOF; its children may still hold it: go on waiting for it
            elif not reading:
                time.sleep(0.005)
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
            elif deadline is not None and time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise HookError(f"timed out after {timeout}s and was killed")
        while reading and poller.poll(0):
            chunk = os.read(r_out, 65536)
            output = (output + chunk)[-OUTPUT_KEEP:]
            reading = bool(chunk)
    finally:
        os.close(r_out)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        why = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        said = " ".join(output.decode(errors="replace").split())
        raise HookError(f"{why}" + (f": {said[-300:]}" if said else ""))


def init_syncs(spec: Any) -> bool:
    """Whether the init stops before pivot_root for the parent's hooks (and so needs the state
    for its own): only when the spec has any of these kinds, so a spec without hooks pays
    nothing."""
    return any(spec.hooks.get(k) for k in INIT_KINDS)


def parent_create_hooks(pfd: int, spec: Any, cid: str, init_pid: int) -> None:
    """``create``'s side of the hook point: wait for the init to reach it, run prestart and
    createRuntime in our (the runtime's) namespaces, then let the init go on with the state."""
    sync.recv(pfd, sync.CREATE_HOOKS)
    state = state_doc(cid, "creating", init_pid, spec.bundle, spec.annotations, spec.oci_version)
    for kind in ("prestart", "createRuntime"):
        run(kind, spec.hooks.get(kind, []), state)
    sync.send(pfd, sync.HOOKS_DONE, state=state)


class InitHooks:
    """The init's side: createContainer before pivot_root, startContainer before the execve."""

    def __init__(self, spec: Any, cfd: int) -> None:
        self.spec = spec
        self.cfd = cfd
        self.state: dict[str, Any] = {}

    def create(self) -> None:
        """At the hook point (mounts made, before pivot_root): the parent's hooks, then ours."""
        sync.send(self.cfd, sync.CREATE_HOOKS)
        self.state = sync.recv(self.cfd, sync.HOOKS_DONE)["state"]  # type: ignore[assignment]
        run("createContainer", self.spec.hooks.get("createContainer", []), self.state)

    def start(self, fifo_wfd: int) -> None:
        """After ``start`` opened exec.fifo, before we answer it: a failure goes to ``start``
        through the fifo (which then fails with it), and the init exits without the program."""
        hooks = self.spec.hooks.get("startContainer")
        if not hooks:
            return
        try:
            run("startContainer", hooks, dict(self.state, status="created"))
        except HookError as e:
            msg = str(e).encode()[:2000]
            os.write(fifo_wfd, b"E" + msg)
            os.write(2, b"isoproof-oci: " + msg + b"\n")
            os._exit(1)
