// Tests of the one front door: no second listener, /folder behind a session, a body limit, a body
// timeout that leaves long polls alone, and no property reads without a login.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// listeningPorts are the TCP ports this process listens on (from /proc).
func listeningPorts(t *testing.T) map[string]bool {
	t.Helper()
	inodes := map[string]bool{}
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	ports := map[string]bool{}
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 9 && f[3] == "0A" && inodes[f[9]] { // 0A: LISTEN
				ports[f[1]] = true
			}
		}
	}
	return ports
}

func TestNoSecondListener(t *testing.T) {
	before := listeningPorts(t)
	fv, c := serve(t, testTopology()) // one httptest listener: the front
	if _, err := fv.reset(); err != nil {
		t.Fatal(err)
	}
	if got := len(listeningPorts(t)) - len(before); got != 1 {
		t.Errorf("%d new listening sockets after a start and a reset; want 1 (the front)", got)
	}
	om := object.NewOptionManager(c.Client, *c.ServiceContent.Setting)
	if opts, err := om.Query(bg, "vcsim.server.url"); err == nil && len(opts) > 0 {
		t.Errorf("vcsim.server.url advertises %v", opts[0].GetOptionValue().Value)
	}
}

// httpDo sends a request with the client's session cookie (or none).
func httpDo(t *testing.T, base, method, path string, body io.Reader, cookie string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, body)
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: soap.SessionCookieName, Value: cookie})
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(data)
}

func sessionCookie(t *testing.T, c *vim25.Client, base string) string {
	t.Helper()
	u, _ := url.Parse(base + "/sdk")
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == soap.SessionCookieName {
			return ck.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

func TestFolderNeedsASession(t *testing.T) {
	_, base := serveURL(t, testTopology())
	c := login(t, base)
	file := "/folder/probe.txt?dcPath=DC0&dsName=shared"
	for _, method := range []string{"PUT", "GET"} {
		if status, _ := httpDo(t, base, method, file, strings.NewReader("x"), ""); status != http.StatusUnauthorized {
			t.Errorf("%s %s without a session: %d, want 401", method, file, status)
		}
	}
	if status, _ := httpDo(t, base, "GET", "/folder/?dcPath=DC0&dsName=shared", nil, "not-a-session"); status != http.StatusUnauthorized {
		t.Errorf("a listing with a made-up cookie: %d, want 401", status)
	}
	cookie := sessionCookie(t, c.Client, base)
	if status, _ := httpDo(t, base, "PUT", file, strings.NewReader("hello"), cookie); status != http.StatusOK {
		t.Fatalf("PUT with a session: %d", status)
	}
	if status, body := httpDo(t, base, "GET", file, nil, cookie); status != http.StatusOK || body != "hello" {
		t.Errorf("GET with a session: %d %q", status, body)
	}
	for _, p := range []string{"/guestFile?id=1", "/nfc/x", "/sdk/nothing.xml"} {
		if status, _ := httpDo(t, base, "GET", p, nil, cookie); status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, status)
		}
	}
}

func TestRequestBodiesAreLimited(t *testing.T) {
	fv, base := serveURL(t, testTopology())
	c := login(t, base)
	fv.setLimits(1<<20, 0)
	big := bytes.Repeat([]byte("x"), 2<<20)
	if status, body := httpDo(t, base, "POST", "/sdk", bytes.NewReader(big), ""); status != http.StatusRequestEntityTooLarge {
		t.Errorf("a 2 MiB SOAP body with a 1 MiB limit: %d %q, want 413", status, body)
	}
	cookie := sessionCookie(t, c.Client, base)
	file := "/folder/big.bin?dcPath=DC0&dsName=shared"
	if status, _ := httpDo(t, base, "PUT", file, bytes.NewReader(big), cookie); status != http.StatusRequestEntityTooLarge {
		t.Errorf("a 2 MiB upload with a 1 MiB limit: %d, want 413", status)
	}
	if status, _ := httpDo(t, base, "GET", file, nil, cookie); status != http.StatusNotFound {
		t.Errorf("a refused upload left a file behind (%d)", status)
	}
	if _, err := methods.GetCurrentTime(bg, c.Client); err != nil {
		t.Errorf("the server after a refused body: %v", err)
	}
}

