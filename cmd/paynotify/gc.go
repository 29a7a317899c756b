package main

import "runtime/debug"

// serveGCPercent is the garbage collector's target that serve runs with when GOGC is not set
// (Go's default is 100). A notification allocates about 20 KiB that die with it while the live
// heap stays at a few MiB, so at Go's default the collector runs some 30 times a second under
// load; at 400 it runs a quarter as often, for a dozen more MiB of memory. Measured on the baseline
// harness (docs/performance.md, "The garbage collector"): more notifications a second and a
// lower p99 at c64. GOGC, and GOMEMLIMIT for a memory budget, still decide when they are set.
const serveGCPercent = 400

// gcPercent returns the GC percent serve sets, and false when the environment's GOGC decides.
func gcPercent(lookupEnv func(string) (string, bool)) (int, bool) {
	if _, set := lookupEnv("GOGC"); set {
		return 0, false
	}
	return serveGCPercent, true
}

// setGCPercent sets the GC percent when gcPercent says serve decides.
func setGCPercent(lookupEnv func(string) (string, bool)) {
	if p, ok := gcPercent(lookupEnv); ok {
		debug.SetGCPercent(p)
	}
}
