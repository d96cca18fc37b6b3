// Tests of the topology build: host hardware and state, cluster summaries, datastores, cluster destroy.
package main

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

func hostSpec(name string, cores int16, memGB int64) Host {
	return Host{Name: name, CPUSockets: 1, CPUCores: cores, CPUThreads: 2 * cores, CPUMhz: 2000,
		MemoryMB: memGB * 1024, ConnectionState: "connected"}
}

func testTopology() *Topology {
	maint := hostSpec("C0_H2", 4, 16)
	maint.Maintenance = true
	disc := hostSpec("C0_H3", 4, 16)
	disc.ConnectionState = "disconnected"
	return &Topology{Name: "unit", Source: "unit.json", Datacenters: []Datacenter{{
		Name: "DC0",
		Clusters: []Cluster{
			{Name: "C0", Hosts: []Host{hostSpec("C0_H0", 8, 64), hostSpec("C0_H1", 16, 128), maint, disc}},
			{Name: "C1", Hosts: []Host{hostSpec("C1_H0", 2, 8)}},
			{Name: "EMPTY"},
		},
		StandaloneHosts: []Host{hostSpec("SA_H0", 4, 32)},
		Datastores: []Datastore{
			{Name: "shared", Type: "VMFS", CapacityMB: 1 << 20, FreeMB: 1 << 19, Hosts: []string{"C0_H0", "C0_H1", "C1_H0"}},
			{Name: "private", Type: "NFS", CapacityMB: 1 << 10, FreeMB: 1 << 9, Hosts: []string{"C1_H0"}},
		},
	}}}
}

// serve starts a fake vCenter with the topology over plain HTTP and returns
// it with a logged-in client.
func serve(t *testing.T, topo *Topology) (*fakevc, *govmomi.Client) {
	t.Helper()
	fv, base := serveURL(t, topo)
	return fv, login(t, base)
}

// serveURL starts a fake vCenter and returns it with its base URL.
func serveURL(t *testing.T, topo *Topology) (*fakevc, string) {
	t.Helper()
	fv, err := newFakevc(topo, "user", "pass")
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(fv)
	t.Cleanup(func() { fv.close(); ts.Close() }) // close ends long polls, so the server can stop
	return fv, ts.URL
}

