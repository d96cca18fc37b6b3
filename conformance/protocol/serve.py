"""Serve a Python ComputeDriver over the driver protocol on stdin/stdout (docs/driver-protocol.md).

    python -m conformance.protocol.serve package.module:Class

The protocol's second implementation beside the Go driver's: the suite runs the reference driver through it
(so the protocol is shown complete: the same verdict as in-process), the protocol tests subclass ``Server`` to
break the protocol on purpose, and a Python driver that must run in an interpreter or environment of its own
can use it as is. Requests run concurrently, one thread each; log records go to stderr as
``LEVEL logger: message``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from dataclasses import fields
from typing import IO, Any

from conformance import protocol
from conformance.contract import ComputeDriver, DriverConfig, DriverError, Instance
from conformance.drivers import DriverLoadError, load_driver_class

__all__ = ["Server", "main"]


class ProtocolError(Exception):
    """A request the server cannot take: (code, message) of JSON-RPC's own errors."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def config_from(params: dict[str, Any]) -> DriverConfig:
    """A DriverConfig from ``configure``'s params: known fields taken, unknown ones ignored (the rule)."""
    raw = params["config"]
    known = {f.name for f in fields(DriverConfig)}
    values = {k: v for k, v in raw.items() if k in known}
    values["clusters"] = tuple(values.get("clusters") or ())
    return DriverConfig(**values)


def instance_from(raw: dict[str, Any]) -> Instance:
    known = {f.name for f in fields(Instance)}
    return Instance(**{k: v for k, v in raw.items() if k in known})


class Server:
    """One driver instance behind stdin/stdout: ``configure`` builds it, ``shutdown`` closes it."""

    def __init__(self, driver_class: type[ComputeDriver], rfile: IO[bytes], wfile: IO[bytes]) -> None:
        self.driver_class = driver_class
        self.driver: ComputeDriver | None = None
        self.rfile, self.wfile = rfile, wfile
        self._write_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- the loop --------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until shutdown or the end of stdin; the exit status."""
        while True:
            line = self.rfile.readline()
            if not line:
                break  # the suite is gone: close and exit
            if not line.strip():
                continue
            request = self.parse(line)
            if request is None:
                continue
            method = request["method"]
            if method in ("initialize", "configure", "shutdown"):
                self.handle(request)  # in order: nothing else runs before configure or after shutdown
                if method == "shutdown":
                    return 0
            else:
                t = threading.Thread(target=self.handle, args=(request,), name=f"request {request['id']}",
                                     daemon=True)
                self._threads.append(t)
                t.start()
        self.close()
        return 0

    def parse(self, line: bytes) -> dict[str, Any] | None:
        """The request, or None once the error answer was sent."""
        try:
            request = json.loads(line)
        except ValueError as e:
            self.send({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": f"not JSON: {e}"}})
            return None
        rid = request.get("id") if isinstance(request, dict) else None
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or not isinstance(rid, int) \
                or not isinstance(request.get("method"), str) or not isinstance(request.get("params"), dict):
            self.send({"jsonrpc": "2.0", "id": rid if isinstance(rid, int) else None,
                       "error": {"code": -32600, "message": "expected a JSON-RPC 2.0 request with an integer id "
                                                            "and params as an object"}})
            return None
        if request["method"] not in protocol.METHODS:
            self.error(rid, -32601, f"no method {request['method']!r}")
            return None
        try:
            protocol.validate("request", request["method"], request)
        except protocol.SchemaError as e:
            self.error(rid, -32602, str(e))
            return None
        return request

    def handle(self, request: dict[str, Any]) -> None:
        rid, method, params = request["id"], request["method"], request["params"]
        try:
            result = self.call(method, params)
        except DriverError as e:
            code, name = protocol.error_code(e)
            self.send({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": str(e),
                                                               "data": {"type": name}}})
        except ProtocolError as e:
            self.error(rid, e.code, str(e))
        except NotImplementedError as e:
            self.error(rid, -32601, str(e) or f"{method} is not implemented")
        except Exception as e:  # the driver's own failure: -32603, as the contract names no such error
            logging.getLogger(__name__).exception("%s failed", method)
            self.error(rid, protocol.INTERNAL_ERROR, f"{type(e).__name__}: {e}")
        else:
            self.send({"jsonrpc": "2.0", "id": rid, "result": result})

    def error(self, rid: int | None, code: int, message: str) -> None:
        self.send({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}})

    def send(self, message: dict[str, Any]) -> None:
        for handler in logging.getLogger().handlers:  # what was logged before the answer comes before it
            handler.flush()
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        with self._write_lock:
            self.wfile.write(data)
            self.wfile.flush()

    # -- the methods -----------------------------------------------------------------------------------------

    def call(self, method: str, params: dict[str, Any]) -> Any:
        if method == "initialize":
            cls = self.driver_class
            return {"protocol_version": protocol.PROTOCOL_VERSION,
                    "driver": {"name": f"{cls.__module__}:{cls.__qualname__}", "version": str(cls.version)},
                    "capabilities": {k: bool(v) for k, v in cls.capabilities.items()}}
        if method == "configure":
            if self.driver is not None:
                raise ProtocolError(-32600, "configure was already called")
            self.driver = self.driver_class(config_from(params))
            return None
        if method == "shutdown":
            self.close()
            return None
        d = self.driver
        if d is None:
            raise ProtocolError(-32600, f"{method} before configure")
        if method == "reconfigure":
            d.reconfigure(config_from(params))
            return None
        if method == "get_available_nodes":
            return list(d.get_available_nodes(refresh=params["refresh"]))
        if method == "get_available_resource":
            return dict(d.get_available_resource(params["nodename"]))
        if method == "spawn":
            d.spawn(instance_from(params["instance"]), params["nodename"])
            return None
        if method == "destroy":
            d.destroy(instance_from(params["instance"]))
            return None
        if method == "list_instances":
            return list(d.list_instances())
        if method == "get_info":
            info = d.get_info(instance_from(params["instance"]))
            return {"state": info.state, "nodename": info.nodename}
        if method == "wait_for_changes":
            return bool(d.wait_for_changes(float(params["timeout"])))
        raise ProtocolError(-32601, f"no method {method!r}")

    def close(self) -> None:
        d, self.driver = self.driver, None
        if d is not None:
            d.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.protocol.serve", description=__doc__.split("\n")[0])
    parser.add_argument("driver", help="package.module:Class of a ComputeDriver")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cls = load_driver_class(args.driver)
    except DriverLoadError as e:
        print(f"serve: {e}", file=sys.stderr)
        return 2
    return Server(cls, sys.stdin.buffer, sys.stdout.buffer).run()


if __name__ == "__main__":
    sys.exit(main())
