"""Load, check and normalize the topology files in fixtures/topologies/.

A topology file describes the inventory the fake vCenter starts with. This module is the one place that
reads the YAML: it reports the first mistake as one line naming the file, the field and what is expected,
expands the shorthands (host profiles, ``count``), and writes the normalized JSON that the Go simulator
(containers/fakevc) consumes. The schema is documented in docs/topology.md.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ClusterSpec",
    "DatacenterSpec",
    "DatastoreSpec",
    "HostSpec",
    "Topology",
    "TopologyError",
    "load_topology",
]

SCHEMA_VERSION = 1
#: vCenter's own limit on the objects in one RetrievePropertiesEx answer; the rest follows a token.
DEFAULT_PAGE_SIZE = 100
CONNECTION_STATES = ("connected", "disconnected", "notResponding")
DATASTORE_MAINTENANCE = ("normal", "enteringMaintenance", "inMaintenance")
MIB = 1024 * 1024
DATASTORE_TYPES = ("VMFS", "NFS", "NFS41", "vsan", "VVOL")
HARDWARE_FIELDS = ("cpu_sockets", "cpu_cores", "cpu_threads", "cpu_mhz")
MEMORY_FIELDS = ("memory_gb", "memory_mb", "memory_bytes")
OVERHEAD_FIELDS = ("overhead_cpu_mhz", "overhead_memory_mb")
COUNTER = re.compile(r"\{i(?::([^{}]*))?\}")  # {i} or {i:03d} in names that come with a count


class TopologyError(ValueError):
    """A topology file is unreadable or wrong; the message is one line naming file, field and fix."""


@dataclass(frozen=True)
class HostSpec:
    name: str
    cpu_sockets: int
    cpu_cores: int
    cpu_threads: int
    cpu_mhz: int
    memory_mb: int
    connection_state: str = "connected"
    maintenance: bool = False
    #: The hypervisor's share of the host (MHz, MiB): left out of the cluster's effective figures and in use on
    #: a connected host even when it runs no VM. None: the default (see default_overhead).
    overhead_cpu_mhz: int | None = None
    overhead_memory_mb: int | None = None
    memory_bytes: int = 0  # the exact size when it is not whole MiB (memory_mb is then its floor); 0: memory_mb

    def __post_init__(self) -> None:
        cpu, memory = default_overhead(self.cpu_cores, self.cpu_mhz, self.memory_mb)
        if self.overhead_cpu_mhz is None:
            object.__setattr__(self, "overhead_cpu_mhz", cpu)
        if self.overhead_memory_mb is None:
            object.__setattr__(self, "overhead_memory_mb", memory)

    @property
    def memory_size(self) -> int:
        """The host's memory in bytes (summary.hardware.memorySize)."""
        return self.memory_bytes or self.memory_mb * MIB


def default_overhead(cores: int, mhz: int, memory_mb: int) -> tuple[int, int]:
    """The hypervisor's share of a host when the topology does not give it: 2 % of its CPU capacity, and
    1 GiB plus 1 % of its memory (never more than half of it), roughly what an idle ESXi host uses."""
    return cores * mhz // 50, min(memory_mb // 2, 1024 + memory_mb // 100)


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    hosts: tuple[HostSpec, ...]
    folder: tuple[str, ...] = ()  # folders between the datacenter's host folder and the cluster
    resource_pools: tuple[str, ...] = ()  # pool paths below the root pool ("nova", "tenants/nova")


@dataclass(frozen=True)
class DatastoreSpec:
    name: str
    type: str
    capacity_mb: int
    free_mb: int
    hosts: tuple[str, ...]
    accessible: bool = True
    maintenance: str = "normal"  # summary.maintenanceMode: normal, enteringMaintenance, inMaintenance


@dataclass(frozen=True)
class DatacenterSpec:
    name: str
    clusters: tuple[ClusterSpec, ...]
    standalone_hosts: tuple[HostSpec, ...]
    datastores: tuple[DatastoreSpec, ...]
    folder: tuple[str, ...] = ()  # folders between the root folder and the datacenter


