// Nodes and their figures (docs/driver.md, "Nodes", "Full refreshes" and "Resources per node"): a full
// refresh is one RetrievePropertiesEx over a ContainerView the driver keeps open, whatever the number of
// clusters, asking for leaf properties only, continued page by page; the figures are computed from that one
// snapshot, never read per cluster.

package main

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
)

// hostProperties are the five leaves a refresh reads of each host (and the figures use).
var hostProperties = []string{"summary.hardware.numCpuThreads", "summary.hardware.memorySize",
	"summary.quickStats.overallMemoryUsage", "runtime.connectionState", "runtime.inMaintenanceMode"}

// inventoryTypes are what the inventory view holds: datacenters, folders and compute resources (names and
// parents give inventory paths); the query follows each compute resource's host and datastore lists, so it
// reads exactly the hosts and datastores the clusters reference at that moment.
var inventoryTypes = []string{"Datacenter", "Folder", "ComputeResource"}

// inventoryProperties are the leaf properties a refresh asks for, per type (the same as the Python
// reference's INVENTORY_PROPERTIES, in the same order: the answers are byte for byte the same).
var inventoryProperties = []types.PropertySpec{
	{Type: "Folder", PathSet: []string{"name", "parent"}},
	{Type: "Datacenter", PathSet: []string{"name", "parent", "vmFolder"}},
	{Type: "ComputeResource", PathSet: []string{"name", "parent", "host", "datastore", "resourcePool"}},
	{Type: "Datastore", PathSet: []string{"name", "summary.accessible", "summary.maintenanceMode",
		"summary.capacity", "summary.freeSpace"}},
	{Type: "HostSystem", PathSet: hostProperties},
}

// allocationRatios are Nova's initial_{cpu,ram,disk}_allocation_ratio defaults.
var allocationRatios = map[string]float64{"VCPU": 4.0, "MEMORY_MB": 1.0, "DISK_GB": 1.0}

// object is one object of a refresh's answer: its reference and the properties read.
type object struct {
	ref   types.ManagedObjectReference
	props map[string]types.AnyType
}

// Node is a managed cluster as of the last refresh.
type Node struct {
	Name         string
	ConfiguredAs string // the configuration entry (path or moref) that names this cluster
	Path         string // its inventory path at the refresh, e.g. /DC0/host/folder/C0
	Cluster      types.ManagedObjectReference
	Pool         types.ManagedObjectReference // its root resource pool
	VMFolder     types.ManagedObjectReference // the datacenter's folder for VMs
	HostRefs     []string
	Hosts        []*object
	Datastores   []*object
}

type follow struct{ path, typ string }

// viewSpec is everything in the view, and what its objects reference by the follow paths.
func viewSpec(view types.ManagedObjectReference, props []types.PropertySpec, paths []follow) types.PropertyFilterSpec {
	var inner []types.BaseSelectionSpec
	for _, f := range paths {
		inner = append(inner, &types.SelectionSpec{Name: f.path})
	}
	selects := []types.BaseSelectionSpec{&types.TraversalSpec{SelectionSpec: types.SelectionSpec{Name: "view"},
		Type: "ContainerView", Path: "view", Skip: types.NewBool(false), SelectSet: inner}}
	for _, f := range paths {
		selects = append(selects, &types.TraversalSpec{SelectionSpec: types.SelectionSpec{Name: f.path}, Type: f.typ,
			Path: f.path, Skip: types.NewBool(false)})
	}
	return types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{Obj: view, Skip: types.NewBool(true), SelectSet: selects}},
		PropSet:   props,
	}
}

// view is a ContainerView over the whole inventory, made once per session and kept open.
func (d *Driver) view(ctx context.Context, purpose string, kinds []string) (types.ManagedObjectReference, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.views[purpose]; ok {
		return v, nil
	}
	sc := d.vc.ServiceContent
	res, err := methods.CreateContainerView(ctx, d.vc, &types.CreateContainerView{This: *sc.ViewManager,
		Container: sc.RootFolder, Type: kinds, Recursive: true})
	if err != nil {
		return types.ManagedObjectReference{}, err
	}
	d.views[purpose] = res.Returnval
	return res.Returnval, nil
}

