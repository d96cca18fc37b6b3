// The VIM WSDL at /sdk/vimService.wsdl and /sdk/vim.wsdl, generated from the
// pinned govmomi's type information, for SOAP clients that build themselves
// from the server's WSDL (oslo.vmware with suds does; pyvmomi does not).
package main

//go:generate go run ./internal/genresponses

import (
	"bytes"
	"fmt"
	"net/http"
	"path"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"
	_ "unsafe" // go:linkname

	"github.com/vmware/govmomi/vim25/types"
)

// vimTypes is govmomi's registry of vim25 types by name (types.TypeFunc
// looks names up in it but offers no way to list them).
//
//go:linkname vimTypes github.com/vmware/govmomi/vim25/types.t
var vimTypes map[string]reflect.Type

// wsdlFiles are the documents vCenter serves under /sdk: vimService.wsdl
// (the service and its port) imports vim.wsdl (schema, messages, port type
// and binding).
var wsdlFiles = sync.OnceValue(func() map[string][]byte {
	return map[string][]byte{"vimService.wsdl": vimServiceWSDL(), "vim.wsdl": vimWSDL()}
})

// serveWSDL answers GET (and HEAD) of /sdk/vimService.wsdl and /sdk/vim.wsdl
// (world.serveMux routes them here). vCenter serves them without a session.
func serveWSDL(rw http.ResponseWriter, r *http.Request) {
	doc, ok := wsdlFiles()[path.Base(r.URL.Path)]
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(rw, r)
		return
	}
	rw.Header().Set("Content-Type", "text/xml; charset=utf-8")
	http.ServeContent(rw, r, path.Base(r.URL.Path), time.Time{}, bytes.NewReader(doc))
}

const wsdlHeader = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"

func vimServiceWSDL() []byte {
	var b bytes.Buffer
	b.WriteString(wsdlHeader)
	b.WriteString(`<definitions targetNamespace="urn:vim25Service" xmlns="http://schemas.xmlsoap.org/wsdl/" ` +
		`xmlns:interface="urn:vim25" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/">` + "\n")
	b.WriteString(`<import location="vim.wsdl" namespace="urn:vim25"/>` + "\n")
	b.WriteString(`<service name="VimService"><port binding="interface:VimBinding" name="VimPort">` +
		`<soap:address location="https://localhost/sdk/vimService"/></port></service>` + "\n")
	b.WriteString("</definitions>\n")
	return b.Bytes()
}

// method is a vim25 method: its request type and, when it returns something,
// the type of its returnval.
type method struct {
	name     string
	request  reflect.Type
	response reflect.Type
}

func vimMethods() []method {
	var out []method
	for name, resp := range responseTypes {
		req, ok := vimTypes[name]
		if !ok || req.Kind() != reflect.Struct {
			continue
		}
		if f, ok := req.FieldByName("This"); !ok || f.Type != morType {
			continue
		}
		out = append(out, method{name: name, request: req, response: resp})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func vimWSDL() []byte {
	s := &schema{done: map[reflect.Type]bool{}}
	names := make([]string, 0, len(vimTypes))
	for name := range vimTypes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t := vimTypes[name]
		if t.Kind() == reflect.Struct && name != t.Name() {
			continue // aliases such as RetrievePropertiesEx = RetrievePropertiesExRequestType
		}
		s.declare(t)
	}
	methods := vimMethods()
	for _, m := range methods {
		s.declare(m.request)
	}

	var b bytes.Buffer
	b.WriteString(wsdlHeader)
	b.WriteString(`<definitions targetNamespace="urn:vim25" xmlns="http://schemas.xmlsoap.org/wsdl/" ` +
		`xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:vim25="urn:vim25" ` +
		`xmlns:xsd="http://www.w3.org/2001/XMLSchema">` + "\n<types>\n")
	b.WriteString(`<schema targetNamespace="urn:vim25" xmlns="http://www.w3.org/2001/XMLSchema" ` +
		`xmlns:vim25="urn:vim25" xmlns:xsd="http://www.w3.org/2001/XMLSchema" elementFormDefault="qualified">` + "\n")
	b.Write(s.out.Bytes())
	for _, f := range s.faults {
		fmt.Fprintf(&b, `<element name="%sFault" type="vim25:%s"/>`+"\n", f, f)
	}
	for _, m := range methods {
		fmt.Fprintf(&b, `<element name="%s" type="vim25:%s"/>`+"\n", m.name, m.request.Name())
		fmt.Fprintf(&b, `<element name="%sResponse"><complexType><sequence>`, m.name)
		if m.response != nil {
			if f, ok := m.response.FieldByName("Returnval"); ok {
				b.WriteString(s.element("returnval", f.Type, true))
			}
		}
		b.WriteString("</sequence></complexType></element>\n")
	}
	b.WriteString("</schema>\n</types>\n")
	for _, m := range methods {
		fmt.Fprintf(&b, `<message name="%sRequestMsg"><part name="parameters" element="vim25:%s"/></message>`+"\n", m.name, m.name)
		fmt.Fprintf(&b, `<message name="%sResponseMsg"><part name="parameters" element="vim25:%sResponse"/></message>`+"\n", m.name, m.name)
	}
	b.WriteString(`<portType name="VimPortType">` + "\n")
	for _, m := range methods {
		fmt.Fprintf(&b, `<operation name="%s"><input message="vim25:%sRequestMsg"/><output message="vim25:%sResponseMsg"/></operation>`+"\n",
			m.name, m.name, m.name)
	}
	b.WriteString("</portType>\n")
	b.WriteString(`<binding name="VimBinding" type="vim25:VimPortType">` +
		`<soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>` + "\n")
	for _, m := range methods {
		fmt.Fprintf(&b, `<operation name="%s"><soap:operation soapAction="urn:vim25/%s"/>`+
			`<input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>`+"\n",
			m.name, apiVersion)
	}
	b.WriteString("</binding>\n</definitions>\n")
	return b.Bytes()
}

// apiVersion is the vim25 release named in each operation's soapAction.
const apiVersion = "8.0.3.0"

var (
	timeType      = reflect.TypeOf(time.Time{})
	morType       = reflect.TypeOf(types.ManagedObjectReference{})
	methodFaultIf = reflect.TypeOf((*types.BaseMethodFault)(nil)).Elem()
)

// schema writes XML Schema declarations for Go types, each once.
type schema struct {
	out    bytes.Buffer
	done   map[reflect.Type]bool
	faults []string
}

// declare writes the complexType (struct) or simpleType (enum) for t.
func (s *schema) declare(t reflect.Type) {
	if s.done[t] || t.Name() == "" || t.PkgPath() != morType.PkgPath() {
		return
	}
	s.done[t] = true
	switch {
	case t == morType:
		s.out.WriteString(`<complexType name="ManagedObjectReference"><simpleContent><extension base="xsd:string">` +
			`<attribute name="type" type="xsd:string"/></extension></simpleContent></complexType>` + "\n")
	case t.Kind() == reflect.String:
		s.out.WriteString(`<simpleType name="` + t.Name() + `"><restriction base="xsd:string">`)
		if v := reflect.New(t).Elem().MethodByName("Values"); v.IsValid() && v.Type().NumIn() == 0 {
			vals := v.Call(nil)[0]
			for i := 0; i < vals.Len(); i++ {
				fmt.Fprintf(&s.out, `<enumeration value="%s"/>`, xmlEscape(vals.Index(i).String()))
			}
		}
		s.out.WriteString("</restriction></simpleType>\n")
	case t.Kind() == reflect.Struct:
		s.complexType(t)
	}
}

func (s *schema) complexType(t reflect.Type) {
	if reflect.PointerTo(t).Implements(methodFaultIf) {
		s.faults = append(s.faults, t.Name())
	}
	var base string
	var fields bytes.Buffer
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct && base == "" && i == 0 {
			base = f.Type.Name()
			s.declare(f.Type)
			continue
		}
		name, omitempty, ok := xmlField(f)
		if !ok {
			continue
		}
		fields.WriteString(s.element(name, f.Type, omitempty))
	}
	fmt.Fprintf(&s.out, `<complexType name="%s">`, t.Name())
	if base != "" {
		fmt.Fprintf(&s.out, `<complexContent><extension base="vim25:%s"><sequence>%s</sequence></extension></complexContent>`,
			base, fields.String())
	} else {
		fmt.Fprintf(&s.out, `<sequence>%s</sequence>`, fields.String())
	}
	s.out.WriteString("</complexType>\n")
}

