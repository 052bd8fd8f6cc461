"""Unit tests for the kernel matrix: no root, no VM, no network (apt output is recorded text)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verify.matrix import cli, guest, kernels, merge, vm
from verify.matrix.legs import (
    DEFAULT_LEGS,
    CgroupMode,
    KernelKind,
    MatrixError,
    parse_leg,
    parse_legs,
    runtimes_for,
)

# --- leg names -------------------------------------------------------------------------------


def test_default_legs_are_the_five() -> None:
    specs = parse_legs(None)
    assert [s.name for s in specs] == list(DEFAULT_LEGS)
    assert [s.mode for s in specs] == [None, "v1", "v2", "v1", "v2"]
    assert specs[1].kernel == "linux-image-amd64" and specs[3].kernel == "linux-image-6.12-amd64"
    assert not specs[0].is_vm and all(s.is_vm for s in specs[1:])


@pytest.mark.parametrize(
    ("name", "kind", "kernel", "mode"),
    [
        ("6.1-v2", KernelKind.PACKAGE, "linux-image-amd64", CgroupMode.V2),
        ("linux-image-6.1.0-50-amd64-v1", KernelKind.PACKAGE, "linux-image-6.1.0-50-amd64", "v1"),
        ("/k/boot/vmlinuz-6.9.0-v2", KernelKind.LOCAL, "/k/boot/vmlinuz-6.9.0", CgroupMode.V2),
        ("./tree-v1", KernelKind.LOCAL, "./tree", CgroupMode.V1),
    ],
)
def test_parse_leg(name: str, kind: KernelKind, kernel: str, mode: CgroupMode) -> None:
    spec = parse_leg(name)
    assert (spec.name, spec.kind, spec.kernel, spec.mode) == (name, kind, kernel, mode)


@pytest.mark.parametrize("bad", ["", "6.1", "6.1-v3", "-v1", "5.10-v1", "vmlinuz-v2", "6.12_v2"])
def test_bad_leg_names_are_one_line_errors(bad: str) -> None:
    with pytest.raises(MatrixError) as e:
        parse_leg(bad)
    assert "\n" not in str(e.value)


def test_duplicate_legs_refused() -> None:
    with pytest.raises(MatrixError, match="twice"):
        parse_legs(["6.1-v1", "6.1-v1"])


def test_runtimes_default_adds_crun_only_on_v2() -> None:
    assert runtimes_for(CgroupMode.V1, None) == ["isoproof", "oci:runc"]
    assert runtimes_for(CgroupMode.HYBRID, None) == ["isoproof", "oci:runc"]
    assert runtimes_for(CgroupMode.V2, None) == ["isoproof", "oci:runc", "oci:crun"]
    assert runtimes_for(CgroupMode.V2, ["oci:runc", "oci:runc", "isoproof"]) == [
        "oci:runc",
        "isoproof",
    ]


# --- apt resolution from recorded output -----------------------------------------------------

APT = {
    ("apt-cache", "policy", "linux-image-amd64"): (
        "linux-image-amd64:\n  Installed: (none)\n  Candidate: 6.1.192-2\n  Version table:\n"
        "     6.1.192-2 500\n     6.1.176-1 500\n"
    ),
    ("apt-cache", "depends", "linux-image-amd64"): (
        "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n"
    ),
    ("apt-cache", "policy", "linux-image-6.1.0-56-amd64"): (
        "linux-image-6.1.0-56-amd64:\n  Installed: (none)\n  Candidate: 6.1.192-2\n"
    ),
    ("apt-cache", "depends", "linux-image-6.1.0-56-amd64"): (
        "linux-image-6.1.0-56-amd64\n  Depends: kmod\n |Depends: initramfs-tools\n"
        "  Depends: <linux-initramfs-tool>\n  Recommends: firmware-linux-free\n"
        "  Suggests: linux-doc-6.1\n"
    ),
    ("apt-cache", "show", "linux-image-6.1.0-56-amd64=6.1.192-2"): (
        "Package: linux-image-6.1.0-56-amd64\nSource: linux-signed-amd64 (6.1.192+2)\n"
        "Version: 6.1.192-2\nDepends: kmod, initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool\n"
        "Description: Linux 6.1 for 64-bit PCs (signed)\n The Linux kernel 6.1 and modules\n"
        "Filename: pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb\n"
        "Size: 70550672\nSHA256: ABCDEF0123\n\nPackage: linux-image-6.1.0-56-amd64\nVersion: 0-old\n"
    ),
    ("apt-cache", "policy", "linux-image-none"): "linux-image-none:\n  Candidate: (none)\n",
    ("apt-get", "update", "-qq"): "",
}


def fake_apt(calls: list[list[str]] | None = None):
    def run(argv: list[str], cwd: Path | None) -> str:
        if calls is not None:
            calls.append(argv)
        try:
            return APT[tuple(argv)]
        except KeyError:
            raise MatrixError(f"{' '.join(argv)} failed (exit 100)") from None

    return run


def test_resolve_follows_metapackage_to_image() -> None:
    ref = kernels.resolve_package("linux-image-amd64", fake_apt())
    assert ref.requested == "linux-image-amd64"
    assert ref.package == "linux-image-6.1.0-56-amd64"
    assert ref.version == "6.1.192-2"
    assert ref.sha256 == "abcdef0123"  # normalised to lower case
    assert ref.filename.endswith("linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb")


def test_resolve_unknown_package_is_an_error() -> None:
    with pytest.raises(MatrixError, match="no candidate"):
        kernels.resolve_package("linux-image-none", fake_apt())
    with pytest.raises(MatrixError, match="failed"):
        kernels.resolve_package("linux-image-missing", fake_apt())


def test_resolve_refreshes_empty_apt_lists_once() -> None:
    """A fresh machine's apt lists are empty: no candidate until ``apt-get update`` ran."""
    calls: list[list[str]] = []
    updated = False
    base = fake_apt(calls)

    def run(argv: list[str], cwd: Path | None) -> str:
        nonlocal updated
        if argv[:2] == ["apt-get", "update"]:
            updated = True
        if argv[:2] == ["apt-cache", "policy"] and not updated:
            calls.append(argv)
            return f"{argv[2]}:\n  Candidate: (none)\n"
        return base(argv, cwd)

    ref = kernels.resolve_package("linux-image-amd64", run)
    assert ref.package == "linux-image-6.1.0-56-amd64"
    assert calls.count(["apt-get", "update", "-qq"]) == 1
    calls.clear()
    with pytest.raises(MatrixError, match="even after apt-get update"):
        kernels.resolve_package("linux-image-none", fake_apt(calls))
    assert calls.count(["apt-get", "update", "-qq"]) == 1  # refreshed once, not in a loop


