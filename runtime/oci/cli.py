"""``isoproof-oci``: a runc-compatible command line.

Argument shapes follow runc (global ``--root``/``--log``/``--log-format`` before the verb), so any
tool that drives runc can drive this. Errors are printed as ``isoproof-oci: <one line>`` with exit
status 1; nothing is left half-done (each verb rolls back on failure).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn

from runtime.errors import IsoproofError, SpecError
from runtime.oci.state import DEFAULT_ROOT

PROG = "isoproof-oci"

_log_path: str | None = None
_log_json = False


class _Parser(argparse.ArgumentParser):
    """Usage errors follow the error contract too: one line, exit 1."""

    def error(self, message: str) -> NoReturn:
        print(f"{PROG}: {message} (see {PROG} --help)", file=sys.stderr)
        raise SystemExit(1)


class _Skip:
    """Stands in for the parsers of the verbs not being run: building all 16 costs milliseconds
    on every invocation, and `isoproof-oci run` is latency-critical."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        pass


_GLOBAL_WITH_VALUE = ("--root", "--log", "--log-format")
COMMANDS = ("create", "run", "start", "state", "pause", "resume", "kill", "delete", "ps", "list",
            "exec", "spec", "update", "events")  # fmt: skip


def command_word(argv: list[str]) -> str | None:
    """The verb in ``argv`` (after the global options), if it is one we know."""
    skip = False
    for tok in argv:
        if skip:
            skip = False
        elif tok in _GLOBAL_WITH_VALUE:
            skip = True
        elif not tok.startswith("-"):
            return tok if tok in COMMANDS else None
    return None


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="A reference OCI runtime (runc-compatible).")
    p.add_argument("--version", action="version", version=f"{PROG} 0.1.0 (OCI runtime-spec 1.0.2)")
    p.add_argument("--root", default=DEFAULT_ROOT, help="state directory (default %(default)s)")
    p.add_argument("--log", default=None, help="also append errors to this file")
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    p.add_argument("--debug", action="store_true", help="accepted for runc compatibility")
    p.add_argument("--systemd-cgroup", action="store_true", help="not supported")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True, parser_class=_Parser)

    def cmd(name: str, help: str) -> Any:
        if only is not None and name != only:
            return _Skip()
        return sub.add_parser(name, help=help)  # subparsers are _Parser too (parser_class)

    c = cmd("create", "create a container (its process waits for start)")
    c.add_argument("--bundle", "-b", default=".")
    c.add_argument("--pid-file")
    c.add_argument("--console-socket")
    c.add_argument("--no-pivot", action="store_true", help="refused: we always pivot_root")
    c.add_argument("--no-new-keyring", action="store_true")
    c.add_argument("id")

    c = cmd("run", "create and start a container")
    c.add_argument("--bundle", "-b", default=".")
    c.add_argument("--pid-file")
    c.add_argument("--console-socket")
    c.add_argument("--detach", "-d", action="store_true")
    c.add_argument("--no-pivot", action="store_true")
    c.add_argument("--no-new-keyring", action="store_true")
    c.add_argument("id")

    for name, text in (("start", "start a created container"), ("state", "print the OCI state"),
                       ("pause", "freeze every process"), ("resume", "thaw a paused container")):  # fmt: skip
        cmd(name, text).add_argument("id")

    c = cmd("kill", "send a signal to the container's init (or all its processes)")
    c.add_argument("--all", "-a", action="store_true")
    c.add_argument("--signal", "-s", dest="signal_opt")
    c.add_argument("id")
    c.add_argument("signal", nargs="?")

    c = cmd("delete", "remove a stopped container (or any, with --force)")
    c.add_argument("--force", "-f", action="store_true")
    c.add_argument("id")

    c = cmd("ps", "list the container's processes")
    c.add_argument("--format", "-f", default="table", choices=("table", "json"))
    c.add_argument("id")

    c = cmd("list", "list containers")
    c.add_argument("--format", "-f", default="table", choices=("table", "json"))
    c.add_argument("--quiet", "-q", action="store_true")

    c = cmd("exec", "run a process in a running container")
    c.add_argument("--process", "-p")
    c.add_argument("--detach", "-d", action="store_true")
    c.add_argument("--pid-file")
    c.add_argument("--tty", "-t", action="store_true")
    c.add_argument("--console-socket")
    c.add_argument("--cwd")
    c.add_argument("--env", "-e", action="append", default=[])
    c.add_argument("--user", "-u")
    c.add_argument("--cap", "-c", action="append", default=[])
    c.add_argument("--no-new-privs", action="store_true")
    c.add_argument("id")
    c.add_argument("command", nargs=argparse.REMAINDER)

    c = cmd("spec", "write a default config.json")
    c.add_argument("--bundle", "-b", default=".")
    c.add_argument("--rootless", action="store_true", help="not supported")

    c = cmd("update", "change the container's cgroup limits")
    c.add_argument("--resources", "-r", help="an OCI linux.resources JSON file, or - for stdin")
    for flag in ("--memory", "--memory-reservation", "--memory-swap", "--kernel-memory",
                 "--cpu-shares", "--cpu-quota", "--cpu-period", "--cpu-rt-runtime",
                 "--cpu-rt-period", "--cpuset-cpus", "--cpuset-mems", "--pids-limit",
                 "--blkio-weight"):  # fmt: skip
        c.add_argument(flag)
    c.add_argument("id")

    c = cmd("events", "print the container's cgroup statistics")
    c.add_argument("--stats", action="store_true", help="print once and exit")
    c.add_argument("--interval", type=float, default=5.0)
    c.add_argument("id")
    return p


