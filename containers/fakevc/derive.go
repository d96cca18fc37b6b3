// Derived state: the figures vCenter computes from other facts (summaries,
// usage, free space), recomputed from those facts and published so that
// PropertyCollector filters see every change.
package main

import (
	"context"
	"log"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// deriver keeps derived figures in step with the facts they come from.
//
// Facts: host hardware, connection state, maintenance mode and membership;
// each VM's host, pool, power state, CPU, memory, reservations and disks; the
// topology's datastore sizes. Derived: host and VM quickStats, compute
// resource summaries (incl. the cluster usage summary), resource pool
// runtime, summary and root pool allocation, datastore free space and
// uncommitted space, and a cluster's datastore list.
//
// Anything that changes in the registry marks the state dirty (the registry
// hooks in fidelity.go). A sync recomputes everything and publishes only what
// changed, through Registry.Update, one leaf property at a time, so a filter
// on "summary" and one on "summary.quickStats.overallCpuUsage" both see it.
// Syncs run before each SOAP request is served (so a client always reads
// figures that match the facts it can read) and in the background soon after
// each change (so a WaitForUpdatesEx that is already waiting sees them too).
// A sync holds no lock while it waits for one, and takes object locks one at
// a time, so it cannot deadlock with vcsim's tasks.
type deriver struct {
	reg  *simulator.Registry
	inv  *inventory
	mu   sync.Mutex // one sync at a time
	self atomic.Pointer[simulator.Context]

	// notify tells every PropertyCollector about changes made without
	// Registry.Update (see setDirect).
	notify func(*simulator.Context, mo.Reference, []types.PropertyChange)
	// after runs at the end of each sync (the world prunes its collectors).
	after func()

	// creating are VMs that vcsim is still building (it puts a VM into the
	// inventory first and fills it in under its folder's lock, not the VM's):
	// not facts yet, and not safe to read, until their task completes.
	creating sync.Map // types.ManagedObjectReference -> struct{}
	// settled are the VMs seen complete by an earlier sync.
	settled map[types.ManagedObjectReference]bool
	// heardFree is each datastore's free space as PropertyCollector filters
	// last heard it (see publishDatastores).
	heardFree map[types.ManagedObjectReference]int64

	// lists are the inventory lists as last seen, to publish the changes
	// vcsim makes to them without Registry.Update (see publishLists).
	lists map[types.ManagedObjectReference][][]types.ManagedObjectReference

	dirty    atomic.Bool
	running  atomic.Bool // a sync is publishing (its dirty flag is already cleared)
	kick     chan struct{}
	stop     chan struct{}
	stopped  sync.WaitGroup
	statsGen int64
}

func newDeriver(reg *simulator.Registry, inv *inventory) *deriver {
	return &deriver{reg: reg, inv: inv, kick: make(chan struct{}, 1), stop: make(chan struct{})}
}

// start runs the background syncs until close.
func (d *deriver) start() {
	d.stopped.Add(1)
	go func() {
		defer d.stopped.Done()
		for {
			select {
			case <-d.stop:
				return
			case <-d.kick:
				d.syncIfDirty()
			}
		}
	}()
}

func (d *deriver) close() {
	close(d.stop)
	d.stopped.Wait()
}

// touch records a change made by ctx; the deriver's own updates do not count.
func (d *deriver) touch(ctx *simulator.Context) {
	if ctx != nil && ctx == d.self.Load() {
		return
	}
	d.dirty.Store(true)
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// syncIfDirty brings the figures up to date: it syncs when something
// changed, and waits for a sync that is still publishing (a background sync
// clears the dirty flag when it starts, so a reader that only checked the
// flag could read half-published figures).
func (d *deriver) syncIfDirty() {
	if d.dirty.Load() || d.running.Load() {
		d.sync()
	}
}

// sync recomputes every derived figure from the facts and publishes the
// ones that differ from what the objects show.
func (d *deriver) sync() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.dirty.Swap(false) {
		return
	}
	d.running.Store(true)
	defer d.running.Store(false)
	// The inventory changes under a sync (objects leave mid-way): a bug here
	// must not take the whole fake vCenter down with it.
	defer func() {
		if r := recover(); r != nil {
			log.Printf("fakevc: derived state not updated: %v\n%s", r, debug.Stack())
		}
	}()
	ctx := &simulator.Context{Context: context.Background(), Map: d.reg}
	d.self.Store(ctx)
	defer d.self.Store(nil)

	f := d.readFacts(ctx)
	for _, vm := range f.vms {
		d.publishVM(ctx, f, vm)
	}
	for ref, h := range f.hosts {
		d.publishHost(ctx, ref, h)
	}
	for _, e := range d.reg.All("ClusterComputeResource") {
		d.publishComputeResource(ctx, f, e)
	}
	for _, e := range d.reg.All("ComputeResource") {
		d.publishComputeResource(ctx, f, e)
	}
	d.publishPools(ctx, f)
	d.publishDatastores(ctx, f)
	d.publishLists(ctx)
	if d.after != nil {
		d.after()
	}
}

// lists are an object's reference lists that vcsim appends to directly
// (AddHost_Task, CreateVM_Task, ...), so a PropertyCollector filter on them
// never hears of the change.
func lists(e mo.Entity) ([]string, []any) {
	switch o := e.(type) {
	case *simulator.ClusterComputeResource:
		return []string{"host"}, []any{o.Host}
	case *mo.ComputeResource:
		return []string{"host"}, []any{o.Host}
	case *simulator.HostSystem:
		return []string{"vm", "datastore"}, []any{o.Vm, o.Datastore}
	case *simulator.ResourcePool:
		return []string{"vm", "resourcePool"}, []any{o.Vm, o.ResourcePool.ResourcePool}
	case *simulator.Datastore:
		return []string{"vm", "host"}, []any{o.Vm, o.Host}
	}
	return nil, nil
}

// publishLists publishes the reference lists that changed since the last
// sync (a list seen for the first time is only recorded).
func (d *deriver) publishLists(ctx *simulator.Context) {
	if d.lists == nil {
		d.lists = map[types.ManagedObjectReference][][]types.ManagedObjectReference{}
	}
	seen := make(map[types.ManagedObjectReference]bool, len(d.lists))
	for _, e := range d.reg.All("") {
		if props, _ := lists(e); props == nil {
			continue
		}
		ref := e.Reference()
		seen[ref] = true
		ctx.WithLock(ref, func() {
			props, vals := lists(e)
			old, known := d.lists[ref]
			if !known {
				old = make([][]types.ManagedObjectReference, len(props))
				for i := range props {
					old[i] = refsOf(vals[i])
				}
				d.lists[ref] = old
				return
			}
			var changes []types.PropertyChange
			for i, p := range props {
				if !sameRefs(old[i], vals[i]) {
					old[i] = refsOf(vals[i])
					changes = append(changes, types.PropertyChange{Name: p, Op: types.PropertyChangeOpAssign, Val: arrayOf(vals[i])})
				}
			}
			// The object already shows the change: only the collectors need
			// to hear of it (writing it again would race with vcsim's
			// unlocked reads of the object).
			if len(changes) > 0 && d.notify != nil {
				d.notify(ctx, e, changes)
			}
		})
	}
	for ref := range d.lists {
		if !seen[ref] {
			delete(d.lists, ref)
		}
	}
}

// arrayOf wraps a list as vcsim's Registry.Update does for the SOAP encoding.
func arrayOf(v any) any {
	switch l := v.(type) {
	case []types.ManagedObjectReference:
		return types.ArrayOfManagedObjectReference{ManagedObjectReference: slices.Clone(l)}
	case []types.DatastoreHostMount:
		return types.ArrayOfDatastoreHostMount{DatastoreHostMount: slices.Clone(l)}
	}
	return v
}

// sameRefs compares a recorded list with a current one, without copying.
func sameRefs(old []types.ManagedObjectReference, v any) bool {
	switch l := v.(type) {
	case []types.ManagedObjectReference:
		return slices.Equal(old, l)
	case []types.DatastoreHostMount:
		return slices.EqualFunc(old, l, func(r types.ManagedObjectReference, m types.DatastoreHostMount) bool { return r == m.Key })
	}
	return true
}

// refsOf copies a list of references (or of datastore mounts' hosts).
func refsOf(v any) []types.ManagedObjectReference {
	switch l := v.(type) {
	case []types.ManagedObjectReference:
		return slices.Clone(l)
	case []types.DatastoreHostMount:
		out := make([]types.ManagedObjectReference, len(l))
		for i, m := range l {
			out[i] = m.Key
		}
		return out
	}
	return nil
}

type hostFacts struct {
	mhz, cores, threads int32
	memBytes            int64
	overhead            overhead
	state               types.HostSystemConnectionState
	maintenance         bool
	datastores          []types.ManagedObjectReference
	// derived
	cpuUsage, memUsageMB int64
}

func (h *hostFacts) connected() bool {
	return h.state == types.HostSystemConnectionStateConnected
}

func (h *hostFacts) effective() bool { return h.connected() && !h.maintenance }

type diskFacts struct {
	ds    types.ManagedObjectReference
	bytes int64
	thin  bool
}

type vmFacts struct {
	ref, host, pool  types.ManagedObjectReference
	on               bool
	cpus             int64
	memMB            int64
	cpuRes, memResMB int64
	cpuLimit         int64 // MHz, -1: none
	memLimitMB       int64 // -1: none
	home             types.ManagedObjectReference
	disks            []diskFacts
	// derived, when running on a connected host
	cpuUsage   int64 // MHz
	consumedMB int64 // host memory the VM uses: its memory (up to its limit) and its overhead
	activeMB   int64 // guest memory in active use
	overheadMB int64 // the VM's overhead memory on the host
	running    bool
}

type facts struct {
	hosts map[types.ManagedObjectReference]*hostFacts
	vms   []*vmFacts
}

func (d *deriver) readFacts(ctx *simulator.Context) *facts {
	f := &facts{hosts: map[types.ManagedObjectReference]*hostFacts{}}
	for _, e := range d.reg.All("HostSystem") {
		h := e.(*simulator.HostSystem)
		ctx.WithLock(h.Self, func() {
			hw := h.Summary.Hardware
			f.hosts[h.Self] = &hostFacts{
				mhz: hw.CpuMhz, cores: int32(hw.NumCpuCores), threads: int32(hw.NumCpuThreads), memBytes: hw.MemorySize,
				overhead: d.inv.hostOverhead(h.Self, hw),
				state:    h.Runtime.ConnectionState, maintenance: h.Runtime.InMaintenanceMode,
				datastores: slices.Clone(h.Datastore),
			}
		})
	}
	dsNames := map[types.ManagedObjectReference]string{}
	for _, e := range d.reg.All("Datastore") {
		dsNames[e.Reference()] = e.Entity().Name
	}
	if d.settled == nil {
		d.settled = map[types.ManagedObjectReference]bool{}
	}
	present := map[types.ManagedObjectReference]bool{}
	for _, e := range d.reg.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		present[vm.Self] = true
		if !d.settled[vm.Self] {
			// A VM enters the registry a moment before the hook marks it as
			// being created; its creator holds the folder's lock throughout,
			// so passing that lock waits the creation out.
			if vm.Parent != nil {
				ctx.WithLock(*vm.Parent, func() {})
			}
			if _, busy := d.creating.Load(vm.Self); busy {
				continue
			}
			d.settled[vm.Self] = true
		}
		var v *vmFacts
		ctx.WithLock(vm.Self, func() { v = readVM(vm, dsNames) })
		if v == nil {
			continue
		}
		if h := f.hosts[v.host]; h != nil && h.connected() && v.on {
			v.running = true
			v.cpuUsage = v.cpus * int64(h.mhz)
			if v.cpuLimit >= 0 && v.cpuUsage > v.cpuLimit {
				v.cpuUsage = v.cpuLimit
			}
			v.overheadMB = vmOverheadMB(v.cpus, v.memMB)
			guest := v.memMB
			if v.memLimitMB >= 0 && v.memLimitMB < guest {
				guest = v.memLimitMB
			}
			v.consumedMB = guest + v.overheadMB
			v.activeMB = guest / 4
			h.cpuUsage += v.cpuUsage
			h.memUsageMB += v.consumedMB
		}
		f.vms = append(f.vms, v)
	}
	// A connected host runs its hypervisor, VMs or not.
	for _, h := range f.hosts {
		if h.connected() {
			h.cpuUsage += int64(h.overhead.cpuMHz)
			h.memUsageMB += h.overhead.memMB
		}
	}
	for ref := range d.settled {
		if !present[ref] {
			delete(d.settled, ref)
		}
	}
	return f
}

