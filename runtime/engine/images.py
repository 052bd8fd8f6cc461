"""The image store: the built-in busybox, ``import`` of rootfs tarballs, ``load`` of image archives.

An image is a directory ``images/<id>/`` with ``image.json`` (tags, config) and a flattened
``rootfs/``. Containers never write to it: it is the read-only lower layer of their overlayfs.
Layers of a ``docker save`` tarball or an OCI image layout are applied in order into the rootfs,
honouring whiteouts (``.wh.NAME`` deletes NAME from the layers below, ``.wh..wh..opq`` empties the
directory it is in).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from runtime.engine.home import Home, locked, now, read_json, write_json
from runtime.errors import IsoproofError, NotFoundError

# tarfile, hashlib, shutil, tempfile and runtime.busybox (subprocess) are imported where they are
# used: `run` and `inspect` load this module, only `import`/`load`/`rmi` and the first build of
# the busybox rootfs need them, and in an emulated VM they add ~0.13 s to each call.
TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    import tarfile
    from typing import Any

BUILTIN = "busybox"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


class ImageError(IsoproofError):
    pass


class NoSuchImage(NotFoundError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"Error: No such image: {ref}")


def normalize_tag(ref: str) -> str:
    """``busybox`` → ``busybox:latest`` (a tag is after the last ``:`` not followed by ``/``)."""
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return ref
    return f"{ref}:latest"


class Image:
    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.meta = meta

    @property
    def id(self) -> str:
        return str(self.meta["Id"])

    @property
    def rootfs(self) -> Path:
        return Path(self.meta.get("Rootfs") or self.path / "rootfs")

    @property
    def tags(self) -> list[str]:
        return list(self.meta.get("RepoTags", []))

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.meta.get("Config") or {})


class ImageStore:
    def __init__(self, home: Home) -> None:
        self.home = home
        self.lock = home.images / ".lock"

    def _builtin(self) -> Image:
        path = self.home.images / "busybox"
        meta_path = path / "image.json"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            meta = read_json(meta_path)
            if os.path.exists(os.path.join(meta["Rootfs"], "bin/busybox")):
                return Image(path, meta)  # the common case: recorded, and its rootfs is there
        from runtime.busybox import ensure_rootfs

        rootfs = ensure_rootfs()
        if not meta_path.exists():
            import hashlib

            digest = hashlib.sha256(b"isoproof-busybox:" + str(rootfs).encode()).hexdigest()
            path.mkdir(parents=True, exist_ok=True)
            write_json(
                meta_path,
                {
                    "Id": f"sha256:{digest}",
                    "RepoTags": [f"{BUILTIN}:latest"],
                    "Created": now(),
                    "Rootfs": str(rootfs),
                    "Builtin": True,
                    "Config": {"Cmd": ["sh"], "Env": DEFAULT_ENV},
                },
            )
        return Image(path, read_json(meta_path))

    def all(self) -> list[Image]:
        images = [self._builtin()]
        for d in sorted(self.home.images.iterdir()):
            if d.name == "busybox" or not (d / "image.json").exists():
                continue
            try:
                images.append(Image(d, read_json(d / "image.json")))
            except (OSError, ValueError):
                continue  # a half-written image (crashed import) is invisible
        return images

    def get(self, ref: str) -> Image:
        """By tag (``name`` means ``name:latest``), full ID, or unique ID prefix."""
        images = self.all()
        tag = normalize_tag(ref)
        for img in images:
            if tag in img.tags:
                return img
        bare = ref.removeprefix("sha256:")
        if len(bare) >= 1 and all(c in "0123456789abcdef" for c in bare):
            hits = [i for i in images if i.id.removeprefix("sha256:").startswith(bare)]
            if len(hits) == 1:
                return hits[0]
        raise NoSuchImage(ref)

    # -- adding images -----------------------------------------------------------------------------

    def _add(self, digest: str, tags: list[str], config: dict[str, Any], build: Any) -> Image:
        """Build a rootfs in a temp dir with ``build(rootfs)``, then move it in and retag."""
        import shutil
        import tempfile

        image_id = f"sha256:{digest}"
        with locked(self.lock):
            target = self.home.images / digest[:32]
            if not (target / "image.json").exists():
                tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=self.home.images))
                try:
                    (tmp / "rootfs").mkdir()
                    os.chmod(tmp / "rootfs", 0o755)
                    build(tmp / "rootfs")
                    env = config.get("Env") or DEFAULT_ENV
                    write_json(
                        tmp / "image.json",
                        {
                            "Id": image_id,
                            "RepoTags": [],
                            "Created": now(),
                            "Config": {**config, "Env": env},
                        },
                    )
                    if target.exists():
                        shutil.rmtree(target)
                    os.rename(tmp, target)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            for tag in tags:
                self._retag(normalize_tag(tag), target)
            return Image(target, read_json(target / "image.json"))

    def _retag(self, tag: str, target: Path) -> None:
        """A tag belongs to one image: move it from any other image to ``target``."""
        for d in self.home.images.iterdir():
            meta_path = d / "image.json"
            if d.name == "busybox" or not meta_path.exists():
                continue
            meta = read_json(meta_path)
            tags = meta.get("RepoTags", [])
            if d == target and tag not in tags:
                meta["RepoTags"] = tags + [tag]
                write_json(meta_path, meta)
            elif d != target and tag in tags:
                meta["RepoTags"] = [t for t in tags if t != tag]
                write_json(meta_path, meta)

    def import_tarball(self, source: Path, tag: str | None) -> Image:
        """``isoproof import FILE [REPO[:TAG]]``: one rootfs tarball becomes one image."""
        if tag and normalize_tag(tag).startswith(f"{BUILTIN}:"):
            raise ImageError(f"Error response from daemon: {BUILTIN} is a built-in image name")
        digest = _sha256_file(source)
        return self._add(
            digest, [tag] if tag else [], {"Cmd": None}, lambda r: apply_layer(source, r)
        )

    def load(self, source: Path) -> list[Image]:
        """``isoproof load -i FILE``: a ``docker save`` tarball or an OCI image layout (dir or tar)."""
        import tarfile
        import tempfile

        if source.is_dir():
            return self._load_dir(source)
        with tempfile.TemporaryDirectory(prefix=".load-", dir=self.home.images) as tmp:
            try:
                with tarfile.open(source) as tar:
                    _safe_extract(tar, Path(tmp), owners=False)
            except tarfile.TarError as e:
                raise ImageError(f"Error: invalid image archive {source}: {e}") from None
            return self._load_dir(Path(tmp))

    def _load_dir(self, d: Path) -> list[Image]:
        out = []
        if (d / "manifest.json").exists():  # docker save (older layout; newer also has index.json)
            for entry in read_json(d / "manifest.json"):
                config = read_json(d / entry["Config"]).get("config") or {}
                layers = [d / layer for layer in entry["Layers"]]
                digest = _sha256_file(d / entry["Config"])
                out.append(self._add_layers(digest, entry.get("RepoTags") or [], config, layers))
            return out
        if (d / "index.json").exists():  # OCI image layout
            index = read_json(d / "index.json")
            for desc in index.get("manifests", []):
                manifest = read_json(_blob(d, desc["digest"]))
                if "manifests" in manifest:  # a nested index: take its first (usually only) entry
                    manifest = read_json(_blob(d, manifest["manifests"][0]["digest"]))
                cfg_desc = manifest["config"]
                config = read_json(_blob(d, cfg_desc["digest"])).get("config") or {}
                layers = [_blob(d, layer["digest"]) for layer in manifest["layers"]]
                name = (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name")
                tags = (
                    [name if ":" in name else f"{name}:latest"]
                    if name and "/" not in name[:1]
                    else []
                )
                digest = cfg_desc["digest"].split(":", 1)[1]
                out.append(self._add_layers(digest, tags, config, layers))
            return out
        raise ImageError(f"Error: {d}: neither a docker save archive nor an OCI image layout")

    def _add_layers(
        self, digest: str, tags: list[str], config: dict[str, Any], layers: list[Path]
    ) -> Image:
        keep: dict[str, Any] = {
            k: config[k] for k in ("Cmd", "Entrypoint", "Env", "WorkingDir", "User") if k in config
        }

        def build(rootfs: Path) -> None:
            for layer in layers:
                apply_layer(layer, rootfs)

        return self._add(digest, tags, keep, build)

    def remove(self, ref: str, in_use: set[str]) -> list[str]:
        """``rmi``: drop a tag; the image goes when its last tag goes. Returns docker-style lines."""
        img = self.get(ref)
        if img.meta.get("Builtin"):
            raise ImageError(
                f"Error response from daemon: conflict: unable to remove the built-in image {ref}"
            )
        if img.id in in_use:
            raise ImageError(
                f'Error response from daemon: conflict: unable to remove repository reference "{ref}" '
                f"(must force) - a container is using its referenced image {img.id[7:19]}"
            )
        with locked(self.lock):
            tag = normalize_tag(ref)
            if tag in img.tags and len(img.tags) > 1:
                img.meta["RepoTags"] = [t for t in img.tags if t != tag]
                write_json(img.path / "image.json", img.meta)
                return [f"Untagged: {tag}"]
            lines = [f"Untagged: {t}" for t in img.tags]
            # Rename first so a crash mid-delete leaves an invisible directory, not a broken image.
            trash = img.path.with_name(f".rm-{img.path.name}")
            os.rename(img.path, trash)
            import shutil

            shutil.rmtree(trash, ignore_errors=True)
            lines.append(f"Deleted: {img.id}")
            return lines


def _blob(layout: Path, digest: str) -> Path:
    algo, _, hexd = digest.partition(":")
    path = layout / "blobs" / algo / hexd
    if not path.exists():
        raise ImageError(f"Error: image layout {layout} lacks blob {digest}")
    return path


def _sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise ImageError(f"Error: {path}: {e.strerror}") from None
    return h.hexdigest()


def _inside(root: Path, name: str) -> Path:
    """The path of a tar member under ``root``; refuse absolute names and ``..`` escapes."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"Error: layer member escapes the rootfs: {name}")
    return root.joinpath(*parts) if parts else root


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        import shutil

        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def apply_layer(layer: Path, rootfs: Path) -> None:
    """Apply one (possibly compressed) layer tarball on top of ``rootfs``, honouring whiteouts."""
    import tarfile

    try:
        tar = tarfile.open(layer, "r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as e:
        raise ImageError(f"Error: {layer}: not a tar archive ({e})") from None
    with tar:
        members = tar.getmembers()
        regular = []
        # Whiteouts delete what the layers *below* hold, so they go before this layer's files.
        for m in members:
            base = os.path.basename(m.name.rstrip("/"))
            parent = os.path.dirname(m.name.rstrip("/"))
            if base == OPAQUE:
                d = _inside(rootfs, parent)
                if d.is_dir():
                    for child in d.iterdir():
                        _remove(child)
            elif base.startswith(WHITEOUT):
                _remove(_inside(rootfs, os.path.join(parent, base[len(WHITEOUT) :])))
            else:
                regular.append(m)
        for m in regular:
            target = _inside(rootfs, m.name)
            # A file replaces whatever was there (a dir only replaces a non-dir).
            if target.is_symlink() or (target.exists() and not (m.isdir() and target.is_dir())):
                _remove(target)
        _extract(tar, regular, rootfs, owners=os.geteuid() == 0)


def _safe_extract(tar: tarfile.TarFile, dest: Path, owners: bool) -> None:
    members = tar.getmembers()
    for m in members:
        _inside(dest, m.name)
    _extract(tar, members, dest, owners)


def _extract(
    tar: tarfile.TarFile, members: list[tarfile.TarInfo], dest: Path, owners: bool
) -> None:
    import tarfile

    for m in members:
        if m.isdev() and os.geteuid() != 0:
            continue
        if m.islnk():
            _inside(dest, m.linkname)
    kwargs: dict[str, Any] = {"numeric_owner": owners}
    if hasattr(tarfile, "fully_trusted_filter"):
        # Layers legitimately hold absolute symlinks and device nodes: check names ourselves.
        kwargs["filter"] = "fully_trusted"
    tar.extractall(dest, members=members, **kwargs)


def dump_meta(img: Image) -> str:
    return json.dumps(img.meta)


def du(path: Path) -> int:
    """The bytes of the files under ``path`` (an image's size, as ``images`` and ``inspect`` show)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total