# --- signals ---------------------------------------------------------------------------------------


def parse_signal(word: str) -> int:
    """KILL, SIGKILL, sigkill, 9 -> 9."""
    import signal

    w = word.strip().upper()
    if w.isdigit():
        n = int(w)
        if 0 < n < signal.NSIG:
            return n
        raise SpecError(f"invalid signal {word!r}")
    if not w.startswith("SIG"):
        w = "SIG" + w
    sig = getattr(signal, w, None)
    if not isinstance(sig, signal.Signals) or w.startswith("SIG_"):
        raise SpecError(f"unknown signal {word!r}")
    return int(sig)


# --- update ----------------------------------------------------------------------------------------

_SUFFIX = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_bytes(flag: str, text: str) -> int:
    t = text.strip().lower()
    if t == "-1":
        return -1
    if t.endswith("b") and len(t) > 1 and t[-2] in "kmgt":
        t = t[:-1]
    unit = t[-1] if t and t[-1] in _SUFFIX else ""
    num = t[: len(t) - len(unit)]
    try:
        return int(float(num) * _SUFFIX[unit]) if num else _bad(flag, text)
    except ValueError:
        return _bad(flag, text)


def _bad(flag: str, text: str) -> int:
    raise SpecError(f"--{flag}: invalid value {text!r}")