func readVM(vm *simulator.VirtualMachine, dsNames map[types.ManagedObjectReference]string) *vmFacts {
	if vm.Config == nil || vm.Runtime.Host == nil {
		return nil
	}
	v := &vmFacts{
		ref: vm.Self, host: *vm.Runtime.Host, on: vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn,
		cpus: int64(vm.Config.Hardware.NumCPU), memMB: int64(vm.Config.Hardware.MemoryMB), cpuLimit: -1, memLimitMB: -1,
	}
	if vm.ResourcePool != nil {
		v.pool = *vm.ResourcePool
	}
	if a := vm.Config.CpuAllocation; a != nil {
		v.cpuRes = deref(a.Reservation)
		if a.Limit != nil {
			v.cpuLimit = *a.Limit
		}
	}
	if a := vm.Config.MemoryAllocation; a != nil {
		v.memResMB = deref(a.Reservation)
		if a.Limit != nil {
			v.memLimitMB = *a.Limit
		}
	}
	byName := func(path string) types.ManagedObjectReference {
		var p object.DatastorePath
		if p.FromString(path) {
			for _, ref := range vm.Datastore {
				if dsNames[ref] == p.Datastore {
					return ref
				}
			}
		}
		return types.ManagedObjectReference{}
	}
	v.home = byName(vm.Config.Files.VmPathName)
	for _, dev := range vm.Config.Hardware.Device {
		disk, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		df := diskFacts{bytes: disk.CapacityInBytes}
		if df.bytes == 0 {
			df.bytes = disk.CapacityInKB * 1024
		}
		if b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
			info := b.GetVirtualDeviceFileBackingInfo()
			if info.Datastore != nil {
				df.ds = *info.Datastore
			} else {
				df.ds = byName(info.FileName)
			}
		}
		if b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok {
			df.thin = b.ThinProvisioned != nil && *b.ThinProvisioned
		} else if _, ok := disk.Backing.(*types.VirtualDiskSparseVer2BackingInfo); ok {
			df.thin = true
		}
		v.disks = append(v.disks, df)
	}
	return v
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func (d *deriver) publishVM(ctx *simulator.Context, f *facts, v *vmFacts) {
	vm, ok := d.reg.Get(v.ref).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	state := types.VirtualMachineConnectionStateConnected
	if h := f.hosts[v.host]; h != nil && !h.connected() {
		state = types.VirtualMachineConnectionStateDisconnected
	}
	var cpu, active, consumed, overhead int32
	if v.running {
		cpu, active, consumed, overhead = int32(v.cpuUsage), int32(v.activeMB), int32(v.consumedMB), int32(v.overheadMB)
	}
	d.publish(ctx, vm, func() bool {
		qs := &vm.Summary.QuickStats
		return vm.Runtime.ConnectionState == state && vm.Summary.Runtime.ConnectionState == state &&
			qs.OverallCpuUsage == cpu && qs.OverallCpuDemand == cpu && qs.GuestMemoryUsage == active &&
			qs.HostMemoryUsage == consumed && qs.ConsumedOverheadMemory == overhead
	}, func() []types.PropertyChange {
		return []types.PropertyChange{
			{Name: "runtime.connectionState", Val: state},
			{Name: "summary.runtime.connectionState", Val: state},
			{Name: "summary.quickStats.overallCpuUsage", Val: cpu},
			{Name: "summary.quickStats.overallCpuDemand", Val: cpu},
			{Name: "summary.quickStats.guestMemoryUsage", Val: active},
			{Name: "summary.quickStats.hostMemoryUsage", Val: consumed},
			{Name: "summary.quickStats.consumedOverheadMemory", Val: overhead},
		}
	})
}

