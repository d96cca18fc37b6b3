"""The vcconform pytest plugin (entry point ``pytest11``): options, check selection, gating, and the report.

Every option exists three times, with one precedence: command line, then environment, then ini key, then
the default. The plugin is inert in a run that collects no checks (no fake vCenter, no report). The
fixtures the checks use live in conformance/fixtures.py.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import random
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conformance import credentials
from conformance.budgets import CALLS_PER_REFRESH
from conformance.contract import CAPABILITIES, ComputeDriver
from conformance.coverage import ROWS
from conformance.drivers import REFERENCE_DRIVER, DriverLoadError, load_driver_class
from conformance.harness import BACKENDS, REPO
from conformance.report import CheckResult, build_report, summary_lines, write_html, write_json
from conformance.requirements import MANDATORY, PROFILES, REQUIREMENTS, level_in

DEFAULT_TOPOLOGY = str(REPO / "fixtures" / "topologies" / "standard.yaml")
HETEROGENEOUS_TOPOLOGY = str(REPO / "fixtures" / "topologies" / "heterogeneous.yaml")
ENV_KEY = "vcconform_env"
EVIDENCE_KEY = "vcconform_evidence"
CERTIFY_KEY = "vcconform_certify_refused"
LEAKS_KEY = "vcconform_credential_leaks"


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
    Option("--vcsim-backend", "process", "run the fake vCenter as a local 'process' or a 'container'"),
    Option("--topology", DEFAULT_TOPOLOGY, "topology file the fake vCenter starts with"),
    Option("--heterogeneous-topology", HETEROGENEOUS_TOPOLOGY,
           "second topology (hosts of many sizes and states) for the resource checks"),
    Option("--report-dir", None, "write report.json and report.html here (JUnit XML: pytest's --junitxml)"),
    Option("--vcsim-timeout", "30", "seconds to wait for the fake vCenter to be ready"),
    Option("--seed", None, "random seed for names and uuids the checks make (default: a new one, recorded)"),
    Option("--eff-max-calls", str(CALLS_PER_REFRESH),
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
    Option("--certify", None, "certification run: no mandatory check may skip; record what reproduces it",
           flag_only=True),
]


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
                    help="record the fake vCenter's SOAP traffic (kept in the report dir)")


def setting(config: pytest.Config, flag: str) -> str | None:
    """An option's value: command line, then environment, then ini, then default."""
    o = next(o for o in OPTIONS if o.flag == flag)
    for value in (config.getoption(o.key), os.environ.get(o.env), config.getini(o.key)):
        if value:
            return str(value)
    return o.default


def switch(config: pytest.Config, flag: str) -> bool:
    return (setting(config, flag) or "").lower() in ("1", "true", "yes", "on")


def requirement_ids(item: pytest.Item) -> tuple[str, ...]:
    return tuple(m.args[0] for m in item.iter_markers("requirement"))


