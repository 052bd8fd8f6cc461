"""What each ``isoproof-oci`` step imports (issue 17: a verb pays only for what it uses).

Each check runs a fresh ``python -S`` and lists which of a few costly modules got imported; the
figures behind the choices are in bench/bench_oci_run.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COSTLY = ("json", "re", "ctypes", "runtime.oci.state", "runtime.cgroups", "runtime.seccomp")


def imported(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {COSTLY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-S", "-c", probe], cwd=REPO, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return set(out.stdout.split())


def test_cli_module_and_argument_parsing_import_none_of_them() -> None:
    # create/run/exec re-exec themselves first: whatever came before would be imported twice
    code = "from runtime.oci import cli; cli.parse_args(['run', '--bundle', '/b', 'x'])"
    assert imported(code) == set()


def test_the_re_exec_needs_ctypes_only() -> None:
    # everything the first process of create/run/exec imports before it execs itself again
    assert imported("from runtime.oci import cli, reexec; import runtime.sys") == {"ctypes"}


def test_start_delete_state_kill_need_no_ctypes_and_no_seccomp() -> None:
    got = imported("from runtime.oci import container")
    assert "ctypes" not in got and "runtime.seccomp" not in got
    assert "runtime.oci.state" in got  # the probe can see what is imported
