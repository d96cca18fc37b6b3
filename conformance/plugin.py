"""The vcconform pytest plugin (entry point ``pytest11``): options, check selection, gating, run integrity,
and the report.

Every option exists three times, with one precedence: command line, then environment, then ini key, then
the default; every value given is checked before the run starts, and a bad one is refused with one line.
The plugin is inert in a run that collects no checks and names no report dir (no fake vCenter, no report).
The fixtures the checks use live in conformance/fixtures.py.

Run integrity (what keeps the verdict honest, see conformance/report.py for the verdicts):

- a check's outcome comes from all its phases: a failed set-up or teardown, a time-out, a crash of the
  process that ran it (xdist's report of phase ``???``) make it an error; a check that started and never
  reported its call did not pass;
- requirements are judged against the whole catalogue (every check of conformance/checks): a check that
  did not run is "not run", never "passed"; ``--certify`` refuses any selection or early stop up front;
- the fake vCenters are watched around and during every check (conformance/watchdog.py): one that died
  or stopped answering ends the run with one line and the verdict ERROR, never blaming the driver;
- the report dir is cleared when the run starts (an INCOMPLETE marker stands in for the report until the
  real one is written), an interrupted run (Ctrl-C, SIGTERM, pytest.exit) writes INCOMPLETE with the
  reason, and the exit status always follows the verdict;
- every text a report, a JUnit file or a kept log holds is masked for the passwords the run knows.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import math
import os
import platform
import random
import signal
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from conformance import credentials
from conformance.budgets import CALLS_PER_REFRESH
from conformance.contract import CAPABILITIES, ComputeDriver
from conformance.coverage import ROWS
from conformance.drivers import REFERENCE_DRIVER, DriverLoadError, load_driver_class
from conformance.harness import BACKENDS, REPO, Endpoint, running_endpoints
from conformance.masking import add_secret, mask, scrub, secrets_known
from conformance.process_driver import DriverProcessError, command_driver_class, split_command, take_failures
from conformance.report import (
    CheckResult,
    ReportDirError,
    RunEnd,
    build_report,
    check_key,
    log_tail_title,
    prepare_report_dir,
    summary_lines,
    write_html,
    write_json,
)
from conformance.requirements import MANDATORY, PROFILES, REQUIREMENTS, level_in
from conformance.topology import TopologyError, load_topology
from conformance.watchdog import CheckTimeout, DriverHung, InfrastructureError, Watchdog

DEFAULT_TOPOLOGY = str(REPO / "fixtures" / "topologies" / "standard.yaml")
HETEROGENEOUS_TOPOLOGY = str(REPO / "fixtures" / "topologies" / "heterogeneous.yaml")
CHECKS_DIR = Path(__file__).resolve().parent / "checks"
CHECKS_PACKAGE = "conformance.checks"
ENV_KEY = "vcconform_env"
EVIDENCE_KEY = "vcconform_evidence"
CERTIFY_KEY = "vcconform_certify_refused"
LEAKS_KEY = "vcconform_credential_leaks"  # where the credential scan found a password (SEC-03)
ERROR_KEY = "vcconform_error"  # the check could not run to its end (time-out, hung constructor, dead simulator)
FATAL_KEY = "vcconform_fatal"  # the run ends here (RunEnd as JSON)
#: The words a switch (--certify's environment or ini twin) accepts; anything else is refused.
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Option:
    flag: str
    default: str | None
    help: str
    flag_only: bool = False  # a switch: true when given, or when its env/ini twin says so

    @property
    def key(self) -> str:
        return "vcconform_" + self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return self.key.upper()


OPTIONS = [
    Option("--driver", REFERENCE_DRIVER, "driver under test, as package.module:Class"),
    Option("--driver-command", None, "driver under test as a process speaking the driver protocol "
                                     "(docs/driver-protocol.md): a program and its arguments, e.g. 'bin/driver -v'"),
    Option("--driver-timeout", "60", "seconds one request to a --driver-command process may take (at most half of "
                                     "--check-timeout; wait_for_changes adds its own timeout); past it the process "
                                     "is killed and the run ends with ERROR"),
    Option("--vcsim-backend", "process", "run the fake vCenter as a local 'process' or a 'container'"),
    Option("--topology", DEFAULT_TOPOLOGY, "topology file the fake vCenter starts with"),
    Option("--heterogeneous-topology", HETEROGENEOUS_TOPOLOGY,
           "second topology (hosts of many sizes and states) for the resource checks"),
    Option("--report-dir", None, "write report.json and report.html here (JUnit XML: pytest's --junitxml)"),
    Option("--vcsim-timeout", "30", "seconds to wait for the fake vCenter to be ready"),
    Option("--check-timeout", "300",
           "seconds one check (set-up, call and teardown) may take; past it the check is an error showing "
           "where it hung, and the run goes on"),
    Option("--seed", None, "random seed for names and uuids the checks make (default: a new one, recorded)"),
    Option("--eff-max-calls", str(CALLS_PER_REFRESH.base),
           "EFF-01: most vCenter calls allowed for one full refresh, at any cluster count"),
    Option("--profile", "standard", "verdict profile: 'standard', or 'scale' where the efficiency budgets are "
                                    "mandatory (the report shows both verdicts)"),
    Option("--vcenter-url", None, "run against this existing vCenter (https://host/sdk) instead of the fake one"),
    Option("--vcenter-username", None, "user for --vcenter-url"),
    Option("--vcenter-password-env", "VCCONFORM_VCENTER_PASSWORD",
           "name of the environment variable that holds the password for --vcenter-url"),
    Option("--vcenter-ca-file", None, "CA bundle for --vcenter-url (default: the system store)"),
    Option("--vcenter-inventory", None,
           "YAML describing the existing vCenter: clusters (paths) to manage, optional scratch_datacenter"),
    Option("--certify", None, "certification run: every check runs, no mandatory check may skip; record what "
           f"reproduces it (env/ini: {'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)})", flag_only=True),
]
_BY_FLAG = {o.flag: o for o in OPTIONS}


def option(flag: str) -> Option:
    return _BY_FLAG[flag]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vcconform", "vcconform conformance suite")
    for o in OPTIONS:
        text = f"{o.help} (ini {o.key}, env {o.env}" + (f"; default {o.default})" if o.default else ")")
        if o.flag_only:
            group.addoption(o.flag, dest=o.key, action="store_true", default=None, help=text)
        else:
            group.addoption(o.flag, dest=o.key, default=None, help=text)
        parser.addini(o.key, help=text, default=None)
    group.addoption("--requirement", dest="vcconform_requirement", action="append", default=[],
                    metavar="ID", help="run only the checks of this requirement (repeatable), e.g. NODE-01")
    group.addoption("--vcsim-trace", dest="vcconform_vcsim_trace", action="store_true",
                    help="record the fake vCenter's SOAP traffic (kept, masked, in the report dir)")


# -- settings ----------------------------------------------------------------------------------------------

Lookup = Callable[[Option], tuple[str | None, str | None]]


def lookup(config: pytest.Config) -> Lookup:
    """(value, where it was given) of an option: command line, environment, ini; (default, None) if nowhere."""
    def get(o: Option) -> tuple[str | None, str | None]:
        for value, where in ((config.getoption(o.key), o.flag), (os.environ.get(o.env), o.env),
                             (config.getini(o.key), f"ini {o.key}")):
            if value:
                return ("1" if value is True else str(value)), where
        return o.default, None
    return get


def setting(config: pytest.Config, flag: str) -> str | None:
    """An option's value: command line, then environment, then ini, then default."""
    return lookup(config)(_BY_FLAG[flag])[0]


