"""The syscall choke point: real errors carry errno and target; the recording fake lets the
process and rootfs steps be checked in order without root."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from runtime import spec as spec_
from runtime import sys as s
from runtime.errors import IsoproofError, SyscallError
from runtime.oci import process, rootfs


def test_real_failure_carries_errno_and_target(tmp_path: Path):
    with pytest.raises(SyscallError) as e:
        s.Sys().umount2(str(tmp_path))  # not a mount point (EINVAL as root, EPERM otherwise)
    assert e.value.errno in (errno.EINVAL, errno.EPERM)
    assert e.value.call == "umount2" and e.value.target == str(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_capget_reads_our_sets():
    eff, prm, _inh = s.Sys().capget()
    line = next(
        ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("CapEff")
    )
    assert eff == int(line.split()[1], 16)
    assert eff & ~prm == 0


def test_nstype_of_a_namespace_file():
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
    try:
        assert s.Sys().nstype(fd) == s.CLONE_NEWUTS
    finally:
        os.close(fd)


def proc_spec(**kw: object) -> spec_.Process:
    p = spec_.Process(args=["sh"], rlimits=[spec_.Rlimit("RLIMIT_NOFILE", 7, 10, 20)],
                      capabilities=spec_.Capabilities(bounding=["CAP_KILL"], effective=["CAP_KILL"],
                                                      permitted=["CAP_KILL"], ambient=["CAP_KILL"],
                                                      inheritable=["CAP_KILL"]),
                      no_new_privileges=True)  # fmt: skip
    p.user = spec_.User(uid=1000, gid=100, additional_gids=[5])
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def test_process_apply_order():
    rec = s.RecordingSys()
    process.apply(rec, proc_spec(), in_new_userns=False, last_cap=40)
    names = rec.names()
    # rlimits while privileged; keepcaps around the uid change; bounding drops before it
    assert names[0] == "setrlimit"
    assert names.index("setgroups") < names.index("setresgid") < names.index("setresuid")
    keep = [i for i, c in enumerate(rec.calls) if c == ("prctl", (s.PR_SET_KEEPCAPS, 1, 0, 0, 0))]
    drops = [c[1][1] for c in rec.calls if c[0] == "prctl" and c[1][0] == s.PR_CAPBSET_DROP]
    assert keep and keep[0] < names.index("setresuid")
    assert 5 not in drops and len(drops) == 40  # all but CAP_KILL (5), 0..40
    assert ("setgroups", ([5],)) in rec.calls
    assert names.index("setresuid") < names.index("capset")
    assert rec.caps == (1 << 5, 1 << 5, 1 << 5)
    raises = [c for c in rec.calls if c[0] == "prctl" and c[1][:2] == (s.PR_CAP_AMBIENT,
                                                                       s.PR_CAP_AMBIENT_RAISE)]  # fmt: skip
    assert [c[1][2] for c in raises] == [5]
    assert "prctl" in names and (s.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) not in [c[1] for c in rec.calls]
    process.no_new_privs(rec, proc_spec())
    assert rec.calls[-1] == ("prctl", (s.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))


def test_user_namespace_skips_setgroups_and_refuses_additional_gids():
    rec = s.RecordingSys()
    with pytest.raises(IsoproofError, match="additionalGids"):
        process.apply(rec, proc_spec(), in_new_userns=True, last_cap=40)
    rec = s.RecordingSys()
    p = proc_spec()
    p.user.additional_gids = []
    process.apply(rec, p, in_new_userns=True, last_cap=40)
    assert "setgroups" not in rec.names()


def test_failed_capset_names_missing_capabilities():
    rec = s.RecordingSys(fail={"capset": errno.EPERM})
    rec.caps = (0, 0, 0)
    with pytest.raises(IsoproofError, match="does not hold CAP_KILL"):
        process.apply(rec, proc_spec(), in_new_userns=False, last_cap=40)


def test_finalize_masks_readonly_and_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    d = tmp_path / "dir"
    d.mkdir()
    f = tmp_path / "file"
    f.write_text("x")
    doc = spec_.default_spec()
    doc["linux"]["maskedPaths"] = [str(d), str(f), str(tmp_path / "missing")]
    doc["linux"]["readonlyPaths"] = [str(d)]
    sp = spec_.parse(doc, "/b")
    rec = s.RecordingSys()
    rootfs.finalize(rec, sp)
    # every path is resolved to an fd first and mounted through /proc/self/fd
    mounts = [c[1] for c in rec.calls if c[0] == "mount"]
    assert (f"fd:{d}", f"fd:{d}", None, s.MS_BIND | s.MS_REC, None) == mounts[0]
    assert mounts[1][1] == f"fd:{d}"
    assert (
        mounts[1][3] & (s.MS_RDONLY | s.MS_REMOUNT | s.MS_BIND)
        == s.MS_RDONLY | s.MS_REMOUNT | s.MS_BIND
    )
    assert ("tmpfs", f"fd:{d}", "tmpfs", s.MS_RDONLY, None) in mounts
    assert ("/dev/null", f"fd:{f}", None, s.MS_BIND, None) in mounts
    assert not any(str(tmp_path / "missing") in (m[1] or "") for m in mounts)
    assert mounts[-1][1] == "/" and mounts[-1][3] & s.MS_RDONLY
    opened = [c[1][0] for c in rec.calls if c[0] == "openat2"]
    assert str(tmp_path / "missing") in opened
    assert all(c[1][2] & s.RESOLVE_IN_ROOT for c in rec.calls if c[0] == "openat2")


def test_pivot_uses_pivot_root_never_chroot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rec = s.RecordingSys()
    monkeypatch.chdir(tmp_path)
    rootfs.pivot(rec, str(tmp_path))
    assert rec.names() == ["pivot_root", "mount", "umount2"]
    assert rec.calls[1][1][3] == s.MS_SLAVE | s.MS_REC  # the old root stops propagating first
    assert rec.calls[2][1] == (".", s.MNT_DETACH)


def test_light_calls_without_ctypes_keep_errno_and_work() -> None:
    # runtime.libc (_ctypes alone) under runtime.sys's unshare/setns/mount/prctl, in a child:
    # PR_SET_DUMPABLE 0 must really happen, and failures carry the call's errno
    code = """
