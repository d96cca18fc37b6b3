"""Find the driver under test from a ``package.module:Class`` string, with one-line errors that say the fix."""

from __future__ import annotations

import importlib
import inspect

from conformance.contract import ComputeDriver

__all__ = ["REFERENCE_DRIVER", "DriverLoadError", "load_driver_class"]

REFERENCE_DRIVER = "driver_under_test.reference:ReferenceDriver"
CONTRACT_METHODS = ("get_available_nodes", "get_available_resource", "spawn", "destroy", "list_instances",
                    "get_info")


class DriverLoadError(ValueError):
    """The driver could not be found or does not implement the contract."""


def load_driver_class(spec: str) -> type[ComputeDriver]:
    """Import ``package.module:Class`` and check that the class implements the contract."""
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name.isidentifier():
        raise DriverLoadError(f"driver {spec!r}: expected package.module:Class "
                              f"(for example {REFERENCE_DRIVER})")
    try:
        module = importlib.import_module(module_name)
    except SystemExit as e:  # not an Exception: without this the whole run would end, silently
        raise DriverLoadError(f"driver {spec!r}: importing {module_name!r} called sys.exit({e.code!r}); a "
                              "driver module must not exit when imported") from None
    except Exception as e:  # the driver's own import may raise anything
        raise DriverLoadError(f"driver {spec!r}: cannot import {module_name!r} ({type(e).__name__}: {e}); "
                              "install the driver's package in this environment or fix the path") from None
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        raise DriverLoadError(f"driver {spec!r}: module {module_name!r} has no class {class_name!r}")
    missing = [m for m in CONTRACT_METHODS if not callable(getattr(cls, m, None))]
    abstract = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing or abstract:
        raise DriverLoadError(f"driver {spec!r} does not implement the contract: missing "
                              f"{', '.join(missing or abstract)} (see conformance.contract.ComputeDriver)")
    return cls  # type: ignore[return-value]  # checked above, duck-typed drivers are welcome
