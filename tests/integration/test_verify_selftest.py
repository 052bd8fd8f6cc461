"""Self-test of the verification suite: wrap a good runtime (runc) in a shim that breaks exactly one
property (drops a namespace, drops a limit, writes a wrong value, weakens the security baseline),
run the suite against the shim, and require that exactly the checks about that property fail.

Targeted by default: the ``none`` mutation (the shim changes nothing) runs the whole fast set once,
proving that the unmodified shim passes every fast check here; ``none:cpu`` proves the same for the
slow CPU-share checks the CPU mutations target. Every other mutation runs its targets and a control
set: the other fast checks of the targets' property (``verify.cli.property_of``: per namespace and
per limit in the namespace and resource modules, the whole module for the security baseline,
seccomp and the escapes; the neighbours a sloppy mutation would most likely break too) plus
CONTROL_CHECKS, cheap checks across every check module (a shim that crashes the runtime or breaks
something unrelated shows there; left out in a kernel-matrix guest, see IN_GUEST). Each mutation must fail
exactly its targets among the checks it ran. A mutation proves as much about its own targets as
before; what the targeted mode gives up is proof that it breaks nothing outside its control set.

``ISOPROOF_SELFTEST_FULL=1`` brings back the full mode: every mutation runs the whole fast set (plus
its own slow targets). Measured on the 2-core dev host at load ~2.5: this module took 657 s in the
full mode (median 21.7 s per mutation) and 317 s targeted (median 8.4 s, none:cpu included).

The slow, timing-sensitive checks run only for the mutations that target them. Under the kernel
matrix the suite's hard timeout scales with ``ISOPROOF_TIMEOUT_SCALE`` (5 in a TCG guest); CI's cgroup
v2 leg runs the CPU mutations in a 6.12 guest:
``tox -e matrix -- --leg 6.12-v2 --payload tests -- tests/integration/test_verify_selftest.py -k ...``
(see docs/matrix.md).
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

SHIM = r'''#!{python} -IS
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


# Baselines: the unmodified shim (mutation "none") must pass these slow checks, so that a target
# failing under a mutation is the mutation's doing, not the environment's (a TCG guest, a v2 leg).
BASELINES: dict[str, set[str]] = {
    "none:cpu": {"test_cpu_shares_split", "test_cpu_shares_generated"},
}

# Cheap checks across the properties, run beside every mutation's targets in the targeted mode:
# a shim that crashes the runtime, loses the bundle's edits or breaks an unrelated part of the
# config fails some of these. Each is one short-lived container (0.3-1.1 s here); together they
# touch every check module and the kinds of config a shim rewrites (namespaces, cgroup limits,
# capabilities, no_new_privs, seccomp, fds).
CONTROL_CHECKS = {
    "test_uts_isolated", "test_pid_namespace_init_is_pid1", "test_network_none",
    "test_cgroup_namespace", "test_pids_limit", "test_capabilities", "test_no_new_privs",
    "test_seccomp_profile_in_force", "test_no_host_fds",
}  # fmt: skip

FULL = os.environ.get("ISOPROOF_SELFTEST_FULL", "") not in ("", "0")
# In a kernel-matrix guest (TCG: a check costs 10-30x what it costs on the host) the controls are
# left out: they prove the shim breaks nothing else, which the host's run of this module (the same
# CI run) shows; the guest is there for how the targets judge that kernel's cgroups.
IN_GUEST = os.environ.get("ISOPROOF_IN_MATRIX_GUEST") == "1"
SUITE = [sys.executable, "-m", "pytest", "-p", "verify.plugin", "--pyargs", "verify.checks",
         "-c", os.devnull, "-p", "no:cacheprovider", "-q"]  # fmt: skip


def suite_timeout(seconds: float) -> float:
    """The hard limit on one run of the suite, scaled like the suite's own waits: a TCG guest of the
    kernel matrix (ISOPROOF_TIMEOUT_SCALE=5) runs every process start 5-10x slower."""
    from verify.host import slowdown

    return seconds * slowdown()


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """check name -> its module (``test_resources``...), as the suite collects them against runc."""
    if not os.path.exists(REAL):
        pytest.skip(f"needs runc as the good runtime to wrap; not found at {REAL}")
    d = tmp_path_factory.mktemp("collect")
    cmd = [*SUITE, "--rootdir", str(d), "--runtime", f"oci:{REAL}", "--collect-only"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=suite_timeout(120), cwd="/")
    found: dict[str, str] = {}
    for line in r.stdout.splitlines():
        if "::" in line and line.split("::", 1)[0].endswith(".py"):
            module, name = line.split("::", 1)
            found[name.split("[", 1)[0]] = Path(module).stem
    # Not the exit status: the suite's host snapshot may fail even a collection when another
    # process mounts something meanwhile.
    assert found, f"cannot list the suite's checks:\n{r.stdout}\n{r.stderr}"
    return found


def selection(mutation: str, targets: set[str], catalogue: dict[str, str]) -> set[str] | None:
    """The checks a mutation runs in the targeted mode; None: the whole fast set (+ the targets)."""
    from verify.cli import property_of

    if FULL or mutation == "none":
        return None
    unknown = (targets | CONTROL_CHECKS) - set(catalogue)
    assert not unknown, f"checks named here that the suite does not have: {sorted(unknown)}"
    fast = set(catalogue) - SLOW_CHECKS - ENGINE_ONLY
    props = {property_of(catalogue[t], t) for t in targets}
    mates = {c for c in fast if property_of(catalogue[c], c) in props}
    return targets | mates | (set() if IN_GUEST else CONTROL_CHECKS)


def run_suite(shim: Path, results: Path, workdir: Path, targets: set[str],
              only: set[str] | None = None) -> dict:  # type: ignore[type-arg]  # fmt: skip
    """Run the suite against ``shim``: the checks in ``only``, or the fast set and ``targets``."""
    if only is not None:
        keyexpr = " or ".join(sorted(only))
    else:
        slow = sorted((SLOW_CHECKS | ENGINE_ONLY) - targets)
        keyexpr = " and ".join(f"not {name}" for name in slow)
    cmd = [*SUITE, "--rootdir", str(results), "--runtime", f"oci:{shim}",
           "--isoproof-results", str(results), "--isoproof-workdir", str(workdir),
           "-k", keyexpr]  # fmt: skip
    results.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=suite_timeout(600), cwd="/")
    if not (results / "results.json").exists():
        raise AssertionError(
            f"the suite wrote no results (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        )
    doc = json.loads((results / "results.json").read_text())
    doc["_stdout"] = r.stdout[-4000:]
    return doc


def keep_evidence(case: str, doc: dict, failed: set[str], ran: set[str], results: Path,  # type: ignore[type-arg]
                  node: pytest.Item) -> None:  # fmt: skip
    """What the mutation did, beyond pass/fail: the checks that ran and failed, with their
    messages, as the test's user properties (what the kernel matrix records per test; not through
    record_property, which warns under JUnit's xunit2), and in a matrix leg the suite's own
    results.json in the leg directory (the guest's disk is gone after the leg)."""
    props = node.user_properties
    props += [("checks_ran", len(ran)), ("checks_failed", sorted(failed))]
    for r in doc["results"]:
        if r["check"] in failed and r["outcome"] != "passed":
            message = (r.get("message") or "")[:300]
            props.append((f"failure {r['nodeid'].split('::')[-1]}", message))
    leg_dir = os.environ.get("ISOPROOF_LEG_DIR")
    if leg_dir and (results / "results.json").exists():
        keep = Path(leg_dir) / "selftest" / case.replace(":", "-")
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(results / "results.json", keep / "results.json")


@pytest.mark.parametrize("case", [*MUTATIONS, *BASELINES])
def test_suite_fails_exactly_the_broken_property(
    case: str, tmp_path: Path, catalogue: dict[str, str], request: pytest.FixtureRequest
) -> None:
    if case in BASELINES:  # the unmodified shim, only the baseline's checks: all must pass
        mutation, expected, only = "none", set(), BASELINES[case]
    else:
        mutation, expected = case, MUTATIONS[case]
        only = selection(mutation, expected, catalogue)
    workdir = Path(f"/run/isoproof-selftest-{os.getpid()}-{case.replace(':', '-')}")
    shim = tmp_path / "isoproof-shim"
    shim.write_text(
        SHIM.format(python=sys.executable, real=REAL, mutation=mutation, workdir=str(workdir))
    )
    shim.chmod(0o755)
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
        doc = run_suite(shim, tmp_path / "results", workdir, expected, only)
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
    keep_evidence(case, doc, failed, ran, tmp_path / "results", request.node)
    must_run = expected | (BASELINES.get(case) or set())
    assert must_run <= ran, (
        f"the targeted checks did not run: {sorted(must_run - ran)}\n{doc['_stdout']}"
    )
    if only is not None:  # -k matches substrings: nothing beyond the selection may have run
        assert ran <= only, f"checks outside the selection ran: {sorted(ran - only)}"
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
    cmd = [*SUITE, "--rootdir", str(results), "--runtime", f"oci:{shim}",
           "--isoproof-results", str(results), "--isoproof-workdir", str(workdir),
           "-k", "test_uts_isolated"]  # fmt: skip
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=suite_timeout(300), cwd="/")
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
    cmd = [*SUITE, "--rootdir", str(results), "--runtime", f"oci:{shim}",
           "--isoproof-results", str(results), "--isoproof-workdir", str(workdir),
           "-k", "test_uts_isolated"]  # fmt: skip
    env = {**os.environ, "ISOPROOF_SHIM_SYSCTL": str(int(original) + 1)}
    try:
        r = subprocess.run(
            cmd, capture_output=True, text=True, timeout=suite_timeout(300), cwd="/", env=env
        )
        doc = json.loads((results / "results.json").read_text())
    finally:
        knob.write_text(original)
        shutil.rmtree(workdir, ignore_errors=True)
    assert {x["outcome"] for x in doc["results"]} == {"passed"}, doc["results"]
    snap = doc["host_snapshot"]
    assert r.returncode != 0, "a run that changed a host sysctl passed"
    assert "host snapshot FAILED" in r.stdout
    assert not snap["ok"] and any("fs.lease-break-time" in x for x in snap["differences"]), snap
