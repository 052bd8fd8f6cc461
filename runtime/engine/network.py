"""Bridge networking with pyroute2: one bridge, a veth pair per container, a file-locked allocator.

The bridge (``isoproof0``, or ``$ISOPROOF_BRIDGE``) carries the gateway address of the subnet
(``$ISOPROOF_SUBNET``, default 172.29.0.0/16: outside the ranges docker, podman and libvirt pick).
Each container gets ``isoproof<id[:7]>`` on the host side, enslaved to the bridge, and ``eth0``
inside its network namespace with the next free address and a default route via the gateway.
Nothing here enables ``ip_forward`` or NAT: containers reach each other and the host, not beyond.

Only this module imports pyroute2 (it is slow to import), and only the CLI loads it: the monitor
releases a container's network with :func:`release`, which needs no netlink.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.engine.home import Home, locked, read_json, write_json
from runtime.errors import NetworkError

DEFAULT_BRIDGE = "isoproof0"
DEFAULT_SUBNET = "172.29.0.0/16"
ENV_BRIDGE = "ISOPROOF_BRIDGE"
ENV_SUBNET = "ISOPROOF_SUBNET"
IFNAMSIZ = 15
VETH_PREFIX = "isoproof"


def bridge_name() -> str:
    name = os.environ.get(ENV_BRIDGE, DEFAULT_BRIDGE)
    if len(name) > IFNAMSIZ or not name.startswith(VETH_PREFIX):
        raise NetworkError(
            f"bridge name {name!r} must start with {VETH_PREFIX} and fit in {IFNAMSIZ}"
        )
    return name


def subnet() -> ipaddress.IPv4Network:
    text = os.environ.get(ENV_SUBNET, DEFAULT_SUBNET)
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as e:
        raise NetworkError(f"invalid {ENV_SUBNET} {text!r}: {e}") from None
    if net.prefixlen > 30:
        raise NetworkError(f"subnet {net} is too small")
    return net


def host_veth(cid: str) -> str:
    return f"{VETH_PREFIX}{cid[: IFNAMSIZ - len(VETH_PREFIX)]}"


def peer_veth(cid: str) -> str:
    return f"{VETH_PREFIX}p{cid[: IFNAMSIZ - len(VETH_PREFIX) - 1]}"


def mac_for(ip: ipaddress.IPv4Address) -> str:
    """docker's scheme: 02:42 followed by the four bytes of the address (locally administered)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


# -- the allocator --------------------------------------------------------------------------------


def allocate(home: Home, cid: str, net: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The lowest free host address after the gateway, recorded in ``ipam.json`` under a lock."""
    with locked(home.ipam_lock):
        table: dict[str, dict[str, str]] = (
            read_json(home.ipam_file) if home.ipam_file.exists() else {}
        )
        used = table.setdefault(str(net), {})
        for addr, owner in used.items():
            if owner == cid:
                return ipaddress.IPv4Address(addr)
        gateway = next(net.hosts())
        for ip in net.hosts():
            if ip != gateway and str(ip) not in used:
                used[str(ip)] = cid
                write_json(home.ipam_file, table)
                return ip
    raise NetworkError(f"no free address left in {net}")


def release(home: Home, cid: str) -> None:
    """Free the container's address and delete its host veth end (idempotent, no pyroute2)."""
    with locked(home.ipam_lock):
        if home.ipam_file.exists():
            table = read_json(home.ipam_file)
            for used in table.values():
                for ip in [ip for ip, owner in used.items() if owner == cid]:
                    del used[ip]
            write_json(home.ipam_file, table)
    veth = host_veth(cid)
    if Path(f"/sys/class/net/{veth}").exists():
        subprocess.run(["ip", "link", "del", "dev", veth], capture_output=True)


# -- removing the bridge -------------------------------------------------------------------------


def bridge_ports(bridge: str) -> list[str]:
    """Interfaces enslaved to ``bridge`` (none if it does not exist), as the kernel lists them."""
    try:
        return sorted(os.listdir(f"/sys/class/net/{bridge}/brif"))
    except FileNotFoundError:
        return []


def prune(home: Home, exists: Callable[[str], bool], name_of: Callable[[str], str]) -> bool:
    """Remove the bridge and the subnet's allocator entries if no container uses them.

    In use: an address in the allocator held by a container that ``exists``, or any interface on
    the bridge (a container's veth, or one we do not know: refused too, rather than cut off).
    Addresses held by containers that are gone are stale and go with the rest. Runs under the
    allocator's lock, which ``connect`` holds while it makes the bridge and plugs a veth into
    it: a concurrent ``run`` either is seen here or recreates the bridge after us.
    Returns whether there was a bridge to remove; raises :class:`NetworkError` naming the users.
    """
    bridge, net = bridge_name(), subnet()
    with locked(home.ipam_lock):
        table: dict[str, dict[str, str]] = (
            read_json(home.ipam_file) if home.ipam_file.exists() else {}
        )
        owners = sorted({cid for cid in table.get(str(net), {}).values() if exists(cid)})
        ours = {host_veth(cid) for cid in owners}
        users = [name_of(cid) for cid in owners]
        users += [port for port in bridge_ports(bridge) if port not in ours]
        if users:
            raise NetworkError(f"network {bridge} has active endpoints: {', '.join(users)}")
        present = os.path.exists(f"/sys/class/net/{bridge}")
        if present:
            cp = subprocess.run(
                ["ip", "link", "del", "dev", bridge], capture_output=True, text=True
            )
            if cp.returncode != 0 and os.path.exists(f"/sys/class/net/{bridge}"):
                raise NetworkError(f"cannot remove bridge {bridge}: {cp.stderr.strip()}")
        table.pop(str(net), None)
        if table:
            write_json(home.ipam_file, table)
        else:
            home.ipam_file.unlink(missing_ok=True)
    return present


# -- the bridge and the veth pair ---------------------------------------------------------------


def _ensure_bridge(ipr: Any, name: str, gateway: ipaddress.IPv4Address, prefix: int) -> int:
    links = ipr.link_lookup(ifname=name)
    if not links:
        try:
            ipr.link("add", ifname=name, kind="bridge")
        except Exception as e:  # noqa: BLE001 - a concurrent CLI may have made it first
            if not ipr.link_lookup(ifname=name):
                raise NetworkError(f"cannot create bridge {name}: {e}") from None
        links = ipr.link_lookup(ifname=name)
    idx = int(links[0])
    have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx, family=2)}
    if str(gateway) not in have:
        ipr.addr("add", index=idx, address=str(gateway), prefixlen=prefix)
    ipr.link("set", index=idx, state="up")
    return idx


