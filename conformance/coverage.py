"""The coverage matrix: every configuration value, vCenter state and contract method the checks must visit.

A row is a value class of a ``DriverConfig`` field, a state that the oracle's formulas or the contract's
docstrings tell apart (of vCenter, a cluster, a host, a datastore, a VM, an instance), or a contract method
(and its failure cases). A check names the rows it exercises with ``@pytest.mark.covers("host:maintenance",
...)``; the matrix (``vcconform coverage``, and the section of docs/requirements.md) is read from those
markers, never kept by hand. tests/test_coverage.py fails when a row has no check, when a check names a row
that does not exist, and when a ``DriverConfig`` field or a contract method has no row.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from dataclasses import dataclass

__all__ = ["KINDS", "NOT_ROWS", "ROWS", "Row", "coverage_markdown", "coverage_problems", "covered_rows",
           "grid_text"]


@dataclass(frozen=True)
class Row:
    id: str  # "<kind>[.<subject>]:<value>", e.g. config.datastore_regex:prefix-only, host:maintenance
    text: str  # what the state is, and why a driver can get it wrong

    @property
    def kind(self) -> str:
        return self.id.split(":")[0].split(".")[0]


KINDS = {
    "config": "DriverConfig fields and their value classes",
    "vcenter": "vCenter as a whole: its certificate, reachability, sessions, faults, restarts",
    "cluster": "Cluster states",
    "host": "Host states (schedulable: connected and not in maintenance mode)",
    "datastore": "Datastore states (usable: accessible, not in or entering maintenance, matching the filter)",
    "vm": "VM states",
    "instance": "Instance states: where an instance's VM is, relative to the driver's clusters",
    "method": "Contract methods and their failure cases",
}

ROWS: dict[str, Row] = {r.id: r for r in [
    # -- config -------------------------------------------------------------------------------------------
    Row("config.url:https", "the vCenter's SDK URL (https://host:port/sdk)"),
    Row("config.username:valid", "the vCenter user"),
    Row("config.password:valid", "the user's password"),
    Row("config.password:wrong", "a wrong password: AuthenticationFailed, bounded attempts, never in any text"),
    Row("config.clusters:by-path", "clusters named by inventory path"),
    Row("config.clusters:by-moref", "clusters named by moref (survives a rename)"),
    Row("config.clusters:in-folders", "clusters inside nested host folders, datacenters inside folders"),
    Row("config.clusters:same-cluster-twice", "one cluster named twice (by path and by moref): one node"),
    Row("config.clusters:missing", "a configured cluster that does not exist: left out with a warning"),
    Row("config.clusters:standalone-host", "a standalone host's compute resource named as a cluster"),
    Row("config.clusters:resource-pool", "resource pools (root and child, of a cluster not managed otherwise)"),
    Row("config.clusters:same-name-two-datacenters", "two clusters of one name in two datacenters"),
    Row("config.clusters:reconfigured", "the cluster list changed by reconfigure (added, removed)"),
    Row("config.ca_file:set", "a CA bundle that signed vCenter's certificate"),
    Row("config.ca_file:none", "no CA bundle: the system store, which does not trust the fake vCenter"),
    Row("config.insecure:false", "verification on (the default)"),
    Row("config.insecure:true", "verification off, said explicitly: a self-signed vCenter is accepted"),
    Row("config.datastore_regex:none", "no filter: every usable datastore counts"),
    Row("config.datastore_regex:excludes", "a filter that leaves out some usable datastores (the largest, the "
                                           "most free)"),
    Row("config.datastore_regex:prefix-only", "a filter that matches another datastore's name as a prefix but "
                                              "not as a whole name (re.match and re.search take it)"),
    Row("config.service_id:distinct", "two services with disjoint clusters on one vCenter"),
    Row("config.resource_pool:none", "no pool: spawns go to the cluster's root pool"),
    Row("config.resource_pool:nested", "a nested pool path (tenants/nova), with a pool of the same last name "
                                       "(nova) beside it"),
    Row("config.resource_pool:missing", "a configured pool that one cluster lacks: that spawn fails cleanly"),
    # -- vcenter ------------------------------------------------------------------------------------------
    Row("vcenter:certificate-untrusted", "a certificate no configured CA signed"),
    Row("vcenter:certificate-other-name", "a certificate the configured CA signed, for another host name"),
    Row("vcenter:unreachable", "nothing listens at the URL"),
    Row("vcenter:session-expired", "vCenter ended the driver's session"),
    Row("vcenter:transient-fault", "one call fails once"),
    Row("vcenter:persistent-fault", "every read fails"),
    Row("vcenter:slow", "every call answers late"),
    Row("vcenter:restarted", "vCenter restarted: every session ended, same inventory"),
    # -- cluster ------------------------------------------------------------------------------------------
    Row("cluster:empty", "a cluster without hosts"),
    Row("cluster:renamed", "a managed cluster renamed in vCenter"),
    Row("cluster:created-later", "a configured cluster created after the driver started"),
    Row("cluster:destroyed", "a configured cluster destroyed in vCenter"),
    Row("cluster:unmanaged-changed", "a change in a cluster the driver does not manage"),
    # -- host ---------------------------------------------------------------------------------------------
    Row("host:connected", "connected, not in maintenance mode: schedulable"),
    Row("host:maintenance", "in maintenance mode: no capacity, no new VM"),
    Row("host:not-responding", "connectionState notResponding: no capacity, no new VM"),
    Row("host:disconnected", "connectionState disconnected: no capacity, no new VM"),
    Row("host:threads-equal-cores", "no hyper-threading: threads equal cores"),
    Row("host:memory-not-whole-mib", "a memory size in bytes that is not a whole number of MiB or GiB"),
    Row("host:largest-unschedulable", "the cluster's largest host (threads, memory) is unschedulable"),
    Row("host:preferred-unschedulable", "the host a most-free-memory policy picks is unschedulable"),
    Row("host:added", "a host added to a cluster"),
    Row("host:removed", "a host removed from the inventory"),
    Row("host:moved", "a host moved to another cluster"),
    Row("host:vms-running-while-unschedulable", "VMs keep running on a host put in maintenance mode"),
    # -- datastore ----------------------------------------------------------------------------------------
    Row("datastore:shared", "mounted by several hosts and clusters: counted once per node"),
    Row("datastore:standalone-host-only", "mounted only by a standalone host: no node's"),
    Row("datastore:inaccessible", "summary.accessible false"),
    Row("datastore:in-maintenance", "summary.maintenanceMode inMaintenance"),
    Row("datastore:entering-maintenance", "summary.maintenanceMode enteringMaintenance"),
    Row("datastore:filtered-out", "usable, but left out by datastore_regex"),
    Row("datastore:largest-unusable", "the cluster's largest datastore is unusable (DISK_GB max_unit)"),
    Row("datastore:preferred-unusable", "the datastore a most-free-space policy picks is unusable"),
    Row("datastore:state-changed", "a datastore's accessibility or maintenance mode changed at run time"),
    # -- vm -----------------------------------------------------------------------------------------------
    Row("vm:powered-on", "a powered-on VM: it uses memory (quickStats) and reports running"),
    Row("vm:powered-off", "a powered-off VM: no memory in use, reports shutdown"),
    Row("vm:memory-in-use-not-configured", "a running VM's host uses more memory than the VM is configured with "
                                           "(the hypervisor's share, the VM's overhead)"),
    # -- instance -----------------------------------------------------------------------------------------
    Row("instance:managed", "its VM is in a managed cluster"),
    Row("instance:unmanaged-cluster", "its VM is in a cluster another service manages"),
    Row("instance:cluster-removed-from-config", "its cluster was removed from the configuration"),
    Row("instance:host-moved-to-managed-cluster", "its host moved, with the VM, to another managed cluster"),
    Row("instance:host-moved-to-unmanaged-cluster", "its host moved, with the VM, to an unmanaged cluster"),
    Row("instance:destroyed", "its VM was destroyed"),
    Row("instance:spawn-failed", "its spawn failed part-way"),
    # -- method -------------------------------------------------------------------------------------------
    Row("method.__init__:connects", "the constructor, with a working configuration"),
    Row("method.__init__:refused", "the constructor, when vCenter refuses or cannot be reached"),
    Row("method.reconfigure:applied", "reconfigure with another cluster list"),
    Row("method.get_available_nodes:refresh", "a refresh"),
    Row("method.get_available_resource:node", "the figures of a node"),
    Row("method.get_available_resource:unknown-node", "an unknown, unmanaged or foreign-vCenter node name"),
    Row("method.spawn:node", "a spawn on a node"),
    Row("method.spawn:unknown-node", "a spawn on an unknown, removed, unmanaged or foreign-vCenter node"),
    Row("method.spawn:concurrent", "spawns from several threads at once"),
    Row("method.destroy:existing", "destroy of an instance of the driver"),
    Row("method.destroy:missing", "destroy of an instance without a VM (success)"),
    Row("method.destroy:not-managed", "destroy of an instance whose VM is outside the managed clusters"),
    Row("method.list_instances:listed", "the instances of the managed clusters"),
    Row("method.get_info:found", "state and node of an instance"),
    Row("method.get_info:missing", "an instance without a managed VM (InstanceNotFound)"),
    Row("method.wait_for_changes:managed-change", "a change to a managed cluster wakes it"),
    Row("method.wait_for_changes:unmanaged-change", "a change elsewhere leaves it asleep (False)"),
    Row("method.close:called", "close, then a new driver"),
]}

#: Contract methods that are not rows, and why.
NOT_ROWS = {"describe": "reporting only: the report reads the driver class's own attributes, never describe()"}


def covered_rows() -> dict[str, list[str]]:
    """Row id -> the checks (module::function) whose ``covers`` markers name it (unknown ids included)."""
    import conformance.checks

    out: dict[str, list[str]] = {}
    for info in pkgutil.iter_modules(conformance.checks.__path__):
        module = importlib.import_module(f"conformance.checks.{info.name}")
        for name, fn in sorted(vars(module).items()):
            if not name.startswith("test_"):
                continue
            for mark in getattr(fn, "pytestmark", []):
                if mark.name == "covers":
                    for row in mark.args:
                        out.setdefault(row, []).append(f"{info.name}.py::{name}")
    return out


def contract_methods() -> list[str]:
    """The public methods of the contract (conformance.contract.ComputeDriver), its constructor included."""
    from conformance.contract import ComputeDriver

    return ["__init__", *(n for n, f in inspect.getmembers(ComputeDriver, inspect.isfunction)
                          if not n.startswith("_"))]


def coverage_problems(covered: dict[str, list[str]]) -> list[str]:
    """What makes the matrix incomplete: rows without checks, unknown rows, config fields and methods
    without rows."""
    from conformance.contract import DriverConfig

    problems = [f"row {r} has no check" for r in ROWS if not covered.get(r)]
    problems += [f"{', '.join(checks)} covers unknown row {r!r}" for r, checks in covered.items() if r not in ROWS]
    for f in dataclasses.fields(DriverConfig):
        if not any(r.startswith(f"config.{f.name}:") for r in ROWS):
            problems.append(f"DriverConfig.{f.name} has no row")
    for m in contract_methods():
        if m not in NOT_ROWS and not any(r.startswith(f"method.{m}:") for r in ROWS):
            problems.append(f"contract method {m} has no row")
    return problems


def coverage_markdown(covered: dict[str, list[str]]) -> str:
    """The matrix as markdown: one table per kind of row, each row with the checks that exercise it."""
    out = ["## Coverage matrix", "",
           "Generated by `vcconform coverage` from conformance/coverage.py (the rows) and the checks' `covers`",
           "markers (the cells). Rows: every `DriverConfig` field and value class, every state the oracle's",
           "formulas or the contract's docstrings tell apart, every contract method. tests/test_coverage.py",
           "fails when a row has no check. `vcconform coverage --grid` prints it as a grid of checks.", ""]
    for kind, title in KINDS.items():
        out += [f"### {title}", "", "| row | state | checks |", "| --- | --- | --- |"]
        for r in ROWS.values():
            if r.kind == kind:
                checks = ", ".join(f"`{c.split('::')[-1]}`" for c in covered.get(r.id, [])) or "**none**"
                out.append(f"| `{r.id}` | {r.text} | {checks} |")
        out.append("")
    if NOT_ROWS:
        out += ["Not rows: " + "; ".join(f"`{m}` ({why})" for m, why in NOT_ROWS.items()) + ".", ""]
    return "\n".join(out)


def grid_text(covered: dict[str, list[str]]) -> str:
    """The matrix as a grid: rows down, checks across (numbered, with a legend), x where a check covers."""
    checks = sorted({c for cs in covered.values() for c in cs})
    index = {c: i for i, c in enumerate(checks, 1)}
    width = max(len(r) for r in ROWS)
    head = " " * width + " " + "".join(f"{i % 100:>3}" for i in index.values())
    lines = [head]
    for r in ROWS:
        marks = {index[c] for c in covered.get(r, [])}
        lines.append(f"{r:<{width}} " + "".join("  x" if i in marks else "  ." for i in index.values())
                     + ("   <- no check" if not marks else ""))
    lines += ["", "checks:"] + [f"{i:>3} {c}" for c, i in index.items()]
    return "\n".join(lines) + "\n"
