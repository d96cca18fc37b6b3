// Tests of VM placement and CreateVM robustness: only active hosts that mount the datastores, vCenter's
// faults for bad arguments, and no ghost VM or stuck task left behind.
package main

import (
	"slices"
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

func TestPlacementUsesActiveHostsThatMountTheDatastore(t *testing.T) {
	fv, c := serve(t, testTopology())
	cl := fv.reg().Get(ref(t, fv, "ClusterComputeResource", "C0")).(*simulator.ClusterComputeResource)
	hosts := slices.Clone(cl.Host)
	h0, h1 := hostRef(t, fv, "C0_H0"), hostRef(t, fv, "C0_H1")
	var placed []types.ManagedObjectReference
	for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
		vm, f := createVM(t, fv, c, "C0", nil, vmSpec(name, "shared", 1, 24*1024))
		if f != nil {
			t.Fatalf("%s: %s", name, faultText(f))
		}
		placed = append(placed, *fv.reg().Get(vm).(*simulator.VirtualMachine).Runtime.Host)
	}
	// Most memory left first: C0_H1 (128 GiB) takes VMs until C0_H0 (64 GiB) has more left; never the
	// host in maintenance mode or the disconnected one.
	want := []types.ManagedObjectReference{h1, h1, h1, h0, h1, h0}
	if !slices.Equal(placed, want) {
		t.Errorf("placed on %v, want %v", placed, want)
	}
	if !slices.Equal(cl.Host, hosts) {
		t.Errorf("CreateVM changed the cluster's host list: %v, was %v", cl.Host, hosts)
	}
}

// faultyTopology is testTopology with a datastore that only C0_H0 mounts.
func faultyTopology() *Topology {
	topo := testTopology()
	dc := &topo.Datacenters[0]
	dc.Datastores = append(dc.Datastores, Datastore{Name: "h0only", Type: "VMFS", CapacityMB: 1 << 20, FreeMB: 1 << 20,
		Hosts: []string{"C0_H0"}})
	return topo
}

func TestBadCreateVMArgumentsGetFaults(t *testing.T) {
	fv, c := serve(t, faultyTopology())
	h0, h2, h3, c1h0 := hostRef(t, fv, "C0_H0"), hostRef(t, fv, "C0_H2"), hostRef(t, fv, "C0_H3"), hostRef(t, fv, "C1_H0")
	h1 := hostRef(t, fv, "C0_H1")
	noName := vmSpec("x", "shared", 1, 128)
	noName.Name = ""
	cases := []struct {
		name    string
		cluster string
		host    *types.ManagedObjectReference
		spec    types.VirtualMachineConfigSpec
		want    types.BaseMethodFault
	}{
		{"unknown datastore", "C0", nil, vmSpec("x", "nope", 1, 128), &types.InvalidDatastorePath{}},
		{"not a datastore path", "C0", nil, types.VirtualMachineConfigSpec{Name: "x",
			Files: &types.VirtualMachineFileInfo{VmPathName: "shared/x"}}, &types.InvalidDatastorePath{}},
		{"no name", "C0", nil, noName, &types.InvalidVmConfig{}},
		{"no active host mounts it", "C0", nil, vmSpec("x", "private", 1, 128), &types.InvalidDatastore{}},
		{"host of another cluster", "C0", &c1h0, vmSpec("x", "shared", 1, 128), &types.InvalidArgument{}},
		{"host in maintenance mode", "C0", &h2, vmSpec("x", "shared", 1, 128), &types.InvalidHostState{}},
		{"disconnected host", "C0", &h3, vmSpec("x", "shared", 1, 128), &types.InvalidHostConnectionState{}},
		{"host without the datastore", "C0", &h1, vmSpec("x", "h0only", 1, 128), &types.DatastoreNotWritableOnHost{}},
		{"disk on an unknown datastore", "C0", &h0, vmSpec("x", "shared", 1, 128, disk{gb: 1, ds: "nope"}),
			&types.InvalidDatastorePath{}},
		{"thick disk larger than the free space", "C1", nil, vmSpec("x", "private", 1, 128, disk{gb: 1}), &types.NoDiskSpace{}},
		{"empty cluster", "EMPTY", nil, vmSpec("x", "shared", 1, 128), &types.NoActiveHostInCluster{}},
	}
	vms := len(fv.reg().All("VirtualMachine"))
	for _, tc := range cases {
		_, f := createVM(t, fv, c, tc.cluster, tc.host, tc.spec)
		if typeName(f) != typeName(tc.want) {
			t.Errorf("%s: got %s, want %s", tc.name, typeName(f), typeName(tc.want))
		} else if msg := f.GetMethodFault().FaultMessage; len(msg) == 0 {
			t.Errorf("%s: the fault says nothing", tc.name)
		}
	}

	// A pool moref that is no pool fails the call itself.
	dc := fv.reg().Get(ref(t, fv, "Datacenter", "DC0")).(*simulator.Datacenter)
	_, err := methods.CreateVM_Task(bg, c.Client, &types.CreateVM_Task{This: dc.VmFolder, Config: vmSpec("x", "shared", 1, 128),
		Pool: types.ManagedObjectReference{Type: "ResourcePool", Value: "resgroup-404"}})
	if _, ok := soapFault(err).(*types.ManagedObjectNotFound); !ok {
		t.Errorf("unknown pool: %v", err)
	}

	// Nothing was left behind, and every task ended.
	if n := len(fv.reg().All("VirtualMachine")); n != vms {
		t.Errorf("%d VMs after the failed calls, %d before", n, vms)
	}
	for _, obj := range fv.reg().AllReference("Task") {
		if task := obj.(*simulator.Task); task.Info.State != types.TaskInfoStateError && task.Info.State != types.TaskInfoStateSuccess {
			t.Errorf("task %s (%s) is %s", task.Self, task.Info.Name, task.Info.State)
		}
	}
	// And the server still serves.
	if _, f := createVM(t, fv, c, "C0", nil, vmSpec("fine", "shared", 1, 128)); f != nil {
		t.Errorf("a good CreateVM after the bad ones: %s", faultText(f))
	}
}

func TestNoActiveHostInCluster(t *testing.T) {
	fv, c := serve(t, testTopology())
	tasks{t}.must(object.NewHostSystem(c.Client, hostRef(t, fv, "C1_H0")).EnterMaintenanceMode(bg, 0, false, nil))
	_, f := createVM(t, fv, c, "C1", nil, vmSpec("x", "private", 1, 128))
	if _, ok := f.(*types.NoActiveHostInCluster); !ok {
		t.Errorf("a cluster whose hosts are all in maintenance mode: %s", typeName(f))
	}
}

func TestPowerOnNeedsAConnectedHost(t *testing.T) {
	fv, c := serve(t, testTopology())
	must, fails := tasks{t}.must, tasks{t}.fault
	h0 := hostRef(t, fv, "C0_H0")
	vm, _ := createVM(t, fv, c, "C0", &h0, vmSpec("x", "shared", 1, 128))
	must(object.NewHostSystem(c.Client, h0).Disconnect(bg))
	if _, ok := fails(object.NewVirtualMachine(c.Client, vm).PowerOn(bg)).(*types.InvalidHostConnectionState); !ok {
		t.Error("a VM of a disconnected host cannot power on")
	}
}
