// Tests of vCenter's name rules on create and rename: InvalidName, DuplicateName, escaping, and the
// sequence that used to kill the process (an empty cluster name, then a rename beside it).
package main

import (
	"strings"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

func hostFolder(t *testing.T, fv *fakevc, c *govmomi.Client) *object.Folder {
	t.Helper()
	dc := fv.reg().Get(ref(t, fv, "Datacenter", "DC0")).(*simulator.Datacenter)
	return object.NewFolder(c.Client, dc.HostFolder)
}

// faultName is the vSphere fault type of a failed call or task ("" when it succeeded).
func faultName(t *testing.T, task *object.Task, err error) string {
	t.Helper()
	if err == nil && task != nil {
		err = task.Wait(bg)
	}
	if err == nil {
		return ""
	}
	if f := soapFault(err); f != nil {
		return typeName(f)
	}
	t.Fatalf("not a vSphere fault: %v", err)
	return ""
}

func TestCreateNameRules(t *testing.T) {
	fv, c := serve(t, testTopology())
	folder := hostFolder(t, fv, c)
	for _, tc := range []struct {
		name, fault string
	}{
		{"", "InvalidName"},
		{"   ", "InvalidName"},
		{strings.Repeat("x", 81), "InvalidName"},
		{"line\nbreak", "InvalidName"},
		{strings.Repeat("x", 80), ""},
		{"C1", "DuplicateName"},
	} {
		_, err := folder.CreateCluster(bg, tc.name, types.ClusterConfigSpecEx{})
		if got := faultName(t, nil, err); got != tc.fault {
			t.Errorf("CreateClusterEx(%q): %q, want %q", tc.name, got, tc.fault)
		}
	}
	for _, create := range []func(string) error{
		func(n string) error { _, err := folder.CreateFolder(bg, n); return err },
		func(n string) error {
			_, err := object.NewRootFolder(c.Client).CreateDatacenter(bg, n)
			return err
		},
		func(n string) error {
			pool := object.NewResourcePool(c.Client, *clusterByName(t, fv, "C0").ResourcePool)
			_, err := pool.Create(bg, n, types.DefaultResourceConfigSpec())
			return err
		},
	} {
		if got := faultName(t, nil, create("")); got != "InvalidName" {
			t.Errorf("an empty name: %q, want InvalidName", got)
		}
	}
	if _, err := object.NewRootFolder(c.Client).CreateDatacenter(bg, "DC0"); faultName(t, nil, err) != "DuplicateName" {
		t.Errorf("a second datacenter DC0: %v, want DuplicateName", err)
	}

	// '/', '\' and a '%' that starts no escape are escaped; %2F stays as given.
	cl, err := folder.CreateCluster(bg, `a/b\c%d%2F`, types.ClusterConfigSpecEx{})
	if err != nil {
		t.Fatal(err)
	}
	var m mo.ClusterComputeResource
	retrieve(t, c, cl.Reference(), []string{"name"}, &m)
	if m.Name != `a%2fb%5cc%25d%2F` {
		t.Errorf("escaped name %q", m.Name)
	}

	// VMs: a name too long is refused; a name taken in the folder fails the task with DuplicateName.
	h0 := hostRef(t, fv, "C0_H0")
	if _, f := createVM(t, fv, c, "C0", &h0, vmSpec(strings.Repeat("v", 81), "shared", 1, 256)); f == nil || typeName(f) != "InvalidName" {
		t.Errorf("a VM name of 81 characters: %v, want InvalidName", f)
	}
	if _, f := createVM(t, fv, c, "C0", &h0, vmSpec("twin", "shared", 1, 256)); f != nil {
		t.Fatal(faultText(f))
	}
	if _, f := createVM(t, fv, c, "C0", &h0, vmSpec("twin", "shared", 1, 256)); f == nil || typeName(f) != "DuplicateName" {
		t.Errorf("a second VM twin in the folder: %v, want DuplicateName", f)
	}
}

func TestRenameRules(t *testing.T) {
	fv, c := serve(t, testTopology())
	c0 := object.NewClusterComputeResource(c.Client, ref(t, fv, "ClusterComputeResource", "C0"))
	for _, tc := range []struct {
		name, fault string
	}{{"C1", "DuplicateName"}, {"", "InvalidName"}, {strings.Repeat("x", 81), "InvalidName"}, {"C0", ""}, {"renamed", ""}} {
		task, err := c0.Rename(bg, tc.name)
		if got := faultName(t, task, err); got != tc.fault {
			t.Errorf("rename C0 to %q: %q, want %q", tc.name, got, tc.fault)
		}
	}
	var m mo.ClusterComputeResource
	retrieve(t, c, c0.Reference(), []string{"name"}, &m)
	if m.Name != "renamed" {
		t.Errorf("cluster name %q", m.Name)
	}

	// Pools and datastores can be renamed too, unique among their siblings.
	root := object.NewResourcePool(c.Client, *clusterByName(t, fv, "C1").ResourcePool)
	a, _ := root.Create(bg, "a", types.DefaultResourceConfigSpec())
	if _, err := root.Create(bg, "b", types.DefaultResourceConfigSpec()); err != nil {
		t.Fatal(err)
	}
	if task, err := a.Rename(bg, "b"); faultName(t, task, err) != "DuplicateName" {
		t.Error("a pool renamed to its sibling's name")
	}
	if task, err := a.Rename(bg, "c"); faultName(t, task, err) != "" {
		t.Error("a pool rename failed")
	}
	ds := object.NewDatastore(c.Client, ref(t, fv, "Datastore", "private"))
	if task, err := ds.Rename(bg, "shared"); faultName(t, task, err) != "DuplicateName" {
		t.Error("a datastore renamed to another datastore's name")
	}
	_, err := methods.RenameDatastore(bg, c.Client, &types.RenameDatastore{This: ds.Reference(), NewName: "private2"})
	var d mo.Datastore
	retrieve(t, c, ds.Reference(), []string{"name", "summary.name"}, &d)
	if err != nil || d.Name != "private2" || d.Summary.Name != "private2" {
		t.Errorf("RenameDatastore: %v, name %q, summary %q", err, d.Name, d.Summary.Name)
	}
	dc := object.NewDatacenter(c.Client, ref(t, fv, "Datacenter", "DC0"))
	if _, err := object.NewRootFolder(c.Client).CreateDatacenter(bg, "DC1"); err != nil {
		t.Fatal(err)
	}
	if task, err := dc.Rename(bg, "DC1"); faultName(t, task, err) != "DuplicateName" {
		t.Error("a datacenter renamed to another's name")
	}

	// A VM's config.name follows its name.
	h0 := hostRef(t, fv, "C0_H0")
	vm, f := createVM(t, fv, c, "renamed", &h0, vmSpec("vm", "shared", 1, 256))
	if f != nil {
		t.Fatal(faultText(f))
	}
	task, err := object.NewVirtualMachine(c.Client, vm).Rename(bg, "vm2")
	if faultName(t, task, err) != "" {
		t.Fatal("VM rename failed")
	}
	var v mo.VirtualMachine
	retrieve(t, c, vm, []string{"name", "config.name", "summary.config.name"}, &v)
	if v.Name != "vm2" || v.Config.Name != "vm2" || v.Summary.Config.Name != "vm2" {
		t.Errorf("VM names after a rename: %q %q %q", v.Name, v.Config.Name, v.Summary.Config.Name)
	}
}

// The sequence: vcsim accepted CreateClusterEx(""); a later rename beside it killed the process
// and a second create hung the folder (vcsim panics on an entity without a name while it holds the lock).
func TestAnEmptyNameCannotPoisonAFolder(t *testing.T) {
	fv, c := serve(t, testTopology())
	folder := hostFolder(t, fv, c)
	if _, err := folder.CreateCluster(bg, "", types.ClusterConfigSpecEx{}); faultName(t, nil, err) != "InvalidName" {
		t.Fatalf("CreateClusterEx(\"\"): %v", err)
	}
	task, err := object.NewClusterComputeResource(c.Client, ref(t, fv, "ClusterComputeResource", "C1")).Rename(bg, "C1b")
	if faultName(t, task, err) != "" {
		t.Error("a rename beside the refused cluster failed")
	}
	if _, err := folder.CreateCluster(bg, "another", types.ClusterConfigSpecEx{}); err != nil {
		t.Errorf("a second create in the folder: %v", err)
	}
	if n := takePanics(fv); n != 0 {
		t.Errorf("%d panics", n)
	}
}
