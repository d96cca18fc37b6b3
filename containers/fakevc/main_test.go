// Tests of the command's own checks: where the password comes from.
package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPasswordComesOnlyFromAPrivateFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return path
	}
	good := write("good", "s3cret\n", 0o600)
	if got, err := readPassword(good); err != nil || got != "s3cret" {
		t.Errorf("readPassword(0600 file) = %q, %v; want s3cret", got, err)
	}
	for path, want := range map[string]string{
		"":                              "-password-file is required",
		filepath.Join(dir, "absent"):    "no such file",
		write("loose", "s3cret", 0o644): "mode 0644 lets others read it; chmod 600 it",
		write("empty", "\n", 0o600):     "is empty",
		write("group", "s3cret", 0o640): "mode 0640",
	} {
		_, err := readPassword(path)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("readPassword(%q) = %v; want one line with %q", path, err, want)
		}
	}
}

func TestNoPasswordFileNoServer(t *testing.T) {
	// The environment is no way in: the variable older versions read is ignored.
	t.Setenv("FAKEVC_PASSWORD", "pass")
	topo := filepath.Join(t.TempDir(), "topology.json")
	if err := os.WriteFile(topo, []byte(`{"name":"t","datacenters":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(options{listen: "127.0.0.1:0", topology: topo, stateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "-password-file is required") {
		t.Fatalf("run without -password-file = %v; want a refusal", err)
	}
}
