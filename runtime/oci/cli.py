"""``isoproof-oci``: a runc-compatible command line.

Argument shapes follow runc (global ``--root``/``--log``/``--log-format`` before the verb), so any
tool that drives runc can drive this. Errors are printed as ``isoproof-oci: <one line>`` with exit
status 1; nothing is left half-done (each verb rolls back on failure).

The command line is parsed by a small table-driven parser rather than ``argparse``: importing
argparse and building its parsers (each one imports ``shutil`` for the terminal width, and
``gettext`` looks for translations) cost more than the whole container setup of
``isoproof-oci run``, which is latency-critical. The table below is the whole grammar.
"""

from __future__ import annotations

import os
import sys

from runtime.errors import IsoproofError, SpecError
from runtime.oci import DEFAULT_ROOT

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from types import SimpleNamespace
    from typing import Any, NoReturn
else:
    SimpleNamespace = type(sys.implementation)  # types.SimpleNamespace, without importing types

PROG = "isoproof-oci"
VERSION = f"{PROG} 0.1.0 (OCI runtime-spec 1.0.2)"

_log_path: str | None = None
_log_json = False

# --- the grammar -----------------------------------------------------------------------------------
# An option: (names, dest, kind, default, help). kind is "flag" (store true), "value", "append" (a
# value that may repeat), "float", or a tuple of the values allowed.
# A positional: "name" (required), "name?" (optional), "name..." (it and every word after it).
FLAG, VALUE, APPEND, FLOAT = "flag", "value", "append", "float"

GLOBAL_OPTIONS = (
    (("--root",), "root", VALUE, DEFAULT_ROOT, f"state directory (default {DEFAULT_ROOT})"),
    (("--log",), "log", VALUE, None, "append errors and warnings here (warnings: only here)"),
    (("--log-format",), "log_format", ("text", "json"), "text", "format of --log"),
    (("--debug",), "debug", FLAG, False, "accepted for runc compatibility"),
    (("--systemd-cgroup",), "systemd_cgroup", FLAG, False, "not supported"),
)

_BUNDLE = (("--bundle", "-b"), "bundle", VALUE, ".", "the bundle directory (default: .)")
_PID_FILE = (("--pid-file",), "pid_file", VALUE, None, "write the init's pid to this file")
_CONSOLE = (("--console-socket",), "console_socket", VALUE, None, "send the pty master here")
_NO_PIVOT = (("--no-pivot",), "no_pivot", FLAG, False, "refused: we always pivot_root")
_NO_KEYRING = (("--no-new-keyring",), "no_new_keyring", FLAG, False, "accepted, ignored")
_FORMAT = (("--format", "-f"), "format", ("table", "json"), "table", "output format")
_PRESERVE = (("--preserve-fds",), "preserve_fds", VALUE, "0",
             "pass N more fds (3 .. 3+N-1) to the process")  # fmt: skip
# runc update's flags: (names, dest, help). --cpu-share is runc's spelling; --cpu-shares is docker's.
_UPDATE_FLAGS = (
    (("--memory",), "memory", "memory limit in bytes (suffixes k, m, g); -1 unlimited"),
    (("--memory-reservation",), "memory_reservation", "soft limit in bytes"),
    (("--memory-swap",), "memory_swap", "memory plus swap in bytes; -1 unlimited"),
    (("--kernel-memory",), "kernel_memory", "deprecated by the kernel: warned about, ignored"),
    (("--cpu-share", "--cpu-shares"), "cpu_shares", "CPU shares (relative weight)"),
    (("--cpu-quota",), "cpu_quota", "CFS quota in microseconds per period"),
    (("--cpu-period",), "cpu_period", "CFS period in microseconds"),
    (("--cpu-rt-runtime",), "cpu_rt_runtime", "real-time runtime in microseconds"),
    (("--cpu-rt-period",), "cpu_rt_period", "real-time period in microseconds"),
    (("--cpuset-cpus",), "cpuset_cpus", "CPUs to use (0-3, 0,1)"),
    (("--cpuset-mems",), "cpuset_mems", "memory nodes to use"),
    (("--pids-limit",), "pids_limit", "maximum number of pids; -1 unlimited"),
    (("--blkio-weight",), "blkio_weight", "block IO weight, 10..1000"),
    (("--l3-cache-schema",), "l3_cache_schema", "Intel RDT: not supported"),
    (("--mem-bw-schema",), "mem_bw_schema", "Intel RDT: not supported"),
)

