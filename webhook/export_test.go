package webhook

// Exported for the tests of package webhook_test.
var (
	RetryAfter = retryAfter
	Jitter     = jitter
)
