// The figures, node names and placement of docs/driver.md as pure functions of a snapshot: which hosts and
// datastores count, how bytes become MiB and GiB, what max_unit is, which entries name a cluster.

package main

import (
	"io"
	"log/slog"
	"sort"
	"testing"

	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

func host(ref string, threads int16, memory int64, used int32, state string, maintenance bool) *object {
	return &object{ref: types.ManagedObjectReference{Type: "HostSystem", Value: ref}, props: map[string]types.AnyType{
		"summary.hardware.numCpuThreads": threads, "summary.hardware.memorySize": memory,
		"summary.quickStats.overallMemoryUsage": used,
		"runtime.connectionState":               types.HostSystemConnectionState(state),
		"runtime.inMaintenanceMode":             maintenance}}
}

func datastore(ref, name string, capacity, free int64, accessible bool, mode string) *object {
	props := map[string]types.AnyType{"name": name, "summary.capacity": capacity, "summary.freeSpace": free,
		"summary.accessible": accessible}
	if mode != "" {
		props["summary.maintenanceMode"] = mode
	}
	return &object{ref: types.ManagedObjectReference{Type: "Datastore", Value: ref}, props: props}
}

func testDriver(cfg Config, mutants Mutants) *Driver {
	return &Driver{cfg: cfg, mutants: mutants, version: 6005000, vcenterUUID: "uuid",
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestFiguresCountSchedulableHostsAndUsableDatastores(t *testing.T) {
	odd := int64(3)*gib + 512*mib + 123 // memory in bytes that is not a whole MiB: floored once, after the sum
	n := &Node{Name: "domain-c1.uuid", Hosts: []*object{
		host("h1", 16, 64*gib, 1000, "connected", false),
		host("h2", 8, odd, 500, "connected", false),
		host("h3", 32, 256*gib, 9999, "connected", true),      // maintenance: not offered
		host("h4", 32, 256*gib, 9999, "notResponding", false), // not connected: not offered
	}, Datastores: []*object{
		datastore("ds1", "nfs-a", 1000*gib+7, 400*gib, true, "normal"),
		datastore("ds2", "nfs-b", 500*gib, 100*gib+gib/2, true, ""),                // free not whole GiB: floored, never overstated
		datastore("ds3", "nfs-c", 9000*gib, 9000*gib, false, ""),                   // inaccessible
		datastore("ds4", "nfs-d", 9000*gib, 9000*gib, true, "enteringMaintenance"), // entering maintenance
	}}
	r := testDriver(Config{}, Mutants{}).resources(n)
	want := Resources{VCPUs: 24, MemoryMB: (64*gib + odd) / mib, LocalGB: (1500*gib + 7) / gib, MemoryMBUsed: 1500,
		LocalGBUsed: (1500*gib+7)/gib - (500*gib+gib/2)/gib, HypervisorVersion: 6005000}
	if r.VCPUs != want.VCPUs || r.MemoryMB != want.MemoryMB || r.LocalGB != want.LocalGB ||
		r.MemoryMBUsed != want.MemoryMBUsed || r.LocalGBUsed != want.LocalGBUsed || r.VCPUsUsed != 0 ||
		r.HypervisorVersion != want.HypervisorVersion || r.HypervisorHostname != n.Name {
		t.Errorf("figures %+v; want %+v", r, want)
	}
	inv := r.Inventory
	if inv["VCPU"].MaxUnit != 16 || inv["MEMORY_MB"].MaxUnit != 64*1024 || inv["DISK_GB"].MaxUnit != 400 ||
		inv["VCPU"].AllocationRatio != 4.0 || inv["DISK_GB"].Total != r.LocalGB {
		t.Errorf("inventory %+v", inv)
	}
	// The datastore filter matches whole names, as Python's re.fullmatch: "nfs-a" is not "nfs-a.*"'s prefix only.
	only := "nfs-a"
	r = testDriver(Config{DatastoreRegex: &only}, Mutants{}).resources(n)
	if r.LocalGB != (1000*gib+7)/gib {
		t.Errorf("with datastore_regex %q: local_gb %d", only, r.LocalGB)
	}
	prefix := "nfs"
	if r = testDriver(Config{DatastoreRegex: &prefix}, Mutants{}).resources(n); r.LocalGB != 0 {
		t.Errorf("datastore_regex %q matched part of a name: local_gb %d", prefix, r.LocalGB)
	}
	// Python's syntax, as the contract says: a lookahead that leaves one datastore out, named groups.
	for pattern, want := range map[string]int64{`(?!nfs-b$).*`: (1000*gib + 7) / gib, `(?P<kind>nfs)-(?:a|b)`: 1500,
		`(?P<x>n)fs-(?P=x)?b`: 500} {
		p := pattern
		if r = testDriver(Config{DatastoreRegex: &p}, Mutants{}).resources(n); r.LocalGB != want {
			t.Errorf("datastore_regex %q: local_gb %d; want %d", pattern, r.LocalGB, want)
		}
	}
	// The mutant counts every host.
	if r = testDriver(Config{}, Mutants{"counts-unschedulable-hosts": true}).resources(n); r.VCPUs != 88 {
		t.Errorf("mutant counts-unschedulable-hosts: vcpus %d", r.VCPUs)
	}
}

func TestNodesFromEntriesByPathOrMoref(t *testing.T) {
	ref := func(kind, value string) types.ManagedObjectReference {
		return types.ManagedObjectReference{Type: kind, Value: value}
	}
	objects := map[string]*object{
		"group-d1": {ref: ref("Folder", "group-d1"), props: map[string]types.AnyType{"name": "Datacenters"}},
		"dc-1": {ref: ref("Datacenter", "dc-1"), props: map[string]types.AnyType{"name": "DC0",
			"parent": ref("Folder", "group-d1"), "vmFolder": ref("Folder", "group-v1")}},
		"group-h1": {ref: ref("Folder", "group-h1"), props: map[string]types.AnyType{"name": "host",
			"parent": ref("Datacenter", "dc-1")}},
		"group-f1": {ref: ref("Folder", "group-f1"), props: map[string]types.AnyType{"name": "prod",
			"parent": ref("Folder", "group-h1")}},
		"domain-c1": {ref: ref("ClusterComputeResource", "domain-c1"), props: map[string]types.AnyType{"name": "C0",
			"parent": ref("Folder", "group-f1"), "resourcePool": ref("ResourcePool", "resgroup-1"),
			"host": types.ArrayOfManagedObjectReference{ManagedObjectReference: []types.ManagedObjectReference{
				ref("HostSystem", "host-1")}}}},
		"domain-s1": {ref: ref("ComputeResource", "domain-s1"), props: map[string]types.AnyType{"name": "esx-1",
			"parent": ref("Folder", "group-h1")}},
		"host-1": host("host-1", 8, 8*gib, 0, "connected", false),
	}
	d := testDriver(Config{Clusters: []string{"/DC0/host/prod/C0/", "domain-c1", "/DC0/host/esx-1", "domain-s1",
		"/DC0/host/absent"}}, Mutants{})
	d.vc = &vim25.Client{ServiceContent: types.ServiceContent{RootFolder: ref("Folder", "group-d1")}}
	nodes := d.buildNodes(objects)
	var names []string
	for name := range nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	// A path (folders included, slashes optional) and a moref of the same cluster give one node; a standalone
	// host's compute resource never is one, by path or by moref; a missing entry is left out.
	if len(names) != 1 || names[0] != "domain-c1.uuid" {
		t.Fatalf("nodes %v; want [domain-c1.uuid]", names)
	}
	n := nodes["domain-c1.uuid"]
	if n.Path != "/DC0/host/prod/C0" || n.VMFolder.Value != "group-v1" || n.Pool.Value != "resgroup-1" ||
		len(n.Hosts) != 1 || n.ConfiguredAs != "/DC0/host/prod/C0/" {
		t.Errorf("node %+v", n)
	}
}

func TestVersionAsNovaReportsIt(t *testing.T) {
	for version, want := range map[string]int64{"6.5.0": 6005000, "7.0.3": 7000003, "8": 8000000, "": 0} {
		if got := versionInt(version); got != want {
			t.Errorf("versionInt(%q) = %d; want %d", version, got, want)
		}
	}
}
