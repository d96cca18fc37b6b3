"""What upstream Nova answers, and when, while vCenter refuses every property read (FAULT-05's first case,
followed to its end instead of to the check's 16 s bound).

One cluster of the standard topology through vcconform_nova: its figures are read, a host of the cluster
enters maintenance mode (vCenter's figures drop), then every RetrievePropertiesEx connection is closed
unanswered (control API ``connection-fault`` ``refuse``) and get_available_resource is called once (Nova's
get_available_resource and update_provider_tree, as the resource tracker calls them). Records how long the
call took, how many reads were refused, and whether the figures it returned are vCenter's or the old ones.
Writes bench/results/nova-stale.json. Takes about 15 minutes (oslo.vmware's retries).

Run: .venv/bin/python bench/nova_stale.py  (needs the [nova] extra). Not part of `make test`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from conformance.contract import DriverConfig  # noqa: E402
from conformance.control import Control  # noqa: E402
from conformance.harness import start_simulator  # noqa: E402
from conformance.oracle import Oracle  # noqa: E402

OUT = REPO / "bench" / "results" / "nova-stale.json"
FIGURES = ("vcpus", "memory_mb")


def main() -> int:
    from vcconform_nova import NovaDriver, nova_version

    if nova_version() == "not installed":
        print("bench/nova_stale.py: the [nova] extra is not installed (pip install -e '.[nova]')", file=sys.stderr)
        return 2
    endpoint = start_simulator(REPO / "fixtures" / "topologies" / "standard.yaml")
    try:
        oracle = Oracle(endpoint.host, endpoint.port, endpoint.username, endpoint.password, str(endpoint.ca_file))
        cluster = oracle.inventory().by_path("/DC0/host/DC0_C0")
        driver = NovaDriver(DriverConfig(url=endpoint.url, username=endpoint.username, password=endpoint.password,
                                         clusters=(cluster.path,), ca_file=str(endpoint.ca_file)))
        try:
            node = driver.get_available_nodes(refresh=True)[0]
            before = driver.get_available_resource(node)
            oracle.set_maintenance(cluster.hosts[0].moref, True)
            inv = oracle.inventory()
            truth = inv.expected_resources(inv.by_path(cluster.path))
            control = Control(endpoint)
            control.set_connection_fault("refuse", method="RetrievePropertiesEx")
            started = time.monotonic()
            try:
                got = driver.get_available_resource(node)
                outcome = {k: got[k] for k in FIGURES}
                error = None
            except Exception as e:
                outcome, error = {}, f"{type(e).__name__}: {e}"
            took = time.monotonic() - started
            hits = control.connection_fault().get("hits")
            control.clear_connection_fault()
        finally:
            driver.close()
    finally:
        endpoint.stop()
    result = {
        "what": "one get_available_resource of Nova while every RetrievePropertiesEx connection is refused, after a "
                "host of the cluster entered maintenance mode",
        "nova": nova_version(),
        "seconds": round(took, 1),
        "refused_reads": hits,
        "figures_before_the_fault": {k: before[k] for k in FIGURES},
        "vcenter_figures_during_the_fault": {k: truth[k] for k in FIGURES},
        "returned": outcome,
        "raised": error,
        "returned_old_figures": bool(outcome) and all(outcome[k] == before[k] for k in FIGURES)
                                and any(outcome[k] != truth[k] for k in FIGURES),
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
