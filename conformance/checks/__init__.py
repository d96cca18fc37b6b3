"""The conformance checks, one module per area. Run them with ``vcconform run`` or
``pytest --pyargs conformance.checks``; every check cites its requirement id."""
