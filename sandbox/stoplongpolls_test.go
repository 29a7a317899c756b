package sandbox

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestStopLongPolls (from a reviewer helper's audit): GET /sandbox/api/attempts?wait= long-polls up
// to 10 minutes, which the demo's graceful shutdown waited out (beyond its 30 s). StopLongPolls
// answers a waiting one at once, with what there is and "complete": false, and later ones do not
// wait.
func TestStopLongPolls(t *testing.T) {
	b := setup(t, 1)
	type answer struct {
		code     int
		complete bool
		err      error
	}
	get := func() answer {
		resp, err := http.Get(b.srv.URL + "/sandbox/api/attempts?out_trade_no=none&min=1&wait=10m")
		if err != nil {
			return answer{err: err}
		}
		defer resp.Body.Close()
		var out struct {
			Complete bool `json:"complete"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		return answer{resp.StatusCode, out.Complete, err}
	}
	answered := make(chan answer, 1)
	go func() { answered <- get() }()
	time.Sleep(200 * time.Millisecond) // waiting for an attempt that never comes
	start := time.Now()
	b.sb.StopLongPolls()
	select {
	case a := <-answered:
		if a.err != nil || a.code != http.StatusOK || a.complete {
			t.Fatalf("the stopped long-poll answered %+v, want 200 and complete false", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long-poll still waits 10 s after StopLongPolls")
	}
	t.Logf("answered %v after StopLongPolls", time.Since(start))
	if a := get(); a.err != nil || a.code != http.StatusOK || a.complete { // later ones do not wait
		t.Fatalf("a long-poll after the stop: %+v", a)
	}
}
