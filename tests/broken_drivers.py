"""Drivers that are broken in ways a vendor's driver can be, for the clear-error tests (not mutants)."""

from __future__ import annotations

import logging

from conformance.contract import DriverConfig, NodeNotFound, Resources
from driver_under_test.reference import ReferenceDriver


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