# verb -> (help, options, positionals)
COMMANDS: dict[str, tuple[str, tuple[tuple[Any, ...], ...], tuple[str, ...]]] = {
    "create": ("create a container (its process waits for start)",
               (_BUNDLE, _PID_FILE, _CONSOLE, _NO_PIVOT, _NO_KEYRING, _PRESERVE), ("id",)),
    "run": ("create and start a container",
            (_BUNDLE, _PID_FILE, _CONSOLE,
             (("--detach", "-d"), "detach", FLAG, False, "do not wait for the container"),
             (("--keep",), "keep", FLAG, False, "do not delete the container after it exits"),
             (("--no-subreaper",), "no_subreaper", FLAG, False,
              "accepted; the foreground run still reaps its init as subreaper"),
             _NO_PIVOT, _NO_KEYRING, _PRESERVE), ("id",)),
    "start": ("start a created container", (), ("id",)),
    "state": ("print the OCI state", (), ("id",)),
    "pause": ("freeze every process", (), ("id",)),
    "resume": ("thaw a paused container", (), ("id",)),
    "kill": ("send a signal to the container's init (or all its processes)",
             ((("--all", "-a"), "all", FLAG, False, "signal every process of the container"),
              (("--signal", "-s"), "signal_opt", VALUE, None, "the signal (or give it after ID)")),
             ("id", "signal?")),
    "delete": ("remove a stopped container (or any, with --force)",
               ((("--force", "-f"), "force", FLAG, False, "kill it first if it runs"),), ("id",)),
    "ps": ("list the container's processes (ps ID -- PS-ARGS: the host's ps, filtered)",
           (_FORMAT,), ("id", "ps_args...")),
    "list": ("list containers",
             (_FORMAT, (("--quiet", "-q"), "quiet", FLAG, False, "print the ids only")), ()),
    "exec": ("run a process in a running container",
             ((("--process", "-p"), "process", VALUE, None, "a process.json to run"),
              (("--detach", "-d"), "detach", FLAG, False, "do not wait for the process"),
              _PID_FILE,
              (("--tty", "-t"), "tty", FLAG, False, "allocate a pty (needs --console-socket)"),
              _CONSOLE,
              (("--cwd",), "cwd", VALUE, None, "working directory"),
              (("--env", "-e"), "env", APPEND, None, "add VAR=value (repeatable)"),
              (("--user", "-u"), "user", VALUE, None, "UID[:GID]"),
              (("--additional-gids", "-g"), "additional_gids", APPEND, None,
               "add a supplementary group id (repeatable)"),
              (("--cap", "-c"), "cap", APPEND, None, "add a capability (repeatable)"),
              (("--no-new-privs",), "no_new_privs", FLAG, False, "set no_new_privs"),
              _PRESERVE,
              (("--cgroup",), "cgroup", APPEND, None,
               "join an existing sub-cgroup [CTRL[,CTRL]:]PATH (repeatable)"),
              (("--ignore-paused",), "ignore_paused", FLAG, False, "allow exec in a paused container"),
              (("--apparmor",), "apparmor", VALUE, None, "AppArmor profile for the process"),
              (("--process-label",), "process_label", VALUE, None, "SELinux label for the process")),
             ("id", "command...")),
    "spec": ("write a default config.json",
             (_BUNDLE, (("--rootless",), "rootless", FLAG, False, "not supported")), ()),
    "update": ("change the container's cgroup limits",
               ((("--resources", "-r"), "resources", VALUE, None,
                 "JSON file (- for stdin); the other flags are then ignored"),
                *((names, dest, VALUE, None, text) for names, dest, text in _UPDATE_FLAGS)),
               ("id",)),
    "features": ("print the OCI features document (what this runtime implements), as JSON",
                 (), ()),
    "events": ("print the container's cgroup statistics",
               ((("--stats",), "stats", FLAG, False, "print once and exit"),
                (("--interval",), "interval", FLOAT, 5.0, "seconds between prints")), ("id",)),
}  # fmt: skip


def usage_error(message: str) -> NoReturn:
    """Usage errors follow the error contract too: one line, exit 1."""
    print(f"{PROG}: {message} (see {PROG} --help)", file=sys.stderr)
    raise SystemExit(1)


