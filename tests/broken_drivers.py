"""Drivers that are broken in ways a vendor's driver can be, for the clear-error tests (not mutants)."""

from __future__ import annotations

from conformance.contract import DriverConfig
from driver_under_test.reference import ReferenceDriver


class RaisesInConstructor(ReferenceDriver):
    def __init__(self, config: DriverConfig) -> None:
        raise RuntimeError("license server unreachable")


class NotADriver:
    """Has none of the contract's methods."""
