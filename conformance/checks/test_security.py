"""Security: TLS verification, credentials kept out of logs, errors and reprs, bounded login attempts."""

from __future__ import annotations

import http.client
import logging
import ssl
import traceback
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from conformance.contract import AuthenticationFailed, ComputeDriver, DriverError, Instance, node_name
from conformance.fixtures import Cleanup, Site
from conformance.oracle import Oracle

Make = Callable[..., ComputeDriver]


@pytest.mark.requirement("SEC-01")
@pytest.mark.covers("vcenter:certificate-untrusted", "config.ca_file:none", "config.insecure:false")
def test_untrusted_certificate_is_refused(make_driver: Make, site: Site) -> None:
    if site.vcenter.backend == "external":
        pytest.skip("needs a vCenter whose certificate the system store does not trust (the fake one)")
    try:
        d = make_driver(ca_file=None, insecure=False)
        got = d.get_available_nodes(refresh=True)
    except DriverError:
        return
    pytest.fail(f"with no CA bundle and insecure unset, the driver accepted an untrusted certificate and "
                f"reported {got}; required a DriverError", pytrace=False)


@pytest.mark.requirement("SEC-01")
@pytest.mark.needs_control
@pytest.mark.covers("vcenter:certificate-other-name")
def test_certificate_for_another_host_name_is_refused(make_driver: Make, site: Site, control: Any,
                                                      cleanup: Cleanup) -> None:
    """The same vCenter on another port, its certificate signed by the configured CA but issued to
    vcenter.invalid: the chain is trusted, the name is not this host's, so the driver must refuse it."""
    url = control.open_listener(["vcenter.invalid"])
    cleanup.later(control.close_listeners)
    _listener_serves(url, str(site.vcenter.ca_file))
    try:
        got = make_driver(url=url).get_available_nodes(refresh=True)
    except DriverError:
        return
    pytest.fail(f"at {url}, whose certificate names vcenter.invalid only, the driver accepted it (CA bundle "
                f"{site.vcenter.ca_file}) and reported {got}; required a DriverError (host name not checked)",
                pytrace=False)


def _listener_serves(url: str, ca_file: str) -> None:
    """The listener's certificate chains to the CA and names another host: else the check proves nothing."""
    u = urllib.parse.urlsplit(url)

    def get_about(check_hostname: bool) -> None:
        context = ssl.create_default_context(cafile=ca_file)
        context.check_hostname = check_hostname
        conn = http.client.HTTPSConnection(str(u.hostname), u.port, context=context, timeout=30)
        try:
            conn.request("GET", "/about")
            conn.getresponse().read()
        finally:
            conn.close()

    try:
        get_about(check_hostname=False)
    except OSError as e:
        pytest.fail(f"the fake vCenter's listener at {url} does not serve a certificate of its CA: {e} (a "
                    "simulator problem, not the driver's)", pytrace=False)
    try:
        get_about(check_hostname=True)
    except OSError:
        return
    pytest.fail(f"the fake vCenter's listener at {url} presents a certificate valid for this host (a simulator "
                "problem, not the driver's)", pytrace=False)


@pytest.mark.requirement("SEC-01")
@pytest.mark.covers("config.insecure:true", "config.ca_file:none")
def test_insecure_accepts_a_certificate_without_a_ca_bundle(make_driver: Make, site: Site, oracle: Oracle) -> None:
    """insecure=True, said explicitly, turns verification off: a vCenter with a self-signed certificate is
    used (with no CA bundle), as operators of lab vCenters need."""
    if site.vcenter.backend == "external":
        pytest.skip("needs a vCenter whose certificate the system store does not trust (the fake one)")
    try:
        got = make_driver(ca_file=None, insecure=True).get_available_nodes(refresh=True)
    except DriverError as e:
        pytest.fail(f"with insecure=True the driver refused vCenter: {type(e).__name__}: {e}; required the nodes",
                    pytrace=False)
    want = set(oracle.inventory().expected_nodes(site.clusters))
    assert set(got) == want, f"with insecure=True the driver reported {sorted(got)}; required {sorted(want)}"


@pytest.mark.requirement("SEC-02")
@pytest.mark.covers("config.ca_file:set")
def test_certificate_signed_by_the_ca_bundle_is_accepted(make_driver: Make, site: Site, oracle: Oracle) -> None:
    if not site.vcenter.ca_file:
        pytest.skip("the site has no CA bundle of its own")
    try:
        got = make_driver(insecure=False).get_available_nodes(refresh=True)
    except DriverError as e:
        pytest.fail(f"with the right CA bundle ({site.vcenter.ca_file}) the driver refused vCenter: "
                    f"{type(e).__name__}: {e}", pytrace=False)
    assert set(got) == set(oracle.inventory().expected_nodes(site.clusters))


@pytest.mark.requirement("SEC-03")
@pytest.mark.covers("config.password:wrong")
def test_credentials_never_leak(make_driver: Make, site: Site, caplog: pytest.LogCaptureFixture,
                                new_uuid: Callable[[], str]) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[tuple[str, str]] = []
    secret = site.vcenter.password
    wrong = f"Wrong-{new_uuid()}"

    def keep(where: str, e: BaseException) -> None:
        texts.append((where, str(e)))
        texts.append((where + " (repr)", repr(e)))
        texts.append((where + " (traceback)", "".join(traceback.format_exception(e))))

    driver = make_driver()
    texts += [("repr(driver)", repr(driver)), ("repr(config)", repr(driver.config)), ("str(driver)", str(driver))]
    nodes = driver.get_available_nodes(refresh=True)
    driver.get_available_resource(nodes[0])
    for attempt in (lambda: driver.get_available_resource("not-a-node"),
                    lambda: driver.spawn(Instance(uuid=new_uuid(), name="sec-03"), node_name("domain-c0", "x"))):
        try:
            attempt()
        except Exception as e:
            keep("error on an unknown node", e)
    try:
        make_driver(password=wrong).get_available_nodes(refresh=True)
    except Exception as e:
        keep("error on wrong credentials", e)
    texts += [(f"log record from {r.name}", r.getMessage()) for r in caplog.records]
    leaks = sorted({where for where, text in texts for s in (secret, wrong) if s and s in text})
    assert not leaks, f"the password appears in: {', '.join(leaks)}"


@pytest.mark.requirement("SEC-04")
@pytest.mark.needs_control
@pytest.mark.covers("config.password:wrong", "method.__init__:refused")
def test_wrong_credentials_fail_after_bounded_attempts(make_driver: Make, control: Any,
                                                      new_uuid: Callable[[], str]) -> None:
    control.reset_calls()
    try:
        make_driver(password=f"Wrong-{new_uuid()}").get_available_nodes(refresh=True)
        pytest.fail("with a wrong password the driver reported nodes; required AuthenticationFailed",
                    pytrace=False)
    except AuthenticationFailed:
        pass
    except DriverError as e:
        pytest.fail(f"with a wrong password the driver raised {type(e).__name__} ({e}); required "
                    "AuthenticationFailed", pytrace=False)
    logins = control.calls()["by_method"].get("Login", 0)
    assert 1 <= logins <= 3, f"{logins} login attempts with a wrong password; required 1 to 3"
