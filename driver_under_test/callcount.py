"""Count the SOAP calls a pyvmomi connection makes, by method name, and the answer bytes it reads.

The tests and the benchmarks use it on a driver's connection (``count_calls(driver._si)``,
``count_received(driver._si)``); the fake vCenter's own counters (conformance.control, ``Control.calls()``)
are the server-side cross-check. Property reads such as ``task.info`` are PropertyCollector calls too, so
they are counted like any other.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["CallLog", "Received", "count_calls", "count_received"]


class CallLog:
    """The calls made while counting: ``names`` in order, ``total``, ``by_method``."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._lock = threading.Lock()

    def add(self, name: str) -> None:
        with self._lock:
            self.names.append(name)

    @property
    def total(self) -> int:
        return len(self.names)

    @property
    def by_method(self) -> dict[str, int]:
        return dict(collections.Counter(self.names))

    def clear(self) -> None:
        with self._lock:
            self.names.clear()


@contextlib.contextmanager
def count_calls(service_instance: Any) -> Iterator[CallLog]:
    """Count every SOAP call made through ``service_instance``'s stub until the block ends."""
    stub = service_instance._stub
    log = CallLog()
    original = stub.InvokeMethod

    def invoke(mo: Any, info: Any, args: Any, *rest: Any, **kwargs: Any) -> Any:
        log.add(info.wsdlName)
        return original(mo, info, args, *rest, **kwargs)

    stub.InvokeMethod = invoke  # the instance attribute shadows the class's method for this stub only
    try:
        yield log
    finally:
        del stub.InvokeMethod


class Received:
    """The answer bytes read while counting (``total``): response bodies as the server sent them."""

    def __init__(self) -> None:
        self.total = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.total += n


@contextlib.contextmanager
def count_received(service_instance: Any) -> Iterator[Received]:
    """Count the response body bytes pyvmomi reads through ``service_instance``'s stub until the block ends
    (every connection it takes from its pool meanwhile reads through a counting response class)."""
    stub = service_instance._stub
    received = Received()
    original = stub.GetConnection
    patched: list[tuple[Any, Any]] = []

    def connection() -> Any:
        conn = original()
        if all(c is not conn for c, _ in patched):
            base = conn.response_class

            class Counted(base):  # type: ignore[misc, valid-type]
                def read(self, *args: Any) -> bytes:  # what pyvmomi's parser reads (read(n) uses readinto)
                    data: bytes = super().read(*args)
                    received.add(len(data))
                    return data

            patched.append((conn, base))
            conn.response_class = Counted
        return conn

    stub.GetConnection = connection
    try:
        yield received
    finally:
        del stub.GetConnection
        for conn, base in patched:
            conn.response_class = base
