"""Project-wide test policy: root tests say why they skip instead of failing obscurely, and a
run stopped by SIGTERM or SIGHUP (a cancelled CI job, ``timeout``) still runs its finalisers."""

from __future__ import annotations

import os

import pytest

from verify.plugin import interrupt_on_termination


def pytest_configure(config: pytest.Config) -> None:
    # Our fixtures make dockerds, containers, netns and bridges: see interrupt_on_termination.
    config.add_cleanup(interrupt_on_termination())  # the old handlers back at unconfigure


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(
        reason=f"needs root (namespaces, cgroups); running as uid {os.geteuid()}"
    )
    for item in items:
        if item.get_closest_marker("root"):
            item.add_marker(skip)
