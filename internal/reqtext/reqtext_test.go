package reqtext

import (
	"net/http"
	"net/url"
	"testing"
)

func TestUnstorable(t *testing.T) {
	for _, c := range []struct {
		target string
		form   url.Values
		want   string
	}{
		{"/v1/orders/app/T1?status=paid", nil, ""},
		{"/v1/orders/app/%E4%B8%AD%E6%96%87", nil, ""}, // UTF-8 is fine
		{"/v1/orders/app/T%00", nil, "path"},
		{"/v1/orders/%FF/T1", nil, "path"},
		{"/v1/orders/%C3/T1", nil, "path"}, // a UTF-8 sequence cut short
		{"/v1/orders?app=%00", nil, "parameter app"},
		{"/v1/orders?app=caf%E9", nil, "parameter app"},
		{"/v1/orders?a%00=1", nil, "query"},
		{"/console/actions/close", url.Values{"otn": {"T\x00"}}, "field otn"},
		{"/console/actions/close", url.Values{"otn\xff": {"T1"}}, "form"},
		{"/console/actions/close", url.Values{"otn": {"T1"}}, ""},
	} {
		r, err := http.NewRequest("GET", "http://127.0.0.1"+c.target, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.target, err)
		}
		r.PostForm = c.form
		if got := Unstorable(r); got != c.want {
			t.Errorf("Unstorable(%s, form %q) = %q, want %q", c.target, c.form, got, c.want)
		}
	}
}
