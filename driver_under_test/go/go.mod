module vcconform/godriver

go 1.25.0

require (
	github.com/dlclark/regexp2 v1.11.0
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.3
	github.com/vmware/govmomi v0.56.0
)

require golang.org/x/text v0.41.0 // indirect
