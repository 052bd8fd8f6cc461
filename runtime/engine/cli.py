"""``isoproof``: docker's verbs, flags, output and exit codes on top of an OCI runtime.

Exit codes follow docker: 0 success, 1 a daemon-side error (``Error response from daemon: ...``),
125 a flag error or a failed ``run``/``create``, 126/127 a command the container cannot run or find,
otherwise the container's own exit code (``run``, ``start -a``, ``attach``, ``exec``, ``wait``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from runtime import statefile
from runtime.engine import units
from runtime.engine.home import Home, default_runtime, locked, now, parse_time
from runtime.engine.images import ImageStore, NoSuchImage
from runtime.engine.store import (
    DamagedContainer,
    NoSuchContainer,
    Store,
    initial_state,
    monitor_alive,
    pid_alive,
)
from runtime.errors import IsoproofError, NotFoundError

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
STOP_TIMEOUT = 10
START_RACE_GRACE = 2.0  # seconds
RUNNING = ("running", "paused", "restarting")
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


class Fail(IsoproofError):
    """A one-line error with an explicit exit code."""

    def __init__(self, msg: str, code: int = 1) -> None:
        super().__init__(msg)
        self.exit_code = code


def daemon(msg: str, code: int = 1) -> Fail:
    return Fail(f"Error response from daemon: {msg}", code)


class Parser(argparse.ArgumentParser):
    """argparse that reports flag errors as one line and exits 125, like docker."""

    def error(self, message: str) -> NoReturn:
        raise units.FlagError(f"{message}. See '{self.prog} --help'")


class Engine:
    def __init__(self) -> None:
        from runtime.engine.damage import register_home

        self.home = Home().ensure()
        self.store = Store(self.home)
        self.images = ImageStore(self.home)
        register_home(self.home)

    # -- helpers -------------------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        return self.store.resolve(ref)

    def state(self, cid: str) -> dict[str, Any]:
        """The container's state, made honest (a dead monitor); a ``--rm`` container that nobody
        is left to remove is removed here, and reported gone."""
        from runtime.engine import damage
        from runtime.engine.lifecycle import repair

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
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = self._connect(cid, 0)
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
                    if r and not _recv(sock):
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

    def _connect(self, cid: str, flags: int) -> socket.socket | None:
        path = self.home.attach_socket(cid)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(path))
            s.sendall(bytes([flags]))
        except OSError:
            s.close()
            return None
        return s

    # -- create / start ------------------------------------------------------------------------------

    def create(self, a: argparse.Namespace, owner: bool = False) -> str:
        """Record a new container. ``owner``: the caller will start it (``run``); if it dies
        first, a ``--rm`` container is removed by the next command that sees it."""
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
                if not NAME_RE.match(a.name):
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
                    sock = self._connect(cid, flags)
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

    def stream(self, cid: str, sock: socket.socket, stdin: bool, tty: bool) -> int:
        """Copy stdin to the attach socket and frames to stdout/stderr until the exit frame."""
        code: int | None = None
        buf = b""
        fds: list[Any] = [sock]
        if stdin:
            fds.append(sys.stdin.fileno())
        restore = _raw_terminal() if tty and stdin and os.isatty(0) else None
        old_handlers: dict[signal.Signals, Any] = {}
        try:
            rt = self.runtime(cid)
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
                    data = _recv(sock)
                    if not data:
                        break
                    buf += data
                    while len(buf) >= 5:
                        stream, length = struct.unpack(">BI", buf[:5])
                        if len(buf) < 5 + length:
                            break
                        payload, buf = buf[5 : 5 + length], buf[5 + length :]
                        if stream == 3:
                            code = int(payload or b"0")
                        else:
                            os.write(1 if stream == 1 else 2, payload)
        finally:
            sock.close()
            if restore:
                restore()
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
        if code is None:  # the stream ended without an exit frame: ask the state
            try:
                self.wait_exit(cid, 10)
                code = int(self.store.state(cid).get("ExitCode") or 0)
            except NotFoundError:
                code = 0
        return code

    # -- stop / kill ----------------------------------------------------------------------------------

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


# -- flag conversion ------------------------------------------------------------------------------


def _resume_quietly(rt: Any, cid: str) -> None:
    """Thaw after signalling, so a frozen process can act on the signal (it may be thawed already)."""
    with contextlib.suppress(IsoproofError):
        rt.resume(cid)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def exec_code(msg: str) -> int:
    low = msg.lower()
    if any(
        k in low
        for k in (
            "executable file not found",
            "no such file or directory",
            "no such executable",
            "command not found",
        )
    ):
        return 127
    if "permission denied" in low:
        return 126
    return 125


def device_number(path: str, flag: str) -> tuple[int, int]:
    import stat

    try:
        st = os.stat(path)
    except OSError:
        raise daemon(
            f'{flag}: error gathering device information for "{path}": no such device', 125
        ) from None
    if not stat.S_ISBLK(st.st_mode):
        raise daemon(f"{flag}: {path} is not a block device", 125)
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def host_config(a: argparse.Namespace) -> dict[str, Any]:
    """Validate every resource/namespace flag before anything is created."""
    hc: dict[str, Any] = {}
    mem = units.parse_memory(a.memory) if a.memory else 0
    swap = units.parse_memory_swap(a.memory_swap) if a.memory_swap else 0
    units.check_memory(mem or None, swap or None)
    hc["Memory"], hc["MemorySwap"] = mem, swap
    hc["CpuShares"] = units.parse_cpu_shares(a.cpu_shares) if a.cpu_shares is not None else 0
    if a.cpus is not None:
        if a.cpu_quota is not None or a.cpu_period is not None:
            # docker's words: --cpus is a shorthand for the pair, so both at once is ambiguous
            raise daemon(
                "Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set", 125
            )
        quota, period = units.parse_cpus(a.cpus)
        hc["NanoCpus"] = int(float(a.cpus) * 1e9)
        hc["CpuQuota"], hc["CpuPeriod"] = quota, period
    else:
        hc["CpuQuota"] = units.parse_cpu_quota(a.cpu_quota) if a.cpu_quota is not None else 0
        hc["CpuPeriod"] = units.parse_cpu_period(a.cpu_period) if a.cpu_period is not None else 0
    hc["CpusetCpus"] = units.parse_cpuset(a.cpuset_cpus) if a.cpuset_cpus else ""
    hc["PidsLimit"] = units.parse_pids_limit(a.pids_limit) if a.pids_limit is not None else 0
    if hc["PidsLimit"] == -1:
        hc["PidsLimit"] = 0
    for field, flag, items, parse in (
        ("BlkioDeviceReadBps", "--device-read-bps", a.device_read_bps, units.parse_device_bps),
        ("BlkioDeviceWriteBps", "--device-write-bps", a.device_write_bps, units.parse_device_bps),
        ("BlkioDeviceReadIOps", "--device-read-iops", a.device_read_iops, units.parse_device_iops),
        (
            "BlkioDeviceWriteIOps",
            "--device-write-iops",
            a.device_write_iops,
            units.parse_device_iops,
        ),
    ):
        entries = []
        for item in items:
            path, rate = parse(item, flag)
            major, minor = device_number(path, flag)
            entries.append({"Path": path, "Rate": rate, "Major": major, "Minor": minor})
        hc[field] = entries
    net = a.network or "bridge"
    if net == "default":
        net = "bridge"
    if net not in ("none", "host", "bridge") and not net.startswith("container:"):
        raise daemon(f"network {net} not found", 125)
    hc["NetworkMode"] = net
    for key, flag, value in (
        ("IpcMode", "--ipc", a.ipc),
        ("PidMode", "--pid", a.pid),
        ("UTSMode", "--uts", a.uts),
    ):
        v = value or ""
        if v not in ("", "host", "private", "shareable") and not (
            v.startswith("container:") and len(v) > 10
        ):
            raise units.FlagError(f"invalid {flag} value {v!r}: want host or container:NAME")
        hc[key] = "" if v in ("private", "shareable") else v
    if hc["UTSMode"] == "host" and a.hostname:
        raise daemon("Conflicting options: hostname and the UTS mode", 125)
    hc["CgroupnsMode"] = units.parse_cgroupns(a.cgroupns or "private")
    hc["UsernsMode"] = a.userns or ""
    hc["UsernsRemap"] = units.parse_userns(a.userns or "")
    name, count = units.parse_restart(a.restart or "no")
    if a.rm and name != "no":
        raise daemon("Conflicting options: --restart and --rm", 125)
    hc["RestartPolicy"] = {"Name": name, "MaximumRetryCount": count}
    hc["AutoRemove"] = bool(a.rm)
    hc["Binds"] = list(a.volume)
    hc["SecurityOpt"] = list(a.security_opt)
    hc["NoNewPrivileges"] = units.parse_no_new_privileges(a.security_opt)
    return hc


# -- argument parsing ---------------------------------------------------------------------------


def add_container_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--help", action="help")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("--rm", action="store_true")
    p.add_argument("--name")
    p.add_argument("-h", "--hostname")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-v", "--volume", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("-c", "--cpu-shares")
    p.add_argument("--cpus")
    p.add_argument("--cpu-quota")
    p.add_argument("--cpu-period")
    p.add_argument("--cpuset-cpus")
    p.add_argument("-m", "--memory")
    p.add_argument("--memory-swap")
    p.add_argument("--pids-limit")
    p.add_argument("--device-read-bps", action="append", default=[])
    p.add_argument("--device-write-bps", action="append", default=[])
    p.add_argument("--device-read-iops", action="append", default=[])
    p.add_argument("--device-write-iops", action="append", default=[])
    p.add_argument("--network", "--net")
    p.add_argument("--userns")
    p.add_argument("--cgroupns")
    p.add_argument("--security-opt", action="append", default=[])
    p.add_argument("--ipc")
    p.add_argument("--pid")
    p.add_argument("--uts")
    p.add_argument("--restart")
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)


def split_at_image(p: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], list[str]]:
    """Options end at the first positional (the image): what follows is the container's command."""
    takes_value = {}
    for action in p._actions:
        for opt in action.option_strings:
            takes_value[opt] = action.nargs != 0
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            return argv[:i], argv[i + 1 :]
        if tok.startswith("--"):
            if "=" not in tok and takes_value.get(tok, False):
                i += 1
        elif tok.startswith("-") and len(tok) > 1:
            for j, ch in enumerate(tok[1:], start=1):
                if takes_value.get(f"-{ch}", False):
                    if j == len(tok) - 1:
                        i += 1
                    break
        else:
            return argv[: i + 1], argv[i + 1 :]
        i += 1
    return argv, []


