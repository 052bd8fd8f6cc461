"""Real clients drive ``isoproof-oci``: podman and docker, each with its default configuration
(seccomp on), beside runc as the control.

Both clients are fully private to the test session, so nothing of the host's setup is used or
touched:

* ``podman`` -- its own ``--root``, ``--runroot``, ``--tmpdir``, storage driver vfs, cgroup manager
  cgroupfs, events in a file, and a ``containers.conf`` of our own (``CONTAINERS_CONF``) whose
  ``default_ulimits`` stay under the host's hard nofile limit (no CAP_SYS_RESOURCE here) and whose
  network mode is ``none`` (no iptables, no bridge).
* ``docker`` -- a ``dockerd`` started by the session with its own ``--data-root``, ``--exec-root``
  (its containerd's state and root follow them), ``--pidfile``, socket, ``--add-runtime isoproof=...``
  and no bridge, iptables, forwarding or masquerading; stopped by its pid at the end.

Images are imported from the busybox rootfs (no registry is reachable). At the end of the session
the fixtures fail if a container, a cgroup under the clients' parents, a mount under the private
directories, a daemon or a shim is left, or if the host's iptables rules changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO, cgroup_mounts

IMAGE = "isoproof-busybox"
RUNC = "/usr/sbin/runc"
DOCKER = "/usr/bin/docker"  # docker.io's client, not another one earlier in PATH
DOCKERD = "/usr/sbin/dockerd"
PODMAN = "/usr/bin/podman"


def isoproof_oci(base: Path) -> str:
    """An executable the clients can be given as their runtime: ``isoproof-oci`` of this checkout
    (the tests' own tree, as tests/integration runs it), whatever venv or clone runs the tests.
    -S: no site (the editable-install hook, ~35 ms per start); the runtime has no dependency."""
    path = base / "isoproof-oci"
    if not path.exists():
        path.write_text(
            f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO))} exec {shlex.quote(sys.executable)}"
            ' -S -m runtime.oci.cli "$@"\n'
        )
        path.chmod(0o755)
    return str(path)


def installed_isoproof_oci() -> str | None:
    """The console-script entry point installed next to the interpreter (tox's venv), as users run
    it; the wrapper above goes around the installation, so this one is tested on its own."""
    path = Path(sys.executable).parent / "isoproof-oci"
    return str(path) if path.exists() else None


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"{' '.join(self.args)} exited {self.returncode}: {self.stderr.strip()[-2000:]}"


@dataclass
class Client:
    """One client (podman or docker) bound to its private setup; ``runtime`` is chosen per call."""

    kind: str
    base: Path
    argv: list[str]
    env: dict[str, str]
    cgroup_parent: str
    runtime_paths: dict[str, str]
    names: list[str] = field(default_factory=list)

    def __call__(self, *args: str, runtime: str | None = None, check: bool = True,
                 timeout: float = 60, input: str | None = None) -> Result:  # fmt: skip
        argv = list(self.argv)
        if runtime and self.kind == "podman":
            argv += ["--runtime", self.runtime_paths[runtime]]
        argv += args
        # Files, not pipes: a detached container's conmon/shim may keep inherited pipes open.
        out = self.base / f".out-{uuid.uuid4().hex[:8]}"
        err = self.base / f".err-{uuid.uuid4().hex[:8]}"
        try:
            with open(out, "wb") as fo, open(err, "wb") as fe:
                p = subprocess.run(argv, stdout=fo, stderr=fe, env=self.env, timeout=timeout,
                                   cwd=self.base,
                                   input=input.encode() if input is not None else None,
                                   stdin=None if input is not None else subprocess.DEVNULL)  # fmt: skip
            r = Result(argv, p.returncode, out.read_text(errors="replace"),
                       err.read_text(errors="replace"))  # fmt: skip
        finally:
            out.unlink(missing_ok=True)
            err.unlink(missing_ok=True)
        if check and r.returncode != 0:
            raise AssertionError(str(r))
        return r

    def run_args(self, runtime: str, *args: str) -> list[str]:
        """``run`` with the runtime selected the way each client does it."""
        if self.kind == "podman":
            return ["run", *args]  # the runtime is a global flag; no network by containers.conf
        net = [] if "--network" in args else ["--network", "none"]
        return ["run", "--runtime", self.runtime_paths[runtime], *net, *args]

    def run(self, runtime: str, *args: str, check: bool = True, timeout: float = 60) -> Result:
        return self(*self.run_args(runtime, *args), runtime=runtime, check=check, timeout=timeout)

    def name(self) -> str:
        """A fresh container name, removed (forced) at the end of the test that asked for it."""
        n = f"isoproof-{uuid.uuid4().hex[:10]}"
        self.names.append(n)
        return n

    def inspect(self, name: str, runtime: str | None = None) -> dict[str, Any]:
        return json.loads(self("inspect", name, runtime=runtime).stdout)[0]

    def state(self, name: str) -> dict[str, Any]:
        return self.inspect(name)["State"]

    def wait_state(self, name: str, key: str, want: Any, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (st := self.state(name))[key] != want:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: State.{key} stayed {st[key]!r}, wanted {want!r}")
            time.sleep(0.1)
        return st

    def remove_all(self) -> None:
        # podman's rm -f stops first with a 10 s grace (a sleeping PID 1 ignores SIGTERM): 10 s of
        # CI per test; docker's rm -f kills at once.
        now = ["-t", "0"] if self.kind == "podman" else []
        for n in dict.fromkeys(self.names):
            self("rm", "-f", *now, n, check=False)
        self.names.clear()

    def containers(self) -> list[str]:
        return self("ps", "-a", "-q").stdout.split()

    def cgroup_children(self) -> list[str]:
        """Cgroups left under this client's parent in any hierarchy (podman's shared ``conmon``
        cgroup excepted: podman makes it once for every conmon and never removes it)."""
        found = []
        for m in cgroup_mounts():
            parent = os.path.join(m, self.cgroup_parent.strip("/"))
            if os.path.isdir(parent):
                found += [f"{parent}/{d}" for d in os.listdir(parent)
                          if d != "conmon" and os.path.isdir(os.path.join(parent, d))]  # fmt: skip
        return found

    def remove_cgroup_parent(self) -> None:
        for m in cgroup_mounts():
            parent = os.path.join(m, self.cgroup_parent.strip("/"))
            for d in (os.path.join(parent, "conmon"), parent):
                with contextlib.suppress(OSError):
                    os.rmdir(d)


def cgroup_file(pid: int, controller: str, name: str) -> str:
    """Read ``name`` in the v1 ``controller`` cgroup that ``pid`` is in (seen from the host)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(","):
            for m in cgroup_mounts():
                if controller in os.path.basename(m).split(","):
                    return Path(m, path.lstrip("/"), name).read_text().strip()
    raise AssertionError(f"pid {pid} has no {controller} cgroup")


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if str(path) in ln.split()[4]]


