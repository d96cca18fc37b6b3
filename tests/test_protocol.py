"""The driver protocol at the process boundary (issue 12): the schemas, the error mapping, and every way a
driver process can break the protocol — it crashes, hangs, writes garbage, does not know a method, answers
with the wrong error — each ending in one line (DriverProcessError, recorded for the verdict ERROR), never a
hang. The driver processes here are tests/scripted_driver.py; no vCenter is needed (tests/test_protocol_runs.py
has the whole suite against broken drivers, tests/test_selftest.py the Go driver).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from conformance import process_driver, protocol
from conformance.contract import (
    AuthenticationFailed,
    DriverConfig,
    DriverError,
    Instance,
    InstanceNotFound,
    NodeNotFound,
    SpawnFailed,
    VCenterUnavailable,
)
from conformance.drivers import DriverLoadError
from conformance.masking import MASK
from conformance.process_driver import (
    DriverInternalError,
    DriverProcessError,
    ProcessDriver,
    command_driver_class,
    line_level,
    split_command,
    take_failures,
)
from driver_under_test.config import ConfigError
from tests.conftest import REPO

CONFIG = DriverConfig(url="https://127.0.0.1:9/sdk", username="user", password="Protocol-Secret-7f3a",
                      clusters=("/DC0/host/C0",))


def scripted(script: dict[str, Any] | None = None) -> str:
    """The command of a scripted driver process."""
    return shlex.join([sys.executable, "-m", "tests.scripted_driver", json.dumps(script or {})])


def driver_class(script: dict[str, Any] | None = None, timeout: float = 10.0,
                 log_dir: Path | None = None) -> type[ProcessDriver]:
    return command_driver_class(scripted(script), request_timeout=timeout, log_dir=log_dir)


@pytest.fixture(autouse=True)
def _no_failures_left() -> Any:
    """Each test takes the failures it causes; none may leak into the next."""
    take_failures()
    yield
    take_failures()


# -- the schemas and the messages -------------------------------------------------------------------------

def test_every_method_has_a_valid_schema_for_its_request_and_response() -> None:
    files = {p.name for p in protocol.SCHEMA_DIR.glob("*.json")}
    expected = {f"{m}.{kind}.json" for m in protocol.METHODS for kind in ("request", "response")} | {"defs.json"}
    assert files == expected
    for name in sorted(files):
        doc = json.loads((protocol.SCHEMA_DIR / name).read_text())
        Draft202012Validator.check_schema(doc)
        assert doc["$id"] == protocol.SCHEMA_BASE + name


def test_config_travels_whole_so_new_fields_need_no_protocol_change() -> None:
    params = protocol.config_params(CONFIG)["config"]
    assert set(params) == {f.name for f in fields(DriverConfig)}
    assert params["clusters"] == ["/DC0/host/C0"] and params["password"] == CONFIG.password
    protocol.validate("request", "configure", {"jsonrpc": "2.0", "id": 1, "method": "configure",
                                               "params": {"config": {**params, "a_future_field": [1]}}})


@pytest.mark.parametrize(("message", "says"), [
    ({"jsonrpc": "2.0", "id": 1, "result": {"vcpus": "8"}}, "result/vcpus: '8' is not of type 'integer'"),
    ({"jsonrpc": "2.0", "id": 1, "error": {"code": -32001, "message": "x", "data": {"type": "SpawnFailed"}}},
     "error/data/type: 'NodeNotFound' was expected"),
    ({"jsonrpc": "2.0", "id": 1, "error": {"code": -32099, "message": "x"}}, "error/code: -32099 is not one of"),
    ({"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": -32603, "message": "x"}},
     "is not valid under any of the given schemas"),
])
def test_a_response_outside_the_schema_is_named(message: dict[str, Any], says: str) -> None:
    with pytest.raises(protocol.SchemaError, match=says.replace("[", r"\[")):
        protocol.validate("response", "get_available_resource", message)


# -- the contract's errors, one to one ----------------------------------------------------------------------

@pytest.mark.parametrize("cls", [DriverError, NodeNotFound, InstanceNotFound, VCenterUnavailable, AuthenticationFailed,
                                 SpawnFailed])
def test_contract_errors_come_back_as_the_same_class(cls: type[DriverError]) -> None:
    code, name = protocol.error_code(cls("x"))
    assert name == cls.__name__
    d = driver_class({"get_available_nodes": {"error": {"code": code, "message": "the driver's words",
                                                        "data": {"type": name}}}})(CONFIG)
    try:
        with pytest.raises(cls, match="the driver's words") as caught:
            d.get_available_nodes(refresh=True)
        assert type(caught.value) is cls
        assert d.list_instances() == []  # an error answer leaves the process as it was
    finally:
        d.close()
    assert not take_failures()


def test_a_driver_error_subclass_travels_as_its_contract_base() -> None:
    assert protocol.error_code(ConfigError("bad")) == (-32000, "DriverError")


def test_internal_error_is_the_drivers_failure_not_a_protocol_one() -> None:
    d = driver_class({"spawn": {"error": {"code": -32603, "message": "KeyError: 'host'"}},
                      "list_instances": {"result": ["u1"]}})(CONFIG)
    try:
        with pytest.raises(DriverInternalError, match="the driver failed: KeyError: 'host'"):
            d.spawn(Instance(uuid="u1", name="x"), "node")
        assert d.list_instances() == ["u1"]  # not a broken process: it goes on answering
    finally:
        d.close()
    assert not take_failures()


# -- breaking the protocol: one line, the process killed, the failure recorded ---------------------------------

BROKEN: list[tuple[str, dict[str, Any], str]] = [
    ("crash", {"get_available_nodes": {"stderr": ["panic: runtime error: index out of range"], "exit": 3}},
     "exited with status 3 while answering get_available_nodes; its last stderr line: panic: runtime error: "
     "index out of range"),
    ("hang", {"get_available_nodes": {"hang": True}}, "did not answer get_available_nodes within 1s; it was killed"),
    ("bad JSON", {"get_available_nodes": {"raw": "{'nodes': ['a']}"}},
     "wrote what is not a protocol message on stdout (not JSON): \"{'nodes': ['a']}\""),
    ("a log line on stdout", {"get_available_nodes": {"raw": "INFO refreshing"}},
     "(not JSON): 'INFO refreshing'; stdout carries only JSON-RPC answers, logs go to stderr"),
    ("unknown method", {"get_available_nodes": {"error": {"code": -32601, "message": "no such method"}}},
     "does not implement get_available_nodes: JSON-RPC error -32601 (Method not found): no such method"),
    ("invalid params", {"get_available_nodes": {"error": {"code": -32602, "message": "refresh: not a bool"}}},
     "did not understand get_available_nodes: JSON-RPC error -32602 (Invalid params)"),
    ("an error code and type that disagree",
     {"get_available_nodes": {"error": {"code": -32001, "message": "x", "data": {"type": "SpawnFailed"}}}},
     "answered get_available_nodes with what the protocol does not allow: error/data/type: 'NodeNotFound' was "
     "expected"),
    ("an application code outside the table",
     {"get_available_nodes": {"error": {"code": -32050, "message": "x", "data": {"type": "Busy"}}}},
     "error/code: -32050 is not one of"),
    ("a result of the wrong type", {"get_available_nodes": {"result": {"nodes": ["a"]}}},
     "answered get_available_nodes with what the protocol does not allow: result: {'nodes': ['a']} is not of "
     "type 'array'"),
    ("an answer to no request", {"get_available_nodes": {"raw": '{"jsonrpc": "2.0", "id": 99, "result": []}'}},
     "(an answer to no request in flight)"),
    ("a request from the driver", {"get_available_nodes": {"raw": '{"jsonrpc": "2.0", "method": "log", "params": {}}'}},
     "sent a request or notification ('log'); protocol 1 has the driver only answer"),
]


@pytest.mark.parametrize(("script", "says"), [(s, says) for _, s, says in BROKEN], ids=[w for w, _, _ in BROKEN])
def test_a_broken_protocol_is_one_line_and_a_dead_process(script: dict[str, Any], says: str) -> None:
    d = driver_class(script, timeout=1.0)(CONFIG)
    started = time.monotonic()
    with pytest.raises(DriverProcessError) as caught:
        d.get_available_nodes(refresh=True)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"driver process {Path(sys.executable).name} (pid {d._process.pid}) ")
    assert says in message, message
    assert d._process.proc.poll() is not None, "the broken process was left running"
    assert time.monotonic() - started < 10
    (failure,) = take_failures()  # recorded, for the plugin to end the run with (failure.during(check))
    assert message == failure.message + (f"; its last stderr line: {failure.last_words}" if failure.last_words else "")
    with pytest.raises(DriverProcessError):  # it stays broken: no call reaches a process that broke the protocol
        d.list_instances()
    d.close()


def test_a_crash_between_calls_is_noticed() -> None:
    d = driver_class({"list_instances": {"result": [], "stderr": ["bye"]}})(CONFIG)
    d._process.proc.kill()
    with pytest.raises(DriverProcessError, match=r"was killed by signal 9 \(SIGKILL\)|exited before it could read"):
        d.list_instances()
    assert take_failures()
    d.close()


@pytest.mark.parametrize(("script", "says"), [
    ({"start": {"exit": 5, "stderr": ["cannot load libvmomi.so"]}},  # before or while it is asked: both are said
     "exited with status 5 "),
    ({"start": {"exit": 5, "stderr": ["cannot load libvmomi.so"]}}, "; its last stderr line: cannot load libvmomi.so"),
    ({"start": {"raw": "Starting driver v2..."}}, "(not JSON): 'Starting driver v2...'"),
    ({"initialize": {"result": {"protocol_version": "2.0", "driver": {"name": "x", "version": "2"},
                                "capabilities": {}}}},
     "speaks protocol 2.0; this suite speaks 1.0 (the major versions must be equal)"),
    ({"initialize": {"result": {"protocol_version": "1.0", "driver": {"name": "x", "version": "1"}}}},
     "result: 'capabilities' is a required property"),
    ({"initialize": {"hang": True}}, "did not answer initialize within 1s"),
], ids=["exits at start", "exits at start, saying why", "prints a banner", "another major version", "no capabilities",
        "hangs"])
def test_a_broken_handshake_is_one_line(script: dict[str, Any], says: str) -> None:
    with pytest.raises(DriverProcessError, match=None) as caught:
        driver_class(script, timeout=1.0)
    assert says in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_handshake_declares_name_version_and_capabilities(caplog: pytest.LogCaptureFixture) -> None:
    cls = driver_class({"initialize": {"result": {
        "protocol_version": "1.3", "driver": {"name": "acme-driver", "version": "4.2"},
        "capabilities": {"placement_inventory": True, "update_notifications": False, "teleport": True}}}})
    assert (cls.driver_name, cls.version, cls.protocol_version) == ("acme-driver", "4.2", "1.3")
    assert cls.capabilities == {"placement_inventory": True, "update_notifications": False}  # unknown: dropped
    assert any("teleport" in r.getMessage() for r in caplog.records)
    description = cls.report_description()
    assert description["class"].startswith("command: ") and description["capabilities"] == cls.capabilities
    with pytest.raises(NotImplementedError):  # update_notifications not declared: no request is sent
        cls(CONFIG).wait_for_changes(1)


@pytest.mark.parametrize(("command", "says"), [
    ("", "--driver-command '': expected a program and its arguments"),
    ("'unbalanced", "--driver-command \"'unbalanced\": cannot be split into words (No closing quotation)"),
    ("no-such-driver-program --flag", "no-such-driver-program is not on PATH (or not executable)"),
    ("./tests/conftest.py", "./tests/conftest.py is not an executable file"),
])
def test_a_command_that_names_no_program_is_a_bad_input(command: str, says: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(DriverLoadError) as caught:
        split_command(command)
    assert says in str(caught.value)
    assert split_command("python3 -m x")[0].startswith("/")


# -- what flows besides answers ------------------------------------------------------------------------------

def test_concurrent_requests_are_matched_by_id() -> None:
    d = driver_class({"get_info": {"delay": 0.8, "result": {"state": "running", "nodename": "slow"}},
                      "list_instances": {"result": ["fast"]}})(CONFIG)
    try:
        got: dict[str, Any] = {}
        slow = threading.Thread(target=lambda: got.update(info=d.get_info(Instance(uuid="u", name="n"))))
        slow.start()
        time.sleep(0.2)
        started = time.monotonic()
        assert d.list_instances() == ["fast"]  # answered while the slow request is in flight
        assert time.monotonic() - started < 0.6
        slow.join(5)
        assert got["info"].nodename == "slow"
    finally:
        d.close()


def test_stderr_lines_are_log_records_before_the_call_returns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    d = driver_class({"get_available_nodes": {"result": [], "stderr": [
        'level=WARN msg="configured cluster \\"/DC0/host/absent\\" is not a cluster" service=compute-0',
        "plain words"]}})(CONFIG)
    try:
        d.get_available_nodes(refresh=True)
        records = [r for r in caplog.records if r.name == "vcconform.driver"]
        assert [(r.levelno, "absent" in r.getMessage()) for r in records[-2:]] == [(logging.WARNING, True),
                                                                                    (logging.INFO, False)]
    finally:
        d.close()


@pytest.mark.parametrize(("line", "level"), [
    ('time=2024-01-01T00:00:00Z level=WARN msg="x"', logging.WARNING),
    ('{"level":"error","msg":"x"}', logging.ERROR),
    ('{"severity":"DEBUG","message":"x"}', logging.DEBUG),
    ('{"level":40,"msg":"pino"}', logging.WARNING),
    ("WARNING driver_under_test.reference: compute-0: left out", logging.WARNING),
    ("W, [2024-01-01T00:00:00.000 #123]  WARN -- : left out", logging.WARNING),
    ("SEVERE: connection lost", logging.ERROR),
    ("an error happened here", logging.INFO),
    ("2024/01/01 00:00:00 refreshed", logging.INFO),
])
def test_the_level_of_a_log_line(line: str, level: int) -> None:
    assert line_level(line) == level


def test_the_password_sent_is_masked_in_the_kept_log_and_seen_by_the_scan(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    leak = f"logging in with password {CONFIG.password}"
    d = driver_class({"configure": {"result": None, "stderr": [leak]}}, log_dir=tmp_path)(CONFIG)
    d.close()
    (path,) = tmp_path.glob("driver-stderr*.log")  # driver-stderr-gw0.log under xdist
    kept = path.read_text()
    assert CONFIG.password not in kept and f"with password {MASK}" in kept
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # The log record holds the line as written: the credential scan (SEC-03) must be able to find the leak.
    assert any(CONFIG.password in r.getMessage() for r in caplog.records)


def test_close_ends_the_process_and_a_driver_that_lingers_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    d = driver_class()(CONFIG)
    d.close()
    d.close()  # safe twice
    assert d._process.proc.returncode == 0 and not take_failures()
    monkeypatch.setattr(process_driver, "EXIT_GRACE_S", 1.0)
    with pytest.raises(DriverProcessError, match=r"\(pid \d+\) did not exit within 1s of shutdown; it was killed$"):
        driver_class({"linger": True})
    assert len(take_failures()) == 1


def test_a_driver_that_hangs_at_shutdown_is_killed_naming_what_it_never_answered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A check that bounds a call itself (FAULT-05) gives up on it; at its teardown the driver does not answer
    shutdown either: killed, and the line says which request was left unanswered."""
    monkeypatch.setattr(process_driver, "EXIT_GRACE_S", 0.5)  # shutdown's limit: before the abandoned call's
    d = driver_class({"get_available_nodes": {"hang": True}, "shutdown": {"hang": True, "configured_only": True}},
                     timeout=1.0)(CONFIG)
    def refresh() -> None:
        with contextlib.suppress(BaseException):
            d.get_available_nodes(refresh=True)
    abandoned = threading.Thread(target=refresh, daemon=True)
    abandoned.start()
    time.sleep(0.3)
    d.close()
    (failure,) = take_failures()
    assert failure.message.endswith("did not answer shutdown within 0.5s, with get_available_nodes (sent 0s "
                                    "before) still unanswered; it was killed"), failure.message
    assert d._process.proc.returncode == -9


def test_a_call_in_flight_at_shutdown_ends_as_a_call_on_a_closed_driver() -> None:
    d = driver_class({"wait_for_changes": {"hang": True},
                      "initialize": {"result": {"protocol_version": "1.0", "driver": {"name": "w", "version": "0"},
                                                "capabilities": {"update_notifications": True}}}})(CONFIG)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            d.wait_for_changes(30)
        except BaseException as e:
            errors.append(e)
    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    d.close()
    waiter.join(10)
    assert [type(e) for e in errors] == [VCenterUnavailable] and not take_failures()


def test_what_the_suite_sends_is_the_protocol() -> None:
    """The requests as the driver reads them: every contract argument, by its name."""
    d = driver_class({"spawn": {"result": None, "stderr": []}, "configure": {"result": None}})(CONFIG)
    try:
        instance = Instance(uuid="u-1", name="n", vcpus=2, memory_mb=512, root_gb=3)
        d.spawn(instance, "node-1")
        d.reconfigure(CONFIG)
    finally:
        d.close()
    assert protocol.instance_params(instance) == {"uuid": "u-1", "name": "n", "vcpus": 2, "memory_mb": 512,
                                                  "root_gb": 3}
