// Tests of the cluster and host life cycle: maintenance mode, connection, moves, destroy, and that every
// change reaches PropertyCollector waiters.
package main

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

func TestMaintenanceModeChangesEffectiveFigures(t *testing.T) {
	must, fails := tasks{t}.must, tasks{t}.fault
	fv, c := serve(t, testTopology())
	c0 := ref(t, fv, "ClusterComputeResource", "C0")
	h1 := object.NewHostSystem(c.Client, hostRef(t, fv, "C0_H1"))

	must(h1.EnterMaintenanceMode(bg, 0, false, nil))
	s := clusterSummary(t, c, c0)
	// C0_H0 (8 cores, 64 GiB) is the only effective host left.
	if s.NumHosts != 4 || s.NumEffectiveHosts != 1 || s.EffectiveCpu != 2000*8 || s.EffectiveMemory != 64*1024 ||
		s.TotalCpu != 2000*32 {
		t.Errorf("after entering maintenance mode: %+v", s.ComputeResourceSummary)
	}
	if h := hostMO(t, c, h1.Reference()); !h.Runtime.InMaintenanceMode || !h.Summary.Runtime.InMaintenanceMode {
		t.Error("the host does not show maintenance mode")
	}
	if _, ok := fails(h1.EnterMaintenanceMode(bg, 0, false, nil)).(*types.InvalidState); !ok {
		t.Error("entering maintenance mode twice should fail with InvalidState")
	}

	must(h1.ExitMaintenanceMode(bg, 0))
	if s := clusterSummary(t, c, c0); s.NumEffectiveHosts != 2 || s.EffectiveMemory != (64+128)*1024 {
		t.Errorf("after exiting maintenance mode: %+v", s.ComputeResourceSummary)
	}
	if _, ok := fails(h1.ExitMaintenanceMode(bg, 0)).(*types.InvalidState); !ok {
		t.Error("exiting maintenance mode when not in it should fail with InvalidState")
	}
	disconnected := object.NewHostSystem(c.Client, hostRef(t, fv, "C0_H3"))
	if _, ok := fails(disconnected.EnterMaintenanceMode(bg, 0, false, nil)).(*types.InvalidHostConnectionState); !ok {
		t.Error("a disconnected host cannot enter maintenance mode")
	}
}

func TestEnterMaintenanceModeMovesRunningVMs(t *testing.T) {
	must, fails := tasks{t}.must, tasks{t}.fault
	fv, c := serve(t, testTopology())
	h0 := hostRef(t, fv, "C0_H0")
	vm, f := createVM(t, fv, c, "C0", &h0, vmSpec("busy", "shared", 2, 1024))
	if f != nil {
		t.Fatal(faultText(f))
	}
	must(object.NewVirtualMachine(c.Client, vm).PowerOn(bg))
	must(object.NewHostSystem(c.Client, h0).EnterMaintenanceMode(bg, 0, false, nil))
	var m mo.VirtualMachine
	retrieve(t, c, vm, []string{"runtime"}, &m)
	if *m.Runtime.Host != hostRef(t, fv, "C0_H1") || m.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		t.Errorf("the running VM should have moved to C0_H1, the only other active host: %s %s", m.Runtime.Host, m.Runtime.PowerState)
	}
	if h := hostMO(t, c, hostRef(t, fv, "C0_H1")); h.Summary.QuickStats.OverallMemoryUsage != int32(1024+vmOverheadMB(2, 1024)) || !slices.Contains(h.Vm, vm) {
		t.Errorf("C0_H1 should run the VM: %+v", h.Summary.QuickStats)
	}

	// C1 has a single host: nowhere to go.
	h := hostRef(t, fv, "C1_H0")
	vm2, _ := createVM(t, fv, c, "C1", nil, vmSpec("stuck", "private", 1, 512))
	must(object.NewVirtualMachine(c.Client, vm2).PowerOn(bg))
	if _, ok := fails(object.NewHostSystem(c.Client, h).EnterMaintenanceMode(bg, 0, false, nil)).(*types.InvalidState); !ok {
		t.Error("a host whose running VM cannot move should not enter maintenance mode")
	}
}

