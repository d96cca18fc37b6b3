"""Keep secrets out of every artefact: the passwords a run knows are replaced by ``********`` in any text
written to a report, a kept log or a trace.

Secrets are registered where they come into being (the harness makes the fake vCenter's password, the
plugin reads --vcenter-url's, a check's wrong password passes through ``Site.config``), so masking needs
no cooperation from the checks. Masking works on text fields, never on whole serialized files, so even a
weak password cannot break a report's syntax.
"""

from __future__ import annotations

import html
import json
import re
import threading
import urllib.parse
from typing import Any

__all__ = ["MASK", "add_secret", "mask", "scrub", "secrets_known"]

MASK = "********"

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def _forms(secret: str) -> set[str]:
    """The ways a secret shows up in text: as is, escaped for HTML/XML, JSON and Python reprs, URL-encoded."""
    forms = {secret, html.escape(secret), html.escape(secret, quote=False), json.dumps(secret)[1:-1],
             repr(secret)[1:-1], urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    return {f for f in forms if f}


def add_secret(secret: str | None) -> None:
    """Mask this text (a password) from now on, in this process."""
    global _pattern
    if not secret:
        return
    with _lock:
        if secret in _secrets:
            return
        _secrets.add(secret)
        forms = sorted({f for s in _secrets for f in _forms(s)}, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(f) for f in forms))


def secrets_known() -> int:
    return len(_secrets)


def mask(text: str) -> str:
    """The text with every known secret replaced by ``********``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def scrub(obj: Any, _seen: set[int] | None = None) -> Any:
    """Mask every string inside ``obj`` (strings, lists, tuples, dicts, and pytest's report objects, which
    it changes in place) and return the result."""
    if _pattern is None:
        return obj
    if isinstance(obj, str):
        return mask(obj)
    seen = _seen if _seen is not None else set()
    if id(obj) in seen:
        return obj
    seen.add(id(obj))
    if isinstance(obj, list):
        obj[:] = [scrub(x, seen) for x in obj]
        return obj
    if isinstance(obj, tuple):
        items = [scrub(x, seen) for x in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, dict):
        for key in list(obj):
            obj[key] = scrub(obj[key], seen)
        return obj
    # pytest's failure representations (ReprExceptionInfo, ReprEntry, ...) are plain objects of _pytest.
    if type(obj).__module__.startswith("_pytest") and hasattr(obj, "__dict__"):
        for key, value in list(vars(obj).items()):
            object.__setattr__(obj, key, scrub(value, seen))
    return obj
