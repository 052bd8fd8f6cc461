"""Unit tests (no root) for the engine's pure parts: flag conversions, OCI config, layers, parsing."""

from __future__ import annotations

import argparse
import calendar
import datetime
import io
import json
import math
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.engine import cli, flags, ocispec, output, units
from runtime.engine.home import format_ns, parse_time
from runtime.engine.images import ImageError, apply_layer, normalize_tag
from runtime.engine.monitor import clean_runtime_message, exit_code, frame
from runtime.engine.store import Store


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("32m", 32 << 20),
        ("32M", 32 << 20),
        ("1g", 1 << 30),
        ("512k", 512 << 10),
        ("100", 100),
        ("1.5g", int(1.5 * (1 << 30))),
        ("64mb", 64 << 20),
        ("2GiB", 2 << 30),
        ("10b", 10),
    ],
)
def test_parse_size_is_binary_like_docker(text: str, value: int) -> None:
    assert units.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "lots", "-1m", "1x", "m", "1.2.3m"])
def test_parse_size_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        units.parse_size(text)


@given(st.integers(min_value=0, max_value=1 << 40), st.sampled_from(["", "k", "m", "g"]))
def test_parse_size_roundtrip(n: int, unit: str) -> None:
    mult = {"": 1, "k": 1024, "m": 1 << 20, "g": 1 << 30}[unit]
    assert units.parse_size(f"{n}{unit}") == n * mult


def test_memory_flag_errors_exit_125() -> None:
    with pytest.raises(units.FlagError) as e:
        units.parse_memory("lots")
    assert e.value.exit_code == 125
    assert str(e.value) == 'invalid argument "lots" for "-m, --memory" flag: invalid size: \'lots\''
    with pytest.raises(units.FlagError, match="Minimum memory limit"):
        units.check_memory(1024, None)
    with pytest.raises(units.FlagError, match="larger than memory"):
        units.check_memory(64 << 20, 32 << 20)
    with pytest.raises(units.FlagError, match="always set the Memory limit"):
        units.check_memory(None, 64 << 20)
    units.check_memory(64 << 20, -1)


@given(st.floats(min_value=0.01, max_value=256, allow_nan=False))
def test_cpus_become_quota_over_a_100ms_period(cpus: float) -> None:
    quota, period = units.parse_cpus(repr(cpus))
    assert period == 100_000
    assert abs(quota - cpus * 100_000) <= 0.5


@pytest.mark.parametrize("text", ["abc", "-1"])
def test_cpus_refuse_garbage(text: str) -> None:
    with pytest.raises(units.FlagError):
        units.parse_cpus(text)


@given(st.integers(min_value=2, max_value=262144))
def test_cpu_shares_in_range(n: int) -> None:
    assert units.parse_cpu_shares(str(n)) == n


@pytest.mark.parametrize("text", ["1", "-5", "262145", "x", "1.5"])
def test_cpu_shares_out_of_range(text: str) -> None:
    with pytest.raises(units.FlagError):
        units.parse_cpu_shares(text)


def test_restart_policies() -> None:
    assert units.parse_restart("no") == ("no", 0)
    assert units.parse_restart("always") == ("always", 0)
    assert units.parse_restart("on-failure") == ("on-failure", 0)
    assert units.parse_restart("on-failure:3") == ("on-failure", 3)
    for bad in ("sometimes", "always:3", "on-failure:x", ""):
        with pytest.raises(units.FlagError):
            units.parse_restart(bad)


