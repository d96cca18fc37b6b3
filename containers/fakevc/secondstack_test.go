// Tests of what a second SOAP client stack (oslo.vmware + suds) needs: the
// WSDL, typed loop-free traversal, a connected host's zero usage on the wire,
// dateTimes without a zone, and connection-level faults.
package main

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

func TestWSDLIsServedAndWellFormed(t *testing.T) {
	_, base := serveURL(t, testTopology())
	for _, name := range []string{"vimService.wsdl", "vim.wsdl"} {
		res, err := http.Get(base + "/sdk/" + name)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d", name, res.StatusCode)
		}
		dec := xml.NewDecoder(bytes.NewReader(data))
		for {
			if _, err := dec.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s is not well-formed XML: %v", name, err)
			}
		}
	}
	doc := string(wsdlFiles()["vim.wsdl"])
	for _, want := range []string{
		`<operation name="RetrievePropertiesEx">`, `<operation name="CreateVM_Task">`, `<operation name="RegisterExtension">`,
		`<complexType name="HostListSummaryQuickStats">`, `<complexType name="ArrayOfManagedObjectReference">`,
		`<element name="InvalidLoginFault" type="vim25:InvalidLogin"/>`,
		`<element name="overallMemoryUsage" type="xsd:int" minOccurs="0"/>`,
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("vim.wsdl lacks %s", want)
		}
	}
}

// TestResponseTableIsCurrent regenerates responses_gen.go from the pinned
// govmomi and compares.
func TestResponseTableIsCurrent(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go tool")
	}
	out := filepath.Join(t.TempDir(), "responses_gen.go")
	cmd := exec.Command("go", "run", "./internal/genresponses", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("genresponses: %v: %s", err, msg)
	}
	want, _ := os.ReadFile(out)
	got, _ := os.ReadFile("responses_gen.go")
	if !bytes.Equal(got, want) {
		t.Fatal("responses_gen.go is out of date: run `go generate` in containers/fakevc")
	}
}

