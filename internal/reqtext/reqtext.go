// Package reqtext finds text in a request that no stored row can hold: NUL, or bytes that are
// not UTF-8. The API and the console refuse such ids, keys and filters as bad input before a
// store is asked (PostgreSQL's text cannot hold them and would answer with an error; SQLite would
// find nothing). Provider callbacks are not checked: their bytes are evidence, GBK included.
package reqtext

import (
	"net/http"

	"github.com/paynotify/paynotify"
)

// Bad reports whether s holds NUL or bytes that are not UTF-8: what paynotify.StorableText
// would replace.
func Bad(s string) bool { return paynotify.StorableText(s) != s }

// Unstorable names the part of r that holds such text, or returns "": "path" (r.URL.Path, as
// decoded), "query" (a parameter's name), "parameter NAME" (a query value), or "field NAME" (a
// value of r.PostForm, if the form was parsed).
func Unstorable(r *http.Request) string {
	if Bad(r.URL.Path) {
		return "path"
	}
	for k, vs := range r.URL.Query() {
		if Bad(k) {
			return "query"
		}
		for _, v := range vs {
			if Bad(v) {
				return "parameter " + k
			}
		}
	}
	for k, vs := range r.PostForm {
		if Bad(k) {
			return "form"
		}
		for _, v := range vs {
			if Bad(v) {
				return "field " + k
			}
		}
	}
	return ""
}
