"""Verbs that look: ps, inspect, logs, top, stats."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from runtime import cjson
from runtime.engine import units
from runtime.engine.engine import RUNNING, Engine
from runtime.engine.flags import Parser
from runtime.engine.home import parse_time
from runtime.engine.output import daemon, render, status_text, table
from runtime.engine.store import DamagedContainer, monitor_alive
from runtime.errors import IsoproofError, NotFoundError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any


def cmd_ps(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof ps")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format")
    a = p.parse_args(argv)
    from runtime.engine.damage import sweep_temp

    sweep_temp(e.home)  # what a create or rm killed mid-way left aside (only of dead writers)
    entries = []
    for cid in e.store.ids():
        try:
            cfg, st = e.store.config(cid), e.state(cid)
        except NotFoundError:
            continue
        except DamagedContainer as err:
            from runtime.engine import damage

            cfg, st = damage.view(e.home, e.store, cid, err)
        if not a.all and st["Status"] not in RUNNING:
            continue
        entries.append((cfg, st))
    entries.sort(key=lambda x: x[0]["Created"], reverse=True)
    if a.quiet:
        for cfg, _ in entries:
            print(cfg["Id"] if a.no_trunc else cfg["Id"][:12])
        return 0
    rows = []
    for cfg, st in entries:
        cmd = " ".join([cfg["Path"], *cfg["Args"]])
        if not a.no_trunc and len(cmd) > 20:
            cmd = cmd[:19] + "…"
        created = units.human_duration(time.time() - parse_time(cfg["Created"])) + " ago"
        rows.append(
            {
                "ID": cfg["Id"] if a.no_trunc else cfg["Id"][:12],
                "Image": cfg["Config"]["Image"],
                "Command": f'"{cmd}"',
                "CreatedAt": cfg["Created"],
                "RunningFor": created,
                "Status": status_text(st),
                "State": st["Status"],
                "Ports": "",
                "Names": cfg["Name"].lstrip("/"),
            }
        )
    if a.format:
        fmt = a.format
        if fmt.startswith("table"):
            fmt = fmt[5:].strip()
            heads = re.findall(r"\{\{\s*\.(\w+)\s*\}\}", fmt)
            print("\t".join(h.upper() for h in heads))
        for r in rows:
            print(render(fmt, r))
        return 0
    header = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    print(
        table(
            [
                [r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], "", r["Names"]]
                for r in rows
            ],
            header,
        )
    )
    return 0


def inspect_container(e: Engine, cid: str) -> dict[str, Any]:
    try:
        cfg, st = e.store.config(cid), e.state(cid)
    except DamagedContainer as err:
        from runtime.engine import damage

        cfg, st = damage.view(e.home, e.store, cid, err)
    net = st.get("Network") or {}
    hc = {k: v for k, v in cfg["HostConfig"].items() if k not in ("UsernsRemap",)}
    return {
        "Id": cfg["Id"],
        "Created": cfg["Created"],
        "Path": cfg["Path"],
        "Args": cfg["Args"],
        "State": {
            "Status": st["Status"],
            "Running": st["Status"] in ("running", "paused"),
            "Paused": st["Status"] == "paused",
            "Restarting": st["Status"] == "restarting",
            "OOMKilled": bool(st["OOMKilled"]),
            "Dead": st["Status"] == "dead",
            "Pid": int(st["Pid"]) if st["Status"] in ("running", "paused") else 0,
            "ExitCode": int(st["ExitCode"]),
            "Error": st.get("Error", ""),
            "StartedAt": st["StartedAt"],
            "FinishedAt": st["FinishedAt"],
        },
        "Image": cfg["Image"],
        "ResolvConfPath": str(e.store.dir(cid) / "etc/resolv.conf"),
        "HostnamePath": str(e.store.dir(cid) / "etc/hostname"),
        "HostsPath": str(e.store.dir(cid) / "etc/hosts"),
        "LogPath": cfg["LogPath"],
        "Name": cfg["Name"],
        "RestartCount": int(st.get("RestartCount", 0)),
        "Driver": "overlay",
        "Platform": "linux",
        "Runtime": cfg["Runtime"],
        "HostConfig": hc,
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "LowerDir": cfg["ImageRootfs"],
                "UpperDir": str(e.store.dir(cid) / "upper"),
                "WorkDir": str(e.store.dir(cid) / "work"),
                "MergedDir": str(e.store.dir(cid) / "bundle/rootfs"),
            },
        },
        "Mounts": [
            {
                "Type": "volume" if m.get("Anonymous") else "bind",
                "Source": m["Source"],
                "Destination": m["Destination"],
                "RW": not m["ReadOnly"],
            }
            for m in cfg["HostConfig"].get("Mounts") or []
        ],
        "Config": {k: v for k, v in cfg["Config"].items() if k != "ConsoleSize"},
        "NetworkSettings": {
            "Bridge": net.get("Bridge", ""),
            "SandboxKey": str(e.home.netns_path(cid))
            if cfg["HostConfig"].get("NetworkMode") in ("bridge", "none")
            else "",
            "IPAddress": net.get("IPAddress", ""),
            "IPPrefixLen": net.get("IPPrefixLen", 0),
            "Gateway": net.get("Gateway", ""),
            "MacAddress": net.get("MacAddress", ""),
            "Networks": net.get("Networks", {}),
        },
    }


def inspect_image(img: Any) -> dict[str, Any]:
    from runtime.engine.images import du

    return {
        "Id": img.id,
        "RepoTags": img.tags,
        "Created": img.meta.get("Created"),
        "Config": img.config,
        "Size": du(img.rootfs),
        "RootFS": {"Type": "layers"},
        "GraphDriver": {"Name": "overlay", "Data": {"Dir": str(img.rootfs)}},
    }


def cmd_inspect(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof inspect")
    p.add_argument("-f", "--format")
    p.add_argument("--type", choices=["container", "image"])
    p.add_argument("objects", nargs="+")
    a = p.parse_args(argv)
    out, rc = [], 0
    for ref in a.objects:
        obj = None
        if a.type != "image":
            try:
                obj = inspect_container(e, e.resolve(ref))
            except NotFoundError:
                obj = None
        if obj is None and a.type != "container":
            try:
                obj = inspect_image(e.images.get(ref))
            except NotFoundError:
                obj = None
        if obj is None:
            print(f"Error: No such object: {ref}", file=sys.stderr)
            rc = 1
            continue
        out.append(obj)
    if a.format:
        for obj in out:
            print(render(a.format, obj))
    else:
        print(cjson.dumps(out, indent=4))
    return rc


def cmd_top(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof top")
    p.add_argument("container")
    p.add_argument("ps_args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    cid = e.resolve(a.container)
    st = e.state(cid)
    if st["Status"] not in ("running", "paused"):
        raise daemon(f"Container {cid} is not running")
    pids = e.runtime(cid).ps(cid)
    import subprocess

    cp = subprocess.run(
        ["ps", "-f", "-p", ",".join(map(str, pids))], capture_output=True, text=True
    )
    print(cp.stdout.rstrip())
    return 0


def cmd_stats(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof stats")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("containers", nargs="*")
    a = p.parse_args(argv)
    if a.containers:
        cids = [e.resolve(r) for r in a.containers]
    else:
        cids = [c for c in e.store.ids() if a.all or e.state(c)["Status"] in RUNNING]
    while True:
        first = {c: _sample(e, c) for c in cids}
        t0 = time.monotonic()
        time.sleep(0.5)
        rows = []
        for c in cids:
            s1, s0 = _sample(e, c), first[c]
            dt = time.monotonic() - t0
            cpu = 0.0
            if s0 and s1:
                cpu = (s1["cpu"] - s0["cpu"]) / (dt * 1e9) * 100
            mem = s1["mem"] if s1 else 0
            limit = s1["limit"] if s1 else 0
            host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            if not limit or limit > host:
                limit = host
            rx, tx = _net_io(e, c)
            rd, wr = (s1["blk_r"], s1["blk_w"]) if s1 else (0, 0)
            name = e.store.config(c)["Name"].lstrip("/")
            rows.append(
                [
                    c if a.no_trunc else c[:12],
                    name,
                    f"{cpu:.2f}%",
                    f"{units.bytes_size(mem)} / {units.bytes_size(limit)}",
                    f"{(mem / limit * 100 if limit else 0):.2f}%",
                    f"{units.human_size(rx)} / {units.human_size(tx)}",
                    f"{units.human_size(rd)} / {units.human_size(wr)}",
                    str(s1["pids"] if s1 else 0),
                ]
            )
        print(
            table(
                rows,
                [
                    "CONTAINER ID",
                    "NAME",
                    "CPU %",
                    "MEM USAGE / LIMIT",
                    "MEM %",
                    "NET I/O",
                    "BLOCK I/O",
                    "PIDS",
                ],
            ),
            flush=True,
        )
        if a.no_stream:
            return 0


def _num(v: Any) -> int:
    return int(v) if isinstance(v, (int, float)) else 0


def _sample(e: Engine, cid: str) -> dict[str, Any] | None:
    """One ``events --stats`` reading, in runc's shape (isoproof-oci prints it too)."""
    if e.store.state(cid)["Status"] not in ("running", "paused"):
        return None
    try:
        d = e.runtime(cid).stats(cid)
    except (IsoproofError, ValueError):
        return None
    mem = d.get("memory") or {}
    usage = _num((mem.get("usage") or {}).get("usage"))
    limit = _num((mem.get("usage") or {}).get("limit"))
    # As docker's stats: page cache that can be dropped is not counted (v1 name, then v2's).
    raw = mem.get("raw") or {}
    usage -= _num(raw.get("total_inactive_file", raw.get("inactive_file")))
    total_cpu = _num(((d.get("cpu") or {}).get("usage") or {}).get("total"))
    blk_r = blk_w = 0
    for ent in (d.get("blkio") or {}).get("ioServiceBytesRecursive") or []:
        if str(ent.get("op", "")).lower() == "read":
            blk_r += _num(ent.get("value"))
        elif str(ent.get("op", "")).lower() == "write":
            blk_w += _num(ent.get("value"))
    return {
        "cpu": total_cpu,
        "mem": max(0, usage),
        "limit": limit,
        "pids": _num((d.get("pids") or {}).get("current")),
        "blk_r": blk_r,
        "blk_w": blk_w,
    }


