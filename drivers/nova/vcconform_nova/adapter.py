"""vcconform's contract over upstream Nova: ``NovaDriver`` runs one ``VMwareVCDriver`` per configured cluster.

This is how an operator runs Nova against several clusters: one driver per cluster (Nova's VMware driver
manages exactly one, named by ``[vmware] cluster_name``), each with its own vCenter session. The drivers live
in a child process (vcconform_nova.service) because Nova reads its configuration at import time and runs
as a service of its own. The adapter translates and never fixes:

- configuration: each configured cluster becomes a ``cluster_name`` (the last element of an inventory path;
  a moref is passed as it is, since Nova names clusters only by display name), ``datastore_regex`` as it is;
  ``resource_pool`` nowhere: Nova has no option for one and spawns into the cluster's root pool (a warning
  says so; the checks show what an operator gets);
- calls: ``get_available_nodes`` asks every driver (Nova answers from memory), ``get_available_resource``
  asks the driver that owns the node (Nova reads vCenter there) and, for the placement inventory, calls
  ``update_provider_tree`` as the resource tracker does; ``spawn`` boots without an image (Nova creates the
  VM with no root disk and powers it on: no image service is needed) and, when Nova's spawn fails, calls
  ``destroy`` as Nova's compute manager does (``_build_resources`` -> ``_shutdown_instance``);
- errors: Nova's exceptions become the contract's by their meaning (connection errors, Nova's and those of
  the WSDL download, an untrusted certificate among them: VCenterUnavailable;
  refused credentials: AuthenticationFailed; unknown instance: InstanceNotFound; others: DriverError with
  Nova's class and text), never by what the check wants.

All drivers share one process: each VMwareVCDriver builds its own oslo.vmware session and suds client, about
40 MB and 2.5 s of CPU on a 2-core machine (bench/results/nova.json), so the adapter runs at most
``VCCONFORM_NOVA_MAX_CLUSTERS`` clusters (default 16: their start stays within the suite's 60 s bound on a
driver's constructor) and refuses more with a DriverError saying so: with one nova-compute per cluster,
that is the most one adapter runs, not a limit of Nova's.

A cluster whose driver cannot start (Nova raises from its constructor, e.g. a cluster it does not find) has
no node; the adapter logs Nova's error at WARNING and starts it again at the next refresh, as a supervisor
restarts a failed nova-compute. Nova's own log records reach Python logging under their own names.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import urllib.parse
from concurrent.futures import Future
from typing import Any, ClassVar

from conformance.contract import (
    AuthenticationFailed,
    ComputeDriver,
    DriverConfig,
    DriverError,
    Instance,
    InstanceInfo,
    InstanceNotFound,
    NodeNotFound,
    Resources,
    SpawnFailed,
    VCenterUnavailable,
)

__all__ = ["DEFAULT_MAX_CLUSTERS", "NovaDriver", "NovaError", "max_clusters", "nova_version"]

LOG = logging.getLogger(__name__)
RESOURCE_KEYS = ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used",
                 "hypervisor_type", "hypervisor_version", "hypervisor_hostname", "cpu_info")
#: Nova options the adapter sets beyond the connection (see docs/results and the README of this package):
#: a short task poll interval keeps a run short; it changes no outcome.
VMWARE_OPTIONS = {"task_poll_interval": 0.1}
#: The most clusters (VMwareVCDriver instances) one adapter runs, unless VCCONFORM_NOVA_MAX_CLUSTERS says.
DEFAULT_MAX_CLUSTERS = 16
_live: set[subprocess.Popen[bytes]] = set()


def nova_version() -> str:
    try:
        return importlib.metadata.version("nova")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


class NovaError(DriverError):
    """A Nova exception with no closer meaning in the contract; names Nova's class."""


