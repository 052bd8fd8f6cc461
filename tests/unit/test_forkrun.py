"""runtime.engine.forkrun: a forked ``main`` must look like an exec'd program where it matters.

Each test hands ``forkrun`` a small ``main`` that reports what the child sees (fds, signals,
stdio, exit paths); no root, no runtime. Tests that change process-wide state the child would
inherit (a subreaper flag, buffered stdout, atexit) run in a subprocess.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from runtime.engine import forkrun
from runtime.engine.home import own_runtime
from runtime.engine.oci import OciRuntime

ROOT = str(Path(__file__).resolve().parents[2])


def run(main: forkrun.Main, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return forkrun.run(main, ["isoproof-oci", *args], timeout)


def test_exit_status_stdout_and_stderr_come_back() -> None:
    def main(args: list[str]) -> int:
        print("out", *args)
        print("err", file=sys.stderr)
        return 3

    cp = run(main, "a", "b")
    assert (cp.returncode, cp.stdout, cp.stderr) == (3, "out a b\n", "err\n")


@pytest.mark.parametrize(
    ("exc", "code", "stderr"),
    [
        (SystemExit(0), 0, ""),
        (SystemExit(2), 2, ""),
        (SystemExit("isoproof-oci: usage"), 1, "isoproof-oci: usage\n"),
        (ValueError("bad"), 1, "isoproof-oci: ValueError: bad\n"),
        (KeyboardInterrupt(), 130, ""),
    ],
)
def test_an_exception_out_of_main_is_one_line_and_a_status(
    exc: BaseException, code: int, stderr: str
) -> None:
    def main(args: list[str]) -> int:
        raise exc

    cp = run(main)
    assert (cp.returncode, cp.stderr) == (code, stderr)


def test_the_parents_garbage_is_never_finalised_in_the_child() -> None:
    """A file in an uncollected reference cycle of the parent: collected in the child, it would
    close its fd number, which the child has closed and may have reused for something else."""

    class Cycle:
        pass

    gc.disable()
    try:
        junk = Cycle()
        junk.me = junk  # type: ignore[attr-defined]
        junk.f = open(os.devnull)  # type: ignore[attr-defined]  # noqa: SIM115
        fd = junk.f.fileno()  # type: ignore[attr-defined]
        del junk

        def main(args: list[str]) -> int:
            os.dup2(0, fd)  # the child's own file on that number
            gc.collect()
            os.fstat(fd)  # EBADF if the parent's garbage was finalised here
            return 0

        cp = run(main)
    finally:
        gc.enable()
        gc.collect()
    assert (cp.returncode, cp.stderr) == (0, "")


def test_the_child_has_only_stdio_open() -> None:
    inheritable = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(inheritable, True)
    sock_a, sock_b = socket.socketpair()
    try:

        def main(args: list[str]) -> int:
            print(json.dumps(sorted(int(f) for f in os.listdir("/proc/self/fd"))))
            return 0

        fds = json.loads(run(main).stdout)
    finally:
        os.close(inheritable)
        sock_a.close()
        sock_b.close()
    assert fds[:3] == [0, 1, 2] and len(fds) <= 4  # 4: the listing's own directory fd


def test_signals_are_those_of_a_fresh_interpreter_and_unblocked() -> None:
    old_term = signal.signal(signal.SIGTERM, lambda *_: None)
    old_usr1 = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
    try:

        def main(args: list[str]) -> int:
            got = {
                "term": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
                "usr1": signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL,
                "int": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
                "pipe": signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN,
                "mask": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
            }
            print(json.dumps(got))
            return 0

        got = json.loads(run(main).stdout)
        # and the parent's state is back as it was
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == {signal.SIGUSR2}
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR2])
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGUSR1, old_usr1)
    assert got == {"term": True, "usr1": True, "int": True, "pipe": True, "mask": []}


def test_cwd_is_the_parents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    def main(args: list[str]) -> int:
        print(os.getcwd())
        return 0

    assert run(main).stdout == f"{tmp_path}\n"


def test_a_timeout_kills_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    def main(args: list[str]) -> int:
        pid_file.write_text(str(os.getpid()))
        time.sleep(30)
        return 0

    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run(main, timeout=1)
    assert time.monotonic() - t0 < 10
    with pytest.raises(ChildProcessError):  # killed and reaped: no zombie left
        os.waitpid(int(pid_file.read_text()), os.WNOHANG)


def test_spawn_gives_the_child_the_fds_it_is_handed_and_waits_like_popen() -> None:
    r, w = os.pipe()

    def main(args: list[str]) -> int:
        sys.stdout.write("to the pipe\n")
        sys.stderr.write("also\n")
        return 4

    try:
        child = forkrun.spawn(main, ["isoproof-oci"], subprocess.DEVNULL, w, w)
        os.close(w)
        assert child.wait() == 4 and child.returncode == 4 and child.poll() == 4
        data = os.read(r, 4096)
    finally:
        os.close(r)
    assert sorted(data.splitlines()) == [b"also", b"to the pipe"]  # order: see the -u test


def test_a_killed_child_reports_minus_the_signal_as_popen() -> None:
    def main(args: list[str]) -> int:
        time.sleep(30)
        return 0

    child = forkrun.spawn(main, ["isoproof-oci"], subprocess.DEVNULL, None, None)
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.2)
    child.kill()
    assert child.wait(10) == -signal.SIGKILL


IN_SUBPROCESS = textwrap.dedent(
    """
    import atexit, ctypes, os, sys
    from runtime.engine import forkrun

    os.close(0)  # no stdin: the child must have none either, and still run
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    parent = os.getpid()
    atexit.register(lambda: print("atexit ran in", "parent" if os.getpid() == parent else "child"))

    def main(args):
        flag = ctypes.c_int(-1)
        libc.prctl(37, ctypes.byref(flag), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER
        print("child subreaper", flag.value, "stdin", sys.stdin)
        return 0

    print("before")  # stdout is a pipe: block-buffered, not yet written
    child = forkrun.spawn(main, ["isoproof-oci"], None, None, None)
    print("child status", child.wait())
    print("parent", "atexit follows")
    """
)


def test_no_subreaper_no_parent_atexit_no_buffered_output_twice() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffers, please
    cp = subprocess.run(
        [sys.executable, "-c", IN_SUBPROCESS],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": ROOT},
        timeout=60,
    )
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert lines == [
        "before",
        "child subreaper 0 stdin None",
        "child status 0",
        "parent atexit follows",
        "atexit ran in parent",
    ]


def test_only_our_own_runtime_is_forked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = own_runtime()
    if not os.path.exists(own):
        pytest.skip(f"no {own} beside this interpreter (not installed)")
    link = tmp_path / "isoproof-oci"
    link.symlink_to(own)
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(f'#!/bin/sh\nexec {own} "$@"\n')
    assert forkrun.is_own_runtime(own)
    assert forkrun.is_own_runtime(str(link))  # another path to the same file
    assert not forkrun.is_own_runtime(str(wrapper))
    assert not forkrun.is_own_runtime("/usr/sbin/runc")
    assert not forkrun.is_own_runtime("isoproof-oci")  # a bare name: exec looks it up
    monkeypatch.setenv(forkrun.ENV_FORK, "0")
    assert not forkrun.is_own_runtime(own)
    assert not OciRuntime(own, str(tmp_path))._fork()


def test_no_fork_while_another_thread_runs(tmp_path: Path) -> None:
    own = own_runtime()
    if not os.path.exists(own):
        pytest.skip(f"no {own} beside this interpreter (not installed)")
    if not forkrun.single_threaded():
        pytest.skip("this test process runs threads already (pytest-xdist?)")
    rt = OciRuntime(own, str(tmp_path))
    assert rt._fork()
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not forkrun.single_threaded()
        assert not rt._fork()
    finally:
        stop.set()
        t.join()
    deadline = time.monotonic() + 5  # the kernel drops the thread's task a moment after join
    while not forkrun.single_threaded() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rt._fork()


def test_forked_and_execd_runtime_answer_the_same(tmp_path: Path) -> None:
    """The real isoproof-oci both ways: a usage error, an unknown container, --version."""
    own = own_runtime()
    if not os.path.exists(own):
        pytest.skip(f"no {own} beside this interpreter (not installed)")
    rt = OciRuntime(own, str(tmp_path))
    for args in (["bogus"], ["state", "isoproof-none"], ["--version"], ["kill", "x", "NOSIG"]):
        forked = rt._run(*args, check=False)
        execd = subprocess.run(
            rt.argv(*args), capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        assert (forked.returncode, forked.stdout, forked.stderr) == (
            execd.returncode,
            execd.stdout,
            execd.stderr,
        ), args
