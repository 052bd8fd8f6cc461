"""The escape battery's judgements and the host snapshot's comparison, on data (no root)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from verify import probes, snapshot
from verify.spec import ContainerSpec, oci_config

INSIDE = {100, 101}


def fd(n: int, target: str, kind: str, mnt: int) -> dict[str, object]:
    return {"fd": n, "target": target, "kind": kind, "mnt_id": mnt}


def test_foreign_fd_judges_what_reaches_outside() -> None:
    own = [fd(3, "pipe:[1]", "fifo", 12), fd(4, "socket:[2]", "socket", 9),
           fd(5, "anon_inode:[eventpoll]", "?", 14), fd(6, "/dev/null", "chardev", 24),
           fd(7, "/etc/passwd", "file", 100), fd(8, "/memfd:runc_cloned (deleted)", "file", 1)]  # fmt: skip
    assert not [e for e in own if probes.foreign_fd(e, INSIDE)]
    host = [fd(3, "/", "dir", 22), fd(9, "/usr/bin/python3.11", "file", 27),
            fd(10, "/dev/vda", "blockdev", 24)]  # fmt: skip
    assert [e["fd"] for e in host if probes.foreign_fd(e, INSIDE)] == [3, 9, 10]


def test_judge_hits_names_host_files_only() -> None:
    lines = [
        "R|/proc/5/exe|/memfd:runc_cloned:/proc/self/exe (deleted)|mnt_id:\t15|regular file",
        "W|/proc/5/fd/4|/dev/pts/0|mnt_id:\t101|character special file",
        "W|/proc/6/fd/3|/tmp/log|mnt_id:\t100|regular file",
        "R|/proc/7/exe|/root/.pyenv/versions/3.11.7/bin/python3.11|mnt_id:\t27|regular file",
        "W|/proc/7/fd/5|/var/lib/x|mnt_id:\t27|regular file",
        "R|/proc/8/exe||",  # the process went while the line was made
    ]
    bad, n = probes.judge_hits(lines, INSIDE)
    assert n == 6
    assert bad == [
        "/root/.pyenv/versions/3.11.7/bin/python3.11 (regular file, host mount 27) via "
        "/proc/7/exe: opened read-only, write refused",
        "/var/lib/x (regular file, host mount 27) via /proc/7/fd/5: opened for writing",
    ]


def test_spec_carries_cwd_and_oom_score_adj() -> None:
    cfg = oci_config(ContainerSpec(cwd="/proc/self/fd/7", oom_score_adj=345), "/r", "/c")
    assert cfg["process"]["cwd"] == "/proc/self/fd/7"
    assert cfg["process"]["oomScoreAdj"] == 345
    assert "oomScoreAdj" not in oci_config(ContainerSpec(), "/r", "/c")["process"]


def fake_snapshot() -> dict[str, Any]:
    return {
        "uts": ["hostname h", "domainname (none)"],
        "sysctl": {
            "vm.swappiness": "60",
            "net.ipv4.conf.eth0.forwarding": "0",
            "net.ipv4.conf.isoproofab12a.forwarding": "0",
        },  # fmt: skip
        "ipc": [],
        "links": ["eth0 mtu 1500 up", "isoproofab12a mtu 1500 up"],
        "addresses": ["eth0 inet 10.0.0.2/24"],
        "mounts": ["/ ext4 /dev/vda rw"],
        "cgroups": [],
        "iptables": "skipped: iptables-save is not installed",
    }


def test_snapshot_diff_is_empty_for_the_same_host() -> None:
    assert snapshot.diff(fake_snapshot(), fake_snapshot()) == []


def test_snapshot_diff_names_every_change() -> None:
    before, after = fake_snapshot(), fake_snapshot()
    after["sysctl"]["vm.swappiness"] = "10"
    after["ipc"] = ["shm key 124426 id 7 perms 600"]
    after["mounts"] = [*after["mounts"], "/mnt/x tmpfs isoproof-x rw"]
    assert snapshot.diff(before, after) == [
        "sysctl vm.swappiness: 60 -> 10",
        "ipc added: shm key 124426 id 7 perms 600",
        "mounts added: /mnt/x tmpfs isoproof-x rw",
    ]


def test_snapshot_per_interface_sysctls_follow_their_link() -> None:
    """A link that went is one difference (links), not one per sysctl of it."""
    before, after = fake_snapshot(), copy.deepcopy(fake_snapshot())
    after["links"] = ["eth0 mtu 1500 up"]
    del after["sysctl"]["net.ipv4.conf.isoproofab12a.forwarding"]
    assert snapshot.diff(before, after) == ["links removed: isoproofab12a mtu 1500 up"]


def test_snapshot_attribution() -> None:
    lines = ["sysctl fs.lease-break-time: 45 -> 46", "links added: isoproof0 mtu 1500 up",
             "cgroups added: /sys/fs/cgroup/pids/isoproof-verify-abcd1234/x"]  # fmt: skip
    lines.append("mounts removed: /var/lib/docker/overlay2/x/merged overlay overlay rw")
    count, ignored = snapshot.attribute(lines, ["abcd1234"])
    assert count == [lines[0], lines[2]] and ignored == [lines[1], lines[3]]


def test_iproute2s_own_netns_mount_is_shown_not_counted() -> None:
    """The first `ip netns add` on a fresh host mounts /run/netns for good (fresh-root CI run)."""
    made = "mounts added: /run/netns tmpfs tmpfs rw,relatime"
    assert snapshot.attribute([made], ["abcd1234"]) == ([], [made])
    other = "mounts added: /run/netns-not-iproute tmpfs tmpfs rw"
    assert snapshot.attribute([other], ["abcd1234"]) == ([other], [])
    assert all(why for why in snapshot.HOST_TOOL_MOUNTS.values())


def test_volatile_sysctls_are_left_out(tmp_path: Path) -> None:
    for key, value in (("kernel/random/uuid", "x"), ("kernel/ns_last_pid", "5"),
                       ("vm/swappiness", "60"), ("fs/file-nr", "1 0 9")):  # fmt: skip
        p = tmp_path / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(value + "\n")
    assert snapshot.sysctls(tmp_path) == {"vm.swappiness": "60"}
    assert all(why for why in snapshot.VOLATILE_SYSCTLS.values())


def test_snapshot_ignore_pattern(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    line = "mounts added: /tmp/ipt-c4/containers/x/bundle/rootfs overlay overlay rw"
    assert snapshot.attribute([line], ["abcd1234"]) == ([line], [])
    monkeypatch.setattr(snapshot, "_IGNORE", snapshot._ignore_pattern("^mounts added: /tmp/ipt-"))
    assert snapshot.attribute([line], ["abcd1234"]) == ([], [line])
    assert snapshot._ignore_pattern("(") is not None  # not a valid expression: taken literally
