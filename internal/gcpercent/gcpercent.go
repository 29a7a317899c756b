// Package gcpercent holds the garbage collector's target that paynotify serve runs with, so that
// the in-process load tools (tools/loadnotify, loadorders, loadwebhooks) measure the server as
// serve runs it (docs/performance.md, "The garbage collector").
package gcpercent

import "runtime/debug"

// Serve is the GC percent serve sets when GOGC is not set (Go's default is 100). A notification
// allocates about 20 KiB that die with it while the live heap stays at a few MiB, so at Go's
// default the collector runs some 30 times a second under load; at 400 it runs a quarter as
// often, for a dozen more MiB of memory. GOGC, and GOMEMLIMIT for a memory budget, still decide
// when they are set.
const Serve = 400

// Decide returns the GC percent to set, and false when the environment's GOGC decides (its value
// is the runtime's to parse: "off" and "" included).
func Decide(lookupEnv func(string) (string, bool)) (int, bool) {
	if _, set := lookupEnv("GOGC"); set {
		return 0, false
	}
	return Serve, true
}

// Apply sets the GC percent when Decide says paynotify decides.
func Apply(lookupEnv func(string) (string, bool)) {
	if p, ok := Decide(lookupEnv); ok {
		debug.SetGCPercent(p)
	}
}