def _help(verb: str | None) -> str:
    def opt_lines(options: tuple[tuple[Any, ...], ...]) -> list[str]:
        lefts = []
        for names, _dest, kind, _default, _text in options:
            arg = "" if kind == FLAG else " " + ("|".join(kind) if isinstance(kind, tuple) else
                                                 names[0].lstrip("-").upper())  # fmt: skip
            lefts.append(", ".join(names) + arg)
        width = max([32, *(len(left) + 1 for left in lefts)])  # one column for the whole list
        rows = zip(lefts, (o[4] for o in options), strict=True)
        return [f"  {left:<{width}} {text}".rstrip() for left, text in rows]

    if verb is None:
        lines = [f"usage: {PROG} [global options] COMMAND [options] ...",
                 "A reference OCI runtime (runc-compatible).", "", "commands:"]  # fmt: skip
        lines += [f"  {name:<10} {text}" for name, (text, _o, _p) in COMMANDS.items()]
        lines += ["", "global options:", *opt_lines(GLOBAL_OPTIONS),
                  f"  {'--version':<32} print the version", f"  {'--help, -h':<32} this text"]  # fmt: skip
        return "\n".join(lines)
    text, options, positionals = COMMANDS[verb]
    pos = " ".join(_metavar(p) for p in positionals)
    return "\n".join([f"usage: {PROG} {verb} [options] {pos}".rstrip(), text, "", "options:",
                      *opt_lines(options)])  # fmt: skip


def _metavar(positional: str) -> str:
    name = positional.rstrip("?.").upper()
    if positional.endswith("?"):
        return f"[{name}]"
    return f"{name} ..." if positional.endswith("...") else name


def _set_option(ns: SimpleNamespace, spec: tuple[Any, ...], name: str, value: str | None) -> None:
    _names, dest, kind, _default, _text = spec
    if kind == FLAG:
        if value is not None:
            usage_error(f"option {name} takes no value")
        setattr(ns, dest, True)
        return
    if value is None:
        usage_error(f"option {name} needs a value")
    if isinstance(kind, tuple) and value not in kind:
        usage_error(f"option {name}: {value!r} is not one of {', '.join(kind)}")
    if kind == APPEND:
        getattr(ns, dest).append(value)
    elif kind == FLOAT:
        try:
            setattr(ns, dest, float(value))
        except ValueError:
            usage_error(f"option {name}: {value!r} is not a number")
    else:
        setattr(ns, dest, value)


def _parse_options(argv: list[str], i: int, ns: SimpleNamespace,
                   options: tuple[tuple[Any, ...], ...], verb: str | None) -> int:  # fmt: skip
    """Parse the option at ``argv[i]`` into ``ns``; returns the index of the next word.

    Accepted shapes: ``--name value``, ``--name=value``, ``-n value``, ``-nvalue``, ``--flag``."""
    tok = argv[i]
    if tok in ("-h", "--help"):
        print(_help(verb))
        raise SystemExit(0)
    name, eq, attached = tok.partition("=") if tok.startswith("--") else (tok, "", "")
    for spec in options:
        if name in spec[0]:
            break
        if not tok.startswith("--") and len(tok) > 2 and tok[:2] in spec[0] and spec[2] != FLAG:
            name, eq, attached = tok[:2], "=", tok[2:]  # -bDIR
            break
    else:
        usage_error(f"unknown option {name}" + (f" for {verb}" if verb else ""))
    if eq:
        _set_option(ns, spec, name, attached)
        return i + 1
    if spec[2] == FLAG:
        _set_option(ns, spec, name, None)
        return i + 1
    _set_option(ns, spec, name, argv[i + 1] if i + 1 < len(argv) else None)
    return i + 2


