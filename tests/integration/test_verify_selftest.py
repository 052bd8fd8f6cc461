"""Self-test of the verification suite: wrap a good runtime (runc) in a shim that breaks exactly one
property (drops a namespace, drops a limit, writes a wrong value, weakens the security baseline),
run the suite against the shim, and require that exactly the checks about that property fail.

The fast checks run for every mutation (to prove nothing *else* fails); the slow, timing-sensitive
checks run only for the mutation that targets them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

REAL = shutil.which("runc") or "/usr/sbin/runc"

# Checks excluded from the always-run set: timing-sensitive or long (hypothesis) ones.
SLOW_CHECKS = {
    "test_cpu_shares_split", "test_cpu_quota", "test_io_throttle", "test_cpu_shares_generated",
    "test_memory_limit_generated", "test_lifecycle_state_machine",
    # The escape races: their power is shown by the runtimes that have those flaws
    # (test_escape_races_catch_real_flaws), not by a shim; runc 1.1.5 itself fails the mount race.
    "test_runtime_executable_unreachable", "test_mount_destination_race",
}  # fmt: skip
# Checks that target the engine's verbs only (skipped for an OCI runtime).
ENGINE_ONLY = {"test_stop_sends_term_first", "test_stop_kills_after_timeout", "test_kill_is_sigkill",
               "test_start_and_restart", "test_logs_and_exec"}  # fmt: skip

SHIM = r'''#!{python}
"""isoproof self-test shim: edits config.json ({mutation}) then execs the real runtime."""
import json, os, sys
REAL = {real!r}
MUTATION = {mutation!r}
args = sys.argv[1:]


def drop_ns(cfg, oci_type):
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != oci_type]
    if oci_type == "uts":
        cfg.pop("hostname", None)  # a hostname needs a UTS namespace of its own
    if oci_type == "user":
        cfg["linux"].pop("uidMappings", None)
        cfg["linux"].pop("gidMappings", None)


def res(cfg):
    return cfg["linux"].setdefault("resources", {{}})


def mutate(cfg):
    m = MUTATION
    if m.startswith("drop_ns:"):
        drop_ns(cfg, m.split(":", 1)[1])
    elif m == "host_dir_visible":
        cfg["mounts"].append({{"destination": "/host", "type": "bind", "source": {workdir!r},
                              "options": ["rbind", "ro"]}})
    elif m == "shared_propagation":
        # A volume that stays a peer of the host's mount (runc keeps "/" a slave of the host unless
        # rootfsPropagation says otherwise): mounts made inside propagate out.
        cfg["linux"]["rootfsPropagation"] = "shared"
        cfg["mounts"].append({{"destination": "/mnt", "type": "bind", "source": {workdir!r} + "/shared",
                              "options": ["rbind", "rshared"]}})
    elif m == "drop_memory":
        res(cfg).pop("memory", None)
    elif m == "memory_x4":
        mem = res(cfg).get("memory")
        if mem and "limit" in mem:
            mem["limit"] *= 4
            mem["swap"] = mem["limit"]
    elif m == "shares_first_x2":
        cpu = res(cfg).get("cpu", {{}})
        if "shares" in cpu and cpu["shares"] in (2048, 256, 512):
            cpu["shares"] *= 2
    elif m == "drop_cpu_shares":  # a runtime that ignores --cpu-shares: the default weight
        res(cfg).get("cpu", {{}}).pop("shares", None)
    elif m == "all_shares_1024":
        cpu = res(cfg).get("cpu", {{}})
        if "shares" in cpu:
            cpu["shares"] = 1024
    elif m == "drop_quota":
        res(cfg).get("cpu", {{}}).pop("quota", None)
    elif m == "drop_pids":
        res(cfg).pop("pids", None)
    elif m == "drop_blockio":
        res(cfg).pop("blockIO", None)
    elif m == "add_sys_admin":
        for k, caps in cfg["process"]["capabilities"].items():
            caps.append("CAP_SYS_ADMIN")
    elif m == "new_privs":
        cfg["process"]["noNewPrivileges"] = False
    elif m == "unmask":
        cfg["linux"]["maskedPaths"] = []
    elif m == "no_readonly":
        cfg["linux"]["readonlyPaths"] = []
    elif m == "drop_seccomp":  # a runtime that accepts linux.seccomp and loads nothing
        cfg["linux"].pop("seccomp", None)
    elif m == "all_devices":
        res(cfg)["devices"] = [{{"allow": True, "access": "rwm"}}]
    elif m in ("sys_rw", "cgroup_rw"):
        dest = "/sys" if m == "sys_rw" else "/sys/fs/cgroup"
        for mnt in cfg["mounts"]:
            if mnt["destination"] == dest:
                mnt["options"] = [o for o in mnt.get("options", []) if o != "ro"]
    elif m == "ignore_oom_score_adj":
        cfg["process"].pop("oomScoreAdj", None)
    elif m == "cwd_host":
        # The CVE-2024-21626 end state: the workload starts in a host directory through a leaked
        # fd, which is closed before it runs (so only its cwd shows it).
        wrap(cfg, 3)
        return True
    elif m == "cwd_escape" and cfg["process"].get("cwd", "/").startswith("/proc/self/fd/"):
        # A runtime that honours process.cwd = /proc/self/fd/N against its own fds (runc < 1.1.12).
        n = int(cfg["process"]["cwd"].rsplit("/", 1)[1])
        cfg["process"]["cwd"] = "/"
        wrap(cfg, n)
        return True
    return m == "leak_host_root_fd"  # whether the runtime gets host / as fd 3


def wrap(cfg, n):
    cfg["process"]["args"] = ["sh", "-c", f'cd /proc/self/fd/{{n}} 2>/dev/null; exec 3<&-; exec "$@"',
                              "sh", *cfg["process"]["args"]]


def leak_host_root():
    """Host / as fd 3, inherited by the runtime, which passes it on (--preserve-fds 1)."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    if fd != 3:
        os.dup2(fd, 3)
        os.close(fd)
    os.set_inheritable(3, True)


