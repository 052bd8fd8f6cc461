"""Project-wide test policy: root tests say why they skip instead of failing obscurely."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(
        reason=f"needs root (namespaces, cgroups); running as uid {os.geteuid()}"
    )
    for item in items:
        if item.get_closest_marker("root"):
            item.add_marker(skip)
