"""isoproof-oci on the real kernel: namespaces, rootfs, process, lifecycle, and the spec's error
rules. Every test runs through the CLI (as the engine and the verification suite do) and the
``oci`` fixture fails the test if anything is left behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from runtime.oci import caps as capslib
from tests.integration.conftest import REPO, Bundle, cgroup_mounts

pytestmark = pytest.mark.root

HOST_NS = {n: os.stat(f"/proc/self/ns/{n}").st_ino for n in os.listdir("/proc/self/ns")}


def ns_inode(pid: int, name: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{name}").st_ino


def status_field(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(field)


def started(oci, bundle, cid: str) -> int:
    oci.create(bundle, cid)
    oci("start", cid)
    oci.wait_status(cid, "running")
    return oci.state(cid)["pid"]


# --- namespaces ---------------------------------------------------------------------------------


def test_each_namespace_is_new(oci, bundle):
    b = bundle()
    pid = started(oci, b, "ns-new")
    for name in ("pid", "net", "ipc", "uts", "mnt", "cgroup"):
        # pid: /proc/<pid>/ns/pid is the namespace the init is *in*
        assert ns_inode(pid, name) != HOST_NS[name], name
    assert ns_inode(pid, "user") == HOST_NS["user"]  # not asked for: shared


def test_joined_namespaces_are_the_targets(oci, bundle):
    a = started(oci, bundle(), "ns-target")
    joined = [{"type": t, "path": f"/proc/{a}/ns/{p}"}
              for t, p in (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))]  # fmt: skip
    b = bundle(namespaces=[{"type": "pid"}, {"type": "mount"}, *joined])
    del b.config["hostname"]
    b.write()
    pid = started(oci, b, "ns-joiner")
    for name in ("net", "ipc", "uts"):
        assert ns_inode(pid, name) == ns_inode(a, name), name
    assert ns_inode(pid, "pid") not in (ns_inode(a, "pid"), HOST_NS["pid"])


def test_init_is_pid_1_of_its_namespace(oci, bundle):
    pid = started(oci, bundle(), "pid1")
    assert status_field(pid, "NSpid").split()[-1] == "1"
    assert status_field(pid, "NSpid").split()[0] == str(pid)


def test_hostname_is_set_inside_and_host_unchanged(oci, bundle):
    before = socket.gethostname()
    b = bundle(args=["hostname"], hostname="isoproof-h1")
    r = oci("run", "--bundle", str(b.path), "hn", stdout=b.out)
    assert r.returncode == 0
    assert b.out.read_text().strip() == "isoproof-h1"
    assert socket.gethostname() == before


def userns_bundle(bundle, tmp_path, host_id):
    """A bundle with a user namespace that maps root to ``host_id`` (and a network namespace:
    without one, sysfs cannot be mounted in a user namespace; we bind the host's /sys then, runc
    fails). That uid must be able to reach the rootfs, as with runc, so pytest's private 0700
    directories are opened for search."""
    maps = [{"containerID": 0, "hostID": host_id, "size": 65536}]
    b = bundle(namespaces=[{"type": t} for t in ("pid", "ipc", "uts", "mount", "user", "network")],
               uidMappings=maps, gidMappings=maps)  # fmt: skip
    for d in [tmp_path, *tmp_path.parents]:
        if d == Path("/tmp"):
            break
        d.chmod(d.stat().st_mode | 0o011)
    return b


def test_user_namespace_maps(oci, bundle, tmp_path):
    b = userns_bundle(bundle, tmp_path, 100000)
    # ... and root inside owns its files.
    for dirpath, dirnames, filenames in os.walk(b.rootfs):
        for n in [dirpath, *(os.path.join(dirpath, f) for f in dirnames + filenames)]:
            os.lchown(n, 100000, 100000)
    pid = started(oci, b, "userns")
    assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", "100000", "65536"]
    assert Path(f"/proc/{pid}/gid_map").read_text().split() == ["0", "100000", "65536"]
    if oci.is_ours:  # we deny setgroups before writing gid_map; runc run as root allows it
        assert Path(f"/proc/{pid}/setgroups").read_text().strip() == "deny"
    # root inside is uid 100000 outside
    assert status_field(pid, "Uid").split() == ["100000"] * 4
    assert ns_inode(pid, "user") != HOST_NS["user"]


# --- rootfs ----------------------------------------------------------------------------------------


PROBE = (
    'test "$(head -c1 /proc/timer_list | wc -c)" = 1 && echo timer_list=visible || echo timer_list=masked; '
    "ls /proc/acpi | wc -l | sed 's/^ */acpi_entries=/'; "
    "(echo x > /proc/sys/kernel/domainname) 2>/dev/null && echo procsys=rw || echo procsys=ro; "
    "(touch /isoproof-probe) 2>/dev/null && echo root=rw || echo root=ro; "
    "(touch /tmp/x) 2>/dev/null && echo tmp=rw || echo tmp=ro; "
    "(echo 1 > /sys/kernel/profiling) 2>/dev/null && echo sys=rw || echo sys=ro; "
    "ls /dev | tr '\\n' ' ' | sed 's/^/dev=/'; echo; "
    "readlink /dev/stdout | sed 's/^/stdout=/'"
)


def probe(oci, b, cid: str) -> dict[str, str]:
    oci("run", "--bundle", str(b.path), cid, stdout=b.out)
    return dict(line.split("=", 1) for line in b.out.read_text().splitlines() if "=" in line)


def test_masked_readonly_paths_and_readonly_root(oci, bundle):
    b = bundle(args=["sh", "-c", PROBE])
    got = probe(oci, b, "paths")
    assert got["timer_list"] == "masked"
    assert got["acpi_entries"] == "0"
    assert got["procsys"] == "ro"
    assert got["root"] == "ro"
    assert got["sys"] == "ro"
    for dev in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd",
                "stdin", "stdout", "stderr"):  # fmt: skip
        assert dev in got["dev"].split(), dev
    assert got["stdout"] == "/proc/self/fd/1"


def test_writable_root_when_not_readonly(oci, bundle):
    b = bundle(args=["sh", "-c", PROBE], root={"path": "rootfs", "readonly": False},
               maskedPaths=[], readonlyPaths=[])  # fmt: skip
    got = probe(oci, b, "paths-rw")
    assert got["root"] == "rw"
    assert got["timer_list"] == "visible"
    assert got["procsys"] == "rw"  # a private uts ns: writing domainname is harmless
    assert (b.rootfs / "isoproof-probe").exists()


def test_bind_mount_from_bundle(oci, bundle, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from-host")
    b = bundle(args=["sh", "-c", "cat /data/in.txt; echo back > /data/out.txt"])
    b.config["mounts"].append({"destination": "/data", "type": "bind", "source": str(shared),
                               "options": ["rbind", "rw"]})  # fmt: skip
    b.write()
    oci("run", "--bundle", str(b.path), "bind", stdout=b.out)
    assert b.out.read_text().strip() == "from-host"
    assert (shared / "out.txt").read_text().strip() == "back"


def test_container_mounts_are_invisible_on_the_host(oci, bundle):
    b = bundle()
    pid = started(oci, b, "mnt")
    inside = Path(f"/proc/{pid}/mountinfo").read_text()
    assert " /proc " in inside and " /dev/pts " in inside
    host = Path("/proc/self/mountinfo").read_text()
    assert str(b.rootfs) not in host


# --- process ---------------------------------------------------------------------------------------


def test_capabilities_as_configured_for_root(oci, bundle):
    bnd = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    eff = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    b = bundle(process={"capabilities": {"bounding": bnd, "effective": eff, "permitted": eff,
                                         "inheritable": [], "ambient": []}})  # fmt: skip
    pid = started(oci, b, "caps")
    assert int(status_field(pid, "CapBnd"), 16) == capslib.mask(bnd)
    # root's execve raises permitted to the bounding set, but noNewPrivileges keeps it within
    # what the init held: the permitted set asked for.
    assert int(status_field(pid, "CapPrm"), 16) == capslib.mask(eff)
    assert int(status_field(pid, "CapEff"), 16) == capslib.mask(eff)
    assert status_field(pid, "NoNewPrivs") == "1"


def test_capabilities_user_ambient_rlimits_oom(oci, bundle):
    nbs = ["CAP_NET_BIND_SERVICE"]
    b = bundle(process={
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [5, 7]},
        "capabilities": {"bounding": nbs, "effective": nbs, "permitted": nbs, "inheritable": nbs,
                         "ambient": nbs},
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}],
        "oomScoreAdj": 123, "noNewPrivileges": False,
    })  # fmt: skip
    pid = started(oci, b, "user")
    assert status_field(pid, "Uid").split() == ["1000"] * 4
    assert status_field(pid, "Gid").split() == ["1000"] * 4
    assert status_field(pid, "Groups").split() == ["5", "7"]
    assert int(status_field(pid, "CapAmb"), 16) == capslib.mask(nbs)
    assert int(status_field(pid, "CapEff"), 16) == capslib.mask(nbs)
    assert int(status_field(pid, "CapBnd"), 16) == capslib.mask(nbs)
    limits = Path(f"/proc/{pid}/limits").read_text()
    assert any(ln.startswith("Max open files") and ln.split()[3:5] == ["321", "654"]
               for ln in limits.splitlines())  # fmt: skip
    assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "123"


def test_env_and_cwd(oci, bundle):
    b = bundle(args=["sh", "-c", "echo $ISOPROOF_X; pwd"], process={"cwd": "/tmp", "env": [
        "PATH=/bin:/sbin", "ISOPROOF_X=hello"]})  # fmt: skip
    oci("run", "--bundle", str(b.path), "env", stdout=b.out)
    assert b.out.read_text().split() == ["hello", "/tmp"]


# --- lifecycle -------------------------------------------------------------------------------------


def test_create_runs_nothing_until_start_and_passes_stdio(oci, bundle):
    b = bundle(args=["sh", "-c", "echo started-$$"])
    oci.create(b, "lazy")
    st = oci.state("lazy")
    assert st["status"] == "created"
    assert st["bundle"] == str(b.path) and os.path.isabs(st["bundle"])
    assert {"ociVersion", "id", "status", "pid", "bundle"} <= st.keys()
    if oci.is_ours:  # optional in the spec; runc omits it when empty
        assert st["annotations"] == {}
    assert b.out.read_text() == ""
    oci("start", "lazy")
    oci.wait_status("lazy", "stopped")
    assert b.out.read_text().strip() == "started-1"  # it ran as PID 1, on create's stdout
    oci("delete", "lazy")
    assert oci("state", "lazy", check=False).returncode == 1


def test_pid_file_and_kill_signal_forms(oci, bundle):
    # PID 1 of a pid namespace gets only the signals it handles (SIGKILL aside): trap TERM.
    trap = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.05; done"]
    words = ["KILL", "SIGKILL", "9", "--signal=TERM", "term"]
    if not oci.is_ours:
        words.remove("--signal=TERM")  # runc 1.1 has no --signal
    for i, word in enumerate(words):
        cid = f"k{i}"
        b = bundle(args=trap)
        oci.create(b, cid, "--pid-file", str(b.path / "pid"))
        pid = int((b.path / "pid").read_text())
        assert pid == oci.state(cid)["pid"]
        oci("start", cid)
        args = ["kill", word, cid] if word.startswith("--") else ["kill", cid, word]
        oci(*args)
        oci.wait_status(cid, "stopped")
        oci("delete", cid)


def test_run_returns_exit_code(oci, bundle):
    b = bundle(args=["sh", "-c", "exit 7"])
    assert oci("run", "--bundle", str(b.path), "rc7", check=False).returncode == 7
    # Without a pid namespace the shell is not PID 1, so it can die of its own SIGKILL.
    b = bundle(
        args=["sh", "-c", "kill -9 $$"],
        namespaces=[{"type": t} for t in ("ipc", "uts", "mount", "network")],
    )
    assert oci("run", "--bundle", str(b.path), "rc137", check=False).returncode == 137


def test_pause_resume_ps_list(oci, bundle):
    pid = started(oci, bundle(), "pz")
    assert oci("ps", "--format", "json", "pz").json == [pid]
    oci("pause", "pz")
    assert oci.status("pz") == "paused"
    assert status_field(pid, "State").startswith(("D", "S"))  # frozen tasks sleep
    oci("resume", "pz")
    assert oci.status("pz") == "running"
    rows = oci("list", "--format", "json").json
    assert [(r["id"], r["status"], r["pid"]) for r in rows] == [("pz", "running", pid)]


def test_exec_joins_namespaces_and_cgroup(oci, bundle):
    init = started(oci, bundle(), "ex")
    r = oci("exec", "ex", "sh", "-c", "hostname; exit 3", check=False)
    assert r.returncode == 3
    assert r.stdout.strip() == "isoproof"
    pidf = oci.tmp / "exec.pid"
    oci("exec", "--detach", "--pid-file", str(pidf), "ex", "sleep", "1000")
    pid = int(pidf.read_text())
    for name in ("pid", "net", "ipc", "uts", "mnt", "cgroup"):
        assert ns_inode(pid, name) == ns_inode(init, name), name
    assert Path(f"/proc/{pid}/cgroup").read_text() == Path(f"/proc/{init}/cgroup").read_text()
    assert sorted(oci("ps", "--format", "json", "ex").json) == sorted([init, pid])


def test_console_socket_receives_the_pty_master(oci, bundle, tmp_path):
    path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    got: dict[str, object] = {}

    def serve() -> None:
        conn, _ = srv.accept()
        msg, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        got["name"], got["fd"] = msg, fds[0]
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    b = bundle(args=["sh", "-c", "tty; stty size; echo via-pty"],
               process={"terminal": True, "consoleSize": {"height": 33, "width": 101}})  # fmt: skip
    oci.create(b, "tty", "--console-socket", path)
    t.join(5)
    assert "fd" in got
    oci("start", "tty")
    master = int(got["fd"])  # type: ignore[call-overload]
    data = b""
    try:
        while b"via-pty" not in data:
            chunk = os.read(master, 1024)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    os.close(master)
    srv.close()
    assert b"/dev/pts/" in data and b"via-pty" in data
    assert b"33 101" in data  # consoleSize reached the pty
    assert b.out.read_text() == ""  # the pty, not create's stdout, is the container's terminal


# --- the spec's error rules: one line, exit 1, nothing changed ---------------------------------------


def assert_error(r, *words: str) -> None:
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    if "ISOPROOF_TEST_RUNTIME" not in os.environ:  # other runtimes print several log lines
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith("isoproof-oci: "), lines[0]
        for w in words:
            assert w in lines[0], lines[0]


def test_error_rules(oci, bundle):
    b = bundle()
    oci.create(b, "e1")
    assert_error(oci("create", "--bundle", str(b.path), "e1", check=False), "already exists")
    assert oci.status("e1") == "created"
    oci("start", "e1")
    assert_error(oci("start", "e1", check=False), "running")
    assert_error(oci("delete", "e1", check=False), "running")
    assert oci.status("e1") == "running"
    oci("kill", "e1", "KILL")
    oci.wait_status("e1", "stopped")
    assert_error(oci("kill", "e1", "KILL", check=False), "stopped")
    assert_error(oci("start", "e1", check=False), "stopped")
    oci("delete", "e1")
    for verb in (["start"], ["state"], ["kill"], ["delete"], ["pause"], ["resume"], ["ps"]):
        assert_error(oci(*verb, "nosuch", check=False), "does not exist")
    assert not os.path.exists(os.path.join(oci.root, "nosuch"))


def test_delete_force_of_running_and_created(oci, bundle):
    oci.create(bundle(), "f1")
    oci("delete", "--force", "f1")
    started(oci, bundle(), "f2")
    oci("delete", "--force", "f2")
    started(oci, bundle(), "f3")
    oci("pause", "f3")
    oci("delete", "--force", "f3")
    assert oci("list", "--format", "json").json in ([], None)


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda c: c["mounts"].append({"destination": "/x", "type": "bind",
                                       "source": "/nonexistent-isoproof", "options": ["bind"]}),
         "nonexistent-isoproof"),  # fails in the init, after cgroup and namespaces exist
        (lambda c: c["process"].update(args=["no-such-program"]), "no-such-program"),
        (lambda c: c["process"].update(cwd="relative"), "process.cwd"),
        (lambda c: c["linux"]["namespaces"].append({"type": "uts"}), "duplicate"),
        (lambda c: c["linux"].update(namespaces=[{"type": "mount"}, {"type": "pid"}, {"type": "uts"}, {
            "type": "ipc", "path": "/proc/self/ns/net"}]),
         "not a ipc namespace"),  # checked via NS_GET_NSTYPE
        (lambda c: c["linux"].update(resources={"memory": {"limit": "lots"}}), "memory"),
    ],
)  # fmt: skip
def test_failed_create_rolls_back(oci, bundle, mutate, words):
    b = bundle()
    mutate(b.config)
    b.write()
    r = oci("create", "--bundle", str(b.path), "bad", check=False)
    assert_error(r, words)
    assert not os.path.exists(os.path.join(oci.root, "bad"))
    # the oci fixture checks that no cgroup, mount or process is left


def test_terminal_without_console_socket_is_refused(oci, bundle):
    b = bundle(process={"terminal": True})
    assert_error(oci("create", "--bundle", str(b.path), "t", check=False), "console-socket")


# --- against runc, same bundle ---------------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("runc"), reason="needs runc for the comparison; not installed")
def test_same_process_view_as_runc(oci, bundle):
    script = "grep -E '^(Cap|NoNewPrivs|NSpid)' /proc/self/status; hostname; ls /dev | sort | tr '\\n' ' '"
    b = bundle(args=["sh", "-c", script])
    ours = oci("run", "--bundle", str(b.path), "cmp", stdout=b.path / "ours").stdout
    runc_root = oci.root + "-runc"
    # runc leaves the parent of its cgroup behind: give it its own parent and remove that after.
    runc_parent = oci.cgroup_parent + "-runc"
    b.config["linux"]["cgroupsPath"] = f"/{runc_parent}/cmp"
    b.write()
    try:
        p = subprocess.run(["runc", "--root", runc_root, "run", "--bundle", str(b.path), "cmp-runc"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)  # fmt: skip
    finally:
        subprocess.run(["runc", "--root", runc_root, "delete", "--force", "cmp-runc"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(runc_root, ignore_errors=True)
        for m in cgroup_mounts():
            for d in (f"{m}/{runc_parent}/cmp", f"{m}/{runc_parent}"):
                if os.path.isdir(d):
                    os.rmdir(d)
    assert p.returncode == 0, p.stderr

    # Capability sets, no_new_privs and hostname must agree exactly (NSpid differs: runc's own
    # setup processes used pids in the new namespace before the shell's child ran).
    def view(text: str) -> list[str]:
        return [ln for ln in text.splitlines()[:7] if not ln.startswith("NSpid")]

    assert view(ours) == view(p.stdout)


# --- cgroup verbs, detach, and the monitor contract ---------------------------------------------------


def test_update_and_events_go_through_the_cgroup_manager(oci, bundle):
    b = bundle()
    started(oci, b, "upd")
    oci("update", "--pids-limit", "42", "--memory", "64m", "upd")
    mounts = {os.path.basename(m): m for m in cgroup_mounts()}
    if "pids" in mounts:
        assert Path(mounts["pids"] + b.cgroup, "pids.max").read_text().strip() == "42"
    if "memory" in mounts:
        limit = Path(mounts["memory"] + b.cgroup, "memory.limit_in_bytes").read_text().strip()
        assert int(limit) == 64 << 20
    ev = oci("events", "--stats", "upd").json
    assert ev["type"] == "stats" and ev["id"] == "upd" and isinstance(ev["data"], dict)
    # runc's shape (types/events.go), read by the engine and containerd-like tools.
    d = ev["data"]
    assert isinstance(d["cpu"]["usage"]["total"], int) and d["cpu"]["usage"]["total"] > 0
    if "memory" in mounts:
        assert d["memory"]["usage"]["limit"] == 64 << 20 and d["memory"]["usage"]["usage"] > 0
    if "pids" in mounts:
        assert d["pids"] == {"current": d["pids"]["current"], "limit": 42}
        assert d["pids"]["current"] >= 1
    if oci.is_ours:  # runc accepts an empty update
        assert_error(oci("update", "upd", check=False), "nothing to change")


def test_unenforced_cgroup_setting_warns_on_stderr_only(oci, bundle, tmp_path):
    """A setting the cgroup manager accepts but cannot enforce is reported as one warning line on
    the runtime's stderr, before the container starts; exit status and the container's stdout
    are untouched. On this host's kind (v1/hybrid) kernel memory limits warn; on v2, swappiness."""
    from runtime.cgroups.base import Mode, detect_mode

    if detect_mode() is Mode.UNIFIED:
        memory = {"swappiness": 10}
        want = "memory.swappiness is not enforced: cgroup v2 has no per-cgroup swappiness"
    else:
        memory = {"kernel": 1 << 20}
        want = "memory.kernel is ignored: kernel memory limits are deprecated"
    line = f"isoproof-oci: warning: {want}"

    def make() -> Bundle:
        b = bundle(args=["echo", "hi"])
        b.config["linux"]["resources"]["memory"] = memory
        b.write()
        return b

    b = make()
    r = oci("run", "--bundle", str(b.path), "wrun", stdout=b.out)
    assert b.out.read_text() == "hi\n"
    if oci.is_ours:
        assert r.stderr.splitlines() == [line]

    b = make()
    r = oci.create(b, "wcreate")
    if oci.is_ours:
        assert r.stderr.splitlines() == [line]
    assert b.out.read_text() == ""  # nothing of the container's ran or was written on its stdout
    oci("start", "wcreate")
    oci.wait_status("wcreate", "stopped")
    assert b.out.read_text() == "hi\n"
    oci("delete", "wcreate")

    b = make()
    log = tmp_path / "warn.log"
    r = oci("--log", str(log), "run", "--bundle", str(b.path), "wlog", stdout=b.out)
    assert b.out.read_text() == "hi\n"
    if oci.is_ours:  # with --log, warnings go there only (as runc's do)
        assert r.stderr == "" and log.read_text().splitlines() == [line]


