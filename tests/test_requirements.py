"""The catalogue, the checks and docs/requirements.md stay in step."""

from __future__ import annotations

from conformance.cli import check_ids, requirements_doc
from conformance.requirements import AREAS, REQUIREMENTS
from tests.conftest import REPO


def test_every_requirement_has_a_check_and_every_check_a_known_requirement() -> None:
    covered = check_ids()
    assert set(covered) == set(REQUIREMENTS), (set(covered) ^ set(REQUIREMENTS))
    assert all(r.area in AREAS for r in REQUIREMENTS.values())


def test_docs_requirements_md_is_current() -> None:
    assert (REPO / "docs" / "requirements.md").read_text() == requirements_doc(), \
        "docs/requirements.md is stale: run `vcconform requirements > docs/requirements.md`"