def test_preflight_names_every_missing_tool_and_its_package() -> None:
    from verify.matrix import preflight

    have = {"qemu-system-x86_64", "busybox", "vng"}
    gone = preflight.missing(lambda tool: f"/usr/bin/{tool}" if tool in have else None)
    assert [tool for tool, _ in gone] == ["depmod", "cpio", "zstd"]
    with pytest.raises(MatrixError) as err:
        preflight.check(lambda tool: f"/usr/bin/{tool}" if tool in have else None)
    msg = str(err.value)
    assert "\n" not in msg
    for package in ("kmod", "cpio", "zstd"):
        assert f"Debian package {package}" in msg
    preflight.check(lambda tool: "/x")  # everything present: no error


def test_parsers_ignore_virtual_and_take_first_stanza() -> None:
    deps = kernels.parse_depends(APT[("apt-cache", "depends", "linux-image-6.1.0-56-amd64")])
    assert deps == ["kmod", "initramfs-tools"]
    show = kernels.parse_show(APT[("apt-cache", "show", "linux-image-6.1.0-56-amd64=6.1.192-2")])
    assert show["Version"] == "6.1.192-2"
    assert kernels.parse_candidate("x:\n  Candidate: (none)\n") is None


# --- the cache -------------------------------------------------------------------------------


def make_deb(tmp: Path, release: str = "6.1.0-56-amd64") -> Path:
    """A real (tiny) .deb with boot/vmlinuz-<release> and lib/modules/<release>/."""
    root = tmp / "debroot"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        "Package: linux-image-test\nVersion: 1\nArchitecture: amd64\n"
        "Maintainer: isoproof <t@isoproof.dev>\nDescription: test kernel\n"
    )
    (root / "boot").mkdir()
    (root / f"boot/vmlinuz-{release}").write_bytes(b"not really a kernel")
    (root / f"boot/config-{release}").write_text("CONFIG_MEMCG=y\n# CONFIG_MEMCG_V1 is not set\n")
    (root / f"lib/modules/{release}/kernel").mkdir(parents=True)
    deb = tmp / "linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb"
    subprocess.run(
        ["dpkg-deb", "-Zgzip", "-b", str(root), str(deb)], check=True, capture_output=True
    )
    return deb


