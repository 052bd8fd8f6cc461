"""v2 devices: a BPF device filter attached to the cgroup.

cgroup v2 has no devices controller and no ``devices.allow``/``devices.deny`` files. Device access
is decided by BPF programs of type CGROUP_DEVICE attached to the cgroup directory: the kernel runs
them on every open and mknod of a device node by a task in the cgroup (or below it) and refuses
with EPERM unless all of them return 1. ``bpf.py`` compiles the OCI rule list into such a program;
this module loads it and attaches it, as runc, crun and youki do.

Replacing the rules (``update``) attaches the new program *before* detaching the old one(s): with
BPF_F_ALLOW_MULTI both run for a moment, which is stricter than either, never looser; there is no
moment without a filter. The program fds are closed once attached: the cgroup holds the program
until it is detached or the cgroup is removed, so nothing needs to outlive this process.

If the kernel will not let us load or attach (no bpf(2), EPERM in a user namespace, an LSM says
no) the rules are not enforced: ``set()`` says so in ``warnings`` rather than failing or keeping
quiet. Any other failure (a verifier refusal is a bug in ``bpf.py``) is a CgroupError.
"""

from __future__ import annotations

import errno
import os

from runtime.cgroups.common import Context
from runtime.cgroups.common import convert as checked
from runtime.cgroups.v2 import bpf
from runtime.errors import CgroupError, SyscallError
from runtime.sys import Sys

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

ENOTSUPP = 524  # the kernel-internal "not supported" some bpf paths leak to user space
# errnos that mean "this kernel or this process cannot use BPF device filters", not "we got it wrong"
UNAVAILABLE = frozenset({errno.EPERM, errno.EACCES, errno.ENOSYS, errno.EOPNOTSUPP, ENOTSUPP})


def unenforced_message(d: str, e: SyscallError) -> str:
    return f"devices: cannot attach a BPF device filter to {d} ({e}); device rules are not enforced"


def wanted(devices: list[dict[str, Any]] | None) -> bool:
    return bool(devices)


def program(devices: list[dict[str, Any]]) -> bytes:
    """The rules, checked one by one (errors name ``devices[i]``), compiled and encoded."""
    rules = [checked(f"devices[{i}]", bpf.parse_rule, r) for i, r in enumerate(devices)]
    return bpf.encode(bpf.device_filter(rules))


def attach(d: str, code: bytes, ctx: Context, sys: Sys) -> bool:
    """Replace the cgroup's device filter with ``code`` (from :func:`program`). True once attached;
    False (with a warning in ``ctx``) if the kernel does not let us use BPF here."""
    dir_fd = _open_dir(d)
    try:
        old = sys.bpf_prog_query(dir_fd, bpf.BPF_CGROUP_DEVICE)
        prog_fd = sys.bpf_prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, code, bpf.LICENSE)
        try:
            sys.bpf_prog_attach(dir_fd, prog_fd, bpf.BPF_CGROUP_DEVICE, bpf.BPF_F_ALLOW_MULTI)
        finally:
            os.close(prog_fd)
    except SyscallError as e:
        os.close(dir_fd)
        if e.errno in UNAVAILABLE:
            ctx.warn(unenforced_message(d, e))
            return False
        raise CgroupError(f"devices: cannot attach a BPF device filter to {d}: {e}") from None
    except BaseException:
        os.close(dir_fd)
        raise
    # The new filter is in place; what is left is removing the ones it replaces. A failure here
    # leaves both attached (stricter than asked, never looser) and is an error: an update that
    # loosens the rules would not have taken effect.
    try:
        for prog_id in old:
            old_fd = sys.bpf_prog_get_fd_by_id(prog_id)
            try:
                sys.bpf_prog_detach(dir_fd, old_fd, bpf.BPF_CGROUP_DEVICE)
            finally:
                os.close(old_fd)
    except SyscallError as e:
        raise CgroupError(
            f"devices: cannot detach the previous device filter from {d}: {e}"
        ) from None
    finally:
        os.close(dir_fd)
    return True


def attached(d: str, sys: Sys) -> bool:
    """Whether a device filter is attached to the cgroup itself. The kernel is the record: a
    manager rebuilt from the state file (``events --stats``) knows nothing of an earlier set()."""
    try:
        dir_fd = _open_dir(d)
    except CgroupError:
        return False
    try:
        return bool(sys.bpf_prog_query(dir_fd, bpf.BPF_CGROUP_DEVICE))
    except SyscallError:
        return False
    finally:
        os.close(dir_fd)


def _open_dir(d: str) -> int:
    try:
        return os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"devices: cannot open {d}: {e.strerror}") from None