def test_kill_all_and_run_detach(oci, bundle):
    b = bundle()
    oci("run", "--detach", "--bundle", str(b.path), "det", stdout=b.out)
    assert oci.status("det") == "running"
    oci("exec", "--detach", "det", "sleep", "1000")
    assert len(oci("ps", "--format", "json", "det").json) == 2
    oci("kill", "--all", "det", "KILL")
    oci.wait_status("det", "stopped")


def test_init_is_reparented_to_the_subreaper_that_ran_create(oci, bundle):
    """The engine's monitor (like conmon) is a PR_SET_CHILD_SUBREAPER parent of `create`: once
    create exits, the container's init must be its child."""
    b = bundle()
    helper = (
        "import ctypes, os, subprocess, sys, time\n"
        "ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)\n"
        f"subprocess.run(sys.argv[1:], check=True, stdout=open({str(b.out)!r}, 'ab'))\n"
        f"pid = int(open({str(b.path / 'pid')!r}).read())\n"
        "ppid = [l.split()[1] for l in open(f'/proc/{pid}/status') if l.startswith('PPid')][0]\n"
        "print(os.getpid(), ppid, flush=True)\n"
        "print(os.waitpid(pid, 0)[1], flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    p = subprocess.Popen(
        [sys.executable, "-c", helper, *oci.command, "--root", oci.root, "create", "--bundle",
         str(b.path), "--pid-file", str(b.path / "pid"), "mon"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    oci.created.append("mon")
    try:
        me, parent = p.stdout.readline().split()  # type: ignore[union-attr]
        assert me == parent
        oci("delete", "--force", "mon")
        assert p.stdout.readline().strip() == "9"  # type: ignore[union-attr]  # SIGKILL, reaped
    finally:
        p.kill()
        p.wait()


def test_exec_in_user_namespace_and_log_file(oci, bundle, tmp_path):
    b = userns_bundle(bundle, tmp_path, 200000)
    started(oci, b, "uex")
    r = oci("exec", "uex", "sh", "-c", "id -u; cat /proc/self/uid_map")
    assert r.stdout.split() == ["0", "0", "200000", "65536"]
    log = tmp_path / "oci.log"
    r = oci("--log", str(log), "--log-format", "json", "start", "uex", check=False)
    if oci.is_ours:
        assert r.returncode == 1 and '"level": "error"' in log.read_text()


@pytest.mark.skipif(not os.path.exists("/proc/self/ns/time"),
                    reason="needs time namespaces (Linux >= 5.6); this kernel has none")  # fmt: skip
def test_time_namespace_is_new(oci, bundle):
    if not oci.is_ours:
        pytest.skip("runc 1.1 does not know time namespaces")
    b = bundle()
    b.config["linux"]["namespaces"].append({"type": "time"})
    b.write()
    pid = started(oci, b, "timens")
    assert ns_inode(pid, "time") != HOST_NS["time"]


def test_exec_tty_through_console_socket(oci, bundle, tmp_path):
    started(oci, bundle(), "extty")
    path = str(tmp_path / "exec-console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    got: list[int] = []

    def serve() -> None:
        conn, _ = srv.accept()
        _msg, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        got.extend(fds)
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    r = oci("exec", "--tty", "--detach", "--console-socket", path, "extty", "sh", "-c",
            "tty; echo exec-pty")  # fmt: skip
    t.join(5)
    srv.close()
    assert r.returncode == 0 and got
    data = b""
    with contextlib.suppress(OSError):  # EIO once the exec'd process is gone and data is read
        while chunk := os.read(got[0], 1024):
            data += chunk
    os.close(got[0])
    assert b"/dev/pts/" in data and b"exec-pty" in data


def test_delete_cleans_up_after_a_killed_create(oci, bundle):
    """A create SIGKILLed half-way cannot roll back; delete must recognise the abandoned
    "creating" container (its creator is gone) and remove what it made."""
    if not oci.is_ours:
        pytest.skip("the creator record is isoproof-oci's own")
    b = bundle()
    # The abandoned state: a state dir and a cgroup, with the creator record of a dead process.
    d = Path(oci.root, "half")
    d.mkdir(parents=True)
    from runtime.cgroups import new_manager

    new_manager(b.cgroup, "half").create()
    from runtime import statefile

    statefile.write(d / "creator.json", {"pid": 999999999, "start_time": 1,
                                         "cgroups_path": b.cgroup})  # fmt: skip
    oci.created.append("half")
    assert oci.status("half") == "creating"
    assert_error(oci("start", "half", check=False))
    oci("delete", "half")
    assert not d.exists()
    assert not new_manager(b.cgroup, "half").exists()


def test_new_user_namespace_with_a_joined_network_namespace(oci, bundle, tmp_path):
    """Join first, then unshare the user namespace: the joined netns (owned by the host's user
    namespace) must be entered while we still hold the host's capabilities."""
    if not oci.is_ours:
        pytest.skip("runc cannot mount sysfs here (user ns without its own netns)")
    a = started(oci, bundle(), "netowner")
    maps = [{"containerID": 0, "hostID": 300000, "size": 65536}]
    b = bundle(namespaces=[{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                           {"type": "user"}, {"type": "network", "path": f"/proc/{a}/ns/net"}],
               uidMappings=maps, gidMappings=maps)  # fmt: skip
    for d in [tmp_path, *tmp_path.parents]:
        if d == Path("/tmp"):
            break
        d.chmod(d.stat().st_mode | 0o011)
    pid = started(oci, b, "joiner-userns")
    assert ns_inode(pid, "net") == ns_inode(a, "net")
    assert ns_inode(pid, "user") != HOST_NS["user"]
    assert "/sys " in " ".join(
        ln.split()[4] + " " for ln in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    )
    # exec must enter that netns before the container's user namespace (it has no CAP_SYS_ADMIN
    # over a netns the host's user namespace owns): joining user first failed with setns EPERM.
    r = oci("exec", "joiner-userns", "sh", "-c", "id -u; cat /proc/self/uid_map", check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "0", "300000", "65536"]
    assert oci("exec", "joiner-userns", "readlink", "/proc/self/ns/net").stdout.strip() == (
        f"net:[{ns_inode(a, 'net')}]"
    )


def test_sysctl_and_extra_device(oci, bundle):
    b = bundle(
        args=["sh", "-c", "cat /proc/sys/kernel/msgmax; test -c /dev/isoproof-null && "
              "echo x > /dev/isoproof-null && echo dev-ok"],
        sysctl={"kernel.msgmax": "12345"},  # an ipc-namespace sysctl: the host's stays as it is
        devices=[{"path": "/dev/isoproof-null", "type": "c", "major": 1, "minor": 3,
                  "fileMode": 0o666}],
    )  # fmt: skip
    host = Path("/proc/sys/kernel/msgmax").read_text()
    oci("run", "--bundle", str(b.path), "sysctl", stdout=b.out)
    assert b.out.read_text().split() == ["12345", "dev-ok"]
    assert Path("/proc/sys/kernel/msgmax").read_text() == host


def test_sys_fs_cgroup_shows_only_the_containers_own_cgroups(oci, bundle):
    b = bundle(
        args=["sh", "-c", "ls /sys/fs/cgroup; cat /sys/fs/cgroup/pids/cgroup.procs 2>/dev/null"]
    )
    oci("run", "--bundle", str(b.path), "cgview", stdout=b.out)
    names = b.out.read_text().split()
    assert "memory" in names or "unified" in names  # hybrid/v1 hierarchies, or v2 itself
    if oci.is_ours:  # runc 1.1 binds the name=systemd hierarchy as it finds it
        assert "systemd" not in names  # a named hierarchy we were never moved into: not shown
    if "pids" in names:
        assert names[-1] == "1"  # its own cgroup, seen from its pid ns: cat (exec'd as PID 1)


def test_ignored_and_blocked_signals_do_not_leak_into_the_container(oci, bundle):
    """A caller that ignores SIGTERM (nohup, a monitor, ``trap '' TERM``) must not hand that on:
    SIG_IGN and the blocked mask survive execve, and ``kill``/``stop`` would then do nothing."""
    b = bundle(args=["grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status"])
    argv = [*oci.command, "--root", oci.root, "run", "--bundle", str(b.path), "sigs"]
    oci.created.append("sigs")

    def ignore_and_block() -> None:
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR2):
            signal.signal(s, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1, signal.SIGINT])

    with open(b.out, "wb") as out:
        rc = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, preexec_fn=ignore_and_block,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60).returncode  # fmt: skip
    lines = dict(line.split(":") for line in b.out.read_text().split("\n") if line)
    assert rc == 0
    assert int(lines["SigIgn"], 16) == 0, lines
    assert int(lines["SigBlk"], 16) == 0, lines


# --- issue 12: what real clients send, runc's leniency and strictness, runc 1.1's CLI ---------------

DOCKER_RESOURCES = {  # what docker 20.10 sends for a container without limits (zeros mean unset)
    "devices": [{"allow": False, "access": "rwm"}],
    "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0},
    "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0, "realtimePeriod": 0,
            "cpus": "", "mems": ""},
    "blockIO": {"weight": 0},
}  # fmt: skip


