"""The ``vcconform`` command: run the suite against a driver, check a topology file, print the requirement
catalogue and the coverage matrix, print versions."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
from pathlib import Path
from typing import Any

from conformance.drivers import REFERENCE_DRIVER
from conformance.harness import default_binary, govmomi_pin
from conformance.topology import TopologyError, load_topology

#: pytest options that select checks or stop early: a certification refuses them (spelt as on the command line).
_SELECTING = ("-k", "-m", "--deselect", "--lf", "--last-failed", "--ff", "--failed-first", "-x", "--exitfirst",
              "--maxfail", "--sw", "--stepwise", "--sw-skip", "--stepwise-skip", "--ignore", "--ignore-glob")


def _settings(args: argparse.Namespace, extra: list[str]) -> Any:
    """The plugin's options as this run will see them (its own arguments, pytest's, the environment)."""
    from conformance import plugin

    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for o in plugin.OPTIONS:
        p.add_argument(o.flag, dest=o.key, action="store_true" if o.flag_only else "store", default=None)
    known, _ = p.parse_known_args(extra)
    own = {"--driver": args.driver, "--driver-command": args.driver_command, "--vcsim-backend": args.vcsim_backend,
           "--topology": args.topology, "--report-dir": args.report_dir}

    def get(o: Any) -> tuple[str | None, str | None]:
        value = getattr(known, o.key) or own.get(o.flag)
        if value:
            return ("1" if value is True else str(value)), o.flag
        if os.environ.get(o.env):
            return os.environ[o.env], o.env
        return o.default, None
    return get


#: Options whose next argument is their value (not a test path): pytest's and xdist's common ones.
_TAKES_VALUE = ("-n", "-p", "-o", "-c", "-W", "-k", "-m", "--maxfail", "--deselect", "--ignore", "--ignore-glob",
                "--tb", "--junitxml", "--junit-xml", "--rootdir", "--confcutdir", "--basetemp", "--dist",
                "--log-level", "--durations", "--override-ini", "--maxprocesses", "--max-worker-restart")


def _selection(args: argparse.Namespace, extra: list[str]) -> str | None:
    """The first selecting or early-stopping argument, as spelt (pytest knows no --lf here: no cache)."""
    from conformance import plugin

    if args.requirement:
        return "--requirement"
    takes_value = {*_TAKES_VALUE, *(o.flag for o in plugin.OPTIONS if not o.flag_only)}
    value_next = False
    for token in extra:
        if value_next:
            value_next = False
            continue
        name = token.split("=", 1)[0]
        if name in _SELECTING:
            return name
        if not token.startswith("--") and token.startswith(("-k", "-m")):
            return token[:2]
        if token.startswith("-") and not token.startswith("--") and "x" in token[1:] and token[1:].isalpha():
            return "-x"  # -x within a cluster of short switches (-qx)
        if token in takes_value:
            value_next = True
        elif not token.startswith("-") and ("::" in token or token.endswith(".py")):
            return repr(token)  # a test file or node id (the plugin refuses what this guess misses)
    return None


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    import pytest

    from conformance import plugin
    from conformance.report import ReportDirError

    # Fail before pytest starts, with the one line that says what to fix; but first clear the report dir,
    # so that no earlier run's report survives a run that did not start.
    get = _settings(args, extra)
    certify = (get(plugin.option("--certify"))[0] or "").strip().lower() in plugin.TRUE_WORDS
    junit = next((t.split("=", 1)[1] for t in extra if t.startswith("--junitxml=")), None)
    try:
        plugin.start_report(args.report_dir, junit, certify)
        plugin.refuse_empty_command(args.driver_command)
        plugin.check_settings(get, requirements=args.requirement)
        selection = _selection(args, extra) if certify else None
        if selection:
            raise plugin.SettingError(plugin.refuse_selection(selection))
    except ReportDirError as e:
        print(f"vcconform: {e}", file=sys.stderr)
        return 4
    except plugin.SettingError as e:
        plugin.did_not_start(args.report_dir, certify, str(e))
        print(f"vcconform: {e}", file=sys.stderr)
        return 4
    report_dir = Path(args.report_dir).resolve()
    checks = Path(__file__).resolve().parent / "checks"
    # Options as --name=value: pytest's early pass must never take a value for a path to collect. The
    # checks' own folder is the root, so no conftest.py or ini file of the working directory joins in.
    argv = ["--pyargs", "conformance.checks", "-p", "no:cacheprovider", f"--rootdir={checks}",
            "-W", "ignore::pytest.PytestAssertRewriteWarning",
            f"--confcutdir={checks}", f"--junitxml={report_dir / 'junit.xml'}", f"--report-dir={report_dir}"]
    if args.driver:
        argv.append(f"--driver={args.driver}")
    if args.driver_command:
        argv.append(f"--driver-command={args.driver_command}")
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
    run.add_argument("--driver", help=f"package.module:Class of the driver under test (default {REFERENCE_DRIVER})")
    run.add_argument("--driver-command", metavar="'PROGRAM ARGS'",
                     help="the driver under test as a process speaking the driver protocol (docs/driver-protocol.md)")
    run.add_argument("--vcsim-backend", metavar="process|container", help="how to run the fake vCenter")
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
