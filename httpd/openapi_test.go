package httpd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/paynotify/paynotify"
)

// The API tests' requests and answers are checked against docs/openapi.yaml, so that the
// document cannot drift from the server: newEnv's server is wrapped in specCheck, which fails the
// test on any request or answer the document does not describe. The checks:
//
//   - A request to a path of the document's scope (inSpec) that no operation of the document
//     matches must be one the server does not serve either (its mux answers 404 or 405).
//   - A request the document refuses (unknown field, missing field, wrong type, no token…) must
//     be refused by the server (4xx). A request the document allows may still be refused: the
//     document cannot say every rule (an unknown app, a paid order).
//   - Every answer must be one the document lists for the operation (IncludeResponseStatus),
//     with the documented content type and a body that matches its schema (the schemas refuse
//     undocumented fields: additionalProperties: false).
//
// The validator is kin-openapi, in its JSON Schema 2020-12 mode (which openapi3filter turns on
// for OpenAPI 3.1 documents); it is a test-only dependency.

// specPath is the document the server embeds (docs/embed.go).
const specPath = "../docs/openapi.yaml"

var (
	specOnce   sync.Once
	specDoc    *openapi3.T
	specRouter routers.Router
	specErr    error
)

// loadSpec loads and validates docs/openapi.yaml once per test binary, and builds its router.
func loadSpec(tb testing.TB) (*openapi3.T, routers.Router) {
	tb.Helper()
	specOnce.Do(func() {
		b, err := os.ReadFile(specPath)
		if err != nil {
			specErr = err
			return
		}
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(b)
		if err != nil {
			specErr = fmt.Errorf("load %s: %w", specPath, err)
			return
		}
		if err := doc.Validate(loader.Context); err != nil {
			specErr = fmt.Errorf("%s is not a valid OpenAPI document: %w", specPath, err)
			return
		}
		// The router matches paths only: the test servers listen on ports of their own, not on
		// the document's example server.
		routed := *doc
		routed.Servers = nil
		if specRouter, err = gorillamux.NewRouter(&routed); err != nil {
			specErr = fmt.Errorf("route %s: %w", specPath, err)
			return
		}
		specDoc = doc
	})
	if specErr != nil {
		tb.Fatal(specErr)
	}
	return specDoc, specRouter
}

// inSpec reports whether path is in the document's scope: the merchant API and the health
// checks. The provider callbacks, the return URLs, the demo and the sandbox are not (docs/api.md).
func inSpec(path string) bool {
	return strings.HasPrefix(path, "/v1/") || path == "/healthz" || path == "/readyz"
}

// specOptions are the validator's options: strict on statuses and bodies; the bearer token is
// checked for presence (its value is the server's business, answered 401).
func specOptions() *openapi3filter.Options {
	o := &openapi3filter.Options{
		IncludeResponseStatus:             true,
		RejectWhenRequestBodyNotSpecified: true,
		SkipSettingDefaults:               true,
		MultiError:                        true,
		AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
			if s := in.SecurityScheme; s.Type != "http" || s.Scheme != "bearer" {
				return fmt.Errorf("unexpected security scheme %s", in.SecuritySchemeName)
			}
			tok, ok := strings.CutPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ")
			if !ok || tok == "" {
				return errors.New("no bearer token")
			}
			return nil
		},
	}
	// Name the place and the rule, never the value: an answer may hold a webhook secret.
	o.WithCustomSchemaErrorFunc(func(err *openapi3.SchemaError) string {
		return fmt.Sprintf("at /%s: %s (%s)", strings.Join(err.JSONPointer(), "/"), err.SchemaField, reasonWithoutValue(err))
	})
	return o
}

// reasonWithoutValue is the validator's reason, unless its keyword is one whose message quotes
// the value.
func reasonWithoutValue(err *openapi3.SchemaError) string {
	switch err.SchemaField {
	case "pattern", "format", "const", "enum":
		return "the value does not match"
	}
	return err.Reason
}

// specCheck wraps h: every request in the document's scope, and its answer, is checked against
// docs/openapi.yaml after h has answered; a mismatch fails t.
func specCheck(t *testing.T, h http.Handler) http.Handler {
	loadSpec(t)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !inSpec(r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("OpenAPI check: read the request body of %s %s: %v", r.Method, r.URL.Path, err)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		req := r.Clone(context.Background())
		req.Body = io.NopCloser(bytes.NewReader(body))
		rec := &recordingWriter{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if rec.code == 0 && r.Context().Err() != nil {
			return // the client went away (a long-poll cancelled): nothing was answered
		}
		if err := checkExchange(req, rec.status(), rec.Header(), rec.body.Bytes()); err != nil {
			t.Errorf("docs/openapi.yaml: %s %s: %v", r.Method, r.URL.RequestURI(), err)
		}
	})
}