func TestDisconnectAndReconnect(t *testing.T) {
	must := tasks{t}.must
	fv, c := serve(t, testTopology())
	c0 := ref(t, fv, "ClusterComputeResource", "C0")
	h0 := hostRef(t, fv, "C0_H0")
	vm, _ := createVM(t, fv, c, "C0", &h0, vmSpec("vm", "shared", 1, 2048))
	must(object.NewVirtualMachine(c.Client, vm).PowerOn(bg))
	host := object.NewHostSystem(c.Client, h0)

	must(host.Disconnect(bg))
	if s := clusterSummary(t, c, c0); s.NumEffectiveHosts != 1 || s.EffectiveMemory != 128*1024 {
		t.Errorf("after disconnecting C0_H0: %+v", s.ComputeResourceSummary)
	}
	h := hostMO(t, c, h0)
	if h.Runtime.ConnectionState != types.HostSystemConnectionStateDisconnected || h.Summary.QuickStats.OverallMemoryUsage != 0 {
		t.Errorf("a disconnected host: state %s, quickStats %+v", h.Runtime.ConnectionState, h.Summary.QuickStats)
	}
	var m mo.VirtualMachine
	retrieve(t, c, vm, []string{"runtime"}, &m)
	if m.Runtime.ConnectionState != types.VirtualMachineConnectionStateDisconnected {
		t.Errorf("a VM of a disconnected host shows %s", m.Runtime.ConnectionState)
	}

	must(host.Reconnect(bg, nil, nil))
	if s := clusterSummary(t, c, c0); s.NumEffectiveHosts != 2 {
		t.Errorf("after reconnecting C0_H0: %+v", s.ComputeResourceSummary)
	}
	if h := hostMO(t, c, h0); h.Summary.QuickStats.OverallMemoryUsage != int32(2048+vmOverheadMB(1, 2048)) {
		t.Errorf("the reconnected host runs its VM again: %+v", h.Summary.QuickStats)
	}
}

func TestMoveHostBetweenClusters(t *testing.T) {
	must, fails := tasks{t}.must, tasks{t}.fault
	fv, c := serve(t, testTopology())
	c0, c1 := ref(t, fv, "ClusterComputeResource", "C0"), ref(t, fv, "ClusterComputeResource", "C1")
	h1 := hostRef(t, fv, "C0_H1")
	vm, _ := createVM(t, fv, c, "C0", &h1, vmSpec("rides-along", "shared", 1, 256))
	dest := object.NewClusterComputeResource(c.Client, c1)

	if _, ok := fails(dest.MoveInto(bg, object.NewHostSystem(c.Client, h1))).(*types.InvalidState); !ok {
		t.Fatal("a host outside maintenance mode should not leave its cluster")
	}
	must(object.NewHostSystem(c.Client, h1).EnterMaintenanceMode(bg, 0, false, nil))
	must(dest.MoveInto(bg, object.NewHostSystem(c.Client, h1)))
	must(object.NewHostSystem(c.Client, h1).ExitMaintenanceMode(bg, 0))

	if s := clusterSummary(t, c, c0); s.NumHosts != 3 || s.NumEffectiveHosts != 1 || s.TotalMemory != (64+16+16)<<30 {
		t.Errorf("source after the move: %+v", s.ComputeResourceSummary)
	}
	if s := clusterSummary(t, c, c1); s.NumHosts != 2 || s.NumEffectiveHosts != 2 || s.EffectiveMemory != (8+128)*1024 {
		t.Errorf("destination after the move: %+v", s.ComputeResourceSummary)
	}
	var src, dst mo.ClusterComputeResource
	retrieve(t, c, c0, []string{"host", "datastore"}, &src)
	retrieve(t, c, c1, []string{"host", "resourcePool", "datastore"}, &dst)
	if slices.Contains(src.Host, h1) || !slices.Contains(dst.Host, h1) {
		t.Errorf("host lists: source %v, destination %v", src.Host, dst.Host)
	}
	if h := hostMO(t, c, h1); *h.Parent != c1 {
		t.Errorf("the host's parent is %s", h.Parent)
	}
	var m mo.VirtualMachine
	retrieve(t, c, vm, []string{"resourcePool"}, &m)
	if *m.ResourcePool != *dst.ResourcePool {
		t.Errorf("the host's VM should be in the destination's root pool, is in %s", m.ResourcePool)
	}
	if len(dst.Datastore) != 2 {
		t.Errorf("the destination now sees the moved host's datastores: %v", dst.Datastore)
	}
	if _, ok := fails(dest.MoveInto(bg, object.NewHostSystem(c.Client, h1))).(*types.DuplicateName); !ok {
		t.Error("moving a host into its own cluster should fail")
	}
}

