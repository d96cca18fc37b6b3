// Command vcconform-go-driver is the reference multi-cluster compute driver in Go, on govmomi: one compute
// service, several vCenter clusters, one node per cluster, with the figures, node names, spawn policy and
// failure rules of the Python reference (docs/driver.md). It speaks the driver protocol
// (docs/driver-protocol.md) on stdin and stdout, logs on stderr, and is the worked example of a driver in
// another language:
//
//	make conformance DRIVER_COMMAND=.cache/bin/vcconform-go-driver
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
)

func main() {
	mutant := flag.String("mutant", "", "comma-separated broken behaviours, for the suite's self-test (see mutants.go)")
	debug := flag.Bool("debug", false, "log at DEBUG")
	flag.Parse()
	mutants, err := ParseMutants(*mutant)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vcconform-go-driver:", err)
		os.Exit(2)
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	// One record a line on stderr, logfmt with level=...: the suite reads the level from it.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{} // the suite stamps each line as it keeps it
			}
			return a
		}}))
	if len(mutants) > 0 {
		log.Warn("running as a mutant: deliberately broken", "mutant", *mutant)
	}
	os.Exit(NewServer(os.Stdin, os.Stdout, log, mutants).Run())
}
