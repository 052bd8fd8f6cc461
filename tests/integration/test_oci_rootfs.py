"""The rootfs as runc builds it (issue 12): mounts in the config's order, each once;
``rootfsPropagation`` honoured; fifo devices; /dev/console for a terminal. Each property is read from
inside the container. With ``ISOPROOF_TEST_RUNTIME=/usr/sbin/runc`` runc 1.1.5 passes all but
propagation: it leaves the new "/" unshared for "shared" and fails "unbindable"."""

from __future__ import annotations

import os
import socket
import threading

import pytest

pytestmark = pytest.mark.root


def mount_points(text: str) -> list[str]:
    """Mount points of a mountinfo, in the order they were made: the order of its lines (the mount
    namespace's list, appended to as mounts are made; from 6.8 sorted by a 64-bit id that is never
    reused). Not by the mount id column: the kernel hands out the lowest free id, so a mount
    made after another host mount went away can get a lower id than earlier ones (CI saw
    /dev/shm sorted before /proc that way)."""
    return [ln.split()[4] for ln in text.splitlines() if ln.strip()]


def test_mounts_in_config_order_each_once(oci, bundle):
    b = bundle(args=["cat", "/proc/self/mountinfo"])
    oci("run", "--bundle", str(b.path), "order", stdout=b.out)
    points = mount_points(b.out.read_text())
    wanted = [m["destination"] for m in b.config["mounts"]]
    assert [p for p in points if p in wanted] == wanted  # runc's order: /dev/pts before /sys
    assert len(points) == len(set(points)), f"mounted twice: {points}"


def root_line(text: str) -> list[str]:
    """The optional fields (shared:N, master:N, unbindable) of the container's "/" mount."""
    for ln in text.splitlines():
        fields = ln.split()
        if fields[4] == "/":
            return fields[6 : fields.index("-")]
    raise AssertionError(f"no / in {text}")


@pytest.mark.parametrize(
    ("prop", "want"),
    [("shared", "shared:"), ("rshared", "shared:"), ("unbindable", "unbindable"), ("private", None),
     ("rprivate", None), ("slave", None), ("rslave", None)],
)  # fmt: skip
def test_rootfs_propagation(oci, bundle, prop, want):
    """runc makes the rootfs's parent mount private for pivot_root, then gives the new "/" the
    propagation asked for (before: "shared" failed with pivot_root EINVAL)."""
    b = bundle(args=["cat", "/proc/self/mountinfo"], rootfsPropagation=prop)
    oci("run", "--bundle", str(b.path), "prop", stdout=b.out)
    fields = root_line(b.out.read_text())
    if want is None:
        assert not any(f.startswith(("shared:", "unbindable")) for f in fields), fields
    else:
        assert any(f.startswith(want) for f in fields), fields


def test_fifo_device(oci, bundle):
    dev = {"path": "/dev/isoproof-fifo", "type": "p", "major": 0, "minor": 0, "fileMode": 0o600}
    b = bundle(args=["sh", "-c", "[ -p /dev/isoproof-fifo ] && stat -c %a /dev/isoproof-fifo"],
               devices=[dev])  # fmt: skip
    r = oci("run", "--bundle", str(b.path), "fifo", stdout=b.out, check=False)
    assert r.returncode == 0, r.stderr
    assert b.out.read_text().strip() == "600"


def test_dev_console_is_the_terminal(oci, bundle, tmp_path):
    """process.terminal: the pty's slave is bound onto /dev/console (runc's mountConsole): what the
    container writes there reaches the console socket's master."""
    path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    got: dict[str, int] = {}

    def serve() -> None:
        conn, _ = srv.accept()
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        got["fd"] = fds[0]
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    script = "[ -c /dev/console ] && echo via-console > /dev/console; echo done"
    b = bundle(args=["sh", "-c", script], process={"terminal": True})
    oci.create(b, "cons", "--console-socket", path)
    t.join(5)
    srv.close()
    assert "fd" in got
    oci("start", "cons")
    data = b""
    try:
        while b"done" not in data:
            chunk = os.read(got["fd"], 1024)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    os.close(got["fd"])
    assert b"via-console" in data, data


def test_no_mount_namespace_is_a_chroot(oci, bundle):
    """No mount namespace (runc: no pivot_root, a chroot): the host's mount namespace, the rootfs
    as "/", nothing mounted (a config with mounts is refused: they would stay on the host)."""
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts")]
    b = bundle(args=["sh", "-c", "cat /isoproof-marker; sleep 100"], namespaces=namespaces,
               mounts=[], maskedPaths=[], readonlyPaths=[],
               root={"path": "rootfs", "readonly": False})  # fmt: skip
    (b.rootfs / "isoproof-marker").write_text("in-rootfs\n")
    oci.create(b, "nomnt")
    pid = oci.state("nomnt")["pid"]
    assert os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino
    assert os.readlink(f"/proc/{pid}/root") == str(b.rootfs)
    oci("start", "nomnt")
    r = oci("exec", "nomnt", "cat", "/isoproof-marker")  # exec joins its chroot too
    assert r.stdout == "in-rootfs\n"
    oci("delete", "--force", "nomnt")
    assert b.out.read_text() == "in-rootfs\n"
    b.config["mounts"] = [{"destination": "/proc", "type": "proc", "source": "proc"}]
    b.write()
    r = oci("create", "--bundle", str(b.path), "nomnt2", check=False)
    assert r.returncode != 0 and "mount namespace" in r.stderr


def test_joined_mount_and_uts_namespaces(oci, bundle):
    """Joining another container's mount and uts namespaces by path: its root and its names; our
    own hostname is not set in a uts namespace that is not ours."""
    a = bundle(hostname="isoproof-a")
    (a.rootfs / "isoproof-marker").write_text("a's rootfs\n")
    oci.create(a, "host-a")
    oci("start", "host-a")
    apid = oci.state("host-a")["pid"]
    joined = [{"type": "pid"}, {"type": "mount", "path": f"/proc/{apid}/ns/mnt"},
              {"type": "uts", "path": f"/proc/{apid}/ns/uts"}]  # fmt: skip
    b = bundle(args=["sh", "-c", "hostname; cat /isoproof-marker"], namespaces=joined,
               hostname="isoproof-b")  # fmt: skip
    oci("run", "--bundle", str(b.path), "joins-a", stdout=b.out)
    assert b.out.read_text() == "isoproof-a\na's rootfs\n"
    r = oci("exec", "host-a", "hostname")
    assert r.stdout.strip() == "isoproof-a"


def test_tmpcopyup_tmpfs_keeps_the_directory_content(oci, bundle):
    """runc's tmpcopyup (podman: --tmpfs, --read-only): the tmpfs starts with the image's files;
    the option never reaches the kernel (it answered EINVAL)."""
    m = {"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=755", "tmpcopyup"]}  # fmt: skip
    b = bundle(args=["sh", "-c", "grep -c root /etc/passwd; grep ' /etc ' /proc/mounts | cut -d' ' -f3"],
               mounts=[m])  # fmt: skip
    r = oci("run", "--bundle", str(b.path), "copyup", stdout=b.out, check=False)
    assert r.returncode == 0, r.stderr
    assert b.out.read_text().split() == ["1", "tmpfs"]
