"""The credential scan (SEC-03, applied to every check): where the run's passwords must never appear.

Every password the run knows — the vCenters' own and each one a check hands a driver, wrong ones included —
is registered with conformance.masking the moment it exists. While a check runs, a ``Scan`` listens to every
log record at any level and to every exception that leaves a driver method; the plugin adds what the check
printed. Any of them that holds a password is a leak: the check's teardown fails and the plugin reports it
against SEC-03 (not against the check's own requirement). Masking then keeps the texts out of every file;
the scan is what makes a leak a failure rather than a hidden one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from conformance.masking import mask

__all__ = ["CONTRACT_METHODS", "Scan", "current_scan", "find", "scanning", "watch_driver"]

#: The driver methods whose exceptions are scanned (those the contract defines, the constructor aside).
CONTRACT_METHODS = ("reconfigure", "get_available_nodes", "get_available_resource", "spawn", "destroy",
                    "list_instances", "get_info", "wait_for_changes", "close")

_current: Scan | None = None


def find(text: str) -> bool:
    """Whether the text holds a password the run knows (in any form masking recognizes)."""
    return bool(text) and mask(text) != text


def exception_texts(e: BaseException) -> Iterator[str]:
    """What an exception shows wherever it ends up: its text, its repr, its traceback (with causes)."""
    yield str(e)
    yield repr(e)
    with contextlib.suppress(Exception):
        yield "".join(traceback.format_exception(e))


class Scan(logging.Handler):
    """Where one check's texts held a password: log records as they are emitted, exceptions as they leave
    a driver method, and anything else handed to ``text``. Only the places are kept, never the texts."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.leaks: list[str] = []
        self._drivers: list[Any] = []

    def text(self, where: str, text: str) -> None:
        if text and find(text) and where not in self.leaks:
            self.leaks.append(where)

    def exception(self, where: str, e: BaseException) -> None:
        for text in exception_texts(e):
            self.text(f"{where}: {type(e).__name__}", text)

    def emit(self, record: logging.LogRecord) -> None:
        where = f"a {record.levelname} log record of {record.name}"
        with contextlib.suppress(Exception):
            self.text(where, record.getMessage())
        if record.exc_info:
            with contextlib.suppress(Exception):
                self.text(where + " (its traceback)", logging.Formatter().formatException(record.exc_info))

    def driver(self, driver: Any) -> None:
        """A driver the check built: its repr and str are scanned when the check ends."""
        self._drivers.append(driver)

    def finish(self) -> list[str]:
        for d in self._drivers:
            for label, show in (("repr", repr), ("str", str)):
                with contextlib.suppress(Exception):
                    self.text(f"{label}() of the driver", show(d))
        return self.leaks


def current_scan() -> Scan | None:
    return _current


@contextlib.contextmanager
def scanning() -> Iterator[Scan]:
    """Scan for the duration of a check: every logger, at every level."""
    global _current
    scan = Scan()
    root = logging.getLogger()
    level = root.level
    root.addHandler(scan)
    root.setLevel(logging.DEBUG)  # a password logged at DEBUG leaks as surely as one at ERROR
    _current = scan
    try:
        yield scan
    finally:
        _current = None
        root.removeHandler(scan)
        root.setLevel(level)


def watch_driver(driver: Any, methods: Iterable[str] = CONTRACT_METHODS) -> Any:
    """Make the driver's contract methods report the exceptions they raise to the current scan (they are
    raised on unchanged). A driver that refuses new attributes is left as it is."""
    for name in methods:
        bound = getattr(driver, name, None)
        if not callable(bound):
            continue
        with contextlib.suppress(AttributeError, TypeError):
            setattr(driver, name, _reporting(name, bound))
    scan = _current
    if scan is not None:
        scan.driver(driver)
    return driver


def _reporting(name: str, bound: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(bound)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return bound(*args, **kwargs)
        except BaseException as e:
            scan = _current
            if scan is not None:
                scan.exception(f"an exception from {name}()", e)
            raise
    return call