verb_i = next((i for i, a in enumerate(args) if a in ("create", "run", "pause")), None)
if "delete" in args and MUTATION == "delete_noop":
    sys.exit(0)  # claims success, removes nothing
if verb_i is not None and args[verb_i] == "pause" and MUTATION == "pause_noop":
    sys.exit(0)  # claims success, freezes nothing
if verb_i is not None and args[verb_i] in ("create", "run"):
    bundle = "."
    for i, a in enumerate(args):
        if a in ("--bundle", "-b"):
            bundle = args[i + 1]
        elif a.startswith("--bundle="):
            bundle = a.split("=", 1)[1]
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    leak = mutate(cfg)
    with open(path, "w") as f:
        json.dump(cfg, f)
    if leak:
        leak_host_root()
        args[verb_i + 1:verb_i + 1] = ["--preserve-fds", "1"]
    if MUTATION == "host_sysctl":  # a runtime that applies a sysctl in the host's namespaces
        with open("/proc/sys/fs/lease-break-time", "w") as f:
            f.write(os.environ["ISOPROOF_SHIM_SYSCTL"])  # the value the self-test chose
os.execv(REAL, [REAL, *args])
'''

# The user-namespace checks cannot run when their container is told to share the host's pid, ipc or
# network namespace: the kernel refuses proc/mqueue/sysfs mounts there, so the runtime fails (a
# *runtime error*, not a property failure). Those are the only runtime errors a mutation may cause.
USERNS_CHECKS = {"test_user_namespace", "test_user_root_is_unprivileged_outside"}
ALLOWED_RUNTIME_ERRORS = {
    "drop_ns:pid": USERNS_CHECKS,
    "drop_ns:ipc": USERNS_CHECKS,
    "drop_ns:network": USERNS_CHECKS,
}

# mutation -> the checks that must fail (and only those)
MUTATIONS: dict[str, set[str]] = {
    "none": set(),
    "drop_ns:uts": {"test_uts_isolated"},
    "drop_ns:pid": {"test_pid_namespace_init_is_pid1", "test_pid1_death_ends_container",
                    "test_cannot_see_host_processes"},
    "drop_ns:ipc": {"test_ipc_isolated_both_ways", "test_ipc_shared_with_container"},
    "drop_ns:network": {"test_network_none", "test_network_veth"},
    "drop_ns:user": {"test_user_namespace", "test_user_root_is_unprivileged_outside"},
    "drop_ns:cgroup": {"test_cgroup_namespace"},
    "host_dir_visible": {"test_rootfs_confinement"},
    "shared_propagation": {"test_mount_no_propagation_out"},
    "drop_memory": {"test_memory_limit_oom", "test_page_cache_capped"},
    "memory_x4": {"test_memory_limit_oom", "test_page_cache_capped"},
    "shares_first_x2": {"test_cpu_shares_split"},
    # Both judged against the requested shares, so they fail on cgroup v2 too (where the kernel
    # then splits evenly, which a check judging the written weights would call a pass).
    "drop_cpu_shares": {"test_cpu_shares_split", "test_cpu_shares_generated"},
    "all_shares_1024": {"test_cpu_shares_split", "test_cpu_shares_generated"},
    "drop_quota": {"test_cpu_quota"},
    "drop_pids": {"test_pids_limit"},
    "drop_blockio": {"test_io_throttle"},
    "pause_noop": {"test_pause_resume"},
    "add_sys_admin": {"test_capabilities", "test_cannot_mount"},
    "new_privs": {"test_no_new_privs"},
    "unmask": {"test_masked_paths"},
    "no_readonly": {"test_readonly_paths", "test_proc_sys_readonly"},
    "all_devices": {"test_no_host_block_devices"},
    "drop_seccomp": {"test_seccomp_profile_in_force", "test_seccomp_applies_to_exec"},
    "leak_host_root_fd": {"test_no_host_fds"},
    "cwd_host": {"test_cwd_inside_root"},
    "cwd_escape": {"test_cwd_cannot_name_a_leaked_fd"},
    "sys_rw": {"test_sysfs_readonly"},
    "cgroup_rw": {"test_cgroupfs_readonly", "test_cannot_raise_own_limits"},
    "ignore_oom_score_adj": {"test_oom_score_adj"},
}  # fmt: skip


def run_suite(shim: Path, results: Path, workdir: Path, targets: set[str]) -> dict:  # type: ignore[type-arg]
    slow = sorted((SLOW_CHECKS | ENGINE_ONLY) - targets)
    keyexpr = " and ".join(f"not {name}" for name in slow)
    cmd = [sys.executable, "-m", "pytest", "-p", "verify.plugin", "--pyargs", "verify.checks",
           "-c", os.devnull, "--rootdir", str(results), "-p", "no:cacheprovider", "-q",
           "--runtime", f"oci:{shim}", "--isoproof-results", str(results),
           "--isoproof-workdir", str(workdir), "-k", keyexpr]  # fmt: skip
    results.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd="/")
    if not (results / "results.json").exists():
        raise AssertionError(
            f"the suite wrote no results (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        )
    doc = json.loads((results / "results.json").read_text())
    doc["_stdout"] = r.stdout[-4000:]
    return doc


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_suite_fails_exactly_the_broken_property(mutation: str, tmp_path: Path) -> None:
    if not os.path.exists(REAL):
        pytest.skip(f"needs runc as the good runtime to wrap; not found at {REAL}")
    workdir = Path(f"/run/isoproof-selftest-{os.getpid()}-{mutation.replace(':', '-')}")
    shim = tmp_path / "isoproof-shim"
    shim.write_text(
        SHIM.format(python=sys.executable, real=REAL, mutation=mutation, workdir=str(workdir))
    )
    shim.chmod(0o755)
    expected = MUTATIONS[mutation]
    workdir.mkdir(parents=True)
    shared = mutation == "shared_propagation"
    if shared:
        # Propagation needs a peer outside: a shared tmpfs on the host that the shim binds into
        # every container with rshared propagation.
        (workdir / "shared").mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "isoproof-shared", str(workdir / "shared")],
            check=True,
        )
        subprocess.run(["mount", "--make-shared", str(workdir / "shared")], check=True)
    try:
        doc = run_suite(shim, tmp_path / "results", workdir, expected)
    finally:
        if shared:
            subprocess.run(["umount", "-R", "-l", str(workdir)], check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    failed = {r["check"] for r in doc["results"] if r["outcome"] in ("failed", "error")}
    runtime_errors = {r["check"] for r in doc["results"] if r["outcome"] == "runtime_error"}
    allowed = ALLOWED_RUNTIME_ERRORS.get(mutation, set())
    assert runtime_errors <= allowed | expected, "runtime errors: " + "; ".join(
        f"{r['nodeid']}: {r.get('message')}"
        for r in doc["results"]
        if r["outcome"] == "runtime_error" and r["check"] not in allowed | expected
    )
    failed |= runtime_errors - allowed
    ran = {r["check"] for r in doc["results"] if r["outcome"] != "skipped"}
    assert expected <= ran, (
        f"the targeted checks did not run: {sorted(expected - ran)}\n{doc['_stdout']}"
    )
    assert failed == expected, (
        f"mutation {mutation}: failed {sorted(failed)}, expected exactly {sorted(expected)}\n{doc['_stdout']}"
    )
    if not shared:  # a mount that propagated out is, rightly, also reported as a leak
        assert doc["leak_check"]["ok"], f"leaks: {doc['leak_check']['leaks']}"


def test_leak_check_fails_the_run(tmp_path: Path) -> None:
    """A runtime whose delete removes nothing: the suite must fail the run and name the leftovers,
    and still leave the host clean afterwards."""
    if not os.path.exists(REAL):
        pytest.skip(f"needs runc as the good runtime to wrap; not found at {REAL}")
    workdir = Path(f"/run/isoproof-selftest-{os.getpid()}-leak")
    workdir.mkdir(parents=True)
    shim = tmp_path / "isoproof-shim"
    shim.write_text(
        SHIM.format(python=sys.executable, real=REAL, mutation="delete_noop", workdir=str(workdir))
    )
    shim.chmod(0o755)
    results = tmp_path / "results"
    results.mkdir()
    cmd = [sys.executable, "-m", "pytest", "-p", "verify.plugin", "--pyargs", "verify.checks",
           "-c", os.devnull, "--rootdir", str(results), "-p", "no:cacheprovider", "-q",
           "--runtime", f"oci:{shim}", "--isoproof-results", str(results),
           "--isoproof-workdir", str(workdir), "-k", "test_uts_isolated"]  # fmt: skip
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd="/")
        doc = json.loads((results / "results.json").read_text())
        session = doc["session"]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert r.returncode != 0, "a run that leaked passed"
    assert "leak check FAILED" in r.stdout
    assert not doc["leak_check"]["ok"] and any("cgroup" in x for x in doc["leak_check"]["leaks"])
    left = [p for p in Path("/sys/fs/cgroup").glob(f"*/isoproof-verify-{session}") if p.exists()]
    assert not left, f"the suite did not clean up after reporting the leak: {left}"


def test_snapshot_fails_a_run_that_writes_a_host_sysctl(tmp_path: Path) -> None:
    """A runtime that writes a (non-namespaced) sysctl of the host at create: every check passes,
    the host snapshot names the sysctl and fails the run. The value is restored afterwards."""
    if not os.path.exists(REAL):
        pytest.skip(f"needs runc as the good runtime to wrap; not found at {REAL}")
    knob = Path("/proc/sys/fs/lease-break-time")
    original = knob.read_text().strip()
    workdir = Path(f"/run/isoproof-selftest-{os.getpid()}-sysctl")
    workdir.mkdir(parents=True)
    shim = tmp_path / "isoproof-shim"
    shim.write_text(
        SHIM.format(python=sys.executable, real=REAL, mutation="host_sysctl", workdir=str(workdir))
    )
    shim.chmod(0o755)
    results = tmp_path / "results"
    results.mkdir()
    cmd = [sys.executable, "-m", "pytest", "-p", "verify.plugin", "--pyargs", "verify.checks",
           "-c", os.devnull, "--rootdir", str(results), "-p", "no:cacheprovider", "-q",
           "--runtime", f"oci:{shim}", "--isoproof-results", str(results),
           "--isoproof-workdir", str(workdir), "-k", "test_uts_isolated"]  # fmt: skip
    env = {**os.environ, "ISOPROOF_SHIM_SYSCTL": str(int(original) + 1)}
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd="/", env=env)
        doc = json.loads((results / "results.json").read_text())
    finally:
        knob.write_text(original)
        shutil.rmtree(workdir, ignore_errors=True)
    assert {x["outcome"] for x in doc["results"]} == {"passed"}, doc["results"]
    snap = doc["host_snapshot"]
    assert r.returncode != 0, "a run that changed a host sysctl passed"
    assert "host snapshot FAILED" in r.stdout
    assert not snap["ok"] and any("fs.lease-break-time" in x for x in snap["differences"]), snap
