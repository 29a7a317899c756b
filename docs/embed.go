// Package docs holds what the server serves from this folder: the merchant API's OpenAPI
// document, docs/openapi.yaml, at GET /v1/openapi.yaml.
package docs

import _ "embed"

// OpenAPI is docs/openapi.yaml, byte for byte: the merchant API described in OpenAPI 3.1.
//
//go:embed openapi.yaml
var OpenAPI []byte
