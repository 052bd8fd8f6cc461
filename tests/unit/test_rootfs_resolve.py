"""Paths inside the rootfs, resolved by fd (runtime/oci/rootfs.py): nothing may resolve, or be
created, outside the root, whatever symlinks the image holds. Each case runs twice: with openat2
(RESOLVE_IN_ROOT) and with the O_PATH walk used where the kernel lacks it. No root needed."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.oci import rootfs
from runtime.sys import Sys


@pytest.fixture(params=["openat2", "walk"])
def sys(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Sys:
    monkeypatch.setattr(rootfs, "_openat2", [request.param == "openat2"])
    return Sys()


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    """(root, outside, O_PATH fd of root). ``outside`` is a sibling the links aim at."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("inside")
    outside.mkdir()
    (outside / "passwd").write_text("outside")
    os.symlink("/etc", root / "abs")
    os.symlink("../../../../../etc", root / "rel")
    os.symlink(str(outside), root / "host")  # absolute to the host's path of outside
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.symlink("/proc/self/root", root / "magic")
    os.symlink("/nowhere/x", root / "dangling")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield root, outside, fd
    os.close(fd)


def where(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("/abs/passwd", "etc/passwd"),
        ("/rel/passwd", "etc/passwd"),
        ("/../../etc", "etc"),
        ("etc/../../../etc/passwd", "etc/passwd"),
        ("/", ""),
    ],
)
def test_open_in_root_stays_inside(sys, tree, path, want):
    root, _, fd = tree
    assert where(rootfs.open_in_root(sys, fd, path)) == str(root / want).rstrip("/")


def test_a_link_to_a_host_path_resolves_inside_the_root(sys, tree):
    root, outside, fd = tree
    # root/host -> <outside> is read as <root>/<outside>: missing there, never the real one
    with pytest.raises(FileNotFoundError):
        rootfs.open_in_root(sys, fd, "/host/passwd")


def test_loops_and_magic_links_fail(sys, tree):
    _, _, fd = tree
    with pytest.raises(OSError) as e:
        rootfs.open_in_root(sys, fd, "/loop1")
    assert e.value.errno == errno.ELOOP
    with pytest.raises(OSError):  # openat2: ELOOP (magic link); walk: inside the root, missing
        rootfs.open_in_root(sys, fd, "/magic/etc")


def test_mkdir_in_root_follows_links_inside(sys, tree):
    root, outside, fd = tree
    assert where(rootfs.mkdir_in_root(sys, fd, "/abs/new/deeper")) == str(root / "etc/new/deeper")
    # a link to the host's directory dangles inside the root: refused, nothing made anywhere
    with pytest.raises(FileNotFoundError):
        rootfs.mkdir_in_root(sys, fd, "/host/made")
    assert sorted(os.listdir(outside)) == ["passwd"]
    assert not os.path.exists(str(root) + str(outside))


def test_mkdir_in_root_refuses_dangling_links_and_files(sys, tree):
    root, _, fd = tree
    with pytest.raises(FileNotFoundError):
        rootfs.mkdir_in_root(sys, fd, "/dangling/sub")
    assert not os.path.exists("/nowhere")
    with pytest.raises(NotADirectoryError):
        rootfs.mkdir_in_root(sys, fd, "/etc/passwd")


def test_file_in_root_creates_an_empty_file_inside(sys, tree):
    root, outside, fd = tree
    assert where(rootfs.file_in_root(sys, fd, "/abs/new/f")) == str(root / "etc/new/f")
    assert (root / "etc/new/f").read_text() == ""
    with pytest.raises(FileNotFoundError):
        rootfs.file_in_root(sys, fd, "/host/f")
    assert sorted(os.listdir(outside)) == ["passwd"]
    assert where(rootfs.file_in_root(sys, fd, "/abs/passwd")) == str(root / "etc/passwd")
    assert (root / "etc/passwd").read_text() == "inside"  # existing: opened, not truncated


def test_parent_private_only_for_a_shared_parent(tmp_path: Path):
    from runtime.sys import MS_PRIVATE, RecordingSys

    mi = tmp_path / "mountinfo"
    mi.write_text(
        "1 0 8:1 / / rw shared:1 - ext4 /dev/root rw\n"
        "2 1 0:5 / /tmp rw shared:2 - tmpfs tmpfs rw\n"
        "3 1 0:6 / /tmp/a\\040b rw - tmpfs tmpfs rw\n"
    )
    rec = RecordingSys()
    rootfs._parent_private(rec, "/tmp/x/rootfs", str(mi))
    assert rec.calls == [("mount", (None, "/tmp", None, MS_PRIVATE, None))]
    rec = RecordingSys()
    rootfs._parent_private(rec, "/tmp/a b/rootfs", str(mi))  # private already: nothing to do
    assert rec.calls == []