@dataclass(frozen=True)
class Topology:
    """A normalized topology: every default filled in, every count expanded."""

    name: str
    source: str
    datacenters: tuple[DatacenterSpec, ...]
    digest: str = field(default="", compare=False)
    #: The most objects one RetrievePropertiesEx answer holds; the rest follows page by page.
    page_size: int = DEFAULT_PAGE_SIZE

    def cluster_paths(self) -> list[str]:
        """Inventory paths of every cluster, folders included, e.g. ``/DC0/host/DC0_C0`` or
        ``/europe/DC-EU/host/prod/east/C0``."""
        return ["/" + "/".join((*dc.folder, dc.name, "host", *c.folder, c.name))
                for dc in self.datacenters for c in dc.clusters]

    def to_json(self) -> str:
        """The form containers/fakevc reads with -topology."""
        data = asdict(self)
        del data["digest"]
        return json.dumps(data, indent=1)


def load_topology(path: str | Path) -> Topology:
    """Read a topology file; raise TopologyError with one clear line on any mistake."""
    import hashlib

    p = Path(path)
    try:
        raw_bytes = p.read_bytes()
    except OSError as e:
        raise TopologyError(f"{p}: cannot read topology file: {e.strerror or e}") from None
    try:
        raw = yaml.safe_load(raw_bytes)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise TopologyError(f"{p}: not valid YAML{where}: {problem}") from None
    topo = _Parser(str(p)).topology(raw)
    return Topology(topo.name, topo.source, topo.datacenters, hashlib.sha256(raw_bytes).hexdigest(), topo.page_size)