// checkExchange checks one request (with its body) and the answer the server gave it.
func checkExchange(req *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := specRouter.FindRoute(req)
	if err != nil {
		// Not in the document: the server must not serve it either.
		if ct, _, _ := mime.ParseMediaType(header.Get("Content-Type")); (status == http.StatusNotFound || status == http.StatusMethodNotAllowed) && ct == "text/plain" {
			return nil
		}
		return fmt.Errorf("no operation of the document matches (%v), but the server answered %d", err, status)
	}
	opts := specOptions()
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil && status < 400 {
		return fmt.Errorf("the server accepted (%d) a request the document refuses: %v", status, err)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header, Options: opts}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Errorf("the answer %d does not match the document: %v", status, err)
	}
	return nil
}

// recordingWriter passes an answer through and keeps a copy of its status and body.
type recordingWriter struct {
	http.ResponseWriter
	code int
	body bytes.Buffer
}

func (w *recordingWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController the writer underneath.
func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes a flush through, for answers that stream.
func (w *recordingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *recordingWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// TestOpenAPI_Document: docs/openapi.yaml is a valid OpenAPI 3.1 document, and its operations are
// exactly the routes of server.go in its scope: one registered without the document, or
// documented without being registered, fails.
func TestOpenAPI_Document(t *testing.T) {
	doc, _ := loadSpec(t)
	if doc.OpenAPI != "3.1.0" || !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi: %q, want 3.1.0", doc.OpenAPI)
	}
	// The loader checks the examples of media types; the examples of schemas (OpenAPI 3.1's
	// "examples" keyword) are checked here, as JSON Schema 2020-12.
	seen := map[*openapi3.Schema]bool{}
	var checkExamples func(where string, ref *openapi3.SchemaRef)
	checkExamples = func(where string, ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		seen[ref.Value] = true
		for i, ex := range ref.Value.Examples {
			if err := ref.Value.VisitJSON(ex, openapi3.EnableJSONSchema2020()); err != nil {
				t.Errorf("%s: example %d does not match its schema: %v", where, i, err)
			}
		}
		for name, p := range ref.Value.Properties {
			checkExamples(where+"."+name, p)
		}
		checkExamples(where+"[]", ref.Value.Items)
	}
	for name, ref := range doc.Components.Schemas {
		checkExamples(name, ref)
	}
	if len(seen) < 20 {
		t.Fatalf("walked %d schemas", len(seen))
	}

	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	registered := map[string]bool{}
	for _, pattern := range serverRoutes(t) {
		if method, path, _ := strings.Cut(pattern, " "); inSpec(path) {
			registered[method+" "+path] = true
		}
	}
	if len(registered) < 20 {
		t.Fatalf("found %d routes in server.go: the parsing is broken", len(registered))
	}
	for r := range registered {
		if !documented[r] {
			t.Errorf("server.go serves %s, which docs/openapi.yaml does not describe", r)
		}
	}
	for d := range documented {
		if !registered[d] {
			t.Errorf("docs/openapi.yaml describes %s, which server.go does not serve", d)
		}
	}
}

// serverRoutes returns the patterns ("GET /v1/orders") that server.go registers: the string
// literals passed first to its calls.
func serverRoutes(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "server.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err == nil && routePattern.MatchString(s) {
			out = append(out, s)
		}
		return true
	})
	return out
}

var routePattern = regexp.MustCompile(`^(GET|POST|PUT|PATCH|DELETE) /`)

// TestOpenAPI_Served: GET /v1/openapi.yaml answers docs/openapi.yaml byte for byte, as YAML,
// without a token; each operation needs the token exactly when the document says so (a call
// without one is 401, else it reaches its handler).
func TestOpenAPI_Served(t *testing.T) {
	t.Parallel()
	want, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		resp, err := e.srv.Client().Get(e.srv.URL + "/v1/openapi.yaml")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
			t.Fatalf("GET /v1/openapi.yaml: %d, %d bytes; want 200 and docs/openapi.yaml's %d bytes", resp.StatusCode, len(got), len(want))
		}
		if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "application/yaml" {
			t.Errorf("Content-Type %q, want application/yaml", resp.Header.Get("Content-Type"))
		}

		doc, _ := loadSpec(t)
		for path, item := range doc.Paths.Map() {
			for method, op := range item.Operations() {
				secured := op.Security == nil || len(*op.Security) > 0
				url := e.srv.URL + strings.NewReplacer("{app}", "shop", "{out_trade_no}", "NOPE1", "{id}", "nope").Replace(path)
				req, err := http.NewRequest(method, url, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := e.srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if got := resp.StatusCode == http.StatusUnauthorized; got != secured {
					t.Errorf("%s %s without a token: %d; the document says a token is needed: %v", method, path, resp.StatusCode, secured)
				}
			}
		}
	})
}