def _int_flag(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return _bad(flag, text)


def update_resources(a: argparse.Namespace) -> dict[str, Any]:
    """runc update's flags (or -r FILE) -> an OCI linux.resources object."""
    import json

    res: dict[str, Any] = {}
    if a.resources:
        try:
            if a.resources == "-":
                text = sys.stdin.read()
            else:
                with open(a.resources) as f:
                    text = f.read()
            res = json.loads(text)
        except (OSError, ValueError) as e:
            raise SpecError(f"--resources {a.resources}: {e}") from None
        if not isinstance(res, dict):
            raise SpecError(f"--resources {a.resources}: expected a JSON object")
    mem = {k: parse_bytes(f, getattr(a, f.replace("-", "_")))
           for k, f in (("limit", "memory"), ("reservation", "memory-reservation"),
                        ("swap", "memory-swap"), ("kernel", "kernel-memory"))
           if getattr(a, f.replace("-", "_")) is not None}  # fmt: skip
    if mem:
        res.setdefault("memory", {}).update(mem)
    cpu: dict[str, Any] = {}
    for key, flag in (("shares", "cpu-shares"), ("quota", "cpu-quota"), ("period", "cpu-period"),
                      ("realtimeRuntime", "cpu-rt-runtime"), ("realtimePeriod", "cpu-rt-period")):  # fmt: skip
        v = getattr(a, flag.replace("-", "_"))
        if v is not None:
            cpu[key] = _int_flag(flag, v)
    if a.cpuset_cpus is not None:
        cpu["cpus"] = a.cpuset_cpus
    if a.cpuset_mems is not None:
        cpu["mems"] = a.cpuset_mems
    if cpu:
        res.setdefault("cpu", {}).update(cpu)
    if a.pids_limit is not None:
        res.setdefault("pids", {})["limit"] = _int_flag("pids-limit", a.pids_limit)
    if a.blkio_weight is not None:
        res.setdefault("blockIO", {})["weight"] = _int_flag("blkio-weight", a.blkio_weight)
    if not res:
        raise SpecError("update: nothing to change (give a flag or --resources)")
    return res


# --- exec process ----------------------------------------------------------------------------------


def exec_spec(a: argparse.Namespace, root: str) -> Any:
    """The process for exec: --process FILE, or the container's own process with args replaced
    (like runc: env, user, capabilities and rlimits are inherited from config.json)."""
    import json

    from runtime import spec as spec_
    from runtime.oci import state as st_

    s = st_.load(root, a.id)
    if s is None:
        raise IsoproofError(f"container {a.id} is still being created")
    if a.process:
        try:
            with open(a.process) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            raise SpecError(f"--process {a.process}: {e}") from None
        return spec_.parse_process(doc)
    if not a.command:
        raise SpecError("exec: give a command or --process")
    base = spec_.load(s.bundle).process
    if base is None:
        raise SpecError("exec: the container's config.json has no process")
    base.args = list(a.command)
    base.terminal = a.tty
    base.env = base.env + list(a.env)
    if a.cwd:
        base.cwd = a.cwd
    if a.user:
        uid, _, gid = a.user.partition(":")
        base.user.uid = _int_flag("user", uid)
        base.user.gid = _int_flag("user", gid) if gid else base.user.gid
    if a.cap:
        from runtime.oci.caps import CAPS

        for name in a.cap:
            if name not in CAPS:
                raise SpecError(f"--cap: unknown capability {name!r}")
        c = base.capabilities or spec_.Capabilities()
        for kind in ("bounding", "effective", "permitted", "ambient"):
            setattr(c, kind, sorted(set(getattr(c, kind)) | set(a.cap)))
        base.capabilities = c
    if a.no_new_privs:
        base.no_new_privileges = True
    return base


# --- verbs -----------------------------------------------------------------------------------------


def _print_json(doc: Any) -> None:
    import json

    print(json.dumps(doc, indent=2))


def dispatch(a: argparse.Namespace) -> int:
    from runtime.oci import container as ct
    from runtime.oci import state as st_

    root = os.path.abspath(a.root)
    if a.systemd_cgroup:
        raise SpecError("--systemd-cgroup is not supported (isoproof drives cgroupfs directly)")
    cmd = a.cmd
    if cmd in ("create", "run") and a.no_pivot:
        raise SpecError("--no-pivot is not supported: isoproof-oci always uses pivot_root")
    if cmd == "create":
        ct.create(root, a.id, a.bundle, a.pid_file, a.console_socket)
        return 0
    if cmd == "run":
        return ct.run(root, a.id, a.bundle, a.pid_file, a.console_socket, a.detach)
    if cmd == "start":
        ct.start(root, a.id)
        return 0
    if cmd == "state":
        c = ct.Container(root, a.id)
        if c.state is None:  # create is still at work: only the id and the status are known
            _print_json({"ociVersion": st_.OCI_VERSION, "id": a.id, "status": st_.CREATING,
                         "pid": 0, "bundle": "", "annotations": {}})  # fmt: skip
        else:
            _print_json(st_.oci_state(c.state, c.status()))
        return 0
    if cmd == "kill":
        if a.signal and a.signal_opt:
            raise SpecError("kill: give the signal once (positional or --signal)")
        ct.kill(root, a.id, parse_signal(a.signal or a.signal_opt or "TERM"), a.all)
        return 0
    if cmd == "delete":
        ct.delete(root, a.id, a.force)
        return 0
    if cmd == "pause":
        ct.pause(root, a.id)
        return 0
    if cmd == "resume":
        ct.resume(root, a.id)
        return 0
    if cmd == "ps":
        c = ct.Container(root, a.id)
        c.require("ps", st_.CREATED, st_.RUNNING, st_.PAUSED)
        pids = c.mgr.pids()
        if a.format == "json":
            _print_json(pids)
        else:
            print(f"{'PID':>8}  CMD")
            for pid in pids:
                print(f"{pid:>8}  {_cmdline(pid)}")
        return 0
    if cmd == "list":
        rows = []
        for cid in ct.list_ids(root):
            try:
                c = ct.Container(root, cid)
            except IsoproofError:
                continue
            if c.state is None:
                rows.append({"id": cid, "pid": 0, "status": st_.CREATING, "bundle": "",
                             "created": "", "owner": ""})  # fmt: skip
                continue
            s = st_.oci_state(c.state, c.status())
            rows.append({k: s[k] for k in ("id", "pid", "status", "bundle", "created", "owner")})
        if a.quiet:
            for r in rows:
                print(r["id"])
        elif a.format == "json":
            _print_json(rows)
        else:
            print(f"{'ID':<20} {'PID':>8} {'STATUS':<10} {'BUNDLE':<40} CREATED")
            for r in rows:
                print(f"{r['id']:<20} {r['pid']:>8} {r['status']:<10} {r['bundle']:<40} "
                      f"{r['created']}")  # fmt: skip
        return 0
    if cmd == "exec":
        proc = exec_spec(a, root)
        return ct.exec_process(root, a.id, proc, a.detach, a.pid_file, a.console_socket)
    if cmd == "spec":
        import json

        from runtime.spec import default_spec

        path = os.path.join(a.bundle, "config.json")
        if a.rootless:
            raise SpecError("spec --rootless is not supported")
        try:
            with open(path, "x") as f:
                json.dump(default_spec(), f, indent=2)
                f.write("\n")
        except FileExistsError:
            raise IsoproofError(f"{path} exists: remove it first") from None
        except OSError as e:
            raise IsoproofError(f"{path}: {e.strerror}") from None
        return 0
    if cmd == "update":
        c = ct.Container(root, a.id)
        c.require("update", st_.CREATED, st_.RUNNING, st_.PAUSED)
        c.mgr.set(update_resources(a))
        return 0
    if cmd == "events":
        import json
        import time

        c = ct.Container(root, a.id)
        while True:
            c.require("get events of", st_.CREATED, st_.RUNNING, st_.PAUSED)
            print(json.dumps({"type": "stats", "id": a.id, "data": c.mgr.stats()}), flush=True)
            if a.stats:
                return 0
            time.sleep(a.interval)
    raise SpecError(f"unknown command {cmd}")  # pragma: no cover - argparse rejects it first


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _log_error(msg: str) -> None:
    if not _log_path:
        return
    try:
        with open(_log_path, "a") as f:
            if _log_json:
                import json
                import time

                f.write(json.dumps({"level": "error", "msg": msg,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")  # fmt: skip
            else:
                f.write(f"{PROG}: {msg}\n")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    global _log_path, _log_json
    args = sys.argv[1:] if argv is None else argv
    a = _parser(command_word(args)).parse_args(args)
    _log_path, _log_json = a.log, a.log_format == "json"
    try:
        return dispatch(a)
    except IsoproofError as e:
        msg = str(e)
        _log_error(msg)
        print(f"{PROG}: {msg}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
