"""isoproof-oci with damaged state: one-line errors, and ``delete --force`` removes what is left.

A state.json that is empty, torn or of an unknown format (a crash, a full disk, a hand edit)
used to be a JSONDecodeError for every verb and undeletable; a ``creating`` directory whose
creator record is empty (the creator killed while writing it) was refused by ``delete --force``
("still being created") forever.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

OCI = str(Path(sys.executable).parent / "isoproof-oci")


class Oci:
    def __init__(self, root: Path, parent: str, bundle: Path) -> None:
        self.root, self.parent, self.bundle = root, parent, bundle

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [OCI, "--root", str(self.root), *args],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip

    def cgroups(self, cid: str) -> list[Path]:
        return [d / self.parent / cid for d in Path("/sys/fs/cgroup").iterdir() if (d / self.parent / cid).is_dir()]  # fmt: skip


@pytest.fixture
def oci(tmp_path: Path) -> Iterator[Oci]:
    from runtime.busybox import ensure_rootfs

    parent = f"isoproof-t{uuid.uuid4().hex[:8]}"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["root"] = {"path": str(ensure_rootfs()), "readonly": True}
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["sleep", "300"]
    spec["linux"]["cgroupsPath"] = f"/{parent}/c1"
    (bundle / "config.json").write_text(json.dumps(spec))
    o = Oci(Path(f"/run/isoproof-t{uuid.uuid4().hex[:8]}"), parent, bundle)
    yield o
    for cid in ("c1", "half"):
        o("delete", "--force", cid)
    leaks = [str(p) for p in o.cgroups("c1") + o.cgroups("half")]
    for d in Path("/sys/fs/cgroup").iterdir():
        if (d / parent).is_dir():
            (d / parent).rmdir()
    if o.root.exists():
        leaks += [p.name for p in o.root.iterdir()]
        o.root.rmdir()
    assert not leaks, f"left behind: {leaks}"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize(
    "text", ["", "{}", "\x00garbage", '{"isoproofFormat": 1, "id": "c1", "pid', '{"isoproofFormat": 9}']
)  # fmt: skip
def test_a_damaged_state_is_one_line_and_delete_force_removes_it(oci: Oci, text: str) -> None:
    # create hands its stdio to the container: not pipes that we would wait on for 300 s
    cp = subprocess.run([OCI, "--root", str(oci.root), "create", "--bundle", str(oci.bundle), "c1"],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, timeout=60)  # fmt: skip
    assert cp.returncode == 0
    pid = json.loads(oci("state", "c1").stdout)["pid"]
    assert _alive(pid) and oci.cgroups("c1")
    (oci.root / "c1" / "state.json").write_text(text)
    for verb in (["state", "c1"], ["start", "c1"], ["kill", "c1", "KILL"], ["delete", "c1"]):
        cp = oci(*verb)
        assert cp.returncode != 0 and "Traceback" not in cp.stderr, cp.stderr
        assert cp.stderr.count("\n") == 1 and "damaged state" in cp.stderr, cp.stderr
    cp = oci("list")
    assert cp.returncode == 0 and "Traceback" not in cp.stderr
    assert oci("delete", "--force", "c1").returncode == 0
    assert not (oci.root / "c1").exists()
    assert oci.cgroups("c1") == []
    assert not _alive(pid)


@pytest.mark.parametrize("text", [None, "", "{"])
def test_a_creating_container_with_an_empty_creator_record_is_deletable_with_force(
    oci: Oci, text: str | None
) -> None:
    d = oci.root / "half"
    d.mkdir(parents=True)
    if text is not None:
        (d / "creator.json").write_text(text)
    assert json.loads(oci("state", "half").stdout)["status"] == "creating"
    cp = oci("delete", "half")
    assert cp.returncode == 1 and "still being created" in cp.stderr
    assert oci("delete", "--force", "half").returncode == 0
    assert not d.exists()
