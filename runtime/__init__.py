"""isoproof's reference container runtime.

The package is split the way runc's libcontainer is:

- ``runtime.sys``      the one place where the runtime talks to the kernel (ctypes, ``use_errno=True``)
- ``runtime.spec``     loading and validating an OCI ``config.json`` into typed objects
- ``runtime.cgroups``  one manager interface with cgroup v1 (also hybrid) and v2 drivers
- ``runtime.oci``      the runc-compatible lifecycle and its CLI, ``isoproof-oci``
- ``runtime.engine``   the docker-like engine on top of it, ``isoproof``
"""

__version__ = "0.1.0"
