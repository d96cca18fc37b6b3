"""The reference driver behind the protocol (conformance/protocol/serve.py), broken on purpose at one method,
for the end-to-end protocol tests (tests/test_protocol_runs.py):

    python -m tests.protocol_faults FAULT METHOD

FAULT is one of ``crash`` (exit 2 after a last word on stderr), ``hang`` (never answer), ``garbage`` (a line
that is not JSON on stdout), ``unknown-method`` (JSON-RPC -32601) or ``wrong-error`` (InstanceNotFound, a
contract error but not the one the contract asks for). Every other request is served as the reference would.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from conformance.contract import InstanceNotFound
from conformance.protocol import ERROR_CODES
from conformance.protocol.serve import Server
from driver_under_test.reference import ReferenceDriver

FAULTS = ("crash", "hang", "garbage", "unknown-method", "wrong-error")


class FaultyServer(Server):
    def __init__(self, fault: str, method: str) -> None:
        super().__init__(ReferenceDriver, sys.stdin.buffer, sys.stdout.buffer)
        self.fault, self.method = fault, method

    def handle(self, request: dict[str, Any]) -> None:
        if request["method"] != self.method:
            super().handle(request)
        elif self.fault == "crash":
            sys.stderr.write("panic: runtime error: invalid memory address or nil pointer dereference\n")
            sys.stderr.flush()
            os._exit(2)
        elif self.fault == "hang":
            time.sleep(3600)
        elif self.fault == "garbage":
            self.wfile.write(b"refreshing nodes...\n")
            self.wfile.flush()
        elif self.fault == "unknown-method":
            self.error(request["id"], -32601, f"no method {self.method!r}")
        elif self.fault == "wrong-error":
            error = {"code": ERROR_CODES[InstanceNotFound], "message": "no such thing",
                     "data": {"type": "InstanceNotFound"}}
            self.send({"jsonrpc": "2.0", "id": request["id"], "error": error})


def main() -> int:
    fault, method = sys.argv[1], sys.argv[2]
    if fault not in FAULTS:
        print(f"protocol_faults: fault {fault!r}: expected one of {', '.join(FAULTS)}", file=sys.stderr)
        return 2
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return FaultyServer(fault, method).run()


if __name__ == "__main__":
    sys.exit(main())