// TestOpenAPI_CatchesDrift: the check that newEnv's server runs refuses exchanges that differ
// from the document (an undocumented field, a wrong type, an undocumented status or route, a
// request the document refuses but the server took), and lets the documented one through.
func TestOpenAPI_CatchesDrift(t *testing.T) {
	loadSpec(t)
	order := `{"app":"shop","out_trade_no":"T1","channel":"alipay.app","status":"pending","amount":8888,` +
		`"refunded_amount":0,"currency":"CNY","subject":"s","provider_trade_no":"","version":1,` +
		`"created_at":"2026-11-29T01:59:50Z","paid_at":null,"expires_at":"2026-11-29T03:59:50Z",` +
		`"next_check_at":"2026-11-29T02:00:50Z","checks":0,"pay":{"order_string":"x"}}`
	jsonHeader := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	get := func(path string) *http.Request {
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("Authorization", "Bearer "+testToken)
		return r
	}
	post := func(path, body string) *http.Request {
		r := httptest.NewRequest("POST", path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+testToken)
		r.Header.Set("Content-Type", "application/json")
		return r
	}
	create := `{"app":"shop","amount":8888,"subject":"s","channel":"alipay.app"}`

	if err := checkExchange(get("/v1/orders/shop/T1"), 200, jsonHeader, []byte(order)); err != nil {
		t.Fatalf("the documented answer is refused: %v", err)
	}
	if err := checkExchange(post("/v1/orders", create), 201, jsonHeader, []byte(order)); err != nil {
		t.Fatalf("the documented create is refused: %v", err)
	}
	for _, tt := range []struct {
		name   string
		req    *http.Request
		status int
		body   string
		want   string // in the error
	}{
		{"ErrUndocumentedField", get("/v1/orders/shop/T1"), 200, strings.Replace(order, `"checks":0`, `"checks":0,"surprise":1`, 1), "surprise"},
		{"ErrAmountString", get("/v1/orders/shop/T1"), 200, strings.Replace(order, `"amount":8888`, `"amount":"88.88"`, 1), "/amount"},
		{"ErrAmountFloat", get("/v1/orders/shop/T1"), 200, strings.Replace(order, `"amount":8888`, `"amount":88.88`, 1), "/amount"},
		{"ErrMissingField", get("/v1/orders/shop/T1"), 200, strings.Replace(order, `"checks":0,`, ``, 1), "checks"},
		{"ErrUnknownStatus", get("/v1/orders/shop/T1"), 200, strings.Replace(order, `"status":"pending"`, `"status":"lost"`, 1), "/status"},
		{"ErrUndocumentedStatus", get("/v1/orders/shop/T1"), http.StatusTeapot, `{"error":{"code":"internal","message":"x"}}`, "418"},
		{"ErrErrorShape", get("/v1/orders/shop/T1"), 404, `{"code":"not_found","message":"x"}`, "error"},
		{"ErrUndocumentedRoute", get("/v1/secrets"), 200, `{}`, "no operation"},
		{"ErrAcceptedUnknownField", post("/v1/orders", strings.Replace(create, `{`, `{"AMOUNT":1,`, 1)), 201, order, "accepted (201)"},
		{"ErrAcceptedWithoutToken", func() *http.Request { r := get("/v1/orders/shop/T1"); r.Header.Del("Authorization"); return r }(), 200, order, "accepted (200)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkExchange(tt.req, tt.status, jsonHeader, []byte(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want one naming %q", err, tt.want)
			}
			t.Log(err)
		})
	}
	// A request the document refuses, refused by the server too, is consistent.
	if err := checkExchange(post("/v1/orders", `{"app":"shop"}`), 400, jsonHeader, []byte(`{"error":{"code":"invalid","message":"x"}}`)); err != nil {
		t.Errorf("a refused bad request: %v", err)
	}
}
