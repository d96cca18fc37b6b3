// Building a topology's inventory straight into a fresh simulator model.
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

const mib = int64(1024 * 1024)

// inventory is what the build knows that the objects themselves may lose:
// the datastore figures of the topology (vcsim's RefreshDatastore resets a
// datastore to 1 TB per mounting host), from which usage is derived.
type inventory struct {
	datastores map[types.ManagedObjectReference]Datastore
	overheads  map[types.ManagedObjectReference]overhead // of the topology's hosts
}

// hostOverhead is a host's hypervisor share: the topology's, or the default
// for a host added since.
func (inv *inventory) hostOverhead(ref types.ManagedObjectReference, hw *types.HostHardwareSummary) overhead {
	if o, ok := inv.overheads[ref]; ok {
		return o
	}
	return defaultOverhead(int32(hw.NumCpuCores), hw.CpuMhz, hw.MemorySize/mib)
}

// builder creates objects the way vcsim wires them (same fields, same
// references, same registry calls), but without vcsim's per-host cost: vcsim
// deep-copies the whole ESX host configuration through XML for every host
// (about 5 ms each, 45 s for 8,000 hosts); fakevc copies it once and gives
// each host its own copy of every part that a host method may change.
type builder struct {
	ctx    *simulator.Context
	reg    *simulator.Registry
	dsRoot string
	boot   time.Time
	tmpl   *hostTemplate
	inv    *inventory
}

// build creates the topology's inventory in a freshly created, empty model.
// Object creation order is fixed, so the morefs are the same on every build
// of the same topology.
func build(m *simulator.Model, t *Topology, dsRoot string) (*inventory, error) {
	tmpl, err := hostTemplateOnce()
	if err != nil {
		return nil, err
	}
	b := &builder{
		ctx: m.Service.Context, reg: m.Map(), dsRoot: dsRoot, tmpl: tmpl,
		// A fixed boot time keeps two builds of one topology identical.
		boot: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		inv: &inventory{datastores: map[types.ManagedObjectReference]Datastore{},
			overheads: map[types.ManagedObjectReference]overhead{}},
	}
	root := b.reg.Get(m.ServiceContent.RootFolder).(*simulator.Folder)
	for _, dc := range t.Datacenters {
		if err := b.datacenter(root, dc); err != nil {
			return nil, fmt.Errorf("datacenter %q: %w", dc.Name, err)
		}
	}
	return b.inv, nil
}

func (b *builder) datacenter(root *simulator.Folder, spec Datacenter) error {
	parent, err := b.folderPath(root, spec.Folder)
	if err != nil {
		return err
	}
	res := parent.CreateDatacenter(b.ctx, &types.CreateDatacenter{This: parent.Self, Name: spec.Name})
	if f := res.Fault(); f != nil {
		return fmt.Errorf("%s", faultText(f.VimFault()))
	}
	dc := b.reg.Get(res.(*methods.CreateDatacenterBody).Res.Returnval).(*simulator.Datacenter)
	hostFolder := b.reg.Get(dc.HostFolder).(*simulator.Folder)
	network := slices.Clone(dc.Network[:1]) // "VM Network", as vcsim gives every cluster and host

	hosts := map[string]*simulator.HostSystem{}
	for _, cs := range spec.Clusters {
		folder, err := b.folderPath(hostFolder, cs.Folder)
		if err != nil {
			return fmt.Errorf("cluster %q: %w", cs.Name, err)
		}
		cl, fault := simulator.CreateClusterComputeResource(b.ctx, folder, cs.Name, types.ClusterConfigSpecEx{})
		if fault != nil {
			return fmt.Errorf("cluster %q: %s", cs.Name, faultText(fault))
		}
		for _, hs := range cs.Hosts {
			h := b.newHost(hs, cl.Network[:1])
			b.reg.PutEntity(cl, b.reg.NewEntity(h))
			b.inv.overheads[h.Self] = overhead{hs.OverheadCPUMhz, hs.OverheadMemoryMB}
			h.Summary.Host = &h.Self
			h.Config.Host = h.Self
			cl.Host = append(cl.Host, h.Self)
			hosts[hs.Name] = h
		}
		b.environmentBrowser(*cl.EnvironmentBrowser, cl.Host)
		for _, path := range cs.ResourcePools {
			if err := b.resourcePool(cl, path); err != nil {
				return fmt.Errorf("cluster %q: resource pool %q: %w", cs.Name, path, err)
			}
		}
	}
	for _, hs := range spec.StandaloneHosts {
		hosts[hs.Name] = b.standalone(hostFolder, hs, network)
	}
	for _, ds := range spec.Datastores {
		if err := b.datastore(dc, ds, hosts); err != nil {
			return fmt.Errorf("datastore %q: %w", ds.Name, err)
		}
	}
	return nil
}