func TestMoveStandaloneHostIntoCluster(t *testing.T) {
	must := tasks{t}.must
	fv, c := serve(t, testTopology())
	sa := hostRef(t, fv, "SA_H0")
	cr := *fv.reg().Get(sa).(*simulator.HostSystem).Parent
	c1 := ref(t, fv, "ClusterComputeResource", "C1")
	res, err := methods.MoveHostInto_Task(bg, c.Client, &types.MoveHostInto_Task{This: c1, Host: sa})
	if err != nil {
		t.Fatal(err)
	}
	must(object.NewTask(c.Client, res.Returnval), nil)
	if fv.reg().Get(cr) != nil {
		t.Error("the standalone compute resource should be gone")
	}
	if s := clusterSummary(t, c, c1); s.NumHosts != 2 || s.EffectiveMemory != (8+32)*1024 {
		t.Errorf("C1 with SA_H0: %+v", s.ComputeResourceSummary)
	}
}

func TestMoveHostOutOfItsClusterIntoAFolder(t *testing.T) {
	must, fails := tasks{t}.must, tasks{t}.fault
	fv, c := serve(t, testTopology())
	h2 := hostRef(t, fv, "C0_H2") // in maintenance mode
	dc := fv.reg().Get(ref(t, fv, "Datacenter", "DC0")).(*simulator.Datacenter)
	folder := object.NewFolder(c.Client, dc.HostFolder)
	must(folder.MoveInto(bg, []types.ManagedObjectReference{h2}))
	h := hostMO(t, c, h2)
	if h.Parent.Type != "ComputeResource" {
		t.Fatalf("the host's parent is %s", h.Parent)
	}
	var cr mo.ComputeResource
	retrieve(t, c, *h.Parent, []string{"name", "parent", "host", "resourcePool", "summary"}, &cr)
	if cr.Name != "C0_H2" || *cr.Parent != dc.HostFolder || cr.Summary.GetComputeResourceSummary().NumHosts != 1 {
		t.Errorf("the new standalone compute resource: %+v", cr)
	}
	if s := clusterSummary(t, c, ref(t, fv, "ClusterComputeResource", "C0")); s.NumHosts != 3 {
		t.Errorf("C0 keeps %d hosts", s.NumHosts)
	}
	if _, ok := fails(folder.MoveInto(bg, []types.ManagedObjectReference{hostRef(t, fv, "C0_H0")})).(*types.InvalidState); !ok {
		t.Error("a host outside maintenance mode should not leave its cluster")
	}
}

func TestDestroyHost(t *testing.T) {
	must, fails := tasks{t}.must, tasks{t}.fault
	fv, c := serve(t, testTopology())
	c0 := ref(t, fv, "ClusterComputeResource", "C0")
	h0, h2 := hostRef(t, fv, "C0_H0"), hostRef(t, fv, "C0_H2")
	if _, ok := fails(object.NewHostSystem(c.Client, h0).Destroy(bg)).(*types.InvalidState); !ok {
		t.Error("a connected host outside maintenance mode cannot be removed")
	}
	must(object.NewHostSystem(c.Client, h2).Destroy(bg)) // in maintenance mode
	s := clusterSummary(t, c, c0)
	if s.NumHosts != 3 || s.TotalMemory != (64+128+16)<<30 || s.NumCpuCores != 8+16+4 {
		t.Errorf("C0 after removing C0_H2: %+v", s.ComputeResourceSummary)
	}
	var cl mo.ClusterComputeResource
	retrieve(t, c, c0, []string{"host"}, &cl)
	if slices.Contains(cl.Host, h2) || fv.reg().Get(h2) != nil {
		t.Error("the removed host is still listed")
	}
	must(object.NewHostSystem(c.Client, hostRef(t, fv, "C0_H3")).Destroy(bg)) // disconnected

	sa := hostRef(t, fv, "SA_H0")
	if _, ok := fails(object.NewHostSystem(c.Client, sa).Destroy(bg)).(*types.NotSupported); !ok {
		t.Error("a standalone host is destroyed through its compute resource")
	}
	cr := *fv.reg().Get(sa).(*simulator.HostSystem).Parent
	must(object.NewComputeResource(c.Client, cr).Destroy(bg))
	if fv.reg().Get(sa) != nil || fv.reg().Get(cr) != nil {
		t.Error("destroying the compute resource should remove it and its host")
	}
}

