"""The engine's orchestration: create, start, stop, kill and remove one container, as the verbs
(:mod:`runtime.engine.verbs`) ask for them. No argument parsing and no output here, but for the
one-line errors (:class:`~runtime.engine.output.Fail`) the CLI prints.

Each lifecycle action holds the container's op lock (``oplock``), re-reads the real status
(:meth:`Engine.state`), acts and saves. What a verb does not use it does not import: the image
store, the OCI runtime's wrapper, the attach socket and the host resources
(:mod:`runtime.engine.lifecycle`) are imported where they are needed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from runtime import statefile
from runtime.engine import units
from runtime.engine.home import Home, default_runtime, locked, now, parse_time
from runtime.engine.output import Fail, daemon, exec_code
from runtime.engine.store import (
    DamagedContainer,
    NoSuchContainer,
    Store,
    initial_state,
    monitor_alive,
    pid_alive,
)
from runtime.errors import IsoproofError, NotFoundError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    import argparse
    import socket
    from typing import Any

    from runtime.engine.images import ImageStore

STOP_TIMEOUT = 10
START_RACE_GRACE = 2.0  # seconds
RUNNING = ("running", "paused", "restarting")
NAME_PATTERN = r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$"
ADJECTIVES = ["brave", "calm", "eager", "fond", "keen", "lucid", "proud", "quiet", "sharp", "wise"]
NOUNS = [
    "curie",
    "dijkstra",
    "hopper",
    "knuth",
    "lovelace",
    "noether",
    "ritchie",
    "thompson",
    "turing",
]


class Engine:
    def __init__(self) -> None:
        from runtime.engine.damage import register_home

        self.home = Home().ensure()
        self.store = Store(self.home)
        self._images: ImageStore | None = None
        register_home(self.home)

    @property
    def images(self) -> ImageStore:
        # Imported on first use: only create/run, inspect and the image verbs need the store.
        if self._images is None:
            from runtime.engine.images import ImageStore

            self._images = ImageStore(self.home)
        return self._images

    # -- helpers -------------------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        return self.store.resolve(ref)

    def state(self, cid: str) -> dict[str, Any]:
        """The container's state, made honest (a dead monitor); a ``--rm`` container that nobody
        is left to remove is removed here, and reported gone."""
        from runtime.engine import damage
        from runtime.engine.status import repair

        st = repair(self.home, self.store, cid)
        cfg = self.store.config(cid)
        if damage.abandoned_autoremove(self.store, cid, cfg, st):
            damage.scrub(self.home, cid, cfg)
            raise NoSuchContainer(cid)
        return st

    def runtime(self, cid: str) -> Any:
        from runtime.engine.oci import OciRuntime

        cfg = self.store.config(cid)
        return OciRuntime(cfg["Runtime"], cfg["OciRoot"])

    def oplock(self, cid: str) -> Any:
        """Serialises lifecycle verbs on one container (state.json has its own, shorter lock)."""
        return locked(self.store.dir(cid) / "oplock")

    def wait_exit(self, cid: str, timeout: float | None) -> bool:
        """Wait until the container is no longer running (its monitor recorded the exit)."""
        import select

        from runtime.engine.attach import recv

        deadline = None if timeout is None else time.monotonic() + timeout
        sock = self.connect(cid, 0)
        try:
            while True:
                try:
                    st = self.store.state(cid)
                except NotFoundError:
                    return True  # removed (--rm) once it exited
                if st["Status"] not in RUNNING or not monitor_alive(st, cid):
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if sock is not None:
                    r, _, _ = select.select([sock], [], [], min(left or 1.0, 1.0))
                    if r and not recv(sock):
                        sock.close()
                        sock = None
                else:
                    time.sleep(0.02)
        finally:
            if sock is not None:
                sock.close()

    def wait_monitor_gone(self, cid: str, timeout: float = 15, monitor: int = 0) -> None:
        """Wait until the monitor is done and its process has exited. It writes MonitorPid 0 (or
        removes a --rm container, then deletes the files it moved aside) just before it exits:
        wait for the process too, so that ``rm`` leaves no monitor behind, not even one that is
        still exiting. ``monitor``: its pid if the caller saw it before it could be cleared."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                st = self.store.state(cid)
            except NotFoundError:
                break
            if not monitor_alive(st, cid):
                break
            monitor = int(st.get("MonitorPid") or 0)
            time.sleep(0.02)
        while pid_alive(monitor, cid) and time.monotonic() < deadline:
            time.sleep(0.02)

    # -- create / start -------------------------------------------------------------------------------

    def create(self, a: argparse.Namespace, owner: bool = False) -> str:
        """Record a new container. ``owner``: the caller will start it (``run``); if it dies
        first, a ``--rm`` container is removed by the next command that sees it."""
        import random
        import re

        from runtime.engine.flags import host_config
        from runtime.engine.images import NoSuchImage

        hc = host_config(a)
        try:
            img = self.images.get(a.image)
        except NoSuchImage:
            raise Fail(f"Error: No such image: {a.image}", 125) from None
        icfg = img.config
        entry = list(icfg.get("Entrypoint") or [])
        cmd = list(a.command) if a.command else list(icfg.get("Cmd") or [])
        argv = entry + cmd
        if not argv:
            raise daemon("No command specified", 125)
        for key in ("PidMode", "IpcMode", "UTSMode", "NetworkMode"):
            mode = hc.get(key) or ""
            if mode.startswith("container:"):
                try:
                    self.resolve(mode.split(":", 1)[1])
                except NotFoundError:
                    raise daemon(f"No such container: {mode.split(':', 1)[1]}", 125) from None
        tty_size = None
        if a.tty:
            try:
                sz = os.get_terminal_size(sys.stdout.fileno())
                tty_size = [sz.lines, sz.columns]
            except OSError:
                tty_size = None
        env = units.merge_env(
            list(icfg.get("Env") or []),
            ([f"HOSTNAME={a.hostname}"] if a.hostname else [])
            + (["TERM=xterm"] if a.tty else [])
            + units.parse_env(a.env, dict(os.environ)),
        )
        cid = os.urandom(32).hex()
        mounts: list[dict[str, Any]] = []
        for spec in a.volume:
            src, dst, ro = units.parse_volume(spec)
            anonymous = False
            if not src:
                src, anonymous = str(self.home.volumes / os.urandom(16).hex()), True
            elif not src.startswith("/"):
                if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", src):
                    raise units.FlagError(f"invalid volume name {src!r}")
                src = str(self.home.volumes / src)
            mounts.append(
                {"Source": src, "Destination": dst, "ReadOnly": ro, "Anonymous": anonymous}
            )
        hc["Mounts"] = mounts
        with locked(self.home.names_lock):
            names = self.store.names()
            if a.name:
                if not re.match(NAME_PATTERN, a.name):
                    raise daemon(
                        f"Invalid container name ({a.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                        125,
                    )
                name = a.name.lstrip("/")
                if name in names:
                    raise daemon(
                        f'Conflict. The container name "/{name}" is already in use by container '
                        f'"{names[name]}". You have to remove (or rename) that container to be able '
                        "to reuse that name.",
                        125,
                    )
            else:
                name = ""
                while not name or name in names:
                    name = (
                        f"{random.choice(ADJECTIVES)}_{random.choice(NOUNS)}{random.randint(0, 99)}"
                    )
            for m in mounts:
                if not os.path.exists(m["Source"]):
                    os.makedirs(m["Source"], exist_ok=True)
            from runtime.engine.lifecycle import cgroups_path

            cfg = {
                "Id": cid,
                "Name": f"/{name}",
                "Created": now(),
                "Path": argv[0],
                "Args": argv[1:],
                "Image": img.id,
                "ImageRootfs": str(img.rootfs),
                "Runtime": default_runtime(),
                "OciRoot": str(self.home.oci_root),
                "CgroupsPath": cgroups_path(cid),
                "LogPath": str(self.store.dir(cid) / "container.log"),
                "Config": {
                    "Hostname": a.hostname or cid[:12],
                    "Env": env,
                    "Cmd": cmd,
                    "Entrypoint": entry or None,
                    "Image": a.image,
                    "Tty": bool(a.tty),
                    "OpenStdin": bool(a.interactive),
                    "StdinOnce": bool(a.interactive) and not a.detach,
                    "AttachStdin": bool(a.interactive) and not a.detach,
                    "WorkingDir": a.workdir or icfg.get("WorkingDir") or "",
                    "User": a.user or icfg.get("User") or "",
                    "ConsoleSize": tty_size,
                },
                "HostConfig": hc,
            }
            cdir = self.store.dir(cid)
            # Made aside and renamed into place: a kill -9 leaves a whole container or none,
            # plus at most this directory, which `system prune` sweeps once its pid is dead.
            tmp = self.home.containers / f".new-{os.getpid()}-{cid}"
            tmp.mkdir(parents=True)
            statefile.write(tmp / "config.json", cfg)
            st = initial_state()
            if owner:
                from runtime.engine.damage import me_as_owner

                st["Owner"] = me_as_owner()
            statefile.write(tmp / "state.json", st)
            os.rename(tmp, cdir)
        return cid

    def start(self, cid: str, attach: bool = False, stdin: bool = False) -> int | None:
        """Start (or restart after exit) and, with ``attach``, stream until exit; returns its code."""
        from runtime.engine import lifecycle

        with self.oplock(cid):
            st = self.state(cid)
            if st["Status"] in RUNNING:
                return None
            if st["Status"] == "created" and monitor_alive(st, cid):
                # A start that crashed between the runtime's create and start left this behind
                # (we hold the op lock, so no start is in progress): discard it and start afresh.
                self.store.update(cid, StopRequested=True)
                self.runtime(cid).delete(cid, force=True)
            self.wait_monitor_gone(cid)  # a previous run's monitor may still be tearing down
            cfg = self.store.config(cid)
            from runtime.engine.damage import me_as_owner

            self.store.update(
                cid, StopRequested=False, Error="", OOMKilled=False, Owner=me_as_owner()
            )
            try:
                network = lifecycle.prepare(self.home, self.store, cid)
            except IsoproofError as e:
                msg = str(e)
                if not msg.startswith("Error"):
                    msg = f"Error response from daemon: {msg}"
                self.store.update(cid, Error=msg)
                raise Fail(msg) from None
            try:
                pid, ready = lifecycle.spawn_monitor(self.home, cid)
            except IsoproofError as e:
                lifecycle.teardown(self.home, cid)
                raise Fail(str(e), exec_code(str(e))) from None
            # Until we say "started" on ``ready``, the monitor takes our end closing (we died) for
            # a start that will never come: it kills the created container and winds it up.
            try:
                sock = None
                if attach:
                    flags = 0
                    if stdin and cfg["Config"].get("OpenStdin"):
                        flags = 1 | 2  # send stdin; our EOF closes the container's stdin
                    sock = self.connect(cid, flags)
                self.store.update(
                    cid,
                    Status="running",
                    Running=True,
                    Paused=False,
                    Pid=pid,
                    StartedAt=now(),
                    ExitCode=0,
                    Network=network,
                )
                rt = self.runtime(cid)
                try:
                    rt.start(cid)
                    with contextlib.suppress(OSError):
                        ready.send(b"s")
                except IsoproofError as e:
                    # A process that exits at once can be reaped and deleted by the monitor while the
                    # runtime's `start` still looks at it, and then `start` fails although it worked:
                    # give the monitor a moment to record such an exit before calling it a failure.
                    self.wait_exit(cid, START_RACE_GRACE)
                    if self._ran_anyway(cid):
                        if sock is None:
                            return None
                        return self.stream(cid, sock, False, bool(cfg["Config"].get("Tty")))
                    with contextlib.suppress(NotFoundError):
                        self.store.update(cid, StopRequested=True)
                        rt.kill(cid, "KILL")
                        self.wait_monitor_gone(cid)
                        self.store.update(cid, Status="exited", Running=False, Error=str(e))
                    raise Fail(f"Error response from daemon: {e}", exec_code(str(e))) from None
            finally:
                ready.close()
        if sock is None:
            return None
        return self.stream(
            cid,
            sock,
            stdin and bool(cfg["Config"].get("OpenStdin")),
            bool(cfg["Config"].get("Tty")),
        )

    def _ran_anyway(self, cid: str) -> bool:
        """After a failed ``start``: did the monitor see the process run and exit?"""
        try:
            st = self.store.state(cid)
        except NotFoundError:
            return True  # --rm: the monitor removed it after it ran
        return (
            st["Status"] == "exited"
            or parse_time(st["FinishedAt"]) >= parse_time(st["StartedAt"]) > 0
        )

    # -- attach ---------------------------------------------------------------------------------------

    def connect(self, cid: str, flags: int) -> socket.socket | None:
        """The container's attach socket (:mod:`runtime.engine.attach`), None if no monitor."""
        from runtime.engine.attach import connect

        return connect(self.home, cid, flags)

    def stream(self, cid: str, sock: socket.socket, stdin: bool, tty: bool) -> int:
        """Copy stdin in and the container's output out until it exits; its exit code."""
        from runtime.engine.attach import stream

        return stream(self, cid, sock, stdin, tty)

    # -- stop / kill / remove -------------------------------------------------------------------------

    def stop(self, cid: str, timeout: int) -> None:
        with self.oplock(cid):
            st = self.state(cid)
            if st["Status"] not in RUNNING:
                return
            self.store.update(cid, StopRequested=True)
            rt = self.runtime(cid)
            if st["Status"] == "restarting":
                self.wait_monitor_gone(cid, timeout + 5)
                return
            rt.kill(cid, "TERM")
            if st["Status"] == "paused":
                _resume_quietly(rt, cid)
            if not self.wait_exit(cid, timeout):
                rt.kill(cid, "KILL", all_=True)
                self.wait_exit(cid, 30)
            self.wait_monitor_gone(cid)

    def kill(self, cid: str, sig: str, ref: str) -> None:
        with self.oplock(cid):
            st = self.state(cid)
            if st["Status"] not in RUNNING:
                raise daemon(f"Cannot kill container: {ref}: Container {cid} is not running")
            self.store.update(cid, StopRequested=True)
            rt = self.runtime(cid)
            if not rt.kill(cid, sig):
                raise daemon(
                    f"Cannot kill container: {ref}: invalid signal or container gone: {sig}"
                )
            if st["Status"] == "paused":
                _resume_quietly(rt, cid)
            if sig.upper().removeprefix("SIG") in ("KILL", "9"):
                self.wait_exit(cid, 10)

    def remove(self, cid: str, ref: str, force: bool, volumes: bool) -> None:
        from runtime.engine import lifecycle

        with self.oplock(cid):
            try:
                st = self.state(cid)
            except DamagedContainer:
                if not force:
                    raise
                from runtime.engine import damage

                # Its records cannot say what it holds: ask every other source (monitor, OCI
                # state, cgroup, netns and its processes, lease, mounts) and remove it all.
                damage.scrub(self.home, cid, damage.config_or_none(self.store, cid))
                return
            if st["Status"] in RUNNING and not force:
                raise daemon(
                    f"You cannot remove a {st['Status']} container {cid}. Stop the container "
                    "before attempting removal or force remove"
                )
            # Running, or created by a start that crashed before `start`: kill the init, and its
            # monitor deletes the runtime's container (we do not: one delete per removal).
            if st["Status"] in RUNNING or monitor_alive(st, cid):
                self.store.update(cid, StopRequested=True, Removing=True)
                rt = self.runtime(cid)
                rt.kill(cid, "KILL", all_=True)
                if st["Status"] == "paused":
                    _resume_quietly(rt, cid)
                self.wait_exit(cid, 15)
            self.wait_monitor_gone(cid, monitor=int(st.get("MonitorPid") or 0))
            lifecycle.remove(self.home, cid, volumes)  # deletes only what no monitor did


def _resume_quietly(rt: Any, cid: str) -> None:
    """Thaw after signalling, so a frozen process can act on the signal (it may be thawed already)."""
    with contextlib.suppress(IsoproofError):
        rt.resume(cid)
