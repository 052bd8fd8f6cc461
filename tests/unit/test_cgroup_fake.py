"""The cgroup drivers against a fake cgroup tree in a temporary directory (no root needed).

The fake behaves like the kernel where the drivers rely on it: a new cgroup directory gets its
controller's files at mkdir, files are never created by a write, v2's ``cgroup.controllers`` of a
child follows the parent's ``cgroup.subtree_control``, and freezing reports frozen. Every write is
recorded, so a test can check files written several times (device rules, io.max lines).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runtime.cgroups import Mode, cleanup_stale, convert, detect_mode, fs, new_manager
from runtime.cgroups.base import Manager
from runtime.errors import CgroupError
from runtime.sys import RecordingSys

V1_FILES: dict[str, dict[str, str]] = {
    "cpu": {
        "cpu.shares": "1024",
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "-1",
        "cpu.cfs_burst_us": "0",
        "cpu.rt_period_us": "1000000",
        "cpu.rt_runtime_us": "0",
        "cpu.idle": "0",
        "cpu.stat": "nr_periods 7\nnr_throttled 2\nthrottled_time 5000\n",
    },
    "cpuacct": {
        "cpuacct.usage": "123456",
        "cpuacct.usage_percpu": "100000 23456 \n",
        "cpuacct.stat": "user 3\nsystem 1\n",
    },
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {
        "memory.limit_in_bytes": "9223372036854771712",
        "memory.soft_limit_in_bytes": "9223372036854771712",
        "memory.memsw.limit_in_bytes": "9223372036854771712",
        "memory.swappiness": "60",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        "memory.usage_in_bytes": "4096",
        "memory.max_usage_in_bytes": "8192",
        "memory.failcnt": "1",
        "memory.stat": "cache 8192\nrss 4096\ntotal_cache 8192\ntotal_inactive_file 1024\n",
    },
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    "freezer": {"freezer.state": "THAWED\n"},
    "blkio": {
        "blkio.bfq.weight": "100",
        "blkio.bfq.weight_device": "",
        "blkio.throttle.read_bps_device": "",
        "blkio.throttle.write_bps_device": "",
        "blkio.throttle.read_iops_device": "",
        "blkio.throttle.write_iops_device": "",
        "blkio.throttle.io_service_bytes": "254:0 Read 10\n254:0 Write 20\n254:0 Total 30\nTotal 30\n",
        "blkio.throttle.io_serviced": "254:0 Read 1\n254:0 Write 2\n254:0 Total 3\nTotal 3\n",
    },
    "pids": {"pids.max": "max", "pids.current": "2"},
    "hugetlb": {"hugetlb.2MB.limit_in_bytes": "", "hugetlb.1GB.limit_in_bytes": ""},
}
V1_COMMON = {"cgroup.procs": "", "tasks": ""}

V2_FILES: dict[str, str] = {
    "cgroup.controllers": "",
    "cgroup.subtree_control": "",
    "cgroup.procs": "",
    "cgroup.freeze": "0",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cpu.weight": "100",
    "cpu.max": "max 100000",
    "cpu.max.burst": "0",
    "cpu.idle": "0",
    "cpu.stat": "usage_usec 42\nuser_usec 30\nsystem_usec 12\nnr_periods 3\nnr_throttled 1\n"
    "throttled_usec 7\n",
    "cpuset.cpus": "",
    "cpuset.mems": "",
    "memory.max": "max",
    "memory.low": "0",
    "memory.swap.max": "max",
    "memory.current": "4096",
    "memory.peak": "8192",
    "memory.events": "low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\n",
    "memory.stat": "anon 2048\nfile 1024\ninactive_file 512\n",
    "pids.max": "max",
    "pids.current": "1",
    "io.weight": "default 100",
    "io.max": "",
    "io.stat": "254:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
    "hugetlb.2MB.max": "max",
}
V2_ROOT_CONTROLLERS = "cpuset cpu io memory hugetlb pids"


@dataclass
class FakeTree:
    root: Path
    mountinfo: Path
    dev_block: Path
    writes: list[tuple[str, str, str]] = field(default_factory=list)  # (dir, file, value)
    # Plays the kernel's bpf(2) for the v2 device filter (one cgroup's attached programs).
    sys: RecordingSys = field(default_factory=RecordingSys)

    def manager(self, path: str | None = "/isoproof-tfake/c1", cid: str = "c1") -> Manager:
        mgr = new_manager(path, cid, root=str(self.root), mountinfo=str(self.mountinfo))
        mgr.ctx.dev_block = str(self.dev_block)  # type: ignore[attr-defined]
        if mgr.version == 2:
            mgr.sys = self.sys  # type: ignore[attr-defined]  # bpf(2) for the device filter
        return mgr

    def written(self, name: str) -> list[str]:
        return [v for _d, n, v in self.writes if n == name]

    def leftovers(self) -> list[str]:
        return sorted(
            str(p.relative_to(self.root)) for p in self.root.rglob("isoproof*") if p.is_dir()
        )


def _mountinfo_line(n: int, mountpoint: Path, fstype: str, opts: str) -> str:
    return f"{n} 1 0:{n} / {mountpoint} rw,relatime - {fstype} {fstype} {opts}\n"


def _install(
    monkeypatch: pytest.MonkeyPatch, tree: FakeTree, template: Callable[[str], dict[str, str]]
) -> None:
    real_write = fs.write

    def mkdir(path: str, mode: int = 0o777) -> None:
        os.mkdir(path, mode)
        for name, content in template(path).items():
            Path(path, name).write_text(content)

    def write(directory: str, name: str, value: str | int) -> None:
        tree.writes.append((directory, name, str(value)))
        if name == "cgroup.subtree_control" and os.path.exists(os.path.join(directory, name)):
            # The kernel keeps a set; children see it in their cgroup.controllers.
            enabled = set(Path(directory, name).read_text().split())
            sign, ctrl = str(value)[0], str(value)[1:]
            enabled = enabled | {ctrl} if sign == "+" else enabled - {ctrl}
            Path(directory, name).write_text(" ".join(sorted(enabled)))
            for child in Path(directory).iterdir():
                if child.is_dir():
                    (child / "cgroup.controllers").write_text(" ".join(sorted(enabled)))
            return
        real_write(directory, name, value)
        if name == "cgroup.freeze":
            Path(directory, "cgroup.events").write_text(f"populated 1\nfrozen {value}\n")

    monkeypatch.setattr(fs, "_mkdir", mkdir)
    monkeypatch.setattr(fs, "write", write)


def _dev_block(tmp_path: Path) -> Path:
    d = tmp_path / "dev-block"
    d.mkdir()
    (d / "254:0").mkdir()
    (d / "8:16").mkdir()
    return d


def make_v1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, joined: bool = False, hugetlb: bool = True
) -> FakeTree:
    root = tmp_path / "cgroup"
    root.mkdir()
    groups = [["cpu", "cpuacct"]] if joined else [["cpu"], ["cpuacct"]]
    groups += [[c] for c in ("cpuset", "memory", "devices", "freezer", "blkio", "pids")]
    if hugetlb:
        groups.append(["hugetlb"])
    lines = []
    files_of_mount: dict[str, dict[str, str]] = {}
    for n, ctrls in enumerate(groups, start=30):
        mp = root / ",".join(ctrls)
        mp.mkdir()
        files = dict(V1_COMMON)
        for c in ctrls:
            files.update(V1_FILES[c])
        files_of_mount[str(mp)] = files
        for name, content in files.items():
            (mp / name).write_text(content)
        lines.append(_mountinfo_line(n, mp, "cgroup", "rw," + ",".join(ctrls)))
    (root / "cpuset" / "cpuset.cpus").write_text("0-1\n")
    (root / "cpuset" / "cpuset.mems").write_text("0\n")
    (root / "systemd").mkdir()
    lines.append(_mountinfo_line(50, root / "systemd", "cgroup", "rw,xattr,name=systemd"))
    (root / "unified").mkdir()
    (root / "unified" / "cgroup.controllers").write_text("")
    lines.append(_mountinfo_line(51, root / "unified", "cgroup2", "rw,nsdelegate"))
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 0:21 / / rw - ext4 /dev/vda rw\n" + "".join(lines))
    tree = FakeTree(root, mountinfo, _dev_block(tmp_path))

    def template(path: str) -> dict[str, str]:
        for mp, files in files_of_mount.items():
            if path.startswith(mp + os.sep):
                # A fresh v1 cpuset is empty, like the kernel's.
                return {k: ("" if k.startswith("cpuset.") else v) for k, v in files.items()}
        raise AssertionError(f"mkdir outside the fake hierarchies: {path}")

    _install(monkeypatch, tree, template)
    return tree


def make_v2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    controllers: str = V2_ROOT_CONTROLLERS,
    bfq: bool = False,
) -> FakeTree:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text(controllers)
    (root / "cgroup.subtree_control").write_text("")
    (root / "cgroup.procs").write_text("1\n")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(_mountinfo_line(30, root, "cgroup2", "rw,nsdelegate"))
    tree = FakeTree(root, mountinfo, _dev_block(tmp_path))

    def template(path: str) -> dict[str, str]:
        files = dict(V2_FILES)
        if bfq:
            del files["io.weight"]
            files["io.bfq.weight"] = "default 100"
        files["cgroup.controllers"] = Path(
            os.path.dirname(path), "cgroup.subtree_control"
        ).read_text()
        return files

    _install(monkeypatch, tree, template)
    return tree


@pytest.fixture(params=[False, True], ids=["cpu+cpuacct-apart", "cpu,cpuacct-joined"])
def v1(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTree:
    return make_v1(tmp_path, monkeypatch, joined=request.param)


@pytest.fixture
def v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTree:
    return make_v2(tmp_path, monkeypatch)


@pytest.fixture
def v1mgr(v1: FakeTree) -> Iterator[Manager]:
    mgr = v1.manager()
    mgr.create()
    yield mgr
    mgr.destroy()
    assert v1.leftovers() == []


@pytest.fixture
def v2mgr(v2: FakeTree) -> Iterator[Manager]:
    mgr = v2.manager()
    mgr.create()
    yield mgr
    mgr.destroy()
    assert v2.leftovers() == []


def read(mgr: Manager, ctrl: str, name: str) -> str:
    return Path(mgr.paths()[ctrl], name).read_text().strip()


# --------------------------------------------------------------------------------- detection
def test_detects_hybrid_and_drives_it_as_v1(v1: FakeTree) -> None:
    assert detect_mode(str(v1.mountinfo)) is Mode.HYBRID
    mgr = v1.manager()
    assert mgr.version == 1 and mgr.mode is Mode.HYBRID
    # name=systemd is a named hierarchy, not a controller.
    assert "systemd" not in mgr.paths() and "name=systemd" not in mgr.paths()


def test_detects_unified(v2: FakeTree) -> None:
    assert detect_mode(str(v2.mountinfo)) is Mode.UNIFIED
    assert v2.manager().version == 2


def test_joined_cpu_cpuacct_share_one_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = make_v1(tmp_path, monkeypatch, joined=True)
    paths = tree.manager().paths()
    assert paths["cpu"] == paths["cpuacct"]
    assert paths["cpu"].endswith("cpu,cpuacct/isoproof-tfake/c1")


def test_scan_tree_without_mountinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = make_v1(tmp_path, monkeypatch)
    mgr = new_manager(None, "abc", root=str(tree.root))
    assert mgr.mode is Mode.HYBRID
    assert mgr.paths()["memory"] == str(tree.root / "memory" / "isoproof" / "abc")


@pytest.mark.parametrize(
    "path,expected",
    [(None, "isoproof/c1"), ("rel/x", "isoproof/rel/x"), ("/isoproof-t1/c1", "isoproof-t1/c1")],
)
def test_cgroups_path_rules(v1: FakeTree, path: str | None, expected: str) -> None:
    assert v1.manager(path).relpath == expected


@pytest.mark.parametrize("path", ["/a/../b", "/process_api/x", "/"])
def test_cgroups_path_refused(v1: FakeTree, path: str) -> None:
    with pytest.raises(CgroupError):
        v1.manager(path)


# ----------------------------------------------------------------------------- v1 lifecycle
def test_v1_create_makes_every_hierarchy_and_inherits_cpuset(v1: FakeTree, v1mgr: Manager) -> None:
    for d in v1mgr.paths().values():
        assert os.path.isdir(d)
    assert read(v1mgr, "cpuset", "cpuset.cpus") == "0-1"
    assert read(v1mgr, "cpuset", "cpuset.mems") == "0"
    # The intermediate parent was filled too, else the leaf could not have inherited.
    assert (v1.root / "cpuset" / "isoproof-tfake" / "cpuset.cpus").read_text() == "0-1"


def test_v1_add_process_joins_every_hierarchy(v1: FakeTree, v1mgr: Manager) -> None:
    v1mgr.add_process(4242)
    dirs = {d for d, n, v in v1.writes if n == "cgroup.procs" and v == "4242"}
    assert dirs == set(v1mgr.paths().values())
    assert v1mgr.pids() == [4242]


def test_v1_cpu(v1mgr: Manager) -> None:
    v1mgr.set(
        {
            "cpu": {
                "shares": 512,
                "quota": 50000,
                "period": 200000,
                "burst": 1000,
                "idle": 1,
                "realtimePeriod": 900000,
                "realtimeRuntime": 1000,
                "cpus": "1",
                "mems": "0",
            }
        }
    )
    assert read(v1mgr, "cpu", "cpu.shares") == "512"
    assert read(v1mgr, "cpu", "cpu.cfs_quota_us") == "50000"
    assert read(v1mgr, "cpu", "cpu.cfs_period_us") == "200000"
    assert read(v1mgr, "cpu", "cpu.cfs_burst_us") == "1000"
    assert read(v1mgr, "cpu", "cpu.idle") == "1"
    assert read(v1mgr, "cpu", "cpu.rt_period_us") == "900000"
    assert read(v1mgr, "cpu", "cpu.rt_runtime_us") == "1000"
    assert read(v1mgr, "cpuset", "cpuset.cpus") == "1"


def test_v1_memory(v1: FakeTree, v1mgr: Manager) -> None:
    v1mgr.set(
        {
            "memory": {
                "limit": 64 << 20,
                "reservation": 32 << 20,
                "swap": 96 << 20,
                "swappiness": 10,
                "disableOOMKiller": True,
                "kernel": 1 << 20,
            }
        }
    )
    assert read(v1mgr, "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert read(v1mgr, "memory", "memory.soft_limit_in_bytes") == str(32 << 20)
    assert read(v1mgr, "memory", "memory.memsw.limit_in_bytes") == str(96 << 20)
    assert read(v1mgr, "memory", "memory.swappiness") == "10"
    assert read(v1mgr, "memory", "memory.oom_control") == "1"
    # Shrinking from "unlimited": the limit must go first, then memsw (kernel keeps memsw >= limit).
    names = [n for _d, n, _v in v1.writes if n.startswith("memory.") and "limit_in_bytes" in n]
    assert names[:2] == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    assert any("kernel" in w for w in v1mgr.warnings)


def test_v1_memory_growing_writes_memsw_first(v1: FakeTree, v1mgr: Manager) -> None:
    Path(v1mgr.paths()["memory"], "memory.limit_in_bytes").write_text(str(16 << 20))
    v1mgr.set({"memory": {"limit": 64 << 20, "swap": 64 << 20}})
    names = [n for _d, n, _v in v1.writes if "limit_in_bytes" in n]
    assert names == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]


def test_v1_unlimited_values(v1mgr: Manager) -> None:
    v1mgr.set({"memory": {"limit": -1}, "pids": {"limit": -1}, "cpu": {"quota": -1}})
    assert read(v1mgr, "memory", "memory.limit_in_bytes") == "-1"
    assert read(v1mgr, "pids", "pids.max") == "max"
    assert read(v1mgr, "cpu", "cpu.cfs_quota_us") == "-1"


def test_v1_pids_zero_is_a_real_limit(v1mgr: Manager) -> None:
    v1mgr.set({"pids": {"limit": 0}})
    assert read(v1mgr, "pids", "pids.max") == "0"


def test_v1_blkio(v1: FakeTree, v1mgr: Manager) -> None:
    v1mgr.set(
        {
            "blockIO": {
                "weight": 300,
                "weightDevice": [{"major": 254, "minor": 0, "weight": 500}],
                "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1000}],
                "throttleWriteBpsDevice": [
                    {"major": 254, "minor": 0, "rate": 2000},
                    {"major": 8, "minor": 16, "rate": 3000},
                ],
                "throttleReadIOPSDevice": [{"major": 254, "minor": 0, "rate": 40}],
                "throttleWriteIOPSDevice": [{"major": 254, "minor": 0, "rate": 50}],
            }
        }
    )
    # No CFQ file in the fake: the BFQ files take the weights.
    assert v1.written("blkio.bfq.weight") == ["300"]
    assert v1.written("blkio.bfq.weight_device") == ["254:0 500"]
    assert v1.written("blkio.throttle.read_bps_device") == ["254:0 1000"]
    assert v1.written("blkio.throttle.write_bps_device") == ["254:0 2000", "8:16 3000"]
    assert v1.written("blkio.throttle.read_iops_device") == ["254:0 40"]
    assert v1.written("blkio.throttle.write_iops_device") == ["254:0 50"]


def test_v1_devices_in_order(v1: FakeTree, v1mgr: Manager) -> None:
    v1mgr.set(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": True, "type": "c", "major": 136, "access": "rw"},
            ]
        }
    )
    seq = [(n, v) for _d, n, v in v1.writes if n.startswith("devices.")]
    assert seq == [
        ("devices.deny", "a *:* rwm"),
        ("devices.allow", "c 1:3 rwm"),
        ("devices.allow", "c 136:* rw"),
    ]


def test_v1_hugetlb(v1mgr: Manager) -> None:
    v1mgr.set({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]})
    assert read(v1mgr, "hugetlb", "hugetlb.2MB.limit_in_bytes") == str(4 << 20)


def test_v1_freeze_thaw(v1mgr: Manager) -> None:
    assert not v1mgr.is_frozen()
    v1mgr.freeze()
    assert v1mgr.is_frozen() and read(v1mgr, "freezer", "freezer.state") == "FROZEN"
    v1mgr.thaw()
    assert not v1mgr.is_frozen()


def test_v1_stats_and_oom(v1mgr: Manager) -> None:
    st = v1mgr.stats()
    assert st["version"] == 1
    assert st["cpu"]["usage_ns"] == 123456 and st["cpu"]["per_cpu_ns"] == [100000, 23456]
    assert st["cpu"]["throttled_periods"] == 2
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")  # cpuacct.stat counts in clock ticks
    assert (st["cpu"]["user_ns"], st["cpu"]["kernel_ns"]) == (3 * tick, tick)
    assert st["memory"] == {
        "usage": 4096,
        "max_usage": 8192,
        "limit": None,
        "failcnt": 1,
        "under_oom": 0,
        "oom_kill": 3,
        "stat": {"cache": 8192, "rss": 4096, "total_cache": 8192, "total_inactive_file": 1024},
    }
    assert st["pids"] == {"current": 2, "limit": None}
    assert st["blkio"]["devices"]["254:0"] == {
        "read_bytes": 10,
        "write_bytes": 20,
        "read_ios": 1,
        "write_ios": 2,
    }
    assert st["frozen"] is False
    assert v1mgr.oom_kill_count() == 3
    assert v1mgr.cpu_usage_ns() == 123456


def test_v1_partial_update_touches_only_given_files(v1: FakeTree, v1mgr: Manager) -> None:
    v1mgr.set({"cpu": {"shares": 512, "quota": 20000}, "memory": {"limit": 1 << 30}})
    v1.writes.clear()
    v1mgr.set({"cpu": {"shares": 256, "quota": None}, "memory": {}, "pids": None})
    assert [(n, v) for _d, n, v in v1.writes] == [("cpu.shares", "256")]
    assert read(v1mgr, "cpu", "cpu.cfs_quota_us") == "20000"


# ----------------------------------------------------------------------------- v1 bad input
def test_v1_unified_is_an_error(v1: FakeTree, v1mgr: Manager) -> None:
    with pytest.raises(CgroupError, match=r"unified \(memory.high\).*driven as cgroup v1"):
        v1mgr.set({"unified": {"memory.high": "1M"}, "pids": {"limit": 5}})
    assert v1.writes == [] or all(n != "pids.max" for _d, n, _v in v1.writes)


def test_v1_unknown_throttle_device(v1mgr: Manager) -> None:
    with pytest.raises(CgroupError, match=r"throttleWriteBpsDevice\[0\]: no block device 7:99"):
        v1mgr.set({"blockIO": {"throttleWriteBpsDevice": [{"major": 7, "minor": 99, "rate": 1}]}})


def test_v1_missing_controller_names_it_and_mountinfo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = make_v1(tmp_path, monkeypatch, hugetlb=False)
    mgr = tree.manager()
    mgr.create()
    with pytest.raises(CgroupError, match=r"'hugetlb' controller.*not mounted.*mountinfo") as info:
        mgr.set({"pids": {"limit": 3}, "hugepageLimits": [{"pageSize": "2MB", "limit": 1}]})
    assert "\n" not in str(info.value)
    assert tree.written("pids.max") == []  # checked before anything was written
    mgr.destroy()
    assert tree.leftovers() == []


@pytest.mark.parametrize(
    "resources,match",
    [
        ({"memory": {"swappiness": 101}}, "swappiness 101"),
        ({"memory": {"limit": 100 << 20, "swap": 50 << 20}}, "below memory.limit"),
        ({"cpu": {"shares": "lots"}}, "not an integer"),
        ({"devices": [{"allow": True, "type": "x"}]}, "device type"),
        ({"hugepageLimits": [{"pageSize": "3XB", "limit": 1}]}, "huge page size"),
        (
            {"hugepageLimits": [{"pageSize": "4MB", "limit": 1}]},
            "hugetlb.4MB.limit_in_bytes is missing",
        ),
        ({"blockIO": {"leafWeight": 10}}, "leaf_weight is missing"),
        ({"network": {"classID": 1}}, "not supported"),
    ],
)
def test_v1_bad_input_then_destroy_leaves_nothing(
    v1: FakeTree, resources: dict, match: str
) -> None:
    mgr = v1.manager()
    mgr.create()
    with pytest.raises(CgroupError, match=match) as info:
        mgr.set(resources)
    assert "\n" not in str(info.value)
    mgr.destroy()
    assert v1.leftovers() == []


def test_v1_destroy_is_idempotent_and_survives_a_half_create(v1: FakeTree) -> None:
    mgr = v1.manager()
    # A crash after the first hierarchies were made: only memory and cpu exist.
    for ctrl in ("memory", "cpu"):
        fs.makedirs(mgr.paths()[ctrl], str(Path(mgr.paths()[ctrl]).parents[1]))
    rebuilt = v1.manager()  # a later "delete" rebuilds the manager from the same arguments
    assert rebuilt.exists()
    rebuilt.destroy()
    rebuilt.destroy()
    assert v1.leftovers() == [] and not rebuilt.exists()


def test_v1_destroy_keeps_a_parent_that_holds_another_container(v1: FakeTree) -> None:
    a, b = v1.manager("/isoproof-tfake/a", "a"), v1.manager("/isoproof-tfake/b", "b")
    a.create()
    b.create()
    a.destroy()
    assert not a.exists() and b.exists()
    b.destroy()
    assert v1.leftovers() == []


def test_v1_destroy_removes_nested_children(v1: FakeTree, v1mgr: Manager) -> None:
    child = Path(v1mgr.paths()["pids"], "sub")
    fs._mkdir(str(child), 0o755)
    v1mgr.destroy()
    assert not child.exists()


def test_cleanup_stale_removes_only_empty_unkept(v1: FakeTree) -> None:
    mgrs = {cid: v1.manager(f"/isoproof-tfake/{cid}", cid) for cid in ("keep", "gone", "busy")}
    for m in mgrs.values():
        m.create()
    Path(mgrs["busy"].paths()["pids"], "cgroup.procs").write_text("777\n")
    removed = cleanup_stale(
        "isoproof-tfake", keep={"keep"}, root=str(v1.root), mountinfo=str(v1.mountinfo)
    )
    assert removed and all(p.endswith("/gone") for p in removed)
    assert mgrs["keep"].exists() and mgrs["busy"].exists() and not mgrs["gone"].exists()
    Path(mgrs["busy"].paths()["pids"], "cgroup.procs").write_text("")
    cleanup_stale("isoproof-tfake", root=str(v1.root), mountinfo=str(v1.mountinfo))
    assert v1.leftovers() == []


def test_cleanup_stale_refuses_foreign_parents(v1: FakeTree) -> None:
    with pytest.raises(CgroupError):
        cleanup_stale("process_api", root=str(v1.root), mountinfo=str(v1.mountinfo))


# --------------------------------------------------------------------------------------- v2
def test_v2_create_enables_controllers_in_ancestors_only(v2: FakeTree, v2mgr: Manager) -> None:
    leaf = v2mgr.paths()[""]
    enabled_dirs = {d for d, n, _v in v2.writes if n == "cgroup.subtree_control"}
    assert enabled_dirs == {str(v2.root), str(v2.root / "isoproof-tfake")}
    assert leaf not in enabled_dirs
    assert set(Path(leaf, "cgroup.controllers").read_text().split()) == set(
        V2_ROOT_CONTROLLERS.split()
    )


def test_v2_cpu(v2mgr: Manager) -> None:
    v2mgr.set(
        {
            "cpu": {
                "shares": 1024,
                "quota": 50000,
                "period": 100000,
                "burst": 1000,
                "idle": 1,
                "cpus": "0",
                "mems": "0",
            }
        }
    )
    assert read(v2mgr, "", "cpu.weight") == "100"
    assert read(v2mgr, "", "cpu.max") == "50000 100000"
    assert read(v2mgr, "", "cpu.max.burst") == "1000"
    assert read(v2mgr, "", "cpu.idle") == "1"
    assert read(v2mgr, "", "cpuset.cpus") == "0"


def test_v2_cpu_period_only_keeps_quota(v2mgr: Manager) -> None:
    v2mgr.set({"cpu": {"quota": 30000, "period": 100000}})
    v2mgr.set({"cpu": {"period": 200000}})
    assert read(v2mgr, "", "cpu.max") == "30000 200000"
    v2mgr.set({"cpu": {"quota": -1}})
    assert read(v2mgr, "", "cpu.max") == "max"


def test_v2_realtime_is_an_error(v2mgr: Manager) -> None:
    with pytest.raises(CgroupError, match="real-time"):
        v2mgr.set({"cpu": {"realtimeRuntime": 1000}})


def test_v2_memory(v2mgr: Manager) -> None:
    v2mgr.set(
        {"memory": {"limit": 64 << 20, "reservation": 16 << 20, "swap": 96 << 20, "swappiness": 5}}
    )
    assert read(v2mgr, "", "memory.max") == str(64 << 20)
    assert read(v2mgr, "", "memory.low") == str(16 << 20)
    assert read(v2mgr, "", "memory.swap.max") == str(32 << 20)
    assert any("swappiness" in w for w in v2mgr.warnings)
    v2mgr.set({"memory": {"limit": -1, "swap": -1}})
    assert read(v2mgr, "", "memory.max") == "max"
    assert read(v2mgr, "", "memory.swap.max") == "max"


def test_v2_swap_only_update_uses_current_limit(v2mgr: Manager) -> None:
    v2mgr.set({"memory": {"limit": 64 << 20}})
    v2mgr.set({"memory": {"swap": 64 << 20}})
    assert read(v2mgr, "", "memory.swap.max") == "0"


def test_v2_pids(v2mgr: Manager) -> None:
    v2mgr.set({"pids": {"limit": 0}})
    assert read(v2mgr, "", "pids.max") == "0"
    v2mgr.set({"pids": {"limit": -1}})
    assert read(v2mgr, "", "pids.max") == "max"


def test_v2_io_weight_converted_and_throttles(v2: FakeTree, v2mgr: Manager) -> None:
    v2mgr.set(
        {
            "blockIO": {
                "weight": 500,
                "weightDevice": [{"major": 8, "minor": 16, "weight": 1000}],
                "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}],
                "throttleWriteBpsDevice": [{"major": 254, "minor": 0, "rate": 2097152}],
                "throttleReadIOPSDevice": [{"major": 254, "minor": 0, "rate": 10}],
                "throttleWriteIOPSDevice": [{"major": 254, "minor": 0, "rate": 0}],
            }
        }
    )
    assert v2.written("io.weight") == [str(convert.blkio_weight_to_io_weight(500)), "8:16 10000"]
    assert v2.written("io.max") == [
        "254:0 rbps=1048576",
        "254:0 wbps=2097152",
        "254:0 riops=10",
        "254:0 wiops=max",
    ]


def test_v2_io_weight_bfq_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = make_v2(tmp_path, monkeypatch, bfq=True)
    mgr = tree.manager()
    mgr.create()
    mgr.set({"blockIO": {"weight": 500}})
    assert tree.written("io.bfq.weight") == ["500"]
    mgr.destroy()


def test_v2_devices_without_a_filter_are_reported_unenforced(v2mgr: Manager) -> None:
    assert v2mgr.stats()["unenforced"] == ["devices"]


def test_v2_devices_attach_a_filter_and_are_enforced(v2: FakeTree, v2mgr: Manager) -> None:
    v2mgr.set({"devices": [{"allow": False, "access": "rwm"}]})
    assert v2.sys.names() == ["bpf_prog_query", "bpf_prog_load", "bpf_prog_attach"]
    assert v2mgr.warnings == []
    assert v2mgr.stats()["unenforced"] == []
    # A manager rebuilt from the state file reads the same answer from the "kernel".
    assert v2.manager().stats()["unenforced"] == []


def test_v2_unified_written_last_and_overrides(v2: FakeTree, v2mgr: Manager) -> None:
    v2mgr.set({"pids": {"limit": 10}, "unified": {"pids.max": "20"}})
    assert v2.written("pids.max") == ["10", "20"]
    assert read(v2mgr, "", "pids.max") == "20"


@pytest.mark.parametrize("key", ["../x", "memory.nonexistent", ".hidden"])
def test_v2_unified_bad_keys(v2mgr: Manager, key: str) -> None:
    with pytest.raises(CgroupError, match="unified"):
        v2mgr.set({"unified": {key: "1"}})


def test_v2_missing_controller_names_parent_controllers_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = make_v2(tmp_path, monkeypatch, controllers="cpu memory pids")
    mgr = tree.manager()
    mgr.create()
    with pytest.raises(
        CgroupError, match=rf"'io' controller, which is missing from {tree.root}/cgroup.controllers"
    ):
        mgr.set({"blockIO": {"weight": 100}})
    mgr.destroy()
    assert tree.leftovers() == []


def test_v2_freeze_thaw(v2mgr: Manager) -> None:
    v2mgr.freeze()
    assert v2mgr.is_frozen() and read(v2mgr, "", "cgroup.freeze") == "1"
    v2mgr.thaw()
    assert not v2mgr.is_frozen()


def test_v2_stats(v2mgr: Manager) -> None:
    st = v2mgr.stats()
    assert st["version"] == 2
    assert st["cpu"]["usage_ns"] == 42000 and st["cpu"]["throttled_ns"] == 7000
    assert (st["cpu"]["user_ns"], st["cpu"]["kernel_ns"]) == (30000, 12000)
    assert st["memory"] == {
        "usage": 4096,
        "max_usage": 8192,
        "limit": None,
        "failcnt": 5,
        "oom": 2,
        "oom_kill": 1,
        "stat": {"anon": 2048, "file": 1024, "inactive_file": 512},
    }
    assert st["blkio"]["devices"]["254:0"] == {
        "read_bytes": 10,
        "write_bytes": 20,
        "read_ios": 1,
        "write_ios": 2,
    }
    assert v2mgr.oom_kill_count() == 1
    assert v2mgr.cpu_usage_ns() == 42000


def test_v2_bad_input_then_destroy_leaves_nothing(v2: FakeTree) -> None:
    mgr = v2.manager()
    mgr.create()
    with pytest.raises(CgroupError, match="no block device"):
        mgr.set({"blockIO": {"throttleReadBpsDevice": [{"major": 9, "minor": 9, "rate": 1}]}})
    mgr.destroy()
    assert v2.leftovers() == []


@pytest.mark.parametrize(
    "resources",
    [
        [],
        {"cpu": 5},
        {"devices": {"allow": True}},
        {"hugepageLimits": ["2MB"]},
        {"blockIO": {"throttleReadBpsDevice": {"major": 1}}},
    ],
)
@pytest.mark.parametrize("version", [1, 2])
def test_malformed_resources_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resources: object, version: int
) -> None:
    tree = make_v1(tmp_path, monkeypatch) if version == 1 else make_v2(tmp_path, monkeypatch)
    mgr = tree.manager()
    mgr.create()
    with pytest.raises(CgroupError, match="must be") as info:
        mgr.set(resources)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    mgr.destroy()
    assert tree.leftovers() == []


def test_v1_raising_limit_above_memsw_in_force_says_why(v1: FakeTree, v1mgr: Manager) -> None:
    v1mgr.set({"memory": {"limit": 64 << 20, "swap": 64 << 20}})
    with pytest.raises(CgroupError, match="above the memory\\+swap limit .*give memory.swap"):
        v1mgr.set({"memory": {"limit": 128 << 20}})
    v1mgr.set({"memory": {"limit": 128 << 20, "swap": 128 << 20}})
    assert read(v1mgr, "memory", "memory.limit_in_bytes") == str(128 << 20)