func (d *Driver) inventorySpec(ctx context.Context) (types.PropertyFilterSpec, error) {
	v, err := d.view(ctx, "inventory", inventoryTypes)
	if err != nil {
		return types.PropertyFilterSpec{}, err
	}
	return viewSpec(v, inventoryProperties, []follow{{"host", "ComputeResource"}, {"datastore", "ComputeResource"}}),
		nil
}

// retrieve is one RetrievePropertiesEx, continued for as long as the server pages. Without a session vCenter
// still answers, with each property in the object's missingSet faulted NotAuthenticated: that fault is
// returned, so the call is repeated after a new login.
func (d *Driver) retrieve(ctx context.Context, spec types.PropertyFilterSpec) ([]types.ObjectContent, error) {
	pc := d.vc.ServiceContent.PropertyCollector
	res, err := methods.RetrievePropertiesEx(ctx, d.vc, &types.RetrievePropertiesEx{This: pc,
		SpecSet: []types.PropertyFilterSpec{spec}})
	if err != nil {
		return nil, err
	}
	var objects []types.ObjectContent
	for result := res.Returnval; result != nil; {
		objects = append(objects, result.Objects...)
		if result.Token == "" {
			break
		}
		next, err := methods.ContinueRetrievePropertiesEx(ctx, d.vc, &types.ContinueRetrievePropertiesEx{This: pc,
			Token: result.Token})
		if err != nil {
			return nil, err
		}
		result = &next.Returnval
	}
	for _, o := range objects {
		for _, m := range o.MissingSet {
			if _, ok := m.Fault.Fault.(*types.NotAuthenticated); ok {
				return nil, soap.WrapVimFault(m.Fault.Fault) // call() renews the session and repeats
			}
		}
	}
	return objects, nil
}

// refresh takes a new snapshot; after a failure there is none, so nothing old is served as fresh.
func (d *Driver) refresh(ctx context.Context) error {
	d.snapMu.Lock()
	defer d.snapMu.Unlock()
	return d.refreshLocked(ctx)
}

func (d *Driver) refreshLocked(ctx context.Context) error {
	queries := 1
	if d.mutants.Has("per-cluster-queries") {
		queries = max(1, len(d.config().Clusters)) // Mutant: the inventory read once per configured cluster.
	}
	var objects []types.ObjectContent
	var err error
	for i := 0; i < queries && err == nil; i++ {
		err = d.call(ctx, "refresh", true, func(ctx context.Context) error {
			spec, err := d.inventorySpec(ctx)
			if err != nil {
				return err
			}
			objects, err = d.retrieve(ctx, spec)
			return err
		})
	}
	if err != nil {
		var de *DriverError
		if !errors.As(err, &de) {
			de = &DriverError{Type: "VCenterUnavailable", Msg: "refresh: " + errorText(err)}
		}
		d.nodes, d.refreshErr = nil, de.Msg
		return de
	}
	snapshot := make(map[string]*object, len(objects))
	for _, o := range objects {
		props := make(map[string]types.AnyType, len(o.PropSet))
		for _, p := range o.PropSet {
			props[p.Name] = p.Val
		}
		snapshot[o.Obj.Value] = &object{ref: o.Obj, props: props}
	}
	d.nodes, d.refreshErr = d.buildNodes(snapshot), ""
	return nil
}

