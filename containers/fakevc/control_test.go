// Tests of the control API: credentials, one-line errors, reset with stable morefs, call counts, faults,
// latency, slow tasks, session expiry, host states, and tasks named after their SOAP method.
package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// api calls the control API with the vCenter credentials (or others).
func api(t *testing.T, base, method, path string, body any, auth ...string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if s, ok := body.(string); ok {
		rd = strings.NewReader(s)
	} else if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, base+controlPrefix+path, rd)
	user, pass := "user", "pass"
	if len(auth) == 2 {
		user, pass = auth[0], auth[1]
	}
	req.SetBasicAuth(user, pass)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(data, &out); err != nil {
		out = map[string]any{"list": string(data)}
	}
	return res.StatusCode, out
}

func TestControlAPIErrorsAreOneLine(t *testing.T) {
	_, base := serveURL(t, testTopology())
	for _, tc := range []struct {
		method, path string
		body         any
		status       int
		auth         []string
	}{
		{"GET", "status", nil, 401, []string{"user", "wrong"}},
		{"GET", "nothing", nil, 404, nil},
		{"DELETE", "status", nil, 405, nil},
		{"POST", "faults", "{not json", 400, nil},
		{"POST", "faults", map[string]any{"method": "X", "fault": "NoSuchFault"}, 400, nil},
		{"POST", "faults", map[string]any{"method": "X", "fault": "SystemError", "probability": 2}, 400, nil},
		{"POST", "faults", map[string]any{"method": "X", "fault": "SystemError", "count": 0}, 400, nil},
		{"POST", "faults", map[string]any{"method": "X", "fault": "SystemError", "extra": 1}, 400, nil},
		{"PUT", "latency", map[string]any{"method": "*", "ms": -1}, 400, nil},
		{"PUT", "task-delay", map[string]any{"method": "Login", "ms": 10}, 400, nil},
		{"PUT", "session-timeout", map[string]any{}, 400, nil},
		{"PUT", "hosts/nobody", map[string]any{"maintenance": true}, 404, nil},
		{"PUT", "hosts/C0_H0", map[string]any{"connection_state": "asleep"}, 400, nil},
	} {
		status, out := api(t, base, tc.method, tc.path, tc.body, tc.auth...)
		msg, _ := out["error"].(string)
		if status != tc.status || msg == "" || strings.Contains(msg, "\n") {
			t.Errorf("%s %s: %d %q, want %d and one line", tc.method, tc.path, status, msg, tc.status)
		}
	}
}

// inventory maps every entity's type and name to its moref.
func inventoryRefs(fv *fakevc) map[string]types.ManagedObjectReference {
	out := map[string]types.ManagedObjectReference{}
	for _, e := range fv.reg().All("") {
		out[e.Reference().Type+"/"+entityPath(fv, e)] = e.Reference()
	}
	return out
}

func entityPath(fv *fakevc, e mo.Entity) string {
	path := e.Entity().Name
	for p := e.Entity().Parent; p != nil; {
		parent, ok := fv.reg().Get(*p).(mo.Entity)
		if !ok {
			break
		}
		path = parent.Entity().Name + "/" + path
		p = parent.Entity().Parent
	}
	return path
}

func TestResetRestoresTheLoadedInventory(t *testing.T) {
	fv, base := serveURL(t, testTopology())
	c := login(t, base)
	before := inventoryRefs(fv)
	uuid := c.ServiceContent.About.InstanceUuid

	h0 := hostRef(t, fv, "C0_H0")
	if _, f := createVM(t, fv, c, "C0", &h0, vmSpec("left-over", "shared", 1, 128)); f != nil {
		t.Fatal(faultText(f))
	}
	tasks{t}.must(object.NewClusterComputeResource(c.Client, ref(t, fv, "ClusterComputeResource", "EMPTY")).Destroy(bg))
	api(t, base, "POST", "faults", map[string]any{"method": "CreateVM_Task", "fault": "SystemError"})
	api(t, base, "PUT", "latency", map[string]any{"method": "*", "ms": 5})
	api(t, base, "PUT", "session-timeout", map[string]any{"seconds": 60})

	status, out := api(t, base, "POST", "reset", nil)
	if status != 200 || out["generation"] != 1.0 {
		t.Fatalf("reset: %d %v", status, out)
	}
	if after := inventoryRefs(fv); !mapsEqual(before, after) {
		t.Errorf("the inventory after reset differs from the loaded one: %d vs %d entities", len(after), len(before))
	}
	// Every session ended, as after a vCenter restart.
	if _, err := methods.GetCurrentTime(bg, c.Client); !isNotAuthenticated(err) {
		t.Errorf("the old session still works after reset: %v", err)
	}
	c2 := login(t, base)
	if c2.ServiceContent.About.InstanceUuid != uuid {
		t.Error("the instanceUuid changed")
	}
	_, faults := api(t, base, "GET", "faults", nil)
	if faults["list"] != "[]\n" {
		t.Errorf("faults after reset: %v", faults)
	}
	_, calls := api(t, base, "GET", "calls", nil)
	if calls["total"].(float64) > 5 { // only this test's new login and reads
		t.Errorf("calls after reset: %v", calls)
	}
}

