package webhook

// Exported for the tests of package webhook_test.
var (
	RetryAfter = retryAfter
	Jitter     = jitter
)

// Lanes is how many endpoints have workers running.
func (d *Dispatcher) Lanes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.lanes)
}