def switch(config: pytest.Config, flag: str) -> bool:
    return (setting(config, flag) or "").strip().lower() in TRUE_WORDS


class SettingError(ValueError):
    """An option value that cannot be used; the message is one line."""


def _named(where: str, value: str) -> str:
    return f"{where}={value!r}" if where.isupper() else f"{where} {value!r}"


def check_settings(get: Lookup, *, requirements: list[str] | None = None, environ: dict[str, str] | None = None,
                   load_driver: bool = True) -> None:
    """Refuse, with one line, any option value that cannot be used. Shared by the plugin (pytest_configure)
    and ``vcconform run`` (before pytest starts)."""
    env = os.environ if environ is None else environ

    def given(flag: str) -> tuple[str | None, str]:
        value, where = get(_BY_FLAG[flag])
        return value, where or flag

    def number(flag: str, *, integer: bool = False, minimum: float | None = None) -> None:
        value, where = given(flag)
        if value is None:
            return
        try:
            n = int(value) if integer else float(value)
        except ValueError:
            n = None
        if integer:
            if n is None or (minimum is not None and n < minimum):
                bound = "" if minimum is None else f" of at least {minimum:g}"
                raise SettingError(f"{_named(where, value)}: expected an integer{bound}")
        elif n is None or not math.isfinite(n) or n <= 0:
            raise SettingError(f"{_named(where, value)}: expected a number of seconds above 0")

    for o in OPTIONS:
        if o.flag_only:
            value, where = get(o)
            if value is not None and where is not None and where != o.flag and \
                    value.strip().lower() not in TRUE_WORDS + FALSE_WORDS:
                raise SettingError(f"{_named(where, value)}: expected on ({', '.join(TRUE_WORDS)}) or off "
                                   f"({', '.join(FALSE_WORDS)})")
    number("--vcsim-timeout")
    number("--check-timeout")
    number("--driver-timeout")
    number("--seed", integer=True)
    number("--eff-max-calls", integer=True, minimum=1)
    backend, where = given("--vcsim-backend")
    if backend not in BACKENDS:
        raise SettingError(f"{_named(where, str(backend))}: expected one of {', '.join(BACKENDS)}")
    driver, where = given("--driver")
    command, command_where = given("--driver-command")
    if command is not None:
        if get(_BY_FLAG["--driver"])[1] is not None:
            raise SettingError(f"{command_where} and {where}: give the driver as a class or as a command, not both")
        try:
            split_command(command, command_where)
        except DriverLoadError as e:
            raise SettingError(str(e)) from None
    elif load_driver and get(_BY_FLAG["--driver"])[1] is not None:
        try:
            load_driver_class(str(driver))
        except DriverLoadError as e:
            raise SettingError(str(e)) from None
    for flag in ("--topology", "--heterogeneous-topology"):
        path, where = given(flag)
        if not path or get(_BY_FLAG[flag])[1] is None:
            continue  # the defaults are tested files
        if flag == "--heterogeneous-topology" and not Path(path).exists():
            continue  # its checks skip, saying why (and a certification refuses that skip)
        try:
            load_topology(path)
        except TopologyError as e:
            raise SettingError(f"{where}: {e}" if path not in str(e) else str(e)) from None
    unknown = sorted({r.upper() for r in requirements or []} - REQUIREMENTS.keys())
    if unknown:
        raise SettingError(f"--requirement {', '.join(unknown)}: no such requirement "
                           f"(known: {', '.join(REQUIREMENTS)})")
    ca_file, where = given("--vcenter-ca-file")
    if ca_file:
        if not Path(ca_file).is_file():
            raise SettingError(f"{where} {ca_file}: no such file")
        try:
            ssl.create_default_context(cafile=ca_file)
        except (ssl.SSLError, OSError, ValueError) as e:
            # OpenSSL names the problem in .reason, or only in the text ("[X509] PEM lib (_ssl.c:4154)").
            detail = getattr(e, "reason", None) or str(e.args[-1] if e.args else e).split(" (_ssl.c")[0]
            raise SettingError(f"{where} {ca_file}: not a PEM CA bundle ({detail})") from None
    url, where = given("--vcenter-url")
    if url:
        from urllib.parse import urlsplit

        u = urlsplit(url)
        try:
            port_ok = u.port is None or 0 < u.port < 65536
        except ValueError:
            port_ok = False
        if u.scheme != "https" or not u.hostname or not port_ok:
            raise SettingError(f"{_named(where, url)}: expected https://host[:port]/sdk")
        if not given("--vcenter-username")[0]:
            raise SettingError("--vcenter-url needs --vcenter-username (the user to log in as)")
        password_env = given("--vcenter-password-env")[0] or "VCCONFORM_VCENTER_PASSWORD"
        if env.get(password_env) is None:
            raise SettingError(f"--vcenter-url needs the password in ${password_env}, which is not set "
                               "(or name another variable with --vcenter-password-env)")
        inventory, where = given("--vcenter-inventory")
        if not inventory:
            raise SettingError("--vcenter-url needs --vcenter-inventory: a YAML file with 'clusters' (inventory "
                               "paths the driver manages) and optionally 'scratch_datacenter'")
        try:
            described = yaml.safe_load(Path(inventory).read_text())
            ok = isinstance(described, dict) and isinstance(described.get("clusters"), list)
        except (OSError, yaml.YAMLError) as e:
            raise SettingError(f"{where} {inventory}: {getattr(e, 'strerror', None) or 'not YAML'}") from None
        if not ok:
            raise SettingError(f"{where} {inventory}: expected a YAML mapping with a 'clusters' list")


