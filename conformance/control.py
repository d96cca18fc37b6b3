"""The Python client of the fake vCenter's control API (docs/control-api.md): faults, latency, slow tasks,
session expiry, host and datastore states, extra TLS listeners, call counts and reset to the loaded topology.

Every method is one HTTP request to the simulator's own loopback HTTPS port, authenticated with the vCenter
credentials and verified against the simulator's certificate. A failure raises ``ControlError`` with one line.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote

import requests

from conformance.harness import Endpoint

__all__ = ["Control", "ControlError", "session_id"]


def session_id(service_instance: Any) -> str:
    """The id under which ``calls()["sessions"]`` counts a pyvmomi connection's current session: the first
    16 hex digits of the SHA-256 of its session key (the key itself is a credential and never shown)."""
    key = service_instance._stub.GetSessionId() or ""
    return hashlib.sha256(key.encode()).hexdigest()[:16] if key else "-"


class ControlError(RuntimeError):
    """A control request failed; the message is one line naming the request and the reason."""


class Control:
    """One method per endpoint of the control API v1 of a running fake vCenter."""

    def __init__(self, endpoint: Endpoint, timeout: float = 30.0) -> None:
        self.base = f"https://{endpoint.host}:{endpoint.port}/fakevc/v1/"
        self.timeout = timeout
        self._session = requests.Session()
        self._session.auth = (endpoint.username, endpoint.password)
        # Per request, not on the session: requests lets $REQUESTS_CA_BUNDLE override a session's verify.
        self._verify = str(endpoint.ca_file)

    def __repr__(self) -> str:
        return f"Control({self.base!r})"

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        what = f"control API {method} /fakevc/v1/{path}"
        try:
            r = self._session.request(method, self.base + path, json=body, timeout=self.timeout, verify=self._verify)
        except requests.RequestException as e:
            raise ControlError(f"{what}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        try:
            data = r.json()
        except ValueError:
            data = None
        if not r.ok:
            reason = data.get("error") if isinstance(data, dict) else None
            raise ControlError(f"{what}: HTTP {r.status_code}: {reason or r.reason}")
        return data

    # -- state --------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """``{"topology", "instance_uuid", "generation", "versions"}``."""
        return dict(self._call("GET", "status"))

    def reset(self) -> dict[str, Any]:
        """Put the inventory back as loaded (same morefs), clear every control setting; sessions end.
        Returns ``{"generation", "took_ms"}``."""
        return dict(self._call("POST", "reset"))

    def calls(self) -> dict[str, Any]:
        """SOAP requests served since start, reset or ``reset_calls``: ``{"total", "by_method": {name: calls},
        "bytes", "server_ms", "methods": {name: {"calls", "bytes", "server_ms"}}, "sessions": {id: {"calls",
        "bytes", "server_ms", "methods"}}}``; bytes are response bodies, sessions named by ``session_id``."""
        return dict(self._call("GET", "calls"))

    def reset_calls(self) -> None:
        self._call("DELETE", "calls")

    # -- faults, latency, slow tasks -----------------------------------------------------------------------

    def add_fault(self, method: str, fault: str, *, object: str | None = None,
                  count: int | None = None, probability: float | None = None, message: str | None = None) -> int:
        """Make ``method`` (a SOAP method name or ``*``) fail with the vSphere fault ``fault``, for one object
        (a moref value or a managed object type) or any; ``count`` times (default: always), with
        ``probability`` (default 1). Returns the rule's id."""
        body: dict[str, Any] = {"method": method, "fault": fault}
        for key, value in (("object", object), ("count", count), ("probability", probability),
                           ("message", message)):
            if value is not None:
                body[key] = value
        return int(self._call("POST", "faults", body)["id"])

    def faults(self) -> list[dict[str, Any]]:
        """The fault rules with their ``hits``."""
        return list(self._call("GET", "faults"))

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def set_latency(self, method: str, ms: float) -> None:
        """Delay the answer to each ``method`` call (``*``: every call) by ``ms`` milliseconds (0: none)."""
        self._call("PUT", "latency", {"method": method, "ms": ms})

    def clear_latency(self) -> None:
        self._call("DELETE", "latency")

    def set_task_delay(self, method: str, ms: float) -> None:
        """Keep the tasks of ``method`` (e.g. ``CreateVM_Task``) running for ``ms`` milliseconds (0: none)."""
        self._call("PUT", "task-delay", {"method": method, "ms": ms})

    def clear_task_delays(self) -> None:
        self._call("DELETE", "task-delay")

    # -- sessions and hosts ------------------------------------------------------------------------------

    def set_session_timeout(self, seconds: float) -> None:
        """End sessions idle for longer than ``seconds`` (0: never)."""
        self._call("PUT", "session-timeout", {"seconds": seconds})

    def expire_sessions(self) -> int:
        """End every session now; returns how many there were."""
        return int(self._call("POST", "sessions/expire")["expired"])

    def set_host(self, host: str, *, connection_state: str | None = None, maintenance: bool | None = None) -> None:
        """Set a host's (moref or name) connection state (``connected``, ``disconnected``, ``notResponding``)
        and/or maintenance mode directly; the derived figures follow before this returns."""
        body: dict[str, Any] = {}
        if connection_state is not None:
            body["connection_state"] = connection_state
        if maintenance is not None:
            body["maintenance"] = maintenance
        self._call("PUT", f"hosts/{quote(host, safe='')}", body)

    def set_datastore(self, datastore: str, *, accessible: bool | None = None,
                      maintenance: str | None = None) -> None:
        """Set a datastore's (moref or unique name) accessibility and/or maintenance mode (``normal``,
        ``enteringMaintenance``, ``inMaintenance``); placement refuses it from then on, as vCenter does."""
        body: dict[str, Any] = {}
        if accessible is not None:
            body["accessible"] = accessible
        if maintenance is not None:
            body["maintenance"] = maintenance
        self._call("PUT", f"datastores/{quote(datastore, safe='')}", body)

    # -- TLS -------------------------------------------------------------------------------------------------

    def open_listener(self, cert_names: list[str]) -> str:
        """Serve this vCenter on another loopback port, with a certificate the simulator's CA signs for
        ``cert_names`` (not this address); returns its SDK URL. A client that checks host names refuses it."""
        return str(self._call("POST", "listeners", {"cert_names": list(cert_names)})["url"])

    def close_listeners(self) -> None:
        self._call("DELETE", "listeners")

    # -- paging -----------------------------------------------------------------------------------------

    def paging(self) -> dict[str, Any]:
        """``{"page_size", "pending"}``: the most objects per RetrievePropertiesEx answer, and how many paged
        results wait to be read (continued or cancelled)."""
        return dict(self._call("GET", "paging"))

    def set_page_size(self, objects: int) -> None:
        """Cut every RetrievePropertiesEx answer at ``objects`` (until the next reset, which restores the
        topology's ``page_size``)."""
        self._call("PUT", "paging", {"page_size": objects})