def _net_io(e: Engine, cid: str) -> tuple[int, int]:
    veth = (e.store.state(cid).get("Network") or {}).get("HostVeth")
    if not veth:
        return 0, 0
    base = Path(f"/sys/class/net/{veth}/statistics")
    try:
        # The host end receives what the container sends, and the reverse.
        return int((base / "tx_bytes").read_text()), int((base / "rx_bytes").read_text())
    except OSError:
        return 0, 0


def cmd_logs(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof logs")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("container")
    a = p.parse_args(argv)
    cid = e.resolve(a.container)
    since = _time_arg(a.since, "--since") if a.since else 0.0
    until = _time_arg(a.until, "--until") if a.until else 0.0
    tail = -1
    if a.tail != "all":
        try:
            tail = int(a.tail)
        except ValueError:
            raise units.FlagError(f'invalid argument "{a.tail}" for "-n, --tail" flag') from None
    path = e.store.dir(cid) / "container.log"

    def show(line: bytes) -> None:
        try:
            rec = cjson.loads(line)
        except ValueError:
            return
        t = parse_time(rec.get("time", ""))
        if since and t < since or until and t > until:
            return
        text = rec.get("log", "")
        if a.timestamps:
            text = f"{rec.get('time')} {text}"
        out = sys.stdout if rec.get("stream") != "stderr" else sys.stderr
        out.write(text)
        out.flush()

    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return 0
    with f:
        lines = f.readlines()
        partial = b""
        if lines and not lines[-1].endswith(b"\n"):
            partial = lines.pop()
        if tail >= 0:
            lines = lines[-tail:] if tail else []
        for ln in lines:
            show(ln)
        if not a.follow:
            return 0
        while True:
            chunk = f.readline()
            if chunk:
                partial += chunk
                if partial.endswith(b"\n"):
                    show(partial)
                    partial = b""
                continue
            st = e.store.state(cid)
            if st["Status"] not in RUNNING or not monitor_alive(st, cid):
                rest = f.read()
                for ln in (partial + rest).splitlines(keepends=True):
                    show(ln)
                return 0
            time.sleep(0.05)


def _time_arg(text: str, flag: str) -> float:
    try:
        return time.time() - units.parse_duration(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_time(text)
    except ValueError:
        raise units.FlagError(f'invalid value for "{flag}": {text}') from None
