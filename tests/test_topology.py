"""The topology loader: the standard file loads; every mistake is one line naming file, field and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.topology import TopologyError, load_topology


def test_standard_topology_has_the_promised_shape(standard: Path) -> None:
    topo = load_topology(standard)
    (dc,) = topo.datacenters
    assert [len(c.hosts) for c in dc.clusters] == [2, 3, 1]
    assert len(dc.standalone_hosts) == 1
    mounts = {d.name: set(d.hosts) for d in dc.datastores}
    by_cluster = {c.name: {h.name for h in c.hosts} for c in dc.clusters}
    shared = [n for n, hosts in mounts.items()
              if sum(1 for c in by_cluster.values() if hosts & c) == 2]
    private = [n for n, hosts in mounts.items()
               if sum(1 for c in by_cluster.values() if hosts & c) == 1 and hosts <= set().union(*by_cluster.values())]
    assert shared and private, mounts
    assert len({(h.cpu_threads, h.memory_mb) for c in dc.clusters for h in c.hosts}) >= 2, "hosts of one size"
    assert topo.cluster_paths() == ["/DC0/host/DC0_C0", "/DC0/host/DC0_C1", "/DC0/host/DC0_C2"]
    assert len(topo.digest) == 64


GOOD = """
version: 1
name: t
host_profiles:
  p: {cpu_sockets: 1, cpu_cores: 2, cpu_threads: 4, cpu_mhz: 2000, memory_gb: 8}
datacenters:
  - name: DC0
    clusters:
      - name: C{i}
        count: 3
        hosts: [{profile: p, count: 2}]
    datastores:
      - {name: ds, capacity_gb: 10, mounted_by: {clusters: [C0, C2]}}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "topo.yaml"
    p.write_text(text)
    return p


def test_counts_expand_to_named_clusters_and_hosts(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, GOOD))
    (dc,) = topo.datacenters
    assert [c.name for c in dc.clusters] == ["C0", "C1", "C2"]
    assert [h.name for h in dc.clusters[1].hosts] == ["C1_H0", "C1_H1"]
    assert dc.datastores[0].hosts == ("C0_H0", "C0_H1", "C2_H0", "C2_H1")
    assert dc.datastores[0].free_mb == dc.datastores[0].capacity_mb == 10 * 1024
    assert '"cpu_threads": 4' in topo.to_json()


def test_exact_memory_pools_and_datastore_states_load(tmp_path: Path) -> None:
    """Exact memory sizes, child resource pools and datastore states reach the simulator's JSON."""
    text = (GOOD.replace("{profile: p, count: 2}", "{profile: p, count: 2, memory_bytes: 8590983168}")
            .replace("name: C{i}", "name: C{i}\n        resource_pools: [nova, tenants/nova]")
            .replace("capacity_gb: 10", "capacity_gb: 10, accessible: false, maintenance: enteringMaintenance"))
    topo = load_topology(write(tmp_path, text))
    (dc,) = topo.datacenters
    host = dc.clusters[0].hosts[0]
    assert (host.memory_mb, host.memory_bytes, host.memory_size) == (8193, 8590983168, 8590983168)
    assert dc.clusters[0].resource_pools == ("nova", "tenants/nova")
    assert (dc.datastores[0].accessible, dc.datastores[0].maintenance) == (False, "enteringMaintenance")
    plain = load_topology(write(tmp_path, GOOD)).datacenters[0]
    assert plain.clusters[0].hosts[0].memory_size == 8 << 30
    assert (plain.datastores[0].accessible, plain.datastores[0].maintenance) == (True, "normal")


