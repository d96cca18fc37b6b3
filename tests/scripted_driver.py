"""A driver process that does what its script says, for the proxy's protocol tests (tests/test_protocol.py):
answer, fail with an error, crash, hang, write garbage, log to stderr, answer late or out of order.

    python -m tests.scripted_driver '<script as JSON>'

The script maps a method to its action; methods it does not name are answered as a well-behaved driver
would (initialize with protocol 1.0 and no capabilities, no nodes and no instances, null for the others).
An action is an object:

- ``{"result": value}`` / ``{"error": {...}}``: the answer (``"result": "$params"`` echoes the params);
- ``{"stderr": [lines]}``: written to stderr, flushed, before the answer;
- ``{"delay": seconds}``: the answer comes that much later (requests run on threads of their own);
- ``{"raw": "text"}``: that line on stdout instead of an answer; ``{"exit": status}``: exit instead;
  ``{"hang": true}``: never answer;
- ``"configured_only": true`` in an action: only in a process that was configured (not the handshake's).

The top-level key ``"start"`` is an action taken before the first request (``stderr``, ``raw``, ``exit``);
``"linger": true`` keeps the process alive after shutdown and after its stdin closes.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

_write = threading.Lock()


def send(message: dict[str, Any]) -> None:
    with _write:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def act(action: dict[str, Any], request: dict[str, Any] | None) -> bool:
    """Take an action; False when the process must stop reading."""
    for line in action.get("stderr", []):
        sys.stderr.write(line + "\n")
    sys.stderr.flush()
    if "delay" in action:
        time.sleep(float(action["delay"]))
    if "exit" in action:
        os._exit(int(action["exit"]))
    if action.get("hang"):
        time.sleep(3600)
    if "raw" in action:
        with _write:
            sys.stdout.write(str(action["raw"]) + "\n")
            sys.stdout.flush()
        return True
    if request is None:
        return True
    if "error" in action:
        send({"jsonrpc": "2.0", "id": request["id"], "error": action["error"]})
    else:
        result = action.get("result")
        send({"jsonrpc": "2.0", "id": request["id"], "result": request["params"] if result == "$params" else result})
    return True


def main() -> int:
    script: dict[str, Any] = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    defaults: dict[str, Any] = {
        "initialize": {"result": {"protocol_version": "1.0", "driver": {"name": "scripted", "version": "0"},
                                  "capabilities": {}}},
        "get_available_nodes": {"result": []}, "list_instances": {"result": []}}
    if "start" in script:
        act(script["start"], None)
    configured = False
    for line in sys.stdin:
        request = json.loads(line)
        method = request["method"]
        configured = configured or method == "configure"
        action = script.get(method, defaults.get(method, {"result": None}))
        if action.get("configured_only") and not configured:
            action = defaults.get(method, {"result": None})
        if method == "shutdown":
            act(action, request)
            if script.get("linger"):
                time.sleep(3600)
            return 0
        threading.Thread(target=act, args=(action, request), daemon=True).start()
    if script.get("linger"):
        time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
