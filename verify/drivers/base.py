"""One interface over every runtime the suite can drive.

A driver creates a *running* container from a :class:`ContainerSpec` and tells the host PID of its
init. Everything else the checks need (cgroup directories, namespaces, counters) is read from the
host by the checks themselves, never asked of the runtime.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from verify import host
from verify.spec import ContainerSpec


def find_binary(name: str) -> str:
    """PATH first, then beside this interpreter (a venv's console scripts when the venv is not on
    PATH, as under ``/work/venv/bin/python -m verify.cli``)."""
    import shutil
    import sys

    if "/" in name:
        return name
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


class RuntimeFailure(Exception):
    """The runtime itself failed (non-zero exit of create/start/...): reported as a runtime error,
    not as a failed isolation property."""

    def __init__(self, verb: str, rc: int | None, stderr: str) -> None:
        self.verb, self.rc, self.stderr = verb, rc, stderr.strip()
        last = self.stderr.splitlines()[-1] if self.stderr else "(no stderr)"
        super().__init__(f"runtime {verb} failed (exit {rc}): {last}")


class Unavailable(Exception):
    """The driver cannot run on this host (skip reason)."""


@dataclasses.dataclass
class Container:
    driver: Driver
    name: str
    spec: ContainerSpec
    pid: int
    cgroups: dict[str, Path] = dataclasses.field(default_factory=dict)
    bundle: Path | None = None
    net: dict[str, Any] = dataclasses.field(default_factory=dict)  # addr, peer_ns, peer_addr, veth
    removed: bool = False
    exit_status: int | None = None

    def cgroup_file(self, controller: str, name: str) -> Path:
        """A cgroup file, found from the kernel's view of the init process at creation time."""
        if host.layout().version == 2:
            return self.cgroups[""] / name
        return self.cgroups[controller] / name

    def read_cgroup(self, controller: str, name: str) -> str:
        return self.cgroup_file(controller, name).read_text()

    def alive(self) -> bool:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):  # ESRCH: it went between open and read
            return False
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for init to exit; its exit status as a shell would print it (137 for SIGKILL), or
        None when the status cannot be observed (init is not our child)."""
        timeout *= host.slowdown()
        deadline = time.monotonic() + timeout
        # Polled every 10 ms (was 50: ~25 ms lost on average per container removed, ~100 a leg).
        while time.monotonic() < deadline:
            try:
                got, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                if not self.alive():
                    return None
                time.sleep(0.01)
                continue
            if got == self.pid:
                self.exit_status = (
                    128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                )
                return self.exit_status
            time.sleep(0.01)
        raise TimeoutError(f"container {self.name} (pid {self.pid}) still running after {timeout}s")


class Driver(abc.ABC):
    kind: str = "?"
    lifecycle_verbs = False  # stop/start/restart/logs: the engine's docker-like verbs

    def __init__(self, label: str, prefix: str, workdir: Path) -> None:
        self.label = label
        self.prefix = prefix  # unique per session and worker, starts with "isoproof"
        self.workdir = workdir
        self.counter = 0
        self.containers: list[Container] = []
        self.created: list[Container] = []  # every container ever made, for the leak check
        # The transcript of runtime commands for failure evidence: argv, exit (None: timed out),
        # stderr, duration_s.
        self.log: list[dict[str, Any]] = []

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return f"<runtime {self.label}>"

    def new_name(self) -> str:
        self.counter += 1
        return f"{self.prefix}-{self.counter}"

    @abc.abstractmethod
    def check_available(self) -> None:
        """Raise Unavailable(reason) when this runtime cannot run here."""

    @abc.abstractmethod
    def version(self) -> str: ...

    @abc.abstractmethod
    def create(self, spec: ContainerSpec) -> Container:
        """Create and start a container; return once its init runs the workload."""

    @abc.abstractmethod
    def exec(self, c: Container, args: list[str], timeout: float = 30) -> tuple[int, str, str]: ...

    @abc.abstractmethod
    def exec_argv(self, c: Container, args: list[str]) -> list[str]:
        """The command line that runs ``args`` inside ``c`` (for callers that need a Popen)."""

    def exec_ok(self, c: Container, args: list[str], timeout: float = 30) -> str:
        """Exec a *setup* command that must succeed; its failure is the runtime's, not a verdict
        on an isolation property."""
        rc, out, err = self.exec(c, args, timeout)
        if rc != 0:
            raise RuntimeFailure("exec", rc, err or out)
        return out

    @abc.abstractmethod
    def state(self, c: Container) -> str: ...

    @abc.abstractmethod
    def kill(self, c: Container, signal: str = "KILL") -> None: ...

    @abc.abstractmethod
    def pause(self, c: Container) -> None: ...

    @abc.abstractmethod
    def resume(self, c: Container) -> None: ...

    @abc.abstractmethod
    def remove(self, c: Container) -> None:
        """Stop (if needed) and delete; idempotent."""

    def cleanup(self) -> None:
        """Remove everything this driver made (fixture finaliser)."""
        for c in list(self.containers):
            try:
                self.remove(c)
            except Exception as e:  # noqa: BLE001 - keep cleaning; the leak check reports leftovers
                self.log.append({"argv": ["(cleanup)", c.name], "exit": None, "stderr": str(e)})

    def leftovers(self) -> list[str]:
        """What is left of this driver's containers after cleanup: live init processes and cgroup
        directories (as the kernel named them at creation)."""
        out = []
        # Hierarchies a runtime does not manage leave the container in our own (pre-existing)
        # cgroup, e.g. the root of name=systemd: those are not the container's to remove.
        ours = set(host.cgroup_dirs(os.getpid()).values())
        for c in self.created:
            if c.pid and c.alive():
                out.append(f"process {c.pid} of container {c.name}")
            left = [p for p in set(c.cgroups.values()) - ours if p.exists()]
            out += [f"cgroup {p} of container {c.name}" for p in sorted(left)]
        return out

    def record(self, argv: list[str], rc: int | None, stderr: str, t0: float) -> None:
        """Add one runtime command to the transcript (``t0``: its time.monotonic() start)."""
        self.log.append({"argv": list(argv), "exit": rc, "stderr": stderr.strip()[-2000:],
                         "duration_s": round(time.monotonic() - t0, 3)})  # fmt: skip

    def describe(self, c: Container) -> str:
        """Container state for a failure report."""
        try:
            return self.state(c)
        except Exception as e:  # noqa: BLE001
            return f"(state unavailable: {e})"