def refuse_empty_command(command: str | None) -> None:
    """An empty --driver-command given on purpose is refused (an empty value elsewhere means "not given", which
    here would quietly test the default driver instead)."""
    if command is not None and not command.strip():
        raise SettingError(f"--driver-command {command!r}: expected a program and its arguments")


#: pytest's selection and early-stop options, which a certification refuses: (option dest, how it is spelt).
_SELECTIONS = (("keyword", "-k"), ("markexpr", "-m"), ("deselect", "--deselect"), ("lf", "--lf"),
               ("failedfirst", "--ff"), ("maxfail", "-x/--maxfail"), ("stepwise", "--sw"),
               ("stepwise_skip", "--sw-skip"), ("ignore", "--ignore"), ("ignore_glob", "--ignore-glob"),
               ("vcconform_requirement", "--requirement"))


_STOPS_EARLY = ("-x", "--exitfirst", "--maxfail", "-x/--maxfail", "--sw", "--stepwise", "--sw-skip", "--stepwise-skip")


def refuse_selection(spelt: str) -> str:
    does = "would stop early" if spelt in _STOPS_EARLY else "would leave checks out"
    return f"--certify runs every check of the catalogue: {spelt} {does} (drop it, or run without --certify)"


def certify_refusal(config: pytest.Config) -> str | None:
    """Why a certification cannot run with these arguments (it must run every check), or None."""
    for dest, spelt in _SELECTIONS:
        if getattr(config.option, dest, None):
            return refuse_selection(spelt)
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        for arg in config.args:
            whole = (arg == CHECKS_PACKAGE and config.option.pyargs) or Path(arg).resolve() == CHECKS_DIR
            if not whole:
                return refuse_selection(repr(arg))
    return None


# -- the catalogue -------------------------------------------------------------------------------------------

