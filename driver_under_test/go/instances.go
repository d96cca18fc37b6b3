// Spawn, destroy and the instance lookups (docs/driver.md, "Spawn" and "Instances"): a spawn goes to the
// node's own cluster, a usable host and datastore of it, and tags the VM with the instance uuid
// (config.instanceUuid) so the VM is found again wherever it is; a VM belongs to the node of the cluster that
// owns its resource pool.

package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

var powerStates = map[string]string{"poweredOn": "running", "poweredOff": "shutdown", "suspended": "suspended"}

// vmProperties are what instance lookups read: the VM, and (following resourcePool) its pool's owner.
var vmProperties = []types.PropertySpec{
	{Type: "VirtualMachine", PathSet: []string{"config.instanceUuid", "runtime.powerState", "resourcePool"}},
	{Type: "ResourcePool", PathSet: []string{"owner"}},
}

// placementHost is a schedulable host of the spawn's cluster, with its name and mounts read for the spawn.
type placementHost struct {
	facts      *object // from the snapshot: state and memory
	name       string
	datastores map[string]bool
}

// placementHosts reads the node's schedulable hosts' names and mounted datastores now (one query from the
// cluster, so a host that left it since the snapshot is not offered).
func (d *Driver) placementHosts(ctx context.Context, n *Node) ([]placementHost, error) {
	schedulable := map[string]*object{}
	for _, h := range n.Hosts {
		if d.schedulable(h) {
			schedulable[h.ref.Value] = h
		}
	}
	if len(schedulable) == 0 {
		return nil, nil
	}
	// The cluster itself is in the answer (its host list), so an answer without a session is recognised.
	spec := types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{Obj: n.Cluster, Skip: types.NewBool(false), SelectSet: []types.BaseSelectionSpec{
			&types.TraversalSpec{SelectionSpec: types.SelectionSpec{Name: "host"}, Path: "host", Skip: types.NewBool(false),
				Type: "ComputeResource"}}}},
		PropSet: []types.PropertySpec{{Type: "ComputeResource", PathSet: []string{"host"}},
			{Type: "HostSystem", PathSet: []string{"name", "datastore"}}},
	}
	var objects []types.ObjectContent
	err := d.call(ctx, "read hosts", true, func(ctx context.Context) error {
		var err error
		objects, err = d.retrieve(ctx, spec)
		return err
	})
	if err != nil {
		var de *DriverError
		if errors.As(err, &de) {
			return nil, err
		}
		return nil, newError("SpawnFailed", "reading the hosts of %s: %s; nothing was created", n.Path, errorText(err))
	}
	var hosts []placementHost
	for _, o := range objects {
		facts, ok := schedulable[o.Obj.Value]
		if !ok {
			continue
		}
		h := placementHost{facts: facts, datastores: map[string]bool{}}
		for _, p := range o.PropSet {
			switch p.Name {
			case "name":
				h.name = str(p.Val)
			case "datastore":
				for _, ds := range mors(p.Val) {
					h.datastores[ds.Value] = true
				}
			}
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// choose is the placement policy: the usable datastore with the most free space that has room for the root
// disk and is mounted by a schedulable host; the host among those with the most free memory. Ties go to the
// lower name, so the choice is reproducible.
func (d *Driver) choose(ctx context.Context, n *Node, inst Instance) (placementHost, *object, error) {
	hosts, err := d.placementHosts(ctx, n)
	if err != nil {
		return placementHost{}, nil, err
	}
	mounted := map[string]bool{}
	for _, h := range hosts {
		for ds := range h.datastores {
			mounted[ds] = true
		}
	}
	var ds *object
	for _, s := range d.usableDatastores(n) {
		free := integer(s.props["summary.freeSpace"])
		if !mounted[s.ref.Value] || free < inst.RootGB*gib {
			continue
		}
		if ds == nil || free > integer(ds.props["summary.freeSpace"]) ||
			(free == integer(ds.props["summary.freeSpace"]) && str(s.props["name"]) < str(ds.props["name"])) {
			ds = s
		}
	}
	if ds == nil {
		return placementHost{}, nil, newError("SpawnFailed", "node %s (%s) has no schedulable host with a usable "+
			"datastore that has %d GiB free; nothing was created", n.Name, n.Path, inst.RootGB)
	}
	freeMB := func(h placementHost) int64 {
		return integer(h.facts.props["summary.hardware.memorySize"])/mib -
			integer(h.facts.props["summary.quickStats.overallMemoryUsage"])
	}
	var best *placementHost
	for i := range hosts {
		h := &hosts[i]
		if !h.datastores[ds.ref.Value] {
			continue
		}
		if best == nil || freeMB(*h) > freeMB(*best) || (freeMB(*h) == freeMB(*best) && h.name < best.name) {
			best = h
		}
	}
	return *best, ds, nil
}

// pool is the root resource pool, or the configured pool below it (one lookup per spawn).
func (d *Driver) pool(ctx context.Context, n *Node) (types.ManagedObjectReference, error) {
	wanted := d.config().ResourcePool
	if wanted == nil {
		return n.Pool, nil
	}
	path := n.Path + "/Resources/" + strings.Trim(*wanted, "/")
	var found *types.ManagedObjectReference
	err := d.call(ctx, "find resource pool", true, func(ctx context.Context) error {
		res, err := methods.FindByInventoryPath(ctx, d.vc, &types.FindByInventoryPath{
			This: *d.vc.ServiceContent.SearchIndex, InventoryPath: path})
		if err == nil {
			found = res.Returnval
		}
		return err
	})
	if err != nil {
		var de *DriverError
		if errors.As(err, &de) {
			return types.ManagedObjectReference{}, err
		}
		return types.ManagedObjectReference{}, newError("SpawnFailed", "looking up resource pool %s: %s", path,
			errorText(err))
	}
	if found == nil || found.Type != "ResourcePool" {
		return types.ManagedObjectReference{}, newError("SpawnFailed", "no resource pool %s (resource_pool %q); "+
			"nothing was created", path, *wanted)
	}
	return *found, nil
}

// vmSpec: the VM named and tagged (instanceUuid) by the instance uuid, with a thick root disk of root_gb.
func vmSpec(inst Instance, datastore, serviceID string) types.VirtualMachineConfigSpec {
	var devices []types.BaseVirtualDeviceConfigSpec
	if inst.RootGB > 0 {
		controller := &types.ParaVirtualSCSIController{VirtualSCSIController: types.VirtualSCSIController{
			SharedBus: types.VirtualSCSISharingNoSharing,
			VirtualController: types.VirtualController{BusNumber: 0,
				VirtualDevice: types.VirtualDevice{Key: 1000}}}}
		disk := &types.VirtualDisk{
			VirtualDevice: types.VirtualDevice{Key: -1, ControllerKey: 1000, UnitNumber: types.NewInt32(0),
				Backing: &types.VirtualDiskFlatVer2BackingInfo{DiskMode: "persistent",
					ThinProvisioned: types.NewBool(false),
					VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{
						FileName: "[" + datastore + "]"}}},
			CapacityInKB: inst.RootGB * gib / 1024}
		devices = []types.BaseVirtualDeviceConfigSpec{
			&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: controller},
			&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd,
				FileOperation: types.VirtualDeviceConfigSpecFileOperationCreate, Device: disk},
		}
	}
	return types.VirtualMachineConfigSpec{
		Name: inst.UUID, InstanceUuid: inst.UUID, NumCPUs: inst.VCPUs, MemoryMB: inst.MemoryMB,
		GuestId: "otherGuest64", Annotation: fmt.Sprintf("instance %s (service %s)", inst.Name, serviceID),
		Files: &types.VirtualMachineFileInfo{VmPathName: "[" + datastore + "]"}, DeviceChange: devices,
	}
}