func mapsEqual(a, b map[string]types.ManagedObjectReference) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func isNotAuthenticated(err error) bool {
	_, ok := soapFault(err).(*types.NotAuthenticated)
	return ok
}

func TestMorefsAreStableAcrossStarts(t *testing.T) {
	a, _ := serveURL(t, faultyTopology())
	b, _ := serveURL(t, faultyTopology())
	if !mapsEqual(inventoryRefs(a), inventoryRefs(b)) {
		t.Error("two starts of one topology gave different morefs")
	}
	if a.world.Load().model.ServiceContent.About.InstanceUuid != b.world.Load().model.ServiceContent.About.InstanceUuid {
		t.Error("two starts of one topology gave different instanceUuids")
	}
}

func TestCallsAreCountedByMethod(t *testing.T) {
	_, base := serveURL(t, testTopology())
	c := login(t, base)
	api(t, base, "DELETE", "calls", nil)
	for range 3 {
		if _, err := methods.GetCurrentTime(bg, c.Client); err != nil {
			t.Fatal(err)
		}
	}
	_, out := api(t, base, "GET", "calls", nil)
	by := out["by_method"].(map[string]any)
	if out["total"] != 3.0 || by["CurrentTime"] != 3.0 {
		t.Errorf("calls: %v", out)
	}
}

func TestResponseBytesAreCountedByMethodAndSession(t *testing.T) {
	_, base := serveURL(t, testTopology())
	a, b := login(t, base), login(t, base)
	api(t, base, "DELETE", "calls", nil)
	for range 2 {
		if _, err := methods.GetCurrentTime(bg, a.Client); err != nil {
			t.Fatal(err)
		}
	}
	var folder mo.Folder
	retrieve(t, b, b.ServiceContent.RootFolder, []string{"name", "childEntity"}, &folder)
	status, out := api(t, base, "GET", "calls", nil)
	raw, _ := json.Marshal(out)
	type counts struct {
		Calls, Bytes int64
		ServerMs     float64 `json:"server_ms"`
	}
	var got struct {
		Bytes    int64
		Methods  map[string]counts
		Sessions map[string]struct {
			Calls, Bytes int64
			Methods      map[string]counts
		}
	}
	if err := json.Unmarshal(raw, &got); status != 200 || err != nil {
		t.Fatalf("GET calls: %d %v", status, err)
	}
	now, props := got.Methods["CurrentTime"], got.Methods["RetrievePropertiesEx"]
	// A CurrentTime answer is a small envelope; the folder read is larger.
	if now.Calls != 2 || now.Bytes < 2*200 || now.Bytes > 2*2000 || props.Calls != 1 || props.Bytes <= now.Bytes/2 {
		t.Errorf("methods: %s", raw)
	}
	if got.Bytes != now.Bytes+props.Bytes {
		t.Errorf("total bytes %d, by method %d", got.Bytes, now.Bytes+props.Bytes)
	}
	// Per session, by a digest of the session key: never the key (a credential) itself.
	for _, c := range []struct {
		client *govmomi.Client
		method string
		calls  int64
	}{{a, "CurrentTime", 2}, {b, "RetrievePropertiesEx", 1}} {
		us, err := session.NewManager(c.client.Client).UserSession(bg)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), us.Key) {
			t.Fatalf("a session key is in the answer: %s", raw)
		}
		s := got.Sessions[sessionID(us.Key)]
		if s.Calls != c.calls || s.Methods[c.method].Bytes != got.Methods[c.method].Bytes {
			t.Errorf("session %s: %+v in %s", sessionID(us.Key), s, raw)
		}
	}
	api(t, base, "DELETE", "calls", nil)
	if _, out := api(t, base, "GET", "calls", nil); out["bytes"] != 0.0 || len(out["sessions"].(map[string]any)) != 0 {
		t.Errorf("after DELETE: %v", out)
	}
}

// capture keeps the answers a client receives.
type capture struct {
	next http.RoundTripper
	body *bytes.Buffer
}

func (c capture) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := c.next.RoundTrip(r)
	if err == nil {
		data, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		c.body.Write(data)
		res.Body = io.NopCloser(bytes.NewReader(data))
	}
	return res, err
}

