// Protocol-level tests of the driver's server, without a vCenter: every message both ways is validated
// against the protocol's JSON Schemas (conformance/protocol/schema, the same files the suite validates with),
// and each way a request can be wrong gets its JSON-RPC error. The contract's behaviour against a real fake
// vCenter is the suite's to judge (tests/test_selftest.py runs it through the protocol).

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const schemaDir = "../../conformance/protocol/schema"

// schemas compiles every message schema, keyed "spawn.request" and the like.
func schemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(schemaDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no schemas in %s: %v", schemaDir, err)
	}
	c := jsonschema.NewCompiler()
	ids := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		id := doc.(map[string]any)["$id"].(string)
		if err := c.AddResource(id, doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		ids[strings.TrimSuffix(filepath.Base(f), ".json")] = id
	}
	out := map[string]*jsonschema.Schema{}
	for name, id := range ids {
		if name == "defs" {
			continue
		}
		s, err := c.Compile(id)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = s
	}
	return out
}

func validate(t *testing.T, s map[string]*jsonschema.Schema, kind, method string, message []byte) {
	t.Helper()
	schema, ok := s[method+"."+kind]
	if !ok {
		t.Fatalf("no schema for a %s of %q", kind, method)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(message))
	if err != nil {
		t.Fatalf("%s of %s is not JSON: %v: %s", kind, method, err, message)
	}
	if err := schema.Validate(v); err != nil {
		t.Errorf("%s of %s does not match its schema: %v\n%s", kind, method, err, message)
	}
}

// exchange runs a server over the given request lines and returns its answer lines and exit status.
func exchange(t *testing.T, lines ...string) ([]string, int) {
	t.Helper()
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	status := NewServer(strings.NewReader(strings.Join(lines, "\n")+"\n"), &out, log, Mutants{}).Run()
	answers := strings.Split(strings.TrimSpace(out.String()), "\n")
	if out.Len() == 0 {
		answers = nil
	}
	return answers, status
}

func makeRequest(t *testing.T, s map[string]*jsonschema.Schema, id int, method string, params any) string {
	t.Helper()
	data, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	if err != nil {
		t.Fatal(err)
	}
	validate(t, s, "request", method, data) // the test's own requests keep the protocol too
	return string(data)
}