def cgroup_file(b, controller: str, name: str) -> Path | None:
    mounts = {os.path.basename(m): m for m in cgroup_mounts()}
    return Path(mounts[controller] + b.cgroup, name) if controller in mounts else None


def test_dockers_unset_zeros_create_and_update(oci, bundle, tmp_path):
    """docker sends blockIO.weight 0 at every create and update: the kernel answers ERANGE."""
    b = bundle(resources=DOCKER_RESOURCES)
    started(oci, b, "docker0")
    soft = cgroup_file(b, "memory", "memory.soft_limit_in_bytes")
    soft_before = soft.read_text() if soft else None
    # `docker update -m 100m` of that container: its JSON on stdin, as containerd passes it
    update = {"blockIO": {"weight": 0},
              "cpu": {"shares": 0, "cpus": "", "mems": "", "period": 0, "quota": 0},
              "memory": {"limit": 104857600, "reservation": 0, "kernel": 0}}  # fmt: skip
    f = tmp_path / "update.json"
    f.write_text(json.dumps(update))
    with open(f) as stdin:
        oci("update", "-r", "-", "docker0", stdin=stdin)
    limit = cgroup_file(b, "memory", "memory.limit_in_bytes")
    if limit:
        assert int(limit.read_text()) == 104857600
    if soft:  # a reservation of 0 is "unset", not a soft limit of 0 bytes
        assert soft.read_text() == soft_before