import errno, sys
from runtime import libc, sys as rsys
from runtime.errors import SyscallError
assert libc.prctl(3) == 1  # PR_GET_DUMPABLE
rsys.prctl(4, 0)  # PR_SET_DUMPABLE
assert libc.prctl(3) == 0
for call, args, err in ((rsys.prctl, (9999,), errno.EINVAL), (rsys.setns, (-1, 0), errno.EBADF),
                        (rsys.mount, (None, "/isoproof-no-such-dir", None, 0x1000), errno.ENOENT)):
    try:
        call(*args)
    except SyscallError as e:
        assert e.errno == err, (call, e)
    else:
        raise AssertionError(call)
try:
    libc.call("prctl", libc.Int(9999), libc.ULong(0), libc.ULong(0), libc.ULong(0), libc.ULong(0))
except OSError as e:
    assert e.errno == errno.EINVAL
print(" ".join(m for m in ("ctypes", "os") if m in sys.modules))
"""
    import subprocess
    import sys

    repo = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {repo!r})\n{code}"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["os"]  # runtime.sys imports os, but not ctypes


def test_the_monitors_prctl_needs_neither_os_nor_ctypes() -> None:
    import subprocess
    import sys

    repo = str(Path(__file__).resolve().parents[2])
    code = (f"import sys; sys.path.insert(0, {repo!r}); from runtime import libc; libc.prctl(4, 1); "
            "print(' '.join(m for m in ('os', 'ctypes', 'runtime.sys', 'runtime.errors') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-S", "-I", "-c", code], capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.split() == []
