// xsd:dateTime values without a time zone in requests, read as UTC as
// vCenter reads them (govmomi's decoder only takes RFC 3339, with a zone).
package main

import (
	"bytes"
	"encoding/xml"
	"reflect"
	"regexp"
	"strings"
)

var (
	// zonelessTime is an xsd:dateTime without a zone, as element content.
	zonelessTime = regexp.MustCompile(`^\s*\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\s*$`)
	anyZoneless  = regexp.MustCompile(`>\s*\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\s*<`)
)

const xsiNamespace = "http://www.w3.org/2001/XMLSchema-instance"

// zonedTimes returns the SOAP request with "Z" after every dateTime value
// that has no time zone (oslo.vmware sends isoformat() of a naive UTC time,
// e.g. Extension.lastHeartbeatTime). Only elements whose schema type is
// xsd:dateTime are touched: the request is walked along the types of the
// method's parameters, so a string that looks like a time stays as it is.
func zonedTimes(body []byte, method string) []byte {
	req, ok := vimTypes[method]
	if !ok || !anyZoneless.Match(body) {
		return body
	}
	dec := xml.NewDecoder(bytes.NewReader(body))
	var stack []reflect.Type // the schema type of each open element (nil: unknown)
	inBody := false
	var at []int64
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case xml.StartElement:
			var typ reflect.Type
			switch {
			case !inBody:
				inBody = t.Name.Local == "Body"
			case len(stack) == 0:
				typ = req
			default:
				typ = childType(stack[len(stack)-1], t.Name.Local)
			}
			for _, a := range t.Attr {
				if a.Name.Local == "type" && a.Name.Space == xsiNamespace {
					typ = schemaType(a.Value, typ)
				}
			}
			if inBody && (len(stack) > 0 || t.Name.Local != "Body") {
				stack = append(stack, typ)
			}
		case xml.EndElement:
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			} else if t.Name.Local == "Body" {
				inBody = false
			}
		case xml.CharData:
			if len(stack) > 0 && stack[len(stack)-1] == timeType && zonelessTime.Match(t) {
				end := dec.InputOffset()
				trimmed := len(bytes.TrimRight(t, " \t\r\n"))
				at = append(at, end-int64(len(t)-trimmed))
			}
		}
	}
	if len(at) == 0 {
		return body
	}
	out := make([]byte, 0, len(body)+len(at))
	last := int64(0)
	for _, i := range at {
		out = append(out, body[last:i]...)
		out = append(out, 'Z')
		last = i
	}
	return append(out, body[last:]...)
}

// childType is the type of the element named name inside a value of type t.
func childType(t reflect.Type, name string) reflect.Type {
	t = elemType(t)
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			if c := childType(f.Type, name); c != nil {
				return c
			}
			continue
		}
		if n, _, ok := xmlField(f); ok && n == name {
			return elemType(f.Type)
		}
	}
	return nil
}

// elemType strips pointers and slices (but not []byte).
func elemType(t reflect.Type) reflect.Type {
	for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8) {
		t = t.Elem()
	}
	return t
}

// schemaType is the type an xsi:type attribute names.
func schemaType(name string, otherwise reflect.Type) reflect.Type {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		if name[i+1:] == "dateTime" {
			return timeType
		}
		name = name[i+1:]
	}
	if t, ok := vimTypes[name]; ok {
		return t
	}
	return otherwise
}