def connect(home: Home, cid: str, netns_path: str, hostname: str) -> dict[str, Any]:
    """Give the namespace at ``netns_path`` an eth0 on the bridge. Returns NetworkSettings."""
    from pyroute2 import IPRoute

    net = subnet()
    bridge = bridge_name()
    gateway = next(net.hosts())
    ip = allocate(home, cid, net)
    mac = mac_for(ip)
    veth, peer = host_veth(cid), peer_veth(cid)
    try:
        with locked(home.ipam_lock), IPRoute() as ipr:
            br = _ensure_bridge(ipr, bridge, gateway, net.prefixlen)
            ipr.link("add", ifname=veth, kind="veth", peer=peer)
            (vidx,) = ipr.link_lookup(ifname=veth)
            (pidx,) = ipr.link_lookup(ifname=peer)
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                ipr.link("set", index=pidx, net_ns_fd=fd)
            finally:
                os.close(fd)
            ipr.link("set", index=vidx, master=br, state="up")
        with IPRoute(netns=netns_path) as ns:
            (pidx,) = ns.link_lookup(ifname=peer)
            ns.link("set", index=pidx, ifname="eth0", address=mac)
            ns.addr("add", index=pidx, address=str(ip), prefixlen=net.prefixlen)
            ns.link("set", index=pidx, state="up")
            (lo,) = ns.link_lookup(ifname="lo")
            ns.link("set", index=lo, state="up")
            ns.route("add", dst="0.0.0.0/0", gateway=str(gateway))
    except NetworkError:
        release(home, cid)
        raise
    except Exception as e:  # noqa: BLE001 - netlink errors: roll back and say what failed
        release(home, cid)
        raise NetworkError(f"network setup for {cid[:12]} failed: {e}") from None
    return {
        "Bridge": bridge,
        "IPAddress": str(ip),
        "IPPrefixLen": net.prefixlen,
        "Gateway": str(gateway),
        "MacAddress": mac,
        "HostVeth": veth,
        "Networks": {
            "bridge": {
                "IPAddress": str(ip),
                "Gateway": str(gateway),
                "IPPrefixLen": net.prefixlen,
                "MacAddress": mac,
            }
        },
    }


def lo_up(netns_path: str) -> None:
    """``--network none``: only loopback, but up (as docker leaves it)."""
    cp = subprocess.run(
        ["nsenter", f"--net={netns_path}", "ip", "link", "set", "lo", "up"],
        capture_output=True,
        text=True,
    )
    if cp.returncode != 0:
        raise NetworkError(f"cannot bring up lo: {cp.stderr.strip()}")
