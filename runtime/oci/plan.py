"""Pure conversions of a spec into what the children do: which namespaces to join (in which order)
and which to unshare. Unit-tested without root; the rootfs part of the plan is in ``rootfs.plan``."""

from __future__ import annotations

from runtime.spec import NAMESPACES, Spec

# Join order: the user namespace first (joining it grants the capabilities needed for the others),
# the mount namespace last (joining it changes our root, so paths opened later would resolve
# differently; we open every path before the first setns anyway).
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


def joins(spec: Spec) -> list[tuple[str, str]]:
    """(type, path) of each namespace to join, in join order."""
    by_type = {n.type: n.path for n in spec.linux.namespaces if n.path}
    return [(t, by_type[t]) for t in JOIN_ORDER if t in by_type]


def unshare_flags(spec: Spec) -> int:
    """CLONE_NEW* flags of the namespaces to create (the user one is unshared on its own first)."""
    flags = 0
    for n in spec.linux.namespaces:
        if n.path is None:
            flags |= NAMESPACES[n.type]
    return flags


# Device cgroup rules every container gets after the spec's own (runc's AllowedDevices): the
# default nodes, /dev/pts/* and /dev/ptmx. A spec usually starts with "deny all" and relies on these.
DEFAULT_DEVICE_RULES: tuple[dict[str, object], ...] = tuple(
    {"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
    for major, minor in (
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
        (136, None),
    )
)


def resources(spec: Spec) -> dict[str, object]:
    """linux.resources for the cgroup manager: the spec's, with the default device rules and one
    rule per linux.devices entry appended (only when the spec manages devices at all)."""
    res = dict(spec.linux.resources)
    if "devices" in res or spec.linux.devices:
        rules = list(res.get("devices") or [])
        for r in DEFAULT_DEVICE_RULES:
            rules.append({k: v for k, v in r.items() if v is not None})
        for d in spec.linux.devices:
            if d.type == "p":
                continue  # a fifo is not a device: the devices cgroup has no rule for it (runc)
            kind = "c" if d.type == "u" else d.type
            rules.append({"allow": True, "type": kind, "major": d.major, "minor": d.minor,
                          "access": "rwm"})  # fmt: skip
        res["devices"] = rules
    return res
