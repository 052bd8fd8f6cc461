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


LEGS = ("6.12-v2", "6.1-v2")
SELFCHECK = {
    "test_kernel_is_the_legs": "passed",
    "test_cgroup_layout_matches_leg": "passed",
    "test_disk_for_io_checks": "passed",
    "test_host_interpreter_and_modules": "passed",
    "test_page_cached_views_and_leg_dir": "passed",
}


def test_killed_vm_fails_its_leg_only_and_the_other_boots_and_reports(
    tmp_path: Path, no_vm_left: set[int]
) -> None:
    """Two legs side by side; the first to boot is killed mid-run, the other must pass and report.

    One run proves both what a killed VM does to the matrix and what a leg that boots reports (it
    was two tests, 95 + 45 s in CI, each waiting for TCG boots). Killing the first leg to boot means
    the other is still booting or has only just started its script: the kill lands while both run,
    without a long payload to hold the survivor's VM. (That a run whose legs all pass exits 0 is
    the same code path as the host leg's, tests/unit/test_matrix.py.)
    """
    results = tmp_path / "results"
    # No payload beyond the self-check: the victim must still be running when the kill comes
    # (within 0.5 s of its boot mark, or its leg would pass), and its script runs ~30 s after
    # that mark under TCG (cgroup, cache and disk setup, then the self-check; 31 s measured).
    argv = [sys.executable, "-m", "verify.matrix", *(a for leg in LEGS for a in ("--leg", leg)),
            "--jobs", "2", "--payload", "selfcheck", "--results", str(results)]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 300
        while not (booted := [leg for leg in LEGS if (results / "legs" / leg / "booted").exists()]):
            # the guest is up and running its script
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.time() < deadline, f"no leg of {LEGS} booted in 300 s"
            time.sleep(0.5)
        victim_leg = booted[0]
        victim = results / "legs" / victim_leg
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
    (other_leg,) = set(LEGS) - {victim_leg}
    killed, other = legs[victim_leg], legs[other_leg]
    assert killed["status"] == "error"
    assert "VM died or was killed" in killed["reason"]
    console = results / killed["console_log"]
    assert console.stat().st_size > 0 and "Linux version" in console.read_text(errors="replace")
    table = out[out.index("leg ") :]
    assert victim_leg in table and "error: guest stopped" in table
    # The other leg booted its kernel and reported as a leg alone would.
    assert other["status"] == "passed", other["reason"]
    assert other["counts"]["passed"] == 5  # the self-check
    version = other_leg.split("-")[0]
    assert other["kernel"].startswith(f"{version}.") and other["cgroup_mode"] == "v2"
    assert other["kernel_sha256"] and len(other["kernel_sha256"]) == 64
    assert 0 < other["boot_s"] < other["wall_s"]
    ids = {
        r["test_id"].split("::")[-1]: r["outcome"] for r in doc["results"] if r["leg"] == other_leg
    }
    assert ids == SELFCHECK
    assert not (results / "legs" / other_leg / "disk.img").exists()  # the sparse disk is not kept