def test_device_rates_and_volumes_and_userns() -> None:
    assert units.parse_device_bps("/dev/vda:1mb", "--device-write-bps") == ("/dev/vda", 1 << 20)
    assert units.parse_device_iops("/dev/vda:100", "--device-read-iops") == ("/dev/vda", 100)
    for bad in ("vda:1mb", "/dev/vda", "/dev/vda:"):
        with pytest.raises(units.FlagError):
            units.parse_device_bps(bad, "--device-write-bps")
    with pytest.raises(units.FlagError):
        units.parse_device_iops("/dev/vda:1mb", "--device-read-iops")
    assert units.parse_volume("/a:/b:ro") == ("/a", "/b", True)
    assert units.parse_volume("name:/b") == ("name", "/b", False)
    assert units.parse_volume("/anon") == ("", "/anon", False)
    with pytest.raises(units.FlagError):
        units.parse_volume("/a:relative")
    assert units.parse_userns("host") is None
    assert units.parse_userns("100000") == (100000, 65536)
    assert units.parse_userns("100000:1000") == (100000, 1000)
    with pytest.raises(units.FlagError):
        units.parse_userns("root")


def test_env_merge_and_lookup() -> None:
    assert units.parse_env(["A=1", "B", "C"], {"B": "2"}) == ["A=1", "B=2"]
    assert units.merge_env(["PATH=/bin", "A=1"], ["A=2", "B=3"]) == ["PATH=/bin", "A=2", "B=3"]


def test_human_formats() -> None:
    assert units.human_duration(0.2) == "Less than a second"
    assert units.human_duration(5) == "5 seconds"
    assert units.human_duration(70) == "About a minute"
    assert units.human_size(4_500_000) == "4.5MB"
    assert units.bytes_size(32 << 20) == "32MiB"
    assert units.parse_duration("1h30m") == 5400
    assert units.parse_duration("250ms") == 0.25


def test_times_roundtrip_with_nanoseconds() -> None:
    ns = 1_700_000_000_123_456_789
    text = format_ns(ns)
    assert text == "2023-11-14T22:13:20.123456789Z"
    assert abs(parse_time(text) - ns / 1e9) < 1e-6


