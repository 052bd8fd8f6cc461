"""Typed errors.

Every error the runtime raises on purpose derives from :class:`IsoproofError`. The CLIs catch exactly
that class and print ``str(err)`` as a single line, so a message must read well on its own and must
not contain a newline. Anything else escaping to the top is a bug and is allowed to show a traceback.
"""

from __future__ import annotations

import errno as _errno
import os


class IsoproofError(Exception):
    """Base class: a failure we expected and can explain in one line."""

    exit_code = 1

    def __str__(self) -> str:
        return " ".join(super().__str__().split())


class SpecError(IsoproofError):
    """The OCI configuration (or a CLI flag turned into one) is malformed or unsupported."""


class StateError(IsoproofError):
    """A lifecycle rule was broken: unknown or duplicate ID, wrong status for the verb."""


class NotFoundError(StateError):
    """No container (or image) by that name."""


class CgroupError(IsoproofError):
    """A cgroup could not be created, written, read or removed."""


class NetworkError(IsoproofError):
    """Bridge, veth or address allocation failed."""


class SyscallError(IsoproofError):
    """A system call failed. Carries errno, the call and the path (or object) it acted on."""

    def __init__(self, call: str, err: int, target: str | None = None) -> None:
        self.call = call
        self.errno = err
        self.target = target
        where = f" {target}" if target else ""
        name = _errno.errorcode.get(err, str(err))
        super().__init__(f"{call}{where}: {os.strerror(err)} ({name})")


class BpfVerifierError(CgroupError):
    """The kernel's BPF verifier refused a program we built: a bug in the program generator.
    The message carries the last line of the verifier's log that gives a reason (the kernel ends
    the log with a "processed N insns" summary, which does not); ``log`` has all of it."""

    def __init__(self, err: int, log: str) -> None:
        self.errno = err
        self.log = log
        lines = [ln for ln in log.splitlines() if ln.strip() and not ln.startswith("processed ")]
        last = lines[-1] if lines else "(empty verifier log)"
        name = _errno.errorcode.get(err, str(err))
        super().__init__(f"bpf(BPF_PROG_LOAD): the verifier refused the program ({name}): {last}")


class suppress:  # noqa: N801 - named like the contextlib.suppress it stands in for
    """``contextlib.suppress``, for the CLI's hot paths: contextlib imports collections and
    functools, ~3 ms on every ``isoproof-oci`` call."""

    def __init__(self, *exceptions: type[BaseException]) -> None:
        self.exceptions = exceptions

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, self.exceptions)
