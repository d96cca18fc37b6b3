"""The driver contract: what a multi-cluster compute driver implements to be checked by vcconform.

Modelled on the multi-node part of Nova's ``ComputeDriver``: one driver (one compute service) manages
several vCenter clusters and exposes each as a compute node. Every method states what it does on failure;
the checks in conformance/checks hold drivers to exactly that.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypedDict

__all__ = [
    "CAPABILITIES",
    "AuthenticationFailed",
    "ComputeDriver",
    "DriverConfig",
    "DriverError",
    "Instance",
    "InstanceInfo",
    "InstanceNotFound",
    "InventoryRecord",
    "NodeNotFound",
    "Resources",
    "SpawnFailed",
    "VCenterUnavailable",
    "fault_report_bound",
    "node_name",
]


class DriverError(Exception):
    """Base of every error a driver raises on purpose. Messages never contain credentials."""


class NodeNotFound(DriverError):
    """The node name is not one of the driver's nodes (unknown, or its cluster is gone or unmanaged)."""


class InstanceNotFound(DriverError):
    """No VM in the driver's clusters carries the instance's uuid."""


class VCenterUnavailable(DriverError):
    """vCenter could not be reached or kept failing; the driver reports no figures rather than old ones."""


class AuthenticationFailed(DriverError):
    """vCenter refused the credentials (after a bounded number of attempts)."""


class SpawnFailed(DriverError):
    """A spawn did not complete; whatever it had created has been removed."""


def node_name(cluster_moref: str, vcenter_uuid: str) -> str:
    """The node name for a cluster: ``<cluster moref>.<vCenter instanceUuid>``.

    This is the scheme Nova settled on (bug 1329261): display names are not unique and can change, and a
    moref is unique only within one vCenter, so the pair is unique and survives a rename or a restart.
    """
    return f"{cluster_moref}.{vcenter_uuid}"


@dataclass(frozen=True)
class DriverConfig:
    """Everything a driver is constructed from.

    ``clusters`` names each managed cluster by inventory path (``/DC0/host/folder/C0``) or by moref
    (``domain-c9``). TLS is verified against ``ca_file`` (or the system store when it is None) unless
    ``insecure`` is set explicitly. ``datastore_regex``, when set, selects the datastores whose whole name
    matches it (``re.fullmatch``: ``nfs01`` is not ``nfs010``; write ``nfs01.*`` for a prefix).
    ``resource_pool``, when set, is a pool path below each managed
    cluster's root pool (``nova``, ``tenants/nova``) that spawns go to instead of the root pool.
    ``vcenter_timeout_s`` is the operator's bound on vCenter's silence: how long the driver waits for any one
    answer (connecting included) before it gives that attempt up. vCenter never holds a call unanswered for
    long: reads answer in seconds even for large inventories, and a long poll (WaitForUpdatesEx) lasts at
    most the maxWaitSeconds the driver asks for, which it keeps below this. FAULT-05 bounds every driver call
    by it while vCenter refuses, resets or stalls connections (``fault_report_bound``).
    """

    url: str
    username: str
    password: str = field(repr=False)
    clusters: tuple[str, ...] = ()
    ca_file: str | None = None
    insecure: bool = False
    datastore_regex: str | None = None
    service_id: str = "compute-0"
    resource_pool: str | None = None
    vcenter_timeout_s: float = 30.0


def fault_report_bound(config: DriverConfig) -> float:
    """FAULT-05: the longest one driver call may take, in seconds, while vCenter refuses, resets or stalls
    connections, before it answers rightly or raises VCenterUnavailable: three attempts that each wait the
    configured timeout (a sane retry policy), and 10 s for connecting and backing off between them."""
    return 3 * config.vcenter_timeout_s + 10.0


@dataclass(frozen=True)
class Instance:
    """The part of a Nova instance that the driver needs to build a VM."""

    uuid: str
    name: str
    vcpus: int = 1
    memory_mb: int = 256
    root_gb: int = 1


@dataclass(frozen=True)
class InstanceInfo:
    """What ``get_info`` reports: the power state as Nova names it (``running``, ``shutdown``...)."""

    state: str
    nodename: str


class InventoryRecord(TypedDict):
    """One resource class of a placement-style inventory (as Nova's placement service takes it)."""

    total: int
    reserved: int
    min_unit: int
    max_unit: int
    step_size: int
    allocation_ratio: float