@given(
    st.datetimes(min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
    st.sampled_from(["T", " "]),
)
def test_parse_time_agrees_with_datetime(when: datetime.datetime, minutes: int, sep: str) -> None:
    """home.parse_time reads times without datetime; datetime.fromisoformat is the reference,
    for every zone offset, UTC as Z, and a fraction of up to nanoseconds."""
    zone = datetime.timezone(datetime.timedelta(minutes=minutes))
    aware = when.replace(tzinfo=zone)
    text = aware.isoformat(sep=sep)
    # Both sides round to a double: far from 1970 one ulp is larger than a microsecond (year
    # 4148: 7.6e-6 s), so the tolerance is a few ulps of the value, never below 10 us.
    want = aware.timestamp()
    assert parse_time(text) == pytest.approx(want, abs=max(1e-5, 4 * math.ulp(want)))
    utc = when.replace(tzinfo=datetime.UTC)
    z = when.isoformat(timespec="microseconds") + "123Z"  # nanoseconds, as docker writes them
    want = utc.timestamp() + 123e-9
    assert parse_time(z) == pytest.approx(want, abs=max(1e-5, 4 * math.ulp(want)))
    if when.year >= 1970:
        whole = calendar.timegm(when.timetuple())  # exact; int(timestamp()) can round up a second
        epoch_ns = whole * 1_000_000_000 + when.microsecond * 1000
        assert format_ns(epoch_ns) == when.isoformat(timespec="microseconds") + "000Z"


@pytest.mark.parametrize(
    "text", ["2023-02-29T00:00:00Z", "2023-13-01", "2023-11-14T24:00:00Z", "nope", "1h", "2023-11"]
)
def test_parse_time_refuses_what_is_no_time(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def _hc(**kw: object) -> dict[str, object]:
    return {"NetworkMode": "bridge", **kw}


def test_resources_follow_docker_conversions() -> None:
    res = ocispec.resources(
        _hc(
            Memory=32 << 20,
            CpuShares=512,
            CpuQuota=150000,
            CpuPeriod=100000,
            CpusetCpus="0-1",
            PidsLimit=50,
            BlkioDeviceWriteBps=[{"Major": 254, "Minor": 0, "Rate": 1 << 20}],
        )
    )
    assert res["memory"] == {"limit": 32 << 20, "swap": 64 << 20}  # docker: swap defaults to 2x
    assert res["cpu"] == {"shares": 512, "quota": 150000, "period": 100000, "cpus": "0-1"}
    assert res["pids"] == {"limit": 50}
    assert res["blockIO"] == {
        "throttleWriteBpsDevice": [{"major": 254, "minor": 0, "rate": 1 << 20}]
    }
    assert ocispec.resources(_hc(Memory=32 << 20, MemorySwap=-1))["memory"]["swap"] == -1
    assert "memory" not in ocispec.resources(_hc())


def test_namespaces_from_modes() -> None:
    ns = ocispec.namespaces(
        _hc(PidMode="host", IpcMode="container:x", UTSMode=""), "/ns/isoproof-1", {"ipc": 42}
    )
    kinds = {n["type"]: n.get("path") for n in ns}
    assert "pid" not in kinds
    assert kinds["ipc"] == "/proc/42/ns/ipc"
    assert kinds["network"] == "/ns/isoproof-1"
    assert kinds["uts"] is None and kinds["mount"] is None
    host = ocispec.namespaces(_hc(NetworkMode="host"), None, {})
    assert "network" not in {n["type"] for n in host}
    user = ocispec.namespaces(_hc(UsernsRemap=[1000, 10]), None, {})
    assert "user" in {n["type"] for n in user}


def test_build_whole_spec() -> None:
    cfg = {
        "Id": "ab" * 32,
        "Name": "/web",
        "Path": "sh",
        "Args": ["-c", "true"],
        "Config": {
            "Tty": True,
            "Env": ["A=1"],
            "WorkingDir": "/srv",
            "Hostname": "h",
            "ConsoleSize": [24, 80],
        },
        "HostConfig": _hc(
            UsernsRemap=[100000, 65536],
            Mounts=[{"Source": "/s", "Destination": "/d", "ReadOnly": True}],
        ),
    }
    spec = ocispec.build(
        cfg, "/r", {"/etc/hosts": "/x/hosts"}, "/ns", {}, "/isoproof/x", (1, 2, [])
    )
    assert spec["process"]["args"] == ["sh", "-c", "true"]
    assert spec["process"]["user"] == {"uid": 1, "gid": 2}
    assert spec["process"]["consoleSize"] == {"height": 24, "width": 80}
    assert spec["hostname"] == "h"
    assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 100000, "size": 65536}]
    binds = {m["destination"]: m for m in spec["mounts"] if m["type"] in ("bind", "none")}
    assert "ro" in binds["/d"]["options"] and binds["/etc/hosts"]["source"] == "/x/hosts"
    json.dumps(spec)


