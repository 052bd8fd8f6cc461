"""The security baseline of a default container, seen from the host."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from verify import host, probes
from verify.drivers import Driver
from verify.spec import DEFAULT_CAPS, MASKED_PATHS, READONLY_PATHS, ContainerSpec

pytestmark = pytest.mark.root

# Capability numbers from linux/capability.h that no default container may hold.
FORBIDDEN_CAPS = {
    "CAP_DAC_READ_SEARCH": 2, "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_ADMIN": 12, "CAP_IPC_LOCK": 14,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23, "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_LEASE": 28, "CAP_AUDIT_CONTROL": 30,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_BPF": 39, "CAP_PERFMON": 38, "CAP_CHECKPOINT_RESTORE": 40,
}  # fmt: skip
CAP_NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
    "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31,
}  # fmt: skip


def cap_names(mask: int) -> set[str]:
    names = {v: k for k, v in {**FORBIDDEN_CAPS, **CAP_NUMBERS}.items()}
    return {names.get(i, f"cap{i}") for i in range(64) if mask >> i & 1}


def test_capabilities(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec())
    st = probes.status_fields(c.pid)
    allowed = set(DEFAULT_CAPS)
    for field in ("CapEff", "CapPrm", "CapBnd"):
        have = cap_names(int(st[field], 16))
        evidence.record(field, expected=sorted(allowed), measured=sorted(have))
        extra = have - allowed
        assert not extra, f"{field} holds capabilities beyond the default set: {sorted(extra)}"


def test_no_new_privs(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec())
    nnp = probes.status_fields(c.pid)["NoNewPrivs"]
    evidence.record("NoNewPrivs of init", expected="1", measured=nnp)
    assert nnp == "1", "no_new_privs is not set on the container's init"


def test_masked_paths(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec())
    root = Path(f"/proc/{c.pid}/root")
    unmasked = []
    for p in MASKED_PATHS:
        target = root / p.lstrip("/")
        try:
            st = os.stat(target)
        except FileNotFoundError:
            continue  # absent on this kernel: nothing to hide
        if stat.S_ISDIR(st.st_mode):
            if os.listdir(target):
                unmasked.append(p)
        elif stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3:
            continue  # /dev/null bound over it
        elif stat.S_ISREG(st.st_mode):
            with open(target, "rb") as f:
                if f.read(16):
                    unmasked.append(p)
    evidence.record("readable masked paths", expected=[], measured=unmasked)
    assert not unmasked, f"masked paths readable inside: {unmasked}"


def test_readonly_paths(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec())
    mounts = {m["mountpoint"]: m for m in probes.mountpoints(c.pid)}
    writable = [
        p for p in READONLY_PATHS if p in mounts and "ro" not in mounts[p]["options"].split(",")
    ]
    root = f"/proc/{c.pid}/root"
    missing = [p for p in READONLY_PATHS if p not in mounts and os.path.exists(root + p)]
    evidence.record("read-only paths not remounted", expected=[], measured=missing)
    evidence.record("read-only paths writable", expected=[], measured=writable)
    assert not missing, f"read-only paths not remounted: {missing}"
    assert not writable, f"paths that should be read-only are writable: {writable}"


def test_no_host_block_devices(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec())
    dev = Path(f"/proc/{c.pid}/root/dev")
    blocks = [p.name for p in dev.iterdir() if stat.S_ISBLK(os.lstat(p).st_mode)]
    evidence.record("block devices in /dev", expected=[], measured=blocks)
    assert not blocks, f"block devices visible in the container's /dev: {blocks}"
    if host.layout().version == 1:
        # The kernel's own list of what the devices controller lets the container open. (On v2 it
        # is a BPF program attached to the cgroup, with nothing to read back: the behaviour
        # below is the proof there.)
        rules = c.read_cgroup("devices", "devices.list").split("\n")
        # "b *:* m" (mknod only) is the usual default; reading or writing a disk is not.
        open_rules = [
            r for r in rules if r.startswith(("a ", "b ")) and set(r.split()[-1]) & {"r", "w"}
        ]
        evidence.record("block-device rules in devices.list", expected=[], measured=open_rules)
        assert not open_rules, f"the devices cgroup allows block devices: {open_rules}"
    # A node of a host block device, made by the host in the container's /dev (a tmpfs without
    # nodev) and opened by the host first: the container's root may open it as far as file
    # permissions go, and mknod capabilities play no part. Only the device cgroup (v1
    # devices.list, v2 a BPF device filter) stands in the way, and its answer is EPERM.
    found = probes.block_node_the_host_can_open(dev, f"isoproof-blk-{os.getpid()}")
    if found is None:
        pytest.skip("needs a block device the host can open; this host refuses every one")
        return
    node, major, minor = found
    try:
        _rc, out, err = runtime.exec(c, ["sh", "-c", f"head -c 512 /dev/{node.name} | wc -c"])
    finally:
        node.unlink()
    evidence.record(
        f"opening host block device {major}:{minor} through a node in the container's /dev",
        expected="refused: Operation not permitted",
        measured=f"{out.strip()} bytes read; {err.strip()}",
    )
    assert out.strip() == "0", (
        f"the container read {out.strip()} bytes of host block device {major}:{minor}"
    )
    assert "Operation not permitted" in err, (
        f"the container opened host block device {major}:{minor}, which the host could open"
        f" too: device rules are not enforced ({err.strip() or 'no error'})"
    )
    major, minor = host.block_device_of("/")
    script = f"mknod /tmp/isoproof-blk b {major} {minor} && head -c 512 /tmp/isoproof-blk | wc -c"
    rc, out, err = runtime.exec(c, ["sh", "-c", script])
    assert rc != 0 or out.strip() == "0", (
        f"the container read the host's disk {major}:{minor} ({out.strip()} bytes)"
    )


def test_cannot_mount(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec())
    rc, _, err = runtime.exec(c, ["mount", "-t", "tmpfs", "isoproof-try", "/mnt"])
    mounted = [m for m in probes.mountpoints(c.pid) if m["source"] == "isoproof-try"]
    evidence.record("mount -t tmpfs inside", expected="refused", measured=f"exit {rc}: {err.strip()}",
                    mounted=bool(mounted))  # fmt: skip
    assert rc != 0 and not mounted, "a default container could mount a filesystem"


def test_cannot_see_host_processes(runtime: Driver, evidence) -> None:
    c = runtime.create(ContainerSpec())
    proc = Path(f"/proc/{c.pid}/root/proc")
    # The host's own process is the obvious witness: this pytest process.
    visible = {p.name for p in proc.iterdir() if p.name.isdigit()}
    cmdlines = [
        (proc / p / "cmdline").read_bytes() for p in visible if (proc / p / "cmdline").exists()
    ]
    assert not any(b"pytest" in cl or b"verify" in cl for cl in cmdlines), (
        "the container sees host processes"
    )
    out = runtime.exec_ok(c, ["sh", "-c", "ls /proc | grep -c '^[0-9]'"])
    evidence.record("processes listed in /proc inside", expected="< 10", measured=int(out.strip()))
    assert int(out.strip()) < 10, f"ps inside sees {out.strip()} processes"
