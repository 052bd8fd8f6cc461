# Here rather than in runtime.oci.state: the CLI needs it to parse its options, and importing state
# (json, re, enum) before the read-only-bind re-exec would be paid twice by create, run and exec.
DEFAULT_ROOT = "/run/isoproof"
