"""docker 20.10 (a private dockerd with ``--add-runtime isoproof=PATH``) drives isoproof-oci with its default configuration (seccomp
profile, rlimits, console socket for -t), beside runc; see conftest.py for the private setup."""

from __future__ import annotations

import pytest

from tests.clients import verbs
from tests.clients.conftest import Client, runtimes

pytestmark = pytest.mark.root


@runtimes()
def test_run_rm_and_exit_codes(dk: Client, runtime: str) -> None:
    verbs.run_rm_exit_codes(dk, runtime)


@runtimes()
def test_detached_exec_logs_stop_start_kill_rm(dk: Client, runtime: str) -> None:
    verbs.detached_lifecycle(dk, runtime)


@runtimes()
def test_run_it_has_a_pty_and_console(dk: Client, runtime: str) -> None:
    verbs.tty_run(dk, runtime)


@runtimes()
def test_exec_it_has_a_pty_and_console(dk: Client, runtime: str) -> None:
    verbs.tty_exec(dk, runtime)


@runtimes()
def test_pause_unpause(dk: Client, runtime: str) -> None:
    verbs.pause_unpause(dk, runtime)


@runtimes()
def test_memory_limit_oom_is_137_and_oomkilled(dk: Client, runtime: str) -> None:
    verbs.oom(dk, runtime)


@runtimes()
def test_cpu_shares_reach_the_cgroup(dk: Client, runtime: str) -> None:
    verbs.cpu_shares(dk, runtime)


@runtimes()
def test_pids_limit(dk: Client, runtime: str) -> None:
    verbs.pids_limit(dk, runtime)


@runtimes()
def test_read_only_rootfs(dk: Client, runtime: str) -> None:
    verbs.read_only(dk, runtime)


@runtimes()
def test_tmpfs(dk: Client, runtime: str) -> None:
    verbs.tmpfs(dk, runtime)


@runtimes()
def test_device(dk: Client, runtime: str) -> None:
    verbs.device(dk, runtime)


@runtimes()
def test_user_1000(dk: Client, runtime: str) -> None:
    verbs.user(dk, runtime)


@runtimes()
def test_network_none(dk: Client, runtime: str) -> None:
    verbs.network_none(dk, runtime)


@runtimes()
def test_update_memory(dk: Client, runtime: str) -> None:
    verbs.docker_update_memory(dk, runtime)
