// Tests of the states checks put where a wrong driver goes: datastores inaccessible or in maintenance
// (loaded and changed at run time, refused by placement), hosts with memory sizes in bytes, child
// resource pools, and an extra listener whose certificate names another host.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// statesTopology is testTopology with a datastore of each state, a host of an odd memory size and child
// resource pools in C0.
func statesTopology() *Topology {
	topo := testTopology()
	dc := &topo.Datacenters[0]
	c0 := []string{"C0_H0", "C0_H1"}
	off := false
	dc.Datastores = append(dc.Datastores,
		Datastore{Name: "gone", Type: "NFS", CapacityMB: 1 << 21, FreeMB: 1 << 21, Hosts: c0, Accessible: &off},
		Datastore{Name: "resting", Type: "VMFS", CapacityMB: 1 << 21, FreeMB: 1 << 21, Hosts: c0, Maintenance: "inMaintenance"},
		Datastore{Name: "leaving", Type: "VMFS", CapacityMB: 1 << 21, FreeMB: 1 << 21, Hosts: c0, Maintenance: "enteringMaintenance"},
	)
	dc.Clusters[0].Hosts[0].MemoryBytes = 64<<30 + 3<<19 + 12345 // 64 GiB, 1.5 MiB and some bytes
	dc.Clusters[0].ResourcePools = []string{"nova", "tenants/nova"}
	return topo
}

func TestDatastoreStatesAreLoadedAndRefusedByPlacement(t *testing.T) {
	fv, c := serve(t, statesTopology())
	read := func(name string) mo.Datastore {
		var m mo.Datastore
		retrieve(t, c, ref(t, fv, "Datastore", name), []string{"summary", "host"}, &m)
		return m
	}
	for name, want := range map[string]struct {
		accessible bool
		mode       string
		fault      types.BaseMethodFault
	}{
		"shared":  {true, "normal", nil},
		"gone":    {false, "normal", &types.InaccessibleDatastore{}},
		"resting": {true, "inMaintenance", &types.InvalidDatastoreState{}},
		"leaving": {true, "enteringMaintenance", &types.InvalidDatastoreState{}},
	} {
		m := read(name)
		if m.Summary.Accessible != want.accessible || m.Summary.MaintenanceMode != want.mode {
			t.Errorf("%s: accessible %v, maintenance %q; want %v, %q", name, m.Summary.Accessible,
				m.Summary.MaintenanceMode, want.accessible, want.mode)
		}
		for _, mount := range m.Host {
			if *mount.MountInfo.Accessible != want.accessible {
				t.Errorf("%s: host %s mounts it with accessible %v", name, mount.Key, *mount.MountInfo.Accessible)
			}
		}
		h0 := hostRef(t, fv, "C0_H0")
		for i, host := range []*types.ManagedObjectReference{nil, &h0} {
			_, f := createVM(t, fv, c, "C0", host, vmSpec(fmt.Sprintf("x-%s-%d", name, i), name, 1, 128))
			if typeName(f) != typeName(want.fault) {
				t.Errorf("CreateVM on %s (host %v): %s, want %s", name, host, typeName(f), typeName(want.fault))
			}
			if f != nil && len(f.GetMethodFault().FaultMessage) == 0 {
				t.Errorf("CreateVM on %s: the fault says nothing", name)
			}
		}
	}
	// A disk on an unusable datastore is refused as well, whatever the home datastore.
	if _, f := createVM(t, fv, c, "C0", nil, vmSpec("y", "shared", 1, 128, disk{gb: 1, ds: "resting"})); typeName(f) != "InvalidDatastoreState" {
		t.Errorf("a disk on a datastore in maintenance: %s", typeName(f))
	}
}

