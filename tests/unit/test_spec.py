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
        ("process.capabilities.bounding", ["CAP_NOPE"], "process.capabilities.bounding[0]"),
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
        ("linux.namespaces", [{"type": "pid"}], "linux.namespaces"),  # no mount namespace
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
    doc["linux"]["namespaces"] = [{"type": "mount"}, {"type": "uts", "path": "/proc/1/ns/uts"}]
    with pytest.raises(SpecError, match="hostname"):
        spec_.parse(doc, BUNDLE)


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
