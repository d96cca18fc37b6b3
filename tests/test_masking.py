"""The masker: a password the run knows never reaches a text it writes, in whatever escaping it travels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance import masking
from conformance.masking import MASK, add_secret, mask, scrub
from conformance.report import CheckResult, build_report, write_html, write_json


@pytest.fixture(autouse=True)
def own_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The masker is per process: these secrets must not mask the texts of the worker's later tests."""
    monkeypatch.setattr(masking, "_secrets", set())
    monkeypatch.setattr(masking, "_pattern", None)


def test_every_form_of_a_secret_is_masked() -> None:
    secret = 'pa&ss"w<o>rd/ü'
    add_secret(secret)
    for text in (secret, json.dumps(secret), repr(secret), "user=pa%26ss%22w%3Co%3Erd%2F%C3%BC",
                 "<password>pa&amp;ss&quot;w&lt;o&gt;rd/ü</password>"):
        assert MASK in mask(f"before {text} after"), text
        assert "w<o>rd" not in mask(text) and "w&lt;o&gt;rd" not in mask(text)


def test_scrub_reaches_into_nested_structures() -> None:
    add_secret("nested-Secret-1")
    data = {"a": ["x nested-Secret-1", ("nested-Secret-1", 2)], "b": {"c": "nested-Secret-1"}}
    assert "nested-Secret-1" not in json.dumps(scrub(data))


def test_a_weak_password_cannot_break_a_report(tmp_path: Path) -> None:
    """Masking works on strings, not on serialized files: a password such as 'true' leaves valid JSON."""
    add_secret("true")
    report = build_report([CheckResult("test_x.py::test_y", ("NODE-01",), "failed", "login with true failed")],
                          versions={}, driver={"capabilities": {"placement": True}}, environment={})
    data = json.loads(write_json(report, tmp_path).read_text())
    assert data["checks"][0]["message"] == f"login with {MASK} failed"
    assert data["driver"]["capabilities"] == {"placement": True}
    write_html(report, tmp_path)
    assert "login with true" not in (tmp_path / "report.html").read_text()