def catalogue() -> dict[str, tuple[tuple[str, ...], int]]:
    """Every check of the suite: its key (``test_nodes.py::test_name``) -> (requirement ids, number of items,
    one per parameter set)."""
    from conformance.cli import check_ids

    rids: dict[str, list[str]] = {}
    for rid, checks in check_ids().items():
        for key in checks:
            rids.setdefault(key, []).append(rid)
    out = {}
    for key, ids in rids.items():
        module, _, name = key.partition("::")
        fn = getattr(importlib.import_module(f"{CHECKS_PACKAGE}.{module.removesuffix('.py')}"), name)
        count = 1
        for mark in getattr(fn, "pytestmark", []):
            values = mark.args[1] if mark.name == "parametrize" and len(mark.args) > 1 else None
            if isinstance(values, list | tuple):
                count *= max(len(values), 1)
        out[key] = (tuple(ids), count)
    return out


def load_driver(config: pytest.Config) -> type[ComputeDriver]:
    """The driver class under test: --driver-command's proxy (after its handshake), else --driver's class.
    Raises DriverLoadError (a bad input) or DriverProcessError (the process broke the protocol)."""
    command = setting(config, "--driver-command")
    if command:
        check_timeout = float(setting(config, "--check-timeout") or 300)
        timeout = min(float(setting(config, "--driver-timeout") or 60), check_timeout / 2)
        directory = setting(config, "--report-dir")
        return command_driver_class(command, request_timeout=timeout, log_dir=Path(directory) if directory else None)
    return load_driver_class(setting(config, "--driver") or REFERENCE_DRIVER)


def driver_description(cls: type[ComputeDriver]) -> dict[str, Any]:
    """What the report says of the driver under test."""
    describe = getattr(cls, "report_description", None)
    if callable(describe):
        return dict(describe())
    return {"class": f"{cls.__module__}:{cls.__qualname__}", "version": str(getattr(cls, "version", "unknown")),
            "capabilities": dict(getattr(cls, "capabilities", {}) or {})}


def requirement_ids(item: pytest.Item) -> tuple[str, ...]:
    return tuple(m.args[0] for m in item.iter_markers("requirement"))


class RunStopped(Exception):
    """The run cannot go on (a bad input found late, a simulator that would not start): the reason, one line."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an orderly stop: fixtures torn down, the fake vCenter stopped, INCOMPLETE written."""