def test_failed_update_changes_nothing_and_says_so(oci, bundle):
    b = bundle()
    started(oci, b, "upd-all")
    limit = cgroup_file(b, "memory", "memory.limit_in_bytes")
    weight = cgroup_file(b, "blkio", "blkio.bfq.weight") or cgroup_file(b, "blkio", "blkio.weight")
    if limit is None or weight is None or not weight.exists():
        pytest.skip("needs the v1 memory controller and a blkio weight file; this host has"
                    f" {sorted(os.path.basename(m) for m in cgroup_mounts())}")  # fmt: skip
    if not oci.is_ours:
        pytest.skip("runc 1.1 keeps what it wrote before the failure (no rollback)")
    before = limit.read_text()
    # memory is written before blkio; the kernel refuses a weight of 5000 (range 1 or 10..1000)
    r = oci("update", "--memory", "100m", "--blkio-weight", "5000", "upd-all", check=False)
    assert r.returncode != 0
    assert limit.read_text() == before
    assert_error(r, "blkio", "nothing was changed")


def test_fifo_device_is_made(oci, bundle):
    b = bundle(args=["sh", "-c", "test -p /dev/isoproof-fifo && echo fifo-ok"],
               devices=[{"path": "/dev/isoproof-fifo", "type": "p", "fileMode": 0o600}])  # fmt: skip
    oci("run", "--bundle", str(b.path), "fifo", stdout=b.out)
    assert b.out.read_text().split() == ["fifo-ok"]


