"""Debian kernels for the VM legs: resolve with apt, download, verify, extract, reuse.

A metapackage (``linux-image-amd64``) depends on exactly one versioned image package; we follow that
edge with ``apt-cache depends``, take the candidate version from ``apt-cache policy`` and the
archive's SHA256 from ``apt-cache show PKG=VERSION``. The ``.deb`` is fetched with
``apt-get download`` (apt checks the archive signature chain), its sha256 is checked against the
archive's and recorded in a manifest next to the extracted tree. A later run reuses the tree when the
manifest records the same checksum, and re-verifies a cached ``.deb`` before extracting it again.

Layout under ``$ISOPROOF_CACHE/kernels`` (default ``/var/cache/isoproof/kernels``)::

    debs/<package>_<version>_amd64.deb
    trees/<package>_<version>/{boot/vmlinuz-<release>, lib/modules/<release>/, isoproof-kernel.json}

The guest sees the modules without anything written to the host's ``/lib/modules``: virtme-ng
walks up from the ``vmlinuz`` to the directory holding ``lib/modules``, runs ``depmod -b`` there
(inside our cache), and in the guest mounts a tmpfs on ``/lib/modules`` with a symlink
``/lib/modules/<release> -> <tree>/lib/modules/<release>`` (the guest's root is the host's filesystem,
so the cache path is visible there).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from verify.matrix.legs import KernelKind, LegSpec, MatrixError

MANIFEST = "isoproof-kernel.json"
MAX_METAPACKAGE_DEPTH = 4

# Runs an apt command (argv) in a directory and returns its stdout; raises MatrixError on failure.
# Injected so unit tests can feed recorded apt output.
AptRunner = Callable[[list[str], Path | None], str]


def cache_root() -> Path:
    return Path(os.environ.get("ISOPROOF_CACHE", "/var/cache/isoproof")) / "kernels"


def run_apt(argv: list[str], cwd: Path | None = None) -> str:
    env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as exc:
        raise MatrixError(f"{argv[0]} not found: the kernel matrix needs apt (Debian)") from exc
    except subprocess.TimeoutExpired as exc:
        raise MatrixError(f"{' '.join(argv)} timed out after 600 s") from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise MatrixError(f"{' '.join(argv)} failed (exit {proc.returncode}): {last}")
    return proc.stdout


# --- parsing apt's output (pure) -------------------------------------------------------------


def parse_depends(output: str) -> list[str]:
    """Package names on the ``Depends:`` lines of ``apt-cache depends`` (alternatives included)."""
    names = []
    for line in output.splitlines():
        m = re.match(r"^\s*\|?Depends:\s+(\S+)", line)
        if m and not m.group(1).startswith("<"):  # <virtual> packages have no archive file
            names.append(m.group(1))
    return names


def parse_candidate(output: str) -> str | None:
    """The ``Candidate:`` version from ``apt-cache policy`` (None when apt has none)."""
    m = re.search(r"^\s*Candidate:\s+(\S+)", output, re.MULTILINE)
    if not m or m.group(1) == "(none)":
        return None
    return m.group(1)


def parse_show(output: str) -> dict[str, str]:
    """The first stanza of ``apt-cache show``, as a dict of its (single-line) fields."""
    fields: dict[str, str] = {}
    for line in output.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        if line[0].isspace():  # continuation of a multi-line field (Description): not needed
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


@dataclass(frozen=True)
class PackageRef:
    """One versioned kernel package as the archive describes it."""

    requested: str  # what the user or alias named (maybe a metapackage)
    package: str
    version: str
    sha256: str
    filename: str  # pool path in the archive: its basename is the .deb apt-get download writes


def resolve_package(name: str, apt: AptRunner = run_apt) -> PackageRef:
    """Follow metapackages down to the versioned ``linux-image`` package that ships a kernel."""
    current = name
    refreshed = False
    for _ in range(MAX_METAPACKAGE_DEPTH):
        candidate = parse_candidate(apt(["apt-cache", "policy", current], None))
        if candidate is None and not refreshed:
            # A fresh machine's apt lists are empty: refresh them once, then ask again.
            apt(["apt-get", "update", "-qq"], None)
            refreshed = True
            candidate = parse_candidate(apt(["apt-cache", "policy", current], None))
        if candidate is None:
            raise MatrixError(
                f"apt has no candidate for {current!r} even after apt-get update "
                "(is the package name right, and is Debian's archive in apt's sources?)"
            )
        images = [d for d in parse_depends(apt(["apt-cache", "depends", current], None))]
        images = [d for d in images if d.startswith("linux-image-")]
        if not images:  # a real image package depends on kmod, initramfs-tools... not on an image
            fields = parse_show(apt(["apt-cache", "show", f"{current}={candidate}"], None))
            missing = [k for k in ("Package", "Version", "SHA256", "Filename") if k not in fields]
            if missing:
                raise MatrixError(f"apt-cache show {current}={candidate}: no {', '.join(missing)}")
            return PackageRef(
                requested=name,
                package=fields["Package"],
                version=fields["Version"],
                sha256=fields["SHA256"].lower(),
                filename=fields["Filename"],
            )
        current = images[0]
    raise MatrixError(f"{name!r}: more than {MAX_METAPACKAGE_DEPTH} levels of metapackages")


# --- the cache ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelTree:
    """A kernel ready to boot: the image, the release string, and where its modules live."""

    vmlinuz: Path
    release: str
    root: Path  # directory holding lib/modules/<release>
    package: str | None = None
    version: str | None = None
    deb_sha256: str | None = None

    def to_json(self) -> dict[str, str | None]:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def cache_lock(root: Path) -> Iterator[None]:
    """Serialise cache writers (two matrix runs at once) with an advisory lock file."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def tree_dir(root: Path, ref: PackageRef) -> Path:
    return root / "trees" / f"{ref.package}_{ref.version}".replace(":", "%3a")