// Changes to facts and to derived figures reach WaitForUpdatesEx, also when
// two sessions wait on the default PropertyCollector (vcsim notifies only
// the last one to start).
func TestChangesReachEveryWaitingSession(t *testing.T) {
	must := tasks{t}.must
	fv, base := serveURL(t, testTopology())
	c0 := ref(t, fv, "ClusterComputeResource", "C0")
	h1 := hostRef(t, fv, "C0_H1")
	clients := []struct {
		path string
	}{{"summary.numEffectiveHosts"}, {"summary"}}
	var wg sync.WaitGroup
	results := make([]int32, len(clients))
	ready := make(chan struct{}, len(clients))
	for i, cl := range clients {
		c := login(t, base)
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			err := property.Wait(bg, property.DefaultCollector(c.Client), c0, []string{cl.path}, func(pc []types.PropertyChange) bool {
				if first {
					first = false
					ready <- struct{}{}
					return false
				}
				for _, ch := range pc {
					switch v := ch.Val.(type) {
					case int32:
						results[i] = v
					case types.ClusterComputeResourceSummary:
						results[i] = v.NumEffectiveHosts
					}
				}
				return results[i] == 1
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	for range clients {
		<-ready
	}
	time.Sleep(50 * time.Millisecond) // both are now inside WaitForUpdatesEx
	c := login(t, base)
	must(object.NewHostSystem(c.Client, h1).EnterMaintenanceMode(bg, 0, false, nil))
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("not every waiting session saw numEffectiveHosts drop to 1: %v", results)
	}
}

func TestDestroyClusterNotifiesItsFolder(t *testing.T) {
	must := tasks{t}.must
	fv, c := serve(t, testTopology())
	e := ref(t, fv, "ClusterComputeResource", "EMPTY")
	must(object.NewClusterComputeResource(c.Client, e).Destroy(bg))
	var f mo.Folder
	dc := fv.reg().Get(ref(t, fv, "Datacenter", "DC0")).(*simulator.Datacenter)
	retrieve(t, c, dc.HostFolder, []string{"childEntity"}, &f)
	if slices.Contains(f.ChildEntity, e) {
		t.Error("the host folder still lists the destroyed cluster")
	}
}

// vcsim appends to inventory lists directly (AddHost_Task to a cluster's
// hosts, CreateVM_Task to a host's VMs); fakevc publishes those changes.
func TestListChangesReachWaiters(t *testing.T) {
	fv, base := serveURL(t, testTopology())
	c1, h0 := ref(t, fv, "ClusterComputeResource", "C1"), hostRef(t, fv, "C1_H0")
	watch := func(obj types.ManagedObjectReference, prop string, want int) chan int {
		c := login(t, base)
		got := make(chan int, 1)
		started := make(chan struct{})
		go func() {
			first, n := true, -1
			err := property.Wait(bg, property.DefaultCollector(c.Client), obj, []string{prop}, func(pc []types.PropertyChange) bool {
				if first {
					first = false
					close(started)
					return false
				}
				for _, ch := range pc {
					if refs, ok := ch.Val.(types.ArrayOfManagedObjectReference); ok {
						n = len(refs.ManagedObjectReference)
					}
				}
				return n == want
			})
			if err != nil {
				t.Error(err)
			}
			got <- n
		}()
		<-started
		return got
	}
	hosts := watch(c1, "host", 2)
	vms := watch(h0, "vm", 1)
	time.Sleep(50 * time.Millisecond) // both are waiting
	c := login(t, base)
	tasks{t}.must(object.NewClusterComputeResource(c.Client, c1).AddHost(bg, types.HostConnectSpec{HostName: "added"}, true, nil, nil))
	if _, f := createVM(t, fv, c, "C1", &h0, vmSpec("listed", "private", 1, 128)); f != nil {
		t.Fatal(faultText(f))
	}
	for name, ch := range map[string]chan int{"cluster hosts": hosts, "host VMs": vms} {
		select {
		case <-ch:
		case <-time.After(20 * time.Second):
			t.Errorf("the change to the %s never reached the waiter", name)
		}
	}
}