func TestSlowBodiesTimeOutLongPollsDoNot(t *testing.T) {
	fv, base := serveURL(t, testTopology())
	fv.setLimits(0, 200*time.Millisecond)
	c := login(t, base)

	// A client that sends half a body and stops is cut off.
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /sdk HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n<soapenv:Envelope")
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // only so a broken server cannot hang the test
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		res.Body.Close()
		if res.StatusCode < 400 {
			t.Errorf("a stalled body was answered %d", res.StatusCode)
		}
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("a stalled body held the connection open")
	}

	// A long poll waits well past the body timeout and returns normally.
	pc, err := methods.CreatePropertyCollector(bg, c.Client, &types.CreatePropertyCollector{This: c.ServiceContent.PropertyCollector})
	if err != nil {
		t.Fatal(err)
	}
	spec := types.PropertyFilterSpec{ObjectSet: []types.ObjectSpec{{Obj: c.ServiceContent.RootFolder}},
		PropSet: []types.PropertySpec{{Type: "Folder", PathSet: []string{"name"}}}}
	if _, err := methods.CreateFilter(bg, c.Client, &types.CreateFilter{This: pc.Returnval, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	wait := func(version string, secs int32) (*types.WaitForUpdatesExResponse, error) {
		return methods.WaitForUpdatesEx(bg, c.Client, &types.WaitForUpdatesEx{This: pc.Returnval, Version: version,
			Options: &types.WaitOptions{MaxWaitSeconds: types.NewInt32(secs)}})
	}
	first, err := wait("", 0)
	if err != nil || first.Returnval == nil {
		t.Fatalf("initial update: %v", err)
	}
	if res, err := wait(first.Returnval.Version, 1); err != nil || res.Returnval != nil {
		t.Errorf("a 1 s long poll with a 0.2 s body timeout: %v %v", err, res)
	}
}

func TestNoPropertyReadsWithoutALogin(t *testing.T) {
	_, base := serveURL(t, testTopology())
	c := login(t, base)
	anon, err := vim25.NewClient(bg, soap.NewClient(&url.URL{Scheme: "http", Host: strings.TrimPrefix(base, "http://"), Path: "/sdk"}, true))
	if err != nil {
		t.Fatal(err) // RetrieveServiceContent needs no login
	}
	root := c.ServiceContent.RootFolder
	spec := types.PropertyFilterSpec{ObjectSet: []types.ObjectSpec{{Obj: root}},
		PropSet: []types.PropertySpec{{Type: "Folder", PathSet: []string{"name"}}}}
	_, err = methods.RetrievePropertiesEx(bg, anon, &types.RetrievePropertiesEx{This: c.ServiceContent.PropertyCollector,
		SpecSet: []types.PropertyFilterSpec{spec}})
	if !isNotAuthenticated(err) {
		t.Errorf("RetrievePropertiesEx without a login: %v, want NotAuthenticated", err)
	}
	_, err = methods.RetrieveProperties(bg, anon, &types.RetrieveProperties{This: c.ServiceContent.PropertyCollector,
		SpecSet: []types.PropertyFilterSpec{spec}})
	if !isNotAuthenticated(err) {
		t.Errorf("RetrieveProperties without a login: %v, want NotAuthenticated", err)
	}
	req, res := fetchBody{Req: &fetch{This: root, Prop: "name"}}, fetchBody{}
	if err := anon.RoundTrip(bg, &req, &res); !isNotAuthenticated(err) {
		t.Errorf("Fetch without a login: %v, want NotAuthenticated", err)
	}
}

// fetch is the SOAP Fetch request (govmomi's type is internal to it).
type fetch struct {
	This types.ManagedObjectReference `xml:"_this"`
	Prop string                       `xml:"prop"`
}

type fetchBody struct {
	Req    *fetch      `xml:"urn:vim25 Fetch,omitempty"`
	Res    *struct{}   `xml:"FetchResponse,omitempty"`
	Fault_ *soap.Fault `xml:"http://schemas.xmlsoap.org/soap/envelope/ Fault,omitempty"`
}

func (b *fetchBody) Fault() *soap.Fault { return b.Fault_ }