class _Session:
    """The run's hooks and state: which items are checks, their outcomes, and what the report needs."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.worker = hasattr(config, "workerinput")
        self.session: pytest.Session | None = None
        self.requirements: dict[str, tuple[str, ...]] = {}  # nodeid -> requirement ids (this process)
        self.collected: dict[str, set[str]] = {}  # check key -> node ids, before any deselection
        self.results: dict[str, CheckResult] = {}
        self.driver_class: type[ComputeDriver] | None = None
        self.environment: dict[str, Any] = {}  # filled by the vcenter fixture (in xdist: from the workers)
        self.report: dict[str, Any] | None = None
        self.certify = switch(config, "--certify")
        self.profile = setting(config, "--profile") or "standard"
        if self.profile not in PROFILES:
            raise pytest.UsageError(f"--profile {self.profile!r}: expected one of {', '.join(PROFILES)}")
        self.check_timeout = float(setting(config, "--check-timeout") or 300)
        self.report_dir = setting(config, "--report-dir")
        self.fatal: RunEnd | None = None  # the run ends: a dead simulator, a late bad input
        self.fatal_reported = False
        self.interrupted: str | None = None
        self.crashed: str | None = None
        self.collect_errors: list[str] = []
        self.watchdog: Watchdog | None = None
        self.deadline = 0.0
        self.previous_sigterm: Any = None
        self._catalogue: dict[str, tuple[tuple[str, ...], int]] | None = None
        seed = setting(config, "--seed")
        if not seed:
            # xdist workers inherit the controller's seed through the environment.
            seed = os.environ.setdefault("VCCONFORM_SEED", str(random.randrange(2**32)))
        self.seed = int(seed)

    # -- collection ----------------------------------------------------------------------------------------

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session

    @pytest.hookimpl(tryfirst=True)  # before -k, -m and --deselect: the catalogue is what was collected
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        wanted = {r.upper() for r in config.getoption("vcconform_requirement")}
        keep, drop = [], []
        for item in items:
            ids = requirement_ids(item)
            for rid in ids:
                if rid not in REQUIREMENTS:
                    raise pytest.UsageError(f"{item.nodeid}: unknown requirement id {rid!r}")
            for m in item.iter_markers("capability"):
                if m.args[0] not in CAPABILITIES:
                    raise pytest.UsageError(f"{item.nodeid}: unknown capability {m.args[0]!r}")
            for m in item.iter_markers("covers"):
                for row in m.args:
                    if row not in ROWS:
                        raise pytest.UsageError(f"{item.nodeid}: covers unknown row {row!r} (conformance/coverage.py)")
            if ids:
                self.collected.setdefault(check_key(item.nodeid), set()).add(item.nodeid)
            if ids and wanted and not wanted.intersection(ids):
                drop.append(item)
                continue
            if ids:
                self.requirements[item.nodeid] = ids
                item.user_properties.append(("requirements", ",".join(ids)))
            keep.append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
        if self.requirements:
            try:
                self.driver_class = load_driver(config)
            except DriverLoadError as e:
                raise pytest.UsageError(str(e)) from None
            except DriverProcessError as e:
                # The driver process broke the protocol at its handshake: no check can talk to it.
                failures = take_failures()
                self.fatal = RunEnd("driver", f"{e} (at the handshake, before any check)",
                                    failures[0].stderr_tail if failures else "")
                config.hook.pytest_deselected(items=list(items))
                items[:] = []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            lines = str(report.longrepr or "").strip().splitlines()
            self.collect_errors.append(f"{report.nodeid or 'collection'}: {mask(lines[-1]) if lines else 'failed'}")

    # -- running a check: the watchdog, liveness, gating ----------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object,
                                                                                                     object]:
        if item.nodeid in self.requirements:
            if self.watchdog is None:
                self.watchdog = Watchdog(self._infrastructure_died)
                if not self.watchdog.start():
                    self.watchdog = None
            if self.watchdog is not None:
                self.watchdog.begin(item.nodeid)
            self.deadline = time.monotonic() + self.check_timeout
        try:
            return (yield)
        finally:
            if self.watchdog is not None:
                self.watchdog.disarm()

    def _arm(self, item: pytest.Item, phase: str) -> None:
        if self.watchdog is None or item.nodeid not in self.requirements:
            return
        grace = min(self.check_timeout, 30.0)
        deadline = self.deadline if phase != "teardown" else max(self.deadline, time.monotonic() + grace)
        self.watchdog.arm(deadline, self.check_timeout, grace)

    def _disarm(self) -> None:
        if self.watchdog is not None:
            self.watchdog.disarm()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        self._arm(item, "setup")
        try:
            if item.nodeid in self.requirements:
                self._check_infrastructure(f"before {item.nodeid}")
            return (yield)
        finally:
            self._disarm()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        self._arm(item, "call")
        try:
            return (yield)
        finally:
            self._disarm()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None,
                                                                                                     None]:
        self._arm(item, "teardown")
        try:
            return (yield)
        finally:
            self._disarm()

    # pytest registers only methods named pytest_*: the specname alone is not enough. tryfirst: a check that
    # will not run builds no driver.
    @pytest.hookimpl(specname="pytest_runtest_setup", tryfirst=True)
    def pytest_runtest_setup_capabilities(self, item: pytest.Item) -> None:
        """Optional checks run only for drivers that declare the capability they need."""
        declared = getattr(self.driver_class, "capabilities", {}) or {}
        for m in item.iter_markers("capability"):
            if not declared.get(m.args[0]):
                pytest.skip(f"optional: the driver does not declare capability {m.args[0]!r} "
                            f"({CAPABILITIES[m.args[0]]})")

    def _infrastructure_died(self, dead: str, endpoint: Endpoint, label: str) -> None:
        """A simulator died or stopped (the watchdog's thread, or a probe): the run ends, saying so."""
        if self.fatal is None:
            where = label if label.startswith("before ") else f"during {label}"
            self.fatal = RunEnd("infrastructure", f"{dead} {where}", endpoint.log_tail())

    def _check_infrastructure(self, label: str) -> None:
        """Raise InfrastructureError if a simulator of this run is dead, stopped or no longer answers."""
        if self.fatal is not None and self.fatal.kind == "infrastructure":
            raise InfrastructureError(self.fatal.reason)
        for endpoint in running_endpoints():
            dead = endpoint.probe()
            if dead is not None:
                self._infrastructure_died(dead, endpoint, label)
                endpoint.kill()
                raise InfrastructureError(self.fatal.reason if self.fatal else dead)

    # -- reports ---------------------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if item.nodeid not in self.requirements:
            return report
        excinfo = call.excinfo
        failures = take_failures()
        if failures and self.fatal is None:
            # A driver process broke the protocol (in this phase, or in a thread of this check): the suite can
            # no longer talk to the driver, so the run ends here, saying so (verdict ERROR).
            self.fatal = RunEnd("driver", failures[0].during(item.nodeid), failures[0].stderr_tail)
            report.outcome = "failed"
        if excinfo is not None and isinstance(excinfo.value, CheckTimeout | DriverHung | InfrastructureError |
                                              DriverProcessError):
            # The message says where it hung; a traceback through the signal handler would say less.
            report.user_properties.append((ERROR_KEY, str(excinfo.value)))
            report.longrepr = f"{type(excinfo.value).__name__}: {excinfo.value}"
        if report.failed and self.fatal is None and call.when == "call":
            for endpoint in running_endpoints():  # did the check fail because the simulator died?
                dead = endpoint.probe()
                if dead is not None:
                    self._infrastructure_died(dead, endpoint, item.nodeid)
                    endpoint.kill()
                    break
        if self.fatal is not None and report.failed and not self.fatal_reported:
            self.fatal_reported = True
            report.user_properties.append((FATAL_KEY, json.dumps(asdict(self.fatal))))
            tail = f"\n{log_tail_title(self.fatal)}:\n{self.fatal.log_tail}" if self.fatal.log_tail else ""
            report.longrepr = self.fatal.reason + tail  # one line (and the log), not 2,000 lines of fallout
            item.session.shouldstop = self.fatal.reason
        self._leaks(item, report)
        evidence = item.stash.get(EVIDENCE, None)
        if evidence:
            report.user_properties.append((EVIDENCE_KEY, json.dumps(evidence)))
        if self.environment and report.when == "setup":
            report.user_properties.append((ENV_KEY, json.dumps(self.environment)))
        if self.certify and report.skipped and report.when in ("setup", "call"):
            mandatory = [r for r in requirement_ids(item) if level_in(REQUIREMENTS[r], self.profile) == MANDATORY]
            if mandatory:
                report.outcome = "failed"
                report.user_properties.append((CERTIFY_KEY, "1"))
                report.longrepr = (f"certify: mandatory {', '.join(mandatory)} may not be skipped "
                                   f"(it would have skipped: {_message_of_skip(report)})")
        _scrub_report(report)
        return report

    @staticmethod
    def _leaks(item: pytest.Item, report: pytest.TestReport) -> None:
        """What the credential scan found (conformance/credentials.py), with what the check printed, travels
        with the check's teardown report (before masking hides it)."""
        printed = "\n".join(text for name, text in report.sections if name.startswith("Captured std"))
        found: list[str] = item.stash.get(LEAKS, [])
        leaks = list(found)
        if printed and credentials.find(printed):
            leaks.append(f"what the check printed ({report.when})")
        if leaks and report.when == "teardown":
            report.user_properties.append((LEAKS_KEY, json.dumps(leaks)))
        elif leaks:
            item.stash[LEAKS] = leaks

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        _scrub_report(report)  # xdist's crash reports are made here, in the controller
        props = dict(report.user_properties)
        # Under xdist the controller collects nothing: the ids travel with the report, or come from the
        # catalogue (a crash report carries nothing).
        rids = self.requirements.get(report.nodeid) or tuple(str(props.get("requirements", "")).split(",") if
                                                             props.get("requirements") else ())
        if not rids and report.when not in ("setup", "call", "teardown"):
            rids = self.expected().get(check_key(report.nodeid), ((), 0))[0]
        if not rids:
            return
        if ENV_KEY in props and not self.environment:
            self.environment = json.loads(str(props[ENV_KEY]))
        if FATAL_KEY in props and self.fatal is None:
            self.fatal = RunEnd(**json.loads(str(props[FATAL_KEY])))
        if LEAKS_KEY in props:
            # A leak is SEC-03's failure, whatever the check was for: a result of its own, not the check's.
            scan, leaks = report.nodeid + "::credential-scan", "; ".join(json.loads(str(props[LEAKS_KEY])))
            self.results[scan] = CheckResult(scan, ("SEC-03",), "failed",
                                             f"SEC-03: during {report.nodeid} a password appears in {leaks}")
            if report.when == "teardown" and report.failed and not props.get(ERROR_KEY):
                return  # the teardown failed for the leak alone: the check itself stands as it was
        current = self.results.get(report.nodeid)
        if current is None:
            current = self.results[report.nodeid] = CheckResult(report.nodeid, rids, "error",
                                                                "started, but never reported its end")
        error = str(props[ERROR_KEY]) if ERROR_KEY in props else None
        if report.when == "setup":
            if report.passed:  # until the call reports, the check has not passed
                current.outcome, current.message = "error", "set up, but the run ended before its call reported"
            elif report.skipped:
                current.outcome, current.message = "skipped", _message(report)
            else:
                refused = CERTIFY_KEY in props  # a refused skip is the check's failure, not a broken check
                current.outcome, current.message = ("failed" if refused else "error"), error or _message(report)
        elif report.when == "call":
            current.duration_s = report.duration
            if report.failed:
                current.outcome, current.message = ("error" if error else "failed"), error or _message(report)
            else:
                current.outcome, current.message = report.outcome, "" if report.passed else _message(report)
        elif report.when == "teardown":
            if report.failed:
                text = "teardown: " + (error or _message(report))
                if current.outcome in ("passed", "skipped"):
                    current.outcome, current.message = "error", text
                else:
                    current.message = f"{current.message}; {text}" if current.message else text
        else:  # "???": xdist lost the process that ran the check
            current.outcome = "error"
            current.message = (f"{_message(report)}: the check ended the process that ran it "
                               "(killed or crashed it)")
        if FATAL_KEY in props and self.fatal is not None:
            current.outcome, current.message = "error", self.fatal.reason
        if EVIDENCE_KEY in props:
            current.evidence = json.loads(str(props[EVIDENCE_KEY]))

    # -- how the run ended ----------------------------------------------------------------------------------

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        e = excinfo.value
        if isinstance(e, Terminated):
            self.interrupted = "stopped by SIGTERM"
        elif isinstance(e, pytest.exit.Exception):
            self.interrupted = f"stopped: {e.msg}"
        elif type(e) is KeyboardInterrupt:
            self.interrupted = "interrupted (Ctrl-C)"
        else:  # pytest's Interrupted: a reason of its own (a failed collection, too many crashed workers...)
            self.interrupted = f"interrupted: {e}"

    def pytest_internalerror(self, excrepr: Any, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        lines = str(excrepr).strip().splitlines()
        self.crashed = mask(lines[-1] if lines else type(excinfo.value).__name__)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist: a worker is done; take its catalogue (what it collected before deselection)."""
        output = getattr(node, "workeroutput", None) or {}
        for key, ids in output.get("vcconform_collected", {}).items():
            self.collected.setdefault(key, set()).update(ids)
        if output.get("vcconform_fatal") and self.fatal is None:
            self.fatal = RunEnd(**output["vcconform_fatal"])

    def expected(self) -> dict[str, tuple[tuple[str, ...], int]]:
        """The catalogue, with each check's item count raised to what was collected (fixture parameters)."""
        if self._catalogue is None:
            self._catalogue = catalogue()
        out = dict(self._catalogue)
        for key, ids in self.collected.items():
            if key in out:
                out[key] = (out[key][0], max(out[key][1], len(ids)))
        return out

    def ended(self, session: pytest.Session) -> RunEnd | None:
        if self.fatal is not None:
            return self.fatal
        if self.crashed is not None or session.exitstatus == pytest.ExitCode.INTERNAL_ERROR:
            return RunEnd("crash", f"the suite crashed: {self.crashed or 'internal error'}")
        if session.exitstatus == pytest.ExitCode.USAGE_ERROR:  # pytest refused something during collection
            return RunEnd("usage", "did not start: pytest refused the arguments (see its output)")
        if self.collect_errors:
            return RunEnd("crash", f"the suite could not collect its checks: {self.collect_errors[0]}")
        if self.interrupted is not None or session.exitstatus == pytest.ExitCode.INTERRUPTED:
            return RunEnd("interrupted", self.interrupted or "interrupted")
        if not self.results:
            return RunEnd("empty", "no check ran (all deselected, or none collected)")
        return None

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.worker:  # an xdist worker: the controller writes the report
            output: dict[str, Any] = getattr(self.config, "workeroutput", {})
            output["vcconform_collected"] = {k: sorted(v) for k, v in self.collected.items()}
            output["vcconform_fatal"] = asdict(self.fatal) if self.fatal else None
            return
        if session.config.option.collectonly or not (self.results or self.report_dir or self.collected):
            return
        cls = self.driver_class
        if cls is None and (self.fatal is None or self.fatal.kind != "driver"):
            with contextlib.suppress(DriverLoadError, DriverProcessError):
                cls = load_driver(session.config)
            take_failures()  # a handshake that failed here says nothing the run has not said
        driver = driver_description(cls) if cls else {}
        self.report = build_report(self.results.values(), versions=self.versions(), driver=driver,
                                   environment=self.environment, reproduce=self.reproduce(),
                                   expected=self.expected(), certify=self.certify, ended=self.ended(session),
                                   profile=self.profile)
        if self.report_dir:
            write_json(self.report, Path(self.report_dir))
            write_html(self.report, Path(self.report_dir))
        session.exitstatus = self.report["exit_code"]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.report is None:
            return
        terminalreporter.write_sep("=", "vcconform certification summary")
        for line in summary_lines(self.report):
            terminalreporter.write_line(line)

    def versions(self) -> dict[str, str]:
        v = {"suite": importlib.metadata.version("vcconform"), "python": platform.python_version(),
             "pyvmomi": importlib.metadata.version("pyvmomi")}
        v.update({f"simulator.{k}": str(val) for k, val in self.environment.get("versions", {}).items()})
        return v

    def reproduce(self) -> dict[str, Any]:
        """What a certification engineer needs to run this again and get the same checks."""
        args = [a for a in self.config.invocation_params.args if "password" not in a.lower()]
        return {"seed": self.seed, "certify": self.certify, "profile": self.profile, "arguments": args,
                "topologies": self.environment.get("topologies", {})}

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.close()
            self.watchdog = None


class _JUnitMasker:
    """Masks the JUnit file once pytest's junitxml plugin has written it (its strings were masked in the
    reports already; this catches what other plugins add)."""

    def __init__(self, path: str) -> None:
        self.path = Path(os.path.normpath(os.path.abspath(os.path.expanduser(os.path.expandvars(path)))))

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_sessionfinish(self) -> Generator[None, None, None]:
        try:
            return (yield)
        finally:
            if secrets_known() and self.path.is_file():
                _mask_xml(self.path)


def _mask_xml(path: Path) -> None:
    """Mask the text and attribute values of an XML file, element by element (never the markup)."""
    try:
        tree = ET.parse(path)
    except ET.ParseError:
        return
    for el in tree.iter():
        el.text = mask(el.text) if el.text else el.text
        el.tail = mask(el.tail) if el.tail else el.tail
        for k, v in el.attrib.items():
            el.attrib[k] = mask(v)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)


def _scrub_report(report: pytest.TestReport) -> None:
    """Mask the texts of a report (failure, captured output, properties) before anything writes them."""
    if secrets_known():
        report.longrepr = scrub(report.longrepr)
        report.sections = scrub(report.sections)
        report.user_properties = scrub(report.user_properties)


EVIDENCE = pytest.StashKey[dict[str, Any]]()
LEAKS = pytest.StashKey[list[str]]()  # where the credential scan found a password (conformance/credentials.py)
_KEY = pytest.StashKey[_Session]()


def state(config: pytest.Config) -> _Session:
    return config.stash[_KEY]


def stop_run(config: pytest.Config, kind: str, reason: str) -> NoReturn:
    """End the run after the current check (a bad input found late, a simulator that did not start): the
    check errors with ``reason``, no further check starts, and the verdict says so (not the driver's fault)."""
    s = state(config)
    if s.fatal is None:
        s.fatal = RunEnd(kind, reason)
    if s.session is not None:
        s.session.shouldstop = reason
    raise RunStopped(reason)


def _marker(certify: bool, end: RunEnd) -> dict[str, Any]:
    return build_report([], versions={"suite": importlib.metadata.version("vcconform")}, driver={},
                        environment={}, certify=certify, ended=end)


def start_report(report_dir: str | None, junit: str | None, certify: bool) -> None:
    """Clear the report dir (and the JUnit file) of any earlier run's files, leaving an INCOMPLETE marker
    until the report is written. Raises ReportDirError (one line) when the dir cannot be used."""
    junit_path = Path(os.path.abspath(os.path.expanduser(junit))) if junit else None
    if report_dir:
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        prepare_report_dir(Path(report_dir), junit_path, marker=_marker(certify, RunEnd(
            "interrupted", f"the run started at {started} is under way, or ended without writing its report "
            "(was it killed?)")))
    elif junit_path is not None:
        junit_path.unlink(missing_ok=True)


def did_not_start(report_dir: str | None, certify: bool, message: str) -> None:
    """Say in the report dir that the run did not start, and why (a bad input)."""
    if report_dir:
        report = _marker(certify, RunEnd("usage", f"did not start: {message}"))
        with contextlib.suppress(OSError):
            write_json(report, Path(report_dir))
            write_html(report, Path(report_dir))


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one orderly stop; a second SIGTERM must not cut it short
    raise Terminated("SIGTERM")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(id): the requirement (e.g. NODE-01) a check verifies")
    config.addinivalue_line("markers", "capability(name): an optional check for drivers declaring it")
    config.addinivalue_line("markers", "covers(*rows): the coverage rows (conformance/coverage.py) a check exercises")
    config.addinivalue_line("markers", "resets: the fake vCenter is reset to its topology after this check")
    config.addinivalue_line("markers", "needs_control: the check drives the fake vCenter's control API")
    get = lookup(config)
    # The controller (not an xdist worker, whose controller did all this) owns the report dir and the
    # checks of the settings; a --collect-only run writes no report.
    controller = not hasattr(config, "workerinput") and not config.option.collectonly
    report_dir = get(_BY_FLAG["--report-dir"])[0]
    certify = switch(config, "--certify")
    if controller:
        try:
            start_report(report_dir, getattr(config.option, "xmlpath", None), certify)
        except ReportDirError as e:
            raise pytest.UsageError(f"vcconform: {e}") from None
        try:
            refuse_empty_command(config.getoption(_BY_FLAG["--driver-command"].key))
            check_settings(get, requirements=config.getoption("vcconform_requirement"))
            refusal = certify_refusal(config) if certify else None
        except SettingError as e:
            refusal = str(e)
        if refusal:
            did_not_start(report_dir, certify, refusal)
            raise pytest.UsageError(f"vcconform: {refusal}")
    s = _Session(config)
    url = setting(config, "--vcenter-url")
    if url:
        add_secret(os.environ.get(setting(config, "--vcenter-password-env") or "VCCONFORM_VCENTER_PASSWORD"))
    config.stash[_KEY] = s
    config.pluginmanager.register(s, "vcconform-session")
    junit = getattr(config.option, "xmlpath", None)
    if junit and controller:
        config.pluginmanager.register(_JUnitMasker(junit), "vcconform-junit-masker")
    if report_dir and controller and threading.current_thread() is threading.main_thread():
        s.previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
    config.pluginmanager.import_plugin("conformance.fixtures")
    from conformance import fixtures

    fixtures.CONSTRUCT_TIMEOUT_S = min(60.0, s.check_timeout / 2)


def pytest_unconfigure(config: pytest.Config) -> None:
    s = config.stash.get(_KEY, None)
    if s is None:
        return
    s.close()
    previous = s.previous_sigterm
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


def _message_of_skip(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


def _message(report: pytest.TestReport) -> str:
    """One line (or a few) saying why a check did not pass."""
    if report.skipped:
        return _message_of_skip(report)
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:  # the check's own words, without pytest's re-evaluation of the assert
        return str(crash.message).split("\nassert ")[0]
    lines = str(report.longrepr or "").strip().splitlines()
    return lines[-1] if lines else ""