// buildNodes resolves the configured entries against a snapshot: a moref of a cluster, or its inventory path
// (folders included; a leading or trailing / optional). Anything else is left out with a warning.
func (d *Driver) buildNodes(objects map[string]*object) map[string]*Node {
	root := d.vc.ServiceContent.RootFolder.Value
	pathAndDatacenter := func(ref string) (string, string) {
		var parts []string
		dc := ""
		for ref != root {
			o, ok := objects[ref]
			if !ok {
				break
			}
			parts = append(parts, str(o.props["name"]))
			if o.ref.Type == "Datacenter" {
				dc = ref
			}
			if parent, ok := o.props["parent"].(types.ManagedObjectReference); ok {
				ref = parent.Value
			} else {
				ref = root
			}
		}
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
		return "/" + strings.Join(parts, "/"), dc
	}
	type found struct{ ref, path, dc string }
	clusters := map[string]found{}
	for ref, o := range objects {
		if d.isCluster(o.ref) {
			path, dc := pathAndDatacenter(ref)
			clusters[ref] = found{ref, path, dc}
			clusters[path] = found{ref, path, dc}
		}
	}
	cfg := d.config()
	nodes := map[string]*Node{}
	for _, wanted := range cfg.Clusters {
		f, ok := clusters[wanted]
		if !ok {
			f, ok = clusters["/"+strings.Trim(wanted, "/")]
		}
		if !ok {
			if !d.mutants.Has("silent-missing-cluster") {
				d.log.Warn(fmt.Sprintf("configured cluster %q is not a cluster of vCenter at %s (missing, or a "+
					"standalone host or resource pool); it is left out", wanted, d.where))
			}
			continue
		}
		name := f.ref + "." + d.vcenterUUID
		if _, dup := nodes[name]; dup {
			continue // two entries naming the same cluster give one node
		}
		o := objects[f.ref]
		node := &Node{Name: name, ConfiguredAs: wanted, Path: f.path, Cluster: o.ref, Pool: mor(o.props["resourcePool"])}
		if dc, ok := objects[f.dc]; ok {
			node.VMFolder = mor(dc.props["vmFolder"])
		}
		for _, h := range mors(o.props["host"]) {
			node.HostRefs = append(node.HostRefs, h.Value)
			if host, ok := objects[h.Value]; ok {
				node.Hosts = append(node.Hosts, host)
			}
		}
		for _, ds := range mors(o.props["datastore"]) {
			if store, ok := objects[ds.Value]; ok {
				node.Datastores = append(node.Datastores, store)
			}
		}
		nodes[name] = node
	}
	return nodes
}

// isCluster: only clusters become nodes; a standalone host's ComputeResource never does.
func (d *Driver) isCluster(ref types.ManagedObjectReference) bool {
	return ref.Type == "ClusterComputeResource"
}

