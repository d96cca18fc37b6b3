"""A ComputeDriver that is another process: the suite's side of the driver protocol (docs/driver-protocol.md).

``--driver-command "prog args"`` makes the checks use ``ProcessDriver``: every driver a check builds starts one
process of that command, says ``initialize`` and ``configure`` to it, and turns each contract method into one
JSON-RPC 2.0 request on the process's stdin, answered on its stdout. So every check runs unchanged, whatever
language the driver is written in.

What the proxy guarantees (the rest of the suite relies on it):

- **Every request is bounded** (``--driver-timeout``; ``wait_for_changes`` adds its own timeout). A process
  that does not answer in time is killed; one that exits, writes what is not a protocol message (not JSON, not
  JSON-RPC 2.0, not the schema of its method's answer, an answer to no request) or answers with one of
  JSON-RPC's own errors (it did not understand the request) is killed too. Each of these raises
  ``DriverProcessError`` (a BaseException: a check's ``except Exception`` cannot mistake it for the driver's
  answer) and is recorded, so the plugin ends the run with one line and the verdict ERROR: the suite could not
  talk to the driver, so nothing was proven about it.
- **Errors map one to one**: the contract's exceptions travel as application error codes and come back as the
  same classes; -32603 (the driver's own unexpected failure) is ``DriverInternalError``, which a check treats
  like any unexpected exception of a Python driver.
- **Concurrent requests**: any number may be in flight (several check threads: SPAWN-05), matched by id; the
  driver may answer in any order.
- **The driver's stderr is its log**: each line becomes a Python log record (logger ``vcconform.driver``, the
  level read from the line), so the checks that read logs (NODE-05 warnings, the SEC-03 credential scan) read
  a process driver's as they read a Python driver's; the lines written before an answer are relayed before the
  call returns. The lines are kept, masked, in the report dir (``driver-stderr*.log``).
- Passwords sent to the driver are registered with the masker before they are sent; nothing the proxy writes
  holds one.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import json
import logging
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from conformance import protocol
from conformance.contract import (
    CAPABILITIES,
    ComputeDriver,
    DriverConfig,
    Instance,
    InstanceInfo,
    Resources,
    VCenterUnavailable,
)
from conformance.drivers import DriverLoadError
from conformance.masking import add_secret, mask

__all__ = ["DriverInternalError", "DriverProcessError", "ProcessDriver", "command_driver_class", "split_command",
           "take_failures"]

LOG = logging.getLogger("vcconform.driver")
PROXY_LOG = logging.getLogger(__name__)
#: The longest line the proxy reads from a driver's stdout (an answer) or stderr (a log record).
MAX_LINE = 16 * 1024 * 1024
#: How long a driver may take to exit after answering shutdown (or after its stdin closed).
EXIT_GRACE_S = 10.0
#: Lines of a driver's stderr kept for the message that says why it failed.
TAIL_LINES = 20
SUITE = {"name": "vcconform", "version": "unknown"}
with contextlib.suppress(Exception):
    import importlib.metadata

    SUITE["version"] = importlib.metadata.version("vcconform")


class DriverProcessError(BaseException):
    """The driver process broke the protocol: it exited, did not answer in time, or wrote what is not a
    protocol message. The message is one line."""


class DriverInternalError(Exception):
    """The driver answered JSON-RPC -32603: it failed in a way the contract does not name (a Python driver
    would have raised KeyError or RuntimeError)."""


@dataclass(frozen=True)
class Failure:
    """A protocol failure, as the plugin turns it into the run's end: one line and the driver's last words."""

    message: str  # what happened: "driver process x (pid 1) exited with status 2 while answering spawn"
    stderr_tail: str
    last_words: str = ""  # its last stderr line, when it exited

    def during(self, check: str) -> str:
        """The one line that ends a run: what happened, in which check, and the process's last words."""
        return f"{self.message} during {check}" + (f"; its last stderr line: {self.last_words}" if self.last_words
                                                    else "")


_failures: list[Failure] = []
_failures_lock = threading.Lock()


def take_failures() -> list[Failure]:
    """The protocol failures since the last call (the plugin asks after each phase of each check)."""
    with _failures_lock:
        taken = list(_failures)
        _failures.clear()
    return taken


