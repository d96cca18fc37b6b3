"""Start and stop the fake vCenter (containers/fakevc), as a local process or as a Docker container.

Both backends run the same binary with the same flags, listen on 127.0.0.1 only, and return the same
``Endpoint``. Ready means: the simulator wrote ready.json, its port accepts a connection and ``GET /about``
answers over verified TLS. Stopping removes the process or container (by pid or id, never by name) and
the state folder; the simulator also exits by itself when the process that started it is gone (-parent-pid
for a process; for a container, which has its own pid namespace, a named-pipe lifeline). The container is a
sandbox (conformance.sandbox: never root, no capabilities, read-only, limited), and every start first removes
what killed runs left behind (their containers and state folders).

The password reaches the simulator through a 0600 file in the state folder (0700), never the environment
or the command line; every file the harness writes there is 0600. ``Endpoint.status()`` and
``Endpoint.probe()`` say whether the simulator still runs and answers, so a dead one is named as such.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from conformance.masking import add_secret, mask
from conformance.sandbox import Lifeline, container_kwargs, owner_id, remove_leftovers, state_prefix
from conformance.topology import Topology, load_topology

__all__ = [
    "BACKENDS",
    "Endpoint",
    "SimulatorError",
    "default_binary",
    "default_image",
    "docker_available",
    "running_endpoints",
    "running_simulator",
    "start_simulator",
]

BACKENDS = ("process", "container")
REPO = Path(__file__).resolve().parent.parent
GO_MOD = REPO / "containers" / "fakevc" / "go.mod"
IMAGE_REPO = "vcconform/fakevc"
STATE_IN_CONTAINER = "/state"
USERNAME = "vcconform"
PASSWORD_FILE = "password"
#: How long ``Endpoint.probe`` waits for ``GET /about``: generous, a false "stopped answering" would blame
#: the infrastructure for a slow moment.
PROBE_TIMEOUT_S = 10.0

_running: list[Endpoint] = []
_running_lock = threading.Lock()


def running_endpoints() -> list[Endpoint]:
    """The simulators this process started and has not stopped yet (for liveness checks)."""
    with _running_lock:
        return list(_running)


def write_private(path: Path, data: str | bytes) -> None:
    """Write a file only its owner may read (0600), whatever the umask."""
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode otherwise
        f.write(raw)


def _process_state(pid: int) -> str | None:
    """The kernel's one-letter state of a process (R, S, D, T, Z...), None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _exit_text(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"code {code}"


class SimulatorError(RuntimeError):
    """The fake vCenter could not be started or stopped; the message is one line with a hint."""