def find_vmlinuz(tree: Path) -> tuple[Path, str]:
    """The kernel image and release in an extracted tree (``boot/vmlinuz-<release>``)."""
    images = sorted((tree / "boot").glob("vmlinuz-*"))
    if len(images) != 1:
        raise MatrixError(f"{tree}: expected one boot/vmlinuz-*, found {len(images)}")
    release = images[0].name.removeprefix("vmlinuz-")
    if not (tree / "lib" / "modules" / release).is_dir():
        raise MatrixError(f"{tree}: no lib/modules/{release} next to {images[0].name}")
    return images[0], release


def read_manifest(tree: Path) -> dict[str, str] | None:
    try:
        data = json.loads((tree / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def fetch_package(
    ref: PackageRef, root: Path | None = None, apt: AptRunner = run_apt
) -> KernelTree:
    """Download (or reuse), verify and extract ``ref``; return the tree to boot."""
    root = root or cache_root()
    with cache_lock(root):
        tree = tree_dir(root, ref)
        manifest = read_manifest(tree)
        if manifest and manifest.get("deb_sha256") == ref.sha256:
            vmlinuz, release = find_vmlinuz(tree)
            return KernelTree(vmlinuz, release, tree, ref.package, ref.version, ref.sha256)
        debs = root / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        deb = debs / Path(ref.filename).name
        if not deb.exists() or sha256_file(deb) != ref.sha256:
            deb.unlink(missing_ok=True)
            apt(["apt-get", "download", f"{ref.package}={ref.version}"], debs)
        if not deb.exists():
            raise MatrixError(f"apt-get download {ref.package}={ref.version} wrote no {deb.name}")
        digest = sha256_file(deb)
        if digest != ref.sha256:
            deb.unlink()
            raise MatrixError(
                f"{deb.name}: sha256 {digest} does not match the archive's {ref.sha256}; removed"
            )
        extract_deb(deb, tree)
        vmlinuz, release = find_vmlinuz(tree)
        record = {"package": ref.package, "version": ref.version, "deb": deb.name}
        record |= {"deb_sha256": digest, "release": release, "vmlinuz": str(vmlinuz)}
        (tree / MANIFEST).write_text(json.dumps(record, indent=2) + "\n")
        return KernelTree(vmlinuz, release, tree, ref.package, ref.version, digest)


def extract_deb(deb: Path, dest: Path) -> None:
    """``dpkg-deb -x`` into a temporary sibling, then rename: a crash never leaves half a tree."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".isoproof-extract-", dir=dest.parent))
    try:
        proc = subprocess.run(
            ["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise MatrixError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()}")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# Kernels from 6.11 on can be built without v1 support for some controllers; Debian's 6.12 is.
# A symbol that is "not set" removes that controller's v1 hierarchy (it still works on cgroup2);
# an older kernel has no such symbol and always offers v1.
V1_CONFIG_SYMBOLS = {"memory": "CONFIG_MEMCG_V1", "cpuset": "CONFIG_CPUSETS_V1"}


def v1_unavailable(config_text: str) -> list[str]:
    """Controllers a kernel with this .config cannot mount as cgroup v1 (pure)."""
    return sorted(
        ctrl for ctrl, sym in V1_CONFIG_SYMBOLS.items() if f"# {sym} is not set" in config_text
    )


def kernel_config(tree: KernelTree) -> str:
    """The kernel's .config from the package (``boot/config-<release>``), or "" if absent."""
    for candidate in (
        tree.root / "boot" / f"config-{tree.release}",
        tree.vmlinuz.parent / ".config",
    ):
        if candidate.is_file():
            return candidate.read_text(errors="replace")
    return ""


def local_kernel(path: str) -> KernelTree:
    """A kernel the user points at: a ``vmlinuz-<release>`` file or an extracted package tree."""
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        vmlinuz, release = find_vmlinuz(p)
        return KernelTree(vmlinuz, release, p)
    if not p.is_file():
        raise MatrixError(f"kernel {path!r} does not exist")
    release = p.name.removeprefix("vmlinuz-") if p.name.startswith("vmlinuz-") else ""
    # virtme-ng looks for lib/modules in the image's ancestors: mirror that to report the root.
    for parent in p.parents:
        mods = parent / "lib" / "modules"
        if mods.is_dir():
            if not release:
                found = [d.name for d in mods.iterdir() if d.is_dir()]
                release = found[0] if len(found) == 1 else ""
            return KernelTree(p, release or "unknown", parent)
    raise MatrixError(f"{path}: no lib/modules/ found beside or above the kernel image")


def kernel_for(spec: LegSpec, apt: AptRunner = run_apt, root: Path | None = None) -> KernelTree:
    if spec.kind is KernelKind.PACKAGE:
        return fetch_package(resolve_package(spec.kernel, apt), root, apt)
    if spec.kind is KernelKind.LOCAL:
        return local_kernel(spec.kernel)
    raise MatrixError(f"leg {spec.name!r} boots no kernel")
