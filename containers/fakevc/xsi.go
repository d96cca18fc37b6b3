// SOAP answers the size vCenter's are: one xsi prefix, declared once.
package main

import (
	"bytes"
	"net/http"
)

// vcsim's encoder (Go's encoding/xml) cannot use a prefix declared on an
// outer element for an attribute, so it declares the XML Schema instance
// namespace again on every typed value:
//
//	<val xmlns:_XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance" _XMLSchema-instance:type="xsd:int">
//
// vCenter writes <val xsi:type="xsd:int">, with xsi declared once on the
// envelope, as vcsim's envelope declares it too. The declarations made a
// third to a half of a property read's bytes, and much of its parsing by the
// client (bench/results/refresh.json), which would misstate what a driver
// costs vCenter.
var (
	xsiPrefix     = []byte("_XMLSchema-instance")
	redeclaredXsi = []byte(` xmlns:_XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance"`)
	vcsimXsiAttr  = []byte(" _XMLSchema-instance:")
	envelopeXsi   = []byte(" xsi:")
)

// xsiWriter holds a SOAP answer until the handler is done, then sends it
// with vcsim's prefix replaced by the envelope's.
type xsiWriter struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (x *xsiWriter) Write(p []byte) (int, error) { return x.body.Write(p) }

// finish sends the answer.
func (x *xsiWriter) finish() {
	if x.body.Len() > 0 {
		_, _ = x.ResponseWriter.Write(envelopePrefix(x.body.Bytes()))
	}
}

// envelopePrefix rewrites the tags of an answer: the redeclarations go, and
// attributes in vcsim's prefix (nested elements use the one declared by an
// outer value) take the envelope's. Only tags change, never character data
// (encoding/xml escapes "<" and ">" in text and attribute values, so a tag
// runs from "<" to the next ">").
func envelopePrefix(in []byte) []byte {
	if !bytes.Contains(in, xsiPrefix) {
		return in
	}
	out := make([]byte, 0, len(in))
	for len(in) > 0 {
		lt := bytes.IndexByte(in, '<')
		if lt < 0 {
			break
		}
		out = append(out, in[:lt]...)
		in = in[lt:]
		gt := bytes.IndexByte(in, '>')
		if gt < 0 {
			break
		}
		tag := in[:gt+1]
		in = in[gt+1:]
		if bytes.Contains(tag, xsiPrefix) {
			tag = bytes.ReplaceAll(bytes.ReplaceAll(tag, redeclaredXsi, nil), vcsimXsiAttr, envelopeXsi)
		}
		out = append(out, tag...)
	}
	return append(out, in...)
}
