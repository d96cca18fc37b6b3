"""Sessions and faults: expired sessions, transient and persistent faults, latency and a vCenter restart,
driven through the fake vCenter's control API."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

import pytest

from conformance.checks.common import assert_figures, figure_problems
from conformance.contract import ComputeDriver, DriverError, Instance, VCenterUnavailable
from conformance.fixtures import Cleanup
from conformance.oracle import Oracle

Make = Callable[..., ComputeDriver]

pytestmark = pytest.mark.needs_control


@pytest.mark.requirement("FAULT-01")
@pytest.mark.resets
@pytest.mark.covers("vcenter:session-expired")
def test_expired_session_is_replaced(driver: ComputeDriver, oracle: Oracle, control: Any) -> None:
    """The session ends twice: a driver must log in again every time, not once per lifetime."""
    before = sorted(driver.get_available_nodes(refresh=True))
    for time_ in ("once", "a second time"):
        expired = control.expire_sessions()
        assert expired >= 1, "the control API ended no session: nothing to test"
        try:
            after = sorted(driver.get_available_nodes(refresh=True))
        except Exception as e:
            pytest.fail(f"after its session expired {time_}, refresh raised {type(e).__name__}: {e}; required a "
                        "transparent re-login", pytrace=False)
        assert after == before, f"after re-login ({time_}) the nodes are {after}; required {before}"
        assert_figures(driver, oracle, when=f"after re-login ({time_})")


@pytest.mark.requirement("FAULT-02")
@pytest.mark.resets
@pytest.mark.covers("vcenter:transient-fault", "vcenter:persistent-fault")
def test_faults_never_give_wrong_figures(driver: ComputeDriver, oracle: Oracle, control: Any) -> None:
    nodes = driver.get_available_nodes(refresh=True)
    inv = oracle.inventory()  # faults hit every session: the oracle reads before they are injected
    # A transient fault: the next read fails once. Retried (then right) or raised as VCenterUnavailable.
    control.add_fault("RetrievePropertiesEx", "SystemError", count=1, message="injected: transient")
    with contextlib.suppress(VCenterUnavailable):
        problems = figure_problems(driver, inv)
        assert not problems, "after one transient fault: " + "; ".join(problems)
    # A persistent fault: every read fails. The driver must say so, not serve what it read before.
    control.add_fault("RetrievePropertiesEx", "SystemError", message="injected: persistent")
    control.add_fault("RetrieveProperties", "SystemError", message="injected: persistent")
    try:
        got = driver.get_available_nodes(refresh=True)
        pytest.fail(f"refresh returned {got} while vCenter fails every read; required VCenterUnavailable",
                    pytrace=False)
    except VCenterUnavailable:
        pass
    except Exception as e:
        pytest.fail(f"refresh raised {type(e).__name__} ({e}); required VCenterUnavailable", pytrace=False)
    for node in nodes:
        try:
            res = driver.get_available_resource(node)
            pytest.fail(f"after a failed refresh, get_available_resource({node!r}) returned {res}; required "
                        "VCenterUnavailable (old figures served as fresh)", pytrace=False)
        except VCenterUnavailable:
            pass
    control.clear_faults()
    assert_figures(driver, oracle, when="once vCenter answers again")


@pytest.mark.requirement("FAULT-03")
@pytest.mark.resets
@pytest.mark.covers("vcenter:slow")
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
@pytest.mark.covers("vcenter:restarted")
def test_driver_recovers_from_a_vcenter_restart(driver: ComputeDriver, oracle: Oracle, control: Any) -> None:
    """Before the restart a host is in maintenance mode; the restart brings the inventory back as loaded (the
    host out of maintenance), so figures kept from before the restart are wrong figures."""
    before = sorted(driver.get_available_nodes(refresh=True))
    inv = oracle.inventory()
    host = next((h for p in driver.config.clusters if (c := inv.cluster(p)) for h in c.hosts if h.schedulable), None)
    if host is not None:
        control.set_host(host.moref, maintenance=True)
        assert_figures(driver, oracle, when=f"with {host.name} in maintenance mode, before the restart")
    control.reset()  # a restart: every session ends, the inventory is as loaded
    try:
        after = sorted(driver.get_available_nodes(refresh=True))
    except Exception as e:
        pytest.fail(f"after a vCenter restart, refresh raised {type(e).__name__}: {e}; required recovery",
                    pytrace=False)
    assert after == before, f"after a vCenter restart the nodes are {after}; required {before}"
    assert_figures(driver, oracle, when="after a vCenter restart" + (
        f" (which brought {host.name} back out of maintenance mode)" if host is not None else ""))


@pytest.mark.requirement("FAULT-02")
@pytest.mark.covers("vcenter:unreachable", "method.__init__:refused")
def test_unreachable_vcenter_is_vcenter_unavailable(make_driver: Make) -> None:
    """Nothing listens at the URL (127.0.0.1, a closed port): VCenterUnavailable from the constructor or the
    first refresh; never nodes, never a raw socket error."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: a port nothing listens on
    url = f"https://127.0.0.1:{port}/sdk"
    try:
        got = make_driver(url=url).get_available_nodes(refresh=True)
    except VCenterUnavailable:
        return
    except DriverError as e:
        pytest.fail(f"with nothing listening at {url} the driver raised {type(e).__name__} ({e}); required "
                    "VCenterUnavailable", pytrace=False)
    pytest.fail(f"with nothing listening at {url} the driver reported nodes {got}; required VCenterUnavailable",
                pytrace=False)