def processes_mentioning(needle: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if needle in cmd:
                found.append(f"{pid}: {cmd[:200]}")
    return found


def oci_state_dirs(events: Path) -> list[str]:
    """State directories left in the runtimes' default roots (podman gives them no --root) by the
    containers podman's event log names."""
    from runtime.oci.state import DEFAULT_ROOT

    ids = set()
    for line in events.read_text().splitlines() if events.exists() else []:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            event = json.loads(line)
            if event["Type"] == "container":
                ids.add(event["ID"])
    assert ids, f"no container events in {events}: the state-directory check would see nothing"
    return [d for i in ids for d in (f"/run/runc/{i}", f"{DEFAULT_ROOT}/{i}") if os.path.exists(d)]


def iptables_rules() -> str | None:
    exe = shutil.which("iptables-save")
    if not exe:
        return None
    p = subprocess.run([exe], capture_output=True, text=True)
    # Counters change with traffic; compare the rules only.
    return "\n".join(ln for ln in p.stdout.splitlines() if not ln.startswith(("#", ":")))


def busybox_tar(base: Path) -> Path:
    from runtime.busybox import ensure_rootfs

    tar = base / "busybox.tar"
    if not tar.exists():
        subprocess.run(["tar", "-C", str(ensure_rootfs()), "-cf", str(tar), "."], check=True)
    return tar


# Made by the clients whatever their flags say (hard-coded in them): dockerd's plugin directory,
# containerd 1.6's shim socket directory, podman's (containers/image) blob-info cache for root.
# Removed at the end when the session made them.
HOST_PATHS = ["/run/docker/plugins", "/run/docker", "/run/containerd/s", "/run/containerd",
              "/var/lib/containers/cache", "/var/lib/containers"]  # fmt: skip


@pytest.fixture(scope="session")
def clients_base() -> Iterator[Path]:
    # Short: docker's and containerd's unix sockets live below it (108-byte limit).
    base = Path(tempfile.mkdtemp(prefix="isoproof-cl-", dir="/tmp"))
    existed = {p for p in HOST_PATHS if os.path.exists(p)}
    yield base
    for p in HOST_PATHS:
        if p not in existed:
            if p == "/var/lib/containers/cache":
                shutil.rmtree(p, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(p)  # only when empty: never what something else put there meanwhile
    left = mounts_under(base)
    for m in reversed(left):
        subprocess.run(["umount", "-l", m], check=False)
    shutil.rmtree(base, ignore_errors=True)


def _check_nothing_left(client: Client, iptables_before: str | None) -> list[str]:
    """Cgroups under the client's parent, mounts under its directory (once its daemon is gone:
    dockerd bind-mounts its data root on itself while it runs), changed iptables rules."""
    left = [f"cgroup {c}" for c in _wait_no_cgroups(client)]
    left += [f"mount {m}" for m in mounts_under(client.base)]
    if iptables_rules() != iptables_before:
        left.append("iptables rules changed")
    return left


@pytest.fixture(scope="session")
def podman(clients_base: Path) -> Iterator[Client]:
    if not os.path.exists(PODMAN):
        pytest.skip(f"{PODMAN} not installed (Debian package podman; scripts/bootstrap.sh)")
    base = clients_base / "podman"
    base.mkdir()
    conf = base / "containers.conf"
    conf.write_text(
        "[containers]\n"
        # Our hard limits (nofile 20000 here) cannot be raised without CAP_SYS_RESOURCE; podman
        # asks for nofile 1048576 and nproc 4194304 by default.
        'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
        'netns = "none"\n'
        "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{base}/events.log"\n'
    )
    storage = base / "storage.conf"
    storage.write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{base}/runroot"\ngraphroot = "{base}/root"\n'
    )
    env = dict(os.environ, CONTAINERS_CONF=str(conf), CONTAINERS_STORAGE_CONF=str(storage),
               PYTHONPATH=str(REPO))  # fmt: skip
    argv = [PODMAN, "--root", f"{base}/root", "--runroot", f"{base}/runroot",
            "--tmpdir", f"{base}/tmp", "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
            "--events-backend", "file"]  # fmt: skip
    parent = f"/isoproof-podman-{os.getpid()}"
    runtimes = {"runc": RUNC, "isoproof-oci": isoproof_oci(clients_base)}
    if installed := installed_isoproof_oci():
        runtimes["installed"] = installed
    client = Client("podman", base, argv, env, parent, runtimes)
    before = iptables_rules()
    try:
        client("import", str(busybox_tar(clients_base)), IMAGE, timeout=120)
        yield client
    finally:
        client("rm", "-a", "-f", "-t", "0", check=False)
        left = [f"container {c}" for c in client.containers()]
        left += _check_nothing_left(client, before)
        left += [f"OCI state {d}" for d in oci_state_dirs(base / "events.log")]
        client("system", "reset", "--force", check=False, timeout=120)
        client.remove_cgroup_parent()
        left += [f"process {p}" for p in processes_mentioning(str(base))]
    assert not left, f"podman left behind: {left}"


@pytest.fixture(scope="session")
def docker(clients_base: Path) -> Iterator[Client]:
    if not (os.path.exists(DOCKERD) and os.path.exists(DOCKER)):
        pytest.skip(f"{DOCKERD} or {DOCKER} not installed (Debian docker.io; scripts/bootstrap.sh)")
    base = clients_base / "docker"
    base.mkdir()
    (base / "daemon.json").write_text("{}")  # not the host's /etc/docker/daemon.json
    sock = base / "docker.sock"
    pidfile = base / "docker.pid"
    parent = f"/isoproof-docker-{os.getpid()}"
    env = dict(os.environ, PYTHONPATH=str(REPO), DOCKER_CONFIG=str(base / "cli"))
    env.pop("DOCKER_HOST", None)
    before = iptables_rules()
    log = open(base / "dockerd.log", "wb")  # noqa: SIM115 -- open for the daemon's lifetime
    daemon = subprocess.Popen(
        [DOCKERD, "--config-file", str(base / "daemon.json"), "--data-root", str(base / "data"),
         "--exec-root", str(base / "exec"), "--pidfile", str(pidfile), "--host", f"unix://{sock}",
         "--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
         "--ip-masq=false", "--userland-proxy=false", "--storage-driver", "vfs",
         "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", parent,
         "--add-runtime", f"isoproof={isoproof_oci(clients_base)}"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True,
    )  # fmt: skip
    client = Client("docker", base, [DOCKER, "--host", f"unix://{sock}"], env, parent,
                    {"runc": "runc", "isoproof-oci": "isoproof"})  # fmt: skip
    left: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while client("version", check=False).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"dockerd did not come up: {(base / 'dockerd.log').read_text()[-2000:]}"
                )
            time.sleep(0.2)
        client("import", str(busybox_tar(clients_base)), IMAGE, timeout=120)
        yield client
    finally:
        if daemon.poll() is None:
            client("rm", "-f", *client.containers(), check=False)
            left += [f"container {c}" for c in client.containers()]
        # Stop the daemon by its pid; it stops its own containerd.
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
            left.append("dockerd ignored SIGTERM for 30 s")
        log.close()
        deadline = time.monotonic() + 10
        while (procs := processes_mentioning(str(base))) and time.monotonic() < deadline:
            time.sleep(0.1)
        left += [f"process {p}" for p in procs]
        left += _check_nothing_left(client, before)
        client.remove_cgroup_parent()
    assert not left, f"docker left behind: {left}"


def runtimes(xfail: str | None = None) -> pytest.MarkDecorator:
    """Parametrize a test over runc (the control) and isoproof-oci. ``xfail`` marks a known,
    exact isoproof-oci failure (strict: the test fails once the runtime is fixed, to be unmarked)."""
    ours: Any = "isoproof-oci"
    if xfail:
        ours = pytest.param(ours, marks=pytest.mark.xfail(strict=True, reason=xfail))
    return pytest.mark.parametrize("runtime", ["runc", ours])


@pytest.fixture
def pm(podman: Client) -> Iterator[Client]:
    """The session's podman; the containers this test named are removed after it, and it fails
    if a container cgroup is left under podman's parent."""
    yield podman
    podman.remove_all()
    assert not _wait_no_cgroups(podman), f"cgroups left: {podman.cgroup_children()}"


@pytest.fixture
def dk(docker: Client) -> Iterator[Client]:
    """The session's docker, cleaned after each test like ``pm``."""
    yield docker
    docker.remove_all()
    assert not _wait_no_cgroups(docker), f"cgroups left: {docker.cgroup_children()}"


def _wait_no_cgroups(client: Client, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := client.cgroup_children()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left
