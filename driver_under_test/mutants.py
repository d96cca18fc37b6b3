"""Deliberately broken variants of the reference driver: each one must be caught by the checks it targets.

``make selftest`` (part of ``make test``) runs the suite against every mutant here and fails unless each
is caught by the requirements in its ``targets``, so no check can silently stop being able to fail.
Each mutant changes one thing, and says which mistake of a real driver it stands for.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pyVmomi import vim

from conformance.contract import DriverConfig
from driver_under_test.reference import Node, ReferenceDriver

__all__ = ["MUTANTS"]


class Mutant(ReferenceDriver):
    #: The requirement ids whose checks must fail against this mutant.
    targets: ClassVar[tuple[str, ...]] = ()


class DropsLastCluster(Mutant):
    """Loses one managed cluster (an off-by-one over the configured list)."""

    targets = ("NODE-01",)

    def _managed_clusters(self) -> tuple[str, ...]:
        return self.config.clusters[:-1]


class DisplayNameNodes(Mutant):
    """Names nodes by cluster display name: neither unique nor stable (Nova bug 1329261)."""

    targets = ("NODE-01",)

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        super().get_available_nodes(refresh)
        assert self._nodes is not None
        self._nodes = {node.cluster.name: node for node in self._nodes.values()}
        return sorted(self._nodes)


class StandaloneHostsAsNodes(Mutant):
    """Treats every compute resource as a cluster, so a standalone host named in the config is a node."""

    targets = ("NODE-02",)

    @staticmethod
    def _is_cluster(obj: Any) -> bool:
        return isinstance(obj, vim.ComputeResource)


class CountsCoresNotThreads(Mutant):
    """Reports physical cores as vcpus, where the requirement is hardware threads."""

    targets = ("RES-01",)

    def _host_vcpus(self, host: dict[str, Any]) -> int:
        return int(host["summary.hardware"].numCpuCores)


class SpawnsInFirstCluster(Mutant):
    """Ignores the node it is given and places every VM in the first managed cluster."""

    targets = ("SPAWN-01",)

    def _placement(self, node: Node) -> Node:
        assert self._nodes is not None
        return self._nodes[min(self._nodes)]


class IgnoresReconfigure(Mutant):
    """Reads the cluster list once at start-up, so configuration changes never reach the node set."""

    targets = ("CHURN-01", "CHURN-02")

    def __init__(self, config: DriverConfig) -> None:
        super().__init__(config)
        self._startup_clusters = config.clusters

    def _managed_clusters(self) -> tuple[str, ...]:
        return self._startup_clusters


MUTANTS: dict[str, type[Mutant]] = {
    cls.__name__: cls for cls in Mutant.__subclasses__()
}
