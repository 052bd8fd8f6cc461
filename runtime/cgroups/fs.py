"""Reading and writing cgroup files, with errors that name the file and the value.

Every write goes through :func:`write`, so that a value the kernel refuses (EINVAL for a quota below
1 ms, EBUSY for a memory limit below what the cgroup already uses, ...) becomes one line:
``cpu.cfs_quota_us: the kernel refused "500" in /sys/fs/cgroup/cpu/isoproof/x: Invalid argument (EINVAL)``.

Files are opened without O_CREAT: on cgroupfs a missing file means a missing controller or feature,
and a fake tree in a unit test must behave the same way.
"""

from __future__ import annotations

import errno
import os
import time

from runtime.errors import CgroupError


def _why(e: OSError) -> str:
    name = errno.errorcode.get(e.errno or 0, str(e.errno))
    return f"{e.strerror} ({name})"


# While an ``update`` runs: (directory, name, old value) of every file written, so that a failure
# part-way can put the old values back (``update`` is all or nothing, as its caller is told).
_journal: list[tuple[str, str, str]] | None = None


def journal_start() -> None:
    global _journal
    _journal = []


def journal_stop() -> None:
    global _journal
    _journal = None


def journal_rollback() -> list[str]:
    """Write the journaled old values back, newest first; returns the files that could not be
    restored. Two passes: the kernel checks some pairs at every write (memory.limit_in_bytes must
    stay <= memory.memsw.limit_in_bytes), so one order can fail where the other passes."""
    global _journal
    entries, _journal = list(reversed(_journal or [])), None
    for _ in range(2):
        failed = []
        for d, name, old in entries:
            try:
                write(d, name, old)
            except CgroupError:
                failed.append((d, name, old))
        entries = failed
    return [name for _d, name, _old in entries]


def _remember(directory: str, name: str) -> None:
    """Journal a single-value file's content; list files (throttles, devices) are not restorable
    by writing their content back, and are left out."""
    assert _journal is not None
    old = read_or(directory, name, "\n\n").strip()
    if old and "\n" not in old:
        _journal.append((directory, name, old))


def write(directory: str, name: str, value: str | int) -> None:
    path = os.path.join(directory, name)
    data = str(value).encode()
    if _journal is not None:
        _remember(directory, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CgroupError(
            f"{name}: no such file in {directory} (controller or kernel feature missing)"
        ) from None
    except OSError as e:
        raise CgroupError(f"{name}: cannot open {path}: {_why(e)}") from None
    try:
        os.write(fd, data)
    except OSError as e:
        raise CgroupError(
            f'{name}: the kernel refused "{value}" in {directory}: {_why(e)}'
        ) from None
    finally:
        os.close(fd)


def read(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise CgroupError(f"{name}: cannot read {path}: {_why(e)}") from None


def read_or(directory: str, name: str, default: str = "") -> str:
    """Read a file that may legitimately be absent (an optional counter or feature)."""
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read()
    except OSError:
        return default


def has(directory: str, name: str) -> bool:
    return os.path.exists(os.path.join(directory, name))


def read_int(directory: str, name: str) -> int | None:
    """An integer file; ``max`` (v2's "no limit") is returned as None."""
    text = read_or(directory, name).strip()
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def read_keyed(directory: str, name: str) -> dict[str, int]:
    """A flat keyed file (``key value`` per line: memory.stat, memory.events, cpu.stat, ...)."""
    out: dict[str, int] = {}
    for line in read_or(directory, name).splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def read_pids(directory: str, name: str = "cgroup.procs") -> list[int]:
    text = read_or(directory, name)
    return sorted({int(x) for x in text.split() if x.isdigit()})


# The kernel fills a new cgroup directory with its files at mkdir; unit tests replace this with a
# function that does the same on a fake tree.
_mkdir = os.mkdir


def makedirs(path: str, stop: str) -> list[str]:
    """mkdir each missing component of ``path`` below ``stop``; return the ones made (top first).

    Retried on ENOENT: another container's destroy may remove an empty shared parent
    (``isoproof``) between our mkdir of the parent and of the child.
    """
    rel = os.path.relpath(path, stop)
    for _attempt in range(5):
        made: list[str] = []
        cur = stop
        try:
            for part in rel.split(os.sep):
                cur = os.path.join(cur, part)
                try:
                    _mkdir(cur, 0o755)
                    made.append(cur)
                except FileExistsError:
                    pass
            return made
        except FileNotFoundError:
            time.sleep(0.01)
        except OSError as e:
            raise CgroupError(f"cannot create cgroup {cur}: {_why(e)}") from None
    raise CgroupError(f"cannot create cgroup {path}: its parent keeps disappearing")


def rmdir(path: str) -> bool:
    """Remove one cgroup directory. True if gone, False if busy (tasks or child cgroups).

    The kernel answers EBUSY for a populated cgroup and never ENOTEMPTY (its files are virtual).
    ENOTEMPTY therefore means an ordinary directory of a fake tree: remove its plain files then.
    """
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError as e:
        if e.errno == errno.ENOTEMPTY:
            entries = list(os.scandir(path))
            if any(entry.is_dir(follow_symlinks=False) for entry in entries):
                return False
            for entry in entries:
                os.unlink(entry.path)
            os.rmdir(path)
            return True
        if e.errno == errno.EBUSY:
            return False
        raise CgroupError(f"cannot remove cgroup {path}: {_why(e)}") from None


def child_dirs(path: str) -> list[str]:
    """Every cgroup below ``path``, deepest first (the order rmdir needs)."""
    out: list[str] = []
    for dirpath, dirnames, _files in os.walk(path, topdown=False):
        for d in dirnames:
            out.append(os.path.join(dirpath, d))
    return out