class Resources(TypedDict, total=False):
    """The figures ``get_available_resource`` returns for one node (memory in MiB, disk in GiB).

    A driver declaring the ``placement_inventory`` capability also returns ``inventory``: VCPU, MEMORY_MB
    and DISK_GB records, ``total`` equal to vcpus, memory_mb and local_gb. ``max_unit`` is what one
    instance can get: for VCPU and MEMORY_MB the largest single schedulable host's threads and memory
    (MiB); for DISK_GB the most free space (GiB, floored) on one usable datastore, since a disk must fit in
    one datastore's free space (0 when the cluster has none; VCPU and MEMORY_MB are still reported).
    """

    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int
    memory_mb_used: int
    local_gb_used: int
    hypervisor_type: str
    hypervisor_version: int
    hypervisor_hostname: str
    cpu_info: str
    inventory: dict[str, InventoryRecord]


#: Optional capabilities a driver may declare (``ComputeDriver.capabilities``); each gates optional checks.
CAPABILITIES = {
    "placement_inventory": "get_available_resource also returns a placement-style 'inventory'",
    "update_notifications": "wait_for_changes() follows vCenter changes (PropertyCollector WaitForUpdatesEx)",
}


class ComputeDriver(abc.ABC):
    """Base class of a multi-cluster compute driver.

    The node set and the figures are those of vCenter at the driver's most recent refresh:
    ``get_available_nodes(refresh=True)`` takes a new snapshot; ``get_available_resource`` and ``spawn`` use
    it. This mirrors Nova's resource tracker, which refreshes the nodes and then asks for each one.
    """

    #: Optional features this driver declares; all false here. Optional checks skip (with the reason)
    #: when a capability is not declared, and fail when it is declared but broken.
    capabilities: ClassVar[Mapping[str, bool]] = {}
    #: The driver's version, recorded in the certification report.
    version: ClassVar[str] = "unknown"

    def __init__(self, config: DriverConfig) -> None:
        """Keep the configuration. May connect to vCenter; must not raise for a cluster that is missing.

        Raises AuthenticationFailed or VCenterUnavailable when it connects and cannot (an unreachable or
        untrusted vCenter included), within ``fault_report_bound(config)``: never retries forever.
        """
        self.config = config

    def reconfigure(self, config: DriverConfig) -> None:
        """Take a new configuration (e.g. a changed cluster list); it applies from the next refresh.

        Until then, a node whose cluster the new configuration no longer manages is unknown to spawn.
        """
        self.config = config

    @abc.abstractmethod
    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        """One node name (see ``node_name``) per managed cluster that exists in vCenter.

        A configured cluster that does not exist is left out with a warning, never an error. Standalone
        hosts and resource pools are never nodes. Raises VCenterUnavailable if a refresh cannot read
        vCenter; a driver that reads vCenter only in get_available_resource may answer from what it knows,
        but never with a wrong node set. Every call returns (or raises) within ``fault_report_bound``, also
        when vCenter refuses, resets or never answers connections.
        """

    @abc.abstractmethod
    def get_available_resource(self, nodename: str) -> Resources:
        """The node's figures as of the last refresh (or read now).

        Raises NodeNotFound for a name that is not a current node, and VCenterUnavailable when the figures
        cannot be read fresh (the last refresh failed, or vCenter fails now): never zeros or older figures
        in place of fresh ones, whatever the failure (a vSphere fault, a refused, reset or stalled
        connection), and within ``fault_report_bound``.
        """

    @abc.abstractmethod
    def spawn(self, instance: Instance, nodename: str) -> None:
        """Create and power on a VM for the instance in the node's cluster, tagged with the instance uuid.

        Raises NodeNotFound (creating nothing) for a node that is not current, SpawnFailed when vCenter
        fails part-way (after removing what it created).
        """

    @abc.abstractmethod
    def destroy(self, instance: Instance) -> None:
        """Power off and delete the instance's VM. Succeeds when the VM does not exist."""

    @abc.abstractmethod
    def list_instances(self) -> list[str]:
        """The uuids of the instances whose VMs are in the managed clusters."""

    @abc.abstractmethod
    def get_info(self, instance: Instance) -> InstanceInfo:
        """The instance's state and node. Raises InstanceNotFound when no managed VM carries its uuid."""

    def wait_for_changes(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds until vCenter reports a change to the managed clusters (a host
        added, removed or changing state, a cluster renamed or destroyed, figures moving); then refresh and
        return True. Return False when nothing changed in time. Only for drivers declaring
        ``update_notifications``; raises VCenterUnavailable like a refresh.
        """
        raise NotImplementedError("this driver does not declare the update_notifications capability")

    def close(self) -> None:  # noqa: B027 - optional: a driver holding nothing need not override it
        """Log out and release what the driver holds. Safe to call twice."""

    def describe(self) -> dict[str, Any]:
        """Name, version and capabilities, as recorded in the report."""
        cls = type(self)
        return {"class": f"{cls.__module__}:{cls.__qualname__}", "version": self.version,
                "capabilities": dict(self.capabilities)}
