"""Namespace isolation, proven from the host (guide section 2)."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from verify import probes
from verify.drivers import Driver
from verify.measure import wait_for
from verify.spec import ContainerSpec

pytestmark = pytest.mark.root

HOST = "self"


def _host_ns(ns: str) -> int:
    return probes.ns_inode(1, ns) if ns != "user" else probes.ns_inode(HOST, ns)


def assert_own_ns(pid: int, ns: str, evidence: Any = None) -> None:
    mine, hosts = probes.ns_inode(pid, ns), probes.ns_inode(HOST, ns)
    if evidence is not None:
        evidence.record(f"{ns} namespace inode", expected=f"not the host's ({hosts})",
                        measured=mine, ok=mine != hosts, host=hosts)  # fmt: skip
    if mine == hosts:
        raise AssertionError(f"the container's {ns} namespace is the host's (inode {hosts})")


def assert_shared_ns(pid: int, other: int | str, ns: str, evidence: Any) -> None:
    mine, theirs = probes.ns_inode(pid, ns), probes.ns_inode(other, ns)
    whose = "the host's" if other == HOST else f"that of pid {other}"
    evidence.record(f"{ns} namespace inode", expected=f"{whose} ({theirs})", measured=mine,
                    ok=mine == theirs)  # fmt: skip
    if mine != theirs:
        raise AssertionError(
            f"the container has its own {ns} namespace (inode {mine}), not {whose} ({theirs})"
        )


# --- UTS ---------------------------------------------------------------------------------------


def test_uts_isolated(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec(hostname="isoproof-uts"))
    host_before = os.uname().nodename
    assert_own_ns(c.pid, "uts", evidence)
    inside = probes.in_namespaces(c.pid, ["uts"], probes.uname_nodename)
    evidence.record("hostname inside", expected="isoproof-uts", measured=inside)
    assert inside == "isoproof-uts", f"the hostname inside is {inside!r}, not isoproof-uts"
    # LTP utsname03: change it in the container's namespace, read it on the host.
    probes.in_namespaces(c.pid, ["uts"], lambda: probes.sethostname("isoproof-changed"))
    after = os.uname().nodename
    evidence.record("host's hostname after a change inside", expected=host_before, measured=after)
    assert after == host_before, "a hostname change inside leaked to the host"
    changed = probes.in_namespaces(c.pid, ["uts"], probes.uname_nodename)
    assert changed == "isoproof-changed", f"the change inside did not hold: {changed!r}"


def test_uts_shared_with_host(runtime: Driver, evidence) -> None:
    c = runtime.create(
        ContainerSpec(hostname=None, namespaces={**ContainerSpec().namespaces, "uts": "host"})
    )
    assert_shared_ns(c.pid, HOST, "uts", evidence)


# --- PID ---------------------------------------------------------------------------------------


def test_pid_namespace_init_is_pid1(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec(args=["sh", "-c", "sleep 1000 & sleep 1000 & wait"]))
    assert_own_ns(c.pid, "pid", evidence)
    ns = probes.nspid(c.pid)
    evidence.record("NSpid of init", expected="[host pid, 1]", measured=ns)
    assert len(ns) >= 2 and ns[-1] == 1, f"init's NSpid is {ns}: not PID 1 in its own namespace"
    assert wait_for(lambda: len(c.read_cgroup("pids", "cgroup.procs").split()) >= 3, 10), (
        "workload did not start"
    )
    proc = Path(f"/proc/{c.pid}/root/proc")
    status = (proc / "1/status").read_text()
    assert "\nPPid:\t0\n" in status, "PID 1 inside has a parent (LTP pidns01 wants ppid 0)"
    # The container's procfs (read from the host through its root) lists exactly its own processes.
    visible = {int(p.name) for p in proc.iterdir() if p.name.isdigit()}
    members = {int(x) for x in c.read_cgroup("pids", "cgroup.procs").split()}
    own = {probes.nspid(p)[-1] for p in members if os.path.exists(f"/proc/{p}")}
    evidence.record("pids visible inside", expected=sorted(own), measured=sorted(visible))
    assert visible == own, f"container sees pids {sorted(visible - own)} that are not its own"
    assert len(visible) < 10, f"container sees {len(visible)} processes: the host's?"


def test_pid1_death_ends_container(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec(args=["sh", "-c", "sleep 1000 & sleep 1000 & wait"]))
    procs_file = c.cgroup_file("pids", "cgroup.procs")
    running = wait_for(lambda: len(procs_file.read_text().split()) >= 3, 10)
    assert running, f"the workload did not start: {procs_file.read_text().split()}"
    os.kill(c.pid, 9)
    c.wait_exit(10)
    left = wait_for(lambda: not (procs_file.exists() and procs_file.read_text().split()), 10)
    left = procs_file.read_text().split() if procs_file.exists() else []
    state = runtime.state(c)
    evidence.record("processes left after PID 1 was killed", expected=[], measured=left)
    evidence.record("runtime state", expected="stopped", measured=state)
    assert not left, f"processes {left} survived the death of PID 1"
    assert state == "stopped", f"the runtime says {state!r} after PID 1 died"


# --- mount -------------------------------------------------------------------------------------


def test_mount_no_propagation_out(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec())
    assert_own_ns(c.pid, "mnt", evidence)
    probes.in_namespaces(c.pid, ["mnt"], lambda: probes.mount_tmpfs("/mnt"))
    inside = [
        m
        for m in probes.mountpoints(c.pid)
        if m["mountpoint"] == "/mnt" and m["source"] == "isoproof"
    ]
    assert inside, "the probe's mount inside did not happen (probe broken?)"
    host = [
        m
        for m in probes.mountpoints("self")
        if m["source"] == "isoproof" and m["fstype"] == "tmpfs"
    ]
    evidence.record("the container's tmpfs seen on the host", expected=[],
                    measured=[m["mountpoint"] for m in host])  # fmt: skip
    assert not host, f"a mount made inside the container appeared on the host: {host}"


def test_mount_no_propagation_in(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec())
    target = Path(f"/proc/{c.pid}/root/mnt")
    # The host's own path to the container's /mnt (the rootfs directory on the host).
    host_path = _host_path_of_rootfs(c) / "mnt"
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "isoproof-in", str(host_path)], check=True
    )
    try:
        seen = [m for m in probes.mountpoints(c.pid) if m["source"] == "isoproof-in"]
        evidence.record("the host's tmpfs seen inside", expected=[],
                        measured=[m["mountpoint"] for m in seen])  # fmt: skip
        assert not seen, f"a mount made on the host propagated into the container: {seen}"
        assert target.exists(), f"the container's /mnt is gone ({target})"
    finally:
        subprocess.run(["umount", str(host_path)], check=False)


def _host_path_of_rootfs(c) -> Path:  # type: ignore[no-untyped-def]
    if c.bundle is not None:
        return c.bundle / "rootfs"
    pytest.skip(f"needs the rootfs path on the host; driver {c.driver.label} does not expose one")
    raise AssertionError("unreachable: pytest.skip raises")


def test_rootfs_confinement(runtime: Driver, evidence) -> None:
    marker = Path(runtime.workdir) / f"isoproof-marker-{secrets.token_hex(4)}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("host")
    try:
        c = runtime.create(ContainerSpec())
        root = Path(f"/proc/{c.pid}/root")
        assert not (root / str(marker).lstrip("/")).exists(), "a host file is visible inside"
        passwd = (root / "etc/passwd").read_text()
        assert passwd != Path("/etc/passwd").read_text(), (
            "the container sees the host's /etc/passwd"
        )
        assert (root / "bin/busybox").exists(), "the container's root is not its rootfs"
        exposed = host_directories_exposed(c.pid)
        evidence.record("host directories mounted inside", expected=[], measured=exposed)
        assert not exposed, f"host directories mounted into the container: {exposed}"
    finally:
        marker.unlink()


def host_directories_exposed(pid: int) -> list[str]:
    """Directories of a disk-backed host filesystem mounted inside from outside the container's
    own root. (Single-file binds, such as /etc/hosts from the engine's state, are allowed.)"""
    mounts = probes.mountpoints(pid)
    rootm = next(m for m in reversed(mounts) if m["mountpoint"] == "/")
    out = []
    for m in mounts:
        if m is rootm or not os.path.exists(f"/sys/dev/block/{m['dev']}"):
            continue  # pseudo filesystems (proc, tmpfs, overlay, ...) are not host paths
        inside_root = m["dev"] == rootm["dev"] and (m["root"] + "/").startswith(
            rootm["root"].rstrip("/") + "/"
        )
        if inside_root:
            continue
        try:
            is_dir = stat.S_ISDIR(os.stat(f"/proc/{pid}/root{m['mountpoint']}").st_mode)
        except OSError:
            continue
        if is_dir:
            out.append(f"{m['root']} at {m['mountpoint']}")
    return out


# --- IPC ---------------------------------------------------------------------------------------

IPC_KINDS = ["shm", "sem", "msg"]


def _key() -> int:
    return probes.SHM_KEY_BASE + secrets.randbelow(1 << 24)


@pytest.mark.parametrize("kind", IPC_KINDS)
def test_ipc_isolated_both_ways(runtime: Driver, kind: str, evidence) -> None:
    c = runtime.create(ContainerSpec())
    assert_own_ns(c.pid, "ipc", evidence)
    k_host, k_inside = _key(), _key()
    ident = probes.ipc_create(kind, k_host)
    try:
        seen = probes.in_namespaces(c.pid, ["ipc"], lambda: probes.ipc_lookup(kind, k_host))
        evidence.record(f"host {kind} key {k_host} seen inside", expected=None, measured=seen)
        assert seen is None, f"the container sees the host's {kind} key {k_host}"
    finally:
        probes.ipc_remove(kind, ident)
    inner = probes.in_namespaces(c.pid, ["ipc"], lambda: probes.ipc_create(kind, k_inside))
    try:
        on_host = probes.ipc_lookup(kind, k_inside)
        evidence.record(
            f"container {kind} key {k_inside} seen on host", expected=None, measured=on_host
        )
        assert on_host is None, f"the host sees the container's {kind} key {k_inside}"
    finally:
        if on_host is not None:
            probes.ipc_remove(kind, on_host)
        probes.in_namespaces(c.pid, ["ipc"], lambda: probes.ipc_remove(kind, inner))


@pytest.mark.parametrize("kind", IPC_KINDS)
def test_ipc_shared_with_host(runtime: Driver, kind: str, evidence) -> None:
    c = runtime.create(ContainerSpec(namespaces={**ContainerSpec().namespaces, "ipc": "host"}))
    key = _key()
    ident = probes.ipc_create(kind, key)
    try:
        seen = probes.in_namespaces(c.pid, ["ipc"], lambda: probes.ipc_lookup(kind, key))
        evidence.record(f"host {kind} key {key} seen inside", expected=ident, measured=seen)
        assert seen == ident, "with the host's IPC namespace the host's object must be visible"
    finally:
        probes.ipc_remove(kind, ident)


def test_ipc_shared_with_container(runtime: Driver, evidence) -> None:
    a = runtime.create(ContainerSpec())
    b = runtime.create(ContainerSpec(namespaces={**ContainerSpec().namespaces, "ipc": a}))
    assert_shared_ns(b.pid, a.pid, "ipc", evidence)
    assert_own_ns(a.pid, "ipc", evidence)
    key = _key()
    ident = probes.in_namespaces(a.pid, ["ipc"], lambda: probes.ipc_create("shm", key))
    try:
        seen = probes.in_namespaces(b.pid, ["ipc"], lambda: probes.ipc_lookup("shm", key))
        evidence.record(f"shm key {key} of the first container seen by the second",
                        expected=ident, measured=seen)  # fmt: skip
        assert seen == ident, "a container joined to another's IPC namespace cannot see its objects"
    finally:
        probes.in_namespaces(a.pid, ["ipc"], lambda: probes.ipc_remove("shm", ident))


# --- network -----------------------------------------------------------------------------------


def test_network_none(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec(network="none"))
    assert_own_ns(c.pid, "net", evidence)
    view = probes.in_namespaces(c.pid, ["net"], probes.net_view)
    names = sorted(lk["name"] for lk in view["links"])
    evidence.record("links", expected=["lo"], measured=names)
    assert names == ["lo"], f"a container without network has links {names}"
    assert not [r for r in view["routes"] if r["dst"] is None], "a default route with no network"


def test_network_veth(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec(network="veth"))
    assert_own_ns(c.pid, "net", evidence)
    view = probes.in_namespaces(c.pid, ["net"], probes.net_view)
    links = {lk["name"]: lk for lk in view["links"]}
    others = [n for n, lk in links.items() if n != "lo" and lk["kind"] != "veth"]
    veths = [n for n, lk in links.items() if lk["kind"] == "veth"]
    evidence.record("links", expected="lo + one veth", measured=sorted(links))
    assert "lo" in links and len(veths) == 1 and not others, f"links inside: {sorted(links)}"
    veth_index = links[veths[0]]["index"]
    addrs = [a["address"] for a in view["addrs"] if a["index"] == veth_index]
    assert c.net["addr"] in addrs, f"the veth has addresses {addrs}, expected {c.net['addr']}"
    host_addrs = {a["address"] for a in probes.net_view()["addrs"]}
    assert c.net["addr"] not in host_addrs, "the container's address is configured on the host"
    # Own routes only: every route leaves through the veth (or lo).
    bad = [r for r in view["routes"] if r["oif"] not in (veth_index, links["lo"]["index"])]
    assert not bad, f"routes that do not use the container's veth: {bad}"
    # Reachability only over the veth: the kernel's lookup for an address beyond it fails (no
    # packet is sent), and the peer at the other end answers a ping.
    beyond = probes.in_namespaces(c.pid, ["net"], lambda: probes.route_get("198.51.100.7"))
    assert beyond is None or beyond["oif"] == veth_index, f"a route off the veth: {beyond}"
    ping = ["/bin/busybox", "ping", "-c", "1", "-W", "2", c.net["addr"]]
    if "peer_ns" in c.net:
        ping = ["ip", "netns", "exec", c.net["peer_ns"], *ping]
    r = subprocess.run(ping, capture_output=True, text=True, timeout=10)
    evidence.record("ping over the veth", expected=0, measured=r.returncode)
    assert r.returncode == 0, f"the container is unreachable over its veth: {r.stdout}{r.stderr}"


# --- user --------------------------------------------------------------------------------------


def test_user_namespace(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec().with_user_ns(100000, 65536))
    assert_own_ns(c.pid, "user", evidence)
    umap = probes.read_id_map(c.pid, "uid")
    gmap = probes.read_id_map(c.pid, "gid")
    evidence.record("uid_map", expected=[[0, 100000, 65536]], measured=umap)
    evidence.record("gid_map", expected=[[0, 100000, 65536]], measured=gmap)
    assert umap == [(0, 100000, 65536)] and gmap == [(0, 100000, 65536)], (
        f"the id maps are uid {umap}, gid {gmap}; asked for 0 -> 100000, 65536 ids"
    )
    uids = probes.status_fields(c.pid)["Uid"].split()
    assert uids[0] == "100000", f"root inside runs as host uid {uids[0]}"
    script = "touch /tmp/isoproof-owner && echo isoproofusr:x:1000:1000::/:/bin/sh >> /etc/passwd"
    runtime.exec_ok(c, ["sh", "-c", script])
    st = os.stat(f"/proc/{c.pid}/root/tmp/isoproof-owner")
    assert st.st_uid == 100000, f"a file made by root inside is owned by host uid {st.st_uid}"
    assert "isoproofusr" in Path(f"/proc/{c.pid}/root/etc/passwd").read_text(), (
        "the user added inside is not in the container's /etc/passwd"
    )
    import pwd

    with pytest.raises(KeyError):  # fails the check if the host knows the user
        pwd.getpwnam("isoproofusr")


def test_user_root_is_unprivileged_outside(runtime: Driver, evidence) -> None:
    """Become the container's root (setns into its user namespace, then uid 0 there) and try two
    things only host root may do: read a host-root 0600 file and signal a host-root process."""
    c = runtime.create(ContainerSpec().with_user_ns(100000, 65536))
    secret = Path(runtime.workdir) / f"isoproof-secret-{secrets.token_hex(4)}"
    secret.write_text("host only")
    secret.chmod(0o600)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        got = probes.in_namespaces(
            c.pid, ["user"], lambda: _as_container_root(str(secret), sleeper.pid)
        )
        evidence.record(
            "container root acting on the host",
            expected={"read": "EACCES", "kill": "EPERM"},
            measured=got,
        )
        uid = probes.status_fields(c.pid)["Uid"].split()[0]
        assert uid == "100000", f"root inside is host uid {uid}"
        assert got["read"] == "EACCES", "root inside the user namespace read a host-root 0600 file"
        assert got["kill"] == "EPERM", (
            "root inside the user namespace could signal a host-root process"
        )
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
        secret.unlink()


def _as_container_root(path: str, pid: int) -> dict[str, object]:
    with contextlib.suppress(PermissionError):  # refused when the runtime wrote setgroups "deny"
        os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    out: dict[str, object] = {}
    try:
        with open(path) as f:
            f.read()
        out["read"] = "ok"
    except PermissionError:
        out["read"] = "EACCES"
    try:
        os.kill(pid, 0)
        out["kill"] = "ok"
    except PermissionError:
        out["kill"] = "EPERM"
    return out


# --- cgroup namespace --------------------------------------------------------------------------


def test_cgroup_namespace(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec())
    assert_own_ns(c.pid, "cgroup", evidence)
    text = probes.in_namespaces(
        c.pid, ["cgroup"], lambda: Path(f"/proc/{c.pid}/cgroup").read_text()
    )
    paths = sorted({line.split(":", 2)[2] for line in text.splitlines()})
    evidence.record("/proc/<pid>/cgroup paths seen inside", expected=["/"], measured=paths)
    assert paths == ["/"], f"inside, the container's cgroup shows as {paths}"