func login(t *testing.T, base string) *govmomi.Client {
	t.Helper()
	u, err := url.Parse(base + "/sdk")
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("user", "pass")
	c, err := govmomi.NewClient(context.Background(), u, true)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// reg is the registry of the current world.
func (s *fakevc) reg() *simulator.Registry { return s.world.Load().reg }

func clusterByName(t *testing.T, m *fakevc, name string) *simulator.ClusterComputeResource {
	t.Helper()
	for _, e := range m.reg().All("ClusterComputeResource") {
		if c := e.(*simulator.ClusterComputeResource); c.Name == name {
			return c
		}
	}
	t.Fatalf("no cluster %s", name)
	return nil
}

func TestHostsHaveTheirOwnHardwareAndState(t *testing.T) {
	m, _ := serve(t, testTopology())
	sizes := map[string]int64{}
	for _, e := range m.reg().All("HostSystem") {
		h := e.(*simulator.HostSystem)
		sizes[h.Name] = h.Summary.Hardware.MemorySize
		if h.Name == "C0_H1" && (h.Summary.Hardware.NumCpuThreads != 32 || h.Hardware.CpuInfo.NumCpuCores != 16) {
			t.Errorf("C0_H1 hardware: %+v", h.Summary.Hardware)
		}
		if h.Name == "C0_H2" && !h.Runtime.InMaintenanceMode {
			t.Error("C0_H2 should be in maintenance mode")
		}
		if h.Name == "C0_H3" && h.Runtime.ConnectionState != types.HostSystemConnectionStateDisconnected {
			t.Errorf("C0_H3 state %s", h.Runtime.ConnectionState)
		}
	}
	if sizes["C0_H0"] != 64<<30 || sizes["C0_H1"] != 128<<30 || sizes["SA_H0"] != 32<<30 {
		t.Errorf("memory sizes %v", sizes)
	}
}

func TestClusterSummaryIsDerivedFromHosts(t *testing.T) {
	m, _ := serve(t, testTopology())
	s := clusterByName(t, m, "C0").Summary.GetComputeResourceSummary()
	// Totals count all four hosts; effective figures only C0_H0 and C0_H1.
	want := types.ComputeResourceSummary{
		TotalCpu: 2000 * (8 + 16 + 4 + 4), TotalMemory: (64 + 128 + 16 + 16) << 30,
		NumCpuCores: 32, NumCpuThreads: 64, EffectiveCpu: 2000 * 24, EffectiveMemory: (64 + 128) * 1024,
		NumHosts: 4, NumEffectiveHosts: 2, OverallStatus: types.ManagedEntityStatusGreen,
	}
	if *s != want {
		t.Errorf("C0 summary\n got %+v\nwant %+v", *s, want)
	}
	if e := clusterByName(t, m, "EMPTY").Summary.GetComputeResourceSummary(); e.OverallStatus != types.ManagedEntityStatusGreen {
		t.Errorf("empty cluster status %q", e.OverallStatus)
	}
}

func TestDatastoresHaveTypeSizeAndMounts(t *testing.T) {
	m, _ := serve(t, testTopology())
	for _, e := range m.reg().All("Datastore") {
		ds := e.(*simulator.Datastore)
		switch ds.Name {
		case "shared":
			if ds.Summary.Type != "VMFS" || ds.Summary.Capacity != 1<<40 || ds.Summary.FreeSpace != 1<<39 || len(ds.Host) != 3 {
				t.Errorf("shared: %+v, %d mounts", ds.Summary, len(ds.Host))
			}
		case "private":
			if ds.Summary.Type != "NFS" || len(ds.Host) != 1 {
				t.Errorf("private: %+v", ds.Summary)
			}
		}
	}
	if n := len(clusterByName(t, m, "C0").Datastore); n != 1 {
		t.Errorf("C0 sees %d datastores, want 1 (shared)", n)
	}
}

func TestCreatedVMHasNoEmptyEnums(t *testing.T) {
	ctx := context.Background()
	m, c := serve(t, testTopology())
	finder := find.NewFinder(c.Client, true)
	dc, err := finder.Datacenter(ctx, "DC0")
	if err != nil {
		t.Fatal(err)
	}
	folders, _ := dc.Folders(ctx)
	pool := object.NewResourcePool(c.Client, *clusterByName(t, m, "C1").ResourcePool)
	task, err := folders.VmFolder.CreateVM(ctx, types.VirtualMachineConfigSpec{
		Name: "vm1", Files: &types.VirtualMachineFileInfo{VmPathName: "[private]"}}, pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	vm := m.reg().Get(info.Result.(types.ManagedObjectReference)).(*simulator.VirtualMachine)
	if vm.Runtime.FaultToleranceState == "" || vm.Runtime.RecordReplayState == "" || vm.Summary.Runtime.FaultToleranceState == "" {
		t.Errorf("empty enum in runtime %+v", vm.Runtime)
	}
}

func TestDestroyClusterRemovesItsHostsAndPools(t *testing.T) {
	ctx := context.Background()
	m, c := serve(t, testTopology())
	c1 := clusterByName(t, m, "C1")
	hostRef, poolRef := c1.Host[0], *c1.ResourcePool

	task, err := object.NewClusterComputeResource(c.Client, c1.Self).Destroy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []types.ManagedObjectReference{c1.Self, hostRef, poolRef} {
		if m.reg().Get(ref) != nil {
			t.Errorf("%s still in the inventory", ref)
		}
	}
	for _, e := range m.reg().All("Datastore") {
		for _, mount := range e.(*simulator.Datastore).Host {
			if mount.Key == hostRef {
				t.Errorf("datastore %s still mounted by the removed host", e.Entity().Name)
			}
		}
	}
	var folder mo.Folder
	if err := c.RetrieveOne(ctx, *c1.Parent, []string{"childEntity"}, &folder); err != nil {
		t.Fatal(err)
	}
	for _, child := range folder.ChildEntity {
		if child == c1.Self {
			t.Error("the host folder still lists the cluster")
		}
	}
	// Reading a destroyed cluster is ManagedObjectNotFound, also for the session that destroyed it.
	var gone mo.ClusterComputeResource
	err = c.RetrieveOne(ctx, c1.Self, []string{"name"}, &gone)
	if err == nil {
		t.Error("the destroyed cluster can still be read")
	}
}

func TestDestroyClusterWithVMsIsRefused(t *testing.T) {
	ctx := context.Background()
	m, c := serve(t, testTopology())
	c1 := clusterByName(t, m, "C1")
	h := m.reg().Get(c1.Host[0]).(*simulator.HostSystem)
	h.Vm = append(h.Vm, types.ManagedObjectReference{Type: "VirtualMachine", Value: "vm-x"})
	task, err := object.NewClusterComputeResource(c.Client, c1.Self).Destroy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = task.Wait(ctx)
	if _, ok := taskFault(err).(*types.ResourceInUse); !ok {
		t.Errorf("want ResourceInUse, got %v", err)
	}
	if m.reg().Get(c1.Self) == nil {
		t.Error("the cluster was removed although a VM lives on it")
	}
}

// taskFault is the vSphere fault a failed task reported, or nil.
func taskFault(err error) types.BaseMethodFault {
	var te interface{ Fault() types.BaseMethodFault }
	if errors.As(err, &te) {
		return te.Fault()
	}
	return nil
}

func TestOnlyLoopbackMayBeServed(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:0": true, "[::1]:8989": true, "0.0.0.0:0": false,
		"localhost:0": false, ":8989": false} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v", addr, err)
		}
	}
}

func TestTopologyInvariants(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"dup-host.json": `{"datacenters":[{"name":"D","clusters":[{"name":"C","hosts":[` +
			`{"name":"h","cpu_sockets":1,"cpu_cores":1,"cpu_threads":1,"cpu_mhz":1,"memory_mb":1,"connection_state":"connected"},` +
			`{"name":"h","cpu_sockets":1,"cpu_cores":1,"cpu_threads":1,"cpu_mhz":1,"memory_mb":1,"connection_state":"connected"}]}]}]}`,
		"bad-state.json": `{"datacenters":[{"name":"D","standalone_hosts":[` +
			`{"name":"h","cpu_sockets":1,"cpu_cores":1,"cpu_threads":1,"cpu_mhz":1,"memory_mb":1,"connection_state":"on"}]}]}`,
		"foreign-host.json": `{"datacenters":[{"name":"D","datastores":[{"name":"d","capacity_mb":2,"free_mb":1,"hosts":["x"]}]}]}`,
		"not-json.json":     `datacenters: []`,
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadTopology(path); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