class _Parser:
    """Walks the raw YAML, keeping the path of the field being read for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, expected: str, got: Any = None, *, show_got: bool = True) -> TopologyError:
        tail = f", got {got!r}" if show_got else ""
        return TopologyError(f"{self.source}: {where}: expected {expected}{tail}")

    def mapping(self, value: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where or "top level", "a mapping", value)
        for key in value:
            if key not in required and key not in optional:
                allowed = ", ".join((*required, *optional))
                raise self.fail(f"{where}.{key}".lstrip("."), f"one of the fields {allowed}", show_got=False)
        for key in required:
            if key not in value:
                raise self.fail(f"{where}.{key}".lstrip("."), "this field (it is required)", show_got=False)
        return value

    def seq(self, value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(where, "a list", value)
        return value

    def name(self, value: Any, where: str) -> str:
        # vCenter's entity names: non-empty, at most 80 characters; it escapes '/', '\' and '%' (%2f, %5c, %25),
        # so a topology that used them would not name the object it creates.
        if (not isinstance(value, str) or not value.strip() or len(value) > 80
                or any(ch in value for ch in "/\\%") or not value.isprintable()):
            raise self.fail(where, "a non-empty name of at most 80 printable characters without '/', '\\' or '%'",
                            value)
        return value

    def folder(self, value: Any, where: str) -> tuple[str, ...]:
        """A folder path such as ``prod/east``: names separated by '/'."""
        if value is None:
            return ()
        if not isinstance(value, str) or not value.strip("/").strip():
            raise self.fail(where, "a folder path such as prod/east", value)
        parts = value.strip("/").split("/")
        if any(not p.strip() for p in parts):
            raise self.fail(where, "a folder path without empty names (prod/east)", value)
        return tuple(parts)

    def expand(self, pattern: str, n: int, where: str) -> str:
        """The name for the n-th of a count: {i} becomes n, {i:03d} zero-padded."""
        def sub(m: re.Match[str]) -> str:
            try:
                return format(n, m.group(1) or "")
            except ValueError:
                raise self.fail(where, "{i} or {i:<format>} such as {i:03d}", m.group(0)) from None
        return COUNTER.sub(sub, pattern)

    def place(self, taken: dict[tuple[str, ...], dict[str, str]], parent: tuple[str, ...], name: str, kind: str,
              where: str) -> None:
        """Register an inventory name in its folder; two things of one name cannot share a folder."""
        names = taken.setdefault(parent, {})
        if names.get(name, kind) != kind or (kind != "folder" and name in names):
            where_ = "/".join(parent) or "the top"
            raise self.fail(where, f"a name not used twice in folder {where_}", name)
        names[name] = kind

    def integer(self, value: Any, where: str, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(where, f"a whole number >= {minimum}", value)
        return value

    def choice(self, value: Any, where: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.fail(where, "one of " + ", ".join(choices), value)
        return str(value)

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, "true or false", value)
        return value

    def topology(self, raw: Any) -> Topology:
        doc = self.mapping(raw, "", ("version", "name", "datacenters"), ("host_profiles", "page_size"))
        if doc["version"] != SCHEMA_VERSION:
            raise self.fail("version", str(SCHEMA_VERSION), doc["version"])
        name = self.name(doc["name"], "name")
        raw_profiles = doc.get("host_profiles") or {}
        if not isinstance(raw_profiles, dict):
            raise self.fail("host_profiles", "a mapping of profile name to hardware", raw_profiles)
        profiles = {pname: self.hardware(prof, f"host_profiles.{pname}", need_all=True)
                    for pname, prof in raw_profiles.items()}
        self.profiles = profiles
        self.host_names: set[str] = set()
        dcs = [self.datacenter(dc, f"datacenters[{i}]") for i, dc in enumerate(self.seq(doc["datacenters"],
                                                                                       "datacenters"))]
        if not dcs:
            raise self.fail("datacenters", "at least one datacenter", [])
        seen: set[str] = set()
        root: dict[tuple[str, ...], dict[str, str]] = {}
        for i, dc in enumerate(dcs):
            if dc.name in seen:
                raise self.fail(f"datacenters[{i}].name", "a name no other datacenter has", dc.name)
            seen.add(dc.name)
            for depth, part in enumerate(dc.folder):
                self.place(root, dc.folder[:depth], part, "folder", f"datacenters[{i}].folder")
            self.place(root, dc.folder, dc.name, "datacenter", f"datacenters[{i}].name")
        page_size = self.integer(doc.get("page_size", DEFAULT_PAGE_SIZE), "page_size")
        return Topology(name, self.source, tuple(dcs), page_size=page_size)

    def hardware(self, raw: Any, where: str, *, need_all: bool) -> dict[str, int]:
        optional = (*HARDWARE_FIELDS, *MEMORY_FIELDS, *OVERHEAD_FIELDS)
        m = self.mapping(raw, where, (), optional)
        hw = {k: self.integer(m[k], f"{where}.{k}") for k in HARDWARE_FIELDS if k in m}
        hw.update({k: self.integer(m[k], f"{where}.{k}", minimum=0) for k in OVERHEAD_FIELDS if k in m})
        given = [k for k in MEMORY_FIELDS if k in m]
        if len(given) > 1:
            raise self.fail(f"{where}.{given[1]}", "one of memory_gb, memory_mb or memory_bytes, not several",
                            show_got=False)
        if "memory_gb" in m:
            hw["memory_mb"] = self.integer(m["memory_gb"], f"{where}.memory_gb") * 1024
        elif "memory_mb" in m:
            hw["memory_mb"] = self.integer(m["memory_mb"], f"{where}.memory_mb")
        elif "memory_bytes" in m:
            exact = self.integer(m["memory_bytes"], f"{where}.memory_bytes", minimum=MIB)
            hw["memory_mb"], hw["memory_bytes"] = exact // MIB, exact
        if need_all:
            for k in (*HARDWARE_FIELDS, "memory_mb"):
                if k not in hw:
                    what = "memory_gb or memory_mb" if k == "memory_mb" else k
                    raise self.fail(f"{where}.{what}", "this field (every host needs it)", show_got=False)
            if not hw["cpu_sockets"] <= hw["cpu_cores"] <= hw["cpu_threads"]:
                raise self.fail(f"{where}.cpu_threads", "cpu_sockets <= cpu_cores <= cpu_threads",
                                (hw["cpu_sockets"], hw["cpu_cores"], hw["cpu_threads"]))
            capacity = hw["cpu_cores"] * hw["cpu_mhz"]
            if hw.get("overhead_cpu_mhz", 0) >= capacity:
                raise self.fail(f"{where}.overhead_cpu_mhz", f"less than the host's {capacity} MHz",
                                hw["overhead_cpu_mhz"])
            if hw.get("overhead_memory_mb", 0) >= hw["memory_mb"]:
                raise self.fail(f"{where}.overhead_memory_mb", f"less than the host's {hw['memory_mb']} MiB",
                                hw["overhead_memory_mb"])
        return hw

    def hosts(self, raw: Any, where: str, prefix: str) -> list[HostSpec]:
        out: list[HostSpec] = []
        for i, entry in enumerate(self.seq(raw, where)):
            w = f"{where}[{i}]"
            m = self.mapping(entry, w, (), ("name", "profile", "count", "connection_state", "maintenance",
                                            *HARDWARE_FIELDS, *MEMORY_FIELDS, *OVERHEAD_FIELDS))
            count = self.integer(m.get("count", 1), f"{w}.count")
            if "name" in m and count != 1:
                raise self.fail(f"{w}.name", "no name when count is given (names are generated)",
                                show_got=False)
            hw: dict[str, int] = {}
            if "profile" in m:
                if m["profile"] not in self.profiles:
                    known = ", ".join(self.profiles) or "none defined"
                    raise self.fail(f"{w}.profile", f"a profile from host_profiles ({known})", m["profile"])
                hw.update(self.profiles[m["profile"]])
            own = {k: v for k, v in m.items() if k in (*HARDWARE_FIELDS, *MEMORY_FIELDS, *OVERHEAD_FIELDS)}
            if own:
                if any(k in own for k in MEMORY_FIELDS):
                    hw.pop("memory_mb", None)
                    hw.pop("memory_bytes", None)
                hw.update(self.hardware(own, w, need_all=False))
            exact = hw.pop("memory_bytes", 0)  # checked above; memory_mb is its floor
            hw = {**self.hardware(hw, w, need_all=True), **({"memory_bytes": exact} if exact else {})}
            state = self.choice(m.get("connection_state", "connected"), f"{w}.connection_state",
                                CONNECTION_STATES)
            maint = self.boolean(m.get("maintenance", False), f"{w}.maintenance")
            for _ in range(count):
                name = self.name(m["name"], f"{w}.name") if "name" in m else f"{prefix}_H{len(out)}"
                if name in self.host_names:
                    raise self.fail(f"{w}.name", "a host name used nowhere else in the file", name)
                self.host_names.add(name)
                out.append(HostSpec(name=name, connection_state=state, maintenance=maint, **hw))
        return out

    def datacenter(self, raw: Any, where: str) -> DatacenterSpec:
        m = self.mapping(raw, where, ("name",), ("folder", "clusters", "standalone_hosts", "datastores"))
        dc = self.name(m["name"], f"{where}.name")
        dc_folder = self.folder(m.get("folder"), f"{where}.folder")
        clusters: list[ClusterSpec] = []
        taken: dict[tuple[str, ...], dict[str, str]] = {}  # host folder path -> name -> kind
        for i, entry in enumerate(self.seq(m.get("clusters"), f"{where}.clusters")):
            w = f"{where}.clusters[{i}]"
            c = self.mapping(entry, w, ("name",), ("hosts", "count", "folder", "resource_pools"))
            count = self.integer(c.get("count", 1), f"{w}.count")
            pattern = self.name(c["name"], f"{w}.name")
            if count > 1 and not COUNTER.search(pattern):
                raise self.fail(f"{w}.name", "a name containing {i} when count is given", pattern)
            folder = self.folder(c.get("folder"), f"{w}.folder")
            pools = self.pools(c.get("resource_pools"), f"{w}.resource_pools")
            for depth, part in enumerate(folder):
                self.place(taken, folder[:depth], part, "folder", f"{w}.folder")
            for n in range(count):
                cname = self.expand(pattern, n, f"{w}.name")
                if any(x.name == cname for x in clusters):
                    raise self.fail(f"{w}.name", "a cluster name not used twice in one datacenter", cname)
                self.place(taken, folder, cname, "cluster", f"{w}.name")
                clusters.append(ClusterSpec(cname, tuple(self.hosts(c.get("hosts"), f"{w}.hosts", cname)), folder,
                                            pools))
        standalone = self.hosts(m.get("standalone_hosts"), f"{where}.standalone_hosts", dc)
        for i, h in enumerate(standalone):
            self.place(taken, (), h.name, "host", f"{where}.standalone_hosts[{i}].name")
        in_dc = {h.name for c in clusters for h in c.hosts} | {h.name for h in standalone}
        by_cluster = {c.name: [h.name for h in c.hosts] for c in clusters}
        datastores: list[DatastoreSpec] = []
        for i, entry in enumerate(self.seq(m.get("datastores"), f"{where}.datastores")):
            w = f"{where}.datastores[{i}]"
            d = self.mapping(entry, w, ("name", "capacity_gb", "mounted_by"),
                             ("type", "free_gb", "count", "accessible", "maintenance"))
            count = self.integer(d.get("count", 1), f"{w}.count")
            pattern = self.name(d["name"], f"{w}.name")
            if count > 1 and not COUNTER.search(pattern):
                raise self.fail(f"{w}.name", "a name containing {i} when count is given", pattern)
            cap = self.integer(d["capacity_gb"], f"{w}.capacity_gb")
            free = self.integer(d.get("free_gb", cap), f"{w}.free_gb", minimum=0)
            if free > cap:
                raise self.fail(f"{w}.free_gb", f"at most capacity_gb ({cap})", free)
            kind = self.choice(d.get("type", "VMFS"), f"{w}.type", DATASTORE_TYPES)
            accessible = self.boolean(d.get("accessible", True), f"{w}.accessible")
            ds_maintenance = self.choice(d.get("maintenance", "normal"), f"{w}.maintenance", DATASTORE_MAINTENANCE)
            mb = self.mapping(d["mounted_by"], f"{w}.mounted_by", (), ("clusters", "hosts"))
            raw_clusters = self.seq(mb.get("clusters"), f"{w}.mounted_by.clusters")
            raw_hosts = self.seq(mb.get("hosts"), f"{w}.mounted_by.hosts")
            for n in range(count):
                name = self.expand(pattern, n, f"{w}.name")
                if any(x.name == name for x in datastores):
                    raise self.fail(f"{w}.name", "a datastore name not used twice in one datacenter", name)
                hosts: list[str] = []
                for j, raw_c in enumerate(raw_clusters):
                    cw = f"{w}.mounted_by.clusters[{j}]"
                    for cname in self.matching(self.expand(self.name(raw_c, cw), n, cw), list(by_cluster), cw,
                                               f"a cluster of datacenter {dc}"):
                        hosts += by_cluster[cname]
                for j, raw_h in enumerate(raw_hosts):
                    hw = f"{w}.mounted_by.hosts[{j}]"
                    hosts += self.matching(self.expand(self.name(raw_h, hw), n, hw), sorted(in_dc), hw,
                                           f"a host of datacenter {dc}")
                datastores.append(DatastoreSpec(name=name, type=kind, capacity_mb=cap * 1024, free_mb=free * 1024,
                                                hosts=tuple(dict.fromkeys(hosts)), accessible=accessible,
                                                maintenance=ds_maintenance))
        return DatacenterSpec(dc, tuple(clusters), tuple(standalone), tuple(datastores), dc_folder)

    def pools(self, value: Any, where: str) -> tuple[str, ...]:
        """Resource pool paths below a cluster's root pool, such as ``nova`` or ``tenants/nova``."""
        out: list[str] = []
        for i, raw in enumerate(self.seq(value, where)):
            path = "/".join(self.folder(raw, f"{where}[{i}]"))
            if path in out:
                raise self.fail(f"{where}[{i}]", "a pool path not listed twice", raw)
            out.append(path)
        return tuple(out)

    def matching(self, pattern: str, names: list[str], where: str, expected: str) -> list[str]:
        """The names a mount entry means: itself, or every name a glob (``C*``) matches; never none."""
        if any(ch in pattern for ch in "*?["):
            found = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
            if not found:
                raise self.fail(where, f"a pattern matching {expected}", pattern)
            return found
        if pattern not in names:
            raise self.fail(where, expected, pattern)
        return [pattern]
