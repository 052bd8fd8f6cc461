"""The kernel matrix: run the verification suite in virtme-ng VMs across kernels and cgroup modes.

A *leg* is one (kernel, cgroup mode) pair. ``host`` runs the payload on the host itself; every other
leg boots a Debian kernel with virtme-ng over the host's filesystem, mounts the cgroup layout the
leg asks for, runs the payload with the host venv's interpreter and writes its results into a
directory shared with the host. The legs' results are merged into one JSON result set.

Modules: ``legs`` (naming and parsing), ``kernels`` (apt resolution, download, checksummed cache),
``guest`` (the script the guest runs), ``vm`` (accelerator probe, virtme-ng command, timeouts),
``collect`` (pytest plugin recording each test's outcome), ``merge`` (result set and summary table),
``cli`` (``isoproof matrix`` / ``python -m verify.matrix``).
"""