def max_clusters() -> int:
    """VCCONFORM_NOVA_MAX_CLUSTERS, or DEFAULT_MAX_CLUSTERS; a value that is no whole number above 0 is a
    DriverError naming it."""
    raw = os.environ.get("VCCONFORM_NOVA_MAX_CLUSTERS", "")
    if not raw:
        return DEFAULT_MAX_CLUSTERS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise DriverError(f"VCCONFORM_NOVA_MAX_CLUSTERS={raw!r}: expected a whole number above 0")
    return value


def check_cluster_count(clusters: tuple[str, ...]) -> None:
    """DriverError when more clusters are configured than one adapter runs (see the module docstring)."""
    n, limit = len(dict.fromkeys(clusters)), max_clusters()
    if n > limit:
        raise DriverError(
            f"{n} clusters configured; this adapter runs at most {limit} VMwareVCDriver instances in one "
            f"process (each about 40 MB and 2.5 s of CPU to start: Nova manages one cluster per driver); "
            f"set VCCONFORM_NOVA_MAX_CLUSTERS to allow more")


def _translate(error: dict[str, Any], what: str) -> DriverError:
    """The contract's error for a Nova exception (by class, base classes and vSphere faults)."""
    types = error.get("types", [])
    names = {t.rsplit(".", 1)[-1] for t in types}
    message = f"{what}: Nova raised {types[0].rsplit('.', 1)[-1] if types else '?'}: {error.get('message', '')}"
    if "InvalidLogin" in error.get("faults", []) or ("VimFaultException" in names and "InvalidLogin" in message):
        return AuthenticationFailed(message)
    if names & {"InstanceNotFound"}:
        return InstanceNotFound(message)
    if names & {"VimConnectionException", "VimSessionOverLoadException", "VimAttributeException"}:
        return VCenterUnavailable(message)
    # vCenter not reached at all (refused, reset, timed out, an untrusted certificate): Nova's constructor
    # raises these from the WSDL download (requests) before oslo.vmware's login runs.
    if set(types) & {"requests.exceptions.RequestException", "builtins.ConnectionError", "builtins.TimeoutError",
                     "ssl.SSLError", "http.client.HTTPException"}:
        return VCenterUnavailable(message)
    if names & {"VimException", "VimFaultException"}:
        return VCenterUnavailable(message)
    return NovaError(message)


class _Worker:
    """The child process running Nova, and the requests in flight to it."""

    def __init__(self, config: dict[str, Any]) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vcconform_nova.service", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        _live.add(self.proc)
        self._to = os.fdopen(to_child_w, "w", buffering=1)
        self._from = os.fdopen(from_child_r, "r")
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, Future[Any]] = {0: Future()}
        self._reader = threading.Thread(target=self._read, daemon=True, name="vcconform-nova-reader")
        self._reader.start()
        self._to.write(json.dumps(config) + "\n")
        self._started = self._pending[0]

    def started(self) -> Any:
        return self._started.result()

    def _read(self) -> None:
        for line in self._from:
            message = json.loads(line)
            if "log" in message:
                rec = message["log"]
                logging.getLogger(rec["name"]).log(rec["level"], "%s", rec["message"])
                continue
            with self._lock:
                future = self._pending.pop(message["id"], None)
            if future is None:
                continue
            if "error" in message:
                future.set_exception(_Failure(message["error"]))
            else:
                future.set_result(message["ok"])
        with self._lock:  # the process ended: nobody will answer
            pending, self._pending = self._pending, {}
        code = self.proc.wait()
        for future in pending.values():
            future.set_exception(_Failure({"types": ["ProcessExited"],
                                           "message": f"the Nova process exited with code {code}"}))

    def call(self, op: str, **args: Any) -> Any:
        future: Future[Any] = Future()
        with self._lock:
            n = next(self._ids)
            self._pending[n] = future
            try:
                self._to.write(json.dumps({"id": n, "op": op, "args": args}) + "\n")
            except (BrokenPipeError, ValueError):
                self._pending.pop(n, None)
                raise _Failure({"types": ["ProcessExited"], "message": "the Nova process is gone"}) from None
        return future.result()

    def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            self._to.write(json.dumps({"op": "stop"}) + "\n")
            self._to.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        _live.discard(self.proc)


