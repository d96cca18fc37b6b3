"""Count the SOAP calls a pyvmomi connection makes, by method name, as the client sees them.

The tests and bench/refresh.py use it on a driver's connection (``count_calls(driver._si)``); the fake
vCenter's own counter (conformance.control, ``Control.calls()``) is the server-side cross-check. Property
reads such as ``task.info`` are PropertyCollector calls too, so they are counted like any other.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["CallLog", "count_calls"]


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