func (d *deriver) publishHost(ctx *simulator.Context, ref types.ManagedObjectReference, h *hostFacts) {
	obj, ok := d.reg.Get(ref).(*simulator.HostSystem)
	if !ok {
		return
	}
	cpu, mem := int32(h.cpuUsage), int32(h.memUsageMB)
	d.publish(ctx, obj, func() bool {
		return obj.Summary.QuickStats.OverallCpuUsage == cpu && obj.Summary.QuickStats.OverallMemoryUsage == mem
	}, func() []types.PropertyChange {
		return []types.PropertyChange{
			{Name: "summary.quickStats.overallCpuUsage", Val: cpu},
			{Name: "summary.quickStats.overallMemoryUsage", Val: mem},
		}
	})
}

// computeSummary derives a compute resource's summary from its hosts, as
// vCenter does: totals count every host, effective figures only connected
// hosts not in maintenance mode, less each one's hypervisor overhead (what
// is left for VMs); totalCpu and effectiveCpu are MHz × cores (vcsim adds
// MHz once per host) and effectiveMemory is in MB (vcsim adds bytes). An
// empty cluster is green, not "" (which pyvmomi cannot parse).
func computeSummary(hosts []types.ManagedObjectReference, f *facts) types.ComputeResourceSummary {
	s := types.ComputeResourceSummary{OverallStatus: types.ManagedEntityStatusGreen}
	for _, ref := range hosts {
		h := f.hosts[ref]
		if h == nil {
			continue
		}
		s.NumHosts++
		s.NumCpuCores += int16(h.cores)
		s.NumCpuThreads += int16(h.threads)
		s.TotalCpu += h.mhz * h.cores
		s.TotalMemory += h.memBytes
		if h.effective() {
			s.NumEffectiveHosts++
			s.EffectiveCpu += h.mhz*h.cores - h.overhead.cpuMHz
			s.EffectiveMemory += h.memBytes/mib - h.overhead.memMB
		}
	}
	return s
}

