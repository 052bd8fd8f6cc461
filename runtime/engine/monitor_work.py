"""The monitor's heavy work: state file updates, the OCI runtime's verbs, teardown.

The monitor (``runtime.engine.monitor``) lives as long as its container, so it must stay small:
it imports nothing beyond ``os``, ``select``, ``_socket``, ``_signal`` and ``_json``. Everything
that needs ``json``, ``pathlib``, ``subprocess`` or ``typing`` (the store, the OCI runtime, the
cgroups) runs here, in a short-lived child the monitor forks for each step (``monitor.work``):
the child imports what it needs and exits, and the monitor's memory never sees those modules.
Results go back with ``marshal`` (built in), so they must be plain values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.engine.home import Home, format_ns, now
from runtime.engine.oci import OciRuntime
from runtime.engine.store import Store

RUNTIME_LOG = "runtime.log"  # the OCI runtime's --log of create: its warnings, its errors


class _Ctx:
    def __init__(self, home_dir: str, cid: str) -> None:
        self.home = Home(Path(home_dir))
        self.cid = cid
        self.store = Store(self.home)
        self.cfg: dict[str, Any] = self.store.config(cid)
        self.cdir = self.store.dir(cid)
        self.runtime = OciRuntime(self.cfg["Runtime"], self.cfg["OciRoot"])

    def delete_oci(self) -> dict[str, Any]:
        """Delete the runtime's container (its init is dead); the state change that records it.

        This is the one delete of a container the monitor ran: ``rm`` only kills the init and
        waits for us. A failed delete leaves ``OciContainer`` set, so ``rm`` tries again."""
        return {"OciContainer": False} if self.runtime.delete(self.cid, force=True) else {}


def info(home_dir: str, cid: str) -> dict[str, Any]:
    """What the monitor itself needs to know: its stdio mode and its paths."""
    c = _Ctx(home_dir, cid)
    return {
        "tty": bool(c.cfg["Config"].get("Tty")),
        "open_stdin": bool(c.cfg["Config"].get("OpenStdin")),
        "cdir": str(c.cdir),
        "console": str(c.home.sock / f"{cid[:12]}.c"),
        "attach": str(c.home.attach_socket(cid)),
    }


def update(home_dir: str, cid: str, fields: dict[str, Any]) -> dict[str, Any]:
    return Store(Home(Path(home_dir))).update(cid, **fields)


def state(home_dir: str, cid: str) -> dict[str, Any]:
    return Store(Home(Path(home_dir))).state(cid)


def failed(home_dir: str, cid: str, error: str, now_ns: int) -> None:
    """The monitor failed: record it (best effort, the monitor already is failing)."""
    Store(Home(Path(home_dir))).update(
        cid,
        Status="exited",
        Running=False,
        MonitorPid=0,
        Error=f"monitor: {error}",
        FinishedAt=format_ns(now_ns),
    )


def create(
    home_dir: str,
    cid: str,
    monitor_pid: int,
    fds: tuple[int, int, int],
    console: str | None,
) -> tuple[int, int]:
    """Run ``<runtime> create`` and wait for it: its exit code and the init's PID (0: no pid
    file). The monitor accepts the console socket meanwhile and reads the error messages itself.
    ``monitor_pid`` (the first create): recorded before, and the created state after."""
    c = _Ctx(home_dir, cid)
    if monitor_pid:
        c.store.update(cid, MonitorPid=monitor_pid)
    pid_file = c.cdir / "init.pid"
    pid_file.unlink(missing_ok=True)
    # Before create, not after: if we die halfway, rm must still ask the runtime to delete.
    c.store.update(cid, OciContainer=True)
    proc = c.runtime.create(
        cid, str(c.cdir / "bundle"), str(pid_file), console, *fds, str(c.cdir / RUNTIME_LOG)
    )
    rc = proc.wait()
    if rc != 0:
        return rc, 0
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return rc, 0
    if monitor_pid:
        c.store.update(cid, Status="created", Pid=pid, Error="")
    return rc, pid


def abandon_start(home_dir: str, cid: str) -> None:
    """Nobody will start the created container: kill it, so that the usual end (exit
    recorded, rootfs and network released, ``--rm`` honoured) follows. If the runtime says
    it is running, the start did happen (the CLI died just after): it is ours as usual."""
    c = _Ctx(home_dir, cid)
    st = c.runtime.state(cid)
    if st is not None and st.get("status") not in ("created", "creating"):
        return
    c.store.update(
        cid, StopRequested=True, Error="the client exited before it started the container"
    )
    c.runtime.kill(cid, "KILL")


def exited(home_dir: str, cid: str, code: int) -> bool:
    """Record the exit (the OOM killer asked before ``delete``); whether to restart."""
    from runtime.engine import cgroupinfo

    c = _Ctx(home_dir, cid)
    oom = cgroupinfo.oom_kill_count(c.cfg["CgroupsPath"], cid, c.runtime) > 0
    st = c.store.update(
        cid,
        ExitCode=code,
        OOMKilled=oom,
        FinishedAt=now(),
        Pid=0,
        Running=False,
        Paused=False,
        **c.delete_oci(),
    )
    policy = c.cfg["HostConfig"].get("RestartPolicy") or {}
    name, limit = policy.get("Name", "no"), int(policy.get("MaximumRetryCount") or 0)
    if st.get("StopRequested") or c.cfg["HostConfig"].get("AutoRemove"):
        return False
    if name in ("always", "unless-stopped"):
        return True
    if name == "on-failure" and code != 0:
        return limit == 0 or int(st.get("RestartCount", 0)) < limit
    return False


def restarted(home_dir: str, cid: str, err: str | None, init_pid: int) -> bool:
    """After a restart's ``create``: start it and record it, or record why not."""
    c = _Ctx(home_dir, cid)
    if err is None:
        try:
            c.runtime.start(cid)
        except Exception as e:  # noqa: BLE001 - record any start failure and stop trying
            err = str(e)
    if err is not None:
        c.store.update(cid, Error=err, **c.delete_oci())
        return False
    st = c.store.state(cid)
    c.store.update(
        cid,
        Status="running",
        Running=True,
        Restarting=False,
        Pid=init_pid,
        StartedAt=now(),
        RestartCount=int(st.get("RestartCount", 0)) + 1,
        OOMKilled=False,
    )
    return True


def final(home_dir: str, cid: str) -> None:
    """Release the rootfs and network, maybe remove. MonitorPid stays set until the very end:
    the CLI waits for it before touching the mounts."""
    from runtime.engine import lifecycle

    c = _Ctx(home_dir, cid)
    lifecycle.teardown(c.home, cid)
    if c.cfg["HostConfig"].get("AutoRemove") and not c.store.state(cid).get("Removing"):
        lifecycle.remove(c.home, cid, volumes=True)
    else:
        c.store.update(cid, MonitorPid=0)
