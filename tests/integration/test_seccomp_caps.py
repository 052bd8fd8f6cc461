"""seccomp profiles and capabilities as real clients send them, on the real kernel.

Each probe runs in a container under our runtime and, as the control, under runc with the same
bundle: a denied syscall must fail with the profile's errno and an allowed one must work, in both.
The containers get CAP_SYS_ADMIN where a probe needs it, so that it is the filter, not a missing
capability, that refuses. The ``oci`` fixture fails a test that leaves anything behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from runtime.oci import caps as capslib
from tests.integration.conftest import Bundle, Oci, cgroup_mounts

pytestmark = pytest.mark.root

DATA = Path(__file__).resolve().parents[1] / "data" / "seccomp"
PODMAN = json.loads((DATA / "podman-4.3-default.json").read_text())
DOCKER = json.loads((DATA / "docker-20.10-shape.json").read_text())
RUNC = shutil.which("runc")
needs_runc = pytest.mark.skipif(RUNC is None, reason="needs runc (Debian runc) as the control")

# Each line: NAME=exit status, and the probe's own error message if it failed.
PROBES = {
    "status": "grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status",
    "hostname": "hostname isoproof-sc",  # sethostname
    "unshare": "unshare -u true",  # unshare(CLONE_NEWUTS)
    "fork": "(exit 0)",  # clone(SIGCHLD): passes docker's MASKED_EQ rule
    "linux32": "linux32 true",  # personality(PER_LINUX32): one of the allowed values
}


def script(*names: str) -> str:
    return "; ".join(f"{PROBES[n]} 2>&1; echo {n}=$?" for n in names)


def with_admin(caps: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: sorted({*v, "CAP_SYS_ADMIN"}) if k != "ambient" else v for k, v in caps.items()}


def seccomp_bundle(bundle: Any, profile: dict[str, Any] | None, args: list[str], nnp: bool,
                   admin: bool = True) -> Bundle:  # fmt: skip
    b = bundle(args=args)
    proc = b.config["process"]
    proc["noNewPrivileges"] = nnp
    if admin:
        proc["capabilities"] = with_admin(proc["capabilities"])
    if profile is not None:
        b.config["linux"]["seccomp"] = profile
    b.write()
    return b


def run_ours(oci: Oci, b: Bundle, cid: str) -> tuple[int, str, str]:
    b.out.unlink(missing_ok=True)
    r = oci("run", "--bundle", str(b.path), cid, stdout=b.out, check=False)
    return r.returncode, b.out.read_text(), r.stderr


def run_runc(b: Bundle, tmp: Path) -> tuple[int, str]:
    """The same bundle under runc (its own state root; it removes its cgroup itself)."""
    assert RUNC is not None
    root = tmp / f"runc-root-{uuid.uuid4().hex[:6]}"
    cid = f"isoproof-sc-{uuid.uuid4().hex[:8]}"
    try:
        p = subprocess.run([RUNC, "--root", str(root), "run", "--bundle", str(b.path), cid],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)  # fmt: skip
    finally:
        subprocess.run([RUNC, "--root", str(root), "delete", "--force", cid], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        # runc removes the container's cgroup but not the (now empty) parent it made for it
        parent = b.cgroup.strip("/").split("/")[0]
        for m in cgroup_mounts():
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(m, parent))
    return p.returncode, p.stdout + p.stderr


def lines(out: str) -> dict[str, str]:
    """NAME=status lines and the status file's fields, as a dict."""
    d = {}
    for ln in out.splitlines():
        if "=" in ln and not ln.startswith(" "):
            k, _, v = ln.partition("=")
            d[k.strip()] = v.strip()
        elif ":" in ln and ln.split(":")[0] in ("Seccomp", "Seccomp_filters", "NoNewPrivs"):
            k, _, v = ln.partition(":")
            d[k] = v.strip()
    return d


# --- seccomp: the real clients' profiles ---------------------------------------------------------


@needs_runc
def test_podman_profile_denies_with_its_errno_as_runc_does(oci, bundle, tmp_path):
    """podman's own profile, sent without noNewPrivileges (the filter goes in while CAP_SYS_ADMIN
    is held): sethostname is in an EPERM rule, unshare and personality(8) are allowed."""
    b = seccomp_bundle(bundle, PODMAN, ["sh", "-c", script(*PROBES)], nnp=False)
    code, out, err = run_ours(oci, b, "sc-podman")
    assert code == 0, err
    got = lines(out)
    assert got["Seccomp"] == "2" and got["Seccomp_filters"] == "1" and got["NoNewPrivs"] == "0"
    assert got["hostname"] == "1" and "sethostname: Operation not permitted" in out
    assert got["unshare"] == "0" and got["fork"] == "0" and got["linux32"] == "0"
    rcode, rout = run_runc(b, tmp_path)
    assert rcode == 0 and lines(rout) == got, rout


def test_without_the_profile_the_same_probes_succeed(oci, bundle):
    """The control for the denials above: with CAP_SYS_ADMIN and no profile, sethostname works."""
    b = seccomp_bundle(bundle, None, ["sh", "-c", script(*PROBES)], nnp=False)
    code, out, err = run_ours(oci, b, "sc-none")
    got = lines(out)
    assert code == 0, err
    assert got["Seccomp"] == "0" and got["hostname"] == "0" and got["unshare"] == "0"


def podman_like() -> dict[str, Any]:
    """defaultAction ERRNO(ENOSYS) and only podman's allow rules: anything unlisted (sethostname)
    answers the default errno."""
    prof = {k: v for k, v in PODMAN.items() if k != "syscalls"}
    prof["syscalls"] = [r for r in PODMAN["syscalls"] if r["action"] == "SCMP_ACT_ALLOW"]
    return prof