// GetAvailableNodes is get_available_nodes: refresh=true (or no snapshot yet) reads vCenter anew.
func (d *Driver) GetAvailableNodes(ctx context.Context, refresh bool) ([]string, error) {
	d.snapMu.Lock()
	defer d.snapMu.Unlock()
	if refresh || d.nodes == nil {
		if err := d.refreshLocked(ctx); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(d.nodes))
	for name := range d.nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

// currentNodes is the last snapshot; taken now if there is none yet, refused if the last refresh failed.
func (d *Driver) currentNodes(ctx context.Context) (map[string]*Node, error) {
	d.snapMu.RLock()
	nodes, failed := d.nodes, d.refreshErr
	d.snapMu.RUnlock()
	if nodes != nil {
		return nodes, nil
	}
	if failed != "" {
		return nil, newError("VCenterUnavailable", "no current figures: the last refresh failed (%s)", failed)
	}
	d.snapMu.Lock()
	defer d.snapMu.Unlock()
	if d.nodes == nil {
		if err := d.refreshLocked(ctx); err != nil {
			return nil, err
		}
	}
	return d.nodes, nil
}

func (d *Driver) node(ctx context.Context, name string) (*Node, error) {
	nodes, err := d.currentNodes(ctx)
	if err != nil {
		return nil, err
	}
	n, ok := nodes[name]
	if !ok {
		return nil, newError("NodeNotFound", "%q is not a node of this driver", name)
	}
	return n, nil
}

// schedulable: connected and not in maintenance mode, a host that can run a new VM.
func (d *Driver) schedulable(h *object) bool {
	if d.mutants.Has("counts-unschedulable-hosts") {
		return true // Mutant: every host counts, in maintenance or disconnected too.
	}
	return str(h.props["runtime.connectionState"]) == "connected" && !boolean(h.props["runtime.inMaintenanceMode"])
}

// usableDatastores: accessible, not in (or entering) maintenance, and matching datastore_regex (whole name).
func (d *Driver) usableDatastores(n *Node) []*object {
	var pattern *wholeName
	if re := d.config().DatastoreRegex; re != nil {
		if w, err := compileWhole(*re); err == nil { // checked when the configuration was taken
			pattern = &w
		}
	}
	var out []*object
	for _, ds := range n.Datastores {
		mode := str(ds.props["summary.maintenanceMode"])
		if boolean(ds.props["summary.accessible"]) && (mode == "" || mode == "normal") &&
			(pattern == nil || pattern.MatchString(str(ds.props["name"]))) {
			out = append(out, ds)
		}
	}
	return out
}

func record(total, maxUnit int64, class string) InventoryRecord {
	return InventoryRecord{Total: total, Reserved: 0, MinUnit: 1, MaxUnit: maxUnit, StepSize: 1,
		AllocationRatio: allocationRatios[class]}
}

// GetAvailableResource is get_available_resource: the node's figures as of the last refresh.
func (d *Driver) GetAvailableResource(ctx context.Context, nodename string) (*Resources, error) {
	n, err := d.node(ctx, nodename)
	if err != nil {
		return nil, err
	}
	return d.resources(n), nil
}

func (d *Driver) resources(n *Node) *Resources {
	var vcpus, memory, used, maxThreads, maxMemory int64
	for _, h := range n.Hosts {
		if !d.schedulable(h) {
			continue
		}
		threads, size := integer(h.props["summary.hardware.numCpuThreads"]), integer(h.props["summary.hardware.memorySize"])
		vcpus += threads
		memory += size
		used += integer(h.props["summary.quickStats.overallMemoryUsage"])
		maxThreads, maxMemory = max(maxThreads, threads), max(maxMemory, size/mib)
	}
	var capacity, free, maxDisk int64
	for _, ds := range d.usableDatastores(n) {
		f := integer(ds.props["summary.freeSpace"])
		capacity += integer(ds.props["summary.capacity"])
		free += f
		maxDisk = max(maxDisk, f/gib) // a disk must fit in one datastore's free space (RES-06)
	}
	return &Resources{
		VCPUs: vcpus, MemoryMB: memory / mib, LocalGB: capacity / gib,
		VCPUsUsed:    0,                                          // as Nova's driver: the resource tracker counts its instances' vCPUs itself
		MemoryMBUsed: used, LocalGBUsed: capacity/gib - free/gib, // free space never overstated
		HypervisorType: "VMware vCenter Server", HypervisorVersion: d.version, HypervisorHostname: n.Name,
		CPUInfo: "",
		Inventory: map[string]InventoryRecord{
			"VCPU": record(vcpus, maxThreads, "VCPU"), "MEMORY_MB": record(memory/mib, maxMemory, "MEMORY_MB"),
			"DISK_GB": record(capacity/gib, maxDisk, "DISK_GB"),
		},
	}
}

// -- property values ------------------------------------------------------------------------------------------

func mor(v types.AnyType) types.ManagedObjectReference {
	ref, _ := v.(types.ManagedObjectReference)
	return ref
}

func mors(v types.AnyType) []types.ManagedObjectReference {
	switch a := v.(type) {
	case types.ArrayOfManagedObjectReference:
		return a.ManagedObjectReference
	case []types.ManagedObjectReference:
		return a
	}
	return nil
}

func integer(v types.AnyType) int64 {
	r := reflect.ValueOf(v)
	switch r.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return r.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return int64(r.Uint())
	}
	return 0
}

// str reads a string property, or one of vSphere's string enums (HostSystemConnectionState...).
func str(v types.AnyType) string {
	r := reflect.ValueOf(v)
	if r.Kind() == reflect.String {
		return r.String()
	}
	return ""
}

func boolean(v types.AnyType) bool {
	b, _ := v.(bool)
	return b
}