// Spawn is spawn: NodeNotFound (creating nothing) for a node that is not current, SpawnFailed when vCenter
// fails part-way, after removing what it created.
func (d *Driver) Spawn(ctx context.Context, inst Instance, nodename string) error {
	n, err := d.node(ctx, nodename)
	if err != nil {
		return err
	}
	cfg := d.config()
	if !slices.Contains(cfg.Clusters, n.ConfiguredAs) {
		return newError("NodeNotFound", "%q is no longer managed by this driver", nodename)
	}
	host, ds, err := d.choose(ctx, n, inst)
	if err != nil {
		return err
	}
	pool, err := d.pool(ctx, n)
	if err != nil {
		return err
	}
	spec := vmSpec(inst, str(ds.props["name"]), cfg.ServiceID)
	var task types.ManagedObjectReference
	err = d.call(ctx, "create VM", false, func(ctx context.Context) error {
		res, err := methods.CreateVM_Task(ctx, d.vc, &types.CreateVM_Task{This: n.VMFolder, Config: spec, Pool: pool,
			Host: &host.facts.ref})
		if err == nil {
			task = res.Returnval
		}
		return err
	})
	var result types.AnyType
	if err == nil {
		result, err = d.waitTask(ctx, "create VM", task)
	}
	if err == nil {
		vm, _ := result.(types.ManagedObjectReference)
		err = d.call(ctx, "power on VM", false, func(ctx context.Context) error {
			res, err := methods.PowerOnVM_Task(ctx, d.vc, &types.PowerOnVM_Task{This: vm, Host: nil})
			if err == nil {
				task = res.Returnval
			}
			return err
		})
		if err == nil {
			_, err = d.waitTask(ctx, "power on VM", task)
		}
	}
	if err != nil {
		// Whatever carries the instance's uuid is this build's VM: remove it, as Nova does after a failed build.
		return newError("SpawnFailed", "spawn of %s on %s failed (%s)%s", inst.UUID, nodename, errorText(err),
			d.undo(context.WithoutCancel(ctx), inst))
	}
	d.log.Info(fmt.Sprintf("instance %s spawned on %s (host %s, datastore %s)", inst.UUID, nodename, host.name,
		str(ds.props["name"])))
	return nil
}

