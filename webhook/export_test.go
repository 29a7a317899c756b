package webhook

// Exported for the tests of package webhook_test.
var (
	RetryAfter = retryAfter
	Jitter     = jitter
)

// Lanes is how many endpoints have workers running.
func (d *Dispatcher) Lanes() int {
	d.init() // before Run's, which makes the map (its Once orders the two)
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.lanes)
}