func (d *deriver) publishComputeResource(ctx *simulator.Context, f *facts, e mo.Entity) {
	var cr *mo.ComputeResource
	var cluster *simulator.ClusterComputeResource
	switch o := e.(type) {
	case *simulator.ClusterComputeResource:
		cr, cluster = &o.ComputeResource, o
	case *mo.ComputeResource:
		cr = o
	default:
		return
	}
	ctx.WithLock(e.Reference(), func() {
		s := computeSummary(cr.Host, f)
		// The summary is an interface field holding a subtype, which
		// Registry.Update cannot write below: set directly, notify directly.
		changes := []types.PropertyChange{
			{Name: "summary.numHosts", Val: s.NumHosts},
			{Name: "summary.numEffectiveHosts", Val: s.NumEffectiveHosts},
			{Name: "summary.totalCpu", Val: s.TotalCpu},
			{Name: "summary.totalMemory", Val: s.TotalMemory},
			{Name: "summary.effectiveCpu", Val: s.EffectiveCpu},
			{Name: "summary.effectiveMemory", Val: s.EffectiveMemory},
			{Name: "summary.numCpuCores", Val: s.NumCpuCores},
			{Name: "summary.numCpuThreads", Val: s.NumCpuThreads},
			{Name: "summary.overallStatus", Val: s.OverallStatus},
		}
		if cluster != nil {
			if sum, ok := cluster.Summary.(*types.ClusterComputeResourceSummary); ok {
				usage := d.clusterUsage(cr.Host, f, s)
				if old := sum.UsageSummary; old != nil {
					usage.StatsGenNumber = old.StatsGenNumber
					if reflect.DeepEqual(*old, usage) {
						usage = *old
					}
				}
				if sum.UsageSummary == nil || !reflect.DeepEqual(*sum.UsageSummary, usage) {
					d.statsGen++
					usage.StatsGenNumber = d.statsGen
					changes = append(changes, types.PropertyChange{Name: "summary.usageSummary", Val: &usage})
				}
			}
		}
		if len(changes) > 9 || cr.Summary == nil || *cr.Summary.GetComputeResourceSummary() != s {
			d.setDirect(ctx, e, changes)
		}

		// A compute resource sees the datastores its hosts mount.
		var dss []types.ManagedObjectReference
		for _, ref := range cr.Host {
			if h := f.hosts[ref]; h != nil {
				for _, ds := range h.datastores {
					if !slices.Contains(dss, ds) {
						dss = append(dss, ds)
					}
				}
			}
		}
		if !sameSet(dss, cr.Datastore) {
			ctx.Map.Update(ctx, e, []types.PropertyChange{{Name: "datastore", Val: dss}})
		}
	})
}