// undo removes the VMs of a failed spawn: "" when done, else the reason as a sentence end.
func (d *Driver) undo(ctx context.Context, inst Instance) string {
	vms, err := d.instanceVMs(ctx, inst)
	for _, vm := range vms {
		if err == nil {
			err = d.remove(ctx, vm.ref, vm.power)
		}
	}
	if err != nil {
		return "; its VM could not be removed: " + errorText(err)
	}
	return ""
}

// waitTask is a task's result, or its fault. Polls at once, then with backoff: one call per poll.
func (d *Driver) waitTask(ctx context.Context, doing string, task types.ManagedObjectReference) (types.AnyType, error) {
	deadline := time.Now().Add(taskLimit)
	delay := time.Duration(0)
	spec := types.PropertyFilterSpec{ObjectSet: []types.ObjectSpec{{Obj: task}},
		PropSet: []types.PropertySpec{{Type: "Task", PathSet: []string{"info"}}}}
	for {
		var info *types.TaskInfo
		err := d.call(ctx, doing, true, func(ctx context.Context) error {
			res, err := methods.RetrieveProperties(ctx, d.vc, &types.RetrieveProperties{
				This: d.vc.ServiceContent.PropertyCollector, SpecSet: []types.PropertyFilterSpec{spec}})
			if err != nil {
				return err
			}
			for _, o := range res.Returnval {
				for _, m := range o.MissingSet {
					return soap.WrapVimFault(m.Fault.Fault)
				}
				for _, p := range o.PropSet {
					if ti, ok := p.Val.(types.TaskInfo); ok {
						info = &ti
					}
				}
			}
			if info == nil {
				return fmt.Errorf("task %s has no info", task.Value)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		switch info.State {
		case types.TaskInfoStateSuccess:
			return info.Result, nil
		case types.TaskInfoStateError:
			if info.Error == nil || info.Error.Fault == nil {
				return nil, fmt.Errorf("task %s failed", task.Value)
			}
			return nil, taskFault{fault: info.Error.Fault, message: info.Error.LocalizedMessage}
		}
		if time.Now().After(deadline) {
			return nil, newError("VCenterUnavailable", "%s: task still %s after %s", doing, info.State, taskLimit)
		}
		delay = min(max(delay*2, 50*time.Millisecond), time.Second)
		if !sleep(ctx, delay) {
			return nil, newError("VCenterUnavailable", "%s: the driver is closed", doing)
		}
	}
}

// instanceVM is a VM carrying an instance's uuid: its power state, and its node ("" outside the managed clusters).
type instanceVM struct {
	ref   types.ManagedObjectReference
	uuid  string
	power string
	node  string
}

// instanceVMs finds every VM with the instance's uuid (FindAllByUuid), then reads them and their pools' owners.
func (d *Driver) instanceVMs(ctx context.Context, inst Instance) ([]instanceVM, error) {
	var found []types.ManagedObjectReference
	err := d.call(ctx, "find instance", true, func(ctx context.Context) error {
		res, err := methods.FindAllByUuid(ctx, d.vc, &types.FindAllByUuid{This: *d.vc.ServiceContent.SearchIndex,
			Uuid: inst.UUID, VmSearch: true, InstanceUuid: types.NewBool(true)})
		if err == nil {
			found = res.Returnval
		}
		return err
	})
	if err == nil && len(found) == 0 {
		return nil, nil
	}
	var objects []types.ObjectContent
	if err == nil {
		spec := types.PropertyFilterSpec{PropSet: vmProperties}
		for _, vm := range found {
			spec.ObjectSet = append(spec.ObjectSet, types.ObjectSpec{Obj: vm, Skip: types.NewBool(false),
				SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{SelectionSpec: types.SelectionSpec{Name: "pool"},
					Path: "resourcePool", Skip: types.NewBool(false), Type: "VirtualMachine"}}})
		}
		err = d.call(ctx, "read instance", true, func(ctx context.Context) error {
			var err error
			objects, err = d.retrieve(ctx, spec)
			return err
		})
	}
	if err != nil {
		var de *DriverError
		switch {
		case errors.As(err, &de):
			return nil, err
		case faultName(err) == "ManagedObjectNotFound":
			return nil, nil // deleted between the two calls
		}
		return nil, newError("VCenterUnavailable", "find instance %s: %s", inst.UUID, errorText(err))
	}
	return d.vmsAndNodes(ctx, objects)
}

// vmsAndNodes: the VMs of a vmProperties answer with their nodes, those of the last snapshot.
func (d *Driver) vmsAndNodes(ctx context.Context, objects []types.ObjectContent) ([]instanceVM, error) {
	current, err := d.currentNodes(ctx)
	if err != nil {
		return nil, err
	}
	nodes := map[string]string{}
	for _, n := range current {
		nodes[n.Cluster.Value] = n.Name
	}
	owners := map[string]string{}
	for _, o := range objects {
		if o.Obj.Type == "ResourcePool" {
			for _, p := range o.PropSet {
				if p.Name == "owner" {
					owners[o.Obj.Value] = mor(p.Val).Value
				}
			}
		}
	}
	var out []instanceVM
	for _, o := range objects {
		if o.Obj.Type != "VirtualMachine" {
			continue
		}
		vm := instanceVM{ref: o.Obj}
		for _, p := range o.PropSet {
			switch p.Name {
			case "config.instanceUuid":
				vm.uuid = str(p.Val)
			case "runtime.powerState":
				vm.power = str(p.Val)
			case "resourcePool":
				if owner, ok := owners[mor(p.Val).Value]; ok {
					vm.node = nodes[owner]
				}
			}
		}
		out = append(out, vm)
	}
	return out, nil
}

// remove powers a VM off (unless it is off) and destroys it; a VM gone meanwhile is success.
func (d *Driver) remove(ctx context.Context, vm types.ManagedObjectReference, power string) error {
	run := func(doing string, start func(context.Context) (types.ManagedObjectReference, error)) error {
		var task types.ManagedObjectReference
		err := d.call(ctx, doing, true, func(ctx context.Context) error {
			var err error
			task, err = start(ctx)
			return err
		})
		if err == nil {
			_, err = d.waitTask(ctx, doing, task)
		}
		return err
	}
	if power != "poweredOff" {
		err := run("power off VM", func(ctx context.Context) (types.ManagedObjectReference, error) {
			res, err := methods.PowerOffVM_Task(ctx, d.vc, &types.PowerOffVM_Task{This: vm})
			if err != nil {
				return types.ManagedObjectReference{}, err
			}
			return res.Returnval, nil
		})
		switch faultName(err) {
		case "ManagedObjectNotFound":
			return nil
		case "InvalidPowerState": // already off meanwhile
		default:
			if err != nil {
				return err
			}
		}
	}
	err := run("destroy VM", func(ctx context.Context) (types.ManagedObjectReference, error) {
		res, err := methods.Destroy_Task(ctx, d.vc, &types.Destroy_Task{This: vm})
		if err != nil {
			return types.ManagedObjectReference{}, err
		}
		return res.Returnval, nil
	})
	if faultName(err) == "ManagedObjectNotFound" {
		return nil
	}
	return err
}

// Destroy is destroy: powers off and deletes the instance's VMs in the managed clusters; success when there
// is none. A VM outside them belongs to another service (or never was this one's) and is left alone.
func (d *Driver) Destroy(ctx context.Context, inst Instance) error {
	vms, err := d.instanceVMs(ctx, inst)
	if err != nil {
		return err
	}
	for _, vm := range vms {
		if vm.node == "" {
			d.log.Warn(fmt.Sprintf("instance %s has a VM outside the managed clusters; it is left alone", inst.UUID))
			continue
		}
		if err := d.remove(ctx, vm.ref, vm.power); err != nil {
			var de *DriverError
			if errors.As(err, &de) {
				return err
			}
			return newError("VCenterUnavailable", "destroy %s: %s", inst.UUID, errorText(err))
		}
	}
	return nil
}

// ListInstances is list_instances: the uuids of the VMs in the managed clusters (one query over a kept view).
func (d *Driver) ListInstances(ctx context.Context) ([]string, error) {
	var objects []types.ObjectContent
	err := d.call(ctx, "list instances", true, func(ctx context.Context) error {
		v, err := d.view(ctx, "vms", []string{"VirtualMachine"})
		if err != nil {
			return err
		}
		objects, err = d.retrieve(ctx, viewSpec(v, vmProperties, []follow{{"resourcePool", "VirtualMachine"}}))
		return err
	})
	if err != nil {
		var de *DriverError
		if errors.As(err, &de) {
			return nil, err
		}
		return nil, newError("VCenterUnavailable", "list instances: %s", errorText(err))
	}
	vms, err := d.vmsAndNodes(ctx, objects)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	uuids := []string{}
	for _, vm := range vms {
		if vm.node != "" && vm.uuid != "" && !seen[vm.uuid] {
			seen[vm.uuid] = true
			uuids = append(uuids, vm.uuid)
		}
	}
	sort.Strings(uuids)
	return uuids, nil
}

// GetInfo is get_info: the state as Nova names it and the node; InstanceNotFound outside the managed clusters.
func (d *Driver) GetInfo(ctx context.Context, inst Instance) (*InstanceInfo, error) {
	vms, err := d.instanceVMs(ctx, inst)
	if err != nil {
		return nil, err
	}
	for _, vm := range vms {
		if vm.node != "" {
			state, ok := powerStates[vm.power]
			if !ok {
				state = "nostate"
			}
			return &InstanceInfo{State: state, Nodename: vm.node}, nil
		}
	}
	return nil, newError("InstanceNotFound", "instance %s has no VM in the managed clusters", inst.UUID)
}