def test_global_sysctl_is_refused_and_the_host_untouched(oci, bundle):
    key = "/proc/sys/kernel/printk_ratelimit_burst"
    before = Path(key).read_text()
    new = str(int(before) + 7)
    b = bundle(sysctl={"kernel.printk_ratelimit_burst": new})
    try:
        r = oci("run", "--bundle", str(b.path), "sysctl-host", check=False, stdout=b.out)
        after = Path(key).read_text()
    finally:  # a runtime that wrote the host's value must not leave it changed (seen: 10 -> 17)
        Path(key).write_text(before)
    assert after == before, f"the host's {key} was changed by the container's config"
    assert_error(r, "kernel.printk_ratelimit_burst", "not in a separate kernel namespace")


def test_string_false_does_not_allow_every_device(oci, bundle):
    b = bundle(resources={"devices": [{"allow": "false", "access": "rwm"}]})
    r = oci("create", "--bundle", str(b.path), "dev-str", check=False, stdout=b.out)
    assert_error(r, "linux.resources.devices[0].allow")


@pytest.mark.parametrize("limit", [-2, 2**63])
def test_memory_limit_out_of_range_is_refused(oci, bundle, limit):
    b = bundle(resources={"memory": {"limit": limit}})
    r = oci("create", "--bundle", str(b.path), "mem-range", check=False, stdout=b.out)
    assert_error(r, "linux.resources.memory.limit")


