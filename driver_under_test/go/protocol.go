// The driver protocol's server side (docs/driver-protocol.md): JSON-RPC 2.0, one message a line, requests
// on stdin and answers on stdout; logs go to stderr. Requests after configure run concurrently, one
// goroutine each, and are answered in the order they finish.

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
)

// ProtocolVersion is the version of docs/driver-protocol.md this driver speaks.
const ProtocolVersion = "1.0"

// The contract's exceptions, one application error code each; data.type names the exception.
const (
	codeDriverError          = -32000
	codeNodeNotFound         = -32001
	codeInstanceNotFound     = -32002
	codeVCenterUnavailable   = -32003
	codeAuthenticationFailed = -32004
	codeSpawnFailed          = -32005
	codeInternalError        = -32603
	codeParseError           = -32700
	codeInvalidRequest       = -32600
	codeMethodNotFound       = -32601
	codeInvalidParams        = -32602
)

var errorCodes = map[string]int{
	"DriverError": codeDriverError, "NodeNotFound": codeNodeNotFound, "InstanceNotFound": codeInstanceNotFound,
	"VCenterUnavailable": codeVCenterUnavailable, "AuthenticationFailed": codeAuthenticationFailed,
	"SpawnFailed": codeSpawnFailed,
}

// DriverError is one of the contract's exceptions: Type names it (NodeNotFound...), Msg says why in one line
// and never holds a credential.
type DriverError struct {
	Type string
	Msg  string
}

func (e *DriverError) Error() string { return e.Type + ": " + e.Msg }

func newError(kind, format string, args ...any) error {
	return &DriverError{Type: kind, Msg: fmt.Sprintf(format, args...)}
}

type rpcError struct {
	Code    int        `json:"code"`
	Message string     `json:"message"`
	Data    *errorData `json:"data,omitempty"`
}

type errorData struct {
	Type string `json:"type"`
}

type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result"`
	Error   *rpcError       `json:"error,omitempty"`
}

// MarshalJSON writes "result" or "error", never both (JSON-RPC 2.0).
func (r response) MarshalJSON() ([]byte, error) {
	if r.Error != nil {
		return json.Marshal(struct {
			JSONRPC string          `json:"jsonrpc"`
			ID      json.RawMessage `json:"id"`
			Error   *rpcError       `json:"error"`
		}{r.JSONRPC, r.ID, r.Error})
	}
	return json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  any             `json:"result"`
	}{r.JSONRPC, r.ID, r.Result})
}

// invalidParams is what a method answers when its params cannot be decoded (JSON-RPC -32602).
type invalidParams struct{ msg string }

func (e invalidParams) Error() string { return e.msg }

// methodNotFound is a method the driver does not offer (JSON-RPC -32601).
type methodNotFound struct{ msg string }

func (e methodNotFound) Error() string { return e.msg }

// Server serves one driver instance on a pair of streams.
type Server struct {
	in      io.Reader
	out     io.Writer
	log     *slog.Logger
	mutants Mutants
	writeMu sync.Mutex
	driver  *Driver
	running sync.WaitGroup
	// ctx ends at shutdown (or at the end of stdin): what is still in flight then ends as a call on a closed
	// driver does, so the driver never keeps the suite waiting on its way out.
	ctx    context.Context
	cancel context.CancelFunc
}

// NewServer serves on in and out; log writes to stderr.
func NewServer(in io.Reader, out io.Writer, log *slog.Logger, mutants Mutants) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{in: in, out: out, log: log, mutants: mutants, ctx: ctx, cancel: cancel}
}

// Run serves until shutdown, or until stdin ends (the suite is gone); it returns the exit status.
func (s *Server) Run() int {
	reader := bufio.NewReaderSize(s.in, 1<<20)
	for {
		line, err := reader.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			req, ok := s.parse(line)
			if ok {
				switch req.Method {
				case "initialize", "configure":
					s.handle(req) // in order: nothing else may run before configure has answered
				case "shutdown":
					s.cancel()
					s.running.Wait() // what is in flight is answered first
					s.handle(req)
					return 0
				default:
					s.running.Add(1)
					go func() {
						defer s.running.Done()
						s.handle(req)
					}()
				}
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.log.Error("reading stdin", "error", err)
			}
			s.cancel()
			s.running.Wait()
			s.closeDriver()
			return 0
		}
	}
}