@needs_runc
def test_podman_like_allow_list_answers_the_default_errno(oci, bundle, tmp_path):
    b = seccomp_bundle(bundle, podman_like(), ["sh", "-c", script("status", "hostname",
                                                                    "unshare")], nnp=True)  # fmt: skip
    code, out, err = run_ours(oci, b, "sc-allow")
    got = lines(out)
    assert code == 0, err
    assert got["NoNewPrivs"] == "1" and got["Seccomp"] == "2"
    assert got["hostname"] == "1" and "sethostname: Function not implemented" in out  # ENOSYS
    assert got["unshare"] == "0"
    rcode, rout = run_runc(b, tmp_path)
    assert rcode == 0 and lines(rout) == got, rout


@needs_runc
def test_docker_shape_masked_eq_clone_and_default_eperm(oci, bundle, tmp_path):
    """docker's shape with noNewPrivileges (the filter goes in last, after no_new_privs): unshare
    is not listed (default EPERM), a fork passes clone's SCMP_CMP_MASKED_EQ rule."""
    b = seccomp_bundle(bundle, DOCKER, ["sh", "-c", script(*PROBES)], nnp=True)
    code, out, err = run_ours(oci, b, "sc-docker")
    got = lines(out)
    assert code == 0, err
    assert got["Seccomp"] == "2" and got["Seccomp_filters"] == "1" and got["NoNewPrivs"] == "1"
    assert got["unshare"] == "1" and "unshare(0x4000000): Operation not permitted" in out
    assert got["hostname"] == "1" and got["fork"] == "0" and got["linux32"] == "0"
    rcode, rout = run_runc(b, tmp_path)
    assert rcode == 0 and lines(rout) == got, rout


def test_init_status_and_exec_get_the_containers_filter(oci, bundle):
    b = seccomp_bundle(bundle, podman_like(), ["sleep", "1000"], nnp=False)
    oci.create(b, "sc-exec")
    oci("start", "sc-exec")
    pid = oci.state("sc-exec")["pid"]
    status = dict(ln.split(":\t", 1) for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ":\t" in ln)  # fmt: skip
    assert status["Seccomp"] == "2" and int(status["Seccomp_filters"]) >= 1
    r = oci("exec", "sc-exec", "sh", "-c", script("status", "hostname", "unshare"), check=False)
    got = lines(r.stdout)
    assert r.returncode == 0, r.stderr
    assert got["Seccomp"] == "2" and got["Seccomp_filters"] == "1"
    assert got["hostname"] == "1" and "Function not implemented" in r.stdout
    assert got["unshare"] == "0"


def test_notify_action_is_a_one_line_error_and_leaves_nothing(oci, bundle):
    prof = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}]}  # fmt: skip
    b = seccomp_bundle(bundle, prof, ["true"], nnp=True)
    r = oci("run", "--bundle", str(b.path), "sc-notify", check=False)
    assert r.returncode != 0
    if oci.is_ours:
        assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
        assert "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY" in r.stderr


def test_unknown_syscall_is_skipped_with_a_warning(oci, bundle):
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["isoproof_no_such_call", "sethostname"], "action": "SCMP_ACT_ERRNO",
         "errnoRet": 13}]}  # fmt: skip
    b = seccomp_bundle(bundle, prof, ["sh", "-c", script("hostname")], nnp=True)
    code, out, err = run_ours(oci, b, "sc-unknown")
    assert code == 0, err
    assert "sethostname: Permission denied" in out  # EACCES: the rest of the rule still holds
    if oci.is_ours:
        assert "unknown syscall 'isoproof_no_such_call' ignored" in err


# --- capabilities -----------------------------------------------------------------------------------


@needs_runc
@pytest.mark.parametrize("rootless", [False, True], ids=["runc-spec", "runc-spec-rootless"])
def test_bundle_straight_from_runc_spec_runs(oci, tmp_path, busybox_rootfs, rootless):
    """`runc spec` lists ambient capabilities that are not inheritable: the kernel will not raise
    them, runc goes on without them, and so do we (with a warning)."""
    path = tmp_path / ("rootless" if rootless else "plain")
    path.mkdir()
    subprocess.run([RUNC, "spec", *(["--rootless"] if rootless else [])], cwd=path, check=True)
    shutil.copytree(busybox_rootfs, path / "rootfs", symlinks=True)
    cfg = json.loads((path / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sh", "-c", "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status"]
    cfg["linux"]["cgroupsPath"] = f"/{oci.cgroup_parent}/runc-spec"
    (path / "config.json").write_text(json.dumps(cfg))
    b = Bundle(path, cfg, cfg["linux"]["cgroupsPath"])
    code, out, err = run_ours(oci, b, "runc-spec")
    assert code == 0, err
    caps = {ln.split(":")[0]: int(ln.split()[1], 16) for ln in out.splitlines()}
    want = capslib.mask(cfg["process"]["capabilities"]["bounding"])
    assert caps["CapAmb"] == 0 and caps["CapEff"] == want and caps["CapBnd"] == want
    if oci.is_ours:
        assert "ambient: not raised" in err
    rcode, rout = run_runc(b, tmp_path)
    assert rcode == 0 and rout.strip().splitlines()[-5:] == out.strip().splitlines(), rout


def test_exec_cap_adds_the_capability(oci, bundle):
    b = bundle()
    oci.create(b, "cap-exec")
    oci("start", "cap-exec")
    r = oci("exec", "--cap", "CAP_SYS_ADMIN", "cap-exec", "grep", "-E", "^Cap(Eff|Prm|Bnd):",
            "/proc/self/status", check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    for ln in r.stdout.splitlines():
        assert int(ln.split()[1], 16) >> capslib.CAPS["CAP_SYS_ADMIN"] & 1, ln