class _Failure(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", ""))
        self.error = error


@atexit.register
def _stop_all() -> None:
    """Nova processes of drivers nobody closed (a constructor that never returned) end with the run."""
    for proc in list(_live):
        with contextlib.suppress(OSError):
            proc.kill()


def cluster_name(ref: str) -> str:
    """Nova's cluster_name for a configured cluster: the last element of an inventory path; a moref (Nova
    has no way to name a cluster by moref) is passed as it is."""
    return ref.strip("/").rsplit("/", 1)[-1]


class NovaDriver(ComputeDriver):
    """Upstream Nova's VMwareVCDriver, one per configured cluster, through vcconform's contract."""

    capabilities: ClassVar[dict[str, bool]] = {"placement_inventory": True}
    version: ClassVar[str] = f"nova {nova_version()}"

    def __init__(self, config: DriverConfig) -> None:
        super().__init__(config)
        check_cluster_count(config.clusters)
        if config.resource_pool is not None:
            LOG.warning("resource_pool %r: Nova has no option for a resource pool; its VMs go to each "
                        "cluster's root resource pool", config.resource_pool)
        u = urllib.parse.urlsplit(config.url)
        if u.scheme != "https" or not u.hostname:
            raise DriverError(f"vCenter URL {config.url!r}: expected https://host[:port]/sdk")
        self._worker = _Worker({
            "host": u.hostname, "port": u.port or 443, "username": config.username, "password": config.password,
            "ca_file": config.ca_file, "insecure": config.insecure, "datastore_regex": config.datastore_regex,
            "service_id": config.service_id, "vmware_options": VMWARE_OPTIONS,
            "log_level": logging.getLogger().getEffectiveLevel()})
        self._closed = False
        try:
            self._worker.started()
        except _Failure as f:
            self._worker.stop()
            LOG.debug("Nova failed to start: %s", f.error.get("where"))
            raise _translate(f.error, "starting Nova") from None
        self._services: dict[str, str] = {}  # configured entry -> cluster_name, for the drivers that started
        self._nodes: dict[str, str] = {}  # node -> configured entry, as of the last refresh
        self._placed: dict[str, str] = {}  # instance uuid -> configured entry (the compute manager's record)
        try:
            self._sync_services()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"NovaDriver({self.config.url!r}, clusters={list(self.config.clusters)!r})"

    # -- services (one VMwareVCDriver per cluster) ----------------------------------------------------------

    def _sync_services(self) -> None:
        """Start a driver for every configured cluster without one; stop those no longer configured."""
        wanted = list(dict.fromkeys(self.config.clusters))
        for entry in [e for e in self._services if e not in wanted]:
            self._call("remove_cluster", f"stopping Nova for {entry}", name=self._services.pop(entry))
            self._nodes = {n: e for n, e in self._nodes.items() if e != entry}
        for entry in wanted:
            if entry in self._services:
                continue
            name = cluster_name(entry)
            try:
                started = self._call("add_cluster", f"starting Nova for cluster {entry}", name=name)
            except DriverError as e:
                if isinstance(e, AuthenticationFailed | VCenterUnavailable):
                    raise
                LOG.warning("Nova cannot run cluster %s (cluster_name=%r), left out: %s", entry, name, e)
                continue
            self._services[entry] = name
            for node in started["nodes"]:
                self._nodes[node] = entry

    def _call(self, op: str, what: str, **args: Any) -> Any:
        try:
            return self._worker.call(op, **args)
        except _Failure as f:
            raise _translate(f.error, what) from None

    def reconfigure(self, config: DriverConfig) -> None:
        check_cluster_count(config.clusters)
        super().reconfigure(config)
        gone = [e for e in self._services if e not in config.clusters]
        for entry in gone:  # an operator stops the nova-compute of a cluster it gives away
            self._call("remove_cluster", f"stopping Nova for {entry}", name=self._services.pop(entry))
            self._nodes = {n: e for n, e in self._nodes.items() if e != entry}

    # -- the contract -----------------------------------------------------------------------------------

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        if refresh:
            self._sync_services()
        nodes: dict[str, str] = {}
        for entry, name in self._services.items():
            for node in self._call("nodes", f"get_available_nodes of {entry}", name=name, refresh=refresh):
                nodes[node] = entry
        self._nodes = nodes
        return list(nodes)

    def _owner(self, nodename: str) -> str:
        entry = self._nodes.get(nodename)
        if entry is None or entry not in self._services:
            raise NodeNotFound(f"{nodename} is not a node of this driver")
        return entry

    def get_available_resource(self, nodename: str) -> Resources:
        entry = self._owner(nodename)
        got = self._call("resources", f"get_available_resource({nodename})", name=self._services[entry],
                         node=nodename, inventory=True)
        res: dict[str, Any] = {k: got["resources"].get(k) for k in RESOURCE_KEYS}
        res["cpu_info"] = res["cpu_info"] or ""
        if "inventory" in got:
            res["inventory"] = {rc: {k: rec[k] for k in ("total", "reserved", "min_unit", "max_unit", "step_size",
                                                        "allocation_ratio") if k in rec}
                                for rc, rec in got["inventory"].items()}
        else:
            error = _translate(got["inventory_error"], f"update_provider_tree({nodename})")
            LOG.warning("Nova's placement inventory for %s failed (its figures stand): %s", nodename, error)
        return res  # type: ignore[return-value]

    @staticmethod
    def _spec(instance: Instance) -> dict[str, Any]:
        return {"uuid": instance.uuid, "name": instance.name, "vcpus": instance.vcpus,
                "memory_mb": instance.memory_mb, "root_gb": instance.root_gb}

    def spawn(self, instance: Instance, nodename: str) -> None:
        entry = self._owner(nodename)
        name = self._services[entry]
        self._placed[instance.uuid] = entry
        try:
            self._call("spawn", f"spawn({instance.uuid})", name=name, node=nodename, spec=self._spec(instance))
        except DriverError as e:
            # Nova's compute manager destroys what a failed build left (_build_resources -> _shutdown_instance).
            try:
                self._call("destroy", f"destroy after a failed spawn of {instance.uuid}", name=name,
                           spec=self._spec(instance), node=nodename)
            except DriverError as cleanup:
                raise SpawnFailed(f"{e}; then {cleanup}") from None
            raise SpawnFailed(str(e)) from None

    def _entry_of(self, instance: Instance) -> str | None:
        entry = self._placed.get(instance.uuid)
        if entry in self._services:
            return entry
        for entry, name in self._services.items():
            if instance.uuid in self._call("list_instances", f"list_instances of {entry}", name=name):
                return entry
        return None

    def destroy(self, instance: Instance) -> None:
        entry = self._entry_of(instance)
        if entry is None:
            return  # no managed cluster has it: nothing for any nova-compute to delete
        node = next((n for n, e in self._nodes.items() if e == entry), None)
        self._call("destroy", f"destroy({instance.uuid})", name=self._services[entry], spec=self._spec(instance),
                   node=node)
        self._placed.pop(instance.uuid, None)

    def list_instances(self) -> list[str]:
        out: list[str] = []
        for entry, name in self._services.items():
            out += self._call("list_instances", f"list_instances of {entry}", name=name)
        return list(dict.fromkeys(out))

    def get_info(self, instance: Instance) -> InstanceInfo:
        for entry, name in self._services.items():
            if instance.uuid in self._call("list_instances", f"list_instances of {entry}", name=name):
                state = self._call("get_info", f"get_info({instance.uuid})", name=name, spec=self._spec(instance))
                node = next((n for n, e in self._nodes.items() if e == entry), "")
                return InstanceInfo(state=str(state), nodename=node)
        raise InstanceNotFound(f"no managed cluster lists instance {instance.uuid}")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._worker.stop()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "nova": nova_version()}