def parse_container_args(p: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    opts, command = split_at_image(p, argv)
    a = p.parse_args(opts)
    a.command = list(a.command) + command
    return a


# -- verbs ------------------------------------------------------------------------------------------


def each(refs: list[str], fn: Callable[[str], None]) -> int:
    """docker's multi-target verbs: act on each, report errors, exit 1 if any failed."""
    rc = 0
    for ref in refs:
        try:
            fn(ref)
        except IsoproofError as e:
            print(str(e), file=sys.stderr)
            rc = 1
    return rc


def cmd_create(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof create", add_help=False)
    add_container_flags(p)
    a = parse_container_args(p, argv)
    print(e.create(a))
    return 0


def cmd_run(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof run", add_help=False)
    add_container_flags(p)
    a = parse_container_args(p, argv)
    cid = e.create(a, owner=True)
    try:
        if a.detach:
            e.start(cid)
            print(cid)
            return 0
        code = e.start(cid, attach=True, stdin=a.interactive)
    except Fail as err:
        if a.rm:
            _quiet_remove(e, cid)
        err.exit_code = 125 if err.exit_code == 1 else err.exit_code
        raise
    if a.rm:
        e.wait_monitor_gone(cid)
        _quiet_remove(e, cid)
    return int(code or 0)


def _quiet_remove(e: Engine, cid: str) -> None:
    try:
        if e.store.dir(cid).exists():
            e.remove(cid, cid, force=True, volumes=True)
    except (NotFoundError, FileNotFoundError):
        pass


def cmd_start(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof start")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    if a.attach:
        if len(a.containers) > 1:
            raise Fail("Error: you cannot start and attach multiple containers at once")
        cid = e.resolve(a.containers[0])
        code = e.start(cid, attach=True, stdin=a.interactive)
        return int(code or 0)

    def one(ref: str) -> None:
        e.start(e.resolve(ref))
        print(ref)

    return each(a.containers, one)


def cmd_stop(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof stop")
    p.add_argument("-t", "--time", "--timeout", type=int, default=None)
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)

    def one(ref: str) -> None:
        e.stop(e.resolve(ref), STOP_TIMEOUT if a.time is None else a.time)
        print(ref)

    return each(a.containers, one)


def cmd_restart(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof restart")
    p.add_argument("-t", "--time", "--timeout", type=int, default=None)
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)

    def one(ref: str) -> None:
        cid = e.resolve(ref)
        e.stop(cid, STOP_TIMEOUT if a.time is None else a.time)
        e.wait_monitor_gone(cid)
        e.start(cid)
        print(ref)

    return each(a.containers, one)


def cmd_kill(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof kill")
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    sig = a.signal.upper()
    if not sig.isdigit() and not hasattr(
        signal.Signals, sig if sig.startswith("SIG") else f"SIG{sig}"
    ):
        raise Fail(f"invalid signal: {a.signal}")

    def one(ref: str) -> None:
        e.kill(e.resolve(ref), sig.removeprefix("SIG"), ref)
        print(ref)

    return each(a.containers, one)


def cmd_pause(e: Engine, argv: list[str], resume: bool = False) -> int:
    p = Parser(prog="isoproof unpause" if resume else "isoproof pause")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)

    def one(ref: str) -> None:
        cid = e.resolve(ref)
        with e.oplock(cid):
            st = e.state(cid)
            if resume:
                if st["Status"] != "paused":
                    raise daemon(f"Container {cid} is not paused")
                e.runtime(cid).resume(cid)
                e.store.update(cid, Status="running", Paused=False)
            else:
                if st["Status"] == "paused":
                    raise daemon(f"Container {cid} is already paused")
                if st["Status"] != "running":
                    raise daemon(f"Container {cid} is not running")
                e.runtime(cid).pause(cid)
                e.store.update(cid, Status="paused", Paused=True)
        print(ref)

    return each(a.containers, one)


def cmd_attach(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof attach")
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("--sig-proxy", default="true")
    p.add_argument("container")
    a = p.parse_args(argv)
    cid = e.resolve(a.container)
    st = e.state(cid)
    if st["Status"] not in RUNNING:
        raise Fail("You cannot attach to a stopped container, start it first")
    if st["Status"] == "paused":
        raise Fail("You cannot attach to a paused container, unpause it first")
    cfg = e.store.config(cid)
    stdin = not a.no_stdin and bool(cfg["Config"].get("OpenStdin"))
    flags = 1 if stdin else 0
    if stdin and cfg["Config"].get("StdinOnce"):
        flags |= 2
    sock = e._connect(cid, flags)
    if sock is None:
        raise Fail("You cannot attach to a stopped container, start it first")
    return e.stream(cid, sock, stdin, bool(cfg["Config"].get("Tty")))


def cmd_exec(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof exec")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-u", "--user")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    opts, command = split_at_image(p, argv)
    a = p.parse_args(opts)
    a.command = list(a.command) + command
    if not a.command:
        raise units.FlagError("exec requires at least 2 arguments")
    cid = e.resolve(a.container)
    st = e.state(cid)
    if st["Status"] == "paused":
        raise daemon(f"Container {cid} is paused, unpause the container before exec")
    if st["Status"] != "running":
        raise daemon(f"Container {cid} is not running")
    from runtime.engine import execproc

    return execproc.run_exec(e.home, e.store, cid, a)


def cmd_logs(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof logs")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("container")
    a = p.parse_args(argv)
    cid = e.resolve(a.container)
    since = _time_arg(a.since, "--since") if a.since else 0.0
    until = _time_arg(a.until, "--until") if a.until else 0.0
    tail = -1
    if a.tail != "all":
        try:
            tail = int(a.tail)
        except ValueError:
            raise units.FlagError(f'invalid argument "{a.tail}" for "-n, --tail" flag') from None
    path = e.store.dir(cid) / "container.log"

    def show(line: bytes) -> None:
        try:
            rec = json.loads(line)
        except ValueError:
            return
        t = parse_time(rec.get("time", ""))
        if since and t < since or until and t > until:
            return
        text = rec.get("log", "")
        if a.timestamps:
            text = f"{rec.get('time')} {text}"
        out = sys.stdout if rec.get("stream") != "stderr" else sys.stderr
        out.write(text)
        out.flush()

    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return 0
    with f:
        lines = f.readlines()
        partial = b""
        if lines and not lines[-1].endswith(b"\n"):
            partial = lines.pop()
        if tail >= 0:
            lines = lines[-tail:] if tail else []
        for ln in lines:
            show(ln)
        if not a.follow:
            return 0
        while True:
            chunk = f.readline()
            if chunk:
                partial += chunk
                if partial.endswith(b"\n"):
                    show(partial)
                    partial = b""
                continue
            st = e.store.state(cid)
            if st["Status"] not in RUNNING or not monitor_alive(st, cid):
                rest = f.read()
                for ln in (partial + rest).splitlines(keepends=True):
                    show(ln)
                return 0
            time.sleep(0.05)


def _time_arg(text: str, flag: str) -> float:
    try:
        return time.time() - units.parse_duration(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_time(text)
    except ValueError:
        raise units.FlagError(f'invalid value for "{flag}": {text}') from None


def cmd_rm(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof rm")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    from runtime.engine.damage import sweep_temp

    sweep_temp(e.home)

    def one(ref: str) -> None:
        try:
            cid = e.resolve(ref)
        except NoSuchContainer:
            if not (a.force and _remove_leftovers(e, ref)):
                raise
            print(ref)
            return
        e.remove(cid, ref, a.force, a.volumes)
        print(ref)

    return each(a.containers, one)


def _remove_leftovers(e: Engine, ref: str) -> bool:
    """``rm -f ID`` of a container whose directory is gone: remove what still holds its ID (a
    unique prefix of at least 12 characters names it, as the netns does)."""
    from runtime.engine import damage

    if len(ref) < 12 or not all(ch in "0123456789abcdef" for ch in ref):
        return False
    hits = [cid for cid in damage.orphans(e.home, e.store) if cid.startswith(ref[:64])]
    hits += [c for c in damage.orphans(e.home, e.store) if ref.startswith(c) and c not in hits]
    if len(hits) != 1:
        return False
    damage.scrub(e.home, hits[0])
    return True


def status_text(st: dict[str, Any]) -> str:
    s = st["Status"]
    if s == "dead":
        return f"Dead ({st.get('Error') or 'damaged'})"
    if s == "created":
        return "Created"
    if s in ("running", "paused"):
        up = units.human_duration(time.time() - parse_time(st["StartedAt"]))
        return f"Up {up}" + (" (Paused)" if s == "paused" else "")
    if s == "restarting":
        ago = units.human_duration(time.time() - parse_time(st["FinishedAt"]))
        return f"Restarting ({st['ExitCode']}) {ago} ago"
    if st["FinishedAt"] and parse_time(st["FinishedAt"]):
        ago = units.human_duration(time.time() - parse_time(st["FinishedAt"]))
        return f"Exited ({st['ExitCode']}) {ago} ago"
    return "Exited ({})".format(st["ExitCode"])


def render(template: str, obj: Any) -> str:
    """A tiny subset of Go templates: ``{{.A.B}}``, ``{{json .A}}``, ``{{.A}}`` with \\t and \\n."""

    def value(path: str) -> Any:
        cur = obj
        for part in [p for p in path.strip().lstrip(".").split(".") if p]:
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            else:
                raise Fail(
                    f'template: :1: executing "" at <.{path.strip().lstrip(".")}>: map has no entry for key "{part}"'
                )
        return cur

    def sub(m: re.Match[str]) -> str:
        expr = m.group(1).strip()
        if expr.startswith("json "):
            return json.dumps(value(expr[5:]))
        v = value(expr)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (dict, list)):
            return json.dumps(v)
        return str(v)

    return re.sub(r"\{\{(.*?)\}\}", sub, template.replace("\\t", "\t").replace("\\n", "\n"))


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [str(c).ljust(widths[i]) for i, c in enumerate(r)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def cmd_ps(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof ps")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format")
    a = p.parse_args(argv)
    from runtime.engine.damage import sweep_temp

    sweep_temp(e.home)  # what a create or rm killed mid-way left aside (only of dead writers)
    entries = []
    for cid in e.store.ids():
        try:
            cfg, st = e.store.config(cid), e.state(cid)
        except NotFoundError:
            continue
        except DamagedContainer as err:
            from runtime.engine import damage

            cfg, st = damage.view(e.home, e.store, cid, err)
        if not a.all and st["Status"] not in RUNNING:
            continue
        entries.append((cfg, st))
    entries.sort(key=lambda x: x[0]["Created"], reverse=True)
    if a.quiet:
        for cfg, _ in entries:
            print(cfg["Id"] if a.no_trunc else cfg["Id"][:12])
        return 0
    rows = []
    for cfg, st in entries:
        cmd = " ".join([cfg["Path"], *cfg["Args"]])
        if not a.no_trunc and len(cmd) > 20:
            cmd = cmd[:19] + "…"
        created = units.human_duration(time.time() - parse_time(cfg["Created"])) + " ago"
        rows.append(
            {
                "ID": cfg["Id"] if a.no_trunc else cfg["Id"][:12],
                "Image": cfg["Config"]["Image"],
                "Command": f'"{cmd}"',
                "CreatedAt": cfg["Created"],
                "RunningFor": created,
                "Status": status_text(st),
                "State": st["Status"],
                "Ports": "",
                "Names": cfg["Name"].lstrip("/"),
            }
        )
    if a.format:
        fmt = a.format
        if fmt.startswith("table"):
            fmt = fmt[5:].strip()
            heads = re.findall(r"\{\{\s*\.(\w+)\s*\}\}", fmt)
            print("\t".join(h.upper() for h in heads))
        for r in rows:
            print(render(fmt, r))
        return 0
    header = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    print(
        table(
            [
                [r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], "", r["Names"]]
                for r in rows
            ],
            header,
        )
    )
    return 0


def inspect_container(e: Engine, cid: str) -> dict[str, Any]:
    try:
        cfg, st = e.store.config(cid), e.state(cid)
    except DamagedContainer as err:
        from runtime.engine import damage

        cfg, st = damage.view(e.home, e.store, cid, err)
    net = st.get("Network") or {}
    hc = {k: v for k, v in cfg["HostConfig"].items() if k not in ("UsernsRemap",)}
    return {
        "Id": cfg["Id"],
        "Created": cfg["Created"],
        "Path": cfg["Path"],
        "Args": cfg["Args"],
        "State": {
            "Status": st["Status"],
            "Running": st["Status"] in ("running", "paused"),
            "Paused": st["Status"] == "paused",
            "Restarting": st["Status"] == "restarting",
            "OOMKilled": bool(st["OOMKilled"]),
            "Dead": st["Status"] == "dead",
            "Pid": int(st["Pid"]) if st["Status"] in ("running", "paused") else 0,
            "ExitCode": int(st["ExitCode"]),
            "Error": st.get("Error", ""),
            "StartedAt": st["StartedAt"],
            "FinishedAt": st["FinishedAt"],
        },
        "Image": cfg["Image"],
        "ResolvConfPath": str(e.store.dir(cid) / "etc/resolv.conf"),
        "HostnamePath": str(e.store.dir(cid) / "etc/hostname"),
        "HostsPath": str(e.store.dir(cid) / "etc/hosts"),
        "LogPath": cfg["LogPath"],
        "Name": cfg["Name"],
        "RestartCount": int(st.get("RestartCount", 0)),
        "Driver": "overlay",
        "Platform": "linux",
        "Runtime": cfg["Runtime"],
        "HostConfig": hc,
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "LowerDir": cfg["ImageRootfs"],
                "UpperDir": str(e.store.dir(cid) / "upper"),
                "WorkDir": str(e.store.dir(cid) / "work"),
                "MergedDir": str(e.store.dir(cid) / "bundle/rootfs"),
            },
        },
        "Mounts": [
            {
                "Type": "volume" if m.get("Anonymous") else "bind",
                "Source": m["Source"],
                "Destination": m["Destination"],
                "RW": not m["ReadOnly"],
            }
            for m in cfg["HostConfig"].get("Mounts") or []
        ],
        "Config": {k: v for k, v in cfg["Config"].items() if k != "ConsoleSize"},
        "NetworkSettings": {
            "Bridge": net.get("Bridge", ""),
            "SandboxKey": str(e.home.netns_path(cid))
            if cfg["HostConfig"].get("NetworkMode") in ("bridge", "none")
            else "",
            "IPAddress": net.get("IPAddress", ""),
            "IPPrefixLen": net.get("IPPrefixLen", 0),
            "Gateway": net.get("Gateway", ""),
            "MacAddress": net.get("MacAddress", ""),
            "Networks": net.get("Networks", {}),
        },
    }


def inspect_image(img: Any) -> dict[str, Any]:
    return {
        "Id": img.id,
        "RepoTags": img.tags,
        "Created": img.meta.get("Created"),
        "Config": img.config,
        "Size": _du(img.rootfs),
        "RootFS": {"Type": "layers"},
        "GraphDriver": {"Name": "overlay", "Data": {"Dir": str(img.rootfs)}},
    }


def cmd_inspect(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof inspect")
    p.add_argument("-f", "--format")
    p.add_argument("--type", choices=["container", "image"])
    p.add_argument("objects", nargs="+")
    a = p.parse_args(argv)
    out, rc = [], 0
    for ref in a.objects:
        obj = None
        if a.type != "image":
            try:
                obj = inspect_container(e, e.resolve(ref))
            except NotFoundError:
                obj = None
        if obj is None and a.type != "container":
            try:
                obj = inspect_image(e.images.get(ref))
            except NotFoundError:
                obj = None
        if obj is None:
            print(f"Error: No such object: {ref}", file=sys.stderr)
            rc = 1
            continue
        out.append(obj)
    if a.format:
        for obj in out:
            print(render(a.format, obj))
    else:
        print(json.dumps(out, indent=4))
    return rc


def cmd_top(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof top")
    p.add_argument("container")
    p.add_argument("ps_args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    cid = e.resolve(a.container)
    st = e.state(cid)
    if st["Status"] not in ("running", "paused"):
        raise daemon(f"Container {cid} is not running")
    pids = e.runtime(cid).ps(cid)
    import subprocess

    cp = subprocess.run(
        ["ps", "-f", "-p", ",".join(map(str, pids))], capture_output=True, text=True
    )
    print(cp.stdout.rstrip())
    return 0


def cmd_stats(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof stats")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("containers", nargs="*")
    a = p.parse_args(argv)
    if a.containers:
        cids = [e.resolve(r) for r in a.containers]
    else:
        cids = [c for c in e.store.ids() if a.all or e.state(c)["Status"] in RUNNING]
    while True:
        first = {c: _sample(e, c) for c in cids}
        t0 = time.monotonic()
        time.sleep(0.5)
        rows = []
        for c in cids:
            s1, s0 = _sample(e, c), first[c]
            dt = time.monotonic() - t0
            cpu = 0.0
            if s0 and s1:
                cpu = (s1["cpu"] - s0["cpu"]) / (dt * 1e9) * 100
            mem = s1["mem"] if s1 else 0
            limit = s1["limit"] if s1 else 0
            host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            if not limit or limit > host:
                limit = host
            rx, tx = _net_io(e, c)
            rd, wr = (s1["blk_r"], s1["blk_w"]) if s1 else (0, 0)
            name = e.store.config(c)["Name"].lstrip("/")
            rows.append(
                [
                    c if a.no_trunc else c[:12],
                    name,
                    f"{cpu:.2f}%",
                    f"{units.bytes_size(mem)} / {units.bytes_size(limit)}",
                    f"{(mem / limit * 100 if limit else 0):.2f}%",
                    f"{units.human_size(rx)} / {units.human_size(tx)}",
                    f"{units.human_size(rd)} / {units.human_size(wr)}",
                    str(s1["pids"] if s1 else 0),
                ]
            )
        print(
            table(
                rows,
                [
                    "CONTAINER ID",
                    "NAME",
                    "CPU %",
                    "MEM USAGE / LIMIT",
                    "MEM %",
                    "NET I/O",
                    "BLOCK I/O",
                    "PIDS",
                ],
            ),
            flush=True,
        )
        if a.no_stream:
            return 0


def _num(v: Any) -> int:
    return int(v) if isinstance(v, (int, float)) else 0


def _sample(e: Engine, cid: str) -> dict[str, Any] | None:
    """One ``events --stats`` reading, in runc's shape (isoproof-oci prints it too)."""
    if e.store.state(cid)["Status"] not in ("running", "paused"):
        return None
    try:
        d = e.runtime(cid).stats(cid)
    except (IsoproofError, ValueError):
        return None
    mem = d.get("memory") or {}
    usage = _num((mem.get("usage") or {}).get("usage"))
    limit = _num((mem.get("usage") or {}).get("limit"))
    # As docker's stats: page cache that can be dropped is not counted (v1 name, then v2's).
    raw = mem.get("raw") or {}
    usage -= _num(raw.get("total_inactive_file", raw.get("inactive_file")))
    total_cpu = _num(((d.get("cpu") or {}).get("usage") or {}).get("total"))
    blk_r = blk_w = 0
    for ent in (d.get("blkio") or {}).get("ioServiceBytesRecursive") or []:
        if str(ent.get("op", "")).lower() == "read":
            blk_r += _num(ent.get("value"))
        elif str(ent.get("op", "")).lower() == "write":
            blk_w += _num(ent.get("value"))
    return {
        "cpu": total_cpu,
        "mem": max(0, usage),
        "limit": limit,
        "pids": _num((d.get("pids") or {}).get("current")),
        "blk_r": blk_r,
        "blk_w": blk_w,
    }


def _net_io(e: Engine, cid: str) -> tuple[int, int]:
    veth = (e.store.state(cid).get("Network") or {}).get("HostVeth")
    if not veth:
        return 0, 0
    base = Path(f"/sys/class/net/{veth}/statistics")
    try:
        # The host end receives what the container sends, and the reverse.
        return int((base / "tx_bytes").read_text()), int((base / "rx_bytes").read_text())
    except OSError:
        return 0, 0


def cmd_wait(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof wait")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)

    def one(ref: str) -> None:
        cid = e.resolve(ref)
        e.wait_exit(cid, None)
        print(e.store.state(cid)["ExitCode"], flush=True)

    return each(a.containers, one)


def _du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def cmd_images(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof images")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    a = p.parse_args(argv)
    rows = []
    for img in e.images.all():
        short = img.id if a.no_trunc else img.id.removeprefix("sha256:")[:12]
        created = (
            units.human_duration(time.time() - parse_time(img.meta.get("Created", ""))) + " ago"
        )
        for tag in img.tags or ["<none>:<none>"]:
            repo, _, t = tag.rpartition(":")
            rows.append([repo, t, short, created, units.human_size(_du(img.rootfs))])
    if a.quiet:
        for r in dict.fromkeys(r[2] for r in rows):
            print(r)
        return 0
    print(table(rows, ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]))
    return 0


def _stdin_to_file(e: Engine) -> Path:
    import shutil
    import tempfile

    fd, name = tempfile.mkstemp(prefix=".stdin-", dir=e.home.images)
    with os.fdopen(fd, "wb") as f:
        shutil.copyfileobj(sys.stdin.buffer, f)
    return Path(name)


def cmd_import(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof import")
    p.add_argument("file")
    p.add_argument("reference", nargs="?")
    a = p.parse_args(argv)
    src = _stdin_to_file(e) if a.file == "-" else Path(a.file)
    try:
        if not src.exists():
            raise Fail(f"Error: open {a.file}: no such file or directory")
        img = e.images.import_tarball(src, a.reference)
    finally:
        if a.file == "-":
            src.unlink(missing_ok=True)
    print(img.id)
    return 0


def cmd_load(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof load")
    p.add_argument("-i", "--input")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    src = Path(a.input) if a.input else _stdin_to_file(e)
    try:
        if not src.exists():
            raise Fail(f"Error: open {a.input}: no such file or directory")
        imgs = e.images.load(src)
    finally:
        if not a.input:
            src.unlink(missing_ok=True)
    for img in imgs:
        if img.tags:
            for t in img.tags:
                print(f"Loaded image: {t}")
        else:
            print(f"Loaded image ID: {img.id}")
    return 0


def cmd_rmi(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof rmi")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("images", nargs="+")
    a = p.parse_args(argv)
    in_use = set()
    for cid in e.store.ids():
        try:
            in_use.add(e.store.config(cid)["Image"])
        except NotFoundError:
            continue

    def one(ref: str) -> None:
        for line in e.images.remove(ref, set() if a.force else in_use):
            print(line)

    return each(a.images, one)


# -- network ---------------------------------------------------------------------------------------

# docker's three predefined networks, which are the values --network takes. Only "bridge" is a
# device of ours (isoproof0 or $ISOPROOF_BRIDGE); it is made by the first container that needs it.
NETWORK_DRIVERS = {"bridge": "bridge", "host": "host", "none": "null"}


def network_id(name: str) -> str:
    """A stable docker-shaped ID: we keep no network records to hold a random one."""
    import hashlib

    return hashlib.sha256(f"isoproof-network:{name}".encode()).hexdigest()


def cmd_network(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof network")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=Parser)
    ls = sub.add_parser("ls", aliases=["list"], prog="isoproof network ls")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("--no-trunc", action="store_true")
    prune = sub.add_parser("prune", prog="isoproof network prune")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    a = p.parse_args(argv)
    if a.verb in ("ls", "list"):
        rows = []
        for name, driver in NETWORK_DRIVERS.items():
            nid = network_id(name)
            rows.append([nid if a.no_trunc else nid[:12], name, driver, "local"])
        if a.quiet:
            for r in rows:
                print(r[0])
        else:
            print(table(rows, ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]))
        return 0
    return _network_prune(e, a.force)


def _network_prune(e: Engine, force: bool) -> int:
    """docker network prune, for our one bridge: remove it and its allocator state unless a
    container uses it. Unlike docker, which skips a network in use, we say who holds it (exit 1):
    there is only one network to prune, so "nothing pruned" would hide why."""
    from runtime.engine import network as net
    from runtime.errors import NetworkError

    if not force:
        print("WARNING! This will remove the bridge network if no container uses it.")
        print("Are you sure you want to continue? [y/N] ", end="", flush=True)
        answer = sys.stdin.readline()
        if not answer:
            print()  # end the prompt's line when stdin had nothing to say
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    # Containers whose monitor died still hold an address until something repairs them.
    for cid in e.store.ids():
        with contextlib.suppress(NotFoundError):
            e.state(cid)

    def name_of(cid: str) -> str:
        try:
            return str(e.store.config(cid)["Name"]).lstrip("/")
        except (NotFoundError, KeyError):
            return cid[:12]

    try:
        removed = net.prune(e.home, lambda cid: e.store.dir(cid).exists(), name_of)
    except NetworkError as err:
        raise daemon(str(err)) from None
    if removed:
        print(f"Deleted Networks:\n{net.bridge_name()}")
    return 0


def cmd_system(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof system")
    sub = p.add_subparsers(dest="sub", required=True)
    pr = sub.add_parser("prune", prog="isoproof system prune")
    pr.add_argument("-f", "--force", action="store_true")
    a = p.parse_args(argv)
    if not a.force:
        print(
            "WARNING! This will remove:\n  - all stopped containers\n  - all damaged containers\n"
            "  - what removed containers left behind (cgroups, network namespaces, processes,\n"
            "    runtime state, addresses, half-made directories)\n"
            "Are you sure you want to continue? [y/N] ",
            end="",
            flush=True,
        )
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    return system_prune(e)


def system_prune(e: Engine) -> int:
    """docker's ``system prune`` for containers, plus what only a crash leaves: damaged
    containers and the resources of containers whose directory is gone."""
    from runtime.engine import damage

    deleted, rc = [], 0
    for cid in e.store.ids():
        try:
            with e.oplock(cid):
                try:
                    st = e.state(cid)
                except DamagedContainer:
                    damage.scrub(e.home, cid, damage.config_or_none(e.store, cid))
                    deleted.append(cid)
                    continue
                except NotFoundError:  # a --rm container nobody was left to remove: done now
                    deleted.append(cid)
                    continue
                if st["Status"] in RUNNING or monitor_alive(st, cid):
                    continue
                lifecycle_remove(e, cid)
                deleted.append(cid)
        except (NotFoundError, FileNotFoundError):
            continue
        except IsoproofError as err:
            print(str(err), file=sys.stderr)
            rc = 1
    leftovers = damage.orphans(e.home, e.store)
    for cid in sorted(leftovers):
        damage.scrub(e.home, cid)
    swept = damage.sweep_temp(e.home)
    if deleted:
        print("Deleted Containers:\n" + "\n".join(deleted))
    if leftovers:
        print("Deleted leftovers of removed containers:")
        for cid, sources in sorted(leftovers.items()):
            print(f"{cid}: {', '.join(sources)}")
    if swept:
        print("Deleted half-made directories:\n" + "\n".join(swept))
    return rc


def lifecycle_remove(e: Engine, cid: str) -> None:
    from runtime.engine import lifecycle

    lifecycle.remove(e.home, cid, volumes=False)


def _dispatch(module: str, argv: list[str]) -> int:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        print(f"isoproof: {module} is not available yet ({err})", file=sys.stderr)
        return 1
    return int(mod.main(argv) or 0)


COMMANDS: dict[str, Callable[[Engine, list[str]], int]] = {
    "create": cmd_create,
    "run": cmd_run,
    "start": cmd_start,
    "stop": cmd_stop,
    "restart": cmd_restart,
    "kill": cmd_kill,
    "pause": cmd_pause,
    "unpause": lambda e, argv: cmd_pause(e, argv, resume=True),
    "attach": cmd_attach,
    "exec": cmd_exec,
    "logs": cmd_logs,
    "rm": cmd_rm,
    "ps": cmd_ps,
    "inspect": cmd_inspect,
    "top": cmd_top,
    "stats": cmd_stats,
    "wait": cmd_wait,
    "images": cmd_images,
    "import": cmd_import,
    "load": cmd_load,
    "rmi": cmd_rmi,
    "network": cmd_network,
    "system": cmd_system,
}

VERBS = {
    "attach": "Attach to a running container's input and output",
    "create": "Create a new container",
    "exec": "Run a command in a running container",
    "images": "List images",
    "import": "Import a rootfs tarball as an image",
    "inspect": "Show low-level information on containers or images",
    "kill": "Send a signal to running containers",
    "load": "Load an image from a docker save / OCI layout tarball",
    "logs": "Fetch the logs of a container",
    "matrix": "Run the verification suite on a matrix of kernels",
    "network": "List networks, or prune the bridge (ls, prune)",
    "pause": "Pause all processes within containers",
    "ps": "List containers",
    "restart": "Restart containers",
    "rm": "Remove containers (-f: running or damaged ones too)",
    "rmi": "Remove images",
    "run": "Create and start a new container",
    "start": "Start stopped containers",
    "stats": "Show resource usage of containers",
    "stop": "Stop running containers",
    "system": "Remove stopped and damaged containers and leftovers (prune)",
    "top": "Show the processes of a container",
    "unpause": "Unpause all processes within containers",
    "verify": "Run the isolation verification suite against a runtime",
    "wait": "Block until containers stop, print their exit codes",
}
USAGE = (
    "Usage: isoproof [--version] COMMAND [OPTIONS]\n\nA docker-like engine on an OCI runtime.\n\n"
    "Commands:\n"
    + "\n".join(
        f"  {v:<10}{VERBS.get(v, '')}" for v in sorted([*COMMANDS, "verify", "matrix"])
    )  # fmt: skip
    + "\n\nRun 'isoproof COMMAND --help' for a command's flags."
)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("isoproof")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args[0] in ("-v", "--version", "version"):
        print(f"isoproof version {version()}")
        return 0
    verb, rest = args[0], args[1:]
    if verb == "verify":
        return _dispatch("verify.cli", rest)
    if verb == "matrix":
        return _dispatch("verify.matrix.cli", rest)
    fn = COMMANDS.get(verb)
    if fn is None:
        print(
            f"isoproof: '{verb}' is not an isoproof command. See 'isoproof --help'", file=sys.stderr
        )
        return 1
    try:
        return fn(Engine(), rest)
    except units.FlagError as err:
        print(f"isoproof: {err}", file=sys.stderr)
        return 125
    except IsoproofError as err:
        if os.environ.get("ISOPROOF_DEBUG"):
            import traceback

            traceback.print_exc()
        print(str(err), file=sys.stderr)
        return int(getattr(err, "exit_code", 1))
    except KeyboardInterrupt:
        return 130
    except PermissionError as err:
        print(f"isoproof: {err.strerror}: {err.filename} (the engine needs root)", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


def _raw_terminal() -> Callable[[], None] | None:
    import termios
    import tty

    try:
        old = termios.tcgetattr(0)
    except termios.error:
        return None
    tty.setraw(0)
    return lambda: termios.tcsetattr(0, termios.TCSADRAIN, old)


if __name__ == "__main__":
    sys.exit(main())
