"""A pytest plugin for tests/test_run_integrity.py: quietly drops one check, as a stray conftest.py or plugin
could (a certification must notice that not every check ran)."""

from __future__ import annotations

import pytest

DROPPED = "test_names_survive_a_vcenter_restart"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    dropped = [i for i in items if i.name == DROPPED]
    items[:] = [i for i in items if i.name != DROPPED]
    config.hook.pytest_deselected(items=dropped)
