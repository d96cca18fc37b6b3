"""The driver process protocol (docs/driver-protocol.md): its version, methods, error codes and the JSON Schema
of every message (conformance/protocol/schema/), shared by the suite's proxy (conformance/process_driver.py)
and the Python server (conformance/protocol/serve.py)."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

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

__all__ = ["ERROR_CODES", "ERROR_TYPES", "INTERNAL_ERROR", "METHODS", "PROTOCOL_VERSION", "SCHEMA_DIR",
           "STANDARD_ERRORS", "SchemaError", "compatible", "config_params", "error_code", "instance_params",
           "validate"]

#: The version this suite speaks: major.minor. A driver speaking another major is refused at the handshake;
#: a minor differs only by additions that both sides ignore when they do not know them.
PROTOCOL_VERSION = "1.0"
SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
SCHEMA_BASE = "https://vcconform.example/protocol/1/"

#: Every method, in the order a driver meets them (the suite sends no others).
METHODS = ("initialize", "configure", "reconfigure", "get_available_nodes", "get_available_resource", "spawn",
           "destroy", "list_instances", "get_info", "wait_for_changes", "shutdown")

#: The contract's exceptions, one application error code each (JSON-RPC's server range); ``data.type`` names it.
ERROR_CODES: dict[type[DriverError], int] = {
    DriverError: -32000, NodeNotFound: -32001, InstanceNotFound: -32002, VCenterUnavailable: -32003,
    AuthenticationFailed: -32004, SpawnFailed: -32005}
ERROR_TYPES: dict[int, type[DriverError]] = {code: cls for cls, code in ERROR_CODES.items()}
#: The driver failed in a way the contract does not name (like a Python driver raising KeyError).
INTERNAL_ERROR = -32603
#: JSON-RPC's own errors: the driver did not understand the suite's request (a protocol failure).
STANDARD_ERRORS = {-32700: "Parse error", -32600: "Invalid Request", -32601: "Method not found",
                   -32602: "Invalid params"}


class SchemaError(ValueError):
    """A message does not match its schema; the message is one line naming where."""


def error_code(e: DriverError) -> tuple[int, str]:
    """The code and ``data.type`` of a contract exception: its own class's, or the nearest contract base's
    (a driver's ConfigError is a DriverError)."""
    for cls in type(e).__mro__:
        if cls in ERROR_CODES:
            return ERROR_CODES[cls], cls.__name__
    return ERROR_CODES[DriverError], "DriverError"


def compatible(version: str) -> bool:
    """Whether a driver's protocol version can be spoken with this suite's (the same major)."""
    return version.split(".", 1)[0] == PROTOCOL_VERSION.split(".", 1)[0]


def config_params(config: DriverConfig) -> dict[str, Any]:
    """``configure``/``reconfigure`` params: every field of the dataclass by name, so fields added to
    DriverConfig later travel without a change here (drivers ignore members they do not know)."""
    return {"config": _plain({f.name: getattr(config, f.name) for f in fields(config)})}


def instance_params(instance: Instance) -> dict[str, Any]:
    params: dict[str, Any] = _plain(asdict(instance))
    return params


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: what JSON has."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@functools.cache
def _validators() -> dict[str, Any]:
    """A validator per schema file (``spawn.request``...), with the shared definitions registered."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    documents = {p.name.removesuffix(".json"): json.loads(p.read_text()) for p in sorted(SCHEMA_DIR.glob("*.json"))}
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in documents.values())
    return {name: Draft202012Validator(doc, registry=registry, format_checker=None)
            for name, doc in documents.items() if name != "defs"}


def validate(kind: str, method: str, message: Any) -> None:
    """Check a message against ``<method>.<kind>.json`` (kind: "request" or "response"); raise SchemaError
    naming the first problem and where it is."""
    validator = _validators().get(f"{method}.{kind}")
    if validator is None:
        raise SchemaError(f"no schema for a {kind} of method {method!r}")
    from jsonschema.exceptions import best_match

    # best_match descends into oneOf's branches: "result/vcpus: '8' is not of type 'integer'", not "not valid
    # under any of the given schemas".
    error = best_match(validator.iter_errors(message))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the message"
        detail = error.message if len(error.message) <= 200 else error.message[:200] + "..."
        raise SchemaError(f"{where}: {detail}")
