"""Paging: a driver reads every page of vCenter's answers, at whatever page size vCenter chooses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from conformance.checks.common import CORE_FIGURES, DISK_FIGURES, figure_problems, node_set_problems
from conformance.contract import ComputeDriver, Instance
from conformance.fixtures import Cleanup
from conformance.oracle import Oracle

pytestmark = pytest.mark.needs_control


@pytest.mark.requirement("NODE-07")
@pytest.mark.resets
def test_every_page_of_an_answer_is_read(driver: ComputeDriver, oracle: Oracle, control: Any, cleanup: Cleanup,
                                         new_uuid: Callable[[], str], evidence: dict[str, Any]) -> None:
    """The driver's answers with vCenter cutting every answer at one object are those it gives with every answer
    whole, and right where those are: nodes, figures and instances. No paged answer is left open."""
    nodes = driver.get_available_nodes(refresh=True)
    instances = [(Instance(uuid=new_uuid(), name=f"node-07-{i}"), node) for i, node in enumerate(nodes[:2])]
    for instance, node in instances:
        cleanup.instance(oracle, instance.uuid)
        driver.spawn(instance, node)
    inv = oracle.inventory()

    def answers() -> list[str]:
        """What the driver gets wrong now, against the same snapshot of vCenter."""
        wrong = node_set_problems(driver.get_available_nodes(refresh=True), inv.expected_nodes(driver.config.clusters))
        wrong += figure_problems(driver, inv, (*CORE_FIGURES, *DISK_FIGURES, "memory_mb_used"))
        listed = set(driver.list_instances())
        return wrong + [f"instance {i.uuid} (on {n}) missing from list_instances()" for i, n in instances
                        if i.uuid not in listed]

    # First every answer whole: what the driver gets wrong then is another requirement's failure (RES-02's,
    # say), reported there; this check judges what paging changes.
    control.set_page_size(1_000_000)
    unpaged = set(answers())
    if unpaged:
        evidence["wrong_without_paging"] = sorted(unpaged)
    # One object per answer: whatever a driver reads through RetrievePropertiesEx comes page by page.
    control.set_page_size(1)
    pending = control.paging()["pending"]
    control.reset_calls()
    problems = [p for p in answers() if p not in unpaged]
    calls = control.calls()["by_method"]
    evidence["pages_read"] = calls.get("ContinueRetrievePropertiesEx", 0)
    left = control.paging()["pending"] - pending
    if left > 0:
        problems.append(f"{left} paged answer(s) left unread on vCenter: read each to its end with "
                        "ContinueRetrievePropertiesEx, or cancel it with CancelRetrievePropertiesEx")
    assert not problems, ("with vCenter answering one object per RetrievePropertiesEx (and a token for the rest): "
                          + "; ".join(problems))
