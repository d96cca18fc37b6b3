// Tests of server-side paging: every RetrievePropertiesEx answer is cut at the page size, tokens are
// single-use and bound to their session and collector, CancelRetrievePropertiesEx, the control API.
package main

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// hostsSpec reads the name of every host through a ContainerView.
func hostsSpec(t *testing.T, c *govmomi.Client) types.PropertyFilterSpec {
	t.Helper()
	v, err := view.NewManager(c.Client).CreateContainerView(bg, c.ServiceContent.RootFolder, []string{"HostSystem"}, true)
	if err != nil {
		t.Fatal(err)
	}
	return types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{Obj: v.Reference(), Skip: types.NewBool(true), SelectSet: []types.BaseSelectionSpec{
			&types.TraversalSpec{Type: "ContainerView", Path: "view"}}}},
		PropSet: []types.PropertySpec{{Type: "HostSystem", PathSet: []string{"name"}}},
	}
}

func retrieveEx(c *govmomi.Client, pc types.ManagedObjectReference, spec types.PropertyFilterSpec, max int32) (*types.RetrieveResult, error) {
	res, err := methods.RetrievePropertiesEx(bg, c.Client, &types.RetrievePropertiesEx{This: pc,
		SpecSet: []types.PropertyFilterSpec{spec}, Options: types.RetrieveOptions{MaxObjects: max}})
	if err != nil {
		return nil, err
	}
	return res.Returnval, nil
}

func continueEx(c *govmomi.Client, pc types.ManagedObjectReference, token string) (*types.RetrieveResult, error) {
	res, err := methods.ContinueRetrievePropertiesEx(bg, c.Client, &types.ContinueRetrievePropertiesEx{This: pc, Token: token})
	if err != nil {
		return nil, err
	}
	return &res.Returnval, nil
}

// isFault tells whether a call failed with the named vSphere fault (a call
// fault decodes to a value, a task's to a pointer).
func isFault(err error, name string) bool {
	if err == nil || !soap.IsSoapFault(err) {
		return false
	}
	return strings.TrimPrefix(strings.TrimPrefix(fmt.Sprintf("%T", soap.ToSoapFault(err).VimFault()), "*"), "types.") == name
}

// servePaged serves testTopology with the page size set through the control API.
func servePaged(t *testing.T, size int) (*fakevc, string) {
	t.Helper()
	fv, base := serveURL(t, testTopology())
	if status, out := api(t, base, "PUT", "paging", map[string]any{"page_size": size}); status != 200 {
		t.Fatalf("PUT paging: %d %v", status, out)
	}
	return fv, base
}

func TestRetrieveIsPagedAtThePageSize(t *testing.T) {
	_, base := servePaged(t, 2)
	c := login(t, base)
	pc := c.ServiceContent.PropertyCollector
	spec := hostsSpec(t, c)
	for _, tc := range []struct {
		maxObjects int32
		pageSize   int
	}{{0, 2}, {10, 2}, {1, 1}} {
		res, err := retrieveEx(c, pc, spec, tc.maxObjects)
		if err != nil {
			t.Fatal(err)
		}
		var names, pages []string
		for {
			if len(res.Objects) > tc.pageSize || len(res.Objects) == 0 {
				t.Errorf("maxObjects %d: a page of %d objects, want 1 to %d", tc.maxObjects, len(res.Objects), tc.pageSize)
			}
			for _, o := range res.Objects {
				names = append(names, o.PropSet[0].Val.(string))
			}
			pages = append(pages, res.Token)
			if res.Token == "" {
				break
			}
			if res, err = continueEx(c, pc, res.Token); err != nil {
				t.Fatal(err)
			}
		}
		sort.Strings(names)
		// 7 hosts: C0_H0-3, C1_H0, SA_H0 ... all of them, each once.
		if len(names) != 6 || names[0] != "C0_H0" || names[5] != "SA_H0" {
			t.Errorf("maxObjects %d: read %v", tc.maxObjects, names)
		}
		if want := (6 + tc.pageSize - 1) / tc.pageSize; len(pages) != want {
			t.Errorf("maxObjects %d: %d answers, want %d", tc.maxObjects, len(pages), want)
		}
	}
	if _, err := retrieveEx(c, pc, spec, -1); !isFault(err, "InvalidArgument") {
		t.Errorf("maxObjects -1: %v, want InvalidArgument", err)
	}
}