type answer struct {
	ID     any             `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    *struct {
			Type string `json:"type"`
		} `json:"data"`
	} `json:"error"`
}

func decodeAnswer(t *testing.T, line string) answer {
	t.Helper()
	var a answer
	if err := json.Unmarshal([]byte(line), &a); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, line)
	}
	return a
}

// closedPort is 127.0.0.1 on a port nothing listens on: an unreachable vCenter.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func TestHandshakeDeclaresVersionAndCapabilities(t *testing.T) {
	s := schemas(t)
	answers, status := exchange(t,
		makeRequest(t, s, 1, "initialize", map[string]any{"protocol_version": "1.0",
			"suite": map[string]any{"name": "test", "version": "0"}}),
		makeRequest(t, s, 2, "shutdown", map[string]any{}))
	if status != 0 || len(answers) != 2 {
		t.Fatalf("status %d, answers %q", status, answers)
	}
	validate(t, s, "response", "initialize", []byte(answers[0]))
	validate(t, s, "response", "shutdown", []byte(answers[1]))
	var result InitializeResult
	if err := json.Unmarshal(decodeAnswer(t, answers[0]).Result, &result); err != nil {
		t.Fatal(err)
	}
	if result.ProtocolVersion != ProtocolVersion || result.Driver["name"] != DriverName ||
		!result.Capabilities["placement_inventory"] || !result.Capabilities["update_notifications"] {
		t.Errorf("handshake answered %+v", result)
	}
}

func TestJSONRPCErrors(t *testing.T) {
	s := schemas(t)
	cases := []struct {
		what, line, method string
		code               int
		wantID             any
	}{
		{"not JSON", `{"jsonrpc": "2.0", "id": 1,`, "shutdown", codeParseError, nil},
		{"no id", `{"jsonrpc": "2.0", "method": "list_instances", "params": {}}`, "list_instances", codeInvalidRequest, nil},
		{"params not an object", `{"jsonrpc": "2.0", "id": 3, "method": "list_instances", "params": []}`,
			"list_instances", codeInvalidRequest, float64(3)},
		{"JSON-RPC 1.0", `{"id": 4, "method": "list_instances", "params": {}}`, "list_instances", codeInvalidRequest,
			float64(4)},
		{"unknown method", `{"jsonrpc": "2.0", "id": 5, "method": "resize", "params": {}}`, "shutdown",
			codeMethodNotFound, float64(5)},
		{"a method before configure", makeRequest(t, s, 6, "list_instances", map[string]any{}), "list_instances",
			codeInvalidParams, float64(6)},
		{"configure without config", `{"jsonrpc": "2.0", "id": 7, "method": "configure", "params": {}}`, "configure",
			codeInvalidParams, float64(7)},
		{"a config that is not one", `{"jsonrpc": "2.0", "id": 8, "method": "configure", "params": {"config": 3}}`,
			"configure", codeInvalidParams, float64(8)},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			answers, status := exchange(t, c.line)
			if status != 0 || len(answers) != 1 {
				t.Fatalf("status %d, answers %q", status, answers)
			}
			validate(t, s, "response", c.method, []byte(answers[0]))
			a := decodeAnswer(t, answers[0])
			if a.Error == nil || a.Error.Code != c.code || a.ID != c.wantID {
				t.Errorf("answered %s; want error %d with id %v", answers[0], c.code, c.wantID)
			}
		})
	}
}

func config(url string, extra map[string]any) map[string]any {
	c := map[string]any{"url": url, "username": "user", "password": "Secret-42", "clusters": []string{"/DC0/host/C0"},
		"ca_file": nil, "insecure": false, "datastore_regex": nil, "service_id": "compute-0", "resource_pool": nil}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

func TestConfigureErrorsAreTheContractsExceptions(t *testing.T) {
	s := schemas(t)
	unreachable := "https://" + closedPort(t) + "/sdk"
	cases := []struct {
		what   string
		config map[string]any
		code   int
		typ    string
		says   string
	}{
		{"plain http", config("http://127.0.0.1/sdk", nil), codeDriverError, "DriverError", "url: expected https"},
		{"a bad datastore filter", config(unreachable, map[string]any{"datastore_regex": "("}), codeDriverError,
			"DriverError", "datastore_regex"},
		{"a missing CA file", config(unreachable, map[string]any{"ca_file": "/nonexistent/ca.pem"}), codeDriverError,
			"DriverError", "ca_file: no such file"},
		{"an unreachable vCenter", config(unreachable, nil), codeVCenterUnavailable, "VCenterUnavailable",
			"connect: vCenter at 127.0.0.1"},
		// A member this driver does not know is ignored (the protocol's rule), not refused.
		{"an unknown member", config(unreachable, map[string]any{"a_future_setting": []int{1}}),
			codeVCenterUnavailable, "VCenterUnavailable", "connect: vCenter at"},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			answers, _ := exchange(t, makeRequest(t, s, 1, "configure", map[string]any{"config": c.config}))
			if len(answers) != 1 {
				t.Fatalf("answers %q", answers)
			}
			validate(t, s, "response", "configure", []byte(answers[0]))
			a := decodeAnswer(t, answers[0])
			if a.Error == nil || a.Error.Code != c.code || a.Error.Data == nil || a.Error.Data.Type != c.typ ||
				!strings.Contains(a.Error.Message, c.says) {
				t.Errorf("answered %s; want %s (%d) saying %q", answers[0], c.typ, c.code, c.says)
			}
			if strings.Contains(answers[0], "Secret-42") {
				t.Errorf("the answer holds the password: %s", answers[0])
			}
		})
	}
}

func TestEndOfStdinEndsTheProcess(t *testing.T) {
	answers, status := exchange(t)
	if status != 0 || len(answers) != 0 {
		t.Errorf("status %d, answers %q", status, answers)
	}
}

func TestConfigNeverShowsThePassword(t *testing.T) {
	c := Config{URL: "https://vc/sdk", Username: "u", Password: "Secret-42"}
	for _, text := range []string{c.String(), c.GoString()} {
		if strings.Contains(text, "Secret-42") {
			t.Errorf("the password shows in %q", text)
		}
	}
}

func TestMutantsAreKnownByName(t *testing.T) {
	if m, err := ParseMutants("logs-password, per-cluster-queries"); err != nil || !m.Has("logs-password") ||
		!m.Has("per-cluster-queries") || m.Has("untyped-errors") {
		t.Errorf("ParseMutants: %v %v", m, err)
	}
	if _, err := ParseMutants("typo"); err == nil || !strings.Contains(err.Error(), "known: ") {
		t.Errorf("an unknown mutant gave %v", err)
	}
}

func TestAPanicAnswersItsRequestNotTheProcess(t *testing.T) {
	s := schemas(t)
	var out bytes.Buffer
	in := strings.NewReader(makeRequest(t, s, 1, "get_available_nodes", map[string]any{"refresh": true}) + "\n" +
		makeRequest(t, s, 2, "shutdown", map[string]any{}) + "\n")
	server := NewServer(in, &out, slog.New(slog.NewTextHandler(io.Discard, nil)), Mutants{})
	server.driver = testDriver(Config{}, Mutants{}) // no connection: its refresh dereferences nil
	if status := server.Run(); status != 0 {
		t.Fatalf("status %d", status)
	}
	answers := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(answers) != 2 {
		t.Fatalf("answers %q", answers)
	}
	validate(t, s, "response", "get_available_nodes", []byte(answers[0]))
	if a := decodeAnswer(t, answers[0]); a.Error == nil || a.Error.Code != codeInternalError ||
		!strings.Contains(a.Error.Message, "get_available_nodes panicked") {
		t.Errorf("answered %s; want -32603 saying the method panicked", answers[0])
	}
	if a := decodeAnswer(t, answers[1]); a.Error != nil || string(a.Result) != "null" {
		t.Errorf("shutdown answered %s", answers[1])
	}
}
