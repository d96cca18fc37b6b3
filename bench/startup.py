"""Benchmark: fake vCenter start-to-ready per backend, and the wall time of a second `make conformance`.

Writes bench/results/startup.json. Run with `make bench` (never part of `make test`: numbers belong here,
not in timed assertions).
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from conformance.harness import docker_available, govmomi_pin, start_simulator

REPO = Path(__file__).resolve().parent.parent
STANDARD = REPO / "fixtures" / "topologies" / "standard.yaml"
RUNS = 10


def start_to_ready(backend: str) -> dict[str, float]:
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        endpoint = start_simulator(STANDARD, backend)
        times.append(time.perf_counter() - t)
        endpoint.stop()
    return {"runs": RUNS, "median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3)}


def make_conformance_second_run() -> float:
    subprocess.run(["make", "-s", "conformance"], cwd=REPO, check=True, capture_output=True)
    t = time.perf_counter()
    subprocess.run(["make", "-s", "conformance"], cwd=REPO, check=True, capture_output=True)
    return round(time.perf_counter() - t, 2)


def main() -> int:
    results: dict[str, object] = {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                    "govmomi": govmomi_pin()},
        "topology": STANDARD.name,
        "start_to_ready": {"process": start_to_ready("process")},
    }
    reason = docker_available()
    results["start_to_ready"]["container"] = (  # type: ignore[index]  # a dict, built above
        start_to_ready("container") if reason is None else {"skipped": reason})
    results["make_conformance_second_run_s"] = make_conformance_second_run()
    out = REPO / "bench" / "results" / "startup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
