"""Drive any runc-compatible binary (runc, crun, isoproof-oci) through its CLI.

The suite writes the bundle itself: a private copy of the busybox rootfs and a ``config.json`` built
from the :class:`ContainerSpec`. Networks are made by the suite, not the runtime: a netns under
``/run/netns`` that is handed to the runtime by path, with one end of a veth pair in it and the other
end in a second "peer" netns, so no traffic or route ever touches the host's own network.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from verify import host, measure
from verify.drivers.base import Container, Driver, RuntimeFailure, Unavailable, find_binary
from verify.spec import ContainerSpec, oci_config

CONTAINER_ADDR = "198.18.77.2"  # benchmarking range (RFC 2544); never routed, unused here
PEER_ADDR = "198.18.77.1"
PREFIXLEN = 30
NETNS_DIR = Path("/run/netns")


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def veth_names(name: str) -> tuple[str, str]:
    """Interface names are limited to 15 bytes: ``isoproof`` + 6 hex of the container name + a/b."""
    h = hashlib.sha1(name.encode()).hexdigest()[:6]
    return f"isoproof{h}a", f"isoproof{h}b"


# Per source rootfs: its directories, files, symlinks and symlinks-to-files, in copy order.
_ROOTFS_PLANS: dict[Path, list[tuple[str, str, str]]] = {}


def _rootfs_plan(src: Path) -> list[tuple[str, str, str]]:
    plan: list[tuple[str, str, str]] = []
    for d, dirs, files in os.walk(src):
        dirs.sort()
        rel = os.path.relpath(d, src)
        plan.append(("dir", rel, ""))
        for n in sorted(files + [x for x in dirs if os.path.islink(os.path.join(d, x))]):
            p = os.path.join(d, n)
            if not os.path.islink(p):
                plan.append(("file", os.path.join(rel, n), ""))
                continue
            target = os.readlink(p)
            real = os.path.realpath(p)
            inside = not os.path.isabs(target) and real.startswith(str(src) + os.sep)
            if inside and os.path.isfile(real):
                plan.append(("link", os.path.join(rel, n), os.path.relpath(real, src)))
            else:
                plan.append(("symlink", os.path.join(rel, n), target))
    # Hard links after every file they name exists.
    return sorted(plan, key=lambda op: op[0] == "link")


def copy_rootfs(src: Path, dst: Path) -> None:
    """A private copy of a rootfs in which every relative symlink to a regular file of the rootfs
    (busybox's ~270 applets) becomes a hard link to the copy's own file. Measured on these hosts'
    ext4: a symlink costs 0.4-3 ms to create, a link ~0.03 ms, and a copy is made for every
    container (~80 per host leg): shutil.copytree took 0.12-0.7 s per container. The container
    sees the same names, contents and modes; nothing is shared with the cache."""
    src = src.resolve()
    plan = _ROOTFS_PLANS.get(src)
    if plan is None:
        plan = _ROOTFS_PLANS[src] = _rootfs_plan(src)
    dirs = []
    for kind, rel, arg in plan:
        out = os.path.normpath(os.path.join(dst, rel))
        if kind == "dir":
            os.mkdir(out)
            dirs.append((os.path.join(src, rel), out))
        elif kind == "file":
            shutil.copy2(os.path.join(src, rel), out)
        elif kind == "symlink":
            os.symlink(arg, out)
        else:
            os.link(os.path.join(dst, arg), out)
    for s, d in reversed(dirs):  # modes and times last: filling a directory changes its mtime
        shutil.copystat(s, d)


# Per binary, for the session: a driver is made per check, and asking costs a start of the runtime.
_VERSIONS: dict[str, str] = {}


def _frozen(c: Container) -> bool:
    """Is the container's freezer cgroup frozen (or freezing)? False when it cannot be read."""
    try:
        return measure.freezer_state(c) != "THAWED"
    except (OSError, KeyError):
        return False


def _reap(c: Container, errors: list[str]) -> None:
    try:
        c.wait_exit(10)
    except TimeoutError as e:
        errors.append(str(e))


class OciDriver(Driver):
    kind = "oci"

    def __init__(
        self, label: str, binary: str, prefix: str, workdir: Path, cgroup_parent: str
    ) -> None:
        super().__init__(label, prefix, workdir)
        self.binary = find_binary(binary)
        self.state_root = workdir / f"state-{prefix}"
        self.cgroup_parent = cgroup_parent
        self._version: str | None = None

    # --- plumbing ----------------------------------------------------------------------------

    def _run(self, verb: str, *args: str, timeout: float = 30, check: bool = True, **kw):  # type: ignore[no-untyped-def]
        cmd = [self.binary, "--root", str(self.state_root), verb, *args]
        kw.setdefault("capture_output", "stdout" not in kw)
        t0 = time.monotonic()
        try:
            timeout *= host.slowdown()
            r = subprocess.run(cmd, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)
        except subprocess.TimeoutExpired as e:
            self.record(cmd, None, f"timed out after {timeout}s", t0)
            raise RuntimeFailure(verb, None, f"timed out after {timeout}s") from e
        err = r.stderr or ""
        if verb == "create" and "stderr" in kw:  # create's stderr went to a file (see create)
            with contextlib.suppress(OSError):
                err = Path(kw["stderr"].name).read_text()
        self.record(cmd, r.returncode, err, t0)
        if check and r.returncode != 0:
            raise RuntimeFailure(verb, r.returncode, err)
        return r

    def check_available(self) -> None:
        if not (os.path.isfile(self.binary) and os.access(self.binary, os.X_OK)):
            raise Unavailable(f"needs an OCI runtime binary at {self.binary!r}; none there")

    def version(self) -> str:
        if self._version is None:
            self._version = _VERSIONS.get(self.binary)
        if self._version is None:
            try:
                out = subprocess.run([self.binary, "--version"], capture_output=True, text=True,
                                     timeout=10).stdout  # fmt: skip
                self._version = out.strip().splitlines()[0] if out.strip() else "unknown"
            except OSError as e:
                self._version = f"unavailable ({e})"
            _VERSIONS[self.binary] = self._version
        return self._version

    # --- create ------------------------------------------------------------------------------

    def _make_rootfs(self, bundle: Path, spec: ContainerSpec) -> Path:
        from runtime.busybox import ensure_rootfs

        rootfs = bundle / "rootfs"
        # A private copy: checks write into it (adduser, page-cache files) and the cache stays clean.
        copy_rootfs(ensure_rootfs(), rootfs)
        if spec.uid_map:
            # Root inside is host uid hostID: give it the files it would own on a real image.
            uid0 = spec.uid_map[0][1]
            gid0 = (spec.gid_map or spec.uid_map)[0][1]
            for dirpath, dirnames, filenames in os.walk(rootfs):
                for n in [dirpath, *(os.path.join(dirpath, x) for x in dirnames + filenames)]:
                    os.lchown(n, uid0, gid0)
        return rootfs

    def _make_network(self, c_name: str) -> dict[str, str]:
        ns, peer = f"{c_name}", f"{c_name}-peer"
        va, vb = veth_names(c_name)
        net = {"netns": ns, "peer_ns": peer, "veth": va, "peer_veth": vb,
               "addr": CONTAINER_ADDR, "peer_addr": PEER_ADDR}  # fmt: skip
        _ip("netns", "add", ns)
        _ip("netns", "add", peer)
        _ip("link", "add", va, "type", "veth", "peer", "name", vb)
        _ip("link", "set", va, "netns", ns)
        _ip("link", "set", vb, "netns", peer)
        for n, dev, addr in ((ns, va, CONTAINER_ADDR), (peer, vb, PEER_ADDR)):
            _ip("-n", n, "addr", "add", f"{addr}/{PREFIXLEN}", "dev", dev)
            _ip("-n", n, "link", "set", dev, "up")
            _ip("-n", n, "link", "set", "lo", "up")
        return net

    @staticmethod
    def _remove_network(net: dict[str, str]) -> None:
        for key in ("netns", "peer_ns"):
            if key in net and (NETNS_DIR / net[key]).exists():
                # Deleting the namespaces deletes the veth pair with them.
                subprocess.run(["ip", "netns", "del", net[key]], capture_output=True, timeout=15)

    def create(self, spec: ContainerSpec, start: bool = True) -> Container:
        self.check_available()
        name = self.new_name()
        bundle = self.workdir / name
        bundle.mkdir(parents=True)
        self.state_root.mkdir(parents=True, exist_ok=True)
        c = Container(driver=self, name=name, spec=spec, pid=0, bundle=bundle)
        self.containers.append(c)
        self.created.append(c)
        try:
            rootfs = self._make_rootfs(bundle, spec)
            ns_paths: dict[str, str] = {}
            for ns, how in spec.namespaces.items():
                if isinstance(how, Container):
                    ns_paths[ns] = f"/proc/{how.pid}/ns/{ns}"
                elif isinstance(how, str) and how.startswith("/"):
                    ns_paths[ns] = how
            if spec.network == "veth" and spec.namespaces.get("net") == "new":
                c.net = self._make_network(name)
                ns_paths["net"] = str(NETNS_DIR / c.net["netns"])
            cfg = oci_config(spec, str(rootfs), f"/{self.cgroup_parent}/{name}", ns_paths)
            (bundle / "config.json").write_text(json.dumps(cfg, indent=2))
            pidfile = bundle / "init.pid"
            with open(bundle / "stdout.log", "w") as out, open(bundle / "stderr.log", "w") as err:
                # create hands its stdio to the container, so give it files, never pipes: a pipe
                # held open by the container would block us until the container exits.
                r = self._run("create", "--bundle", str(bundle), "--pid-file", str(pidfile), name,
                              stdout=out, stderr=err, capture_output=False, check=False)  # fmt: skip
            if r.returncode != 0:
                raise RuntimeFailure("create", r.returncode, (bundle / "stderr.log").read_text())
            c.pid = int(pidfile.read_text().strip())
            c.cgroups = host.cgroup_dirs(c.pid)
            if start:
                self.start(c)
        except BaseException:
            self.remove(c)
            raise
        return c

    @staticmethod
    def _cmdline(c: Container) -> bytes | None:
        try:
            return Path(f"/proc/{c.pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            return None

    def _wait_exec(self, c: Container, before: bytes | None, timeout: float = 10) -> None:
        """Wait until init has exec'd the workload (argv[0] is the spec's, or the command line is
        no longer the runtime init's from before start), so probes see the container as it runs,
        not the runtime's init code. The second test matters for ``sh -c '...; exec X'``: once
        the shell has exec'd X, argv[0] is X's, which was waited for in vain (10 s) before."""
        want = c.spec.args[0]
        deadline = time.monotonic() + timeout * host.slowdown()
        while time.monotonic() < deadline:
            now = self._cmdline(c)
            if now is None:
                return  # already exited (a short workload)
            argv0 = now.split(b"\0")[0].decode()
            if os.path.basename(argv0) == os.path.basename(want) or now != before or not c.alive():
                return
            time.sleep(0.01)

    # --- verbs -------------------------------------------------------------------------------

    def start(self, c: Container) -> None:
        before = self._cmdline(c)  # the runtime's init, waiting for start
        self._run("start", c.name)
        self._wait_exec(c, before)

    def delete(self, c: Container, force: bool = False) -> None:
        self._run("delete", *(["--force"] if force else []), c.name)

    def exec_argv(self, c: Container, args: list[str]) -> list[str]:
        return [self.binary, "--root", str(self.state_root), "exec", c.name, *args]

    def exec(self, c: Container, args: list[str], timeout: float = 30) -> tuple[int, str, str]:
        r = self._run("exec", c.name, *args, timeout=timeout, check=False)
        return r.returncode, r.stdout, r.stderr

    def state(self, c: Container) -> str:
        r = self._run("state", c.name)
        return str(json.loads(r.stdout)["status"])

    def kill(self, c: Container, signal: str = "KILL") -> None:
        self._run("kill", c.name, signal)

    def pause(self, c: Container) -> None:
        self._run("pause", c.name)

    def resume(self, c: Container) -> None:
        self._run("resume", c.name)

    def remove(self, c: Container) -> None:
        if c.removed:
            return
        errors: list[str] = []
        # SIGKILL from here, not through the runtime's kill verb: the suite knows the init's host
        # PID, and a verb costs a start of the runtime (~89 containers a leg; the verb itself is
        # checked by test_lifecycle_state_machine). Left to delete --force instead: an init that
        # no longer sits in its cgroups (a reused PID) and a frozen one (it dies once thawed).
        live = bool(c.pid) and c.exit_status is None and c.alive()
        direct = live and host.cgroup_dirs(c.pid) == c.cgroups and not _frozen(c)
        if direct:
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.pid, signal.SIGKILL)
        if c.pid and c.exit_status is None and (direct or not live):
            _reap(c, errors)  # dead or dying: reaped (its status kept) before the delete
        if (self.state_root / c.name).exists():
            r = self._run("delete", "--force", c.name, check=False)
            if r.returncode != 0:
                errors.append(f"delete: {r.stderr.strip()}")
        if live and not direct:
            _reap(c, errors)  # delete --force killed it
        self._remove_network(c.net)
        if c.bundle and c.bundle.exists():
            shutil.rmtree(c.bundle, ignore_errors=True)
        c.removed = True
        if c in self.containers:
            self.containers.remove(c)
        if errors:
            raise RuntimeFailure("delete", None, "; ".join(errors))
