"""What each ``isoproof-oci`` step imports (issue 17: a verb pays only for what it uses).

Each check runs a fresh ``python -S`` and lists which of a few costly modules got imported; the
figures behind the choices are in bench/bench_oci_run.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COSTLY = ("json", "re", "enum", "signal", "contextlib", "collections", "functools", "typing",
          "types", "ctypes", "runtime.oci.state", "runtime.cgroups", "runtime.cgroups.v1.memory",
          "runtime.seccomp", "runtime.spec")  # fmt: skip


def imported(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {COSTLY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-S", "-c", probe], cwd=REPO, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return set(out.stdout.split())


def test_cli_module_and_argument_parsing_import_none_of_them() -> None:
    # create/run/exec re-exec themselves first: whatever came before would be imported twice
    code = "from runtime.oci import cli; cli.parse_args(['run', '--bundle', '/b', 'x'])"
    assert imported(code) == set()


def test_the_re_exec_needs_none_of_them() -> None:
    # everything the first process of create/run/exec imports before it execs itself again:
    # unshare and mount go through runtime.sys's light calls (_ctypes), not ctypes
    assert imported("from runtime.oci import cli, reexec; import runtime.sys") == set()


def test_start_delete_state_kill_import_only_the_state_and_the_cgroup_basics() -> None:
    code = ("from runtime.oci import container; from runtime.cgroups import new_manager; "
            "from runtime.cgroups.v1 import V1Manager; from runtime.cgroups.v2 import V2Manager")  # fmt: skip
    assert imported(code) == {"runtime.oci.state", "runtime.cgroups"}


def test_a_sys_brings_ctypes_before_anything_forks() -> None:
    # the init uses capset and openat2 after pivot_root, where the host's library is out of
    # reach: the Sys made before the fork must have loaded what they need
    got = imported("from runtime.sys import Sys, _c; Sys(); _c().CapHeader")
    assert got == {"ctypes", "types"}


def test_the_run_path_imports_no_json_re_enum_or_contextlib() -> None:
    code = ("from runtime.oci import container, init, plan, process, hooks, rootfs, sync; "
            "from runtime import spec, statefile; from runtime.cgroups.v1 import V1Manager")  # fmt: skip
    got = imported(code)
    assert not got & {"json", "re", "enum", "signal", "contextlib", "collections", "functools"}
    assert "runtime.seccomp" not in got  # only a spec with a profile loads it (spec.parse)
    assert "runtime.spec" in got  # the probe can see what is imported