func TestTokensAreSingleUseAndBound(t *testing.T) {
	_, base := servePaged(t, 2)
	c, other := login(t, base), login(t, base)
	pc := c.ServiceContent.PropertyCollector
	spec := hostsSpec(t, c)
	first, err := retrieveEx(c, pc, spec, 0)
	if err != nil || first.Token == "" {
		t.Fatalf("no token: %v %+v", err, first)
	}
	if _, err := continueEx(other, pc, first.Token); !isFault(err, "InvalidProperty") {
		t.Errorf("another session continued the token: %v", err)
	}
	mine, err := methods.CreatePropertyCollector(bg, c.Client, &types.CreatePropertyCollector{This: pc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := continueEx(c, mine.Returnval, first.Token); !isFault(err, "InvalidProperty") {
		t.Errorf("another collector continued the token: %v", err)
	}
	if _, err := continueEx(c, pc, first.Token); err != nil {
		t.Fatalf("the right session and collector: %v", err)
	}
	if _, err := continueEx(c, pc, first.Token); !isFault(err, "InvalidProperty") {
		t.Errorf("a token used twice: %v", err)
	}

	// CancelRetrievePropertiesEx discards the rest.
	again, _ := retrieveEx(c, pc, spec, 0)
	if _, err := methods.CancelRetrievePropertiesEx(bg, c.Client, &types.CancelRetrievePropertiesEx{This: pc, Token: again.Token}); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if _, err := continueEx(c, pc, again.Token); !isFault(err, "InvalidProperty") {
		t.Errorf("a cancelled token continued: %v", err)
	}
	if _, err := methods.CancelRetrievePropertiesEx(bg, c.Client, &types.CancelRetrievePropertiesEx{This: pc, Token: "nope"}); !isFault(err, "InvalidProperty") {
		t.Errorf("cancel of an unknown token: %v", err)
	}
}

func TestPageSizeThroughTheControlAPI(t *testing.T) {
	_, base := serveURL(t, testTopology())
	if status, out := api(t, base, "GET", "paging", nil); status != 200 || out["page_size"] != 100.0 {
		t.Errorf("a topology without page_size pages at vCenter's 100: %d %v", status, out)
	}
	c := login(t, base)
	api(t, base, "PUT", "paging", map[string]any{"page_size": 1})
	res, err := retrieveEx(c, c.ServiceContent.PropertyCollector, hostsSpec(t, c), 0)
	if err != nil || len(res.Objects) != 1 || res.Token == "" {
		t.Fatalf("page size 1: %v %+v", err, res)
	}
	if _, out := api(t, base, "GET", "paging", nil); out["page_size"] != 1.0 || out["pending"] != 1.0 {
		t.Errorf("paging after one unfinished retrieval: %v", out)
	}
	if err := c.Logout(bg); err != nil {
		t.Fatal(err)
	}
	c2 := login(t, base) // a call makes the server prune what ended sessions left
	_, _ = methods.GetCurrentTime(bg, c2.Client)
	if _, out := api(t, base, "GET", "paging", nil); out["pending"] != 0.0 {
		t.Errorf("results of an ended session are kept: %v", out)
	}
	for _, bad := range []any{map[string]any{"page_size": 0}, map[string]any{}, map[string]any{"page_size": "ten"}} {
		if status, _ := api(t, base, "PUT", "paging", bad); status != 400 {
			t.Errorf("PUT paging %v: %d, want 400", bad, status)
		}
	}
	api(t, base, "POST", "reset", nil)
	if _, out := api(t, base, "GET", "paging", nil); out["page_size"] != 100.0 || out["pending"] != 0.0 {
		t.Errorf("after a reset: %v", out)
	}
}
