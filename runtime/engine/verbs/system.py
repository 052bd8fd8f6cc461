"""Host-wide verbs: network (ls, prune) and system prune."""

from __future__ import annotations

import contextlib
import sys

from runtime.engine.engine import RUNNING, Engine
from runtime.engine.flags import Parser
from runtime.engine.output import daemon, table
from runtime.engine.store import DamagedContainer, monitor_alive
from runtime.errors import IsoproofError, NotFoundError

# docker's three predefined networks, which are the values --network takes. Only "bridge" is a
# device of ours (isoproof0 or $ISOPROOF_BRIDGE); it is made by the first container that needs it.
NETWORK_DRIVERS = {"bridge": "bridge", "host": "host", "none": "null"}


def network_id(name: str) -> str:
    """A stable docker-shaped ID: we keep no network records to hold a random one."""
    import hashlib

    return hashlib.sha256(f"isoproof-network:{name}".encode()).hexdigest()


def cmd_network(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof network")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=Parser)
    ls = sub.add_parser("ls", aliases=["list"], prog="isoproof network ls")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("--no-trunc", action="store_true")
    prune = sub.add_parser("prune", prog="isoproof network prune")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    a = p.parse_args(argv)
    if a.verb in ("ls", "list"):
        rows = []
        for name, driver in NETWORK_DRIVERS.items():
            nid = network_id(name)
            rows.append([nid if a.no_trunc else nid[:12], name, driver, "local"])
        if a.quiet:
            for r in rows:
                print(r[0])
        else:
            print(table(rows, ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]))
        return 0
    return _network_prune(e, a.force)


def _network_prune(e: Engine, force: bool) -> int:
    """docker network prune, for our one bridge: remove it and its allocator state unless a
    container uses it. Unlike docker, which skips a network in use, we say who holds it (exit 1):
    there is only one network to prune, so "nothing pruned" would hide why."""
    from runtime.engine import network as net
    from runtime.errors import NetworkError

    if not force:
        print("WARNING! This will remove the bridge network if no container uses it.")
        print("Are you sure you want to continue? [y/N] ", end="", flush=True)
        answer = sys.stdin.readline()
        if not answer:
            print()  # end the prompt's line when stdin had nothing to say
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    # Containers whose monitor died still hold an address until something repairs them.
    for cid in e.store.ids():
        with contextlib.suppress(NotFoundError):
            e.state(cid)

    def name_of(cid: str) -> str:
        try:
            return str(e.store.config(cid)["Name"]).lstrip("/")
        except (NotFoundError, KeyError):
            return cid[:12]

    try:
        removed = net.prune(e.home, lambda cid: e.store.dir(cid).exists(), name_of)
    except NetworkError as err:
        raise daemon(str(err)) from None
    if removed:
        print(f"Deleted Networks:\n{net.bridge_name()}")
    return 0


def cmd_system(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof system")
    sub = p.add_subparsers(dest="sub", required=True)
    pr = sub.add_parser("prune", prog="isoproof system prune")
    pr.add_argument("-f", "--force", action="store_true")
    a = p.parse_args(argv)
    if not a.force:
        print(
            "WARNING! This will remove:\n  - all stopped containers\n  - all damaged containers\n"
            "  - what removed containers left behind (cgroups, network namespaces, processes,\n"
            "    runtime state, addresses, half-made directories)\n"
            "  - the bridge network if no container uses it\n"
            "Are you sure you want to continue? [y/N] ",
            end="",
            flush=True,
        )
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    return system_prune(e)


def system_prune(e: Engine) -> int:
    """docker's ``system prune`` for containers and the network, plus what only a crash leaves:
    damaged containers and the resources of containers whose directory is gone."""
    from runtime.engine import damage
    from runtime.engine import network as net
    from runtime.errors import NetworkError

    try:  # a bad $ISOPROOF_BRIDGE or $ISOPROOF_SUBNET: refused before anything is removed
        bridge, _net = net.bridge_name(), net.subnet()
    except NetworkError as err:
        raise daemon(str(err)) from None

    deleted, rc = [], 0
    for cid in e.store.ids():
        try:
            with e.oplock(cid):
                try:
                    st = e.state(cid)
                except DamagedContainer:
                    damage.scrub(e.home, cid, damage.config_or_none(e.store, cid))
                    deleted.append(cid)
                    continue
                except NotFoundError:  # a --rm container nobody was left to remove: done now
                    deleted.append(cid)
                    continue
                if st["Status"] in RUNNING or monitor_alive(st, cid):
                    continue
                lifecycle_remove(e, cid)
                deleted.append(cid)
        except (NotFoundError, FileNotFoundError):
            continue
        except IsoproofError as err:
            print(str(err), file=sys.stderr)
            rc = 1
    leftovers = damage.orphans(e.home, e.store)
    for cid in sorted(leftovers):
        damage.scrub(e.home, cid)
    swept = damage.sweep_temp(e.home)
    # The bridge (isoproof0, or a test home's own $ISOPROOF_BRIDGE) and its lease files, unless a
    # container of any home uses it: as docker's prune, a network in use is skipped, not an error.
    try:
        bridge_gone = net.prune(e.home, lambda cid: e.store.dir(cid).exists(), str, busy_ok=True)
    except IsoproofError as err:
        print(str(err), file=sys.stderr)
        bridge_gone, rc = False, 1
    net.sweep_lease_locks()  # of bridges removed without a prune: nothing to show, no state
    if deleted:
        print("Deleted Containers:\n" + "\n".join(deleted))
    if leftovers:
        print("Deleted leftovers of removed containers:")
        for cid, sources in sorted(leftovers.items()):
            print(f"{cid}: {', '.join(sources)}")
    if swept:
        print("Deleted half-made directories:\n" + "\n".join(swept))
    if bridge_gone:
        print(f"Deleted Networks:\n{bridge}")
    return rc


def lifecycle_remove(e: Engine, cid: str) -> None:
    from runtime.engine import lifecycle

    lifecycle.remove(e.home, cid, volumes=False)
