"""End-to-end tests of the ``isoproof`` engine, typed as a user would type them.

Every command goes through the console script (``/work/venv/bin/isoproof``) in a subprocess, with a
private engine home, bridge, subnet and cgroup parent, against each OCI runtime that can run a
busybox container here (runc; ``isoproof-oci`` once it can). After every test all containers are
force-removed and the test fails if a container directory, mount, netns, veth, address, cgroup,
runtime state or monitor process of its own is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.root

ISOPROOF = str(Path(sys.executable).parent / "isoproof")
OCI_DEFAULT = str(Path(sys.executable).parent / "isoproof-oci")


def _runtimes() -> list[str]:
    return [shutil.which("runc") or "/usr/sbin/runc", OCI_DEFAULT]


class Eng:
    """Runs ``isoproof`` with a private environment and collects what it created."""

    def __init__(self, runtime: str, tag: str, subnet_octet: int, home: Path | None = None) -> None:
        self.runtime = runtime
        # TMPDIR, not /tmp: a VM leg's /tmp is an overlay, which cannot hold the containers' upper
        # layers; the matrix points TMPDIR at the guest's disk.
        self.home = home or Path(tempfile.gettempdir()) / f"isoproof-home-{tag}"
        self.bridge = f"isoproofT{tag[:6]}"
        self.cgroup_parent = f"isoproof-t{tag}"
        self.subnet = f"172.31.{subnet_octet}.0/24"
        self.env = {
            **os.environ,
            "ISOPROOF_HOME": str(self.home),
            "ISOPROOF_OCI_RUNTIME": runtime,
            "ISOPROOF_BRIDGE": self.bridge,
            "ISOPROOF_SUBNET": self.subnet,
            "ISOPROOF_CGROUP_PARENT": self.cgroup_parent,
        }
        self.seen: set[str] = set()

    def run(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        cp = subprocess.run(
            [ISOPROOF, *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        self.note_ids()
        return cp

    def ok(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        cp = self.run(*args, input=input, timeout=timeout)
        assert cp.returncode == 0, f"isoproof {' '.join(args)} -> {cp.returncode}: {cp.stderr}"
        return cp.stdout

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        return subprocess.Popen([ISOPROOF, *args], env=self.env, **kw)

    def on_pty(self, *args: str, stdin: bool = True) -> tuple[subprocess.Popen[bytes], int]:
        """``isoproof ARGS`` with a new pty as its terminal (stdout, stderr and, with ``stdin``,
        stdin). Returns the process and the pty's master; read it with :func:`pty_output`."""
        master, slave = pty.openpty()
        p = subprocess.Popen(
            [ISOPROOF, *args],
            env=self.env,
            stdin=slave if stdin else subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)  # the child has it: EIO on the master once the child's side is gone
        return p, master

    def inspect(self, ref: str, fmt: str) -> str:
        return self.ok("inspect", "-f", fmt, ref).strip()

    def state(self, cid: str) -> dict[str, Any]:
        """The engine's own record (state.json), with what inspect does not show (MonitorPid)."""
        return dict(json.loads((self.home / "containers" / cid / "state.json").read_text()))

    def note_ids(self) -> None:
        d = self.home / "containers"
        if d.exists():
            self.seen.update(p.name for p in d.iterdir() if not p.name.startswith("."))

    def wait_status(self, ref: str, status: str, timeout: float = 15) -> None:
        self.wait_for(
            ref, lambda: self.inspect(ref, "{{.State.Status}}") == status, status, timeout
        )

    def wait_for(self, ref: str, done: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll ``done`` until it holds; else fail with the container's state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return
            time.sleep(0.05)
        raise AssertionError(f"{ref} never reached {what}: {self.inspect(ref, '{{json .State}}')}")

    # -- leak checks ------------------------------------------------------------------------------

    def leaks(self) -> list[str]:
        found = []
        home = str(self.home)
        cdir = self.home / "containers"
        if cdir.exists() and any(cdir.iterdir()):
            found.append(f"container dirs: {sorted(p.name for p in cdir.iterdir())}")
        with open("/proc/self/mountinfo") as f:
            mounts = [ln.split()[4] for ln in f if home in ln]
        if mounts:
            found.append(f"mounts: {mounts}")
        nsdir = self.home / "netns"
        if nsdir.exists() and any(nsdir.iterdir()):
            found.append(f"netns files: {list(nsdir.iterdir())}")
        for cid in self.seen:
            veth = f"isoproof{cid[:7]}"
            if Path(f"/sys/class/net/{veth}").exists():
                found.append(f"veth {veth}")
        used = self.leases()
        if used:
            found.append(f"addresses: {used}")
        for ctrl in Path("/sys/fs/cgroup").iterdir():
            parent = ctrl / self.cgroup_parent
            if parent.is_dir():
                kids = [p.name for p in parent.iterdir() if p.is_dir()]
                if kids:
                    found.append(f"cgroups in {parent}: {kids}")
        oci = self.home / "oci"
        if oci.exists() and any(oci.iterdir()):
            found.append(f"runtime state: {list(oci.iterdir())}")
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"runtime.engine.monitor" in cmd and home.encode() in cmd:
                found.append(f"monitor pid {proc.name}")
        return found

    def lease_file(self) -> Path:
        """The bridge's host-wide lease table (runtime/engine/network.py)."""
        return Path("/run/isoproof") / f"{self.bridge}.leases.json"

    def leases(self) -> dict[str, str]:
        """Addresses leased to containers of this home: {address: container ID}."""
        try:
            table = json.loads(self.lease_file().read_text())
        except FileNotFoundError:
            return {}
        return {
            ip: lease["id"]
            for net in table.values()
            for ip, lease in net.items()
            if lease.get("home") == str(self.home)
        }

    def clean(self) -> None:
        ids = self.run("ps", "-aq", "--no-trunc").stdout.split()
        if ids:
            self.run("rm", "-f", "-v", *ids, timeout=120)


def _free_octet() -> int:
    """A 172.31.X.0/24 that no interface on this host uses yet (other runs may hold some)."""
    import random

    used = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    choices = [x for x in range(100, 250) if f" 172.31.{x}." not in used]
    return random.choice(choices)


@pytest.fixture(scope="module", params=_runtimes(), ids=lambda p: Path(p).name)
def engine_env(request: pytest.FixtureRequest) -> Iterator[Eng]:
    runtime = request.param
    if not os.path.exists(runtime):
        pytest.skip(f"needs the OCI runtime {runtime}; it is not installed")
    tag = uuid.uuid4().hex[:8]
    eng = Eng(runtime, tag, _free_octet())
    probe = eng.run("run", "--rm", "--network", "none", "busybox", "true")
    if probe.returncode != 0 and Path(runtime).name == "isoproof-oci":
        _teardown_env(eng)
        pytest.skip(
            f"needs an isoproof-oci that runs a busybox container; it says: {probe.stderr.strip()[:200]}"
        )
    if probe.returncode != 0:
        _teardown_env(eng)
        pytest.fail(f"isoproof run with {runtime} failed: {probe.stderr.strip()}")
    yield eng
    _teardown_env(eng)


def _teardown_env(eng: Eng) -> None:
    """Session end for one runtime: remove what is left, then prove nothing of ours remains."""
    eng.clean()
    leaks = eng.leaks()
    eng.run("network", "prune", "-f")  # the bridge, its lease table and lock, as a user would
    subprocess.run(["ip", "link", "del", "dev", eng.bridge], capture_output=True)  # if it failed
    for ctrl in Path("/sys/fs/cgroup").iterdir():
        parent = ctrl / eng.cgroup_parent
        if parent.is_dir():
            with contextlib.suppress(OSError):
                parent.rmdir()
            if parent.exists():
                leaks.append(f"cgroup parent {parent}")
    if Path(f"/sys/class/net/{eng.bridge}").exists():
        leaks.append(f"bridge {eng.bridge}")
    with open("/proc/self/mountinfo") as f:
        leaks += [f"mount {ln.split()[4]}" for ln in f if str(eng.home) in ln]
    shutil.rmtree(eng.home, ignore_errors=True)
    eng.lease_file().unlink(missing_ok=True)  # empty by now (leaks() checked): the file and lock
    eng.lease_file().with_suffix(".lock").unlink(missing_ok=True)
    assert not leaks, f"left behind at the end of the session: {leaks}"


@pytest.fixture
def eng(engine_env: Eng) -> Iterator[Eng]:
    yield engine_env
    engine_env.clean()
    leaks = engine_env.leaks()
    assert not leaks, f"left behind: {leaks}"


def pty_output(proc: subprocess.Popen[bytes], master: int, timeout: float = 15) -> bytes:
    """What the pty shows until ``proc`` is done with it (EOF or EIO on the master, or quiet for
    0.5 s after ``proc`` exited), at most ``timeout`` s; then reap ``proc`` and close the master."""
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: no process holds the pty's other side any more
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        proc.wait(timeout=10)
    finally:
        os.close(master)
    return out


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


# -- run, logs, attach, exec --------------------------------------------------------------------


def test_run_foreground_output_and_exit_code(eng: Eng) -> None:
    cp = eng.run("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert cp.returncode == 3
    assert cp.stdout == "out\n"
    assert cp.stderr == "err\n"
    assert eng.ok("ps", "-aq") == ""


def test_foreground_run_carries_large_output_intact(eng: Eng) -> None:
    # More than the attach socket and pipe buffers hold: the monitor must queue, not drop.
    cp = eng.run(
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "head -c 3000000 /dev/zero | tr '\\0' a; echo; echo tail >&2",
    )
    assert cp.returncode == 0
    assert len(cp.stdout) == 3_000_001 and set(cp.stdout[:-1]) == {"a"}
    assert cp.stderr == "tail\n"


def test_run_detached_then_logs_follow_sees_new_lines(eng: Eng) -> None:
    cid = eng.ok(
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 100 ]; do echo tick $i; i=$((i+1)); sleep 0.2; done",
    ).strip()
    assert len(cid) == 64
    follower = eng.popen("logs", "-f", "ticker")
    assert follower.stdout is not None
    seen = []
    deadline = time.monotonic() + 15
    while len(seen) < 6 and time.monotonic() < deadline:
        r, _, _ = select.select([follower.stdout], [], [], 1)
        if r:
            seen.append(follower.stdout.readline())
    assert seen[:6] == [f"tick {i}\n" for i in range(6)]
    eng.ok("kill", "ticker")
    follower.wait(timeout=10)  # logs -f ends when the container does
    assert follower.returncode == 0
    stamped = eng.ok("logs", "-t", "--tail", "1", "ticker").splitlines()
    assert len(stamped) == 1 and stamped[0].split(" ", 1)[0].endswith("Z")


def test_logs_tail_and_since(eng: Eng) -> None:
    eng.ok("run", "--name", "lines", "busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo $i; done")
    assert eng.ok("logs", "lines") == "1\n2\n3\n4\n5\n"
    assert eng.ok("logs", "--tail", "2", "lines") == "4\n5\n"
    assert eng.ok("logs", "--since", "1h", "lines") == "1\n2\n3\n4\n5\n"
    assert eng.ok("logs", "--since", str(time.time() + 60), "lines") == ""


def test_attach_receives_output_and_sends_input(eng: Eng) -> None:
    eng.ok(
        "run",
        "-d",
        "-i",
        "--name",
        "echoer",
        "busybox",
        "sh",
        "-c",
        'while read line; do echo "got $line"; done; echo bye',
    )
    att = eng.popen("attach", "echoer", stdin=subprocess.PIPE)
    assert att.stdin is not None and att.stdout is not None
    time.sleep(0.3)
    att.stdin.write("hello\n")
    att.stdin.flush()
    r, _, _ = select.select([att.stdout], [], [], 10)
    assert r, "no output through attach"
    assert att.stdout.readline() == "got hello\n"
    att.stdin.close()  # detaching does not close a -d -i container's stdin
    time.sleep(0.3)
    assert eng.inspect("echoer", "{{.State.Status}}") == "running"
    att.kill()
    att.wait()
    eng.ok("kill", "echoer")


def test_run_interactive_stdin_eof_ends_container(eng: Eng) -> None:
    cp = eng.run("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done", input="abc\n")
    assert cp.returncode == 0
    assert cp.stdout == "abc\ndone\n"


def test_exec_it_gets_a_pty(eng: Eng) -> None:
    eng.ok("run", "-d", "--name", "shell", "busybox", "sleep", "100")
    p, master = eng.on_pty("exec", "-it", "shell", "sh", "-c", "tty; echo $TERM; exit 5")
    out = pty_output(p, master)
    assert p.returncode == 5
    assert b"/dev/pts/" in out and b"xterm" in out


def test_exec_flags_env_workdir_user_stdin(eng: Eng) -> None:
    eng.ok("run", "-d", "--name", "box", "busybox", "sleep", "100")
    assert eng.ok("exec", "-e", "FOO=bar", "box", "sh", "-c", "echo $FOO") == "bar\n"
    assert eng.ok("exec", "-w", "/tmp", "box", "pwd") == "/tmp\n"
    assert eng.ok("exec", "-u", "nobody", "box", "id", "-u") == "65534\n"
    assert eng.ok("exec", "-i", "box", "cat", input="piped\n") == "piped\n"
    cp = eng.run("exec", "box", "sh", "-c", "exit 7")
    assert cp.returncode == 7
    eng.ok("exec", "-d", "box", "sh", "-c", "echo x > /tmp/detached")
    time.sleep(0.3)
    assert eng.ok("exec", "box", "cat", "/tmp/detached") == "x\n"


def test_run_tty_allocates_a_terminal(eng: Eng) -> None:
    p, master = eng.on_pty("run", "--rm", "-t", "busybox", "tty", stdin=False)
    out = pty_output(p, master)
    assert p.returncode == 0
    assert b"/dev/pts/0" in out


def test_run_it_is_an_interactive_terminal(eng: Eng) -> None:
    p, master = eng.on_pty(
        "run",
        "--rm",
        "-it",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "read x; echo got $x; exit 6",
    )
    deadline = time.monotonic() + 15
    while not eng.ok("ps", "-q") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    os.write(master, b"hello\r")
    out = pty_output(p, master)
    assert p.returncode == 6
    assert b"got hello" in out


# -- stop, kill, pause, restart, rm ------------------------------------------------------------


def test_stop_waits_the_timeout_then_kills(eng: Eng) -> None:
    eng.ok(
        "run",
        "-d",
        "--name",
        "stubborn",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 0.1; done",
    )
    t0 = time.monotonic()
    assert eng.ok("stop", "-t", "2", "stubborn") == "stubborn\n"
    took = time.monotonic() - t0
    assert took >= 2.0, f"stop returned after {took:.2f}s, before its timeout"
    assert eng.inspect("stubborn", "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"


def test_stop_of_a_cooperative_process_is_quick_and_clean(eng: Eng) -> None:
    eng.ok(
        "run",
        "-d",
        "--name",
        "polite",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    )
    t0 = time.monotonic()
    eng.ok("stop", "-t", "10", "polite")
    assert time.monotonic() - t0 < 8
    assert eng.inspect("polite", "{{.State.ExitCode}}") == "0"


def test_kill_is_immediate(eng: Eng) -> None:
    eng.ok(
        "run",
        "-d",
        "--name",
        "victim",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 0.1; done",
    )
    t0 = time.monotonic()
    eng.ok("kill", "victim")
    eng.wait_status("victim", "exited", timeout=5)
    assert time.monotonic() - t0 < 5
    assert eng.inspect("victim", "{{.State.ExitCode}}") == "137"
    eng.ok(
        "run",
        "-d",
        "--name",
        "handler",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 42' USR1; while true; do sleep 0.1; done",
    )
    eng.ok("kill", "-s", "USR1", "handler")  # the signal named, not SIGKILL
    eng.wait_status("handler", "exited")
    assert eng.inspect("handler", "{{.State.ExitCode}}") == "42"


def test_pause_freezes_and_unpause_resumes(eng: Eng) -> None:
    eng.ok("run", "-d", "--name", "spinner", "busybox", "sh", "-c", "while true; do :; done")
    pid = int(eng.inspect("spinner", "{{.State.Pid}}"))
    eng.ok("pause", "spinner")
    assert eng.inspect("spinner", "{{.State.Status}} {{.State.Paused}}") == "paused true"
    assert "(Paused)" in eng.ok("ps")
    before = cpu_ticks(pid)
    time.sleep(1.0)
    assert cpu_ticks(pid) == before, "a paused container used CPU"
    assert eng.run("pause", "spinner").returncode == 1
    eng.ok("unpause", "spinner")
    assert eng.inspect("spinner", "{{.State.Status}}") == "running"
    before = cpu_ticks(pid)
    time.sleep(1.0)
    assert cpu_ticks(pid) > before, "an unpaused container did not run"
    cp = eng.run("unpause", "spinner")
    assert cp.returncode == 1 and "is not paused" in cp.stderr


def test_restart_keeps_name_id_and_logs(eng: Eng) -> None:
    cid = eng.ok(
        "run",
        "-d",
        "--name",
        "again",
        "busybox",
        "sh",
        "-c",
        "echo started; trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ).strip()
    time.sleep(0.3)
    first = eng.inspect("again", "{{.State.StartedAt}}")
    eng.ok("restart", "-t", "5", "again")
    time.sleep(0.3)
    assert eng.inspect("again", "{{.Id}} {{.Name}} {{.State.Status}}") == f"{cid} /again running"
    assert eng.inspect("again", "{{.State.StartedAt}}") != first
    assert eng.ok("logs", "again") == "started\nstarted\n"


def test_rm_force_of_running_container(eng: Eng) -> None:
    eng.ok("run", "-d", "--name", "doomed", "busybox", "sleep", "100")
    cp = eng.run("rm", "doomed")
    assert cp.returncode == 1
    assert cp.stderr.startswith("Error response from daemon: You cannot remove a running container")
    assert len(cp.stderr.strip().splitlines()) == 1
    assert eng.ok("rm", "-f", "doomed") == "doomed\n"
    assert eng.ok("ps", "-aq") == ""


def test_rm_of_paused_container_with_force(eng: Eng) -> None:
    eng.ok("run", "-d", "--name", "frozen", "busybox", "sleep", "100")
    eng.ok("pause", "frozen")
    eng.ok("rm", "-f", "frozen")
    assert eng.ok("ps", "-aq") == ""


def _log_runtime_calls(eng: Eng, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make containers created from here on use a wrapper of the runtime that appends its
    arguments to a file, one call a line (a container keeps the runtime it was created with)."""
    log = tmp_path / "runtime-calls"
    wrapper = tmp_path / "isoproof-logging-runtime"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {eng.runtime} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setitem(eng.env, "ISOPROOF_OCI_RUNTIME", str(wrapper))
    return log


def _deletes(log: Path, cid: str) -> list[str]:
    return [ln for ln in log.read_text().splitlines() if " delete " in ln and ln.endswith(cid)]


@pytest.mark.parametrize(
    ("run_args", "rm_args"),
    [
        (["-d", "busybox", "sleep", "100"], ["rm", "-f"]),  # the monitor deletes after the kill
        (["busybox", "true"], ["rm"]),  # the monitor deleted it when it exited
        (["--rm", "busybox", "true"], []),  # ... and removed it: no rm at all
    ],
    ids=["rm-f-running", "rm-exited", "auto-remove"],
)
def test_a_removal_deletes_the_runtime_container_once(
    eng: Eng,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run_args: list[str],
    rm_args: list[str],
) -> None:
    log = _log_runtime_calls(eng, tmp_path, monkeypatch)
    eng.ok("run", "--network", "none", *run_args)
    (cid,) = [ln.split()[-1] for ln in log.read_text().splitlines() if " create " in ln]
    if rm_args:
        eng.ok(*rm_args, cid)
    assert eng.ok("ps", "-aq") == ""
    assert len(_deletes(log, cid)) == 1, log.read_text()


def test_restart_on_failure_three_times(eng: Eng) -> None:
    eng.ok(
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:3",
        "busybox",
        "sh",
        "-c",
        "echo attempt; exit 2",
    )
    eng.wait_status("flaky", "exited", timeout=30)
    assert (
        eng.inspect("flaky", "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}")
        == "exited 3 2"
    )
    assert eng.ok("logs", "flaky") == "attempt\n" * 4


def test_restart_always_is_not_triggered_by_user_stop(eng: Eng) -> None:
    eng.ok(
        "run",
        "-d",
        "--name",
        "phoenix",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2; exit 0",
    )
    eng.wait_for(
        "phoenix", lambda: int(eng.inspect("phoenix", "{{.RestartCount}}")) >= 2, "2 restarts", 20
    )
    eng.ok("stop", "-t", "1", "phoenix")
    count = eng.inspect("phoenix", "{{.RestartCount}}")
    time.sleep(1.5)
    assert eng.inspect("phoenix", "{{.State.Status}} {{.RestartCount}}") == f"exited {count}"


def test_tty_restarts_leak_no_monitor_fds(eng: Eng) -> None:
    """Each create of a -t container gives the runtime a /dev/null for stdin; the monitor used to
    keep its copy, one more open file per restart for the container's whole life."""
    cid = eng.ok("run", "-d", "-t", "--name", "ttyloop", "--restart", "always",
                 "busybox", "sh", "-c", "sleep 0.2; exit 0").strip()  # fmt: skip

    def restarts() -> int:
        return int(eng.inspect("ttyloop", "{{.RestartCount}}"))

    def monitor_fds() -> int:
        """The fewest fds the monitor held over 1.5 s of samples. A single sample can land inside
        a restart step, which holds a pipe or the console socket for a moment (CI once saw 9 -> 10
        that way); a leak raises the floor by one per restart, and the floor is what we compare."""
        fd_dir = f"/proc/{eng.state(cid)['MonitorPid']}/fd"
        counts = []
        for _ in range(30):
            counts.append(len(os.listdir(fd_dir)))
            time.sleep(0.05)
        return min(counts)

    eng.wait_for("ttyloop", lambda: restarts() >= 1, "1 restart", 20)
    before, at = monitor_fds(), restarts()
    eng.wait_for("ttyloop", lambda: restarts() >= at + 4, "4 more restarts", 40)
    after = monitor_fds()
    assert after <= before, f"monitor fds (floor) {before} -> {after} over 4 restarts"
    eng.ok("rm", "-f", "ttyloop")


def test_memory_hog_is_oom_killed(eng: Eng) -> None:
    cp = eng.run(
        "run",
        "--name",
        "hog",
        "-m",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=aaaaaaaa; while true; do x=$x$x; done",
    )
    assert cp.returncode == 137
    state = json.loads(eng.inspect("hog", "{{json .State}}"))
    assert state["OOMKilled"] is True
    assert state["ExitCode"] == 137
    assert json.loads(eng.ok("inspect", "hog"))[0]["HostConfig"]["Memory"] == 32 * 1024 * 1024


def test_wait_prints_exit_code(eng: Eng) -> None:
    eng.ok("run", "-d", "--name", "waiter", "busybox", "sh", "-c", "sleep 0.5; exit 9")
    cp = eng.run("wait", "waiter")
    assert cp.stdout == "9\n"


def test_create_then_start_attach(eng: Eng) -> None:
    cid = eng.ok("create", "--name", "later", "busybox", "echo", "from create").strip()
    assert eng.inspect("later", "{{.State.Status}}") == "created"
    assert eng.ok("ps", "-a", "--format", "{{.Names}} {{.Status}}") == "later Created\n"
    assert eng.ok("start", "-a", cid[:8]) == "from create\n"
    assert eng.inspect("later", "{{.State.Status}} {{.State.ExitCode}}") == "exited 0"


# -- networking --------------------------------------------------------------------------------


def test_two_containers_ping_each_other_over_the_bridge(eng: Eng) -> None:
    eng.ok("run", "-d", "--name", "alpha", "busybox", "sleep", "100")
    eng.ok("run", "-d", "--name", "beta", "busybox", "sleep", "100")
    a = eng.inspect("alpha", "{{.NetworkSettings.IPAddress}}")
    b = eng.inspect("beta", "{{.NetworkSettings.IPAddress}}")
    assert a != b and a.startswith(eng.subnet.rsplit(".", 2)[0])
    assert eng.run("exec", "alpha", "ping", "-c", "2", "-W", "3", b).returncode == 0
    assert eng.run("exec", "beta", "ping", "-c", "2", "-W", "3", a).returncode == 0
    # host to container over the bridge
    assert (
        subprocess.run(["busybox", "ping", "-c", "1", "-W", "3", a], capture_output=True).returncode
        == 0
    )
    routes = eng.ok("exec", "alpha", "ip", "route")
    gw = eng.inspect("alpha", "{{.NetworkSettings.Gateway}}")
    assert f"default via {gw}" in routes
    hosts = eng.ok("exec", "alpha", "cat", "/etc/hosts")
    assert a in hosts
    assert eng.ok("exec", "alpha", "hostname").strip() == eng.inspect(
        "alpha", "{{.Config.Hostname}}"
    )
    assert Path("/sys/class/net/" + eng.bridge).exists()


def test_network_modes_none_host_container(eng: Eng) -> None:
    links = eng.ok("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
    assert [ln.split(":")[1].strip() for ln in links.splitlines()] == ["lo"]
    host_ns = os.readlink("/proc/self/ns/net")
    assert (
        eng.ok(
            "run", "--rm", "--network", "host", "busybox", "readlink", "/proc/self/ns/net"
        ).strip()
        == host_ns
    )
    eng.ok("run", "-d", "--name", "netowner", "busybox", "sleep", "100")
    owner = eng.ok("exec", "netowner", "readlink", "/proc/self/ns/net").strip()
    joined = eng.ok(
        "run", "--rm", "--network", "container:netowner", "busybox", "readlink", "/proc/self/ns/net"
    )
    assert joined.strip() == owner


def test_namespace_sharing_flags(eng: Eng) -> None:
    host = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("pid", "ipc", "uts")}
    out = eng.ok(
        "run",
        "--rm",
        "--pid",
        "host",
        "--ipc",
        "host",
        "--uts",
        "host",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "for n in pid ipc uts; do readlink /proc/self/ns/$n; done",
    )
    assert out.split() == [host["pid"], host["ipc"], host["uts"]]
    out = eng.ok(
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "for n in pid ipc uts; do readlink /proc/self/ns/$n; done",
    )
    assert not set(out.split()) & set(host.values())
    eng.ok("run", "-d", "--name", "pidowner", "busybox", "sleep", "100")
    mine = eng.ok("exec", "pidowner", "readlink", "/proc/self/ns/pid").strip()
    shared = eng.ok(
        "run",
        "--rm",
        "--pid",
        "container:pidowner",
        "--network",
        "none",
        "busybox",
        "readlink",
        "/proc/self/ns/pid",
    ).strip()
    assert shared == mine


def test_userns_maps_root_to_a_host_range(eng: Eng) -> None:
    cp = eng.run(
        "run",
        "--rm",
        "--userns",
        "200000:65536",
        "--network",
        "none",
        "busybox",
        "cat",
        "/proc/self/uid_map",
    )
    if (
        cp.returncode != 0
        and Path(eng.runtime).name == "isoproof-oci"
        and "setns network: Operation not permitted" in cp.stderr
    ):
        # Known isoproof-oci bug (issue 2): it joins the netns path after creating the user
        # namespace; runc joins path namespaces first. The engine's request is the same for both.
        pytest.xfail(f"isoproof-oci: {cp.stderr.strip()}")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == ["0", "200000", "65536"]
    out = eng.ok(
        "run",
        "--rm",
        "--userns",
        "200000:65536",
        "busybox",
        "sh",
        "-c",
        "id -u; touch /tmp/ok && echo writable",
    )
    assert out.split() == ["0", "writable"]


# -- flags into the container ------------------------------------------------------------------


def test_hostname_env_workdir_user_volume(eng: Eng, tmp_path: Path) -> None:
    (tmp_path / "shared.txt").write_text("from host\n")
    tmp_path.chmod(0o755)
    for parent in list(tmp_path.parents)[:3]:
        parent.chmod(parent.stat().st_mode | 0o005)  # uid 1000 inside must reach the bind source
    out = eng.ok(
        "run",
        "--rm",
        "-h",
        "myhost",
        "-e",
        "GREETING=hi",
        "-w",
        "/srv",
        "-u",
        "1000:1000",
        "-v",
        f"{tmp_path}:/data:ro",
        "busybox",
        "sh",
        "-c",
        "hostname; echo $GREETING; pwd; id -u; id -g; cat /data/shared.txt; touch /data/x || echo ro",
    )
    assert out.splitlines() == ["myhost", "hi", "/srv", "1000", "1000", "from host", "ro"]
    assert not (tmp_path / "x").exists()


def test_named_and_anonymous_volumes(eng: Eng) -> None:
    eng.ok(
        "run",
        "--name",
        "writer",
        "-v",
        "isoproofvol:/vol",
        "-v",
        "/anon",
        "busybox",
        "sh",
        "-c",
        "echo kept > /vol/f; echo gone > /anon/f",
    )
    vols = json.loads(eng.ok("inspect", "writer"))[0]["Mounts"]
    anon = next(m["Source"] for m in vols if m["Destination"] == "/anon")
    eng.ok("rm", "-v", "writer")
    assert not Path(anon).exists()
    assert eng.ok("run", "--rm", "-v", "isoproofvol:/vol", "busybox", "cat", "/vol/f") == "kept\n"


def test_container_writes_never_reach_the_image(eng: Eng) -> None:
    eng.ok(
        "run", "--name", "scribbler", "busybox", "sh", "-c", "echo x > /bin/newfile; rm -f /bin/ls"
    )
    rootfs = Path(json.loads(eng.ok("inspect", "busybox"))[0]["GraphDriver"]["Data"]["Dir"])
    assert (rootfs / "bin/ls").is_symlink() and not (rootfs / "bin/newfile").exists()
    assert eng.ok("start", "-a", "scribbler") == ""
    upper = Path(json.loads(eng.ok("inspect", "scribbler"))[0]["GraphDriver"]["Data"]["UpperDir"])
    assert (upper / "bin/newfile").exists()
    eng.ok("rm", "scribbler")
    assert not upper.exists()
    assert eng.run("run", "--rm", "busybox", "test", "-e", "/bin/newfile").returncode == 1


def _cgroup_file(eng: Eng, ctrl: str, cid: str, name: str) -> str:
    return (Path("/sys/fs/cgroup") / ctrl / eng.cgroup_parent / cid / name).read_text().strip()


def _root_block_device() -> str:
    for dev in sorted(Path("/sys/block").iterdir()):
        if dev.name.startswith(("vd", "sd", "nvme", "xvd")):
            return f"/dev/{dev.name}"
    pytest.skip("needs a block device for blkio throttles; /sys/block has none")


def test_resource_flags_reach_the_cgroup(eng: Eng) -> None:
    if not Path("/sys/fs/cgroup/memory").is_dir():
        pytest.skip("reads v1 cgroup files; this host has no v1 memory hierarchy")
    dev = _root_block_device()
    st = os.stat(dev)
    cid = eng.ok(
        "run",
        "-d",
        "--cpu-shares",
        "512",
        "--cpus",
        "1.5",
        "--cpuset-cpus",
        "0",
        "-m",
        "64m",
        "--memory-swap",
        "128m",
        "--pids-limit",
        "50",
        "--device-write-bps",
        f"{dev}:1mb",
        "--device-read-bps",
        f"{dev}:2mb",
        "--device-write-iops",
        f"{dev}:100",
        "--device-read-iops",
        f"{dev}:200",
        "busybox",
        "sleep",
        "100",
    ).strip()
    assert _cgroup_file(eng, "cpu", cid, "cpu.shares") == "512"
    assert _cgroup_file(eng, "cpu", cid, "cpu.cfs_quota_us") == "150000"
    assert _cgroup_file(eng, "cpu", cid, "cpu.cfs_period_us") == "100000"
    assert _cgroup_file(eng, "cpuset", cid, "cpuset.cpus") == "0"
    assert _cgroup_file(eng, "memory", cid, "memory.limit_in_bytes") == str(64 << 20)
    assert _cgroup_file(eng, "memory", cid, "memory.memsw.limit_in_bytes") == str(128 << 20)
    assert _cgroup_file(eng, "pids", cid, "pids.max") == "50"
    mm = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    assert _cgroup_file(eng, "blkio", cid, "blkio.throttle.write_bps_device") == f"{mm} {1 << 20}"
    assert _cgroup_file(eng, "blkio", cid, "blkio.throttle.read_bps_device") == f"{mm} {2 << 20}"
    assert _cgroup_file(eng, "blkio", cid, "blkio.throttle.write_iops_device") == f"{mm} 100"
    assert _cgroup_file(eng, "blkio", cid, "blkio.throttle.read_iops_device") == f"{mm} 200"
    hc = json.loads(eng.ok("inspect", cid))[0]["HostConfig"]
    assert hc["CpuShares"] == 512 and hc["NanoCpus"] == 1_500_000_000 and hc["PidsLimit"] == 50


# -- listing and inspecting ---------------------------------------------------------------------


def test_ps_inspect_top_stats_and_prefixes(eng: Eng) -> None:
    cid = eng.ok("run", "-d", "--name", "listed", "busybox", "sleep", "100").strip()
    eng.ok("create", "--name", "idle", "busybox", "true")
    assert eng.ok("ps", "-q") == cid[:12] + "\n"
    assert set(eng.ok("ps", "-aq").split()) == {cid[:12], eng.inspect("idle", "{{.Id}}")[:12]}
    table = eng.ok("ps").splitlines()
    assert table[0].split() == [
        "CONTAINER",
        "ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ]
    assert "listed" in table[1] and "Up " in table[1]
    assert eng.ok("ps", "--format", "{{.ID}}\t{{.Names}}") == f"{cid[:12]}\tlisted\n"
    info = json.loads(eng.ok("inspect", cid[:6]))[0]
    assert info["Id"] == cid and info["Name"] == "/listed"
    assert info["State"]["Running"] is True and info["State"]["Pid"] > 0
    assert info["NetworkSettings"]["IPAddress"]
    top = eng.ok("top", "listed").splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"] and "sleep 100" in top[1]
    stats = eng.ok("stats", "--no-stream", "listed").splitlines()
    assert stats[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert stats[1].split()[1] == "listed" and stats[1].split()[-1] == "1"
    cp = eng.run("inspect", "listed", "nosuchthing")
    assert cp.returncode == 1 and "Error: No such object: nosuchthing" in cp.stderr


def test_concurrent_runs_get_distinct_addresses(eng: Eng) -> None:
    procs = [
        eng.popen("run", "-d", "--name", f"para{i}", "busybox", "sleep", "100") for i in range(5)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    ips = [eng.inspect(f"para{i}", "{{.NetworkSettings.IPAddress}}") for i in range(5)]
    assert len(set(ips)) == 5
    rms = [eng.popen("rm", "-f", f"para{i}") for i in range(5)]
    stops = [eng.popen("stop", "-t", "1", f"para{i}") for i in range(5)]
    for p in rms + stops:
        p.communicate(timeout=60)
    assert all(p.returncode == 0 for p in rms)
    assert eng.ok("ps", "-aq") == ""


def _bridge_snapshot(eng: Eng) -> dict[str, Any]:
    """What prune must leave alone while the bridge is in use, as the kernel and the engine see it."""
    dev = Path(f"/sys/class/net/{eng.bridge}")
    ipam = eng.lease_file()
    return {
        "ifindex": (dev / "ifindex").read_text() if dev.exists() else None,
        "ports": sorted(os.listdir(dev / "brif")) if dev.exists() else [],
        "addrs": subprocess.run(
            ["ip", "-o", "-4", "addr", "show", "dev", eng.bridge], capture_output=True, text=True
        ).stdout,
        "ipam": ipam.read_text() if ipam.exists() else None,
    }


def _subnet_addresses_on_host(eng: Eng) -> list[str]:
    prefix = eng.subnet.rsplit(".", 1)[0] + "."
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if f" {prefix}" in ln]


def test_network_prune_removes_an_unused_bridge_and_run_recreates_it(eng: Eng) -> None:
    eng.ok("run", "--rm", "busybox", "true")  # makes the bridge if an earlier test did not
    assert Path(f"/sys/class/net/{eng.bridge}").exists()
    assert eng.ok("network", "prune", "-f") == f"Deleted Networks:\n{eng.bridge}\n"
    assert not Path(f"/sys/class/net/{eng.bridge}").exists()
    assert _subnet_addresses_on_host(eng) == []  # the gateway address went with the bridge
    veths = {f"isoproof{cid[:7]}" for cid in eng.seen}
    assert veths.isdisjoint(os.listdir("/sys/class/net"))
    assert not eng.lease_file().exists()
    assert not eng.lease_file().with_suffix(".lock").exists()  # no lock file per bridge ever made
    assert eng.ok("network", "prune", "-f") == ""  # nothing left to prune: silent, exit 0
    # The next container makes the bridge again and is reachable over it.
    eng.ok("run", "-d", "--name", "again", "busybox", "sleep", "100")
    ip = eng.inspect("again", "{{.NetworkSettings.IPAddress}}")
    assert Path(f"/sys/class/net/{eng.bridge}").exists()
    assert f"inet {eng.subnet.rsplit('.', 1)[0]}.1/" in _bridge_snapshot(eng)["addrs"]
    ping = ["busybox", "ping", "-c", "1", "-W", "3", ip]
    assert subprocess.run(ping, capture_output=True).returncode == 0


def test_network_prune_refuses_while_a_container_is_attached(eng: Eng) -> None:
    eng.ok("run", "-d", "--name", "holder", "busybox", "sleep", "100")
    eng.ok("run", "-d", "--name", "offline", "--network", "none", "busybox", "sleep", "100")
    before = _bridge_snapshot(eng)
    assert before["ifindex"] and before["ports"] and before["ipam"]
    r = eng.run("network", "prune", "-f")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (
        f"Error response from daemon: network {eng.bridge} has active endpoints: holder\n"
    )  # "offline" has no endpoint on the bridge
    assert _bridge_snapshot(eng) == before
    gw = eng.inspect("holder", "{{.NetworkSettings.Gateway}}")
    assert eng.run("exec", "holder", "ping", "-c", "1", "-W", "3", gw).returncode == 0
    eng.ok("rm", "-f", "holder")
    assert eng.ok("network", "prune", "-f") == f"Deleted Networks:\n{eng.bridge}\n"
    assert eng.inspect("offline", "{{.State.Status}}") == "running"


def test_system_prune_removes_the_homes_unused_bridge_and_its_lease_files(eng: Eng) -> None:
    eng.ok("run", "--rm", "busybox", "true")  # makes the bridge if an earlier test did not
    lock = eng.lease_file().with_suffix(".lock")
    assert Path(f"/sys/class/net/{eng.bridge}").exists() and lock.exists()
    gone = eng.ok("create", "busybox", "true").strip()
    stale = lock.with_name(f"{eng.bridge}z.leases.lock")  # a bridge deleted without a prune
    stale.write_text("")
    out = eng.ok("system", "prune", "-f")
    assert out == f"Deleted Containers:\n{gone}\nDeleted Networks:\n{eng.bridge}\n"
    assert not Path(f"/sys/class/net/{eng.bridge}").exists()
    assert _subnet_addresses_on_host(eng) == []
    assert not eng.lease_file().exists() and not lock.exists() and not stale.exists()
    assert eng.ok("system", "prune", "-f") == ""  # nothing left: silent, exit 0
    eng.ok("run", "-d", "--name", "again", "busybox", "sleep", "100")  # made again on demand
    ip = eng.inspect("again", "{{.NetworkSettings.IPAddress}}")
    ping = ["busybox", "ping", "-c", "1", "-W", "3", ip]
    assert subprocess.run(ping, capture_output=True).returncode == 0


def test_system_prune_keeps_a_bridge_in_use(eng: Eng) -> None:
    eng.ok("run", "-d", "--name", "holder", "busybox", "sleep", "100")
    gone = eng.ok("create", "busybox", "true").strip()
    before = _bridge_snapshot(eng)
    assert before["ifindex"] and before["ports"] and before["ipam"]
    r = eng.run("system", "prune", "-f")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"Deleted Containers:\n{gone}\n", "")
    assert _bridge_snapshot(eng) == before
    assert eng.lease_file().with_suffix(".lock").exists()
    gw = eng.inspect("holder", "{{.NetworkSettings.Gateway}}")
    assert eng.run("exec", "holder", "ping", "-c", "1", "-W", "3", gw).returncode == 0


@pytest.mark.parametrize(
    "var, value",
    [("ISOPROOF_BRIDGE", "eth0"), ("ISOPROOF_BRIDGE", "isoproof-far-too-long"),
     ("ISOPROOF_SUBNET", "172.31.0.0/31"), ("ISOPROOF_SUBNET", "not-a-net")],
)  # fmt: skip
def test_system_prune_refuses_a_bad_network_setting_before_removing_anything(
    eng: Eng, var: str, value: str
) -> None:
    kept = eng.ok("create", "busybox", "true").strip()
    eth0 = Path("/sys/class/net/eth0/ifindex")
    before = eth0.read_text() if eth0.exists() else None
    cp = subprocess.run(
        [ISOPROOF, "system", "prune", "-f"],
        env={**eng.env, var: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cp.returncode == 1 and cp.stdout == "", cp
    assert cp.stderr.startswith("Error response from daemon: ") and cp.stderr.count("\n") == 1
    assert eng.ok("ps", "-aq", "--no-trunc").split() == [kept]
    assert (eth0.read_text() if eth0.exists() else None) == before


def test_a_killed_monitor_is_repaired_by_the_next_command(eng: Eng) -> None:
    cid = eng.ok("run", "-d", "--name", "orphan", "busybox", "sleep", "100").strip()
    os.kill(eng.state(cid)["MonitorPid"], 9)
    time.sleep(0.2)
    assert eng.inspect("orphan", "{{.State.Status}}") == "exited"
    eng.ok("rm", "orphan")


HALF_START = (
    "import sys\n"
    "from runtime.engine import lifecycle\n"
    "from runtime.engine.engine import Engine\n"
    "e = Engine()\n"
    "cid = e.resolve(sys.argv[1])\n"
    "lifecycle.prepare(e.home, e.store, cid)\n"
    "lifecycle.spawn_monitor(e.home, cid)  # ... and the CLI dies before the runtime's start\n"
)


def test_a_start_that_died_halfway_is_wound_up_by_its_monitor(
    eng: Eng, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI dies between the runtime's create and start: its end of the ready socket closes,
    and the monitor, seeing the container still created, kills it and winds it up (before, the
    container stayed created with its monitor, init, cgroups and mounts until a later command)."""
    log = _log_runtime_calls(eng, tmp_path, monkeypatch)
    for name in ("halfway", "halfgone"):
        eng.ok("create", "--name", name, "busybox", "echo", "hi")
        cp = subprocess.run(
            [sys.executable, "-c", HALF_START, name], env=eng.env, capture_output=True, text=True
        )
        assert cp.returncode == 0, cp.stderr
        eng.wait_status(name, "exited")
        assert eng.inspect(name, "{{.State.Error}}") == (
            "the client exited before it started the container"
        )
        cid = eng.inspect(name, "{{.Id}}")
        eng.wait_for(name, lambda c=cid: not eng.state(c)["MonitorPid"], "no monitor", 15)
        assert len(_deletes(log, cid)) == 1, log.read_text()  # the monitor's one delete
    assert eng.ok("start", "-a", "halfway") == "hi\n"
    eng.ok("rm", "halfway")
    eng.ok("rm", "halfgone")
    assert eng.ok("ps", "-aq") == ""


# -- images --------------------------------------------------------------------------------------


def _tar_dir(src: Path, dest: Path) -> None:
    with tarfile.open(dest, "w") as tar:
        for p in sorted(src.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(src)), recursive=False)


def test_import_run_rmi(eng: Eng, tmp_path: Path) -> None:
    from runtime.busybox import ensure_rootfs

    tarball = tmp_path / "rootfs.tar"
    _tar_dir(ensure_rootfs(), tarball)
    image_id = eng.ok("import", str(tarball), "isoproofimp:v1").strip()
    assert image_id.startswith("sha256:")
    assert "isoproofimp" in eng.ok("images")
    assert (
        eng.ok("run", "--name", "fromimport", "isoproofimp:v1", "echo", "imported") == "imported\n"
    )
    cp = eng.run("rmi", "isoproofimp:v1")
    assert cp.returncode == 1 and "conflict" in cp.stderr
    eng.ok("rm", "fromimport")
    assert eng.ok("rmi", "isoproofimp:v1").splitlines()[-1] == f"Deleted: {image_id}"
    assert eng.run("run", "--rm", "isoproofimp:v1", "true").returncode == 125


def test_import_from_stdin(eng: Eng, tmp_path: Path) -> None:
    from runtime.busybox import ensure_rootfs

    tarball = tmp_path / "rootfs.tar"
    _tar_dir(ensure_rootfs(), tarball)
    cp = subprocess.run(
        [ISOPROOF, "import", "-", "isoproofstdin"],
        env=eng.env,
        capture_output=True,
        text=True,
        stdin=tarball.open("rb"),
    )
    assert cp.returncode == 0, cp.stderr
    assert eng.ok("images", "-q").count("\n") >= 2
    assert eng.ok("run", "--rm", "isoproofstdin", "echo", "ok") == "ok\n"
    assert eng.ok("rmi", "isoproofstdin").startswith("Untagged: isoproofstdin:latest")
    assert not list((eng.home / "images").glob(".stdin-*"))


def _layer(tmp: Path, name: str, files: dict[str, str | None]) -> Path:
    """A layer tarball; a value of None makes an empty file (used for whiteouts)."""
    root = tmp / f"{name}-tree"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text or "")
    out = tmp / f"{name}.tar"
    _tar_dir(root, out)
    return out


def test_load_docker_save_archive_with_whiteouts(eng: Eng, tmp_path: Path) -> None:
    from runtime.busybox import ensure_rootfs

    base = tmp_path / "base.tar"
    _tar_dir(ensure_rootfs(), base)
    l2 = _layer(tmp_path, "l2", {"etc/keep": "1", "etc/drop": "2", "opaque/old": "3"})
    l3 = _layer(
        tmp_path, "l3", {"etc/.wh.drop": None, "opaque/.wh..wh..opq": None, "opaque/new": "4"}
    )
    arch = tmp_path / "arch"
    arch.mkdir()
    for i, layer in enumerate([base, l2, l3]):
        (arch / f"layer{i}").mkdir()
        shutil.copy(layer, arch / f"layer{i}" / "layer.tar")
    config = {
        "config": {
            "Cmd": ["sh", "-c", "ls /etc/keep /etc/drop /opaque"],
            "Env": ["PATH=/bin:/sbin", "A=b"],
        }
    }
    (arch / "cfg.json").write_text(json.dumps(config))
    (arch / "manifest.json").write_text(
        json.dumps(
            [
                {
                    "Config": "cfg.json",
                    "RepoTags": ["isoproofsave:1"],
                    "Layers": ["layer0/layer.tar", "layer1/layer.tar", "layer2/layer.tar"],
                }
            ]
        )
    )
    archive = tmp_path / "saved.tar"
    _tar_dir(arch, archive)
    assert eng.ok("load", "-i", str(archive)) == "Loaded image: isoproofsave:1\n"
    cp = eng.run("run", "--rm", "isoproofsave:1")
    assert "/etc/keep" in cp.stdout and "new" in cp.stdout
    assert "old" not in cp.stdout and "/etc/drop: No such file" in cp.stderr
    assert eng.ok("run", "--rm", "isoproofsave:1", "sh", "-c", "echo $A") == "b\n"
    eng.ok("rmi", "isoproofsave:1")


def test_load_oci_layout(eng: Eng, tmp_path: Path) -> None:
    import gzip
    import hashlib

    from runtime.busybox import ensure_rootfs

    layout = tmp_path / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> dict[str, Any]:
        d = hashlib.sha256(data).hexdigest()
        (blobs / d).write_bytes(data)
        return {"digest": f"sha256:{d}", "size": len(data)}

    base = tmp_path / "base.tar"
    _tar_dir(ensure_rootfs(), base)
    top = _layer(tmp_path, "top", {"hello.txt": "oci layer\n", "bin/.wh.vi": None})
    layers = [blob(gzip.compress(base.read_bytes())), blob(top.read_bytes())]
    cfg = blob(
        json.dumps(
            {"config": {"Cmd": ["cat", "/hello.txt"]}, "rootfs": {"type": "layers"}}
        ).encode()
    )
    manifest = blob(json.dumps({"schemaVersion": 2, "config": cfg, "layers": layers}).encode())
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        **manifest,
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "annotations": {"org.opencontainers.image.ref.name": "isoproofoci:2"},
                    }
                ],
            }
        )
    )
    assert eng.ok("load", "-i", str(layout)) == "Loaded image: isoproofoci:2\n"
    assert eng.ok("run", "--rm", "isoproofoci:2") == "oci layer\n"
    assert eng.run("run", "--rm", "isoproofoci:2", "test", "-e", "/bin/vi").returncode == 1
    eng.ok("rmi", "isoproofoci:2")


# -- bad input ------------------------------------------------------------------------------------


def _one_line_error(cp: subprocess.CompletedProcess[str], code: int, starts: str) -> None:
    assert cp.returncode == code, (cp.returncode, cp.stderr)
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1, cp.stderr
    assert lines[0].startswith(starts), lines[0]
    assert "Traceback" not in cp.stderr


@pytest.mark.parametrize(
    ("args", "code", "starts"),
    [
        (["run", "nosuchimage"], 125, "Error: No such image: nosuchimage"),
        (
            ["run", "-m", "lots", "busybox", "true"],
            125,
            'isoproof: invalid argument "lots" for "-m, --memory" flag',
        ),
        (
            ["run", "-m", "1k", "busybox", "true"],
            125,
            "isoproof: Minimum memory limit allowed is 6MB",
        ),
        (
            ["run", "--cpu-shares", "many", "busybox", "true"],
            125,
            'isoproof: invalid argument "many"',
        ),
        (["run", "--cpu-shares", "1", "busybox", "true"], 125, "isoproof: invalid --cpu-shares 1"),
        (
            ["run", "--device-write-bps", "/dev/isoproof-nodev:1mb", "busybox", "true"],
            125,
            "Error response from daemon: --device-write-bps: error gathering device information",
        ),
        (
            ["run", "--restart", "sometimes", "busybox", "true"],
            125,
            "isoproof: invalid restart policy",
        ),
        (
            ["run", "--network", "isoproofnonet", "busybox", "true"],
            125,
            "Error response from daemon: network",
        ),
        (["run", "--bogus-flag", "busybox"], 125, "isoproof: unrecognized arguments: --bogus-flag"),
        (
            ["run", "--name", "bad/name", "busybox", "true"],
            125,
            "Error response from daemon: Invalid container name",
        ),
        (["start", "ghost"], 1, "Error response from daemon: No such container: ghost"),
        (["stop", "ghost"], 1, "Error response from daemon: No such container: ghost"),
        (["kill", "ghost"], 1, "Error response from daemon: No such container: ghost"),
        (["logs", "ghost"], 1, "Error response from daemon: No such container: ghost"),
        (["exec", "ghost", "true"], 1, "Error response from daemon: No such container: ghost"),
        (["rm", "ghost"], 1, "Error response from daemon: No such container: ghost"),
        (["rmi", "ghostimage"], 1, "Error: No such image: ghostimage"),
        (["import", "/nonexistent/isoproof.tar"], 1, "Error: open /nonexistent/isoproof.tar"),
        (["frobnicate"], 1, "isoproof: 'frobnicate' is not an isoproof command"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(
    eng: Eng, args: list[str], code: int, starts: str
) -> None:
    _one_line_error(eng.run(*args), code, starts)
    assert eng.ok("ps", "-aq") == ""
    assert not eng.leaks()


def test_a_home_that_cannot_hold_an_overlay_upper_is_named(eng: Eng, tmp_path: Path) -> None:
    """A home on another overlay (a VM's /tmp) makes the kernel refuse the rootfs mount with a
    bare EINVAL: the error names the filesystem and the fix, and the failed run leaves nothing."""
    layers = [tmp_path / d for d in ("lower", "upper", "work", "mnt")]
    for d in layers:
        d.mkdir()
    lower, upper, work, mnt = layers
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(mnt)], check=True)
    other = Eng(eng.runtime, uuid.uuid4().hex[:8], _free_octet(), home=mnt / "home")
    try:
        cp = other.run("run", "--rm", "--network", "none", "busybox", "true")
        _one_line_error(cp, 125, "Error response from daemon: mount overlay")
        assert "upper directory is on overlay" in cp.stderr and "ISOPROOF_HOME" in cp.stderr
        assert other.ok("ps", "-aq") == ""
        assert not other.leaks()
    finally:
        try:
            _teardown_env(other)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)  # also when teardown found leaks


def test_a_home_with_blanks_in_its_path_runs_a_bridged_container(eng: Eng, tmp_path: Path) -> None:
    """The veth's peer is moved into the container's namespace by path inside an ``ip -batch``
    line, which splits on blanks: the path must survive whatever the home is called."""
    other = Eng(eng.runtime, uuid.uuid4().hex[:8], _free_octet(), home=tmp_path / "my home")
    try:
        out = other.ok("run", "--rm", "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
        assert f" {other.subnet.rsplit('.', 2)[0]}." in out, out
    finally:
        _teardown_env(other)


def test_name_clash(eng: Eng) -> None:
    cid = eng.ok("create", "--name", "taken", "busybox", "true").strip()
    cp = eng.run("run", "--name", "taken", "busybox", "true")
    _one_line_error(
        cp,
        125,
        'Error response from daemon: Conflict. The container name "/taken" is already in use',
    )
    assert cid in cp.stderr
    assert eng.ok("ps", "-aq") == cid[:12] + "\n"


def test_exec_in_a_stopped_container(eng: Eng) -> None:
    eng.ok("run", "--name", "stopped", "busybox", "true")
    cid = eng.inspect("stopped", "{{.Id}}")
    _one_line_error(
        eng.run("exec", "stopped", "true"),
        1,
        f"Error response from daemon: Container {cid} is not running",
    )
    _one_line_error(eng.run("attach", "stopped"), 1, "You cannot attach to a stopped container")
    _one_line_error(
        eng.run("kill", "stopped"), 1, "Error response from daemon: Cannot kill container"
    )
    _one_line_error(
        eng.run("pause", "stopped"),
        1,
        f"Error response from daemon: Container {cid} is not running",
    )


def test_command_not_found_exits_127(eng: Eng) -> None:
    cp = eng.run("run", "--rm", "busybox", "/no/such/binary")
    assert cp.returncode == 127, cp.stderr
    assert len(cp.stderr.strip().splitlines()) == 1
    assert eng.ok("ps", "-aq") == ""


def test_dispatchers_to_other_tools_do_not_crash(eng: Eng) -> None:
    for verb in ("verify", "matrix"):
        cp = eng.run(verb, "--help")
        assert "Traceback" not in cp.stderr


# -- defaults and flags added after the verify run (cgroupns, cpu quota, no_new_privs, exec) ----


def test_cgroup_namespace_private_by_default_host_on_request(eng: Eng) -> None:
    host_ns = os.readlink("/proc/self/ns/cgroup")
    script = "readlink /proc/self/ns/cgroup; grep ':memory:' /proc/self/cgroup"
    private = eng.ok("run", "--rm", "--network", "none", "busybox", "sh", "-c", script).split()
    assert private[0] != host_ns
    assert private[1].endswith(":/"), private  # its own cgroup is the root of its view
    shared = eng.ok(
        "run", "--rm", "--network", "none", "--cgroupns", "host", "busybox", "sh", "-c", script
    ).split()
    assert shared[0] == host_ns
    assert eng.cgroup_parent in shared[1]
    bad = eng.run("run", "--rm", "--cgroupns", "sideways", "busybox", "true")
    assert bad.returncode == 125 and bad.stderr.count("\n") == 1


def test_cpu_quota_and_period_reach_the_cgroup(eng: Eng) -> None:
    cid = eng.ok(
        "run",
        "-d",
        "--network",
        "none",
        "--cpu-quota",
        "30000",
        "--cpu-period",
        "60000",
        "busybox",
        "sleep",
        "100",
    ).strip()
    assert _cgroup_file(eng, "cpu", cid, "cpu.cfs_quota_us") == "30000"
    assert _cgroup_file(eng, "cpu", cid, "cpu.cfs_period_us") == "60000"
    both = eng.run("run", "--rm", "--cpus", "1", "--cpu-quota", "30000", "busybox", "true")
    assert both.returncode == 125 and "Conflicting options" in both.stderr


def test_no_new_privileges_on_by_default_off_on_request(eng: Eng) -> None:
    cmd = ("busybox", "grep", "NoNewPrivs", "/proc/self/status")
    assert eng.ok("run", "--rm", "--network", "none", *cmd).split() == ["NoNewPrivs:", "1"]
    off = eng.ok(
        "run", "--rm", "--network", "none", "--security-opt", "no-new-privileges=false", *cmd
    )
    assert off.split() == ["NoNewPrivs:", "0"]


def test_exec_into_a_user_namespace_container_with_the_engines_netns(eng: Eng) -> None:
    # The engine's netns is owned by the host's user namespace: exec must enter it before the
    # container's user namespace (isoproof-oci joined user first: "setns net EPERM").
    eng.ok("run", "-d", "--name", "uexec", "--userns", "200000:65536", "busybox", "sleep", "100")
    pid = int(eng.ok("inspect", "-f", "{{.State.Pid}}", "uexec"))
    cp = eng.run("exec", "uexec", "sh", "-c", "id -u; readlink /proc/self/ns/net")
    if Path(eng.runtime).name == "runc" and "failed to setns into net namespace" in cp.stderr:
        # runc 1.1.5 (Debian 12) joins the user namespace first too; later runc releases join
        # the other namespaces first. The engine's request is the same for both runtimes.
        pytest.xfail(f"runc joins the user namespace first: {cp.stderr.strip()[:160]}")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == ["0", os.readlink(f"/proc/{pid}/ns/net")]
    # The image's root-owned files belong to the container's root (docker's userns-remap shifts
    # its layers too): without that, root inside could not write /etc (it shows as nobody).
    eng.ok("exec", "uexec", "sh", "-c", "echo isoproofusr:x:1000:1000::/:/bin/sh >> /etc/passwd")
    passwd = Path(f"/proc/{pid}/root/etc/passwd")
    assert "isoproofusr" in passwd.read_text()
    assert passwd.stat().st_uid == 200000
    assert "isoproofusr" not in Path("/etc/passwd").read_text()


def test_inspect_right_after_init_dies_reports_the_real_exit(eng: Eng) -> None:
    """A reader must not see the ExitCode 0 that start wrote while the monitor is still recording
    the death (reaping, reading the OOM counter, deleting): verify's OOM check saw exit 0 so. The
    monitor is stopped while its init dies, which holds that window open for as long as we like."""
    cid = eng.ok(
        "run",
        "-d",
        "--name",
        "diesoon",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 7",
    ).strip()
    pid = int(eng.ok("inspect", "-f", "{{.State.Pid}}", "diesoon"))
    monitor = int(eng.state(cid)["MonitorPid"])
    os.kill(monitor, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break  # dead, not yet reaped: the monitor cannot have recorded anything
            time.sleep(0.01)
        reader = eng.popen("inspect", "diesoon")
        time.sleep(0.5)
    finally:
        os.kill(monitor, signal.SIGCONT)
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    st = json.loads(out)[0]["State"]
    assert (st["Status"], st["ExitCode"], st["Pid"]) == ("exited", 7, 0), st


def test_userns_image_copy_keeps_content_modes_and_links(tmp_path: Path) -> None:
    from runtime.engine import lifecycle

    image = tmp_path / "image"
    (image / "etc").mkdir(parents=True)
    (image / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")
    (image / "bin").mkdir()
    (image / "bin" / "su").write_bytes(b"x")
    os.chown(image / "bin" / "su", 0, 0)
    os.chmod(image / "bin" / "su", 0o4755)
    (image / "bin" / "sh").symlink_to("busybox")
    out = lifecycle.shifted_lower(image, tmp_path / "shifted", 100000, 65536)
    assert (out / "etc" / "passwd").read_text() == "root:x:0:0::/:/bin/sh\n"
    assert os.stat(out / "etc" / "passwd").st_uid == 100000
    assert os.stat(out / "bin" / "su").st_mode & 0o7777 == 0o4755  # setuid survives the chown
    assert os.readlink(out / "bin" / "sh") == "busybox"
    assert os.lstat(out / "bin" / "sh").st_uid == 100000
