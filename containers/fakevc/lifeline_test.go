// Tests of the lifeline: fakevc stops once the last writer of its named pipe is gone.
package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestLifelineEndsWithItsLastWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lifeline")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	writer, err := os.OpenFile(path, os.O_RDWR, 0) // as the harness holds it
	if err != nil {
		t.Fatal(err)
	}
	gone, err := openLifeline(path)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-gone:
		t.Fatal("the lifeline ended while its writer holds it")
	case <-time.After(100 * time.Millisecond):
	}
	writer.Close()
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the lifeline did not end when its last writer closed it")
	}
	if stop := waitForStop(0, gone); !stop {
		t.Error("waitForStop does not report a closed lifeline as orphaned")
	}
	plain := filepath.Join(t.TempDir(), "plain")
	_ = os.WriteFile(plain, nil, 0o600)
	if _, err := openLifeline(plain); err == nil {
		t.Error("a regular file was taken as a lifeline")
	}
}
