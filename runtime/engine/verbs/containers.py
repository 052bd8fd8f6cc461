"""Lifecycle verbs: create, run, start, stop, restart, kill, pause, unpause, rm, wait."""

from __future__ import annotations

import signal

from runtime.engine.engine import STOP_TIMEOUT, Engine
from runtime.engine.flags import Parser, add_container_flags, parse_container_args
from runtime.engine.output import Fail, daemon, each
from runtime.engine.store import NoSuchContainer
from runtime.errors import NotFoundError


def cmd_create(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof create", add_help=False)
    add_container_flags(p)
    a = parse_container_args(p, argv)
    print(e.create(a))
    return 0


def cmd_run(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof run", add_help=False)
    add_container_flags(p)
    a = parse_container_args(p, argv)
    cid = e.create(a, owner=True)
    try:
        if a.detach:
            e.start(cid)
            print(cid)
            return 0
        code = e.start(cid, attach=True, stdin=a.interactive)
    except Fail as err:
        if a.rm:
            _quiet_remove(e, cid)
        err.exit_code = 125 if err.exit_code == 1 else err.exit_code
        raise
    if a.rm:
        e.wait_monitor_gone(cid)
        _quiet_remove(e, cid)
    return int(code or 0)


def _quiet_remove(e: Engine, cid: str) -> None:
    try:
        if e.store.dir(cid).exists():
            e.remove(cid, cid, force=True, volumes=True)
    except (NotFoundError, FileNotFoundError):
        pass


def cmd_start(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof start")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    if a.attach:
        if len(a.containers) > 1:
            raise Fail("Error: you cannot start and attach multiple containers at once")
        cid = e.resolve(a.containers[0])
        code = e.start(cid, attach=True, stdin=a.interactive)
        return int(code or 0)

    def one(ref: str) -> None:
        e.start(e.resolve(ref))
        print(ref)

    return each(a.containers, one)


def cmd_stop(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof stop")
    p.add_argument("-t", "--time", "--timeout", type=int, default=None)
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)

    def one(ref: str) -> None:
        e.stop(e.resolve(ref), STOP_TIMEOUT if a.time is None else a.time)
        print(ref)

    return each(a.containers, one)


def cmd_restart(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof restart")
    p.add_argument("-t", "--time", "--timeout", type=int, default=None)
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)

    def one(ref: str) -> None:
        cid = e.resolve(ref)
        e.stop(cid, STOP_TIMEOUT if a.time is None else a.time)
        e.wait_monitor_gone(cid)
        e.start(cid)
        print(ref)

    return each(a.containers, one)


def cmd_kill(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof kill")
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    sig = a.signal.upper()
    if not sig.isdigit() and not hasattr(
        signal.Signals, sig if sig.startswith("SIG") else f"SIG{sig}"
    ):
        raise Fail(f"invalid signal: {a.signal}")

    def one(ref: str) -> None:
        e.kill(e.resolve(ref), sig.removeprefix("SIG"), ref)
        print(ref)

    return each(a.containers, one)


def cmd_pause(e: Engine, argv: list[str], resume: bool = False) -> int:
    p = Parser(prog="isoproof unpause" if resume else "isoproof pause")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)

    def one(ref: str) -> None:
        cid = e.resolve(ref)
        with e.oplock(cid):
            st = e.state(cid)
            if resume:
                if st["Status"] != "paused":
                    raise daemon(f"Container {cid} is not paused")
                e.runtime(cid).resume(cid)
                e.store.update(cid, Status="running", Paused=False)
            else:
                if st["Status"] == "paused":
                    raise daemon(f"Container {cid} is already paused")
                if st["Status"] != "running":
                    raise daemon(f"Container {cid} is not running")
                e.runtime(cid).pause(cid)
                e.store.update(cid, Status="paused", Paused=True)
        print(ref)

    return each(a.containers, one)


def cmd_unpause(e: Engine, argv: list[str]) -> int:
    return cmd_pause(e, argv, resume=True)


def cmd_rm(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof rm")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    from runtime.engine.damage import sweep_temp

    sweep_temp(e.home)

    def one(ref: str) -> None:
        try:
            cid = e.resolve(ref)
        except NoSuchContainer:
            if not (a.force and _remove_leftovers(e, ref)):
                raise
            print(ref)
            return
        e.remove(cid, ref, a.force, a.volumes)
        print(ref)

    return each(a.containers, one)


def _remove_leftovers(e: Engine, ref: str) -> bool:
    """``rm -f ID`` of a container whose directory is gone: remove what still holds its ID (a
    unique prefix of at least 12 characters names it, as the netns does)."""
    from runtime.engine import damage

    if len(ref) < 12 or not all(ch in "0123456789abcdef" for ch in ref):
        return False
    hits = [cid for cid in damage.orphans(e.home, e.store) if cid.startswith(ref[:64])]
    hits += [c for c in damage.orphans(e.home, e.store) if ref.startswith(c) and c not in hits]
    if len(hits) != 1:
        return False
    damage.scrub(e.home, hits[0])
    return True


def cmd_wait(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof wait")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)

    def one(ref: str) -> None:
        cid = e.resolve(ref)
        e.wait_exit(cid, None)
        print(e.store.state(cid)["ExitCode"], flush=True)

    return each(a.containers, one)
