"""A pytest plugin for tests/test_plugin.py: runs the collected checks in reverse order (isolation test)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.reverse()
