package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

func init() { commands["version"] = versionCommand{} }

// version is the release, set at build time:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/paynotify
//
// Without it the binary says "dev" and the commit it was built from, when Go recorded one.
var version = "dev"

// versionCommand is `paynotify version`.
type versionCommand struct{}

func (versionCommand) Usage() string {
	return `Usage: paynotify version

Prints the release (set at build time with -ldflags "-X main.version=…"; "dev" otherwise), the
commit the binary was built from when known, and the Go version.
`
}

func (cmd versionCommand) Run(ctx context.Context, m *Main, args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := parseCommandFlags(m, fs, cmd.Usage(), "paynotify version", args); err != nil {
		return err
	}
	fmt.Fprintln(m.Stdout, versionLine())
	return nil
}

// versionLine is "paynotify VERSION (commit REV[, modified]) GOVERSION".
func versionLine() string {
	line := "paynotify " + version
	if info, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			line += " (commit " + rev
			if dirty {
				line += ", modified"
			}
			line += ")"
		}
	}
	return line + " " + runtime.Version()
}