func (d *deriver) clusterUsage(hosts []types.ManagedObjectReference, f *facts,
	s types.ComputeResourceSummary) types.ClusterUsageSummary {
	u := types.ClusterUsageSummary{TotalCpuCapacityMhz: s.EffectiveCpu, TotalMemCapacityMB: int32(s.EffectiveMemory)}
	in := map[types.ManagedObjectReference]bool{}
	for _, ref := range hosts {
		in[ref] = true
	}
	for _, v := range f.vms {
		if !in[v.host] {
			continue
		}
		// Demand is the VMs' (the hypervisor's share is not in the capacity).
		u.CpuDemandMhz += int32(v.cpuUsage)
		u.MemDemandMB += int32(v.consumedMB)
		u.TotalVmCount++
		if v.on {
			u.CpuReservationMhz += int32(v.cpuRes)
			u.MemReservationMB += int32(v.memResMB)
		} else {
			u.PoweredOffVmCount++
			u.PoweredOffCpuReservationMhz += int32(v.cpuRes)
			u.PoweredOffMemReservationMB += int32(v.memResMB)
		}
	}
	u.CpuEntitledMhz, u.MemEntitledMB = u.CpuDemandMhz, u.MemDemandMB
	return u
}

// poolFigures is one resource pool's derived usage.
type poolFigures struct {
	cpu, mem           types.ResourcePoolResourceUsage
	cpuMHz, memMB      int64 // usage (CPU, consumed memory) of running VMs in the pool and below
	activeMB           int64 // their active guest memory
	configuredMemoryMB int64
	reservationCPU     int64 // what the pool takes from its parent
	reservationMemB    int64
}

