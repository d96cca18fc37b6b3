"""The efficiency budgets: what one full refresh and one spawn may cost vCenter, each with its reason.

The efficiency checks (conformance/checks/test_efficiency.py, EFF-01 and EFF-02) measure a driver on its own
fake vCenter with the efficiency topology: N clusters of one host each, all mounting one shared datastore,
for N = 1, 10 and 100 (``bench/refresh.py`` goes on to 1,000 and scale-1000x8). A *full refresh* is what
Nova's resource tracker asks for: ``get_available_nodes(refresh=True)``, then every node's
``get_available_resource``. Calls and bytes are counted by the fake vCenter itself (control API ``GET
/calls``): every SOAP call it serves and every byte of the answers, whichever sessions the driver uses.
Bytes are the SOAP XML as vCenter 6.5 writes it (fakevc encodes its answers as vCenter does, uncompressed,
docs/control-api.md). Time is reported, never held to a budget: it depends on the machine.

Each budget is ``base + per_cluster * N``. The figures a driver needs grow with the clusters it manages (each
cluster and its hosts is a few hundred bytes of leaves), so bytes are budgeted per cluster on top of a fixed
part for what every refresh reads once (the inventory's folders and datacenters, the shared datastore, the
SOAP envelope); calls are not, since one query covers any number of clusters. The reference driver
(driver_under_test/reference.py) spends about 1.3 KiB per cluster and 4 KiB per spawn on this topology
(bench/results/refresh.json has the other sizes); a driver that reads whole ``summary`` or ``hardware``
objects, or every property (``all``), spends many times the budget (a whole host summary is about 40 KiB as
fakevc encodes it): the answer's size is vCenter's own cost too.

Today these budgets decide the optional EFF requirements (reported, not part of the verdict); a profile
that makes efficiency mandatory (``--profile scale``) imports them from here, so that there is one place
that says what "efficient" means.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BUDGETS", "BYTES_PER_REFRESH", "BYTES_PER_SPAWN", "CALLS_PER_REFRESH", "EFFICIENCY_SIZES", "Budget"]

#: The cluster counts of the efficiency topology, in the suite (``make bench`` adds 1,000 and scale-1000x8).
EFFICIENCY_SIZES = (1, 10, 100)


@dataclass(frozen=True)
class Budget:
    """The most one operation may cost: ``base + per_cluster * clusters`` of ``unit``."""

    key: str  # the evidence key the efficiency checks report the measured figures under
    title: str
    unit: str
    base: int
    per_cluster: int
    rationale: str

    def at(self, clusters: int) -> int:
        """The budget for a site of ``clusters`` managed clusters."""
        return self.base + self.per_cluster * clusters

    def describe(self) -> str:
        """'at most 16 KiB + 2 KiB per cluster' and the like, for failure messages and the report."""
        def amount(n: int) -> str:
            return f"{n // 1024} KiB" if self.unit == "bytes" and n % 1024 == 0 and n >= 1024 else f"{n} {self.unit}"
        per = f" + {amount(self.per_cluster)} per cluster" if self.per_cluster else ""
        return f"at most {amount(self.base)}{per}"


CALLS_PER_REFRESH = Budget(
    "calls_per_refresh", "vCenter calls per full refresh", "calls", 4, 0,
    "One RetrievePropertiesEx over a ContainerView the driver keeps reads every cluster, host and datastore at "
    "once; a few calls more leave room for a paged answer (ContinueRetrievePropertiesEx) or a view made anew "
    "after a login. A driver asking per cluster makes N calls or more, and each call is a round trip that "
    "grows with vCenter's distance and load: 1,000 clusters cost seconds per refresh at 5 ms per call.")

BYTES_PER_REFRESH = Budget(
    "bytes_per_refresh", "vCenter bytes per full refresh", "bytes", 16 * 1024, 2 * 1024,
    "What the figures need of a cluster with one host is its name, parent, host and datastore lists and root "
    "pool, and five leaves of its host (threads, memory, memory in use, connection state, maintenance mode): "
    "about 1.3 KiB in vCenter's encoding. 2 KiB per cluster leaves room for a driver that reads a few more "
    "leaves (names, overcommit settings); a whole host or cluster summary alone is several KiB, so a driver "
    "reading whole objects, or the same leaves once per cluster and again per node, exceeds the budget. The "
    "fixed 16 KiB holds the folders, datacenters and shared datastore every refresh reads once, and the "
    "envelope.")

BYTES_PER_SPAWN = Budget(
    "bytes_per_spawn", "vCenter bytes per spawn", "bytes", 16 * 1024, 0,
    "A spawn is a handful of small answers: the placement's read of its own cluster's hosts, CreateVM_Task, "
    "PowerOnVM_Task and the polls of their tasks (about 4 KiB for the reference). A spawn that reads the "
    "inventory (or whole host or datastore objects) to place one VM costs vCenter as much as a refresh, for "
    "every instance booted; 16 KiB leaves four times the reference's room for a richer placement (a pool "
    "lookup, a slower task polled a few times more).")

BUDGETS: dict[str, Budget] = {b.key: b for b in (CALLS_PER_REFRESH, BYTES_PER_REFRESH, BYTES_PER_SPAWN)}
