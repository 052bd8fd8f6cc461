"""The config.json loader: valid documents load into typed objects; anything else is a SpecError
that names the field, never another exception (hypothesis feeds it arbitrary and mutated JSON)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import spec as spec_
from runtime.errors import SpecError
from runtime.oci.caps import DEFAULT_CAPS

BUNDLE = "/bundles/b1"


def good() -> dict[str, Any]:
    doc = spec_.default_spec()
    doc["process"]["terminal"] = False
    return doc


def test_default_spec_loads_with_relative_root_and_defaults():
    s = spec_.parse(good(), BUNDLE)
    assert s.root_path == "/bundles/b1/rootfs"
    assert s.root_readonly is True
    assert s.process is not None and s.process.args == ["sh"]
    assert s.process.capabilities is not None
    assert s.process.capabilities.bounding == list(DEFAULT_CAPS)
    assert [n.type for n in s.linux.namespaces] == [
        "pid",
        "network",
        "ipc",
        "uts",
        "mount",
        "cgroup",
    ]
    assert all(n.path is None for n in s.linux.namespaces)
    assert "/proc/kcore" in s.linux.masked_paths and "/proc/sys" in s.linux.readonly_paths
    assert s.process.rlimits[0].type == "RLIMIT_NOFILE" and s.process.rlimits[0].resource == 7


def test_dot_root_and_absolute_root():
    doc = good()
    doc["root"]["path"] = "."
    assert spec_.parse(doc, BUNDLE).root_path == BUNDLE
    doc["root"]["path"] = "/srv/rootfs"
    assert spec_.parse(doc, BUNDLE).root_path == "/srv/rootfs"


def test_load_reads_bundle_and_reports_missing_file(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps(good()))
    assert spec_.load(str(tmp_path)).bundle == str(tmp_path)
    with pytest.raises(SpecError, match="config.json: No such file"):
        spec_.load(str(tmp_path / "nope"))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        spec_.load(str(tmp_path))


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    cur: Any = doc
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur[int(k)] if isinstance(cur, list) else cur[k]
    last = keys[-1]
    if isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value
    return doc


@pytest.mark.parametrize(
    "path, value, field",
    [
        ("ociVersion", "2.0", "ociVersion"),
        ("ociVersion", 1, "ociVersion"),
        ("root", None, "root"),
        ("root.path", "", "root.path"),
        ("root.readonly", "yes", "root.readonly"),
        ("process.args", [], "process.args"),
        ("process.args", ["sh", 3], "process.args[1]"),
        ("process.env", ["NOEQUALS"], "process.env[0]"),
        ("process.cwd", "relative", "process.cwd"),
        ("process.user.uid", -1, "process.user.uid"),
        ("process.user.uid", 2**32, "process.user.uid"),
        ("process.user.gid", True, "process.user.gid"),
        ("process.user.additionalGids", [1, "2"], "process.user.additionalGids[1]"),
        ("process.capabilities.bounding", [7], "process.capabilities.bounding[0]"),
        ("process.rlimits.0.type", "RLIMIT_NOPE", "process.rlimits[0].type"),
        ("process.rlimits.0.soft", 2048, "process.rlimits[0]"),
        ("process.oomScoreAdj", 1001, "process.oomScoreAdj"),
        ("hostname", "x" * 65, "hostname"),
        ("hostname", "a\0b", "hostname"),
        ("mounts.0.destination", "proc", "mounts[0].destination"),
        ("mounts.0.options", "ro", "mounts[0].options"),
        ("linux.namespaces.0.type", "pidd", "linux.namespaces[0].type"),
        ("linux.namespaces.1.type", "pid", "linux.namespaces[1].type"),  # duplicate
        ("linux.namespaces.0.path", "relative/ns", "linux.namespaces[0].path"),
        ("linux.maskedPaths.0", "proc/kcore", "linux.maskedPaths[0]"),
        ("linux.rootfsPropagation", "sideways", "linux.rootfsPropagation"),
        ("linux.uidMappings", [{"containerID": 0, "hostID": 0, "size": 1}], "linux.uidMappings"),
        ("linux.sysctl", {"../etc": "1"}, "linux.sysctl"),
        ("linux.seccomp", {}, "linux.seccomp"),
        ("linux.namespaces", [{"type": "pid"}], "mounts"),  # mounts without a mount namespace
    ],
)
def test_each_bad_field_is_named(path: str, value: Any, field: str):
    doc = _set(good(), path, value)
    with pytest.raises(SpecError) as e:
        spec_.parse(doc, BUNDLE)
    assert str(e.value).startswith(field), str(e.value)
    assert "\n" not in str(e.value)


def test_user_namespace_needs_both_maps_and_hostname_needs_uts():
    doc = good()
    doc["linux"]["namespaces"].append({"type": "user"})
    with pytest.raises(SpecError, match="needs uidMappings and gidMappings"):
        spec_.parse(doc, BUNDLE)
    m = [{"containerID": 0, "hostID": 1000, "size": 1}]
    doc["linux"]["uidMappings"] = doc["linux"]["gidMappings"] = m
    s = spec_.parse(doc, BUNDLE)
    assert s.linux.uid_mappings[0].host_id == 1000
    doc = good()
    doc["linux"]["namespaces"] = [{"type": "mount"}]
    with pytest.raises(SpecError, match="hostname"):
        spec_.parse(doc, BUNDLE)
    # a joined uts namespace: accepted, the hostname is left alone (runtime/oci/init.py)
    doc["linux"]["namespaces"] = [{"type": "mount"}, {"type": "uts", "path": "/proc/1/ns/uts"}]
    assert spec_.parse(doc, BUNDLE).hostname == doc["hostname"]


def test_no_mount_namespace_only_without_mounts():
    doc = good()
    doc["linux"]["namespaces"] = [{"type": "pid"}]
    doc["mounts"], doc["linux"]["maskedPaths"], doc["linux"]["readonlyPaths"] = [], [], []
    doc["root"]["readonly"] = False
    doc.pop("hostname", None)  # no uts namespace either
    assert spec_.parse(doc, BUNDLE).linux.ns("mount") is None
    for key, val in (("maskedPaths", ["/proc/kcore"]), ("readonlyPaths", ["/proc/sys"])):
        bad = good()
        bad["linux"]["namespaces"] = [{"type": "pid"}]
        bad["mounts"], bad["linux"]["maskedPaths"], bad["linux"]["readonlyPaths"] = [], [], []
        bad["linux"][key] = val
        with pytest.raises(SpecError, match=f"linux.{key}: needs a mount namespace"):
            spec_.parse(bad, BUNDLE)


def test_check_host_compares_namespace_types(tmp_path: Path):
    doc = good()
    doc["root"]["path"] = str(tmp_path)
    doc["linux"]["namespaces"][2] = {"type": "ipc", "path": "/proc/self/ns/net"}
    s = spec_.parse(doc, BUNDLE)
    with pytest.raises(
        SpecError, match=r"linux.namespaces\[2\].path: /proc/self/ns/net is not a ipc"
    ):
        spec_.check_host(s)  # the real NS_GET_NSTYPE ioctl: needs no privilege
    s.linux.namespaces[2].path = "/proc/self/ns/ipc"
    spec_.check_host(s)
    s.linux.namespaces[2].path = str(tmp_path)
    with pytest.raises(SpecError, match="not a namespace file"):
        spec_.check_host(s)
    s.linux.namespaces[2].path = "/nonexistent"
    with pytest.raises(SpecError, match="No such file"):
        spec_.check_host(s)
    s.root_path = "/nonexistent-rootfs"
    with pytest.raises(SpecError, match="root.path"):
        spec_.check_host(s)


# --- hostile input ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


GOOD_PATHS = _paths(good())[1:]


def _load(doc: Any) -> None:
    try:
        spec_.parse(doc, BUNDLE)
    except SpecError as e:
        assert "\n" not in str(e)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(json_values)
def test_any_json_is_a_spec_or_a_spec_error(doc: Any):
    _load(doc)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(GOOD_PATHS), json_values, st.booleans())
def test_mutated_config_is_a_spec_or_a_spec_error(path: tuple[Any, ...], value: Any, delete: bool):
    doc = copy.deepcopy(good())
    cur: Any = doc
    for k in path[:-1]:
        cur = cur[k]
    if delete and isinstance(cur, dict):
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    _load(doc)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_spec_error(raw: bytes):
    with contextlib.suppress(SpecError):
        spec_.loads(raw, BUNDLE)


def test_deep_nesting_is_a_spec_error():
    with pytest.raises(SpecError):
        spec_.loads("[" * 100000 + "]" * 100000, BUNDLE)


def test_default_spec_is_json_and_like_runc():
    doc = spec_.default_spec()
    json.dumps(doc)
    dests = [m["destination"] for m in doc["mounts"]]
    assert dests[:4] == ["/proc", "/dev", "/dev/pts", "/dev/shm"]
    assert doc["process"]["noNewPrivileges"] is True
    assert os.path.basename(doc["root"]["path"]) == "rootfs"


# --- issue 12: hooks, runc's strictness (types, bounds, sysctls, labels), a config that is no file


def test_hooks_of_every_kind_load_with_runc_defaults():
    doc = good()
    doc["hooks"] = {kind: [{"path": "/bin/h", "args": ["h", kind], "env": ["A=1"], "timeout": 5}]
                    for kind in spec_.HOOK_KINDS}  # fmt: skip
    doc["hooks"]["poststop"].append({"path": "/bin/p"})
    s = spec_.parse(doc, BUNDLE)
    assert set(s.hooks) == set(spec_.HOOK_KINDS)
    assert s.hooks["prestart"][0] == spec_.Hook("/bin/h", ["h", "prestart"], ["A=1"], 5)
    assert s.hooks["poststop"][1] == spec_.Hook("/bin/p", ["/bin/p"], [], None)  # argv[0] = path


@pytest.mark.parametrize(
    "hooks, field",
    [
        ({"prestart": [{"path": "rel"}]}, "hooks.prestart[0].path"),
        ({"prestart": [{"path": "/x", "timeout": 0}]}, "hooks.prestart[0].timeout"),
        ({"poststop": [{"path": "/x", "timeout": "5"}]}, "hooks.poststop[0].timeout"),
        ({"poststart": [{"path": "/x", "env": ["NOEQ"]}]}, "hooks.poststart[0].env[0]"),
        ({"onStart": [{"path": "/x"}]}, "hooks.onStart"),
        ({"prestart": {"path": "/x"}}, "hooks.prestart"),
    ],
)
def test_bad_hooks_are_named(hooks: dict, field: str):
    doc = good()
    doc["hooks"] = hooks
    with pytest.raises(SpecError) as e:
        spec_.parse(doc, BUNDLE)
    assert str(e.value).startswith(field + ":"), str(e.value)


@pytest.mark.parametrize(
    "resources, field",
    [
        # a string "false" was read as true: "a *:* rwm", every device allowed
        ({"devices": [{"allow": "false", "access": "rwm"}]}, "linux.resources.devices[0].allow"),
        ({"devices": [{"allow": False, "major": "1"}]}, "linux.resources.devices[0].major"),
        ({"memory": {"limit": -2}}, "linux.resources.memory.limit"),
        ({"memory": {"limit": 2**63}}, "linux.resources.memory.limit"),
        ({"memory": {"limit": "100m"}}, "linux.resources.memory.limit"),
        ({"memory": {"swap": -5}}, "linux.resources.memory.swap"),
        ({"memory": {"disableOOMKiller": "yes"}}, "linux.resources.memory.disableOOMKiller"),
        ({"cpu": {"shares": -1}}, "linux.resources.cpu.shares"),
        ({"cpu": {"cpus": 3}}, "linux.resources.cpu.cpus"),
        ({"pids": {"limit": True}}, "linux.resources.pids.limit"),
        ({"blockIO": {"weight": 70000}}, "linux.resources.blockIO.weight"),
        ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": -1}]}},
         "linux.resources.blockIO.throttleReadBpsDevice[0].rate"),
        ({"hugepageLimits": [{"pageSize": "2MB", "limit": "1"}]},
         "linux.resources.hugepageLimits[0].limit"),
    ],
)  # fmt: skip
def test_resources_json_types_are_checked(resources: dict, field: str):
    doc = good()
    doc["linux"]["resources"] = resources
    with pytest.raises(SpecError) as e:
        spec_.parse(doc, BUNDLE)
    assert str(e.value).startswith(field + ":"), str(e.value)


def test_docker_style_resources_load():
    doc = good()
    doc["linux"]["resources"] = {
        "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1,
                                                         "minor": 3, "access": "rwm"}],
        "memory": {"limit": -1, "reservation": 0, "swap": 0, "kernel": 0, "swappiness": -1},
        "cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": ""},
        "blockIO": {"weight": 0}, "pids": {"limit": -1},
    }  # fmt: skip
    assert spec_.parse(doc, BUNDLE).linux.resources["blockIO"] == {"weight": 0}


@pytest.mark.parametrize(
    "sysctl, namespaces, ok",
    [
        ({"kernel.printk_ratelimit_burst": "10"}, None, False),  # global: the host's
        ({"vm.overcommit_memory": "1"}, None, False),
        ({"kernel.shmmax": "1"}, None, True),
        ({"fs.mqueue.queues_max": "1"}, None, True),
        ({"net.ipv4.ip_forward": "1"}, None, True),
        ({"kernel.domainname": "x"}, None, True),
        ({"kernel.msgmax": "1"}, ["pid", "mount", "network"], False),  # no ipc ns of its own
        ({"net.ipv4.ip_forward": "1"}, ["pid", "mount", "ipc"], False),
        ({"kernel.domainname": "x"}, ["pid", "mount"], False),
    ],
)
def test_sysctls_only_namespaced_and_in_the_containers_namespace(sysctl, namespaces, ok):
    doc = good()
    doc["linux"]["sysctl"] = sysctl
    if namespaces is not None:
        doc["linux"]["namespaces"] = [{"type": t} for t in namespaces]
        doc.pop("hostname", None)
    if ok:
        assert spec_.parse(doc, BUNDLE).linux.sysctl == sysctl
    else:
        with pytest.raises(SpecError, match=r"^linux\.sysctl: "):
            spec_.parse(doc, BUNDLE)


def test_sysctl_in_a_joined_host_namespace_is_refused(tmp_path: Path):
    (tmp_path / "rootfs").mkdir()
    doc = good()
    doc["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    doc["linux"]["namespaces"] = [{"type": "mount"}, {"type": "network",
                                                      "path": "/proc/self/ns/net"}]  # fmt: skip
    doc.pop("hostname")
    s = spec_.parse(doc, str(tmp_path))
    with pytest.raises(SpecError, match=r"^linux\.sysctl: net\.ipv4\.ip_forward would be written"):
        spec_.check_host(s, nstype_of=lambda fd: spec_.NAMESPACES["network"])


@pytest.mark.parametrize(
    "where, key, field",
    [("process", "apparmorProfile", "process.apparmorProfile"),
     ("process", "selinuxLabel", "process.selinuxLabel"),
     ("linux", "mountLabel", "linux.mountLabel")],
)  # fmt: skip
def test_security_labels_are_refused_not_dropped(tmp_path: Path, monkeypatch, where, key, field):
    (tmp_path / "rootfs").mkdir()
    monkeypatch.setattr(spec_, "APPARMOR_ENABLED", str(tmp_path / "no-apparmor"))
    monkeypatch.setattr(spec_, "SELINUX_FS", str(tmp_path / "no-selinux"))
    doc = good()
    doc[where][key] = "some_label"
    s = spec_.parse(doc, str(tmp_path))
    with pytest.raises(SpecError, match=rf"^{field}: \w+ is not enabled on this host$"):
        spec_.check_host(s)
    # where the LSM is there, we still cannot apply it: refused, with that reason
    (tmp_path / "no-apparmor").write_text("Y\n")
    (tmp_path / "no-selinux").mkdir()
    with pytest.raises(SpecError, match=rf"^{field}: applying \w+ labels is not supported"):
        spec_.check_host(s)


def test_empty_labels_are_no_labels(tmp_path: Path):
    (tmp_path / "rootfs").mkdir()
    doc = good()
    doc["process"]["apparmorProfile"] = ""
    doc["linux"]["mountLabel"] = ""
    spec_.check_host(spec_.parse(doc, str(tmp_path)))


def test_config_that_is_a_fifo_is_refused_not_read_for_ever(tmp_path: Path):
    os.mkfifo(tmp_path / "config.json")  # no writer: a blocking open would never return
    with pytest.raises(SpecError, match=r"config\.json: not a regular file$"):
        spec_.load(str(tmp_path))


def test_config_that_is_a_device_is_refused(tmp_path: Path):
    (tmp_path / "config.json").symlink_to("/dev/zero")  # read() would never end
    with pytest.raises(SpecError, match=r"config\.json: not a regular file$"):
        spec_.load(str(tmp_path))


def test_fifo_devices_load():
    doc = good()
    doc["linux"]["devices"] = [{"path": "/dev/isoproof-fifo", "type": "p", "fileMode": 0o600}]
    dev = spec_.parse(doc, BUNDLE).linux.devices[0]
    assert (dev.type, dev.major, dev.minor) == ("p", 0, 0)


def test_device_file_mode_with_type_bits_keeps_the_permissions():
    """podman sends S_IFCHR with the mode (0o20666); runc accepts it and keeps 0o666."""
    doc = good()
    doc["linux"]["devices"] = [
        {"path": "/dev/isoproof-null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o20666}
    ]
    assert spec_.parse(doc, BUNDLE).linux.devices[0].file_mode == 0o666
    doc["linux"]["devices"][0]["fileMode"] = 0o200000  # beyond any mode_t: still refused
    with pytest.raises(SpecError, match="fileMode"):
        spec_.parse(doc, BUNDLE)
