"""Bad input gets one clear line (issue 8): every value that cannot be used is refused before the run starts,
with the line below, exit status 4 and no traceback, and the report dir says the run did not start.

``BAD_INPUTS`` is the table of bad inputs and the first line each prints; ``{tmp}`` is the test's folder
(holding a file, a garbage CA bundle, a garbage topology and inventory) and ``{report}`` its report dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SELECT = "--certify runs every check of the catalogue: {} (drop it, or run without --certify)"

#: (what, command: "vcconform run" arguments or "pytest ..." arguments, environment, the line it prints)
BAD_INPUTS: list[tuple[str, list[str], dict[str, str], str]] = [
    ("--vcsim-timeout abc", ["--vcsim-timeout", "abc"], {},
     "vcconform: --vcsim-timeout 'abc': expected a number of seconds above 0"),
    ("--vcsim-timeout 0", ["--vcsim-timeout", "0"], {},
     "vcconform: --vcsim-timeout '0': expected a number of seconds above 0"),
    ("--check-timeout nan", ["--check-timeout", "nan"], {},
     "vcconform: --check-timeout 'nan': expected a number of seconds above 0"),
    ("VCCONFORM_CHECK_TIMEOUT=-5", [], {"VCCONFORM_CHECK_TIMEOUT": "-5"},
     "vcconform: VCCONFORM_CHECK_TIMEOUT='-5': expected a number of seconds above 0"),
    ("--seed abc", ["--seed", "abc"], {}, "vcconform: --seed 'abc': expected an integer"),
    ("VCCONFORM_SEED=abc", [], {"VCCONFORM_SEED": "abc"}, "vcconform: VCCONFORM_SEED='abc': expected an integer"),
    ("--eff-max-calls abc", ["--eff-max-calls", "abc"], {},
     "vcconform: --eff-max-calls 'abc': expected an integer of at least 1"),
    ("--eff-max-calls 0", ["--eff-max-calls", "0"], {},
     "vcconform: --eff-max-calls '0': expected an integer of at least 1"),
    ("--report-dir naming a file", ["--report-dir", "{tmp}/a-file"], {},
     "vcconform: --report-dir {tmp}/a-file: is a file, not a directory"),
    ("--vcenter-ca-file missing", ["--vcenter-ca-file", "{tmp}/absent.pem"], {},
     "vcconform: --vcenter-ca-file {tmp}/absent.pem: no such file"),
    ("--vcenter-ca-file garbage", ["--vcenter-ca-file", "{tmp}/garbage.pem"], {},
     "vcconform: --vcenter-ca-file {tmp}/garbage.pem: not a PEM CA bundle ([X509] PEM lib)"),
    ("--vcenter-ca-file not PEM", ["--vcenter-ca-file", "{tmp}/a-file"], {},
     "vcconform: --vcenter-ca-file {tmp}/a-file: not a PEM CA bundle (NO_CERTIFICATE_OR_CRL_FOUND)"),
    ("a driver module that calls sys.exit() on import", ["--driver", "tests.exits_on_import:Driver"], {},
     "vcconform: driver 'tests.exits_on_import:Driver': importing 'tests.exits_on_import' called sys.exit(3); "
     "a driver module must not exit when imported"),
    ("VCCONFORM_CERTIFY=enabled", [], {"VCCONFORM_CERTIFY": "enabled"},
     "vcconform: VCCONFORM_CERTIFY='enabled': expected on (1, true, yes, on) or off (0, false, no, off)"),
    ("--vcsim-backend vm", ["--vcsim-backend", "vm"], {},
     "vcconform: --vcsim-backend 'vm': expected one of process, container"),
    ("--topology missing", ["--topology", "{tmp}/absent.yaml"], {},
     "vcconform: {tmp}/absent.yaml: cannot read topology file: No such file or directory"),
    ("--heterogeneous-topology garbage", ["--heterogeneous-topology", "{tmp}/garbage.yaml"], {},
     "vcconform: {tmp}/garbage.yaml: datacenters: expected a list, got {{}}"),
    ("--requirement NOPE-1", ["--requirement", "NOPE-1"], {},
     "vcconform: --requirement NOPE-1: no such requirement (known: {requirements})"),
    ("--vcenter-url http://", ["--vcenter-url", "http://vc.example/sdk"], {},
     "vcconform: --vcenter-url 'http://vc.example/sdk': expected https://host[:port]/sdk"),
    ("--vcenter-url without a user", ["--vcenter-url", "https://127.0.0.1:9/sdk"], {},
     "vcconform: --vcenter-url needs --vcenter-username (the user to log in as)"),
    ("--vcenter-url without the password", ["--vcenter-url", "https://127.0.0.1:9/sdk", "--vcenter-username", "u",
                                            "--vcenter-password-env", "NO_SUCH_VARIABLE_VCCONFORM"], {},
     "vcconform: --vcenter-url needs the password in $NO_SUCH_VARIABLE_VCCONFORM, which is not set (or name "
     "another variable with --vcenter-password-env)"),
    ("--vcenter-inventory garbage", ["--vcenter-url", "https://127.0.0.1:9/sdk", "--vcenter-username", "u",
                                     "--vcenter-inventory", "{tmp}/garbage.yaml"], {"VCCONFORM_VCENTER_PASSWORD": "p"},
     "vcconform: --vcenter-inventory {tmp}/garbage.yaml: expected a YAML mapping with a 'clusters' list"),
    ("--driver-command naming no program", ["--driver-command", "no-such-driver --verbose"], {},
     "vcconform: --driver-command 'no-such-driver --verbose': no-such-driver is not on PATH (or not executable)"),
    ("--driver-command a file that is not executable", ["--driver-command", "./README.md"], {},
     "vcconform: --driver-command './README.md': ./README.md is not an executable file"),
    ("--driver-command ''", ["--driver-command", ""], {},
     "vcconform: --driver-command '': expected a program and its arguments"),
    ("VCCONFORM_DRIVER_COMMAND with an open quote", [], {"VCCONFORM_DRIVER_COMMAND": "bin/driver 'x"},
     "vcconform: VCCONFORM_DRIVER_COMMAND=\"bin/driver 'x\": cannot be split into words (No closing quotation)"),
    ("--driver and --driver-command", ["--driver", "tests.broken_drivers:Foo", "--driver-command", "python3"], {},
     "vcconform: --driver-command and --driver: give the driver as a class or as a command, not both"),
    ("--driver-timeout 0", ["--driver-timeout", "0"], {},
     "vcconform: --driver-timeout '0': expected a number of seconds above 0"),
    ("pytest --driver-command naming no program", ["pytest", "--driver-command", "no-such-driver"], {},
     "ERROR: vcconform: --driver-command 'no-such-driver': no-such-driver is not on PATH (or not executable)"),
    ("--certify -k", ["--certify", "-k", "nodes"], {}, "vcconform: " + SELECT.format("-k would leave checks out")),
    ("--certify -m", ["--certify", "-m", "resets"], {}, "vcconform: " + SELECT.format("-m would leave checks out")),
    ("--certify --deselect", ["--certify", "--deselect", "test_nodes.py::test_one_node_per_managed_cluster"], {},
     "vcconform: " + SELECT.format("--deselect would leave checks out")),
    ("--certify --lf", ["--certify", "--lf"], {}, "vcconform: " + SELECT.format("--lf would leave checks out")),
    ("--certify --ff", ["--certify", "--ff"], {}, "vcconform: " + SELECT.format("--ff would leave checks out")),
    ("--certify -x", ["--certify", "-x"], {}, "vcconform: " + SELECT.format("-x would stop early")),
    ("--certify --maxfail 3", ["--certify", "--maxfail", "3"], {},
     "vcconform: " + SELECT.format("--maxfail would stop early")),
    ("--certify --sw", ["--certify", "--sw"], {}, "vcconform: " + SELECT.format("--sw would stop early")),
    ("--certify --requirement", ["--certify", "--requirement", "NODE-01"], {},
     "vcconform: " + SELECT.format("--requirement would leave checks out")),
    ("--certify with a node id", ["--certify", "conformance/checks/test_nodes.py::test_one_node_per_managed_cluster"],
     {}, "vcconform: " + SELECT.format("'conformance/checks/test_nodes.py::test_one_node_per_managed_cluster' "
                                       "would leave checks out")),
    # The same refusals from the plugin, for plain pytest (pytest prefixes its usage errors with "ERROR: ").
    ("pytest --seed abc", ["pytest", "--seed", "abc"], {}, "ERROR: vcconform: --seed 'abc': expected an integer"),
    ("pytest VCCONFORM_CERTIFY=enabled", ["pytest"], {"VCCONFORM_CERTIFY": "enabled"},
     "ERROR: vcconform: VCCONFORM_CERTIFY='enabled': expected on (1, true, yes, on) or off (0, false, no, off)"),
    ("pytest --certify --lf", ["pytest", "--certify", "--lf"], {},
     "ERROR: vcconform: " + SELECT.format("--lf would leave checks out")),
    ("pytest --certify with a node id", ["pytest", "--certify", "{checks}/test_nodes.py::test_one_node"], {},
     "ERROR: vcconform: " + SELECT.format("'{checks}/test_nodes.py::test_one_node' would leave checks out")),
]


def run_bad(tmp_path: Path, argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str],
                                                                          dict[str, str]]:
    from conformance.requirements import REQUIREMENTS

    (tmp_path / "a-file").write_text("not a folder\n")
    (tmp_path / "garbage.pem").write_text("-----BEGIN NOTHING-----\n")
    (tmp_path / "garbage.yaml").write_text("version: 1\nname: x\ndatacenters: {}\n")
    report = tmp_path / "report"
    names = {"tmp": str(tmp_path), "report": str(report), "requirements": ", ".join(REQUIREMENTS),
             "checks": str(REPO / "conformance" / "checks")}
    argv = [a.format(**names) for a in argv]
    if argv[:1] == ["pytest"]:
        command = [sys.executable, "-m", "pytest", f"--rootdir={REPO / 'conformance' / 'checks'}",
                   "-o", f"cache_dir={tmp_path / 'cache'}", "--report-dir", str(report), *argv[1:]]
        if not any("::" in a for a in argv):
            command += ["--pyargs", "conformance.checks"]
    else:
        command = [sys.executable, "-m", "conformance.cli", "run", "--report-dir", str(report), *argv]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    return done, names


@pytest.mark.parametrize(("argv", "env", "line"), [pytest.param(a, e, x, id=what) for what, a, e, x in BAD_INPUTS])
def test_a_bad_input_is_one_line(tmp_path: Path, argv: list[str], env: dict[str, str], line: str) -> None:
    done, names = run_bad(tmp_path, argv, env)
    expected = line.format(**names)
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert done.returncode == 4, done.stdout[-2000:] + done.stderr[-2000:]
    assert lines == [expected], done.stderr
    assert "Traceback" not in done.stdout + done.stderr and "INTERNALERROR" not in done.stdout + done.stderr
    report = Path(names["report"]) / "report.json"
    if "--report-dir" not in argv:  # the report dir says why the run did not start
        data = json.loads(report.read_text())
        assert data["verdict"] == "INCOMPLETE" and data["exit_code"] == 4
        assert data["reasons"][0] == "did not start: " + expected.removeprefix("ERROR: ").removeprefix("vcconform: ")