@dataclass
class Endpoint:
    """A running fake vCenter: where it is, how to log in, and how to stop it."""

    url: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    ca_file: Path
    instance_uuid: str
    backend: str
    topology: Topology = field(repr=False)
    versions: dict[str, str]
    state_dir: Path
    _stop: Callable[[], None] = field(repr=False)
    _stopped: bool = field(default=False, repr=False)
    _status: Callable[[bool], str | None] = field(default=lambda fresh: None, repr=False)
    _kill: Callable[[], None] = field(default=lambda: None, repr=False)
    _logs: Callable[[], str] = field(default=lambda: "", repr=False)

    def stop(self, keep_logs_in: Path | None = None, tag: str = "") -> None:
        """Stop the simulator and remove its state folder, first copying its log (and SOAP trace, if any),
        masked and 0600, to ``keep_logs_in`` as simulator-<topology><tag>.log and
        simulator-trace-<topology><tag>.log. Safe to call twice, and from two threads."""
        with _running_lock:
            if self._stopped:
                return
            self._stopped = True
            with contextlib.suppress(ValueError):
                _running.remove(self)
        try:
            self._stop()
            if keep_logs_in is not None:
                keep_logs_in.mkdir(parents=True, exist_ok=True)
                for name, kept in (("fakevc.log", "simulator"), ("trace.log", "simulator-trace")):
                    if (self.state_dir / name).exists():
                        text = (self.state_dir / name).read_text(errors="replace")
                        write_private(keep_logs_in / f"{kept}-{self.topology.name}{tag}.log", mask(text))
        finally:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def status(self) -> str | None:
        """None while the simulator's process (or container) runs; otherwise one line saying what became of
        it: "fake vCenter exited (signal 9)", "fake vCenter stopped (SIGSTOP: process state T)". Cheap: no
        request is sent, so a watchdog may call it every second."""
        return None if self._stopped else self._status(False)

    def probe(self, timeout: float = PROBE_TIMEOUT_S) -> str | None:
        """``status()``, then whether ``GET /about`` answers within ``timeout`` seconds: None when alive."""
        dead = self.status()
        if dead is not None or self._stopped:
            return dead
        try:
            r = requests.get(f"https://{self.host}:{self.port}/about", verify=str(self.ca_file), timeout=timeout)
        except (OSError, requests.RequestException) as e:
            dead = None if self._stopped else self._status(True)  # it may have died (or paused) while we asked
            return dead or f"fake vCenter stopped answering (GET /about: {type(e).__name__})"
        return None if r.status_code < 500 else f"fake vCenter stopped answering (GET /about: HTTP {r.status_code})"

    def kill(self) -> None:
        """End a simulator that no longer serves (stopped or wedged) at once, so that every client blocked on
        it gets a closed connection instead of waiting; its log is kept for ``stop``."""
        if not self._stopped:
            self._kill()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the simulator wrote to its log (masked), for error messages and artifacts."""
        with contextlib.suppress(OSError):
            return mask("\n".join(self._logs().splitlines()[-lines:]))
        return ""


def govmomi_pin() -> str:
    """The govmomi release pinned in containers/fakevc/go.mod (the one place the pin lives)."""
    with contextlib.suppress(OSError):
        for line in GO_MOD.read_text().splitlines():
            parts = line.split()
            if "github.com/vmware/govmomi" in parts:
                return parts[parts.index("github.com/vmware/govmomi") + 1]
    return "unknown"


def default_binary() -> Path:
    """Where ``make simulator`` puts the binary, unless $VCCONFORM_FAKEVC_BINARY says otherwise."""
    return Path(os.environ.get("VCCONFORM_FAKEVC_BINARY") or REPO / ".cache" / "bin" / "fakevc")


def default_image() -> str:
    """The image ``make image`` builds from the current binary, unless $VCCONFORM_FAKEVC_IMAGE says otherwise.

    Its tag is the govmomi pin and the binary's content hash, so two checkouts never share a mutable tag.
    """
    explicit = os.environ.get("VCCONFORM_FAKEVC_IMAGE")
    if explicit:
        return explicit
    digest = "unbuilt"
    with contextlib.suppress(OSError):
        digest = hashlib.sha256(default_binary().read_bytes()).hexdigest()[:12]
    return f"{IMAGE_REPO}:{govmomi_pin()}-{digest}"


def docker_available(timeout: float = 3.0) -> str | None:
    """None when a Docker engine answers; otherwise the reason it does not."""
    try:
        import docker

        client = docker.from_env(timeout=int(timeout))
        try:
            client.ping()
        finally:
            client.close()
    except Exception as e:  # any failure means: no engine we can use
        return f"no Docker engine answers ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
    return None


def _first_line(text: str) -> str:
    for line in reversed(text.strip().splitlines()):
        if line.strip():
            return line.strip()
    return ""


def _fakevc_args(state_dir: str, listen: str, trace: bool) -> list[str]:
    args = ["-listen", listen, "-topology", f"{state_dir}/topology.json", "-state-dir", state_dir,
            "-username", USERNAME, "-password-file", f"{state_dir}/{PASSWORD_FILE}", "-parent-pid", str(os.getpid())]
    return [*args, "-trace"] if trace else args


@dataclass
class _Running:
    """What a backend hands back: the simulator's ready.json and how to stop, watch, kill and read it."""

    info: dict[str, Any]
    stop: Callable[[], None]
    status: Callable[[bool], str | None]  # fresh: ask the container engine now, not at most every few seconds
    kill: Callable[[], None]
    logs: Callable[[], str]


