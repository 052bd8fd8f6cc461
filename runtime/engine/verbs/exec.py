"""Verbs on a running container's processes and terminal: exec, attach."""

from __future__ import annotations

import argparse

from runtime.engine import units
from runtime.engine.engine import RUNNING, Engine
from runtime.engine.flags import Parser, split_at_image
from runtime.engine.output import Fail, daemon


def cmd_attach(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof attach")
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("--sig-proxy", default="true")
    p.add_argument("container")
    a = p.parse_args(argv)
    cid = e.resolve(a.container)
    st = e.state(cid)
    if st["Status"] not in RUNNING:
        raise Fail("You cannot attach to a stopped container, start it first")
    if st["Status"] == "paused":
        raise Fail("You cannot attach to a paused container, unpause it first")
    cfg = e.store.config(cid)
    stdin = not a.no_stdin and bool(cfg["Config"].get("OpenStdin"))
    flags = 1 if stdin else 0
    if stdin and cfg["Config"].get("StdinOnce"):
        flags |= 2
    sock = e.connect(cid, flags)
    if sock is None:
        raise Fail("You cannot attach to a stopped container, start it first")
    return e.stream(cid, sock, stdin, bool(cfg["Config"].get("Tty")))


def cmd_exec(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof exec")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-u", "--user")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    opts, command = split_at_image(p, argv)
    a = p.parse_args(opts)
    a.command = list(a.command) + command
    if not a.command:
        raise units.FlagError("exec requires at least 2 arguments")
    cid = e.resolve(a.container)
    st = e.state(cid)
    if st["Status"] == "paused":
        raise daemon(f"Container {cid} is paused, unpause the container before exec")
    if st["Status"] != "running":
        raise daemon(f"Container {cid} is not running")
    from runtime.engine import execproc

    return execproc.run_exec(e.home, e.store, cid, a)