// folderPath returns the folder at path under parent, creating what is missing.
func (b *builder) folderPath(parent *simulator.Folder, path []string) (*simulator.Folder, error) {
	for _, name := range path {
		if e := b.reg.FindByName(name, parent.ChildEntity); e != nil {
			f, ok := e.(*simulator.Folder)
			if !ok {
				return nil, fmt.Errorf("folder %q: the name is taken by a %s", name, e.Reference().Type)
			}
			parent = f
			continue
		}
		res := parent.CreateFolder(b.ctx, &types.CreateFolder{This: parent.Self, Name: name})
		if f := res.Fault(); f != nil {
			return nil, fmt.Errorf("folder %q: %s", name, faultText(f.VimFault()))
		}
		parent = b.reg.Get(res.(*methods.CreateFolderBody).Res.Returnval).(*simulator.Folder)
	}
	return parent, nil
}

// newHost makes a HostSystem as simulator.NewHostSystem and its configure
// step do, with the hardware and state of spec. The caller puts it into the
// registry under its compute resource.
func (b *builder) newHost(spec Host, network []types.ManagedObjectReference) *simulator.HostSystem {
	h := &simulator.HostSystem{HostSystem: esx.HostSystem}
	h.Network = slices.Clone(network)
	h.Summary.Runtime = &h.Runtime
	boot := b.boot
	h.Runtime.BootTime = &boot

	summaryHW := *esx.HostSystem.Summary.Hardware
	h.Summary.Hardware = &summaryHW
	hw := *esx.HostHardwareInfo
	h.Hardware = &hw
	capability := *esx.HostCapability
	h.Capability = &capability

	// Each host gets its own copy of the configuration structs a host method
	// can assign to (options, network); the rest (device lists, product) is
	// read-only in vcsim and shared, as vcsim itself shares the storage
	// device info between hosts.
	cfg := *b.tmpl.config
	cfg.Option = cloneOptions(b.tmpl.config.Option)
	if cfg.Network != nil {
		netInfo := *cfg.Network
		cfg.Network = &netInfo
	}
	h.Config = &cfg

	cert := &simulator.HostCertificateManager{Host: &h.HostSystem}
	cert.CertificateInfo = b.tmpl.cert
	// Only the managers below are served: the template's other 27 (CPU
	// scheduler, SNMP, services, ...) would name objects that do not exist,
	// and a reference that leads nowhere is worse than none (a client gets
	// ManagedObjectNotFound). vCenter has them all.
	h.ConfigManager = types.HostConfigManager{}
	managers := []struct {
		ref **types.ManagedObjectReference
		obj mo.Reference
	}{
		{&h.ConfigManager.DatastoreSystem, &simulator.HostDatastoreSystem{Host: &h.HostSystem}},
		{&h.ConfigManager.NetworkSystem, simulator.NewHostNetworkSystem(&h.HostSystem)},
		{&h.ConfigManager.VirtualNicManager, simulator.NewHostVirtualNicManager(&h.HostSystem)},
		{&h.ConfigManager.AdvancedOption, simulator.NewOptionManager(nil, nil, &h.Config.Option)},
		{&h.ConfigManager.FirewallSystem, simulator.NewHostFirewallSystem(&h.HostSystem)},
		{&h.ConfigManager.StorageSystem, simulator.NewHostStorageSystem(&h.HostSystem)},
		{&h.ConfigManager.CertificateManager, cert},
	}
	for _, m := range managers {
		ref := b.reg.Put(m.obj).Reference()
		*m.ref = &ref
	}
	// The template's datastoreBrowser is "ha-host-datastorebrowser", which no
	// object serves: each host gets its own, over the datastores it mounts.
	h.DatastoreBrowser = b.reg.Put(&simulator.HostDatastoreBrowser{}).Reference()
	// The template's vSAN config names the template host ("ha-host"), and its
	// cache configuration a datastore that does not exist.
	if v := cfg.VsanHostConfig; v != nil {
		vsan := *v
		vsan.HostSystem = &h.Self
		cfg.VsanHostConfig = &vsan
	}
	cfg.CacheConfigurationInfo = nil

	h.Summary.Config.Name = spec.Name
	h.Name = spec.Name
	id := uuid.NewSHA1(uuid.NameSpaceOID, []byte(spec.Name)).String() // as vcsim: a uuid derived from the name
	h.Summary.Hardware.Uuid = id
	h.Hardware.SystemInfo.Uuid = id
	h.Summary.OverallStatus = types.ManagedEntityStatusGreen
	setHostHardware(h, spec)
	return h
}

