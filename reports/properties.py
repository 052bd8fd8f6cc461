"""Which isolation property each check proves: the one table the report's summary is built from.

A reader asks "does the PID namespace hold on every leg?", not "did test_pid1_death_ends_container
pass?". Every check of ``verify/checks`` maps to exactly one property here (a unit test parses
the check files and fails on a check that does not); checks of a family that is still growing
(``test_seccomp*``, ``test_escape*``, and everything in ``test_escapes.py`` / ``test_seccomp.py``)
map by prefix or by file, so a new one lands in its property at once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Property:
    id: str  # stable: anchors and baseline comparisons use it
    title: str
    family: str  # namespaces, resources, security, lifecycle, suite
    what: str  # one line: what holding means, as the suite proves it


PROPERTIES: tuple[Property, ...] = (
    Property("hostname", "hostname (UTS namespace)", "namespaces",
             "the hostname set inside is not the host's, and a change inside stays inside"),
    Property("pid", "PID 1 (PID namespace)", "namespaces",
             "init is PID 1, sees only its own processes, and its death ends the container"),
    Property("users", "users (user namespace)", "namespaces",
             "root inside maps to an unprivileged uid outside"),
    Property("ipc", "IPC (SysV objects)", "namespaces",
             "a SysV shm/sem/msg object made on one side is invisible on the other"),
    Property("network", "network namespace", "namespaces",
             "only lo and the container's own veth, traffic only over the veth"),
    Property("mounts", "mounts (mount namespace, rootfs)", "namespaces",
             "mounts do not propagate either way; the rootfs confines; mount(2) is refused"),
    Property("cgroupns", "cgroup namespace", "namespaces", "/proc/self/cgroup inside shows /"),
    Property("cpu-weights", "CPU weights under contention", "resources",
             "busy containers split a CPU in the ratio of their shares/weights"),
    Property("cpu-quota", "CPU quota", "resources", "usage stays at quota/period of a CPU"),
    Property("memory", "memory limit and OOM kill", "resources",
             "usage stays under the limit; beyond it the OOM killer ends the workload"),
    Property("page-cache", "page cache under the memory limit", "resources",
             "written files' cache is reclaimed within the limit, not OOM-killed"),
    Property("io", "I/O throttles (bps, iops)", "resources",
             "O_DIRECT reads and writes run at the throttle's rate"),
    Property("pids", "pids limit", "resources", "forks stop at pids.max; the host keeps forking"),
    Property("freezer", "freezer (pause/resume)", "resources",
             "a paused container uses no CPU and runs again after resume"),
    Property("devices", "devices", "security", "host block devices cannot be opened inside"),
    Property("capabilities", "capabilities and no_new_privs", "security",
             "init holds no capability beyond the default set; no_new_privs is set"),
    Property("paths", "masked and read-only paths", "security",
             "/proc and /sys paths that leak host facts are masked or read-only"),
    Property("seccomp", "seccomp", "security", "the seccomp profile asked for is enforced"),
    Property("escapes", "escapes", "security",
             "known container-escape classes fail against the runtime"),
    Property("lifecycle", "lifecycle verbs", "lifecycle",
             "create/start/kill/delete (and the engine's stop/restart/logs) behave as specified"),
    Property("host", "host left as found", "suite",
             "nothing the run made is left behind, and the host's state is unchanged"),
    Property("selfcheck", "leg self-check", "suite",
             "the kernel and cgroup setup of a matrix leg are what the leg claims"),
)  # fmt: skip
BY_ID = {p.id: p for p in PROPERTIES}
OTHER = Property("other", "other checks", "suite", "checks this report has no property for")

# check function name -> property id
CHECKS: dict[str, str] = {
    "test_uts_isolated": "hostname",
    "test_uts_shared_with_host": "hostname",
    "test_pid_namespace_init_is_pid1": "pid",
    "test_pid1_death_ends_container": "pid",
    "test_cannot_see_host_processes": "pid",
    "test_user_namespace": "users",
    "test_user_root_is_unprivileged_outside": "users",
    "test_ipc_isolated_both_ways": "ipc",
    "test_ipc_shared_with_host": "ipc",
    "test_ipc_shared_with_container": "ipc",
    "test_network_none": "network",
    "test_network_veth": "network",
    "test_mount_no_propagation_out": "mounts",
    "test_mount_no_propagation_in": "mounts",
    "test_rootfs_confinement": "mounts",
    "test_cannot_mount": "mounts",
    "test_cgroup_namespace": "cgroupns",
    "test_cpu_shares_split": "cpu-weights",
    "test_cpu_shares_generated": "cpu-weights",
    "test_cpu_quota": "cpu-quota",
    "test_memory_limit_oom": "memory",
    "test_memory_limit_generated": "memory",
    "test_page_cache_capped": "page-cache",
    "test_io_throttle": "io",
    "test_pids_limit": "pids",
    "test_pause_resume": "freezer",
    "test_no_host_block_devices": "devices",
    "test_capabilities": "capabilities",
    "test_no_new_privs": "capabilities",
    "test_masked_paths": "paths",
    "test_readonly_paths": "paths",
    "test_lifecycle_state_machine": "lifecycle",
    "test_stop_sends_term_first": "lifecycle",
    "test_stop_kills_after_timeout": "lifecycle",
    "test_kill_is_sigkill": "lifecycle",
    "test_start_and_restart": "lifecycle",
    "test_logs_and_exec": "lifecycle",
}
# Families whose checks are still being written: every check named so belongs to the property.
PREFIXES: tuple[tuple[str, str], ...] = (
    ("test_seccomp", "seccomp"),
    ("test_escape", "escapes"),
    ("test_uts", "hostname"),
    ("test_pid", "pid"),
    ("test_user", "users"),
    ("test_ipc", "ipc"),
    ("test_network", "network"),
    ("test_mount", "mounts"),
    ("test_cgroup_namespace", "cgroupns"),
    ("test_cpu_shares", "cpu-weights"),
    ("test_cpu_weight", "cpu-weights"),
    ("test_cpu_quota", "cpu-quota"),
    ("test_memory", "memory"),
    ("test_page_cache", "page-cache"),
    ("test_io", "io"),
    ("test_pids", "pids"),
    ("test_pause", "freezer"),
    ("test_freez", "freezer"),
    ("test_device", "devices"),
    ("test_cap", "capabilities"),
    ("test_masked", "paths"),
    ("test_readonly", "paths"),
    ("test_lifecycle", "lifecycle"),
)
# Modules whose every check belongs to one property (the matrix leg's self-check payload).
MODULES = {"selfcheck": "selfcheck", "escapes": "escapes", "seccomp": "seccomp"}


def property_of(module: str, row: str) -> Property:
    """The property a grid row (``test_io_throttle[io-write-bps-10m]``) proves."""
    name = row.partition("[")[0]
    if name in CHECKS:
        return BY_ID[CHECKS[name]]
    if module in MODULES:  # a family's own file: every check in it belongs to the family
        return BY_ID[MODULES[module]]
    for prefix, pid in PREFIXES:
        if name.startswith(prefix):
            return BY_ID[pid]
    return OTHER
