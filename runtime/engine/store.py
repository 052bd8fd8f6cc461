"""Container records on disk: config.json (what was asked), state.json (what happened).

``state.json`` is written by the CLI and by the container's monitor, always under the container's
lock; both files by :mod:`runtime.statefile` (temp file, fsync, rename, a format number). Its
``Status`` uses docker's words: created, running, paused, restarting, exited, dead (plus
``removing`` while ``rm`` tears it down).

A container directory whose ``config.json`` or ``state.json`` is missing, empty, torn or of an
unknown format is *damaged*: reading it raises :class:`DamagedContainer` (one line, naming the
file and what is wrong with it), never a ``JSONDecodeError``. ``ps -a`` lists such a container as
``Dead``, ``inspect`` shows what is known, and ``rm -f`` removes what is left of it
(:mod:`runtime.engine.damage`).
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime import statefile
from runtime.engine.home import ZERO_TIME, Home, locked
from runtime.errors import NotFoundError, StateError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

LIVE = ("created", "running", "paused", "restarting")
# What every verb reads from config.json without asking: a record without one is damaged.
CONFIG_KEYS = ("Id", "Name", "Created", "Path", "Args", "Config", "HostConfig", "Runtime", "OciRoot", "CgroupsPath")  # fmt: skip


class NoSuchContainer(NotFoundError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"Error response from daemon: No such container: {ref}")


class DamagedContainer(StateError):
    """A container whose records cannot be read; ``reason`` is e.g. ``state.json: empty``."""

    def __init__(self, cid: str, reason: str) -> None:
        super().__init__(
            f"Error response from daemon: container {cid[:12]} is damaged ({reason}); "
            "remove it with rm -f"
        )
        self.cid = cid
        self.reason = reason


def initial_state() -> dict[str, Any]:
    return {
        "Status": "created",
        "Running": False,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": False,
        "Dead": False,
        "Pid": 0,
        "ExitCode": 0,
        "Error": "",
        "StartedAt": ZERO_TIME,
        "FinishedAt": ZERO_TIME,
        "MonitorPid": 0,
        "RestartCount": 0,
        "StopRequested": False,
        "Network": {},
        # The OCI runtime may hold this container: set by the monitor before each ``create``,
        # cleared by whoever deleted it successfully (the monitor, or ``repair`` for a dead
        # monitor). ``rm`` runs the runtime's ``delete`` only while it is set, so a removal
        # deletes once, and a monitor that died before its delete still gets it done.
        "OciContainer": False,
    }


class Store:
    def __init__(self, home: Home) -> None:
        self.home = home

    def ids(self) -> list[str]:
        """Every container directory, damaged ones too (``.new-*`` / ``.rm-*`` are not ones)."""
        try:
            return [d.name for d in self.home.containers.iterdir() if not d.name.startswith(".")]
        except FileNotFoundError:
            return []

    def dir(self, cid: str) -> Path:
        return self.home.container_dir(cid)

    def lock(self, cid: str) -> Any:
        return locked(self.dir(cid) / "lock")

    def _read(self, cid: str, name: str) -> dict[str, Any]:
        try:
            return statefile.read(self.dir(cid) / name)
        except FileNotFoundError:
            if not self.dir(cid).is_dir():
                raise NoSuchContainer(cid) from None
            raise DamagedContainer(cid, f"{name}: missing") from None
        except statefile.Damaged as e:
            raise DamagedContainer(cid, f"{name}: {e.reason}") from None

    def config(self, cid: str) -> dict[str, Any]:
        cfg = self._read(cid, "config.json")
        missing = [k for k in CONFIG_KEYS if k not in cfg]
        if missing:
            raise DamagedContainer(cid, f"config.json: no {', '.join(missing)}")
        return cfg

    def save_config(self, cid: str, cfg: dict[str, Any]) -> None:
        statefile.write(self.dir(cid) / "config.json", cfg)

    def state(self, cid: str) -> dict[str, Any]:
        return {**initial_state(), **self._read(cid, "state.json")}

    def update(self, cid: str, **changes: Any) -> dict[str, Any]:
        """Read-modify-write state.json under the container lock."""
        with self.lock(cid):
            st = self.state(cid)
            st.update(changes)
            statefile.write(self.dir(cid) / "state.json", st)
            return st

    def names(self) -> dict[str, str]:
        out = {}
        for cid in self.ids():
            try:
                out[self.config(cid)["Name"].lstrip("/")] = cid
            except (StateError, KeyError, AttributeError):  # gone, damaged: no name to match
                continue
        return out

    def resolve(self, ref: str) -> str:
        """A full ID, a name (with or without ``/``) or a unique ID prefix → the full ID."""
        ids = self.ids()
        if ref in ids:
            return ref
        name = ref.lstrip("/")
        for cid, cname in ((c, n) for n, c in self.names().items()):
            if cname == name:
                return cid
        if ref and all(ch in "0123456789abcdef" for ch in ref):
            hits = [c for c in ids if c.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise StateError(
                    f"Error response from daemon: multiple IDs found with provided prefix: {ref}"
                )
        raise NoSuchContainer(ref)


def pid_alive(pid: int, marker: str | None = None) -> bool:
    """True if ``pid`` runs (and, with ``marker``, its command line contains it: PIDs get reused)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return marker is None or marker.encode() in cmdline


def monitor_alive(state: dict[str, Any], cid: str) -> bool:
    return pid_alive(int(state.get("MonitorPid") or 0), cid)


def remove_tree(path: Path) -> None:
    import shutil

    if path.exists():
        trash = path.with_name(f".rm-{path.name}-{os.getpid()}")
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