// standalone adds a host outside any cluster, with its ComputeResource and
// root pool, as simulator.CreateStandaloneHost does.
func (b *builder) standalone(folder *simulator.Folder, spec Host, network []types.ManagedObjectReference) *simulator.HostSystem {
	h := b.newHost(spec, network)
	b.reg.NewEntity(h)
	b.inv.overheads[h.Self] = overhead{spec.OverheadCPUMhz, spec.OverheadMemoryMB}
	cr := newStandaloneResource(b.ctx, folder, h)
	b.reg.PutEntity(cr, h)
	h.Summary.Host = &h.Self
	h.Config.Host = h.Self
	return h
}

// putChild adds an entity to a folder as vcsim's folderPutChild does:
// childEntity first, then the registry (so container views see it).
func putChild(ctx *simulator.Context, f *simulator.Folder, e mo.Entity) {
	ctx.WithLock(f, func() {
		f.ChildEntity = append(f.ChildEntity, reference(ctx.Map, e))
		ctx.Map.PutEntity(f, e)
	})
}

// reference gives an entity its moref if it has none yet.
func reference(reg *simulator.Registry, e mo.Entity) types.ManagedObjectReference {
	if e.Entity().Self.Value == "" {
		reg.NewEntity(e)
	}
	return e.Entity().Self
}

// environmentBrowser lists the hosts in the browser's config option
// descriptors, as vcsim does when a host is added: every descriptor up to the
// hosts' hardware version (all hosts run the same ESX release).
func (b *builder) environmentBrowser(ref types.ManagedObjectReference, hosts []types.ManagedObjectReference) {
	eb := b.reg.Get(ref).(*simulator.EnvironmentBrowser)
	eb.QueryConfigOptionDescriptorResponse.Returnval = configOptionDescriptors(hosts)
}

func configOptionDescriptors(hosts []types.ManagedObjectReference) []types.VirtualMachineConfigOptionDescriptor {
	if len(hosts) == 0 {
		return nil
	}
	hostHW := types.MustParseESXiVersion(esx.HostConfigInfo.Product.Version).HardwareVersion()
	var out []types.VirtualMachineConfigOptionDescriptor
	for _, hv := range types.GetHardwareVersions() {
		out = append(out, types.VirtualMachineConfigOptionDescriptor{
			Key: hv.String(), Description: hv.String(), DefaultConfigOption: hv == hostHW,
			CreateSupported: true, RunSupported: true, UpgradeSupported: true, Host: slices.Clone(hosts),
		})
		if hv == hostHW {
			break
		}
	}
	return out
}

