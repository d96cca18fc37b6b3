"""The vcconform pytest plugin (entry point ``pytest11``): options, fixtures and the certification report.

Fixtures: ``vcenter`` (a running fake vCenter, session-wide), ``oracle`` (an independent view of its
inventory), ``driver_class``, ``make_driver`` / ``driver`` (drivers under test, closed after each check)
and ``cleanup`` (undoes what a check created in vCenter, even when the check fails).

Every option exists three times, with one precedence: command line, then environment, then ini key, then
the default. The plugin is inert in a run that collects no checks (no fake vCenter, no report).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim

from conformance.contract import ComputeDriver, DriverConfig, DriverError
from conformance.drivers import REFERENCE_DRIVER, DriverLoadError, load_driver_class
from conformance.harness import BACKENDS, REPO, Endpoint, SimulatorError, start_simulator
from conformance.oracle import Oracle, OracleError
from conformance.report import NONCONFORMANT, CheckResult, build_report, summary_lines, write_json
from conformance.requirements import REQUIREMENTS
from conformance.topology import Topology, TopologyError, load_topology

DEFAULT_TOPOLOGY = str(REPO / "fixtures" / "topologies" / "standard.yaml")


@dataclass(frozen=True)
class Option:
    flag: str
    default: str | None
    help: str

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
    Option("--report-dir", None, "write report.json here (JUnit XML comes from pytest's --junitxml)"),
    Option("--vcsim-timeout", "30", "seconds to wait for the fake vCenter to be ready"),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vcconform", "vcconform conformance suite")
    for o in OPTIONS:
        text = f"{o.help} (ini {o.key}, env {o.env}; default {o.default})"
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


class _Session:
    """The run's hooks and state: which items are checks, their outcomes, and what the report needs."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.requirements: dict[str, tuple[str, ...]] = {}  # nodeid -> requirement ids
        self.results: dict[str, CheckResult] = {}
        self.endpoint: Endpoint | None = None
        self.driver_class: type[ComputeDriver] | None = None
        self.environment: dict[str, Any] = {}
        self.report: dict[str, Any] | None = None

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        wanted = {r.upper() for r in config.getoption("vcconform_requirement")}
        unknown = wanted - REQUIREMENTS.keys()
        if unknown:
            raise pytest.UsageError(f"--requirement {', '.join(sorted(unknown))}: no such requirement "
                                    f"(known: {', '.join(REQUIREMENTS)})")
        keep, drop = [], []
        for item in items:
            ids = tuple(m.args[0] for m in item.iter_markers("requirement"))
            for rid in ids:
                if rid not in REQUIREMENTS:
                    raise pytest.UsageError(f"{item.nodeid}: unknown requirement id {rid!r}")
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

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rids = self.requirements.get(report.nodeid)
        if rids is None:
            return
        current = self.results.get(report.nodeid)
        if report.when == "setup":
            outcome = "error" if report.failed else "skipped" if report.skipped else "passed"
            self.results[report.nodeid] = CheckResult(report.nodeid, rids, outcome,
                                                      _message(report) if outcome != "passed" else "")
        elif report.when == "call" and current is not None:
            current.outcome = report.outcome
            current.message = _message(report) if not report.passed else ""
            current.duration_s = report.duration
        elif report.when == "teardown" and report.failed and current is not None and current.outcome == "passed":
            current.outcome, current.message = "error", "teardown: " + _message(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.requirements or session.config.option.collectonly:
            return
        cls = self.driver_class
        driver = ({"class": f"{cls.__module__}:{cls.__qualname__}",
                   "version": str(getattr(cls, "version", "unknown")),
                   "capabilities": dict(getattr(cls, "capabilities", {}))} if cls else {})
        self.report = build_report(self.results.values(), versions=self.versions(), driver=driver,
                                   environment=self.environment)
        directory = setting(session.config, "--report-dir")
        if directory:
            write_json(self.report, Path(directory))
        if self.report["verdict"] == NONCONFORMANT and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.report is None:
            return
        terminalreporter.write_sep("=", "vcconform certification summary")
        for line in summary_lines(self.report):
            terminalreporter.write_line(line)

    def versions(self) -> dict[str, str]:
        v = {"suite": importlib.metadata.version("vcconform")}
        if self.endpoint is not None:
            v.update({f"simulator.{k}": val for k, val in self.endpoint.versions.items()})
        return v


_KEY = pytest.StashKey[_Session]()


def _state(config: pytest.Config) -> _Session:
    return config.stash[_KEY]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(id): the requirement (e.g. NODE-01) a check verifies")
    config.stash[_KEY] = _Session(config)
    config.pluginmanager.register(config.stash[_KEY], "vcconform-session")


def _message(report: pytest.TestReport) -> str:
    """One line saying why a check did not pass."""
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:  # the check's own words, without pytest's re-evaluation of the assert
        return str(crash.message).split("\nassert ")[0]
    lines = str(report.longrepr or "").strip().splitlines()
    return lines[-1] if lines else ""


# -- fixtures ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def topology(pytestconfig: pytest.Config) -> Topology:
    """The topology the fake vCenter was started with."""
    try:
        return load_topology(setting(pytestconfig, "--topology") or DEFAULT_TOPOLOGY)
    except TopologyError as e:
        pytest.exit(f"vcconform: {e}", returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def vcenter(pytestconfig: pytest.Config, topology: Topology) -> Iterator[Endpoint]:
    """A fake vCenter loaded with the topology, for the whole run; stopped however the run ends."""
    state = _state(pytestconfig)
    backend = setting(pytestconfig, "--vcsim-backend") or "process"
    started = time.monotonic()
    try:
        endpoint = start_simulator(topology, backend, trace=pytestconfig.getoption("vcconform_vcsim_trace"),
                                   timeout=float(setting(pytestconfig, "--vcsim-timeout") or 30))
    except SimulatorError as e:
        pytest.exit(f"vcconform: {e}", returncode=pytest.ExitCode.INTERNAL_ERROR)
    state.endpoint = endpoint
    state.environment = {"backend": backend, "topology": topology.name, "topology_file": topology.source,
                         "topology_sha256": topology.digest,
                         "simulator_ready_s": round(time.monotonic() - started, 3)}
    try:
        yield endpoint
    finally:
        _keep_trace(pytestconfig, endpoint)
        endpoint.stop()


def _keep_trace(config: pytest.Config, endpoint: Endpoint) -> None:
    directory = setting(config, "--report-dir")
    trace = endpoint.state_dir / "trace.log"
    if directory and trace.exists():
        Path(directory).mkdir(parents=True, exist_ok=True)
        trace.replace(Path(directory) / "simulator-trace.log")


@pytest.fixture(scope="session")
def oracle(vcenter: Endpoint) -> Iterator[Oracle]:
    """An independent session on the fake vCenter: expected values and set-up changes come from here."""
    try:
        o = Oracle(vcenter.host, vcenter.port, vcenter.username, vcenter.password, str(vcenter.ca_file))
    except OracleError as e:
        pytest.exit(f"vcconform: {e}", returncode=pytest.ExitCode.INTERNAL_ERROR)
    yield o
    o.close()


@pytest.fixture(scope="session")
def driver_class(pytestconfig: pytest.Config) -> type[ComputeDriver]:
    cls = _state(pytestconfig).driver_class
    if cls is None:
        cls = load_driver_class(setting(pytestconfig, "--driver") or REFERENCE_DRIVER)
    return cls


@pytest.fixture
def base_config(vcenter: Endpoint, topology: Topology) -> DriverConfig:
    """The configuration a driver gets unless a check says otherwise: every cluster of the topology."""
    return DriverConfig(url=vcenter.url, username=vcenter.username, password=vcenter.password,
                        clusters=tuple(topology.cluster_paths()), ca_file=str(vcenter.ca_file))


@pytest.fixture
def make_driver(driver_class: type[ComputeDriver],
                base_config: DriverConfig) -> Iterator[Callable[..., ComputeDriver]]:
    """Build drivers from ``base_config`` with overrides (``clusters=...``); all are closed afterwards."""
    made: list[ComputeDriver] = []

    def make(**overrides: Any) -> ComputeDriver:
        config = replace(base_config, **overrides)
        try:
            d = driver_class(config)
        except DriverError:
            raise
        except Exception as e:
            pytest.fail(f"the driver's constructor raised {type(e).__name__}: {e}", pytrace=False)
        made.append(d)
        return d

    yield make
    for d in made:
        with contextlib.suppress(Exception):
            d.close()


@pytest.fixture
def driver(make_driver: Callable[..., ComputeDriver]) -> ComputeDriver:
    """A driver managing every cluster of the topology."""
    return make_driver()


class Cleanup:
    """Undo, through the oracle, what a check creates in vCenter: VMs by instance uuid, then clusters."""

    def __init__(self, oracle: Oracle) -> None:
        self.oracle = oracle
        self.instances: list[str] = []
        self.clusters: list[str] = []

    def run(self) -> None:
        for uuid in self.instances:
            for vm in self.oracle.find_vms(uuid):
                self.oracle.destroy(vm.moref, vim.VirtualMachine)
        for moref in self.clusters:
            self.oracle.destroy(moref, vim.ClusterComputeResource)


@pytest.fixture
def cleanup(oracle: Oracle) -> Iterator[Cleanup]:
    c = Cleanup(oracle)
    yield c
    c.run()
