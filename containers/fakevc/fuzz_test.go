// Fuzzing the SOAP front: no input panics the process or leaves an object locked. `go test` runs the seed
// corpus (the calls drivers and the suite make, and sequences that once broke vcsim); `make go-fuzz` (part
// of `make test`) mutates it for a bounded time.
package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

// separator splits one fuzz input into the SOAP requests it sends in turn.
const separator = "\x00"

// envelope is a SOAP request as govmomi's client sends it.
func envelope(body any) string {
	b, err := xml.Marshal(soap.Envelope{Body: body})
	if err != nil {
		panic(err)
	}
	return xml.Header + string(b)
}

// soapSeeds are sequences of requests against a freshly built testTopology world.
func soapSeeds(t testing.TB, fv *fakevc) [][]string {
	reg := fv.reg()
	find := func(kind, name string) types.ManagedObjectReference {
		for _, e := range reg.All(kind) {
			if e.Entity().Name == name {
				return e.Reference()
			}
		}
		t.Fatalf("no %s %s", kind, name)
		return types.ManagedObjectReference{}
	}
	sc := fv.world.Load().model.ServiceContent
	dc := reg.Get(find("Datacenter", "DC0")).(*simulator.Datacenter)
	c0, c1 := find("ClusterComputeResource", "C0"), find("ClusterComputeResource", "C1")
	h0, h2 := find("HostSystem", "C0_H0"), find("HostSystem", "C0_H2")
	pool := *reg.Get(c0).(*simulator.ClusterComputeResource).ResourcePool
	pc := sc.PropertyCollector
	walk := types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{Obj: sc.RootFolder, SelectSet: []types.BaseSelectionSpec{
			&types.TraversalSpec{SelectionSpec: types.SelectionSpec{Name: "f"}, Type: "Folder", Path: "childEntity",
				SelectSet: []types.BaseSelectionSpec{&types.SelectionSpec{Name: "f"}, &types.SelectionSpec{Name: "d"}}},
			&types.TraversalSpec{SelectionSpec: types.SelectionSpec{Name: "d"}, Type: "Datacenter", Path: "hostFolder",
				SelectSet: []types.BaseSelectionSpec{&types.SelectionSpec{Name: "f"}}},
		}}},
		PropSet: []types.PropertySpec{{Type: "ManagedEntity", PathSet: []string{"name", "parent"}}},
	}
	vm := types.VirtualMachineConfigSpec{Name: "fuzz", NumCPUs: 1, MemoryMB: 256,
		Files: &types.VirtualMachineFileInfo{VmPathName: "[shared]"}}
	return [][]string{
		{envelope(&methods.RetrieveServiceContentBody{Req: &types.RetrieveServiceContent{This: *sc.SessionManager}})},
		{envelope(&methods.RetrievePropertiesExBody{Req: &types.RetrievePropertiesEx{This: pc,
			SpecSet: []types.PropertyFilterSpec{walk}, Options: types.RetrieveOptions{MaxObjects: 1}}}),
			envelope(&methods.ContinueRetrievePropertiesExBody{Req: &types.ContinueRetrievePropertiesEx{This: pc, Token: "1"}}),
			envelope(&methods.CancelRetrievePropertiesExBody{Req: &types.CancelRetrievePropertiesEx{This: pc, Token: "2"}})},
		{envelope(&methods.CreateContainerViewBody{Req: &types.CreateContainerView{This: *sc.ViewManager,
			Container: sc.RootFolder, Type: []string{"ClusterComputeResource", "HostSystem"}, Recursive: true}})},
		{envelope(&methods.CreateClusterExBody{Req: &types.CreateClusterEx{This: dc.HostFolder, Name: ""}}),
			envelope(&methods.Rename_TaskBody{Req: &types.Rename_Task{This: c1, NewName: "x"}}),
			envelope(&methods.CreateClusterExBody{Req: &types.CreateClusterEx{This: dc.HostFolder, Name: "y"}})},
		{envelope(&methods.Rename_TaskBody{Req: &types.Rename_Task{This: c0, NewName: "C1"}})},
		{envelope(&methods.CreateFolderBody{Req: &types.CreateFolder{This: dc.VmFolder, Name: "a/b%"}}),
			envelope(&methods.CreateResourcePoolBody{Req: &types.CreateResourcePool{This: pool, Name: "p",
				Spec: types.DefaultResourceConfigSpec()}})},
		{envelope(&methods.CreateVM_TaskBody{Req: &types.CreateVM_Task{This: dc.VmFolder, Config: vm, Pool: pool}}),
			envelope(&methods.CreateVM_TaskBody{Req: &types.CreateVM_Task{This: dc.VmFolder, Config: vm, Pool: pool, Host: &h2}})},
		{envelope(&methods.RegisterVM_TaskBody{Req: &types.RegisterVM_Task{This: dc.VmFolder, Path: "[shared] x/x.vmx",
			Pool: &pool}}),
			envelope(&methods.RegisterVM_TaskBody{Req: &types.RegisterVM_Task{This: dc.VmFolder, Path: "[nowhere] x/x.vmx",
				Pool: &pool, Host: &h0}})},
		{envelope(&methods.EnterMaintenanceMode_TaskBody{Req: &types.EnterMaintenanceMode_Task{This: h0}}),
			envelope(&methods.MoveInto_TaskBody{Req: &types.MoveInto_Task{This: c1, Host: []types.ManagedObjectReference{h0}}}),
			envelope(&methods.Destroy_TaskBody{Req: &types.Destroy_Task{This: c0}})},
		{envelope(&methods.DisconnectHost_TaskBody{Req: &types.DisconnectHost_Task{This: h2}}),
			envelope(&methods.Destroy_TaskBody{Req: &types.Destroy_Task{This: h2}}),
			envelope(&methods.MoveIntoFolder_TaskBody{Req: &types.MoveIntoFolder_Task{This: dc.HostFolder,
				List: []types.ManagedObjectReference{h2}}})},
		{envelope(&methods.FindAllByUuidBody{Req: &types.FindAllByUuid{This: *sc.SearchIndex, Uuid: "x",
			VmSearch: true, InstanceUuid: types.NewBool(true)}}),
			envelope(&methods.FindByInventoryPathBody{Req: &types.FindByInventoryPath{This: *sc.SearchIndex,
				InventoryPath: "/DC0/host/C0"}})},
		{envelope(&methods.CreatePropertyCollectorBody{Req: &types.CreatePropertyCollector{This: pc}}),
			envelope(&methods.CreateFilterBody{Req: &types.CreateFilter{This: pc, Spec: walk}}),
			envelope(&methods.WaitForUpdatesExBody{Req: &types.WaitForUpdatesEx{This: pc,
				Options: &types.WaitOptions{MaxWaitSeconds: types.NewInt32(0)}}})},
		{envelope(&methods.LogoutBody{Req: &types.Logout{This: *sc.SessionManager}}),
			envelope(&methods.LoginBody{Req: &types.Login{This: *sc.SessionManager, UserName: "user", Password: "x"}})},
		{envelope(&methods.Destroy_TaskBody{Req: &types.Destroy_Task{This: dc.VmFolder}}),
			envelope(&methods.Destroy_TaskBody{Req: &types.Destroy_Task{This: sc.RootFolder}})},
		{`<?xml version="1.0"?><Envelope><Body><Nothing/></Body></Envelope>`},
	}
}