func TestAnswersDeclareXsiOnceAsVCenterDoes(t *testing.T) {
	fv, base := serveURL(t, testTopology())
	c := login(t, base)
	var seen bytes.Buffer
	c.Client.Client.Transport = capture{c.Client.Client.Transport, &seen}
	var h mo.HostSystem
	retrieve(t, c, hostRef(t, fv, "C0_H0"), []string{"summary.hardware.memorySize", "runtime.inMaintenanceMode", "datastore"}, &h)
	// A task's result is a typed value inside a typed value (vcsim declares its prefix on the outer one).
	vm, f := createVM(t, fv, c, "C0", nil, vmSpec("typed", "shared", 1, 128))
	if f != nil || vm.Value == "" {
		t.Fatalf("createVM: %v %v", vm, f)
	}
	body := seen.String()
	if strings.Contains(body, "_XMLSchema-instance") || !strings.Contains(body, `<val xsi:type="xsd:long">`) ||
		!strings.Contains(body, `<result type="VirtualMachine" xsi:type="ManagedObjectReference">`) ||
		!strings.Contains(body, `xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"`) {
		t.Errorf("answer: %s", body)
	}
	// The client still reads every typed value.
	if h.Summary.Hardware == nil || h.Summary.Hardware.MemorySize == 0 || len(h.Datastore) == 0 {
		t.Errorf("decoded: %+v %v", h.Summary.Hardware, h.Datastore)
	}
}

func TestFaultRules(t *testing.T) {
	fv, base := serveURL(t, testTopology())
	c := login(t, base)
	fails := tasks{t}.fault
	h0, h1 := hostRef(t, fv, "C0_H0"), hostRef(t, fv, "C0_H1")
	api(t, base, "POST", "faults", map[string]any{"method": "CurrentTime", "fault": "HostCommunication", "count": 1})
	_, err := methods.GetCurrentTime(bg, c.Client)
	if _, ok := soapFault(err).(*types.HostCommunication); !ok {
		t.Errorf("first call: %v", err)
	}
	if _, err := methods.GetCurrentTime(bg, c.Client); err != nil {
		t.Errorf("a count=1 rule fired twice: %v", err)
	}
	// Only the named object, only the named method.
	api(t, base, "POST", "faults", map[string]any{"method": "EnterMaintenanceMode_Task", "fault": "NotAuthenticated", "object": h1.Value})
	if f := fails(object.NewHostSystem(c.Client, h0).EnterMaintenanceMode(bg, 0, false, nil)); f != nil {
		t.Errorf("the rule for %s fired for %s: %T", h1, h0, f)
	}
	if _, ok := fails(object.NewHostSystem(c.Client, h1).EnterMaintenanceMode(bg, 0, false, nil)).(*types.NotAuthenticated); !ok {
		t.Error("the rule for the host did not fire")
	}
	// By type; probability 0 never fires.
	api(t, base, "POST", "faults", map[string]any{"method": "*", "fault": "SystemError", "object": "Datacenter", "probability": 0})
	status, out := api(t, base, "GET", "faults", nil)
	var rules []faultRule
	_ = json.Unmarshal([]byte(out["list"].(string)), &rules)
	if status != 200 || len(rules) != 3 || rules[0].Hits != 1 || rules[1].Hits != 1 || rules[2].Hits != 0 {
		t.Errorf("fault rules: %+v", rules)
	}
	api(t, base, "DELETE", "faults", nil)
	if f := fails(object.NewHostSystem(c.Client, h1).EnterMaintenanceMode(bg, 0, false, nil)); f != nil {
		t.Errorf("a cleared rule fired: %T", f)
	}
}

func TestLatencyDelaysCalls(t *testing.T) {
	_, base := serveURL(t, testTopology())
	api(t, base, "PUT", "latency", map[string]any{"method": "RetrieveServiceContent", "ms": 2000})
	// The answer comes after the latency, so a client with a shorter timeout never sees it.
	impatient := &http.Client{Timeout: 100 * time.Millisecond}
	body := `<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">` +
		`<soapenv:Body><RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this>` +
		`</RetrieveServiceContent></soapenv:Body></soapenv:Envelope>`
	if _, err := impatient.Post(base+"/sdk", "text/xml", strings.NewReader(body)); err == nil {
		t.Error("the call answered before its latency")
	}
	api(t, base, "DELETE", "latency", nil)
	res, err := impatient.Post(base+"/sdk", "text/xml", strings.NewReader(body))
	if err != nil {
		t.Fatalf("without latency: %v", err)
	}
	res.Body.Close()
}