def ref_for(deb: Path, sha: str | None = None) -> kernels.PackageRef:
    digest = sha or hashlib.sha256(deb.read_bytes()).hexdigest()
    return kernels.PackageRef("linux-image-amd64", "linux-image-6.1.0-56-amd64", "6.1.192-2", digest,
                              f"pool/main/l/x/{deb.name}")  # fmt: skip


def downloader(deb: Path, calls: list[list[str]]):
    def run(argv: list[str], cwd: Path | None) -> str:
        calls.append(argv)
        assert argv[:2] == ["apt-get", "download"] and cwd is not None
        (cwd / deb.name).write_bytes(deb.read_bytes())
        return ""

    return run


def test_fetch_verifies_extracts_records_and_reuses(tmp_path: Path) -> None:
    deb = make_deb(tmp_path)
    ref = ref_for(deb)
    calls: list[list[str]] = []
    cache = tmp_path / "cache"
    tree = kernels.fetch_package(ref, cache, downloader(deb, calls))
    assert calls == [["apt-get", "download", "linux-image-6.1.0-56-amd64=6.1.192-2"]]
    assert tree.release == "6.1.0-56-amd64"
    assert tree.vmlinuz.read_bytes() == b"not really a kernel"
    manifest = json.loads((tree.root / kernels.MANIFEST).read_text())
    assert manifest["deb_sha256"] == ref.sha256 == tree.deb_sha256
    assert kernels.v1_unavailable(kernels.kernel_config(tree)) == ["memory"]
    # Second time: the manifest matches, nothing is downloaded or extracted again.
    again = kernels.fetch_package(ref, cache, downloader(deb, calls))
    assert again == tree and len(calls) == 1


def test_corrupt_cached_deb_is_fetched_again(tmp_path: Path) -> None:
    deb = make_deb(tmp_path)
    ref = ref_for(deb)
    cache = tmp_path / "cache"
    (cache / "debs").mkdir(parents=True)
    (cache / "debs" / deb.name).write_bytes(b"truncated download")
    calls: list[list[str]] = []
    tree = kernels.fetch_package(ref, cache, downloader(deb, calls))
    assert len(calls) == 1 and tree.vmlinuz.exists()