@pytest.mark.parametrize(("change", "field", "expected"), [
    (("name: t", "nme: t"), "nme", "one of the fields"),
    (("version: 1", "version: 2"), "version", "expected 1"),
    (("cpu_threads: 4", "cpu_threads: many"), "host_profiles.p.cpu_threads", "whole number"),
    (("cpu_threads: 4", "cpu_threads: 1"), "host_profiles.p.cpu_threads", "cpu_sockets <= cpu_cores <= cpu_threads"),
    (("profile: p", "profile: huge"), "datacenters[0].clusters[0].hosts[0].profile", "a profile from host_profiles"),
    (("clusters: [C0, C2]", "clusters: [C9]"), "datastores[0].mounted_by.clusters[0]", "a cluster of datacenter"),
    (("capacity_gb: 10", "capacity_gb: 10, free_gb: 11"), "datastores[0].free_gb", "at most capacity_gb"),
    (("name: C{i}", "name: C"), "clusters[0].name", "containing {i}"),
    (("name: DC0", "name: DC/0"), "datacenters[0].name", "without '/'"),
    (("    datastores:", "    datastores: 5\n    x:"), "datacenters[0].x", "one of the fields"),
    (("memory_gb: 8", "memory_gb: 8, memory_mb: 8"), "memory_mb", "not several"),
    (("{profile: p, count: 2}", "{profile: p, count: 2, memory_bytes: 1000}"), "hosts[0].memory_bytes",
     ">= 1048576"),
    (("name: C{i}", "name: C{i}\n        resource_pools: [a//b]"), "clusters[0].resource_pools[0]",
     "without empty names"),
    (("name: C{i}", "name: C{i}\n        resource_pools: [a, a]"), "clusters[0].resource_pools[1]", "not listed twice"),
    (("capacity_gb: 10", "capacity_gb: 10, maintenance: napping"), "datastores[0].maintenance",
     "one of normal, enteringMaintenance, inMaintenance"),
    (("capacity_gb: 10", "capacity_gb: 10, accessible: 1"), "datastores[0].accessible", "true or false"),
    (("{profile: p, count: 2}", "{profile: p, count: 0}"), "hosts[0].count", ">= 1"),
])
def test_a_mistake_is_one_line_naming_file_and_field(tmp_path: Path, change: tuple[str, str], field: str,
                                                     expected: str) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(TopologyError) as err:
        load_topology(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert field in message and expected in message, message


@pytest.mark.parametrize(("text", "expected"), [
    ("version: 1\nname: [unclosed", "not valid YAML (line 2"),
    ("- just\n- a list", "top level: expected a mapping"),
    ("", "top level: expected a mapping"),
])
def test_unreadable_files_get_one_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(TopologyError, match=r"^[^\n]*$") as err:
        load_topology(write(tmp_path, text))
    assert expected in str(err.value)


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="cannot read topology file"):
        load_topology(tmp_path / "nope.yaml")


FOLDERS = """
version: 1
name: f
host_profiles:
  p: {cpu_sockets: 1, cpu_cores: 2, cpu_threads: 4, cpu_mhz: 2000, memory_gb: 8}
datacenters:
  - name: DC0
    folder: emea/paris
    clusters:
      - {name: "C{i:02d}", count: 3, folder: prod/east, hosts: [{profile: p}]}
      - {name: lab, hosts: []}
    datastores:
      - {name: "local-{i}", count: 3, capacity_gb: 10, mounted_by: {clusters: ["C{i:02d}"]}}
      - {name: all, capacity_gb: 10, mounted_by: {clusters: ["C*"], hosts: ["C00_H0"]}}
  - name: DC1
    clusters:
      - {name: C00, hosts: [{name: other, profile: p}]}
"""


def test_folders_counts_and_globs(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, FOLDERS))
    assert topo.cluster_paths() == ["/emea/paris/DC0/host/prod/east/C00", "/emea/paris/DC0/host/prod/east/C01",
                                    "/emea/paris/DC0/host/prod/east/C02", "/emea/paris/DC0/host/lab",
                                    "/DC1/host/C00"]
    dc0 = topo.datacenters[0]
    assert dc0.folder == ("emea", "paris") and dc0.clusters[0].folder == ("prod", "east")
    mounts = {d.name: d.hosts for d in dc0.datastores}
    assert mounts == {"local-0": ("C00_H0",), "local-1": ("C01_H0",), "local-2": ("C02_H0",),
                      "all": ("C00_H0", "C01_H0", "C02_H0")}
    assert '"folder": [' in topo.to_json()


@pytest.mark.parametrize(("change", "field", "expected"), [
    (("folder: prod/east", "folder: prod//east"), "clusters[0].folder", "without empty names"),
    (("folder: emea/paris", "folder: 5"), "datacenters[0].folder", "a folder path"),
    (('clusters: ["C*"]', 'clusters: ["X*"]'), "mounted_by.clusters[0]", "a pattern matching"),
    (("{name: lab, hosts: []}", "{name: prod, hosts: []}"), "clusters[1].name", "not used twice in folder"),
    (('"local-{i}", count: 3', '"local", count: 3'), "datastores[0].name", "containing {i}"),
    (('"C{i:02d}", count: 3', '"C{i:zz}", count: 3'), "clusters[0].name", "{i:03d}"),
])
def test_folder_and_count_mistakes(tmp_path: Path, change: tuple[str, str], field: str, expected: str) -> None:
    path = write(tmp_path, FOLDERS.replace(*change))
    with pytest.raises(TopologyError, match=r"^[^\n]*$") as err:
        load_topology(path)
    assert field in str(err.value) and expected in str(err.value), str(err.value)


