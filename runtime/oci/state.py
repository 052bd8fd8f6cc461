"""Container state on disk (``<root>/<id>/state.json``) and status derived from the kernel.

The file records facts that do not change (pid, the init's start time, bundle, cgroupsPath,
config); the *status* is never trusted from it. :func:`derive_status` asks the kernel each time:

* the init is gone, a zombie, or its start time (field 22 of ``/proc/<pid>/stat``) differs from
  the one recorded (the pid was reused)  -> ``stopped``
* ``exec.fifo`` still exists (``start`` removes it)                            -> ``created``
* the cgroup is frozen                                                         -> ``paused``
* otherwise                                                                    -> ``running``

A state directory without ``state.json`` is a container that ``create`` is still making:
``creating`` (its ``creator.json`` says who makes it). Both files are written by
:mod:`runtime.statefile` (temp file, fsync, rename); a file that is there but empty, torn or of an
unknown format is :class:`Damaged`, a one-line error, and ``delete --force`` removes such a
container.
"""

from __future__ import annotations

import os

from runtime import statefile
from runtime.errors import NotFoundError, StateError
from runtime.oci import DEFAULT_ROOT  # noqa: F401  (its home; callers import it from here)
from runtime.oci.record import Record
from runtime.statefile import Damaged

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"
OCI_VERSION = "1.0.2"

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"


def valid_id(cid: str) -> bool:
    """runc's rule, ``[\\w+\\-.]+`` (the OCI spec does not restrict IDs; this keeps them usable as
    file and cgroup names). Without ``re``: it costs ~4 ms of import on every CLI call."""
    return bool(cid) and all(c.isalnum() or c in "_+-." for c in cid)  # \w: isalnum() or _


class State(Record):
    __slots__ = ("id", "pid", "bundle", "rootfs", "created", "start_time", "cgroups_path",
                 "annotations", "config", "oci_version")  # fmt: skip

    def __init__(self, id: str, pid: int, bundle: str, rootfs: str, created: str, start_time: int,
                 cgroups_path: str | None, annotations: dict[str, str] | None = None,
                 config: dict[str, Any] | None = None, oci_version: str = OCI_VERSION) -> None:  # fmt: skip
        self.id = id
        self.pid = pid
        self.bundle = bundle
        self.rootfs = rootfs
        self.created = created
        self.start_time = start_time  # of the init, clock ticks since boot (/proc/<pid>/stat #22)
        self.cgroups_path = cgroups_path
        self.annotations = annotations or {}
        self.config = config or {}
        self.oci_version = oci_version


def check_id(cid: str) -> None:
    if not valid_id(cid) or cid in (".", ".."):
        raise StateError(f"invalid container id {cid!r}: use letters, digits and _ + - .")


def state_dir(root: str, cid: str) -> str:
    check_id(cid)
    return os.path.join(root, cid)


def save(root: str, st: State) -> None:
    """Write atomically (temp file, rename): a reader sees the old file or the new one, never half
    of one, and a killed process never leaves a torn file.

    Not fsync'd (neither does runc): the state describes processes that a crash of the machine
    ends too, and its root is /run, a tmpfs on most hosts. A file torn by a power cut is read as
    :class:`Damaged`, which ``delete --force`` removes. (Where /run is on a disk, as on this
    project's machines, the four fsyncs of a create cost 2-20 ms.)"""
    path = os.path.join(state_dir(root, st.id), STATE_FILE)
    statefile.write(path, st.to_dict(), durable=False)


def load(root: str, cid: str) -> State | None:
    """The recorded state; None while the container is being created. NotFoundError if unknown,
    :class:`Damaged` (a StateError, one line) if the file is empty, torn or not ours."""
    d = state_dir(root, cid)
    path = os.path.join(d, STATE_FILE)
    try:
        doc = statefile.read(path)
    except FileNotFoundError:
        if os.path.isdir(d):
            return None
        raise NotFoundError(f"container {cid} does not exist") from None
    except Damaged as e:
        raise Damaged(path, e.reason, f"container {cid}: damaged state ({e.reason})") from None
    try:
        return State(**doc)
    except TypeError:
        raise Damaged(
            path, "unexpected fields", f"container {cid}: damaged state (unexpected fields)"
        ) from None


def read_proc_stat(pid: int, proc: str = "/proc") -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, or None if it does not exist."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = raw[raw.rfind(b")") + 2 :].split()
    try:
        return rest[0].decode(), int(rest[19])  # field 3 is rest[0], field 22 is rest[19]
    except (IndexError, ValueError):
        return None


def init_alive(pid: int, start_time: int, stat: Callable[[int], tuple[str, int] | None]) -> bool:
    if pid <= 0:
        return False
    info = stat(pid)
    return info is not None and info[0] not in ("Z", "X") and info[1] == start_time


def derive_status(
    st: State | None,
    stat: Callable[[int], tuple[str, int] | None],
    fifo_exists: bool,
    frozen: Callable[[], bool],
) -> str:
    """The status from kernel facts (pure given its inputs; see the module doc for the rules)."""
    if st is None:
        return CREATING
    if not init_alive(st.pid, st.start_time, stat):
        return STOPPED
    if fifo_exists:
        return CREATED
    if frozen():
        return PAUSED
    return RUNNING


def oci_state(st: State, status: str) -> dict[str, Any]:
    """The OCI state document (plus runc's extras: rootfs, created, owner)."""
    return {
        "ociVersion": st.oci_version,
        "id": st.id,
        "pid": st.pid if status != STOPPED else 0,
        "status": status,
        "bundle": st.bundle,
        "rootfs": st.rootfs,
        "created": st.created,
        "owner": "",
        "annotations": st.annotations,
    }
