"""Fixtures the checks use: the vCenter under test (fake or existing), the oracle, the control API, the
driver factory, seeded names, evidence for the report, and clean-up that runs even when a check fails."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyVmomi import vim

from conformance import credentials
from conformance.contract import ComputeDriver, DriverConfig, DriverError
from conformance.harness import Endpoint, SimulatorError, start_simulator
from conformance.masking import add_secret
from conformance.oracle import Oracle, OracleError
from conformance.plugin import EVIDENCE, LEAKS, load_driver, setting, state, stop_run
from conformance.process_driver import ProcessDriver
from conformance.topology import TopologyError, load_topology
from conformance.watchdog import DriverHung, format_stack

#: How long a driver's constructor may take before the check errors (the plugin sets it from
#: --check-timeout: half of it, at most 60 s).
CONSTRUCT_TIMEOUT_S = 60.0


@dataclass
class ExternalVCenter:
    """An existing vCenter named with --vcenter-url: the same fields the checks read from an Endpoint."""

    url: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    ca_file: str | None
    backend: str = "external"
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class Site:
    """A vCenter the checks run against, with what they need to know about it."""

    vcenter: Endpoint | ExternalVCenter
    oracle: Oracle
    clusters: tuple[str, ...]  # the clusters a driver manages by default (inventory paths)
    scratch_datacenter: str | None  # moref of a datacenter where checks may create clusters

    def config(self, **overrides: Any) -> DriverConfig:
        v = self.vcenter
        base = DriverConfig(url=v.url, username=v.username, password=v.password, clusters=self.clusters,
                            ca_file=str(v.ca_file) if v.ca_file else None)
        # A check's own password (a wrong one, say) is a secret too: no artefact may show it.
        add_secret(overrides.get("password"))
        return replace(base, **overrides)


def _fail_setup(config: pytest.Config, message: str) -> None:
    """The run cannot go on because of a bad input (not the driver's fault): stop it, saying why."""
    stop_run(config, "usage", f"vcconform: {message}")


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@contextlib.contextmanager
def _fake_site(config: pytest.Config, topology_path: str) -> Iterator[Site]:
    """Start a fake vCenter with a topology; stop it however the run ends."""
    try:
        topo = load_topology(topology_path)
    except TopologyError as e:
        _fail_setup(config, str(e))
        raise
    backend = setting(config, "--vcsim-backend") or "process"
    started = time.monotonic()
    try:
        endpoint = start_simulator(topo, backend, trace=config.getoption("vcconform_vcsim_trace"),
                                   timeout=float(setting(config, "--vcsim-timeout") or 30))
    except SimulatorError as e:
        stop_run(config, "infrastructure", f"the fake vCenter did not start: {e}")
        raise
    s = state(config)
    env = s.environment
    env.setdefault("backend", backend)
    env.setdefault("versions", endpoint.versions)
    env.setdefault("topologies", {})[topo.name] = {"file": topology_path, "sha256": topo.digest,
                                                   "ready_s": round(time.monotonic() - started, 3)}
    try:
        oracle = Oracle(endpoint.host, endpoint.port, endpoint.username, endpoint.password, str(endpoint.ca_file))
        dcs = oracle.inventory().datacenters
        yield Site(endpoint, oracle, tuple(topo.cluster_paths()), next(iter(dcs), None))
        if endpoint.status() is None:  # a dead simulator cannot take a logout
            oracle.close()
    finally:
        directory = setting(config, "--report-dir")
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        endpoint.stop(keep_logs_in=Path(directory) if directory else None,  # artifacts for a failed check
                      tag=f"-{worker}" if worker else "")


@contextlib.contextmanager
def _external_site(config: pytest.Config, url: str) -> Iterator[Site]:
    """An existing vCenter and the description of its inventory (--vcenter-inventory)."""
    u = urllib.parse.urlsplit(url)
    username = setting(config, "--vcenter-username")
    password_env = setting(config, "--vcenter-password-env") or "VCCONFORM_VCENTER_PASSWORD"
    password = os.environ.get(password_env)
    inventory_file = setting(config, "--vcenter-inventory")
    # The plugin checked these before the run began (pytest_configure); these lines are the last guard.
    if u.scheme != "https" or not u.hostname:
        _fail_setup(config, f"--vcenter-url {url!r}: expected https://host[:port]/sdk")
    if not username or password is None:
        _fail_setup(config, f"--vcenter-url needs --vcenter-username and the password in ${password_env}")
    if not inventory_file:
        _fail_setup(config, "--vcenter-url needs --vcenter-inventory: a YAML file with 'clusters' (inventory "
                    "paths the driver manages) and optionally 'scratch_datacenter' (where checks may create clusters)")
    try:
        described = yaml.safe_load(Path(str(inventory_file)).read_text()) or {}
        clusters = tuple(str(c) for c in described["clusters"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        _fail_setup(config, f"--vcenter-inventory {inventory_file}: expected a YAML mapping with a 'clusters' "
                    f"list ({type(e).__name__})")
        raise
    add_secret(password)
    vcenter = ExternalVCenter(url=url, host=str(u.hostname), port=u.port or 443, username=str(username),
                              password=str(password), ca_file=setting(config, "--vcenter-ca-file"))
    try:
        oracle = Oracle(vcenter.host, vcenter.port, vcenter.username, vcenter.password, vcenter.ca_file)
    except OracleError as e:
        _fail_setup(config, str(e))
        raise
    scratch = None
    if described.get("scratch_datacenter"):
        name = str(described["scratch_datacenter"]).strip("/")
        scratch = next((m for m, n in oracle.inventory().datacenters.items() if n == name), None)
        if scratch is None:
            _fail_setup(config, f"--vcenter-inventory: scratch_datacenter {name!r} does not exist")
    state(config).environment.update({"backend": "external", "vcenter": f"{vcenter.host}:{vcenter.port}",
                                      "topologies": {"external": {"file": str(inventory_file),
                                                                  "sha256": _sha256(str(inventory_file))}}})
    yield Site(vcenter, oracle, clusters, scratch)
    oracle.close()


@pytest.fixture(scope="session")
def site(pytestconfig: pytest.Config) -> Iterator[Site]:
    """The vCenter under test: a fake one loaded with --topology, or the one named by --vcenter-url."""
    url = setting(pytestconfig, "--vcenter-url")
    with _external_site(pytestconfig, url) if url else \
            _fake_site(pytestconfig, setting(pytestconfig, "--topology") or "") as s:
        yield s


@pytest.fixture(scope="session")
def hetero(pytestconfig: pytest.Config, site: Site) -> Iterator[Site]:
    """A second fake vCenter on the heterogeneous topology (hosts of many sizes, in maintenance,
    disconnected; shared datastores; same-named clusters)."""
    if site.vcenter.backend == "external":
        pytest.skip("the heterogeneous topology needs the fake vCenter (not available with --vcenter-url)")
    path = setting(pytestconfig, "--heterogeneous-topology") or ""
    if not Path(path).exists():
        pytest.skip(f"heterogeneous topology {path} not found")
    with _fake_site(pytestconfig, path) as s:
        yield s


@pytest.fixture(scope="session")
def vcenter(site: Site) -> Endpoint | ExternalVCenter:
    return site.vcenter


@pytest.fixture(scope="session")
def oracle(site: Site) -> Oracle:
    """An independent session on vCenter: expected values and set-up changes come from here."""
    return site.oracle


@pytest.fixture(scope="session")
def control(site: Site) -> Any:
    """The fake vCenter's control API (faults, latency, session expiry, host states, reset, call counts)."""
    if not isinstance(site.vcenter, Endpoint):
        pytest.skip("needs the fake vCenter's control API (not available with --vcenter-url)")
    from conformance.control import Control

    return Control(site.vcenter)


@pytest.fixture(scope="session")
def scratch_datacenter(site: Site) -> str:
    """A datacenter where checks may create (and then destroy) clusters."""
    if site.scratch_datacenter is None:
        pytest.skip("the inventory description names no scratch_datacenter where checks may create clusters")
    return site.scratch_datacenter


@pytest.fixture(scope="session")
def driver_class(pytestconfig: pytest.Config) -> type[ComputeDriver]:
    cls = state(pytestconfig).driver_class
    return cls if cls is not None else load_driver(pytestconfig)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """Random numbers from the run's seed and the check's id: the same names in a rerun with --seed."""
    return random.Random(f"{state(request.config).seed}:{request.node.nodeid}")


@pytest.fixture
def new_uuid(rng: random.Random) -> Callable[[], str]:
    return lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4))


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Figures a check records for the report (kept with its outcome)."""
    found: dict[str, Any] = request.node.stash.setdefault(EVIDENCE, {})
    return found


@pytest.fixture
def base_config(site: Site) -> DriverConfig:
    """The configuration a driver gets unless a check says otherwise: the site's managed clusters."""
    return site.config()


def construct(driver_class: type[ComputeDriver], config: DriverConfig,
              timeout: float | None = None) -> ComputeDriver:
    """The driver, or the check's failure in one line when its constructor raises anything but a DriverError
    (which checks may expect, e.g. AuthenticationFailed).

    The constructor runs in a thread of its own with a deadline (``timeout``, default CONSTRUCT_TIMEOUT_S):
    one that does not return makes the check an error showing where it hung, and the run goes on (the
    thread, a daemon, is left behind). A process driver (--driver-command) bounds its own start instead: past
    the deadline it kills its process, so nothing is left behind, and the run ends with ERROR. Its password
    joins the credential scan (SEC-03), and so do the exceptions of its constructor and contract methods."""
    add_secret(config.password)
    limit = CONSTRUCT_TIMEOUT_S if timeout is None else timeout
    box: dict[str, Any] = {}

    def build() -> None:
        try:
            box["driver"] = driver_class(config)
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    if isinstance(driver_class, type) and issubclass(driver_class, ProcessDriver):
        try:
            box["driver"] = driver_class(config, start_timeout=limit)
        except DriverError as e:
            box["error"] = e
        return _constructed(box)

    thread = threading.Thread(target=build, name=f"construct {driver_class.__name__}", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        frame = sys._current_frames().get(thread.ident or 0)
        raise DriverHung(f"the driver's constructor did not return within {limit:g}s; it was at:\n"
                         f"{format_stack(frame)}".rstrip())
    return _constructed(box)


def _constructed(box: dict[str, Any]) -> ComputeDriver:
    """The driver a constructor made, or what it raised: a DriverError as is, anything else as the check's
    failure in one line."""
    error = box.get("error")
    scan = credentials.current_scan()
    if error is not None and scan is not None:
        scan.exception("an exception from the constructor", error)
    if isinstance(error, DriverError):
        raise error
    if error is not None:
        detail = f": {error}" if str(error) else ""
        pytest.fail(f"the driver's constructor raised {type(error).__name__}{detail}", pytrace=False)
    driver: ComputeDriver = box["driver"]
    credentials.watch_driver(driver)
    return driver


@pytest.fixture
def make_driver(driver_class: type[ComputeDriver], site: Site) -> Iterator[Callable[..., ComputeDriver]]:
    """Build drivers (``make_driver(clusters=...)``, ``make_driver(site=hetero)``); all are closed afterwards."""
    made: list[ComputeDriver] = []

    def make(*, site_: Site | None = None, **overrides: Any) -> ComputeDriver:
        d = construct(driver_class, (site_ or site).config(**overrides))
        made.append(d)
        return d

    yield make
    for d in made:
        with contextlib.suppress(Exception):
            d.close()


@pytest.fixture
def driver(make_driver: Callable[..., ComputeDriver]) -> ComputeDriver:
    """A driver managing the site's clusters."""
    return make_driver()


class Cleanup:
    """Undo, through an oracle, what a check created in vCenter, last first, even when the check failed."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def instance(self, oracle: Oracle, instance_uuid: str) -> None:
        """Destroy every VM carrying the instance uuid."""
        def undo() -> None:
            for vm in oracle.find_vms(instance_uuid):
                oracle.destroy(vm.moref, vim.VirtualMachine)
        self._undo.append(undo)

    def entity(self, oracle: Oracle, moref: str, kind: type) -> None:
        """Destroy a cluster, datacenter or other entity the check created."""
        self._undo.append(lambda: oracle.destroy(moref, kind))

    def later(self, undo: Callable[[], None]) -> None:
        """Any other undo step (renaming back, clearing a fault...)."""
        self._undo.append(undo)

    def run(self) -> None:
        errors = []
        while self._undo:
            try:
                self._undo.pop()()
            except Exception as e:  # keep undoing the rest
                errors.append(f"{type(e).__name__}: {e}")
        if errors:
            raise AssertionError("clean-up failed: " + "; ".join(errors))


@pytest.fixture
def cleanup() -> Iterator[Cleanup]:
    c = Cleanup()
    yield c
    c.run()


@pytest.fixture(autouse=True)
def _credential_scan(request: pytest.FixtureRequest) -> Iterator[None]:
    """SEC-03 in every check: log records and exceptions through the driver are scanned for the run's
    passwords while the check runs; a leak fails the teardown, and the plugin reports it against SEC-03."""
    if request.node.get_closest_marker("requirement") is None:
        yield
        return
    with credentials.scanning() as scan:
        yield
        leaks = scan.finish()
    if leaks:
        request.node.stash[LEAKS] = [*request.node.stash.get(LEAKS, []), *leaks]
        pytest.fail(f"SEC-03: a password appears in {'; '.join(leaks)}", pytrace=False)


@pytest.fixture(autouse=True)
def _reset_after(request: pytest.FixtureRequest) -> Iterator[None]:
    """Checks marked ``resets`` change the fake vCenter in ways clean-up cannot undo (host states, faults,
    latency): put it back as loaded afterwards, for the checks that follow."""
    ctl = request.getfixturevalue("control") if request.node.get_closest_marker("resets") else None
    yield
    if ctl is not None:
        ctl.reset()

