"""Runtime drivers, chosen with ``--runtime``: ``oci:PATH``, ``isoproof``, ``docker``, ``podman``."""

from __future__ import annotations

from pathlib import Path

from verify.drivers.base import Container, Driver, RuntimeFailure, Unavailable

__all__ = ["Container", "Driver", "RuntimeFailure", "Unavailable", "make_driver", "label_id"]


def label_id(label: str) -> str:
    """A short test id for a runtime label: ``oci:/usr/sbin/runc`` -> ``oci-runc``."""
    if label.startswith("oci:"):
        return "oci-" + Path(label[4:]).name
    return label


def make_driver(label: str, prefix: str, workdir: Path, cgroup_parent: str) -> Driver:
    if label.startswith("oci:"):
        from verify.drivers.oci import OciDriver

        path = label[4:]
        if not path:
            raise ValueError("--runtime oci:PATH needs a path to a runc-compatible binary")
        return OciDriver(label, path, prefix, workdir, cgroup_parent)
    if label in ("isoproof", "docker", "podman"):
        from verify.drivers.cli import DockerLikeDriver

        return DockerLikeDriver(label, label, prefix, workdir, cgroup_parent)
    raise ValueError(f"unknown runtime {label!r}: use oci:PATH, isoproof, docker or podman")
