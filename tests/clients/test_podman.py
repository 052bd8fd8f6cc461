"""podman 4.3 (``--runtime PATH``) drives isoproof-oci with its default configuration (seccomp
profile, rlimits, console socket for -t), beside runc; see conftest.py for the private setup."""

from __future__ import annotations

import sys

import pytest

from tests.clients import verbs
from tests.clients.conftest import IMAGE, Client, runtimes

pytestmark = pytest.mark.root


@runtimes()
def test_run_rm_and_exit_codes(pm: Client, runtime: str) -> None:
    verbs.run_rm_exit_codes(pm, runtime)


@runtimes()
def test_detached_exec_logs_stop_start_kill_rm(pm: Client, runtime: str) -> None:
    verbs.detached_lifecycle(pm, runtime)


@runtimes()
def test_run_it_has_a_pty_and_console(pm: Client, runtime: str) -> None:
    verbs.tty_run(pm, runtime)


@runtimes()
def test_exec_it_has_a_pty_and_console(pm: Client, runtime: str) -> None:
    verbs.tty_exec(pm, runtime)


@runtimes()
def test_pause_unpause(pm: Client, runtime: str) -> None:
    verbs.pause_unpause(pm, runtime)


@runtimes()
def test_memory_limit_oom_is_137_and_oomkilled(pm: Client, runtime: str) -> None:
    verbs.oom(pm, runtime)


@runtimes()
def test_cpu_shares_reach_the_cgroup(pm: Client, runtime: str) -> None:
    verbs.cpu_shares(pm, runtime)


@runtimes()
def test_pids_limit(pm: Client, runtime: str) -> None:
    verbs.pids_limit(pm, runtime)


@runtimes()
def test_read_only_rootfs(pm: Client, runtime: str) -> None:
    verbs.read_only(pm, runtime)


@runtimes()
def test_tmpfs(pm: Client, runtime: str) -> None:
    verbs.tmpfs(pm, runtime)


@runtimes()
def test_device(pm: Client, runtime: str) -> None:
    verbs.device(pm, runtime)


@runtimes()
def test_user_1000(pm: Client, runtime: str) -> None:
    verbs.user(pm, runtime)


@runtimes()
def test_network_none(pm: Client, runtime: str) -> None:
    verbs.network_none(pm, runtime)


def test_installed_entry_point(pm: Client) -> None:
    """The other tests give podman a wrapper that runs this checkout's runtime package; users give
    it the installed ``isoproof-oci`` (here the tox venv's console script)."""
    if "installed" not in pm.runtime_paths:
        pytest.skip(f"no isoproof-oci installed next to {sys.executable} (tox installs it)")
    r = pm.run("installed", "--rm", IMAGE, "echo", "hello", check=False)
    assert (r.returncode, r.stdout) == (0, "hello\n"), r
