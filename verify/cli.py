"""``isoproof verify`` / ``python -m verify.cli``: run the verification suite.

Any argument pytest understands passes through; ``--runtime`` and ``--isoproof-results`` are the
suite's own. Results go to ``.isoproof-results/`` unless told otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def build_argv(argv: list[str]) -> list[str]:
    args = list(argv)
    if not any(a == "--isoproof-results" or a.startswith("--isoproof-results=") for a in args):
        args += ["--isoproof-results", os.environ.get("ISOPROOF_RESULTS", ".isoproof-results")]
    # Run from any directory: the checks are found as a package, with no project config files.
    return ["-p", "verify.plugin", "--rootdir", os.path.dirname(os.path.abspath(__file__)),
            "-c", os.devnull, "-p", "no:cacheprovider", "--pyargs", "verify.checks", *args]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    import pytest

    from verify.drivers import make_driver

    argv = sys.argv[1:] if argv is None else argv
    # Check what can be checked before pytest starts, so bad input is one line and exit 2.
    for i, a in enumerate(argv):
        label = (
            argv[i + 1]
            if a == "--runtime" and i + 1 < len(argv)
            else a.partition("=")[2]
            if a.startswith("--runtime=")
            else None
        )
        if a == "--runtime" and i + 1 >= len(argv):
            print(
                "isoproof verify: --runtime needs a value (oci:PATH, isoproof, docker, podman)",
                file=sys.stderr,
            )
            return 2
        if label is not None:
            try:
                make_driver(label, "x", Path("/nonexistent"), "x")
            except ValueError as e:
                print(f"isoproof verify: {e}", file=sys.stderr)
                return 2
    return int(pytest.main(build_argv(argv)))


if __name__ == "__main__":
    sys.exit(main())
