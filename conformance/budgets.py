"""Efficiency budgets: the most a driver may spend per operation. Reported in every run; in the ``scale``
profile the EFF requirements, and so these budgets, decide the verdict (docs/requirements.md, Profiles)."""

from __future__ import annotations

__all__ = ["CALLS_PER_REFRESH"]

#: vCenter round trips for one full refresh (``get_available_nodes(refresh=True)``, then
#: ``get_available_resource`` of every node), counted by the fake vCenter, at 1, 10 and 100 clusters alike.
#: One RetrievePropertiesEx over a ContainerView answers for any number of clusters; the budget leaves room
#: for a second query (VMs, pools), a paged answer and re-creating a view after a new login.
CALLS_PER_REFRESH = 4
