import os
from pathlib import Path

import pytest

from runtime import busybox
from runtime.errors import IsoproofError


def test_build_rootfs_has_shell_applets_and_users(tmp_path: Path) -> None:
    if not busybox.BUSYBOX.exists():
        pytest.skip(f"needs busybox-static at {busybox.BUSYBOX}; scripts/bootstrap.sh installs it")
    root = busybox.build_rootfs(tmp_path / "rootfs")
    # Links are relative so that they resolve inside the container as well as on the host.
    for applet in ("bin/sh", "usr/bin/env", "sbin/ip"):
        link = root / applet
        assert not os.path.isabs(os.readlink(link))
        assert (link.parent / os.readlink(link)).resolve() == (root / "bin/busybox").resolve()
    assert "root:x:0:0" in (root / "etc/passwd").read_text()
    assert os.stat(root / "tmp").st_mode & 0o1777 == 0o1777


def test_dynamic_busybox_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "busybox"
    fake.write_bytes(b"\x7fELF....../lib64/ld-linux-x86-64.so.2....")
    with pytest.raises(IsoproofError, match="not statically linked"):
        busybox.build_rootfs(tmp_path / "rootfs", busybox=fake)
    assert not (tmp_path / "rootfs").exists()


def test_missing_busybox_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IsoproofError, match="install busybox-static"):
        busybox.build_rootfs(tmp_path / "rootfs", busybox=tmp_path / "nope")


def test_ensure_rootfs_builds_once_and_reuses(tmp_path: Path) -> None:
    if not busybox.BUSYBOX.exists():
        pytest.skip(f"needs busybox-static at {busybox.BUSYBOX}")
    first = busybox.ensure_rootfs(cache=tmp_path)
    marker = first / "marker"
    marker.write_text("x")
    again = busybox.ensure_rootfs(cache=tmp_path)
    assert again == first and marker.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["busybox-rootfs"]
