"""The control API's connection-level faults through conformance.control: refuse, reset and stall a SOAP
method's connections, count the hits, clear them; a bad mode is one ControlError line."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from conformance.control import Control, ControlError
from conformance.harness import Endpoint

SERVICE_CONTENT = ('<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
                   '<soapenv:Body><RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">'
                   'ServiceInstance</_this></RetrieveServiceContent></soapenv:Body></soapenv:Envelope>')


def _ask(sim: Endpoint, timeout: float = 10.0) -> requests.Response:
    return requests.post(sim.url, data=SERVICE_CONTENT, headers={"Content-Type": "text/xml"},
                         verify=str(sim.ca_file), timeout=timeout)


@pytest.mark.parametrize("mode", ["refuse", "reset"])
def test_refused_and_reset_connections_get_no_answer(sim: Endpoint, mode: str) -> None:
    control = Control(sim)
    control.set_connection_fault(mode, method="RetrieveServiceContent", count=1)
    try:
        with pytest.raises(requests.ConnectionError):
            _ask(sim)
        assert control.connection_fault() == {"mode": None}  # count 1: used up
        assert _ask(sim).status_code == 200
    finally:
        control.clear_connection_fault()


def test_a_stall_holds_the_call_until_cleared(sim: Endpoint) -> None:
    control = Control(sim)
    control.set_connection_fault("stall", method="RetrieveServiceContent")
    outcome: list[BaseException | int] = []

    def ask() -> None:
        try:
            outcome.append(_ask(sim, timeout=60).status_code)
        except requests.RequestException as e:
            outcome.append(e)

    caller = threading.Thread(target=ask)
    try:
        caller.start()
        deadline = time.monotonic() + 30
        while control.connection_fault().get("hits", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        fault = control.connection_fault()
        assert fault["mode"] == "stall" and fault["method"] == "RetrieveServiceContent" and fault["hits"] == 1
        assert not outcome, "a stalled call was answered"
    finally:
        control.clear_connection_fault()
    caller.join(30)
    assert outcome and isinstance(outcome[0], requests.ConnectionError), outcome  # closed unanswered
    assert _ask(sim).status_code == 200


def test_a_bad_mode_is_one_control_error(sim: Endpoint) -> None:
    with pytest.raises(ControlError, match=r"connection-fault: HTTP 400: .*mode"):
        Control(sim).set_connection_fault("explode")
