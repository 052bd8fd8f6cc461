"""``isoproof``: docker's verbs, flags, output and exit codes on top of an OCI runtime.

Exit codes follow docker: 0 success, 1 a daemon-side error (``Error response from daemon: ...``),
125 a flag error or a failed ``run``/``create``, 126/127 a command the container cannot run or find,
otherwise the container's own exit code (``run``, ``start -a``, ``attach``, ``exec``, ``wait``).

This module is the entry point and the dispatch only: it imports the one verb module a command
needs (:mod:`runtime.engine.verbs`), so that ``ps`` does not pay for ``run``'s imports. The
engine's orchestration is :mod:`runtime.engine.engine`, the flag definitions and conversions
:mod:`runtime.engine.flags`, what the CLI prints :mod:`runtime.engine.output`.
"""

from __future__ import annotations

import os
import sys

from runtime.engine.units import FlagError
from runtime.errors import IsoproofError

# verb -> (module under runtime.engine.verbs, function): imported when the verb is run
COMMANDS: dict[str, tuple[str, str]] = {
    "create": ("containers", "cmd_create"),
    "run": ("containers", "cmd_run"),
    "start": ("containers", "cmd_start"),
    "stop": ("containers", "cmd_stop"),
    "restart": ("containers", "cmd_restart"),
    "kill": ("containers", "cmd_kill"),
    "pause": ("containers", "cmd_pause"),
    "unpause": ("containers", "cmd_unpause"),
    "rm": ("containers", "cmd_rm"),
    "wait": ("containers", "cmd_wait"),
    "attach": ("exec", "cmd_attach"),
    "exec": ("exec", "cmd_exec"),
    "logs": ("query", "cmd_logs"),
    "ps": ("query", "cmd_ps"),
    "inspect": ("query", "cmd_inspect"),
    "top": ("query", "cmd_top"),
    "stats": ("query", "cmd_stats"),
    "images": ("images", "cmd_images"),
    "import": ("images", "cmd_import"),
    "load": ("images", "cmd_load"),
    "rmi": ("images", "cmd_rmi"),
    "network": ("system", "cmd_network"),
    "system": ("system", "cmd_system"),
}
# verbs of the verification suite, which has its own CLI
SUITE = {"verify": "verify.cli", "matrix": "verify.matrix.cli"}

VERBS = {
    "attach": "Attach to a running container's input and output",
    "create": "Create a new container",
    "exec": "Run a command in a running container",
    "images": "List images",
    "import": "Import a rootfs tarball as an image",
    "inspect": "Show low-level information on containers or images",
    "kill": "Send a signal to running containers",
    "load": "Load an image from a docker save / OCI layout tarball",
    "logs": "Fetch the logs of a container",
    "matrix": "Run the verification suite on a matrix of kernels",
    "network": "List networks, or prune the bridge (ls, prune)",
    "pause": "Pause all processes within containers",
    "ps": "List containers",
    "restart": "Restart containers",
    "rm": "Remove containers (-f: running or damaged ones too)",
    "rmi": "Remove images",
    "run": "Create and start a new container",
    "start": "Start stopped containers",
    "stats": "Show resource usage of containers",
    "stop": "Stop running containers",
    "system": "Remove stopped and damaged containers and leftovers (prune)",
    "top": "Show the processes of a container",
    "unpause": "Unpause all processes within containers",
    "verify": "Run the isolation verification suite against a runtime",
    "wait": "Block until containers stop, print their exit codes",
}
USAGE = (
    "Usage: isoproof [--version] COMMAND [OPTIONS]\n\nA docker-like engine on an OCI runtime.\n\n"
    "Commands:\n"
    + "\n".join(f"  {v:<10}{VERBS.get(v, '')}" for v in sorted([*COMMANDS, *SUITE]))  # fmt: skip
    + "\n\nRun 'isoproof COMMAND --help' for a command's flags."
)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("isoproof")
    except PackageNotFoundError:
        return "unknown"


def _dispatch(module: str, argv: list[str]) -> int:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        print(f"isoproof: {module} is not available yet ({err})", file=sys.stderr)
        return 1
    return int(mod.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args[0] in ("-v", "--version", "version"):
        print(f"isoproof version {version()}")
        return 0
    verb, rest = args[0], args[1:]
    if verb in SUITE:
        return _dispatch(SUITE[verb], rest)
    target = COMMANDS.get(verb)
    if target is None:
        print(
            f"isoproof: '{verb}' is not an isoproof command. See 'isoproof --help'", file=sys.stderr
        )
        return 1
    import importlib

    module, name = target
    fn = getattr(importlib.import_module(f"runtime.engine.verbs.{module}"), name)
    from runtime.engine.engine import Engine

    try:
        return int(fn(Engine(), rest))
    except FlagError as err:
        print(f"isoproof: {err}", file=sys.stderr)
        return 125
    except IsoproofError as err:
        if os.environ.get("ISOPROOF_DEBUG"):
            import traceback

            traceback.print_exc()
        print(str(err), file=sys.stderr)
        return int(getattr(err, "exit_code", 1))
    except KeyboardInterrupt:
        return 130
    except PermissionError as err:
        print(f"isoproof: {err.strerror}: {err.filename} (the engine needs root)", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
