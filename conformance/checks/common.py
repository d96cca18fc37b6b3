"""Helpers shared by the checks: comparing a driver's figures with the oracle's, and naming differences
the way a vendor needs to read them (observed vs required)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pytest

from conformance.contract import ComputeDriver, NodeNotFound, VCenterUnavailable
from conformance.oracle import ClusterFacts, Inventory, Oracle, figure_mismatch

T = TypeVar("T")

#: The figures every node must report equal to the oracle's (RES-01, RES-02, RES-05).
CORE_FIGURES = ("vcpus", "memory_mb")
DISK_FIGURES = ("local_gb", "local_gb_used")


def node_set_problems(got: list[str], expected: dict[str, ClusterFacts]) -> list[str]:
    """Differences between the nodes a driver reports and the nodes it must report."""
    problems = []
    if len(got) != len(set(got)):
        problems.append(f"duplicate node names in {sorted(got)}")
    for name in sorted(expected.keys() - set(got)):
        problems.append(f"missing node {name} (cluster {expected[name].path})")
    for name in sorted(set(got) - expected.keys()):
        problems.append(f"unexpected node {name}")
    return problems


def figure_problems(driver: ComputeDriver, inv: Inventory, keys: Iterable[str] = CORE_FIGURES) -> list[str]:
    """Refresh the driver, then compare every expected node's figures with the oracle's snapshot."""
    nodes = set(driver.get_available_nodes(refresh=True))
    keys = tuple(keys)
    problems = []
    for name, cluster in sorted(inv.expected_nodes(driver.config.clusters).items(), key=lambda kv: kv[1].path):
        if name not in nodes:
            problems.append(f"{cluster.path}: no node {name} (see NODE-01)")
            continue
        try:
            got = driver.get_available_resource(name)
        except NodeNotFound:
            problems.append(f"{cluster.path}: get_available_resource({name!r}) raised NodeNotFound")
            continue
        want = inv.expected_resources(cluster, driver.config.datastore_regex)
        for key in keys:
            wrong = figure_mismatch(key, got.get(key), want)
            if wrong:
                problems.append(f"{cluster.path}: {wrong}")
    return problems


def assert_figures(driver: ComputeDriver, oracle: Oracle, keys: Iterable[str] = CORE_FIGURES,
                   when: str = "") -> None:
    problems = figure_problems(driver, oracle.inventory(), keys)
    assert not problems, (f"{when}: " if when else "") + "; ".join(problems)


#: FAULT-05's checks give the driver this vcenter_timeout_s: short, so a driver that honours it shows it in
#: seconds (fault_report_bound: 16 s), and a driver that ignores it costs the run no more than that.
FAULT_TIMEOUT_S = 2.0


def within(what: str, fn: Callable[[], T], limit: float) -> T:
    """fn's result (or its exception) if it returns within ``limit`` seconds; the check fails otherwise
    (FAULT-05: a call that neither answers nor raises in time has hung its service).

    fn runs in a daemon thread: a driver that never returns keeps that thread, not the run.
    """
    done: list[tuple[bool, Any]] = []
    worker = threading.Thread(target=lambda: done.append(_outcome(fn)), daemon=True, name="vcconform-within")
    worker.start()
    worker.join(limit)
    if not done:
        pytest.fail(f"{what} did not return within {limit:g} s (FAULT-05's bound for vcenter_timeout_s "
                    f"{FAULT_TIMEOUT_S:g} s); required an answer or VCenterUnavailable, not retrying or waiting "
                    "forever", pytrace=False)
    ok, value = done[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _outcome(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except BaseException as e:  # handed to the caller's thread
        return False, e


def read_every_node(driver: ComputeDriver) -> list[str]:
    """A full refresh and every node's figures: the driver's last good read before a fault."""
    nodes = driver.get_available_nodes(refresh=True)
    for node in nodes:
        driver.get_available_resource(node)
    return nodes


def change_figures(oracle: Oracle, clusters: Iterable[str]) -> str:
    """Put one host of a managed multi-host cluster into maintenance: the truth moves away from what a
    driver read before, so old figures served as fresh are wrong figures (returns what changed)."""
    inv = oracle.inventory()
    multi = [c for c in (inv.cluster(p) for p in clusters) if c and len([h for h in c.hosts if h.schedulable]) >= 2]
    if not multi:
        pytest.skip("needs a managed cluster with two schedulable hosts")
    host = next(h for h in multi[0].hosts if h.schedulable)
    oracle.set_maintenance(host.moref, True)
    return f"{host.name} of {multi[0].path} entered maintenance mode after the driver's last good read"


def answers_under_fault(driver: ComputeDriver, inv: Inventory, when: str, limit: float | None = None) -> list[str]:
    """What is wrong with the driver's answers while vCenter fails: a refresh may raise VCenterUnavailable
    or return the right node set; each node's figures may raise VCenterUnavailable or be right (the
    oracle's ``inv``, read before the fault). Stops at the first node with a problem. With ``limit``, each
    call must also return within that many seconds (FAULT-05)."""
    expected = inv.expected_nodes(driver.config.clusters)

    def bounded(what: str, fn: Callable[[], T]) -> T:
        return fn() if limit is None else within(f"{when}: {what}", fn, limit)

    try:
        got: list[str] | None = bounded("refresh", lambda: driver.get_available_nodes(refresh=True))
    except VCenterUnavailable:
        got = None
    except Exception as e:
        return [f"{when}: refresh raised {type(e).__name__} ({e}); required VCenterUnavailable or the right nodes"]
    if got is not None:
        wrong = node_set_problems(got, expected)
        if wrong:
            return [f"{when}: refresh returned a wrong node set: " + "; ".join(wrong)]
    for name, cluster in sorted(expected.items(), key=lambda kv: kv[1].path):
        try:
            res = bounded(f"get_available_resource({name})", functools.partial(driver.get_available_resource, name))
        except VCenterUnavailable:
            continue
        except Exception as e:
            return [f"{when}: get_available_resource({name}) raised {type(e).__name__} ({e}); required "
                    "VCenterUnavailable or the right figures"]
        want = inv.expected_resources(cluster, driver.config.datastore_regex)
        wrong = [w for w in (figure_mismatch(k, res.get(k), want) for k in CORE_FIGURES) if w]
        if wrong:
            return [f"{when}: {cluster.path} reported {', '.join(wrong)} (figures vCenter no longer has, served as "
                    "fresh); required VCenterUnavailable or the right figures"]
    return []
