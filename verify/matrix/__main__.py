"""``python -m verify.matrix``: see :mod:`verify.matrix.cli`."""

import sys

from verify.matrix.cli import main

sys.exit(main(sys.argv[1:]))