func TestControlAPIChangesDatastoreStates(t *testing.T) {
	fv, base := serveURL(t, statesTopology())
	c := login(t, base)
	shared := ref(t, fv, "Datastore", "shared")
	for _, tc := range []struct {
		body       map[string]any
		accessible bool
		mode       string
		fault      string
	}{
		{map[string]any{"accessible": false}, false, "normal", "InaccessibleDatastore"},
		{map[string]any{"accessible": true, "maintenance": "inMaintenance"}, true, "inMaintenance", "InvalidDatastoreState"},
		{map[string]any{"maintenance": "normal"}, true, "normal", ""},
	} {
		if status, out := api(t, base, "PUT", "datastores/"+shared.Value, tc.body); status != 200 {
			t.Fatalf("PUT datastores/%s %v: %d %v", shared.Value, tc.body, status, out)
		}
		var m mo.Datastore
		retrieve(t, c, shared, []string{"summary", "host"}, &m)
		if m.Summary.Accessible != tc.accessible || m.Summary.MaintenanceMode != tc.mode {
			t.Errorf("after %v: accessible %v, maintenance %q", tc.body, m.Summary.Accessible, m.Summary.MaintenanceMode)
		}
		if got := *m.Host[0].MountInfo.Accessible; got != tc.accessible {
			t.Errorf("after %v: the hosts mount it with accessible %v", tc.body, got)
		}
		_, f := createVM(t, fv, c, "C0", nil, vmSpec(fmt.Sprintf("vm-%v", tc.body), "shared", 1, 128))
		if typeName(f) != tc.fault && !(tc.fault == "" && f == nil) {
			t.Errorf("CreateVM after %v: %s, want %q", tc.body, typeName(f), tc.fault)
		}
	}
	// By name too; a reset puts the loaded state back.
	if status, _ := api(t, base, "PUT", "datastores/gone", map[string]any{"accessible": true}); status != 200 {
		t.Fatal("PUT datastores/gone by name")
	}
	if status, _ := api(t, base, "POST", "reset", nil); status != 200 {
		t.Fatal("reset")
	}
	c = login(t, base)
	var m mo.Datastore
	retrieve(t, c, ref(t, fv, "Datastore", "gone"), []string{"summary"}, &m)
	if m.Summary.Accessible {
		t.Error("a reset kept the run-time accessibility")
	}
	for _, tc := range []struct {
		path   string
		body   any
		status int
	}{
		{"datastores/nowhere", map[string]any{"accessible": true}, 404},
		{"datastores/shared", map[string]any{"maintenance": "napping"}, 400},
		{"datastores/shared", map[string]any{"accessible": "yes"}, 400},
	} {
		status, out := api(t, base, "PUT", tc.path, tc.body)
		if msg, _ := out["error"].(string); status != tc.status || msg == "" || strings.Contains(msg, "\n") {
			t.Errorf("PUT %s %v: %d %q, want %d and one line", tc.path, tc.body, status, msg, tc.status)
		}
	}
}

func TestHostMemoryInBytes(t *testing.T) {
	fv, c := serve(t, statesTopology())
	want := int64(64<<30 + 3<<19 + 12345)
	h := hostMO(t, c, hostRef(t, fv, "C0_H0"))
	if h.Summary.Hardware.MemorySize != want {
		t.Errorf("memorySize %d, want %d", h.Summary.Hardware.MemorySize, want)
	}
	var hw mo.HostSystem
	retrieve(t, c, hostRef(t, fv, "C0_H0"), []string{"hardware.memorySize"}, &hw)
	if hw.Hardware.MemorySize != want {
		t.Errorf("hardware.memorySize %d, want %d", hw.Hardware.MemorySize, want)
	}
	// vCenter's effectiveMemory is in MB: each host floored (64 GiB + 1 MiB) plus C0_H1's 128 GiB.
	s := clusterSummary(t, c, ref(t, fv, "ClusterComputeResource", "C0"))
	if s.EffectiveMemory != 64*1024+1+128*1024 {
		t.Errorf("effectiveMemory %d MB", s.EffectiveMemory)
	}
}

