"""The engine's home directory, its locks and small shared helpers.

Everything the engine keeps lives under one directory (``/var/lib/isoproof``, or ``$ISOPROOF_HOME``)::

    containers/<id>/      config.json (what the user asked), state.json (what happened),
                          container.log, upper/ work/ (overlayfs), bundle/ (the OCI bundle), lock
    images/<id>/          image.json and rootfs/
    oci/                  the OCI runtime's --root
    netns/isoproof-<id>   bind-mounted network namespaces
    sock/<short>.a        attach sockets (kept short: a unix socket path has at most 107 bytes)
    volumes/<name>/       volumes made by -v

Concurrent CLIs and monitors serialise on ``fcntl`` locks: one per container (``lock`` in its
directory), one for the name table; the address allocator's lock is host-wide, beside its bridge
(:mod:`runtime.engine.network`). A lock dies with its process, so
a crashed CLI never leaves a lock held.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_HOME = "/var/lib/isoproof"
ENV_HOME = "ISOPROOF_HOME"
ENV_RUNTIME = "ISOPROOF_OCI_RUNTIME"
ENV_CGROUP_PARENT = "ISOPROOF_CGROUP_PARENT"
DEFAULT_CGROUP_PARENT = "isoproof"


def home() -> Path:
    return Path(os.environ.get(ENV_HOME, DEFAULT_HOME))


def own_runtime() -> str:
    """Our OCI runtime: the ``isoproof-oci`` console script pip put beside this interpreter."""
    return str(Path(sys.executable).parent / "isoproof-oci")


def default_runtime() -> str:
    """The OCI runtime binary: ``$ISOPROOF_OCI_RUNTIME`` or the ``isoproof-oci`` beside Python."""
    return os.environ.get(ENV_RUNTIME) or own_runtime()


def cgroup_parent() -> str:
    return os.environ.get(ENV_CGROUP_PARENT, DEFAULT_CGROUP_PARENT).strip("/")


class Home:
    """Paths under the engine home; creating a Home makes the top-level directories."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or home()).absolute()
        self.containers = self.root / "containers"
        self.images = self.root / "images"
        self.oci_root = self.root / "oci"
        self.netns = self.root / "netns"
        self.sock = self.root / "sock"
        self.volumes = self.root / "volumes"
        self.names_lock = self.root / "names.lock"

    def ensure(self) -> Home:
        for d in (self.containers, self.images, self.oci_root, self.netns, self.sock, self.volumes):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def container_dir(self, cid: str) -> Path:
        return self.containers / cid

    def attach_socket(self, cid: str) -> Path:
        return self.sock / f"{cid[:12]}.a"

    def netns_path(self, cid: str) -> Path:
        return self.netns / f"isoproof-{cid[:12]}"


@contextlib.contextmanager
def locked(path: Path, shared: bool = False) -> Iterator[None]:
    """Hold an ``flock`` on ``path`` (created if missing) for the ``with`` block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def write_json(path: Path, data: Any) -> None:
    """Write atomically (temp file, fsync, rename), so a reader never sees half a file, not even
    after a crash. Records the engine reads back as a container's truth (config.json, state.json)
    go through :mod:`runtime.statefile` instead, which adds a format number."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def new_id() -> str:
    return os.urandom(32).hex()


ZERO_TIME = "0001-01-01T00:00:00Z"


def now() -> str:
    """The current time in RFC 3339 with nanoseconds, as docker writes it."""
    return format_ns(_time_ns())


def _time_ns() -> int:
    import time

    return time.time_ns()


def format_ns(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    base = _dt.datetime.fromtimestamp(secs, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


def parse_time(text: str) -> float:
    """Parse an RFC 3339 time (nanoseconds allowed) to a Unix timestamp."""
    if not text or text == ZERO_TIME:
        return 0.0
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    frac = 0.0
    if "." in t:
        head, rest = t.split(".", 1)
        digits = ""
        for ch in rest:
            if not ch.isdigit():
                break
            digits += ch
        tz = rest[len(digits) :]
        frac = float("0." + digits) if digits else 0.0
        t = head + tz
    return _dt.datetime.fromisoformat(t).timestamp() + frac