def parse_args(argv: list[str]) -> SimpleNamespace:
    """``argv`` (without the program name) -> a namespace with one attribute per option and
    positional of the verb, plus the global options and ``cmd``."""
    ns = SimpleNamespace(**{o[1]: o[3] for o in GLOBAL_OPTIONS})
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        if argv[i] == "--version":
            print(VERSION)
            raise SystemExit(0)
        i = _parse_options(argv, i, ns, GLOBAL_OPTIONS, None)
    if i >= len(argv):
        usage_error("no command given")
    verb = argv[i]
    if verb not in COMMANDS:
        usage_error(f"unknown command {verb!r}")
    ns.cmd = verb
    _text, options, positionals = COMMANDS[verb]
    for _names, dest, kind, default, _t in options:
        setattr(ns, dest, [] if kind == APPEND else default)
    for p in positionals:
        setattr(ns, p.rstrip("?."), [] if p.endswith("...") else None)
    i += 1
    slot = 0
    only_positionals = False
    while i < len(argv):
        tok = argv[i]
        if slot < len(positionals) and positionals[slot].endswith("..."):
            rest = argv[i + 1 :] if tok == "--" else argv[i:]
            getattr(ns, positionals[slot][:-3]).extend(rest)  # the command and its own flags
            break
        if not only_positionals and tok == "--":
            only_positionals = True
            i += 1
            continue
        if not only_positionals and tok.startswith("-") and tok != "-":
            i = _parse_options(argv, i, ns, options, verb)
            continue
        if slot >= len(positionals):
            usage_error(f"unexpected argument {tok!r} for {verb}")
        setattr(ns, positionals[slot].rstrip("?"), tok)
        slot += 1
        i += 1
    missing = [p for p in positionals[slot:] if p[-1] not in "?."]
    if missing:
        usage_error(f"{verb}: missing {' '.join(m.upper() for m in missing)}")
    return ns


class _Parser:
    """``_parser().parse_args(argv)``: the shape callers of the former argparse parser used."""

    def parse_args(self, argv: list[str]) -> SimpleNamespace:
        return parse_args(argv)


def _parser() -> _Parser:
    return _Parser()


# --- signals ---------------------------------------------------------------------------------------


def parse_signal(word: str) -> int:
    """KILL, SIGKILL, sigkill, 9 -> 9."""
    import _signal as signal  # the C half of `signal`: its enum classes cost ~3 ms per CLI call

    w = word.strip().upper()
    if w.isdigit():
        n = int(w)
        if 0 < n < signal.NSIG:
            return n
        raise SpecError(f"invalid signal {word!r}")
    if not w.startswith("SIG"):
        w = "SIG" + w
    sig = getattr(signal, w, None)
    if not isinstance(sig, int) or w.startswith("SIG_"):  # SIG_DFL, SIG_BLOCK...: no signals
        raise SpecError(f"unknown signal {word!r}")
    return sig


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


def update_resources(a: Any) -> dict[str, Any]:
    """runc update's flags (or -r FILE) -> an OCI linux.resources object."""
    from runtime import cjson

    res: dict[str, Any] = {}
    if a.resources:
        try:
            if a.resources == "-":
                text = sys.stdin.read()
            else:
                with open(a.resources) as f:
                    text = f.read()
            res = cjson.loads(text)
        except (OSError, ValueError) as e:
            raise SpecError(f"--resources {a.resources}: {e}") from None
        if not isinstance(res, dict):
            raise SpecError(f"--resources {a.resources}: expected a JSON object")
        return res  # as runc: with --resources, the other flags are ignored
    for flag in ("l3_cache_schema", "mem_bw_schema"):
        if getattr(a, flag) is not None:
            raise SpecError(f"--{flag.replace('_', '-')}: Intel RDT is not supported by {PROG}")
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


def exec_spec(a: Any, root: str) -> Any:
    """The process for exec: --process FILE, or the container's own process with args replaced
    (like runc: env, user, capabilities and rlimits are inherited from config.json)."""
    from runtime import cjson
    from runtime import spec as spec_
    from runtime.oci import state as st_

    s = st_.load(root, a.id)
    if s is None:
        raise IsoproofError(f"container {a.id} is still being created")
    if a.process:
        try:
            with open(a.process, "rb") as f:
                doc = cjson.loads(f.read())
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
    for i, g in enumerate(a.additional_gids):
        gid = _int_flag("additional-gids", g)
        if not 0 <= gid < 2**32:
            _bad("additional-gids", g)
        if i == 0:
            base.user.additional_gids = list(base.user.additional_gids)
        base.user.additional_gids.append(gid)
    if a.apparmor:
        base.apparmor_profile = a.apparmor
    if a.process_label:
        base.selinux_label = a.process_label
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
    from runtime import cjson

    print(cjson.dumps(doc, indent=2))


