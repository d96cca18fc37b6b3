"""The per-check watchdog: bounds the time of every check and watches the fake vCenters while it runs.

One thread per pytest process that runs checks. When a check passes its deadline, the thread records the
stack where the main thread is (and of any thread the check started), then interrupts the main thread: it
sends SIGALRM to it, whose handler raises ``CheckTimeout``. A real signal ends a blocking socket read, lock
wait or sleep at once (PEP 475: the call is not retried when the handler raises), which a flag checked
between bytecodes would not. When a simulator's process dies or is stopped (SIGSTOP), the thread records
why, kills a stopped one (every client blocked on it then gets a closed connection instead of waiting) and
interrupts the check with ``InfrastructureError``.

Both exceptions derive from BaseException, so a driver's ``except Exception`` cannot swallow them; a check
that still does not end is interrupted again after a grace period.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

from conformance.harness import Endpoint, running_endpoints

__all__ = ["CheckTimeout", "DriverHung", "InfrastructureError", "Watchdog", "format_stack"]

#: Frames of these packages say nothing about where a check hung.
_PLUMBING = ("/_pytest/", "/pluggy/", "/xdist/", "/execnet/", "/conformance/watchdog.py", "/threading.py")


class CheckTimeout(BaseException):
    """A check ran past its deadline (--check-timeout); the message holds the stack where it hung."""


class InfrastructureError(BaseException):
    """The fake vCenter died or stopped answering while a check ran; the message is one line."""


class DriverHung(BaseException):
    """The driver's constructor did not return in time; the message holds the stack where it hung."""


def format_stack(frame: FrameType | None, limit: int = 25) -> str:
    """A frame's stack, innermost last, without pytest's and pluggy's frames."""
    if frame is None:
        return "  (no Python frame)\n"
    entries = list(traceback.extract_stack(frame))
    plumbing = [i for i, e in enumerate(entries) if any(p in e.filename for p in _PLUMBING)]
    if plumbing and plumbing[-1] < len(entries) - 1:  # the check's frames: those below pytest's last one
        entries = entries[plumbing[-1] + 1:]
    entries = [e for e in entries if not any(p in e.filename for p in _PLUMBING)]
    return "".join(traceback.format_list(entries[-limit:])) or "  (only pytest's own frames)\n"


class Watchdog:
    """Deadline and liveness watch for the check that runs in this process's main thread."""

    def __init__(self, on_infrastructure: Callable[[str, Endpoint, str], None], tick: float = 0.25) -> None:
        self._on_infrastructure = on_infrastructure  # (reason, endpoint, label): record it before the interrupt
        self._tick = tick
        # Reentrant: the signal handler takes it in the main thread, which may hold it (arm, disarm) then.
        self._lock = threading.RLock()
        self._label = ""
        self._limit = 0.0
        self._deadline: float | None = None
        self._grace = 0.0
        self._baseline: set[threading.Thread] = set()
        self._pending: BaseException | None = None
        self._reported: set[int] = set()  # endpoints already named as dead
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous: Any = None
        self._main = threading.main_thread()

    def start(self) -> bool:
        """Install the handler and start the thread; False (and no watchdog) outside the main thread."""
        if threading.current_thread() is not self._main:
            return False
        self._previous = signal.signal(signal.SIGALRM, self._on_signal)
        self._thread = threading.Thread(target=self._run, name="vcconform-watchdog", daemon=True)
        self._thread.start()
        return True

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
            if threading.current_thread() is self._main:
                signal.signal(signal.SIGALRM, self._previous or signal.SIG_DFL)

    def begin(self, label: str) -> None:
        """A new check starts: the threads alive now are not its own."""
        with self._lock:
            self._label = label
            self._baseline = set(threading.enumerate())

    def arm(self, deadline: float, limit: float, grace: float) -> None:
        """Interrupt the main thread at ``deadline`` (monotonic), then every ``grace`` seconds while it runs on."""
        with self._lock:
            self._deadline, self._limit, self._grace = deadline, limit, grace
            self._pending = None

    def disarm(self) -> None:
        with self._lock:
            self._deadline = None
            self._pending = None

    # -- the thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closing.wait(self._tick):
            with self._lock:
                armed = self._deadline is not None
            if not armed:
                continue
            for endpoint in running_endpoints():
                dead = endpoint.status()
                if dead is not None and id(endpoint) not in self._reported:
                    self._reported.add(id(endpoint))
                    label = self._label
                    self._on_infrastructure(dead, endpoint, label)
                    endpoint.kill()
                    self._interrupt(InfrastructureError(f"{dead} during {label}"))
                    break
            with self._lock:
                late = self._deadline is not None and time.monotonic() >= self._deadline
                if late:
                    self._deadline = time.monotonic() + self._grace
            if late:
                self._interrupt(CheckTimeout(self._timeout_message()))

    def _timeout_message(self) -> str:
        frames = sys._current_frames()
        text = [f"the check ran past --check-timeout ({self._limit:g}s); it was at:\n",
                format_stack(frames.get(self._main.ident or 0))]
        for t in threading.enumerate():
            if t not in self._baseline and t is not threading.current_thread() and t.ident in frames:
                text += [f"thread {t.name!r} (started by the check) was at:\n", format_stack(frames[t.ident or 0])]
        return "".join(text).rstrip()

    def _interrupt(self, exc: BaseException) -> None:
        with self._lock:
            if self._deadline is None:
                return
            self._pending = exc
        signal.pthread_kill(self._main.ident or 0, signal.SIGALRM)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        with self._lock:
            exc, self._pending = self._pending, None
            armed = self._deadline is not None
        if exc is not None and armed:
            raise exc