func TestChildResourcePoolsFromTheTopology(t *testing.T) {
	fv, c := serve(t, statesTopology())
	finder := object.NewSearchIndex(c.Client)
	for _, path := range []string{"/DC0/host/C0/Resources/nova", "/DC0/host/C0/Resources/tenants",
		"/DC0/host/C0/Resources/tenants/nova"} {
		found, err := finder.FindByInventoryPath(bg, path)
		if err != nil || found == nil {
			t.Fatalf("%s: %v %v", path, found, err)
		}
		pool := fv.reg().Get(found.Reference()).(*simulator.ResourcePool)
		if pool.Owner != ref(t, fv, "ClusterComputeResource", "C0") {
			t.Errorf("%s is owned by %s", path, pool.Owner)
		}
	}
	// A VM goes into the nested pool, on a host of the cluster.
	nested, _ := finder.FindByInventoryPath(bg, "/DC0/host/C0/Resources/tenants/nova")
	dc := fv.reg().Get(ref(t, fv, "Datacenter", "DC0")).(*simulator.Datacenter)
	task, err := object.NewFolder(c.Client, dc.VmFolder).CreateVM(bg, vmSpec("pooled", "shared", 1, 128),
		object.NewResourcePool(c.Client, nested.Reference()), nil)
	tasks{t}.must(task, err)
	info, _ := task.WaitForResult(bg, nil)
	vm := fv.reg().Get(info.Result.(types.ManagedObjectReference)).(*simulator.VirtualMachine)
	cl := fv.reg().Get(ref(t, fv, "ClusterComputeResource", "C0")).(*simulator.ClusterComputeResource)
	if *vm.ResourcePool != nested.Reference() || !slices.Contains(cl.Host, *vm.Runtime.Host) {
		t.Errorf("VM in pool %s on host %s", vm.ResourcePool, vm.Runtime.Host)
	}
	// A bad pool path is refused when the topology is checked.
	topo := statesTopology()
	topo.Datacenters[0].Clusters[0].ResourcePools = []string{"a//b"}
	if err := topo.check(); err == nil || !strings.Contains(err.Error(), "resource pool") {
		t.Errorf("a pool path with an empty name: %v", err)
	}
}

func TestExtraListenerPresentsACertificateForOtherNames(t *testing.T) {
	dir := t.TempDir()
	cert, err := loadOrCreateCert(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	fv, base := serveURL(t, testTopology())
	// Without TLS there is no CA to sign with.
	if status, _ := api(t, base, "POST", "listeners", map[string]any{"cert_names": []string{"x.invalid"}}); status != 409 {
		t.Errorf("a listener without TLS: %d, want 409", status)
	}
	fv.extra.setTLS(&cert, "127.0.0.1")
	status, out := api(t, base, "POST", "listeners", map[string]any{"cert_names": []string{"vcenter.invalid"}})
	if status != 200 {
		t.Fatalf("POST listeners: %d %v", status, out)
	}
	url, _ := out["url"].(string)
	if !strings.HasPrefix(url, "https://127.0.0.1:") || !strings.HasSuffix(url, "/sdk") {
		t.Fatalf("url %q", url)
	}
	roots := x509.NewCertPool()
	ca, _ := x509.ParseCertificate(cert.Certificate[0])
	roots.AddCert(ca)
	about := strings.TrimSuffix(url, "/sdk") + "/about"
	get := func(name string) error {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: name}}}
		defer client.CloseIdleConnections()
		res, err := client.Get(about)
		if err == nil {
			res.Body.Close()
			if res.StatusCode != 200 {
				return fmt.Errorf("GET /about: %d", res.StatusCode)
			}
		}
		return err
	}
	// The chain is the simulator's; the name is not this address.
	if err := get("127.0.0.1"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("the certificate for vcenter.invalid was accepted for 127.0.0.1: %v", err)
	}
	if err := get("vcenter.invalid"); err != nil {
		t.Errorf("for its own name: %v", err)
	}
	if status, _ := api(t, base, "POST", "listeners", map[string]any{"cert_names": []string{}}); status != 400 {
		t.Errorf("no names: %d, want 400", status)
	}
	if status, _ := api(t, base, "DELETE", "listeners", nil); status != 200 {
		t.Fatal("DELETE listeners")
	}
	if err := get("vcenter.invalid"); err == nil {
		t.Error("the listener still serves after DELETE listeners")
	}
}
