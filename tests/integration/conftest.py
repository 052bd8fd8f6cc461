"""Shared fixtures for root integration tests that drive an OCI runtime through its CLI.

* ``oci`` -- an :class:`Oci` runner bound to a private state root (``/run/isoproof-t<unique>``)
  and a private cgroup parent (``/isoproof-t<unique>``). By default it runs our
  ``isoproof-oci`` with the venv's interpreter; ``ISOPROOF_TEST_RUNTIME=/usr/sbin/runc`` runs the
  same tests against another runtime.
* ``bundle`` -- a factory: ``bundle(args=["sleep", "100"], hostname="x", **linux_overrides)``
  writes a bundle (a private copy of the busybox rootfs + config.json) and returns a :class:`Bundle`.
* Leak check: after every test that used ``oci``, every container is force-deleted and the test
  *fails* if a state directory, cgroup, mount or process of its own is left behind.

Everything is named with a per-process, per-xdist-worker unique suffix, so concurrent runs (and the
other engineers' tests) never see each other's objects.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def unique_suffix(worker_id: str = "") -> str:
    return f"{worker_id or 'm'}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def runtime_command() -> list[str]:
    other = os.environ.get("ISOPROOF_TEST_RUNTIME")
    if other:
        return [other]
    # -S: skip site (the editable-install hook); PYTHONPATH (below) finds the package.
    return [sys.executable, "-S", "-m", "runtime.oci.cli"]


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Bundle:
    path: Path
    config: dict[str, Any]
    cgroup: str  # the cgroupsPath written into config.json

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    def write(self) -> None:
        (self.path / "config.json").write_text(json.dumps(self.config, indent=1))

    @property
    def out(self) -> Path:
        """Where the runner sends the stdout of create/run for this bundle: the container's output."""
        return self.path / "stdout.txt"


@dataclass
class Oci:
    root: str
    cgroup_parent: str
    tmp: Path
    command: list[str] = field(default_factory=runtime_command)
    created: list[str] = field(default_factory=list)

    @property
    def is_ours(self) -> bool:
        return "ISOPROOF_TEST_RUNTIME" not in os.environ

    def __call__(self, *args: str, check: bool = True, timeout: float = 60,
                 stdout: Path | None = None, stdin: Any = subprocess.DEVNULL) -> Result:  # fmt: skip
        """Run ``<runtime> --root R args...``. Output goes to files, not pipes: a detached
        container keeps its stdio open, and a pipe would make us wait for it to exit."""
        argv = [*self.command, "--root", self.root, *args]
        if len(args) >= 2 and args[0] in ("create", "run"):
            self.created.append(args[-1])
        out = stdout or self.tmp / f"out-{uuid.uuid4().hex[:8]}"
        err = self.tmp / f"err-{uuid.uuid4().hex[:8]}"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        with open(out, "ab") as fo, open(err, "wb") as fe:
            p = subprocess.run(argv, stdin=stdin, stdout=fo, stderr=fe, timeout=timeout, env=env,
                               cwd=self.tmp)  # fmt: skip
        r = Result(
            argv, p.returncode, out.read_text(errors="replace"), err.read_text(errors="replace")
        )
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()}")
        return r

    def state(self, cid: str) -> dict[str, Any]:
        return self("state", cid).json

    def status(self, cid: str) -> str:
        return self.state(cid)["status"]

    def create(self, bundle: Bundle, cid: str, *extra: str) -> Result:
        return self("create", "--bundle", str(bundle.path), *extra, cid, stdout=bundle.out)

    def wait_status(self, cid: str, want: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while (got := self.status(cid)) != want:
            if time.monotonic() > deadline:
                raise AssertionError(f"{cid} stayed {got}, wanted {want}")
            time.sleep(0.02)


# --- leak inspection (also useful to other suites) ---------------------------------------------------


def cgroup_mounts() -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.split()[0] in ("cgroup", "cgroup2"):
                out.append(pre.split()[4])
    return out


def leaks(root: str, cgroup_parent: str, needle: str) -> list[str]:
    """What is left of a test: state dirs under ``root``, cgroups named ``cgroup_parent`` in any
    hierarchy, host mounts mentioning ``needle``, processes whose root or cwd is under it."""
    found = []
    if os.path.isdir(root) and os.listdir(root):
        found.append(f"state dirs: {os.listdir(root)}")
    for m in cgroup_mounts():
        if os.path.exists(os.path.join(m, cgroup_parent)):
            found.append(f"cgroup {m}/{cgroup_parent}")
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {ln.split()[4]}" for ln in f if needle in ln]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for link in ("root", "cwd"):
            try:
                if needle in os.readlink(f"/proc/{pid}/{link}"):
                    found.append(f"process {pid} ({link} {os.readlink(f'/proc/{pid}/{link}')})")
                    break
            except OSError:
                pass
    return found


@pytest.fixture
def oci(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Oci]:
    workerinput = getattr(request.config, "workerinput", None) or {}
    suffix = unique_suffix(workerinput.get("workerid", ""))
    runner = Oci(root=f"/run/isoproof-t{suffix}", cgroup_parent=f"isoproof-t{suffix}", tmp=tmp_path)
    yield runner
    for cid in dict.fromkeys(runner.created):
        runner("delete", "--force", cid, check=False)
    if not runner.is_ours:
        # runc removes a container's cgroup but not the (then empty) parent it created for it.
        for m in cgroup_mounts():
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(m, runner.cgroup_parent))
    left: list[str] = []
    deadline = time.monotonic() + 5
    while (
        left := leaks(runner.root, runner.cgroup_parent, str(tmp_path))
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    shutil.rmtree(runner.root, ignore_errors=True)
    assert not left, f"left behind: {left}"


@pytest.fixture(scope="session")
def busybox_rootfs() -> Path:
    from runtime.busybox import ensure_rootfs

    return ensure_rootfs()


@pytest.fixture
def bundle(oci: Oci, tmp_path: Path, busybox_rootfs: Path) -> Callable[..., Bundle]:
    """``bundle(args=[...], **top_level_or_linux_overrides)``. Keys in LINUX_KEYS go into
    ``linux``; ``process`` dicts are merged into ``process``; anything else replaces the top-level
    key. Each bundle has its own rootfs copy and cgroupsPath ``/<cgroup parent>/<bundle name>``."""
    from runtime.spec import default_spec

    count = 0

    def make(args: list[str] | None = None, process: dict[str, Any] | None = None,
             **overrides: Any) -> Bundle:  # fmt: skip
        nonlocal count
        count += 1
        path = tmp_path / f"bundle{count}"
        path.mkdir()
        shutil.copytree(busybox_rootfs, path / "rootfs", symlinks=True)
        cfg = default_spec()
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = args or ["sleep", "1000"]
        cfg["process"].update(process or {})
        cgroup = f"/{oci.cgroup_parent}/bundle{count}"
        cfg["linux"]["cgroupsPath"] = cgroup
        for k, v in overrides.items():
            if k in LINUX_KEYS:
                cfg["linux"][k] = v
            else:
                cfg[k] = v
        b = Bundle(path, cfg, cgroup)
        b.write()
        return b

    return make


LINUX_KEYS = {"namespaces", "uidMappings", "gidMappings", "maskedPaths", "readonlyPaths",
              "resources", "sysctl", "devices", "rootfsPropagation", "cgroupsPath"}  # fmt: skip
