"""Drivers that are broken in ways a vendor's driver can be, for the clear-error and run-integrity tests (not
mutants: these break the run, not a requirement).

Some of them reach for the fake vCenter's process (found through the state folder next to the CA file the
driver is given) to play an infrastructure failure at a known moment; the environment variables below tell
them where to leave what the tests need to find (pids to clean up, passwords to look for).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from conformance.contract import AuthenticationFailed, DriverConfig, Instance, NodeNotFound, Resources
from driver_under_test.reference import ReferenceDriver

#: Where a driver appends what a test must see: the simulator pids it touched, the passwords it was given.
PIDS_ENV = "VCCONFORM_TEST_PIDS"
LEAKS_ENV = "VCCONFORM_TEST_LEAKS"
#: A file a hanging driver creates when it starts to hang (so a test knows when to interrupt the run).
HANGING_ENV = "VCCONFORM_TEST_HANGING"

LOG = logging.getLogger(__name__)
_never_answering: list[socket.socket] = []


def _note(env: str, text: str) -> None:
    path = os.environ.get(env)
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


def _block_in_a_socket_read() -> None:
    """Wait for an answer that never comes, as a driver stuck on a silent server does."""
    server = socket.create_server(("127.0.0.1", 0))
    _never_answering.append(server)  # kept open: the connection stays established, the read never returns
    client = socket.create_connection(server.getsockname())
    _never_answering.append(client)
    hanging = os.environ.get(HANGING_ENV)
    if hanging:
        Path(hanging).touch()
    client.recv(1)


def _simulator_pid(config: DriverConfig) -> int:
    """The pid of the fake vCenter this driver is configured for (its state folder holds the CA file)."""
    state = Path(str(config.ca_file)).parent
    return int(json.loads((state / "ready.json").read_text())["pid"])


def _wait_for_state(pid: int, state: str, timeout: float = 5.0) -> None:
    """Until the process is in ``state`` (Z: dead, or gone already)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == state:
                    return
        except OSError:
            return  # gone (reaped)
        time.sleep(0.01)


class RaisesInConstructor(ReferenceDriver):
    def __init__(self, config: DriverConfig) -> None:
        raise RuntimeError("license server unreachable")


class NotADriver:
    """Has none of the contract's methods."""


class LeaksItsPassword(ReferenceDriver):
    """Right in every figure, but puts its password in a log line, on stdout and in an error text."""

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        logging.getLogger("leaky").warning("refreshing as %s:%s", self.config.username, self.config.password)
        print(f"password={self.config.password}")
        return super().get_available_nodes(refresh)

    def get_available_resource(self, nodename: str) -> Resources:
        try:
            return super().get_available_resource(nodename)
        except NodeNotFound:
            raise NodeNotFound(f"{nodename} (asked with password {self.config.password})") from None


class KillsItsWorker(ReferenceDriver):
    """destroy() ends the process it runs in, as a driver calling os._exit or crashing in C code does."""

    def destroy(self, instance: Instance) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class _HurtsTheSimulator(ReferenceDriver):
    """Sends the fake vCenter a signal on the third node listing of the run (in its first two checks, it is
    a good driver), then goes on as usual: that listing meets a dead or silent simulator."""

    hurt = signal.SIGKILL
    listings = 0

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        _HurtsTheSimulator.listings += 1
        if _HurtsTheSimulator.listings == 3:
            pid = _simulator_pid(self.config)
            _note(PIDS_ENV, str(pid))
            os.kill(pid, self.hurt)
            _wait_for_state(pid, "T" if self.hurt == signal.SIGSTOP else "Z")  # a signal lands a moment later
        return super().get_available_nodes(refresh)


class KillsTheSimulator(_HurtsTheSimulator):
    hurt = signal.SIGKILL


class StopsTheSimulator(_HurtsTheSimulator):
    hurt = signal.SIGSTOP


class HangsInConstructor(ReferenceDriver):
    def __init__(self, config: DriverConfig) -> None:
        _block_in_a_socket_read()
        super().__init__(config)


class HangsInRefresh(ReferenceDriver):
    """Every refresh waits forever on a server that never answers."""

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        _block_in_a_socket_read()
        return super().get_available_nodes(refresh)


class LeaksPasswords(ReferenceDriver):
    """Puts its password everywhere a careless driver does: exception texts, logs, standard output."""

    def __init__(self, config: DriverConfig) -> None:
        _note(LEAKS_ENV, config.password)
        try:
            super().__init__(config)
        except AuthenticationFailed as e:
            raise AuthenticationFailed(f"{e} (user {config.username}, password {config.password})") from None

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        LOG.error("logging in as %s with password %s", self.config.username, self.config.password)
        print(f"password={self.config.password}")
        print(f"password={self.config.password}", file=sys.stderr)
        raise RuntimeError(f"cannot list nodes as {self.config.username}:{self.config.password}")