// publishPools derives each resource pool's runtime from the VMs in it and
// below it: maxUsage is the owner's effective capacity (or the pool's
// limit), overallUsage the usage of its running VMs, reservationUsed the
// reservations of its running VMs and of its child pools.
func (d *deriver) publishPools(ctx *simulator.Context, f *facts) {
	pools := map[types.ManagedObjectReference]*simulator.ResourcePool{}
	for _, e := range d.reg.All("ResourcePool") {
		pools[e.Reference()] = e.(*simulator.ResourcePool)
	}
	byPool := map[types.ManagedObjectReference][]*vmFacts{}
	for _, v := range f.vms {
		byPool[v.pool] = append(byPool[v.pool], v)
	}
	var walk func(p *simulator.ResourcePool, maxCPU, maxMem int64) poolFigures
	walk = func(p *simulator.ResourcePool, maxCPU, maxMem int64) poolFigures {
		var children []types.ManagedObjectReference
		var cpuAlloc, memAlloc types.ResourceAllocationInfo
		ctx.WithLock(p.Self, func() {
			children = slices.Clone(p.ResourcePool.ResourcePool)
			cpuAlloc, memAlloc = p.Config.CpuAllocation, p.Config.MemoryAllocation
		})
		if l := deref(cpuAlloc.Limit); cpuAlloc.Limit != nil && l >= 0 && l < maxCPU {
			maxCPU = l
		}
		if l := deref(memAlloc.Limit) * mib; memAlloc.Limit != nil && l >= 0 && l < maxMem {
			maxMem = l
		}
		var pf poolFigures
		pf.cpu.MaxUsage, pf.mem.MaxUsage = maxCPU, maxMem
		for _, v := range byPool[p.Self] {
			pf.configuredMemoryMB += v.memMB
			if v.running {
				pf.cpuMHz += v.cpuUsage
				pf.memMB += v.consumedMB
				pf.activeMB += v.activeMB
				pf.cpu.ReservationUsedForVm += v.cpuRes
				pf.mem.ReservationUsedForVm += v.memResMB * mib
			}
		}
		pf.cpu.ReservationUsed, pf.mem.ReservationUsed = pf.cpu.ReservationUsedForVm, pf.mem.ReservationUsedForVm
		for _, c := range children {
			child, ok := pools[c]
			if !ok {
				continue
			}
			cf := walk(child, maxCPU, maxMem)
			pf.cpuMHz += cf.cpuMHz
			pf.memMB += cf.memMB
			pf.activeMB += cf.activeMB
			pf.configuredMemoryMB += cf.configuredMemoryMB
			pf.cpu.ReservationUsed += cf.reservationCPU
			pf.mem.ReservationUsed += cf.reservationMemB
		}
		pf.cpu.OverallUsage, pf.mem.OverallUsage = pf.cpuMHz, pf.memMB*mib
		pf.cpu.UnreservedForPool = max(0, pf.cpu.MaxUsage-pf.cpu.ReservationUsed)
		pf.mem.UnreservedForPool = max(0, pf.mem.MaxUsage-pf.mem.ReservationUsed)
		pf.cpu.UnreservedForVm, pf.mem.UnreservedForVm = pf.cpu.UnreservedForPool, pf.mem.UnreservedForPool
		// A pool takes its reservation from its parent, or what its
		// children and VMs use when that is more and it may expand.
		pf.reservationCPU = max(deref(cpuAlloc.Reservation), expandable(cpuAlloc, pf.cpu.ReservationUsed))
		pf.reservationMemB = max(deref(memAlloc.Reservation)*mib, expandable(memAlloc, pf.mem.ReservationUsed))
		d.publishPool(ctx, p, pf)
		return pf
	}
	for _, p := range pools {
		owner, ok := d.reg.Get(*p.Parent).(mo.Entity)
		if !ok { // its compute resource is being destroyed
			continue
		}
		root := false
		var hosts []types.ManagedObjectReference
		switch o := owner.(type) {
		case *simulator.ClusterComputeResource:
			root, hosts = true, o.Host
		case *mo.ComputeResource:
			root, hosts = true, o.Host
		}
		if !root {
			continue
		}
		var s types.ComputeResourceSummary
		ctx.WithLock(owner.Reference(), func() { s = computeSummary(hosts, f) })
		d.publishRootAllocation(ctx, p, int64(s.EffectiveCpu), s.EffectiveMemory)
		walk(p, int64(s.EffectiveCpu), s.EffectiveMemory*mib)
	}
}

func expandable(a types.ResourceAllocationInfo, used int64) int64 {
	if a.ExpandableReservation != nil && *a.ExpandableReservation {
		return used
	}
	return 0
}

// publishRootAllocation sets a root pool's reservation and limit to its
// owner's effective capacity, as vCenter does.
func (d *deriver) publishRootAllocation(ctx *simulator.Context, p *simulator.ResourcePool, cpuMHz, memMB int64) {
	same := func() bool {
		sum, ok := p.Summary.(*types.ResourcePoolSummary)
		return ok && allocated(p.Config.CpuAllocation, cpuMHz) && allocated(p.Config.MemoryAllocation, memMB) &&
			allocated(sum.Config.CpuAllocation, cpuMHz) && allocated(sum.Config.MemoryAllocation, memMB)
	}
	var changes []types.PropertyChange
	for _, prefix := range []string{"config", "summary.config"} {
		changes = append(changes,
			types.PropertyChange{Name: prefix + ".cpuAllocation.reservation", Val: cpuMHz},
			types.PropertyChange{Name: prefix + ".cpuAllocation.limit", Val: cpuMHz},
			types.PropertyChange{Name: prefix + ".cpuAllocation.expandableReservation", Val: false},
			types.PropertyChange{Name: prefix + ".memoryAllocation.reservation", Val: memMB},
			types.PropertyChange{Name: prefix + ".memoryAllocation.limit", Val: memMB},
			types.PropertyChange{Name: prefix + ".memoryAllocation.expandableReservation", Val: false},
		)
	}
	d.publish(ctx, p, same, func() []types.PropertyChange { return changes })
}

// allocated tells whether an allocation reserves and limits exactly v.
func allocated(a types.ResourceAllocationInfo, v int64) bool {
	return a.Reservation != nil && *a.Reservation == v && a.Limit != nil && *a.Limit == v &&
		a.ExpandableReservation != nil && !*a.ExpandableReservation
}