def test_config_json_that_is_a_fifo_is_refused_at_once(oci, bundle):
    if not oci.is_ours:
        pytest.skip("runc 1.1 blocks reading a FIFO config.json until a writer comes")
    b = bundle()
    (b.path / "config.json").unlink()
    os.mkfifo(b.path / "config.json")
    r = oci("create", "--bundle", str(b.path), "cfg-fifo", check=False, timeout=20)
    assert_error(r, "not a regular file")


def test_apparmor_profile_on_a_host_without_apparmor_is_an_error(oci, bundle):
    if Path("/sys/module/apparmor/parameters/enabled").exists():
        pytest.skip("needs a host without AppArmor; this one has it")
    b = bundle(process={"apparmorProfile": "isoproof-nonesuch"})
    r = oci("create", "--bundle", str(b.path), "aa", check=False, stdout=b.out)
    assert_error(r, "process.apparmorProfile", "AppArmor is not enabled")


def test_delete_force_of_a_missing_container_exits_0(oci):
    assert oci("delete", "--force", "never-made").returncode == 0
    assert oci("delete", "never-made", check=False).returncode != 0


def test_state_and_list_fill_owner(oci, bundle):
    started(oci, bundle(), "owner")
    assert oci.state("owner")["owner"] == "root" or not oci.is_ours  # runc's state leaves it ""
    rows = oci("list", "--format", "json").json
    assert [r["owner"] for r in rows if r["id"] == "owner"] == ["root"]