def test_checksum_mismatch_refused_and_removed(tmp_path: Path) -> None:
    deb = make_deb(tmp_path)
    ref = ref_for(deb, sha="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(MatrixError, match="does not match"):
        kernels.fetch_package(ref, cache, downloader(deb, []))
    assert not list((cache / "debs").glob("*.deb"))
    assert not (cache / "trees").exists() or not list((cache / "trees").iterdir())


def test_manifest_with_other_checksum_is_not_reused(tmp_path: Path) -> None:
    deb = make_deb(tmp_path)
    cache = tmp_path / "cache"
    kernels.fetch_package(ref_for(deb), cache, downloader(deb, []))
    tree = kernels.tree_dir(cache, ref_for(deb))
    manifest = json.loads((tree / kernels.MANIFEST).read_text())
    manifest["deb_sha256"] = "f" * 64
    (tree / kernels.MANIFEST).write_text(json.dumps(manifest))
    calls: list[list[str]] = []
    # The .deb in the cache still verifies: re-extracted without a download.
    kernels.fetch_package(ref_for(deb), cache, downloader(deb, calls))
    assert calls == []
    assert json.loads((tree / kernels.MANIFEST).read_text())["deb_sha256"] == ref_for(deb).sha256


def test_local_kernel_tree_and_file(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot/vmlinuz-6.9.1").write_bytes(b"k")
    (tmp_path / "lib/modules/6.9.1").mkdir(parents=True)
    assert kernels.local_kernel(str(tmp_path)).release == "6.9.1"
    by_file = kernels.local_kernel(str(tmp_path / "boot/vmlinuz-6.9.1"))
    assert by_file.root == tmp_path and by_file.release == "6.9.1"
    with pytest.raises(MatrixError, match="does not exist"):
        kernels.local_kernel(str(tmp_path / "nope"))


def test_v1_unavailable_from_config() -> None:
    assert (
        kernels.v1_unavailable("CONFIG_MEMCG=y\nCONFIG_CPUSETS=y\n") == []
    )  # 6.1: no such symbols
    text = "# CONFIG_MEMCG_V1 is not set\n# CONFIG_CPUSETS_V1 is not set\n"
    assert kernels.v1_unavailable(text) == ["cpuset", "memory"]
    assert kernels.v1_unavailable("CONFIG_MEMCG_V1=y\n# CONFIG_CPUSETS_V1 is not set\n") == [
        "cpuset"
    ]


# --- guest script ----------------------------------------------------------------------------


def plan(mode: CgroupMode, tmp: Path, **kw) -> guest.GuestPlan:
    return guest.GuestPlan(leg=f"6.12-{mode}", mode=mode, leg_dir=tmp / "leg", repo=Path("/repo"),
                           python="/venv/bin/python", payload=["/venv/bin/python", "-m", "verify.cli"],
                           **kw)  # fmt: skip


def test_guest_script_v1_mounts_hierarchies_before_payload(tmp_path: Path) -> None:
    text = guest.render(plan(CgroupMode.V1, tmp_path))
    assert "umount /sys/fs/cgroup" in text and "mount -t cgroup -o" in text
    assert "cgroup.subtree_control" in text  # controllers released from v2 first
    # Order: cgroup setup runs before the self-check and the payload.
    assert text.index("setup_cgroups ||") < text.index("verify/matrix/selfcheck.py")
    assert text.index("verify/matrix/selfcheck.py") < text.index("-m verify.cli")
    assert 'exec >"$OUT/guest.log"' in text and "exit-status" in text
    assert "export ISOPROOF_CGROUP_MODE=v1" in text
    assert "PATH=/venv/bin:" in text  # the host venv's tools come first


def test_guest_script_v2_stays_unified(tmp_path: Path) -> None:
    text = guest.render(plan(CgroupMode.V2, tmp_path))
    assert "umount /sys/fs/cgroup" not in text and "mount -t cgroup " not in text
    assert "export ISOPROOF_CGROUP_MODE=v2" in text


def test_guest_script_disk_and_cache_optional(tmp_path: Path) -> None:
    with_all = guest.render(plan(CgroupMode.V2, tmp_path, cache=Path("/var/cache/isoproof")))
    assert "setup_disk ||" in with_all and "modprobe virtio_blk" in with_all
    assert f"lowerdir={guest.CACHE_SHARE}" in with_all
    bare = guest.render(plan(CgroupMode.V2, tmp_path, disk=False))
    assert "setup_disk" not in bare and "setup_cache" not in bare


def test_guest_script_is_valid_sh(tmp_path: Path) -> None:
    for mode in (CgroupMode.V1, CgroupMode.V2):
        path = guest.write(plan(mode, tmp_path, cache=Path("/c")))
        subprocess.run(["sh", "-n", str(path)], check=True)


def test_fast_paths_drop_root_missing_and_nested(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".tox" / "py").mkdir(parents=True)
    (tmp_path / "py").mkdir()
    got = guest.fast_paths([tmp_path / "repo" / ".tox" / "py", tmp_path / "repo", Path("/"),
                            tmp_path / "py", tmp_path / "gone", Path("relative")])  # fmt: skip
    assert got == [tmp_path / "py", tmp_path / "repo"]


def test_guest_script_binds_page_cached_views_first(tmp_path: Path) -> None:
    fast = [Path("/usr"), Path("/my repo")]
    text = guest.render(plan(CgroupMode.V2, tmp_path, fast=fast, cache=Path("/c")))
    assert "setup_fast ||" in text and "cache=loose" in text
    assert "bind_views /run/isoproof-fast /usr '/my repo'" in text  # quoted for the shell
    assert "export ISOPROOF_FAST_PATHS='/usr:/my repo'" in text  # the self-check verifies them
    assert text.index("setup_fast ||") < text.index("setup_cache") < text.index("selfcheck.py")
    assert "setup_fast" not in guest.render(plan(CgroupMode.V2, tmp_path))


def test_vng_argv(tmp_path: Path) -> None:
    k = kernels.KernelTree(Path("/c/trees/x/boot/vmlinuz-6.1"), "6.1", Path("/c/trees/x"))
    cfg = vm.VmConfig(cpus=2, memory="2G", accel="tcg")
    argv = vm.vng_argv(k, tmp_path, cfg, tmp_path / "disk.img", Path("/c"), Path("/repo"))
    assert argv[1:3] == ["--run", "/c/trees/x/boot/vmlinuz-6.1"]
    assert "--disable-kvm" in argv and "--verbose" in argv
    assert argv[argv.index("--rwdir") + 1] == str(tmp_path)
    assert argv[argv.index("--disk") + 1] == str(tmp_path / "disk.img")
    assert f"--rodir={guest.CACHE_SHARE}=/c" in argv
    assert argv[-2:] == ["--exec", f"sh {tmp_path / guest.GUEST_SCRIPT}"]
    assert not any(a.startswith(f"--rodir={guest.FAST_SHARE}") for a in argv)
    kvm = vm.vng_argv(k, tmp_path, vm.VmConfig(accel="kvm"), None, None, Path("/repo"))
    assert "--disable-kvm" not in kvm and "--disk" not in kvm
    # One share of the host's root however many views: each share costs kernel boot arguments.
    fast = vm.vng_argv(k, tmp_path, cfg, None, None, Path("/repo"), [Path("/usr"), Path("/v")])
    assert [a for a in fast if a.startswith("--rodir=")] == [f"--rodir={guest.FAST_SHARE}=/"]


# --- host cgroup mode ------------------------------------------------------------------------

MI_HYBRID = """\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
"""
MI_V2 = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
MI_V1 = "32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"


def test_host_cgroup_mode() -> None:
    assert vm.host_cgroup_mode(MI_HYBRID) is CgroupMode.HYBRID
    assert vm.host_cgroup_mode(MI_V2) is CgroupMode.V2
    assert vm.host_cgroup_mode(MI_V1) is CgroupMode.V1
    with pytest.raises(MatrixError):
        vm.host_cgroup_mode("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n")


# --- merge and summary -----------------------------------------------------------------------


def write_leg(
    d: Path, selfcheck: list[dict], payload: list[dict] | None, status: str | None
) -> Path:
    d.mkdir(parents=True)
    (d / "booted").write_text("3.2 1.0\n")
    (d / "console.log").write_text("[    0.0] Linux version 6.1\n")
    (d / "selfcheck.json").write_text(json.dumps({"tests": selfcheck}))
    if payload is not None:
        (d / "payload.json").write_text(json.dumps({"tests": payload}))
    if status is not None:
        (d / "exit-status").write_text(status + "\n")
    return d


def rec(test_id: str, outcome: str, runtime: str | None = None, **m) -> dict:
    return {"test_id": test_id, "outcome": outcome, "duration_s": 0.5, "runtime": runtime,
            "message": None, "measurements": m}  # fmt: skip


def leg_result(name: str, base: Path, **kw) -> merge.LegResult:
    res = merge.LegResult(leg=name, kernel="6.1.0-56-amd64", cgroup_mode="v2", wall_s=100.0,
                          runtimes=["isoproof", "oci:runc", "oci:crun"])  # fmt: skip
    merge.read_leg(res, base / "legs" / name, base, kw.get("timed_out", False), kw.get("rc", 0))
    return res


def test_merge_passed_leg_with_runtimes_and_measurements(tmp_path: Path) -> None:
    write_leg(tmp_path / "legs/6.1-v2", [rec("selfcheck.py::test_kernel_is_the_legs", "passed")],
              [rec("checks/test_r.py::test_cpu[oci-runc]", "passed", ratio=1.94),
               rec("checks/test_r.py::test_cpu[isoproof]", "passed", "isoproof"),
               rec("checks/test_r.py::test_io[oci-crun]", "skipped")],
              "selfcheck=0 payload=0")  # fmt: skip
    res = leg_result("6.1-v2", tmp_path)
    assert res.status == "passed" and res.reason is None
    assert res.counts["passed"] == 3 and res.counts["skipped"] == 1
    by_id = {r["test_id"]: r for r in res.records}
    cpu = by_id["checks/test_r.py::test_cpu[oci-runc]"]
    assert cpu["runtime"] == "oci:runc" and cpu["measurements"] == {"ratio": 1.94}
    assert cpu["leg"] == "6.1-v2" and cpu["phase"] == "payload" and cpu["cgroup_mode"] == "v2"
    assert by_id["checks/test_r.py::test_io[oci-crun]"]["runtime"] == "oci:crun"
    assert by_id["selfcheck.py::test_kernel_is_the_legs"]["phase"] == "selfcheck"
    doc = merge.result_set([res], {"kernel": "6.18"})
    assert doc["schema"] == merge.SCHEMA and len(doc["results"]) == 4
    assert doc["legs"][0]["counts"]["passed"] == 3 and "records" not in doc["legs"][0]
    json.dumps(doc)  # the result set is plain JSON


def test_failed_test_fails_leg(tmp_path: Path) -> None:
    write_leg(tmp_path / "legs/a", [rec("s::t", "passed")], [rec("c::oom[isoproof]", "failed")],
              "selfcheck=0 payload=1")  # fmt: skip
    res = leg_result("a", tmp_path)
    assert res.status == "failed" and "1 failed" in (res.reason or "")


def test_nonzero_exit_without_failed_test_fails_leg(tmp_path: Path) -> None:
    write_leg(tmp_path / "legs/a", [rec("s::t", "passed")], None, "selfcheck=0 payload=2")
    res = leg_result("a", tmp_path)
    assert res.status == "failed" and res.reason == "exit payload=2"


def test_missing_exit_status_is_error_with_reason(tmp_path: Path) -> None:
    d = write_leg(tmp_path / "legs/dead", [rec("s::t", "passed")], None, None)
    assert leg_result("dead", tmp_path, rc=1).status == "error"
    assert "killed" in (leg_result("dead", tmp_path, rc=1).reason or "")
    assert "timed out" in (leg_result("dead", tmp_path, timed_out=True, rc=None).reason or "")
    (d / "console.log").write_text("[ 9.1] Kernel panic - not syncing: Attempted to kill init!\n")
    res = leg_result("dead", tmp_path, rc=0)
    assert res.status == "error" and "Kernel panic" in (res.reason or "")
    assert res.console_log == "legs/dead/console.log"
    (d / "console.log").write_text("qemu: could not load kernel\n")
    (d / "booted").unlink()
    assert "never started" in (leg_result("dead", tmp_path, rc=1).reason or "")


def test_leg_with_no_results_is_not_green(tmp_path: Path) -> None:
    write_leg(tmp_path / "legs/e", [], [], "selfcheck=0 payload=5")
    assert leg_result("e", tmp_path).reason == "no results came back"


def test_summary_table(tmp_path: Path) -> None:
    write_leg(tmp_path / "legs/6.1-v1", [rec("s::t", "passed")], [rec("c::x", "skipped")],
              "selfcheck=0 payload=0")  # fmt: skip
    write_leg(tmp_path / "legs/6.12-v2", [rec("s::t", "passed")], None, None)
    ok, dead = leg_result("6.1-v1", tmp_path), leg_result("6.12-v2", tmp_path, rc=1)
    ok.accel = "tcg"
    table = merge.summary_table([ok, dead], total_s=321.4)
    lines = table.splitlines()
    assert lines[0].split() == ["leg", "kernel", "cgroup", "accel", "passed", "failed", "skipped",
                                "wall", "status"]  # fmt: skip
    assert lines[2].split()[:9] == ["6.1-v1", "6.1.0-56-amd64", "v2", "tcg", "1", "0", "1", "100s",
                                    "passed"]  # fmt: skip
    assert lines[3].split()[0] == "6.12-v2" and "error: guest stopped" in lines[3]
    assert lines[-1] == "total wall time 321s for 2 legs"


# --- CLI -------------------------------------------------------------------------------------


def test_payload_argv_passes_runtimes_and_results(tmp_path: Path) -> None:
    argv = cli.payload_argv("verify", "/py", tmp_path, ["isoproof", "oci:runc"], True)
    assert argv[:3] == ["/py", "-m", "verify.cli"]
    assert argv[argv.index("--isoproof-results") + 1] == str(tmp_path / "suite")
    assert argv[argv.index("--isoproof-matrix-json") + 1] == str(tmp_path / "payload.json")
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--runtime"] == ["isoproof", "oci:runc"]
    tests = cli.payload_argv("tests", "/py", tmp_path, [], True)
    assert "--ignore-glob=*test_matrix*" in tests  # never boot VMs inside the VM
    assert "tests" in tests
    one = cli.payload_argv("tests", "/py", tmp_path, [], True, ["tests/x.py", "-k", "a or b"])
    assert "tests" not in one and one[-2:] == ["-k", "a or b"]  # leading paths narrow the run
    assert one[one.index("tests/x.py") + 1 : one.index("tests/x.py") + 3] == ["-m", "root"]
    assert cli.payload_argv("echo hi", "/py", tmp_path, [], True) == ["sh", "-c", "echo hi"]
    extra = cli.payload_argv("verify", "/py", tmp_path, ["isoproof"], True, ["-m", "not timing"])
    assert extra[-2:] == ["-m", "not timing"]
    assert cli.parse_args(["--leg", "host", "--", "-m", "not timing", "-x"]).suite_args == [
        "-m",
        "not timing",
        "-x",
    ]


def test_default_jobs_fit_cores_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cli, "available_memory", lambda: 24 * cli.GiB)
    assert cli.default_jobs(2, 2 * cli.GiB, "tcg") == 1
    assert cli.default_jobs(1, 2 * cli.GiB, "tcg") == 2
    monkeypatch.setattr(cli, "available_memory", lambda: 3 * cli.GiB)
    assert cli.default_jobs(1, 2 * cli.GiB, "kvm") == 1
    assert cli.memory_bytes("512M") == 512 << 20
    with pytest.raises(MatrixError):
        cli.memory_bytes("lots")


@pytest.mark.parametrize(
    "argv",
    [["--leg", "nonsense"], ["--leg", "6.1-v1", "--leg", "6.1-v1"], ["--cpus", "0", "--leg", "host"],
     ["--memory", "x", "--leg", "host"], ["--payload", "no-such-binary", "--leg", "host"],
     ["--bogus-flag"]],
)  # fmt: skip
def test_cli_bad_input_one_line_exit_2(argv: list[str], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    rc = cli.main([*argv, "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("isoproof matrix: ")
    assert not (tmp_path / "r").exists()  # nothing left behind


def test_merge_runs_from_several_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, status in (("6.1-v1", "selfcheck=0 payload=0"), ("6.12-v2", "selfcheck=0 payload=1")):
        base = tmp_path / name
        outcome = "passed" if status.endswith("=0") else "failed"
        write_leg(base / "legs" / name, [rec("s::t", "passed")], [rec("c::x", outcome)], status)
        doc = merge.result_set([leg_result(name, base)], {"kernel": "runner"})
        (base / "matrix.json").write_text(json.dumps(doc))
    out = tmp_path / "merged"
    rc = cli.main(["--merge", str(tmp_path / "6.1-v1"), "--merge", str(tmp_path / "6.12-v2"),
                   "--results", str(out)])  # fmt: skip
    assert rc == 1  # one leg failed a property: the gate fails
    doc = json.loads((out / "matrix.json").read_text())
    assert [leg["leg"] for leg in doc["legs"]] == ["6.1-v1", "6.12-v2"]
    assert {r["leg"] for r in doc["results"]} == {"6.1-v1", "6.12-v2"} and len(doc["results"]) == 4
    assert "6.12-v2" in capsys.readouterr().out
    # The same leg from two jobs is refused, one line, exit 2.
    rc = cli.main(["--merge", str(tmp_path / "6.1-v1"), "--merge", str(tmp_path / "6.1-v1"),
                   "--results", str(tmp_path / "again")])  # fmt: skip
    assert rc == 2 and "more than one" in capsys.readouterr().err


def test_workflow_fans_out_one_job_per_vm_leg() -> None:
    """The CI matrix names exactly the default VM legs, and the merge job expects all five."""
    text = (Path(__file__).resolve().parents[2] / ".github/workflows/gate.yml").read_text()
    m = re.search(r"^\s+leg: \[(.*)\]$", text, re.MULTILINE)
    assert m, "no leg matrix in gate.yml"
    legs = [x.strip().strip('"') for x in m.group(1).split(",")]
    assert legs == [leg for leg in DEFAULT_LEGS if leg != "host"]
    assert "--leg host" in text and f"-eq {len(DEFAULT_LEGS)}" in text


COLLECTED = """
import pytest

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown broke")

@pytest.mark.parametrize("runtime", ["oci:runc", "isoproof"], ids=["oci-runc", "isoproof"])
def test_split(runtime, record_property):
    record_property("ratio", 1.94)
    record_property("isoproof_measurement", {"a": 1})
    record_property("isoproof_measurement", {"b": 2})
    assert runtime != "isoproof"

def test_skip():
    pytest.skip("needs cgroup v2; host is hybrid")

def test_teardown_error(broken_teardown):
    pass
"""


def test_collector_records_every_test(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(COLLECTED)
    out = tmp_path / "out" / "payload.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "verify.matrix.collect", "--isoproof-matrix-json",
         str(out), "-p", "no:cacheprovider", "-q", "-c", "/dev/null", str(tmp_path)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout
    doc = json.loads(out.read_text())
    assert doc["schema"] == "isoproof-matrix-tests/1" and doc["exit_status"] == 1
    tests = {t["test_id"].split("::")[-1]: t for t in doc["tests"]}
    assert tests["test_split[oci-runc]"]["outcome"] == "passed"
    assert tests["test_split[oci-runc]"]["runtime"] == "oci:runc"
    assert tests["test_split[oci-runc]"]["measurements"] == {
        "ratio": 1.94,
        "isoproof_measurement": [{"a": 1}, {"b": 2}],
    }
    assert tests["test_split[isoproof]"]["outcome"] == "failed"
    assert tests["test_skip"]["outcome"] == "skipped"
    assert "needs cgroup v2" in tests["test_skip"]["message"]
    assert tests["test_teardown_error"]["outcome"] == "error"
    assert "teardown broke" in tests["test_teardown_error"]["message"]


# --- the whole pipeline on the host leg (no VM, no root) ---------------------------------------


def run_host_leg(tmp_path: Path, *argv: str) -> tuple[int, dict]:
    results = tmp_path / "r"
    rc = cli.main(["--leg", "host", "--results", str(results), *argv])
    return rc, json.loads((results / "matrix.json").read_text())


def test_host_leg_selfcheck_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = run_host_leg(tmp_path, "--payload", "selfcheck")
    (leg,) = doc["legs"]
    assert rc == 0 and leg["status"] == "passed"
    assert leg["cgroup_mode"] == str(vm.host_cgroup_mode()) and leg["accel"] is None
    # The self-check only means something in a guest: on the host every test says why it skipped.
    assert leg["counts"]["skipped"] == 5 and leg["counts"]["passed"] == 0
    assert all("ISOPROOF_IN_MATRIX_GUEST" in r["message"] for r in doc["results"])
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[0] == "leg" and "host" in out


def test_host_leg_failing_payload(tmp_path: Path) -> None:
    rc, doc = run_host_leg(tmp_path, "--payload", "echo broken >&2; exit 3")
    (leg,) = doc["legs"]
    assert rc == 1 and leg["status"] == "failed" and leg["reason"] == "exit payload=3"
    assert "broken" in (tmp_path / "r" / leg["console_log"]).read_text()


def test_hung_leg_times_out_and_leaves_nothing(tmp_path: Path) -> None:
    marker = f"isoproof-hang-{os.getpid()}"
    start = time.time()
    rc, doc = run_host_leg(tmp_path, "--timeout", "2", "--payload", f"sleep 300 # {marker}")
    (leg,) = doc["legs"]
    assert rc == 1 and leg["status"] == "error" and leg["reason"].startswith("timed out")
    assert time.time() - start < 30
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes left behind: {left}"


def test_sigterm_stops_legs_and_still_writes_results(tmp_path: Path) -> None:
    marker = f"isoproof-term-{os.getpid()}"
    results = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "verify.matrix", "--leg", "host", "--results", str(results),
         "--payload", f"sleep 300 # {marker}"],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 30
        while not (results / "legs/host/vm.pgid").exists():
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.1)
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    doc = json.loads((results / "matrix.json").read_text())
    assert doc["legs"][0]["status"] == "error" and doc["legs"][0]["reason"] == "interrupted"
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes left behind: {left}"


def test_selfcheck_reads_9p_cache_options_of_both_kernels() -> None:
    from verify.matrix.selfcheck import _cached_9p

    assert _cached_9p("ro,relatime,cache=0xf,access=client,msize=512000,trans=virtio")  # 6.12
    assert _cached_9p("ro,dirsync,loose,access=client,msize=512000,trans=virtio")  # 6.1
    assert not _cached_9p("ro,relatime,access=any,msize=512000,trans=virtio")  # virtme's root
    assert not _cached_9p("rw,cache=none,trans=virtio")


def test_matrix_help_is_plain_text_with_help_for_every_option() -> None:
    text = cli.build_parser().format_help()
    assert "``" not in text  # reStructuredText markup does not belong in a terminal
    options = [a for a in cli.build_parser()._actions if a.option_strings and a.dest != "help"]
    assert [a.dest for a in options if not a.help] == []
