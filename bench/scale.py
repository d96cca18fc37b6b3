"""Benchmark: the fake vCenter at scale (scale-1000x8: 8,000 hosts) and the cost of a reset.

Measures, per backend, start-to-ready of the scale topology (YAML read, fakevc start, inventory build, first
answer to /about), and the control API's reset on the standard, heterogeneous and scale topologies (the
server's own figure and the client's round trip). Also a host life-cycle round trip and a full inventory
read on each topology, for context. Writes bench/results/scale.json; run `.venv/bin/python bench/scale.py`
(numbers belong here, never in timed test assertions).
"""

from __future__ import annotations

import json
import os
import platform
import ssl
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from conformance.control import Control
from conformance.harness import Endpoint, docker_available, govmomi_pin, start_simulator
from conformance.oracle import Oracle, wait_for_task
from conformance.topology import load_topology

REPO = Path(__file__).resolve().parent.parent
TOPOLOGIES = REPO / "fixtures" / "topologies"
SCALE = TOPOLOGIES / "scale-1000x8.yaml"
READY_RUNS = 3
RESET_RUNS = 20


def stats(values: list[float], unit: str) -> dict[str, float]:
    return {"runs": len(values), f"median_{unit}": round(statistics.median(values), 3),
            f"min_{unit}": round(min(values), 3), f"max_{unit}": round(max(values), 3)}


def ready(backend: str) -> dict[str, Any]:
    times, builds = [], []
    for _ in range(READY_RUNS):
        t = time.perf_counter()
        e = start_simulator(SCALE, backend, timeout=60)
        times.append(time.perf_counter() - t)
        builds.append(json.loads((e.state_dir / "ready.json").read_text())["build_ms"] / 1000)
        e.stop()
    return {**stats(times, "s"), "inventory_build_median_s": round(statistics.median(builds), 3)}


def host_round_trip(e: Endpoint) -> float:
    """Milliseconds for EnterMaintenanceMode and ExitMaintenanceMode on one host, tasks awaited."""
    si = SmartConnect(host=e.host, port=e.port, user=e.username, pwd=e.password,
                      sslContext=ssl.create_default_context(cafile=str(e.ca_file)))
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.ClusterComputeResource], True)
        host = next(h for c in view.view for h in c.host
                    if h.runtime.connectionState == "connected" and not h.runtime.inMaintenanceMode)
        view.DestroyView()
        t = time.perf_counter()
        wait_for_task(host.EnterMaintenanceMode_Task(timeout=0))
        wait_for_task(host.ExitMaintenanceMode_Task(timeout=0))
        return round((time.perf_counter() - t) * 1000, 1)
    finally:
        Disconnect(si)


def per_topology(path: Path, reset_runs: int) -> dict[str, Any]:
    e = start_simulator(path, timeout=60)
    try:
        control = Control(e)
        server, client = [], []
        for _ in range(reset_runs):
            t = time.perf_counter()
            server.append(float(control.reset()["took_ms"]))
            client.append((time.perf_counter() - t) * 1000)
        oracle = Oracle(e.host, e.port, e.username, e.password, str(e.ca_file))
        t = time.perf_counter()
        inv = oracle.inventory()
        read_s = time.perf_counter() - t
        oracle.close()
        return {"clusters": len(inv.clusters), "reset_server_ms": stats(server, "ms"),
                "reset_round_trip_ms": stats(client, "ms"), "inventory_read_s": round(read_s, 3),
                "maintenance_round_trip_ms": host_round_trip(e)}
    finally:
        e.stop()


def main() -> int:
    t = time.perf_counter()
    topo = load_topology(SCALE)
    load_s = time.perf_counter() - t
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "govmomi": govmomi_pin()},
        "scale_topology": {"file": SCALE.name, "clusters": sum(len(dc.clusters) for dc in topo.datacenters),
                           "hosts": sum(len(c.hosts) for dc in topo.datacenters for c in dc.clusters),
                           "yaml_load_s": round(load_s, 3)},
        "scale_start_to_ready": {"process": ready("process")},
        "requirement": {"scale_ready_s": 5.0, "reset_ms": 200.0,
                        "vcsim_own_model_build_s_for_this_size": 45.7},
    }
    reason = docker_available()
    results["scale_start_to_ready"]["container"] = ready("container") if reason is None else {"skipped": reason}
    results["topologies"] = {
        "standard": per_topology(TOPOLOGIES / "standard.yaml", RESET_RUNS),
        "heterogeneous": per_topology(TOPOLOGIES / "heterogeneous.yaml", RESET_RUNS),
        "scale-1000x8": per_topology(SCALE, 3),
    }
    out = REPO / "bench" / "results" / "scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
