"""A container's status made honest before a verb acts on it or shows it.

state.json says what the monitor last wrote. Two things can make it stale: the init died and the
monitor has not written the exit yet (wait for it), or the monitor itself is gone (crashed,
killed): then nobody will write it, so the reader winds the container up and says so. The common
case reads state.json and checks two PIDs; only a repair imports the runtime and the teardown.
"""

from __future__ import annotations

import time

from runtime.engine.store import LIVE, Store, monitor_alive, pid_alive

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

    from runtime.engine.home import Home

EXIT_RECORD_WAIT = 10.0  # seconds a reader waits for a live monitor to record a death it saw


def settle_exit(store: Store, cid: str, st: dict[str, Any]) -> dict[str, Any]:
    """Wait while the init is dead but its monitor has not recorded the exit yet.

    The monitor writes ExitCode (with Pid 0 and OOMKilled) only after it reaped the init, read
    the OOM counter and deleted the runtime's container. A reader in that window saw "running"
    with the ExitCode 0 that ``start`` wrote: ``inspect`` right after the init died (an OOM kill)
    reported exit 0. The monitor will write soon, so wait for it rather than report a guess.
    """
    deadline = time.monotonic() + EXIT_RECORD_WAIT
    while (
        st["Status"] in ("running", "paused")
        and not pid_alive(int(st.get("Pid") or 0))  # Pid 0: exit written, status not yet
        and monitor_alive(st, cid)
        and time.monotonic() < deadline
    ):
        time.sleep(0.02)
        st = store.state(cid)
    return st


def repair(home: Home, store: Store, cid: str) -> dict[str, Any]:
    """If the state says live but the monitor is gone (crashed, killed), make it honest; if the
    init died and its live monitor is still recording that, wait for the record."""
    st = settle_exit(store, cid, store.state(cid))
    if st["Status"] in LIVE and st["Status"] != "created" and not monitor_alive(st, cid):
        from runtime.engine.home import now
        from runtime.engine.lifecycle import teardown
        from runtime.engine.oci import OciRuntime

        cfg = store.config(cid)
        rt = OciRuntime(cfg["Runtime"], cfg["OciRoot"])
        rt.kill(cid, "KILL", all_=True)
        deleted = rt.delete(cid, force=True)
        teardown(home, cid)
        st = store.update(
            cid,
            **({"OciContainer": False} if deleted else {}),
            Status="exited",
            Running=False,
            Paused=False,
            Restarting=False,
            Pid=0,
            MonitorPid=0,
            ExitCode=st.get("ExitCode") or 255,
            FinishedAt=now(),
            Error="monitor exited unexpectedly",
        )
    return st
