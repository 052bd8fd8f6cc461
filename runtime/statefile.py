"""Small JSON records on disk that survive crashes: one writer helper, one reader, for the OCI
runtime's ``state.json`` / ``creator.json`` and the engine's ``config.json`` / ``state.json``.

A write goes to a temp file in the same directory, is fsync'd, then renamed over the target (and,
with ``sync_dir``, the directory is fsync'd so the rename itself survives a power cut): a reader
sees the old record or the new one, never half of one, and a SIGKILL at any point leaves at most a
temp file (named ``.<name>.<pid>.tmp``, so a sweeper can tell whose it was).

Every record carries :data:`FORMAT_KEY`. :func:`read` turns everything that is not a record we
wrote (empty, torn, garbage, not an object, no or an unknown format number) into
:class:`Damaged`, a one-line :class:`StateError`: callers show such a container as damaged, and
never meet a ``JSONDecodeError``. A missing file stays ``FileNotFoundError``: whether that is
damage depends on the caller (a state directory without ``state.json`` is a create at work).
"""

from __future__ import annotations

import os

from runtime import cjson  # json.dumps/loads without the json package's imports (re, enum)
from runtime.errors import StateError, suppress

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

FORMAT_KEY = "isoproofFormat"
FORMAT = 1


class Damaged(StateError):
    """A record that exists but cannot be trusted; ``reason`` says why in a few words."""

    def __init__(self, path: str, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"{path}: {reason}")
        self.path = path
        self.reason = reason


def write(
    path: str | os.PathLike[str],
    doc: dict[str, Any],
    sync_dir: bool = False,
    mode: int = 0o644,
    durable: bool = True,
) -> None:
    """Atomic always (a reader, or a process killed at any point, sees the old record or the new
    one); ``durable=False`` skips the fsyncs, for records that die with the machine anyway."""
    path = os.fspath(path)
    d, name = os.path.split(path)
    tmp = os.path.join(d, f".{name}.{os.getpid()}.tmp")
    # One line (jq or python -m json.tool shows it indented): the C encoder writes no indent.
    data = (cjson.dumps({FORMAT_KEY: FORMAT, **doc}) + "\n").encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir and durable:
        fsync_dir(d or ".")


def fsync_dir(d: str) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The record without its format key. FileNotFoundError if missing, :class:`Damaged` if
    unreadable (an I/O error too: the caller can do nothing better with it)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise Damaged(path, f"unreadable ({e.strerror})") from None
    return parse(path, raw)


def parse(path: str, raw: bytes) -> dict[str, Any]:
    """Pure: the checks of :func:`read` on bytes already read."""
    if not raw.strip():
        raise Damaged(path, "empty")
    try:
        doc = cjson.loads(raw)
    except ValueError:
        raise Damaged(path, "torn or not JSON") from None
    if not isinstance(doc, dict):
        raise Damaged(path, "not a JSON object")
    version = doc.pop(FORMAT_KEY, None)
    if version is None:
        raise Damaged(path, "no format version")
    if version != FORMAT:
        raise Damaged(path, f"unknown format version {version!r}")
    return doc


def tmp_owner(name: str) -> int:
    """The pid in a temp file's name (``.<name>.<pid>.tmp``), else 0."""
    parts = name.split(".")
    if len(parts) >= 4 and parts[0] == "" and parts[-1] == "tmp" and parts[-2].isdigit():
        return int(parts[-2])
    return 0
