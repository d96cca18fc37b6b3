"""Sessions and faults: expired sessions, transient and persistent faults, latency and a vCenter restart,
driven through the fake vCenter's control API."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

import pytest

from conformance.checks.common import (
    FAULT_TIMEOUT_S,
    answers_under_fault,
    assert_figures,
    change_figures,
    figure_problems,
    read_every_node,
    within,
)
from conformance.contract import ComputeDriver, DriverConfig, Instance, VCenterUnavailable, fault_report_bound
from conformance.fixtures import Cleanup
from conformance.oracle import Oracle

pytestmark = pytest.mark.needs_control


@pytest.mark.requirement("FAULT-01")
@pytest.mark.resets
def test_expired_session_is_replaced(driver: ComputeDriver, oracle: Oracle, control: Any) -> None:
    before = sorted(driver.get_available_nodes(refresh=True))
    expired = control.expire_sessions()
    assert expired >= 1, "the control API ended no session: nothing to test"
    try:
        after = sorted(driver.get_available_nodes(refresh=True))
    except Exception as e:
        pytest.fail(f"after its session expired, refresh raised {type(e).__name__}: {e}; required a "
                    "transparent re-login", pytrace=False)
    assert after == before, f"after re-login the nodes are {after}; required {before}"
    assert_figures(driver, oracle, when="after re-login")


@pytest.mark.requirement("FAULT-02")
@pytest.mark.resets
def test_faults_never_give_wrong_figures(driver: ComputeDriver, oracle: Oracle, control: Any) -> None:
    read_every_node(driver)
    changed = change_figures(oracle, driver.config.clusters)
    inv = oracle.inventory()  # faults hit every session: the oracle reads before they are injected
    # A persistent fault: every read fails. Nothing the driver answers may be wrong: not the node set, and
    # no figures from its last good read (vCenter changed since).
    for method in ("RetrievePropertiesEx", "ContinueRetrievePropertiesEx", "RetrieveProperties"):
        control.add_fault(method, "SystemError", message="injected: persistent")
    problems = answers_under_fault(driver, inv, f"while vCenter fails every read with SystemError ({changed})")
    control.clear_faults()
    assert not problems, "; ".join(problems)
    # A transient fault: the next read fails once. Retried (then right) or raised as VCenterUnavailable.
    control.add_fault("RetrievePropertiesEx", "SystemError", count=1, message="injected: transient")
    with contextlib.suppress(VCenterUnavailable):
        problems = figure_problems(driver, inv)
        assert not problems, f"after one transient fault ({changed}): " + "; ".join(problems)
    assert_figures(driver, oracle, when="once vCenter answers again")


@pytest.mark.requirement("FAULT-03")
@pytest.mark.resets
def test_latency_is_tolerated(driver: ComputeDriver, oracle: Oracle, control: Any, cleanup: Cleanup,
                              new_uuid: Any) -> None:
    control.set_latency("*", 300)
    assert_figures(driver, oracle, when="with 300 ms added to every vCenter call")
    node = driver.get_available_nodes()[0]
    instance = Instance(uuid=new_uuid(), name="fault-03")
    cleanup.instance(oracle, instance.uuid)
    driver.spawn(instance, node)
    control.clear_latency()
    assert len(oracle.find_vms(instance.uuid)) == 1, "the spawn under latency did not make exactly one VM"


@pytest.mark.requirement("FAULT-04")
@pytest.mark.resets
def test_driver_recovers_from_a_vcenter_restart(driver: ComputeDriver, oracle: Oracle, control: Any) -> None:
    before = sorted(driver.get_available_nodes(refresh=True))
    control.reset()  # a restart: every session ends, the inventory is as loaded
    try:
        after = sorted(driver.get_available_nodes(refresh=True))
    except Exception as e:
        pytest.fail(f"after a vCenter restart, refresh raised {type(e).__name__}: {e}; required recovery",
                    pytrace=False)
    assert after == before, f"after a vCenter restart the nodes are {after}; required {before}"
    assert_figures(driver, oracle, when="after a vCenter restart")


@pytest.mark.requirement("FAULT-05")
@pytest.mark.resets
def test_connection_errors_never_give_old_figures(make_driver: Callable[..., ComputeDriver], oracle: Oracle,
                                                  control: Any) -> None:
    """Reads whose connection is reset or closed unanswered: VCenterUnavailable or right figures, each call
    within FAULT-05's bound."""
    driver = make_driver(vcenter_timeout_s=FAULT_TIMEOUT_S)
    limit = fault_report_bound(driver.config)
    read_every_node(driver)
    changed = change_figures(oracle, driver.config.clusters)
    inv = oracle.inventory()
    for mode, words in (("reset", "reset (TCP RST)"), ("refuse", "closed unanswered")):
        control.set_connection_fault(mode, method="RetrievePropertiesEx")
        try:
            problems = answers_under_fault(driver, inv, f"with every RetrievePropertiesEx connection {words} "
                                                        f"({changed})", limit)
            hits = control.connection_fault().get("hits", 0)
        finally:
            control.clear_connection_fault()
        assert not problems, "; ".join(problems)
        assert hits, ("the driver read no figures with RetrievePropertiesEx while the connection fault was on, so "
                      "this check proved nothing; required a read (the check injects its faults there)")
    assert_figures(driver, oracle, when="once vCenter answers again")


@pytest.mark.requirement("FAULT-05")
@pytest.mark.resets
def test_a_silent_vcenter_is_reported_in_bounded_time(make_driver: Callable[..., ComputeDriver], oracle: Oracle,
                                                      control: Any) -> None:
    """Every SOAP call is left unanswered (the connection stays open): each driver call must give up within
    FAULT-05's bound for the vcenter_timeout_s it was given."""
    driver = make_driver(vcenter_timeout_s=FAULT_TIMEOUT_S)
    read_every_node(driver)
    changed = change_figures(oracle, driver.config.clusters)
    inv = oracle.inventory()
    control.set_connection_fault("stall")
    try:
        problems = answers_under_fault(driver, inv, f"with vCenter never answering ({changed})",
                                       fault_report_bound(driver.config))
        hits = control.connection_fault().get("hits", 0)
    finally:
        control.clear_connection_fault()
    assert not problems, "; ".join(problems)
    if not hits:
        pytest.skip("the driver called vCenter for none of its answers while vCenter was silent (it answers "
                    "from what it read, rightly): nothing to bound")


@pytest.mark.requirement("FAULT-05")
def test_an_unreachable_vcenter_at_start_is_reported(make_driver: Callable[..., ComputeDriver]) -> None:
    """vCenter refuses the TCP connection (a closed port on 127.0.0.1) when the driver starts: its
    constructor or its first refresh raises VCenterUnavailable, each in time (no node set is right: the
    configured clusters exist, in a vCenter the driver cannot reach)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: connections are refused
    url = f"https://127.0.0.1:{port}/sdk"
    when = f"with vCenter refusing connections ({url})"
    limit = fault_report_bound(DriverConfig(url=url, username="", password="", vcenter_timeout_s=FAULT_TIMEOUT_S))
    try:
        d = within(f"{when}, the driver's constructor",
                   lambda: make_driver(url=url, vcenter_timeout_s=FAULT_TIMEOUT_S), limit)
    except VCenterUnavailable:
        return
    try:
        got = within(f"{when}, the first refresh", lambda: d.get_available_nodes(refresh=True), limit)
    except VCenterUnavailable:
        return
    pytest.fail(f"{when}: refresh returned {got}; required VCenterUnavailable", pytrace=False)