def dispatch(a: Any) -> int:
    root = os.path.abspath(a.root)
    if a.systemd_cgroup:
        raise SpecError("--systemd-cgroup is not supported (isoproof drives cgroupfs directly)")
    cmd = a.cmd
    if cmd in ("create", "run", "exec") and _own_process():
        # the runtime's executable, out of the container's reach (first: imports before it would
        # be paid twice)
        from runtime.oci.reexec import exec_read_only

        exec_read_only(_argv)
    from runtime.oci import container as ct
    from runtime.oci import state as st_

    if cmd in ("create", "run") and a.no_pivot:
        raise SpecError("--no-pivot is not supported: isoproof-oci always uses pivot_root")
    if cmd == "create":
        ct.create(root, a.id, a.bundle, a.pid_file, a.console_socket, warn=warn,
                  preserve_fds=_preserve_fds(a))  # fmt: skip
        return 0
    if cmd == "run":
        return ct.run(root, a.id, a.bundle, a.pid_file, a.console_socket, a.detach, warn=warn,
                      preserve_fds=_preserve_fds(a), keep=a.keep)  # fmt: skip
    if cmd == "start":
        ct.start(root, a.id, warn)
        return 0
    if cmd == "state":
        c = ct.Container(root, a.id)
        if c.state is None:  # create is still at work: only the id and the status are known
            _print_json({"ociVersion": st_.OCI_VERSION, "id": a.id, "status": st_.CREATING,
                         "pid": 0, "bundle": "", "annotations": {}})  # fmt: skip
        else:
            _print_json(dict(st_.oci_state(c.state, c.status()), owner=_owner(c.dir)))
        return 0
    if cmd == "features":
        _print_json(features())
        return 0
    if cmd == "kill":
        if a.signal and a.signal_opt:
            raise SpecError("kill: give the signal once (positional or --signal)")
        ct.kill(root, a.id, parse_signal(a.signal or a.signal_opt or "TERM"), a.all)
        return 0
    if cmd == "delete":
        ct.delete(root, a.id, a.force, warn)
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
        if a.ps_args:
            if a.format == "json":
                raise SpecError("ps: ps arguments cannot be combined with --format json")
            return _host_ps(pids, a.ps_args)
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
            s = dict(st_.oci_state(c.state, c.status()), owner=_owner(c.dir))
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
        from runtime.spec import check_process_labels

        proc = exec_spec(a, root)
        check_process_labels(proc)
        proc.preserve_fds = _preserve_fds(a)
        return ct.exec_process(root, a.id, proc, a.detach, a.pid_file, a.console_socket,
                               ignore_paused=a.ignore_paused, cgroups=a.cgroup)  # fmt: skip
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
        from runtime.spec import check_resources

        res = check_resources(update_resources(a), "update")
        ct.update(root, a.id, res, warn)
        return 0
    if cmd == "events":
        import time

        from runtime import cjson
        from runtime.oci.events import runc_stats

        c = ct.Container(root, a.id)
        while True:
            c.require("get events of", st_.CREATED, st_.RUNNING, st_.PAUSED)
            data = runc_stats(c.mgr.stats())
            print(cjson.dumps({"type": "stats", "id": a.id, "data": data}), flush=True)
            if a.stats:
                return 0
            time.sleep(a.interval)
    raise SpecError(f"unknown command {cmd}")  # pragma: no cover - parse_args rejects it first


def _preserve_fds(a: Any) -> int:
    n = _int_flag("preserve-fds", a.preserve_fds)
    if n < 0:
        _bad("preserve-fds", a.preserve_fds)
    for fd in range(3, 3 + n):
        try:
            os.fstat(fd)
        except OSError:
            raise SpecError(f"--preserve-fds {n}: fd {fd} is not open") from None
    return n


def _owner(path: str) -> str:
    """The user who owns the container's state directory (runc shows it in list and state)."""
    import pwd

    try:
        uid = os.stat(path).st_uid
    except OSError:
        return ""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def _host_ps(pids: list[int], args: list[str]) -> int:
    """``ps ID -- ARGS``: run the host's ``ps ARGS`` and keep the header and the container's
    lines (as runc: the PID column is found by its header)."""
    import subprocess

    try:
        out = subprocess.run(["ps", *args], capture_output=True, text=True, check=False)
    except OSError as e:
        raise IsoproofError(f"ps: {e.strerror}") from None
    if out.returncode != 0:
        raise IsoproofError(f"ps {' '.join(args)}: {' '.join(out.stderr.split())}")
    lines = out.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise IsoproofError(f"ps {' '.join(args)}: its output has no PID column")
    col = header.index("PID")
    wanted = {str(p) for p in pids}
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col] in wanted:
            print(line)
    return 0