def test_run_keep_leaves_the_stopped_container(oci, bundle):
    b = bundle(args=["true"])
    assert oci("run", "--keep", "--bundle", str(b.path), "kept", stdout=b.out).returncode == 0
    assert oci.status("kept") == "stopped"
    oci("delete", "kept")


def test_preserve_fds_passes_the_callers_fds(oci, bundle, tmp_path):
    b = bundle(args=["sh", "-c", "cat <&3; cat <&4"])
    for i, text in enumerate(["three", "four"]):
        (tmp_path / f"fd{i}").write_text(text + "\n")
    argv = [*oci.command, "--root", oci.root, "run", "--preserve-fds", "2", "--bundle",
            str(b.path), "fds"]  # fmt: skip
    oci.created.append("fds")
    # a shell opens the files as fds 3 and 4 and execs the runtime with them
    r = subprocess.run(
        ["sh", "-c", 'exec 3<"$1" 4<"$2"; shift 2; exec "$@"', "sh",
         str(tmp_path / "fd0"), str(tmp_path / "fd1"), *argv],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["three", "four"]


def test_exec_additional_gids_ignore_paused_and_cgroup(oci, bundle):
    b = bundle()
    started(oci, b, "execx")
    r = oci("exec", "-g", "1234", "-g", "5678", "execx", "id", "-G")
    assert {"1234", "5678"} <= set(r.stdout.split())
    oci("pause", "execx")
    try:
        assert_error(oci("exec", "execx", "true", check=False), "paused")
        # allowed now: the process joins the frozen cgroup and runs once it is thawed (as runc)
        out = b.path / "exec-paused.txt"
        with open(out, "w") as fo:
            p = subprocess.Popen([*oci.command, "--root", oci.root, "exec", "--ignore-paused",
                                  "execx", "echo", "ran-after-resume"], stdout=fo,
                                 stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=1)
        assert p.returncode is None, out.read_text()  # not refused: waiting in the frozen cgroup
    finally:
        oci("resume", "execx")
    assert p.wait(timeout=30) == 0
    assert out.read_text().split() == ["ran-after-resume"]
    pids = cgroup_file(b, "pids", "")
    if pids is None:
        pytest.skip("needs the pids controller for --cgroup; this host lacks it")
    sub = pids / "isoproof-sub"
    sub.mkdir()
    try:
        r = oci("exec", "--cgroup", "pids:isoproof-sub", "execx", "cat", "/proc/self/cgroup")
        line = [ln for ln in r.stdout.splitlines() if ":pids:" in ln][0]
        assert line.endswith("/isoproof-sub"), line
    finally:
        sub.rmdir()


def test_ps_with_ps_arguments(oci, bundle):
    b = bundle()
    pid = started(oci, b, "psargs")
    forms = [["-o", "pid,comm"]] + ([["--", "-o", "pid,comm"]] if oci.is_ours else [])
    for args in forms:  # runc 1.1 hands a "--" on to ps, which refuses it
        lines = oci("ps", "psargs", *args).stdout.splitlines()
        assert lines[0].split() == ["PID", "COMMAND"]
        assert [ln.split() for ln in lines[1:]] == [[str(pid), "sleep"]]


def test_features_is_the_oci_features_document(oci):
    doc = oci("features").json
    assert doc["hooks"] == ["prestart", "createRuntime", "createContainer", "startContainer",
                            "poststart", "poststop"]  # fmt: skip
    assert "namespaces" in doc["linux"] and "mountOptions" in doc


def test_foreground_run_with_terminal_makes_a_pty(oci, bundle):
    """process.terminal in a foreground run: the container's stdio is a pty of its own (runc
    copies between it and the caller), not the caller's stdio handed through."""
    if not oci.is_ours:
        pytest.skip("runc 1.1 needs the caller to have a terminal (it opens /dev/tty)")
    b = bundle(args=["sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty; tty; stty size"],
               process={"terminal": True, "consoleSize": {"height": 33, "width": 77}})  # fmt: skip
    r = oci("run", "--bundle", str(b.path), "fg-tty", stdout=b.out)
    assert r.returncode == 0, r.stderr
    lines = b.out.read_text().replace("\r", "").split("\n")
    assert lines[:3] == ["is-a-tty", "/dev/pts/0", "33 77"], lines


def test_foreground_terminal_takes_the_callers_size_and_input(oci, bundle, tmp_path):
    import fcntl
    import pty
    import struct
    import termios
    import time

    b = bundle(args=["sh", "-c", "stty size; read line; echo got-$line"],
               process={"terminal": True})  # fmt: skip
    caller_master, caller_slave = pty.openpty()
    fcntl.ioctl(caller_slave, termios.TIOCSWINSZ, struct.pack("HHHH", 21, 55, 0, 0))
    argv = [*oci.command, "--root", oci.root, "run", "--bundle", str(b.path), "fg-size"]
    oci.created.append("fg-size")
    p = subprocess.Popen(argv, stdin=caller_slave, stdout=caller_slave, stderr=subprocess.PIPE,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path)  # fmt: skip
    os.close(caller_slave)
    out = b""
    try:
        deadline = time.monotonic() + 30
        while b"21 55" not in out and time.monotonic() < deadline:
            out += os.read(caller_master, 4096)
        os.write(caller_master, b"hello\r")
        while b"got-hello" not in out and time.monotonic() < deadline:
            try:
                out += os.read(caller_master, 4096)
            except OSError:
                break
        assert p.wait(timeout=30) == 0, p.stderr.read() if p.stderr else ""
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(caller_master)
    text = out.decode(errors="replace")
    assert "21 55" in text and "got-hello" in text, text


def test_foreground_terminal_follows_the_callers_window_size(oci, bundle, tmp_path):
    """SIGWINCH to the runtime (the caller's terminal was resized): the container's pty gets the
    new size, and the kernel tells the container's foreground process."""
    import fcntl
    import pty
    import signal
    import struct
    import termios
    import time

    if not oci.is_ours:
        pytest.skip("compares the runtime's own resize path; runc does the same through its tty")
    b = bundle(args=["sh", "-c", "trap 'stty size' WINCH; echo ready; "
                                 "while :; do sleep 0.05; done"],
               process={"terminal": True})  # fmt: skip
    caller_master, caller_slave = pty.openpty()
    fcntl.ioctl(caller_slave, termios.TIOCSWINSZ, struct.pack("HHHH", 21, 55, 0, 0))
    argv = [*oci.command, "--root", oci.root, "run", "--bundle", str(b.path), "fg-winch"]
    oci.created.append("fg-winch")
    p = subprocess.Popen(argv, stdin=caller_slave, stdout=caller_slave, stderr=subprocess.PIPE,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path)  # fmt: skip
    os.close(caller_slave)
    out = b""
    try:
        deadline = time.monotonic() + 30
        while b"ready" not in out and time.monotonic() < deadline:
            out += os.read(caller_master, 4096)
        fcntl.ioctl(caller_master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        p.send_signal(signal.SIGWINCH)
        while b"40 120" not in out and time.monotonic() < deadline:
            out += os.read(caller_master, 4096)
    finally:
        p.kill()
        p.wait()
        os.close(caller_master)
    assert b"40 120" in out, out


def test_exec_preserve_fds(oci, bundle, tmp_path):
    started(oci, bundle(), "exec-fds")
    (tmp_path / "fd3").write_text("exec-three\n")
    argv = [*oci.command, "--root", oci.root, "exec", "--preserve-fds", "1", "exec-fds",
            "sh", "-c", "cat <&3"]  # fmt: skip
    r = subprocess.run(["sh", "-c", 'exec 3<"$1"; shift; exec "$@"', "sh",
                        str(tmp_path / "fd3"), *argv], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["exec-three"]
    # without the flag the fd stays out of the container, as with runc
    r = subprocess.run(["sh", "-c", 'exec 3<"$1"; shift; exec "$@"', "sh", str(tmp_path / "fd3"),
                        *[a for a in argv if a not in ("--preserve-fds", "1")]],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path)  # fmt: skip
    assert r.returncode != 0 and "exec-three" not in r.stdout
