"""The requirement catalogue: what "conformant" means, one entry per requirement.

Checks cite these ids with ``@pytest.mark.requirement("NODE-01")``; reports group outcomes by them; a test
(tests/test_requirements.py) keeps this catalogue, the checks and docs/requirements.md in step.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AREAS", "MANDATORY", "OPTIONAL", "REQUIREMENTS", "Requirement"]

MANDATORY = "mandatory"
OPTIONAL = "optional"

AREAS = {
    "NODE": "Node enumeration",
    "RES": "Resource reporting",
    "SPAWN": "Spawn routing",
    "CHURN": "Cluster add and remove",
}


@dataclass(frozen=True)
class Requirement:
    id: str
    level: str
    title: str
    rationale: str
    #: For an optional requirement: the capability a driver declares to be held to it.
    capability: str | None = None

    @property
    def area(self) -> str:
        return self.id.split("-")[0]


REQUIREMENTS: dict[str, Requirement] = {r.id: r for r in [
    Requirement(
        "NODE-01", MANDATORY,
        "Exactly one node per managed cluster that exists, named <cluster moref>.<vCenter instanceUuid>",
        "The scheduler places instances on nodes; a missing node hides capacity, an extra or duplicate one "
        "invents it. The name scheme is Nova's answer to bug 1329261: display names are neither unique "
        "nor stable, morefs are unique only within one vCenter."),
    Requirement(
        "NODE-02", MANDATORY,
        "A standalone host is never a node, even when the configuration names it",
        "A compute service exposes clusters; a standalone host is not a cluster and has no DRS to place "
        "within it. Naming one by mistake must leave it out (with a warning), not add a node."),
    Requirement(
        "RES-01", MANDATORY,
        "Every node reports vcpus and memory_mb equal to vCenter's figures for its cluster",
        "vcpus is the sum of hardware threads, memory_mb the sum of memory (MiB), of the cluster's "
        "connected hosts not in maintenance mode (compare Nova's vm_util.get_stats_from_cluster). "
        "Wrong figures make the scheduler over- or under-commit the cluster."),
    Requirement(
        "SPAWN-01", MANDATORY,
        "A VM spawned for node X is in X's cluster: its resource pool and its host belong to that cluster",
        "The scheduler chose X; placing the VM elsewhere breaks capacity accounting and every policy "
        "(aggregates, affinity) attached to X."),
    Requirement(
        "CHURN-01", MANDATORY,
        "A cluster created in vCenter and added to the configuration is a node after the next refresh",
        "Operators add capacity by adding clusters; the service must discover them without a restart."),
    Requirement(
        "CHURN-02", MANDATORY,
        "A cluster removed from the configuration is no longer a node after the next refresh",
        "Clusters move between services (each owns a disjoint set); a service that keeps reporting a "
        "cluster it gave away double-counts its capacity."),
]}