def _wait_ready(state: Path, alive: Callable[[], str | None], timeout: float) -> dict[str, Any]:
    """Wait for ready.json, an open port and an answer from /about; raise SimulatorError otherwise."""
    deadline = time.monotonic() + timeout
    ready = state / "ready.json"
    info: dict[str, Any] | None = None
    last = "ready.json not written yet"
    while time.monotonic() < deadline:
        dead = alive()
        if dead is not None:
            raise SimulatorError(dead)
        if info is None and ready.exists():
            info = json.loads(ready.read_text())
        if info is not None:
            try:  # a refused connection means the port is not open yet
                r = requests.get(f"https://127.0.0.1:{info['port']}/about", verify=str(state / "cert.pem"),
                                 timeout=2)
                if r.ok:
                    return info
                last = f"GET /about answered {r.status_code}"
            except (OSError, requests.RequestException) as e:
                last = f"{type(e).__name__}: {str(e)[:120]}"
        time.sleep(0.02)
    raise SimulatorError(f"fake vCenter not ready after {timeout:.0f}s ({last}). "
                         "Hint: run it by hand with -trace to see why, or raise --vcsim-timeout")


def _start_process(binary: Path, state: Path, env: dict[str, str], listen: str, trace: bool,
                   timeout: float) -> _Running:
    if not os.access(binary, os.X_OK):
        raise SimulatorError(f"fake vCenter binary not found at {binary}. "
                             "Hint: run `make simulator`, or set VCCONFORM_FAKEVC_BINARY")
    log = os.fdopen(os.open(state / "fakevc.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
    # A session of its own: Ctrl-C in the terminal reaches pytest, which then stops us in order.
    proc = subprocess.Popen([str(binary), *_fakevc_args(str(state), listen, trace)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **env, "TMPDIR": str(state)}, start_new_session=True)

    def alive() -> str | None:
        if proc.poll() is None:
            return None
        text = (state / "fakevc.log").read_text(errors="replace")
        return f"fake vCenter exited with code {proc.returncode}: {_first_line(text) or 'no output'}"

    def status(fresh: bool = False) -> str | None:
        code = proc.poll()
        if code is not None:
            return f"fake vCenter exited ({_exit_text(code)})"
        if _process_state(proc.pid) in ("T", "t"):
            return "fake vCenter stopped (SIGSTOP: process state T)"
        return None

    def kill() -> None:
        if proc.poll() is None:
            proc.kill()  # SIGKILL ends a stopped process too
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()

    def logs() -> str:
        return (state / "fakevc.log").read_text(errors="replace")

    try:
        return _Running(_wait_ready(state, alive, timeout), stop, status, kill, logs)
    except BaseException:
        stop()
        raise


def _start_container(image: str, state: Path, env: dict[str, str], listen: str, trace: bool,
                     timeout: float) -> _Running:
    # Ryuk (testcontainers' reaper) is an image from a registry; we clean up ourselves instead.
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    import docker
    from testcontainers.core.container import DockerContainer

    reason = docker_available()
    if reason:
        raise SimulatorError(f"container backend: {reason}. Hint: start dockerd, or use --vcsim-backend=process")
    client = docker.from_env()
    try:
        remove_leftovers(client)  # containers and state folders of runs that were killed
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise SimulatorError(f"container backend: image {image} not found (images are built, never pulled). "
                             "Hint: run `make image`") from None
    finally:
        client.close()

    # The container has its own pid namespace, where -parent-pid would name another process: a named pipe
    # this process holds open is its lifeline instead (sandbox.Lifeline).
    args = _fakevc_args(STATE_IN_CONTAINER, listen, trace)
    if "-parent-pid" in args:
        i = args.index("-parent-pid")
        del args[i:i + 2]
    lifeline = Lifeline(state)
    container = (
        DockerContainer(image)
        .with_command([*args, "-lifeline", f"{STATE_IN_CONTAINER}/lifeline"])
        .with_volume_mapping(str(state), STATE_IN_CONTAINER, "rw")
        # Never root, no capabilities, read-only but for the state folder (TMPDIR too), limits, labels.
        .with_kwargs(**container_kwargs(state, owner_id()))
        .with_env("TMPDIR", STATE_IN_CONTAINER)
    )
    for k, v in env.items():
        container.with_env(k, v)
    try:
        container.start()
    except BaseException:
        lifeline.close()  # a container that was only created goes with its lifeline (or the next run's sweep)
        raise
    cid = container.get_wrapped_container().id

    def logs() -> str:
        with contextlib.suppress(Exception):
            out, err = container.get_logs()
            return (out + err).decode(errors="replace")
        return ""

    def alive() -> str | None:
        try:
            c = container.get_wrapped_container()
            c.reload()
            if c.status in ("created", "running"):
                return None
            return f"fake vCenter container {cid[:12]} {c.status}: {_first_line(logs()) or 'no output'}"
        except docker.errors.NotFound:
            return f"fake vCenter container {cid[:12]} is gone (it exited at once; try the process backend)"

    pid = 0
    checked = 0.0

    def status(fresh: bool = False) -> str | None:
        nonlocal pid, checked
        # The container's process is on the host's pid namespace view of dockerd (State.Pid): reading its
        # state is cheap; the engine is asked at most every few seconds (a paused container looks alive).
        if pid and _process_state(pid) in ("T", "t"):
            return f"fake vCenter container {cid[:12]} stopped (SIGSTOP: process state T)"
        if not fresh and pid and _process_state(pid) not in (None, "Z") and time.monotonic() - checked < 5:
            return None
        checked = time.monotonic()
        try:
            c = container.get_wrapped_container()
            c.reload()
        except docker.errors.NotFound:  # auto-removed once it exited: its exit code went with it
            return f"fake vCenter container {cid[:12]} exited (and was removed)"
        except docker.errors.APIError:
            return None  # the engine's trouble, not the simulator's
        st = c.attrs.get("State", {})
        pid = int(st.get("Pid") or 0)
        if st.get("Paused"):
            return f"fake vCenter container {cid[:12]} paused"
        if c.status in ("created", "running"):
            return None
        oom = " (out of memory)" if st.get("OOMKilled") else ""
        return f"fake vCenter container {cid[:12]} exited (code {st.get('ExitCode')}){oom}"

    def save_logs() -> None:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            text = logs()
            if text:
                write_private(state / "fakevc.log", text)

    def kill() -> None:
        save_logs()  # an auto-removed container takes its logs with it
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            container.get_wrapped_container().kill()

    def stop() -> None:
        save_logs()
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            container.get_wrapped_container().unpause()
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            container.stop()  # removes the container by id
        lifeline.close()

    def kept_logs() -> str:
        return logs() or (state / "fakevc.log").read_text(errors="replace")

    try:
        running = _Running(_wait_ready(state, alive, timeout), stop, status, kill, kept_logs)
        status()  # learn the pid
        return running
    except BaseException:
        stop()
        raise


def start_simulator(topology: str | Path | Topology, backend: str = "process", *,
                    binary: Path | None = None, image: str | None = None, timeout: float = 30.0,
                    trace: bool = False) -> Endpoint:
    """Start a fake vCenter loaded with ``topology`` and return its endpoint once it is ready.

    Raises TopologyError for a bad topology file, SimulatorError when the simulator cannot start.
    """
    if backend not in BACKENDS:
        raise SimulatorError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    topo = topology if isinstance(topology, Topology) else load_topology(topology)
    remove_leftovers()  # state folders of killed runs (which may hold a TLS key)
    state = Path(tempfile.mkdtemp(prefix=state_prefix()))  # 0700; the name says whose it is
    try:
        write_private(state / "topology.json", topo.to_json())
        password = secrets.token_urlsafe(18)
        add_secret(password)
        write_private(state / PASSWORD_FILE, password)
        env: dict[str, str] = {}
        listen = "127.0.0.1:0"
        if backend == "process":
            run = _start_process(binary or default_binary(), state, env, listen, trace, timeout)
        else:
            run = _start_container(image or default_image(), state, env, listen, trace, timeout)
    except BaseException:
        shutil.rmtree(state, ignore_errors=True)
        raise
    info = run.info
    endpoint = Endpoint(url=f"https://127.0.0.1:{info['port']}/sdk", host="127.0.0.1", port=int(info["port"]),
                        username=USERNAME, password=password, ca_file=state / "cert.pem",
                        instance_uuid=info["instance_uuid"], backend=backend, topology=topo,
                        versions=dict(info.get("versions", {})), state_dir=state, _stop=run.stop,
                        _status=run.status, _kill=run.kill, _logs=run.logs)
    with _running_lock:
        _running.append(endpoint)
    return endpoint


@contextlib.contextmanager
def running_simulator(topology: str | Path | Topology, backend: str = "process",
                      **kwargs: Any) -> Iterator[Endpoint]:
    """``start_simulator`` as a context manager: the simulator is stopped however the block ends."""
    endpoint = start_simulator(topology, backend, **kwargs)
    try:
        yield endpoint
    finally:
        endpoint.stop()