// fuzzServer is one fake vCenter for the whole fuzz run; each input gets a fresh world (a reset).
type fuzzServer struct {
	fv *fakevc
}

// call serves one request in-process, with the session cookie; a call still running after a while (a
// long poll with no time limit) is ended by a reset, and one that outlives that too hangs.
func (s *fuzzServer) call(t *testing.T, body, cookie string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/sdk", strings.NewReader(body))
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: soap.SessionCookieName, Value: cookie})
	}
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { s.fv.ServeHTTP(rec, req); close(done) }()
	select {
	case <-done:
		return rec
	case <-time.After(5 * time.Second):
	}
	if _, err := s.fv.reset(); err != nil { // ends long polls
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("a request still runs 20 s after a reset:\n%.2000s", body)
	}
	return rec
}

func (s *fuzzServer) login(t *testing.T) string {
	sc := s.fv.world.Load().model.ServiceContent
	rec := s.call(t, envelope(&methods.LoginBody{Req: &types.Login{This: *sc.SessionManager, UserName: "user",
		Password: "pass"}}), "")
	for _, c := range rec.Result().Cookies() {
		if c.Name == soap.SessionCookieName {
			return c.Value
		}
	}
	t.Fatalf("login failed: %d %s", rec.Code, rec.Body.String())
	return ""
}

// checkUnlocked fails when any object of the world stays locked (a panic under a lock leaves it held).
func (s *fuzzServer) checkUnlocked(t *testing.T, input []byte) {
	w := s.fv.world.Load()
	ctx := &simulator.Context{Context: context.Background(), Map: w.reg}
	for _, e := range w.reg.All("") {
		got := make(chan struct{})
		go func() { w.reg.WithLock(ctx, e.Reference(), func() {}); close(got) }()
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s stays locked after input %q", e.Reference(), input)
		}
	}
}

func FuzzSOAP(f *testing.F) {
	fv, err := newFakevc(testTopology(), "user", "pass")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(fv.close)
	s := &fuzzServer{fv}
	for _, seq := range soapSeeds(f, fv) {
		f.Add([]byte(strings.Join(seq, separator)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := fv.reset(); err != nil {
			t.Fatal(err)
		}
		cookie := s.login(t)
		for i, body := range bytes.SplitN(data, []byte(separator), 5) {
			if i == 4 {
				break
			}
			rec := s.call(t, string(body), cookie)
			if rec.Code != http.StatusOK && rec.Code != http.StatusInternalServerError && rec.Code != http.StatusBadRequest &&
				rec.Code != http.StatusRequestEntityTooLarge {
				t.Errorf("HTTP %d for %q", rec.Code, body)
			}
		}
		if n := takePanics(fv); n > 0 {
			t.Fatalf("%d panic(s) serving %q (see the log above)", n, data)
		}
		// Tasks run on their own goroutines: let them finish before looking for held locks.
		time.Sleep(time.Millisecond)
		s.checkUnlocked(t, data)
	})
}
