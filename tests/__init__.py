"""The project's own tests (not the conformance checks, which live in conformance/checks)."""
