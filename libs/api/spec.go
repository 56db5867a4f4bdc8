// Package api holds the HTTP and WebSocket contract of testum: the OpenAPI
// document, served by the gateway. The Go types of every request, response
// and message, and the typed client, are generated from it into
// libs/api/client; nothing here repeats them. Field names are the contract
// of DESIGN.md and the seed's examples: extend them, never rename them.
package api

import (
	_ "embed"
	"encoding/json"
	"fmt"

	"gopkg.in/yaml.v3"
)

// openapiYAML is the HTTP and WebSocket contract: every route, body, error
// and message. The Go client (libs/api/client) and the console's types are
// generated from it.
//
//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPIYAML returns the OpenAPI document as written.
func OpenAPIYAML() []byte { return append([]byte(nil), openapiYAML...) }

// OpenAPIJSON returns the OpenAPI document converted to JSON, as the
// gateway serves it.
func OpenAPIJSON() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	doc, err := jsonValue(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return json.Marshal(doc)
}

// jsonValue turns what yaml.v3 decodes into values encoding/json writes:
// a mapping with a key that is not a string (an unquoted 200) decodes as
// map[any]any, which JSON has no object for.
func jsonValue(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			j, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			v[k] = j
		}
		return v, nil
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			j, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			m[fmt.Sprint(k)] = j
		}
		return m, nil
	case []any:
		for i, e := range v {
			j, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			v[i] = j
		}
		return v, nil
	}
	return v, nil
}
