"""The parent / stage-1 / init sync protocol, in one table.

``create`` (the parent, i.e. the CLI process) forks *stage-1*, which joins and unshares namespaces
and forks the container *init* (PID 1 of a new PID namespace). All three talk over one
``AF_UNIX``/``SOCK_SEQPACKET`` socketpair that the children inherit: one JSON object per packet,
``{"type": NAME, ...payload}``. The order is fixed::

    parent                      stage-1                         init
      | fork ------------------> |
      | cgroup add_process(pid)  |  (waits: runs nothing of its own before this)
      | --- CGROUP_PLACED -----> |
      |                          | setns(joined namespaces, user first)
      |                          | unshare(CLONE_NEWUSER)            (new user ns only)
      | <-- USERNS_READY ------- |
      | write setgroups, maps    |
      | --- USERNS_MAPPED -----> |
      |                          | unshare(all other new namespaces)
      |                          | fork --------------------------> | (waits: pipe EOF)
      | <-- INIT_PID ----------- | close pipe, exit                | rootfs mounts
      | <------------------------------------------ CREATE_HOOKS -- |  (only with hooks)
      | prestart, createRuntime hooks                               |
      | --- HOOKS_DONE (state) -----------------------------------> | createContainer hooks
      |                                                             | pivot_root, process setup
      | <------------------------------------------- INIT_READY --- |
      | write state.json, exit   |                                 | open exec.fifo O_WRONLY: blocks
                                                          (start)  | execve(process.args)

The init shares the socket with stage-1, so it waits (EOF on a pipe from stage-1) until INIT_PID
is sent: the parent then always reads the messages in this order.
Any child that fails sends ERROR with a one-line message and exits; the parent raises it as
:class:`ChildError`, prints it as one line and rolls back what create made. ``exec`` uses the same
table (stage-1 only joins namespaces; the init role is played by the exec'd process).
"""

from __future__ import annotations

import os

from runtime import cjson  # json without the json package's imports (re, enum)
from runtime.errors import IsoproofError, suppress


class Message:
    """One row of the table. (A plain class: a NamedTuple or dataclass costs import time.)"""

    __slots__ = ("sender", "receiver", "payload", "meaning")

    def __init__(self, sender: str, receiver: str, payload: tuple[str, ...], meaning: str) -> None:
        self.sender = sender
        self.receiver = receiver
        self.payload = payload
        self.meaning = meaning


CGROUP_PLACED = "CGROUP_PLACED"
USERNS_READY = "USERNS_READY"
USERNS_MAPPED = "USERNS_MAPPED"
INIT_PID = "INIT_PID"
INIT_READY = "INIT_READY"
ERROR = "ERROR"
CREATE_HOOKS = "CREATE_HOOKS"
HOOKS_DONE = "HOOKS_DONE"

TABLE: dict[str, Message] = {
    CGROUP_PLACED: Message("parent", "stage-1", (), "stage-1 is in the container's cgroup; go on"),
    USERNS_READY: Message(
        "stage-1", "parent", (), "new user namespace made: write setgroups, uid_map, gid_map"
    ),
    USERNS_MAPPED: Message("parent", "stage-1", (), "maps written; become root in the new user ns"),
    INIT_PID: Message("stage-1", "parent", ("pid",), "pid (in the parent's pid ns) of the init"),
    INIT_READY: Message(
        "init", "parent", (), "rootfs and process set up; init now waits for start"
    ),
    CREATE_HOOKS: Message("init", "parent", (), "mounts made: run prestart, createRuntime hooks"),
    HOOKS_DONE: Message("parent", "init", ("state",), "hooks done; the state for the init's own"),
    ERROR: Message("any child", "parent", ("message",), "a child failed; message is one line"),
}

MAX_PACKET = 65536


class ProtocolError(IsoproofError):
    """A message arrived out of order, malformed, or not at all."""


class ChildError(IsoproofError):
    """A child reported a failure (an ERROR message)."""


def encode(kind: str, **payload: object) -> bytes:
    """One packet. Raises ProtocolError for a name or payload that the table does not allow."""
    msg = TABLE.get(kind)
    if msg is None:
        raise ProtocolError(f"sync: unknown message {kind!r}")
    if set(payload) != set(msg.payload):
        raise ProtocolError(f"sync: {kind} carries {sorted(msg.payload)}, got {sorted(payload)}")
    return cjson.dumps({"type": kind, **payload}).encode()


def decode(raw: bytes, expect: str) -> dict[str, object]:
    """Parse a packet and check it is ``expect`` (or ERROR, which becomes ChildError)."""
    if not raw:
        raise ProtocolError(f"sync: the child exited before sending {expect}")
    try:
        doc = cjson.loads(raw)
    except ValueError:
        raise ProtocolError("sync: malformed message") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        raise ProtocolError("sync: malformed message")
    kind = doc["type"]
    if kind == ERROR:
        raise ChildError(str(doc.get("message", "unknown error")))
    if kind != expect:
        raise ProtocolError(f"sync: expected {expect}, got {kind}")
    if set(doc) - {"type"} != set(TABLE[kind].payload):
        raise ProtocolError(f"sync: {kind} with wrong payload")
    return doc


def send(fd: int, kind: str, **payload: object) -> None:
    try:
        os.write(fd, encode(kind, **payload))
    except OSError as e:
        raise ProtocolError(
            f"sync: cannot send {kind}: the peer went away ({e.strerror})"
        ) from None


def recv(fd: int, expect: str) -> dict[str, object]:
    try:
        raw = os.read(fd, MAX_PACKET)
    except OSError as e:  # ECONNRESET: the peer died with the message unsent
        raise ProtocolError(
            f"sync: the child went away before sending {expect} ({e.strerror})"
        ) from None
    return decode(raw, expect)


def send_error(fd: int, message: str) -> None:
    """Best effort: the parent may be gone already."""
    with suppress(OSError):
        os.write(fd, cjson.dumps({"type": ERROR, "message": " ".join(message.split())}).encode())