// datastore creates a datastore and mounts it on its hosts, wired as vcsim's
// HostDatastoreSystem.CreateLocalDatastore does for each mounting host.
func (b *builder) datastore(dc *simulator.Datacenter, spec Datastore, hosts map[string]*simulator.HostSystem) error {
	dir := filepath.Join(b.dsRoot, dc.Name, spec.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	folder := b.reg.Get(dc.DatastoreFolder).(*simulator.Folder)
	if e := b.reg.FindByName(spec.Name, folder.ChildEntity); e != nil {
		return fmt.Errorf("the name is taken by %s", e.Reference())
	}
	ds := &simulator.Datastore{}
	ds.Name = spec.Name
	info := types.DatastoreInfo{Name: spec.Name, Url: dir}
	switch spec.Type {
	case "NFS", "NFS41":
		ds.Info = &types.NasDatastoreInfo{DatastoreInfo: info, Nas: &types.HostNasVolume{
			HostFileSystemVolume: types.HostFileSystemVolume{Type: spec.Type, Name: spec.Name},
			RemoteHost:           "nfs.vcconform.invalid", RemotePath: "/export/" + spec.Name,
		}}
	case "vsan":
		// No membershipUuid: it is newer than the API version fakevc
		// announces (6.5), and pyvmomi cannot read an info that has it.
		ds.Info = &types.VsanDatastoreInfo{DatastoreInfo: info}
	default:
		ds.Info = &types.VmfsDatastoreInfo{DatastoreInfo: info, Vmfs: &types.HostVmfsVolume{
			HostFileSystemVolume: types.HostFileSystemVolume{Type: "VMFS", Name: spec.Name},
			BlockSizeMb:          1, MaxBlocks: 63 * 1024 * 1024, MajorVersion: 6, Version: "6.82",
			Uuid: uuid.NewSHA1(uuid.NameSpaceOID, []byte(dc.Name+"/"+spec.Name)).String(),
		}}
	}
	ds.Summary.Type = spec.Type
	ds.Summary.MaintenanceMode = spec.maintenanceMode()
	ds.Summary.Accessible = spec.accessible()
	ds.Summary.Name = spec.Name
	ds.Summary.Url = dir
	ds.Summary.MultipleHostAccess = types.NewBool(len(spec.Hosts) > 1)
	ds.Capability = types.DatastoreCapability{
		DirectoryHierarchySupported: true, PerFileThinProvisioningSupported: true,
		SeSparseSupported: types.NewBool(false), TopLevelDirectoryCreateSupported: types.NewBool(spec.Type != "vsan"),
	}
	putChild(b.ctx, folder, ds)
	ds.Summary.Datastore = &ds.Self
	dc.Datastore = append(dc.Datastore, ds.Self)
	setDatastoreFigures(ds, spec)
	b.inv.datastores[ds.Self] = spec

	for _, name := range spec.Hosts {
		h := hosts[name]
		ds.Host = append(ds.Host, types.DatastoreHostMount{Key: h.Self, MountInfo: types.HostMountInfo{
			Path: dir, AccessMode: string(types.HostMountModeReadWrite),
			Mounted: types.NewBool(true), Accessible: types.NewBool(spec.accessible()),
		}})
		dss := b.reg.Get(*h.ConfigManager.DatastoreSystem).(*simulator.HostDatastoreSystem)
		dss.Datastore = append(dss.Datastore, ds.Self)
		if br, ok := b.reg.Get(h.DatastoreBrowser).(*simulator.HostDatastoreBrowser); ok {
			br.Datastore = append(br.Datastore, ds.Self)
		}
		h.Datastore = dss.Datastore
		cr := parentOf(b.reg, h)
		if !slices.Contains(cr.Datastore, ds.Self) {
			cr.Datastore = append(cr.Datastore, ds.Self)
		}
	}
	browser := &simulator.HostDatastoreBrowser{}
	browser.Datastore = []types.ManagedObjectReference{ds.Self}
	ds.Browser = b.reg.Put(browser).Reference()
	return nil
}

// resourcePool creates the pool at path below the cluster's root pool, and
// the pools on the way that do not exist yet, as CreateResourcePool does:
// no reservation, no limit, expandable, normal shares.
func (b *builder) resourcePool(cl *simulator.ClusterComputeResource, path string) error {
	pool := b.reg.Get(*cl.ResourcePool).(*simulator.ResourcePool)
	for _, name := range strings.Split(path, "/") {
		if e := b.reg.FindByName(name, pool.ResourcePool.ResourcePool); e != nil {
			pool = e.(*simulator.ResourcePool)
			continue
		}
		alloc := func() types.ResourceAllocationInfo {
			return types.ResourceAllocationInfo{Reservation: types.NewInt64(0), Limit: types.NewInt64(-1),
				ExpandableReservation: types.NewBool(true), Shares: &types.SharesInfo{Level: types.SharesLevelNormal}}
		}
		res := pool.CreateResourcePool(b.ctx, &types.CreateResourcePool{This: pool.Self, Name: name,
			Spec: types.ResourceConfigSpec{CpuAllocation: alloc(), MemoryAllocation: alloc()}})
		if f := res.Fault(); f != nil {
			return fmt.Errorf("%s", faultText(f.VimFault()))
		}
		pool = b.reg.Get(res.(*methods.CreateResourcePoolBody).Res.Returnval).(*simulator.ResourcePool)
	}
	return nil
}

// parentOf is the (cluster) compute resource a host belongs to.
func parentOf(reg *simulator.Registry, h *simulator.HostSystem) *mo.ComputeResource {
	switch p := reg.Get(*h.Parent).(type) {
	case *simulator.ClusterComputeResource:
		return &p.ComputeResource
	case *mo.ComputeResource:
		return p
	}
	return nil
}

// setHostHardware gives a host the size and state the topology asks for.
// vcsim clones every host from one template (2 cores, 4 GiB).
func setHostHardware(h *simulator.HostSystem, s Host) {
	hw := h.Summary.Hardware // a per-host copy
	hw.NumCpuPkgs = s.CPUSockets
	hw.NumCpuCores = s.CPUCores
	hw.NumCpuThreads = s.CPUThreads
	hw.CpuMhz = s.CPUMhz
	hw.MemorySize = s.hostMemory()

	info := h.Hardware // a per-host shallow copy; replace, never mutate, its slices
	info.CpuInfo = types.HostCpuInfo{
		NumCpuPackages: s.CPUSockets,
		NumCpuCores:    s.CPUCores,
		NumCpuThreads:  s.CPUThreads,
		Hz:             int64(s.CPUMhz) * 1_000_000,
	}
	info.MemorySize = s.hostMemory()

	h.Runtime.ConnectionState = types.HostSystemConnectionState(s.ConnectionState)
	h.Runtime.InMaintenanceMode = s.Maintenance
	// An idle host: usage starts at zero and moves only with VMs.
	h.Summary.QuickStats.OverallCpuUsage = 0
	h.Summary.QuickStats.OverallMemoryUsage = 0
	h.Summary.QuickStats.Uptime = 0
}

// setDatastoreFigures gives a datastore the type and size the topology asks
// for; vcsim makes every datastore type OTHER and 1 TB per mounting host.
func setDatastoreFigures(d *simulator.Datastore, s Datastore) {
	d.Summary.Type = s.Type
	d.Summary.Capacity = s.CapacityMB * mib
	d.Summary.FreeSpace = s.FreeMB * mib
	info := d.Info.GetDatastoreInfo()
	info.FreeSpace = d.Summary.FreeSpace
	info.MaxFileSize = d.Summary.Capacity
	info.MaxMemoryFileSize = d.Summary.Capacity
}

// hostTemplate is the part of vcsim's host template that is expensive to
// copy: made once per process.
type hostTemplate struct {
	config *types.HostConfigInfo
	cert   types.HostCertificateManagerCertificateInfo
}

var hostTemplateOnce = sync.OnceValues(func() (*hostTemplate, error) {
	cfg := new(types.HostConfigInfo)
	if err := xmlCopy(esx.HostSystem.Config, cfg); err != nil {
		return nil, err
	}
	if err := xmlCopy(esx.AdvancedOptions, &cfg.Option); err != nil {
		return nil, err
	}
	// vcsim declares its container-backing option on every host.
	cfg.OptionDef = append(cfg.OptionDef, types.OptionDef{ElementDescription: types.ElementDescription{Key: "RUN.container"}})
	var info object.HostCertificateInfo
	if _, err := info.FromPEM(cfg.Certificate); err != nil {
		return nil, err
	}
	return &hostTemplate{config: cfg, cert: info.HostCertificateManagerCertificateInfo}, nil
})

// xmlCopy deep-copies a vSphere value, as vcsim's deepCopy does.
func xmlCopy(src, dst any) error {
	data, err := xml.Marshal(src)
	if err != nil {
		return err
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.TypeFunc = types.TypeFunc()
	return dec.Decode(dst)
}

// cloneOptions copies option values one level deep: the host's OptionManager
// replaces and edits them in place.
func cloneOptions(in []types.BaseOptionValue) []types.BaseOptionValue {
	out := make([]types.BaseOptionValue, len(in))
	for i, o := range in {
		if v, ok := o.(*types.OptionValue); ok {
			c := *v
			out[i] = &c
		} else {
			out[i] = o
		}
	}
	return out
}

// faultText is a one-line description of a vSphere fault.
func faultText(f types.AnyType) string {
	if f == nil {
		return "unknown fault"
	}
	if mf, ok := f.(types.BaseMethodFault); ok {
		for _, m := range mf.GetMethodFault().FaultMessage {
			if m.Message != "" {
				return fmt.Sprintf("%s: %s", typeName(f), m.Message)
			}
		}
	}
	return typeName(f)
}

func typeName(v any) string {
	s := fmt.Sprintf("%T", v)
	if i := bytes.LastIndexByte([]byte(s), '.'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
