"""Shared fixtures for the project's own tests: topology paths, a running fake vCenter, an oracle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.harness import Endpoint, docker_available, start_simulator
from conformance.oracle import Oracle

REPO = Path(__file__).resolve().parent.parent
STANDARD = REPO / "fixtures" / "topologies" / "standard.yaml"


def backend_params() -> list[object]:
    """Both backends; the container one skips, saying why, when no Docker engine answers."""
    reason = docker_available()
    return ["process", pytest.param("container", marks=[
        pytest.mark.container,
        pytest.mark.skipif(reason is not None, reason=f"container backend not tested: {reason}")])]


@pytest.fixture(scope="session")
def standard() -> Path:
    return STANDARD


@pytest.fixture(scope="session")
def sim() -> Iterator[Endpoint]:
    """One fake vCenter (process backend, standard topology) shared by tests that only read or clean up."""
    endpoint = start_simulator(STANDARD)
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope="session")
def sim_oracle(sim: Endpoint) -> Iterator[Oracle]:
    o = Oracle(sim.host, sim.port, sim.username, sim.password, str(sim.ca_file))
    yield o
    o.close()