func (d *deriver) publishPool(ctx *simulator.Context, p *simulator.ResourcePool, pf poolFigures) {
	same := func() bool {
		sum, ok := p.Summary.(*types.ResourcePoolSummary)
		if !ok || sum.QuickStats == nil {
			return false
		}
		qs := sum.QuickStats
		return p.Runtime.Cpu == pf.cpu && p.Runtime.Memory == pf.mem && sum.Runtime.Cpu == pf.cpu && sum.Runtime.Memory == pf.mem &&
			p.Runtime.OverallStatus == types.ManagedEntityStatusGreen && sum.Runtime.OverallStatus == types.ManagedEntityStatusGreen &&
			qs.OverallCpuUsage == pf.cpuMHz && qs.OverallCpuDemand == pf.cpuMHz && qs.GuestMemoryUsage == pf.activeMB &&
			qs.HostMemoryUsage == pf.memMB && sum.ConfiguredMemoryMB == int32(pf.configuredMemoryMB)
	}
	var changes []types.PropertyChange
	for _, prefix := range []string{"runtime", "summary.runtime"} {
		changes = append(changes, leaves(prefix+".cpu", pf.cpu)...)
		changes = append(changes, leaves(prefix+".memory", pf.mem)...)
		changes = append(changes, types.PropertyChange{Name: prefix + ".overallStatus", Val: types.ManagedEntityStatusGreen})
	}
	changes = append(changes,
		types.PropertyChange{Name: "summary.quickStats.overallCpuUsage", Val: pf.cpuMHz},
		types.PropertyChange{Name: "summary.quickStats.overallCpuDemand", Val: pf.cpuMHz},
		types.PropertyChange{Name: "summary.quickStats.guestMemoryUsage", Val: pf.activeMB},
		types.PropertyChange{Name: "summary.quickStats.hostMemoryUsage", Val: pf.memMB},
		types.PropertyChange{Name: "summary.configuredMemoryMB", Val: int32(pf.configuredMemoryMB)},
	)
	d.publish(ctx, p, same, func() []types.PropertyChange { return changes })
}

// publishDatastores derives the free and uncommitted space of the
// topology's datastores from the VMs' disks: a thick disk takes its capacity
// from freeSpace, a thin one adds its capacity to uncommitted, and a running
// VM's swap file (memory minus memory reservation) takes space from its home
// datastore, as on ESX.
func (d *deriver) publishDatastores(ctx *simulator.Context, f *facts) {
	committed := map[types.ManagedObjectReference]int64{}
	uncommitted := map[types.ManagedObjectReference]int64{}
	for _, v := range f.vms {
		for _, disk := range v.disks {
			if disk.thin {
				uncommitted[disk.ds] += disk.bytes
			} else {
				committed[disk.ds] += disk.bytes
			}
		}
		if v.on && v.home.Value != "" {
			committed[v.home] += max(0, v.memMB-v.memResMB) * mib
		}
	}
	for ref, spec := range d.inv.datastores {
		ds, ok := d.reg.Get(ref).(*simulator.Datastore)
		if !ok {
			continue
		}
		capacity := spec.CapacityMB * mib
		free := max(0, spec.FreeMB*mib-committed[ref])
		// vcsim writes free space itself when it adds or removes a disk,
		// without telling PropertyCollector filters: a value it wrote that
		// equals the derived one is still news to them (a filter on
		// summary.freeSpace would keep the value before the disk went).
		if d.heardFree == nil {
			d.heardFree = map[types.ManagedObjectReference]int64{}
		}
		heard, known := d.heardFree[ref]
		news := !known || heard != free
		d.heardFree[ref] = free
		d.publish(ctx, ds, func() bool {
			info := ds.Info.GetDatastoreInfo()
			return !news && ds.Summary.Capacity == capacity && ds.Summary.FreeSpace == free && ds.Summary.Uncommitted == uncommitted[ref] &&
				info.FreeSpace == free && info.MaxFileSize == capacity
		}, func() []types.PropertyChange {
			// info holds a subtype of DatastoreInfo (see setDirect).
			d.setDirect(ctx, ds, []types.PropertyChange{
				{Name: "info.freeSpace", Val: free},
				{Name: "info.maxFileSize", Val: capacity},
			})
			if news && ds.Summary.FreeSpace == free && d.notify != nil { // publish would drop it as no change
				d.notify(ctx, ds, []types.PropertyChange{
					{Name: "summary.freeSpace", Op: types.PropertyChangeOpAssign, Val: free},
					{Name: "info.freeSpace", Op: types.PropertyChangeOpAssign, Val: free},
				})
			}
			return []types.PropertyChange{
				{Name: "summary.capacity", Val: capacity},
				{Name: "summary.freeSpace", Val: free},
				{Name: "summary.uncommitted", Val: uncommitted[ref]},
			}
		})
	}
}

// publish applies the changes that differ from what obj shows, under obj's
// lock, through Registry.Update (which notifies PropertyCollector filters).
// same is a cheap check that nothing differs; the lock is taken by moref,
// which spares vcsim's locker a reflective lookup of the object's Self field.
func (d *deriver) publish(ctx *simulator.Context, obj mo.Reference, same func() bool, changes func() []types.PropertyChange) {
	ctx.WithLock(obj.Reference(), func() {
		if same() {
			return
		}
		if changes := d.diff(obj, changes()); len(changes) > 0 {
			ctx.Map.Update(ctx, obj, changes)
		}
	})
}