def test_heterogeneous_topology_has_the_promised_shape() -> None:
    topo = load_topology(Path(__file__).parent.parent / "fixtures" / "topologies" / "heterogeneous.yaml")
    hosts = [h for dc in topo.datacenters for c in dc.clusters for h in c.hosts]
    assert len({(h.cpu_threads, h.memory_mb) for h in hosts}) >= 3
    assert any(h.maintenance for h in hosts) and any(h.connection_state == "disconnected" for h in hosts)
    assert any(not c.hosts for dc in topo.datacenters for c in dc.clusters), "no empty cluster"
    names = [c.name for dc in topo.datacenters for c in dc.clusters]
    assert len(names) != len(set(names)), "no cluster name used in two datacenters"
    assert any(c.folder for dc in topo.datacenters for c in dc.clusters), "no cluster in a folder"
    for dc in topo.datacenters:
        for c in dc.clusters:
            if not c.hosts:
                continue
            members = {h.name for h in c.hosts}
            shared = [d for d in dc.datastores if members <= set(d.hosts) and set(d.hosts) - members]
            private = [d for d in dc.datastores if set(d.hosts) == members]
            assert shared and private, f"cluster {c.name} needs a shared and a private datastore"


def test_scale_topology_has_8000_hosts() -> None:
    topo = load_topology(Path(__file__).parent.parent / "fixtures" / "topologies" / "scale-1000x8.yaml")
    (dc,) = topo.datacenters
    assert len(dc.clusters) == 1000 and {len(c.hosts) for c in dc.clusters} == {8}
    assert len({(h.cpu_threads, h.memory_mb) for h in dc.clusters[0].hosts}) == 3


# -- paging and the hypervisor's share (issue 10) ----------------------------------------------------------

def test_page_size_and_overheads_have_defaults_and_overrides(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, GOOD))
    assert topo.page_size == 100  # vCenter's own limit
    host = topo.datacenters[0].clusters[0].hosts[0]
    assert (host.overhead_cpu_mhz, host.overhead_memory_mb) == (2 * 2000 // 50, 1024 + 8 * 1024 // 100)
    text = GOOD.replace("version: 1", "version: 1\npage_size: 7").replace(
        "{profile: p, count: 2}", "{profile: p, count: 2, overhead_cpu_mhz: 0, overhead_memory_mb: 2048}")
    topo = load_topology(write(tmp_path, text))
    host = topo.datacenters[0].clusters[0].hosts[0]
    assert topo.page_size == 7 and (host.overhead_cpu_mhz, host.overhead_memory_mb) == (0, 2048)
    assert '"page_size": 7' in topo.to_json() and '"overhead_memory_mb": 2048' in topo.to_json()
    for name in ("standard", "heterogeneous"):  # a full refresh of a shipped topology spans several pages
        assert load_topology(Path(__file__).parent.parent / "fixtures" / "topologies" / f"{name}.yaml").page_size <= 5


@pytest.mark.parametrize(("change", "field", "expected"), [
    (("version: 1", "version: 1\npage_size: 0"), "page_size", ">= 1"),
    (("memory_gb: 8}", "memory_gb: 8, overhead_memory_mb: 8192}"), "overhead_memory_mb", "less than the host's"),
    (("cpu_mhz: 2000", "cpu_mhz: 2000, overhead_cpu_mhz: 4000"), "overhead_cpu_mhz", "less than the host's"),
    (("{profile: p, count: 2}", "{profile: p, count: 2, overhead_cpu_mhz: -1}"), "overhead_cpu_mhz", ">= 0"),
    (("name: DC0", "name: DC%0"), "datacenters[0].name", "without '/'"),  # vCenter would escape it
    (("name: DC0", "name: " + "D" * 81), "datacenters[0].name", "at most 80"),
])
def test_page_size_and_overhead_mistakes(tmp_path: Path, change: tuple[str, str], field: str, expected: str) -> None:
    with pytest.raises(TopologyError, match=r"^[^\n]*$") as err:
        load_topology(write(tmp_path, GOOD.replace(*change)))
    assert field in str(err.value) and expected in str(err.value), str(err.value)
