"""The coverage matrix is complete: every row has a check, every check names known rows, every DriverConfig
field and contract method has rows, and the matrix is read from the checks' markers."""

from __future__ import annotations

import subprocess
import sys

from conformance.coverage import NOT_ROWS, ROWS, contract_methods, coverage_problems, covered_rows, grid_text
from tests.conftest import REPO


def test_every_row_has_a_check_and_every_check_names_known_rows() -> None:
    problems = coverage_problems(covered_rows())
    assert not problems, "\n".join(problems)


def test_problems_are_found() -> None:
    """The test above can fail: a row without a check and a marker naming no row are both reported."""
    covered = {r: checks for r, checks in covered_rows().items() if r != "host:maintenance"}
    covered["host:asleep"] = ["test_x.py::test_y"]
    assert coverage_problems(covered) == ["row host:maintenance has no check",
                                          "test_x.py::test_y covers unknown row 'host:asleep'"]


def test_rows_reach_every_config_field_and_contract_method() -> None:
    from dataclasses import fields

    from conformance.contract import DriverConfig

    subjects = {r.split(":")[0] for r in ROWS}
    assert {f"config.{f.name}" for f in fields(DriverConfig)} <= subjects
    assert {f"method.{m}" for m in contract_methods() if m not in NOT_ROWS} <= subjects
    assert set(NOT_ROWS) <= set(contract_methods())


def test_vcconform_coverage_prints_the_matrix() -> None:
    done = subprocess.run([sys.executable, "-m", "conformance.cli", "coverage", "--grid"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == grid_text(covered_rows())
    assert "<- no check" not in done.stdout
    assert "test_resources.py::test_disk_figures_follow_the_datastore_filter" in done.stdout
