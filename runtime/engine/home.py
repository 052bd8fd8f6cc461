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
import fcntl
import os
import re
import sys
import time
from pathlib import Path

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from collections.abc import Iterator
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


# json is imported where files other than the records are read or written (images, leases, the
# bundle's config.json): the verbs that read records only (ps, inspect, logs) do not load it.


def read_json(path: Path) -> Any:
    import json

    with open(path) as f:
        return json.load(f)


def write_json(path: Path, data: Any) -> None:
    """Write atomically (temp file, fsync, rename), so a reader never sees half a file, not even
    after a crash. Records the engine reads back as a container's truth (config.json, state.json)
    go through :mod:`runtime.statefile` instead, which adds a format number."""
    import json

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
    return format_ns(time.time_ns())


# Times are written and read without ``datetime``: its import is ~2 ms of every verb, and
# RFC 3339 in UTC needs only ``time.gmtime`` one way and a day count the other.


def format_ns(ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds: ``2023-11-14T22:13:20.123456789Z``."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


_TIME_RE = (
    r"(\d{4})-(\d\d)-(\d\d)"  # date
    r"(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?)?"  # time, seconds and fraction optional
    r"(Z|[+-]\d\d(?::?\d\d)?)?"  # zone; none: local time, as datetime.fromisoformat
)
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's ``days_from_civil``:
    years start in March, so the leap day is the last day of a year; 146097 days per 400 years)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def parse_time(text: str) -> float:
    """Parse an RFC 3339 time (nanoseconds allowed) to a Unix timestamp; ValueError if it is
    not one. A time without a zone is local time, as ``datetime.fromisoformat`` takes it."""
    if not text or text == ZERO_TIME:
        return 0.0
    m = re.fullmatch(_TIME_RE, text.strip(), re.IGNORECASE)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    y, mo, d, h, mi, s = (int(g or 0) for g in m.groups()[:6])
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if not (1 <= mo <= 12 and 1 <= d <= _MONTH_DAYS[mo - 1] - (mo == 2 and not leap)):
        raise ValueError(f"no such date: {text!r}")
    if h > 23 or mi > 59 or s > 59:
        raise ValueError(f"no such time: {text!r}")
    frac = float(f"0.{m.group(7)}") if m.group(7) else 0.0
    zone = m.group(8)
    if zone is None:
        return time.mktime((y, mo, d, h, mi, s, 0, 0, -1)) + frac
    offset = 0
    if zone.upper() != "Z":
        digits = zone[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60
        offset = -offset if zone[0] == "-" else offset
    return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset + frac
