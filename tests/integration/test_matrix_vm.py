"""The kernel matrix for real: boot Debian kernels with virtme-ng (TCG here, ~1 min per boot).

Each test starts its VMs in their own process groups and checks that none is left when it ends.
They use the kernel cache ($ISOPROOF_CACHE/kernels), downloading a kernel with apt the first time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from verify.matrix import cli

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("ISOPROOF_IN_MATRIX_GUEST") == "1",
        reason="boots VMs; this is already a matrix guest (no nested TCG VMs)",
    ),
    pytest.mark.skipif(
        shutil.which("qemu-system-x86_64") is None,
        reason="needs qemu-system-x86 (ISOPROOF_BOOTSTRAP_VM=1 scripts/bootstrap.sh); not installed",
    ),
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt (Debian) for kernels"),
]


def qemu_pids() -> dict[int, int]:
    """pid -> process group of every qemu on the machine (other engineers may run their own)."""
    out = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            comm = (p / "comm").read_text().strip()
            if comm.startswith("qemu-system"):
                out[int(p.name)] = os.getpgid(int(p.name))
        except (OSError, ProcessLookupError):
            continue
    return out


@pytest.fixture
def no_vm_left() -> Iterator[set[int]]:
    """Yield a set the test fills with its legs' process groups; afterwards none may be alive."""
    groups: set[int] = set()
    yield groups
    deadline = time.time() + 15
    while time.time() < deadline:
        left = {pid for pid, pg in qemu_pids().items() if pg in groups}
        if not left:
            return
        time.sleep(0.5)
    for pg in groups:  # do not leave a VM burning the shared cores, then fail
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pg, signal.SIGKILL)
    pytest.fail(f"VMs left running: {sorted(left)}")


def read_pgids(results: Path) -> set[int]:
    return {int(p.read_text()) for p in results.glob("legs/*/vm.pgid")}


def test_one_leg_boots_and_reports(tmp_path: Path, no_vm_left: set[int]) -> None:
    results = tmp_path / "results"
    rc = cli.main(["--leg", "6.12-v2", "--payload", "selfcheck", "--results", str(results)])
    no_vm_left.update(read_pgids(results))
    doc = json.loads((results / "matrix.json").read_text())
    (leg,) = doc["legs"]
    assert leg["status"] == "passed", leg["reason"]
    assert rc == 0
    assert leg["kernel"].startswith("6.12.") and leg["cgroup_mode"] == "v2"
    assert leg["kernel_sha256"] and len(leg["kernel_sha256"]) == 64
    assert 0 < leg["boot_s"] < leg["wall_s"]
    ids = {r["test_id"].split("::")[-1]: r["outcome"] for r in doc["results"]}
    assert ids == {
        "test_kernel_is_the_legs": "passed",
        "test_cgroup_layout_matches_leg": "passed",
        "test_disk_for_io_checks": "passed",
        "test_host_interpreter_and_modules": "passed",
        "test_page_cached_views_and_leg_dir": "passed",
    }
    assert not (results / "legs/6.12-v2/disk.img").exists()  # the sparse disk is not kept


def test_killed_vm_fails_its_leg_only(tmp_path: Path, no_vm_left: set[int]) -> None:
    results = tmp_path / "results"
    # Two legs side by side, each holding its VM for a while after the self-check.
    argv = [sys.executable, "-m", "verify.matrix", "--leg", "6.12-v2", "--leg", "6.1-v2",
            "--jobs", "2", "--payload", "sleep 25", "--results", str(results)]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    victim = results / "legs/6.12-v2"
    try:
        deadline = time.time() + 300
        while not (victim / "booted").exists():  # the guest is up and running its script
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.time() < deadline, "6.12-v2 did not boot in 300 s"
            time.sleep(0.5)
        pgid = int((victim / "vm.pgid").read_text())
        no_vm_left.update(read_pgids(results))
        qemus = [pid for pid, pg in qemu_pids().items() if pg == pgid]
        assert qemus, "no qemu in the leg's process group"
        for pid in qemus:
            os.kill(pid, signal.SIGKILL)  # the VM dies mid-run
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    no_vm_left.update(read_pgids(results))
    assert proc.returncode == 1, out
    doc = json.loads((results / "matrix.json").read_text())
    legs = {leg["leg"]: leg for leg in doc["legs"]}
    killed, other = legs["6.12-v2"], legs["6.1-v2"]
    assert killed["status"] == "error"
    assert "VM died or was killed" in killed["reason"]
    console = results / killed["console_log"]
    assert console.stat().st_size > 0 and "Linux version" in console.read_text(errors="replace")
    assert other["status"] == "passed", other["reason"]
    assert other["counts"]["passed"] == 5  # the self-check
    table = out[out.index("leg ") :]
    assert "6.12-v2" in table and "error: guest stopped" in table