def _tar(members: dict[str, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_layers_apply_in_order_with_whiteouts(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    root.mkdir()
    l1 = tmp_path / "l1.tar"
    l1.write_bytes(
        _tar(
            {
                "etc": None,
                "etc/a": b"1",
                "etc/b": b"2",
                "opq": None,
                "opq/x": b"x",
                "opq/sub": None,
                "opq/sub/y": b"y",
            }
        )
    )
    l2 = tmp_path / "l2.tar"
    l2.write_bytes(
        _tar({"etc/.wh.b": b"", "etc/a": b"new", "opq/.wh..wh..opq": b"", "opq/z": b"z"})
    )
    apply_layer(l1, root)
    apply_layer(l2, root)
    assert (root / "etc/a").read_bytes() == b"new"
    assert not (root / "etc/b").exists()
    assert sorted(p.name for p in (root / "opq").iterdir()) == ["z"]
    assert not list(root.rglob(".wh.*"))


def test_layer_cannot_escape_the_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    root.mkdir()
    evil = tmp_path / "evil.tar"
    evil.write_bytes(_tar({"../outside": b"x"}))
    with pytest.raises(ImageError):
        apply_layer(evil, root)
    assert not (tmp_path / "outside").exists()
    gone = tmp_path / "gone.tar"
    gone.write_bytes(_tar({"x/../../.wh.rootfs": b""}))
    with pytest.raises(ImageError):
        apply_layer(gone, root)
    assert root.exists()


def test_tags() -> None:
    assert normalize_tag("busybox") == "busybox:latest"
    assert normalize_tag("a:1") == "a:1"
    assert normalize_tag("reg:5000/a") == "reg:5000/a:latest"


def test_options_end_at_the_image() -> None:
    p = flags.Parser(prog="isoproof run", add_help=False)
    flags.add_container_flags(p)
    a = flags.parse_container_args(
        p, ["-dit", "--name", "x", "-m32m", "-e", "A=1", "busybox", "sh", "-c", "echo -n hi"]
    )
    assert a.detach and a.interactive and a.tty
    assert (a.name, a.memory, a.env, a.image) == ("x", "32m", ["A=1"], "busybox")
    assert a.command == ["sh", "-c", "echo -n hi"]
    a = flags.parse_container_args(p, ["--network=none", "busybox"])
    assert a.network == "none" and a.command == []


def test_flag_errors_become_exit_125_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISOPROOF_HOME", str(tmp_path))
    assert cli.main(["run", "--frobnicate", "busybox"]) == 125
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized arguments: --frobnicate" in err
    assert cli.main(["ps", "--bogus"]) == 125


def test_no_such_container_is_docker_style(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISOPROOF_HOME", str(tmp_path))
    assert cli.main(["inspect", "--type", "container", "nope"]) == 1
    assert capsys.readouterr().err == "Error: No such object: nope\n"
    assert cli.main(["logs", "nope"]) == 1
    assert capsys.readouterr().err == "Error response from daemon: No such container: nope\n"


def _cfg(cid: str, name: str) -> dict[str, object]:
    """A config.json with every key the verbs read (one without is damaged)."""
    return {"Id": cid, "Name": name, "Created": "2026-01-01T00:00:00.000000000Z", "Path": "sh",
            "Args": [], "Config": {"Image": "busybox"}, "HostConfig": {}, "Runtime": "/bin/false",
            "OciRoot": "/nonexistent", "CgroupsPath": f"/isoproof-unit/{cid}"}  # fmt: skip


def test_resolve_names_and_prefixes(tmp_path: Path) -> None:
    from runtime import statefile
    from runtime.engine.home import Home

    home = Home(tmp_path).ensure()
    store = Store(home)
    for cid, name in (("abc1" + "0" * 60, "/one"), ("abc2" + "0" * 60, "/two")):
        (home.containers / cid).mkdir()
        statefile.write(home.containers / cid / "config.json", _cfg(cid, name))
    (home.containers / ("abc3" + "0" * 60)).mkdir()  # damaged (no config.json): no name
    assert store.resolve("one") == "abc1" + "0" * 60
    assert store.resolve("/two") == "abc2" + "0" * 60
    assert store.resolve("abc1") == "abc1" + "0" * 60
    with pytest.raises(Exception, match="multiple IDs"):
        store.resolve("abc")
    with pytest.raises(Exception, match="No such container: zzz"):
        store.resolve("zzz")
    assert store.resolve("abc3") == "abc3" + "0" * 60  # found by ID: rm -f can remove it


def test_render_templates() -> None:
    obj = {"State": {"Pid": 7, "OOMKilled": True}, "Name": "/x"}
    assert output.render("{{.State.Pid}} {{.State.OOMKilled}} {{.Name}}", obj) == "7 true /x"
    assert output.render("{{json .State}}", obj) == '{"Pid": 7, "OOMKilled": true}'
    with pytest.raises(output.Fail):
        output.render("{{.Nope}}", obj)


def test_monitor_helpers() -> None:
    assert exit_code(9) == 137  # killed by SIGKILL
    assert exit_code(3 << 8) == 3
    assert frame(1, b"hi") == b"\x01\x00\x00\x00\x02hi"
    line = 'time="2026" level=error msg="runc create failed: \\"x\\" not found"'
    assert clean_runtime_message(line) == 'runc create failed: "x" not found'
    assert clean_runtime_message("plain") == "plain"


def test_exec_codes() -> None:
    assert output.exec_code('exec: "nope": executable file not found in $PATH') == 127
    assert output.exec_code("permission denied") == 126
    assert output.exec_code("something else") == 125


def test_namespace_flags_validated() -> None:
    p = flags.Parser(prog="isoproof run", add_help=False)
    flags.add_container_flags(p)
    a: argparse.Namespace = flags.parse_container_args(p, ["--pid", "sideways", "busybox"])
    with pytest.raises(units.FlagError):
        flags.host_config(a)


def test_cgroupns_private_by_default_host_on_request() -> None:
    kinds = {n["type"] for n in ocispec.namespaces(_hc(), None, {})}
    assert "cgroup" in kinds
    host = ocispec.namespaces(_hc(CgroupnsMode="host"), None, {})
    assert "cgroup" not in {n["type"] for n in host}
    assert units.parse_cgroupns("host") == "host"
    with pytest.raises(units.FlagError):
        units.parse_cgroupns("shared")


def test_cpu_quota_and_period_flags() -> None:
    assert units.parse_cpu_quota("50000") == 50000
    assert units.parse_cpu_quota("-1") == -1
    assert units.parse_cpu_period("200000") == 200000
    for bad_quota in ("999", "x"):
        with pytest.raises(units.FlagError):
            units.parse_cpu_quota(bad_quota)
    for bad_period in ("999", "1000001", "1.5"):
        with pytest.raises(units.FlagError):
            units.parse_cpu_period(bad_period)
    p = flags.Parser(prog="isoproof run", add_help=False)
    flags.add_container_flags(p)
    a = flags.parse_container_args(p, ["--cpu-quota", "50000", "--cpu-period", "200000", "busybox"])
    hc = flags.host_config(a)
    assert ocispec.resources(hc)["cpu"] == {"quota": 50000, "period": 200000}
    lone = flags.host_config(flags.parse_container_args(p, ["--cpu-period", "50000", "busybox"]))
    assert ocispec.resources(lone)["cpu"] == {"period": 50000}
    both = flags.parse_container_args(p, ["--cpus", "1", "--cpu-quota", "50000", "busybox"])
    with pytest.raises(output.Fail):
        flags.host_config(both)


def test_no_new_privileges_default_and_opt_out() -> None:
    assert units.parse_no_new_privileges([]) is True
    assert units.parse_no_new_privileges(["no-new-privileges=false"]) is False
    assert units.parse_no_new_privileges(["no-new-privileges"]) is True
    for bad in (["seccomp=unconfined"], ["no-new-privileges=maybe"]):
        with pytest.raises(units.FlagError):
            units.parse_no_new_privileges(bad)
    cfg = {"Id": "cd" * 32, "Config": {}, "HostConfig": _hc()}
    spec = ocispec.build(cfg, "/r", {}, None, {}, "/isoproof/x", (0, 0, []))
    assert spec["process"]["noNewPrivileges"] is True
    cfg["HostConfig"] = _hc(NoNewPrivileges=False)
    spec = ocispec.build(cfg, "/r", {}, None, {}, "/isoproof/x", (0, 0, []))
    assert spec["process"]["noNewPrivileges"] is False


def test_userns_image_copy_shifts_owners_into_the_range(tmp_path: Path) -> None:
    from runtime.engine import lifecycle

    assert lifecycle.shift_id(0, 100000, 65536) == 100000
    assert lifecycle.shift_id(65535, 100000, 65536) == 165535
    assert lifecycle.shift_id(65536, 100000, 65536) == 65536  # outside the range: left alone


def test_create_gives_the_runtime_a_log_file_as_a_global_option():
    """The runtime's warnings must not reach the stderr it shares with the container (its log):
    ``--log`` goes before the verb, where runc's global options go."""
    import subprocess

    from runtime.engine.oci import OciRuntime

    rt = OciRuntime("/bin/echo", "/run/r")
    p = rt.create("c1", "/b", "/p", None, subprocess.DEVNULL, subprocess.PIPE, None, "/l/rt.log")
    out, _ = p.communicate()
    assert out.decode().split() == ["--root", "/run/r", "--log", "/l/rt.log", "create",
                                    "--bundle", "/b", "--pid-file", "/p", "c1"]  # fmt: skip
    p = rt.create("c1", "/b", "/p", None, subprocess.DEVNULL, subprocess.PIPE, None)
    assert "--log" not in p.communicate()[0].decode()


# -- network ls / prune (no root: a bridge name that no host has, the allocator file only) -------


@pytest.fixture
def net_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from runtime.engine import network

    monkeypatch.setenv("ISOPROOF_HOME", str(tmp_path))
    monkeypatch.setenv("ISOPROOF_BRIDGE", "isoproofTnone0")  # no such interface on any host
    monkeypatch.setenv("ISOPROOF_SUBNET", "172.31.250.0/24")
    monkeypatch.setattr(network, "LEASE_DIR", str(tmp_path / "run"))
    assert not Path("/sys/class/net/isoproofTnone0").exists()
    return tmp_path


def test_network_ls_is_docker_shaped(net_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["network", "ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    rows = [ln.split() for ln in lines[1:]]
    assert [r[1:] for r in rows] == [["bridge", "bridge", "local"], ["host", "host", "local"],
                                     ["none", "null", "local"]]  # fmt: skip
    assert all(len(r[0]) == 12 for r in rows)
    assert cli.main(["network", "ls", "-q", "--no-trunc"]) == 0
    ids = capsys.readouterr().out.split()
    assert [i[:12] for i in ids] == [r[0] for r in rows] and all(len(i) == 64 for i in ids)


@pytest.mark.parametrize("argv", [["network"], ["network", "rm", "x"], ["network", "prune", "-x"]])
def test_network_bad_argv_is_one_line_125(
    net_home: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert cli.main(argv) == 125
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "isoproof network" in err


def _leases() -> Path:
    from runtime.engine import network

    return network.lease_paths()[0]


def _ipam(table: dict[str, dict[str, dict[str, str]]]) -> None:
    _leases().parent.mkdir(parents=True, exist_ok=True)
    _leases().write_text(json.dumps(table))


def _container(home: Path, cid: str, cfg: dict[str, object], st: dict[str, object]) -> None:
    from runtime import statefile

    (home / "containers" / cid).mkdir(parents=True)
    statefile.write(home / "containers" / cid / "config.json", cfg)
    statefile.write(home / "containers" / cid / "state.json", st)


def test_network_prune_refuses_while_a_container_holds_an_address(
    net_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cid = "d" * 64
    _container(net_home, cid, _cfg(cid, "/web"), {"Status": "exited"})
    table = {"172.31.250.0/24": {"172.31.250.2": {"id": cid, "home": str(net_home)}}}
    _ipam(table)
    assert cli.main(["network", "prune", "-f"]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", "Error response from daemon: network isoproofTnone0 has active "
                              "endpoints: web\n")  # fmt: skip
    assert json.loads(_leases().read_text()) == table  # untouched


def test_network_prune_sees_another_homes_container(
    net_home: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bridge is the host's: a container of another home holding an address keeps it."""
    other = tmp_path_factory.mktemp("other-home")
    (other / "containers" / ("e" * 64)).mkdir(parents=True)
    _ipam({"172.31.250.0/24": {"172.31.250.2": {"id": "e" * 64, "home": str(other)}}})
    assert cli.main(["network", "prune", "-f"]) == 1
    assert f"endpoints: eeeeeeeeeeee (in {other})" in capsys.readouterr().err


def test_network_prune_drops_stale_addresses_and_keeps_other_subnets(
    net_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = {"10.99.0.0/24": {"10.99.0.2": {"id": "e" * 64, "home": str(net_home)}}}
    gone = {"id": "0" * 64, "home": str(net_home)}
    _ipam({"172.31.250.0/24": {"172.31.250.2": gone}, **other})
    assert cli.main(["network", "prune", "-f"]) == 0
    assert capsys.readouterr().out == ""  # no bridge existed: nothing to report
    assert json.loads(_leases().read_text()) == other
    _ipam({"172.31.250.0/24": {}})
    assert cli.main(["network", "prune", "-f"]) == 0
    assert not _leases().exists()


def test_network_prune_asks_first(
    net_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _ipam({"172.31.250.0/24": {"172.31.250.2": {"id": "0" * 64, "home": str(net_home)}}})
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert cli.main(["network", "prune"]) == 0
    assert "[y/N]" in capsys.readouterr().out
    assert _leases().exists()  # declined: nothing done
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert cli.main(["network", "prune"]) == 0
    assert not _leases().exists()


def test_allocator_is_one_table_per_bridge_for_every_home(
    net_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two homes on one bridge never get the same address; a stale lease is reclaimed."""
    import ipaddress

    from runtime.engine import network
    from runtime.engine.home import Home

    net = ipaddress.IPv4Network("172.31.250.0/29")  # 5 addresses after the gateway
    homes = [Home(net_home), Home(tmp_path_factory.mktemp("second-home"))]
    got = []
    for i in range(4):
        h = homes[i % 2]
        cid = f"{i:x}" * 64
        (h.containers / cid).mkdir(parents=True)
        got.append(network.allocate(h, cid, net))
    assert len(set(got)) == 4
    assert network.allocate(homes[0], "0" * 64, net) == got[0]  # asked again: the same lease
    assert network.lease_ids(homes[1]) == {"1" * 64, "3" * 64}
    (homes[1].containers / ("1" * 64)).rmdir()  # its directory gone, no veth: stale
    (homes[0].containers / ("9" * 64)).mkdir()
    assert network.allocate(homes[0], "9" * 64, net) == got[1]
    network.release(homes[0], "0" * 64)
    assert network.lease_ids(homes[0]) == {"2" * 64, "9" * 64}


def test_fs_type_is_the_deepest_mount_above_the_path() -> None:
    from runtime.engine.lifecycle import fs_type

    mountinfo = (
        "22 1 0:21 / / rw - 9p /dev/root rw\n"
        "30 22 0:40 / /tmp rw - overlay overlay rw,lowerdir=/tmp,upperdir=/run/u\n"
        "31 22 0:41 / /tmp/my\\040disk rw - ext4 /dev/vda rw\n"
        "32 30 0:42 / /tmp rw - tmpfs tmpfs rw\n"
        "33 22 0:43 / /tmpx rw - xfs /dev/vdb rw\n"
    )
    assert fs_type("/tmp/ipb/containers/x/upper", mountinfo) == "tmpfs"  # the later /tmp hides
    assert fs_type("/tmp/my disk/home", mountinfo) == "ext4"  # mountinfo escapes the space
    assert fs_type("/tmpx/home", mountinfo) == "xfs"
    assert fs_type("/tmpxy", mountinfo) == "9p"  # a prefix of the name is not a parent
    assert fs_type("/tmp", mountinfo) == "tmpfs"
    assert fs_type("/", "") == "an unknown filesystem"


def test_help_has_a_line_per_verb_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for verb in [*cli.COMMANDS, "verify", "matrix"]:
        row = next((ln for ln in lines if ln.split()[:1] == [verb]), None)
        assert row is not None and len(row.split()) > 2, f"no description for {verb}"
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("isoproof version ")
