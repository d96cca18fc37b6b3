"""The ``vcconform`` command: run the suite against a driver, check a topology file, print the requirement
catalogue and the coverage matrix, print versions."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from pathlib import Path

from conformance.drivers import REFERENCE_DRIVER, DriverLoadError, load_driver_class
from conformance.harness import default_binary, govmomi_pin
from conformance.topology import TopologyError, load_topology


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    import pytest

    try:  # fail before pytest starts, with the one line that says what to fix
        load_driver_class(args.driver)
        if args.topology:
            load_topology(args.topology)
    except (DriverLoadError, TopologyError) as e:
        print(f"vcconform: {e}", file=sys.stderr)
        return 4
    report_dir = Path(args.report_dir).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    checks = Path(__file__).resolve().parent / "checks"
    # Options as --name=value: pytest's early pass must never take a value for a path to collect. The
    # checks' own folder is the root, so no conftest.py or ini file of the working directory joins in.
    argv = ["--pyargs", "conformance.checks", "-p", "no:cacheprovider", f"--rootdir={checks}",
            "-W", "ignore::pytest.PytestAssertRewriteWarning",
            f"--confcutdir={checks}", f"--junitxml={report_dir / 'junit.xml'}", f"--report-dir={report_dir}",
            f"--driver={args.driver}"]
    if args.vcsim_backend:
        argv.append(f"--vcsim-backend={args.vcsim_backend}")
    if args.topology:
        argv.append(f"--topology={Path(args.topology).resolve()}")
    if args.profile:
        argv.append(f"--profile={args.profile}")
    argv += [f"--requirement={rid}" for rid in args.requirement]
    return int(pytest.main(argv + extra))


def _topology(args: argparse.Namespace) -> int:
    try:
        topo = load_topology(args.file)
    except TopologyError as e:
        print(f"vcconform: {e}", file=sys.stderr)
        return 4
    hosts = sum(len(c.hosts) for dc in topo.datacenters for c in dc.clusters)
    clusters = sum(len(dc.clusters) for dc in topo.datacenters)
    print(f"{args.file}: topology {topo.name!r} is valid: {len(topo.datacenters)} datacenter(s), "
          f"{clusters} cluster(s), {hosts} clustered host(s)")
    return 0


def check_ids() -> dict[str, list[str]]:
    """Requirement id -> the checks (module::function) that cite it, read from the check modules."""
    import importlib
    import pkgutil

    import conformance.checks

    out: dict[str, list[str]] = {}
    for info in pkgutil.iter_modules(conformance.checks.__path__):
        module = importlib.import_module(f"conformance.checks.{info.name}")
        for name, fn in sorted(vars(module).items()):
            for mark in getattr(fn, "pytestmark", []):
                if name.startswith("test_") and mark.name == "requirement":
                    out.setdefault(mark.args[0], []).append(f"{info.name}.py::{name}")
    return out


def requirements_doc() -> str:
    """docs/requirements.md: the requirement catalogue, then the coverage matrix."""
    from conformance.coverage import coverage_markdown, covered_rows
    from conformance.requirements import catalogue_markdown

    return catalogue_markdown(check_ids()) + "\n" + coverage_markdown(covered_rows())


def _requirements(_: argparse.Namespace) -> int:
    print(requirements_doc(), end="")
    return 0


def _coverage(args: argparse.Namespace) -> int:
    from conformance.coverage import ROWS, coverage_markdown, coverage_problems, covered_rows, grid_text

    covered = covered_rows()
    if args.json:
        print(json.dumps({r: covered.get(r, []) for r in ROWS}, indent=2))
    elif args.grid:
        print(grid_text(covered), end="")
    else:
        print(coverage_markdown(covered), end="")
    problems = coverage_problems(covered)
    for p in problems:
        print(f"vcconform: coverage: {p}", file=sys.stderr)
    return 1 if problems else 0


def _version(_: argparse.Namespace) -> int:
    print(json.dumps({"suite": importlib.metadata.version("vcconform"), "govmomi_pin": govmomi_pin(),
                      "fakevc_binary": str(default_binary())}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vcconform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the conformance checks; other arguments go to pytest")
    run.add_argument("--driver", default=REFERENCE_DRIVER, help="package.module:Class of the driver under test")
    run.add_argument("--vcsim-backend", choices=("process", "container"), help="how to run the fake vCenter")
    run.add_argument("--topology", help="topology file (default: the standard profile)")
    run.add_argument("--report-dir", default="build/conformance", help="where junit.xml and report.json go")
    run.add_argument("--requirement", action="append", default=[], metavar="ID",
                     help="run only this requirement's checks (repeatable)")
    run.add_argument("--profile", choices=("standard", "scale"),
                     help="the verdict that decides: standard (default) or scale (efficiency budgets mandatory)")
    topo = sub.add_parser("topology", help="check a topology file and summarize it")
    topo.add_argument("file")
    sub.add_parser("requirements", help="print the requirement catalogue and coverage matrix (docs/requirements.md)")
    cov = sub.add_parser("coverage", help="print the coverage matrix: config values, states and methods x checks")
    shape = cov.add_mutually_exclusive_group()
    shape.add_argument("--grid", action="store_true", help="rows x checks as a grid")
    shape.add_argument("--json", action="store_true", help="row -> checks as JSON")
    sub.add_parser("version", help="print versions")
    args, extra = parser.parse_known_args(argv)
    if args.command == "run":
        return _run(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    commands = {"topology": _topology, "requirements": _requirements, "coverage": _coverage, "version": _version}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
