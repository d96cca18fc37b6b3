"""The requirement catalogue: what "conformant" means, one entry per requirement.

Checks cite these ids with ``@pytest.mark.requirement("NODE-01")``; reports group outcomes by them; a test
(tests/test_requirements.py) keeps this catalogue, the checks and docs/requirements.md in step.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AREAS", "MANDATORY", "OPTIONAL", "PROFILES", "REQUIREMENTS", "Requirement", "catalogue_markdown",
           "level_in"]

MANDATORY = "mandatory"
OPTIONAL = "optional"

#: Verdict profiles (``--profile``). The same checks run in both; a profile decides which levels count.
PROFILES = {
    "standard": "each requirement at its own level: the efficiency figures are reported, they do not decide",
    "scale": "as standard, and every EFF requirement is mandatory: its budgets (conformance/budgets.py) decide",
}
#: The areas whose requirements are mandatory in the scale profile, whatever their own level.
SCALE_MANDATORY_AREAS = ("EFF",)

AREAS = {
    "NODE": "Node enumeration",
    "RES": "Resource reporting",
    "SPAWN": "Spawn routing",
    "CHURN": "Cluster add and remove",
    "FAULT": "Sessions and faults",
    "SEC": "Security",
    "EFF": "Efficiency",
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
    # -- NODE -------------------------------------------------------------------------------------------
    Requirement(
        "NODE-01", MANDATORY,
        "Exactly one node per managed cluster that exists, named <cluster moref>.<vCenter instanceUuid>",
        "The scheduler places instances on nodes; a missing node hides capacity, an extra or duplicate one "
        "invents it. The name scheme is Nova's answer to bug 1329261: display names are neither unique "
        "nor stable, morefs are unique only within one vCenter."),
    Requirement(
        "NODE-02", MANDATORY,
        "Standalone hosts and resource pools are never nodes, even when the configuration names them",
        "A compute service exposes clusters; a standalone host or a resource pool is not a cluster. Naming "
        "one by mistake must leave it out (with a warning), not add a node."),
    Requirement(
        "NODE-03", MANDATORY,
        "Node names are stable across a driver restart, a vCenter restart and a cluster rename",
        "Nova keys compute nodes, allocations and instances by node name; a name that changes orphans every "
        "instance and allocation of the node."),
    Requirement(
        "NODE-04", MANDATORY,
        "Same-named clusters in two datacenters are two distinct nodes",
        "Cluster names are unique only within a datacenter; a driver keyed by name merges two clusters' "
        "capacity into one node and places instances in the wrong one."),
    Requirement(
        "NODE-05", MANDATORY,
        "A configured cluster that does not exist is left out with a warning, never an error",
        "Configuration and inventory change independently; one missing cluster must not take down the "
        "service's other nodes, and the operator must be told."),
    Requirement(
        "NODE-06", MANDATORY,
        "Two driver instances with disjoint cluster sets report disjoint node sets covering all their clusters",
        "Several services split one vCenter's clusters between them; overlapping nodes double-count "
        "capacity, gaps hide it."),
    Requirement(
        "NODE-07", MANDATORY,
        "Every page of a paged vCenter answer is read: nodes, figures and instances are complete whatever "
        "the page size",
        "vCenter answers RetrievePropertiesEx with at most 100 objects (fewer if its policy says so) and a "
        "token for the rest. A driver that ignores the token works on a small test inventory and silently "
        "loses clusters, hosts and instances on a real one. What a driver does not read it cancels "
        "(CancelRetrievePropertiesEx); otherwise vCenter holds it until the session ends."),
    # -- RES --------------------------------------------------------------------------------------------
    Requirement(
        "RES-01", MANDATORY,
        "Every node reports vcpus and memory_mb equal to vCenter's figures for its cluster",
        "vcpus is the sum of hardware threads, memory_mb the sum of memory (in bytes, then floored to MiB), of "
        "the cluster's connected hosts not in maintenance mode (compare Nova's vm_util.get_stats_from_cluster); "
        "checked on the heterogeneous topology too (hosts of several sizes, in maintenance, disconnected, not "
        "responding, the largest of a cluster unschedulable, memory sizes that are not whole MiB or GiB). Wrong "
        "figures make the scheduler over- or under-commit the cluster."),
    Requirement(
        "RES-02", MANDATORY,
        "Every node reports local_gb and local_gb_used from its cluster's usable datastores, each counted once",
        "A datastore shared by several hosts (or clusters) is one pool of disk: counting it per host "
        "multiplies capacity. Usable means accessible, not in (or entering) maintenance mode, and matching "
        "datastore_regex as a whole name; checked with datastores in every state and with filters."),
    Requirement(
        "RES-03", MANDATORY,
        "A node's figures follow host add, remove, move, maintenance and connection changes, and datastores "
        "becoming inaccessible or entering maintenance, after a refresh",
        "Capacity changes while the service runs; figures from start-up are wrong figures."),
    Requirement(
        "RES-04", MANDATORY,
        "Asking for the resources of an unknown node raises NodeNotFound",
        "Zeros for an unknown node look like an empty cluster and hide a configuration mistake."),
    Requirement(
        "RES-05", MANDATORY,
        "memory_mb_used follows VMs being powered on and off, over the schedulable hosts only",
        "Used figures are what the scheduler's RAM filters and weighers read; they come from the quickStats of "
        "the hosts memory_mb counts, which move with powered-on VMs (VMs still running on a host in "
        "maintenance mode are not the node's)."),
    Requirement(
        "RES-06", OPTIONAL,
        "The placement inventory (VCPU, MEMORY_MB, DISK_GB) matches the node's figures; max_unit is the "
        "largest single host or datastore",
        "Placement refuses an allocation larger than max_unit; a max_unit of the whole cluster lets it "
        "place a VM that no single host can run.",
        capability="placement_inventory"),
    # -- SPAWN ------------------------------------------------------------------------------------------
    Requirement(
        "SPAWN-01", MANDATORY,
        "A VM spawned for node X is in X's cluster: its pool (the root pool, or the configured resource_pool), "
        "its host and its datastores belong to X",
        "The scheduler chose X; placing the VM elsewhere breaks capacity accounting and every policy "
        "(aggregates, affinity, pool shares and limits) attached to X."),
    Requirement(
        "SPAWN-02", MANDATORY,
        "A spawn never lands on a host in maintenance mode or not connected, nor on a datastore that is "
        "inaccessible, in maintenance or left out by datastore_regex",
        "Such a host cannot run the VM (or is being emptied by an operator); such a datastore cannot hold it "
        "(or is being emptied, or was excluded by the operator). Checked where a naive policy goes: the host "
        "with the most free memory, the datastore with the most free space."),
    Requirement(
        "SPAWN-03", MANDATORY,
        "A spawn for an unknown, removed or unmanaged node raises NodeNotFound and creates nothing",
        "A stale scheduling decision must fail cleanly, not leave a VM in a cluster nobody accounts for."),
    Requirement(
        "SPAWN-04", MANDATORY,
        "A spawn that fails part-way, or cannot be done as configured (no such resource pool in the cluster), "
        "raises a DriverError and leaves no VM behind",
        "Nova retries a failed build elsewhere; a leftover VM holds capacity and a duplicate instance uuid."),
    Requirement(
        "SPAWN-05", MANDATORY,
        "Concurrent spawns to different nodes all land in the right clusters",
        "Nova builds several instances at once on one compute service; shared mutable state in a driver "
        "sends one instance to another's cluster."),
    Requirement(
        "SPAWN-06", MANDATORY,
        "A spawned instance is found again by its uuid: listed, its info right (running, shutdown), destroyed "
        "(twice is fine)",
        "Every later operation (reboot, delete, resize) finds the VM by instance uuid, in any cluster."),
    # -- CHURN ------------------------------------------------------------------------------------------
    Requirement(
        "CHURN-01", MANDATORY,
        "A cluster created in vCenter and added to the configuration is a node after the next refresh",
        "Operators add capacity by adding clusters; the service must discover them without a restart."),
    Requirement(
        "CHURN-02", MANDATORY,
        "A cluster removed from the configuration is no longer a node after the next refresh",
        "Clusters move between services (each owns a disjoint set); a service that keeps reporting a "
        "cluster it gave away double-counts its capacity."),
    Requirement(
        "CHURN-03", MANDATORY,
        "A configured cluster that appears in vCenter later becomes a node; one destroyed in vCenter goes",
        "vCenter changes without the service's configuration changing; the node set must follow it."),
    Requirement(
        "CHURN-04", MANDATORY,
        "A host moved between clusters moves its capacity, and the instances it carries, between the two nodes",
        "Rebalancing hosts is routine; both nodes' figures must follow or the scheduler misplaces load, and an "
        "instance reported on its old node (or kept after it left the managed clusters) is operated on in the "
        "wrong place."),
    Requirement(
        "CHURN-05", MANDATORY,
        "Instances outside the managed clusters (another service's, or of a cluster removed from the "
        "configuration) are neither listed, reported nor destroyed",
        "Giving a cluster to another service must not delete its tenants' VMs, and two services must never both "
        "claim one instance."),
    Requirement(
        "CHURN-06", OPTIONAL,
        "wait_for_changes() reports a change to a managed cluster and the figures follow, without polling; it "
        "stays asleep on changes elsewhere",
        "PropertyCollector WaitForUpdatesEx lets a service react in seconds at the cost of one open call, "
        "instead of refreshing everything on a timer.",
        capability="update_notifications"),
    # -- FAULT ------------------------------------------------------------------------------------------
    Requirement(
        "FAULT-01", MANDATORY,
        "An expired vCenter session is replaced transparently, every time: the next operation logs in again",
        "vCenter ends idle sessions (30 minutes by default); a service must not need a restart for that."),
    Requirement(
        "FAULT-02", MANDATORY,
        "A transient fault is retried or raised as VCenterUnavailable; a persistent one (or no vCenter at the "
        "URL) is raised; never wrong figures",
        "Reporting zeros or old figures as fresh makes the scheduler act on capacity that is not there."),
    Requirement(
        "FAULT-03", MANDATORY,
        "Added latency on every vCenter call is tolerated: figures and placement stay right",
        "A busy vCenter answers slowly; aggressive client time-outs turn slowness into outages."),
    Requirement(
        "FAULT-04", MANDATORY,
        "After a vCenter restart the driver recovers by itself, with the same node names and the figures "
        "vCenter has after the restart",
        "vCenter is upgraded and restarted; compute services keep running."),
    # -- SEC --------------------------------------------------------------------------------------------
    Requirement(
        "SEC-01", MANDATORY,
        "A vCenter certificate that is untrusted, or issued to another host name, is refused unless insecure is "
        "set explicitly (and then accepted)",
        "Silently accepting any certificate, or any certificate of a trusted CA whatever name it carries, "
        "hands the vCenter credentials to whoever sits in between."),
    Requirement(
        "SEC-02", MANDATORY,
        "A vCenter certificate signed by the configured CA bundle is accepted",
        "Verification must work with a private CA, or operators turn it off."),
    Requirement(
        "SEC-03", MANDATORY,
        "Credentials never appear in logs, exception texts, reprs or the report",
        "Logs and tracebacks are shipped to places with weaker access control than the vCenter password. "
        "Scanned in every check: log records at any level, exceptions from the driver, reprs, output."),
    Requirement(
        "SEC-04", MANDATORY,
        "Wrong credentials raise AuthenticationFailed after a bounded number of login attempts",
        "Retrying a refused login forever locks the account and floods vCenter's log."),
    # -- EFF --------------------------------------------------------------------------------------------
    Requirement(
        "EFF-01", OPTIONAL,
        "vCenter calls per full refresh (all nodes and their resources) stay within the budget "
        "(conformance/budgets.py) at N = 1, 10 and 100 clusters; the figures are reported",
        "One PropertyCollector query over a ContainerView costs one round trip for any number of "
        "clusters (plus one per 100 objects when vCenter pages its answer); one query per cluster costs N, "
        "and a vCenter with many clusters and services feels it. Reported in the standard profile, mandatory "
        "in the scale profile."),
    Requirement(
        "EFF-02", OPTIONAL,
        "vCenter bytes per full refresh and per spawn stay within the budgets of conformance/budgets.py; "
        "bytes and time per refresh for N = 1, 10, 100 are reported",
        "The size of an answer is vCenter's cost as much as the number of calls: it serializes, and the driver "
        "decodes, every byte. Whole summary or hardware objects are several KiB per host where the figures "
        "need a few leaves; at 1,000 clusters that is the difference between megabytes and hundreds of them. "
        "Reported in the standard profile, mandatory in the scale profile."),
]}


def level_in(req: Requirement, profile: str) -> str:
    """A requirement's level in a verdict profile (see PROFILES)."""
    if profile == "scale" and req.area in SCALE_MANDATORY_AREAS:
        return MANDATORY
    return req.level


def catalogue_markdown(checks: dict[str, list[str]]) -> str:
    """docs/requirements.md: every requirement with its level, rationale and the checks that cover it."""
    out = ["# Requirement catalogue", "",
           "Generated by `vcconform requirements` from conformance/requirements.py and the checks' markers;",
           "tests/test_requirements.py fails when this file is out of date.", "",
           "## Profiles", "",
           "`--profile` chooses which verdict decides the run (its exit code, a certification); the report shows",
           "both, from the same checks.", ""]
    out += [f"- **{name}**: {text}." for name, text in PROFILES.items()]
    out.append("")
    for area, title in AREAS.items():
        out += [f"## {area}: {title}", ""]
        for r in REQUIREMENTS.values():
            if r.area != area:
                continue
            scale = level_in(r, "scale")
            levels = r.level + (f", {scale} in the scale profile" if scale != r.level else "")
            out += [f"### {r.id} ({levels}{', capability ' + r.capability if r.capability else ''})", "",
                    r.title + ".", "", f"Rationale: {r.rationale}", ""]
            covered = checks.get(r.id, [])
            out += ["Checks: " + (", ".join(f"`{c}`" for c in covered) if covered else "none yet"), ""]
    return "\n".join(out)