def _record(failure: Failure) -> None:
    with _failures_lock:
        _failures.append(failure)


# -- levels of the driver's log lines ---------------------------------------------------------------------

_LEVELS = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "DBG": logging.DEBUG, "INFO": logging.INFO,
           "NOTICE": logging.INFO, "WARN": logging.WARNING, "WARNING": logging.WARNING, "ERR": logging.ERROR,
           "ERROR": logging.ERROR, "SEVERE": logging.ERROR, "CRITICAL": logging.CRITICAL,
           "FATAL": logging.CRITICAL, "PANIC": logging.CRITICAL}
_LOGFMT_LEVEL = re.compile(r"(?:^|\s)(?:level|lvl|severity)=\"?([A-Za-z]+)")
_WORD = re.compile(r"[A-Za-z]+")


def line_level(line: str) -> int:
    """The level of one stderr line (docs/driver-protocol.md, "Logs"): a JSON object's ``level``,
    ``severity`` or ``levelname``; else a logfmt ``level=``; else a level name among the first four words
    (``WARNING: ...``, Ruby's ``W, [...]  WARN -- : ...``); else INFO."""
    text = line.strip()
    if text.startswith("{"):
        with contextlib.suppress(ValueError):
            record = json.loads(text)
            if isinstance(record, dict):
                for key in ("level", "severity", "levelname"):
                    value = record.get(key)
                    if isinstance(value, str) and value.upper() in _LEVELS:
                        return _LEVELS[value.upper()]
                    if isinstance(value, int) and not isinstance(value, bool):  # pino/bunyan: 40 is warn
                        return {10: logging.DEBUG, 20: logging.DEBUG, 30: logging.INFO, 40: logging.WARNING,
                                50: logging.ERROR, 60: logging.CRITICAL}.get(value, logging.INFO)
    match = _LOGFMT_LEVEL.search(text)
    if match and match.group(1).upper() in _LEVELS:
        return _LEVELS[match.group(1).upper()]
    for word in _WORD.findall(text)[:4]:
        if word.upper() in _LEVELS and (word.isupper() or word.istitle()):
            return _LEVELS[word.upper()]
    return logging.INFO


