"""The reference driver's configuration: a TOML file plus credentials from the environment or a secrets file.

``load_config`` turns a file like this into a ``DriverConfig`` (every key but ``url`` and ``clusters`` is
optional)::

    url = "https://vcenter.example.org/sdk"
    clusters = ["/DC1/host/prod/C1", "domain-c42"]   # inventory paths (folders included) or morefs
    ca_file = "vcenter-ca.pem"                        # relative to this file; default: the system store
    insecure = false                                  # true turns TLS verification off, explicitly
    datastore_regex = "^(nfs|vsan)-.*"                # datastores whose name matches (whole name)
    service_id = "compute-eu-1"                       # this service's identity among several
    resource_pool = "nova"                            # spawn into <cluster>/Resources/nova, not the root pool
    vcenter_timeout_s = 30                            # seconds of vCenter's silence that fail an attempt
    username = "svc-nova@vsphere.local"               # or from $VCENTER_USERNAME (see username_env)
    password_file = "/run/secrets/vcenter"            # or from $VCENTER_PASSWORD (see password_env)

A password is never read from the configuration file itself: configuration files are shared and committed,
secrets files and the environment are not. ``check_config`` is what the driver runs on any ``DriverConfig``
it is given, however it was built. Every error is one ``ConfigError`` line that names the key and never
contains a credential.
"""

from __future__ import annotations

import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conformance.contract import DriverConfig, DriverError

__all__ = ["ConfigError", "check_config", "load_config"]

DEFAULT_USERNAME_ENV = "VCENTER_USERNAME"
DEFAULT_PASSWORD_ENV = "VCENTER_PASSWORD"
SERVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
KEYS: dict[str, type | tuple[type, ...]] = {
    "url": str, "clusters": list, "ca_file": str, "insecure": bool, "datastore_regex": str, "service_id": str,
    "resource_pool": str, "vcenter_timeout_s": (int, float), "username": str, "username_env": str,
    "password_env": str, "password_file": str}


class ConfigError(DriverError, ValueError):
    """The configuration is unusable; the message is one line naming the key and the fix."""


def check_config(config: DriverConfig) -> None:
    """Raise ConfigError for the first thing wrong with ``config``; the driver calls this on every config."""
    u = urllib.parse.urlsplit(config.url)
    if u.scheme != "https" or not u.hostname:
        raise ConfigError(f"url: expected https://host[:port]/sdk, got {u.scheme or 'no scheme'}://"
                          f"{u.hostname or 'no host'}")
    try:
        u.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ConfigError("url: the port is not a number between 0 and 65535") from None
    if not config.username or not config.password:
        raise ConfigError("credentials: username and password must both be set")
    bad = [c for c in config.clusters if not isinstance(c, str) or not c.strip()]
    if bad:
        raise ConfigError(f"clusters: every entry must be an inventory path or a moref, got {bad[0]!r}")
    if config.ca_file is not None and not Path(config.ca_file).is_file():
        raise ConfigError(f"ca_file: no such file {config.ca_file}")
    if config.datastore_regex is not None:
        try:
            re.compile(config.datastore_regex)
        except re.error as e:
            raise ConfigError(f"datastore_regex: {config.datastore_regex!r} is not a regular expression "
                              f"({e.msg})") from None
    if not SERVICE_ID.fullmatch(config.service_id):
        raise ConfigError(f"service_id: expected 1-64 letters, digits, '.', '_' or '-', got {config.service_id!r}")
    if not 0 < config.vcenter_timeout_s <= 3600:
        raise ConfigError(f"vcenter_timeout_s: expected seconds above 0 and at most 3600, got "
                          f"{config.vcenter_timeout_s!r}")
    pool = config.resource_pool
    if pool is not None and (not pool.strip("/") or pool.startswith("/")):
        raise ConfigError(f"resource_pool: expected a pool path below each cluster's root pool "
                          f"(e.g. 'nova' or 'tenants/nova'), got {pool!r}")


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> DriverConfig:
    """Read a TOML configuration file and the credentials it points to; raise ConfigError on any mistake."""
    env = os.environ if environ is None else environ
    p = Path(path)
    try:
        raw: dict[str, Any] = tomllib.loads(p.read_text())
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the configuration file ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    if "password" in raw:
        raise ConfigError(f"{p}: password: not allowed in the configuration file; use password_file or "
                          f"${DEFAULT_PASSWORD_ENV}")
    for key, value in raw.items():
        if key not in KEYS:
            raise ConfigError(f"{p}: {key}: unknown key (known: {', '.join(KEYS)})")
        kind = KEYS[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            expected = "number" if isinstance(kind, tuple) else kind.__name__
            raise ConfigError(f"{p}: {key}: expected a {expected}, got {type(value).__name__}")
    for key in ("url", "clusters"):
        if key not in raw:
            raise ConfigError(f"{p}: {key}: required")
    clusters = raw["clusters"]
    if not all(isinstance(c, str) for c in clusters):
        raise ConfigError(f"{p}: clusters: expected a list of inventory paths or morefs")

    def relative(name: str) -> str | None:
        value = raw.get(name)
        return None if value is None else str((p.parent / value).resolve())

    username_env = raw.get("username_env", DEFAULT_USERNAME_ENV)
    username = raw.get("username") or env.get(username_env, "")
    if not username:
        raise ConfigError(f"{p}: username: set it in the file or in ${username_env}")
    password_file = relative("password_file")
    if password_file is not None:
        try:
            password = Path(password_file).read_text().rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"{p}: password_file: cannot read {password_file} ({e.strerror or e})") from None
    else:
        password_env = raw.get("password_env", DEFAULT_PASSWORD_ENV)
        password = env.get(password_env, "")
        if not password:
            raise ConfigError(f"{p}: password: set ${password_env} or give password_file")
    config = DriverConfig(
        url=raw["url"], username=username, password=password, clusters=tuple(clusters),
        ca_file=relative("ca_file"), insecure=raw.get("insecure", False),
        datastore_regex=raw.get("datastore_regex"), service_id=raw.get("service_id", "compute-0"),
        resource_pool=raw.get("resource_pool"), vcenter_timeout_s=float(raw.get("vcenter_timeout_s", 30.0)))
    try:
        check_config(config)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    return config
