"""Drive a docker-like engine CLI: ``isoproof`` (ours), ``docker`` or ``podman``.

Used only when the engine actually works here: ``check_available`` runs ``<cli> version`` (docker and
podman talk to their daemon/service there) and skips with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from verify import host
from verify.drivers.base import Container, Driver, RuntimeFailure, Unavailable, find_binary
from verify.spec import ContainerSpec

SIZE_SUFFIX = "b"

# The start gate. An engine's `run -d` starts the workload at once and the host learns its pid only
# from `inspect` afterwards; a short workload (an allocation that gets OOM-killed, a fork bomb into
# pids.max) can be over before the host has found its cgroup, which in an emulated guest, where
# each CLI call takes seconds, it always was. So the workload first waits in a shell for SIGUSR1,
# which the driver sends once it has looked (the OCI driver gets the same from create/start). A
# restart runs the gate again; it opens by itself after GATE_MAX_S, so nothing can hang on it.
GATE_MARK = "isoproof-gate"
GATE_MAX_S = 20
_GATE = (
    'trap "go=1" USR1; i=0; '
    'while [ -z "$go" ] && [ $i -lt {ticks} ]; do sleep 0.05; i=$((i+1)); done; '
    'trap - USR1; exec "$@"'
)


# Whether an engine works, asked once per process: every check makes a fresh driver, and in an
# emulated guest each probe is a CLI start of about a second (47 checks, 47 seconds per leg).
_PROBED: dict[tuple[str, str], str] = {}  # (label, binary) -> "" or why it does not work


def gated(args: list[str], max_s: float) -> list[str]:
    """``args`` behind the start gate (pure: unit tests read it)."""
    return ["sh", "-c", _GATE.replace("{ticks}", str(round(max_s / 0.05))), GATE_MARK, *args]


class DockerLikeDriver(Driver):
    kind = "engine"
    lifecycle_verbs = True

    def __init__(
        self, label: str, binary: str, prefix: str, workdir: Path, cgroup_parent: str
    ) -> None:
        super().__init__(label, prefix, workdir)
        self.binary = find_binary(binary)
        self.env = dict(os.environ)
        if label == "isoproof":
            # A private engine home: the suite's containers, images and state never mix with a
            # user's, and the leak check knows exactly where to look.
            self.env["ISOPROOF_HOME"] = str(workdir / f"engine-{prefix}")

    def _cli(
        self, *args: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, *args]
        t0 = time.monotonic()
        try:
            timeout *= host.slowdown()
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL, env=self.env)  # fmt: skip
        except subprocess.TimeoutExpired as e:
            self.record(cmd, None, f"timed out after {timeout}s", t0)
            raise RuntimeFailure(args[0], None, f"timed out after {timeout}s") from e
        self.record(cmd, r.returncode, r.stderr, t0)
        if check and r.returncode != 0:
            raise RuntimeFailure(args[0], r.returncode, r.stderr)
        return r

    def check_available(self) -> None:
        if not os.path.exists(self.binary):
            raise Unavailable(f"needs the {self.label} CLI; not installed on this host")
        key = (self.label, self.binary)
        if key not in _PROBED:
            try:
                # docker/podman: `version` talks to the daemon; our engine has none, `ps` reads its home.
                probe = "ps" if self.label == "isoproof" else "version"
                with tempfile.TemporaryDirectory(prefix="isoproof-probe-") as home:
                    # A throwaway home: probing must not create the engine's state anywhere.
                    env = (
                        {**self.env, "ISOPROOF_HOME": home}
                        if self.label == "isoproof"
                        else self.env
                    )
                    r = subprocess.run(
                        [self.binary, probe], capture_output=True, text=True, timeout=20, env=env
                    )
                _PROBED[key] = (
                    "" if r.returncode == 0 else (r.stderr.strip().splitlines() or ["?"])[-1]
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                _PROBED[key] = str(e)
        if _PROBED[key]:
            raise Unavailable(
                f"needs a working {self.label} engine; `{self.label} {'ps' if self.label == 'isoproof' else 'version'}` says: {_PROBED[key]}"
            )

    def version(self) -> str:
        if self.label == "isoproof":
            from importlib.metadata import version

            return f"isoproof engine {version('isoproof')}"
        r = subprocess.run([self.binary, "--version"], capture_output=True, text=True, timeout=20)
        return (r.stdout.strip().splitlines() or ["unknown"])[0]

    def _run_args(self, spec: ContainerSpec, name: str) -> list[str]:
        a = ["run", "-d", "--name", name]
        if spec.hostname and spec.namespaces.get("uts") == "new":
            a += ["--hostname", spec.hostname]
        for ns, flag in (
            ("ipc", "--ipc"),
            ("pid", "--pid"),
            ("uts", "--uts"),
            ("net", "--network"),
        ):
            how = spec.namespaces.get(ns, "new")
            if how == "host":
                a += [f"{flag}=host"]
            elif isinstance(how, Container):
                a += [f"{flag}=container:{how.name}"]
        if spec.network == "none" and spec.namespaces.get("net") == "new":
            a += ["--network=none"]  # "veth": the engine's default bridge network
        if spec.uid_map:
            if self.label != "isoproof":
                raise Unavailable(
                    f"{self.label} driver: user-namespace maps need daemon configuration"
                )
            a += [f"--userns={spec.uid_map[0][1]}:{spec.uid_map[0][2]}"]
        r = spec.resources
        mem = r.get("memory", {})
        if "limit" in mem:
            a += [
                f"--memory={mem['limit']}{SIZE_SUFFIX}",
                f"--memory-swap={mem.get('swap', mem['limit'])}{SIZE_SUFFIX}",
            ]
        cpu = r.get("cpu", {})
        if "shares" in cpu:
            a += [f"--cpu-shares={cpu['shares']}"]
        if "quota" in cpu:
            a += [f"--cpu-quota={cpu['quota']}", f"--cpu-period={cpu.get('period', 100000)}"]
        if "cpus" in cpu:
            a += [f"--cpuset-cpus={cpu['cpus']}"]
        if "pids" in r:
            a += [f"--pids-limit={r['pids']['limit']}"]
        for key, flag in (("throttleReadBpsDevice", "--device-read-bps"),
                          ("throttleWriteBpsDevice", "--device-write-bps"),
                          ("throttleReadIOPSDevice", "--device-read-iops"),
                          ("throttleWriteIOPSDevice", "--device-write-iops")):  # fmt: skip
            for dev in r.get("blockIO", {}).get(key, []):
                a += [f"{flag}={_devnode(dev['major'], dev['minor'])}:{dev['rate']}"]
        if spec.readonly_rootfs:
            a += ["--read-only"]
        if spec.seccomp is not None:
            if self.label == "isoproof":
                raise Unavailable("the isoproof engine cannot pass a seccomp profile (its "
                                  "--security-opt knows only no-new-privileges)")  # fmt: skip
            profile = self.workdir / f"{name}-seccomp.json"
            profile.write_text(json.dumps(spec.seccomp))
            a += [f"--security-opt=seccomp={profile}"]  # docker and podman read the OCI shape
        return [*a, "busybox", *gated(spec.args, GATE_MAX_S * host.slowdown())]

    def create(self, spec: ContainerSpec) -> Container:
        self.check_available()
        name = self.new_name()
        c = Container(driver=self, name=name, spec=spec, pid=0)
        self.containers.append(c)
        self.created.append(c)
        try:
            self._cli(*self._run_args(spec, name))
            info = self.inspect(c)
            c.pid = int(info["State"]["Pid"])
            try:
                c.cgroups = host.cgroup_dirs(c.pid)
            except FileNotFoundError:
                c.cgroups = {}  # already exited: nothing left to observe from the host
            self._open_gate(c)
            ip = (info.get("NetworkSettings") or {}).get("IPAddress")
            if spec.network == "veth" and ip:
                c.net = {"addr": ip}
        except BaseException:
            self.remove(c)
            raise
        return c

    def inspect(self, c: Container) -> dict:  # type: ignore[type-arg]
        out = json.loads(self._cli("inspect", c.name).stdout)
        return out[0] if isinstance(out, list) else out

    def exec_argv(self, c: Container, args: list[str]) -> list[str]:
        home = (
            ["env", f"ISOPROOF_HOME={self.env['ISOPROOF_HOME']}"]
            if "ISOPROOF_HOME" in self.env
            else []
        )
        return [*home, self.binary, "exec", c.name, *args]

    def exec(self, c: Container, args: list[str], timeout: float = 30) -> tuple[int, str, str]:
        r = self._cli("exec", c.name, *args, timeout=timeout, check=False)
        return r.returncode, r.stdout, r.stderr

    def state(self, c: Container) -> str:
        st = self.inspect(c)["State"]
        if st.get("Paused"):
            return "paused"
        # docker's words -> OCI's, so checks compare one vocabulary.
        status = str(st.get("Status", "unknown"))
        return {"exited": "stopped", "dead": "stopped"}.get(status, status)

    def kill(self, c: Container, signal: str = "KILL") -> None:
        self._cli("kill", "--signal", signal, c.name)

    def pause(self, c: Container) -> None:
        self._cli("pause", c.name)

    def resume(self, c: Container) -> None:
        self._cli("unpause", c.name)

    def stop(self, c: Container, timeout: int = 10) -> None:
        self._cli("stop", "-t", str(timeout), c.name, timeout=timeout + 30)

    def start(self, c: Container) -> None:
        self._cli("start", c.name)
        self._refresh(c)

    def restart(self, c: Container) -> None:
        self._cli("restart", "-t", "1", c.name, timeout=60)
        self._refresh(c)

    def logs(self, c: Container) -> str:
        return self._cli("logs", c.name).stdout

    def _refresh(self, c: Container) -> None:
        c.pid = int(self.inspect(c)["State"]["Pid"])
        if c.pid:
            c.cgroups = host.cgroup_dirs(c.pid)
            self._open_gate(c)

    @staticmethod
    def _open_gate(c: Container) -> None:
        """Let the workload run (see GATE_MARK), and wait until it has: checks then observe the
        workload itself, not the gate's shell."""
        usr1 = 1 << (signal.SIGUSR1 - 1)
        sent = False
        deadline = time.monotonic() + 10 * host.slowdown()
        while c.pid and time.monotonic() < deadline:
            try:
                if GATE_MARK.encode() not in Path(f"/proc/{c.pid}/cmdline").read_bytes():
                    return  # through the gate (or never behind one)
                status = Path(f"/proc/{c.pid}/status").read_text()
            except (FileNotFoundError, ProcessLookupError):
                return
            # Signal only once the shell has its trap: before that, SIGUSR1 would kill it.
            caught = int(status.split("SigCgt:", 1)[1].split()[0], 16)
            if not sent and caught & usr1:
                os.kill(c.pid, signal.SIGUSR1)
                sent = True
            time.sleep(0.01)
        if c.pid:
            raise RuntimeFailure(
                "start", None, f"{c.name}: the workload did not pass the start gate"
            )

    def remove(self, c: Container) -> None:
        if c.removed:
            return
        self._cli("rm", "-f", c.name, check=False)
        deadline = time.monotonic() + 10 * host.slowdown()
        while c.pid and c.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        c.removed = True
        if c in self.containers:
            self.containers.remove(c)
        if c.pid and c.alive():
            # Say so here, naming the container, rather than as an anonymous leak at session end.
            raise RuntimeFailure("rm", None, f"container {c.name} (pid {c.pid}) survived rm -f")

    def cleanup(self) -> None:
        super().cleanup()
        home = self.env.get("ISOPROOF_HOME")
        if self.label == "isoproof" and home:
            shutil.rmtree(home, ignore_errors=True)


def _devnode(major: int, minor: int) -> str:
    p = Path(f"/sys/dev/block/{major}:{minor}/uevent")
    for line in p.read_text().splitlines():
        if line.startswith("DEVNAME="):
            return "/dev/" + line.split("=", 1)[1]
    raise RuntimeError(f"no device node for {major}:{minor}")