class _KeptLog:
    """The driver processes' stderr, masked, in one file per pytest process (mode 0600, as the simulator's)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, pid: int, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock, contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(f"{stamp} [pid {pid}] {mask(line)}\n")


# -- one process ------------------------------------------------------------------------------------------

class _Pending:
    def __init__(self, method: str) -> None:
        self.method = method
        self.done = threading.Event()
        self.message: dict[str, Any] | None = None
        self.failure: str | None = None
        self.closed = False  # the driver was shut down (closed) while this request was in flight
        self.sent = time.monotonic()


_live: weakref.WeakSet[_Process] = weakref.WeakSet()


def _kill_live() -> None:
    """At interpreter exit: no driver process this run started outlives it."""
    for p in list(_live):
        p.kill()


atexit.register(_kill_live)


class _Process:
    """One driver process: its pipes, the requests in flight, its stderr relayed and kept."""

    def __init__(self, argv: tuple[str, ...], label: str, kept: _KeptLog | None) -> None:
        self.label = label
        self.kept = kept
        try:
            # Its own session (process group): it and anything it starts are killed together, by this pid.
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:  # a program that is no executable after all (a bad interpreter line, ENOEXEC)
            message = f"driver command {shlex.join(argv)!r} could not be started: {e.strerror or e}"
            _record(Failure(mask(message), ""))
            raise DriverProcessError(message) from None
        self.pid = self.proc.pid
        self.name = f"driver process {label} (pid {self.pid})"
        if kept is not None:  # which check a process served, for whoever reads the kept log
            check = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
            kept.write(self.pid, f"--- started for {check or 'the handshake'}: {shlex.join(argv)}")
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stderr_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._failure: str | None = None
        self._shutting_down = False
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._stderr_buf = b""
        self._stderr_open = True
        self._stdout_done = threading.Event()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._stderr_fd = self.proc.stderr.fileno()
        os.set_blocking(self._stderr_fd, False)
        _live.add(self)
        threading.Thread(target=self._read_stdout, args=(self.proc.stdout,), name=f"{label} stdout",
                         daemon=True).start()
        threading.Thread(target=self._read_stderr, name=f"{label} stderr", daemon=True).start()

    def __repr__(self) -> str:
        return f"<{self.name}>"

    # -- requests ------------------------------------------------------------------------------------------

    def request(self, method: str, params: Mapping[str, Any], timeout: float, note: str = "") -> Any:
        """Send one request and wait for its answer: the result, or the contract's exception raised. ``note``
        is added to the failure when it is not answered in time."""
        with self._lock:
            if self._failure is not None:
                raise DriverProcessError(self._failure)
            if self._shutting_down and method != "shutdown":
                raise VCenterUnavailable(f"{method}: the driver is closed")
            rid = next(self._ids)
            pending = self._pending[rid] = _Pending(method)
        message = {"jsonrpc": "2.0", "id": rid, "method": method, "params": dict(params)}
        try:
            protocol.validate("request", method, message)  # the suite's own messages keep the protocol too
            data = (json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
            try:
                with self._write_lock:
                    assert self.proc.stdin is not None
                    self.proc.stdin.write(data)
                    self.proc.stdin.flush()
            except (OSError, ValueError):
                # The process is gone (a broken pipe): its exit, as the stdout reader sees it, says how.
                self._stdout_done.wait(EXIT_GRACE_S)
                if self._shutting_down and self._failure is None:
                    raise VCenterUnavailable(f"{method}: the driver is closed") from None
                raise DriverProcessError(self._fail(f"exited before it could read {method}")) from None
            if not pending.done.wait(timeout):
                raise DriverProcessError(self._fail(f"did not answer {method} within {timeout:g}s{note}; it was "
                                                    "killed"))
        finally:
            with self._lock:
                self._pending.pop(rid, None)
        self.drain_stderr()  # what it logged before answering is in the log before the call returns
        if pending.failure is not None:
            raise DriverProcessError(pending.failure)
        if pending.closed:
            raise VCenterUnavailable(f"{method}: the driver is closed")
        answer = pending.message
        assert answer is not None
        if "error" in answer:
            raise self._error(method, answer["error"])
        return answer["result"]

    def _error(self, method: str, error: dict[str, Any]) -> BaseException:
        code, text = int(error["code"]), str(error["message"])
        cls = protocol.ERROR_TYPES.get(code)
        if cls is not None:
            return cls(text)
        if code == protocol.INTERNAL_ERROR:
            return DriverInternalError(f"the driver failed: {text}" if text else "the driver failed")
        what = "does not implement" if code == -32601 else "did not understand"
        return DriverProcessError(self._fail(f"{what} {method}: JSON-RPC error {code} "
                                             f"({protocol.STANDARD_ERRORS.get(code, 'unknown')}): {text}"))

    # -- failing ---------------------------------------------------------------------------------------------

    def _fail(self, reason: str, last_words: str = "") -> str:
        """Record a protocol failure (once), kill the process, then wake every request in flight with it (so
        that a caller who sees the failure never finds the process still running)."""
        with self._lock:
            first = self._failure is None
            said = f"; its last stderr line: {last_words}" if last_words else ""
            failure = self._failure = f"{self.name} {reason}{said}" if first else str(self._failure)
        if first:
            self.kill()
            self.drain_stderr()
            _record(Failure(mask(f"{self.name} {reason}"), "\n".join(self._tail), mask(last_words)))
        with self._lock:
            for p in self._pending.values():
                if not p.done.is_set():
                    p.failure = failure
                    p.done.set()
        return failure

    def kill(self) -> None:
        """SIGKILL the process and its group (this pid's own session: only what this run started)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)

    def _exit_text(self) -> str:
        code = self.proc.poll()
        if code is None:
            return "closed its stdout"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"was killed by signal {-code} ({signal.Signals(-code).name})"
            return f"was killed by signal {-code}"
        return f"exited with status {code}"

    # -- stdout: the answers ---------------------------------------------------------------------------------

    def _read_stdout(self, stream: IO[bytes]) -> None:
        try:
            while True:
                try:
                    line = stream.readline(MAX_LINE)
                except (OSError, ValueError):
                    line = b""
                if not line:
                    self._ended()
                    return
                if not line.endswith(b"\n") and len(line) >= MAX_LINE:
                    self._fail(f"wrote what is not a protocol message: a line longer than {MAX_LINE} bytes")
                    return
                if line.strip() and not self._answer(line):
                    return
        finally:
            self._stdout_done.set()

    def _answer(self, line: bytes) -> bool:
        """Take one stdout line; False when it was not protocol (the process is then killed)."""
        preview = line.decode("utf-8", "replace").strip()
        preview = preview if len(preview) <= 120 else preview[:120] + "..."
        try:
            message = json.loads(line)
        except ValueError:
            self._fail(f"wrote what is not a protocol message on stdout (not JSON): {preview!r}; stdout carries "
                       "only JSON-RPC answers, logs go to stderr")
            return False
        rid = message.get("id") if isinstance(message, dict) else None
        with self._lock:
            pending = self._pending.get(rid) if isinstance(rid, int) and not isinstance(rid, bool) else None
        if pending is None:
            if isinstance(message, dict) and rid is None and isinstance(message.get("error"), dict):
                error = message["error"]
                self._fail(f"could not read a request: JSON-RPC error {error.get('code')} "
                           f"({error.get('message')})")
            elif isinstance(message, dict) and "method" in message:
                self._fail(f"sent a request or notification ({str(message.get('method'))[:60]!r}); protocol 1 "
                           "has the driver only answer")
            else:
                self._fail(f"wrote what is not a protocol message on stdout (an answer to no request in "
                           f"flight): {preview!r}")
            return False
        try:
            protocol.validate("response", pending.method, message)
        except protocol.SchemaError as e:
            self._fail(f"answered {pending.method} with what the protocol does not allow: {e}")
            return False
        pending.message = message
        pending.done.set()
        return True

    def _ended(self) -> None:
        """stdout closed: the process exited (or is about to). Unless it was told to, that is a crash."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(EXIT_GRACE_S)
        self.drain_stderr(final=True)
        with self._lock:
            expected = self._shutting_down and self._failure is None  # a failure (and its kill) says more
            doing = sorted({p.method for p in self._pending.values() if not p.done.is_set()})
            if expected:  # closed as told: what is still in flight ends as a call on a closed driver does
                for p in self._pending.values():
                    if not p.done.is_set():
                        p.closed = True
                        p.done.set()
        if self._failure is None and not expected:
            asked = next(self._ids)  # the id the next request would have had: 1 when none was sent
            during = (f" while answering {', '.join(doing)}" if doing else
                      " before it was asked anything" if asked == 1 else " while no request was in flight")
            last = next((line for line in reversed(self._tail) if line.strip()), "")
            self._fail(f"{self._exit_text()}{during}", last[:300])

    # -- stderr: the log ---------------------------------------------------------------------------------------

    def _read_stderr(self) -> None:
        while self._stderr_open:
            with contextlib.suppress(OSError, ValueError):
                select.select([self._stderr_fd], [], [], 0.5)
            self.drain_stderr()

    def drain_stderr(self, final: bool = False) -> None:
        """Relay every complete line the process has written to stderr so far (and, when it has exited, the
        last partial one)."""
        with self._stderr_lock:
            if not self._stderr_open:
                return
            while True:
                try:
                    chunk = os.read(self._stderr_fd, 65536)
                except BlockingIOError:
                    break
                except OSError:
                    chunk = b""
                if not chunk:
                    final = True
                    self._stderr_open = False
                    break
                self._stderr_buf += chunk
                *lines, self._stderr_buf = self._stderr_buf.split(b"\n")
                for raw in lines:
                    self._log(raw)
                if len(self._stderr_buf) > MAX_LINE:
                    self._log(self._stderr_buf)
                    self._stderr_buf = b""
            if final and self._stderr_buf:
                self._log(self._stderr_buf)
                self._stderr_buf = b""

    def _log(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if not line.strip():
            return
        # The line as written, to the log records (the credential scan must see a leak), masked everywhere kept.
        LOG.log(line_level(line), "%s", line, extra={"driver_pid": self.pid})
        self._tail.append(mask(line))
        if self.kept is not None:
            self.kept.write(self.pid, line)

    # -- the end -----------------------------------------------------------------------------------------------

    def close(self, timeout: float) -> None:
        """shutdown, then wait for the exit; a process that does not answer or exit in time is killed (and
        that is a protocol failure: a driver must never hang)."""
        if self._failure is None and self.proc.poll() is None:
            with self._lock:
                self._shutting_down = True
                # Requests a check gave up on (it bounds a call itself: FAULT-05) are still in flight: say so.
                now = time.monotonic()
                busy = [f"{p.method} (sent {now - p.sent:.0f}s before)" for p in self._pending.values()
                        if not p.done.is_set()]
            note = f", with {', '.join(busy)} still unanswered" if busy else ""
            try:
                self.request("shutdown", {}, timeout, note)
            except DriverProcessError:
                pass  # recorded
            except Exception as e:  # an error answer to shutdown: it is closing anyway
                PROXY_LOG.warning("%s answered shutdown with %s: %s", self.name, type(e).__name__, e)
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # EOF: a driver exits when its stdin closes
        try:
            self.proc.wait(EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            if self._failure is None:
                self._fail(f"did not exit within {EXIT_GRACE_S:g}s of shutdown; it was killed")
        self.kill()
        self._stdout_done.wait(EXIT_GRACE_S)
        self.drain_stderr(final=True)
        with self._stderr_lock:  # the reader thread checks this under the lock before it reads the fd again
            self._stderr_open = False
            for stream in (self.proc.stdout, self.proc.stderr):
                with contextlib.suppress(OSError):
                    stream.close() if stream is not None else None
        _live.discard(self)


# -- the driver class the checks use ------------------------------------------------------------------------

class ProcessDriver(ComputeDriver):
    """The contract, spoken to a driver process (one process per driver instance). Subclasses made by
    ``command_driver_class`` carry the command and what its handshake declared."""

    command: ClassVar[tuple[str, ...]] = ()
    label: ClassVar[str] = "driver"
    driver_name: ClassVar[str] = ""
    protocol_version: ClassVar[str] = ""
    #: Seconds one request may take (``--driver-timeout``, at most half of --check-timeout).
    request_timeout: ClassVar[float] = 60.0
    kept_log: ClassVar[_KeptLog | None] = None

    def __init__(self, config: DriverConfig, *, start_timeout: float | None = None) -> None:
        """Start the process, ``initialize`` and ``configure`` it, all within ``start_timeout`` (default the
        request timeout); past it the process is killed and DriverProcessError raised."""
        add_secret(config.password)  # registered before it is sent: nothing kept can show it
        super().__init__(config)
        deadline = time.monotonic() + (self.request_timeout if start_timeout is None else start_timeout)
        self._process = _Process(self.command, self.label, self.kept_log)
        try:
            hello = self._process.request("initialize", _initialize_params(),
                                          max(0.0, deadline - time.monotonic()))
            _check_version(self._process, hello)
            self._process.request("configure", protocol.config_params(config), max(0.0, deadline - time.monotonic()))
        except BaseException:
            self._process.close(min(self.request_timeout, EXIT_GRACE_S))
            raise

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.driver_name or self.label} pid {self._process.pid}>"

    def _call(self, method: str, params: Mapping[str, Any], extra_s: float = 0.0) -> Any:
        return self._process.request(method, params, self.request_timeout + extra_s)

    def reconfigure(self, config: DriverConfig) -> None:
        add_secret(config.password)
        self._call("reconfigure", protocol.config_params(config))
        self.config = config  # only once the driver took it, as a Python driver that refuses one keeps the old

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        return list(self._call("get_available_nodes", {"refresh": bool(refresh)}))

    def get_available_resource(self, nodename: str) -> Resources:
        result: Resources = self._call("get_available_resource", {"nodename": nodename})
        return result

    def spawn(self, instance: Instance, nodename: str) -> None:
        self._call("spawn", {"instance": protocol.instance_params(instance), "nodename": nodename})

    def destroy(self, instance: Instance) -> None:
        self._call("destroy", {"instance": protocol.instance_params(instance)})

    def list_instances(self) -> list[str]:
        return list(self._call("list_instances", {}))

    def get_info(self, instance: Instance) -> InstanceInfo:
        info = self._call("get_info", {"instance": protocol.instance_params(instance)})
        return InstanceInfo(state=info["state"], nodename=info["nodename"])

    def wait_for_changes(self, timeout: float) -> bool:
        if not self.capabilities.get("update_notifications"):
            return super().wait_for_changes(timeout)  # NotImplementedError, as the contract says
        return bool(self._call("wait_for_changes", {"timeout": timeout}, extra_s=timeout))

    def close(self) -> None:
        self._process.close(min(self.request_timeout, EXIT_GRACE_S))

    @classmethod
    def report_description(cls) -> dict[str, Any]:
        """What the report says of the driver: the command, and what its handshake declared."""
        return {"class": f"command: {shlex.join(cls.command)}", "name": cls.driver_name, "version": cls.version,
                "capabilities": dict(cls.capabilities), "protocol": cls.protocol_version,
                "command": list(cls.command)}

    def describe(self) -> dict[str, Any]:
        return self.report_description()


def _initialize_params() -> dict[str, Any]:
    return {"protocol_version": protocol.PROTOCOL_VERSION, "suite": dict(SUITE)}


def _check_version(process: _Process, hello: dict[str, Any]) -> None:
    if not protocol.compatible(str(hello["protocol_version"])):
        raise DriverProcessError(process._fail(
            f"speaks protocol {hello['protocol_version']}; this suite speaks {protocol.PROTOCOL_VERSION} (the "
            "major versions must be equal)"))


def split_command(command: str, where: str = "--driver-command") -> tuple[str, ...]:
    """The command's words (shell quoting, no shell), its program resolved to an absolute path; a
    DriverLoadError (one line, naming the option as ``where`` says it was given) when it is empty, cannot be
    split or names no executable."""
    named = f"{where}={command!r}" if where.isupper() else f"{where} {command!r}"
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise DriverLoadError(f"{named}: cannot be split into words ({e})") from None
    if not argv:
        raise DriverLoadError(f"{named}: expected a program and its arguments")
    found = shutil.which(argv[0])
    if found is None:
        where_not = "is not an executable file" if "/" in argv[0] else "is not on PATH (or not executable)"
        raise DriverLoadError(f"{named}: {argv[0]} {where_not}")
    return (os.path.abspath(found), *argv[1:])


_classes: dict[tuple[str, float, str], type[ProcessDriver]] = {}
_classes_lock = threading.Lock()


def command_driver_class(command: str, *, request_timeout: float = 60.0,
                         log_dir: Path | None = None) -> type[ProcessDriver]:
    """The driver class for a command: its handshake (``initialize`` and ``shutdown`` on a process of its own)
    says the driver's name, version and capabilities, which the plugin needs before any check builds a driver.
    Raises DriverLoadError for a command that names no executable, DriverProcessError for a process that
    breaks the protocol at the handshake. Made once per command in this process."""
    key = (command, request_timeout, str(log_dir))
    with _classes_lock:
        if key in _classes:
            return _classes[key]
        argv = split_command(command)
        label = Path(argv[0]).name
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        kept = _KeptLog(log_dir / f"driver-stderr{'-' + worker if worker else ''}.log") if log_dir else None
        probe = _Process(argv, label, kept)
        try:
            hello = probe.request("initialize", _initialize_params(), request_timeout)
            _check_version(probe, hello)
        finally:
            probe.close(min(request_timeout, EXIT_GRACE_S))
        if probe._failure is not None:  # it answered, but did not exit when told to
            raise DriverProcessError(probe._failure)
        declared = {str(k): bool(v) for k, v in hello["capabilities"].items()}
        unknown = sorted(set(declared) - set(CAPABILITIES))
        if unknown:
            PROXY_LOG.warning("driver %s declares capabilities this suite does not know (ignored): %s", label,
                              ", ".join(unknown))
        cls = type("ProcessDriver", (ProcessDriver,), {
            "__module__": __name__, "__qualname__": f"ProcessDriver[{label}]", "command": argv, "label": label,
            "driver_name": str(hello["driver"]["name"]), "version": str(hello["driver"]["version"]),
            "protocol_version": str(hello["protocol_version"]),
            "capabilities": {k: v for k, v in declared.items() if k in CAPABILITIES},
            "request_timeout": request_timeout, "kept_log": kept})
        _classes[key] = cls
        return cls