// diff keeps the changes whose value differs from obj's current one.
func (d *deriver) diff(obj mo.Reference, changes []types.PropertyChange) []types.PropertyChange {
	out := changes[:0]
	for _, c := range changes {
		cur, ok := fieldByPath(obj, c.Name)
		// Registry.Update takes a pointer field's value, not a pointer.
		if rv := reflect.ValueOf(cur); ok && rv.Kind() == reflect.Pointer && !rv.IsNil() &&
			reflect.TypeOf(c.Val) == rv.Type().Elem() {
			cur = rv.Elem().Interface()
		}
		if !ok || !reflect.DeepEqual(cur, c.Val) {
			out = append(out, c)
		}
	}
	return out
}

// setDirect writes the changes that differ into obj (whose lock the caller
// holds) and notifies the PropertyCollectors itself. It is for properties
// below an interface field that holds a subtype (a cluster's summary, a
// datastore's info): Registry.Update resolves such a path with the base
// type's field indices and writes the wrong field of the subtype.
func (d *deriver) setDirect(ctx *simulator.Context, obj mo.Reference, changes []types.PropertyChange) {
	var changed []types.PropertyChange
	for _, c := range changes {
		v, ok := fieldRef(obj, c.Name)
		if !ok || !v.CanSet() {
			continue
		}
		if !reflect.DeepEqual(v.Interface(), c.Val) {
			v.Set(reflect.ValueOf(c.Val))
			c.Op = types.PropertyChangeOpAssign // Registry.Update fills it in; pyvmomi refuses an empty op
			changed = append(changed, c)
		}
	}
	if len(changed) > 0 && d.notify != nil {
		d.notify(ctx, obj, changed)
	}
}

// fieldRef is a settable reference to a property of a managed object.
func fieldRef(obj any, path string) (reflect.Value, bool) {
	v := moValue(obj)
	for _, name := range strings.Split(path, ".") {
		for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		v = v.FieldByName(strings.ToUpper(name[:1]) + name[1:])
		if !v.IsValid() {
			return reflect.Value{}, false
		}
	}
	return v, true
}

// fieldByPath reads a property of a managed object, e.g.
// "summary.quickStats.overallCpuUsage", through pointers and interfaces.
func fieldByPath(obj any, path string) (any, bool) {
	v := moValue(obj)
	for _, name := range strings.Split(path, ".") {
		for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
			if v.IsNil() {
				return nil, false
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return nil, false
		}
		v = v.FieldByName(strings.ToUpper(name[:1]) + name[1:])
		if !v.IsValid() {
			return nil, false
		}
	}
	return v.Interface(), true
}

// moValue is the managed object struct inside a vcsim wrapper (whose first
// field embeds it), so that a property such as mo.ResourcePool.ResourcePool
// is not mistaken for the embedded struct of the same name.
func moValue(obj any) reflect.Value {
	v := reflect.ValueOf(obj)
	for {
		for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
			if v.IsNil() {
				return v
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct || strings.HasSuffix(v.Type().PkgPath(), "/mo") || v.NumField() == 0 {
			return v
		}
		v = v.Field(0)
	}
}

// leaves flattens a struct of scalars into one change per field.
func leaves(prefix string, v any) []types.PropertyChange {
	rv := reflect.ValueOf(v)
	rt := rv.Type()
	var out []types.PropertyChange
	for i := range rt.NumField() {
		f := rt.Field(i)
		if f.Anonymous {
			continue
		}
		out = append(out, types.PropertyChange{Name: prefix + "." + strings.ToLower(f.Name[:1]) + f.Name[1:],
			Val: rv.Field(i).Interface()})
	}
	return out
}

func sameSet(a, b []types.ManagedObjectReference) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// overhead is the hypervisor's share of a host.
type overhead struct {
	cpuMHz int32
	memMB  int64
}

// defaultOverhead is the share when the topology gives none (a host added
// later; conformance/topology.py fills it in for the topology's hosts with
// the same rule): 2 % of the CPU capacity, 1 GiB and 1 % of the memory
// (never more than half of it), roughly what an idle ESXi host uses.
func defaultOverhead(cores, mhz int32, memMB int64) overhead {
	return overhead{cpuMHz: cores * mhz / 50, memMB: min(memMB/2, 1024+memMB/100)}
}

// vmOverheadMB is a running VM's overhead memory on its host (page tables,
// device state, the VMX process): ESXi's grows with vCPUs and memory; this
// approximates its published table (e.g. 1 vCPU, 1 GB: ~40 MB; 4 vCPUs,
// 8 GB: ~130 MB).
func vmOverheadMB(cpus, memMB int64) int64 {
	return 32 + 8*cpus + memMB/128
}