// xmlField is a struct field's element name and whether it may be absent;
// false for attributes, character data and ignored fields.
func xmlField(f reflect.StructField) (string, bool, bool) {
	if !f.IsExported() {
		return "", false, false
	}
	tag := f.Tag.Get("xml")
	if tag == "-" {
		return "", false, false
	}
	parts := strings.Split(tag, ",")
	name := parts[0]
	if i := strings.LastIndexByte(name, ' '); i >= 0 {
		name = name[i+1:] // "urn:vim25 Name"
	}
	omitempty := false
	for _, p := range parts[1:] {
		switch p {
		case "attr", "chardata", "innerxml", "comment", "any":
			return "", false, false
		case "omitempty":
			omitempty = true
		}
	}
	if name == "" {
		name = f.Name
	}
	return name, omitempty, true
}

// element is the declaration of one element of Go type t.
func (s *schema) element(name string, t reflect.Type, optional bool) string {
	many := false
	for {
		if t.Kind() == reflect.Pointer {
			t, optional = t.Elem(), true
			continue
		}
		if t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8 {
			t, many, optional = t.Elem(), true, true
			continue
		}
		break
	}
	attrs := ""
	if optional {
		attrs += ` minOccurs="0"`
	}
	if many {
		attrs += ` maxOccurs="unbounded"`
	}
	return fmt.Sprintf(`<element name="%s" type="%s"%s/>`, name, s.typeName(t), attrs)
}

// typeName is the schema type of Go type t, declaring it when needed.
func (s *schema) typeName(t reflect.Type) string {
	switch {
	case t == timeType:
		return "xsd:dateTime"
	case t.Kind() == reflect.Slice: // []byte
		return "xsd:base64Binary"
	case t.Kind() == reflect.Interface:
		// BaseMethodFault -> MethodFault; AnyType -> anyType
		if n, ok := strings.CutPrefix(t.Name(), "Base"); ok && n != "" {
			if _, known := vimTypes[n]; known {
				return "vim25:" + n
			}
		}
		return "xsd:anyType"
	case t.Kind() == reflect.String && (t.Name() == "string" || t.PkgPath() != morType.PkgPath()):
		return "xsd:string"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "xsd:boolean"
	case reflect.Int8:
		return "xsd:byte"
	case reflect.Int16:
		return "xsd:short"
	case reflect.Int32:
		return "xsd:int"
	case reflect.Int, reflect.Int64:
		return "xsd:long"
	case reflect.Uint8:
		return "xsd:unsignedByte"
	case reflect.Float32:
		return "xsd:float"
	case reflect.Float64:
		return "xsd:double"
	}
	if t.PkgPath() != morType.PkgPath() || t.Name() == "" {
		return "xsd:anyType"
	}
	s.declare(t)
	return "vim25:" + t.Name()
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