def features() -> dict[str, Any]:
    """The OCI runtime features document (runtime-spec ``features.md``), as runc 1.1 and crun
    print it: what this runtime implements, for tools to check before they ask for it."""
    from runtime.oci.caps import CAPS
    from runtime.oci.rootfs import MOUNT_FLAGS, PROPAGATION_FLAGS
    from runtime.spec import HOOK_KINDS, NAMESPACES, OCI_VERSION

    linux: dict[str, Any] = {
        "namespaces": sorted(NAMESPACES),
        "capabilities": list(CAPS),
        "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
        "apparmor": {"enabled": False},
        "selinux": {"enabled": False},
    }
    try:
        from runtime import seccomp

        linux["seccomp"] = {"enabled": True, "actions": sorted(seccomp.ACTIONS),
                            "operators": sorted(seccomp.OPS), "archs": sorted(seccomp.ARCHES)}  # fmt: skip
    except ImportError:
        linux["seccomp"] = {"enabled": False}
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted({*MOUNT_FLAGS, *PROPAGATION_FLAGS}),
        "linux": linux,
        "annotations": {"org.isoproof.oci.version": VERSION.split()[1]},
    }


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _log(level: str, msg: str) -> None:
    """Append one entry to the ``--log`` file, if one was given (runc's text or json shapes)."""
    if not _log_path:
        return
    try:
        with open(_log_path, "a") as f:
            if _log_json:
                import time

                from runtime import cjson

                f.write(cjson.dumps({"level": level, "msg": msg,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")  # fmt: skip
            else:
                prefix = f"{PROG}: " if level == "error" else f"{PROG}: {level}: "
                f.write(f"{prefix}{msg}\n")
    except OSError:
        pass


def _log_error(msg: str) -> None:
    _log("error", msg)


def warn(msg: str) -> None:
    """A setting that was accepted but is not enforced (the cgroup manager's ``warnings``).

    As with runc, warnings go to the ``--log`` file when one is given, else to our stderr. Errors
    go to stderr in both cases, so a caller that reads the last stderr line of a failure (the
    engine) still finds the error there. Not fatal: the exit status does not change. Flushed at
    once: ``create`` forks next, and its children share this stderr.
    """
    if _log_path:
        _log("warning", msg)
    else:
        print(f"{PROG}: warning: {msg}", file=sys.stderr, flush=True)


_argv: list[str] = []  # this command's arguments, for reexec.exec_read_only
_IMPORT_PID = os.getpid()
_program = [False]  # main() runs as the program (sys.argv), not called with argv


def _own_process() -> bool:
    """May this command replace its process (reexec.exec_read_only)? Yes as the program itself and
    in a child forked to run it (the engine's forkrun); not when called in the caller's own
    process (tests): that would replace the caller."""
    return _program[0] or os.getpid() != _IMPORT_PID


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status. Without ``argv`` this is the program itself (the
    console script, ``python -m runtime.oci.cli``): it then reads ``sys.argv`` and leaves through
    :func:`_exit` instead of returning."""
    if argv is not None:
        return _main(argv)
    _program[0] = True
    _exit(_main(sys.argv[1:]))


def _main(args: list[str]) -> int:
    global _log_path, _log_json, _argv
    _argv = list(args)
    a = parse_args(args)
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
    except OSError as e:  # writing our own output failed (a closed pipe, a full disk), or fork
        msg = e.strerror or str(e)
        _log_error(msg)
        print(f"{PROG}: {msg}", file=sys.stderr)
        return 1


def _exit(code: int) -> NoReturn:
    """Leave without the interpreter's teardown. A finished command has nothing left to release
    (every file it opened is closed, the kernel frees the rest), and freeing each imported module
    one by one costs ~3 ms of CPU, a tenth of an ``isoproof-oci run``. stdout and stderr are
    flushed first, and a failed flush gives status 120, as a normal interpreter exit would."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120
    os._exit(code)


if __name__ == "__main__":
    main()