// TestRecursiveTraversalEnds is oslo.vmware's recursive traversal (VM and
// resource pool specs pointing at each other) over an inventory with a VM:
// vcsim alone recursed until the stack overflowed.
func TestRecursiveTraversalEnds(t *testing.T) {
	fv, c := serve(t, testTopology())
	if _, f := createVM(t, fv, c, "C0", nil, vmSpec("loop", "shared", 1, 256)); f != nil {
		t.Fatal(faultText(f))
	}
	ts := func(name, typ, path string, sel ...string) *types.TraversalSpec {
		s := &types.TraversalSpec{SelectionSpec: types.SelectionSpec{Name: name}, Type: typ, Path: path, Skip: types.NewBool(false)}
		for _, n := range sel {
			s.SelectSet = append(s.SelectSet, &types.SelectionSpec{Name: n})
		}
		return s
	}
	all := []string{"rp_rp", "rp_vm", "vm_rp", "cr_rp", "cr_host", "dc_hf", "f_child"}
	specs := []types.BaseSelectionSpec{
		ts("rp_rp", "ResourcePool", "resourcePool", all...), ts("rp_vm", "ResourcePool", "vm", all...),
		ts("vm_rp", "VirtualMachine", "resourcePool", all...), ts("cr_rp", "ComputeResource", "resourcePool", all...),
		ts("cr_host", "ComputeResource", "host"), ts("dc_hf", "Datacenter", "hostFolder", all...),
		ts("f_child", "Folder", "childEntity", all...),
	}
	req := types.RetrievePropertiesEx{This: c.ServiceContent.PropertyCollector, SpecSet: []types.PropertyFilterSpec{{
		ObjectSet: []types.ObjectSpec{{Obj: c.ServiceContent.RootFolder, SelectSet: specs}},
		PropSet:   []types.PropertySpec{{Type: "VirtualMachine", PathSet: []string{"name"}}, {Type: "HostSystem", PathSet: []string{"name"}}},
	}}}
	res, err := methods.RetrievePropertiesEx(bg, c.Client, &req)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for _, o := range res.Returnval.Objects {
		names[o.PropSet[0].Val.(string)]++
	}
	if names["loop"] != 1 || names["C0_H0"] != 1 || names["SA_H0"] != 1 {
		t.Errorf("objects reached: %v", names)
	}
	// A spec applies only to its type: VirtualMachine.resourcePool is not followed by a ResourcePool spec.
	req.SpecSet[0].ObjectSet[0].SelectSet = []types.BaseSelectionSpec{ts("dc", "Folder", "childEntity", "x"),
		ts("x", "Datacenter", "vmFolder", "y"), ts("y", "Folder", "childEntity", "z"), ts("z", "ResourcePool", "resourcePool")}
	req.SpecSet[0].PropSet = []types.PropertySpec{{Type: "ResourcePool", PathSet: []string{"name"}}}
	res, err = methods.RetrievePropertiesEx(bg, c.Client, &req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Returnval != nil && len(res.Returnval.Objects) != 0 {
		t.Errorf("a ResourcePool spec was applied to a VM: %d pools", len(res.Returnval.Objects))
	}
	// A filter with a looping spec is created (and answers) too.
	var pc = property.DefaultCollector(c.Client)
	f, err := pc.CreateFilter(bg, types.CreateFilter{Spec: types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{Obj: c.ServiceContent.RootFolder, SelectSet: specs}},
		PropSet:   []types.PropertySpec{{Type: "VirtualMachine", PathSet: []string{"name"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	_ = f
}

// TestIdleConnectedHostSendsZeroUsage: an idle connected host's quickStats
// carry overallMemoryUsage 0 on the wire; a disconnected host's none.
func TestIdleConnectedHostSendsZeroUsage(t *testing.T) {
	fv, base := serveURL(t, testTopology())
	c := login(t, base)
	body := func(host string, path string) string {
		h := hostRef(t, fv, host)
		req := `<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:vim25="urn:vim25"><soapenv:Body>` +
			`<vim25:RetrievePropertiesEx><vim25:_this type="PropertyCollector">` + c.ServiceContent.PropertyCollector.Value + `</vim25:_this>` +
			`<vim25:specSet><vim25:propSet><vim25:type>HostSystem</vim25:type><vim25:pathSet>` + path + `</vim25:pathSet></vim25:propSet>` +
			`<vim25:objectSet><vim25:obj type="HostSystem">` + h.Value + `</vim25:obj></vim25:objectSet></vim25:specSet><vim25:options/></vim25:RetrievePropertiesEx>` +
			`</soapenv:Body></soapenv:Envelope>`
		r, _ := http.NewRequest(http.MethodPost, base+"/sdk", strings.NewReader(req))
		for _, ck := range c.Client.Jar.Cookies(r.URL) {
			r.AddCookie(ck)
		}
		r.Header.Set("Content-Type", "text/xml")
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		data, _ := io.ReadAll(res.Body)
		return string(data)
	}
	for _, path := range []string{"summary.quickStats", "summary"} {
		if got := body("C0_H0", path); !strings.Contains(got, "<overallMemoryUsage>0</overallMemoryUsage>") ||
			!strings.Contains(got, "<overallCpuUsage>0</overallCpuUsage>") {
			t.Errorf("%s of an idle connected host: %s", path, got)
		}
	}
	if got := body("C0_H3", "summary.quickStats"); strings.Contains(got, "overallMemoryUsage") {
		t.Errorf("a disconnected host reports usage: %s", got)
	}
	var h mo.HostSystem // pyvmomi and govmomi still read it
	retrieve(t, c, hostRef(t, fv, "C0_H0"), []string{"summary"}, &h)
}

func TestZonelessDateTimeIsUTC(t *testing.T) {
	in := []byte(`<Envelope><Body><RegisterExtension><_this type="ExtensionManager">ExtensionManager</_this>` +
		`<extension><description><label>2024-01-02T03:04:05</label><summary>s</summary></description><key>k</key>` +
		`<version>1</version><lastHeartbeatTime>2024-01-02T03:04:05.123456</lastHeartbeatTime></extension>` +
		`</RegisterExtension></Body></Envelope>`)
	out := string(zonedTimes(in, "RegisterExtension"))
	if !strings.Contains(out, "<lastHeartbeatTime>2024-01-02T03:04:05.123456Z</lastHeartbeatTime>") {
		t.Errorf("the heartbeat stayed without a zone: %s", out)
	}
	if !strings.Contains(out, "<label>2024-01-02T03:04:05</label>") {
		t.Errorf("a string that looks like a time was changed: %s", out)
	}
}

func TestConnectionFaults(t *testing.T) {
	_, base := serveURL(t, testTopology())
	post := func() error {
		client := http.Client{Timeout: 2 * time.Second}
		res, err := client.Post(base+"/sdk", "text/xml", strings.NewReader(
			`<Envelope><Body><RetrieveServiceContent><_this type="ServiceInstance">ServiceInstance</_this></RetrieveServiceContent></Body></Envelope>`))
		if err == nil {
			res.Body.Close()
		}
		return err
	}
	for _, mode := range []string{"refuse", "reset", "stall"} {
		if code, out := api(t, base, http.MethodPut, "connection-fault", map[string]any{"mode": mode}); code != 200 {
			t.Fatalf("%s: %d %v", mode, code, out)
		}
		if err := post(); err == nil {
			t.Errorf("%s: the SOAP call was answered", mode)
		}
		if code, out := api(t, base, http.MethodGet, "connection-fault", nil); code != 200 || out["hits"].(float64) < 1 {
			t.Errorf("%s: %d %v", mode, code, out)
		}
		api(t, base, http.MethodDelete, "connection-fault", nil)
		if err := post(); err != nil {
			t.Errorf("after clearing %s: %v", mode, err)
		}
	}
	if code, _ := api(t, base, http.MethodPut, "connection-fault", map[string]any{"mode": "explode"}); code != 400 {
		t.Errorf("an unknown mode: HTTP %d", code)
	}
	api(t, base, http.MethodPut, "connection-fault", map[string]any{"mode": "refuse", "method": "RetrievePropertiesEx", "count": 1})
	if err := post(); err != nil {
		t.Errorf("a fault for another method broke RetrieveServiceContent: %v", err)
	}
}