func TestTaskDelayKeepsTasksRunning(t *testing.T) {
	fv, base := serveURL(t, testTopology())
	c := login(t, base)
	t.Cleanup(func() { setTaskDelays(nil) })
	h0 := hostRef(t, fv, "C0_H0")
	api(t, base, "PUT", "task-delay", map[string]any{"method": "EnterMaintenanceMode_Task", "ms": 1500})
	task, err := object.NewHostSystem(c.Client, h0).EnterMaintenanceMode(bg, 0, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var m mo.Task
	retrieve(t, c, task.Reference(), []string{"info"}, &m)
	if m.Info.State != types.TaskInfoStateRunning || m.Info.Name != "EnterMaintenanceMode_Task" {
		t.Errorf("a delayed task: %s %q", m.Info.State, m.Info.Name)
	}
	// While it runs, the host can still be read.
	if h := hostMO(t, c, h0); h.Runtime.InMaintenanceMode {
		t.Error("the host entered maintenance mode before its task ended")
	}
	tasks{t}.must(task, nil)
	if h := hostMO(t, c, h0); !h.Runtime.InMaintenanceMode {
		t.Error("the delayed task did not complete")
	}
}

func TestTasksAreNamedAfterTheirMethod(t *testing.T) {
	fv, c := serve(t, testTopology())
	h0 := hostRef(t, fv, "C0_H0")
	vm, _ := createVM(t, fv, c, "C0", &h0, vmSpec("named", "shared", 1, 128))
	task, err := object.NewVirtualMachine(c.Client, vm).PowerOn(bg)
	tasks{t}.must(task, err)
	var m mo.Task
	retrieve(t, c, task.Reference(), []string{"info"}, &m)
	if m.Info.Name != "PowerOnVM_Task" || m.Info.DescriptionId != "VirtualMachine.powerOn" {
		t.Errorf("task name %q, descriptionId %q", m.Info.Name, m.Info.DescriptionId)
	}
	_, f := createVM(t, fv, c, "C0", nil, vmSpec("bad", "nope", 1, 128))
	if f == nil {
		t.Fatal("expected a fault")
	}
}

func TestSessionsExpire(t *testing.T) {
	_, base := serveURL(t, testTopology())
	c := login(t, base)
	status, out := api(t, base, "POST", "sessions/expire", nil)
	if status != 200 || out["expired"] != 1.0 {
		t.Errorf("expire: %d %v", status, out)
	}
	if _, err := methods.GetCurrentTime(bg, c.Client); !isNotAuthenticated(err) {
		t.Errorf("an expired session still works: %v", err)
	}
	if err := c.Login(bg, url.UserPassword("user", "pass")); err != nil {
		t.Fatalf("login again: %v", err)
	}
	if _, err := methods.GetCurrentTime(bg, c.Client); err != nil {
		t.Errorf("the new session: %v", err)
	}

	// An idle timeout ends a session left idle, not one in use.
	api(t, base, "PUT", "session-timeout", map[string]any{"seconds": 0.3})
	busy := login(t, base)
	for range 4 {
		time.Sleep(100 * time.Millisecond)
		if _, err := methods.GetCurrentTime(bg, busy.Client); err != nil {
			t.Fatalf("a session in use expired: %v", err)
		}
	}
	if _, err := methods.GetCurrentTime(bg, c.Client); !isNotAuthenticated(err) {
		t.Errorf("a session idle past the timeout still works: %v", err)
	}
}

func TestSetHostStatesTheAPICannotSet(t *testing.T) {
	fv, base := serveURL(t, testTopology())
	c := login(t, base)
	status, _ := api(t, base, "PUT", "hosts/C0_H1", map[string]any{"connection_state": "notResponding"})
	if status != 200 {
		t.Fatal(status)
	}
	h := hostMO(t, c, hostRef(t, fv, "C0_H1"))
	if h.Runtime.ConnectionState != types.HostSystemConnectionStateNotResponding {
		t.Errorf("state %s", h.Runtime.ConnectionState)
	}
	if s := clusterSummary(t, c, ref(t, fv, "ClusterComputeResource", "C0")); s.NumEffectiveHosts != 1 {
		t.Errorf("a not-responding host is not effective: %+v", s.ComputeResourceSummary)
	}
	h3 := hostRef(t, fv, "C0_H3")
	api(t, base, "PUT", "hosts/"+h3.Value, map[string]any{"connection_state": "connected", "maintenance": true})
	if h := hostMO(t, c, h3); h.Runtime.ConnectionState != types.HostSystemConnectionStateConnected || !h.Runtime.InMaintenanceMode {
		t.Errorf("by moref: %+v", h.Runtime)
	}
}

func TestStatusNamesTheTopology(t *testing.T) {
	_, base := serveURL(t, testTopology())
	status, out := api(t, base, "GET", "status", nil)
	if status != 200 || out["topology"] != "unit" || out["instance_uuid"] != instanceUUID("unit") || out["generation"] != 0.0 {
		t.Errorf("status: %v", out)
	}
}