// parse reads one request; on a bad one it sends the error answer and returns false.
func (s *Server) parse(line []byte) (request, bool) {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		s.send(response{JSONRPC: "2.0", ID: json.RawMessage("null"),
			Error: &rpcError{Code: codeParseError, Message: "not JSON: " + err.Error()}})
		return req, false
	}
	var id int64
	idOK := json.Unmarshal(req.ID, &id) == nil && id >= 1
	if !idOK {
		req.ID = json.RawMessage("null")
	}
	params := bytes.TrimSpace(req.Params)
	if req.JSONRPC != "2.0" || !idOK || req.Method == "" || len(params) == 0 || params[0] != '{' {
		s.send(response{JSONRPC: "2.0", ID: req.ID, Error: &rpcError{Code: codeInvalidRequest,
			Message: "expected a JSON-RPC 2.0 request: an integer id, a method and params as an object"}})
		return req, false
	}
	return req, true
}

func (s *Server) handle(req request) {
	defer func() {
		// A bug in one request answers that request (-32603, the driver's own failure), not the process:
		// the suite judges it as it would an unexpected exception of a Python driver.
		if r := recover(); r != nil {
			s.log.Error("request panicked", "method", req.Method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			s.send(response{JSONRPC: "2.0", ID: req.ID, Error: &rpcError{Code: codeInternalError,
				Message: fmt.Sprintf("%s panicked: %v", req.Method, r)}})
		}
	}()
	result, err := s.call(req.Method, req.Params)
	res := response{JSONRPC: "2.0", ID: req.ID, Result: result}
	var de *DriverError
	var ip invalidParams
	var mnf methodNotFound
	switch {
	case err == nil:
	case errors.As(err, &de):
		code, ok := errorCodes[de.Type]
		if !ok {
			code, de.Type = codeDriverError, "DriverError"
		}
		if s.mutants.Has("untyped-errors") && de.Type == "NodeNotFound" {
			// Mutant: the typed error is lost on the way out, as with a driver that returns fmt.Errorf.
			res.Error = &rpcError{Code: codeInternalError, Message: de.Msg}
			break
		}
		res.Error = &rpcError{Code: code, Message: de.Msg, Data: &errorData{Type: de.Type}}
	case errors.As(err, &ip):
		res.Error = &rpcError{Code: codeInvalidParams, Message: ip.msg}
	case errors.As(err, &mnf):
		res.Error = &rpcError{Code: codeMethodNotFound, Message: mnf.msg}
	default:
		s.log.Error("request failed", "method", req.Method, "error", err)
		res.Error = &rpcError{Code: codeInternalError, Message: err.Error()}
	}
	s.send(res)
}

// send writes one answer as one line. Whatever was logged before it is on stderr already: slog writes each
// record at once, unbuffered, so the suite relays it before the call it belongs to returns.
func (s *Server) send(res response) {
	data, err := json.Marshal(res)
	if err != nil {
		data, _ = json.Marshal(response{JSONRPC: "2.0", ID: res.ID,
			Error: &rpcError{Code: codeInternalError, Message: "cannot encode the answer: " + err.Error()}})
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_, _ = s.out.Write(append(data, '\n'))
}

func decode(raw json.RawMessage, into any) error {
	if err := json.Unmarshal(raw, into); err != nil {
		return invalidParams{"params: " + err.Error()}
	}
	return nil
}

// InitializeResult is the handshake's answer.
type InitializeResult struct {
	ProtocolVersion string          `json:"protocol_version"`
	Driver          map[string]any  `json:"driver"`
	Capabilities    map[string]bool `json:"capabilities"`
}

// protocolMethods are the protocol's methods (the suite sends no others).
var protocolMethods = map[string]bool{"initialize": true, "configure": true, "reconfigure": true,
	"get_available_nodes": true, "get_available_resource": true, "spawn": true, "destroy": true,
	"list_instances": true, "get_info": true, "wait_for_changes": true, "shutdown": true}

func (s *Server) call(method string, raw json.RawMessage) (any, error) {
	ctx := s.ctx
	if !protocolMethods[method] {
		return nil, methodNotFound{fmt.Sprintf("no method %q", method)}
	}
	switch method {
	case "initialize":
		var p struct {
			ProtocolVersion string `json:"protocol_version"`
		}
		if err := decode(raw, &p); err != nil {
			return nil, err
		}
		if major(p.ProtocolVersion) != major(ProtocolVersion) {
			s.log.Warn("the suite speaks another protocol version", "suite", p.ProtocolVersion, "driver", ProtocolVersion)
		}
		return InitializeResult{ProtocolVersion: ProtocolVersion,
			Driver:       map[string]any{"name": DriverName, "version": DriverVersion},
			Capabilities: map[string]bool{"placement_inventory": true, "update_notifications": true}}, nil
	case "configure":
		if s.driver != nil {
			return nil, invalidParams{"configure was already called"}
		}
		cfg, err := decodeConfig(raw)
		if err != nil {
			return nil, err
		}
		d, err := NewDriver(ctx, cfg, s.log, s.mutants)
		if err != nil {
			return nil, err
		}
		s.driver = d
		return nil, nil
	case "shutdown":
		s.closeDriver()
		return nil, nil
	}
	d := s.driver
	if d == nil {
		return nil, invalidParams{method + " before configure"}
	}
	switch method {
	case "reconfigure":
		cfg, err := decodeConfig(raw)
		if err != nil {
			return nil, err
		}
		return nil, d.Reconfigure(cfg)
	case "get_available_nodes":
		var p struct {
			Refresh *bool `json:"refresh"`
		}
		if err := decode(raw, &p); err != nil || p.Refresh == nil {
			return nil, invalidParams{"params: refresh (a boolean) is required"}
		}
		return d.GetAvailableNodes(ctx, *p.Refresh)
	case "get_available_resource":
		var p struct {
			Nodename *string `json:"nodename"`
		}
		if err := decode(raw, &p); err != nil || p.Nodename == nil {
			return nil, invalidParams{"params: nodename (a string) is required"}
		}
		return d.GetAvailableResource(ctx, *p.Nodename)
	case "spawn":
		var p struct {
			Instance *Instance `json:"instance"`
			Nodename *string   `json:"nodename"`
		}
		if err := decode(raw, &p); err != nil || p.Instance == nil || p.Nodename == nil || p.Instance.UUID == "" {
			return nil, invalidParams{"params: instance (with a uuid) and nodename are required"}
		}
		return nil, d.Spawn(ctx, *p.Instance, *p.Nodename)
	case "destroy", "get_info":
		var p struct {
			Instance *Instance `json:"instance"`
		}
		if err := decode(raw, &p); err != nil || p.Instance == nil || p.Instance.UUID == "" {
			return nil, invalidParams{"params: instance (with a uuid) is required"}
		}
		if method == "destroy" {
			return nil, d.Destroy(ctx, *p.Instance)
		}
		return d.GetInfo(ctx, *p.Instance)
	case "list_instances":
		return d.ListInstances(ctx)
	case "wait_for_changes":
		var p struct {
			Timeout *float64 `json:"timeout"`
		}
		if err := decode(raw, &p); err != nil || p.Timeout == nil || *p.Timeout < 0 {
			return nil, invalidParams{"params: timeout (seconds, at least 0) is required"}
		}
		return d.WaitForChanges(ctx, *p.Timeout)
	}
	return nil, methodNotFound{fmt.Sprintf("no method %q", method)}
}

func (s *Server) closeDriver() {
	if s.driver != nil {
		s.driver.Close(context.Background())
	}
}

func major(version string) string {
	return strings.SplitN(version, ".", 2)[0]
}

// decodeConfig reads configure's params: the members this driver knows; unknown ones are ignored (the
// protocol's rule: new members come with defaults that keep the old behaviour).
func decodeConfig(raw json.RawMessage) (Config, error) {
	var p struct {
		Config *Config `json:"config"`
	}
	if err := decode(raw, &p); err != nil {
		return Config{}, err
	}
	if p.Config == nil {
		return Config{}, invalidParams{"params: config is required"}
	}
	return *p.Config, nil
}