class _Session:
    """The run's hooks and state: which items are checks, their outcomes, and what the report needs."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.requirements: dict[str, tuple[str, ...]] = {}  # nodeid -> requirement ids
        self.results: dict[str, CheckResult] = {}
        self.driver_class: type[ComputeDriver] | None = None
        self.environment: dict[str, Any] = {}  # filled by the vcenter fixture (in xdist: from the workers)
        self.report: dict[str, Any] | None = None
        self.certify = switch(config, "--certify")
        self.profile = setting(config, "--profile") or "standard"
        if self.profile not in PROFILES:
            raise pytest.UsageError(f"--profile {self.profile!r}: expected one of {', '.join(PROFILES)}")
        seed = setting(config, "--seed")
        if not seed:
            # xdist workers inherit the controller's seed through the environment.
            seed = os.environ.setdefault("VCCONFORM_SEED", str(random.randrange(2**32)))
        self.seed = int(seed)

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        wanted = {r.upper() for r in config.getoption("vcconform_requirement")}
        unknown = wanted - REQUIREMENTS.keys()
        if unknown:
            raise pytest.UsageError(f"--requirement {', '.join(sorted(unknown))}: no such requirement "
                                    f"(known: {', '.join(REQUIREMENTS)})")
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
                self.driver_class = load_driver_class(setting(config, "--driver") or REFERENCE_DRIVER)
            except DriverLoadError as e:
                raise pytest.UsageError(str(e)) from None
            backend = setting(config, "--vcsim-backend")
            if backend not in BACKENDS:
                raise pytest.UsageError(f"--vcsim-backend {backend!r}: expected one of {', '.join(BACKENDS)}")

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Optional checks run only for drivers that declare the capability they need."""
        declared = getattr(self.driver_class, "capabilities", {}) or {}
        for m in item.iter_markers("capability"):
            if not declared.get(m.args[0]):
                pytest.skip(f"optional: the driver does not declare capability {m.args[0]!r} "
                            f"({CAPABILITIES[m.args[0]]})")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if item.nodeid not in self.requirements:
            return report
        printed = "\n".join(text for name, text in report.sections if name.startswith("Captured std"))
        found: list[str] = item.stash.get(LEAKS, [])
        leaks = list(found)
        if printed and credentials.find(printed):
            leaks.append(f"what the check printed ({report.when})")
        _redact(report)
        if leaks and report.when == "teardown":
            report.user_properties.append((LEAKS_KEY, json.dumps(leaks)))
        elif leaks:
            item.stash[LEAKS] = leaks  # reported with the teardown
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
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        # Under xdist the controller collects nothing: the ids travel with the report.
        rids = self.requirements.get(report.nodeid) or tuple(str(props.get("requirements", "")).split(",") if
                                                             props.get("requirements") else ())
        if not rids:
            return
        if ENV_KEY in props and not self.environment:
            self.environment = json.loads(str(props[ENV_KEY]))
        current = self.results.get(report.nodeid)
        if LEAKS_KEY in props:
            # A leak is SEC-03's failure, whatever the check was for: a result of its own, not the check's.
            leaks = json.loads(str(props[LEAKS_KEY]))
            self.results[report.nodeid + "::credential-scan"] = CheckResult(
                report.nodeid + "::credential-scan", ("SEC-03",), "failed",
                f"SEC-03: during {report.nodeid} a password appears in {'; '.join(leaks)}")
            if report.when == "teardown":
                return
        if report.when == "setup":
            refused = CERTIFY_KEY in props  # a refused skip is the check's failure, not a broken check
            outcome = "error" if report.failed and not refused else report.outcome
            current = self.results[report.nodeid] = CheckResult(
                report.nodeid, rids, outcome, _message(report) if outcome != "passed" else "")
        elif report.when == "call" and current is not None:
            current.outcome = report.outcome
            current.message = _message(report) if not report.passed else ""
            current.duration_s = report.duration
        elif report.when == "teardown" and report.failed and current is not None and current.outcome == "passed":
            current.outcome, current.message = "error", "teardown: " + _message(report)
        if current is not None and EVIDENCE_KEY in props:
            current.evidence = json.loads(str(props[EVIDENCE_KEY]))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.results or session.config.option.collectonly:
            return
        if hasattr(session.config, "workerinput"):
            return  # an xdist worker: the controller writes the report
        cls = self.driver_class or load_driver_class(setting(session.config, "--driver") or REFERENCE_DRIVER)
        driver = ({"class": f"{cls.__module__}:{cls.__qualname__}",
                   "version": str(getattr(cls, "version", "unknown")),
                   "capabilities": dict(getattr(cls, "capabilities", {}) or {})} if cls else {})
        self.report = build_report(self.results.values(), versions=self.versions(), driver=driver,
                                   environment=self.environment, reproduce=self.reproduce(), profile=self.profile)
        directory = setting(session.config, "--report-dir")
        if directory:
            write_json(self.report, Path(directory))
            write_html(self.report, Path(directory))
        if self.report["verdict"] != "CONFORMANT" and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

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


EVIDENCE = pytest.StashKey[dict[str, Any]]()
LEAKS = pytest.StashKey[list[str]]()  # where the credential scan found a password (conformance/credentials.py)
_KEY = pytest.StashKey[_Session]()


def state(config: pytest.Config) -> _Session:
    return config.stash[_KEY]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(id): the requirement (e.g. NODE-01) a check verifies")
    config.addinivalue_line("markers", "capability(name): an optional check for drivers declaring it")
    config.addinivalue_line("markers", "covers(*rows): the coverage rows (conformance/coverage.py) a check exercises")
    config.addinivalue_line("markers", "resets: the fake vCenter is reset to its topology after this check")
    config.addinivalue_line("markers", "needs_control: the check drives the fake vCenter's control API")
    config.stash[_KEY] = _Session(config)
    config.pluginmanager.register(config.stash[_KEY], "vcconform-session")
    config.pluginmanager.import_plugin("conformance.fixtures")


def _redact(report: pytest.TestReport) -> None:
    """No password reaches the terminal, the JUnit XML or the report, whatever a driver put in a text."""
    text = str(report.longrepr) if report.longrepr is not None else ""
    if text and credentials.find(text):
        report.longrepr = credentials.redact(text)
    if any(credentials.find(body) for _, body in report.sections):
        report.sections = [(name, credentials.redact(body)) for name, body in report.sections]


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
